//! `IdempotentResults`: the results of API publications that carried an `idempotency_key`,
//! kept by the channel's owner for `IDEMPOTENCY_WINDOW_MS`: a publication to the same channel
//! with the same key within the window publishes nothing and answers the first result (as
//! Centrifugo's idempotent publish). At most `IDEMPOTENCY_KEYS_MAX` keys per shard, the
//! oldest dropped first.
//!
//! Owns only its map; the shard's publish path asks it.

use std::collections::{HashMap, VecDeque};

use crate::limits::{IDEMPOTENCY_KEYS_MAX, IDEMPOTENCY_WINDOW_MS};
use crate::router::msg::Position;

#[derive(Debug, Default)]
pub struct IdempotentResults {
    /// By key, then channel (two levels, so a lookup builds no composite key).
    results: HashMap<Box<str>, HashMap<Box<str>, Option<Position>>>,
    /// (key, channel, when stored), oldest first: their expiry order.
    order: VecDeque<(Box<str>, Box<str>, u64)>,
}

impl IdempotentResults {
    /// The first result of (`channel`, `key`), if it is still within the window at `now_ms`.
    pub fn get(&mut self, channel: &str, key: &str, now_ms: u64) -> Option<Option<Position>> {
        self.expire(now_ms);
        self.results.get(key)?.get(channel).cloned()
    }

    /// Keeps the result of a publication that carried `key`.
    pub fn insert(&mut self, channel: &str, key: &str, position: Option<Position>, now_ms: u64) {
        self.expire(now_ms);
        if self
            .results
            .get(key)
            .is_some_and(|c| c.contains_key(channel))
        {
            return;
        }
        while self.order.len() >= IDEMPOTENCY_KEYS_MAX {
            self.drop_oldest();
        }
        self.results
            .entry(key.into())
            .or_default()
            .insert(channel.into(), position);
        self.order.push_back((key.into(), channel.into(), now_ms));
    }

    /// Drops what left the window.
    fn expire(&mut self, now_ms: u64) {
        // Bounded by the keys stored.
        while self
            .order
            .front()
            .is_some_and(|(_, _, at)| at.saturating_add(IDEMPOTENCY_WINDOW_MS) <= now_ms)
        {
            self.drop_oldest();
        }
    }

    fn drop_oldest(&mut self) {
        let Some((key, channel, _)) = self.order.pop_front() else {
            return;
        };
        if let Some(channels) = self.results.get_mut(&key) {
            channels.remove(&channel);
            if channels.is_empty() {
                self.results.remove(&key);
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU64;

    fn at(offset: u64) -> Option<Position> {
        Some(Position {
            offset: NonZeroU64::new(offset).unwrap(),
            epoch: "e".into(),
        })
    }

    #[test]
    fn a_key_answers_its_first_result_within_the_window_only() {
        let mut store = IdempotentResults::default();
        assert_eq!(store.get("c", "k", 0), None);
        store.insert("c", "k", at(1), 0);
        store.insert("c", "k", at(2), 1);
        assert_eq!(store.get("c", "k", 10), Some(at(1)), "the first result");
        assert_eq!(store.get("other", "k", 10), None, "keys are per channel");
        assert_eq!(
            store.get("c", "k", IDEMPOTENCY_WINDOW_MS),
            None,
            "out of the window"
        );
        assert_eq!(store.len(), 0);
    }

    #[test]
    fn the_store_is_bounded() {
        let mut store = IdempotentResults::default();
        for i in 0..IDEMPOTENCY_KEYS_MAX + 10 {
            store.insert("c", &i.to_string(), None, 0);
        }
        assert_eq!(store.len(), IDEMPOTENCY_KEYS_MAX);
        assert_eq!(store.get("c", "0", 0), None, "the oldest went first");
        assert_eq!(store.get("c", "10", 0), Some(None));
    }
}
