//! `HistoryLog`: the persistent history of one partition (DESIGN invariant 7).
//!
//! It owns the partition's directory (e.g. `data/history/017/`): the `EPOCH` file, the segment
//! files and their memory mappings, and the in-memory index of each channel's recent
//! publications and top offset. One shard thread owns a partition, so nothing here locks; the
//! only thing that leaves the thread is a [`FlushJob`] (syncs, and deleting the segments
//! retention retired), which runs on a blocking thread.
//! Imports only leaves (`limits`, `clock`, `rand`).
//!
//! The pieces: `record` (the on-disk grammar and the record codec), `segment` (files and
//! mappings, the stage appends write to), `index` (segments by ordinal, the channel table),
//! `recover` (`open`: scan → plan → apply), `retain` (ttl/size retention and position
//! records), `expiry` (when channels' oldest publications expire), `flush` (durability jobs),
//! `epoch` (the `EPOCH` file), `error`.
//!
//! # Start-up ([`HistoryLog::open`])
//!
//! Segments are scanned in `base_seq` order and every record is checked (length, CRC, padding,
//! seq, kind, field lengths and bounds, UTF-8 channel). At the first defect:
//! - in the last segment holding records (later segment files, if any, are blank: all-zero or
//!   too short header, or a header and no record, as a crash while starting a segment leaves
//!   them): the tail is cut there and the blank files are deleted. The epoch is kept: this is
//!   the loss the fsync policy allows.
//! - anywhere else (a bad record followed by records in a later segment, a bad header, another
//!   partition's segment, a `base_seq` that does not continue): history was lost. The valid
//!   records before the defect are kept; the damaged segment is copied aside and every later
//!   segment file moved aside (quarantined as `<name>.corrupt-<ms>`, each named in a warning);
//!   a new epoch is written (before anything is moved) with the reason in
//!   [`OpenReport::epoch_reset`].
//! - An I/O error reading a segment (open, stat, map) is not lost history: `open` fails with
//!   an error naming the file, and nothing is changed.
//! - `EPOCH` missing or unreadable while segments exist: history may have been lost; the
//!   records are kept (clients see the new epoch anyway) and a new epoch is written.
//! - A missing or empty directory is a new partition: new directory, new epoch,
//!   `epoch_reset` is `None`. A directory without segment files is not an error. Nothing is
//!   synced then: the `EPOCH`, the first segment's header and the directory entries (the
//!   partition's and its parent's) go in the first flush job, so a partition created while
//!   serving costs the shard thread no sync. A crash before that job can leave a torn or
//!   missing `EPOCH` beside a blank segment: the cases above, a new epoch and an empty log.
//! - A full disk while preparing the log for writes is reported in [`OpenReport::no_space`]:
//!   the log serves what it holds and creates its head segment at the first append that finds
//!   room.
//!
//! After the scan, everything after the last valid record of the segment being written is
//! zeroed (hole punched), so stale bytes can never follow a new record.
//!
//! # Policy
//!
//! `keep`, `ttl` and the meta ttl are not stored on disk: the owner passes them with each
//! append. After `open`, every scanned publication stays indexed until the owner states the
//! channel's policy with [`HistoryLog::set_policy`] or [`HistoryLog::set_policies`]; until then
//! nothing of that channel is trimmed or expires, its position stays, and the segments it
//! references cannot be retained away.
//!
//! # Dropped positions and the floor
//!
//! A channel's position goes once nothing of it is indexed and its meta ttl has passed since
//! its last publication (the owner's `held` answer keeps one it still uses). The log keeps no
//! trace of it but the partition's floor, the highest top it dropped: a channel the log does
//! not know starts above the floor, under the same epoch, and a floor record is synced before
//! the last segment that held a dropped position is deleted.
//!
//! # Durability
//!
//! Appends stage their records in memory; [`HistoryLog::land`] puts them in the file (one
//! `pwrite` for many, through the mapping for a few), and reads see staged records at once.
//! The owner lands after each batch of appends, before anyone hears of them, so a killed
//! process loses nothing it acknowledged. [`HistoryLog::take_flush`] (which lands first)
//! hands out the dirty byte
//! ranges (and a new partition's `EPOCH`, new directory entries) as a job; a crash loses what
//! no finished job covered. Dropping the log lands what is staged but syncs nothing (the
//! kernel still writes the pages back unless the machine goes down): at shutdown run a last
//! `take_flush` job. Segment
//! mappings that appends write have readahead off: a write fault would otherwise zero-fill a
//! whole readahead window of reserved blocks. Blocks are reserved with `fallocate` a little
//! ahead of the write position, so a full disk is an error value here rather than a SIGBUS on
//! a write to a sparse page (where the filesystem cannot reserve, blocks are allocated as
//! written and a full disk can still end the process through the mapping).

