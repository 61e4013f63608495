//! How a user holds a role: permanently, in a time window, or for a floating length that starts
//! at the first connection — the `grant_type` of a PrivX role handle and the fields that go with
//! it. Used to build the handle `grant_role` sends and to check what PrivX stored.

use std::fmt;

use jiff::Timestamp;
use runbook_core::ActionError;
use serde_json::{Map, Value, json};

use crate::models::Role;

/// The fields of a held role that describe its grant: what must be sent back unchanged when the
/// user's other roles are rewritten.
const GRANT_FIELDS: [&str; 5] = [
    "grant_type",
    "grant_validity_periods",
    "grant_start",
    "grant_end",
    "floating_length",
];

/// A grant of one role to one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// `PERMANENT`.
    Permanent,
    /// `TIME_RESTRICTED` to one window.
    TimeRestricted {
        /// Start of the window.
        from: Timestamp,
        /// End of the window (after `from`).
        until: Timestamp,
    },
    /// `FLOATING`: a window of this length opens at the first connection. PrivX documents the
    /// unit of `floating_length` only by an example of 24; it is taken to be hours.
    Floating {
        /// `floating_length`.
        hours: i64,
    },
}

impl Grant {
    /// The grant `grant_role`'s options ask for: none is permanent; `from` and `to` (RFC 3339
    /// text or unix seconds) a window; `floating_hours` a floating length.
    pub fn from_options(
        from: Option<&Value>,
        to: Option<&Value>,
        floating_hours: Option<i64>,
    ) -> Result<Grant, ActionError> {
        match (from, to, floating_hours) {
            (None, None, None) => Ok(Grant::Permanent),
            (None, None, Some(hours)) if hours > 0 => Ok(Grant::Floating { hours }),
            (None, None, Some(hours)) => Err(ActionError::invalid_args(format!(
                "`floating_hours` must be at least 1, got {hours}"
            ))),
            (Some(from), Some(to), None) => {
                let (from, until) = (time(from, "from")?, time(to, "to")?);
                if until <= from {
                    return Err(ActionError::invalid_args(format!(
                        "`to` ({until}) must be after `from` ({from})"
                    )));
                }
                Ok(Grant::TimeRestricted { from, until })
            }
            (Some(_), None, None) | (None, Some(_), None) => Err(ActionError::invalid_args(
                "a time-restricted grant needs both `from` and `to`",
            )),
            (_, _, Some(_)) => Err(ActionError::invalid_args(
                "give either a window (`from` and `to`) or `floating_hours`, not both",
            )),
        }
    }

    /// PrivX's name for the grant type.
    pub fn grant_type(&self) -> &'static str {
        match self {
            Grant::Permanent => "PERMANENT",
            Grant::TimeRestricted { .. } => "TIME_RESTRICTED",
            Grant::Floating { .. } => "FLOATING",
        }
    }

    /// The role handle that grants `role` this way. A window goes both in
    /// `grant_validity_periods` (the current form) and in `grant_start`/`grant_end` (the older
    /// one): which wins when both are sent is undocumented, and here they agree.
    pub fn handle(&self, role: &Role) -> Value {
        let mut handle = json!({
            "id": role.id,
            "name": role.name,
            "explicit": true,
            "grant_type": self.grant_type(),
        });
        match self {
            Grant::Permanent => {}
            Grant::TimeRestricted { from, until } => {
                let (from, until) = (from.to_string(), until.to_string());
                handle["grant_validity_periods"] = json!([{"grant_start": from, "grant_end": until}]);
                handle["grant_start"] = json!(from);
                handle["grant_end"] = json!(until);
            }
            Grant::Floating { hours } => handle["floating_length"] = json!(hours),
        }
        handle
    }

    /// The grant a held role shows, when it can be read: a role with no `grant_type` and no
    /// window or floating length is permanent (it cannot be anything else).
    pub fn of(role: &Role) -> Option<Grant> {
        let field = |name: &str| role.extra.get(name).filter(|v| !v.is_null());
        match role.grant_type.as_deref() {
            Some("PERMANENT") => Some(Grant::Permanent),
            None if ["grant_validity_periods", "grant_start", "grant_end", "floating_length"]
                .iter()
                .all(|name| field(name).is_none()) =>
            {
                Some(Grant::Permanent)
            }
            Some("TIME_RESTRICTED") => {
                let window = |object: &Map<String, Value>| {
                    let at = |name: &str| object.get(name)?.as_str()?.parse::<Timestamp>().ok();
                    Some((at("grant_start")?, at("grant_end")?))
                };
                let periods = field("grant_validity_periods").and_then(Value::as_array);
                let (from, until) = match periods.map(Vec::as_slice) {
                    Some([only]) => window(only.as_object()?)?,
                    Some([]) | None => window(&role.extra)?,
                    Some(_) => return None,
                };
                Some(Grant::TimeRestricted { from, until })
            }
            Some("FLOATING") => Some(Grant::Floating {
                hours: field("floating_length")?.as_i64()?,
            }),
            _ => None,
        }
    }

    /// The handle that sends a held explicit role back as it is: its id, name and grant fields.
    pub fn keep(role: &Role) -> Result<Value, ActionError> {
        let shown = serde_json::to_value(role)
            .map_err(|e| ActionError::invalid_response(format!("cannot convert a role: {e}")))?;
        let mut handle = Map::new();
        for name in ["id", "name"].into_iter().chain(GRANT_FIELDS) {
            if let Some(value) = shown.get(name).filter(|v| !v.is_null()) {
                handle.insert(name.to_owned(), value.clone());
            }
        }
        handle.insert("explicit".to_owned(), Value::Bool(true));
        Ok(Value::Object(handle))
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Grant::Permanent => f.write_str("PERMANENT"),
            Grant::TimeRestricted { from, until } => write!(f, "TIME_RESTRICTED from {from} until {until}"),
            Grant::Floating { hours } => write!(f, "FLOATING for {hours} h"),
        }
    }
}

