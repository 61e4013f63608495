//! Logs on stderr, through a writer that scrubs every known secret.
//!
//! On a terminal, what a script prints (`print`, `debug`, a provider's warning) is shown as
//! plain lines — the words, no timestamp, level or target — because a person is reading along.
//! When stderr is a file or a pipe, every line keeps its timestamp, level, target and run id:
//! that is what a log kept for later needs. Other events are decorated either way.

use std::fmt;
use std::io::{self, IsTerminal, Write};
use std::sync::Mutex;

use indicatif::ProgressBar;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

use crate::cli::LogFormat;

/// The target of what scripts print.
const SCRIPT_TARGET: &str = "runbook::script";

/// The progress shown on stderr, if any: log lines are written around it, not through it.
static PROGRESS: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Makes `bar` (or nothing) the progress that log lines are written around.
pub fn set_progress(bar: Option<ProgressBar>) {
    *PROGRESS.lock().unwrap_or_else(|p| p.into_inner()) = bar;
}

/// What is logged when `RUST_LOG` is not set: warnings, what scripts print, what `serve` does,
/// and what plugins write on their stderr.
const DEFAULT_FILTER: &str = "warn,runbook::script=info,runbook_serve=info,runbook_plugin=info";

/// Installs the subscriber: `RUST_LOG` filters, `format` chooses text or JSON.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let terminal = io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(RedactingStderr)
        .with_ansi(terminal)
        .with_target(true);
    let installed = match format {
        LogFormat::Text if terminal => builder
            .event_format(PlainScriptLines(tracing_subscriber::fmt::format().with_target(true)))
            .try_init(),
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    // Only fails when a subscriber is already installed, which leaves logging working.
    drop(installed);
}

/// Formats what scripts print as the bare message (`warning: ` before a warning); every other
/// event as the wrapped format does.
struct PlainScriptLines<F>(F);

impl<S, N, F> FormatEvent<S, N> for PlainScriptLines<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        if event.metadata().target() != SCRIPT_TARGET {
            return self.0.format_event(ctx, writer, event);
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        if *event.metadata().level() <= Level::WARN {
            writer.write_str("warning: ")?;
        }
        writeln!(writer, "{}", message.0)
    }
}

/// An event's `message` field.
struct Message(String);

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            value.clone_into(&mut self.0);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

/// Makes writers to stderr that scrub secrets from each formatted event.
#[derive(Debug, Clone, Copy)]
pub struct RedactingStderr;

impl<'a> MakeWriter<'a> for RedactingStderr {
    type Writer = Redacting;

    fn make_writer(&'a self) -> Self::Writer {
        Redacting(Vec::new())
    }
}

/// Collects one event, then writes it redacted when dropped.
#[derive(Debug)]
pub struct Redacting(Vec<u8>);

impl Write for Redacting {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.0.is_empty() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&self.0);
        let clean = runbook_core::redact(&text);
        let write = || io::stderr().lock().write_all(clean.as_bytes());
        let progress = PROGRESS.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let result = match progress {
            Some(bar) => bar.suspend(write),
            None => write(),
        };
        self.0.clear();
        result
    }
}

impl Drop for Redacting {
    fn drop(&mut self) {
        // Nowhere to report a failed write to stderr.
        drop(self.flush());
    }
}
