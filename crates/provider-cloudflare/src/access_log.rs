//! Reading the Access authentication log whole, in as few requests as the API allows.
//!
//! The log answers pages with no `result_info` and an undocumented largest `per_page`, so the
//! reader asks for the largest page it knows of (1000), steps down to 100 and then 25 (the
//! documented default) when the API answers 400, and remembers the size that worked for the
//! provider's later calls. It follows pages until a short or empty one, drops rows it already
//! has (`ray_id` + `created_at`), and pins `until` to the moment the call started so that
//! events logged meanwhile cannot shift the pages under it.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};

use jiff::Timestamp;
use runbook_core::http::HttpRequest;
use runbook_core::{ActionError, CallContext};
use serde::Deserialize;

use crate::api::{Api, Subject};
use crate::models::AccessRequest;

/// The page sizes tried, largest first. 25 is the documented default, so it always works.
const PAGE_SIZES: [u64; 3] = [1000, 100, 25];

/// A stop for a log that never ends (or a server that ignores `page`): a million rows at the
/// largest page size, more than the rate budget reads in a run anyway.
const MAX_PAGES: u64 = 1000;

/// A time as a script gives it: unix seconds (`now() - 3600`) or RFC 3339 text.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Time {
    /// Unix seconds.
    Unix(i64),
    /// RFC 3339.
    Text(String),
}

impl Time {
    /// The instant, or an error naming the parameter.
    pub fn timestamp(&self, name: &str) -> Result<Timestamp, ActionError> {
        match self {
            Time::Unix(seconds) => Timestamp::from_second(*seconds)
                .map_err(|e| ActionError::invalid_args(format!("`{name}`: {seconds} is not a unix time: {e}"))),
            Time::Text(text) => text.trim().parse().map_err(|_| {
                ActionError::invalid_args(format!(
                    "`{name}`: \"{text}\" is not an RFC 3339 time such as \"2026-11-21T10:00:00Z\" (unix seconds work too)"
                ))
            }),
        }
    }
}

/// What to read from the log; every field optional.
#[derive(Debug, Default)]
pub struct LogQuery {
    /// Oldest event.
    pub since: Option<Timestamp>,
    /// Newest event; the call's start when absent.
    pub until: Option<Timestamp>,
    /// Email (a substring unless `email_exact`).
    pub email: Option<String>,
    /// Match `email` exactly.
    pub email_exact: Option<bool>,
    /// `asc` or `desc` (the API's default).
    pub direction: Option<String>,
    /// Only allowed (or refused) logins; the API documents no such filter, so the caller
    /// filters the rows too.
    pub allowed: Option<bool>,
}

/// The log reader, with the page size that last worked.
#[derive(Debug)]
pub struct AccessLog {
    page_size: AtomicU64,
}

impl Default for AccessLog {
    fn default() -> Self {
        AccessLog {
            page_size: AtomicU64::new(PAGE_SIZES[0]),
        }
    }
}

