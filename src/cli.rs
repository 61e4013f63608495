//! The command line, as clap sees it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// runbook — automations for identity and access operations, written as Rhai runbooks.
#[derive(Debug, Parser)]
#[command(name = "runbook", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Configuration file (default: ./runbook.toml when it exists).
    #[arg(long, global = true, value_name = "FILE", env = "RUNBOOK_CONFIG")]
    pub config: Option<PathBuf>,

    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// How logs are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// For people.
    Text,
    /// One JSON object per line.
    Json,
}

/// How results are written to stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Tables and lists for people.
    Pretty,
    /// One JSON document.
    Json,
    /// Comma-separated values: a result that is a list of records (or a map holding exactly
    /// one), one line per record after a header line.
    Csv,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a script.
    Run(RunArgs),
    /// Show what a script would change, without changing anything (same as run --plan); --out saves
    /// the plan for review and `runbook apply`.
    Plan(RunArgs),
    /// Apply a saved plan: re-plan with fresh reads, refuse a stale plan (exit 4), then send
    /// exactly the planned changes.
    Apply(ApplyArgs),
    /// Check scripts without running them: syntax, and that every action called exists with a fitting arity.
    Check(CheckArgs),
    /// List the actions, or describe one (`runbook actions cloudflare.list_users`).
    Actions(ActionsArgs),
    /// Serve both simulators on loopback and print the variables that point the providers at them.
    Sim(SimArgs),
    /// Run the automations of runbook.toml on webhooks, schedules and intervals, until SIGTERM.
    Serve(ServeArgs),
    /// serve's runs: list and show (from the store); start, retry, cancel, resolve (through the
    /// server's API: RUNBOOK_API_URL, RUNBOOK_API_TOKEN).
    #[command(subcommand)]
    Runs(RunsCommand),
    /// serve's automations: list (from the store); pause and resume (through the server's API).
    #[command(subcommand)]
    Automations(AutomationsCommand),
    /// API tokens for runbook serve.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Print shell completions.
    Completions(CompletionsArgs),
    /// Start a project: a commented runbook.toml and a read-only sample script.
    Init(InitArgs),
}

/// `init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where to write them (created when missing).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
}

/// `run` and `plan`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The script (a .rhai file). With --resume it may be left out: the run goes on with the copy
    /// pinned when it started.
    pub script: Option<PathBuf>,

    /// Go on with an interrupted run (Ctrl-C, a crash, its timeout) from its journal: steps it
    /// recorded are not sent again. It runs its pinned script with its params and --max-changes;
    /// --timeout and --concurrency given here apply to this attempt.
    #[arg(long, value_name = "RUN_ID")]
    pub resume: Option<String>,

    /// A parameter for the script: KEY=VALUE; VALUE is JSON when it parses (3, true, ["FI","SE"]), else a string.
    #[arg(long = "param", short = 'p', value_name = "KEY=VALUE")]
    pub params: Vec<String>,

    /// Parameters from a JSON object in a file (--param values override them).
    #[arg(long, value_name = "FILE")]
    pub params_file: Option<PathBuf>,

    /// Plan mode: reads run, changes are listed and not sent.
    #[arg(long)]
    pub plan: bool,

    /// With plan: save the plan to this file, for review and `runbook apply FILE`.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// Make the changes without asking (needed when there is no terminal to ask on).
    #[arg(long, short = 'y')]
    pub yes: bool,

    /// The blast-radius guard: the most targets (users, ...) the run's changes may touch.
    #[arg(
        long,
        value_name = "N",
        help = format!(
            "The blast-radius guard: the most targets (users, ...) the run's changes may touch [default: {}]",
            runbook_core::DEFAULT_MAX_CHANGES
        )
    )]
    pub max_changes: Option<u64>,

    /// How many items parallel() works on at once.
    #[arg(
        long,
        value_name = "N",
        value_parser = parse_concurrency,
        help = format!(
            "How many items parallel() works on at once [default: {}]",
            runbook_core::DEFAULT_CONCURRENCY
        )
    )]
    pub concurrency: Option<usize>,

    /// Stop the run after this long (e.g. 90s, 10m).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<std::time::Duration>,

    /// Write one JSON object per action call to this file.
    #[arg(long, value_name = "FILE")]
    pub audit_log: Option<PathBuf>,

    /// How to print the result.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Pretty)]
    pub output: OutputFormat,

    /// Run against the built-in simulators of Cloudflare and PrivX (started for this run on
    /// ephemeral ports): nothing to configure, nothing real touched.
    #[arg(long)]
    pub simulate: bool,

    /// With --simulate: seed the simulators from this fixture instead of the demo tenant.
    #[arg(long, value_name = "FILE", requires = "simulate")]
    pub fixture: Option<PathBuf>,
}

