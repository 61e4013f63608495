//! The Rhai modules scripts call: one per provider (`cloudflare::list_users()`), `state::`, and
//! the global helpers (`parallel`, `invoke`, `now`, `parse_time`).
//!
//! Modules are built once per engine and shared by every run; the run a call belongs to is found
//! through the per-run Rhai engine's tag. Every function is registered volatile and impure so
//! that the optimizer never evaluates a call at compile time.

use std::any::TypeId;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use rhai::{
    Array, Dynamic, EvalAltResult, FnPtr, FuncRegistration, INT, Module, NativeCallContext, Position, RhaiFunc, Shared,
};

use super::bind::{bind_args, bind_named};
use super::convert::dynamic_to_json;
use super::run_state::{Abort, RunHandle, action_error};
use crate::action::ActionSpec;
use crate::error::ActionError;
use crate::registry::RegisteredProvider;

type RhaiResult = Result<Dynamic, Box<EvalAltResult>>;

/// Builds the module for one provider: every action, with an overload per accepted arity.
pub(crate) fn provider_module(entry: &RegisteredProvider) -> Module {
    let mut module = Module::new();
    for spec in entry.actions() {
        let spec = *spec;
        let target = match entry.provider() {
            Ok(p) => Ok(p.clone()),
            Err(e) => Err(e.to_string()),
        };
        for arity in spec.arities() {
            let target = target.clone();
            let func = move |ctx: Option<NativeCallContext>, args: &mut [&mut Dynamic]| -> RhaiResult {
                let Some(ctx) = ctx else {
                    return Err("an action needs a call context".into());
                };
                let pos = ctx.call_position();
                let run = RunHandle::from_ctx(&ctx)?;
                let provider = match &target {
                    Ok(p) => p,
                    Err(config) => return Err(run.abort(Abort::NotConfigured(config.clone()), pos)),
                };
                let values: Vec<Dynamic> = args.iter().map(|a| (**a).clone()).collect();
                let json = bind_args(&spec, &values).map_err(|m| invalid_args(provider.namespace(), &spec, m, pos))?;
                run.invoke(provider, &spec, json, pos)
            };
            FuncRegistration::new(spec.name).set_into_module_raw(
                &mut module,
                vec![TypeId::of::<Dynamic>(); arity],
                RhaiFunc::Pure {
                    func: Shared::new(func),
                    has_context: true,
                    is_pure: false,
                    is_volatile: true,
                },
            );
        }
    }
    module.build_index();
    module
}

fn invalid_args(namespace: &str, spec: &ActionSpec, message: String, pos: Position) -> Box<EvalAltResult> {
    action_error(
        &format!("{namespace}.{}", spec.name),
        &ActionError::invalid_args(message),
        pos,
    )
}

/// `state::get(key)` and `state::set(key, value)`.
pub(crate) fn state_module() -> Module {
    let mut module = Module::new();
    FuncRegistration::new("get")
        .with_volatility(true)
        .with_purity(false)
        .set_into_module(&mut module, |ctx: NativeCallContext, key: &str| -> RhaiResult {
            RunHandle::from_ctx(&ctx)?.state_get(key, ctx.call_position())
        });
    FuncRegistration::new("set")
        .with_volatility(true)
        .with_purity(false)
        .set_into_module(
            &mut module,
            |ctx: NativeCallContext, key: &str, value: Dynamic| -> RhaiResult {
                let pos = ctx.call_position();
                let json = dynamic_to_json(&value).map_err(|e| -> Box<EvalAltResult> {
                    EvalAltResult::ErrorRuntime(format!("state::set(\"{key}\"): {e}").into(), pos).into()
                })?;
                RunHandle::from_ctx(&ctx)?.state_set(key, json, pos)?;
                Ok(Dynamic::UNIT)
            },
        );
    module.build_index();
    module
}

