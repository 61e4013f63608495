//! One running plugin process: a writer task feeding its stdin, a reader task matching the lines
//! of its stdout to the calls waiting for them, a task forwarding its stderr to the log, and a
//! task that owns the child and kills it on demand.

use std::collections::{HashMap, VecDeque};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use runbook_core::{CancellationToken, redact};
use serde_json::{Value, json};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{ChildStderr, ChildStdout, Command};
use tokio::sync::{mpsc, oneshot};

use crate::PluginError;
use crate::settings::PluginSettings;

/// Variables of runbook's own environment a plugin inherits; everything else it gets from `env`.
const INHERITED: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "SYSTEMROOT",
    "PYTHONPATH",
    "VIRTUAL_ENV",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];

/// The longest stderr line forwarded to the log; the rest of the line is dropped.
const MAX_LOG_LINE: usize = 8 << 10;
/// How much more of a long stderr line is read (and redacted with it) than is forwarded, so that
/// a secret across the cut is recognised whole.
const LOG_LINE_MARGIN: usize = 4 << 10;
/// Answers to calls given up on (timed out, cancelled) that are dropped quietly when they come late.
const MAX_ABANDONED: usize = 4096;

/// Why a request got no answer.
#[derive(Debug, Clone)]
pub(crate) enum Failure {
    /// Never written to the plugin: certainly not acted on.
    NotSent(String),
    /// Written, then the process went away or broke the protocol: the plugin may have acted.
    Gone(String),
    /// Broke the protocol (its answers cannot be trusted).
    Violation(String),
}

/// An answer: a result, or the plugin's JSON-RPC error object.
pub(crate) type Reply = Result<Value, Value>;

type Waiter = oneshot::Sender<Result<Reply, Failure>>;

/// Consecutive calls given up on after they were written, past which the process is taken for
/// wedged and killed (it starts again on the next call).
const MAX_TIMEOUTS: u32 = 3;

/// A call waiting for its answer.
struct Pending {
    waiter: Waiter,
    /// The writer took it: the plugin may have read it (and may act on it).
    written: bool,
}

struct Inner {
    pending: HashMap<u64, Pending>,
    abandoned: VecDeque<u64>,
    /// Set once the process is gone or broke the protocol: no new request is written.
    dead: Option<Failure>,
}

struct Shared {
    label: String,
    /// What runbook handed the process, scrubbed from everything it prints.
    scrub: Arc<Scrub>,
    inner: Mutex<Inner>,
    kill: CancellationToken,
    exit: Mutex<Option<String>>,
    /// Cancelled once the process has exited (it acts on nothing any more).
    exited: CancellationToken,
    /// Calls given up on in a row after they were written.
    timeouts: std::sync::atomic::AtomicU32,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// Marks the process gone, fails every call in flight, and kills it.
    fn fail(&self, failure: Failure) {
        let waiters: Vec<Waiter> = {
            let mut inner = lock(&self.inner);
            if inner.dead.is_none() {
                inner.dead = Some(failure.clone());
            }
            inner.pending.drain().map(|(_, p)| p.waiter).collect()
        };
        for w in waiters {
            let _ = w.send(Err(failure.clone()));
        }
        self.kill.cancel();
    }
}

/// A request's id, its line, and who waits for it to be written.
type Outgoing = (u64, Vec<u8>, oneshot::Sender<std::io::Result<()>>);

/// A running plugin process.
pub(crate) struct Conn {
    shared: Arc<Shared>,
    next_id: AtomicU64,
    writer: mpsc::Sender<Outgoing>,
    pid: Option<u32>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.shared.kill.cancel();
    }
}

