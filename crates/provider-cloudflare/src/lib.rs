//! # runbook-provider-cloudflare
//!
//! The `cloudflare` namespace: Cloudflare Zero Trust (Access) users of one account — list, get,
//! create, update and delete users, and read their active sessions, failed logins and last seen
//! identity.
//!
//! Configure it with `[providers.cloudflare]` in `runbook.toml` (`account_id`, `api_token` or
//! `api_email` + `api_key`, `base_url`, `rate_limit`, `timeout`) or with the variables
//! Cloudflare's own SDKs read: `CLOUDFLARE_API_TOKEN` (or `CLOUDFLARE_EMAIL` +
//! `CLOUDFLARE_API_KEY`), `CLOUDFLARE_ACCOUNT_ID`, `CLOUDFLARE_BASE_URL`.
//!
//! Requests are paced at the documented budget (1200 per 5 minutes per token, `rate_limit`)
//! and by the API's own `Ratelimit` header; reads are retried on 429/5xx with `retry-after`
//! honoured; `create_user` is never resent after an ambiguous failure.

mod api;
mod config;
pub mod models;

use std::sync::Arc;

use runbook_core::http::HttpRequest;
use runbook_core::{
    ActionError, ActionSpec, CallContext, ConfigError, ParamSpec, ParamType, Provider, ProviderConfig,
    ProviderDescriptor, async_trait,
};
use serde::Serialize;
use serde_json::{Value, json};

use api::{Api, Subject};
pub use config::{DEFAULT_BASE_URL, DEFAULT_RATE_LIMIT};
use models::{CreateUser, FailedLogin, Identity, Session, UpdateUser, User};

const USER_ID: ParamSpec = ParamSpec::required("user_id", ParamType::String, "the user's id (a UUID)");

const LIST_PARAMS: &[ParamSpec] = &[
    ParamSpec::optional("email", ParamType::String, "only the user with this email"),
    ParamSpec::optional("name", ParamType::String, "only users whose name matches"),
    ParamSpec::optional(
        "search",
        ParamType::String,
        "only users whose email or name contains this",
    ),
];
const ONE_USER: &[ParamSpec] = &[USER_ID];
const CREATE_PARAMS: &[ParamSpec] = &[
    ParamSpec::required("email", ParamType::String, "the new user's email"),
    ParamSpec::optional("name", ParamType::String, "the new user's name"),
];
const UPDATE_PARAMS: &[ParamSpec] = &[
    USER_ID,
    ParamSpec::optional("name", ParamType::String, "the new name"),
    ParamSpec::optional(
        "email",
        ParamType::String,
        "the user's current email (the API does not change emails; read from the user when absent)",
    ),
];
const SESSION_PARAMS: &[ParamSpec] = &[
    USER_ID,
    ParamSpec::required(
        "nonce",
        ParamType::String,
        "the session's nonce (from active_sessions: metadata.nonce)",
    ),
];