/// The global helpers.
pub(crate) fn helpers_module() -> Module {
    let mut module = Module::new();
    FuncRegistration::new("parallel")
        .with_volatility(true)
        .with_purity(false)
        .set_into_module(&mut module, parallel);
    // Rhai reserves `call` for function pointers, so the generic entry point is `invoke`.
    FuncRegistration::new("invoke")
        .with_volatility(true)
        .with_purity(false)
        .set_into_module(&mut module, |ctx: NativeCallContext, name: &str| {
            invoke(&ctx, name, None)
        });
    FuncRegistration::new("invoke")
        .with_volatility(true)
        .with_purity(false)
        .set_into_module(&mut module, |ctx: NativeCallContext, name: &str, args: Dynamic| {
            invoke(&ctx, name, Some(&args))
        });
    FuncRegistration::new("param")
        .with_volatility(true)
        .with_purity(false)
        .set_into_module(&mut module, |ctx: NativeCallContext, name: &str| {
            param(&ctx, name, None)
        });
    FuncRegistration::new("param")
        .with_volatility(true)
        .with_purity(false)
        .set_into_module(&mut module, |ctx: NativeCallContext, name: &str, default: Dynamic| {
            param(&ctx, name, Some(default))
        });
    FuncRegistration::new("now")
        .with_volatility(true)
        .with_purity(false)
        .set_into_module(&mut module, || -> INT { jiff::Timestamp::now().as_second() });
    FuncRegistration::new("parse_time")
        .with_volatility(true)
        .with_purity(false)
        .set_into_module(
            &mut module,
            |ctx: NativeCallContext, text: &str| -> Result<INT, Box<EvalAltResult>> {
                text.trim()
                    .parse::<jiff::Timestamp>()
                    .map(|t| t.as_second())
                    .map_err(|_| {
                        EvalAltResult::ErrorRuntime(
                            format!("parse_time: \"{text}\" is not an RFC 3339 time such as \"2026-11-21T10:00:00Z\"")
                                .into(),
                            ctx.call_position(),
                        )
                        .into()
                    })
            },
        );
    module.build_index();
    module
}

/// `param(name)`: a required parameter; `param(name, default)`: an optional one whose value must
/// have the default's type. A missing or mistyped parameter ends the run as a usage error (exit 2)
/// naming it, before the script goes on with a wrong value.
fn param(ctx: &NativeCallContext, name: &str, default: Option<Dynamic>) -> RhaiResult {
    let pos = ctx.call_position();
    let run = RunHandle::from_ctx(ctx)?;
    let given = run.0.params.get(name).filter(|v| !v.is_null()).cloned();
    match (given, default) {
        (None, None) => Err(run.abort(
            Abort::Params(format!(
                "missing required parameter `{name}`: pass --param {name}=VALUE"
            )),
            pos,
        )),
        (None, Some(default)) => Ok(default),
        (Some(value), default) => {
            let value = super::convert::json_to_dynamic(value);
            if let Some(default) = default.filter(|d| !d.is_unit()) {
                let numeric = |d: &Dynamic| d.is_int() || d.is_float();
                let fits = value.type_id() == default.type_id() || (numeric(&value) && numeric(&default));
                if !fits {
                    return Err(run.abort(
                        Abort::Params(format!(
                            "parameter `{name}` must be {} like its default {default}, got {} {value}",
                            default.type_name(),
                            value.type_name()
                        )),
                        pos,
                    ));
                }
            }
            Ok(value)
        }
    }
}

/// `invoke("ns.action", #{...})`.
fn invoke(ctx: &NativeCallContext, name: &str, args: Option<&Dynamic>) -> RhaiResult {
    let pos = ctx.call_position();
    let run = RunHandle::from_ctx(ctx)?;
    let registry = run.0.registry.clone();
    let (entry, spec) = registry.lookup(name).map_err(|m| -> Box<EvalAltResult> {
        EvalAltResult::ErrorRuntime(format!("invoke: {m}").into(), pos).into()
    })?;
    let provider = match entry.provider() {
        Ok(p) => p.clone(),
        Err(config) => return Err(run.abort(Abort::NotConfigured(config.to_string()), pos)),
    };
    let spec = *spec;
    let json = bind_named(&spec, args).map_err(|m| invalid_args(entry.namespace(), &spec, m, pos))?;
    run.invoke(&provider, &spec, json, pos)
}

