//! Failed logins counted per client address, in this instance's memory: a second line behind
//! the per-account count the store keeps, against one client guessing across many accounts.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::clock::Timestamp;
use crate::policy::Policy;

/// How many clients are remembered at most; past it, those whose window ended are forgotten
/// first, then the oldest.
const MAX_CLIENTS: usize = 100_000;

#[derive(Debug, Default)]
pub struct ClientFailures {
    /// Failures and when their window ends, by client address.
    counts: Mutex<HashMap<String, (u32, Timestamp)>>,
}

impl ClientFailures {
    /// How long `client` must wait, if its failures reached the limit within their window.
    pub fn refused(&self, client: &str, now: Timestamp, policy: &Policy) -> Option<Duration> {
        let counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let &(failures, ends) = counts.get(client)?;
        (failures >= policy.login_max_failures_per_client && ends > now).then(|| now.until(ends))
    }

    pub fn count(&self, client: &str, now: Timestamp, policy: &Policy) {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if counts.len() >= MAX_CLIENTS && !counts.contains_key(client) {
            counts.retain(|_, (_, ends)| *ends > now);
            if counts.len() >= MAX_CLIENTS
                && let Some(oldest) = counts
                    .iter()
                    .min_by_key(|(_, (_, ends))| *ends)
                    .map(|(client, _)| client.clone())
            {
                counts.remove(&oldest);
            }
        }
        let entry = counts
            .entry(client.to_owned())
            .or_insert((0, now.plus(policy.login_failure_window)));
        if entry.1 <= now {
            *entry = (0, now.plus(policy.login_failure_window));
        }
        entry.0 += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp::from_millis(1_800_000_000_000);

    #[test]
    fn a_client_is_refused_after_its_failures_until_the_window_ends() {
        let policy = Policy::default();
        let failures = ClientFailures::default();
        for _ in 0..policy.login_max_failures_per_client {
            assert_eq!(failures.refused("10.0.0.1", NOW, &policy), None);
            failures.count("10.0.0.1", NOW, &policy);
        }
        assert_eq!(
            failures.refused("10.0.0.1", NOW, &policy),
            Some(policy.login_failure_window)
        );
        assert_eq!(
            failures.refused("10.0.0.2", NOW, &policy),
            None,
            "per client"
        );
        let later = NOW.plus(policy.login_failure_window);
        assert_eq!(failures.refused("10.0.0.1", later, &policy), None);
        failures.count("10.0.0.1", later, &policy);
        assert_eq!(
            failures.refused("10.0.0.1", later, &policy),
            None,
            "a new window"
        );
    }
}
