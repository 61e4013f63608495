//! Values between JSON (what providers speak) and Rhai (what scripts see), losing nothing.
//!
//! Rhai's integer is `i64`. A JSON integer above `i64::MAX` becomes a Rhai `u64` value (a
//! distinct type: arithmetic on it is an error rather than a silent float) and turns back into the
//! same JSON integer on the way out.

use rhai::{Array, Dynamic, ImmutableString, Map};
use serde_json::{Number, Value};

use crate::action::{Record, Records};

/// Converts JSON into a script value.
pub fn json_to_dynamic(value: Value) -> Dynamic {
    match value {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => Dynamic::from_bool(b),
        Value::Number(n) => number_to_dynamic(&n),
        Value::String(s) => Dynamic::from(ImmutableString::from(s)),
        Value::Array(items) => Dynamic::from_array(items.into_iter().map(json_to_dynamic).collect()),
        Value::Object(entries) => {
            let mut map = Map::new();
            for (k, v) in entries {
                map.insert(k.into(), json_to_dynamic(v));
            }
            Dynamic::from_map(map)
        }
    }
}

/// Converts an action's result into a script value: each record it holds gets every field of its
/// spec, an absent one as `()`, so that the script can tell a record from any other map
/// (see `records.rs`).
pub fn result_to_dynamic(records: Option<Records>, value: Value) -> Dynamic {
    match (records, value) {
        (Some(Records::One(record) | Records::Optional(record)), Value::Object(entries)) => {
            record_to_dynamic(record, entries)
        }
        (Some(Records::List(record)), Value::Array(items)) => Dynamic::from_array(
            items
                .into_iter()
                .map(|item| match item {
                    Value::Object(entries) => record_to_dynamic(record, entries),
                    other => json_to_dynamic(other),
                })
                .collect(),
        ),
        (_, value) => json_to_dynamic(value),
    }
}

fn record_to_dynamic(record: &Record, entries: serde_json::Map<String, Value>) -> Dynamic {
    let mut map = Map::new();
    for (k, v) in entries {
        map.insert(k.into(), json_to_dynamic(v));
    }
    for field in record.fields {
        if !map.contains_key(*field) {
            map.insert((*field).into(), super::records::absent_field());
        }
    }
    Dynamic::from_map(map)
}

fn number_to_dynamic(n: &Number) -> Dynamic {
    if let Some(i) = n.as_i64() {
        Dynamic::from_int(i)
    } else if let Some(u) = n.as_u64() {
        Dynamic::from(u)
    } else {
        Dynamic::from_float(n.as_f64().unwrap_or(f64::NAN))
    }
}

/// Converts a script value into JSON. Fails on values JSON cannot hold (function pointers,
/// NaN), naming the type.
pub fn dynamic_to_json(value: &Dynamic) -> Result<Value, String> {
    if value.is_unit() {
        return Ok(Value::Null);
    }
    if let Ok(b) = value.as_bool() {
        return Ok(Value::Bool(b));
    }
    if let Ok(i) = value.as_int() {
        return Ok(Value::from(i));
    }
    if let Ok(f) = value.as_float() {
        return Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| format!("the number {f} cannot be written as JSON"));
    }
    if value.is_string() {
        return Ok(Value::String(value.clone().into_string().unwrap_or_default()));
    }
    if let Ok(c) = value.as_char() {
        return Ok(Value::String(c.to_string()));
    }
    // Containers are read in place: a 100,000-user result is converted, never copied first.
    if let Some(items) = value.read_lock::<Array>() {
        return items
            .iter()
            .map(dynamic_to_json)
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array);
    }
    if let Some(map) = value.read_lock::<Map>() {
        let mut out = serde_json::Map::with_capacity(map.len());
        // A read's placeholder is not a value the script stored.
        for (k, v) in map.iter().filter(|(_, v)| !super::records::is_placeholder(v)) {
            out.insert(k.to_string(), dynamic_to_json(v)?);
        }
        return Ok(Value::Object(out));
    }
    if let Some(blob) = value.read_lock::<rhai::Blob>() {
        return Ok(Value::Array(blob.iter().map(|b| Value::from(*b)).collect()));
    }
    if let Some(u) = value.clone().try_cast::<u64>() {
        return Ok(Value::from(u));
    }
    if value.is_timestamp() {
        return Err("a timestamp cannot be written as JSON; use now() for unix seconds".to_owned());
    }
    Err(format!(
        "a value of type {} cannot be written as JSON",
        value.type_name()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_round_trips_without_losing_integers() {
        let original = json!({
            "small": 42,
            "negative": -7,
            "huge": u64::MAX,
            "float": 2.5,
            "nested": {"list": [1, "two", null, true]},
        });
        let back = dynamic_to_json(&json_to_dynamic(original.clone())).unwrap();
        assert_eq!(back, original);
        assert_eq!(back["huge"].as_u64(), Some(u64::MAX));
    }

    #[global_allocator]
    static ALLOCATOR: dhat::Alloc = dhat::Alloc;

    /// Bytes allocated while `f` runs.
    fn allocated<T>(f: impl FnOnce() -> T) -> (T, u64) {
        let before = dhat::HeapStats::get().total_bytes;
        let out = f();
        (out, dhat::HeapStats::get().total_bytes - before)
    }

    #[test]
    fn containers_are_converted_without_being_copied_first() {
        let users: Vec<Value> = (0..2_000)
            .map(|i| json!({"id": format!("u{i}"), "email": format!("user{i}@example.com"), "groups": [{"name": "a"}, {"name": "b"}]}))
            .collect();
        let script_value = json_to_dynamic(json!({"result": {"users": users}}));
        let _profiler = dhat::Profiler::builder().testing().build();
        let (json, converting) = allocated(|| dynamic_to_json(&script_value).unwrap());
        // What the output itself costs to build: the same JSON, cloned.
        let (_copy, output) = allocated(|| json.clone());
        assert!(
            converting < output + output / 4,
            "converting allocated {converting} bytes for an output of {output}: the value was copied on the way"
        );
    }

    #[test]
    fn a_huge_integer_is_not_a_float_in_scripts() {
        let d = json_to_dynamic(json!(u64::MAX));
        assert!(d.as_float().is_err());
        assert!(d.is::<u64>());
    }
}