/// `parallel(items, |item| ...)`: the closure runs on up to `concurrency` threads at once, each
/// with the run's compiled script (so captured values and script functions work); results come
/// back in input order. The first failing item stops the others from starting and fails the call
/// with its index.
fn parallel(ctx: NativeCallContext, items: Array, f: FnPtr) -> Result<Array, Box<EvalAltResult>> {
    let pos = ctx.call_position();
    let run = RunHandle::from_ctx(&ctx)?;
    let total = items.len();
    if total == 0 {
        return Ok(Array::new());
    }
    let engine = ctx.engine();
    let ast = run.0.ast.clone();
    let workers = run.0.concurrency.min(total);
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let observer = run.0.observer.clone();
    if let Some(o) = &observer {
        o.parallel_started(total);
    }
    let results: Vec<std::sync::Mutex<Option<RhaiResult>>> = (0..total).map(|_| std::sync::Mutex::new(None)).collect();

    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                super::local_io::with_local_io(|| {
                    loop {
                        if failed.load(Ordering::Relaxed) {
                            break;
                        }
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= total {
                            break;
                        }
                        let outcome = f.call::<Dynamic>(engine, &ast, (items[i].clone(),));
                        if outcome.is_err() {
                            failed.store(true, Ordering::Relaxed);
                        }
                        if let Some(o) = &observer {
                            o.parallel_item_done();
                        }
                        *results[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(outcome);
                    }
                })
            });
        }
    });
    if let Some(o) = &observer {
        o.parallel_finished();
    }

    let mut out = Array::with_capacity(total);
    let mut first_error: Option<(usize, Box<EvalAltResult>)> = None;
    for (i, slot) in results.into_iter().enumerate() {
        match slot.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(Ok(v)) => out.push(v),
            Some(Err(e)) => {
                // A guard refusal, timeout or interrupt wins over an ordinary failure.
                let replace = match &first_error {
                    None => true,
                    Some((_, prev)) => !is_abort(prev) && is_abort(&e),
                };
                if replace {
                    first_error = Some((i, e));
                }
            }
            None => {}
        }
    }
    match first_error {
        None => Ok(out),
        Some((i, e)) => Err(item_error(i, e, pos)),
    }
}

fn is_abort(e: &EvalAltResult) -> bool {
    matches!(innermost(e), EvalAltResult::ErrorTerminated(..))
}

fn innermost(e: &EvalAltResult) -> &EvalAltResult {
    match e {
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _) => innermost(inner),
        other => other,
    }
}

/// Names the failing item: an action's error map keeps its fields (still catchable) with the
/// index added; any other error becomes a message naming the index.
fn item_error(index: usize, error: Box<EvalAltResult>, pos: Position) -> Box<EvalAltResult> {
    let inner = innermost(&error);
    match inner {
        EvalAltResult::ErrorTerminated(..) => error,
        EvalAltResult::ErrorRuntime(value, inner_pos) if value.is_map() => {
            let mut map = value.read_lock::<rhai::Map>().map(|m| m.clone()).unwrap_or_default();
            let message = map.get("message").map(ToString::to_string).unwrap_or_default();
            map.insert(
                "message".into(),
                Dynamic::from(format!("parallel item {index}: {message}")),
            );
            map.insert("index".into(), Dynamic::from_int(index as INT));
            let at = if inner_pos.is_none() { pos } else { *inner_pos };
            EvalAltResult::ErrorRuntime(Dynamic::from_map(map), at).into()
        }
        other => {
            let at = if other.position().is_none() {
                pos
            } else {
                other.position()
            };
            let text = match other {
                EvalAltResult::ErrorRuntime(value, _) => value.to_string(),
                _ => other.to_string(),
            };
            EvalAltResult::ErrorRuntime(format!("parallel item {index}: {text}").into(), at).into()
        }
    }
}

/// All modules of an engine, built once.
pub(crate) struct SharedModules {
    pub helpers: Shared<Module>,
    pub state: Shared<Module>,
    pub providers: Vec<(String, Shared<Module>)>,
}

impl SharedModules {
    pub fn build(entries: &[RegisteredProvider]) -> Arc<Self> {
        Arc::new(SharedModules {
            helpers: Shared::new(helpers_module()),
            state: Shared::new(state_module()),
            providers: entries
                .iter()
                .map(|e| (e.namespace().to_owned(), Shared::new(provider_module(e))))
                .collect(),
        })
    }
}
