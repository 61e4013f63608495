//! `runbook sim`: both simulators on loopback until Ctrl-C.

use std::io::Write;
use std::time::Duration;

use runbook_sim::{RateLimitMode, SimOptions};

use crate::cli::SimArgs;
use crate::error::{CliError, exit};
use crate::simulate::Simulation;

/// Serves the simulators; prints `export` lines on stdout once they listen.
pub async fn sim(args: &SimArgs) -> Result<u8, CliError> {
    if let Some(path) = &args.export_fixture {
        return export_fixture(path);
    }
    if args.print_env {
        let fixture = crate::simulate::load_fixture(args.fixture.as_deref())?;
        let (cf, px) = (&fixture.cloudflare, &fixture.privx);
        let vars = [
            (
                "CLOUDFLARE_BASE_URL",
                format!("http://{}/client/v4", args.cloudflare_addr),
            ),
            ("CLOUDFLARE_API_TOKEN", cf.api_token.clone()),
            ("CLOUDFLARE_ACCOUNT_ID", cf.account_id.clone()),
            ("PRIVX_API_BASE_URL", format!("http://{}", args.privx_addr)),
            ("PRIVX_API_CLIENT_ID", px.api_client_id.clone()),
            ("PRIVX_API_CLIENT_SECRET", px.api_client_secret.clone()),
            ("PRIVX_API_OAUTH_CLIENT_ID", px.oauth_client_id.clone()),
            ("PRIVX_API_OAUTH_CLIENT_SECRET", px.oauth_client_secret.clone()),
        ];
        for (name, value) in vars {
            println!("export {name}={}", shell_quote(&value));
        }
        return Ok(exit::OK);
    }
    let options = SimOptions {
        latency: Duration::from_millis(args.latency_ms),
        rate_limit: args.rate_limit,
        rate_limit_mode: if args.sliding_silent {
            RateLimitMode::SlidingWindowSilent
        } else {
            RateLimitMode::FixedWindow
        },
        tls: args.tls,
    };
    let simulation = Simulation::start(
        args.fixture.as_deref(),
        options,
        Some(args.cloudflare_addr),
        Some(args.privx_addr),
    )
    .await?;
    let mut out = String::new();
    for (name, value) in simulation.env() {
        out.push_str(&format!("export {name}={}\n", shell_quote(&value)));
    }
    out.push_str(&format!(
        "# Cloudflare simulator at {}, PrivX simulator at {}; Ctrl-C stops them.\n",
        simulation.sims.cloudflare.base_url(),
        simulation.sims.privx.base_url()
    ));
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| CliError::failed(format!("cannot write to stdout: {e}")))?;
    drop(stdout);
    eprintln!(
        "simulators ready; in another shell: eval \"$(runbook sim --print-env)\" (with the same --fixture and addresses)"
    );
    super::wait_for_signal().await;
    eprintln!("stopping the simulators");
    simulation.shutdown().await;
    Ok(exit::OK)
}

/// Writes the demo tenant to `path` (never over an existing file), for the user to edit and
/// pass back with `--fixture`.
fn export_fixture(path: &std::path::Path) -> Result<u8, CliError> {
    let shown = path.display();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => CliError::usage(format!(
                "{shown} already exists; runbook sim --export-fixture overwrites nothing"
            )),
            _ => CliError::usage(format!("cannot create {shown}: {e}")),
        })?;
    // Pretty, so that it can be edited: the built-in copy is one long line.
    let tenant: serde_json::Value = serde_json::from_str(crate::simulate::DEMO_TENANT)
        .map_err(|e| CliError::failed(format!("the built-in demo tenant is not JSON: {e}")))?;
    let text = serde_json::to_string_pretty(&tenant).unwrap_or_default() + "\n";
    file.write_all(text.as_bytes())
        .map_err(|e| CliError::usage(format!("cannot write {shown}: {e}")))?;
    eprintln!(
        "wrote the demo tenant to {shown}; edit it, then: runbook sim --fixture {shown} (or runbook run SCRIPT \
         --simulate --fixture {shown}); when it is loaded, every time in it moves so that its reference_time is now"
    );
    Ok(exit::OK)
}

/// Quotes a value for a POSIX shell.
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn values_are_quoted_for_the_shell() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }
}
