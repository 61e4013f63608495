//! `runbook check`: find what would fail at the first call, without running anything.
//!
//! The script is compiled (syntax errors, undefined variables), then its syntax tree — function
//! and closure bodies included — is walked for every namespaced call (`ns::name(...)`) and every
//! `invoke("ns.name", ...)` with a literal name: the namespace must exist, the action must exist,
//! the number of arguments must be one the action accepts, and literal arguments must fit the
//! action's parameters. Declared params and endless loops are checked too.

use rhai::{ASTNode, Expr, Position, Stmt};
use serde::Serialize;

use super::bind::arity_message;
use super::literal_args::check_literal_args;
use crate::registry::{Registry, unknown_action};

/// A problem found in a script, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// What is wrong and what to do.
    pub message: String,
}

impl Diagnostic {
    /// A problem with no place in the script (a parameter's value).
    pub(crate) fn unplaced(message: String) -> Self {
        Diagnostic {
            line: None,
            column: None,
            message,
        }
    }

    pub(crate) fn at(pos: Position, message: String) -> Self {
        Diagnostic {
            line: pos.line(),
            column: pos.position(),
            message,
        }
    }
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "line {l}, column {c}: {}", self.message),
            (Some(l), None) => write!(f, "line {l}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

/// A function of a namespace the engine provides itself, with its arguments' names.
type Builtin = (&'static str, &'static [&'static str]);

/// Namespaces the engine provides itself, with their functions.
const BUILTIN: &[(&str, &[Builtin])] = &[("state", &[("get", &["key"]), ("set", &["key", "value"])])];

/// Every check of a compiled script.
pub(crate) fn check_script(ast: &rhai::AST, registry: &Registry) -> Vec<Diagnostic> {
    let mut found = check_calls(ast, registry);
    found.extend(super::params::declared(ast).problems);
    found.extend(super::loops::endless_loops(ast));
    found.sort_by_key(|d| (d.line, d.column));
    found
}

/// Checks every action call in a compiled script.
fn check_calls(ast: &rhai::AST, registry: &Registry) -> Vec<Diagnostic> {
    let mut found = Vec::new();
    ast.walk(&mut |path: &[ASTNode]| {
        let call = match path.last() {
            Some(ASTNode::Expr(Expr::FnCall(call, pos))) => Some((call, pos)),
            Some(ASTNode::Stmt(Stmt::FnCall(call, pos))) => Some((call, pos)),
            _ => None,
        };
        if let Some((call, pos)) = call {
            if !call.namespace.is_empty() {
                let ns_pos = call.namespace.position();
                let at = if ns_pos.is_none() { *pos } else { ns_pos };
                if call.namespace.path.len() > 1 {
                    found.push(Diagnostic::at(at, format!("unknown namespace `{}`", call.namespace)));
                } else if let Some(message) = check_one(registry, call.namespace.root(), &call.name, call.args.len()) {
                    found.push(Diagnostic::at(at, message));
                } else if let Some(spec) = registry.get(call.namespace.root()).and_then(|p| p.action(&call.name)) {
                    found.extend(check_literal_args(call.namespace.root(), spec, &call.args, false));
                }
            } else if call.name == "invoke"
                && !call.args.is_empty()
                && let Expr::StringConstant(name, name_pos) = &call.args[0]
            {
                let given = call.args.len() - 1;
                match registry.lookup(name) {
                    Err(message) => found.push(Diagnostic::at(*name_pos, format!("invoke: {message}"))),
                    Ok((_, spec)) if given > 1 => found.push(Diagnostic::at(
                        *pos,
                        format!(
                            "invoke(\"{name}\", args) takes the arguments of {} as one map",
                            spec.signature()
                        ),
                    )),
                    Ok((provider, spec)) => {
                        found.extend(check_literal_args(provider.namespace(), spec, &call.args[1..], true));
                    }
                }
            }
        }
        true
    });
    found.extend(super::records::check_fields(ast, registry));
    found
}

fn check_one(registry: &Registry, namespace: &str, name: &str, given: usize) -> Option<String> {
    if let Some((_, functions)) = BUILTIN.iter().find(|(ns, _)| *ns == namespace) {
        return match functions.iter().find(|(f, _)| *f == name) {
            None => {
                let names: Vec<&str> = functions.iter().map(|(f, _)| *f).collect();
                Some(format!(
                    "unknown function {namespace}::{name}; {namespace} has: {}",
                    names.join(", ")
                ))
            }
            Some((_, args)) if args.len() != given => Some(format!(
                "{namespace}::{name} takes {} argument{} ({}), got {given}",
                args.len(),
                if args.len() == 1 { "" } else { "s" },
                args.join(", ")
            )),
            Some(_) => None,
        };
    }
    let Some(provider) = registry.get(namespace) else {
        let mut known: Vec<&str> = registry.providers().iter().map(|p| p.namespace()).collect();
        known.extend(BUILTIN.iter().map(|(ns, _)| *ns));
        return Some(format!(
            "unknown namespace `{namespace}` in {namespace}::{name}; known namespaces: {}",
            known.join(", ")
        ));
    };
    let Some(spec) = provider.action(name) else {
        return Some(unknown_action(provider, name));
    };
    if spec.arities().contains(&given) {
        return None;
    }
    Some(arity_message(&format!("{namespace}::{}", spec.name), spec, given))
}
