//! `dir`: a test provider for the loopback directory, written against the public provider API.

use std::sync::Arc;
use std::time::Duration;

use runbook_core::http::{HttpClient, HttpRequest, HttpResponse, RetryPolicy, path};
use runbook_core::{
    ActionError, ActionSpec, CallContext, ParamSpec, ParamType, Probed, Provider, Record, Records, Secret, Targets,
    async_trait,
};
use serde_json::{Value, json};

const ID: &[ParamSpec] = &[ParamSpec::required("id", ParamType::String, "user id")];
const IDS: &[ParamSpec] = &[ParamSpec::required("ids", ParamType::StringOrArray, "user ids")];
const CREATE: &[ParamSpec] = &[
    ParamSpec::required("email", ParamType::String, "email"),
    ParamSpec::optional("note", ParamType::String, "a note"),
];
/// A user: the directory never sends `last_login` or `manager`, and sends `big`, which is not declared.
const USER: Record = Record::new("User", &["id", "email", "disabled", "last_login", "manager"]);
const SLOW: &[ParamSpec] = &[ParamSpec::required("ms", ParamType::Integer, "milliseconds")];

pub const ACTIONS: &[ActionSpec] = &[
    ActionSpec::read("list_users", "List users")
        .returns("array of User")
        .records(Records::List(&USER)),
    ActionSpec::read("get_user", "Get a user")
        .params(ID)
        .returns("User")
        .records(Records::One(&USER)),
    ActionSpec::write("disable_user", "Disable a user")
        .params(ID)
        .returns("User")
        .records(Records::One(&USER)),
    ActionSpec::destructive("delete_users", "Delete users")
        .params(IDS)
        .targets(Targets::CountOf("ids")),
    ActionSpec::write("create_user", "Create a user")
        .params(CREATE)
        .idempotent(false)
        .probe("a user with that email")
        .returns("User")
        .records(Records::One(&USER)),
    ActionSpec::read("slow", "Answer after a delay").params(SLOW),
    // The same PUT as disable_user, declared not idempotent (say, it also sends a notice).
    ActionSpec::write("disable_user_and_notify", "Disable a user and notify them")
        .params(ID)
        .idempotent(false),
];

pub struct Dir {
    http: HttpClient,
    token: Secret<String>,
}

impl Dir {
    pub fn new(url: &str, token: &str) -> Arc<dyn Provider> {
        let http = HttpClient::builder("dir", url)
            .retry(RetryPolicy::default().with_min_delay(Duration::from_millis(20)))
            .cookie_store(true)
            .build()
            .unwrap();
        Arc::new(Dir {
            http,
            token: Secret::new(token.to_owned()),
        })
    }

    async fn send(&self, ctx: &CallContext, request: HttpRequest) -> Result<HttpResponse, ActionError> {
        let response = self.http.send(ctx, request.bearer(&self.token)?).await?;
        if response.is_success() {
            Ok(response)
        } else {
            let body: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
            let message = body["error"].as_str().unwrap_or("no message").to_owned();
            Err(ActionError::api(response.status, message).with_code("E_DIR"))
        }
    }
}

fn json_of(response: &HttpResponse) -> Result<Value, ActionError> {
    if response.body.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&response.body).map_err(|e| ActionError::invalid_response(e.to_string()))
}

#[async_trait]
impl Provider for Dir {
    fn namespace(&self) -> &str {
        "dir"
    }

    fn actions(&self) -> &[ActionSpec] {
        ACTIONS
    }

    async fn call(&self, ctx: &CallContext, action: &ActionSpec, args: Value) -> Result<Value, ActionError> {
        let id = args["id"].as_str().unwrap_or_default();
        match action.name {
            "list_users" => Ok(json_of(&self.send(ctx, HttpRequest::get("/users")).await?)?["users"].clone()),
            "get_user" => json_of(&self.send(ctx, HttpRequest::get(path(&["users", id]))).await?),
            "disable_user" | "disable_user_and_notify" => json_of(
                &self
                    .send(ctx, HttpRequest::put(path(&["users", id, "disabled"])))
                    .await?,
            ),
            "delete_users" => {
                let ids: Vec<String> = match &args["ids"] {
                    Value::String(s) => vec![s.clone()],
                    Value::Array(a) => a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
                    _ => vec![],
                };
                for id in &ids {
                    self.send(ctx, HttpRequest::delete(path(&["users", id]))).await?;
                }
                Ok(json!(ids.len()))
            }
            "create_user" => {
                let request = HttpRequest::post("/users").json(&json!({"email": args["email"]}))?;
                json_of(&self.send(ctx, request).await?)
            }
            "slow" => json_of(
                &self
                    .send(ctx, HttpRequest::get("/slow").query("ms", &args["ms"]))
                    .await?,
            ),
            other => Err(ActionError::invalid_args(format!("no action {other}"))),
        }
    }

    async fn probe(&self, ctx: &CallContext, _: &ActionSpec, args: &Value) -> Result<Probed, ActionError> {
        let users = json_of(&self.send(ctx, HttpRequest::get("/users")).await?)?["users"].clone();
        let found = users
            .as_array()
            .into_iter()
            .flatten()
            .find(|u| u["email"] == args["email"])
            .cloned();
        Ok(found.map_or(Probed::NotFound, Probed::Found))
    }

    fn planned_result(&self, action: &ActionSpec, args: &Value) -> Value {
        match action.name {
            "create_user" => json!({"id": "(planned)", "email": args["email"]}),
            _ => Value::Null,
        }
    }
}

const PING: &[ActionSpec] = &[ActionSpec::read("ping", "Ask the background task")];

/// `pooled`: a provider whose first call starts a long-lived task that later calls talk to, as a
/// database pool's connection is; its calls must run on the engine's runtime.
#[derive(Default)]
pub struct Pooled {
    worker: tokio::sync::OnceCell<tokio::sync::mpsc::Sender<tokio::sync::oneshot::Sender<u64>>>,
}

#[async_trait]
impl Provider for Pooled {
    fn namespace(&self) -> &str {
        "pooled"
    }

    fn actions(&self) -> &[ActionSpec] {
        PING
    }

    async fn call(&self, _: &CallContext, _: &ActionSpec, _: Value) -> Result<Value, ActionError> {
        let worker = self
            .worker
            .get_or_init(|| async {
                let (tx, mut rx) = tokio::sync::mpsc::channel::<tokio::sync::oneshot::Sender<u64>>(8);
                tokio::spawn(async move {
                    let mut served = 0;
                    while let Some(reply) = rx.recv().await {
                        served += 1;
                        let _ = reply.send(served);
                    }
                });
                tx
            })
            .await;
        let (reply, answer) = tokio::sync::oneshot::channel();
        worker
            .send(reply)
            .await
            .map_err(|_| ActionError::invalid_response("the background task is gone"))?;
        let served = answer
            .await
            .map_err(|_| ActionError::invalid_response("the background task is gone"))?;
        Ok(json!(served))
    }
}
