//! Retention and position records: dropping what a channel's policy no longer serves,
//! deleting the oldest segments nothing references (after carrying the positions of quiet
//! channels forward), and `remove` (API `history_remove`), which keeps a channel's position.

use std::collections::VecDeque;
use std::sync::Arc;

use super::error::HistoryError;
use super::expiry::ExpirySchedule;
use super::flush::FlushJob;
use super::index::{entry_ordinal, Channel, ChannelSlot, Segments, NOT_SCHEDULED};
use super::record::{Fields, KIND_POSITION};
use super::HistoryLog;

impl HistoryLog {
    /// Drops the channel's stored publications but keeps its position: appends a position
    /// record (so the top survives a restart) and empties the index. Unknown channels have
    /// nothing to drop.
    pub fn remove(&mut self, channel: &str, time_ms: u64) -> Result<(), HistoryError> {
        let Some(slot) = self.channels.slot(channel) else {
            return Ok(());
        };
        let top = self.channels.at(slot).top;
        let at = self.write_position(channel, top, time_ms)?;
        self.land();
        let ch = self.channels.at_mut(slot);
        self.indexed -= ch.clear(&mut self.segs);
        ch.last_segment = entry_ordinal(at);
        Ok(())
    }

    fn write_position(
        &mut self,
        channel: &str,
        top: u64,
        time_ms: u64,
    ) -> Result<u64, HistoryError> {
        self.write_record(&Fields {
            kind: KIND_POSITION,
            channel,
            offset: top,
            time_ms,
            data: &[],
            info: &[],
            tags: &[],
        })
    }

    /// Retention: drops index entries past their channel's ttl (visiting only the channels
    /// the expiry schedule has due), then retires the oldest
    /// segments (never the head) that no index entry references: they leave the log now, and
    /// the returned job deletes their files. Channels whose last record lies in such a segment
    /// first get a position record at the head, and the job syncs those before any file goes:
    /// otherwise a crash could lose a quiet channel's top without an epoch change. The job is
    /// blocking (run it off the shard), and jobs of one log run one after another, in order:
    /// the files left must stay contiguous.
    pub fn retain(&mut self, now_ms: u64) -> Result<Option<FlushJob>, HistoryError> {
        for (bucket, slots) in self.expiry.take_due(now_ms) {
            for slot in slots {
                let ch = self.channels.at_mut(slot);
                if ch.due != bucket {
                    continue; // stale: scheduled again since, or never re-added
                }
                ch.due = NOT_SCHEDULED;
                let Some(cutoff) = ch.cutoff(now_ms) else {
                    continue;
                };
                let mut front = None;
                while let Some(&at) = ch.entries.front() {
                    // Unreadable entries cannot be served: drop them like expired ones.
                    match self.segs.record(self.partition, at) {
                        Ok(record) if record.time_ms >= cutoff => {
                            front = Some(record.time_ms);
                            break;
                        }
                        _ => {}
                    }
                    ch.pop_front(&mut self.segs);
                    self.indexed -= 1;
                }
                if ch.entries.is_empty() {
                    ch.entries = VecDeque::new();
                }
                schedule_expiry(&mut self.expiry, slot, ch, front);
            }
        }
        let heads = self.segs.list.len().saturating_sub(1);
        let doomed = self
            .segs
            .list
            .iter()
            .take(heads)
            .take_while(|seg| seg.refs == 0)
            .count();
        if doomed == 0 {
            return Ok(None);
        }
        let first = self.segs.first_ordinal;
        let carried: Vec<(ChannelSlot, Arc<str>, u64)> = self
            .channels
            .iter_mut()
            .filter(|(_, ch)| (ch.last_segment.wrapping_sub(first) as usize) < doomed)
            .map(|(slot, ch)| (slot, ch.name.clone(), ch.top))
            .collect();
        for (slot, name, top) in &carried {
            let at = self.write_position(name, *top, now_ms)?;
            self.channels.at_mut(*slot).last_segment = entry_ordinal(at);
        }
        self.land();
        let mut job = if carried.is_empty() {
            FlushJob::default()
        } else {
            self.unsynced()
        };
        for _ in 0..doomed {
            let Some(seg) = self.segs.list.pop_front() else {
                break;
            };
            self.segs.first_ordinal = self.segs.first_ordinal.wrapping_add(1);
            job.retired.push(seg.mapping.clone());
        }
        Ok(Some(job))
    }
}

/// The time of `ch`'s oldest indexed publication (`None`: no entries, or unreadable: the
/// next expiry visit drops it).
pub(super) fn front_time(segs: &Segments, partition: u32, ch: &Channel) -> Option<u64> {
    let &at = ch.entries.front()?;
    segs.record(partition, at).ok().map(|record| record.time_ms)
}

/// Puts `ch` in the expiry schedule for when its oldest publication (written at `front_ms`)
/// expires, unless it is scheduled no later already or nothing of it can expire. A front
/// that could not be read is visited at once (the next pass drops it).
pub(super) fn schedule_expiry(
    expiry: &mut ExpirySchedule,
    slot: ChannelSlot,
    ch: &mut Channel,
    front_ms: Option<u64>,
) {
    if !ch.expires() {
        return;
    }
    let due_ms = front_ms.map_or(0, |front| front.saturating_add(ch.ttl_ms));
    let bucket = ExpirySchedule::bucket_of(due_ms);
    if ch.due != NOT_SCHEDULED && ch.due <= bucket {
        return;
    }
    ch.due = bucket;
    expiry.add(bucket, slot);
}