/// `apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The plan file `runbook plan --out` saved.
    pub plan: PathBuf,

    /// Make the changes without asking (needed when there is no terminal to ask on).
    #[arg(long, short = 'y')]
    pub yes: bool,

    /// How many items parallel() works on at once.
    #[arg(long, value_name = "N", value_parser = parse_concurrency)]
    pub concurrency: Option<usize>,

    /// Stop the run after this long (e.g. 90s, 10m).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<std::time::Duration>,

    /// Write one JSON object per action call to this file.
    #[arg(long, value_name = "FILE")]
    pub audit_log: Option<PathBuf>,

    /// How to print the result.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Pretty)]
    pub output: OutputFormat,
}

impl ApplyArgs {
    /// The run settings an apply shares with `runbook run`.
    pub fn as_run(&self) -> RunArgs {
        RunArgs {
            script: None,
            resume: None,
            params: Vec::new(),
            params_file: None,
            plan: false,
            out: None,
            yes: self.yes,
            max_changes: None,
            concurrency: self.concurrency,
            timeout: self.timeout,
            audit_log: self.audit_log.clone(),
            output: self.output,
            simulate: false,
            fixture: None,
        }
    }
}

/// `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Point the providers at simulators started for this server (seeded from --fixture or the demo tenant).
    #[arg(long)]
    pub simulate: bool,

    /// With --simulate: seed the simulators from this fixture.
    #[arg(long, value_name = "FILE", requires = "simulate")]
    pub fixture: Option<PathBuf>,
}

/// `runs`.
#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// Recent runs, newest first.
    List {
        /// Only this automation.
        #[arg(long)]
        automation: Option<String>,
        /// Only runs in this state: queued, running, succeeded, failed, refused, diverged, needs_attention, cancelled,
        /// awaiting_approval, expired, rejected, stale.
        #[arg(long)]
        status: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// How to print them.
        #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Pretty)]
        output: OutputFormat,
    },
    /// One run: its result, error, log lines, the steps its journal holds and the calls it made.
    Show {
        /// The run's id.
        id: String,
        /// How to print it.
        #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Pretty)]
        output: OutputFormat,
    },
    /// Start a run of an automation now, through the server's API (scope run): its params are
    /// the automation's, with --param values over them.
    Start {
        /// The automation's name.
        automation: String,
        /// A parameter: KEY=VALUE; VALUE is JSON when it parses (3, true, ["FI","SE"]), else a string.
        #[arg(long = "param", short = 'p', value_name = "KEY=VALUE")]
        params: Vec<String>,
    },
    /// Queue a finished run again (a new run with the same params and event), through the
    /// server's API (scope run).
    Retry {
        /// The run's id.
        id: String,
    },
    /// Approve the plan of a run waiting as awaiting_approval, through the server's API with your
    /// own token (scope approve, and a name among the automation's approvers; not the run's
    /// requester). With enough approvals the run applies exactly that plan.
    Approve {
        /// The run's id.
        id: String,
        /// Why: recorded with the approval.
        #[arg(long, short = 'm', default_value = "")]
        comment: String,
    },
    /// Reject the plan of a run waiting as awaiting_approval (same rules as approve): the run ends
    /// rejected and nothing is sent.
    Reject {
        /// The run's id.
        id: String,
        /// Why: recorded with the rejection.
        #[arg(long, short = 'm', default_value = "")]
        comment: String,
    },
    /// Cancel a run, through the server's API (scope run): a queued run (or one waiting for a
    /// person) at once; a running one stops within one heartbeat, its calls in flight finishing.
    Cancel {
        /// The run's id.
        id: String,
    },
    /// Say whether a change in doubt took effect, for a run waiting as needs_attention; the run
    /// is queued again and resumes. Through the server's API: RUNBOOK_API_URL, RUNBOOK_API_TOKEN.
    #[command(group = clap::ArgGroup::new("outcome").required(true).args(["sent", "not_sent"]))]
    Resolve {
        /// The run's id.
        id: String,
        /// The step in doubt (its key, as `runbook runs show` lists it: `3`, `9/0/1`).
        step: String,
        /// The change took effect: the step counts as done.
        #[arg(long)]
        sent: bool,
        /// The change did not take effect: it is sent once more when the run resumes.
        #[arg(long)]
        not_sent: bool,
    },
}

