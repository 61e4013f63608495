//! Arguments checked against their action's spec before anything is sent.

use serde_json::Value;

use crate::action::{ActionSpec, ParamSpec};
use crate::registry::closest;

/// Checks a call's arguments: an object holding every required parameter, no key the action
/// does not take, every value of its parameter's type. The message names the action as scripts
/// write it and the keys it takes.
pub(crate) fn validate(namespace: &str, spec: &ActionSpec, args: &Value) -> Result<(), String> {
    let name = format!("{namespace}::{}", spec.name);
    let Value::Object(map) = args else {
        return Err(format!("{name} takes a map of arguments, got {}", json_type(args)));
    };
    if let Some(key) = map.keys().find(|k| !spec.params.iter().any(|p| p.name == k.as_str())) {
        return Err(unknown_option(&name, spec, key));
    }
    for param in spec.params {
        match map.get(param.name) {
            None | Some(Value::Null) if param.required => {
                return Err(format!(
                    "{name}: missing required argument `{}`: {namespace}::{}",
                    param.name,
                    spec.signature()
                ));
            }
            None | Some(Value::Null) => {}
            Some(value) if !param.ty.accepts(value) => return Err(wrong_type(&name, param, value)),
            Some(_) => {}
        }
    }
    Ok(())
}

/// `ns::action: unknown option `emial` (did you mean `email`?); valid keys: ...`.
pub(crate) fn unknown_option(name: &str, spec: &ActionSpec, key: &str) -> String {
    let hint = closest(key, spec.params.iter().map(|p| p.name))
        .map(|c| format!(" (did you mean `{c}`?)"))
        .unwrap_or_default();
    format!("{name}: unknown option `{key}`{hint}; {}", takes(spec))
}

/// `ns::action: `user_id` must be string, got int`.
pub(crate) fn wrong_type(name: &str, param: &ParamSpec, value: &Value) -> String {
    format!(
        "{name}: `{}` must be {}, got {}",
        param.name,
        param.ty.as_str(),
        json_type(value)
    )
}

/// "valid keys: a, b" or "it takes no arguments".
pub(crate) fn takes(spec: &ActionSpec) -> String {
    if spec.params.is_empty() {
        "it takes no arguments".to_owned()
    } else {
        let names: Vec<&str> = spec.params.iter().map(|p| p.name).collect();
        format!("valid keys: {}", names.join(", "))
    }
}

pub(crate) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "()",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "map",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::ParamType;
    use serde_json::json;

    const PARAMS: &[ParamSpec] = &[
        ParamSpec::required("user_id", ParamType::String, ""),
        ParamSpec::optional("name", ParamType::String, ""),
    ];

    #[test]
    fn mistakes_name_the_action_and_the_valid_keys() {
        let spec = ActionSpec::write("update_user", "").params(PARAMS);
        assert_eq!(validate("dir", &spec, &json!({"user_id": "u1", "name": "A"})), Ok(()));
        assert_eq!(
            validate("dir", &spec, &json!({"user_id": "u1", "nmae": "A"})).unwrap_err(),
            "dir::update_user: unknown option `nmae` (did you mean `name`?); valid keys: user_id, name"
        );
        assert_eq!(
            validate("dir", &spec, &json!({"user_id": 5})).unwrap_err(),
            "dir::update_user: `user_id` must be string, got int"
        );
        assert_eq!(
            validate("dir", &spec, &json!({})).unwrap_err(),
            "dir::update_user: missing required argument `user_id`: dir::update_user(user_id, #{name})"
        );
    }
}
