//! The `privx` actions: each one's arguments as a type, next to its spec.

use runbook_core::{Action, ActionSpec, ParamSpec, ParamType, Record, Records, Targets};
use serde::Deserialize;
use serde_json::{Map, Value};

const USER_ID: ParamSpec = ParamSpec::required("user_id", ParamType::String, "the user's id (a UUID)");
const ONE_USER: &[ParamSpec] = &[USER_ID];
const ROLE_PARAM: ParamSpec = ParamSpec::required("role", ParamType::String, "a role id, or a role's exact name");
const IDS: &[ParamSpec] = &[ParamSpec::required(
    "ids",
    ParamType::StringOrArray,
    "one user id or an array of them",
)];

// The records scripts see, with the fields the API documents (`models.rs` types the few the
// provider reads itself).
const USER: Record = Record::new(
    "User",
    &[
        "id",
        "source_user_id",
        "principal",
        "source",
        "source_type",
        "email",
        "full_name",
        "given_name",
        "first_name",
        "last_name",
        "distinguished_name",
        "created",
        "updated",
        "updated_by",
        "author",
        "comment",
        "tags",
        "attributes",
        "roles",
        "permissions",
        "mfa",
        "authorized_keys",
        "webauthn_credentials",
        "stale_access_token",
    ],
);
const ROLE: Record = Record::new(
    "Role",
    &[
        "id",
        "name",
        "comment",
        "explicit",
        "implicit",
        "system",
        "grant_type",
        "floating_length",
        "grant_validity_periods",
        "grant_start",
        "grant_end",
        "permissions",
        "access_group_id",
        "context",
        "source_rules",
        "type",
        "arn",
        "source",
        "tags",
        "member_count",
        "explicit_count",
        "created",
        "updated",
        "author",
        "updated_by",
    ],
);
const ROLE_CHANGE: Record = Record::new("RoleChange", &["changed", "role", "roles"]);
const SESSION: Record = Record::new(
    "Session",
    &[
        "id",
        "user_id",
        "source_id",
        "parent_session_id",
        "domain",
        "username",
        "remote_addr",
        "user_agent",
        "type",
        "created",
        "updated",
        "expires",
        "token_expires",
        "logged_out",
        "current",
    ],
);
const AUTHORIZED_KEY: Record = Record::new(
    "AuthorizedKey",
    &[
        "id",
        "user_id",
        "username",
        "source",
        "name",
        "comment",
        "public_key",
        "not_before",
        "not_after",
        "expires_in",
        "source_address",
        "fingerprints",
        "created",
        "updated",
        "author",
    ],
);
const SOURCE: Record = Record::new(
    "Source",
    &[
        "id",
        "name",
        "enabled",
        "status_code",
        "status_text",
        "ttl",
        "comment",
        "tags",
        "username_pattern",
        "external_user_mapping",
        "connection",
        "created",
        "updated",
        "author",
    ],
);

/// One id, or several.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One id.
    One(String),
    /// Several ids.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The ids, as a list.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(id) => vec![id],
            OneOrMany::Many(ids) => ids,
        }
    }
}

