//! The `cloudflare` actions: each one's arguments as a type, next to its spec.

use runbook_core::{Action, ActionSpec, ParamSpec, ParamType, Record, Records, Targets};
use serde::Deserialize;
use serde_json::Value;

use crate::access_log::Time;
use crate::models::SeatUpdate;

const USER_ID: ParamSpec = ParamSpec::required("user_id", ParamType::String, "the user's id (a UUID)");
const ONE_USER: &[ParamSpec] = &[USER_ID];
const GROUP_ID: ParamSpec = ParamSpec::required("group_id", ParamType::String, "the Access group's id (a UUID)");
const ONE_GROUP: &[ParamSpec] = &[GROUP_ID];
const GROUP_MEMBER: &[ParamSpec] = &[
    GROUP_ID,
    ParamSpec::required(
        "email",
        ParamType::String,
        "the email whose include rule is added or removed",
    ),
];
const GROUP: &str = "Group {id, name, include, exclude, require}";

// The records scripts see, with the fields of `models.rs` (which follow the API docs).
const USER: Record = Record::new(
    "User",
    &[
        "id",
        "email",
        "name",
        "access_seat",
        "gateway_seat",
        "active_device_count",
        "last_successful_login",
        "seat_uid",
        "uid",
        "created_at",
        "updated_at",
    ],
);
const SESSION: Record = Record::new("Session", &["expiration", "name", "metadata"]);
const FAILED_LOGIN: Record = Record::new("FailedLogin", &["expiration", "metadata"]);
const IDENTITY: Record = Record::new(
    "Identity",
    &[
        "account_id",
        "auth_status",
        "common_name",
        "device_id",
        "device_sessions",
        "devicePosture",
        "email",
        "geo",
        "iat",
        "idp",
        "ip",
        "isActive",
        "is_gateway",
        "is_warp",
        "mtls_auth",
        "service_token_id",
        "service_token_status",
        "user_uuid",
        "version",
    ],
);
const ACCESS_REQUEST: Record = Record::new(
    "AccessRequest",
    &[
        "user_email",
        "created_at",
        "allowed",
        "action",
        "ray_id",
        "ip_address",
        "app_uid",
        "app_domain",
        "connection",
    ],
);
const SEAT: Record = Record::new(
    "Seat",
    &["seat_uid", "access_seat", "gateway_seat", "created_at", "updated_at"],
);
const GROUP_RECORD: Record = Record::new("Group", &["id", "name", "include", "exclude", "require", "is_default"]);

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
        .records(Records::List(&USER))
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
        .records(Records::One(&USER))
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
        .probe("a user with that email (list_users with the email filter)")
        .returns("User (in plan mode: the would-be user with id \"(planned)\")")
        .records(Records::One(&USER))
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
        .records(Records::One(&USER))
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
        .records(Records::List(&SESSION))
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
        .records(Records::One(&IDENTITY))
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
        .records(Records::List(&FAILED_LOGIN))
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
        .records(Records::One(&IDENTITY))
        .example("cloudflare::last_seen_identity(u.id).geo.country");
}

/// `access_requests(#{since, until, email, email_exact, direction, allowed})`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRequests {
    /// Oldest event.
    pub since: Option<Time>,
    /// Newest event.
    pub until: Option<Time>,
    /// Email, a substring unless `email_exact`.
    pub email: Option<String>,
    /// Match `email` exactly.
    pub email_exact: Option<bool>,
    /// `asc` or `desc`.
    pub direction: Option<String>,
    /// Only allowed (true) or refused (false) logins.
    pub allowed: Option<bool>,
}

impl Action for AccessRequests {
    const SPEC: ActionSpec = ActionSpec::read(
        "access_requests",
        "Rows of the Access authentication log (every page, each row once)",
    )
    .params(&[
        ParamSpec::optional("since", ParamType::Any, "oldest event: unix seconds or RFC 3339"),
        ParamSpec::optional(
            "until",
            ParamType::Any,
            "newest event: unix seconds or RFC 3339 (default: when the call starts)",
        ),
        ParamSpec::optional("email", ParamType::String, "only emails containing this"),
        ParamSpec::optional("email_exact", ParamType::Bool, "match `email` exactly"),
        ParamSpec::optional("direction", ParamType::String, "\"desc\" (newest first, default) or \"asc\""),
        ParamSpec::optional("allowed", ParamType::Bool, "only allowed (true) or refused (false) logins"),
    ])
    .returns(
        "array of AccessRequest {user_email, created_at, allowed, action, ray_id, ip_address, app_uid, app_domain, connection}",
    )
    .records(Records::List(&ACCESS_REQUEST))
        .example(r#"let logins = cloudflare::access_requests(#{since: now() - 3600, allowed: true});"#);
}

/// `failed_logins_since(since)`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailedLoginsSince {
    /// Oldest failure.
    pub since: Time,
}

