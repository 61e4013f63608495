//! End-to-end tests: the `runbook` binary, and the providers over real HTTP against the
//! simulators.

#![allow(clippy::unwrap_used)]

mod api;
mod approvals;
mod cli;
mod cloudflare;
mod cluster;
mod console;
mod console_browser;
mod durable;
mod engine;
mod fixtures;
mod http;
mod limits;
mod mistakes;
mod plans;
mod plugins;
mod policy;
mod privx;
mod records;
mod resume;
mod runs;
mod scripts;
mod serve;
mod sim;
mod support;
mod webhooks;
