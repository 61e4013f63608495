//! The engine: providers plus the script host, and running a script.

use std::sync::Arc;

use rhai::{Dynamic, Scope};
use serde_json::{Map, Value};

use crate::config::ProviderConfig;
use crate::error::ConfigError;
use crate::host::{
    Diagnostic, Limits, Refusal, RunState, ScriptHost, ScriptParam, Slots, dynamic_to_json, explain, json_to_dynamic,
};
use crate::lane::Lanes;
use crate::pipeline::{Abort, Durable, Pipeline, PipelineSetup};
use crate::provider::{Provider, ProviderDescriptor};
use crate::registry::{EngineError, RegisteredProvider, Registry};
use crate::run::{RunError, RunErrorKind, RunOptions, RunOutcome, RunRecords, SettingNames};
use crate::state::MemoryState;

/// Builds an [`Engine`].
#[derive(Default)]
pub struct EngineBuilder {
    providers: Vec<RegisteredProvider>,
    limits: Limits,
}

impl std::fmt::Debug for EngineBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineBuilder")
            .field("providers", &self.providers)
            .finish_non_exhaustive()
    }
}

impl EngineBuilder {
    /// Adds a provider built by the embedder.
    pub fn provider(mut self, provider: Arc<dyn Provider>) -> Self {
        self.providers.push(RegisteredProvider::ready("", provider));
        self
    }

    /// Adds a provider built by the embedder, with one line about its service (shown by the
    /// action reference).
    pub fn provider_with_summary(mut self, summary: &str, provider: Arc<dyn Provider>) -> Self {
        self.providers.push(RegisteredProvider::ready(summary, provider));
        self
    }

    /// Adds a registered provider, built from `config`. A provider that fails to build (missing
    /// settings) is still known to the engine — `check` sees its actions — and every call to it
    /// fails with the build error.
    pub fn descriptor(mut self, descriptor: &ProviderDescriptor, config: &ProviderConfig) -> Self {
        let entry = match (descriptor.build)(config) {
            Ok(provider) => RegisteredProvider::ready(descriptor.summary, provider),
            Err(error) => {
                RegisteredProvider::unconfigured(descriptor.namespace, descriptor.summary, descriptor.actions, error)
            }
        };
        self.providers.push(entry);
        self
    }

    /// Adds a registered provider built from `config`, failing when it cannot be built (an
    /// explicit configuration that is wrong should stop the program, not wait for a call).
    pub fn try_descriptor(
        mut self,
        descriptor: &ProviderDescriptor,
        config: &ProviderConfig,
    ) -> Result<Self, ConfigError> {
        let provider = (descriptor.build)(config)?;
        self.providers
            .push(RegisteredProvider::ready(descriptor.summary, provider));
        Ok(self)
    }

    /// Adds a registered provider that is known but not configured: calls fail with `error`.
    pub fn unconfigured(mut self, descriptor: &ProviderDescriptor, error: ConfigError) -> Self {
        self.providers.push(RegisteredProvider::unconfigured(
            descriptor.namespace,
            descriptor.summary,
            descriptor.actions,
            error,
        ));
        self
    }

    /// Adds a registered provider by its specs alone, without building it: for commands that
    /// send nothing (`check`, the action reference), which then need no settings or secrets.
    /// Every call to it fails.
    pub fn described(mut self, descriptor: &ProviderDescriptor) -> Self {
        self.providers.push(RegisteredProvider::unconfigured(
            descriptor.namespace,
            descriptor.summary,
            descriptor.actions,
            ConfigError::NotBuilt {
                provider: descriptor.namespace.to_owned(),
            },
        ));
        self
    }

    /// Adds every provider linked into the program (collected with `inventory`), each configured
    /// from its environment variables.
    pub fn registered_from_env(mut self) -> Self {
        for descriptor in crate::provider::registered_providers() {
            self = self.descriptor(descriptor, &ProviderConfig::from_env(descriptor.namespace));
        }
        self
    }

