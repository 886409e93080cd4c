//! The in-memory index of a partition: its segments in order (`Segments`, each known by a
//! 32-bit ordinal so an index entry packs into 8 bytes) and, per channel, its top offset and
//! the positions of its indexed publications (`Channel`), kept in a `ChannelTable` where a
//! channel keeps its slot until its position is dropped. Payloads stay in the segments (the mappings, or the
//! head's stage until it lands).

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;

use super::error::HistoryError;
use super::record::{parse_record, RecordView};
use super::segment::Segment;

/// A bucket of the expiry schedule (`expiry`): expiry times within one
/// `HISTORY_EXPIRY_BUCKET_MS` share it. Bucket 0 is never used, so `Channel::due ==
/// NOT_SCHEDULED` means "not in the schedule".
pub type Bucket = u64;

pub const NOT_SCHEDULED: Bucket = 0;

/// A channel whose policy the owner has not stated since `open`: keep everything.
pub const KEEP_UNKNOWN: usize = usize::MAX;

/// The partition's segments, oldest first. The last one is the head (written to); a log whose
/// head could not be created (disk full) has none until an append finds room.
#[derive(Debug, Default)]
pub struct Segments {
    pub list: VecDeque<Segment>,
    pub first_ordinal: u32,
}

impl Segments {
    pub fn get(&self, ordinal: u32) -> Option<&Segment> {
        self.list
            .get(ordinal.wrapping_sub(self.first_ordinal) as usize)
    }

    pub fn get_mut(&mut self, ordinal: u32) -> Option<&mut Segment> {
        self.list
            .get_mut(ordinal.wrapping_sub(self.first_ordinal) as usize)
    }

    pub fn head(&self) -> Option<&Segment> {
        self.list.back()
    }

    pub fn head_mut(&mut self) -> Option<&mut Segment> {
        self.list.back_mut()
    }

    pub fn head_ordinal(&self) -> u32 {
        self.first_ordinal
            .wrapping_add(self.list.len().saturating_sub(1) as u32)
    }

    pub fn add_ref(&mut self, entry: u64) {
        if let Some(seg) = self.get_mut(entry_ordinal(entry)) {
            seg.refs += 1;
        }
    }

    pub fn unref(&mut self, entry: u64) {
        if let Some(seg) = self.get_mut(entry_ordinal(entry)) {
            debug_assert!(seg.refs > 0, "segment reference count underflow");
            seg.refs -= 1;
        }
    }

    /// The record an index entry points at.
    pub fn record(&self, partition: u32, entry: u64) -> Result<RecordView<'_>, HistoryError> {
        let pos = entry_position(entry);
        let Some(seg) = self.get(entry_ordinal(entry)) else {
            return Err(HistoryError::Corrupt {
                partition,
                segment: PathBuf::from(format!("segment #{}", entry_ordinal(entry))),
                position: pos as u64,
                reason: "index points into a segment that is gone".into(),
            });
        };
        let corrupt = |reason: String| HistoryError::Corrupt {
            partition,
            segment: seg.mapping.path.clone(),
            position: pos as u64,
            reason,
        };
        let (bytes, at) = seg.bytes_at(pos);
        match parse_record(bytes, at, false) {
            Ok(Some(record)) => Ok(record),
            Ok(None) => Err(corrupt("index points at the end of the data".into())),
            Err(reason) => Err(corrupt(reason)),
        }
    }
}

/// An index entry: segment ordinal << 32 | byte position.
pub fn entry(ordinal: u32, pos: usize) -> u64 {
    debug_assert!(pos <= u32::MAX as usize, "segments are at most 4 GiB");
    (u64::from(ordinal) << 32) | pos as u64
}

pub fn entry_ordinal(entry: u64) -> u32 {
    (entry >> 32) as u32
}

pub fn entry_position(entry: u64) -> usize {
    (entry & 0xffff_ffff) as usize
}

/// A channel's place in its log's `ChannelTable`: the owner keeps it, so appending to a known
/// channel costs an index instead of a second hash lookup by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelSlot(u32);

/// The channels a log knows, each in a slot it keeps until the log drops the channel's
/// position (its meta ttl passed, see `retain`), found by name through `by_name`. A dropped
/// channel's slot is reused by the next new channel, so the table is as large as the most
/// channels it held at once.
#[derive(Debug, Default)]
pub struct ChannelTable {
    slots: Vec<Option<Channel>>,
    by_name: HashMap<Arc<str>, ChannelSlot>,
    /// Slots of dropped channels, to reuse.
    free: Vec<ChannelSlot>,
}

impl ChannelTable {
    pub fn slot(&self, name: &str) -> Option<ChannelSlot> {
        self.by_name.get(name).copied()
    }

    pub fn get(&self, name: &str) -> Option<&Channel> {
        self.slot(name).map(|slot| self.at(slot))
    }

    /// The channel in `slot`: the caller's slot came from this table for a channel it has not
    /// dropped (the owner drops none it holds), so it is there.
    pub fn at(&self, slot: ChannelSlot) -> &Channel {
        self.slots[slot.0 as usize]
            .as_ref()
            .expect("a held slot is not dropped")
    }

    pub fn at_mut(&mut self, slot: ChannelSlot) -> &mut Channel {
        self.slots[slot.0 as usize]
            .as_mut()
            .expect("a held slot is not dropped")
    }

    /// The channel in `slot` if it was not dropped (the expiry schedule may name slots of
    /// dropped channels).
    pub fn live_mut(&mut self, slot: ChannelSlot) -> Option<&mut Channel> {
        self.slots.get_mut(slot.0 as usize)?.as_mut()
    }

