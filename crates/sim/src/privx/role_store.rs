//! The PrivX role store: users, roles and user settings, and what the endpoints do to them.
//!
//! A user holds roles two ways, as the API documents: explicitly granted ones, the set that
//! `PUT .../users/{id}/roles` replaces, and mapped ones, which real PrivX derives from directory
//! group mappings and which that PUT leaves alone ("granted in addition to mapped roles"). A
//! fixture marks a mapped role with `"explicit": false`, or one that is both with
//! `"implicit": true` beside an explicit flag that is missing or true. Every answer shows a role
//! once, with `explicit` and `implicit` saying which of the two ways the user holds it.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::errors::PrivxError;
use super::grants::{self, GRANT_FIELDS};
use super::paging::Paging;
use super::search::{self, Criteria};
use crate::PrivxFixture;

#[derive(Debug)]
pub(crate) struct RoleStore {
    /// The users; a user's `roles` holds only its explicit grants, so that a PUT can replace
    /// them without touching its mapped roles.
    users: Vec<Map<String, Value>>,
    /// `id` → position in `users`: a lookup must not scan a large deployment on every request.
    index: std::collections::HashMap<String, usize>,
    /// Per user, the lower-cased text keywords are searched in, computed once: nothing the
    /// simulator lets a client change (roles, MFA, settings) is part of it.
    haystacks: Vec<String>,
    /// `user_id` → the roles mapped to that user, as the fixture gave them. Nothing changes them.
    mapped: BTreeMap<String, Vec<Map<String, Value>>>,
    roles: Vec<Map<String, Value>>,
    settings: BTreeMap<String, Value>,
    /// Test knob: store role grants without their grant fields, as a PrivX that does not know
    /// them would (see `PrivxSim::set_ignore_grant_fields`).
    ignore_grant_fields: bool,
}

/// The three MFA operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MfaAction {
    Enable,
    Disable,
    Reset,
}

impl MfaAction {
    pub(crate) fn parse(name: &str) -> Option<MfaAction> {
        match name {
            "enable" => Some(MfaAction::Enable),
            "disable" => Some(MfaAction::Disable),
            "reset" => Some(MfaAction::Reset),
            _ => None,
        }
    }
}

impl RoleStore {
    pub(crate) fn new(fixture: &PrivxFixture) -> RoleStore {
        let objects = |items: &[Value]| items.iter().filter_map(|v| v.as_object().cloned()).collect();
        let mut users = Vec::new();
        let mut mapped = BTreeMap::new();
        for user in fixture.users.iter().filter_map(Value::as_object) {
            let mut user = user.clone();
            if let Some(Value::Array(roles)) = user.get("roles") {
                let (explicit, from_mappings) = split_fixture_roles(roles);
                // A user without mapped roles is stored exactly as the fixture gave it.
                if !from_mappings.is_empty() {
                    if let Some(id) = id_of(&user) {
                        mapped.insert(id.to_owned(), from_mappings);
                    }
                    user.insert("roles".to_owned(), Value::Array(explicit));
                }
            }
            users.push(user);
        }
        let index = users
            .iter()
            .enumerate()
            .filter_map(|(i, u)| id_of(u).map(|id| (id.to_owned(), i)))
            .collect();
        let haystacks = users.iter().map(search::haystack).collect();
        RoleStore {
            users,
            index,
            haystacks,
            mapped,
            roles: objects(&fixture.roles),
            settings: fixture.settings.clone(),
            ignore_grant_fields: false,
        }
    }

    /// Every user, as `GET /role-store/api/v1/users/{id}` answers it.
    pub(crate) fn users(&self) -> Vec<Value> {
        self.users.iter().map(|u| Value::Object(self.shown(u))).collect()
    }

    /// One user, as `GET /role-store/api/v1/users/{id}` answers it.
    pub(crate) fn get_user(&self, id: &str) -> Result<Value, PrivxError> {
        Ok(Value::Object(self.shown(self.user(id)?)))
    }

    /// `Ok` when the user exists, else the 404 PrivX answers for an unknown user.
    pub(crate) fn check_user(&self, id: &str) -> Result<(), PrivxError> {
        self.user(id).map(|_| ())
    }

    fn find_user(&self, id: &str) -> Option<&Map<String, Value>> {
        self.index.get(id).and_then(|&i| self.users.get(i))
    }

