//! PrivX's list parameters: `offset` (default 0), `limit` (default 50, at most 1000), `sortkey`
//! and `sortdir` (`ASC` by default), and the `{count, items}` page they select, `count` being
//! the total.

use std::cmp::Ordering;

use serde_json::{Map, Value, json};

use super::errors::PrivxError;

const DEFAULT_LIMIT: u64 = 50;
const MAX_LIMIT: u64 = 1000;

/// The query parameters, validated.
#[derive(Debug)]
pub(crate) struct Paging {
    offset: usize,
    limit: usize,
    /// `None`: the collection's own order.
    sort_key: Option<String>,
    descending: bool,
}

impl Paging {
    /// Reads the paging parameters; the last of repeated ones counts. `default_sort_key` is the
    /// endpoint's documented default (`None` keeps the collection's own order).
    pub(crate) fn parse(pairs: &[(String, String)], default_sort_key: Option<&str>) -> Result<Paging, PrivxError> {
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
            None | Some("") => default_sort_key.map(str::to_owned),
            Some(key) => Some(key.to_owned()),
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

    /// Sorts `items` (ties broken by id, so that pages never overlap or skip an item) and
    /// returns the total and the requested page.
    pub(crate) fn page<'a>(&self, mut items: Vec<&'a Map<String, Value>>) -> (usize, Vec<&'a Map<String, Value>>) {
        if let Some(key) = &self.sort_key {
            items.sort_by(|a, b| {
                let by_key = compare(a.get(key), b.get(key));
                let by_key = if self.descending { by_key.reverse() } else { by_key };
                by_key.then_with(|| compare(a.get("id"), b.get("id")))
            });
        } else if self.descending {
            items.reverse();
        }
        let total = items.len();
        let page = items.into_iter().skip(self.offset).take(self.limit).collect();
        (total, page)
    }

    /// The `{count, items}` answer for `items`.
    pub(crate) fn answer(&self, items: Vec<&Map<String, Value>>) -> Value {
        let (count, page) = self.page(items);
        let page: Vec<Value> = page.into_iter().cloned().map(Value::Object).collect();
        json!({"count": count, "items": page})
    }
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
