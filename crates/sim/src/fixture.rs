//! The fixture: one JSON document that seeds both simulators.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The starting state of both simulators.
///
/// Both halves are optional: a missing half is an empty tenant with the default credentials.
/// Unknown keys are an error naming the key, at any level of the fixture's own structure
/// (the API objects inside it are free-form).
///
/// ```json
/// {
///   "cloudflare": {
///     "users": [{"id": "6f1c...", "email": "ada@example.com", "name": "Ada"}],
///     "active_sessions": {"6f1c...": [{"expiration": 1767225600, "name": "app", "metadata": {"nonce": "n1"}}]},
///     "session_identities": {"6f1c...": {"n1": {"email": "ada@example.com", "geo": {"country": "FI"}}}}
///   },
///   "privx": {
///     "roles": [{"id": "r1", "name": "admins", "permissions": ["users-view"]},
///               {"id": "r2", "name": "staff", "permissions": ["hosts-view"]}],
///     "users": [{"id": "u1", "principal": "ada",
///                "roles": [{"id": "r1", "name": "admins"},
///                          {"id": "r2", "name": "staff", "explicit": false, "implicit": true}],
///                "mfa": {"status": "ENABLED", "seed": {"seed_string": "S", "seed_qr_code": "Q"}}}]
///   }
/// }
/// ```
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Fixture {
    /// The Cloudflare half.
    pub cloudflare: CloudflareFixture,
    /// The PrivX half.
    pub privx: PrivxFixture,
}

/// The Cloudflare Zero Trust tenant: one account, its credentials and its users.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CloudflareFixture {
    /// The account id in `/accounts/{account_id}/...`; default `0123456789abcdef0123456789abcdef`.
    pub account_id: String,
    /// The API token accepted as `Authorization: Bearer`; default `sim-cloudflare-token`.
    pub api_token: String,
    /// The `X-Auth-Email` accepted with [`api_key`](Self::api_key); default `sim@example.com`.
    pub api_email: String,
    /// The global API key accepted as `X-Auth-Key`; default `sim-cloudflare-global-key`.
    pub api_key: String,
    /// Users exactly as the API returns them; every field is kept. Each needs a string `id`.
    pub users: Vec<Value>,
    /// `user_id` → that user's active sessions (the list endpoint's items).
    pub active_sessions: BTreeMap<String, Vec<Value>>,
    /// `user_id` → session nonce → Identity, served by `GET .../active_sessions/{nonce}`.
    pub session_identities: BTreeMap<String, BTreeMap<String, Value>>,
    /// `user_id` → that user's failed logins.
    pub failed_logins: BTreeMap<String, Vec<Value>>,
    /// `user_id` → the Identity last seen for that user.
    pub last_seen_identity: BTreeMap<String, Value>,
    /// Rows of the Access authentication log beyond the failed logins (successful logins, for
    /// one), as the log endpoint returns them. Each needs an RFC 3339 `created_at`. Every
    /// entry of [`failed_logins`](Self::failed_logins) also appears in the log as an
    /// `allowed: false` row.
    #[serde(default)]
    pub access_requests: Vec<Value>,
    /// Access groups as the API returns them (`id`, `name`, `include`, `exclude`, `require`).
    /// Each needs a string `id`.
    #[serde(default)]
    pub groups: Vec<Value>,
}

impl Default for CloudflareFixture {
    fn default() -> Self {
        CloudflareFixture {
            account_id: "0123456789abcdef0123456789abcdef".to_owned(),
            api_token: "sim-cloudflare-token".to_owned(),
            api_email: "sim@example.com".to_owned(),
            api_key: "sim-cloudflare-global-key".to_owned(),
            users: Vec::new(),
            active_sessions: BTreeMap::new(),
            session_identities: BTreeMap::new(),
            failed_logins: BTreeMap::new(),
            last_seen_identity: BTreeMap::new(),
            access_requests: Vec::new(),
            groups: Vec::new(),
        }
    }
}

