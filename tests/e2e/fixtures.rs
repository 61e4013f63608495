//! Small tenants for the simulators, built in the shape the APIs document.

use serde_json::{Value, json};

/// A Cloudflare user id for number `i`.
pub fn cf_id(i: usize) -> String {
    format!("5b9e2c1a-0000-4000-8000-{i:012}")
}

/// A Cloudflare Access user.
pub fn cf_user(i: usize) -> Value {
    json!({
        "id": cf_id(i),
        "email": format!("user{i}@example.com"),
        "name": format!("User {i}"),
        "access_seat": true,
        "gateway_seat": i.is_multiple_of(2),
        "active_device_count": i % 3,
        "created_at": "2025-01-10T08:00:00Z",
        "updated_at": "2025-02-10T08:00:00Z",
        "last_successful_login": "2026-11-20T09:30:00Z",
        "seat_uid": format!("seat-{i}"),
        "uid": format!("uid-{i}"),
    })
}

/// An identity as `last_seen_identity` returns it.
pub fn identity(i: usize, country: &str) -> Value {
    json!({
        "account_id": "0123456789abcdef0123456789abcdef",
        "auth_status": "NONE",
        "common_name": "",
        "devicePosture": {"disk": {"success": true}},
        "device_id": "dev-1",
        "device_sessions": {"dev-1": {"last_authenticated": 1_763_600_000}},
        "email": format!("user{i}@example.com"),
        "geo": {"country": country},
        "iat": 1_763_600_000,
        "idp": {"id": "idp-1", "type": "azureAD"},
        "ip": "85.76.1.2",
        "is_gateway": false,
        "is_warp": true,
        "mtls_auth": {"auth_status": "NONE", "cert_issuer_dn": "", "cert_issuer_ski": "", "cert_presented": false, "cert_serial": ""},
        "service_token_id": "",
        "service_token_status": false,
        "user_uuid": cf_id(i),
        "version": 2,
    })
}

/// A failed login at `datetime`.
pub fn failure(i: usize, datetime: &str) -> Value {
    // A ray id is one request's: unique per user and moment, at most 16 characters.
    let digits: String = datetime.chars().filter(char::is_ascii_digit).take(14).collect();
    let ray_id = format!("{:02x}{digits}", i % 256);
    json!({
        "expiration": 1_764_000_000,
        "metadata": {"app_name": "Grafana", "aud": "aud-1", "datetime": datetime, "ray_id": ray_id, "user_email": format!("user{i}@example.com"), "user_uuid": cf_id(i), "future_key": {"kept": true}},
    })
}

/// A Cloudflare tenant of `n` users; user 1 has a session, failed logins and an identity.
pub fn cloudflare(n: usize) -> Value {
    let users: Vec<Value> = (1..=n).map(cf_user).collect();
    if n == 0 {
        return json!({"users": users});
    }
    let session = json!({
        "expiration": 1_764_000_000,
        "name": "Grafana",
        "metadata": {"apps": {"app-1": {"hostname": "grafana.example.com", "name": "Grafana", "type": "self_hosted", "uid": "app-1"}}, "expires": 1_764_000_000, "iat": 1_763_900_000, "nonce": "nonce-1", "ttl": 86400},
    });
    json!({
        "users": users,
        "active_sessions": {cf_id(1): [session]},
        "session_identities": {cf_id(1): {"nonce-1": identity(1, "FI")}},
        "failed_logins": {cf_id(1): [failure(1, "2026-11-22T10:00:00Z"), failure(1, "2026-11-22T11:00:00Z")]},
        "last_seen_identity": {cf_id(1): identity(1, "FI")},
    })
}

/// A PrivX role.
pub fn role(name: &str, n: usize) -> Value {
    json!({"id": format!("7c1f0000-0000-4000-8000-{n:012}"), "name": name, "comment": format!("{name} role"), "permissions": ["connect"], "grant_type": "PERMANENT", "explicit": false, "implicit": false, "system": false})
}

/// A PrivX user with these explicit roles and MFA status.
pub fn px_user(i: usize, principal: &str, email: &str, source: &str, roles: &[Value], mfa: &str) -> Value {
    let mut mfa_obj = json!({"status": mfa});
    if mfa == "ENABLED" {
        mfa_obj["seed"] = json!({"seed_string": format!("TOTPSEED{i:04}SECRETJBSWY3DPEHPK3PXP"), "seed_qr_code": "data:image/png;base64,AAAA"});
    }
    json!({
        "id": format!("eef4aefc-0000-4000-8000-{i:012}"),
        "principal": principal,
        "email": email,
        "full_name": format!("Person {i}"),
        "source": source,
        "source_type": if source == "AD" { "AD" } else { "LOCAL" },
        "roles": roles.iter().map(|r| { let mut r = r.clone(); r["explicit"] = json!(true); r }).collect::<Vec<_>>(),
        "mfa": mfa_obj,
        "job_title": "Engineer",
        "big_number": u64::MAX,
    })
}

