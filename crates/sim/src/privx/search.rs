//! `POST /role-store/api/v1/users/search`: parameters, matching, sorting and paging.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use super::errors::PrivxError;

const DEFAULT_LIMIT: u64 = 50;
const MAX_LIMIT: u64 = 1000;
const DEFAULT_SORT_KEY: &str = "principal";

/// The query parameters, validated.
#[derive(Debug)]
pub(crate) struct Paging {
    offset: usize,
    limit: usize,
    sort_key: String,
    descending: bool,
}

/// The JSON body, validated. Every part is optional; `{}` matches every user.
#[derive(Debug, Default)]
pub(crate) struct Criteria {
    /// Lower-cased words; a user matches when ANY of them is a substring of its `principal`,
    /// `email` or `full_name` (case-insensitive), the way a free-text search box behaves.
    words: Vec<String>,
    /// Exact match on the user's `source`.
    source: Option<String>,
    /// Restricts the result to these ids.
    user_ids: Option<Vec<String>>,
}

impl Paging {
    pub(crate) fn parse(pairs: &[(String, String)]) -> Result<Paging, PrivxError> {
        let last = |name: &str| {
            pairs
                .iter()
                .rev()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.trim())
        };
        let offset = match last("offset") {
            None | Some("") => 0,
            Some(text) => text.parse::<u64>().map_err(|_| {
                PrivxError::bad_property(
                    "offset",
                    format!("offset must be a whole number of at least 0, got {text:?}"),
                )
            })?,
        };
        let limit = match last("limit") {
            None | Some("") => DEFAULT_LIMIT,
            Some(text) => match text.parse::<u64>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => {
                    return Err(PrivxError::bad_property(
                        "limit",
                        format!("limit must be a whole number from 1 to {MAX_LIMIT}, got {text:?}"),
                    ));
                }
            },
        };
        let sort_key = match last("sortkey") {
            None | Some("") => DEFAULT_SORT_KEY.to_owned(),
            Some(key) => key.to_owned(),
        };
        let descending = match last("sortdir") {
            None | Some("") => false,
            Some(dir) if dir.eq_ignore_ascii_case("asc") => false,
            Some(dir) if dir.eq_ignore_ascii_case("desc") => true,
            Some(dir) => {
                return Err(PrivxError::bad_property(
                    "sortdir",
                    format!("sortdir must be ASC or DESC, got {dir:?}"),
                ));
            }
        };
        Ok(Paging {
            offset: usize::try_from(offset).unwrap_or(usize::MAX),
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            sort_key,
            descending,
        })
    }
}

impl Criteria {
    /// An empty body counts as `{}`.
    pub(crate) fn parse(body: &[u8]) -> Result<Criteria, PrivxError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Criteria::default());
        }
        let body = match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(body)) => body,
            Ok(_) => return Err(PrivxError::bad_request("the search body must be a JSON object")),
            Err(e) => {
                return Err(PrivxError::bad_request(format!(
                    "the search body is not valid JSON: {e}"
                )));
            }
        };
        let words = match body.get("keywords") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(keywords)) => keywords.split_whitespace().map(str::to_lowercase).collect(),
            Some(_) => {
                return Err(PrivxError::bad_property("keywords", "keywords must be a string"));
            }
        };
        let source = match body.get("source") {
            None | Some(Value::Null) => None,
            Some(Value::String(source)) if source.is_empty() => None,
            Some(Value::String(source)) => Some(source.clone()),
            Some(_) => return Err(PrivxError::bad_property("source", "source must be a string")),
        };
        let user_ids = match body.get("user_id") {
            None | Some(Value::Null) => None,
            Some(Value::Array(ids)) => Some(
                ids.iter()
                    .map(|id| id.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| PrivxError::bad_property("user_id", "user_id must be an array of strings"))?,
            ),
            Some(_) => {
                return Err(PrivxError::bad_property(
                    "user_id",
                    "user_id must be an array of strings",
                ));
            }
        };
        Ok(Criteria {
            words,
            source,
            user_ids,
        })
    }

    fn matches(&self, user: &Map<String, Value>, haystack: &str) -> bool {
        let field = |name: &str| user.get(name).and_then(Value::as_str);
        let id_ok = self
            .user_ids
            .as_ref()
            .is_none_or(|ids| field("id").is_some_and(|id| ids.iter().any(|wanted| wanted == id)));
        let source_ok = self
            .source
            .as_ref()
            .is_none_or(|source| field("source") == Some(source.as_str()));
        let words_ok = self.words.is_empty() || self.words.iter().any(|word| haystack.contains(word.as_str()));
        id_ok && source_ok && words_ok
    }
}

/// What free-text keywords are matched against: the user's `principal`, `email` and
/// `full_name`, lower-cased, one per line (so that a keyword cannot match across two fields).
pub(crate) fn haystack(user: &Map<String, Value>) -> String {
    ["principal", "email", "full_name"]
        .iter()
        .filter_map(|name| user.get(*name).and_then(Value::as_str))
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The total number of matches and the requested page of them.
pub(crate) fn search<'a>(
    users: &'a [Map<String, Value>],
    haystacks: &[String],
    criteria: &Criteria,
    paging: &Paging,
) -> (usize, Vec<&'a Map<String, Value>>) {
    let mut matching: Vec<&Map<String, Value>> = users
        .iter()
        .zip(haystacks)
        .filter(|(u, h)| criteria.matches(u, h))
        .map(|(u, _)| u)
        .collect();
    matching.sort_by(|a, b| {
        let by_key = compare(a.get(&paging.sort_key), b.get(&paging.sort_key));
        let by_key = if paging.descending { by_key.reverse() } else { by_key };
        // Ties are broken by id so that pages never overlap or skip a user.
        by_key.then_with(|| compare(a.get("id"), b.get("id")))
    });
    let total = matching.len();
    let page = matching.into_iter().skip(paging.offset).take(paging.limit).collect();
    (total, page)
}

/// Missing and null first, then booleans, numbers, strings (case-insensitively), and the rest.
fn compare(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    fn rank(value: Option<&Value>) -> u8 {
        match value {
            None | Some(Value::Null) => 0,
            Some(Value::Bool(_)) => 1,
            Some(Value::Number(_)) => 2,
            Some(Value::String(_)) => 3,
            Some(_) => 4,
        }
    }
    match (a, b) {
        (Some(Value::Bool(x)), Some(Value::Bool(y))) => x.cmp(y),
        (Some(Value::Number(x)), Some(Value::Number(y))) => match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
            (Some(x), Some(y), _, _) => x.cmp(&y),
            (_, _, Some(x), Some(y)) => x.cmp(&y),
            _ => {
                let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
                x.total_cmp(&y)
            }
        },
        (Some(Value::String(x)), Some(Value::String(y))) => {
            x.to_lowercase().cmp(&y.to_lowercase()).then_with(|| x.cmp(y))
        }
        _ => rank(a).cmp(&rank(b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_of_mixed_sign_and_size_sort_numerically() {
        let values = [json!(-1), json!(u64::MAX), json!(2.5), json!(3)];
        let mut sorted: Vec<&Value> = values.iter().collect();
        sorted.sort_by(|a, b| compare(Some(a), Some(b)));
        assert_eq!(sorted, vec![&json!(-1), &json!(2.5), &json!(3), &json!(u64::MAX)]);
    }
}
