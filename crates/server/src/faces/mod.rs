//! The APIs `enroll` speaks. A face parses its wire format into core calls and maps the core's
//! answers and errors back; it holds no rule of its own.

pub mod dev;
pub mod dfns;
