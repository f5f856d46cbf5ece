//! Test support shared by the crates of enroll.

pub mod conformance;
pub mod keys;
pub mod proxy;
pub mod smtp;
pub mod upgrades;
