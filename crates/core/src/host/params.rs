//! A script's parameters, declared where the script reads them:
//!
//! * `param("threshold", 3, "failed logins that flag a user")` — optional: the default gives the
//!   type (an int here) and is used when no value is given; the doc string may be left out;
//! * `required_param("allowed", "array", "country codes that are fine")` — required, of a named
//!   type (`string`, `int`, `number`, `bool`, `array`, `map` or `any`);
//! * `param("email")` — required, of any type.
//!
//! Declarations are read from the syntax tree without running anything, so that `run`, `serve`
//! and forms can list them and validate values before a request is sent. That is why every
//! argument of a declaration must be a literal: `param(name_var)` is a check error.

use std::collections::BTreeMap;

use rhai::{ASTNode, Dynamic, Expr, Position, Stmt};
use serde::Serialize;
use serde_json::{Map, Value};

use super::check::Diagnostic;
use super::convert::dynamic_to_json;
use crate::registry::closest;

/// The function declaring an optional parameter (or a required one, with the name alone).
pub(crate) const PARAM: &str = "param";
/// The function declaring a required parameter of a named type.
pub(crate) const REQUIRED_PARAM: &str = "required_param";

/// The type of a script parameter, in the words scripts and messages use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ScriptParamType {
    /// Text.
    String,
    /// A whole number.
    Int,
    /// Any number, whole or not.
    Number,
    /// `true` or `false`.
    Bool,
    /// A list (`["FI", "SE"]`).
    Array,
    /// An object map (`{"a": 1}`).
    Map,
    /// Any value.
    Any,
}

const TYPES: [ScriptParamType; 7] = [
    ScriptParamType::String,
    ScriptParamType::Int,
    ScriptParamType::Number,
    ScriptParamType::Bool,
    ScriptParamType::Array,
    ScriptParamType::Map,
    ScriptParamType::Any,
];

impl ScriptParamType {
    /// The name scripts write in `required_param` and messages show.
    pub fn as_str(self) -> &'static str {
        match self {
            ScriptParamType::String => "string",
            ScriptParamType::Int => "int",
            ScriptParamType::Number => "number",
            ScriptParamType::Bool => "bool",
            ScriptParamType::Array => "array",
            ScriptParamType::Map => "map",
            ScriptParamType::Any => "any",
        }
    }

    /// Whether a value given for the parameter has this type.
    pub fn accepts(self, value: &Value) -> bool {
        match self {
            ScriptParamType::String => value.is_string(),
            ScriptParamType::Int => value.is_i64() || value.is_u64(),
            ScriptParamType::Number => value.is_number(),
            ScriptParamType::Bool => value.is_boolean(),
            ScriptParamType::Array => value.is_array(),
            ScriptParamType::Map => value.is_object(),
            ScriptParamType::Any => !value.is_null(),
        }
    }

    fn with_article(self) -> &'static str {
        match self {
            ScriptParamType::String => "a string",
            ScriptParamType::Int => "an int",
            ScriptParamType::Number => "a number",
            ScriptParamType::Bool => "a bool",
            ScriptParamType::Array => "an array",
            ScriptParamType::Map => "a map",
            ScriptParamType::Any => "any value",
        }
    }

    fn of_default(value: &Value) -> Self {
        match value {
            Value::String(_) => ScriptParamType::String,
            Value::Number(n) if n.is_f64() => ScriptParamType::Number,
            Value::Number(_) => ScriptParamType::Int,
            Value::Bool(_) => ScriptParamType::Bool,
            Value::Array(_) => ScriptParamType::Array,
            Value::Object(_) => ScriptParamType::Map,
            Value::Null => ScriptParamType::Any,
        }
    }
}

impl std::fmt::Display for ScriptParamType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One parameter a script declares.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ScriptParam {
    /// The name (`--param NAME=...`).
    pub name: String,
    /// The type a value must have.
    #[serde(rename = "type")]
    pub ty: ScriptParamType,
    /// The value used when none is given (`None` for a required parameter).
    pub default: Option<Value>,
    /// Whether a value must be given.
    pub required: bool,
    /// What the parameter means, from the declaration (empty when it has none).
    pub doc: String,
    /// The line of the declaration.
    pub line: Option<usize>,
}

/// What a script's syntax tree says about its parameters.
pub(crate) struct Declared {
    /// Each declared parameter once, in order of first declaration.
    pub params: Vec<ScriptParam>,
    /// Declarations that cannot be read (a name that is not a literal, an unknown type, ...).
    pub problems: Vec<Diagnostic>,
    /// The script reads the `params` map itself, so it may take names it does not declare.
    pub reads_params_map: bool,
}

