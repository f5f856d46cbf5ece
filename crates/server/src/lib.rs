//! The `enroll` server: configuration, the HTTP faces over the core, and the commands of the
//! `enroll` binary.

pub mod bootstrap;
pub mod cli;
pub mod commands;
pub mod config;
pub mod faces;
pub mod metrics;
pub mod openapi;
pub mod ops;
pub mod pacing;
pub mod pages;
pub mod router;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod tls;
