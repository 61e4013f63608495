//! The Rhai host: the sandbox, the modules, and turning Rhai's errors into run errors.

mod bind;
mod check;
mod convert;
mod modules;
mod parallel;
mod run;

use std::sync::Arc;

use rhai::packages::{Package, StandardPackage};
use rhai::{Dynamic, EvalAltResult, OptimizationLevel, Position, Scope, Shared};
use serde::Serialize;

pub use check::Diagnostic;
pub(crate) use convert::{dynamic_to_json, json_to_dynamic};
pub(crate) use modules::SharedModules;
pub(crate) use parallel::Slots;
pub(crate) use run::{RunHandle, RunState};

use crate::pipeline::Abort;
use crate::registry::Registry;
use crate::run::{RunErrorKind, SettingNames};

/// The sandbox's limits. The same values apply in debug and release builds (Rhai's own defaults
/// differ between the two).
#[derive(Debug, Clone, Copy, Serialize)]
#[non_exhaustive]
pub struct Limits {
    /// Operations one evaluation may perform (a backstop; the run's timeout is the usual bound).
    pub max_operations: u64,
    /// Nesting of function calls.
    pub max_call_levels: usize,
    /// Nesting of expressions at the top level.
    pub max_expr_depth: usize,
    /// Nesting of expressions inside functions.
    pub max_function_expr_depth: usize,
    /// Length of one string, in bytes.
    pub max_string_size: usize,
    /// Items in one array. Rhai counts nested arrays too, so this bounds a whole result.
    pub max_array_size: usize,
    /// Entries in one map. Rhai counts every map nested inside a value too: 100,000 users of a
    /// dozen fields each are 1.2 million entries, which must fit.
    pub max_map_size: usize,
    /// Variables in scope.
    pub max_variables: usize,
    /// Functions a script may define.
    pub max_functions: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_operations: 500_000_000,
            max_call_levels: 64,
            max_expr_depth: 64,
            max_function_expr_depth: 32,
            max_string_size: 16 * 1024 * 1024,
            max_array_size: 10_000_000,
            max_map_size: 50_000_000,
            max_variables: 100_000,
            max_functions: 10_000,
        }
    }
}

/// Everything shared by the runs of one engine: the standard library, the modules, the limits.
pub(crate) struct ScriptHost {
    std: Shared<rhai::Module>,
    modules: Arc<SharedModules>,
    limits: Limits,
}

/// The variables every script sees.
pub(crate) const SCRIPT_VARIABLES: [&str; 2] = ["params", "event"];

impl ScriptHost {
    pub fn new(registry: &Registry, limits: Limits) -> Self {
        ScriptHost {
            std: StandardPackage::new().as_shared_module(),
            modules: SharedModules::build(registry.providers()),
            limits,
        }
    }

    /// A fresh Rhai engine with the sandbox applied: cheap, one per run.
    pub fn engine(&self, run: Option<&RunHandle>) -> rhai::Engine {
        let mut engine = rhai::Engine::new_raw();
        engine.register_global_module(self.std.clone());
        engine.register_global_module(self.modules.helpers.clone());
        engine.register_static_module("state", self.modules.state.clone());
        for (ns, module) in &self.modules.providers {
            engine.register_static_module(ns.as_str(), module.clone());
        }
        let l = &self.limits;
        engine
            .set_max_operations(l.max_operations)
            .set_max_call_levels(l.max_call_levels)
            .set_max_expr_depths(l.max_expr_depth, l.max_function_expr_depth)
            .set_max_string_size(l.max_string_size)
            .set_max_array_size(l.max_array_size)
            .set_max_map_size(l.max_map_size)
            .set_max_variables(l.max_variables)
            .set_max_functions(l.max_functions)
            .set_max_modules(0)
            .set_strict_variables(true)
            .set_optimization_level(OptimizationLevel::Simple);
        engine.disable_symbol("eval");
        engine.disable_symbol("import");
        engine.disable_symbol("export");
        match run {
            Some(run) => {
                engine.set_default_tag(Dynamic::from(run.clone()));
                let printer = run.clone();
                engine.on_print(move |text| printer.pipeline().log("print", text));
                let debugger = run.clone();
                engine.on_debug(move |text, _source, pos| {
                    let line = match pos.line() {
                        Some(line) => format!("[line {line}] {text}"),
                        None => text.to_owned(),
                    };
                    debugger.pipeline().log("debug", &line);
                });
                let watcher = run.clone();
                engine.on_progress(move |_ops| watcher.pipeline().is_stopped().then_some(Dynamic::UNIT));
            }
            None => {
                engine.on_print(|_| {});
                engine.on_debug(|_, _, _| {});
            }
        }
        engine
    }

    /// Compiles a script as every run sees it (with `params` and `event` defined).
    pub fn compile(&self, source: &str) -> Result<rhai::AST, Diagnostic> {
        let engine = self.engine(None);
        let mut scope = Scope::new();
        for name in SCRIPT_VARIABLES {
            scope.push_dynamic(name, Dynamic::UNIT);
        }
        engine.compile_with_scope(&scope, source).map_err(|e| {
            let message = match e.err_type() {
                rhai::ParseErrorType::ModuleUndefined(name) => {
                    let mut known: Vec<&str> = self.modules.providers.iter().map(|(ns, _)| ns.as_str()).collect();
                    known.push("state");
                    format!("unknown namespace `{name}`; known namespaces: {}", known.join(", "))
                }
                other => other.to_string(),
            };
            Diagnostic::at(e.position(), message)
        })
    }

    /// Compiles and checks every action call.
    pub fn check(&self, source: &str, registry: &Registry) -> Vec<Diagnostic> {
        match self.compile(source) {
            Err(d) => vec![d],
            Ok(ast) => check::check_calls(&ast, registry),
        }
    }
}

/// A failed evaluation, explained.
pub(crate) struct Failure {
    pub kind: RunErrorKind,
    pub message: String,
    pub position: Option<(usize, usize)>,
}

/// Explains a Rhai error, using the run's abort reason for terminations.
pub(crate) fn explain(error: &EvalAltResult, abort: Option<Abort>, names: &SettingNames) -> Failure {
    let mut chain = Vec::new();
    let inner = unwrap_calls(error, &mut chain);
    let position = position_of(inner.position()).or_else(|| position_of(error.position()));
    let (kind, mut message) = match inner {
        EvalAltResult::ErrorTerminated(..) => match abort {
            Some(Abort::Guard(m)) => (RunErrorKind::Guard, m),
            Some(Abort::Params(m)) => (RunErrorKind::Params, m),
            Some(Abort::InvalidArgs(m)) => (RunErrorKind::InvalidArgs, m),
            Some(Abort::Audit(m)) => (RunErrorKind::Audit, m),
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
        },
        EvalAltResult::ErrorRuntime(value, _) if value.is_map() => {
            let map = value.read_lock::<rhai::Map>().map(|m| m.clone()).unwrap_or_default();
            let field = |k: &str| map.get(k).filter(|v| !v.is_unit()).map(ToString::to_string);
            match (field("action"), field("message")) {
                (Some(action), Some(msg)) => (RunErrorKind::Action, format!("{action}: {msg}")),
                _ => (RunErrorKind::Script, format!("script error: {value}")),
            }
        }
        EvalAltResult::ErrorRuntime(value, _) => (RunErrorKind::Script, format!("script error: {value}")),
        other => (RunErrorKind::Script, strip_position(&other.to_string())),
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
    match text.rfind(" (line ") {
        Some(i) if text.ends_with(')') => text[..i].to_owned(),
        _ => text.to_owned(),
    }
}
