//! Fault points for crash tests: with the `fault-injection` feature (test builds only), the
//! environment variable `RUNBOOK_FAULT=POINT@STEP` kills the process with SIGKILL when the run
//! reaches that point of that step (`after-intent@3`). Points of a write: `before-intent` (its
//! intent is about to be committed), `after-intent` (committed, not sent), `after-send` (it
//! reached the service, its answer is not read yet), `after-answer` (answered, the outcome not
//! committed). Points of any other record (a read's answer, `now()`, `state::`, `parallel`, a
//! write's outcome): `before-record` and `after-record`. Without the feature every point is an
//! empty inline function.

#[cfg(feature = "fault-injection")]
pub(crate) fn point(name: &str, step: &str) {
    use std::sync::OnceLock;
    static WANTED: OnceLock<Option<String>> = OnceLock::new();
    let Some(wanted) = WANTED.get_or_init(|| std::env::var("RUNBOOK_FAULT").ok()) else {
        return;
    };
    if wanted.split_once('@') == Some((name, step)) {
        eprintln!("fault point {wanted}: killing the process");
        let pid = std::process::id().to_string();
        let _ = std::process::Command::new("kill").args(["-KILL", &pid]).status();
        loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }
}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub(crate) fn point(_name: &str, _step: &str) {}
