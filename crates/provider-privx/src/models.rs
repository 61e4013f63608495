//! PrivX's objects as its API documents them. Every field is optional and unknown fields are kept
//! (`extra`), so scripts see everything PrivX returned — except the TOTP secret in `mfa.seed`,
//! which [`User::redact_seed`] replaces before anything leaves the provider.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What replaces a TOTP secret.
pub const REDACTED_SEED: &str = "(redacted)";

/// A user's MFA state.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Mfa {
    /// `ENABLED`, `DISABLED` or `UNINITIALIZED` (other values are kept as they come).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The TOTP secret: never leaves the provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<Value>,
    /// Fields not listed above.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A role, as a user holds it or as the role store lists it.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Role {
    /// Id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Granted to the user directly (as opposed to mapped from a directory group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explicit: Option<bool>,
    /// Mapped from a directory group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub implicit: Option<bool>,
    /// `PERMANENT`, `FLOATING` or `TIME_RESTRICTED`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_type: Option<String>,
    /// Fields not listed above.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A role-store user.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct User {
    /// Id (a UUID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Login name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// Email.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Full name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_name: Option<String>,
    /// The directory the user comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Roles (may be null).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<Role>>,
    /// MFA state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa: Option<Mfa>,
    /// Fields not listed above.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl User {
    /// Replaces the TOTP secret, if any.
    pub fn redact_seed(&mut self) {
        if let Some(mfa) = &mut self.mfa
            && mfa.seed.is_some()
        {
            mfa.seed = Some(Value::String(REDACTED_SEED.to_owned()));
        }
    }
}

/// A session in the auth service's session storage.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Session {
    /// Id (`session_id` in older PrivX versions, kept in `extra` then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The user's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// `login`, ...
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "type")]
    pub session_type: Option<String>,
    /// When the session ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// Fields not listed above.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An SSH public key a user may log in with.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct AuthorizedKey {
    /// Id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The key, in OpenSSH format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// Fingerprints of the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprints: Option<Vec<Value>>,
    /// Fields not listed above.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A user or host directory.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Source {
    /// Id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Whether PrivX reads the directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// The directory's state, e.g. after a refresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<String>,
    /// Fields not listed above.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A page of a collection: `count` is the total, `items` this page.
#[derive(Debug, Deserialize)]
pub struct Page<T> {
    /// Items in all pages.
    #[serde(default)]
    pub count: Option<u64>,
    /// This page's items (may be null).
    pub items: Option<Vec<T>>,
}

/// The body of a user search.
#[derive(Debug, Default, Serialize)]
pub struct SearchBody {
    /// Free-text keywords.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keywords: Option<String>,
    /// Only users of this source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Only these users.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Vec<String>>,
}

/// An OAuth token answer.
#[derive(Debug, Deserialize)]
pub struct TokenResponse {
    /// The bearer token.
    pub access_token: String,
    /// Lifetime in seconds.
    #[serde(default)]
    pub expires_in: Option<u64>,
}

/// An OAuth error answer.
#[derive(Debug, Deserialize)]
pub struct OAuthError {
    /// `invalid_client`, `invalid_grant`, ...
    pub error: String,
    /// Details.
    #[serde(default)]
    pub error_description: Option<String>,
}

/// PrivX's error body.
#[derive(Debug, Deserialize)]
pub struct ErrorBody {
    /// Always present.
    pub error_code: String,
    /// What went wrong.
    #[serde(default)]
    pub error_message: Option<String>,
    /// The offending field.
    #[serde(default)]
    pub property: Option<String>,
    /// Further errors.
    #[serde(default)]
    pub details: Option<Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_seed_is_redacted_and_everything_else_kept() {
        let api = json!({
            "id": "u1", "principal": "ann", "job_title": "CISO",
            "mfa": {"status": "ENABLED", "seed": {"seed_string": "JBSWY3DPEHPK3PXP", "seed_qr_code": "data:..."}},
            "roles": [{"id": "r1", "name": "admins", "explicit": true, "permissions": ["x"]}]
        });
        let mut user: User = serde_json::from_value(api).unwrap();
        user.redact_seed();
        let out = serde_json::to_value(&user).unwrap();
        assert_eq!(out["mfa"], json!({"status": "ENABLED", "seed": "(redacted)"}));
        assert_eq!(out["job_title"], json!("CISO"));
        assert_eq!(out["roles"][0]["permissions"], json!(["x"]));
        assert!(!out.to_string().contains("JBSWY3DPEHPK3PXP"));
    }
}