macro_rules! one_user_action {
    ($(#[$meta:meta])* $name:ident, $spec:expr) => {
        $(#[$meta])*
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            /// The user's id.
            pub user_id: String,
        }

        impl Action for $name {
            const SPEC: ActionSpec = $spec.params(ONE_USER);
        }
    };
}

one_user_action!(
    /// `get_user(user_id)`.
    GetUser,
    ActionSpec::read("get_user", "Get one user with roles")
        .returns("User {id, principal, email, full_name, source, roles, mfa {status}, ...}")
        .records(Records::One(&USER))
        .example(r#"let u = privx::get_user("eef4aefc-d64e-4c2c-aba4-4914c86ce059");"#)
);

/// `search_users(#{keywords, source, user_id})`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchUsers {
    /// Free-text keywords.
    pub keywords: Option<String>,
    /// Only users of this source.
    pub source: Option<String>,
    /// Only these user ids.
    pub user_id: Option<OneOrMany>,
}

impl Action for SearchUsers {
    const SPEC: ActionSpec = ActionSpec::read("search_users", "Search users (every page)")
        .params(&[
            ParamSpec::optional(
                "keywords",
                ParamType::String,
                "free-text keywords (principal, email, name)",
            ),
            ParamSpec::optional("source", ParamType::String, "only users of this source (directory)"),
            ParamSpec::optional("user_id", ParamType::StringOrArray, "only these user ids"),
        ])
        .returns("array of User")
        .records(Records::List(&USER))
        .example(r#"let admins = privx::search_users(#{keywords: "admin"});"#);
}

/// `find_user(query)`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FindUser {
    /// An email, a principal or a user id.
    pub query: String,
}

impl Action for FindUser {
    const SPEC: ActionSpec = ActionSpec::read("find_user", "Find one user by exact email, principal or id")
        .params(&[ParamSpec::required(
            "query",
            ParamType::String,
            "an email, a principal or a user id",
        )])
        .returns("User, or () when none matches; an error naming the candidates when several do")
        .records(Records::Optional(&USER))
        .example(r#"let u = privx::find_user("ann@example.com");"#);
}

one_user_action!(
    /// `resolve_user(user_id)`.
    ResolveUser,
    ActionSpec::read("resolve_user", "A user with effective roles and permissions")
        .returns("User with effective roles")
        .records(Records::One(&USER))
        .example("privx::resolve_user(u.id).permissions")
);

one_user_action!(
    /// `get_user_settings(user_id)`.
    GetUserSettings,
    ActionSpec::read("get_user_settings", "A user's settings")
        .returns("map (free-form)")
        .example("privx::get_user_settings(u.id)")
);

/// `set_user_settings(user_id, settings)`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetUserSettings {
    /// The user's id.
    pub user_id: String,
    /// The whole settings object.
    pub settings: Map<String, Value>,
}

impl Action for SetUserSettings {
    const SPEC: ActionSpec = ActionSpec::write("set_user_settings", "Replace a user's settings")
        .params(&[
            USER_ID,
            ParamSpec::required("settings", ParamType::Map, "the whole settings object"),
        ])
        .returns("User")
        .records(Records::One(&USER))
        .example("privx::set_user_settings(u.id, #{locale: \"fi_FI\"})");
}

one_user_action!(
    /// `get_user_roles(user_id)`.
    GetUserRoles,
    ActionSpec::read("get_user_roles", "A user's roles, explicit and mapped")
        .returns("array of Role {id, name, explicit, implicit, grant_type, ...}")
        .records(Records::List(&ROLE))
        .example("privx::get_user_roles(u.id).filter(|r| r.explicit)")
);

/// `set_user_roles(user_id, roles)`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetUserRoles {
    /// The user's id.
    pub user_id: String,
    /// Role objects (with id) or role ids.
    pub roles: Vec<Value>,
}

impl Action for SetUserRoles {
    const SPEC: ActionSpec = ActionSpec::write("set_user_roles", "Replace a user's explicit roles")
        .params(&[
            USER_ID,
            ParamSpec::required(
                "roles",
                ParamType::Array,
                "the whole explicit set: role objects (with id) or role ids",
            ),
        ])
        .returns("()")
        .example("privx::set_user_roles(u.id, [])");
}

/// `grant_role(user_id, role, #{from, to, floating_hours})`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantRole {
    /// The user's id.
    pub user_id: String,
    /// A role id or name.
    pub role: String,
    /// Start of a time-restricted grant: RFC 3339 text or unix seconds.
    pub from: Option<Value>,
    /// End of a time-restricted grant: RFC 3339 text or unix seconds.
    pub to: Option<Value>,
    /// Length of a floating grant, in hours.
    pub floating_hours: Option<i64>,
}

