//! The Rhai host: the sandbox, the modules, and turning Rhai's errors into run errors.

mod bind;
mod check;
mod convert;
mod explain;
mod literal_args;
mod loops;
mod modules;
mod parallel;
mod params;
mod records;
mod run;

use std::sync::Arc;

use rhai::packages::{Package, StandardPackage};
use rhai::{Dynamic, OptimizationLevel, Scope, Shared};
use serde::Serialize;

pub use check::Diagnostic;
pub(crate) use convert::{dynamic_to_json, json_to_dynamic};
pub(crate) use explain::explain;
pub(crate) use modules::SharedModules;
pub(crate) use parallel::Slots;
pub use params::{ScriptParam, ScriptParamType};
pub(crate) use run::{RunHandle, RunState};

use crate::registry::Registry;
use crate::run::SettingNames;

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
    records: Arc<records::KnownRecords>,
    limits: Limits,
}

/// The variables every script sees.
pub(crate) const SCRIPT_VARIABLES: [&str; 2] = ["params", "event"];

impl ScriptHost {
    pub fn new(registry: &Registry, limits: Limits) -> Self {
        ScriptHost {
            std: StandardPackage::new().as_shared_module(),
            modules: SharedModules::build(registry.providers()),
            records: records::KnownRecords::new(registry),
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
        self.records.install(&mut engine, run.map(|r| &*r.run.ast));
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
                    let hint = crate::registry::closest(name, known.iter().copied())
                        .map(|c| format!(" (did you mean `{c}`?)"))
                        .unwrap_or_default();
                    format!(
                        "unknown namespace `{name}`{hint}; known namespaces: {}",
                        known.join(", ")
                    )
                }
                rhai::ParseErrorType::VariableUndefined(name) => {
                    format!("unknown variable `{name}`: give it a value with `let {name} = ...` before it is used")
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
            Ok(ast) => check::check_script(&ast, registry),
        }
    }

    /// The parameters a script declares, or why they cannot be read.
    pub fn params(&self, source: &str) -> Result<Vec<ScriptParam>, Vec<Diagnostic>> {
        let ast = self.compile(source).map_err(|d| vec![d])?;
        let declared = params::declared(&ast);
        if declared.problems.is_empty() {
            Ok(declared.params)
        } else {
            Err(declared.problems)
        }
    }

    /// Everything a run checks before it starts: the script (as [`ScriptHost::check`]), then the
    /// values given for its parameters against its declarations. The compiled script when sound.
    pub fn check_run(
        &self,
        source: &str,
        registry: &Registry,
        given: &serde_json::Map<String, serde_json::Value>,
        names: &SettingNames,
    ) -> Result<rhai::AST, Refusal> {
        let ast = self.compile(source).map_err(|d| Refusal::Script(vec![d]))?;
        let problems = check::check_script(&ast, registry);
        if !problems.is_empty() {
            return Err(Refusal::Script(problems));
        }
        let problems = params::validate(&params::declared(&ast), given, &|name| names.param(name));
        if !problems.is_empty() {
            return Err(Refusal::Params(problems));
        }
        Ok(ast)
    }

    /// The values given for a script's parameters as its declarations take them (a text
    /// parameter given `12345` gets the text).
    pub fn params_as_declared(&self, ast: &rhai::AST, given: &mut serde_json::Map<String, serde_json::Value>) {
        params::as_declared(&params::declared(ast), given);
    }

    /// The sandbox's limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }
}

/// Why a run was refused before it started.
pub(crate) enum Refusal {
    /// The script has problems `check` finds.
    Script(Vec<Diagnostic>),
    /// The values given for its parameters do not fit its declarations.
    Params(Vec<String>),
}