impl Conn {
    /// Starts the process. Nothing is exchanged yet.
    pub fn spawn(settings: &PluginSettings, label: &str) -> Result<Conn, PluginError> {
        let Some(program) = settings.command.first().filter(|p| !p.trim().is_empty()) else {
            return Err(PluginError(format!(
                "{label}: its `command` names no program; give the program and its arguments, e.g. \
                 command = [\"python3\", \"tickets.py\"]"
            )));
        };
        let mut command = Command::new(program);
        command
            .args(&settings.command[1..])
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for name in INHERITED {
            if let Some(value) = std::env::var_os(name) {
                command.env(name, value);
            }
        }
        command.envs(&settings.env);
        if let Some(dir) = &settings.dir {
            command.current_dir(dir);
        }
        let mut child = command.spawn().map_err(|e| {
            let place = settings
                .dir
                .as_ref()
                .map(|d| format!(" in {}", d.display()))
                .unwrap_or_default();
            PluginError(format!(
                "{label}: cannot start `{program}`{place}: {e}; check the plugin's `command`"
            ))
        })?;
        let pid = child.id();
        let (Some(stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(PluginError(format!("{label}: its pipes could not be opened")));
        };
        let scrub = Arc::new(Scrub::of(settings));
        let shared = Arc::new(Shared {
            label: label.to_owned(),
            scrub: scrub.clone(),
            inner: Mutex::new(Inner {
                pending: HashMap::new(),
                abandoned: VecDeque::new(),
                dead: None,
            }),
            kill: CancellationToken::new(),
            exit: Mutex::new(None),
            exited: CancellationToken::new(),
            timeouts: std::sync::atomic::AtomicU32::new(0),
        });

        // The child: waits for it to exit, or kills it when told to.
        let keeper = shared.clone();
        tokio::spawn(async move {
            let status = tokio::select! {
                status = child.wait() => status,
                () = keeper.kill.cancelled() => {
                    let _ = child.start_kill();
                    child.wait().await
                }
            };
            let text = match status {
                Ok(s) => describe_exit(s),
                Err(e) => format!("could not be waited for: {e}"),
            };
            *lock(&keeper.exit) = Some(text.clone());
            keeper.exited.cancel();
            // Its output normally ends with it; a process it left behind may hold the pipe open,
            // and the calls in flight must not wait for that. What it wrote before it exited is
            // read first.
            tokio::time::sleep(Duration::from_millis(500)).await;
            keeper.fail(Failure::Gone(text));
        });

        // stdin: one message at a time, each acknowledged once written.
        let (writer, mut outgoing) = mpsc::channel::<Outgoing>(64);
        let mut stdin = stdin;
        let gate = shared.clone();
        tokio::spawn(async move {
            while let Some((id, line, ack)) = outgoing.recv().await {
                // A call given up on while it waited here is never written: it was reported as not
                // sent, and the plugin must not act on it later.
                let wanted = match lock(&gate.inner).pending.get_mut(&id) {
                    Some(p) => {
                        p.written = true;
                        true
                    }
                    None => false,
                };
                if !wanted {
                    let _ = ack.send(Err(std::io::ErrorKind::Interrupted.into()));
                    continue;
                }
                let result = async {
                    stdin.write_all(&line).await?;
                    stdin.flush().await
                }
                .await;
                let _ = ack.send(result);
            }
            // Every sender is gone: closing stdin tells the plugin to finish.
            let _ = stdin.shutdown().await;
        });

        tokio::spawn(read_answers(shared.clone(), stdout, settings.max_message));
        tokio::spawn(forward_stderr(label.to_owned(), stderr, scrub));

        Ok(Conn {
            shared,
            next_id: AtomicU64::new(1),
            writer,
            pid,
        })
    }

    /// The process id, for logs.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// `text` (something the plugin said) with secrets and the values handed to it scrubbed.
    pub fn clean(&self, text: &str) -> String {
        self.shared.scrub.clean(text)
    }

    /// Whether the process is gone (or was stopped for breaking the protocol).
    pub fn is_dead(&self) -> bool {
        lock(&self.shared.inner).dead.is_some()
    }

    /// Stops the process.
    pub fn kill(&self, why: &str) {
        self.shared.fail(Failure::Gone(why.to_owned()));
    }

    /// Waits (at most `max`) until the process has exited.
    pub async fn exited(&self, max: Duration) {
        let _ = tokio::time::timeout(max, self.shared.exited.cancelled()).await;
    }

    /// Sends one request and waits for its answer, at most `timeout`, or until `cancel` fires.
    ///
    /// A call given up on before the writer took it is never written (`NotSent`). One given up
    /// on after it was written is in doubt (`Gone`); when it is a change (`mutating`), the
    /// process is killed, so that nothing it still holds (that call, or requests queued behind
    /// it) is acted on later. A process that lets [`MAX_TIMEOUTS`] calls in a row time out is
    /// killed too.
    pub async fn request(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
        cancel: Option<&CancellationToken>,
        mutating: bool,
    ) -> Result<Reply, Failure> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let mut line = serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .map_err(|e| Failure::NotSent(format!("the request cannot be written as JSON: {e}")))?;
        line.push(b'\n');
        {
            let mut inner = lock(&self.shared.inner);
            if let Some(dead) = &inner.dead {
                return Err(Failure::NotSent(match dead {
                    Failure::NotSent(m) | Failure::Gone(m) | Failure::Violation(m) => m.clone(),
                }));
            }
            inner.pending.insert(
                id,
                Pending {
                    waiter: tx,
                    written: false,
                },
            );
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let never = CancellationToken::new();
        let cancel = cancel.unwrap_or(&never);
        let (ack_tx, ack_rx) = oneshot::channel();
        let write = async {
            match self.writer.send((id, line, ack_tx)).await {
                Ok(()) => ack_rx
                    .await
                    .unwrap_or_else(|_| Err(std::io::ErrorKind::BrokenPipe.into())),
                Err(_) => Err(std::io::ErrorKind::BrokenPipe.into()),
            }
        };
        // A plugin that stops reading its input must not hold the call past its timeout either.
        let written = tokio::select! {
            written = write => written,
            () = tokio::time::sleep_until(deadline) => {
                return Err(self.give_up(id, mutating, true, format!(
                    "it did not read the request within {} (the plugin's `timeout`)",
                    humanize(timeout)
                )));
            }
            () = cancel.cancelled() => {
                return Err(self.give_up(id, mutating, false, "the run was cancelled while the call was being sent".into()));
            }
        };
        if let Err(e) = written {
            lock(&self.shared.inner).pending.remove(&id);
            let why = lock(&self.shared.exit).clone().unwrap_or_else(|| e.to_string());
            return Err(Failure::NotSent(format!("its input is closed ({why})")));
        }
        tokio::select! {
            answer = rx => {
                self.shared.timeouts.store(0, Ordering::Relaxed);
                answer.unwrap_or_else(|_| Err(Failure::Gone("it stopped".into())))
            }
            () = tokio::time::sleep_until(deadline) => {
                Err(self.give_up(id, mutating, true, format!(
                    "it did not answer within {} (the plugin's `timeout`)",
                    humanize(timeout)
                )))
            }
            () = cancel.cancelled() => {
                Err(self.give_up(id, mutating, false, "the run was cancelled while the call was in flight".into()))
            }
        }
    }

    /// Gives up on the call `id`: not sent when the writer never took it; otherwise in doubt,
    /// and the process is killed when the call is a change or it keeps timing out.
    fn give_up(&self, id: u64, mutating: bool, timed_out: bool, why: String) -> Failure {
        let written = {
            let mut inner = lock(&self.shared.inner);
            match inner.pending.remove(&id) {
                Some(p) if !p.written => false,
                Some(_) => {
                    if inner.abandoned.len() >= MAX_ABANDONED {
                        inner.abandoned.pop_front();
                    }
                    inner.abandoned.push_back(id);
                    true
                }
                // Answered or failed meanwhile: it was written.
                None => true,
            }
        };
        if !written {
            return Failure::NotSent(format!("{why}; the call was not sent"));
        }
        let timeouts = if timed_out {
            self.shared.timeouts.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            0
        };
        if mutating {
            tracing::warn!(plugin = %self.shared.label, "stopped: a change was given up on ({why})");
            self.kill("a change was given up on");
        } else if timeouts >= MAX_TIMEOUTS {
            tracing::warn!(plugin = %self.shared.label, "stopped: {timeouts} calls in a row got no answer");
            self.kill("it stopped answering");
        }
        Failure::Gone(why)
    }

    /// Asks the process to stop (`shutdown`), closes its input, and kills it if it has not
    /// exited within `grace`.
    pub async fn shutdown(&self, grace: Duration) {
        if !self.is_dead() {
            let _ = self.request("shutdown", json!({}), grace, None, false).await;
        }
        let deadline = tokio::time::Instant::now() + grace;
        while lock(&self.shared.exit).is_none() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.shared.fail(Failure::NotSent("it was shut down".into()));
    }
}

fn humanize(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

fn describe_exit(status: std::process::ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return format!("it was killed by signal {signal}");
        }
    }
    match status.code() {
        Some(code) => format!("it exited with status {code}"),
        None => "it exited".to_owned(),
    }
}