/// The PrivX deployment: OAuth and API client credentials, users, roles, user settings, sessions,
/// live connections, authorized keys and sources.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrivxFixture {
    /// The OAuth client (HTTP Basic on the token endpoint); default `privx-external`.
    pub oauth_client_id: String,
    /// The OAuth client's secret; default `sim-oauth-secret`.
    pub oauth_client_secret: String,
    /// The API client (the password grant's `username`); default `sim-api-client`.
    pub api_client_id: String,
    /// The API client's secret (the password grant's `password`); default `sim-api-secret`.
    pub api_client_secret: String,
    /// Lifetime of issued access tokens, in seconds; default 300.
    pub token_lifetime_secs: u64,
    /// Users as the API returns them, including `roles` (objects with at least `id` and `name`)
    /// and `mfa` (`status`, `seed`). Each needs a string `id`.
    ///
    /// A role with `"explicit": false` is mapped to the user (in real PrivX, by a directory group
    /// mapping): it is listed with `implicit: true`, and setting the user's roles keeps it. Any
    /// other role is explicitly granted, and also mapped when it says `"implicit": true`.
    pub users: Vec<Value>,
    /// Every role in the role store. Each needs a string `id`.
    pub roles: Vec<Value>,
    /// `user_id` → that user's settings object.
    pub settings: BTreeMap<String, Value>,
    /// `user_id` → that user's sessions as the session storage lists them (`id`, `user_id`,
    /// `type`, `expires`, ...). Each needs a string `id`, unique across users.
    #[serde(default)]
    pub sessions: BTreeMap<String, Vec<Value>>,
    /// `user_id` → that user's live connections (free-form objects; the API only ends them).
    #[serde(default)]
    pub connections: BTreeMap<String, Vec<Value>>,
    /// `user_id` → that user's SSH authorized keys (`id`, `name`, `public_key`, `fingerprints`,
    /// ...). Each needs a string `id`, unique per user.
    #[serde(default)]
    pub authorized_keys: BTreeMap<String, Vec<Value>>,
    /// The user and host directories (`id`, `name`, `enabled`, `status_code`, ...). Each needs
    /// a string `id`.
    #[serde(default)]
    pub sources: Vec<Value>,
}

impl Default for PrivxFixture {
    fn default() -> Self {
        PrivxFixture {
            oauth_client_id: "privx-external".to_owned(),
            oauth_client_secret: "sim-oauth-secret".to_owned(),
            api_client_id: "sim-api-client".to_owned(),
            api_client_secret: "sim-api-secret".to_owned(),
            token_lifetime_secs: 300,
            users: Vec::new(),
            roles: Vec::new(),
            settings: BTreeMap::new(),
            sessions: BTreeMap::new(),
            connections: BTreeMap::new(),
            authorized_keys: BTreeMap::new(),
            sources: Vec::new(),
        }
    }
}

/// Why a fixture could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FixtureError {
    /// The fixture file could not be read.
    #[error("cannot read fixture {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The document is not valid JSON or does not have the fixture's shape. The message from
    /// serde_json says what and where (line and column).
    #[error("invalid fixture{}: {source}", in_file(path.as_deref()))]
    Parse {
        /// The file, when the fixture came from one.
        path: Option<PathBuf>,
        /// The underlying error, with line and column.
        source: serde_json::Error,
    },
    /// The document parsed, but its content is inconsistent (a user without an id, a duplicate
    /// id, sessions for a user that does not exist, ...).
    #[error("invalid fixture{}: {message}", in_file(path.as_deref()))]
    Invalid {
        /// The file, when the fixture came from one.
        path: Option<PathBuf>,
        /// What is wrong and where, e.g. `cloudflare.users[3]: "id" must be a string`.
        message: String,
    },
}

fn in_file(path: Option<&Path>) -> String {
    path.map(|p| format!(" {}", p.display())).unwrap_or_default()
}

impl FixtureError {
    /// The 1-based line of a parse error, when there is one.
    pub fn line(&self) -> Option<usize> {
        match self {
            FixtureError::Parse { source, .. } => Some(source.line()),
            _ => None,
        }
    }

