//! Counts per key (a client address, an organisation) within fixed windows, in this instance's
//! memory: a second line behind the counts the store keeps for every instance, against one
//! client guessing across many accounts or sending to many addresses.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::clock::Timestamp;

/// How many keys are remembered at most; past it, those whose window ended are forgotten
/// first, then the oldest.
const MAX_KEYS: usize = 100_000;

/// How many events a key may have within a window; none means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub events: u32,
    pub window: Duration,
}

#[derive(Debug, Default)]
pub struct WindowCounts {
    /// Events and when their window ends, by key.
    counts: Mutex<HashMap<String, (u32, Timestamp)>>,
}

impl WindowCounts {
    /// How long `key` must wait, if its events reached the limit within their window.
    pub fn refused(&self, key: &str, now: Timestamp, limit: Limit) -> Option<Duration> {
        if limit.events == 0 {
            return None;
        }
        let counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let &(events, ends) = counts.get(key)?;
        (events >= limit.events && ends > now).then(|| now.until(ends))
    }

    pub fn count(&self, key: &str, now: Timestamp, limit: Limit) {
        if limit.events == 0 {
            return;
        }
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if counts.len() >= MAX_KEYS && !counts.contains_key(key) {
            counts.retain(|_, (_, ends)| *ends > now);
            if counts.len() >= MAX_KEYS
                && let Some(oldest) = counts
                    .iter()
                    .min_by_key(|(_, (_, ends))| *ends)
                    .map(|(key, _)| key.clone())
            {
                counts.remove(&oldest);
            }
        }
        let entry = counts
            .entry(key.to_owned())
            .or_insert((0, now.plus(limit.window)));
        if entry.1 <= now {
            *entry = (0, now.plus(limit.window));
        }
        entry.0 += 1;
    }

    /// Counts an event of `key` unless the limit was reached: how long to wait, if so.
    pub fn admit(&self, key: &str, now: Timestamp, limit: Limit) -> Result<(), Duration> {
        match self.refused(key, now, limit) {
            Some(wait) => Err(wait),
            None => {
                self.count(key, now, limit);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp::from_millis(1_800_000_000_000);
    const LIMIT: Limit = Limit {
        events: 20,
        window: Duration::from_secs(900),
    };

    #[test]
    fn a_key_is_refused_after_its_events_until_the_window_ends() {
        let counts = WindowCounts::default();
        for _ in 0..LIMIT.events {
            assert_eq!(counts.refused("10.0.0.1", NOW, LIMIT), None);
            counts.count("10.0.0.1", NOW, LIMIT);
        }
        assert_eq!(counts.refused("10.0.0.1", NOW, LIMIT), Some(LIMIT.window));
        assert_eq!(counts.refused("10.0.0.2", NOW, LIMIT), None, "per key");
        let later = NOW.plus(LIMIT.window);
        assert_eq!(counts.refused("10.0.0.1", later, LIMIT), None);
        counts.count("10.0.0.1", later, LIMIT);
        assert_eq!(
            counts.refused("10.0.0.1", later, LIMIT),
            None,
            "a new window"
        );
    }

    #[test]
    fn admitting_counts_only_what_it_admits() {
        let counts = WindowCounts::default();
        let limit = Limit { events: 2, ..LIMIT };
        assert_eq!(counts.admit("k", NOW, limit), Ok(()));
        assert_eq!(counts.admit("k", NOW, limit), Ok(()));
        assert_eq!(counts.admit("k", NOW, limit), Err(LIMIT.window));
        let soon = NOW.plus(Duration::from_secs(100));
        assert_eq!(
            counts.admit("k", soon, limit),
            Err(Duration::from_secs(800)),
            "the window does not move"
        );
    }
}
