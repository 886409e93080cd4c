//! Retention and position records: dropping what a channel's policy no longer serves and the
//! positions whose meta ttl ran out (raising the partition's floor above them), deleting the
//! oldest segments nothing references (after carrying the positions of quiet channels and the
//! floor forward), and `remove` (API `history_remove`), which keeps a channel's position.

use std::collections::VecDeque;
use std::sync::Arc;

use super::error::HistoryError;
use super::expiry::ExpirySchedule;
use super::flush::FlushJob;
use super::index::{entry_ordinal, Channel, ChannelSlot, Segments, NOT_SCHEDULED};
use super::record::{Fields, KIND_FLOOR, KIND_POSITION};
use super::HistoryLog;
use crate::limits::HISTORY_META_HELD_RECHECK_MS;

impl HistoryLog {
    /// Drops the channel's stored publications but keeps its position: appends a position
    /// record (so the top survives a restart; it keeps the last publication's time, from
    /// which the meta ttl counts) and empties the index. Unknown channels have nothing to
    /// drop.
    pub fn remove(&mut self, channel: &str) -> Result<(), HistoryError> {
        let Some(slot) = self.channels.slot(channel) else {
            return Ok(());
        };
        let (top, last_ms) = {
            let ch = self.channels.at(slot);
            (ch.top, ch.last_ms)
        };
        let at = self.write_position(channel, top, last_ms)?;
        self.land();
        let ch = self.channels.at_mut(slot);
        self.indexed -= ch.clear(&mut self.segs);
        ch.last_segment = entry_ordinal(at);
        schedule_expiry(&mut self.expiry, slot, ch, None);
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

    /// Retention: drops index entries past their channel's ttl and the positions of channels
    /// past their meta ttl (visiting only the channels the expiry schedule has due; a channel
    /// `held(name)` by its owner keeps its position and is looked at again later), then
    /// retires the oldest segments (never the head) that no index entry references: they leave
    /// the log now, and the returned job deletes their files. Channels whose last record lies
    /// in such a segment first get a position record at the head, as does the floor when it
    /// rose or its record is going, and the job syncs those before any file goes: otherwise a
    /// crash could lose a quiet channel's top, or a dropped one's, without an epoch change.
    /// The job is blocking (run it off the shard), and jobs of one log run one after another,
    /// in order: the files left must stay contiguous.
    pub fn retain(
        &mut self,
        now_ms: u64,
        held: impl Fn(&str) -> bool,
    ) -> Result<Option<FlushJob>, HistoryError> {
        let mut dropped = Vec::new();
        for (bucket, slots) in self.expiry.take_due(now_ms) {
            for slot in slots {
                let Some(ch) = self.channels.live_mut(slot) else {
                    continue; // dropped since it was scheduled
                };
                if ch.due != bucket {
                    continue; // stale: scheduled again since, or never re-added
                }
                ch.due = NOT_SCHEDULED;
                let mut front = None;
                if let Some(cutoff) = ch.cutoff(now_ms) {
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
                }
                if ch.entries.is_empty() {
                    ch.entries = VecDeque::new();
                }
                if ch.meta_expired(now_ms) {
                    if held(&ch.name) {
                        ch.due = ExpirySchedule::bucket_of(now_ms + HISTORY_META_HELD_RECHECK_MS);
                        self.expiry.add(ch.due, slot);
                    } else {
                        dropped.push(slot);
                    }
                    continue;
                }
                schedule_expiry(&mut self.expiry, slot, ch, front);
            }
        }
        for slot in dropped {
            if let Some(ch) = self.channels.remove(slot) {
                self.floor = self.floor.max(ch.top);
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
        let going = |ordinal: u32| (ordinal.wrapping_sub(first) as usize) < doomed;
        let carried: Vec<(ChannelSlot, Arc<str>, u64, u64)> = self
            .channels
            .iter_mut()
            .filter(|(_, ch)| going(ch.last_segment))
            .map(|(slot, ch)| (slot, ch.name.clone(), ch.top, ch.last_ms))
            .collect();
        for (slot, name, top, last_ms) in &carried {
            // The last publication's time, so the meta ttl counts from it after a restart.
            let at = self.write_position(name, *top, *last_ms)?;
            self.channels.at_mut(*slot).last_segment = entry_ordinal(at);
        }
        let floor_moves = self.floor > 0
            && self
                .floor_written
                .is_none_or(|(value, ordinal)| value < self.floor || going(ordinal));
        if floor_moves {
            let at = self.write_record(&Fields {
                kind: KIND_FLOOR,
                channel: "",
                offset: self.floor,
                time_ms: now_ms,
                data: &[],
                info: &[],
                tags: &[],
            })?;
            self.floor_written = Some((self.floor, entry_ordinal(at)));
        }
        self.land();
        let mut job = if carried.is_empty() && !floor_moves {
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
/// expires, or its position's meta ttl runs out (`Channel::due_ms`), unless it is scheduled
/// no later already or nothing of it is due. A front that could not be read is visited at
/// once (the next pass drops it).
pub(super) fn schedule_expiry(
    expiry: &mut ExpirySchedule,
    slot: ChannelSlot,
    ch: &mut Channel,
    front_ms: Option<u64>,
) {
    let Some(due_ms) = ch.due_ms(front_ms) else {
        return;
    };
    let bucket = ExpirySchedule::bucket_of(due_ms);
    if ch.due != NOT_SCHEDULED && ch.due <= bucket {
        return;
    }
    ch.due = bucket;
    expiry.add(bucket, slot);
}
