//! The domain of `enroll`: organisations, users, one-time codes, cooldowns, nonces and the
//! outbox, with the rules every face obeys. Nothing here does I/O: stores, mail and faces sit
//! around it behind the traits of [`ports`], and time comes from a [`clock::Clock`].
//!
//! The rules are pure decisions ([`rules`]): a store loads the state a command needs, calls the
//! decision inside one transaction, and applies the writes it returns.

pub mod audit;
pub mod clock;
pub mod code;
pub mod credential;
pub mod delivery;
pub mod email;
pub mod error;
pub mod hex;
pub mod ids;
pub mod model;
pub mod nonce;
pub mod password;
pub mod policy;
pub mod ports;
pub mod random;
pub mod rules;
pub mod secret;
pub mod service;
pub mod throttle;
pub mod token;
pub mod url_template;

pub use error::{Error, Result};