impl Action for GrantRole {
    const SPEC: ActionSpec = ActionSpec::write(
        "grant_role",
        "Grant a role, permanently or time-limited (read-modify-write; nothing sent when already held that way; \
         the stored grant is read back and checked)",
    )
    .params(&[
        USER_ID,
        ParamSpec::required("role", ParamType::String, "a role id, or a role's exact name"),
        ParamSpec::optional(
            "from",
            ParamType::Any,
            "start of a TIME_RESTRICTED grant: RFC 3339 text or unix seconds (with `to`)",
        ),
        ParamSpec::optional(
            "to",
            ParamType::Any,
            "end of a TIME_RESTRICTED grant, after `from`: RFC 3339 text or unix seconds \
             (`to`, as `until` is a Rhai keyword)",
        ),
        ParamSpec::optional(
            "floating_hours",
            ParamType::Integer,
            "a FLOATING grant: its window opens at the first connection and lasts this long \
             (PrivX's unit is undocumented; hours assumed)",
        ),
    ])
    .returns("#{changed, role {id, name}, roles}")
    .records(Records::One(&ROLE_CHANGE))
    .example(r#"privx::grant_role(u.id, "auditors", #{from: now(), to: now() + 8 * 3600})"#);
}

/// `revoke_role(user_id, role)`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRole {
    /// The user's id.
    pub user_id: String,
    /// A role id or name.
    pub role: String,
}

