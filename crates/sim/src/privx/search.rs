//! `POST /role-store/api/v1/users/search`: the body's criteria and matching.

use serde_json::{Map, Value};

use super::errors::PrivxError;
use super::paging::Paging;

/// The default sort key of a user search.
pub(crate) const USER_SORT_KEY: Option<&str> = Some("principal");

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
    let matching: Vec<&Map<String, Value>> = users
        .iter()
        .zip(haystacks)
        .filter(|(u, h)| criteria.matches(u, h))
        .map(|(u, _)| u)
        .collect();
    paging.page(matching)
}