impl Action for FailedLoginsSince {
    const SPEC: ActionSpec = ActionSpec::read(
        "failed_logins_since",
        "Every user's failed logins since a time, from the authentication log (per user if the log refuses the credentials)",
    )
    .params(&[ParamSpec::required(
        "since",
        ParamType::Any,
        "oldest failure: unix seconds or RFC 3339",
    )])
    .returns("array of AccessRequest with allowed false, oldest first")
    .records(Records::List(&ACCESS_REQUEST))
        .example("let failures = cloudflare::failed_logins_since(now() - 24 * 3600);");
}

/// `revoke_user(email, #{devices, warp_session_reauth})`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeUser {
    /// The user's email.
    pub email: String,
    /// Also revoke the user's devices.
    pub devices: Option<bool>,
    /// Make the user re-authenticate WARP.
    pub warp_session_reauth: Option<bool>,
}

impl Action for RevokeUser {
    const SPEC: ActionSpec = ActionSpec::write(
        "revoke_user",
        "Revoke every Access token of a user (their sessions end); the user is kept",
    )
    .params(&[
        ParamSpec::required("email", ParamType::String, "the user's email"),
        ParamSpec::optional("devices", ParamType::Bool, "also revoke the user's devices"),
        ParamSpec::optional(
            "warp_session_reauth",
            ParamType::Bool,
            "make the user re-authenticate WARP for Gateway policies with a WARP session duration",
        ),
    ])
    .returns("()")
    .example(r#"cloudflare::revoke_user(u.email, #{devices: true})"#);
}

/// `update_seats(seats)`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateSeats {
    /// The seats to set.
    pub seats: Vec<SeatUpdate>,
}

impl Action for UpdateSeats {
    const SPEC: ActionSpec = ActionSpec::write(
        "update_seats",
        "Set users' Access and Gateway seats; both false frees the seat",
    )
    .params(&[ParamSpec::required(
        "seats",
        ParamType::Array,
        "[#{seat_uid, access_seat, gateway_seat}, ...], all three required (seat_uid from the user)",
    )])
    .targets(Targets::CountOf("seats"))
    .returns("array of Seat {seat_uid, access_seat, gateway_seat, created_at, updated_at}")
    .records(Records::List(&SEAT))
    .example(r#"cloudflare::update_seats([#{seat_uid: u.seat_uid, access_seat: false, gateway_seat: false}])"#);
}

/// `free_seats(user_id)`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreeSeats {
    /// The user's id.
    pub user_id: String,
}

impl Action for FreeSeats {
    const SPEC: ActionSpec = ActionSpec::write(
        "free_seats",
        "Free a user's seats (Access and Gateway); the user is kept",
    )
    .params(ONE_USER)
    .returns("Seat {seat_uid, access_seat: false, gateway_seat: false, created_at, updated_at}")
    .records(Records::One(&SEAT))
    .example("cloudflare::free_seats(u.id)");
}

/// `list_groups(#{name, search})`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListGroups {
    /// The name.
    pub name: Option<String>,
    /// Text the name contains.
    pub search: Option<String>,
}

impl Action for ListGroups {
    const SPEC: ActionSpec = ActionSpec::read("list_groups", "List the account's Access groups (every page)")
        .params(&[
            ParamSpec::optional("name", ParamType::String, "only the group with this name"),
            ParamSpec::optional("search", ParamType::String, "only groups whose name contains this"),
        ])
        .returns("array of Group {id, name, include, exclude, require}")
        .records(Records::List(&GROUP_RECORD))
        .example(r#"let groups = cloudflare::list_groups(#{search: "contractors"});"#);
}

/// `get_group(group_id)`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetGroup {
    /// The group's id.
    pub group_id: String,
}

