//! The API's objects, as Cloudflare documents them. Every field is optional (the API omits
//! fields freely) and every field the API adds that is not listed here is kept in `extra`, so a
//! script sees everything the API returned. Field names are the API's own: snake_case except
//! `devicePosture` and `isActive`, which the API spells in camelCase.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};

/// The envelope around every answer.
#[derive(Debug, Deserialize)]
pub struct Envelope<T> {
    /// `true` on success.
    #[serde(default)]
    pub success: Option<bool>,
    /// Errors, on failure.
    #[serde(default)]
    pub errors: Vec<ApiMessage>,
    /// The payload (a missing field is `None` without a `default`, which would bound `T: Default`).
    pub result: Option<T>,
    /// Paging, on collections.
    #[serde(default)]
    pub result_info: Option<ResultInfo>,
}

/// One entry of `errors` (or `messages`).
#[derive(Debug, Deserialize)]
pub struct ApiMessage {
    /// The error code (an integer ≥ 1000).
    #[serde(default)]
    pub code: Option<Value>,
    /// What went wrong.
    #[serde(default)]
    pub message: Option<String>,
}

/// Paging of a collection.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct ResultInfo {
    /// This page's number.
    #[serde(default)]
    pub page: Option<u64>,
    /// Items per page asked for.
    #[serde(default)]
    pub per_page: Option<u64>,
    /// Items on this page.
    #[serde(default)]
    pub count: Option<u64>,
    /// Items in all pages.
    #[serde(default)]
    pub total_count: Option<u64>,
    /// Pages in all (may be absent).
    #[serde(default)]
    pub total_pages: Option<u64>,
}

/// A Zero Trust user.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct User {
    /// UUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Holds an Access seat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_seat: Option<bool>,
    /// Active devices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_device_count: Option<Number>,
    /// When the user was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// Email address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Holds a Gateway seat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_seat: Option<bool>,
    /// Last successful login (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_login: Option<String>,
    /// Name (may be "").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Seat UID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seat_uid: Option<String>,
    /// UID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Last update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// Fields not listed above.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An application of a session.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct SessionApp {
    /// Hostname.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Application type.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub app_type: Option<String>,
    /// UID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Fields not listed above.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A session's metadata.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct SessionMetadata {
    /// Applications, by key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apps: Option<std::collections::BTreeMap<String, SessionApp>>,
    /// Expiry (unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<Number>,
    /// Issued at (unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<Number>,
    /// The session's nonce: the key for `active_session`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// Time to live (seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<Number>,
    /// Fields not listed above.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An active session.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Session {
    /// Expiry (unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<Number>,
    /// Metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<SessionMetadata>,
    /// Name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Fields not listed above.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A failed login. `metadata` is untyped in the API (seen: `app_name`, `aud`, `datetime`,
/// `ray_id`, `user_email`, `user_uuid`) and kept whole.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct FailedLogin {
    /// Expiry (unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<Number>,
    /// What is known about the attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    /// Fields not listed above.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Where an identity came from.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Geo {
    /// ISO country code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// Fields not listed above.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The identity provider used.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Idp {
    /// Id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Type.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub idp_type: Option<String>,
    /// Fields not listed above.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Mutual-TLS details.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct MtlsAuth {
    /// Status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_status: Option<String>,
    /// Issuer DN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_issuer_dn: Option<String>,
    /// Issuer SKI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_issuer_ski: Option<String>,
    /// Whether a certificate was presented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_presented: Option<bool>,
    /// Serial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_serial: Option<String>,
    /// Fields not listed above.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An identity: the last seen one, or an active session's.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Identity {
    /// Account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// Authentication status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_status: Option<String>,
    /// Common name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_name: Option<String>,
    /// Device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// Device sessions, by key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_sessions: Option<Map<String, Value>>,
    /// Device posture results, by key (camelCase in the API).
    #[serde(default, rename = "devicePosture", skip_serializing_if = "Option::is_none")]
    pub device_posture: Option<Map<String, Value>>,
    /// Email.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Country.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geo: Option<Geo>,
    /// Issued at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<Number>,
    /// Identity provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp: Option<Idp>,
    /// IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// On a single active session: whether it is active (camelCase in the API).
    #[serde(default, rename = "isActive", skip_serializing_if = "Option::is_none")]
    pub is_active: Option<bool>,
    /// Through Gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_gateway: Option<bool>,
    /// Through WARP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_warp: Option<bool>,
    /// Mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtls_auth: Option<MtlsAuth>,
    /// Service token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_token_id: Option<String>,
    /// Service token status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_token_status: Option<bool>,
    /// The user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_uuid: Option<String>,
    /// Version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<Number>,
    /// Fields not listed above.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A row of the Access authentication log. The row names its user by email only, and has no id