mod epoch;
mod error;
mod expiry;
mod flush;
mod index;
pub mod record;
mod recover;
mod retain;
mod segment;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use epoch::EpochFile;
pub use error::{HistoryError, OpenReport};
use expiry::ExpirySchedule;
use flush::{DirEntries, FlushRange};
pub use flush::{FlushError, FlushJob};
pub use index::ChannelSlot;
use index::{entry, entry_ordinal, entry_position, ChannelTable, Segments, NOT_SCHEDULED};
use record::{header, Fields, KIND_PUBLICATION};
use retain::{front_time, schedule_expiry};
use segment::create_segment;

use crate::limits::HISTORY_STAGE_BYTES_MAX;

/// Index memory per indexed publication: one packed position (segment ordinal << 32 | byte
/// position) in the channel's `VecDeque<u64>`, so 8 bytes, plus the deque's slack up to its
/// next power-of-two capacity. Times, offsets and payloads stay in the mapped segments.
pub const INDEX_BYTES_PER_RECORD: usize = std::mem::size_of::<u64>();

/// Fixed memory per known channel besides its name and index entries (its slot, and the name
/// index's entry: `Arc<str>` key + slot).
pub const CHANNEL_BYTES: usize =
    std::mem::size_of::<index::Channel>() + std::mem::size_of::<(Arc<str>, ChannelSlot)>();

/// A publication as the log returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPublication {
    pub offset: u64,
    pub time_ms: u64,
    pub data: Bytes,
    /// `None` when absent or stored empty.
    pub info: Option<Bytes>,
    pub tags: Option<Bytes>,
}

/// The payload of one publication to append (raw JSON each; `None` = absent).
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    pub data: &'a [u8],
    pub info: Option<&'a [u8]>,
    pub tags: Option<&'a [u8]>,
}

impl<'a> Entry<'a> {
    /// Data only.
    pub fn data(data: &'a [u8]) -> Self {
        Entry {
            data,
            info: None,
            tags: None,
        }
    }
}

/// A channel's history policy: the last `keep` publications, none older than `ttl_ms`
/// (0: no ttl); its position dropped `meta_ttl_ms` after its last publication once none is
/// left (0: kept for good).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub keep: usize,
    pub ttl_ms: u64,
    pub meta_ttl_ms: u64,
}

/// The persistent history of one partition; see the module doc.
#[derive(Debug)]
pub struct HistoryLog {
    dir: PathBuf,
    partition: u32,
    segment_size: u64,
    epoch: Arc<str>,
    /// How far the `EPOCH` file holds `epoch`.
    epoch_file: EpochFile,
    segs: Segments,
    /// seq of the next record.
    next_seq: u64,
    channels: ChannelTable,
    /// When channels' oldest publications expire: what retention visits.
    expiry: ExpirySchedule,
    indexed: usize,
    /// Head segment bytes from here to its `end` are in no flush job yet.
    dirty_from: usize,
    /// Dirty ranges of segments that are no longer the head.
    pending: Vec<FlushRange>,
    /// What the directory's entries need from the next flush job.
    dir_entries: DirEntries,
    /// Every channel whose position was dropped was at or below this offset: a channel the
    /// log does not know starts above it (its top is the floor), so a client holding a
    /// dropped stream's position with this epoch never takes a new stream's publications for
    /// the ones it missed (recovery finds the gap).
    floor: u64,
    /// The floor's latest record: the value it holds and its segment's ordinal.
    floor_written: Option<(u64, u32)>,
    /// Publications written since the log was opened, and their record bytes: counters for
    /// the metrics.
    appended: u64,
    appended_bytes: u64,
}

