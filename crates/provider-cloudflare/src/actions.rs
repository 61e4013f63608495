//! The `cloudflare` actions: each one's arguments as a type, next to its spec.

use runbook_core::{Action, ActionSpec, ParamSpec, ParamType};
use serde::Deserialize;

const USER_ID: ParamSpec = ParamSpec::required("user_id", ParamType::String, "the user's id (a UUID)");
const ONE_USER: &[ParamSpec] = &[USER_ID];

/// `list_users(#{email, name, search})`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListUsers {
    /// The email.
    pub email: Option<String>,
    /// The name.
    pub name: Option<String>,
    /// Text the email or name contains.
    pub search: Option<String>,
}

impl Action for ListUsers {
    const SPEC: ActionSpec = ActionSpec::read("list_users", "List the account's Zero Trust users (every page)")
        .params(&[
            ParamSpec::optional("email", ParamType::String, "only the user with this email"),
            ParamSpec::optional("name", ParamType::String, "only users whose name matches"),
            ParamSpec::optional(
                "search",
                ParamType::String,
                "only users whose email or name contains this",
            ),
        ])
        .returns("array of User {id, email, name, access_seat, gateway_seat, active_device_count, last_successful_login, seat_uid, uid, created_at, updated_at}")
        .example(r#"let users = cloudflare::list_users(#{search: "example.com"});"#);
}

/// `get_user(user_id)`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetUser {
    /// The user's id.
    pub user_id: String,
}

impl Action for GetUser {
    const SPEC: ActionSpec = ActionSpec::read("get_user", "Get one user")
        .params(ONE_USER)
        .returns("User")
        .example(r#"let u = cloudflare::get_user("2c8a3b7e-...");"#);
}

/// `create_user(#{email, name})`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// The email.
    pub email: String,
    /// The name.
    pub name: Option<String>,
}

impl Action for CreateUser {
    const SPEC: ActionSpec = ActionSpec::write("create_user", "Create a user")
        .params(&[
            ParamSpec::required("email", ParamType::String, "the new user's email"),
            ParamSpec::optional("name", ParamType::String, "the new user's name"),
        ])
        .idempotent(false)
        .returns("User (in plan mode: the would-be user with id \"(planned)\")")
        .example(r#"cloudflare::create_user(#{email: "ann@example.com", name: "Ann"})"#);
}

/// `update_user(user_id, #{name, email})`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    /// The user's id.
    pub user_id: String,
    /// The name.
    pub name: Option<String>,
    /// The email.
    pub email: Option<String>,
}

impl Action for UpdateUser {
    const SPEC: ActionSpec = ActionSpec::write("update_user", "Rename a user (the API keeps the email)")
        .params(&[
            USER_ID,
            ParamSpec::optional("name", ParamType::String, "the new name"),
            ParamSpec::optional(
                "email",
                ParamType::String,
                "the user's current email (the API does not change emails; read from the user when absent)",
            ),
        ])
        .returns("User")
        .example(r#"cloudflare::update_user(u.id, #{name: "Ann Example"})"#);
}

/// `delete_user(user_id)`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteUser {
    /// The user's id.
    pub user_id: String,
}

impl Action for DeleteUser {
    const SPEC: ActionSpec =
        ActionSpec::destructive("delete_user", "Delete a user: revokes the user's seats and tokens")
            .params(ONE_USER)
            .returns("()")
            .example("cloudflare::delete_user(u.id)");
}

/// `active_sessions(user_id)`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActiveSessions {
    /// The user's id.
    pub user_id: String,
}

impl Action for ActiveSessions {
    const SPEC: ActionSpec = ActionSpec::read("active_sessions", "A user's active sessions")
        .params(ONE_USER)
        .returns("array of Session {expiration, name, metadata {apps, expires, iat, nonce, ttl}}")
        .example("let sessions = cloudflare::active_sessions(u.id);");
}

/// `active_session(user_id, nonce)`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActiveSession {
    /// The user's id.
    pub user_id: String,
    /// The session's nonce.
    pub nonce: String,
}

impl Action for ActiveSession {
    const SPEC: ActionSpec = ActionSpec::read("active_session", "One active session of a user, with its identity")
        .params(&[
            USER_ID,
            ParamSpec::required(
                "nonce",
                ParamType::String,
                "the session's nonce (from active_sessions: metadata.nonce)",
            ),
        ])
        .returns("Identity with isActive")
        .example("cloudflare::active_session(u.id, sessions[0].metadata.nonce)");
}

/// `failed_logins(user_id)`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailedLogins {
    /// The user's id.
    pub user_id: String,
}

impl Action for FailedLogins {
    const SPEC: ActionSpec = ActionSpec::read("failed_logins", "A user's failed login attempts")
        .params(ONE_USER)
        .returns("array of FailedLogin {expiration, metadata {app_name, datetime, ray_id, user_email, ...}}")
        .example("let failures = cloudflare::failed_logins(u.id);");
}

/// `last_seen_identity(user_id)`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LastSeenIdentity {
    /// The user's id.
    pub user_id: String,
}

impl Action for LastSeenIdentity {
    const SPEC: ActionSpec = ActionSpec::read("last_seen_identity", "The identity a user last presented")
        .params(ONE_USER)
        .returns("Identity {email, ip, geo {country}, idp, devicePosture, device_sessions, mtls_auth, ...}")
        .example("cloudflare::last_seen_identity(u.id).geo.country");
}
