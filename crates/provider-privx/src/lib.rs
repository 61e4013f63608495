//! # runbook-provider-privx
//!
//! The `privx` namespace:
//! - **users** — find, search and read role-store users, their settings and effective roles;
//! - **roles** — list every role (all pages), get one by id, resolve names, list a role's
//!   members; grant a role permanently, for a time window (`#{from, to}`) or floating
//!   (`#{floating_hours}`), and revoke it;
//! - **MFA** — enable, disable and reset;
//! - **sessions and connections** — list a user's sessions, end them, end the user's live
//!   connections;
//! - **SSH authorized keys** — list a user's keys, delete one;
//! - **sources** — list the user and host directories, ask PrivX to refresh them.
//!
//! A role named in a call is read by id (`GET roles/{id}`) or resolved by exact name
//! (`POST roles/resolve`) — never looked for in a page of the role list. Granting or revoking is
//! read-modify-write of the user's explicit roles: the user's other explicit grants go back
//! with their grant type and window unchanged, mapped-only roles are never sent, and every role
//! is sent with `explicit: true` and its `grant_type`. After a grant the user's roles are read
//! back: PrivX must show the role explicit and with the grant as sent, else the call fails
//! naming both (a PrivX that ignored a time window would otherwise grant for ever).
//!
//! Where PrivX's documentation is silent the provider does not depend on a guess: lists whose
//! maximum page size is undocumented (members, sessions, authorized keys) are read 50 at a time,
//! and paging ends at the total or an empty page, never at a short one. The unit of a floating
//! grant's `floating_length` is undocumented; hours are assumed (PrivX's example is 24).
//! Deleting an authorized key that is already gone answers `#{deleted: false}` (the user must
//! exist), so a repeated offboarding step succeeds.
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
mod grant;
pub mod models;
mod roles;

use std::sync::Arc;

use runbook_core::http::{HttpRequest, path};
use runbook_core::{
    ActionError, ActionSpec, CallContext, ConfigError, Provider, ProviderConfig, ProviderDescriptor, async_trait,
};
use serde::Serialize;
use serde_json::{Value, json};

pub use actions::{
    DeleteAuthorizedKey, DisableMfa, EnableMfa, FindUser, GetRole, GetUser, GetUserRoles, GetUserSettings, GrantRole,
    ListAuthorizedKeys, ListRoles, ListSources, OneOrMany, RefreshSources, ResetMfa, ResolveRoles, ResolveUser,
    RevokeRole, RoleMembers, SearchUsers, SetUserRoles, SetUserSettings, TerminateUserConnections,
    TerminateUserSessions, UserSessions,
};
use api::{Api, Subject, is_uuid};
pub use config::DEFAULT_OAUTH_CLIENT_ID;
pub use grant::Grant;
use models::{AuthorizedKey, Page, Role, SearchBody, Session, Source, User};

/// The page size searches ask for: the API's maximum.
const PAGE_SIZE: u64 = 1000;

const USERS: &str = "/role-store/api/v1/users";
const SOURCES: &str = "/role-store/api/v1/sources";
const SESSION_STORAGE: &str = "/auth/api/v1/sessionstorage";

/// The page size for lists whose maximum PrivX does not document (sessions, authorized keys):
/// the default of every documented PrivX list.
const SMALL_PAGE: u64 = 50;

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
        ListRoles => list_roles,
        GetRole => get_role,
        ResolveRoles => resolve_roles,
        RoleMembers => role_members,
        EnableMfa => enable_mfa,
        DisableMfa => disable_mfa,
        ResetMfa => reset_mfa,
        UserSessions => user_sessions,
        TerminateUserSessions => terminate_user_sessions,
        TerminateUserConnections => terminate_user_connections,
        ListAuthorizedKeys => authorized_keys,
        DeleteAuthorizedKey => delete_authorized_key,
        ListSources => list_sources,
        RefreshSources => refresh_sources,
    }
}

