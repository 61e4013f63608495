//! Every user's failed logins without the authentication log: the user list, then each user's
//! `failed_logins`, a few at a time. The way `failed_logins_since` still answers when the log
//! refuses the credentials (its API documents only the global API key).

use futures::StreamExt;
use jiff::Timestamp;
use runbook_core::http::HttpRequest;
use runbook_core::{ActionError, CallContext};
use serde_json::{Map, Value};

use crate::api::{Api, Collection, Subject};
use crate::models::{AccessRequest, FailedLogin, User};

/// Users whose failed logins are read at once: enough to hide latency, few enough to leave the
/// rate budget to the rest of the run.
const USERS_IN_FLIGHT: usize = 4;

/// The failed logins of every user since `since`, as log rows, oldest first. Returns the rows
/// and how many users were read.
pub async fn per_user(
    api: &Api,
    ctx: &CallContext,
    since: Timestamp,
) -> Result<(Vec<AccessRequest>, usize), ActionError> {
    let users: Vec<User> = api.all_pages(ctx, Collection::Users, &[]).await?;
    let count = users.len();
    // Owned items: a stream of borrowed ones is not `Send` enough for the provider's future.
    let targets: Vec<(String, Option<String>)> = users.into_iter().filter_map(|u| Some((u.id?, u.email))).collect();
    let mut pending = futures::stream::iter(targets)
        .map(|(id, email)| async move {
            let request = HttpRequest::get(api.users_path(&[&id, "failed_logins"]));
            match api.call::<Vec<FailedLogin>>(ctx, request, Subject::User(&id)).await {
                Ok((failures, _)) => Ok((email, failures.unwrap_or_default())),
                // Deleted since the list was read: it has no failures to report.
                Err(error) if error.status == Some(404) => Ok((email, Vec::new())),
                Err(error) => Err(error),
            }
        })
        .buffered(USERS_IN_FLIGHT);
    let mut rows: Vec<(Timestamp, AccessRequest)> = Vec::new();
    while let Some(result) = pending.next().await {
        let (email, failures) = result?;
        for failure in &failures {
            let row = as_log_row(failure, email.as_deref());
            // A failure without a readable time cannot be placed in the window.
            let at = row.created_at.as_deref().and_then(|t| t.parse::<Timestamp>().ok());
            if let Some(at) = at.filter(|at| *at >= since) {
                rows.push((at, row));
            }
        }
    }
    rows.sort_by_key(|(at, _)| *at);
    Ok((rows.into_iter().map(|(_, row)| row).collect(), count))
}

/// A failed login in the log's row shape. Its metadata is untyped; the keys seen are
/// `app_name`, `aud`, `datetime`, `ray_id`, `user_email` and `user_uuid`.
fn as_log_row(failure: &FailedLogin, user_email: Option<&str>) -> AccessRequest {
    let empty = Map::new();
    let metadata = failure.metadata.as_ref().unwrap_or(&empty);
    let text = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| metadata.get(*k).and_then(Value::as_str))
            .map(str::to_owned)
    };
    AccessRequest {
        user_email: text(&["user_email"]).or_else(|| user_email.map(str::to_owned)),
        created_at: text(&["datetime"]),
        allowed: Some(false),
        action: Some("login".to_owned()),
        ray_id: text(&["ray_id"]),
        ip_address: text(&["ip_address", "ip"]),
        app_uid: text(&["app_uid", "aud"]),
        app_domain: text(&["app_domain", "app_name"]),
        connection: text(&["connection", "idp"]),
        extra: Map::new(),
    }
}
