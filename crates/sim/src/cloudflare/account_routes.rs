//! The account's Access endpoints beyond users: the authentication log, revoking a user's
//! tokens, seats and groups.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use super::CloudflareState;
use super::access_log::LogQuery;
use super::envelope::{self, CfError, ResultInfo};
use super::groups::GroupBody;
use super::routes::{Reply, Segments, json_object, now, plausible_email, positive};
use super::tenant::{Revocation, SeatChange};
use crate::lock::lock;

/// The groups list's documented default page size; the spec names no maximum.
const GROUPS_PER_PAGE: u64 = 1000;

pub(super) async fn access_requests(
    State(state): State<Arc<CloudflareState>>,
    Segments(account_id): Segments<String>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Reply {
    state.check_account(&account_id)?;
    let Query(pairs) = query.map_err(|e| CfError::invalid(format!("invalid query: {e}")))?;
    let log = &state.knobs;
    let query = LogQuery::parse(&pairs, log.max_per_page(), log.caps_silently(), !log.ignores_allowed())?;
    let rows = lock(&state.tenant).access_log();
    Ok(envelope::success(StatusCode::OK, Value::Array(query.page_of(rows))))
}

pub(super) async fn revoke_user(
    State(state): State<Arc<CloudflareState>>,
    Segments(account_id): Segments<String>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    body: Bytes,
) -> Reply {
    state.check_account(&account_id)?;
    let Query(pairs) = query.map_err(|e| CfError::invalid(format!("invalid query: {e}")))?;
    let body = json_object(&body)?;
    let email = match body.get("email") {
        Some(Value::String(email)) if plausible_email(email) => email.clone(),
        Some(Value::String(_)) => return Err(CfError::invalid_field("email", "email is not a valid email address")),
        Some(_) => return Err(CfError::invalid_field("email", "email must be a string")),
        None => return Err(CfError::invalid_field("email", "email is required")),
    };
    let user_uid = match body.get("user_uid") {
        None | Some(Value::Null) => None,
        Some(Value::String(uid)) => Some(uid.clone()),
        Some(_) => return Err(CfError::invalid_field("user_uid", "user_uid must be a string")),
    };
    let mut devices = optional_bool(&body, "devices")?;
    // The spec allows `devices` as a query parameter too.
    for (key, value) in &pairs {
        if key == "devices" {
            devices = match value.as_str() {
                "true" => true,
                "false" => false,
                _ => {
                    return Err(CfError::invalid(format!(
                        "devices must be true or false, got {value:?}"
                    )));
                }
            } || devices;
        }
    }
    let warp_session_reauth = optional_bool(&body, "warp_session_reauth")?;
    lock(&state.tenant).revoke(Revocation {
        email,
        user_uid,
        devices,
        warp_session_reauth,
    });
    Ok(envelope::success(StatusCode::OK, Value::Bool(true)))
}

pub(super) async fn update_seats(
    State(state): State<Arc<CloudflareState>>,
    Segments(account_id): Segments<String>,
    body: Bytes,
) -> Reply {
    state.check_account(&account_id)?;
    let items = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Array(items)) => items,
        Ok(_) => {
            return Err(CfError::invalid(
                "the request body must be a JSON array of {seat_uid, access_seat, gateway_seat}",
            ));
        }
        Err(e) => return Err(CfError::invalid(format!("the request body is not valid JSON: {e}"))),
    };
    let mut changes = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Some(item) = item.as_object() else {
            return Err(CfError::invalid_field(&i.to_string(), "each seat must be an object"));
        };
        let flag = |field: &str| match item.get(field) {
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(CfError::invalid_field(
                &format!("{i}/{field}"),
                format!("{field} must be a boolean"),
            )),
            None => Err(CfError::invalid_field(
                &format!("{i}/{field}"),
                format!("{field} is required"),
            )),
        };
        let seat_uid = match item.get("seat_uid") {
            Some(Value::String(uid)) if !uid.is_empty() => uid.clone(),
            Some(_) => {
                return Err(CfError::invalid_field(
                    &format!("{i}/seat_uid"),
                    "seat_uid must be a non-empty string",
                ));
            }
            None => return Err(CfError::invalid_field(&format!("{i}/seat_uid"), "seat_uid is required")),
        };
        changes.push(SeatChange {
            seat_uid,
            access_seat: flag("access_seat")?,
            gateway_seat: flag("gateway_seat")?,
        });
    }
    let seats = lock(&state.tenant).update_seats(&changes, &now())?;
    Ok(envelope::success(StatusCode::OK, Value::Array(seats)))
}

pub(super) async fn list_groups(
    State(state): State<Arc<CloudflareState>>,
    Segments(account_id): Segments<String>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Reply {
    state.check_account(&account_id)?;
    let Query(pairs) = query.map_err(|e| CfError::invalid(format!("invalid query: {e}")))?;
    let (mut page, mut per_page) = (1, GROUPS_PER_PAGE);
    let (mut name, mut search) = (None, None);
    for (key, value) in pairs {
        match key.as_str() {
            "page" => page = positive(&key, &value, u64::MAX)?,
            "per_page" => per_page = positive(&key, &value, u64::MAX)?,
            "name" => name = (!value.is_empty()).then_some(value),
            "search" => search = (!value.is_empty()).then_some(value),
            _ => {}
        }
    }
    let matching = lock(&state.tenant).groups.filtered(name.as_deref(), search.as_deref());
    let skip = usize::try_from((page - 1).saturating_mul(per_page)).unwrap_or(usize::MAX);
    let take = usize::try_from(per_page).unwrap_or(usize::MAX);
    let total_count = matching.len();
    let items: Vec<Value> = matching.into_iter().skip(skip).take(take).collect();
    let info = ResultInfo {
        page,
        per_page,
        count: items.len(),
        total_count,
    };
    Ok(envelope::success_page(items, info))
}

pub(super) async fn get_group(
    State(state): State<Arc<CloudflareState>>,
    Segments((account_id, group_id)): Segments<(String, String)>,
) -> Reply {
    state.check_account(&account_id)?;
    let group = lock(&state.tenant).groups.get(&group_id)?;
    Ok(envelope::success(StatusCode::OK, group))
}

pub(super) async fn create_group(
    State(state): State<Arc<CloudflareState>>,
    Segments(account_id): Segments<String>,
    body: Bytes,
) -> Reply {
    state.check_account(&account_id)?;
    let body = GroupBody::parse(&json_object(&body)?)?;
    let group = lock(&state.tenant).groups.create(body, &now());
    Ok(envelope::success(StatusCode::CREATED, group))
}

pub(super) async fn update_group(
    State(state): State<Arc<CloudflareState>>,
    Segments((account_id, group_id)): Segments<(String, String)>,
    body: Bytes,
) -> Reply {
    state.check_account(&account_id)?;
    let body = GroupBody::parse(&json_object(&body)?)?;
    let group = lock(&state.tenant).groups.replace(&group_id, body, &now())?;
    Ok(envelope::success(StatusCode::OK, group))
}

pub(super) async fn delete_group(
    State(state): State<Arc<CloudflareState>>,
    Segments((account_id, group_id)): Segments<(String, String)>,
) -> Reply {
    state.check_account(&account_id)?;
    lock(&state.tenant).groups.delete(&group_id)?;
    Ok(envelope::success(StatusCode::ACCEPTED, json!({"id": group_id})))
}

fn optional_bool(body: &Map<String, Value>, field: &str) -> Result<bool, CfError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(CfError::invalid_field(field, format!("{field} must be a boolean"))),
    }
}
