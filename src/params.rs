//! Script parameters from the command line: `--param k=v` and `--params-file F.json`.

use serde_json::{Map, Value};

/// Parses `key=value`. The value is JSON when it parses as JSON (numbers, booleans, arrays,
/// objects, quoted strings), else it is kept as a plain string: `threshold=3` is the integer 3,
/// `allowed=["FI","SE"]` an array, `email=ann@example.com` a string. A value that starts like
/// JSON (`[`, `{` or `"`) but does not parse is an error: kept as a string, `["FI","SE"` would
/// silently mean something else.
pub fn parse_param(text: &str) -> Result<(String, Value), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("--param \"{text}\" has no `=`; write --param key=value"))?;
    let key = key.trim();
    if key.is_empty() {
        return Err(format!(
            "--param \"{text}\" has no key before `=`; write --param key=value"
        ));
    }
    let value = match serde_json::from_str::<Value>(value) {
        Ok(json) => json,
        Err(e) if value.trim_start().starts_with(['[', '{', '"']) => {
            return Err(format!(
                "--param {key}: the value {value} starts like JSON but is not valid JSON ({e}); \
                 fix it, and quote the whole {key}=VALUE for the shell"
            ));
        }
        Err(_) => Value::String(value.to_owned()),
    };
    Ok((key.to_owned(), value))
}

/// Reads a params file: one JSON object.
pub fn parse_params_file(name: &str, text: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(format!(
            "{name}: the params file must hold one JSON object, found {}",
            match other {
                Value::Array(_) => "an array",
                Value::String(_) => "a string",
                Value::Number(_) => "a number",
                Value::Bool(_) => "a boolean",
                _ => "null",
            }
        )),
        Err(e) => Err(format!("{name}: line {}, column {}: {e}", e.line(), e.column())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_are_json_when_they_parse() {
        assert_eq!(parse_param("threshold=3").unwrap(), ("threshold".into(), json!(3)));
        assert_eq!(parse_param("revoke=true").unwrap(), ("revoke".into(), json!(true)));
        assert_eq!(
            parse_param("allowed=[\"FI\",\"SE\"]").unwrap(),
            ("allowed".into(), json!(["FI", "SE"]))
        );
        assert_eq!(
            parse_param("email=ann@example.com").unwrap(),
            ("email".into(), json!("ann@example.com"))
        );
        assert_eq!(parse_param("expr=a=b").unwrap(), ("expr".into(), json!("a=b")));
        assert_eq!(parse_param("big=18446744073709551615").unwrap().1, json!(u64::MAX));
        assert!(parse_param("novalue").unwrap_err().contains("no `=`"));
    }

    #[test]
    fn a_value_that_starts_like_json_must_be_json() {
        for broken in ["allowed=[\"FI\",\"SE\"", "m={\"a\": 1", "s=\"unterminated"] {
            let err = parse_param(broken).unwrap_err();
            assert!(
                err.contains("starts like JSON but is not valid JSON (EOF while parsing"),
                "{err}"
            );
        }
        assert_eq!(parse_param("s=\"quoted\"").unwrap().1, json!("quoted"));
    }

    #[test]
    fn a_params_file_must_be_an_object() {
        assert!(
            parse_params_file("p.json", "[1]")
                .unwrap_err()
                .contains("found an array")
        );
        assert!(
            parse_params_file("p.json", "{\"a\": ")
                .unwrap_err()
                .starts_with("p.json: line 1")
        );
    }
}