/// A time given as RFC 3339 text or as unix seconds (what `now()` returns).
fn time(value: &Value, name: &str) -> Result<Timestamp, ActionError> {
    let parsed = match value {
        Value::String(text) => text.trim().parse::<Timestamp>().ok(),
        Value::Number(n) => n.as_i64().and_then(|secs| Timestamp::from_second(secs).ok()),
        _ => None,
    };
    parsed.ok_or_else(|| {
        ActionError::invalid_args(format!(
            "`{name}` must be an RFC 3339 time such as \"2026-11-21T10:00:00Z\" or unix seconds such as now() + 3600, got {value}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_make_the_grant_they_describe() {
        assert_eq!(Grant::from_options(None, None, None).unwrap(), Grant::Permanent);
        let window = Grant::from_options(Some(&json!("2026-01-01T00:00:00Z")), Some(&json!(1_767_229_200)), None);
        assert_eq!(
            window.unwrap().to_string(),
            "TIME_RESTRICTED from 2026-01-01T00:00:00Z until 2026-01-01T01:00:00Z"
        );
        assert_eq!(
            Grant::from_options(None, None, Some(8)).unwrap(),
            Grant::Floating { hours: 8 }
        );
        for (from, until, hours) in [
            (Some(json!(10)), Some(json!(10)), None),
            (Some(json!(10)), None, None),
            (None, None, Some(0)),
            (Some(json!(1)), Some(json!(2)), Some(3)),
            (Some(json!("yesterday")), Some(json!(2)), None),
        ] {
            assert!(
                Grant::from_options(from.as_ref(), until.as_ref(), hours).is_err(),
                "{from:?} {until:?} {hours:?}"
            );
        }
    }

    #[test]
    fn a_stored_window_is_read_in_either_form_and_compared_as_times() {
        let sent = Grant::from_options(Some(&json!(1_767_225_600)), Some(&json!(1_767_229_200)), None).unwrap();
        let periods: Role = serde_json::from_value(json!({"id": "r", "grant_type": "TIME_RESTRICTED",
            "grant_validity_periods": [{"grant_start": "2026-01-01T00:00:00.000Z", "grant_end": "2026-01-01T03:00:00+02:00"}]}))
        .unwrap();
        let single: Role = serde_json::from_value(json!({"id": "r", "grant_type": "TIME_RESTRICTED",
            "grant_start": "2026-01-01T00:00:00Z", "grant_end": "2026-01-01T01:00:00Z"}))
        .unwrap();
        assert_eq!(Grant::of(&periods), Some(sent));
        assert_eq!(Grant::of(&single), Some(sent));
        let bare: Role = serde_json::from_value(json!({"id": "r"})).unwrap();
        assert_eq!(Grant::of(&bare), Some(Grant::Permanent));
    }
}
