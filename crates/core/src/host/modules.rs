//! The Rhai modules scripts call: one per provider (`cloudflare::list_users()`), `state::`, and
//! the global helpers (`parallel`, `invoke`, `now`, `parse_time`, `format_time`).
//!
//! Modules are built once per engine and shared by every run; the run a call belongs to is found
//! through the per-run Rhai engine's tag. Every function is registered volatile and impure so
//! that the optimizer never evaluates a call at compile time.

use std::any::TypeId;
use std::sync::Arc;

use rhai::{Dynamic, EvalAltResult, FuncRegistration, INT, Module, NativeCallContext, RhaiFunc, Shared};

use super::bind::{bind_args, bind_named};
use super::convert::dynamic_to_json;
use super::parallel::parallel;
use super::params::{PARAM, REQUIRED_PARAM};
use super::run::RunHandle;
use crate::pipeline::Abort;
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
                let json =
                    bind_args(provider.namespace(), &spec, args).map_err(|m| run.abort(Abort::InvalidArgs(m), pos))?;
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
    // The declarations `check` and `run` read (see params.rs); the doc and type arguments are
    // for them: values were checked against the declarations before the run started.
    FuncRegistration::new(PARAM)
        .with_volatility(true)
        .with_purity(false)
        .set_into_module(&mut module, |ctx: NativeCallContext, name: &str| {
            param(&ctx, name, None)
        });
    FuncRegistration::new(PARAM)
        .with_volatility(true)
        .with_purity(false)
        .set_into_module(&mut module, |ctx: NativeCallContext, name: &str, default: Dynamic| {
            param(&ctx, name, Some(default))
        });
    FuncRegistration::new(PARAM)
        .with_volatility(true)
        .with_purity(false)
        .set_into_module(
            &mut module,
            |ctx: NativeCallContext, name: &str, default: Dynamic, _doc: &str| param(&ctx, name, Some(default)),
        );
    FuncRegistration::new(REQUIRED_PARAM)
        .with_volatility(true)
        .with_purity(false)
        .set_into_module(&mut module, |ctx: NativeCallContext, name: &str, _ty: &str| {
            param(&ctx, name, None)
        });
    FuncRegistration::new(REQUIRED_PARAM)
        .with_volatility(true)
        .with_purity(false)
        .set_into_module(
            &mut module,
            |ctx: NativeCallContext, name: &str, _ty: &str, _doc: &str| param(&ctx, name, None),
        );
    FuncRegistration::new("now")
        .with_volatility(true)
        .with_purity(false)
        .set_into_module(
            &mut module,
            |ctx: NativeCallContext| -> Result<Dynamic, Box<EvalAltResult>> {
                match RunHandle::from_ctx(&ctx) {
                    Ok(run) => run.now(ctx.call_position()),
                    // Outside a run (a constant folded by a check): the clock.
                    Err(_) => Ok(Dynamic::from_int(jiff::Timestamp::now().as_second())),
                }
            },
        );
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
    FuncRegistration::new("format_time").set_into_module(
        &mut module,
        |ctx: NativeCallContext, seconds: INT| -> Result<String, Box<EvalAltResult>> {
            jiff::Timestamp::from_second(seconds)
                .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
                .map_err(|_| {
                    EvalAltResult::ErrorRuntime(
                        format!("format_time: {seconds} is not a time (seconds since 1970) that can be written").into(),
                        ctx.call_position(),
                    )
                    .into()
                })
        },
    );
    module.build_index();
    module
}

/// A parameter's value: the one given, else its default. Values were checked against the
/// script's declarations before the run started, so only a required parameter that is missing
/// can still fail here.
fn param(ctx: &NativeCallContext, name: &str, default: Option<Dynamic>) -> RhaiResult {
    let pos = ctx.call_position();
    let run = RunHandle::from_ctx(ctx)?;
    match (run.run.params.get(name).filter(|v| !v.is_null()), default) {
        (Some(value), _) => Ok(super::convert::json_to_dynamic(value.clone())),
        (None, Some(default)) => Ok(default),
        (None, None) => Err(run.abort(
            Abort::Params(format!(
                "missing required parameter `{name}`: set it with {}",
                run.pipeline().names().param(name)
            )),
            pos,
        )),
    }
}

/// `invoke("ns.action", #{...})`.
fn invoke(ctx: &NativeCallContext, name: &str, args: Option<&Dynamic>) -> RhaiResult {
    let pos = ctx.call_position();
    let run = RunHandle::from_ctx(ctx)?;
    let registry = run.run.registry.clone();
    let (entry, spec) = registry.lookup(name).map_err(|m| -> Box<EvalAltResult> {
        EvalAltResult::ErrorRuntime(format!("invoke: {m}").into(), pos).into()
    })?;
    let provider = match entry.provider() {
        Ok(p) => p.clone(),
        Err(config) => return Err(run.abort(Abort::NotConfigured(config.to_string()), pos)),
    };
    let spec = *spec;
    let json = bind_named(entry.namespace(), &spec, args).map_err(|m| run.abort(Abort::InvalidArgs(m), pos))?;
    run.invoke(&provider, &spec, json, pos)
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