impl AccessLog {
    /// Every row the query selects, in the API's order, each once.
    pub async fn read(
        &self,
        api: &Api,
        ctx: &CallContext,
        query: &LogQuery,
    ) -> Result<Vec<AccessRequest>, ActionError> {
        let until = match query.until {
            Some(until) => until,
            // The API's times are whole seconds: the next one keeps this second's events in.
            None => Timestamp::from_second(Timestamp::now().as_second() + 1)
                .map_err(|e| ActionError::invalid_args(format!("the clock is out of range: {e}")))?,
        };
        let mut filters: Vec<(&str, String)> = vec![("until", rfc3339(until))];
        if let Some(since) = query.since {
            filters.push(("since", rfc3339(since)));
        }
        if let Some(email) = &query.email {
            filters.push(("email", email.clone()));
        }
        if let Some(exact) = query.email_exact {
            filters.push(("email_exact", exact.to_string()));
        }
        if let Some(direction) = &query.direction {
            filters.push(("direction", direction.clone()));
        }
        if let Some(allowed) = query.allowed {
            filters.push(("allowed", allowed.to_string()));
        }

        let (size, first) = self.first_page(api, ctx, &filters).await?;
        let mut seen = HashSet::new();
        let mut rows = Vec::new();
        let mut last = first.len() as u64;
        keep_new(&mut rows, &mut seen, first);
        let mut page = 1;
        // How many rows a full page holds: the size asked for, unless the service answers fewer
        // without saying so. A short first page ends the log only if the second is empty.
        let mut full = size;
        if last > 0 && last < size {
            page = 2;
            let items = self.page(api, ctx, &filters, page, size).await?;
            let got = items.len() as u64;
            if keep_new(&mut rows, &mut seen, items) > 0 {
                ctx.warn(format!(
                    "the Access authentication log answered {last} rows when asked for pages of {size}: reading on \
                     in pages of {last}"
                ));
                full = last;
                last = got;
            } else {
                last = 0;
            }
        }
        while last >= full {
            if page >= MAX_PAGES {
                return Err(ActionError::invalid_response(format!(
                    "the Access authentication log did not end after {MAX_PAGES} pages of {full} rows: narrow the \
                     window with `since` and `until`"
                )));
            }
            page += 1;
            let items = self.page(api, ctx, &filters, page, size).await?;
            last = items.len() as u64;
            if keep_new(&mut rows, &mut seen, items) == 0 && last > 0 {
                return Err(ActionError::invalid_response(format!(
                    "page {page} of the Access authentication log repeated rows already read (the API seems to \
                     ignore `page`): narrow the window with `since` and `until`"
                )));
            }
        }
        Ok(rows)
    }

    /// The first page at the largest size the API takes, stepping down on a 400.
    async fn first_page(
        &self,
        api: &Api,
        ctx: &CallContext,
        filters: &[(&str, String)],
    ) -> Result<(u64, Vec<AccessRequest>), ActionError> {
        let start = self.page_size.load(Ordering::Relaxed);
        let mut size = start;
        loop {
            match self.page(api, ctx, filters, 1, size).await {
                Ok(rows) => {
                    if size != start {
                        self.page_size.store(size, Ordering::Relaxed);
                        ctx.warn(format!(
                            "the Access authentication log refused pages of {start} rows; reading it in pages of {size}"
                        ));
                    }
                    return Ok((size, rows));
                }
                Err(error) if error.status == Some(400) => match PAGE_SIZES.into_iter().find(|s| *s < size) {
                    Some(smaller) => size = smaller,
                    None => return Err(error),
                },
                Err(error) => return Err(error),
            }
        }
    }

    async fn page(
        &self,
        api: &Api,
        ctx: &CallContext,
        filters: &[(&str, String)],
        page: u64,
        size: u64,
    ) -> Result<Vec<AccessRequest>, ActionError> {
        let mut request = HttpRequest::get(api.access_path(&["logs", "access_requests"]))
            .query("page", page)
            .query("per_page", size);
        for (key, value) in filters {
            request = request.query(key, value);
        }
        let (rows, _) = api.call::<Vec<AccessRequest>>(ctx, request, Subject::AccessLog).await?;
        Ok(rows.unwrap_or_default())
    }
}

/// Appends the rows not seen before; returns how many. A row without a `ray_id` cannot be told
/// apart from another and is always kept.
fn keep_new(rows: &mut Vec<AccessRequest>, seen: &mut HashSet<(String, String)>, items: Vec<AccessRequest>) -> usize {
    let before = rows.len();
    for row in items {
        let fresh = match &row.ray_id {
            Some(ray) => seen.insert((ray.clone(), row.created_at.clone().unwrap_or_default())),
            None => true,
        };
        if fresh {
            rows.push(row);
        }
    }
    rows.len() - before
}

/// RFC 3339 in UTC to the second, as the API's examples write times.
pub fn rfc3339(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_come_as_unix_seconds_or_rfc_3339() {
        let unix = Time::Unix(1_795_000_000).timestamp("since").unwrap();
        assert_eq!(rfc3339(unix), "2026-11-18T11:06:40Z");
        let text = Time::Text(" 2026-11-18T11:06:40Z ".to_owned())
            .timestamp("since")
            .unwrap();
        assert_eq!(text, unix);
        let err = Time::Text("yesterday".to_owned()).timestamp("until").unwrap_err();
        assert!(
            err.message
                .starts_with("`until`: \"yesterday\" is not an RFC 3339 time"),
            "{}",
            err.message
        );
    }
}