/// of its own: `ray_id` + `created_at` tell rows apart.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct AccessRequest {
    /// The user's email.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_email: Option<String>,
    /// When it happened (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// Whether the login was let through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed: Option<bool>,
    /// What was attempted, e.g. `login`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// The request's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ray_id: Option<String>,
    /// Where it came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    /// The Access application's uid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_uid: Option<String>,
    /// The Access application's domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_domain: Option<String>,
    /// The identity provider used, e.g. `saml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    /// Fields not listed above.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One user's seats, as `PATCH .../access/seats` takes them: all three fields required.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SeatUpdate {
    /// The seat (a user's `seat_uid`).
    pub seat_uid: String,
    /// Keep an Access seat.
    pub access_seat: bool,
    /// Keep a Gateway seat.
    pub gateway_seat: bool,
}

/// A seat, as `PATCH .../access/seats` answers.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Seat {
    /// The seat's uid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seat_uid: Option<String>,
    /// Holds an Access seat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_seat: Option<bool>,
    /// Holds a Gateway seat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_seat: Option<bool>,
    /// Created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// Last update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// Fields not listed above.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An Access group. Each rule is an object with one key, e.g. `{"email": {"email": "a@example.com"}}`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Group {
    /// UUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Rules of which a member must match one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include: Option<Vec<Value>>,
    /// Rules a member must match none of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude: Option<Vec<Value>>,
    /// Rules a member must match all of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require: Option<Vec<Value>>,
    /// Fields not listed above.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The body of `POST .../groups` and `PUT .../groups/{id}` (a full replace: `name` and
/// `include` required).
#[derive(Debug, Serialize)]
pub struct GroupBody<'a> {
    /// Name.
    pub name: &'a str,
    /// Include rules.
    pub include: &'a [Value],
    /// Exclude rules.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exclude: Option<&'a [Value]>,
    /// Require rules.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub require: Option<&'a [Value]>,
    /// Whether the group is the default one: sent back as read, since the PUT replaces the group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_default: Option<bool>,
}

/// The body of `POST .../access/organizations/revoke_user`.
#[derive(Debug, Serialize)]
pub struct RevokeUser<'a> {
    /// The user's email (required).
    pub email: &'a str,
    /// Also revoke the user's devices.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub devices: Option<bool>,
    /// Make the user re-authenticate WARP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warp_session_reauth: Option<bool>,
}

/// The body of `POST .../users`.
#[derive(Debug, Serialize)]
pub struct CreateUser<'a> {
    /// Required.
    pub email: &'a str,
    /// Optional.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
}

/// The body of `PUT .../users/{id}`: both required; the email must be the current one.
#[derive(Debug, Serialize)]
pub struct UpdateUser<'a> {
    /// The current email.
    pub email: &'a str,
    /// The new name.
    pub name: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn camel_case_fields_and_unknown_fields_survive_a_round_trip() {
        let api = json!({
            "email": "a@example.com",
            "isActive": true,
            "devicePosture": {"check": {"success": true}},
            "geo": {"country": "FI", "region": "Uusimaa"},
            "brand_new_field": [1, 2],
            "iat": 1700000000
        });
        let identity: Identity = serde_json::from_value(api.clone()).unwrap();
        assert_eq!(identity.is_active, Some(true));
        assert_eq!(identity.geo.as_ref().and_then(|g| g.country.as_deref()), Some("FI"));
        assert_eq!(serde_json::to_value(&identity).unwrap(), api);
    }
}
