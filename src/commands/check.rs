//! `runbook check`: compile each script and check its action calls; run nothing.

use crate::cli::CheckArgs;
use crate::commands::build_checker;
use crate::config::Config;
use crate::error::{CliError, exit};

/// Checks every script; exit 2 when any has a problem.
pub fn check(args: &CheckArgs, config: &Config) -> Result<u8, CliError> {
    // The configuration is read (so that a broken file is reported) but not needed: checking
    // sends nothing.
    let _ = config;
    let engine = build_checker()?;
    let mut failed = false;
    for script in &args.scripts {
        let shown = script.display();
        let source = std::fs::read_to_string(script)
            .map_err(|e| CliError::usage(format!("cannot read the script {shown}: {e}")))?;
        let problems = engine.check(&source);
        if problems.is_empty() {
            println!("{shown}: ok");
            continue;
        }
        failed = true;
        for p in problems {
            match (p.line, p.column) {
                (Some(l), Some(c)) => eprintln!("error: {shown}:{l}:{c}: {}", p.message),
                (Some(l), None) => eprintln!("error: {shown}:{l}: {}", p.message),
                _ => eprintln!("error: {shown}: {}", p.message),
            }
        }
    }
    Ok(if failed { exit::USAGE } else { exit::OK })
}
