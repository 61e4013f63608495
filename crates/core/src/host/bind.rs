//! Turning a script's arguments into the JSON object a provider receives.
//!
//! Three call shapes are accepted:
//! * positional required parameters: `get_user(id)`;
//! * the same followed by an options map for optional parameters: `list_users(#{email: e})`,
//!   `update_user(id, #{name: n})`;
//! * every parameter in one map: `create_user(#{email: e, name: n})`, which is also what
//!   `invoke("ns.action", #{...})` passes.

use serde_json::{Map, Value};

use super::convert::dynamic_to_json;
use crate::action::{ActionSpec, ParamSpec};

/// Binds `args` to `spec`'s parameters and checks them: every required parameter present,
/// types right, no unknown option.
pub fn bind_args(spec: &ActionSpec, args: &[rhai::Dynamic]) -> Result<Value, String> {
    let required: Vec<&ParamSpec> = spec.required_params().collect();
    let mut out = Map::new();
    let named_only = args.len() == 1 && args[0].is_map() && required.first().is_none_or(|p| !accepts_map(p));
    if named_only {
        merge_options(spec, &args[0], &mut out, true)?;
    } else if args.len() == required.len() || args.len() == required.len() + 1 {
        for (param, arg) in required.iter().zip(args) {
            let value = to_json(spec, param.name, arg)?;
            out.insert(param.name.to_owned(), value);
        }
        if let Some(options) = args.get(required.len()) {
            if !options.is_map() {
                return Err(format!(
                    "{}: the last argument must be an options map #{{...}}, found {}",
                    spec.signature(),
                    options.type_name()
                ));
            }
            merge_options(spec, options, &mut out, false)?;
        }
    } else {
        return Err(format!(
            "{} takes {} argument(s), got {}",
            spec.signature(),
            arity_text(spec),
            args.len()
        ));
    }
    check(spec, &out)?;
    Ok(Value::Object(out))
}

/// Binds a named-argument map (`invoke("ns.action", #{...})`).
pub fn bind_named(spec: &ActionSpec, named: Option<&rhai::Dynamic>) -> Result<Value, String> {
    let mut out = Map::new();
    if let Some(named) = named {
        if !named.is_map() {
            return Err(format!(
                "invoke(\"…{}\", args): args must be a map #{{...}}, found {}",
                spec.name,
                named.type_name()
            ));
        }
        merge_options(spec, named, &mut out, true)?;
    }
    check(spec, &out)?;
    Ok(Value::Object(out))
}

fn accepts_map(param: &ParamSpec) -> bool {
    matches!(param.ty, crate::action::ParamType::Map | crate::action::ParamType::Any)
}

fn arity_text(spec: &ActionSpec) -> String {
    let arities: Vec<String> = spec.arities().iter().map(ToString::to_string).collect();
    arities.join(" or ")
}

fn to_json(spec: &ActionSpec, name: &str, value: &rhai::Dynamic) -> Result<Value, String> {
    dynamic_to_json(value).map_err(|e| format!("{}: parameter `{name}`: {e}", spec.name))
}

fn merge_options(
    spec: &ActionSpec,
    map: &rhai::Dynamic,
    out: &mut Map<String, Value>,
    allow_required: bool,
) -> Result<(), String> {
    let Value::Object(entries) = to_json(spec, "options", map)? else {
        return Ok(());
    };
    for (key, value) in entries {
        let Some(param) = spec.params.iter().find(|p| p.name == key) else {
            let known: Vec<&str> = spec
                .params
                .iter()
                .filter(|p| allow_required || !p.required)
                .map(|p| p.name)
                .collect();
            return Err(format!(
                "{}: unknown option `{key}`; {}",
                spec.name,
                if known.is_empty() {
                    "it takes no options".to_owned()
                } else {
                    format!("expected {}", known.join(", "))
                }
            ));
        };
        if param.required && !allow_required {
            return Err(format!(
                "{}: `{key}` is a positional argument: {}",
                spec.name,
                spec.signature()
            ));
        }
        // `()` for an optional parameter means "not given".
        if !value.is_null() {
            out.insert(key, value);
        }
    }
    Ok(())
}

fn check(spec: &ActionSpec, args: &Map<String, Value>) -> Result<(), String> {
    for param in spec.params {
        match args.get(param.name) {
            None if param.required => {
                return Err(format!(
                    "{}: missing required parameter `{}`: {}",
                    spec.name,
                    param.name,
                    spec.signature()
                ));
            }
            None => {}
            Some(value) if !param.ty.accepts(value) => {
                return Err(format!(
                    "{}: parameter `{}` must be {}, found {}",
                    spec.name,
                    param.name,
                    param.ty.as_str(),
                    json_type(value)
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn json_type(value: &Value) -> &'static str {
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
    use crate::action::{ParamSpec, ParamType};
    use rhai::{Dynamic, Map as RhaiMap};
    use serde_json::json;

    const PARAMS: &[ParamSpec] = &[
        ParamSpec::required("user_id", ParamType::String, ""),
        ParamSpec::optional("name", ParamType::String, ""),
    ];
    const CREATE: &[ParamSpec] = &[
        ParamSpec::required("email", ParamType::String, ""),
        ParamSpec::optional("name", ParamType::String, ""),
    ];

    fn map(pairs: &[(&str, &str)]) -> Dynamic {
        let mut m = RhaiMap::new();
        for (k, v) in pairs {
            m.insert((*k).into(), Dynamic::from(v.to_string()));
        }
        Dynamic::from_map(m)
    }

    #[test]
    fn positional_then_options() {
        let spec = ActionSpec::write("update_user", "").params(PARAMS);
        let args = [Dynamic::from("u1".to_string()), map(&[("name", "Ann")])];
        assert_eq!(
            bind_args(&spec, &args).unwrap(),
            json!({"user_id": "u1", "name": "Ann"})
        );
    }

    #[test]
    fn everything_in_one_map() {
        let spec = ActionSpec::write("create_user", "").params(CREATE);
        let args = [map(&[("email", "a@b.c"), ("name", "A")])];
        assert_eq!(bind_args(&spec, &args).unwrap(), json!({"email": "a@b.c", "name": "A"}));
    }

    #[test]
    fn mistakes_are_named() {
        let spec = ActionSpec::write("update_user", "").params(PARAMS);
        let err = bind_args(&spec, &[Dynamic::from("u1".to_string()), map(&[("nmae", "x")])]).unwrap_err();
        assert!(err.contains("unknown option `nmae`; expected name"), "{err}");
        let err = bind_args(&spec, &[Dynamic::from(5_i64)]).unwrap_err();
        assert!(err.contains("`user_id` must be string, found int"), "{err}");
        let err = bind_args(&spec, &[]).unwrap_err();
        assert!(err.contains("takes 1 or 2 argument(s), got 0"), "{err}");
    }
}
