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

mod api;
mod auth;
mod config;
pub mod models;

use std::sync::Arc;

use runbook_core::http::{HttpRequest, path};
use runbook_core::{
    ActionError, ActionSpec, CallContext, ConfigError, ParamSpec, ParamType, Provider, ProviderConfig,
    ProviderDescriptor, Targets, async_trait,
};
use serde::Serialize;
use serde_json::{Value, json};

use api::{Api, Subject, is_uuid, string_arg};
pub use config::DEFAULT_OAUTH_CLIENT_ID;
use models::{Page, Role, SearchBody, User};

/// The page size searches ask for: the API's maximum.
const PAGE_SIZE: u64 = 1000;

const USERS: &str = "/role-store/api/v1/users";
const ROLES: &str = "/role-store/api/v1/roles";

const USER_ID: ParamSpec = ParamSpec::required("user_id", ParamType::String, "the user's id (a UUID)");
const ONE_USER: &[ParamSpec] = &[USER_ID];
const SEARCH_PARAMS: &[ParamSpec] = &[
    ParamSpec::optional(
        "keywords",
        ParamType::String,
        "free-text keywords (principal, email, name)",
    ),
    ParamSpec::optional("source", ParamType::String, "only users of this source (directory)"),
    ParamSpec::optional("user_id", ParamType::StringOrArray, "only these user ids"),
];
const FIND_PARAMS: &[ParamSpec] = &[ParamSpec::required(
    "query",
    ParamType::String,
    "an email, a principal or a user id",
)];
const SETTINGS_PARAMS: &[ParamSpec] = &[
    USER_ID,
    ParamSpec::required("settings", ParamType::Map, "the whole settings object"),
];
const SET_ROLES_PARAMS: &[ParamSpec] = &[
    USER_ID,
    ParamSpec::required(
        "roles",
        ParamType::Array,
        "the whole explicit set: role objects (with id) or role ids",
    ),
];
const ROLE_PARAMS: &[ParamSpec] = &[
    USER_ID,
    ParamSpec::required("role", ParamType::String, "a role id, or a role name"),
];
const IDS: &[ParamSpec] = &[ParamSpec::required(
    "ids",
    ParamType::StringOrArray,
    "one user id or an array of them",
)];

