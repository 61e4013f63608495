//! The grant a role handle in `PUT .../users/{id}/roles` carries, checked as PrivX's role-handle
//! schema documents it: `grant_type` is `PERMANENT`, `TIME_RESTRICTED` or `FLOATING`; a
//! time-restricted grant needs at least one window (`grant_validity_periods`
//! `[{grant_start, grant_end}]`, or the older single `grant_start`/`grant_end`), each an RFC 3339
//! pair with the end after the start; a floating grant needs `floating_length` above 0.
//! A handle without `grant_type` is accepted as it always was (PrivX's default is undocumented).

use serde_json::{Map, Value};

use super::errors::PrivxError;

/// The fields of a role handle that belong to one user's grant rather than to the role itself,
/// and so are kept from what a client sends when it sets a user's roles.
pub(crate) const GRANT_FIELDS: [&str; 5] = [
    "grant_type",
    "grant_validity_periods",
    "grant_start",
    "grant_end",
    "floating_length",
];

/// Checks the grant fields of `roles[index]`.
pub(crate) fn check(index: usize, handle: &Map<String, Value>) -> Result<(), PrivxError> {
    let at = |field: &str| format!("roles[{index}].{field}");
    if !matches!(handle.get("explicit"), None | Some(Value::Null | Value::Bool(_))) {
        return Err(PrivxError::bad_property(at("explicit"), "explicit must be a boolean"));
    }
    let grant_type = match handle.get("grant_type") {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::String(grant_type)) => grant_type.as_str(),
        Some(_) => {
            return Err(PrivxError::bad_property(
                at("grant_type"),
                "grant_type must be a string",
            ));
        }
    };
    match grant_type {
        "PERMANENT" => Ok(()),
        "TIME_RESTRICTED" => {
            let periods = match handle.get("grant_validity_periods") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(periods)) => periods.clone(),
                Some(_) => {
                    return Err(PrivxError::bad_property(
                        at("grant_validity_periods"),
                        "grant_validity_periods must be an array of {grant_start, grant_end}",
                    ));
                }
            };
            for (p, period) in periods.iter().enumerate() {
                let Some(period) = period.as_object() else {
                    return Err(PrivxError::bad_property(
                        at(&format!("grant_validity_periods[{p}]")),
                        "each period must be an object {grant_start, grant_end}",
                    ));
                };
                window(period, &at(&format!("grant_validity_periods[{p}]")))?;
            }
            let single = handle.get("grant_start").is_some_and(|v| !v.is_null())
                || handle.get("grant_end").is_some_and(|v| !v.is_null());
            if single {
                window(handle, &format!("roles[{index}]"))?;
            }
            if periods.is_empty() && !single {
                return Err(PrivxError::bad_property(
                    at("grant_validity_periods"),
                    "a TIME_RESTRICTED grant needs grant_validity_periods [{grant_start, grant_end}]",
                ));
            }
            Ok(())
        }
        "FLOATING" => match handle.get("floating_length").and_then(Value::as_i64) {
            Some(length) if length > 0 => Ok(()),
            _ => Err(PrivxError::bad_property(
                at("floating_length"),
                "a FLOATING grant needs floating_length, a whole number above 0",
            )),
        },
        other => Err(PrivxError::bad_property(
            at("grant_type"),
            format!("grant_type must be PERMANENT, TIME_RESTRICTED or FLOATING, got {other:?}"),
        )),
    }
}

/// Checks one `{grant_start, grant_end}` window: both RFC 3339, the end after the start.
fn window(object: &Map<String, Value>, at: &str) -> Result<(), PrivxError> {
    let time = |field: &str| {
        let text = object.get(field).and_then(Value::as_str).ok_or_else(|| {
            PrivxError::bad_property(format!("{at}.{field}"), format!("{field} must be an RFC 3339 time"))
        })?;
        text.parse::<jiff::Timestamp>().map_err(|_| {
            PrivxError::bad_property(
                format!("{at}.{field}"),
                format!("{field} must be an RFC 3339 time, got {text:?}"),
            )
        })
    };
    let (start, end) = (time("grant_start")?, time("grant_end")?);
    if end <= start {
        return Err(PrivxError::bad_property(
            format!("{at}.grant_end"),
            "grant_end must be after grant_start",
        ));
    }
    Ok(())
}
