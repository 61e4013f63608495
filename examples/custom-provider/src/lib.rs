//! A provider of your own: `tickets`, for a small ticketing service with a JSON API.
//!
//! The service (any service you run) answers:
//! * `GET /tickets?status=open` → `{"tickets": [{"id", "title", "status", "assignee"}]}`
//! * `POST /tickets` with `{"title", "body", "assignee"}` → `201 {"id", ...}`
//!
//! and wants `Authorization: Bearer <token>`. This crate turns that into two actions, a read
//! and a write, so that a runbook can say:
//!
//! ```rhai
//! let open = tickets::list_tickets(#{status: "open"});
//! if open.len() > 10 { tickets::open_ticket("Too many open tickets", #{assignee: "oncall"}); }
//! ```
//!
//! What it takes, in order: the [`ActionSpec`]s (what the engine validates, plans, guards and
//! documents), a [`Provider`] implementation (parse arguments, send requests through the shared
//! HTTP layer, return JSON), and a [`ProviderDescriptor`] submitted with `inventory` so that any
//! program linking this crate finds the provider.

use std::sync::Arc;

use runbook_core::http::{HttpClient, HttpRequest, HttpResponse};
use runbook_core::{
    ActionError, ActionSpec, CallContext, ConfigError, ParamSpec, ParamType, Provider, ProviderConfig,
    ProviderDescriptor, Secret, async_trait,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

const LIST: &[ParamSpec] = &[ParamSpec::optional(
    "status",
    ParamType::String,
    "only tickets in this status (open, closed)",
)];
const OPEN: &[ParamSpec] = &[
    ParamSpec::required("title", ParamType::String, "one line"),
    ParamSpec::optional("body", ParamType::String, "the details"),
    ParamSpec::optional("assignee", ParamType::String, "who should act"),
];

/// The `tickets` actions.
pub const ACTIONS: &[ActionSpec] = &[
    ActionSpec::read("list_tickets", "List tickets")
        .params(LIST)
        .returns("array of Ticket {id, title, status, assignee}")
        .example(r#"tickets::list_tickets(#{status: "open"})"#),
    // Opening a ticket twice opens two tickets: never resent after an ambiguous failure.
    ActionSpec::write("open_ticket", "Open a ticket")
        .params(OPEN)
        .idempotent(false)
        .returns("Ticket")
        .example(r#"tickets::open_ticket("Revoke MFA for ann", #{assignee: "secops"})"#),
];

runbook_core::inventory::submit! {
    ProviderDescriptor {
        namespace: "tickets",
        summary: "A small ticketing service (example provider)",
        actions: ACTIONS,
        settings: "TICKETS_URL, TICKETS_TOKEN; or [providers.tickets] with url, token",
        build: |config| Ok(Arc::new(Tickets::from_config(config)?)),
    }
}

/// A ticket, as the service returns it; unknown fields are kept.
#[derive(Debug, Deserialize, Serialize)]
pub struct Ticket {
    /// Id.
    pub id: Option<Value>,
    /// One line.
    pub title: Option<String>,
    /// `open` or `closed`.
    pub status: Option<String>,
    /// Who should act.
    pub assignee: Option<String>,
    /// Anything else the service returns.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Deserialize)]
struct TicketList {
    tickets: Vec<Ticket>,
}

/// The provider: one HTTP client (pool, retries, rate limit) and the token.
#[derive(Debug)]
pub struct Tickets {
    http: HttpClient,
    token: Secret<String>,
}

impl Tickets {
    /// Reads `url` and `token` from `[providers.tickets]`, or `TICKETS_URL` and `TICKETS_TOKEN`.
    pub fn from_config(config: &ProviderConfig) -> Result<Self, ConfigError> {
        config.deny_unknown(&["url", "token"])?;
        let url = config.string("url", "TICKETS_URL")?;
        let token = config.secret("token", "TICKETS_TOKEN")?;
        let (Some(url), Some(token)) = (url.clone(), token) else {
            let mut missing = Vec::new();
            if url.is_none() {
                missing.push(config.setting_name("url", "TICKETS_URL"));
            }
            missing.push(config.setting_name("token", "TICKETS_TOKEN"));
            return Err(config.missing(missing));
        };
        let http = HttpClient::builder("tickets", &url)
            .build()
            .map_err(|reason| config.invalid("url", "TICKETS_URL", reason))?;
        Ok(Tickets { http, token })
    }

    async fn send(&self, ctx: &CallContext, request: HttpRequest) -> Result<HttpResponse, ActionError> {
        let response = self.http.send(ctx, request.bearer(&self.token)?).await?;
        if !response.is_success() {
            return Err(ActionError::api(
                response.status,
                format!(
                    "the tickets service answered {}: {}",
                    response.status,
                    response.excerpt(200)
                ),
            ));
        }
        Ok(response)
    }
}

fn parse<T: for<'de> Deserialize<'de>>(response: &HttpResponse) -> Result<T, ActionError> {
    serde_json::from_slice(&response.body)
        .map_err(|e| ActionError::invalid_response(format!("the tickets service answered something else: {e}")))
}

#[async_trait]
impl Provider for Tickets {
    fn namespace(&self) -> &str {
        "tickets"
    }

    fn thread_local_calls(&self) -> bool {
        // Every request goes through runbook_core::http.
        true
    }

    fn actions(&self) -> &[ActionSpec] {
        ACTIONS
    }

    async fn call(&self, ctx: &CallContext, action: &ActionSpec, args: Value) -> Result<Value, ActionError> {
        // The engine has already checked the arguments against the spec.
        match action.name {
            "list_tickets" => {
                let mut request = HttpRequest::get("/tickets");
                if let Some(status) = args.get("status").and_then(Value::as_str) {
                    request = request.query("status", status);
                }
                let list: TicketList = parse(&self.send(ctx, request).await?)?;
                serde_json::to_value(list.tickets).map_err(|e| ActionError::invalid_response(e.to_string()))
            }
            "open_ticket" => {
                let request = HttpRequest::post("/tickets").json(&args)?;
                let ticket: Ticket = parse(&self.send(ctx, request).await?)?;
                serde_json::to_value(ticket).map_err(|e| ActionError::invalid_response(e.to_string()))
            }
            other => Err(ActionError::invalid_args(format!("tickets has no action `{other}`"))),
        }
    }

    // In plan mode the ticket is not opened; the script still gets something shaped like one.
    fn planned_result(&self, action: &ActionSpec, args: &Value) -> Value {
        match action.name {
            "open_ticket" => json!({"id": "(planned)", "title": args["title"], "status": "open"}),
            _ => Value::Null,
        }
    }
}