/// The values handed to one plugin (its `env`, every string of its `config`), scrubbed from what
/// it prints (its stderr, and its output quoted in errors), beside every secret runbook knows.
/// Kept to the plugin's own output: `env = { MODE = "cloudflare" }` must not hide the word
/// everywhere else.
#[derive(Debug, Default)]
pub(crate) struct Scrub {
    /// Longest first, so that a value holding another is scrubbed whole.
    values: Vec<String>,
}

impl Scrub {
    /// Values shorter than this are not scrubbed (`true`, `8080`, `en`): they would hide too much.
    const MIN: usize = 8;

    fn of(settings: &PluginSettings) -> Scrub {
        fn strings(value: &Value, out: &mut Vec<String>) {
            match value {
                Value::String(s) => out.push(s.clone()),
                Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
                Value::Object(map) => map.values().for_each(|v| strings(v, out)),
                _ => {}
            }
        }
        let mut values: Vec<String> = settings.env.values().cloned().collect();
        settings.config.values().for_each(|v| strings(v, &mut values));
        values.retain(|v| v.len() >= Self::MIN);
        values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        values.dedup();
        Scrub { values }
    }

    /// `text` with every secret runbook knows and every value handed to the plugin as `***`.
    fn clean(&self, text: &str) -> String {
        let mut out = redact(text).into_owned();
        for value in &self.values {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), "***");
            }
        }
        out
    }
}

