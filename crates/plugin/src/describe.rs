//! `describe`: what a plugin says about itself, checked and turned into the engine's static
//! action specs.

use runbook_core::{ActionSpec, Effect, ParamSpec, ParamType, Targets};
use serde::Deserialize;
use serde_json::Value;

use crate::PluginError;

/// The protocol version this engine speaks (`initialize` → `{"protocol": 1}`).
pub const PROTOCOL_VERSION: u64 = 1;

/// Names scripts use for the engine's own modules.
const RESERVED: &[&str] = &["state"];

#[derive(Debug, Deserialize)]
struct RawDescribe {
    namespace: String,
    #[serde(default)]
    summary: String,
    actions: Vec<RawAction>,
    #[serde(default)]
    config: RawConfig,
}

#[derive(Debug, Default, Deserialize)]
struct RawConfig {
    #[serde(default)]
    secret_fields: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct RawAction {
    name: String,
    #[serde(default)]
    summary: String,
    #[serde(default)]
    params: Vec<RawParam>,
    #[serde(default)]
    returns: Option<String>,
    effect: String,
    #[serde(default)]
    idempotent: Option<bool>,
    #[serde(default)]
    targets: Option<RawTargets>,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    probe: Option<String>,
    #[serde(default)]
    example: Option<String>,
    #[serde(default)]
    planned_result: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct RawParam {
    name: String,
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    doc: String,
    #[serde(default)]
    secret: bool,
}

#[derive(Debug, Deserialize)]
struct RawTargets {
    kind: String,
    #[serde(default)]
    param: Option<String>,
}

/// What a plugin described, as the engine uses it. Built once per configured plugin; the specs
/// are leaked to become the `'static` data the engine's specs are (bounded: one describe per
/// `[[plugins]]` entry and process).
#[derive(Debug, Clone)]
pub struct Described {
    /// The namespace scripts use.
    pub namespace: &'static str,
    /// One line about the service.
    pub summary: &'static str,
    /// Every action.
    pub actions: &'static [ActionSpec],
    /// Configuration fields that hold secrets.
    pub secret_fields: Vec<String>,
    /// What each change returns in plan mode, where it is not sent (`planned_result`), by action.
    pub planned_results: std::collections::BTreeMap<String, Value>,
    /// The answer as it came, to tell whether a restarted process describes the same actions.
    pub(crate) raw: Value,
}

impl Described {
    /// What a call of `action` returns in plan mode: its `planned_result`, or `()`.
    pub fn planned_result(&self, action: &str) -> Value {
        self.planned_results.get(action).cloned().unwrap_or(Value::Null)
    }
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= 64
}

fn param_type(name: &str) -> Option<ParamType> {
    Some(match name {
        "string" => ParamType::String,
        "int" | "integer" => ParamType::Integer,
        "bool" => ParamType::Bool,
        "map" => ParamType::Map,
        "array" => ParamType::Array,
        "string_or_array" => ParamType::StringOrArray,
        "any" => ParamType::Any,
        _ => return None,
    })
}

/// Checks a `describe` answer of the plugin `label` and builds its specs.
pub(crate) fn build(label: &str, answer: Value) -> Result<Described, PluginError> {
    let raw = answer.clone();
    let fail = |what: String| PluginError(format!("{label}: its describe {what}"));
    let d: RawDescribe = serde_json::from_value(answer).map_err(|e| fail(format!("cannot be read: {e}")))?;
    if !is_identifier(&d.namespace) {
        return Err(fail(format!(
            "names the namespace \"{}\", which is not an identifier (letters, digits, _)",
            d.namespace.escape_debug()
        )));
    }
    if RESERVED.contains(&d.namespace.as_str()) {
        return Err(fail(format!(
            "names the namespace `{}`, which the engine uses",
            d.namespace
        )));
    }
    if d.actions.is_empty() {
        return Err(fail("lists no action".into()));
    }
    let mut specs = Vec::with_capacity(d.actions.len());
    let mut planned_results = std::collections::BTreeMap::new();
    for (i, a) in d.actions.iter().enumerate() {
        let at = |what: String| fail(format!("action `{}`: {what}", a.name.escape_debug()));
        if !is_identifier(&a.name) {
            return Err(at("the name is not an identifier (letters, digits, _)".into()));
        }
        if d.actions[..i].iter().any(|b| b.name == a.name) {
            return Err(at("is declared twice".into()));
        }
        let effect = match a.effect.as_str() {
            "read" => Effect::Read,
            "write" => Effect::Write,
            "destructive" => Effect::Destructive,
            other => {
                return Err(at(format!(
                    "effect \"{}\" is unknown; it must be read, write or destructive",
                    other.escape_debug()
                )));
            }
        };
        let mut params = Vec::with_capacity(a.params.len());
        let mut seen_optional = false;
        for (j, p) in a.params.iter().enumerate() {
            if !is_identifier(&p.name) {
                return Err(at(format!(
                    "parameter \"{}\" is not an identifier",
                    p.name.escape_debug()
                )));
            }
            if a.params[..j].iter().any(|q| q.name == p.name) {
                return Err(at(format!("parameter `{}` is declared twice", p.name)));
            }
            let ty = param_type(&p.ty).ok_or_else(|| {
                at(format!(
                    "parameter `{}` has the type \"{}\", which runbook does not know; use string, int, bool, map, \
                     array, string_or_array or any",
                    p.name,
                    p.ty.escape_debug()
                ))
            })?;
            if p.required && seen_optional {
                return Err(at(format!(
                    "the required parameter `{}` comes after an optional one; list required ones first",
                    p.name
                )));
            }
            seen_optional |= !p.required;
            let name = leak(p.name.clone());
            let doc = leak(p.doc.clone());
            let mut spec = if p.required {
                ParamSpec::required(name, ty, doc)
            } else {
                ParamSpec::optional(name, ty, doc)
            };
            if p.secret {
                spec = spec.secret();
            }
            params.push(spec);
        }
        let targets = match &a.targets {
            None if effect == Effect::Read => Targets::None,
            None => Targets::One,
            Some(t) => match (t.kind.as_str(), &t.param) {
                ("none", _) => Targets::None,
                ("one", _) => Targets::One,
                ("count_of", Some(param)) => {
                    let Some(p) = params.iter().find(|p| p.name == param) else {
                        return Err(at(format!(
                            "targets count `{param}`, which is not one of its parameters"
                        )));
                    };
                    // A change the guard counts by a parameter must always name its targets:
                    // an omitted parameter, or one that is neither a list nor an id, would count none.
                    if effect.is_mutating()
                        && (!p.required || !matches!(p.ty, ParamType::Array | ParamType::StringOrArray))
                    {
                        return Err(at(format!(
                            "targets count `{param}`, which must then be a required parameter of type array or \
                             string_or_array (a change must name what it changes, for the guard to count it)"
                        )));
                    }
                    Targets::CountOf(p.name)
                }
                ("count_of", None) => return Err(at("targets count_of names no `param`".into())),
                (other, _) => {
                    return Err(at(format!(
                        "targets kind \"{}\" is unknown; it must be none, one or count_of",
                        other.escape_debug()
                    )));
                }
            },
        };
        if effect.is_mutating() && targets == Targets::None {
            return Err(at(
                "changes something (effect write or destructive) but counts no target; the guard must count it".into(),
            ));
        }
        if let Some(label) = &a.label
            && !a.params.iter().any(|p| &p.name == label)
        {
            return Err(at(format!("label `{label}` is not one of its parameters")));
        }
        let idempotent = a.idempotent.unwrap_or(effect == Effect::Read);
        let base = match effect {
            Effect::Read => ActionSpec::read(leak(a.name.clone()), leak(a.summary.clone())),
            Effect::Write => ActionSpec::write(leak(a.name.clone()), leak(a.summary.clone())),
            Effect::Destructive => ActionSpec::destructive(leak(a.name.clone()), leak(a.summary.clone())),
        };
        let mut spec = base
            .params(Box::leak(params.into_boxed_slice()))
            .idempotent(idempotent)
            .targets(targets);
        if let Some(returns) = &a.returns {
            spec = spec.returns(leak(returns.clone()));
        }
        if let Some(example) = &a.example {
            spec = spec.example(leak(example.clone()));
        }
        if let Some(probe) = &a.probe {
            if !effect.is_mutating() || idempotent {
                return Err(at(
                    "declares a probe, which only a write that is not idempotent has (a read or an idempotent \
                     write is simply sent again)"
                        .into(),
                ));
            }
            spec = spec.probe(leak(probe.clone()));
        }
        if let Some(planned) = &a.planned_result {
            if !effect.is_mutating() {
                return Err(at(
                    "declares a planned_result, which only a change (write or destructive) has: a read runs in \
                     plan mode too"
                        .into(),
                ));
            }
            planned_results.insert(a.name.clone(), planned.clone());
        }
        specs.push(spec);
    }
    Ok(Described {
        namespace: leak(d.namespace),
        summary: leak(d.summary),
        actions: Box::leak(specs.into_boxed_slice()),
        secret_fields: d.config.secret_fields,
        planned_results,
        raw,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(action: Value) -> Value {
        json!({"namespace": "tickets", "actions": [action]})
    }

    #[test]
    fn a_good_describe_becomes_specs() {
        let d = build(
            "p",
            one(json!({"name": "create_ticket", "effect": "write", "idempotent": false, "probe": "a ticket with that key",
                "params": [{"name": "title", "type": "string", "required": true}, {"name": "ids", "type": "string_or_array", "required": true}],
                "targets": {"kind": "count_of", "param": "ids"}})),
        )
        .unwrap();
        assert_eq!(d.namespace, "tickets");
        let a = &d.actions[0];
        assert_eq!(a.effect, Effect::Write);
        assert!(!a.idempotent);
        assert_eq!(a.targets, Targets::CountOf("ids"));
        assert_eq!(a.probe, Some("a ticket with that key"));
    }

    #[test]
    fn a_change_gives_its_planned_result() {
        let d = build(
            "p",
            one(json!({"name": "create", "effect": "write", "planned_result": {"id": "(planned)", "tags": []}})),
        )
        .unwrap();
        assert_eq!(d.planned_result("create"), json!({"id": "(planned)", "tags": []}));
        assert_eq!(d.planned_result("other"), Value::Null);
    }

    #[test]
    fn lies_are_named() {
        let cases = [
            (
                one(json!({"name": "x", "effect": "sideways"})),
                "effect \"sideways\" is unknown",
            ),
            (one(json!({"name": "x-y", "effect": "read"})), "not an identifier"),
            (
                one(json!({"name": "x", "effect": "read", "params": [{"name": "a", "type": "float"}]})),
                "type \"float\", which runbook does not know",
            ),
            (
                json!({"namespace": "state", "actions": [{"name": "x", "effect": "read"}]}),
                "which the engine uses",
            ),
            (
                json!({"namespace": "t", "actions": [{"name": "x", "effect": "read"}, {"name": "x", "effect": "read"}]}),
                "declared twice",
            ),
            (
                one(json!({"name": "x", "effect": "write", "targets": {"kind": "none"}})),
                "counts no target",
            ),
            (
                one(
                    json!({"name": "x", "effect": "write", "params": [{"name": "ids", "type": "array"}],
                    "targets": {"kind": "count_of", "param": "ids"}}),
                ),
                "must then be a required parameter of type array or string_or_array",
            ),
            (
                one(
                    json!({"name": "x", "effect": "destructive", "params": [{"name": "n", "type": "int", "required": true}],
                    "targets": {"kind": "count_of", "param": "n"}}),
                ),
                "must then be a required parameter of type array or string_or_array",
            ),
            (
                one(json!({"name": "x", "effect": "read", "planned_result": {"id": "(planned)"}})),
                "declares a planned_result",
            ),
        ];
        for (answer, expected) in cases {
            let e = build("plugins[1] (t)", answer).unwrap_err();
            assert!(e.0.contains(expected), "{} lacks {expected}", e.0);
            assert!(e.0.starts_with("plugins[1] (t): its describe"), "{}", e.0);
        }
    }
}