    /// The slot of `name`, added (sharing the caller's name) if the table does not know it.
    pub fn insert(&mut self, name: &Arc<str>) -> ChannelSlot {
        if let Some(slot) = self.slot(name) {
            return slot;
        }
        let channel = Some(Channel::new(name.clone()));
        let slot = match self.free.pop() {
            Some(slot) => {
                debug_assert!(self.slots[slot.0 as usize].is_none());
                self.slots[slot.0 as usize] = channel;
                slot
            }
            None => {
                let slot = ChannelSlot(
                    u32::try_from(self.slots.len())
                        .expect("fewer than 2^32 channels per partition"),
                );
                self.slots.push(channel);
                slot
            }
        };
        self.by_name.insert(name.clone(), slot);
        slot
    }

    /// Drops the channel in `slot` (name, entries and all): the caller released its entries.
    pub fn remove(&mut self, slot: ChannelSlot) -> Option<Channel> {
        let channel = self.slots.get_mut(slot.0 as usize)?.take()?;
        debug_assert!(channel.entries.is_empty(), "entries are released first");
        self.by_name.remove(&channel.name);
        self.free.push(slot);
        Some(channel)
    }

    /// Channels known (dropped ones not counted).
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Channel> + '_ {
        self.slots.iter().flatten()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (ChannelSlot, &mut Channel)> + '_ {
        (0u32..)
            .map(ChannelSlot)
            .zip(self.slots.iter_mut())
            .filter_map(|(slot, ch)| Some((slot, ch.as_mut()?)))
    }
}

/// What the log knows of one channel.
#[derive(Debug)]
pub struct Channel {
    pub name: Arc<str>,
    /// Last offset (publication or position record); 0: none.
    pub top: u64,
    /// Offset of `entries[0]`: a channel's indexed publications have consecutive offsets.
    pub first: u64,
    pub entries: VecDeque<u64>,
    /// 0: no ttl.
    pub ttl_ms: u64,
    pub keep: usize,
    /// Ordinal of the segment holding the channel's last record (carried forward by
    /// retention before that segment goes).
    pub last_segment: u32,
    /// The expiry bucket retention visits this channel in (`NOT_SCHEDULED`: none); see
    /// `expiry`.
    pub due: Bucket,
    /// Time of the last publication (or of the position record that carried it forward).
    pub last_ms: u64,
    /// How long the position outlives the last publication once no publication is indexed
    /// (Centrifugo's `history_meta_ttl`); 0: for good.
    pub meta_ttl_ms: u64,
}

impl Channel {
    pub fn new(name: Arc<str>) -> Self {
        Channel {
            name,
            top: 0,
            first: 0,
            entries: VecDeque::new(),
            ttl_ms: 0,
            keep: KEEP_UNKNOWN,
            last_segment: 0,
            due: NOT_SCHEDULED,
            last_ms: 0,
            meta_ttl_ms: 0,
        }
    }

    pub fn push(&mut self, entry: u64, offset: u64, segs: &mut Segments) {
        if self.entries.is_empty() {
            self.first = offset;
        }
        self.entries.push_back(entry);
        segs.add_ref(entry);
    }

    pub fn pop_front(&mut self, segs: &mut Segments) {
        if let Some(entry) = self.entries.pop_front() {
            segs.unref(entry);
            self.first += 1;
        }
    }

    /// Takes the owner's statement of the channel's policy.
    pub fn set_policy(&mut self, policy: super::Policy) {
        (self.keep, self.ttl_ms, self.meta_ttl_ms) =
            (policy.keep, policy.ttl_ms, policy.meta_ttl_ms);
    }

    /// Drops entries beyond `keep`; returns how many.
    pub fn trim(&mut self, segs: &mut Segments) -> usize {
        let excess = self.entries.len().saturating_sub(self.keep);
        for _ in 0..excess {
            self.pop_front(segs);
        }
        excess
    }

    /// Drops every entry and frees the deque (idle channels should cost no index memory).
    pub fn clear(&mut self, segs: &mut Segments) -> usize {
        let dropped = self.entries.len();
        for entry in std::mem::take(&mut self.entries) {
            segs.unref(entry);
        }
        dropped
    }

    /// Whether a ttl applies: one is set and the policy is stated.
    fn has_ttl(&self) -> bool {
        self.ttl_ms > 0 && self.keep != KEEP_UNKNOWN
    }

    /// When retention must visit this channel (`None`: it need not), given the time of its
    /// oldest entry (`None`: unreadable, visit at once): when that entry expires, or, with no
    /// entries, when its position's meta ttl runs out. Nothing is due before the owner states
    /// the channel's policy.
    pub fn due_ms(&self, front_ms: Option<u64>) -> Option<u64> {
        if self.keep == KEEP_UNKNOWN {
            return None;
        }
        if !self.entries.is_empty() {
            return self
                .has_ttl()
                .then(|| front_ms.map_or(0, |front| front.saturating_add(self.ttl_ms)));
        }
        (self.meta_ttl_ms > 0).then(|| self.last_ms.saturating_add(self.meta_ttl_ms))
    }

    /// Whether the position may go: nothing indexed, its meta ttl passed.
    pub fn meta_expired(&self, now_ms: u64) -> bool {
        self.entries.is_empty()
            && self.keep != KEEP_UNKNOWN
            && self.meta_ttl_ms > 0
            && self.last_ms.saturating_add(self.meta_ttl_ms) <= now_ms
    }

    /// Publications with `time_ms` below this are expired; `None`: nothing expires.
    pub fn cutoff(&self, now_ms: u64) -> Option<u64> {
        self.has_ttl().then(|| now_ms.saturating_sub(self.ttl_ms))
    }
}
