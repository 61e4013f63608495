//! The Access authentication log: `GET /accounts/{a}/access/logs/access_requests`.
//!
//! As the fact sheet describes it: rows ordered by `created_at` (`direction`, newest first by
//! default), a `since`/`until` window, `email` as a substring (`email_exact=true` for an exact
//! match), `page`/`per_page` paging (default 25) and NO `result_info`: a client knows it has
//! every row when a page comes back short or empty. The maximum `per_page` is not documented;
//! the simulator's is a knob (default 1000), and a larger value is a 400 naming `per_page`.
//! `allowed` is not a documented filter either (only `allowedOp` is); the simulator honours
//! it unless told to ignore it, so that a client is tested both ways. `limit` caps the rows
//! the query selects before paging; `fields` and the `*Op` operators are accepted and ignored.

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;
use serde_json::{Map, Value, json};

use super::envelope::CfError;

/// The page size when the query names none.
const DEFAULT_PER_PAGE: u64 = 25;

/// A validated query of the log.
#[derive(Debug)]
pub(crate) struct LogQuery {
    since: Option<Timestamp>,
    until: Option<Timestamp>,
    email: Option<String>,
    email_exact: bool,
    allowed: Option<bool>,
    ascending: bool,
    limit: Option<u64>,
    page: u64,
    per_page: u64,
}

impl LogQuery {
    /// Reads the query string. `honour_allowed` is false when the simulator plays a service that
    /// ignores the undocumented `allowed` filter.
    pub(crate) fn parse(
        pairs: &[(String, String)],
        max_per_page: u64,
        caps_silently: bool,
        honour_allowed: bool,
    ) -> Result<LogQuery, CfError> {
        let mut query = LogQuery {
            since: None,
            until: None,
            email: None,
            email_exact: false,
            allowed: None,
            ascending: false,
            limit: None,
            page: 1,
            per_page: DEFAULT_PER_PAGE,
        };
        // The last occurrence of a repeated parameter wins, as on the users endpoint.
        for (key, value) in pairs {
            match key.as_str() {
                "since" => query.since = Some(time(key, value)?),
                "until" => query.until = Some(time(key, value)?),
                "email" => query.email = (!value.is_empty()).then(|| value.to_lowercase()),
                "email_exact" => query.email_exact = boolean(key, value)?,
                "allowed" => {
                    let allowed = boolean(key, value)?;
                    query.allowed = honour_allowed.then_some(allowed);
                }
                "direction" => {
                    query.ascending = match value.as_str() {
                        "asc" => true,
                        "desc" => false,
                        _ => {
                            return Err(CfError::invalid(format!(
                                "direction must be asc or desc, got {value:?}"
                            )));
                        }
                    }
                }
                "limit" => query.limit = Some(super::routes::positive(key, value, u64::MAX)?),
                "page" => query.page = super::routes::positive(key, value, u64::MAX)?,
                "per_page" if caps_silently => {
                    query.per_page = super::routes::positive(key, value, u64::MAX)?.min(max_per_page);
                }
                "per_page" => query.per_page = super::routes::positive(key, value, max_per_page)?,
                _ => {}
            }
        }
        Ok(query)
    }

    /// The page of `rows` this query asks for.
    pub(crate) fn page_of(&self, rows: Vec<Value>) -> Vec<Value> {
        let mut selected: Vec<(Timestamp, Value)> = rows
            .into_iter()
            .filter_map(|row| created_at(&row).map(|at| (at, row)))
            .filter(|(at, row)| self.matches(*at, row))
            .collect();
        // Stable sorts: rows of the same instant keep the log's own order either way.
        if self.ascending {
            selected.sort_by_key(|(at, _)| *at);
        } else {
            selected.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
        }
        if let Some(limit) = self.limit {
            selected.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        }
        let skip = usize::try_from((self.page - 1).saturating_mul(self.per_page)).unwrap_or(usize::MAX);
        let take = usize::try_from(self.per_page).unwrap_or(usize::MAX);
        selected.into_iter().skip(skip).take(take).map(|(_, row)| row).collect()
    }

    fn matches(&self, at: Timestamp, row: &Value) -> bool {
        let email = row
            .get("user_email")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_lowercase();
        self.since.is_none_or(|since| at >= since)
            && self.until.is_none_or(|until| at <= until)
            && self.email.as_ref().is_none_or(|wanted| {
                if self.email_exact {
                    email == *wanted
                } else {
                    email.contains(wanted.as_str())
                }
            })
            && self
                .allowed
                .is_none_or(|wanted| row.get("allowed").and_then(Value::as_bool).unwrap_or(false) == wanted)
    }
}

/// The whole log: the explicit rows, then one `allowed: false` row per failed login (users in
/// id order), so that the log and `GET .../users/{id}/failed_logins` tell the same story.
/// `emails` maps a user id to the user's email, for failures whose metadata names none.
pub(crate) fn rows(
    explicit: &[Value],
    failed_logins: &BTreeMap<String, Vec<Value>>,
    emails: &HashMap<&str, &str>,
) -> Vec<Value> {
    let mut rows = explicit.to_vec();
    for (user_id, failures) in failed_logins {
        for failure in failures {
            let metadata = failure.get("metadata").and_then(Value::as_object);
            // A failure with no time cannot be placed in the log.
            if let Some(row) = metadata.and_then(|m| failure_row(m, emails.get(user_id.as_str()).copied())) {
                rows.push(row);
            }
        }
    }
    rows
}

fn failure_row(metadata: &Map<String, Value>, user_email: Option<&str>) -> Option<Value> {
    let text = |key: &str| metadata.get(key).and_then(Value::as_str);
    let created_at = text("datetime")?;
    Some(json!({
        "user_email": text("user_email").or(user_email),
        "created_at": created_at,
        "allowed": false,
        "action": "login",
        "ray_id": text("ray_id"),
        "ip_address": text("ip").or(text("ip_address")),
        "app_uid": text("app_uid").or(text("aud")),
        "app_domain": text("app_domain").or(text("app_name")),
        "connection": text("connection").or(text("idp")),
    }))
}

fn created_at(row: &Value) -> Option<Timestamp> {
    row.get("created_at")?.as_str()?.parse().ok()
}

fn time(key: &str, value: &str) -> Result<Timestamp, CfError> {
    value.parse().map_err(|_| {
        CfError::invalid(format!(
            "{key} must be an RFC 3339 time such as 2026-11-21T10:00:00Z, got {value:?}"
        ))
    })
}

fn boolean(key: &str, value: &str) -> Result<bool, CfError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(CfError::invalid(format!("{key} must be true or false, got {value:?}"))),
    }
}