const SETTINGS: &str = "PRIVX_API_BASE_URL, PRIVX_API_CLIENT_ID, PRIVX_API_CLIENT_SECRET, PRIVX_API_OAUTH_CLIENT_ID \
(default privx-external), PRIVX_API_OAUTH_CLIENT_SECRET, PRIVX_API_CA_CERT; or [providers.privx] with base_url, \
api_client_id, api_client_secret, oauth_client_id, oauth_client_secret, ca_cert, rate_limit, timeout";

runbook_core::inventory::submit! {
    ProviderDescriptor {
        namespace: NAMESPACE,
        summary: "PrivX users, roles and grants, MFA, sessions, connections, SSH keys and sources",
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
        let request = || Ok(HttpRequest::post(format!("{USERS}/search")).json(body)?.read_only());
        let mut users: Vec<User> = self.api.all_pages(ctx, request, PAGE_SIZE, Subject::Other).await?;
        users.iter_mut().for_each(User::redact_seed);
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
        // PrivX documents `explicit` as defaulting to false: a handle sent without it might not
        // count as a grant at all. Say it, and the grant type, unless the script did.
        let roles: Vec<Value> = roles
            .into_iter()
            .map(|mut role| {
                if let Value::Object(handle) = &mut role {
                    handle.entry("explicit").or_insert(Value::Bool(true));
                    handle
                        .entry("grant_type")
                        .or_insert_with(|| Value::String("PERMANENT".to_owned()));
                }
                role
            })
            .collect();
        self.put_roles(ctx, id, &roles).await
    }

    async fn grant_role(&self, ctx: &CallContext, args: GrantRole) -> Result<Value, ActionError> {
        let grant = Grant::from_options(args.from.as_ref(), args.to.as_ref(), args.floating_hours)?;
        self.change_role(ctx, &args.user_id, &args.role, Some(grant)).await
    }

    async fn revoke_role(&self, ctx: &CallContext, args: RevokeRole) -> Result<Value, ActionError> {
        self.change_role(ctx, &args.user_id, &args.role, None).await
    }

    async fn list_roles(&self, ctx: &CallContext, _: ListRoles) -> Result<Vec<Role>, ActionError> {
        self.all_roles(ctx).await
    }

    async fn get_role(&self, ctx: &CallContext, args: GetRole) -> Result<Role, ActionError> {
        self.role_by_id(ctx, non_empty(&args.role_id, "role_id")?).await
    }

    async fn resolve_roles(&self, ctx: &CallContext, args: ResolveRoles) -> Result<Vec<Role>, ActionError> {
        self.resolve(ctx, &args.names.into_vec()).await
    }

    async fn role_members(&self, ctx: &CallContext, args: RoleMembers) -> Result<Vec<User>, ActionError> {
        self.members(ctx, &args.role).await
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

    async fn user_sessions(&self, ctx: &CallContext, args: UserSessions) -> Result<Vec<Session>, ActionError> {
        let id = non_empty(&args.user_id, "user_id")?;
        let request = || {
            Ok(HttpRequest::get(format!(
                "{SESSION_STORAGE}{}",
                path(&["users", id, "sessions"])
            )))
        };
        self.api.all_pages(ctx, request, SMALL_PAGE, Subject::User(id)).await
    }

    async fn terminate_user_sessions(&self, ctx: &CallContext, args: TerminateUserSessions) -> Result<(), ActionError> {
        let id = non_empty(&args.user_id, "user_id")?;
        let request = HttpRequest::post(format!(
            "{SESSION_STORAGE}{}",
            path(&["users", id, "sessions", "terminate"])
        ));
        self.api.send(ctx, request, Subject::User(id)).await?;
        Ok(())
    }

    async fn terminate_user_connections(
        &self,
        ctx: &CallContext,
        args: TerminateUserConnections,
    ) -> Result<(), ActionError> {
        let id = non_empty(&args.user_id, "user_id")?;
        let request = HttpRequest::post(format!("/connection-manager/api/v1/terminate{}", path(&["user", id])));
        self.api.send(ctx, request, Subject::User(id)).await?;
        Ok(())
    }

    async fn keys_of(&self, ctx: &CallContext, user_id: &str) -> Result<Vec<AuthorizedKey>, ActionError> {
        let request = || Ok(HttpRequest::get(user_path(&[user_id, "authorizedkeys"])));
        self.api
            .all_pages(ctx, request, SMALL_PAGE, Subject::User(user_id))
            .await
    }

    async fn authorized_keys(
        &self,
        ctx: &CallContext,
        args: ListAuthorizedKeys,
    ) -> Result<Vec<AuthorizedKey>, ActionError> {
        self.keys_of(ctx, non_empty(&args.user_id, "user_id")?).await
    }

    /// A 404 is "already gone" when the user exists and does not list the key (so a repeated
    /// delete succeeds); an unknown user stays an error.
    async fn delete_authorized_key(&self, ctx: &CallContext, args: DeleteAuthorizedKey) -> Result<Value, ActionError> {
        let id = non_empty(&args.user_id, "user_id")?;
        let key = non_empty(&args.key_id, "key_id")?;
        let request = HttpRequest::delete(user_path(&[id, "authorizedkeys", key]));
        match self.api.send(ctx, request, Subject::Other).await {
            Ok(_) => Ok(json!({"deleted": true})),
            Err(e) if e.status == Some(404) => {
                let keys = self.keys_of(ctx, id).await?;
                if keys.iter().any(|k| k.id.as_deref() == Some(key)) {
                    return Err(e);
                }
                Ok(json!({"deleted": false}))
            }
            Err(e) => Err(e),
        }
    }

    async fn list_sources(&self, ctx: &CallContext, _: ListSources) -> Result<Vec<Source>, ActionError> {
        let page: Page<Source> = self.api.json(ctx, HttpRequest::get(SOURCES), Subject::Other).await?;
        Ok(page.items.unwrap_or_default())
    }

    async fn refresh_sources(&self, ctx: &CallContext, args: RefreshSources) -> Result<(), ActionError> {
        let ids = args.ids.into_vec();
        if ids.is_empty() {
            return Ok(());
        }
        let request = HttpRequest::post(format!("{SOURCES}/refresh")).json(&ids)?;
        self.api.send(ctx, request, Subject::Other).await?;
        Ok(())
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

    /// For the policy: a directory (for `refresh_sources`) by name; any other id is a user, with
    /// its email, principal and roles (read from the user's roles when the record leaves them out).
    async fn identify(&self, ctx: &CallContext, action: &ActionSpec, id: &str) -> Result<Option<Value>, ActionError> {
        if action.name == "refresh_sources" {
            let sources = self.list_sources(ctx, ListSources {}).await?;
            return Ok(sources
                .into_iter()
                .find(|s| s.id.as_deref() == Some(id))
                .map(|s| json!({"id": id, "name": s.name, "roles": []})));
        }
        let mut user = match self.get_user(ctx, id).await {
            Ok(user) => user,
            Err(e) if e.status == Some(404) => return Ok(None),
            Err(e) => return Err(e),
        };
        if user.roles.is_none() {
            user.roles = Some(self.user_roles(ctx, id).await?);
        }
        let mut value = to_json(&user)?;
        value["id"] = Value::String(id.to_owned());
        Ok(Some(value))
    }

    fn planned_result(&self, action: &ActionSpec, args: &Value) -> Value {
        match action.name {
            "grant_role" | "revoke_role" => {
                let role = args.get("role").and_then(Value::as_str).unwrap_or_default();
                let (id, name) = if is_uuid(role) {
                    (Some(role), None)
                } else {
                    (None, Some(role))
                };
                json!({"changed": true, "role": {"id": id, "name": name}, "roles": Value::Null})
            }
            "delete_authorized_key" => json!({"deleted": true}),
            _ => Value::Null,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_action_type_takes_what_its_spec_declares() {
        super::Privx::check_action_types().unwrap_or_else(|e| panic!("{e}"));
    }
}