    fn user(&self, id: &str) -> Result<&Map<String, Value>, PrivxError> {
        self.find_user(id)
            .ok_or_else(|| PrivxError::not_found(format!("user {id} not found")))
    }

    fn user_mut(&mut self, id: &str) -> Result<&mut Map<String, Value>, PrivxError> {
        self.index
            .get(id)
            .copied()
            .and_then(|i| self.users.get_mut(i))
            .ok_or_else(|| PrivxError::not_found(format!("user {id} not found")))
    }

    fn role(&self, id: &str) -> Option<&Map<String, Value>> {
        self.roles.iter().find(|r| id_of(r) == Some(id))
    }

    /// A page of the role store's roles, `{count, items}`.
    pub(crate) fn roles_page(&self, paging: &Paging) -> Value {
        paging.answer(self.roles.iter().collect())
    }

    /// One role of the role store.
    pub(crate) fn get_role(&self, id: &str) -> Result<Value, PrivxError> {
        self.role(id)
            .cloned()
            .map(Value::Object)
            .ok_or_else(|| PrivxError::not_found(format!("role {id} not found")))
    }

    /// The roles with these exact names, `{count, items}`; unknown names are left out.
    pub(crate) fn resolve_roles(&self, body: &[u8]) -> Result<Value, PrivxError> {
        let names: Vec<String> = match serde_json::from_slice::<Value>(body) {
            Ok(Value::Array(names)) => names
                .iter()
                .map(|n| n.as_str().map(str::to_owned))
                .collect::<Option<_>>()
                .ok_or_else(|| PrivxError::bad_request("the body must be a JSON array of role names"))?,
            _ => return Err(PrivxError::bad_request("the body must be a JSON array of role names")),
        };
        let found: Vec<Value> = self
            .roles
            .iter()
            .filter(|r| {
                r.get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| names.iter().any(|w| w == n))
            })
            .cloned()
            .map(Value::Object)
            .collect();
        Ok(serde_json::json!({"count": found.len(), "items": found}))
    }

    /// A page of the users holding the role (explicitly or mapped), `{count, items}`.
    pub(crate) fn role_members(&self, role_id: &str, paging: &Paging) -> Result<Value, PrivxError> {
        if self.role(role_id).is_none() {
            return Err(PrivxError::not_found(format!("role {role_id} not found")));
        }
        let holds = |user: &Map<String, Value>| {
            let explicit = user.get("roles").and_then(Value::as_array).into_iter().flatten();
            explicit.filter_map(Value::as_object).any(|r| id_of(r) == Some(role_id))
                || self.mapped_of(user).iter().any(|r| id_of(r) == Some(role_id))
        };
        let members: Vec<Map<String, Value>> = self.users.iter().filter(|u| holds(u)).map(|u| self.shown(u)).collect();
        Ok(paging.answer(members.iter().collect()))
    }

    /// Whether a roles PUT keeps the grant fields (the default) or drops them.
    pub(crate) fn set_ignore_grant_fields(&mut self, ignore: bool) {
        self.ignore_grant_fields = ignore;
    }

    fn mapped_of(&self, user: &Map<String, Value>) -> &[Map<String, Value>] {
        id_of(user)
            .and_then(|id| self.mapped.get(id))
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// The user with every role it holds, flagged. The roles are the user's own grant objects,
    /// not merged with the role store, as the user object has always shown them; a user holding
    /// no roles keeps its `roles` as it was (absent or null).
    fn shown(&self, user: &Map<String, Value>) -> Map<String, Value> {
        let mut shown = user.clone();
        if matches!(user.get("roles"), Some(Value::Array(_))) || !self.mapped_of(user).is_empty() {
            shown.insert("roles".to_owned(), Value::Array(self.held_roles(user, false)));
        }
        shown
    }

    /// Every role the user holds, each once: the explicit grants in their order, then the
    /// mapped roles not also granted explicitly. With `from_store` each is the role store's full
    /// role with the user's mapping and grant fields over it; `explicit` and `implicit` say how
    /// the user holds it.
    fn held_roles(&self, user: &Map<String, Value>, from_store: bool) -> Vec<Value> {
        let mapped = self.mapped_of(user);
        let base = |id: Option<&str>| {
            if from_store {
                id.and_then(|id| self.role(id)).cloned().unwrap_or_default()
            } else {
                Map::new()
            }
        };
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        let mut held = Vec::new();
        let grants = user.get("roles").and_then(Value::as_array).into_iter().flatten();
        for grant in grants.filter_map(Value::as_object) {
            let id = id_of(grant);
            if id.is_some_and(|id| !seen.insert(id)) {
                continue;
            }
            let mapping = id.and_then(|id| mapped.iter().find(|m| id_of(m) == Some(id)));
            let mut role = base(id);
            for source in mapping.into_iter().chain([grant]) {
                role.extend(source.iter().map(|(key, value)| (key.clone(), value.clone())));
            }
            // A handle sent with `"explicit": false` is stored as sent: it may not count as an
            // explicit grant in PrivX (the schema's default is false), and a client must see that.
            let explicit = grant.get("explicit") != Some(&Value::Bool(false));
            held.push(flagged(role, explicit, mapping.is_some()));
        }
        for mapping in mapped {
            let id = id_of(mapping);
            if id.is_some_and(|id| !seen.insert(id)) {
                continue;
            }
            let mut role = base(id);
            role.extend(mapping.iter().map(|(key, value)| (key.clone(), value.clone())));
            held.push(flagged(role, false, true));
        }
        held
    }

    /// The user's roles, explicit and mapped, as `GET .../users/{id}/roles` lists them.
    pub(crate) fn user_roles(&self, user_id: &str) -> Result<Vec<Value>, PrivxError> {
        Ok(self.held_roles(self.user(user_id)?, true))
    }

    /// The user with its effective roles (explicit and mapped) and the union of their
    /// permissions, in first-seen order.
    pub(crate) fn resolve(&self, user_id: &str) -> Result<Value, PrivxError> {
        let mut user = self.user(user_id)?.clone();
        let roles = self.user_roles(user_id)?;
        let mut permissions: Vec<Value> = Vec::new();
        for role in &roles {
            let granted = role.get("permissions").and_then(Value::as_array);
            for permission in granted.into_iter().flatten() {
                if !permissions.contains(permission) {
                    permissions.push(permission.clone());
                }
            }
        }
        user.insert("roles".to_owned(), Value::Array(roles));
        user.insert("permissions".to_owned(), Value::Array(permissions));
        Ok(Value::Object(user))
    }

    pub(crate) fn settings(&self, user_id: &str) -> Result<Value, PrivxError> {
        self.user(user_id)?;
        Ok(self
            .settings
            .get(user_id)
            .cloned()
            .unwrap_or_else(|| Value::Object(Map::new())))
    }

    /// Stores the settings and answers the user, as the API documents.
    pub(crate) fn set_settings(&mut self, user_id: &str, body: &[u8]) -> Result<Value, PrivxError> {
        let user = self.get_user(user_id)?;
        let settings = match serde_json::from_slice::<Value>(body) {
            Ok(settings @ Value::Object(_)) => settings,
            Ok(_) => return Err(PrivxError::bad_request("settings must be a JSON object")),
            Err(e) => {
                return Err(PrivxError::bad_request(format!("settings are not valid JSON: {e}")));
            }
        };
        self.settings.insert(user_id.to_owned(), settings);
        Ok(user)
    }

    /// Replaces the user's explicit roles with the array in `body`; mapped roles stay, and one
    /// named in `body` is then held both ways. Roles are named by `id`; everything else about a
    /// role comes from the role store except `explicit` and the grant fields, which are checked
    /// (`grants::check`) and kept as sent.
    pub(crate) fn set_roles(&mut self, user_id: &str, body: &[u8]) -> Result<(), PrivxError> {
        self.user(user_id)?;
        let Ok(Value::Array(requested)) = serde_json::from_slice::<Value>(body) else {
            return Err(PrivxError::bad_request("the body must be a JSON array of roles"));
        };
        let mut granted: Vec<Value> = Vec::new();
        for (index, role) in requested.iter().enumerate() {
            let Some(role) = role.as_object() else {
                return Err(PrivxError::bad_property(
                    format!("roles[{index}]"),
                    "each role must be an object with an id",
                ));
            };
            let Some(id) = id_of(role) else {
                return Err(PrivxError::bad_property(
                    format!("roles[{index}].id"),
                    "each role must have a string id",
                ));
            };
            let Some(known) = self.role(id) else {
                return Err(PrivxError::bad_property(
                    format!("roles[{index}].id"),
                    format!("role {id} does not exist"),
                ));
            };
            if !self.ignore_grant_fields {
                grants::check(index, role)?;
            }
            if granted.iter().any(|g| g.get("id").and_then(Value::as_str) == Some(id)) {
                continue;
            }
            let mut grant = known.clone();
            if !self.ignore_grant_fields {
                for field in GRANT_FIELDS {
                    if let Some(value) = role.get(field) {
                        grant.insert(field.to_owned(), value.clone());
                    }
                }
            }
            // The role-handle schema's default for `explicit` is false: a handle sent without it
            // is stored as not explicitly granted, so a client that leaves it out sees that.
            let explicit = role.get("explicit") == Some(&Value::Bool(true));
            grant.insert("explicit".to_owned(), Value::Bool(explicit));
            granted.push(Value::Object(grant));
        }
        self.user_mut(user_id)?
            .insert("roles".to_owned(), Value::Array(granted));
        Ok(())
    }

    /// Applies an MFA operation to every user id in the array in `body`, or to none of them when
    /// any id is unknown.
    pub(crate) fn mfa(&mut self, action: MfaAction, body: &[u8]) -> Result<(), PrivxError> {
        let ids: Vec<String> = match serde_json::from_slice::<Value>(body) {
            Ok(Value::Array(ids)) => ids
                .iter()
                .map(|id| id.as_str().map(str::to_owned))
                .collect::<Option<_>>()
                .ok_or_else(|| PrivxError::bad_request("the body must be a JSON array of user id strings"))?,
            _ => {
                return Err(PrivxError::bad_request(
                    "the body must be a JSON array of user id strings",
                ));
            }
        };
        if let Some(unknown) = ids.iter().find(|id| self.find_user(id).is_none()) {
            return Err(PrivxError::bad_property("user_id", format!("user {unknown} not found")));
        }
        for id in &ids {
            let user = self.user_mut(id)?;
            let mfa = user.entry("mfa").or_insert_with(|| Value::Object(Map::new()));
            if !mfa.is_object() {
                *mfa = Value::Object(Map::new());
            }
            if let Value::Object(mfa) = mfa {
                let status = match action {
                    MfaAction::Enable => "ENABLED",
                    MfaAction::Disable => "DISABLED",
                    MfaAction::Reset => {
                        // A reset makes the user pair a new authenticator: the old secret is gone.
                        mfa.remove("seed");
                        "UNINITIALIZED"
                    }
                };
                mfa.insert("status".to_owned(), Value::from(status));
            }
        }
        Ok(())
    }

    pub(crate) fn search(&self, criteria: &Criteria, paging: &Paging) -> (usize, Vec<Value>) {
        let (count, page) = search::search(&self.users, &self.haystacks, criteria, paging);
        (count, page.into_iter().map(|u| Value::Object(self.shown(u))).collect())
    }
}

/// Splits a fixture user's `roles` into its explicit grants and its mapped roles. A role is
/// explicit unless `"explicit": false`, and mapped when `"explicit": false` or `"implicit": true`;
/// a role that is both lands in both lists.
fn split_fixture_roles(roles: &[Value]) -> (Vec<Value>, Vec<Map<String, Value>>) {
    let mut explicit = Vec::new();
    let mut mapped = Vec::new();
    for role in roles {
        let Some(object) = role.as_object() else {
            explicit.push(role.clone());
            continue;
        };
        let is_explicit = object.get("explicit") != Some(&Value::Bool(false));
        if is_explicit {
            explicit.push(role.clone());
        }
        if !is_explicit || object.get("implicit") == Some(&Value::Bool(true)) {
            mapped.push(object.clone());
        }
    }
    (explicit, mapped)
}

fn flagged(mut role: Map<String, Value>, explicit: bool, implicit: bool) -> Value {
    role.insert("explicit".to_owned(), Value::Bool(explicit));
    role.insert("implicit".to_owned(), Value::Bool(implicit));
    Value::Object(role)
}

fn id_of(object: &Map<String, Value>) -> Option<&str> {
    object.get("id").and_then(Value::as_str)
}