    /// Sets the sandbox's limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Builds the engine: fails when two providers claim one namespace.
    pub fn build(self) -> Result<Engine, EngineError> {
        let registry = Arc::new(Registry::new(self.providers)?);
        let host = Arc::new(ScriptHost::new(&registry, self.limits));
        Ok(Engine {
            registry,
            host,
            lanes: Arc::new(Lanes::default()),
        })
    }
}

/// Runs scripts against a set of providers. Cheap to share: clone it or put it in an `Arc`.
#[derive(Clone)]
pub struct Engine {
    registry: Arc<Registry>,
    host: Arc<ScriptHost>,
    /// Script threads' lanes, kept for every later run.
    lanes: Arc<Lanes>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Starts building an engine.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// The providers this engine serves.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Compiles `source` and checks every action call (namespace, action, arity) without
    /// running anything. An empty list means the script is sound.
    pub fn check(&self, source: &str) -> Vec<Diagnostic> {
        self.host.check(source, &self.registry)
    }

    /// The parameters `source` declares (`param("threshold", 3, "doc")`,
    /// `required_param("allowed", "array", "doc")`), read without running it; or why the script
    /// cannot be read.
    pub fn params(&self, source: &str) -> Result<Vec<ScriptParam>, Vec<Diagnostic>> {
        self.host.params(source)
    }

    /// Everything [`Engine::run`] checks before it starts, every problem listed: the checks of
    /// [`Engine::check`], then `params` against the script's declarations (a type that does not
    /// fit, an unknown name, a required one missing). `names` says how the caller passes a
    /// parameter. An empty list means the run would start.
    pub fn check_run(&self, source: &str, params: &Map<String, Value>, names: &SettingNames) -> Vec<Diagnostic> {
        match self.host.check_run(source, &self.registry, params, names) {
            Ok(_) => Vec::new(),
            Err(Refusal::Script(problems)) => problems,
            Err(Refusal::Params(problems)) => problems.into_iter().map(Diagnostic::unplaced).collect(),
        }
    }

