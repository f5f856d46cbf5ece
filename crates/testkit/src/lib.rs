//! Test support shared by the crates of enroll.

pub mod conformance;
pub mod smtp;
