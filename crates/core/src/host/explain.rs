//! Turning a failed evaluation into a message in the script writer's words: no Rhai type lists
//! (`&str | ImmutableString | String`), no Rust type names (`i64`), the position once (the run
//! error carries it), the action named once, and what to do where it can be said.

use rhai::{EvalAltResult, Position};

use super::Limits;
use crate::pipeline::Abort;
use crate::run::{RunErrorKind, SettingNames};

/// A failed evaluation, explained.
pub(crate) struct Failure {
    pub kind: RunErrorKind,
    pub message: String,
    pub position: Option<(usize, usize)>,
}

/// Explains a Rhai error, using the run's abort reason for terminations.
pub(crate) fn explain(error: &EvalAltResult, abort: Option<Abort>, names: &SettingNames, limits: &Limits) -> Failure {
    let mut chain = Vec::new();
    let inner = unwrap_calls(error, &mut chain);
    let position = position_of(inner.position()).or_else(|| position_of(error.position()));
    let (kind, mut message) = match inner {
        EvalAltResult::ErrorTerminated(..) => match abort {
            Some(Abort::Guard(m)) => (RunErrorKind::Guard, m),
            Some(Abort::Policy(m)) => (RunErrorKind::Policy, m),
            Some(Abort::Budget(m)) => (RunErrorKind::Budget, m),
            Some(Abort::Stale(m)) => (RunErrorKind::Stale, m),
            Some(Abort::Params(m)) => (RunErrorKind::Params, m),
            Some(Abort::InvalidArgs(m)) => (RunErrorKind::InvalidArgs, m),
            Some(Abort::Audit(m)) => (RunErrorKind::Audit, m),
            Some(Abort::Diverged(m)) => (RunErrorKind::Diverged, m),
            Some(Abort::NeedsAttention(m)) => (RunErrorKind::NeedsAttention, m),
            Some(Abort::Journal(m)) => (RunErrorKind::Journal, m),
            Some(Abort::StoreUnavailable(m)) => (RunErrorKind::StoreUnavailable, m),
            Some(Abort::Fenced(m)) => (RunErrorKind::Fenced, m),
            Some(Abort::ProbeFailed(m)) => (RunErrorKind::Action, m),
            Some(Abort::Timeout(d)) => (
                RunErrorKind::Timeout,
                format!(
                    "the run was stopped after its timeout of {} (raise {})",
                    humantime::format_duration(d),
                    names.timeout
                ),
            ),
            Some(Abort::NotConfigured(m)) => (RunErrorKind::NotConfigured, m),
            Some(Abort::Cancelled) | None => (RunErrorKind::Cancelled, "the run was interrupted".to_owned()),
            Some(Abort::Interrupted) => (
                RunErrorKind::Cancelled,
                "the run was interrupted; the calls in flight finished and no new one was started".to_owned(),
            ),
        },
        EvalAltResult::ErrorRuntime(value, _) if value.is_map() => {
            let map = value.read_lock::<rhai::Map>().map(|m| m.clone()).unwrap_or_default();
            let field = |k: &str| map.get(k).filter(|v| !v.is_unit()).map(ToString::to_string);
            match (field("action"), field("message")) {
                (Some(action), Some(msg)) => (RunErrorKind::Action, format!("{action}: {}", unprefixed(&action, &msg))),
                _ => (RunErrorKind::Script, format!("script error: {value}")),
            }
        }
        EvalAltResult::ErrorRuntime(value, _) => (RunErrorKind::Script, format!("script error: {value}")),
        EvalAltResult::ErrorTooManyOperations(_) => (
            RunErrorKind::Script,
            format!(
                "the script was stopped after {} operations, the most one run may perform: does a loop never end? \
                 (to stop a long run sooner, set {})",
                thousands(limits.max_operations),
                names.timeout
            ),
        ),
        EvalAltResult::ErrorFunctionNotFound(signature, _) => (RunErrorKind::Script, function_not_found(signature)),
        EvalAltResult::ErrorMismatchDataType(expected, actual, _)
        | EvalAltResult::ErrorMismatchOutputType(expected, actual, _) => (
            RunErrorKind::Script,
            format!("expected {}, got {}", user_type(expected), user_type(actual)),
        ),
        EvalAltResult::ErrorFor(..) => (
            RunErrorKind::Script,
            "`for` loops over an array, a range or a string, and this value is none of them".to_owned(),
        ),
        other => {
            let text = strip_position(&other.to_string());
            (
                RunErrorKind::Script,
                unknown_property(&text).unwrap_or_else(|| user_words(&text)),
            )
        }
    };
    if !chain.is_empty() {
        message.push_str(&format!(" (in {})", chain.join(" ← ")));
    }
    Failure {
        kind,
        message: crate::secret::redact(&message).into_owned(),
        position,
    }
}

/// A provider's message that starts with the action's name again (`get_user: ...`) loses it:
/// the message already begins with the action.
fn unprefixed<'a>(action: &str, message: &'a str) -> &'a str {
    let short = action.rsplit(['.', ':']).next().unwrap_or(action);
    let scripted = action.replacen('.', "::", 1);
    [action, scripted.as_str(), short]
        .iter()
        .find_map(|name| message.strip_prefix(name).and_then(|rest| rest.strip_prefix(": ")))
        .unwrap_or(message)
}