impl Action for GetGroup {
    const SPEC: ActionSpec = ActionSpec::read("get_group", "Get one Access group")
        .params(ONE_GROUP)
        .returns(GROUP)
        .records(Records::One(&GROUP_RECORD))
        .example("let g = cloudflare::get_group(a);");
}

/// `create_group(#{name, include, exclude, require})`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateGroup {
    /// The name.
    pub name: String,
    /// Include rules.
    pub include: Vec<Value>,
    /// Exclude rules.
    pub exclude: Option<Vec<Value>>,
    /// Require rules.
    pub require: Option<Vec<Value>>,
}

const RULES: &str = "rules, each a map with one key: #{email: #{email: \"a@example.com\"}}, #{email_domain: #{domain: \"example.com\"}}, #{group: #{id: ...}}, #{everyone: #{}}, ...";

impl Action for CreateGroup {
    const SPEC: ActionSpec = ActionSpec::write("create_group", "Create an Access group")
        .params(&[
            ParamSpec::required("name", ParamType::String, "the group's name"),
            ParamSpec::required("include", ParamType::Array, RULES),
            ParamSpec::optional("exclude", ParamType::Array, "rules a member must match none of"),
            ParamSpec::optional("require", ParamType::Array, "rules a member must match all of"),
        ])
        .idempotent(false)
        .returns("Group (in plan mode: the would-be group with id \"(planned)\")")
        .records(Records::One(&GROUP_RECORD))
        .example(r#"cloudflare::create_group(#{name: "Contractors", include: [#{email_domain: #{domain: "partner.example"}}]})"#);
}

/// `update_group(group_id, #{name, include, exclude, require})`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateGroup {
    /// The group's id.
    pub group_id: String,
    /// The name.
    pub name: Option<String>,
    /// Include rules.
    pub include: Option<Vec<Value>>,
    /// Exclude rules.
    pub exclude: Option<Vec<Value>>,
    /// Require rules.
    pub require: Option<Vec<Value>>,
}

impl Action for UpdateGroup {
    const SPEC: ActionSpec = ActionSpec::write(
        "update_group",
        "Replace an Access group's name or rules; what the script leaves out is kept",
    )
    .params(&[
        GROUP_ID,
        ParamSpec::optional("name", ParamType::String, "the new name"),
        ParamSpec::optional("include", ParamType::Array, "the new include rules"),
        ParamSpec::optional("exclude", ParamType::Array, "the new exclude rules"),
        ParamSpec::optional("require", ParamType::Array, "the new require rules"),
    ])
    .returns(GROUP)
    .records(Records::One(&GROUP_RECORD))
    .example(r#"cloudflare::update_group(a, #{name: "Contractors (2027)"})"#);
}

/// `delete_group(group_id)`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteGroup {
    /// The group's id.
    pub group_id: String,
}

impl Action for DeleteGroup {
    const SPEC: ActionSpec = ActionSpec::destructive("delete_group", "Delete an Access group")
        .params(ONE_GROUP)
        .returns("()")
        .example("cloudflare::delete_group(a)");
}

/// `add_to_group(group_id, email)`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddToGroup {
    /// The group's id.
    pub group_id: String,
    /// The email.
    pub email: String,
}

impl Action for AddToGroup {
    const SPEC: ActionSpec = ActionSpec::write(
        "add_to_group",
        "Add an email include rule to an Access group (nothing is sent when it is there already)",
    )
    .params(GROUP_MEMBER)
    .returns(GROUP)
    .records(Records::One(&GROUP_RECORD))
    .example(r#"cloudflare::add_to_group(a, "ann@example.com")"#);
}

/// `remove_from_group(group_id, email)`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveFromGroup {
    /// The group's id.
    pub group_id: String,
    /// The email.
    pub email: String,
}

impl Action for RemoveFromGroup {
    const SPEC: ActionSpec = ActionSpec::write(
        "remove_from_group",
        "Remove an email include rule from an Access group (nothing is sent when it is absent)",
    )
    .params(GROUP_MEMBER)
    .returns(GROUP)
    .records(Records::One(&GROUP_RECORD))
    .example(r#"cloudflare::remove_from_group(a, u.email)"#);
}
