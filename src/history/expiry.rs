//! `ExpirySchedule`: when each channel's oldest indexed publication passes its ttl, so
//! retention visits only the channels that have something to expire instead of walking every
//! channel the partition knows (a node keeps millions of quiet channels).
//!
//! A channel has one live entry at most, in the bucket of its oldest entry's expiry or an
//! earlier one: its `Channel::due` names that bucket, and an entry in another bucket is stale
//! and skipped (a stale one may share the live one's bucket; the first visit clears `due`, so
//! the second is skipped too). The front of a channel only ever moves to newer
//! entries (appends go to the back; trims and expiry pop the front), so an earlier bucket is
//! never wrong, only early: the visit finds nothing expired and schedules the channel again.
//! Owns only the map; the log decides what a visit does.

use std::collections::BTreeMap;

use super::index::{Bucket, ChannelSlot, NOT_SCHEDULED};
use crate::limits::HISTORY_EXPIRY_BUCKET_MS;

#[derive(Debug, Default)]
pub struct ExpirySchedule {
    buckets: BTreeMap<Bucket, Vec<ChannelSlot>>,
}

impl ExpirySchedule {
    /// The bucket an expiry at `due_ms` falls in: the first whose end is not before it, so a
    /// channel is never visited before its entry expired.
    pub fn bucket_of(due_ms: u64) -> Bucket {
        (due_ms / HISTORY_EXPIRY_BUCKET_MS) + 1
    }

    /// Puts `channel` in `bucket`; the caller stores the bucket in the channel's `due`.
    pub fn add(&mut self, bucket: Bucket, channel: ChannelSlot) {
        debug_assert_ne!(bucket, NOT_SCHEDULED);
        self.buckets.entry(bucket).or_default().push(channel);
    }

    /// Takes every bucket that ends at or before `now_ms`, with the channels in each (stale
    /// ones included: the caller compares with their `due`).
    pub fn take_due(&mut self, now_ms: u64) -> Vec<(Bucket, Vec<ChannelSlot>)> {
        let open = Self::bucket_of(now_ms);
        let later = self.buckets.split_off(&open);
        std::mem::replace(&mut self.buckets, later)
            .into_iter()
            .collect()
    }

    /// Channels scheduled, stale entries included.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.buckets.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::index::ChannelTable;
    use std::sync::Arc;

    #[test]
    fn buckets_are_taken_only_once_their_whole_span_has_passed() {
        let mut schedule = ExpirySchedule::default();
        let mut table = ChannelTable::default();
        let (slot_a, slot_b) = (table.insert(&Arc::from("a")), table.insert(&Arc::from("b")));
        let span = HISTORY_EXPIRY_BUCKET_MS;
        let a = ExpirySchedule::bucket_of(10 * span + 1);
        let b = ExpirySchedule::bucket_of(12 * span);
        schedule.add(a, slot_a);
        schedule.add(b, slot_b);
        assert_eq!(schedule.len(), 2);
        assert!(
            schedule.take_due(10 * span + 1).is_empty(),
            "a is due later"
        );
        let due = schedule.take_due(11 * span);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].1, [slot_a]);
        // b's expiry (12 spans) lies in the bucket that ends at 13 spans.
        assert!(schedule.take_due(12 * span).is_empty());
        assert_eq!(schedule.take_due(13 * span).len(), 1);
        assert_eq!(schedule.len(), 0);
        assert_ne!(ExpirySchedule::bucket_of(0), NOT_SCHEDULED);
    }
}
