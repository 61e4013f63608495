//! # runbook-provider-cloudflare
//!
//! The `cloudflare` namespace: Cloudflare Zero Trust (Access) of one account.
//!
//! - Users: list, get, create, update and delete them, and read their active sessions, failed
//!   logins and last seen identity.
//! - The Access authentication log: `access_requests` reads every row of a window in a handful
//!   of large pages (the log has no `result_info`: pages are followed until a short one, rows
//!   deduplicated on `ray_id` + `created_at`, `until` pinned to the call's start, and the page
//!   size stepped down from 1000 when the API refuses it). `failed_logins_since` reads every
//!   user's failures from it in a few requests instead of one per user, keeping only rows with
//!   `allowed == false` whatever the API's undocumented `allowed` filter does; when the log
//!   refuses the credentials (its API documents only the global key) it falls back to one
//!   request per user and says so in the run's log.
//! - Offboarding without deleting: `revoke_user` ends every Access session of a user,
//!   `update_seats` / `free_seats` release their seats.
//! - Access groups: list, get, create, update (a full replace; what the script leaves out is
//!   read back first) and delete them, and `add_to_group` / `remove_from_group` an email rule
//!   (read, edit `include`, replace; nothing is sent when nothing changes).
//!
//! Configure it with `[providers.cloudflare]` in `runbook.toml` (`account_id`, `api_token` or
//! `api_email` + `api_key`, `base_url`, `rate_limit`, `timeout`) or with the variables
//! Cloudflare's own SDKs read: `CLOUDFLARE_API_TOKEN` (or `CLOUDFLARE_EMAIL` +
//! `CLOUDFLARE_API_KEY`), `CLOUDFLARE_ACCOUNT_ID`, `CLOUDFLARE_BASE_URL`.
//!
//! Requests are paced at the documented budget (1200 per 5 minutes per token, `rate_limit`)
//! and by the API's own `Ratelimit` header; reads are retried on 429/5xx with `retry-after`
//! honoured; `create_user` is never resent after an ambiguous failure.

mod access_log;
mod actions;
mod api;
mod config;
mod failed_logins;
mod groups;
pub mod models;

use std::collections::HashMap;
use std::sync::Arc;

use runbook_core::http::{HttpRequest, Method};
use runbook_core::{
    ActionError, ActionSpec, CallContext, ConfigError, Probed, Provider, ProviderConfig, ProviderDescriptor,
    async_trait,
};
use serde_json::{Value, json};

pub use access_log::Time;
use access_log::{AccessLog, LogQuery};
pub use actions::{
    AccessRequests, ActiveSession, ActiveSessions, AddToGroup, CreateGroup, CreateUser, DeleteGroup, DeleteUser,
    FailedLogins, FailedLoginsSince, FreeSeats, GetGroup, GetUser, LastSeenIdentity, ListGroups, ListUsers,
    RemoveFromGroup, RevokeUser, UpdateGroup, UpdateSeats, UpdateUser,
};
use api::{Api, Collection, Subject};
pub use config::{DEFAULT_BASE_URL, DEFAULT_RATE_LIMIT};
use models::{AccessRequest, FailedLogin, Group, Identity, Seat, SeatUpdate, Session, User};

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
        AccessRequests => access_requests,
        FailedLoginsSince => failed_logins_since,
        RevokeUser => revoke_user,
        UpdateSeats => update_seats,
        FreeSeats => free_seats,
        ListGroups => list_groups,
        GetGroup => get_group,
        CreateGroup => create_group,
        UpdateGroup => update_group,
        DeleteGroup => delete_group,
        AddToGroup => add_to_group,
        RemoveFromGroup => remove_from_group,
    }
}

const SETTINGS: &str = "CLOUDFLARE_API_TOKEN (or CLOUDFLARE_EMAIL + CLOUDFLARE_API_KEY), CLOUDFLARE_ACCOUNT_ID, \
CLOUDFLARE_BASE_URL; or [providers.cloudflare] with account_id, api_token (or api_email + api_key), base_url, \
rate_limit (default \"1200/300s\"), timeout";