/// What a bounded read of one line found.
enum Line {
    /// A whole line is in the buffer (without its newline).
    Whole,
    /// The stream ended (a partial last line is in the buffer).
    End,
    /// The line is longer than allowed; what was read of it is in the buffer, the rest is not read.
    TooLong,
}

/// Reads one line into `buf`, never holding more than `max` bytes of it.
async fn read_line<R: AsyncBufRead + Unpin>(reader: &mut R, buf: &mut Vec<u8>, max: usize) -> std::io::Result<Line> {
    buf.clear();
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(Line::End);
        }
        if let Some(pos) = available.iter().position(|&b| b == b'\n') {
            if buf.len() + pos > max {
                return Ok(Line::TooLong);
            }
            buf.extend_from_slice(&available[..pos]);
            reader.consume(pos + 1);
            return Ok(Line::Whole);
        }
        let n = available.len();
        if buf.len() + n > max {
            let room = max - buf.len();
            buf.extend_from_slice(&available[..room]);
            reader.consume(room);
            return Ok(Line::TooLong);
        }
        buf.extend_from_slice(available);
        reader.consume(n);
    }
}

/// A short, redacted excerpt of what the plugin wrote, for an error message: redacted whole
/// before it is cut, so no cut leaves the start of a secret.
fn excerpt(bytes: &[u8], scrub: &Scrub) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text: String = text.chars().filter(|c| !c.is_control()).collect();
    let text = scrub.clean(&text);
    let cut: String = text.chars().take(120).collect();
    let more = if text.chars().nth(120).is_some() { "..." } else { "" };
    format!("\"{cut}{more}\"")
}

