//! `tickets-runbook SCRIPT [--plan]`: a program of your own that embeds the runbook engine.
//!
//! It links the `tickets` provider (its `inventory` registration comes with it), builds an
//! engine from every registered provider configured from the environment, runs the script and
//! prints the outcome as JSON.

use std::process::ExitCode;

use runbook_core::{Engine, RunErrorKind, RunOptions};
use runbook_example_tickets as _;

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: tickets-runbook SCRIPT [--plan]");
        return ExitCode::from(2);
    };
    let plan = args.any(|a| a == "--plan");
    let source = match std::fs::read_to_string(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot read {path}: {e}");
            return ExitCode::from(2);
        }
    };
    let engine = match Engine::builder().registered_from_env().build() {
        Ok(engine) => engine,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match engine.run(&source, RunOptions::new().plan(plan)).await {
        Ok(outcome) => {
            let doc = serde_json::json!({
                "run_id": outcome.run_id,
                "result": outcome.result,
                "planned_changes": outcome.records.planned_changes,
                "calls": outcome.records.calls,
            });
            println!("{doc}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", e.describe());
            // This program's own exit codes: 2 for a script that cannot run as written, 1 for
            // everything else.
            let usage = matches!(
                e.kind,
                RunErrorKind::Compile | RunErrorKind::InvalidArgs | RunErrorKind::Params | RunErrorKind::NotConfigured
            );
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}