/// Every action of the `cloudflare` namespace.
pub const ACTIONS: &[ActionSpec] = &[
    ActionSpec::read("list_users", "List the account's Zero Trust users (every page)")
        .params(LIST_PARAMS)
        .returns("array of User {id, email, name, access_seat, gateway_seat, active_device_count, last_successful_login, seat_uid, uid, created_at, updated_at}")
        .example(r#"let users = cloudflare::list_users(#{search: "example.com"});"#),
    ActionSpec::read("get_user", "Get one user")
        .params(ONE_USER)
        .returns("User")
        .example(r#"let u = cloudflare::get_user("2c8a3b7e-...");"#),
    ActionSpec::write("create_user", "Create a user")
        .params(CREATE_PARAMS)
        .idempotent(false)
        .returns("User (in plan mode: the would-be user with id \"(planned)\")")
        .example(r#"cloudflare::create_user(#{email: "ann@example.com", name: "Ann"})"#),
    ActionSpec::write("update_user", "Rename a user (the API keeps the email)")
        .params(UPDATE_PARAMS)
        .returns("User")
        .example(r#"cloudflare::update_user(u.id, #{name: "Ann Example"})"#),
    ActionSpec::destructive("delete_user", "Delete a user: revokes the user's seats and tokens")
        .params(ONE_USER)
        .returns("()")
        .example("cloudflare::delete_user(u.id)"),
    ActionSpec::read("active_sessions", "A user's active sessions")
        .params(ONE_USER)
        .returns("array of Session {expiration, name, metadata {apps, expires, iat, nonce, ttl}}")
        .example("let sessions = cloudflare::active_sessions(u.id);"),
    ActionSpec::read("active_session", "One active session of a user, with its identity")
        .params(SESSION_PARAMS)
        .returns("Identity with isActive")
        .example("cloudflare::active_session(u.id, sessions[0].metadata.nonce)"),
    ActionSpec::read("failed_logins", "A user's failed login attempts")
        .params(ONE_USER)
        .returns("array of FailedLogin {expiration, metadata {app_name, datetime, ray_id, user_email, ...}}")
        .example("let failures = cloudflare::failed_logins(u.id);"),
    ActionSpec::read("last_seen_identity", "The identity a user last presented")
        .params(ONE_USER)
        .returns("Identity {email, ip, geo {country}, idp, devicePosture, device_sessions, mtls_auth, ...}")
        .example("cloudflare::last_seen_identity(u.id).geo.country"),
];

const SETTINGS: &str = "CLOUDFLARE_API_TOKEN (or CLOUDFLARE_EMAIL + CLOUDFLARE_API_KEY), CLOUDFLARE_ACCOUNT_ID, \
CLOUDFLARE_BASE_URL; or [providers.cloudflare] with account_id, api_token (or api_email + api_key), base_url, \
rate_limit (default \"1200/300s\"), timeout";

runbook_core::inventory::submit! {
    ProviderDescriptor {
        namespace: "cloudflare",
        summary: "Cloudflare Zero Trust (Access) users",
        actions: ACTIONS,
        settings: SETTINGS,
        build,
    }
}

fn build(config: &ProviderConfig) -> Result<Arc<dyn Provider>, ConfigError> {
    Ok(Arc::new(Cloudflare::from_config(config)?))
}

/// The Cloudflare provider.
#[derive(Debug)]
pub struct Cloudflare {
    api: Api,
}

impl Cloudflare {
    /// Builds the provider from its settings.
    pub fn from_config(config: &ProviderConfig) -> Result<Self, ConfigError> {
        Ok(Cloudflare {
            api: config::api_from_config(config)?,
        })
    }
}

fn arg<'a>(args: &'a Value, name: &str) -> Result<&'a str, ActionError> {
    match args.get(name).and_then(Value::as_str) {
        Some(s) if !s.trim().is_empty() => Ok(s),
        _ => Err(ActionError::invalid_args(format!(
            "`{name}` must be a non-empty string"
        ))),
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<Value, ActionError> {
    serde_json::to_value(value).map_err(|e| ActionError::invalid_response(format!("cannot convert the answer: {e}")))
}

fn required<T>(value: Option<T>, what: &str) -> Result<T, ActionError> {
    value.ok_or_else(|| ActionError::invalid_response(format!("Cloudflare's answer has no {what}")))
}

#[async_trait]
impl Provider for Cloudflare {
    fn namespace(&self) -> &str {
        "cloudflare"
    }

    fn thread_local_calls(&self) -> bool {
        // Everything goes through HttpClient.
        true
    }

    fn actions(&self) -> &[ActionSpec] {
        ACTIONS
    }

    async fn call(&self, ctx: &CallContext, action: &ActionSpec, args: Value) -> Result<Value, ActionError> {
        let api = &self.api;
        match action.name {
            "list_users" => {
                let filters: Vec<(&str, String)> = ["email", "name", "search"]
                    .into_iter()
                    .filter_map(|k| args.get(k).and_then(Value::as_str).map(|v| (k, v.to_owned())))
                    .collect();
                let raw = api.all_pages(ctx, &filters).await?;
                let users = raw
                    .into_iter()
                    .map(|u| {
                        serde_json::from_value::<User>(u).map_err(|e| {
                            ActionError::invalid_response(format!(
                                "a user in the list is not the documented shape: {e}"
                            ))
                        })
                    })
                    .collect::<Result<Vec<User>, _>>()?;
                to_json(&users)
            }
            "get_user" => {
                let id = arg(&args, "user_id")?;
                let (user, _) = api
                    .call::<User>(ctx, HttpRequest::get(api.users_path(&[id])), Subject::User(id))
                    .await?;
                to_json(&required(user, "user")?)
            }
            "create_user" => {
                let body = CreateUser {
                    email: arg(&args, "email")?,
                    name: args.get("name").and_then(Value::as_str),
                };
                let request = HttpRequest::post(api.users_path(&[])).json(&body)?;
                let (user, _) = api.call::<User>(ctx, request, Subject::Users).await?;
                to_json(&required(user, "user")?)
            }
            "update_user" => {
                let id = arg(&args, "user_id")?;
                let given_email = args.get("email").and_then(Value::as_str);
                let given_name = args.get("name").and_then(Value::as_str);
                // The API wants both fields; fill in what the script left out from the user.
                let current = if given_email.is_none() || given_name.is_none() {
                    let (user, _) = api
                        .call::<User>(ctx, HttpRequest::get(api.users_path(&[id])), Subject::User(id))
                        .await?;
                    Some(required(user, "user")?)
                } else {
                    None
                };
                let email = given_email
                    .map(str::to_owned)
                    .or_else(|| current.as_ref().and_then(|u| u.email.clone()))
                    .ok_or_else(|| ActionError::invalid_response(format!("user {id} has no email to send back")))?;
                let name = given_name
                    .map(str::to_owned)
                    .or_else(|| current.as_ref().and_then(|u| u.name.clone()))
                    .unwrap_or_default();
                let request = HttpRequest::put(api.users_path(&[id])).json(&UpdateUser {
                    email: &email,
                    name: &name,
                })?;
                let (user, _) = api.call::<User>(ctx, request, Subject::User(id)).await?;
                to_json(&required(user, "user")?)
            }
            "delete_user" => {
                let id = arg(&args, "user_id")?;
                api.call::<Value>(ctx, HttpRequest::delete(api.users_path(&[id])), Subject::User(id))
                    .await?;
                Ok(Value::Null)
            }
            "active_sessions" => {
                let id = arg(&args, "user_id")?;
                let request = HttpRequest::get(api.users_path(&[id, "active_sessions"]));
                let (sessions, _) = api.call::<Vec<Session>>(ctx, request, Subject::User(id)).await?;
                to_json(&sessions.unwrap_or_default())
            }
            "active_session" => {
                let id = arg(&args, "user_id")?;
                let nonce = arg(&args, "nonce")?;
                let request = HttpRequest::get(api.users_path(&[id, "active_sessions", nonce]));
                let (identity, _) = api.call::<Identity>(ctx, request, Subject::Session(id, nonce)).await?;
                to_json(&required(identity, "session")?)
            }
            "failed_logins" => {
                let id = arg(&args, "user_id")?;
                let request = HttpRequest::get(api.users_path(&[id, "failed_logins"]));
                let (failures, _) = api.call::<Vec<FailedLogin>>(ctx, request, Subject::User(id)).await?;
                to_json(&failures.unwrap_or_default())
            }
            "last_seen_identity" => {
                let id = arg(&args, "user_id")?;
                let request = HttpRequest::get(api.users_path(&[id, "last_seen_identity"]));
                let (identity, _) = api.call::<Identity>(ctx, request, Subject::User(id)).await?;
                to_json(&required(identity, "identity")?)
            }
            other => Err(ActionError::invalid_args(format!("cloudflare has no action `{other}`"))),
        }
    }

    fn planned_result(&self, action: &ActionSpec, args: &Value) -> Value {
        match action.name {
            "create_user" => json!({"id": "(planned)", "email": args.get("email"), "name": args.get("name")}),
            "update_user" => {
                let mut user = json!({"id": args.get("user_id")});
                for key in ["email", "name"] {
                    if let Some(v) = args.get(key) {
                        user[key] = v.clone();
                    }
                }
                user
            }
            _ => Value::Null,
        }
    }
}