async fn read_answers(shared: Arc<Shared>, stdout: ChildStdout, max: usize) {
    let mut reader = BufReader::with_capacity(64 << 10, stdout);
    let mut buf = Vec::new();
    let failure = loop {
        let line = match read_line(&mut reader, &mut buf, max).await {
            Ok(line) => line,
            Err(e) => break Failure::Gone(format!("its output could not be read: {e}")),
        };
        match line {
            Line::End => {
                // Give the exit status a moment to arrive, so the message can say how it ended.
                for _ in 0..20 {
                    if lock(&shared.exit).is_some() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                let how = lock(&shared.exit)
                    .clone()
                    .unwrap_or_else(|| "it closed its output".to_owned());
                break Failure::Gone(how);
            }
            Line::TooLong => {
                break Failure::Violation(format!(
                    "it sent a message longer than {max} bytes (the plugin's `max_message`)"
                ));
            }
            Line::Whole => {}
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let message: Value = match serde_json::from_slice(&buf) {
            Ok(v) => v,
            Err(_) => {
                break Failure::Violation(format!(
                    "it wrote {} on its output, which is not a JSON-RPC message (its output is for the protocol \
                     only; write logs to stderr)",
                    excerpt(&buf, &shared.scrub)
                ));
            }
        };
        let Some(object) = message.as_object() else {
            break Failure::Violation(format!(
                "it wrote {}, which is not a JSON-RPC object",
                excerpt(&buf, &shared.scrub)
            ));
        };
        if object.get("id").is_none_or(Value::is_null) && object.contains_key("method") {
            // A notification from the plugin: protocol 1 defines none; ignored.
            tracing::debug!(plugin = %shared.label, "ignored a notification: {}", excerpt(&buf, &shared.scrub));
            continue;
        }
        let Some(id) = object.get("id").and_then(Value::as_u64) else {
            break Failure::Violation(format!(
                "it answered without the request's id: {}",
                excerpt(&buf, &shared.scrub)
            ));
        };
        let reply: Reply = match (object.get("result"), object.get("error")) {
            (_, Some(error)) => Err(error.clone()),
            (Some(result), None) => Ok(result.clone()),
            (None, None) => Ok(Value::Null),
        };
        let waiter = {
            let mut inner = lock(&shared.inner);
            match inner.pending.remove(&id) {
                Some(p) => Ok(p.waiter),
                None => match inner.abandoned.iter().position(|&a| a == id) {
                    Some(i) => {
                        inner.abandoned.remove(i);
                        Err(None)
                    }
                    None => Err(Some(id)),
                },
            }
        };
        match waiter {
            Ok(w) => {
                let _ = w.send(Ok(reply));
            }
            Err(None) => tracing::debug!(plugin = %shared.label, id, "a late answer to a call given up on was dropped"),
            Err(Some(id)) => {
                break Failure::Violation(format!(
                    "it answered id {id}, which is no call waiting for an answer (answered already, or never sent); \
                     its answers cannot be matched to calls"
                ));
            }
        }
        // A large line's buffer is not kept for the small ones after it.
        if buf.capacity() > 256 << 10 {
            buf = Vec::new();
        }
    };
    match &failure {
        Failure::Violation(why) => tracing::warn!(plugin = %shared.label, "stopped: {why}"),
        other => tracing::debug!(plugin = %shared.label, "output ended: {other:?}"),
    }
    shared.fail(failure);
}

async fn forward_stderr(label: String, stderr: ChildStderr, scrub: Arc<Scrub>) {
    let mut reader = BufReader::new(stderr);
    let mut buf = Vec::new();
    loop {
        let line = match read_line(&mut reader, &mut buf, MAX_LOG_LINE + LOG_LINE_MARGIN).await {
            Ok(line) => line,
            Err(_) => return,
        };
        let text = String::from_utf8_lossy(&buf);
        // Redacted whole, then cut: no cut leaves the start of a secret.
        let text = scrub.clean(text.trim_end());
        if !text.is_empty() {
            let long = matches!(line, Line::TooLong) || text.len() > MAX_LOG_LINE;
            let mut end = text.len().min(MAX_LOG_LINE);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            let suffix = if long { " [line cut]" } else { "" };
            tracing::info!(plugin = %label, "{}{suffix}", &text[..end]);
        }
        match line {
            Line::End => return,
            Line::Whole => {}
            Line::TooLong => {
                // Skip the rest of the long line.
                loop {
                    let Ok(available) = reader.fill_buf().await else { return };
                    if available.is_empty() {
                        return;
                    }
                    if let Some(pos) = available.iter().position(|&b| b == b'\n') {
                        reader.consume(pos + 1);
                        break;
                    }
                    let n = available.len();
                    reader.consume(n);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_read_within_the_bound() {
        let data: &[u8] = b"{\"a\":1}\nxxxxxxxxxxxxxxxxxxxx\n";
        let mut reader = BufReader::with_capacity(4, data);
        let mut buf = Vec::new();
        assert!(matches!(
            read_line(&mut reader, &mut buf, 10).await.unwrap(),
            Line::Whole
        ));
        assert_eq!(buf, b"{\"a\":1}");
        assert!(matches!(
            read_line(&mut reader, &mut buf, 10).await.unwrap(),
            Line::TooLong
        ));
        assert!(buf.len() <= 10);
    }

    #[test]
    fn an_excerpt_cut_inside_a_secret_shows_none_of_it() {
        runbook_core::remember("conn-excerpt-secret-987654321");
        let line = format!("{}conn-excerpt-secret-987654321 more", "x".repeat(110));
        let shown = excerpt(line.as_bytes(), &Scrub::default());
        assert!(!shown.contains("conn-exc"), "{shown}");
    }

    /// A call given up on while it waited behind another is never written to the plugin.
    #[cfg(unix)]
    #[tokio::test]
    async fn a_call_given_up_on_before_it_is_written_is_never_written() {
        let out = std::env::temp_dir().join(format!("runbook-plugin-writer-{}", std::process::id()));
        let _ = std::fs::remove_file(&out);
        // Reads nothing for a second, then copies what it was sent to a file.
        let mut settings = PluginSettings::new(vec!["sh".into(), "-c".into(), "sleep 1; cat > \"$OUT\"".into()]);
        settings.env.insert("OUT".into(), out.display().to_string());
        let conn = Conn::spawn(&settings, "t").unwrap();
        // A request larger than the pipe holds: the writer is busy with it until the plugin reads.
        let big = "x".repeat(1 << 20);
        let first = conn
            .request("call", json!({"big": big}), Duration::from_millis(300), None, false)
            .await;
        assert!(matches!(first, Err(Failure::Gone(_))), "{first:?}");
        let second = conn
            .request(
                "call",
                json!({"marker": "second-call"}),
                Duration::from_millis(300),
                None,
                false,
            )
            .await;
        assert!(
            matches!(&second, Err(Failure::NotSent(m)) if m.contains("not sent")),
            "{second:?}"
        );
        // Once the plugin reads, the first request reaches it, and the second never does.
        for _ in 0..100 {
            if std::fs::metadata(&out).is_ok_and(|m| m.len() > 1 << 20) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let sent = std::fs::read_to_string(&out).unwrap_or_default();
        let _ = std::fs::remove_file(&out);
        assert!(sent.len() > 1 << 20, "the first request was not written");
        assert!(!sent.contains("second-call"), "the call given up on was written");
    }

    #[tokio::test]
    async fn a_mutating_call_given_up_on_kills_the_process() {
        let settings = PluginSettings::new(vec!["sleep".into(), "30".into()]);
        let conn = Conn::spawn(&settings, "t").unwrap();
        let answer = conn
            .request("call", json!({}), Duration::from_millis(200), None, true)
            .await;
        assert!(matches!(answer, Err(Failure::Gone(_))), "{answer:?}");
        assert!(conn.is_dead());
        conn.exited(Duration::from_secs(5)).await;
        assert!(
            lock(&conn.shared.exit)
                .as_deref()
                .is_some_and(|e| e.contains("signal 9"))
        );
    }

    #[test]
    fn what_a_plugin_was_handed_is_scrubbed_from_what_it_prints() {
        let mut settings = PluginSettings::new(vec!["x".into()]);
        settings.env.insert("REGION".into(), "plain-env-value-31".into());
        settings.env.insert("MODE".into(), "short".into());
        settings.config = serde_json::from_value(json!({"auth": {"token": "nested-config-value-77"}})).unwrap();
        let scrub = Scrub::of(&settings);
        assert_eq!(
            scrub.clean("env plain-env-value-31, token nested-config-value-77, mode short"),
            "env ***, token ***, mode short"
        );
    }

    #[tokio::test]
    async fn a_plugin_that_keeps_timing_out_is_killed() {
        let settings = PluginSettings::new(vec!["sleep".into(), "30".into()]);
        let conn = Conn::spawn(&settings, "t").unwrap();
        for i in 1..=MAX_TIMEOUTS {
            assert!(!conn.is_dead(), "killed after {} reads timed out", i - 1);
            let answer = conn
                .request("call", json!({}), Duration::from_millis(100), None, false)
                .await;
            assert!(matches!(answer, Err(Failure::Gone(_))), "{answer:?}");
        }
        assert!(conn.is_dead(), "still running after {MAX_TIMEOUTS} timeouts in a row");
    }

    #[test]
    fn an_empty_command_is_refused() {
        let e = Conn::spawn(&PluginSettings::new(vec![]), "t").err().unwrap();
        assert!(e.0.contains("names no program"), "{}", e.0);
    }
}
