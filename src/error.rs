//! Errors that end a command, with the exit code they mean.

/// Exit codes (DESIGN.md): 0 success, 1 the script or an action failed (or the run ended
/// `diverged` / `needs_attention`), 2 usage, config or
/// compile error, or changes without a terminal and without `--yes`, 3 refused by the blast-radius
/// guard or the policy, 4 the saved plan no longer matches, 130 interrupted. The one table: every
/// command's exit code comes from here.
pub mod exit {
    use runbook_core::RunErrorKind;

    /// Success.
    pub const OK: u8 = 0;
    /// The script or an action failed.
    pub const FAILED: u8 = 1;
    /// Usage, configuration or compile error; a script that cannot run as written.
    pub const USAGE: u8 = 2;
    /// Refused by the blast-radius guard or the policy.
    pub const REFUSED: u8 = 3;
    /// The saved or approved plan no longer matches: nothing outside it was sent.
    pub const STALE: u8 = 4;
    /// Interrupted (Ctrl-C, SIGTERM).
    pub const INTERRUPTED: u8 = 130;

    /// The exit code of a run that failed this way.
    pub fn of_run(kind: RunErrorKind) -> u8 {
        match kind {
            RunErrorKind::Compile | RunErrorKind::InvalidArgs | RunErrorKind::NotConfigured | RunErrorKind::Params => {
                USAGE
            }
            RunErrorKind::Guard | RunErrorKind::Policy | RunErrorKind::Budget => REFUSED,
            RunErrorKind::Stale => STALE,
            RunErrorKind::Cancelled => INTERRUPTED,
            // A run that stopped as diverged or needs_attention failed: its error line names the
            // state, and the journal keeps what it did.
            RunErrorKind::Diverged | RunErrorKind::NeedsAttention => FAILED,
            RunErrorKind::Journal | RunErrorKind::Fenced => FAILED,
            _ => FAILED,
        }
    }
}

/// A command failed: what to print and how to exit.
#[derive(Debug)]
pub struct CliError {
    /// The exit code.
    pub code: u8,
    /// The message (printed after `error: `).
    pub message: String,
}

impl CliError {
    /// A usage or configuration error (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        CliError {
            code: exit::USAGE,
            message: message.into(),
        }
    }

    /// A failure (exit 1).
    pub fn failed(message: impl Into<String>) -> Self {
        CliError {
            code: exit::FAILED,
            message: message.into(),
        }
    }
}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> Self {
        CliError::failed(format!("{e:#}"))
    }
}
