//! Roles: looking one up by id or name without scanning the role list, listing them and their
//! members, and granting or revoking one explicit role by read-modify-write with the grant
//! checked against what PrivX stored.

use runbook_core::http::{HttpRequest, path};
use runbook_core::{ActionError, CallContext};
use serde_json::{Value, json};

use crate::api::{Subject, is_uuid};
use crate::grant::Grant;
use crate::models::{Page, Role, User};
use crate::{Privx, non_empty};

/// `/role-store/api/v1/roles`.
pub(crate) const ROLES: &str = "/role-store/api/v1/roles";

/// The page size for the role list: its documented maximum.
const ROLE_PAGE: u64 = 1000;

/// The page size for role members: their maximum is undocumented, 50 is the default of every
/// documented PrivX list.
const MEMBER_PAGE: u64 = 50;

fn role_path(rest: &[&str]) -> String {
    format!("{ROLES}{}", path(rest))
}

fn no_role(wanted: &str, how: &str) -> ActionError {
    ActionError::invalid_args(format!(
        "PrivX has no role \"{wanted}\" ({how}); check it against privx::list_roles()"
    ))
    .with_code("NO_SUCH_ROLE")
}

impl Privx {
    /// Every role in the role store.
    pub(crate) async fn all_roles(&self, ctx: &CallContext) -> Result<Vec<Role>, ActionError> {
        let request = || Ok(HttpRequest::get(ROLES));
        self.api.all_pages(ctx, request, ROLE_PAGE, Subject::Other).await
    }

    /// One role by id.
    pub(crate) async fn role_by_id(&self, ctx: &CallContext, id: &str) -> Result<Role, ActionError> {
        match self
            .api
            .json(ctx, HttpRequest::get(role_path(&[id])), Subject::Other)
            .await
        {
            Err(e) if e.status == Some(404) => Err(no_role(id, "no role has this id")),
            other => other,
        }
    }

    /// The roles with these names, as PrivX resolves them.
    pub(crate) async fn resolve(&self, ctx: &CallContext, names: &[String]) -> Result<Vec<Role>, ActionError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let request = HttpRequest::post(format!("{ROLES}/resolve")).json(names)?.read_only();
        let page: Page<Role> = self.api.json(ctx, request, Subject::Other).await?;
        Ok(page.items.unwrap_or_default())
    }

    /// A role given by id (a UUID) or by its exact name.
    pub(crate) async fn role(&self, ctx: &CallContext, wanted: &str) -> Result<Role, ActionError> {
        if is_uuid(wanted) {
            return self.role_by_id(ctx, wanted).await;
        }
        let resolved = self.resolve(ctx, &[wanted.to_owned()]).await?;
        let mut exact = resolved.into_iter().filter(|r| r.name.as_deref() == Some(wanted));
        match (exact.next(), exact.next()) {
            (Some(role), None) => Ok(role),
            (None, _) => Err(no_role(wanted, "no role has this exact name; names are case-sensitive")),
            (Some(_), Some(_)) => Err(ActionError::invalid_args(format!(
                "PrivX has several roles named \"{wanted}\"; give the role's id instead"
            ))),
        }
    }

    /// Every user holding the role, explicitly or mapped.
    pub(crate) async fn members(&self, ctx: &CallContext, role: &str) -> Result<Vec<User>, ActionError> {
        let role = self.role(ctx, non_empty(role, "role")?).await?;
        let id = role.id.unwrap_or_default();
        let request = || Ok(HttpRequest::get(role_path(&[&id, "members"])));
        let mut users: Vec<User> = self.api.all_pages(ctx, request, MEMBER_PAGE, Subject::Other).await?;
        users.iter_mut().for_each(User::redact_seed);
        Ok(users)
    }

    /// Grants (with `Some(grant)`) or revokes one explicit role: read the user's roles, change
    /// the explicit set, write it back — or send nothing when it would not change. The user's
    /// other explicit roles go back with their grants as they are; mapped-only roles are never
    /// sent. A grant is then read back: PrivX must show it explicit and as sent.
    pub(crate) async fn change_role(
        &self,
        ctx: &CallContext,
        user_id: &str,
        role: &str,
        grant: Option<Grant>,
    ) -> Result<Value, ActionError> {
        let user_id = non_empty(user_id, "user_id")?;
        let role = self.role(ctx, non_empty(role, "role")?).await?;
        let role_id = role.id.clone().unwrap_or_default();
        let current = self.user_roles(ctx, user_id).await?;
        // Mapped (implicit-only) roles are not part of the explicit set and must not be sent back.
        let explicit: Vec<&Role> = current.iter().filter(|r| r.explicit.unwrap_or(true)).collect();
        let held = explicit.iter().find(|r| r.id.as_deref() == Some(role_id.as_str()));
        let changed = match (grant, held) {
            (Some(grant), Some(held)) => Grant::of(held) != Some(grant),
            (Some(_), None) => true,
            (None, held) => held.is_some(),
        };
        let mut next: Vec<Value> = Vec::new();
        for r in explicit.iter().filter(|r| r.id.as_deref() != Some(role_id.as_str())) {
            next.push(Grant::keep(r)?);
        }
        match (grant, held) {
            (Some(grant), _) if changed => next.push(grant.handle(&role)),
            (Some(_), Some(held)) => next.push(Grant::keep(held)?),
            _ => {}
        }
        if changed {
            self.put_roles(ctx, user_id, &next).await?;
            if let Some(grant) = grant {
                self.check_stored(ctx, user_id, &role, grant).await?;
            }
        }
        Ok(json!({
            "changed": changed,
            "role": {"id": role.id, "name": role.name},
            "roles": next,
        }))
    }

    /// Reads the user's roles back and fails, naming both, when PrivX did not store the grant
    /// explicitly and as sent (a PrivX that ignores a grant type it does not know would
    /// otherwise turn a time-limited grant into a permanent one without a word).
    async fn check_stored(
        &self,
        ctx: &CallContext,
        user_id: &str,
        role: &Role,
        sent: Grant,
    ) -> Result<(), ActionError> {
        let role_id = role.id.as_deref();
        let name = role.name.as_deref().or(role_id).unwrap_or("?");
        let stored = self.user_roles(ctx, user_id).await?;
        let found = stored.iter().find(|r| r.id.as_deref() == role_id);
        let problem = match found {
            None => Some("does not list the role at all".to_owned()),
            Some(r) if r.explicit != Some(true) => Some(format!(
                "lists it with explicit = {}",
                r.explicit.map_or("(absent)".to_owned(), |e| e.to_string())
            )),
            Some(r) => match Grant::of(r) {
                Some(stored) if stored == sent => None,
                Some(stored) => Some(format!("stored it as {stored}")),
                None => Some(format!(
                    "stored grant_type {} with a window or length that cannot be read",
                    r.grant_type.as_deref().unwrap_or("(absent)")
                )),
            },
        };
        match problem {
            None => Ok(()),
            Some(problem) => Err(ActionError::invalid_response(format!(
                "PrivX did not store the grant of role \"{name}\" to user {user_id} as sent: \
                 sent {sent}, but reading the user's roles back, PrivX {problem}; the roles were \
                 written — check them with privx::get_user_roles and whether this PrivX version \
                 supports {} grants",
                sent.grant_type()
            ))
            .with_code("GRANT_NOT_STORED")
            .with_field("sent", sent.to_string())),
        }
    }
}
