//! Literal arguments of an action call checked against the action's parameters, before the run:
//! an option key the action does not take (`list_users(#{emial: e})`), a key that must be given
//! positionally, a required key missing from a map of named arguments, and a literal value of
//! the wrong type. Values computed at run time are checked by the call pipeline instead.

use rhai::{Expr, Position};
use serde_json::Value;

use super::bind::qualified_signature;
use super::check::Diagnostic;
use super::convert::dynamic_to_json;
use crate::action::{ActionSpec, ParamType};
use crate::pipeline::validate::{unknown_option, wrong_type};

/// One key of a map literal: its name, where it is, and its value when that is a literal.
struct Entry {
    key: String,
    pos: Position,
    value: Option<Value>,
}

/// Checks the literal arguments of `ns::action(args)`, whose arity is already known to fit.
/// `named` is true for `invoke("ns.action", #{...})`, whose one map holds every argument.
pub(crate) fn check_literal_args(ns: &str, spec: &ActionSpec, args: &[Expr], named: bool) -> Vec<Diagnostic> {
    let name = format!("{ns}::{}", spec.name);
    let mut found = Vec::new();
    let required: Vec<_> = spec.required_params().collect();
    let named_only = named
        || (args.len() == 1
            && map_entries(&args[0]).is_some()
            && required
                .first()
                .is_none_or(|p| !matches!(p.ty, ParamType::Map | ParamType::Any)));
    if named_only {
        if let Some(entries) = args.first().and_then(map_entries) {
            check_entries(&name, spec, &entries, true, &mut found);
            for param in &required {
                if !entries.iter().any(|e| e.key == param.name) {
                    found.push(Diagnostic::at(
                        args[0].position(),
                        format!(
                            "{name}: missing required argument `{}`: {}",
                            param.name,
                            qualified_signature(&name, spec)
                        ),
                    ));
                }
            }
        }
        return found;
    }
    for (param, arg) in required.iter().zip(args) {
        if let Some(value) = literal(arg).filter(|v| !v.is_null())
            && !param.ty.accepts(&value)
        {
            found.push(Diagnostic::at(arg.position(), wrong_type(&name, param, &value)));
        }
    }
    if let Some(entries) = args.get(required.len()).and_then(map_entries) {
        check_entries(&name, spec, &entries, false, &mut found);
    }
    found
}

fn check_entries(name: &str, spec: &ActionSpec, entries: &[Entry], allow_required: bool, found: &mut Vec<Diagnostic>) {
    for entry in entries {
        let Some(param) = spec.params.iter().find(|p| p.name == entry.key) else {
            found.push(Diagnostic::at(entry.pos, unknown_option(name, spec, &entry.key)));
            continue;
        };
        if param.required && !allow_required {
            found.push(Diagnostic::at(
                entry.pos,
                format!(
                    "{name}: `{}` is a positional argument: {}",
                    entry.key,
                    qualified_signature(name, spec)
                ),
            ));
        } else if let Some(value) = entry.value.as_ref().filter(|v| !v.is_null())
            && !param.ty.accepts(value)
        {
            found.push(Diagnostic::at(entry.pos, wrong_type(name, param, value)));
        }
    }
}

/// A literal value as JSON (constants, and arrays and maps of constants).
pub(crate) fn literal(expr: &Expr) -> Option<Value> {
    expr.get_literal_value(None).and_then(|d| dynamic_to_json(&d).ok())
}

/// The keys of a map literal `#{...}`, whether or not its values are literals.
fn map_entries(expr: &Expr) -> Option<Vec<Entry>> {
    match expr {
        Expr::Map(map, _) => Some(
            map.0
                .iter()
                .map(|(ident, value)| Entry {
                    key: ident.name.to_string(),
                    pos: ident.pos,
                    value: literal(value),
                })
                .collect(),
        ),
        Expr::DynamicConstant(value, pos) if value.is_map() => {
            let Ok(Value::Object(map)) = dynamic_to_json(value) else {
                return None;
            };
            Some(
                map.into_iter()
                    .map(|(key, value)| Entry {
                        key,
                        pos: *pos,
                        value: Some(value),
                    })
                    .collect(),
            )
        }
        _ => None,
    }
}