    /// The 1-based column of a parse error, when there is one.
    pub fn column(&self) -> Option<usize> {
        match self {
            FixtureError::Parse { source, .. } => Some(source.column()),
            _ => None,
        }
    }

    fn in_path(self, file: &Path) -> FixtureError {
        match self {
            FixtureError::Parse { source, .. } => FixtureError::Parse {
                path: Some(file.to_owned()),
                source,
            },
            FixtureError::Invalid { message, .. } => FixtureError::Invalid {
                path: Some(file.to_owned()),
                message,
            },
            other => other,
        }
    }
}

impl Fixture {
    /// Parses and checks a fixture document.
    pub fn from_json(text: &str) -> Result<Fixture, FixtureError> {
        let fixture: Fixture =
            serde_json::from_str(text).map_err(|source| FixtureError::Parse { path: None, source })?;
        fixture.validate()?;
        Ok(fixture)
    }

    /// Reads, parses and checks a fixture file; errors name the file.
    pub fn from_path(path: &Path) -> Result<Fixture, FixtureError> {
        let text = std::fs::read_to_string(path).map_err(|source| FixtureError::Read {
            path: path.to_owned(),
            source,
        })?;
        Fixture::from_json(&text).map_err(|e| e.in_path(path))
    }

    /// Checks what the type system cannot: ids present and unique, references resolvable.
    pub fn validate(&self) -> Result<(), FixtureError> {
        self.cloudflare.validate()?;
        self.privx.validate()
    }
}

impl CloudflareFixture {
    /// Checks what the type system cannot: credentials not empty, every user and group an object
    /// with a unique string `id`, the per-user maps naming only users that exist, and every log
    /// row placed in time.
    pub fn validate(&self) -> Result<(), FixtureError> {
        for (field, value) in [
            ("account_id", &self.account_id),
            ("api_token", &self.api_token),
            ("api_email", &self.api_email),
            ("api_key", &self.api_key),
        ] {
            if value.is_empty() {
                return Err(invalid(format!("cloudflare.{field} must not be empty")));
            }
        }
        let ids = unique_ids(&self.users, "cloudflare.users")?;
        let known = |map: &str, user_id: &str| {
            if ids.contains(user_id) {
                Ok(())
            } else {
                Err(invalid(format!(
                    "cloudflare.{map}: user {user_id:?} is not in cloudflare.users"
                )))
            }
        };
        for user_id in self.active_sessions.keys() {
            known("active_sessions", user_id)?;
        }
        for user_id in self.session_identities.keys() {
            known("session_identities", user_id)?;
        }
        for user_id in self.failed_logins.keys() {
            known("failed_logins", user_id)?;
        }
        for user_id in self.last_seen_identity.keys() {
            known("last_seen_identity", user_id)?;
        }
        for (user_id, identities) in &self.session_identities {
            for (nonce, identity) in identities {
                if !identity.is_object() {
                    return Err(invalid(format!(
                        "cloudflare.session_identities.{user_id}.{nonce} must be an object"
                    )));
                }
            }
        }
        for (user_id, identity) in &self.last_seen_identity {
            if !identity.is_object() {
                return Err(invalid(format!(
                    "cloudflare.last_seen_identity.{user_id} must be an object"
                )));
            }
        }
        for (index, row) in self.access_requests.iter().enumerate() {
            let created_at = row.get("created_at").and_then(Value::as_str);
            if created_at.is_none_or(|t| t.parse::<jiff::Timestamp>().is_err()) {
                return Err(invalid(format!(
                    "cloudflare.access_requests[{index}]: \"created_at\" must be an RFC 3339 time"
                )));
            }
        }
        unique_ids(&self.groups, "cloudflare.groups")?;
        Ok(())
    }
}

