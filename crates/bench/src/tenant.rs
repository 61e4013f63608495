//! Tenants for the benchmarks, in the shape the APIs document.

use serde_json::{Value, json};

pub fn user_id(i: usize) -> String {
    format!("9d2c4a10-0000-4000-8000-{i:012}")
}

fn privx_id(i: usize) -> String {
    format!("7e1b3c20-0000-4000-8000-{i:012}")
}

fn hours_ago(hours: i64) -> String {
    jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() - hours * 3600)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// `users` Access users, each with a PrivX account; every `flag_every`-th user has 3 failed
/// logins in the last hours (flagged by the revoke-MFA job's defaults), a few others old ones.
pub fn tenant(users: usize, flag_every: usize) -> Value {
    let mut cf_users = Vec::with_capacity(users);
    let mut failed = serde_json::Map::new();
    let mut px_users = Vec::with_capacity(users);
    for i in 1..=users {
        let email = format!("user{i}@example.com");
        cf_users.push(json!({
            "id": user_id(i), "email": email, "name": format!("User {i}"), "access_seat": true, "gateway_seat": true,
            "active_device_count": 1, "created_at": "2025-01-01T00:00:00Z", "updated_at": "2025-01-02T00:00:00Z",
            "last_successful_login": hours_ago(5), "seat_uid": format!("seat-{i}"), "uid": format!("uid-{i}"),
        }));
        let failure = |hours: i64| json!({"expiration": 1_900_000_000, "metadata": {"app_name": "Grafana", "datetime": hours_ago(hours), "ray_id": format!("{i:010x}{hours:06x}"), "user_email": email, "user_uuid": user_id(i)}});
        if flag_every > 0 && i % flag_every == 0 {
            failed.insert(user_id(i), json!([failure(1), failure(2), failure(3)]));
        } else if i % 97 == 0 {
            failed.insert(user_id(i), json!([failure(100), failure(101), failure(102)]));
        }
        px_users.push(json!({
            "id": privx_id(i), "principal": format!("user{i}"), "email": email, "full_name": format!("User {i}"),
            "source": "AD", "roles": [], "mfa": {"status": "ENABLED"},
        }));
    }
    json!({
        "cloudflare": {"users": cf_users, "failed_logins": failed},
        "privx": {"users": px_users, "roles": [{"id": "r1", "name": "privx-users"}]},
    })
}

/// Adds Access's authentication log to a tenant: `per_day` successful logins of every user over
/// the last day, spread evenly (the failures the tenant has are in the log already: the simulator
/// lists each failed login there too).
pub fn with_successful_logins(mut fixture: Value, per_day: usize) -> Value {
    let now = jiff::Timestamp::now().as_second();
    let users = fixture["cloudflare"]["users"].as_array().cloned().unwrap_or_default();
    let mut rows = Vec::with_capacity(users.len() * per_day);
    for (n, user) in users.iter().enumerate() {
        for k in 0..per_day {
            let slot = (n * per_day + k) as i64;
            let at = now - 86_400 + (slot * 86_400) / (users.len() * per_day).max(1) as i64;
            let created_at = jiff::Timestamp::from_second(at)
                .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
                .unwrap_or_default();
            rows.push(json!({
                "user_email": user["email"], "created_at": created_at, "allowed": true, "action": "login",
                "ray_id": format!("{slot:016x}"), "ip_address": "198.51.100.7", "app_uid": "a1b2c3",
                "app_domain": "grafana.example.com", "connection": "saml",
            }));
        }
    }
    fixture["cloudflare"]["access_requests"] = Value::Array(rows);
    fixture
}