impl Action for RevokeRole {
    const SPEC: ActionSpec = ActionSpec::write(
        "revoke_role",
        "Revoke an explicit role (read-modify-write; nothing sent when not held)",
    )
    .params(&[USER_ID, ROLE_PARAM])
    .returns("#{changed, role {id, name}, roles}")
    .records(Records::One(&ROLE_CHANGE))
    .example(r#"privx::revoke_role(u.id, "admins")"#);
}

macro_rules! mfa_action {
    ($(#[$meta:meta])* $name:ident, $spec:expr) => {
        $(#[$meta])*
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            /// One user id or several.
            pub ids: OneOrMany,
        }

        impl Action for $name {
            const SPEC: ActionSpec = $spec.params(IDS).targets(Targets::CountOf("ids")).returns("()");
        }
    };
}

mfa_action!(
    /// `enable_mfa(ids)`.
    EnableMfa,
    ActionSpec::write("enable_mfa", "Turn MFA on for users").example("privx::enable_mfa([a.id, b.id])")
);

mfa_action!(
    /// `disable_mfa(ids)`.
    DisableMfa,
    ActionSpec::write("disable_mfa", "Turn MFA off for users").example("privx::disable_mfa(u.id)")
);

mfa_action!(
    /// `reset_mfa(ids)`.
    ResetMfa,
    ActionSpec::write("reset_mfa", "Reset users' MFA pairing: they pair again at next login")
        .example("privx::reset_mfa(flagged.map(|u| u.id))")
);

/// `list_roles()`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListRoles {}

impl Action for ListRoles {
    const SPEC: ActionSpec = ActionSpec::read("list_roles", "Every role in the role store (every page)")
        .returns("array of Role {id, name, comment, permissions, member_count, ...}")
        .records(Records::List(&ROLE))
        .example("privx::list_roles().map(|r| r.name)");
}

/// `get_role(role_id)`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetRole {
    /// The role's id.
    pub role_id: String,
}

impl Action for GetRole {
    const SPEC: ActionSpec = ActionSpec::read("get_role", "Get one role by id")
        .params(&[ParamSpec::required("role_id", ParamType::String, "the role's id")])
        .returns("Role {id, name, comment, permissions, ...}")
        .records(Records::One(&ROLE))
        .example(r#"privx::get_role("7c1f0000-0000-4000-8000-000000000001").name"#);
}

/// `resolve_roles(names)`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolveRoles {
    /// Role names.
    pub names: OneOrMany,
}

impl Action for ResolveRoles {
    const SPEC: ActionSpec = ActionSpec::read("resolve_roles", "Find roles by exact name")
        .params(&[ParamSpec::required(
            "names",
            ParamType::StringOrArray,
            "one role name or an array of them",
        )])
        .returns("array of Role (names PrivX does not know are left out)")
        .records(Records::List(&ROLE))
        .example(r#"privx::resolve_roles(["admins", "auditors"]).map(|r| r.id)"#);
}

/// `role_members(role)`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleMembers {
    /// A role id or name.
    pub role: String,
}

impl Action for RoleMembers {
    const SPEC: ActionSpec = ActionSpec::read("role_members", "Every user holding a role (every page)")
        .params(&[ROLE_PARAM])
        .returns("array of User")
        .records(Records::List(&USER))
        .example(r#"privx::role_members("admins").map(|u| u.principal)"#);
}

one_user_action!(
    /// `user_sessions(user_id)`.
    UserSessions,
    ActionSpec::read("user_sessions", "A user's sessions (every page)")
        .returns("array of Session {id, user_id, type, remote_addr, created, expires, ...}")
        .records(Records::List(&SESSION))
        .example("privx::user_sessions(u.id).len()")
);

one_user_action!(
    /// `terminate_user_sessions(user_id)`.
    TerminateUserSessions,
    ActionSpec::write("terminate_user_sessions", "End every session of a user (they log in again)")
        .example("privx::terminate_user_sessions(u.id)")
);

one_user_action!(
    /// `terminate_user_connections(user_id)`.
    TerminateUserConnections,
    ActionSpec::write(
        "terminate_user_connections",
        "End a user's live connections (SSH, RDP, web) through the connection manager"
    )
    .example("privx::terminate_user_connections(u.id)")
);

one_user_action!(
    /// `authorized_keys(user_id)`.
    ListAuthorizedKeys,
    ActionSpec::read("authorized_keys", "A user's SSH authorized keys")
        .returns("array of AuthorizedKey {id, name, public_key, fingerprints, not_after, ...}")
        .records(Records::List(&AUTHORIZED_KEY))
        .example("privx::authorized_keys(u.id).map(|k| k.id)")
);

/// `delete_authorized_key(user_id, key_id)`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteAuthorizedKey {
    /// The user's id.
    pub user_id: String,
    /// The key's id.
    pub key_id: String,
}

impl Action for DeleteAuthorizedKey {
    const SPEC: ActionSpec =
        ActionSpec::destructive("delete_authorized_key", "Delete one of a user's SSH authorized keys")
            .params(&[
                USER_ID,
                ParamSpec::required("key_id", ParamType::String, "the key's id"),
            ])
            .returns("#{deleted}: false when the key was already gone (the user must exist)")
            .example("for k in privx::authorized_keys(u.id) { privx::delete_authorized_key(u.id, k.id); }");
}

/// `list_sources()`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListSources {}

impl Action for ListSources {
    const SPEC: ActionSpec = ActionSpec::read("list_sources", "The user and host directories")
        .returns("array of Source {id, name, enabled, status_code, status_text, ...}")
        .records(Records::List(&SOURCE))
        .example("privx::list_sources().filter(|s| s.enabled)");
}

/// `refresh_sources(ids)`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshSources {
    /// Source ids.
    pub ids: OneOrMany,
}

impl Action for RefreshSources {
    const SPEC: ActionSpec = ActionSpec::write(
        "refresh_sources",
        "Ask PrivX to sync directories now (it may finish later: watch status_code)",
    )
    .params(&[ParamSpec::required(
        "ids",
        ParamType::StringOrArray,
        "one source id or an array of them",
    )])
    .targets(Targets::CountOf("ids"))
    .example("privx::refresh_sources(privx::list_sources().map(|s| s.id))");
}
