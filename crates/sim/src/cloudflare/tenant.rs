//! The Cloudflare account's state and the operations the endpoints perform on it.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value, json};

use super::access_log;
use super::envelope::CfError;
use super::groups::Groups;
use crate::CloudflareFixture;

/// Users and their per-user records. Users keep their fixture order; new ones are appended.
#[derive(Debug)]
pub(crate) struct Tenant {
    users: Vec<Map<String, Value>>,
    /// `id` → position in `users`: a lookup must not scan a large tenant on every request.
    index: HashMap<String, usize>,
    active_sessions: BTreeMap<String, Vec<Value>>,
    session_identities: BTreeMap<String, BTreeMap<String, Value>>,
    failed_logins: BTreeMap<String, Vec<Value>>,
    last_seen_identity: BTreeMap<String, Value>,
    /// Log rows beyond the failed logins.
    access_requests: Vec<Value>,
    pub(crate) groups: Groups,
    /// Every revocation asked for, as `{email, user_uid, devices, warp_session_reauth}`.
    revocations: Vec<Value>,
}

/// One entry of a `PATCH .../access/seats` body, validated.
#[derive(Debug)]
pub(crate) struct SeatChange {
    pub(crate) seat_uid: String,
    pub(crate) access_seat: bool,
    pub(crate) gateway_seat: bool,
}

/// A `POST .../organizations/revoke_user`, validated.
#[derive(Debug)]
pub(crate) struct Revocation {
    pub(crate) email: String,
    pub(crate) user_uid: Option<String>,
    pub(crate) devices: bool,
    pub(crate) warp_session_reauth: bool,
}

/// The list endpoint's filters, already validated.
#[derive(Debug, Default)]
pub(crate) struct Filters {
    /// Exact, case-insensitive.
    pub(crate) email: Option<String>,
    /// Case-insensitive substring of `name`.
    pub(crate) name: Option<String>,
    /// Case-insensitive substring of `email` or `name`.
    pub(crate) search: Option<String>,
}

impl Tenant {
    pub(crate) fn new(fixture: &CloudflareFixture) -> Tenant {
        let mut tenant = Tenant {
            users: fixture.users.iter().filter_map(|u| u.as_object().cloned()).collect(),
            index: HashMap::new(),
            active_sessions: fixture.active_sessions.clone(),
            session_identities: fixture.session_identities.clone(),
            failed_logins: fixture.failed_logins.clone(),
            last_seen_identity: fixture.last_seen_identity.clone(),
            access_requests: fixture.access_requests.clone(),
            groups: Groups::new(&fixture.groups),
            revocations: Vec::new(),
        };
        tenant.reindex();
        tenant
    }

    fn reindex(&mut self) {
        self.index = self
            .users
            .iter()
            .enumerate()
            .filter_map(|(i, u)| text(u, "id").map(|id| (id.to_owned(), i)))
            .collect();
    }

    pub(crate) fn users(&self) -> Vec<Value> {
        self.users.iter().cloned().map(Value::Object).collect()
    }

    pub(crate) fn user(&self, id: &str) -> Option<&Map<String, Value>> {
        self.index.get(id).and_then(|&i| self.users.get(i))
    }

    fn user_mut(&mut self, id: &str) -> Option<&mut Map<String, Value>> {
        let i = *self.index.get(id)?;
        self.users.get_mut(i)
    }

    fn require(&self, id: &str) -> Result<&Map<String, Value>, CfError> {
        self.user(id)
            .ok_or_else(|| CfError::not_found(format!("user {id} not found")))
    }

    /// Every user matching `filters`, in order.
    pub(crate) fn filtered(&self, filters: &Filters) -> Vec<&Map<String, Value>> {
        let email = filters.email.as_deref().map(str::to_lowercase);
        let name = filters.name.as_deref().map(str::to_lowercase);
        let search = filters.search.as_deref().map(str::to_lowercase);
        self.users
            .iter()
            .filter(|user| {
                let user_email = text(user, "email").unwrap_or("").to_lowercase();
                let user_name = text(user, "name").unwrap_or("").to_lowercase();
                email.as_ref().is_none_or(|e| *e == user_email)
                    && name.as_ref().is_none_or(|n| user_name.contains(n.as_str()))
                    && search
                        .as_ref()
                        .is_none_or(|s| user_email.contains(s.as_str()) || user_name.contains(s.as_str()))
            })
            .collect()
    }

    pub(crate) fn create(&mut self, email: &str, name: &str, now: &str) -> Result<Value, CfError> {
        let taken = self
            .users
            .iter()
            .any(|u| text(u, "email").is_some_and(|e| e.eq_ignore_ascii_case(email)));
        if taken {
            return Err(CfError::conflict(format!("a user with email {email} already exists")));
        }
        // id, uid and seat_uid are distinct values so that a client mixing them up is caught.
        let user = json!({
            "id": uuid::Uuid::new_v4().to_string(),
            "uid": uuid::Uuid::new_v4().to_string(),
            "seat_uid": uuid::Uuid::new_v4().simple().to_string(),
            "email": email,
            "name": name,
            "access_seat": false,
            "gateway_seat": false,
            "active_device_count": 0,
            "created_at": now,
            "updated_at": now,
            "last_successful_login": null,
        });
        if let Value::Object(map) = &user {
            if let Some(id) = text(map, "id") {
                self.index.insert(id.to_owned(), self.users.len());
            }
            self.users.push(map.clone());
        }
        Ok(user)
    }

