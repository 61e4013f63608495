//! # runbook-provider-privx
//!
//! The `privx` namespace: PrivX role-store users — find and read users, their roles, settings
//! and MFA; grant and revoke roles; enable, disable and reset MFA.
//!
//! Configure it with `[providers.privx]` in `runbook.toml` (`base_url`, `api_client_id`,
//! `api_client_secret`, `oauth_client_id` (default `privx-external`), `oauth_client_secret`,
//! `ca_cert`, `rate_limit`, `timeout`) or with the variables PrivX's own SDKs read:
//! `PRIVX_API_BASE_URL`, `PRIVX_API_CLIENT_ID`, `PRIVX_API_CLIENT_SECRET`,
//! `PRIVX_API_OAUTH_CLIENT_ID`, `PRIVX_API_OAUTH_CLIENT_SECRET`, `PRIVX_API_CA_CERT`.
//!
//! Authentication is the OAuth2 password grant; the token is cached, renewed shortly before it
//! expires (one renewal shared by concurrent calls), and renewed once more after a 401. A
//! private CA (`ca_cert`) is trusted for this provider only; a cookie jar keeps an HA
//! deployment's node affinity. The TOTP secret in `mfa.seed` never leaves the provider.

mod actions;
mod api;
mod auth;
mod config;
pub mod models;

use std::sync::Arc;

use runbook_core::http::{HttpRequest, path};
use runbook_core::{
    ActionError, ActionSpec, CallContext, ConfigError, Provider, ProviderConfig, ProviderDescriptor, async_trait,
};
use serde::Serialize;
use serde_json::{Value, json};

pub use actions::{
    DisableMfa, EnableMfa, FindUser, GetUser, GetUserRoles, GetUserSettings, GrantRole, OneOrMany, ResetMfa,
    ResolveUser, RevokeRole, SearchUsers, SetUserRoles, SetUserSettings,
};
use api::{Api, Subject, is_uuid};
pub use config::DEFAULT_OAUTH_CLIENT_ID;
use models::{Page, Role, SearchBody, User};

/// The page size searches ask for: the API's maximum.
const PAGE_SIZE: u64 = 1000;

const USERS: &str = "/role-store/api/v1/users";
const ROLES: &str = "/role-store/api/v1/roles";

/// The namespace scripts use: `privx::...`.
pub const NAMESPACE: &str = "privx";

runbook_core::actions! {
    /// Every action of the `privx` namespace.
    pub const ACTIONS for Privx {
        GetUser => get_user_action,
        SearchUsers => search_users,
        FindUser => find_user_action,
        ResolveUser => resolve_user,
        GetUserSettings => get_user_settings,
        SetUserSettings => set_user_settings,
        GetUserRoles => get_user_roles,
        SetUserRoles => set_user_roles,
        GrantRole => grant_role,
        RevokeRole => revoke_role,
        EnableMfa => enable_mfa,
        DisableMfa => disable_mfa,
        ResetMfa => reset_mfa,
    }
}

const SETTINGS: &str = "PRIVX_API_BASE_URL, PRIVX_API_CLIENT_ID, PRIVX_API_CLIENT_SECRET, PRIVX_API_OAUTH_CLIENT_ID \
(default privx-external), PRIVX_API_OAUTH_CLIENT_SECRET, PRIVX_API_CA_CERT; or [providers.privx] with base_url, \
api_client_id, api_client_secret, oauth_client_id, oauth_client_secret, ca_cert, rate_limit, timeout";

runbook_core::inventory::submit! {
    ProviderDescriptor {
        namespace: NAMESPACE,
        summary: "PrivX role-store users, roles and MFA",
        actions: ACTIONS,
        settings: SETTINGS,
        build,
    }
}

fn build(config: &ProviderConfig) -> Result<Arc<dyn Provider>, ConfigError> {
    Ok(Arc::new(Privx::from_config(config)?))
}

/// The PrivX provider.
#[derive(Debug)]
pub struct Privx {
    api: Api,
}

impl Privx {
    /// Builds the provider from its settings.
    pub fn from_config(config: &ProviderConfig) -> Result<Self, ConfigError> {
        Ok(Privx {
            api: config::api_from_config(config)?,
        })
    }

    async fn get_user(&self, ctx: &CallContext, id: &str) -> Result<User, ActionError> {
        let mut user: User = self
            .api
            .json(ctx, HttpRequest::get(user_path(&[id])), Subject::User(id))
            .await?;
        user.redact_seed();
        Ok(user)
    }

    async fn search(&self, ctx: &CallContext, body: &SearchBody) -> Result<Vec<User>, ActionError> {
        let mut users = Vec::new();
        let mut offset = 0_u64;
        loop {
            let request = HttpRequest::post(format!("{USERS}/search"))
                .query("offset", offset)
                .query("limit", PAGE_SIZE)
                .json(body)?
                .read_only();
            let page: Page<User> = self.api.json(ctx, request, Subject::Other).await?;
            let items = page.items.unwrap_or_default();
            let received = items.len() as u64;
            users.extend(items.into_iter().map(|mut u| {
                u.redact_seed();
                u
            }));
            offset += received;
            let total = page.count.unwrap_or(0);
            if received < PAGE_SIZE || offset >= total {
                break;
            }
        }
        Ok(users)
    }

