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

mod actions;
mod api;
mod config;
pub mod models;

use std::sync::Arc;

use runbook_core::http::HttpRequest;
use runbook_core::{
    ActionError, ActionSpec, CallContext, ConfigError, Provider, ProviderConfig, ProviderDescriptor, async_trait,
};
use serde_json::{Value, json};

pub use actions::{
    ActiveSession, ActiveSessions, CreateUser, DeleteUser, FailedLogins, GetUser, LastSeenIdentity, ListUsers,
    UpdateUser,
};
use api::{Api, Subject};
pub use config::{DEFAULT_BASE_URL, DEFAULT_RATE_LIMIT};
use models::{FailedLogin, Identity, Session, User};

/// The namespace scripts use: `cloudflare::...`.
pub const NAMESPACE: &str = "cloudflare";

runbook_core::actions! {
    /// Every action of the `cloudflare` namespace.
    pub const ACTIONS for Cloudflare {
        ListUsers => list_users,
        GetUser => get_user,
        CreateUser => create_user,
        UpdateUser => update_user,
        DeleteUser => delete_user,
        ActiveSessions => active_sessions,
        ActiveSession => active_session,
        FailedLogins => failed_logins,
        LastSeenIdentity => last_seen_identity,
    }
}

const SETTINGS: &str = "CLOUDFLARE_API_TOKEN (or CLOUDFLARE_EMAIL + CLOUDFLARE_API_KEY), CLOUDFLARE_ACCOUNT_ID, \
CLOUDFLARE_BASE_URL; or [providers.cloudflare] with account_id, api_token (or api_email + api_key), base_url, \
rate_limit (default \"1200/300s\"), timeout";

runbook_core::inventory::submit! {
    ProviderDescriptor {
        namespace: NAMESPACE,
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

fn required<T>(value: Option<T>, what: &str) -> Result<T, ActionError> {
    value.ok_or_else(|| ActionError::invalid_response(format!("Cloudflare's answer has no {what}")))
}

fn non_empty<'a>(value: &'a str, name: &str) -> Result<&'a str, ActionError> {
    if value.trim().is_empty() {
        return Err(ActionError::invalid_args(format!("`{name}` must not be empty")));
    }
    Ok(value)
}

impl Cloudflare {
    async fn list_users(&self, ctx: &CallContext, args: ListUsers) -> Result<Vec<User>, ActionError> {
        let filters: Vec<(&str, String)> = [("email", args.email), ("name", args.name), ("search", args.search)]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect();
        let raw = self.api.all_pages(ctx, &filters).await?;
        raw.into_iter()
            .map(|u| {
                serde_json::from_value::<User>(u).map_err(|e| {
                    ActionError::invalid_response(format!("a user in the list is not the documented shape: {e}"))
                })
            })
            .collect()
    }

    async fn get_user(&self, ctx: &CallContext, args: GetUser) -> Result<User, ActionError> {
        let id = non_empty(&args.user_id, "user_id")?;
        let api = &self.api;
        let (user, _) = api
            .call::<User>(ctx, HttpRequest::get(api.users_path(&[id])), Subject::User(id))
            .await?;
        required(user, "user")
    }

    async fn create_user(&self, ctx: &CallContext, args: CreateUser) -> Result<User, ActionError> {
        let api = &self.api;
        let body = models::CreateUser {
            email: non_empty(&args.email, "email")?,
            name: args.name.as_deref(),
        };
        let request = HttpRequest::post(api.users_path(&[])).json(&body)?;
        let (user, _) = api.call::<User>(ctx, request, Subject::Users).await?;
        required(user, "user")
    }

    async fn update_user(&self, ctx: &CallContext, args: UpdateUser) -> Result<User, ActionError> {
        let api = &self.api;
        let id = non_empty(&args.user_id, "user_id")?;
        // The API wants both fields; fill in what the script left out from the user.
        let current = if args.email.is_none() || args.name.is_none() {
            let (user, _) = api
                .call::<User>(ctx, HttpRequest::get(api.users_path(&[id])), Subject::User(id))
                .await?;
            Some(required(user, "user")?)
        } else {
            None
        };
        let email = args
            .email
            .clone()
            .or_else(|| current.as_ref().and_then(|u| u.email.clone()))
            .ok_or_else(|| ActionError::invalid_response(format!("user {id} has no email to send back")))?;
        let name = args
            .name
            .clone()
            .or_else(|| current.as_ref().and_then(|u| u.name.clone()))
            .unwrap_or_default();
        let request = HttpRequest::put(api.users_path(&[id])).json(&models::UpdateUser {
            email: &email,
            name: &name,
        })?;
        let (user, _) = api.call::<User>(ctx, request, Subject::User(id)).await?;
        required(user, "user")
    }

    async fn delete_user(&self, ctx: &CallContext, args: DeleteUser) -> Result<(), ActionError> {
        let api = &self.api;
        let id = non_empty(&args.user_id, "user_id")?;
        api.call::<Value>(ctx, HttpRequest::delete(api.users_path(&[id])), Subject::User(id))
            .await?;
        Ok(())
    }

    async fn active_sessions(&self, ctx: &CallContext, args: ActiveSessions) -> Result<Vec<Session>, ActionError> {
        let api = &self.api;
        let id = non_empty(&args.user_id, "user_id")?;
        let request = HttpRequest::get(api.users_path(&[id, "active_sessions"]));
        let (sessions, _) = api.call::<Vec<Session>>(ctx, request, Subject::User(id)).await?;
        Ok(sessions.unwrap_or_default())
    }

    async fn active_session(&self, ctx: &CallContext, args: ActiveSession) -> Result<Identity, ActionError> {
        let api = &self.api;
        let id = non_empty(&args.user_id, "user_id")?;
        let nonce = non_empty(&args.nonce, "nonce")?;
        let request = HttpRequest::get(api.users_path(&[id, "active_sessions", nonce]));
        let (identity, _) = api.call::<Identity>(ctx, request, Subject::Session(id, nonce)).await?;
        required(identity, "session")
    }

    async fn failed_logins(&self, ctx: &CallContext, args: FailedLogins) -> Result<Vec<FailedLogin>, ActionError> {
        let api = &self.api;
        let id = non_empty(&args.user_id, "user_id")?;
        let request = HttpRequest::get(api.users_path(&[id, "failed_logins"]));
        let (failures, _) = api.call::<Vec<FailedLogin>>(ctx, request, Subject::User(id)).await?;
        Ok(failures.unwrap_or_default())
    }

    async fn last_seen_identity(&self, ctx: &CallContext, args: LastSeenIdentity) -> Result<Identity, ActionError> {
        let api = &self.api;
        let id = non_empty(&args.user_id, "user_id")?;
        let request = HttpRequest::get(api.users_path(&[id, "last_seen_identity"]));
        let (identity, _) = api.call::<Identity>(ctx, request, Subject::User(id)).await?;
        required(identity, "identity")
    }
}

#[async_trait]
impl Provider for Cloudflare {
    fn namespace(&self) -> &str {
        NAMESPACE
    }

    fn actions(&self) -> &[ActionSpec] {
        ACTIONS
    }

    async fn call(&self, ctx: &CallContext, action: &ActionSpec, args: Value) -> Result<Value, ActionError> {
        self.dispatch(ctx, action, args).await
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

#[cfg(test)]
mod tests {
    #[test]
    fn every_action_type_takes_what_its_spec_declares() {
        super::Cloudflare::check_action_types().unwrap_or_else(|e| panic!("{e}"));
    }
}
