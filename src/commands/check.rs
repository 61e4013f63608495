//! `runbook check`: compile each script and check its action calls; run nothing. With
//! `--params`, list the parameters each script declares instead.

use std::path::Path;

use runbook_core::{Diagnostic, Engine, ScriptParam};
use serde_json::{Map, Value};

use crate::cli::{CheckArgs, OutputFormat};
use crate::commands::build_checker;
use crate::config::Config;
use crate::error::{CliError, exit};

/// Checks every script (or lists its params); exit 2 when any has a problem.
pub async fn check(args: &CheckArgs, config: &Config) -> Result<u8, CliError> {
    // The configuration is read (so that a broken file is reported) but not needed: checking
    // sends nothing (plugins are started for their `describe` alone).
    let engine = build_checker(config).await?;
    if args.params {
        return list_params(args, &engine);
    }
    let mut failed = false;
    for script in &args.scripts {
        let source = read_script(script)?;
        let problems = engine.check(&source);
        if problems.is_empty() {
            println!("{}: ok", script.display());
        } else {
            failed = true;
            print_problems(script, &problems);
        }
    }
    Ok(if failed { exit::USAGE } else { exit::OK })
}

/// Prints a script's problems on stderr, one a line: `error: FILE:LINE:COLUMN: message`. `run`
/// and `plan` print what stops them before they start the same way.
pub fn print_problems(script: &Path, problems: &[Diagnostic]) {
    let shown = script.display();
    for p in problems {
        match (p.line, p.column) {
            (Some(l), Some(c)) => eprintln!("error: {shown}:{l}:{c}: {}", p.message),
            (Some(l), None) => eprintln!("error: {shown}:{l}: {}", p.message),
            _ => eprintln!("error: {shown}: {}", p.message),
        }
    }
}

fn read_script(script: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(script)
        .map_err(|e| CliError::usage(format!("cannot read the script {}: {e}", script.display())))
}

/// `check --params`: each script's declared parameters.
fn list_params(args: &CheckArgs, engine: &Engine) -> Result<u8, CliError> {
    if args.output == OutputFormat::Csv {
        return Err(CliError::usage(
            "check --params prints a table (-o pretty) or JSON (-o json), not CSV",
        ));
    }
    let mut failed = false;
    let mut all = Map::new();
    for script in &args.scripts {
        let source = read_script(script)?;
        match engine.params(&source) {
            Err(problems) => {
                failed = true;
                print_problems(script, &problems);
            }
            Ok(params) => match args.output {
                OutputFormat::Json => {
                    let listed = serde_json::to_value(&params).map_err(|e| CliError::failed(e.to_string()))?;
                    all.insert(script.display().to_string(), listed);
                }
                OutputFormat::Pretty | OutputFormat::Csv => print!("{}", params_table(script, &params)),
            },
        }
    }
    if matches!(args.output, OutputFormat::Json) {
        println!("{}", Value::Object(all));
    }
    Ok(if failed { exit::USAGE } else { exit::OK })
}

/// The parameters as a table for people: name, type, default or "required", doc.
fn params_table(script: &Path, params: &[ScriptParam]) -> String {
    let mut out = format!("{}\n", script.display());
    if params.is_empty() {
        out.push_str("  (no parameters)\n");
        return out;
    }
    let rows: Vec<[String; 4]> = params
        .iter()
        .map(|p| {
            let default = match (&p.default, p.required) {
                (_, true) => "required".to_owned(),
                (Some(d), false) => format!("default {d}"),
                (None, false) => "default ()".to_owned(),
            };
            [p.name.clone(), p.ty.to_string(), default, p.doc.clone()]
        })
        .collect();
    let width = |i: usize| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
    let (w0, w1, w2) = (width(0), width(1), width(2));
    for [name, ty, default, doc] in rows {
        let line = format!("  {name:<w0$}  {ty:<w1$}  {default:<w2$}  {doc}");
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
