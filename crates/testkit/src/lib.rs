//! Test support shared by the crates of enroll.

pub mod conformance;
pub mod keys;
pub mod smtp;