/// Reads every declaration in a compiled script, functions and closures included.
pub(crate) fn declared(ast: &rhai::AST) -> Declared {
    let mut out = Declared {
        params: Vec::new(),
        problems: Vec::new(),
        reads_params_map: false,
    };
    ast.walk(&mut |path: &[ASTNode]| {
        match path.last() {
            Some(ASTNode::Expr(Expr::FnCall(call, pos)) | ASTNode::Stmt(Stmt::FnCall(call, pos)))
                if call.namespace.is_empty() && (call.name == PARAM || call.name == REQUIRED_PARAM) =>
            {
                match declaration(&call.name, &call.args, *pos) {
                    Ok(param) => add(&mut out, param, *pos),
                    Err(problem) => out.problems.push(problem),
                }
            }
            Some(ASTNode::Expr(Expr::Variable(var, ..)))
                if var.2.is_empty() && var.1.as_str() == super::SCRIPT_VARIABLES[0] =>
            {
                out.reads_params_map = true;
            }
            _ => {}
        }
        true
    });
    out
}

fn add(out: &mut Declared, param: ScriptParam, pos: Position) {
    let Some(earlier) = out.params.iter_mut().find(|p| p.name == param.name) else {
        out.params.push(param);
        return;
    };
    if earlier.ty != param.ty || earlier.default != param.default || earlier.required != param.required {
        let first = earlier
            .line
            .map(|l| format!(" (first on line {l})"))
            .unwrap_or_default();
        out.problems.push(Diagnostic::at(
            pos,
            format!(
                "param `{}` is declared again differently{first}: declare it once, or the same way each time",
                param.name
            ),
        ));
    } else if earlier.doc.is_empty() {
        earlier.doc = param.doc;
    }
}

/// One `param(...)` or `required_param(...)` call.
fn declaration(function: &str, args: &[Expr], pos: Position) -> Result<ScriptParam, Diagnostic> {
    let usage = if function == PARAM {
        "param(name), param(name, default) or param(name, default, doc)"
    } else {
        "required_param(name, type) or required_param(name, type, doc)"
    };
    let (min, max) = if function == PARAM { (1, 3) } else { (2, 3) };
    if !(min..=max).contains(&args.len()) {
        return Err(Diagnostic::at(
            pos,
            format!("{function} takes {usage}, got {} argument(s)", args.len()),
        ));
    }
    let Expr::StringConstant(name, _) = &args[0] else {
        return Err(Diagnostic::at(
            args[0].position(),
            format!(
                "the name in {function}(...) must be a literal string, e.g. {function}(\"threshold\", ...), so that it can be read without running the script"
            ),
        ));
    };
    let doc = match args.get(2) {
        None => String::new(),
        Some(Expr::StringConstant(doc, _)) => doc.to_string(),
        Some(other) => {
            return Err(Diagnostic::at(
                other.position(),
                format!("the doc of param `{name}` must be a literal string"),
            ));
        }
    };
    let line = pos.line();
    let name = name.to_string();
    if function == REQUIRED_PARAM {
        let ty = match &args[1] {
            Expr::StringConstant(ty, _) => TYPES.iter().find(|t| t.as_str() == ty.as_str()).copied(),
            _ => None,
        };
        let Some(ty) = ty else {
            let given = match &args[1] {
                Expr::StringConstant(ty, _) => ty.to_string(),
                _ => String::new(),
            };
            let names: Vec<&str> = TYPES.iter().map(|t| t.as_str()).collect();
            let hint = closest(&given, names.iter().copied())
                .map(|c| format!(" (did you mean \"{c}\"?)"))
                .unwrap_or_default();
            return Err(Diagnostic::at(
                args[1].position(),
                format!(
                    "the type of param `{name}` must be one of \"{}\"{hint}",
                    names.join("\", \"")
                ),
            ));
        };
        return Ok(ScriptParam {
            name,
            ty,
            default: None,
            required: true,
            doc,
            line,
        });
    }
    let Some(default) = args.get(1) else {
        return Ok(ScriptParam {
            name,
            ty: ScriptParamType::Any,
            default: None,
            required: true,
            doc,
            line,
        });
    };
    let value = default
        .get_literal_value(None)
        .and_then(|d: Dynamic| dynamic_to_json(&d).ok())
        .ok_or_else(|| {
            Diagnostic::at(
                default.position(),
                format!("the default of param `{name}` must be a literal value (a string, number, bool, array or map), so that it can be read without running the script"),
            )
        })?;
    Ok(ScriptParam {
        name,
        ty: ScriptParamType::of_default(&value),
        default: (!value.is_null()).then_some(value),
        required: false,
        doc,
        line,
    })
}

