//! Turning a script's arguments into the JSON object a provider receives.
//!
//! Three call shapes are accepted:
//! * positional required parameters: `get_user(id)`;
//! * the same followed by an options map for optional parameters: `list_users(#{email: e})`,
//!   `update_user(id, #{name: n})`;
//! * every parameter in one map: `create_user(#{email: e, name: n})`, which is also what
//!   `invoke("ns.action", #{...})` passes.
//!
//! Only the shape is settled here; the call pipeline checks the keys and types.

use serde_json::{Map, Value};

use super::convert::dynamic_to_json;
use crate::action::{ActionSpec, ParamSpec, ParamType};
use crate::pipeline::validate;

/// Binds a script's arguments to `spec`'s parameters.
pub fn bind_args(namespace: &str, spec: &ActionSpec, args: &[&mut rhai::Dynamic]) -> Result<Value, String> {
    let required: Vec<&ParamSpec> = spec.required_params().collect();
    let name = format!("{namespace}::{}", spec.name);
    let mut out = Map::new();
    let named_only = args.len() == 1 && args[0].is_map() && required.first().is_none_or(|p| !accepts_map(p));
    if named_only {
        merge_options(&name, spec, args[0], &mut out, true)?;
    } else if args.len() == required.len() || args.len() == required.len() + 1 {
        for (param, arg) in required.iter().zip(args) {
            let value = dynamic_to_json(arg).map_err(|e| format!("{name}: `{}`: {e}", param.name))?;
            out.insert(param.name.to_owned(), value);
        }
        if let Some(options) = args.get(required.len()) {
            if !options.is_map() {
                return Err(format!(
                    "{name}: the last argument must be an options map #{{...}} ({}), got {}",
                    validate::takes(spec),
                    options.type_name()
                ));
            }
            merge_options(&name, spec, options, &mut out, false)?;
        }
    } else {
        return Err(arity_message(&name, spec, args.len()));
    }
    Ok(Value::Object(out))
}

/// Binds a named-argument map (`invoke("ns.action", #{...})`).
pub fn bind_named(namespace: &str, spec: &ActionSpec, named: Option<&rhai::Dynamic>) -> Result<Value, String> {
    let name = format!("{namespace}::{}", spec.name);
    let mut out = Map::new();
    if let Some(named) = named {
        if !named.is_map() {
            return Err(format!(
                "invoke(\"{namespace}.{}\", args): args must be a map #{{...}}, got {}",
                spec.name,
                named.type_name()
            ));
        }
        merge_options(&name, spec, named, &mut out, true)?;
    }
    Ok(Value::Object(out))
}

/// `privx::get_user takes 1 argument (user_id), got 0`.
pub(crate) fn arity_message(name: &str, spec: &ActionSpec, given: usize) -> String {
    let required: Vec<&str> = spec.required_params().map(|p| p.name).collect();
    let shape = match (required.len(), spec.has_optional_params()) {
        (0, false) => "no arguments".to_owned(),
        (0, true) => "no arguments, or an options map".to_owned(),
        (n, optional) => {
            let plural = if n == 1 { "argument" } else { "arguments" };
            let options = if optional { ", then an options map" } else { "" };
            format!("{n} {plural} ({}){options}", required.join(", "))
        }
    };
    format!("{name} takes {shape}, got {given}: {}", qualified_signature(name, spec))
}

/// `ns::action(user_id, #{name})`.
pub(crate) fn qualified_signature(name: &str, spec: &ActionSpec) -> String {
    let signature = spec.signature();
    let args = signature.strip_prefix(spec.name).unwrap_or(&signature);
    format!("{name}{args}")
}

fn accepts_map(param: &ParamSpec) -> bool {
    matches!(param.ty, ParamType::Map | ParamType::Any)
}

fn merge_options(
    name: &str,
    spec: &ActionSpec,
    map: &rhai::Dynamic,
    out: &mut Map<String, Value>,
    allow_required: bool,
) -> Result<(), String> {
    let Value::Object(entries) = dynamic_to_json(map).map_err(|e| format!("{name}: {e}"))? else {
        return Ok(());
    };
    for (key, value) in entries {
        if let Some(param) = spec.params.iter().find(|p| p.name == key)
            && param.required
            && !allow_required
        {
            return Err(format!(
                "{name}: `{key}` is a positional argument: {}",
                qualified_signature(name, spec)
            ));
        }
        // `()` for an optional parameter means "not given".
        if !value.is_null() {
            out.insert(key, value);
        }
    }
    Ok(())
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

    fn bind(spec: &ActionSpec, mut args: Vec<Dynamic>) -> Result<Value, String> {
        let refs: Vec<&mut Dynamic> = args.iter_mut().collect();
        bind_args("dir", spec, &refs)
    }

    #[test]
    fn positional_then_options() {
        let spec = ActionSpec::write("update_user", "").params(PARAMS);
        let args = vec![Dynamic::from("u1".to_string()), map(&[("name", "Ann")])];
        assert_eq!(bind(&spec, args).unwrap(), json!({"user_id": "u1", "name": "Ann"}));
    }

    #[test]
    fn everything_in_one_map() {
        let spec = ActionSpec::write("create_user", "").params(CREATE);
        let args = vec![map(&[("email", "a@b.c"), ("name", "A")])];
        assert_eq!(bind(&spec, args).unwrap(), json!({"email": "a@b.c", "name": "A"}));
    }

    #[test]
    fn a_wrong_arity_says_what_the_action_takes() {
        let spec = ActionSpec::write("update_user", "").params(PARAMS);
        assert_eq!(
            bind(&spec, vec![]).unwrap_err(),
            "dir::update_user takes 1 argument (user_id), then an options map, got 0: dir::update_user(user_id, #{name})"
        );
        let err = bind(&spec, vec![Dynamic::from("u1".to_string()), map(&[("user_id", "x")])]).unwrap_err();
        assert!(err.contains("`user_id` is a positional argument"), "{err}");
    }
}
