//! `runbook sim`: both simulators on loopback until Ctrl-C.

use std::io::Write;
use std::time::Duration;

use runbook_sim::{RateLimitMode, SimOptions};

use crate::cli::SimArgs;
use crate::error::{CliError, exit};
use crate::simulate::Simulation;

/// Serves the simulators; prints `export` lines on stdout once they listen.
pub async fn sim(args: &SimArgs) -> Result<u8, CliError> {
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
