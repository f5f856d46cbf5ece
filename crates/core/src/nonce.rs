//! Request nonces: fresh by date, single use by a unique key in the store.

use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use serde::Deserialize;

use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::policy::Policy;

/// What older Dfns SDKs put in `X-DFNS-NONCE`, base64url-encoded.
#[derive(Deserialize)]
struct NonceBody {
    uuid: String,
    date: String,
}

/// A nonce a client sent: a random key and the date it was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nonce {
    pub key: String,
    pub date: Timestamp,
}

impl Nonce {
    /// Reads `X-DFNS-NONCE`: `base64url(JSON {"uuid", "date"})`, padded or not.
    pub fn from_header(text: &str) -> Result<Self> {
        let text = text.trim();
        let bytes = URL_SAFE_NO_PAD
            .decode(text.trim_end_matches('='))
            .or_else(|_| URL_SAFE.decode(text))
            .map_err(|_| Error::NonceInvalid)?;
        let body: NonceBody = serde_json::from_slice(&bytes).map_err(|_| Error::NonceInvalid)?;
        let date = Timestamp::parse_rfc3339(&body.date).ok_or(Error::NonceInvalid)?;
        Ok(Self {
            key: body.uuid,
            date,
        })
    }

    /// Refuses a key too short to be random, and a date outside the window around `now`.
    pub fn check(&self, now: Timestamp, policy: &Policy) -> Result<()> {
        let key_ok = (13..=128).contains(&self.key.len())
            && self
                .key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        let fresh = self.date >= now.minus(policy.nonce_window)
            && self.date <= now.plus(policy.nonce_window);
        if key_ok && fresh {
            Ok(())
        } else {
            Err(Error::NonceInvalid)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn nonce(date: Timestamp) -> Nonce {
        Nonce {
            key: "8d3a5b2e-1c4f-4e1a-9b7d-2f6c8e0a1b3c".to_owned(),
            date,
        }
    }

    #[test]
    fn dates_inside_the_window_pass_and_outside_fail() {
        let now = Timestamp::from_millis(1_700_000_000_000);
        let policy = Policy::default();
        let edge = Duration::from_secs(299);
        assert!(nonce(now.minus(edge)).check(now, &policy).is_ok());
        assert!(nonce(now.plus(edge)).check(now, &policy).is_ok());
        let beyond = Duration::from_secs(301);
        assert!(matches!(
            nonce(now.minus(beyond)).check(now, &policy),
            Err(Error::NonceInvalid)
        ));
        assert!(matches!(
            nonce(now.plus(beyond)).check(now, &policy),
            Err(Error::NonceInvalid)
        ));
    }

    #[test]
    fn short_or_odd_keys_fail() {
        let now = Timestamp::from_millis(0);
        let short = Nonce {
            key: "abc".to_owned(),
            date: now,
        };
        assert!(short.check(now, &Policy::default()).is_err());
        let odd = Nonce {
            key: "abcdefghijklmn'; --".to_owned(),
            date: now,
        };
        assert!(odd.check(now, &Policy::default()).is_err());
    }
}
