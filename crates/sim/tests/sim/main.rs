//! Tests of the simulators as their users meet them: real HTTP over loopback.

mod cloudflare;
mod fixture;
mod knobs;
mod privx;
mod privx_access;
mod support;
mod tls;