impl PrivxFixture {
    /// Checks what the type system cannot: credentials not empty, every user and role an object
    /// with a unique string `id`, users' `roles` arrays of objects with an `id` and boolean (or
    /// null) `explicit` and `implicit` flags, settings, sessions, connections and authorized keys
    /// naming only users that exist, and sessions, keys and sources with unique string ids.
    pub fn validate(&self) -> Result<(), FixtureError> {
        for (field, value) in [
            ("oauth_client_id", &self.oauth_client_id),
            ("oauth_client_secret", &self.oauth_client_secret),
            ("api_client_id", &self.api_client_id),
            ("api_client_secret", &self.api_client_secret),
        ] {
            if value.is_empty() {
                return Err(invalid(format!("privx.{field} must not be empty")));
            }
        }
        let user_ids = unique_ids(&self.users, "privx.users")?;
        unique_ids(&self.roles, "privx.roles")?;
        for (index, user) in self.users.iter().enumerate() {
            match user.get("roles") {
                None | Some(Value::Null) => {}
                Some(Value::Array(roles)) => {
                    for (r, role) in roles.iter().enumerate() {
                        if !role.get("id").is_some_and(Value::is_string) {
                            return Err(invalid(format!(
                                "privx.users[{index}].roles[{r}]: \"id\" must be a string"
                            )));
                        }
                        for flag in ["explicit", "implicit"] {
                            if !matches!(role.get(flag), None | Some(Value::Null | Value::Bool(_))) {
                                return Err(invalid(format!(
                                    "privx.users[{index}].roles[{r}]: \"{flag}\" must be a boolean"
                                )));
                            }
                        }
                    }
                }
                Some(_) => {
                    return Err(invalid(format!("privx.users[{index}].roles must be an array or null")));
                }
            }
            match user.get("mfa") {
                None | Some(Value::Null) | Some(Value::Object(_)) => {}
                Some(_) => {
                    return Err(invalid(format!("privx.users[{index}].mfa must be an object or null")));
                }
            }
        }
        for user_id in self.settings.keys() {
            if !user_ids.contains(user_id.as_str()) {
                return Err(invalid(format!(
                    "privx.settings: user {user_id:?} is not in privx.users"
                )));
            }
        }
        self.validate_user_data(&user_ids)
    }

    /// Checks the per-user sessions, connections and authorized keys, and the sources.
    fn validate_user_data(&self, user_ids: &BTreeSet<&str>) -> Result<(), FixtureError> {
        let per_user = [
            ("sessions", &self.sessions),
            ("connections", &self.connections),
            ("authorized_keys", &self.authorized_keys),
        ];
        for (map, entries) in per_user {
            for user_id in entries.keys() {
                if !user_ids.contains(user_id.as_str()) {
                    return Err(invalid(format!("privx.{map}: user {user_id:?} is not in privx.users")));
                }
            }
        }
        let all_sessions: Vec<Value> = self.sessions.values().flatten().cloned().collect();
        unique_ids(&all_sessions, "privx.sessions")?;
        for (user_id, connections) in &self.connections {
            if let Some(index) = connections.iter().position(|c| !c.is_object()) {
                return Err(invalid(format!(
                    "privx.connections.{user_id}[{index}] must be an object"
                )));
            }
        }
        for (user_id, keys) in &self.authorized_keys {
            unique_ids(keys, &format!("privx.authorized_keys.{user_id}"))?;
        }
        unique_ids(&self.sources, "privx.sources")?;
        Ok(())
    }
}

fn invalid(message: String) -> FixtureError {
    FixtureError::Invalid { path: None, message }
}

fn unique_ids<'a>(items: &'a [Value], what: &str) -> Result<BTreeSet<&'a str>, FixtureError> {
    let mut ids = BTreeSet::new();
    for (index, item) in items.iter().enumerate() {
        let Some(object) = item.as_object() else {
            return Err(invalid(format!("{what}[{index}] must be an object")));
        };
        let Some(id) = object.get("id").and_then(Value::as_str) else {
            return Err(invalid(format!("{what}[{index}]: \"id\" must be a string")));
        };
        if !ids.insert(id) {
            return Err(invalid(format!("{what}[{index}]: duplicate id {id:?}")));
        }
    }
    Ok(ids)
}