    pub(crate) fn update(&mut self, id: &str, email: &str, name: &str, now: &str) -> Result<Value, CfError> {
        let current = text(self.require(id)?, "email").unwrap_or("").to_owned();
        if !current.eq_ignore_ascii_case(email) {
            return Err(CfError::invalid_field(
                "email",
                "email must be the user's current email: it cannot be changed",
            ));
        }
        let user = self
            .user_mut(id)
            .ok_or_else(|| CfError::not_found(format!("user {id} not found")))?;
        user.insert("name".to_owned(), Value::from(name));
        user.insert("updated_at".to_owned(), Value::from(now));
        Ok(Value::Object(user.clone()))
    }

    pub(crate) fn delete(&mut self, id: &str) -> Result<(), CfError> {
        self.require(id)?;
        self.users.retain(|u| text(u, "id") != Some(id));
        self.reindex();
        self.active_sessions.remove(id);
        self.session_identities.remove(id);
        self.failed_logins.remove(id);
        self.last_seen_identity.remove(id);
        Ok(())
    }

    pub(crate) fn active_sessions(&self, id: &str) -> Result<Vec<Value>, CfError> {
        self.require(id)?;
        Ok(self.active_sessions.get(id).cloned().unwrap_or_default())
    }

    pub(crate) fn active_session(&self, id: &str, nonce: &str) -> Result<Value, CfError> {
        self.require(id)?;
        let mut identity = self
            .session_identities
            .get(id)
            .and_then(|by_nonce| by_nonce.get(nonce))
            .cloned()
            .ok_or_else(|| CfError::not_found(format!("no active session {nonce} for user {id}")))?;
        if let Value::Object(identity) = &mut identity {
            identity.entry("isActive").or_insert(Value::Bool(true));
        }
        Ok(identity)
    }

    pub(crate) fn failed_logins(&self, id: &str) -> Result<Vec<Value>, CfError> {
        self.require(id)?;
        Ok(self.failed_logins.get(id).cloned().unwrap_or_default())
    }

    pub(crate) fn last_seen_identity(&self, id: &str) -> Result<Value, CfError> {
        self.require(id)?;
        self.last_seen_identity
            .get(id)
            .cloned()
            .ok_or_else(|| CfError::not_found(format!("no identity seen yet for user {id}")))
    }
}

impl Tenant {
    /// The whole authentication log, unordered: the explicit rows and one row per failed login.
    pub(crate) fn access_log(&self) -> Vec<Value> {
        let emails: HashMap<&str, &str> = self
            .users
            .iter()
            .filter_map(|u| Some((text(u, "id")?, text(u, "email")?)))
            .collect();
        access_log::rows(&self.access_requests, &self.failed_logins, &emails)
    }

    /// Revokes every Access token of the user with this email: their active sessions end, and
    /// with `devices` their devices too. An email with no user has no tokens; that is not an
    /// error.
    pub(crate) fn revoke(&mut self, revocation: Revocation) {
        let id = self
            .users
            .iter()
            .find(|u| text(u, "email").is_some_and(|e| e.eq_ignore_ascii_case(&revocation.email)))
            .and_then(|u| text(u, "id"))
            .map(str::to_owned);
        if let Some(id) = id {
            self.active_sessions.remove(&id);
            self.session_identities.remove(&id);
            if let Some(user) = self.user_mut(&id).filter(|_| revocation.devices) {
                user.insert("active_device_count".to_owned(), Value::from(0));
            }
        }
        self.revocations.push(json!({
            "email": revocation.email,
            "user_uid": revocation.user_uid,
            "devices": revocation.devices,
            "warp_session_reauth": revocation.warp_session_reauth,
        }));
    }

    pub(crate) fn revocations(&self) -> Vec<Value> {
        self.revocations.clone()
    }

    /// Sets the seats of the users holding these seat uids, all or none: an unknown seat uid
    /// changes nothing. Returns the seats as the API does.
    pub(crate) fn update_seats(&mut self, changes: &[SeatChange], now: &str) -> Result<Vec<Value>, CfError> {
        let mut positions = Vec::with_capacity(changes.len());
        for (i, change) in changes.iter().enumerate() {
            let position = self
                .users
                .iter()
                .position(|u| text(u, "seat_uid") == Some(change.seat_uid.as_str()))
                .ok_or_else(|| {
                    CfError::invalid_field(
                        &format!("{i}/seat_uid"),
                        format!("no user holds seat {}", change.seat_uid),
                    )
                })?;
            positions.push(position);
        }
        let mut seats = Vec::with_capacity(changes.len());
        for (change, position) in changes.iter().zip(positions) {
            let user = &mut self.users[position];
            user.insert("access_seat".to_owned(), Value::Bool(change.access_seat));
            user.insert("gateway_seat".to_owned(), Value::Bool(change.gateway_seat));
            user.insert("updated_at".to_owned(), Value::from(now));
            seats.push(json!({
                "seat_uid": change.seat_uid,
                "access_seat": change.access_seat,
                "gateway_seat": change.gateway_seat,
                "created_at": user.get("created_at").cloned().unwrap_or(Value::Null),
                "updated_at": now,
            }));
        }
        Ok(seats)
    }
}

fn text<'a>(user: &'a Map<String, Value>, field: &str) -> Option<&'a str> {
    user.get(field).and_then(Value::as_str)
}