/// `Function not found: to_lower (())` in the user's words.
fn function_not_found(signature: &str) -> String {
    let (name, args) = match signature.rsplit_once(" (") {
        Some((name, args)) => (name, args.strip_suffix(')').unwrap_or(args)),
        None => (signature, ""),
    };
    let types: Vec<&str> = if args.is_empty() {
        Vec::new()
    } else {
        args.split(", ").map(user_type).collect()
    };
    let operator = !name.chars().any(|c| c.is_alphanumeric() || c == '_');
    match types.first() {
        _ if name.contains("::") => format!("unknown function {name}"),
        _ if operator && types.len() == 2 => {
            format!(
                "`{name}` cannot be used on {} and {}",
                with_article(types[0]),
                with_article(types[1])
            )
        }
        None => format!("no function `{name}` takes no arguments"),
        Some(&"()") => format!(
            "`{name}` was called on (): the value is empty (()) — a field that is not there, or a variable never set, reads as ()"
        ),
        Some(_) => format!("no function `{name}` takes ({})", types.join(", ")),
    }
}

/// `Unknown property 'foo' - a getter is not registered for type '()'` in the user's words.
fn unknown_property(text: &str) -> Option<String> {
    let rest = text.strip_prefix("Unknown property '")?;
    let (property, rest) = rest.split_once('\'')?;
    let ty = rest.rsplit_once("type '")?.1.strip_suffix('\'')?;
    Some(match user_type(ty) {
        "()" => format!(
            "`.{property}` was read from (): the value is empty (()) — a field that is not there, or a variable never set, reads as ()"
        ),
        ty => format!("{} has no property `{property}`", with_article(ty)),
    })
}

fn with_article(ty: &str) -> String {
    match ty {
        "()" => "()".to_owned(),
        "int" | "array" => format!("an {ty}"),
        other => format!("a {other}"),
    }
}

/// A Rhai type name as scripts know it.
fn user_type(rhai: &str) -> &str {
    match rhai.trim() {
        "&str | ImmutableString | String" | "ImmutableString" | "String" | "&str" | "string" => "string",
        "i64" | "i32" | "INT" | "int" => "int",
        "f64" | "f32" | "FLOAT" | "float" => "float",
        "bool" => "bool",
        "char" => "char",
        "array" | "Array" | "rhai::Array" => "array",
        "map" | "Map" | "rhai::Map" => "map",
        "Fn" | "FnPtr" => "function",
        "()" => "()",
        other => other,
    }
}

/// Rhai's and Rust's spellings of types replaced by the words scripts use.
fn user_words(text: &str) -> String {
    let mut out = text
        .replace("&str | ImmutableString | String", "string")
        .replace("ImmutableString", "string");
    for (rust, ours) in [("i64", "int"), ("f64", "float")] {
        out = replace_word(&out, rust, ours);
    }
    out
}

fn replace_word(text: &str, word: &str, with: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(word) {
        let before = rest[..i].chars().next_back();
        let after = rest[i + word.len()..].chars().next();
        let is_word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        out.push_str(&rest[..i]);
        out.push_str(if is_word(before) || is_word(after) { word } else { with });
        rest = &rest[i + word.len()..];
    }
    out.push_str(rest);
    out
}

/// 500000000 → "500,000,000".
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn unwrap_calls<'a>(error: &'a EvalAltResult, chain: &mut Vec<String>) -> &'a EvalAltResult {
    match error {
        EvalAltResult::ErrorInFunctionCall(name, _, inner, pos) => {
            let at = position_of(*pos)
                .map(|(l, _)| format!(" called at line {l}"))
                .unwrap_or_default();
            let name = if name.starts_with("anon$") {
                "closure"
            } else {
                name.as_str()
            };
            chain.push(format!("{name}{at}"));
            unwrap_calls(inner, chain)
        }
        other => other,
    }
}

fn position_of(pos: Position) -> Option<(usize, usize)> {
    pos.line().map(|l| (l, pos.position().unwrap_or(1)))
}

/// Rhai appends ` (line L, position C)` to its messages; the run error carries the position itself.
fn strip_position(text: &str) -> String {
    match text.find(" (line ") {
        Some(i) => {
            let rest = &text[i..];
            let end = rest.find(')').map_or(text.len(), |j| i + j + 1);
            format!("{}{}", &text[..i], &text[end..])
        }
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rhai_signatures_become_the_users_words() {
        assert_eq!(
            function_not_found("to_lower (())"),
            "`to_lower` was called on (): the value is empty (()) — a field that is not there, or a variable never set, reads as ()"
        );
        assert_eq!(
            function_not_found("pad (&str | ImmutableString | String, i64)"),
            "no function `pad` takes (string, int)"
        );
        assert_eq!(
            user_words("Data type incorrect: i64 (expecting ImmutableString); xi64 stays"),
            "Data type incorrect: int (expecting string); xi64 stays"
        );
        assert_eq!(
            function_not_found("* (&str | ImmutableString | String, i64)"),
            "`*` cannot be used on a string and an int"
        );
        assert_eq!(
            unknown_property("Unknown property 'foo' - a getter is not registered for type 'i64'").unwrap(),
            "an int has no property `foo`"
        );
        assert!(
            unknown_property("Unknown property 'id' - a getter is not registered for type '()'")
                .unwrap()
                .starts_with("`.id` was read from (): the value is empty (())")
        );
        assert_eq!(thousands(500_000_000), "500,000,000");
        assert_eq!(thousands(999), "999");
    }

    #[test]
    fn the_action_is_named_once() {
        assert_eq!(unprefixed("privx.get_user", "get_user: no such user"), "no such user");
        assert_eq!(
            unprefixed("privx.get_user", "privx::get_user: no such user"),
            "no such user"
        );
        assert_eq!(unprefixed("privx.get_user", "no such user"), "no such user");
    }

    #[test]
    fn a_position_inside_a_message_is_removed() {
        assert_eq!(strip_position("Oops (line 3, position 9)"), "Oops");
        assert_eq!(strip_position("Oops (line 3, position 9) in f"), "Oops in f");
    }
}
