//! Running the built binary in a scratch directory with a clean environment.

use std::path::{Path, PathBuf};
use std::process::Stdio;

/// What a finished command printed.
#[derive(Debug)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Everything the command printed, for leak checks.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// stdout as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}\nstderr:\n{}", self.stdout, self.stderr))
    }
}

/// A scratch directory with scripts, where the binary runs.
pub struct Workspace {
    pub dir: tempfile::TempDir,
    pub env: Vec<(String, String)>,
}

impl Workspace {
    pub fn new() -> Workspace {
        Workspace {
            dir: tempfile::tempdir().unwrap(),
            env: Vec::new(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file and returns its path.
    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.push((key.to_owned(), value.to_owned()));
    }

    /// The binary, in this directory, with no provider variables but those set here, keeping its
    /// runs in [`Workspace::state_dir`]. A `runbook run` gets `--yes`, as a job without a terminal
    /// passes it; the tests of the confirmation itself use [`Workspace::command_as_given`].
    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut args = args.to_vec();
        if args.first() == Some(&"run") && !args.contains(&"--plan") && !args.contains(&"--yes") {
            args.push("--yes");
        }
        self.command_as_given(&args)
    }

    /// The binary with exactly these arguments.
    pub fn command_as_given(&self, args: &[&str]) -> tokio::process::Command {
        self.program(env!("CARGO_BIN_EXE_runbook"), args)
    }

    /// The binary on a terminal of its own (a pseudo-terminal made by util-linux `script`): what is
    /// written to the command's stdin is typed on that terminal.
    pub fn command_on_terminal(&self, args: &[&str]) -> tokio::process::Command {
        let mut line = shell_quote(env!("CARGO_BIN_EXE_runbook"));
        for arg in args {
            line.push(' ');
            line.push_str(&shell_quote(arg));
        }
        self.program("script", &["-qec", &line, "/dev/null"])
    }

    /// `program` in this directory with the binary's clean environment.
    fn program(&self, program: &str, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        for (key, _) in std::env::vars() {
            if key.starts_with("CLOUDFLARE_")
                || key.starts_with("PRIVX_")
                || key.starts_with("RUNBOOK_")
                || key == "RUST_LOG"
            {
                cmd.env_remove(key);
            }
        }
        // Runs keep their journals here, not in the user's own state directory.
        cmd.env("RUNBOOK_STATE_DIR", self.state_dir());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Where the binary keeps its local runs (`RUNBOOK_STATE_DIR`).
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join(".state")
    }

    /// Runs the binary to completion.
    pub async fn run(&self, args: &[&str]) -> Output {
        Output::of(self.command(args)).await
    }

    /// Runs the binary to completion with exactly these arguments.
    pub async fn run_as_given(&self, args: &[&str]) -> Output {
        Output::of(self.command_as_given(args)).await
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

impl Output {
    /// Runs `cmd` to completion.
    pub async fn of(mut cmd: tokio::process::Command) -> Output {
        let out = cmd.output().await.unwrap();
        Output {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// Both simulators, and how to point providers (in-process or the binary) at them.
pub struct Sims {
    pub sims: runbook_sim::Simulators,
}

impl Sims {
    pub async fn start(fixture: serde_json::Value) -> Sims {
        Sims::start_with(fixture, runbook_sim::SimOptions::default()).await
    }

    pub async fn start_with(fixture: serde_json::Value, options: runbook_sim::SimOptions) -> Sims {
        let fixture: runbook_sim::Fixture = serde_json::from_value(fixture).unwrap();
        Sims {
            sims: runbook_sim::Simulators::start(fixture, options).await.unwrap(),
        }
    }

    pub fn cf(&self) -> &runbook_sim::CloudflareSim {
        &self.sims.cloudflare
    }

    pub fn px(&self) -> &runbook_sim::PrivxSim {
        &self.sims.privx
    }

    /// The provider variables for the binary.
    pub fn env(&self) -> Vec<(String, String)> {
        let (cf, px) = (self.cf(), self.px());
        let mut vars = vec![
            ("CLOUDFLARE_BASE_URL".to_owned(), cf.base_url()),
            ("CLOUDFLARE_API_TOKEN".to_owned(), cf.api_token()),
            ("CLOUDFLARE_ACCOUNT_ID".to_owned(), cf.account_id()),
            ("PRIVX_API_BASE_URL".to_owned(), px.base_url()),
            ("PRIVX_API_CLIENT_ID".to_owned(), px.api_client_id()),
            ("PRIVX_API_CLIENT_SECRET".to_owned(), px.api_client_secret()),
            ("PRIVX_API_OAUTH_CLIENT_ID".to_owned(), px.oauth_client_id()),
            ("PRIVX_API_OAUTH_CLIENT_SECRET".to_owned(), px.oauth_client_secret()),
        ];
        if let Some(ca) = px.ca_cert_pem() {
            vars.push(("PRIVX_API_CA_CERT".to_owned(), ca));
        }
        vars
    }

    /// A scratch directory whose binary talks to these simulators.
    pub fn workspace(&self) -> Workspace {
        let mut ws = Workspace::new();
        for (k, v) in self.env() {
            ws.set_env(&k, &v);
        }
        ws
    }

    /// The Cloudflare provider's settings for these simulators.
    pub fn cloudflare_config(&self) -> serde_json::Map<String, serde_json::Value> {
        let cf = self.cf();
        let v =
            serde_json::json!({"base_url": cf.base_url(), "account_id": cf.account_id(), "api_token": cf.api_token()});
        v.as_object().unwrap().clone()
    }

    /// The PrivX provider's settings for these simulators.
    pub fn privx_config(&self) -> serde_json::Map<String, serde_json::Value> {
        let px = self.px();
        let mut v = serde_json::json!({
            "base_url": px.base_url(),
            "api_client_id": px.api_client_id(),
            "api_client_secret": px.api_client_secret(),
            "oauth_client_id": px.oauth_client_id(),
            "oauth_client_secret": px.oauth_client_secret(),
        });
        if let Some(ca) = px.ca_cert_pem() {
            v["ca_cert"] = serde_json::Value::String(ca);
        }
        v.as_object().unwrap().clone()
    }

    /// An in-process engine with both providers pointed at these simulators.
    pub fn engine(&self) -> runbook_core::Engine {
        self.engine_with(self.cloudflare_config(), self.privx_config())
    }

    /// An in-process engine with these provider settings.
    pub fn engine_with(
        &self,
        cloudflare: serde_json::Map<String, serde_json::Value>,
        privx: serde_json::Map<String, serde_json::Value>,
    ) -> runbook_core::Engine {
        use runbook_core::ProviderConfig;
        let cf =
            runbook_provider_cloudflare::Cloudflare::from_config(&ProviderConfig::from_table("cloudflare", cloudflare))
                .unwrap();
        let px = runbook_provider_privx::Privx::from_config(&ProviderConfig::from_table("privx", privx)).unwrap();
        runbook_core::Engine::builder()
            .provider(std::sync::Arc::new(cf))
            .provider(std::sync::Arc::new(px))
            .build()
            .unwrap()
    }

    /// Requests that changed something, at both simulators: every request but reads, searches,
    /// role-name lookups and token requests.
    pub fn changes(&self) -> usize {
        self.cf()
            .requests()
            .iter()
            .chain(self.px().requests().iter())
            .filter(|r| {
                r.method != "GET"
                    && !r.path.ends_with("/search")
                    && !r.path.ends_with("/token")
                    && !r.path.ends_with("/roles/resolve")
            })
            .count()
    }

    pub async fn shutdown(self) {
        self.sims.shutdown().await;
    }
}

/// Runs a script in-process and returns its result, panicking with the error otherwise.
pub async fn eval(engine: &runbook_core::Engine, script: &str) -> serde_json::Value {
    match engine.run(script, runbook_core::RunOptions::new()).await {
        Ok(outcome) => outcome.result,
        Err(e) => panic!("the script failed: {}\n{script}", e.describe()),
    }
}

/// Runs a script in-process and returns its error, panicking if it succeeds.
pub async fn eval_err(engine: &runbook_core::Engine, script: &str) -> runbook_core::RunError {
    match engine.run(script, runbook_core::RunOptions::new()).await {
        Ok(outcome) => panic!("the script succeeded with {}:\n{script}", outcome.result),
        Err(e) => e,
    }
}

/// Lists what the tests may go without: `RUNBOOK_TEST_SKIP=postgres,python`.
pub const SKIP_VAR: &str = "RUNBOOK_TEST_SKIP";

/// The value of `var`, which this test needs to check `what` (`postgres`, `python`). Unset, the
/// test fails — unless `RUNBOOK_TEST_SKIP` names `what`: then it says loudly that it checked
/// nothing and returns `None`, and the test counts as passed.
pub fn needed_env(var: &str, what: &str, how: &str) -> Option<String> {
    if let Ok(value) = std::env::var(var) {
        return Some(value);
    }
    let skip = std::env::var(SKIP_VAR).unwrap_or_default();
    if skip.split(',').any(|s| s.trim() == what) {
        eprintln!(
            "\n*** SKIPPED: {var} is unset and {SKIP_VAR} names {what}: this test passes having checked nothing ***\n"
        );
        return None;
    }
    panic!(
        "{var} is unset: this test needs {what} ({how}); set it, or set {SKIP_VAR}={what} to let the test pass unchecked"
    );
}