runbook_core::inventory::submit! {
    ProviderDescriptor {
        namespace: NAMESPACE,
        summary: "Cloudflare Zero Trust (Access): users, the authentication log, sessions, seats and groups",
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
    log: AccessLog,
    /// One lock per Access group: a read-modify-write of a group waits for another one in flight
    /// on the same group (two `add_to_group` calls in a `parallel` would otherwise both read the
    /// same members and the second write would drop the first one's).
    group_edits: std::sync::Mutex<HashMap<String, Arc<futures::lock::Mutex<()>>>>,
}

impl Cloudflare {
    /// Builds the provider from its settings.
    pub fn from_config(config: &ProviderConfig) -> Result<Self, ConfigError> {
        Ok(Cloudflare {
            api: config::api_from_config(config)?,
            log: AccessLog::default(),
            group_edits: std::sync::Mutex::new(HashMap::new()),
        })
    }
}

/// Whether a group read from the API is the default one, when it says so as a boolean (the
/// request field is a boolean; the SDKs type the response's field oddly, so anything else is
/// left unsaid rather than guessed).
fn is_default(group: &Group) -> Option<bool> {
    group.extra.get("is_default").and_then(Value::as_bool)
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
        let raw = self.api.all_pages(ctx, Collection::Users, &filters).await?;
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

    async fn access_requests(
        &self,
        ctx: &CallContext,
        args: AccessRequests,
    ) -> Result<Vec<AccessRequest>, ActionError> {
        if let Some(direction) = args.direction.as_deref().filter(|d| *d != "asc" && *d != "desc") {
            return Err(ActionError::invalid_args(format!(
                "`direction` must be \"asc\" or \"desc\", got \"{direction}\""
            )));
        }
        let query = LogQuery {
            since: args.since.as_ref().map(|t| t.timestamp("since")).transpose()?,
            until: args.until.as_ref().map(|t| t.timestamp("until")).transpose()?,
            email: args.email,
            email_exact: args.email_exact,
            direction: args.direction,
            allowed: args.allowed,
        };
        let rows = self.log.read(&self.api, ctx, &query).await?;
        // `allowed` is not a documented filter: keep only what was asked for whatever the API did.
        Ok(match query.allowed {
            Some(wanted) => rows.into_iter().filter(|r| r.allowed == Some(wanted)).collect(),
            None => rows,
        })
    }

    async fn failed_logins_since(
        &self,
        ctx: &CallContext,
        args: FailedLoginsSince,
    ) -> Result<Vec<AccessRequest>, ActionError> {
        let since = args.since.timestamp("since")?;
        let query = LogQuery {
            since: Some(since),
            direction: Some("asc".to_owned()),
            allowed: Some(false),
            ..LogQuery::default()
        };
        match self.log.read(&self.api, ctx, &query).await {
            // The API documents no `allowed` filter: correctness must not depend on it.
            Ok(rows) => Ok(rows.into_iter().filter(|r| r.allowed == Some(false)).collect()),
            Err(error) if error.status == Some(403) => {
                let (rows, users) = failed_logins::per_user(&self.api, ctx, since).await?;
                ctx.warn(format!(
                    "the Access authentication log refused the credentials (403), so the failed logins were read \
                     user by user instead ({users} users, {} requests); the log's API documents only the global API \
                     key (CLOUDFLARE_EMAIL + CLOUDFLARE_API_KEY)",
                    users + 1
                ));
                Ok(rows)
            }
            Err(error) => Err(error),
        }
    }

    async fn revoke_user(&self, ctx: &CallContext, args: RevokeUser) -> Result<(), ActionError> {
        let api = &self.api;
        let email = non_empty(&args.email, "email")?;
        let request =
            HttpRequest::post(api.access_path(&["organizations", "revoke_user"])).json(&models::RevokeUser {
                email,
                devices: args.devices,
                warp_session_reauth: args.warp_session_reauth,
            })?;
        let (revoked, _) = api.call::<Value>(ctx, request, Subject::Organization).await?;
        if revoked == Some(Value::Bool(false)) {
            return Err(ActionError::invalid_response(format!(
                "Cloudflare answered success but result false when revoking the Access tokens of {email}"
            )));
        }
        Ok(())
    }

    async fn update_seats(&self, ctx: &CallContext, args: UpdateSeats) -> Result<Vec<Seat>, ActionError> {
        if args.seats.is_empty() {
            return Ok(Vec::new());
        }
        for seat in &args.seats {
            non_empty(&seat.seat_uid, "seat_uid")?;
        }
        self.patch_seats(ctx, &args.seats).await
    }

    async fn free_seats(&self, ctx: &CallContext, args: FreeSeats) -> Result<Seat, ActionError> {
        let api = &self.api;
        let id = non_empty(&args.user_id, "user_id")?;
        let (user, _) = api
            .call::<User>(ctx, HttpRequest::get(api.users_path(&[id])), Subject::User(id))
            .await?;
        let seat_uid = required(user, "user")?
            .seat_uid
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                ActionError::invalid_args(format!(
                    "user {id} has no seat_uid: Cloudflare holds no seat for it, so there is none to free"
                ))
            })?;
        let seats = self
            .patch_seats(
                ctx,
                &[SeatUpdate {
                    seat_uid,
                    access_seat: false,
                    gateway_seat: false,
                }],
            )
            .await?;
        required(seats.into_iter().next(), "seat")
    }

    async fn patch_seats(&self, ctx: &CallContext, seats: &[SeatUpdate]) -> Result<Vec<Seat>, ActionError> {
        let api = &self.api;
        let request = HttpRequest::new(Method::PATCH, api.access_path(&["seats"])).json(seats)?;
        let (seats, _) = api.call::<Vec<Seat>>(ctx, request, Subject::Seats).await?;
        Ok(seats.unwrap_or_default())
    }

    async fn list_groups(&self, ctx: &CallContext, args: ListGroups) -> Result<Vec<Group>, ActionError> {
        let filters: Vec<(&str, String)> = [("name", args.name), ("search", args.search)]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect();
        let raw: Vec<Value> = self.api.all_pages(ctx, Collection::Groups, &filters).await?;
        raw.into_iter()
            .map(|g| {
                serde_json::from_value::<Group>(g).map_err(|e| {
                    ActionError::invalid_response(format!("a group in the list is not the documented shape: {e}"))
                })
            })
            .collect()
    }

    async fn get_group(&self, ctx: &CallContext, args: GetGroup) -> Result<Group, ActionError> {
        let id = non_empty(&args.group_id, "group_id")?;
        self.fetch_group(ctx, id).await
    }

    async fn fetch_group(&self, ctx: &CallContext, id: &str) -> Result<Group, ActionError> {
        let api = &self.api;
        let (group, _) = api
            .call::<Group>(
                ctx,
                HttpRequest::get(api.access_path(&["groups", id])),
                Subject::Group(id),
            )
            .await?;
        required(group, "group")
    }

    async fn create_group(&self, ctx: &CallContext, args: CreateGroup) -> Result<Group, ActionError> {
        let api = &self.api;
        let body = models::GroupBody {
            name: non_empty(&args.name, "name")?,
            include: &args.include,
            exclude: args.exclude.as_deref(),
            require: args.require.as_deref(),
            is_default: None,
        };
        let request = HttpRequest::post(api.access_path(&["groups"])).json(&body)?;
        let (group, _) = api.call::<Group>(ctx, request, Subject::Groups).await?;
        required(group, "group")
    }

    async fn update_group(&self, ctx: &CallContext, args: UpdateGroup) -> Result<Group, ActionError> {
        let id = non_empty(&args.group_id, "group_id")?;
        let edit = self.group_edit(id);
        let _edit = edit.lock().await;
        // The API replaces the whole group: what the script leaves out (and whether the group is
        // the default one) is sent back as it is.
        let current = self.fetch_group(ctx, id).await?;
        let name = args
            .name
            .clone()
            .or_else(|| current.name.clone())
            .ok_or_else(|| ActionError::invalid_response(format!("Access group {id} has no name to send back")))?;
        let include = args.include.or_else(|| current.include.clone()).unwrap_or_default();
        let exclude = args.exclude.or_else(|| current.exclude.clone());
        let require = args.require.or_else(|| current.require.clone());
        let kept = models::GroupBody {
            name: &name,
            include: &include,
            exclude: exclude.as_deref(),
            require: require.as_deref(),
            is_default: is_default(&current),
        };
        self.put_group(ctx, id, kept).await
    }

    /// The lock of one group's read-modify-writes.
    fn group_edit(&self, id: &str) -> Arc<futures::lock::Mutex<()>> {
        let mut edits = self.group_edits.lock().unwrap_or_else(|p| p.into_inner());
        edits.entry(id.to_owned()).or_default().clone()
    }

    async fn put_group(&self, ctx: &CallContext, id: &str, body: models::GroupBody<'_>) -> Result<Group, ActionError> {
        let api = &self.api;
        non_empty(body.name, "name")?;
        let request = HttpRequest::put(api.access_path(&["groups", id])).json(&body)?;
        let (group, _) = api.call::<Group>(ctx, request, Subject::Group(id)).await?;
        required(group, "group")
    }

    async fn delete_group(&self, ctx: &CallContext, args: DeleteGroup) -> Result<(), ActionError> {
        let api = &self.api;
        let id = non_empty(&args.group_id, "group_id")?;
        api.call::<Value>(
            ctx,
            HttpRequest::delete(api.access_path(&["groups", id])),
            Subject::Group(id),
        )
        .await?;
        Ok(())
    }

    async fn add_to_group(&self, ctx: &CallContext, args: AddToGroup) -> Result<Group, ActionError> {
        let email = non_empty(&args.email, "email")?;
        self.edit_members(ctx, &args.group_id, |include| groups::with_email(include, email))
            .await
    }

    async fn remove_from_group(&self, ctx: &CallContext, args: RemoveFromGroup) -> Result<Group, ActionError> {
        let email = non_empty(&args.email, "email")?;
        self.edit_members(ctx, &args.group_id, |include| groups::without_email(include, email))
            .await
    }

    /// Reads the group, edits its `include` rules and replaces the group, unless the edit
    /// changes nothing (`None`): then nothing is sent and the group is returned as read.
    async fn edit_members(
        &self,
        ctx: &CallContext,
        group_id: &str,
        edit: impl FnOnce(&[Value]) -> Option<Vec<Value>>,
    ) -> Result<Group, ActionError> {
        let id = non_empty(group_id, "group_id")?;
        let lock = self.group_edit(id);
        let _edit = lock.lock().await;
        let group = self.fetch_group(ctx, id).await?;
        let Some(include) = edit(group.include.as_deref().unwrap_or_default()) else {
            return Ok(group);
        };
        let name = group
            .name
            .as_deref()
            .ok_or_else(|| ActionError::invalid_response(format!("Access group {id} has no name to send back")))?;
        let body = models::GroupBody {
            name,
            include: &include,
            exclude: group.exclude.as_deref(),
            require: group.require.as_deref(),
            is_default: is_default(&group),
        };
        self.put_group(ctx, id, body).await
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

    /// `create_user` in doubt: the user with that email, if the account has one (emails are
    /// unique among an account's Zero Trust users).
    async fn probe(&self, ctx: &CallContext, action: &ActionSpec, args: &Value) -> Result<Probed, ActionError> {
        if action.name != "create_user" {
            return Err(ActionError::invalid_args(format!(
                "cloudflare.{} has no probe",
                action.name
            )));
        }
        let email = args.get("email").and_then(Value::as_str).unwrap_or_default();
        let found = self
            .list_users(
                ctx,
                ListUsers {
                    email: Some(email.to_owned()),
                    name: None,
                    search: None,
                },
            )
            .await?
            .into_iter()
            .find(|u| u.email.as_deref().is_some_and(|e| e.eq_ignore_ascii_case(email)));
        match found {
            Some(user) => Ok(Probed::Found(serde_json::to_value(user).map_err(|e| {
                ActionError::invalid_response(format!("the user found cannot be shown: {e}"))
            })?)),
            None => Ok(Probed::NotFound),
        }
    }

    /// For the policy: an email stands for itself; a group id is the group (by name); any other
    /// id is a user (email and name). Cloudflare users hold no roles: `roles` is empty.
    async fn identify(&self, ctx: &CallContext, action: &ActionSpec, id: &str) -> Result<Option<Value>, ActionError> {
        if id.contains('@') {
            return Ok(Some(json!({"id": id, "email": id, "roles": []})));
        }
        let group = action.params.first().is_some_and(|p| p.name == "group_id");
        let found = if group {
            self.fetch_group(ctx, id)
                .await
                .map(|g| json!({"id": id, "name": g.name, "roles": []}))
        } else {
            self.get_user(ctx, GetUser { user_id: id.to_owned() })
                .await
                .map(|u| json!({"id": id, "email": u.email, "name": u.name, "roles": []}))
        };
        match found {
            Ok(value) => Ok(Some(value)),
            Err(e) if e.status == Some(404) => Ok(None),
            Err(e) => Err(e),
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
            "create_group" => {
                let mut group = json!({"id": "(planned)", "name": args.get("name"), "include": args.get("include")});
                for key in ["exclude", "require"] {
                    group[key] = args.get(key).cloned().unwrap_or_else(|| json!([]));
                }
                group
            }
            "update_group" => {
                let mut group = json!({"id": args.get("group_id")});
                for key in ["name", "include", "exclude", "require"] {
                    if let Some(v) = args.get(key) {
                        group[key] = v.clone();
                    }
                }
                group
            }
            "update_seats" => args.get("seats").cloned().unwrap_or_else(|| json!([])),
            "free_seats" => json!({"user_id": args.get("user_id"), "access_seat": false, "gateway_seat": false}),
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
