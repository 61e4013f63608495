//! `runbook`: run Rhai runbooks against identity and access services.
//!
//! This binary is only the command line: argument parsing, configuration, output and exit
//! codes. The engine is `runbook-core`; the providers are linked below.

mod cli;
mod commands;
mod config;
mod error;
mod local_runs;
mod logging;
mod output;
mod params;
mod simulate;

use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser};

// Linked explicitly so that their `inventory` registrations are kept.
use runbook_provider_cloudflare as _;
use runbook_provider_http as _;
use runbook_provider_privx as _;

use cli::{Cli, Command};
use commands::Overrides;
use config::Config;
use error::{CliError, exit};

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILED);
        }
    };
    let code = match runtime.block_on(async {
        let code = dispatch(cli).await;
        // Plugin processes are asked to finish before the program exits.
        runbook_plugin::shutdown_all().await;
        code
    }) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", runbook_core::redact(&e.message));
            e.code
        }
    };
    // A cancelled script's thread may still be unwinding; do not wait on it.
    runtime.shutdown_timeout(Duration::from_millis(200));
    ExitCode::from(code)
}

/// `run` and `plan`: with `--simulate`, against simulators started for this run only.
async fn run(cli: &Cli, args: &cli::RunArgs, plan: bool) -> Result<u8, CliError> {
    let config = Config::load(cli.config.as_deref())?;
    if let Some(run_id) = &args.resume {
        return commands::run::resume(args, run_id, plan, &config).await;
    }
    if !args.simulate {
        return commands::run::run(args, plan, &config, &Overrides::new()).await;
    }
    let simulation =
        simulate::Simulation::start(args.fixture.as_deref(), runbook_sim::SimOptions::default(), None, None).await?;
    let result = commands::run::run(args, plan, &config, &simulation.overrides()).await;
    simulation.shutdown().await;
    result
}

async fn dispatch(cli: Cli) -> Result<u8, CliError> {
    match &cli.command {
        Command::Completions(args) => {
            clap_complete::generate(args.shell, &mut Cli::command(), "runbook", &mut std::io::stdout());
            Ok(exit::OK)
        }
        Command::Run(args) => run(&cli, args, args.plan).await,
        Command::Plan(args) => run(&cli, args, true).await,
        Command::Apply(args) => commands::apply::apply(args, &Config::load(cli.config.as_deref())?).await,
        Command::Sim(args) => commands::sim::sim(args).await,
        Command::Init(args) => commands::init::init(args),
        Command::Serve(args) => commands::serve::serve(args, &Config::load(cli.config.as_deref())?).await,
        Command::Runs(command) => commands::serve::runs(command, &Config::load_lenient(cli.config.as_deref())?).await,
        Command::Token(command) => commands::serve::token(command),
        Command::Automations(command) => {
            commands::serve::automations(command, &Config::load_lenient(cli.config.as_deref())?).await
        }
        // These send nothing, so they need no secret: an unset `${VAR}` is fine here.
        Command::Check(args) => commands::check::check(args, &Config::load_lenient(cli.config.as_deref())?).await,
        Command::Actions(args) => commands::actions::actions(args, &Config::load_lenient(cli.config.as_deref())?).await,
    }
}
