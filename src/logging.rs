//! Logs on stderr, through a writer that scrubs every known secret.

use std::io::{self, Write};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::cli::LogFormat;

/// What is logged when `RUST_LOG` is not set: warnings, what scripts print, and what `serve` does.
const DEFAULT_FILTER: &str = "warn,runbook::script=info,runbook_serve=info";

/// Installs the subscriber: `RUST_LOG` filters, `format` chooses text or JSON.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(RedactingStderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&io::stderr()))
        .with_target(true);
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    // Only fails when a subscriber is already installed, which leaves logging working.
    drop(installed);
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
        let result = io::stderr().lock().write_all(clean.as_bytes());
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