/// Checks the values given for a script's parameters: no unknown name (unless the script reads
/// the `params` map itself), every required one given, each of its declared type. `how_to_set`
/// tells how to pass one parameter (`--param {name}=VALUE`).
pub(crate) fn validate(
    declared: &Declared,
    given: &Map<String, Value>,
    how_to_set: &dyn Fn(&str) -> String,
) -> Vec<String> {
    let mut problems = Vec::new();
    let by_name: BTreeMap<&str, &ScriptParam> = declared.params.iter().map(|p| (p.name.as_str(), p)).collect();
    for (name, value) in given {
        if value.is_null() {
            continue;
        }
        match by_name.get(name.as_str()) {
            None if declared.reads_params_map => {}
            None => problems.push(unknown(name, &declared.params)),
            // A command line's `--param id=12345` is text that happened to parse as a number.
            Some(param) if param.ty == ScriptParamType::String && (value.is_number() || value.is_boolean()) => {}
            Some(param) if !param.ty.accepts(value) => {
                let like = param
                    .default
                    .as_ref()
                    .map(|d| format!(" (like its default {d})"))
                    .unwrap_or_default();
                problems.push(format!(
                    "parameter `{name}` must be {}{like}, got {}",
                    param.ty.with_article(),
                    describe(value)
                ));
            }
            Some(_) => {}
        }
    }
    for param in declared.params.iter().filter(|p| p.required) {
        if given.get(&param.name).is_none_or(Value::is_null) {
            let about = match (param.ty, param.doc.as_str()) {
                (ScriptParamType::Any, "") => String::new(),
                (ScriptParamType::Any, doc) => format!(" ({doc})"),
                (ty, "") => format!(" ({ty})"),
                (ty, doc) => format!(" ({ty}: {doc})"),
            };
            problems.push(format!(
                "missing required parameter `{}`{about}: set it with {}",
                param.name,
                how_to_set(&param.name)
            ));
        }
    }
    problems
}

/// Gives the script a text parameter as text when the value given looked like a number or a
/// boolean (`--param employee_id=12345`, `--param tag=true`).
pub(crate) fn as_declared(declared: &Declared, given: &mut Map<String, Value>) {
    for param in declared.params.iter().filter(|p| p.ty == ScriptParamType::String) {
        if let Some(value) = given.get_mut(&param.name)
            && (value.is_number() || value.is_boolean())
        {
            *value = Value::String(value.to_string());
        }
    }
}

fn unknown(name: &str, params: &[ScriptParam]) -> String {
    if params.is_empty() {
        return format!("unknown parameter `{name}`: the script declares no parameters");
    }
    let names: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
    let hint = closest(name, names.iter().copied())
        .map(|c| format!(" (did you mean `{c}`?)"))
        .unwrap_or_default();
    format!(
        "unknown parameter `{name}`{hint}; the script takes: {}",
        names.join(", ")
    )
}

/// A given value, as a person would name it.
fn describe(value: &Value) -> String {
    match value {
        Value::String(s) => format!("the string {value}{}", string_hint(s)),
        Value::Number(n) if n.is_f64() => format!("the number {n}"),
        Value::Number(n) => format!("the int {n}"),
        Value::Bool(b) => format!("{b}"),
        Value::Array(_) => "an array".to_owned(),
        Value::Object(_) => "a map".to_owned(),
        Value::Null => "nothing".to_owned(),
    }
}

/// A string that looks like it was meant as JSON says so.
fn string_hint(s: &str) -> &'static str {
    if s.starts_with(['[', '{']) {
        " (not valid JSON)"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decl(params: Vec<ScriptParam>) -> Declared {
        Declared {
            params,
            problems: Vec::new(),
            reads_params_map: false,
        }
    }

    fn threshold() -> ScriptParam {
        ScriptParam {
            name: "threshold".into(),
            ty: ScriptParamType::Int,
            default: Some(json!(3)),
            required: false,
            doc: String::new(),
            line: None,
        }
    }

    fn allowed() -> ScriptParam {
        ScriptParam {
            name: "allowed".into(),
            ty: ScriptParamType::Array,
            default: None,
            required: true,
            doc: "country codes".into(),
            line: None,
        }
    }

    fn check(given: Value) -> Vec<String> {
        let Value::Object(given) = given else { unreachable!() };
        validate(&decl(vec![threshold(), allowed()]), &given, &|n| {
            format!("--param {n}=VALUE")
        })
    }

    #[test]
    fn values_are_checked_against_their_declarations() {
        assert!(check(json!({"threshold": 5, "allowed": ["FI"]})).is_empty());
        assert_eq!(
            check(json!({"threshold": "3x", "allowed": ["FI"]})),
            ["parameter `threshold` must be an int (like its default 3), got the string \"3x\""]
        );
        assert_eq!(
            check(json!({"thresold": 5, "allowed": []})),
            ["unknown parameter `thresold` (did you mean `threshold`?); the script takes: threshold, allowed"]
        );
        assert_eq!(
            check(json!({})),
            ["missing required parameter `allowed` (array: country codes): set it with --param allowed=VALUE"]
        );
    }
}