/// `automations`.
#[derive(Debug, Subcommand)]
pub enum AutomationsCommand {
    /// The automations of runbook.toml, their triggers, and whether they are paused.
    List {
        /// How to print them.
        #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Pretty)]
        output: OutputFormat,
    },
    /// Hold an automation's runs (scope admin): deliveries and ticks are still accepted and
    /// stored; nothing starts until it is resumed. Every instance sharing the store obeys.
    Pause {
        /// The automation's name.
        name: String,
    },
    /// Let a paused automation's runs start again (scope admin), the held ones first.
    Resume {
        /// The automation's name.
        name: String,
    },
}

/// `token`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a new API token: the token on stdout (keep it in a secret store), and on stderr the
    /// `[[serve.tokens]]` entry with its SHA-256, which holds no usable secret.
    New {
        /// The token's name: the actor recorded on what it does (letters, digits, - and _).
        name: String,
        /// What it may do: read, run, approve, admin (repeat, or separate with commas).
        #[arg(long = "scope", value_name = "SCOPE", value_delimiter = ',', default_value = "read")]
        scopes: Vec<String>,
    },
}

/// `sim`.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// Seed the simulators from this fixture instead of the demo tenant.
    #[arg(long, value_name = "FILE")]
    pub fixture: Option<PathBuf>,

    /// Write the demo tenant (the built-in fixture) to this file and exit: edit it, then pass
    /// it back with --fixture.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["fixture", "print_env"])]
    pub export_fixture: Option<PathBuf>,

    /// Added to every answer, in milliseconds.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub latency_ms: u64,

    /// A fixed-window budget for each simulator, e.g. 200/s or 1200/300s (429 beyond it).
    #[arg(long, value_name = "N/PERIOD")]
    pub rate_limit: Option<runbook_sim::RateLimit>,

    /// Count --rate-limit over a sliding window and send no Ratelimit headers, like a proxy that
    /// strips them: a client learns nothing of the budget until it overruns it.
    #[arg(long, requires = "rate_limit")]
    pub sliding_silent: bool,

    /// Where the Cloudflare simulator listens.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7801")]
    pub cloudflare_addr: std::net::SocketAddr,

    /// Where the PrivX simulator listens.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7802")]
    pub privx_addr: std::net::SocketAddr,

    /// Serve PrivX over HTTPS with a CA generated at start (PRIVX_API_CA_CERT carries it).
    #[arg(long)]
    pub tls: bool,

    /// Only print the export lines for simulators at these addresses, and exit: for
    /// `eval "$(runbook sim --print-env)"` in another shell while `runbook sim` serves.
    #[arg(long, conflicts_with = "tls")]
    pub print_env: bool,
}

fn parse_concurrency(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=1024).contains(&n) => Ok(n),
        _ => Err(format!("\"{text}\" is not a concurrency between 1 and 1024")),
    }
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    runbook_core::parse_duration(text)
}

/// `check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The scripts.
    #[arg(required = true)]
    pub scripts: Vec<PathBuf>,

    /// List the parameters each script declares (name, type, default, required, doc) instead.
    #[arg(long)]
    pub params: bool,

    /// How to print --params.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Pretty, requires = "params")]
    pub output: OutputFormat,
}

/// `actions`.
#[derive(Debug, Args)]
pub struct ActionsArgs {
    /// One action (`cloudflare.list_users`) or one provider (`cloudflare`).
    pub name: Option<String>,

    /// As JSON.
    #[arg(long, conflicts_with = "markdown")]
    pub json: bool,

    /// As the Markdown reference (docs/actions.md).
    #[arg(long)]
    pub markdown: bool,
}

/// `completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    pub shell: clap_complete::Shell,
}