/// A PrivX deployment of `n` users (plus the special ones the tests use).
pub fn privx(n: usize) -> Value {
    let roles = vec![role("admins", 1), role("auditors", 2), role("developers", 3)];
    let mut users = vec![
        px_user(1, "ann", "ann@example.com", "AD", &roles[..1], "ENABLED"),
        px_user(2, "bob", "Bob@Example.com", "AD", &roles[1..3], "DISABLED"),
        // The same email in two directories.
        px_user(3, "carol", "carol@example.com", "AD", &[], "ENABLED"),
        px_user(4, "carol.local", "carol@example.com", "LOCAL", &[], "UNINITIALIZED"),
        // Keyword hits that are not exact matches for "ann@example.com".
        px_user(5, "joanne", "joann@example.com", "AD", &[], "ENABLED"),
        px_user(6, "annika", "ann@example.com.invalid", "AD", &[], "ENABLED"),
    ];
    for i in 7..7 + n {
        users.push(px_user(
            i,
            &format!("user{i}"),
            &format!("user{i}@example.com"),
            "AD",
            &[],
            "ENABLED",
        ));
    }
    json!({"users": users, "roles": roles, "settings": {"eef4aefc-0000-4000-8000-000000000001": {"locale": "fi_FI"}}})
}

/// A tenant for both simulators.
pub fn tenant(cloudflare_users: usize, privx_users: usize) -> Value {
    json!({"cloudflare": cloudflare(cloudflare_users), "privx": privx(privx_users)})
}

/// An RFC 3339 time `hours` before now.
pub fn hours_ago(hours: f64) -> String {
    let secs = jiff::Timestamp::now().as_second() - (hours * 3600.0) as i64;
    jiff::Timestamp::from_second(secs)
        .unwrap()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// The tenant the shipped scripts are tested against:
/// - ann@ (4 recent failures) and bob@ (3, and Bob@Example.com in PrivX) are flagged and in PrivX;
/// - carol@ (5 recent) is in two PrivX directories: ambiguous;
/// - dave@ (3 recent) has no PrivX account;
/// - erin@ has 2 recent and 5 old failures: not flagged by the default threshold;
/// - last seen identities: ann FI, bob BR, dave US, erin SE.
pub fn scripted_tenant() -> Value {
    let people = ["ann", "bob", "carol", "dave", "erin", "frank"];
    let mut users = Vec::new();
    for (i, name) in people.iter().enumerate() {
        let mut u = cf_user(i + 1);
        u["email"] = json!(format!("{name}@example.com"));
        u["last_successful_login"] = json!(hours_ago(10.0 * (i as f64 + 1.0)));
        users.push(u);
    }
    let failures = |i: usize, recent: usize, old: usize| -> Vec<Value> {
        let mut list: Vec<Value> = (0..recent).map(|k| failure(i, &hours_ago(1.0 + k as f64))).collect();
        list.extend((0..old).map(|k| failure(i, &hours_ago(72.0 + k as f64))));
        for f in &mut list {
            f["metadata"]["user_email"] = json!(format!("{}@example.com", people[i - 1]));
        }
        list
    };
    let mut failed = serde_json::Map::new();
    for (i, recent, old) in [(1, 4, 0), (2, 3, 1), (3, 5, 0), (4, 3, 0), (5, 2, 5)] {
        failed.insert(cf_id(i), json!(failures(i, recent, old)));
    }
    let mut seen = serde_json::Map::new();
    for (i, country) in [(1, "FI"), (2, "BR"), (4, "US"), (5, "SE")] {
        let mut id = identity(i, country);
        id["email"] = json!(format!("{}@example.com", people[i - 1]));
        seen.insert(cf_id(i), id);
    }
    let roles = vec![role("admins", 1), role("auditors", 2), role("developers", 3)];
    let px_users = vec![
        px_user(1, "ann", "ann@example.com", "AD", &roles[..2], "ENABLED"),
        px_user(2, "bob", "Bob@Example.com", "AD", &roles[2..], "ENABLED"),
        px_user(3, "carol", "carol@example.com", "AD", &[], "ENABLED"),
        px_user(4, "carol.local", "carol@example.com", "LOCAL", &[], "UNINITIALIZED"),
        px_user(5, "erin", "erin@example.com", "AD", &[], "DISABLED"),
        px_user(6, "frank", "frank@example.com", "AD", &[], "ENABLED"),
    ];
    // Ann is logged in to PrivX, has a live connection and two SSH keys: offboarding ends them.
    let ann = "eef4aefc-0000-4000-8000-000000000001".to_owned();
    json!({
        "cloudflare": {"users": users, "failed_logins": failed, "last_seen_identity": seen},
        "privx": {
            "users": px_users, "roles": roles,
            "sessions": {ann.clone(): [
                {"id": "5e551011-0000-4000-8000-000000000001", "user_id": ann, "type": "login", "domain": "privx-ui", "expires": hours_ago(-8.0)},
            ]},
            "connections": {ann.clone(): [{"id": "c0a1", "host": "db-1.example.com"}]},
            "authorized_keys": {ann.clone(): [
                {"id": "k1", "name": "laptop", "public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIL1 ann@laptop"},
                {"id": "k2", "name": "ci", "public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIL2 ann@ci"},
            ]},
        },
    })
}