    async fn find_user(&self, ctx: &CallContext, query: &str) -> Result<Option<User>, ActionError> {
        if is_uuid(query) {
            return match self.get_user(ctx, query).await {
                Ok(user) => Ok(Some(user)),
                Err(e) if e.status == Some(404) => Ok(None),
                Err(e) => Err(e),
            };
        }
        let hits = self
            .search(
                ctx,
                &SearchBody {
                    keywords: Some(query.to_owned()),
                    ..SearchBody::default()
                },
            )
            .await?;
        let wanted = query.to_lowercase();
        let same = |field: &Option<String>| field.as_deref().is_some_and(|v| v.to_lowercase() == wanted);
        let mut matches: Vec<User> = Vec::new();
        for user in hits {
            if (same(&user.email) || same(&user.principal)) && !matches.iter().any(|m| m.id == user.id) {
                matches.push(user);
            }
        }
        match matches.len() {
            0 => Ok(None),
            1 => Ok(matches.pop()),
            n => {
                let candidates: Vec<String> = matches
                    .iter()
                    .map(|u| {
                        format!(
                            "{} (source {}, id {})",
                            u.principal.as_deref().unwrap_or("?"),
                            u.source.as_deref().unwrap_or("?"),
                            u.id.as_deref().unwrap_or("?")
                        )
                    })
                    .collect();
                Err(ActionError::api(
                    409,
                    format!(
                        "\"{query}\" is ambiguous: it matches {n} PrivX users: {}; use the user id instead",
                        candidates.join(", ")
                    ),
                )
                .with_code("AMBIGUOUS")
                .with_field("candidates", to_json(&matches)?))
            }
        }
    }

    async fn user_roles(&self, ctx: &CallContext, id: &str) -> Result<Vec<Role>, ActionError> {
        let page: Page<Role> = self
            .api
            .json(ctx, HttpRequest::get(user_path(&[id, "roles"])), Subject::User(id))
            .await?;
        Ok(page.items.unwrap_or_default())
    }

    async fn put_roles(&self, ctx: &CallContext, id: &str, roles: &[Value]) -> Result<(), ActionError> {
        let request = HttpRequest::put(user_path(&[id, "roles"])).json(roles)?;
        self.api.send(ctx, request, Subject::User(id)).await?;
        Ok(())
    }

    /// A role by id, or by exact name from the role store.
    async fn role(&self, ctx: &CallContext, wanted: &str) -> Result<Role, ActionError> {
        let page: Page<Role> = self.api.json(ctx, HttpRequest::get(ROLES), Subject::Other).await?;
        let roles = page.items.unwrap_or_default();
        let found = if is_uuid(wanted) {
            roles.iter().find(|r| r.id.as_deref() == Some(wanted))
        } else {
            roles.iter().find(|r| r.name.as_deref() == Some(wanted))
        };
        match found {
            Some(role) => Ok(role.clone()),
            None => {
                let names: Vec<&str> = roles.iter().filter_map(|r| r.name.as_deref()).collect();
                Err(ActionError::invalid_args(format!(
                    "PrivX has no role \"{wanted}\"; roles: {}",
                    names.join(", ")
                )))
            }
        }
    }

    /// Grants or revokes one explicit role: read the user's roles, change the explicit set, write
    /// it back — or send nothing when it would not change.
    async fn change_role(&self, ctx: &CallContext, id: &str, role: &str, grant: bool) -> Result<Value, ActionError> {
        let id = non_empty(id, "user_id")?;
        let role = self.role(ctx, non_empty(role, "role")?).await?;
        let role_id = role.id.clone().unwrap_or_default();
        let current = self.user_roles(ctx, id).await?;
        // Mapped (implicit-only) roles are not part of the explicit set and must not be sent back.
        let explicit: Vec<&Role> = current.iter().filter(|r| r.explicit.unwrap_or(true)).collect();
        let held = explicit.iter().any(|r| r.id.as_deref() == Some(role_id.as_str()));
        let mut next: Vec<Value> = Vec::new();
        for r in &explicit {
            if !grant && r.id.as_deref() == Some(role_id.as_str()) {
                continue;
            }
            next.push(to_json(r)?);
        }
        let changed = grant != held;
        if grant && changed {
            next.push(json!({"id": role_id, "name": role.name}));
        }
        if changed {
            self.put_roles(ctx, id, &next).await?;
        }
        Ok(json!({
            "changed": changed,
            "role": {"id": role.id, "name": role.name},
            "roles": next,
        }))
    }

    async fn mfa(&self, ctx: &CallContext, operation: &str, ids: OneOrMany) -> Result<(), ActionError> {
        let ids = ids.into_vec();
        if ids.is_empty() {
            return Ok(());
        }
        // The operation sets a state: resending it is harmless, and the action's spec says so.
        let request = HttpRequest::post(format!("{USERS}/mfa/{operation}")).json(&ids)?;
        self.api.send(ctx, request, Subject::Other).await?;
        Ok(())
    }