impl HistoryLog {
    pub fn epoch(&self) -> &Arc<str> {
        &self.epoch
    }

    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// The last offset the log knows for `channel` (publication or position record); the
    /// floor (0 until a position was dropped) if it knows none.
    pub fn top(&self, channel: &str) -> u64 {
        self.channels.get(channel).map_or(self.floor, |ch| ch.top)
    }

    /// The top of channels the log does not know: see `floor` on the struct.
    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// Where the log keeps `channel`, if it knows it (see [`HistoryLog::append_at`]).
    pub fn slot(&self, channel: &str) -> Option<ChannelSlot> {
        self.channels.slot(channel)
    }

    /// The name and top offset of the channel in `slot`.
    pub fn channel_at(&self, slot: ChannelSlot) -> (&Arc<str>, u64) {
        let ch = self.channels.at(slot);
        (&ch.name, ch.top)
    }

    /// Channels the log knows (each keeps its position, its stream meta, until its meta ttl
    /// runs out).
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// Every channel the log knows with its top offset.
    pub fn channels(&self) -> impl Iterator<Item = (&Arc<str>, u64)> + '_ {
        self.channels.iter().map(|ch| (&ch.name, ch.top))
    }

    /// States a channel's policy (the owner does so for each channel after `open`, and every
    /// append repeats it): trims the index to `keep` now; `ttl_ms` applies to reads at once
    /// and to retention. Unknown channels are ignored.
    pub fn set_policy(&mut self, channel: &str, policy: Policy) {
        let Some(slot) = self.channels.slot(channel) else {
            return;
        };
        let ch = self.channels.at_mut(slot);
        ch.set_policy(policy);
        self.indexed -= ch.trim(&mut self.segs);
        let front = front_time(&self.segs, self.partition, ch);
        schedule_expiry(&mut self.expiry, slot, ch, front);
    }

    /// `set_policy` for every channel whose policy is not stated yet, from `policy(channel)`.
    pub fn set_policies(&mut self, mut policy: impl FnMut(&str) -> Policy) {
        for (slot, ch) in self.channels.iter_mut() {
            if ch.keep == index::KEEP_UNKNOWN {
                ch.set_policy(policy(&ch.name));
                self.indexed -= ch.trim(&mut self.segs);
                let front = front_time(&self.segs, self.partition, ch);
                schedule_expiry(&mut self.expiry, slot, ch, front);
            }
        }
    }

    /// Appends a publication. For a channel the log knows, `offset` must be exactly
    /// `top(channel) + 1` (the owner guarantees it: anything else is a bug, so it panics);
    /// a new one starts where the owner says (above the floor as it was when the owner made
    /// the channel's state). The index keeps what `policy`
    /// allows. Returns where the log keeps the channel.
    pub fn append(
        &mut self,
        channel: &str,
        offset: u64,
        time_ms: u64,
        entry: Entry<'_>,
        policy: Policy,
    ) -> Result<ChannelSlot, HistoryError> {
        match self.channels.slot(channel) {
            Some(slot) => self
                .append_at(slot, offset, time_ms, entry, policy)
                .map(|()| slot),
            None => self.append_new(&Arc::from(channel), offset, time_ms, entry, policy),
        }
    }

    /// `append` to the channel in `slot` (the owner's path: no lookup by name).
    pub fn append_at(
        &mut self,
        slot: ChannelSlot,
        offset: u64,
        time_ms: u64,
        entry: Entry<'_>,
        policy: Policy,
    ) -> Result<(), HistoryError> {
        let (name, top) = {
            let ch = self.channels.at(slot);
            (ch.name.clone(), ch.top)
        };
        let at = self.write_publication(&name, top, offset, time_ms, entry)?;
        self.index_publication(slot, at, offset, time_ms, policy);
        Ok(())
    }

    /// `append` to a channel the log may not know yet; the log keeps `name` (shared with the
    /// caller) if it is new. The channel is added only once its record is written.
    pub fn append_new(
        &mut self,
        name: &Arc<str>,
        offset: u64,
        time_ms: u64,
        entry: Entry<'_>,
        policy: Policy,
    ) -> Result<ChannelSlot, HistoryError> {
        if let Some(slot) = self.channels.slot(name) {
            return self
                .append_at(slot, offset, time_ms, entry, policy)
                .map(|()| slot);
        }
        // A new channel starts where its owner put it: above the floor as it was when the
        // owner made the channel's state (it may have risen since, for other channels).
        debug_assert!(offset > 0);
        let at = self.write_publication(name, offset - 1, offset, time_ms, entry)?;
        let slot = self.channels.insert(name);
        self.index_publication(slot, at, offset, time_ms, policy);
        Ok(slot)
    }

    /// Writes a publication record of `channel` (whose top is `top`); returns its entry.
    fn write_publication(
        &mut self,
        channel: &str,
        top: u64,
        offset: u64,
        time_ms: u64,
        entry: Entry<'_>,
    ) -> Result<u64, HistoryError> {
        assert!(
            offset == top + 1,
            "history partition {}: channel {channel:?} appends offset {offset} after {top}",
            self.partition
        );
        let fields = Fields {
            kind: KIND_PUBLICATION,
            channel,
            offset,
            time_ms,
            data: entry.data,
            info: entry.info.unwrap_or_default(),
            tags: entry.tags.unwrap_or_default(),
        };
        let at = self.write_record(&fields)?;
        self.appended += 1;
        self.appended_bytes += (fields.data.len() + fields.info.len() + channel.len()) as u64;
        Ok(at)
    }

    /// Publications written since the log was opened, and their payload bytes (data, info
    /// and channel name; the framing not counted).
    pub fn appended(&self) -> (u64, u64) {
        (self.appended, self.appended_bytes)
    }

    /// Indexes a publication just written at `at` (entry) for the channel in `slot`.
    fn index_publication(
        &mut self,
        slot: ChannelSlot,
        at: u64,
        offset: u64,
        time_ms: u64,
        policy: Policy,
    ) {
        let ch = self.channels.at_mut(slot);
        ch.set_policy(policy);
        ch.push(at, offset, &mut self.segs);
        ch.top = offset;
        ch.last_segment = entry_ordinal(at);
        ch.last_ms = time_ms;
        self.indexed += 1;
        self.indexed -= ch.trim(&mut self.segs);
        if ch.due == NOT_SCHEDULED || ch.entries.len() == 1 {
            // Its first entry since the last expiry visit (or ever): the oldest one decides
            // (one waiting for its meta ttl is due later than that).
            let front = if ch.entries.len() == 1 {
                Some(time_ms)
            } else {
                front_time(&self.segs, self.partition, ch)
            };
            schedule_expiry(&mut self.expiry, slot, ch, front);
        }
    }

    /// Indexed publications of `channel`: forward, those with offset > `after_or_before`,
    /// oldest first; `reverse`, those with offset < `after_or_before` (0: from the top), newest
    /// first. At most `limit`, skipping those older than `now_ms - ttl`. Also returns the
    /// channel's top.
    pub fn read(
        &self,
        channel: &str,
        after_or_before: u64,
        reverse: bool,
        limit: usize,
        now_ms: u64,
    ) -> Result<(Vec<StoredPublication>, u64), HistoryError> {
        let Some(ch) = self.channels.get(channel) else {
            return Ok((Vec::new(), self.floor));
        };
        let mut out = Vec::new();
        if limit == 0 || ch.entries.is_empty() {
            return Ok((out, ch.top));
        }
        let cutoff = ch.cutoff(now_ms);
        let len = ch.entries.len();
        let mut visit = |i: usize| -> Result<bool, HistoryError> {
            let offset = ch.first + i as u64;
            if let Some(publication) = self.load(channel, ch.entries[i], offset, cutoff)? {
                out.push(publication);
            }
            Ok(out.len() < limit)
        };
        if reverse {
            let end = if after_or_before == 0 {
                ch.top.saturating_add(1)
            } else {
                after_or_before
            };
            let n = usize::try_from(end.saturating_sub(ch.first)).map_or(len, |n| n.min(len));
            for i in (0..n).rev() {
                if !visit(i)? {
                    break;
                }
            }
        } else {
            let start = after_or_before.saturating_add(1).max(ch.first) - ch.first;
            let start = usize::try_from(start).unwrap_or(usize::MAX);
            for i in start..len {
                if !visit(i)? {
                    break;
                }
            }
        }
        Ok((out, ch.top))
    }

    /// The publication an index entry points at, or `None` if it expired.
    fn load(
        &self,
        channel: &str,
        at: u64,
        offset: u64,
        cutoff: Option<u64>,
    ) -> Result<Option<StoredPublication>, HistoryError> {
        let record = self.segs.record(self.partition, at)?;
        if record.kind != KIND_PUBLICATION || record.channel != channel || record.offset != offset {
            return Err(HistoryError::Corrupt {
                partition: self.partition,
                segment: self
                    .segs
                    .get(entry_ordinal(at))
                    .map(|s| s.mapping.path.clone())
                    .unwrap_or_default(),
                position: entry_position(at) as u64,
                reason: format!(
                    "expected publication {offset} of {channel:?}, found kind {} offset {} of {:?}",
                    record.kind, record.offset, record.channel
                ),
            });
        }
        if cutoff.is_some_and(|cutoff| record.time_ms < cutoff) {
            return Ok(None);
        }
        // One allocation for the three fields.
        let payload = Bytes::copy_from_slice(record.payload);
        let data_end = record.data_len;
        let info_end = data_end + record.info_len;
        let present = |from: usize, to: usize| (to > from).then(|| payload.slice(from..to));
        Ok(Some(StoredPublication {
            offset,
            time_ms: record.time_ms,
            data: payload.slice(..data_end),
            info: present(data_end, info_end),
            tags: present(info_end, payload.len()),
        }))
    }

    /// Offset of the oldest publication still served (indexed and within ttl), or `None`.
    pub fn first_available(&self, channel: &str, now_ms: u64) -> Option<u64> {
        let ch = self.channels.get(channel)?;
        let cutoff = ch.cutoff(now_ms);
        ch.entries.iter().enumerate().find_map(|(i, &at)| {
            // An entry that cannot be read cannot be served either.
            let record = self.segs.record(self.partition, at).ok()?;
            let live = cutoff.is_none_or(|cutoff| record.time_ms >= cutoff);
            live.then(|| ch.first + i as u64)
        })
    }

    /// Puts the records appended since the last call in the file (page cache), in one write
    /// when there are many: appends only stage them (reads see them at once). The owner
    /// calls it after each batch of appends; a flush job, retention, `remove`, rolling to a
    /// new segment and dropping the log do it themselves.
    pub fn land(&mut self) {
        if let Some(head) = self.segs.head_mut() {
            head.land();
        }
    }

    /// Whether appends wait in the stage for `land`.
    pub fn has_staged(&self) -> bool {
        self.segs.head().is_some_and(|head| head.staged_len() > 0)
    }

    /// Segment files' sizes summed.
    pub fn disk_bytes(&self) -> u64 {
        self.segs.list.iter().map(|seg| seg.file_len).sum()
    }

    pub fn indexed_records(&self) -> usize {
        self.indexed
    }

    pub fn segments(&self) -> usize {
        self.segs.list.len()
    }

    /// The largest record body a segment of this log can hold: the checks callers make
    /// before accepting a publication.
    pub fn record_bytes_max(segment_size: u64) -> usize {
        segment_size as usize - header::LEN - record::layout::FRAMING_LEN
    }

    /// Writes one record at the head (starting a new segment if it does not fit, or the
    /// first one if the log has none); returns its index entry.
    fn write_record(&mut self, f: &Fields<'_>) -> Result<u64, HistoryError> {
        let total = f.total();
        let max = self.segment_size as usize - header::LEN;
        let name_max = crate::limits::CHANNEL_NAME_BYTES_MAX;
        if total > max || f.channel.len() > name_max {
            let (len, max) = if f.channel.len() > name_max {
                (f.channel.len(), name_max)
            } else {
                (total, max)
            };
            return Err(HistoryError::TooLarge {
                partition: self.partition,
                channel: f.channel.chars().take(100).collect(),
                len,
                max,
            });
        }
        let fits = self
            .segs
            .head()
            .is_some_and(|head| head.end + total <= head.mapping.size);
        if !fits {
            self.roll()?;
        } else if self.segs.head().is_some_and(|head| head.file.is_none()) {
            // The head found at open could not be prepared (a full disk): do it now, so no
            // stale byte can follow the record about to be written.
            self.prepare_head()?;
        }
        let ordinal = self.segs.head_ordinal();
        let partition = self.partition;
        let seq = self.next_seq;
        let head = self.segs.head_mut().expect("roll() left a head segment");
        debug_assert!(head.file.is_some(), "the head is prepared before writes");
        let pos = head.end;
        head.reserve(pos + total, partition)?;

        let fixed = f.encode_fixed(seq);
        let parts = [&fixed[..], f.channel.as_bytes(), f.data, f.info, f.tags];
        let crc = parts
            .iter()
            .fold(0, |crc, part| crc32c::crc32c_append(crc, part));
        head.stage(pos, &f.encode_framing(crc));
        let mut at = pos + record::layout::FRAMING_LEN;
        for part in parts {
            head.stage(at, part);
            at += part.len();
        }
        // The area past `end` is zero already; writing the padding keeps that from being a
        // precondition of correctness.
        head.stage_zeros(at, pos + total - at);
        head.end = pos + total;
        if head.staged_len() >= HISTORY_STAGE_BYTES_MAX {
            head.land();
        }
        self.next_seq += 1;
        Ok(entry(ordinal, pos))
    }

    /// Starts a new head segment at the next seq.
    fn roll(&mut self) -> Result<(), HistoryError> {
        if self.epoch_file == EpochFile::Missing {
            epoch::write_first_epoch(&self.dir, self.partition, &self.epoch)?;
            self.epoch_file = EpochFile::Written;
        }
        let seg = create_segment(&self.dir, self.partition, self.next_seq, self.segment_size)?;
        if let Some(head) = self.segs.head_mut() {
            head.land();
            if head.end > self.dirty_from {
                self.pending.push(FlushRange {
                    mapping: head.mapping.clone(),
                    from: self.dirty_from,
                    to: head.end,
                });
            }
            head.file = None;
        } else {
            // The first segment of a log that had none: its ordinal continues the (empty)
            // list's.
            debug_assert!(self.segs.list.is_empty());
        }
        self.segs.list.push_back(seg);
        self.dirty_from = 0;
        self.dir_entries = self.dir_entries.max(DirEntries::Added);
        Ok(())
    }
}
// A new partition's log is created on a blocking thread and moved to its shard.
#[cfg(test)]
const _: fn() = || {
    fn send<T: Send>() {}
    send::<HistoryLog>();
};