    /// Runs a script. Every check of [`Engine::check_run`] runs first: a script that fails one
    /// is refused before anything is sent. Must be called within a Tokio runtime: the script runs on a blocking
    /// thread, and every action call on this runtime. Dropping the returned future stops the
    /// run: the script ends at its next step and calls in flight are abandoned.
    pub async fn run(&self, source: &str, mut options: RunOptions) -> Result<RunOutcome, RunError> {
        let run_id = options
            .run_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let ast = match self
            .host
            .check_run(source, &self.registry, &options.params, &options.names)
        {
            Ok(ast) => {
                self.host.params_as_declared(&ast, &mut options.params);
                Arc::new(ast)
            }
            Err(refusal) => {
                let (kind, first, more) = match refusal {
                    Refusal::Script(problems) => {
                        let more = problems.len() - 1;
                        let first = problems
                            .into_iter()
                            .next()
                            .map(|d| (d.message, d.line.map(|l| (l, d.column.unwrap_or(1)))));
                        (RunErrorKind::Compile, first, more)
                    }
                    Refusal::Params(problems) => {
                        let more = problems.len() - 1;
                        (
                            RunErrorKind::Params,
                            problems.into_iter().next().map(|m| (m, None)),
                            more,
                        )
                    }
                };
                let (mut message, position) = first.unwrap_or_default();
                if more > 0 {
                    message.push_str(&format!(
                        " (and {more} more problem{})",
                        if more == 1 { "" } else { "s" }
                    ));
                }
                return Err(RunError {
                    run_id,
                    kind,
                    message,
                    position,
                    records: RunRecords::default(),
                });
            }
        };
        // A durable run reads what earlier attempts recorded before it takes a step.
        let durable = match &options.journal {
            Some(journal) => {
                match Durable::open(journal.clone(), options.journal_limits, options.fence.clone()).await {
                    Ok(durable) => Some(durable),
                    Err(error) => {
                        return Err(RunError {
                            run_id,
                            kind: match error {
                                crate::journal::JournalError::Unavailable(_) => RunErrorKind::StoreUnavailable,
                                _ => RunErrorKind::Journal,
                            },
                            message: format!("{error}; nothing was sent"),
                            position: None,
                            records: RunRecords::default(),
                        });
                    }
                }
            }
            None => None,
        };
        let pipeline = Pipeline::new(PipelineSetup {
            run_id: run_id.clone(),
            plan: options.plan,
            max_changes: options.max_changes,
            concurrency: options.concurrency,
            names: options.names.clone(),
            cancel: options.cancel.clone(),
            sink: options.audit.clone(),
            state: options.state.clone().unwrap_or_else(|| Arc::new(MemoryState::new())),
            durable,
            fence: options.fence.clone(),
            expect: options.expect.clone(),
            policy: options.policy.clone(),
            budgets: options.budgets.clone(),
        });
        let lanes = self.lanes.clone();
        let run = Arc::new(RunState {
            pipeline,
            registry: self.registry.clone(),
            ast,
            observer: options.observer.clone(),
            params: Value::Object(options.params.clone()),
            slots: Slots::new(options.concurrency.max(1) - 1),
            lanes,
            engine: tokio::runtime::Handle::current(),
            host: self.host.clone(),
        });
        // Until the run is over, dropping this future cancels it.
        let on_drop = run.pipeline.cancel_token().clone().drop_guard();

        let timer = options.timeout.map(|limit| {
            let run = run.clone();
            tokio::spawn(async move {
                tokio::select! {
                    () = tokio::time::sleep(limit) => run.pipeline.stop(Abort::Timeout(limit)),
                    // A dropped run: nothing left to time.
                    () = run.pipeline.cancel_token().cancelled() => {}
                }
            })
        });

        let interrupter = options.interrupt.clone().map(|interrupt| {
            let run = run.clone();
            tokio::spawn(async move {
                tokio::select! {
                    () = interrupt.cancelled() => run.pipeline.stop(Abort::Interrupted),
                    () = run.pipeline.cancel_token().cancelled() => {}
                }
            })
        });

        let worker_run = run.clone();
        let params = Value::Object(options.params);
        let event = options.event;
        let evaluated = tokio::task::spawn_blocking(move || {
            let here = worker_run.on_this_thread();
            let engine = worker_run.host.engine(Some(&here));
            let mut scope = Scope::new();
            scope.push_dynamic("params", json_to_dynamic(params));
            scope.push_dynamic("event", event.map(json_to_dynamic).unwrap_or(Dynamic::UNIT));
            engine.eval_ast_with_scope::<Dynamic>(&mut scope, &worker_run.ast)
        })
        .await;
        on_drop.disarm();
        if let Some(timer) = timer {
            timer.abort();
        }
        if let Some(interrupter) = interrupter {
            interrupter.abort();
        }

        let pipeline = &run.pipeline;
        pipeline.flush_journal().await;
        let records = pipeline.take_records();
        let value = match evaluated {
            Err(join) => Err((
                RunErrorKind::Script,
                format!("the script's thread failed: {join}"),
                None,
            )),
            Ok(Err(error)) => {
                let failure = explain(&error, pipeline.abort_reason(), pipeline.names(), run.host.limits());
                Err((failure.kind, failure.message, failure.position))
            }
            Ok(Ok(value)) => dynamic_to_json(&value).map_err(|e| {
                (
                    RunErrorKind::Script,
                    format!("the script's result cannot be reported: {e}"),
                    None,
                )
            }),
        };
        // A resumed run that ended without reaching every step its journal recorded took
        // another way than the attempt before it.
        let value = match value {
            Ok(result) => match run.pipeline.unreached_steps().first() {
                None => match run.pipeline.plan_refusal() {
                    None => Ok(result),
                    Some((kind, message)) => Err((kind, message, None)),
                },
                Some(missed) => Err((
                    RunErrorKind::Diverged,
                    format!(
                        "the run diverged from its journal: it ended without reaching {} (and {} more recorded step(s) \
                         after it), which an earlier attempt took",
                        missed.describe(),
                        run.pipeline.unreached_steps().len() - 1
                    ),
                    None,
                )),
            },
            Err(e) => Err(e),
        };
        match value {
            Ok(result) => Ok(RunOutcome {
                run_id,
                result,
                records,
            }),
            Err((kind, message, position)) => Err(RunError {
                run_id,
                kind,
                message,
                position,
                records,
            }),
        }
    }
}