/// Every action of the `privx` namespace.
pub const ACTIONS: &[ActionSpec] = &[
    ActionSpec::read("get_user", "Get one user with roles")
        .params(ONE_USER)
        .returns("User {id, principal, email, full_name, source, roles, mfa {status}, ...}")
        .example(r#"let u = privx::get_user("eef4aefc-d64e-4c2c-aba4-4914c86ce059");"#),
    ActionSpec::read("search_users", "Search users (every page)")
        .params(SEARCH_PARAMS)
        .returns("array of User")
        .example(r#"let admins = privx::search_users(#{keywords: "admin"});"#),
    ActionSpec::read("find_user", "Find one user by exact email, principal or id")
        .params(FIND_PARAMS)
        .returns("User, or () when none matches; an error naming the candidates when several do")
        .example(r#"let u = privx::find_user("ann@example.com");"#),
    ActionSpec::read("resolve_user", "A user with effective roles and permissions")
        .params(ONE_USER)
        .returns("User with effective roles")
        .example("privx::resolve_user(u.id).permissions"),
    ActionSpec::read("get_user_settings", "A user's settings")
        .params(ONE_USER)
        .returns("map (free-form)")
        .example("privx::get_user_settings(u.id)"),
    ActionSpec::write("set_user_settings", "Replace a user's settings")
        .params(SETTINGS_PARAMS)
        .returns("User")
        .example("privx::set_user_settings(u.id, #{locale: \"fi_FI\"})"),
    ActionSpec::read("get_user_roles", "A user's roles, explicit and mapped")
        .params(ONE_USER)
        .returns("array of Role {id, name, explicit, implicit, grant_type, ...}")
        .example("privx::get_user_roles(u.id).filter(|r| r.explicit)"),
    ActionSpec::write("set_user_roles", "Replace a user's explicit roles")
        .params(SET_ROLES_PARAMS)
        .returns("()")
        .example("privx::set_user_roles(u.id, [])"),
    ActionSpec::write(
        "grant_role",
        "Grant a role (read-modify-write; nothing sent when already held)",
    )
    .params(ROLE_PARAMS)
    .returns("#{changed, role {id, name}, roles}")
    .example(r#"privx::grant_role(u.id, "auditors")"#),
    ActionSpec::write(
        "revoke_role",
        "Revoke an explicit role (read-modify-write; nothing sent when not held)",
    )
    .params(ROLE_PARAMS)
    .returns("#{changed, role {id, name}, roles}")
    .example(r#"privx::revoke_role(u.id, "admins")"#),
    ActionSpec::write("enable_mfa", "Turn MFA on for users")
        .params(IDS)
        .targets(Targets::CountOf("ids"))
        .returns("()")
        .example("privx::enable_mfa([a.id, b.id])"),
    ActionSpec::write("disable_mfa", "Turn MFA off for users")
        .params(IDS)
        .targets(Targets::CountOf("ids"))
        .returns("()")
        .example("privx::disable_mfa(u.id)"),
    ActionSpec::write("reset_mfa", "Reset users' MFA pairing: they pair again at next login")
        .params(IDS)
        .targets(Targets::CountOf("ids"))
        .returns("()")
        .example("privx::reset_mfa(flagged.map(|u| u.id))"),
];

const SETTINGS: &str = "PRIVX_API_BASE_URL, PRIVX_API_CLIENT_ID, PRIVX_API_CLIENT_SECRET, PRIVX_API_OAUTH_CLIENT_ID \
(default privx-external), PRIVX_API_OAUTH_CLIENT_SECRET, PRIVX_API_CA_CERT; or [providers.privx] with base_url, \
api_client_id, api_client_secret, oauth_client_id, oauth_client_secret, ca_cert, rate_limit, timeout";

runbook_core::inventory::submit! {
    ProviderDescriptor {
        namespace: "privx",
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
    async fn change_role(&self, ctx: &CallContext, args: &Value, grant: bool) -> Result<Value, ActionError> {
        let id = string_arg(args, "user_id")?;
        let role = self.role(ctx, string_arg(args, "role")?).await?;
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

    async fn mfa(&self, ctx: &CallContext, operation: &str, args: &Value) -> Result<Value, ActionError> {
        let ids: Vec<String> = match args.get("ids") {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
            _ => Vec::new(),
        };
        if ids.is_empty() {
            return Ok(Value::Null);
        }
        let request = HttpRequest::post(format!("{USERS}/mfa/{operation}"))
            .json(&ids)?
            .idempotent(true);
        self.api.send(ctx, request, Subject::Other).await?;
        Ok(Value::Null)
    }
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
        "privx"
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
            "get_user" => to_json(&self.get_user(ctx, string_arg(&args, "user_id")?).await?),
            "search_users" => {
                let body = SearchBody {
                    keywords: args.get("keywords").and_then(Value::as_str).map(str::to_owned),
                    source: args.get("source").and_then(Value::as_str).map(str::to_owned),
                    user_id: match args.get("user_id") {
                        Some(Value::String(s)) => Some(vec![s.clone()]),
                        Some(Value::Array(a)) => Some(a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()),
                        _ => None,
                    },
                };
                to_json(&self.search(ctx, &body).await?)
            }
            "find_user" => to_json(&self.find_user(ctx, string_arg(&args, "query")?).await?),
            "resolve_user" => {
                let id = string_arg(&args, "user_id")?;
                let mut user: User = api
                    .json(ctx, HttpRequest::get(user_path(&[id, "resolve"])), Subject::User(id))
                    .await?;
                user.redact_seed();
                to_json(&user)
            }
            "get_user_settings" => {
                let id = string_arg(&args, "user_id")?;
                api.json::<Value>(ctx, HttpRequest::get(user_path(&[id, "settings"])), Subject::User(id))
                    .await
            }
            "set_user_settings" => {
                let id = string_arg(&args, "user_id")?;
                let request = HttpRequest::put(user_path(&[id, "settings"])).json(&args["settings"])?;
                let response = api.send(ctx, request, Subject::User(id)).await?;
                if response.body.iter().all(u8::is_ascii_whitespace) {
                    return Ok(Value::Null);
                }
                let mut user: User = api::parse(&response)?;
                user.redact_seed();
                to_json(&user)
            }
            "get_user_roles" => to_json(&self.user_roles(ctx, string_arg(&args, "user_id")?).await?),
            "set_user_roles" => {
                let id = string_arg(&args, "user_id")?;
                let roles: Vec<Value> = args["roles"]
                    .as_array()
                    .map(|items| {
                        items
                            .iter()
                            .map(|r| match r {
                                Value::String(role_id) => json!({"id": role_id}),
                                other => other.clone(),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                if let Some(bad) = roles.iter().find(|r| r.get("id").and_then(Value::as_str).is_none()) {
                    return Err(ActionError::invalid_args(format!(
                        "every role needs an `id`; got {bad}"
                    )));
                }
                self.put_roles(ctx, id, &roles).await?;
                Ok(Value::Null)
            }
            "grant_role" => self.change_role(ctx, &args, true).await,
            "revoke_role" => self.change_role(ctx, &args, false).await,
            "enable_mfa" => self.mfa(ctx, "enable", &args).await,
            "disable_mfa" => self.mfa(ctx, "disable", &args).await,
            "reset_mfa" => self.mfa(ctx, "reset", &args).await,
            other => Err(ActionError::invalid_args(format!("privx has no action `{other}`"))),
        }
    }
}