    async fn get_user_action(&self, ctx: &CallContext, args: GetUser) -> Result<User, ActionError> {
        self.get_user(ctx, non_empty(&args.user_id, "user_id")?).await
    }

    async fn search_users(&self, ctx: &CallContext, args: SearchUsers) -> Result<Vec<User>, ActionError> {
        let body = SearchBody {
            keywords: args.keywords,
            source: args.source,
            user_id: args.user_id.map(OneOrMany::into_vec),
        };
        self.search(ctx, &body).await
    }

    async fn find_user_action(&self, ctx: &CallContext, args: FindUser) -> Result<Option<User>, ActionError> {
        self.find_user(ctx, non_empty(&args.query, "query")?).await
    }

    async fn resolve_user(&self, ctx: &CallContext, args: ResolveUser) -> Result<User, ActionError> {
        let id = non_empty(&args.user_id, "user_id")?;
        let mut user: User = self
            .api
            .json(ctx, HttpRequest::get(user_path(&[id, "resolve"])), Subject::User(id))
            .await?;
        user.redact_seed();
        Ok(user)
    }

    async fn get_user_settings(&self, ctx: &CallContext, args: GetUserSettings) -> Result<Value, ActionError> {
        let id = non_empty(&args.user_id, "user_id")?;
        self.api
            .json::<Value>(ctx, HttpRequest::get(user_path(&[id, "settings"])), Subject::User(id))
            .await
    }

    async fn set_user_settings(&self, ctx: &CallContext, args: SetUserSettings) -> Result<Option<User>, ActionError> {
        let id = non_empty(&args.user_id, "user_id")?;
        let request = HttpRequest::put(user_path(&[id, "settings"])).json(&args.settings)?;
        let response = self.api.send(ctx, request, Subject::User(id)).await?;
        if response.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        let mut user: User = api::parse(&response)?;
        user.redact_seed();
        Ok(Some(user))
    }

    async fn get_user_roles(&self, ctx: &CallContext, args: GetUserRoles) -> Result<Vec<Role>, ActionError> {
        self.user_roles(ctx, non_empty(&args.user_id, "user_id")?).await
    }

    async fn set_user_roles(&self, ctx: &CallContext, args: SetUserRoles) -> Result<(), ActionError> {
        let id = non_empty(&args.user_id, "user_id")?;
        let roles: Vec<Value> = args
            .roles
            .into_iter()
            .map(|r| match r {
                Value::String(role_id) => json!({"id": role_id}),
                other => other,
            })
            .collect();
        if let Some(bad) = roles.iter().find(|r| r.get("id").and_then(Value::as_str).is_none()) {
            return Err(ActionError::invalid_args(format!(
                "every role needs an `id`; got {bad}"
            )));
        }
        self.put_roles(ctx, id, &roles).await
    }

    async fn grant_role(&self, ctx: &CallContext, args: GrantRole) -> Result<Value, ActionError> {
        self.change_role(ctx, &args.user_id, &args.role, true).await
    }

    async fn revoke_role(&self, ctx: &CallContext, args: RevokeRole) -> Result<Value, ActionError> {
        self.change_role(ctx, &args.user_id, &args.role, false).await
    }

    async fn enable_mfa(&self, ctx: &CallContext, args: EnableMfa) -> Result<(), ActionError> {
        self.mfa(ctx, "enable", args.ids).await
    }

    async fn disable_mfa(&self, ctx: &CallContext, args: DisableMfa) -> Result<(), ActionError> {
        self.mfa(ctx, "disable", args.ids).await
    }

    async fn reset_mfa(&self, ctx: &CallContext, args: ResetMfa) -> Result<(), ActionError> {
        self.mfa(ctx, "reset", args.ids).await
    }
}

fn non_empty<'a>(value: &'a str, name: &str) -> Result<&'a str, ActionError> {
    if value.trim().is_empty() {
        return Err(ActionError::invalid_args(format!("`{name}` must not be empty")));
    }
    Ok(value)
}

fn user_path(rest: &[&str]) -> String {
    format!("{USERS}{}", path(rest))
}

fn to_json<T: Serialize>(value: &T) -> Result<Value, ActionError> {
    serde_json::to_value(value).map_err(|e| ActionError::invalid_response(format!("cannot convert the answer: {e}")))
}

#[async_trait]
impl Provider for Privx {
    fn namespace(&self) -> &str {
        NAMESPACE
    }

    fn actions(&self) -> &[ActionSpec] {
        ACTIONS
    }

    async fn call(&self, ctx: &CallContext, action: &ActionSpec, args: Value) -> Result<Value, ActionError> {
        self.dispatch(ctx, action, args).await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_action_type_takes_what_its_spec_declares() {
        super::Privx::check_action_types().unwrap_or_else(|e| panic!("{e}"));
    }
}
