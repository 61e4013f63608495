//! `runbook init`: a commented `runbook.toml` and a read-only sample script to start from.

use std::path::{Path, PathBuf};

use crate::cli::InitArgs;
use crate::error::{CliError, exit};

/// The configuration `init` writes: every provider setting, commented out and explained.
const CONFIG: &str = include_str!("init/runbook.toml");

/// The sample script `init` writes: read-only, so safe against a real tenant.
const SAMPLE: &str = include_str!("init/inactive_users.rhai");

/// What `init` writes, by file name.
const FILES: [(&str, &str); 2] = [("runbook.toml", CONFIG), ("inactive_users.rhai", SAMPLE)];

/// Writes the files into `args.dir`; refuses (exit 2, nothing written) when any exists.
pub fn init(args: &InitArgs) -> Result<u8, CliError> {
    let dir = &args.dir;
    let existing: Vec<String> = FILES
        .iter()
        .map(|(name, _)| in_dir(dir, name))
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if !existing.is_empty() {
        let (what, verb) = match existing.as_slice() {
            [one] => (one.clone(), "exists"),
            many => (many.join(" and "), "exist"),
        };
        return Err(CliError::usage(format!(
            "{what} already {verb}; runbook init overwrites nothing: move it away, or write elsewhere with \
             runbook init DIR"
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| CliError::usage(format!("cannot create {}: {e}", dir.display())))?;
    for (name, text) in FILES {
        write_new(&in_dir(dir, name), text)?;
    }
    let script = in_dir(dir, "inactive_users.rhai");
    eprintln!(
        "wrote {} and {}\nnext:\n  runbook check {shown}\n  runbook run {shown} --simulate\n\
         then, for a real tenant, fill in runbook.toml (or set the variables it names)",
        in_dir(dir, "runbook.toml").display(),
        script.display(),
        shown = script.display(),
    );
    Ok(exit::OK)
}

/// `name` in `dir`, shown without a leading `./` for the current directory.
fn in_dir(dir: &Path, name: &str) -> PathBuf {
    if dir == Path::new(".") {
        PathBuf::from(name)
    } else {
        dir.join(name)
    }
}

/// Creates `path`, failing rather than replacing a file that appeared meanwhile.
fn write_new(path: &Path, text: &str) -> Result<(), CliError> {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| CliError::usage(format!("cannot create {}: {e}", path.display())))?;
    file.write_all(text.as_bytes())
        .map_err(|e| CliError::usage(format!("cannot write {}: {e}", path.display())))
}
