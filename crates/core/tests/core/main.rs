//! runbook-core's integration tests: a test provider (`dir`) over real HTTP against a loopback
//! directory service.

#![allow(clippy::unwrap_used, clippy::new_ret_no_self)]

mod bounds;
mod check;
mod journal;
mod provider;
mod records;
mod runs;
mod script;
mod server;
mod transport;

use runbook_core::{Engine, RunError, RunOptions, RunOutcome};
use server::Directory;

/// The token the test directory accepts.
pub const TOKEN: &str = "dir-token-0f9e8d7c6b5a";

/// A directory with `users` users, and an engine with the `dir` provider pointed at it.
pub async fn setup(users: usize) -> (Directory, Engine) {
    let dir = Directory::start(TOKEN, users).await;
    let engine = Engine::builder()
        .provider(provider::Dir::new(&dir.url, TOKEN))
        .build()
        .unwrap();
    (dir, engine)
}

/// Runs a script.
pub async fn run(engine: &Engine, script: &str, options: RunOptions) -> Result<RunOutcome, RunError> {
    engine.run(script, options).await
}
