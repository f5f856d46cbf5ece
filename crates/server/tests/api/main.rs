//! Black-box tests: the real server on port 0, real SQLite and PostgreSQL, a real SMTP server,
//! and the real client SDKs. One test binary for the crate.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test that cannot go on should stop loudly"
)]

mod atomicity;
mod cli;
mod cluster;
mod dfns_auth;
mod dfns_resend;
mod enumeration;
mod faults;
mod helpers;
mod mail;
mod openapi;
mod ops;
mod pages;
mod permissions;
mod races;
mod replay;
mod sdk;
mod secrets;
mod security_log;
mod singularity;
mod volume;
mod zitadel;
mod zitadel_wire;
