//! `HistoryLog`: the persistent history of one partition (DESIGN invariant 7).
//!
//! It owns the partition's directory (e.g. `data/history/017/`): the `EPOCH` file, the segment
//! files and their memory mappings, and the in-memory index of each channel's recent
//! publications and top offset. One shard thread owns a partition, so nothing here locks; the
//! only thing that leaves the thread is a [`FlushJob`], which runs msync on a blocking thread.
//!
//! # On-disk format
//!
//! Little-endian everywhere; `%x00` is a zero byte.
//!
//! ```text
//! directory  = epoch-file segment-file+          ; other files are left alone
//! epoch-file = "EPOCH" containing 8 * ("a".."z")   ; replaced via "EPOCH.tmp" + rename
//! segment-file = 20 * DIGIT ".seg"                 ; the zero-padded base_seq
//! segment    = header *record end                  ; fixed file size, sparse until written
//! header     = "RCHLOG01" version:u32 partition:u32 base_seq:u64 created_ms:u64 32 * %x00
//!                                                  ; 64 bytes, version = 1
//! record     = len:u32 crc:u32 body pad            ; starts 8-aligned, len = body length > 0
//!                                                  ; crc = crc32c(body)
//! pad        = 0*7 %x00                            ; up to the next multiple of 8
//! body       = seq:u64 kind:u8 reserved:u8 channel_len:u16 offset:u64 time_ms:u64
//!              data_len:u32 info_len:u32 tags_len:u32 channel data info tags
//!                                                  ; reserved = 0, channel_len > 0,
//!                                                  ; len = 40 + the four lengths
//! kind       = %x01  ; publication: data, info, tags are raw JSON; info/tags length 0 = absent
//!            / %x02  ; position: the channel is at `offset` and holds no history up to
//!                    ; there; data, info and tags are empty
//! end        = 8 %x00 *%x00 / <fewer than 8 bytes left in the file>
//! ```
//!
//! `seq` numbers the partition's records: a segment's first record has its `base_seq`, every
//! other record its predecessor's + 1, across segment files too. That is what rejects stale
//! bytes a truncation left behind. A record that does not fit in the rest of a segment starts
//! the next one; the rest stays zero.
//!
//! # Start-up ([`HistoryLog::open`])
//!
//! Segments are scanned in `base_seq` order and every record is checked (length, CRC, padding,
//! seq, kind, field lengths, UTF-8 channel). At the first defect:
//! - in the last segment holding records (later segment files, if any, are blank: all-zero or
//!   too short header, or a header and no record, as a crash while starting a segment leaves
//!   them): the tail is cut there and the blank files are deleted. The epoch is kept: this is
//!   the loss the fsync policy allows.
//! - anywhere else (a bad record followed by records in a later segment, a bad header, another
//!   partition's segment, a `base_seq` that does not continue, a file that cannot be opened or
//!   mapped): history was lost. The valid records before the defect are kept, later segment
//!   files deleted, and a new epoch is written (before anything is deleted) with the reason in
//!   [`OpenReport::epoch_reset`]. Running out of file descriptors or memory, or a permission
//!   problem, is returned as an error instead: deleting history for those would be wrong.
//! - `EPOCH` missing or unreadable while segments exist: history may have been lost; the
//!   records are kept (clients see the new epoch anyway) and a new epoch is written.
//! - A missing or empty directory is a new partition: new directory, new epoch,
//!   `epoch_reset` is `None`.
//!
//! After the scan, everything after the last valid record of the segment being written is
//! zeroed (hole punched), so stale bytes can never follow a new record.
//!
//! # Policy
//!
//! `keep` and `ttl` are not stored on disk: the owner passes them with each append. After
//! `open`, every scanned publication stays indexed until the owner states the channel's policy
//! with [`HistoryLog::set_policy`] or [`HistoryLog::set_policies`]; until then nothing of that
//! channel is trimmed or expires, and the segments it references cannot be retained away.
//!
//! # Durability
//!
//! Appends only write to the mappings. [`HistoryLog::take_flush`] hands out the dirty byte
//! ranges as a job; a crash loses what no finished job covered. Dropping the log flushes
//! nothing (the kernel still writes the pages back unless the machine goes down): at shutdown
//! run a last `take_flush` job. Blocks are reserved with
//! `fallocate` a little ahead of the write position, so a full disk is an error value here
//! rather than a SIGBUS on a write to a sparse page.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use memmap2::{Advice, MmapOptions, MmapRaw};
use nix::errno::Errno;
use nix::fcntl::{fallocate, FallocateFlags};

const MAGIC: &[u8; 8] = b"RCHLOG01";
const FORMAT_VERSION: u32 = 1;
const HEADER_LEN: usize = 64;
const RECORD_HEADER_LEN: usize = 8;
const BODY_FIXED_LEN: usize = 40;
const KIND_PUBLICATION: u8 = 1;
const KIND_POSITION: u8 = 2;
const MIN_SEGMENT_SIZE: u64 = 4096;
/// Positions are packed into 32 bits in the index.
const MAX_SEGMENT_SIZE: u64 = 1 << 32;
/// Blocks reserved ahead of the write position (one fallocate per this many bytes).
const ALLOCATE_AHEAD: usize = 1 << 20;
const EPOCH_FILE: &str = "EPOCH";
const EPOCH_TMP: &str = "EPOCH.tmp";
/// A channel whose policy the owner has not stated since `open`: keep everything.
const KEEP_UNKNOWN: usize = usize::MAX;

/// Index memory per indexed publication: one packed position (segment ordinal << 32 | byte
/// position) in the channel's `VecDeque<u64>`, so 8 bytes, plus the deque's slack up to its
/// next power-of-two capacity. Times, offsets and payloads stay in the mapped segments.
pub const INDEX_BYTES_PER_RECORD: usize = std::mem::size_of::<u64>();

/// Fixed memory per known channel besides its name and index entries (map entry: `Arc<str>`
/// key + state).
pub const CHANNEL_BYTES: usize = std::mem::size_of::<(Arc<str>, Channel)>();

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

/// What `open` found.
#[derive(Debug, Default, Clone)]
pub struct OpenReport {
    pub partition: u32,
    /// Segment files kept.
    pub segments: usize,
    /// Valid records scanned (publications and positions).
    pub records: u64,
    /// Bytes of the valid records scanned (framing and padding included).
    pub bytes: u64,
    /// One warning per cut or removed file: partition, segment file, byte position, reason.
    pub truncated: Vec<String>,
    /// Why a new epoch replaced the stored one (history lost); `None` when the epoch was kept
    /// or the partition is new.
    pub epoch_reset: Option<String>,
}

#[derive(Debug)]
pub enum HistoryError {
    Io {
        partition: u32,
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// A record larger than a segment can hold, or a channel name longer than 65535 bytes.
    TooLarge {
        partition: u32,
        channel: String,
        len: usize,
        max: usize,
    },
    /// The index points at bytes that are not the expected record (the file changed under the
    /// mapping).
    Corrupt {
        partition: u32,
        segment: PathBuf,
        position: u64,
        reason: String,
    },
    Config {
        partition: u32,
        reason: String,
    },
}

impl fmt::Display for HistoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HistoryError::Io {
                partition,
                op,
                path,
                source,
            } => write!(
                f,
                "history partition {partition}: {op} {}: {source}",
                path.display()
            ),
            HistoryError::TooLarge {
                partition,
                channel,
                len,
                max,
            } => write!(
                f,
                "history partition {partition}: record of channel {channel:?} needs {len} bytes, \
                 at most {max} fit"
            ),
            HistoryError::Corrupt {
                partition,
                segment,
                position,
                reason,
            } => write!(
                f,
                "history partition {partition}: {} byte {position}: {reason}",
                segment.display()
            ),
            HistoryError::Config { partition, reason } => {
                write!(f, "history partition {partition}: {reason}")
            }
        }
    }
}

impl std::error::Error for HistoryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HistoryError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn io_error(
    partition: u32,
    op: &'static str,
    path: &Path,
) -> impl FnOnce(io::Error) -> HistoryError {
    let path = path.to_path_buf();
    move |source| HistoryError::Io {
        partition,
        op,
        path,
        source,
    }
}

/// A segment file's mapping, shared with flush jobs so a job outlives retention.
#[derive(Debug)]
struct Mapping {
    map: MmapRaw,
    path: PathBuf,
    /// Usable bytes: the file size rounded down to 8.
    size: usize,
}

impl Mapping {
    /// The mapped bytes. Only this module writes them, through `Segment::write` (which takes
    /// `&mut Segment`, so `&mut HistoryLog`); no slice from here lives across such a call: they
    /// live inside one `&self` method or the open-time scan, which writes nothing. The file
    /// being changed by another process is the usual mmap hazard, not guarded against.
    fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping is `size` bytes long and lives as long as `self`; see above for
        // why no write overlaps the returned slice.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr(), self.size) }
    }
}

#[derive(Debug)]
struct Segment {
    mapping: Arc<Mapping>,
    base_seq: u64,
    file_len: u64,
    /// End of the valid records; the write position of the head segment.
    end: usize,
    /// Index entries pointing into this segment; retention deletes it only at 0.
    refs: u64,
    /// The head segment's file, kept to reserve blocks ahead of the writes.
    file: Option<File>,
    /// Bytes from the start known to have blocks reserved.
    allocated: usize,
}

impl Segment {
    fn write(&mut self, pos: usize, src: &[u8]) {
        assert!(
            pos + src.len() <= self.mapping.size,
            "write past the end of a segment"
        );
        // SAFETY: in bounds (checked above) of a live read-write shared mapping; `&mut self`
        // means no slice from `Mapping::bytes` is alive (see there).
        unsafe {
            std::ptr::copy_nonoverlapping(
                src.as_ptr(),
                self.mapping.map.as_mut_ptr().add(pos),
                src.len(),
            )
        }
    }

    fn zero(&mut self, pos: usize, len: usize) {
        assert!(
            pos + len <= self.mapping.size,
            "zeroing past the end of a segment"
        );
        // SAFETY: as in `write`.
        unsafe { std::ptr::write_bytes(self.mapping.map.as_mut_ptr().add(pos), 0, len) }
    }
}

/// The partition's segments, oldest first. Each has an ordinal (32 bits, wrapping) that index
/// entries use instead of its base_seq, so a position packs into 8 bytes.
#[derive(Debug, Default)]
struct Segments {
    list: VecDeque<Segment>,
    first_ordinal: u32,
}

impl Segments {
    fn get(&self, ordinal: u32) -> Option<&Segment> {
        self.list
            .get(ordinal.wrapping_sub(self.first_ordinal) as usize)
    }

    fn get_mut(&mut self, ordinal: u32) -> Option<&mut Segment> {
        self.list
            .get_mut(ordinal.wrapping_sub(self.first_ordinal) as usize)
    }

    fn head(&self) -> &Segment {
        self.list.back().expect("a log always has a head segment")
    }

    fn head_mut(&mut self) -> &mut Segment {
        self.list
            .back_mut()
            .expect("a log always has a head segment")
    }

    fn head_ordinal(&self) -> u32 {
        self.first_ordinal
            .wrapping_add(self.list.len().saturating_sub(1) as u32)
    }

    fn add_ref(&mut self, entry: u64) {
        if let Some(seg) = self.get_mut(entry_ordinal(entry)) {
            seg.refs += 1;
        }
    }

    fn unref(&mut self, entry: u64) {
        if let Some(seg) = self.get_mut(entry_ordinal(entry)) {
            seg.refs -= 1;
        }
    }

    /// The record an index entry points at.
    fn record(&self, partition: u32, entry: u64) -> Result<RecordView<'_>, HistoryError> {
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
        match parse_record(seg.mapping.bytes(), pos, false) {
            Ok(Some(record)) => Ok(record),
            Ok(None) => Err(corrupt("index points at the end of the data".into())),
            Err(reason) => Err(corrupt(reason)),
        }
    }
}

fn entry(ordinal: u32, pos: usize) -> u64 {
    (u64::from(ordinal) << 32) | pos as u64
}

fn entry_ordinal(entry: u64) -> u32 {
    (entry >> 32) as u32
}

fn entry_position(entry: u64) -> usize {
    (entry & 0xffff_ffff) as usize
}

/// What the log knows of one channel.
#[derive(Debug)]
struct Channel {
    /// Last offset (publication or position record); 0: none.
    top: u64,
    /// Offset of `entries[0]`: a channel's indexed publications have consecutive offsets.
    first: u64,
    entries: VecDeque<u64>,
    /// 0: no ttl.
    ttl_ms: u64,
    keep: usize,
    /// Ordinal of the segment holding the channel's last record (carried forward by
    /// retention before that segment goes).
    last_segment: u32,
}

impl Channel {
    fn new() -> Self {
        Channel {
            top: 0,
            first: 0,
            entries: VecDeque::new(),
            ttl_ms: 0,
            keep: KEEP_UNKNOWN,
            last_segment: 0,
        }
    }

    fn push(&mut self, entry: u64, offset: u64, segs: &mut Segments) {
        if self.entries.is_empty() {
            self.first = offset;
        }
        self.entries.push_back(entry);
        segs.add_ref(entry);
    }

    fn pop_front(&mut self, segs: &mut Segments) {
        if let Some(entry) = self.entries.pop_front() {
            segs.unref(entry);
            self.first += 1;
        }
    }

    /// Drops entries beyond `keep`; returns how many.
    fn trim(&mut self, segs: &mut Segments) -> usize {
        let excess = self.entries.len().saturating_sub(self.keep);
        for _ in 0..excess {
            self.pop_front(segs);
        }
        excess
    }

    /// Drops every entry and frees the deque (idle channels should cost no index memory).
    fn clear(&mut self, segs: &mut Segments) -> usize {
        let dropped = self.entries.len();
        for entry in std::mem::take(&mut self.entries) {
            segs.unref(entry);
        }
        dropped
    }

    /// Publications with `time_ms` below this are expired; `None`: nothing expires.
    fn cutoff(&self, now_ms: u64) -> Option<u64> {
        (self.ttl_ms > 0 && self.keep != KEEP_UNKNOWN).then(|| now_ms.saturating_sub(self.ttl_ms))
    }
}

/// A record parsed in place.
struct RecordView<'a> {
    seq: u64,
    kind: u8,
    channel: &'a str,
    offset: u64,
    time_ms: u64,
    data_len: usize,
    info_len: usize,
    /// data, info and tags, contiguous.
    payload: &'a [u8],
    /// Bytes the record takes (framing and padding included).
    total: usize,
}

fn pad8(len: usize) -> usize {
    (len + 7) & !7
}

fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

/// Parses the record at `pos` of a segment's bytes: `Ok(None)` at the end of the data,
/// `Err(reason)` for anything that is not a well-formed record. `verify` checks CRC and padding
/// (the scan does; index reads trust what the scan or the writer already checked).
fn parse_record(bytes: &[u8], pos: usize, verify: bool) -> Result<Option<RecordView<'_>>, String> {
    let Some(head) = bytes.get(pos..pos + RECORD_HEADER_LEN) else {
        return Ok(None);
    };
    let len = le_u32(head, 0) as usize;
    let crc = le_u32(head, 4);
    if len == 0 {
        // The end is 8 zero bytes; a zero length with a crc is a damaged length field.
        return if crc == 0 {
            Ok(None)
        } else {
            Err(format!("bad length: 0 with crc {crc:#010x}"))
        };
    }
    let left = bytes.len() - pos;
    let total = RECORD_HEADER_LEN + pad8(len);
    if len < BODY_FIXED_LEN || total > left {
        return Err(format!("bad length {len} ({left} bytes left in the file)"));
    }
    let body_start = pos + RECORD_HEADER_LEN;
    let body = &bytes[body_start..body_start + len];
    if verify {
        let actual = crc32c::crc32c(body);
        if actual != crc {
            return Err(format!(
                "bad crc (stored {crc:#010x}, computed {actual:#010x}): torn or corrupt"
            ));
        }
        if bytes[body_start + len..pos + total].iter().any(|&b| b != 0) {
            return Err("non-zero padding".into());
        }
    }
    let seq = le_u64(body, 0);
    let kind = body[8];
    let reserved = body[9];
    let channel_len = usize::from(le_u16(body, 10));
    let offset = le_u64(body, 12);
    let time_ms = le_u64(body, 20);
    let data_len = le_u32(body, 28) as usize;
    let info_len = le_u32(body, 32) as usize;
    let tags_len = le_u32(body, 36) as usize;
    if reserved != 0 {
        return Err(format!("reserved byte is {reserved}"));
    }
    if kind != KIND_PUBLICATION && kind != KIND_POSITION {
        return Err(format!("unknown kind {kind}"));
    }
    let sum =
        (BODY_FIXED_LEN + channel_len) as u64 + data_len as u64 + info_len as u64 + tags_len as u64;
    if sum != len as u64 {
        return Err(format!(
            "field lengths add up to {sum}, record length is {len}"
        ));
    }
    if channel_len == 0 {
        return Err("empty channel name".into());
    }
    if kind == KIND_POSITION && sum != (BODY_FIXED_LEN + channel_len) as u64 {
        return Err("position record with a payload".into());
    }
    let channel = std::str::from_utf8(&body[BODY_FIXED_LEN..BODY_FIXED_LEN + channel_len])
        .map_err(|_| "channel name is not UTF-8".to_string())?;
    Ok(Some(RecordView {
        seq,
        kind,
        channel,
        offset,
        time_ms,
        data_len,
        info_len,
        payload: &body[BODY_FIXED_LEN + channel_len..],
        total,
    }))
}

/// The fields of a record to write.
struct Fields<'a> {
    kind: u8,
    channel: &'a str,
    offset: u64,
    time_ms: u64,
    data: &'a [u8],
    info: &'a [u8],
    tags: &'a [u8],
}

/// The dirty bytes of one segment.
#[derive(Debug)]
struct FlushRange {
    mapping: Arc<Mapping>,
    from: usize,
    to: usize,
}

/// Makes durable what was appended before `take_flush`. Blocking: run it off the shard.
#[derive(Debug)]
pub struct FlushJob {
    ranges: Vec<FlushRange>,
    /// Set when segment files were created: their directory entries need an fsync too.
    dir: Option<PathBuf>,
}

impl FlushJob {
    /// msync(MS_SYNC) of each dirty range, oldest first, then fsync of the directory if
    /// segments were created. On error nothing is retried: the caller treats the appended data
    /// as not durable.
    pub fn run(self) -> io::Result<()> {
        for range in &self.ranges {
            range
                .mapping
                .map
                .flush_range(range.from, range.to - range.from)
                .map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("msync {}: {e}", range.mapping.path.display()),
                    )
                })?;
        }
        if let Some(dir) = &self.dir {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io::Error::new(e.kind(), format!("fsync {}: {e}", dir.display())))?;
        }
        Ok(())
    }

    /// Dirty bytes this job syncs.
    pub fn bytes(&self) -> u64 {
        self.ranges.iter().map(|r| (r.to - r.from) as u64).sum()
    }
}

/// The persistent history of one partition; see the module doc.
#[derive(Debug)]
pub struct HistoryLog {
    dir: PathBuf,
    partition: u32,
    segment_size: u64,
    epoch: Arc<str>,
    segs: Segments,
    /// seq of the next record.
    next_seq: u64,
    channels: HashMap<Arc<str>, Channel>,
    indexed: usize,
    /// Head segment bytes from here to its `end` are in no flush job yet.
    dirty_from: usize,
    /// Dirty ranges of segments that are no longer the head.
    pending: Vec<FlushRange>,
    /// Segment files were created since the last flush job.
    dir_dirty: bool,
}

/// Where the scan stopped.
struct Cut {
    /// Index into the file list.
    file: usize,
    /// Byte position of the bad record; `None` when the whole file is unusable.
    position: Option<usize>,
    reason: String,
    /// The unusable file holds nothing (all-zero header, shorter than one record).
    blank: bool,
}

enum SegmentFault {
    /// The file is not a usable segment.
    Defect { reason: String, blank: bool },
    /// Not the file's fault (descriptors, memory, permissions): refuse to start.
    Fatal(HistoryError),
}

impl HistoryLog {
    /// Opens the partition's log in `dir` (created if missing), scans and verifies every
    /// segment, truncates a torn or corrupt tail and rebuilds the index; keeps the epoch from
    /// `EPOCH` unless history was lost (see the module doc). `segment_size` (a multiple of
    /// 4096, at most 4 GiB) applies to segments created from now on.
    pub fn open(
        dir: &Path,
        partition: u32,
        segment_size: u64,
    ) -> Result<(HistoryLog, OpenReport), HistoryError> {
        if !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&segment_size)
            || segment_size & (MIN_SEGMENT_SIZE - 1) != 0
        {
            return Err(HistoryError::Config {
                partition,
                reason: format!(
                    "segment size {segment_size} is not a multiple of 4096 between \
                     {MIN_SEGMENT_SIZE} and {MAX_SEGMENT_SIZE}"
                ),
            });
        }
        fs::create_dir_all(dir).map_err(io_error(partition, "create directory", dir))?;
        let files = list_segments(dir, partition)?;
        let mut report = OpenReport {
            partition,
            ..OpenReport::default()
        };
        let mut lost = Vec::new();
        let stored_epoch = match read_epoch(dir) {
            Ok(Some(epoch)) => Some(epoch),
            Ok(None) => {
                if !files.is_empty() {
                    lost.push(format!(
                        "EPOCH is missing while {} segment file(s) exist",
                        files.len()
                    ));
                }
                None
            }
            Err(why) => {
                lost.push(format!("EPOCH is unreadable: {why}"));
                None
            }
        };

        let mut log = HistoryLog {
            dir: dir.to_path_buf(),
            partition,
            segment_size,
            epoch: Arc::from(""),
            segs: Segments::default(),
            next_seq: files.first().map_or(1, |(number, _)| *number),
            channels: HashMap::new(),
            indexed: 0,
            dirty_from: 0,
            pending: Vec::new(),
            dir_dirty: false,
        };

        let mut cut = None;
        for (i, (number, path)) in files.iter().enumerate() {
            let seg = match open_segment(path, partition, *number) {
                Ok(seg) => seg,
                Err(SegmentFault::Fatal(e)) => return Err(e),
                Err(SegmentFault::Defect { reason, blank }) => {
                    cut = Some(Cut {
                        file: i,
                        position: None,
                        reason,
                        blank,
                    });
                    break;
                }
            };
            if i > 0 && seg.base_seq != log.next_seq {
                cut = Some(Cut {
                    file: i,
                    position: None,
                    reason: format!(
                        "base_seq {} does not continue the previous segment (expected {})",
                        seg.base_seq, log.next_seq
                    ),
                    blank: false,
                });
                break;
            }
            log.next_seq = seg.base_seq;
            log.segs.list.push_back(seg);
            if let Some(reason) = log.scan_head(&mut report) {
                cut = Some(Cut {
                    file: i,
                    position: Some(log.segs.head().end),
                    reason,
                    blank: false,
                });
                break;
            }
        }

        // Decide everything first: a new epoch must be on disk before anything is deleted, or
        // a crash in between would leave lost history under the old epoch.
        let mut doomed = Vec::new();
        if let Some(cut) = cut {
            let name = file_name(&files[cut.file].1);
            let later = &files[cut.file + 1..];
            let tail = (cut.position.is_some() || cut.blank)
                && later.iter().all(|(_, path)| is_blank(path));
            let at = cut.position.unwrap_or(0);
            let what = if cut.position.is_some() {
                "cut"
            } else {
                "removed"
            };
            report.truncated.push(format!(
                "partition {partition}: segment {name}: {what} at byte {at}: {}",
                cut.reason
            ));
            if cut.position.is_none() {
                doomed.push(files[cut.file].1.clone());
            }
            for (_, path) in later {
                doomed.push(path.clone());
                report.truncated.push(format!(
                    "partition {partition}: segment {}: removed: {}",
                    file_name(path),
                    if tail {
                        "blank, left by a crash while starting a segment"
                    } else {
                        "follows the lost records"
                    }
                ));
            }
            if !tail {
                lost.push(format!(
                    "segment {name} at byte {at}: {}; records from seq {} on dropped, {} later \
                     segment file(s) deleted",
                    cut.reason,
                    log.next_seq,
                    later.len()
                ));
            }
        }
        report.epoch_reset = (!lost.is_empty()).then(|| lost.join("; "));
        log.epoch = match (stored_epoch, &report.epoch_reset) {
            (Some(epoch), None) => epoch,
            _ => write_new_epoch(dir, partition)?,
        };

        for path in &doomed {
            remove_segment_file(path, partition)?;
        }
        if log.segs.list.is_empty() {
            let seg = create_segment(dir, partition, log.next_seq, segment_size)?;
            seg.mapping
                .map
                .flush_range(0, HEADER_LEN)
                .map_err(io_error(partition, "msync", &seg.mapping.path))?;
            log.segs.list.push_back(seg);
        } else {
            log.prepare_head()?;
        }
        sync_dir(dir, partition)?;
        log.dirty_from = log.segs.head().end;
        report.segments = log.segs.list.len();
        Ok((log, report))
    }

    /// Scans the head segment (just added) from its header on and indexes its records; returns
    /// the reason if it stopped at a bad record (the head's `end` is then that record).
    fn scan_head(&mut self, report: &mut OpenReport) -> Option<String> {
        let ordinal = self.segs.head_ordinal();
        let mapping = self.segs.head().mapping.clone();
        // A hint for the kernel's read-ahead; the scan is correct without it.
        let _ = mapping.map.advise(Advice::Sequential);
        let bytes = mapping.bytes();
        let mut pos = HEADER_LEN;
        let outcome = loop {
            match parse_record(bytes, pos, true) {
                Ok(None) => break None,
                Err(reason) => break Some(reason),
                Ok(Some(record)) => {
                    if record.seq != self.next_seq {
                        break Some(format!(
                            "seq gap: expected {}, found {} (stale record)",
                            self.next_seq, record.seq
                        ));
                    }
                    self.index_scanned(&record, ordinal, pos);
                    pos += record.total;
                    self.next_seq += 1;
                    report.records += 1;
                    report.bytes += record.total as u64;
                }
            }
        };
        let _ = mapping.map.advise(Advice::Normal);
        self.segs.head_mut().end = pos;
        outcome
    }

    fn index_scanned(&mut self, record: &RecordView<'_>, ordinal: u32, pos: usize) {
        if !self.channels.contains_key(record.channel) {
            self.channels.insert(record.channel.into(), Channel::new());
        }
        let ch = self
            .channels
            .get_mut(record.channel)
            .expect("inserted above");
        if record.kind == KIND_POSITION {
            self.indexed -= ch.clear(&mut self.segs);
        } else {
            // Offsets of a channel are consecutive by construction (the owner asserts it at
            // append); should they not be, serve only what follows the break.
            if ch.top != 0 && record.offset != ch.top + 1 {
                self.indexed -= ch.clear(&mut self.segs);
            }
            ch.push(entry(ordinal, pos), record.offset, &mut self.segs);
            self.indexed += 1;
        }
        ch.top = record.offset;
        ch.last_segment = ordinal;
    }

    /// Makes the head segment writable after the scan: full size, everything after its last
    /// valid record zero, that state durable.
    fn prepare_head(&mut self) -> Result<(), HistoryError> {
        let partition = self.partition;
        let segment_size = self.segment_size;
        let head = self.segs.head_mut();
        let path = head.mapping.path.clone();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_error(partition, "open", &path))?;
        if head.file_len < segment_size {
            // A file cut short (by hand or by a crash) grows back, so a record of any
            // acceptable size fits in it and the next segment never reuses its name.
            file.set_len(segment_size)
                .map_err(io_error(partition, "extend", &path))?;
            let map = MmapOptions::new()
                .map_raw(&file)
                .map_err(io_error(partition, "map", &path))?;
            head.mapping = Arc::new(Mapping {
                map,
                path: path.clone(),
                size: segment_size as usize,
            });
            head.file_len = segment_size;
        }
        let from = head.end as u64;
        if head.file_len > from {
            let len = head.file_len - from;
            let punch = FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE;
            match fallocate(&file, punch, from as i64, len as i64) {
                Ok(()) => {}
                Err(Errno::EOPNOTSUPP | Errno::ENOSYS) => zero_nonzero(head),
                Err(e) => return Err(io_error(partition, "punch hole in", &path)(e.into())),
            }
        }
        file.sync_data()
            .map_err(io_error(partition, "fsync", &path))?;
        head.allocated = head.end;
        head.file = Some(file);
        Ok(())
    }

    pub fn epoch(&self) -> &Arc<str> {
        &self.epoch
    }

    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// The last offset the log knows for `channel` (publication or position record); 0 if none.
    pub fn top(&self, channel: &str) -> u64 {
        self.channels.get(channel).map_or(0, |ch| ch.top)
    }

    /// Every channel the log knows with its top offset.
    pub fn channels(&self) -> impl Iterator<Item = (&Arc<str>, u64)> + '_ {
        self.channels.iter().map(|(name, ch)| (name, ch.top))
    }

    /// States a channel's policy (the owner does so for each channel after `open`, and every
    /// append repeats it): trims the index to `keep` now; `ttl_ms` (0: none) applies to reads
    /// at once and to retention. Unknown channels are ignored.
    pub fn set_policy(&mut self, channel: &str, keep: usize, ttl_ms: u64) {
        if let Some(ch) = self.channels.get_mut(channel) {
            ch.keep = keep;
            ch.ttl_ms = ttl_ms;
            self.indexed -= ch.trim(&mut self.segs);
        }
    }

    /// `set_policy` for every channel whose policy is not stated yet, from `policy(channel)`
    /// returning `(keep, ttl_ms)`.
    pub fn set_policies(&mut self, mut policy: impl FnMut(&str) -> (usize, u64)) {
        for (name, ch) in self.channels.iter_mut() {
            if ch.keep == KEEP_UNKNOWN {
                (ch.keep, ch.ttl_ms) = policy(name);
                self.indexed -= ch.trim(&mut self.segs);
            }
        }
    }

    /// Appends a publication. `offset` must be exactly `top(channel) + 1` (the owner
    /// guarantees it: anything else is a bug, so it panics). The index keeps the last `keep`
    /// publications of the channel; `ttl_ms` (0: none) is remembered for reads and retention.
    #[allow(clippy::too_many_arguments)] // one argument per field, as the owner holds them
    pub fn append(
        &mut self,
        channel: &str,
        offset: u64,
        time_ms: u64,
        data: &[u8],
        info: Option<&[u8]>,
        tags: Option<&[u8]>,
        keep: usize,
        ttl_ms: u64,
    ) -> Result<(), HistoryError> {
        let known = self.channels.get(channel).map(|ch| ch.top);
        let top = known.unwrap_or(0);
        assert!(
            offset == top + 1,
            "history partition {}: channel {channel:?} appends offset {offset} after {top}",
            self.partition
        );
        let at = self.write_record(&Fields {
            kind: KIND_PUBLICATION,
            channel,
            offset,
            time_ms,
            data,
            info: info.unwrap_or_default(),
            tags: tags.unwrap_or_default(),
        })?;
        if known.is_none() {
            self.channels.insert(channel.into(), Channel::new());
        }
        let ch = self.channels.get_mut(channel).expect("inserted above");
        ch.keep = keep;
        ch.ttl_ms = ttl_ms;
        ch.push(at, offset, &mut self.segs);
        ch.top = offset;
        ch.last_segment = entry_ordinal(at);
        self.indexed += 1;
        self.indexed -= ch.trim(&mut self.segs);
        Ok(())
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
            return Ok((Vec::new(), 0));
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

    /// Drops the channel's stored publications but keeps its position: appends a position
    /// record (so the top survives a restart) and empties the index. Unknown channels have
    /// nothing to drop.
    pub fn remove(&mut self, channel: &str, time_ms: u64) -> Result<(), HistoryError> {
        let Some(top) = self.channels.get(channel).map(|ch| ch.top) else {
            return Ok(());
        };
        let at = self.write_position(channel, top, time_ms)?;
        let ch = self.channels.get_mut(channel).expect("looked up above");
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

    /// Retention: drops index entries past their channel's ttl, then deletes the oldest
    /// segments (never the head) that no index entry references. Channels whose last record
    /// lies in such a segment first get a position record at the head, and those are synced
    /// before any file goes (blocking, once per retention that deletes): otherwise a crash
    /// could lose a quiet channel's top without an epoch change. Returns the segments deleted.
    pub fn retain(&mut self, now_ms: u64) -> Result<usize, HistoryError> {
        for ch in self.channels.values_mut() {
            let Some(cutoff) = ch.cutoff(now_ms) else {
                continue;
            };
            while let Some(&at) = ch.entries.front() {
                // Unreadable entries cannot be served: drop them like expired ones.
                let expired = self
                    .segs
                    .record(self.partition, at)
                    .map_or(true, |record| record.time_ms < cutoff);
                if !expired {
                    break;
                }
                ch.pop_front(&mut self.segs);
                self.indexed -= 1;
            }
            if ch.entries.is_empty() {
                ch.entries = VecDeque::new();
            }
        }
        let heads = self.segs.list.len() - 1;
        let doomed = self
            .segs
            .list
            .iter()
            .take(heads)
            .take_while(|seg| seg.refs == 0)
            .count();
        if doomed == 0 {
            return Ok(0);
        }
        let first = self.segs.first_ordinal;
        let carried: Vec<(Arc<str>, u64)> = self
            .channels
            .iter()
            .filter(|(_, ch)| (ch.last_segment.wrapping_sub(first) as usize) < doomed)
            .map(|(name, ch)| (name.clone(), ch.top))
            .collect();
        for (name, top) in &carried {
            let at = self.write_position(name, *top, now_ms)?;
            if let Some(ch) = self.channels.get_mut(name) {
                ch.last_segment = entry_ordinal(at);
            }
        }
        if !carried.is_empty() {
            if let Some(job) = self.take_flush() {
                job.run().map_err(io_error(
                    self.partition,
                    "flush carried positions in",
                    &self.dir,
                ))?;
            }
        }
        for _ in 0..doomed {
            let path = self.segs.list[0].mapping.path.clone();
            remove_segment_file(&path, self.partition)?;
            self.segs.list.pop_front();
            self.segs.first_ordinal = self.segs.first_ordinal.wrapping_add(1);
        }
        Ok(doomed)
    }

    /// The work that makes everything appended so far durable, or `None` if nothing is dirty.
    /// Later appends start a new dirty range.
    pub fn take_flush(&mut self) -> Option<FlushJob> {
        let mut ranges = std::mem::take(&mut self.pending);
        let head = self.segs.head();
        if head.end > self.dirty_from {
            ranges.push(FlushRange {
                mapping: head.mapping.clone(),
                from: self.dirty_from,
                to: head.end,
            });
            self.dirty_from = head.end;
        }
        let dir = std::mem::take(&mut self.dir_dirty).then(|| self.dir.clone());
        if ranges.is_empty() && dir.is_none() {
            return None;
        }
        Some(FlushJob { ranges, dir })
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

    /// Writes one record at the head (starting a new segment if it does not fit); returns its
    /// index entry.
    fn write_record(&mut self, f: &Fields<'_>) -> Result<u64, HistoryError> {
        let len = BODY_FIXED_LEN + f.channel.len() + f.data.len() + f.info.len() + f.tags.len();
        let total = RECORD_HEADER_LEN + pad8(len);
        let max = self.segment_size as usize - HEADER_LEN;
        let name_max = usize::from(u16::MAX);
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
        if self.segs.head().end + total > self.segs.head().mapping.size {
            self.roll()?;
        }
        let pos = self.segs.head().end;
        self.reserve(pos + total)?;

        let mut fixed = [0u8; BODY_FIXED_LEN];
        fixed[0..8].copy_from_slice(&self.next_seq.to_le_bytes());
        fixed[8] = f.kind;
        fixed[10..12].copy_from_slice(&(f.channel.len() as u16).to_le_bytes());
        fixed[12..20].copy_from_slice(&f.offset.to_le_bytes());
        fixed[20..28].copy_from_slice(&f.time_ms.to_le_bytes());
        // Each fits in u32: the record fits in a segment of at most 4 GiB.
        fixed[28..32].copy_from_slice(&(f.data.len() as u32).to_le_bytes());
        fixed[32..36].copy_from_slice(&(f.info.len() as u32).to_le_bytes());
        fixed[36..40].copy_from_slice(&(f.tags.len() as u32).to_le_bytes());
        let parts = [&fixed[..], f.channel.as_bytes(), f.data, f.info, f.tags];
        let crc = parts
            .iter()
            .fold(0, |crc, part| crc32c::crc32c_append(crc, part));
        let mut framing = [0u8; RECORD_HEADER_LEN];
        framing[0..4].copy_from_slice(&(len as u32).to_le_bytes());
        framing[4..8].copy_from_slice(&crc.to_le_bytes());

        let ordinal = self.segs.head_ordinal();
        let head = self.segs.head_mut();
        head.write(pos, &framing);
        let mut at = pos + RECORD_HEADER_LEN;
        for part in parts {
            head.write(at, part);
            at += part.len();
        }
        // The area past `end` is zero already; writing the padding keeps that from being a
        // precondition of correctness.
        head.zero(at, pos + total - at);
        head.end = pos + total;
        self.next_seq += 1;
        Ok(entry(ordinal, pos))
    }

    /// Reserves blocks of the head up to `upto` (plus some ahead): a full disk is then an
    /// error here instead of a SIGBUS when a write faults on a sparse page.
    fn reserve(&mut self, upto: usize) -> Result<(), HistoryError> {
        let partition = self.partition;
        let head = self.segs.head_mut();
        if upto <= head.allocated {
            return Ok(());
        }
        let Some(file) = &head.file else {
            return Ok(());
        };
        let until = (upto + ALLOCATE_AHEAD).min(head.mapping.size);
        match fallocate(
            file,
            FallocateFlags::empty(),
            head.allocated as i64,
            (until - head.allocated) as i64,
        ) {
            Ok(()) => head.allocated = until,
            // Cannot reserve on this filesystem: blocks get allocated as written.
            Err(Errno::EOPNOTSUPP | Errno::ENOSYS) => head.allocated = head.mapping.size,
            Err(e) => {
                return Err(io_error(partition, "reserve space in", &head.mapping.path)(
                    e.into(),
                ))
            }
        }
        Ok(())
    }

    /// Starts a new head segment at the next seq.
    fn roll(&mut self) -> Result<(), HistoryError> {
        let seg = create_segment(&self.dir, self.partition, self.next_seq, self.segment_size)?;
        let head = self.segs.head_mut();
        if head.end > self.dirty_from {
            self.pending.push(FlushRange {
                mapping: head.mapping.clone(),
                from: self.dirty_from,
                to: head.end,
            });
        }
        head.file = None;
        self.segs.list.push_back(seg);
        self.dirty_from = 0;
        self.dir_dirty = true;
        Ok(())
    }
}

/// Zeroes the non-zero bytes after the head's end, where punching a hole is not supported.
fn zero_nonzero(head: &mut Segment) {
    const CHUNK: usize = 4096;
    let mut pos = head.end;
    while pos < head.mapping.size {
        let to = (pos - pos % CHUNK + CHUNK).min(head.mapping.size);
        if head.mapping.bytes()[pos..to].iter().any(|&b| b != 0) {
            head.zero(pos, to - pos);
        }
        pos = to;
    }
}

fn segment_name(base_seq: u64) -> String {
    format!("{base_seq:020}.seg")
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// The segment files of `dir` in base_seq order; removes a leftover `EPOCH.tmp`.
fn list_segments(dir: &Path, partition: u32) -> Result<Vec<(u64, PathBuf)>, HistoryError> {
    let mut files = Vec::new();
    let entries = fs::read_dir(dir).map_err(io_error(partition, "list", dir))?;
    for dir_entry in entries {
        let dir_entry = dir_entry.map_err(io_error(partition, "list", dir))?;
        let name = dir_entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name == EPOCH_TMP {
            let path = dir_entry.path();
            fs::remove_file(&path).map_err(io_error(partition, "remove", &path))?;
            continue;
        }
        let Some(stem) = name.strip_suffix(".seg") else {
            continue;
        };
        if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(number) = stem.parse::<u64>() {
            files.push((number, dir_entry.path()));
        }
    }
    files.sort_unstable_by_key(|(number, _)| *number);
    Ok(files)
}

/// Errors that say nothing about the file itself.
fn is_environmental(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::PermissionDenied
        || matches!(
            e.raw_os_error().map(Errno::from_raw),
            Some(Errno::EMFILE | Errno::ENFILE | Errno::ENOMEM | Errno::EAGAIN | Errno::EINTR)
        )
}

fn open_segment(path: &Path, partition: u32, number: u64) -> Result<Segment, SegmentFault> {
    let fault = |op: &'static str, e: io::Error| {
        if is_environmental(&e) {
            SegmentFault::Fatal(io_error(partition, op, path)(e))
        } else {
            SegmentFault::Defect {
                reason: format!("cannot {op}: {e}"),
                blank: false,
            }
        }
    };
    let defect = |reason: String, blank: bool| SegmentFault::Defect { reason, blank };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| fault("open", e))?;
    let file_len = file.metadata().map_err(|e| fault("stat", e))?.len();
    if file_len < (HEADER_LEN + RECORD_HEADER_LEN) as u64 {
        return Err(defect(format!("only {file_len} bytes long"), true));
    }
    if file_len > MAX_SEGMENT_SIZE {
        return Err(defect(format!("{file_len} bytes, more than 4 GiB"), false));
    }
    let map = MmapOptions::new()
        .map_raw(&file)
        .map_err(|e| fault("map", e))?;
    let mapping = Mapping {
        map,
        path: path.to_path_buf(),
        size: (file_len & !7) as usize,
    };
    let header = &mapping.bytes()[..HEADER_LEN];
    if header.iter().all(|&b| b == 0) {
        return Err(defect("header is all zero".into(), true));
    }
    if &header[..8] != MAGIC {
        return Err(defect("bad magic".into(), false));
    }
    let version = le_u32(header, 8);
    if version != FORMAT_VERSION {
        return Err(defect(format!("format version {version}"), false));
    }
    let owner = le_u32(header, 12);
    if owner != partition {
        return Err(defect(format!("belongs to partition {owner}"), false));
    }
    let base_seq = le_u64(header, 16);
    if base_seq != number {
        return Err(defect(
            format!("header says base_seq {base_seq}, file name {number}"),
            false,
        ));
    }
    Ok(Segment {
        mapping: Arc::new(mapping),
        base_seq,
        file_len,
        end: HEADER_LEN,
        refs: 0,
        file: None,
        allocated: 0,
    })
}

/// A file holding no record: too short for one, all-zero header, or a header and no record.
fn is_blank(path: &Path) -> bool {
    let mut start = [0u8; HEADER_LEN + RECORD_HEADER_LEN];
    let Ok(mut file) = File::open(path) else {
        return false;
    };
    match file.read_exact(&mut start) {
        Ok(()) => {}
        Err(e) => return e.kind() == io::ErrorKind::UnexpectedEof,
    }
    start[..HEADER_LEN].iter().all(|&b| b == 0)
        || (&start[..8] == MAGIC && start[HEADER_LEN..].iter().all(|&b| b == 0))
}

fn create_segment(
    dir: &Path,
    partition: u32,
    base_seq: u64,
    size: u64,
) -> Result<Segment, HistoryError> {
    let path = dir.join(segment_name(base_seq));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(io_error(partition, "create", &path))?;
    init_segment(file, &path, partition, base_seq, size).inspect_err(|_| {
        // Best effort: a leftover file would make every later attempt fail on its name; if
        // this fails too, the error returned already names the file.
        let _ = fs::remove_file(&path);
    })
}

fn init_segment(
    file: File,
    path: &Path,
    partition: u32,
    base_seq: u64,
    size: u64,
) -> Result<Segment, HistoryError> {
    file.set_len(size)
        .map_err(io_error(partition, "size", path))?;
    let map = MmapOptions::new()
        .map_raw(&file)
        .map_err(io_error(partition, "map", path))?;
    let mut seg = Segment {
        mapping: Arc::new(Mapping {
            map,
            path: path.to_path_buf(),
            size: size as usize,
        }),
        base_seq,
        file_len: size,
        end: HEADER_LEN,
        refs: 0,
        file: Some(file),
        allocated: 0,
    };
    // The header write faults a page in too: reserve before it.
    let until = ALLOCATE_AHEAD.min(size as usize);
    if let Some(file) = &seg.file {
        match fallocate(file, FallocateFlags::empty(), 0, until as i64) {
            Ok(()) => seg.allocated = until,
            Err(Errno::EOPNOTSUPP | Errno::ENOSYS) => seg.allocated = size as usize,
            Err(e) => return Err(io_error(partition, "reserve space in", path)(e.into())),
        }
    }
    let created_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut header = [0u8; HEADER_LEN];
    header[..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[12..16].copy_from_slice(&partition.to_le_bytes());
    header[16..24].copy_from_slice(&base_seq.to_le_bytes());
    header[24..32].copy_from_slice(&created_ms.to_le_bytes());
    seg.write(0, &header);
    Ok(seg)
}

fn remove_segment_file(path: &Path, partition: u32) -> Result<(), HistoryError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error(partition, "remove", path)(e)),
    }
}

fn sync_dir(dir: &Path, partition: u32) -> Result<(), HistoryError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(partition, "fsync", dir))
}

/// The stored epoch: `Ok(None)` if there is none, `Err(why)` if it is unusable.
fn read_epoch(dir: &Path) -> Result<Option<Arc<str>>, String> {
    match fs::read(dir.join(EPOCH_FILE)) {
        Ok(bytes) if bytes.len() == 8 && bytes.iter().all(u8::is_ascii_lowercase) => {
            Ok(Some(String::from_utf8_lossy(&bytes).into_owned().into()))
        }
        Ok(bytes) => Err(format!("{} bytes, not 8 lowercase letters", bytes.len())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Generates and durably stores a new epoch: eight random letters, Centrifugo's shape.
fn write_new_epoch(dir: &Path, partition: u32) -> Result<Arc<str>, HistoryError> {
    let mut raw = [0u8; 8];
    getrandom::getrandom(&mut raw)
        .map_err(|e| io_error(partition, "generate an epoch for", dir)(e.into()))?;
    let epoch: String = raw.iter().map(|b| (b'a' + b % 26) as char).collect();
    let tmp = dir.join(EPOCH_TMP);
    let mut file = File::create(&tmp).map_err(io_error(partition, "create", &tmp))?;
    file.write_all(epoch.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io_error(partition, "write", &tmp))?;
    let path = dir.join(EPOCH_FILE);
    fs::rename(&tmp, &path).map_err(io_error(partition, "rename to", &path))?;
    sync_dir(dir, partition)?;
    Ok(epoch.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEG: u64 = 64 * 1024;
    const PARTITION: u32 = 7;
    const KEEP: usize = 1_000_000;

    fn open(dir: &Path) -> (HistoryLog, OpenReport) {
        HistoryLog::open(dir, PARTITION, SEG).expect("open")
    }

    /// Appends the channel's next publication (keep everything, no ttl); returns its offset.
    fn push(log: &mut HistoryLog, channel: &str, time_ms: u64, data: &[u8]) -> u64 {
        let offset = log.top(channel) + 1;
        log.append(channel, offset, time_ms, data, None, None, KEEP, 0)
            .expect("append");
        offset
    }

    fn offsets(log: &HistoryLog, channel: &str) -> Vec<u64> {
        let (pubs, _) = log.read(channel, 0, false, usize::MAX, 0).expect("read");
        pubs.iter().map(|p| p.offset).collect()
    }

    fn segment_files(dir: &Path) -> Vec<PathBuf> {
        list_segments(dir, PARTITION)
            .expect("list")
            .into_iter()
            .map(|(_, path)| path)
            .collect()
    }

    /// (position, total length) of each valid record in a segment file.
    fn records_of(path: &Path) -> Vec<(usize, usize)> {
        let bytes = fs::read(path).expect("read segment");
        let mut out = Vec::new();
        let mut pos = HEADER_LEN;
        while let Ok(Some(record)) = parse_record(&bytes, pos, true) {
            out.push((pos, record.total));
            pos += record.total;
        }
        out
    }

    fn patch(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
        let mut bytes = fs::read(path).expect("read");
        f(&mut bytes);
        fs::write(path, bytes).expect("write");
    }

    fn copy_dir(from: &Path, to: &Path) {
        for entry in fs::read_dir(from).expect("list") {
            let entry = entry.expect("entry");
            fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
        }
    }

    #[test]
    fn round_trip_and_reopen_keep_data_offsets_and_epoch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("017");
        let (mut log, report) = open(&path);
        assert_eq!(report.epoch_reset, None);
        assert_eq!((report.segments, report.records), (1, 0));
        assert_eq!(log.epoch().len(), 8);
        assert!(log.take_flush().is_none(), "a fresh log is clean");
        let epoch = log.epoch().clone();
        log.append(
            "a",
            1,
            100,
            br#"{"x":1}"#,
            Some(br#"{"user":"u"}"#),
            None,
            KEEP,
            0,
        )
        .expect("append");
        log.append("a", 2, 200, b"2", None, Some(br#"{"t":"v"}"#), KEEP, 0)
            .expect("append");
        log.append("a", 3, 300, b"[3]", Some(b"{}"), Some(b"{}"), KEEP, 0)
            .expect("append");
        log.append("b", 1, 400, b"\"b\"", None, None, KEEP, 0)
            .expect("append");
        let (before, top) = log.read("a", 0, false, 10, 1000).expect("read");
        assert_eq!(top, 3);
        assert_eq!(before.len(), 3);
        assert_eq!(before[0].data.as_ref(), br#"{"x":1}"#);
        assert_eq!(before[0].info.as_deref(), Some(&br#"{"user":"u"}"#[..]));
        assert_eq!(before[0].tags, None);
        assert_eq!(before[1].info, None);
        assert_eq!(before[1].tags.as_deref(), Some(&br#"{"t":"v"}"#[..]));
        assert_eq!(before[2].time_ms, 300);
        drop(log);

        let (mut log, report) = open(&path);
        assert_eq!(log.epoch(), &epoch);
        assert_eq!(report.epoch_reset, None);
        assert!(report.truncated.is_empty(), "{:?}", report.truncated);
        assert_eq!(report.records, 4);
        assert_eq!(log.read("a", 0, false, 10, 1000).expect("read").0, before);
        let mut channels: Vec<_> = log
            .channels()
            .map(|(c, top)| (c.to_string(), top))
            .collect();
        channels.sort();
        assert_eq!(channels, [("a".to_string(), 3), ("b".to_string(), 1)]);
        assert_eq!(push(&mut log, "a", 500, b"4"), 4);
        drop(log);
        let (log, _) = open(&path);
        assert_eq!(offsets(&log, "a"), [1, 2, 3, 4]);
        assert_eq!(log.epoch(), &epoch);
    }

    #[test]
    #[should_panic(expected = "appends offset 3 after 1")]
    fn append_out_of_order_is_a_bug() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, _) = open(dir.path());
        push(&mut log, "a", 0, b"1");
        let _ = log.append("a", 3, 0, b"3", None, None, KEEP, 0);
    }

    #[test]
    fn read_forward_reverse_limit_ttl_and_keep() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, _) = open(dir.path());
        for i in 1..=10u64 {
            log.append(
                "c",
                i,
                i * 1000,
                format!("{i}").as_bytes(),
                None,
                None,
                100,
                5000,
            )
            .expect("append");
        }
        let now = 10_000; // cutoff 5000: offsets 1..=4 expired
        let read = |after, reverse, limit| {
            let (pubs, top) = log.read("c", after, reverse, limit, now).expect("read");
            assert_eq!(top, 10);
            pubs.iter().map(|p| p.offset).collect::<Vec<_>>()
        };
        assert_eq!(read(0, false, 100), [5, 6, 7, 8, 9, 10]);
        assert_eq!(read(6, false, 2), [7, 8]);
        assert_eq!(read(10, false, 5), Vec::<u64>::new());
        assert_eq!(read(0, true, 3), [10, 9, 8]);
        assert_eq!(read(7, true, 100), [6, 5]);
        assert_eq!(read(0, false, 0), Vec::<u64>::new());
        assert_eq!(
            log.read("none", 0, false, 10, now).expect("read"),
            (vec![], 0)
        );
        assert_eq!(log.first_available("c", now), Some(5));
        assert_eq!(log.first_available("c", 100_000), None);
        assert_eq!(log.first_available("none", now), None);

        log.append("c", 11, 11_000, b"11", None, None, 3, 5000)
            .expect("append");
        assert_eq!(log.indexed_records(), 3);
        assert_eq!(log.first_available("c", 11_000), Some(9));
        drop(log);

        // After a restart nothing is trimmed until the owner states the policy.
        let (mut log, _) = open(dir.path());
        assert_eq!(log.indexed_records(), 11);
        assert_eq!(log.first_available("c", 1_000_000), Some(1));
        log.set_policies(|_| (4, 5000));
        assert_eq!(log.indexed_records(), 4);
        assert_eq!(offsets(&log, "c"), [8, 9, 10, 11]);
        assert_eq!(log.first_available("c", 14_500), Some(10));
        log.set_policy("c", 2, 0);
        assert_eq!(offsets(&log, "c"), [10, 11]);
        assert_eq!(log.first_available("c", u64::MAX), Some(10));
    }

    #[test]
    fn segments_roll_over_and_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, _) = open(dir.path());
        let data = [b'7'; 100];
        for i in 0..2000u64 {
            push(&mut log, &format!("ch{}", i % 20), i, &data);
        }
        let segments = log.segments();
        assert!(segments >= 4, "{segments} segments");
        assert_eq!(segment_files(dir.path()).len(), segments);
        assert_eq!(log.disk_bytes(), segments as u64 * SEG);
        drop(log);
        let (log, report) = open(dir.path());
        assert_eq!((report.records, report.segments), (2000, segments));
        assert!(report.truncated.is_empty());
        assert_eq!(offsets(&log, "ch3"), (1..=100).collect::<Vec<_>>());
        let (pubs, _) = log.read("ch3", 0, false, 1, 0).expect("read");
        assert_eq!(pubs[0].data.as_ref(), &data[..]);
        assert_eq!(pubs[0].time_ms, 3);
    }

    /// Ten records of "a"; returns the segment file and the records' (position, length).
    fn ten_records(dir: &Path) -> (PathBuf, Vec<(usize, usize)>, Arc<str>) {
        let (mut log, _) = open(dir);
        for i in 1..=10u64 {
            push(&mut log, "a", i, format!("{{\"n\":{i:05}}}").as_bytes());
        }
        let epoch = log.epoch().clone();
        drop(log);
        let file = segment_files(dir).remove(0);
        let records = records_of(&file);
        assert_eq!(records.len(), 10);
        (file, records, epoch)
    }

    /// Reopens after damage to record 10: expects the cut there, the epoch kept, appends
    /// continuing at 10 and nothing stale after a second reopen.
    fn expect_tail_cut(dir: &Path, epoch: &Arc<str>, reason: &str) {
        let (mut log, report) = open(dir);
        assert_eq!(log.epoch(), epoch);
        assert_eq!(report.epoch_reset, None);
        assert_eq!(report.records, 9);
        assert_eq!(report.truncated.len(), 1, "{:?}", report.truncated);
        let warning = &report.truncated[0];
        assert!(warning.contains(reason), "{warning}");
        assert!(
            warning.contains("partition 7") && warning.contains(".seg"),
            "{warning}"
        );
        assert_eq!(log.top("a"), 9);
        assert_eq!(push(&mut log, "a", 99, b"\"new\""), 10);
        drop(log);
        let (log, report) = open(dir);
        assert!(report.truncated.is_empty(), "{:?}", report.truncated);
        assert_eq!(report.records, 10);
        assert_eq!(offsets(&log, "a"), (1..=10).collect::<Vec<_>>());
        let (last, _) = log.read("a", 9, false, 1, 0).expect("read");
        assert_eq!(last[0].data.as_ref(), b"\"new\"");
    }

    #[test]
    fn file_cut_short_in_the_last_record_is_truncated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (file, records, epoch) = ten_records(dir.path());
        let (pos, _) = records[9];
        File::options()
            .write(true)
            .open(&file)
            .and_then(|f| f.set_len(pos as u64 + 20))
            .expect("cut");
        expect_tail_cut(dir.path(), &epoch, "bad length");
        assert_eq!(fs::metadata(&file).expect("stat").len(), SEG);
    }

    #[test]
    fn zeroed_end_of_the_last_record_is_truncated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (file, records, epoch) = ten_records(dir.path());
        let (pos, total) = records[9];
        patch(&file, |b| b[pos + total - 8..pos + total].fill(0));
        expect_tail_cut(dir.path(), &epoch, "bad crc");
    }

    #[test]
    fn torn_last_record_is_truncated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (file, records, epoch) = ten_records(dir.path());
        let (pos, total) = records[9];
        patch(&file, |b| {
            b[pos + total / 2 - 4..pos + total / 2 + 4].fill(0)
        });
        expect_tail_cut(dir.path(), &epoch, "bad crc");
    }

    #[test]
    fn every_bit_flip_in_the_last_records_is_detected() {
        let template = tempfile::tempdir().expect("tempdir");
        let (mut log, _) = open(template.path());
        // Lengths that leave padding, info and tags present.
        let names = ["a", "bb", "a", "ccc", "a", "bb"];
        for (i, name) in names.iter().enumerate() {
            let offset = log.top(name) + 1;
            let data = format!("[{}]", "x".repeat(i * 3));
            log.append(
                name,
                offset,
                i as u64,
                data.as_bytes(),
                Some(b"{}"),
                Some(b"{\"k\":1}"),
                KEEP,
                0,
            )
            .expect("append");
        }
        let epoch = log.epoch().clone();
        drop(log);
        let file_name = segment_files(template.path())[0]
            .file_name()
            .expect("name")
            .to_owned();
        let records = records_of(&template.path().join(&file_name));
        let mut flips = 0;
        for (index, &(pos, total)) in records.iter().enumerate().skip(4) {
            for at in pos..pos + total {
                let work = tempfile::tempdir().expect("tempdir");
                copy_dir(template.path(), work.path());
                patch(&work.path().join(&file_name), |b| b[at] ^= 1 << (at % 8));
                let (mut log, report) = open(work.path());
                let context = format!("flip at byte {at} of record {index}");
                assert_eq!(report.records, index as u64, "{context}");
                assert_eq!(report.truncated.len(), 1, "{context}");
                assert!(
                    report.truncated[0].contains(&format!("byte {pos}")),
                    "{context}"
                );
                assert_eq!(report.epoch_reset, None, "{context}");
                assert_eq!(log.epoch(), &epoch, "{context}");
                let expected_top = names[..index].iter().filter(|n| **n == "a").count() as u64;
                assert_eq!(log.top("a"), expected_top, "{context}");
                push(&mut log, "a", 50, b"1");
                drop(log);
                let (log, report) = open(work.path());
                assert_eq!(report.records, index as u64 + 1, "{context}");
                assert!(report.truncated.is_empty(), "{context}");
                assert_eq!(log.top("a"), expected_top + 1, "{context}");
                flips += 1;
            }
        }
        assert!(flips > 100, "{flips} flips");
    }

    #[test]
    fn no_stale_record_reappears_after_truncation_and_new_appends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (file, records, epoch) = ten_records(dir.path());
        let (pos, total) = records[7];
        patch(&file, |b| {
            b[pos + total / 2 - 4..pos + total / 2 + 4].fill(0)
        });
        let (mut log, report) = open(dir.path());
        assert_eq!((report.records, log.top("a")), (7, 7));
        assert_eq!(log.epoch(), &epoch);
        // Same size as the lost record 8, so stale records 9 and 10 would line up exactly.
        assert_eq!(push(&mut log, "a", 80, b"{\"n\":88888}"), 8);
        drop(log);
        let (log, report) = open(dir.path());
        assert!(report.truncated.is_empty(), "{:?}", report.truncated);
        assert_eq!(report.records, 8);
        assert_eq!(log.top("a"), 8);
        assert_eq!(offsets(&log, "a"), (1..=8).collect::<Vec<_>>());
        assert_eq!(
            log.read("a", 7, false, 5, 0).expect("read").0[0]
                .data
                .as_ref(),
            b"{\"n\":88888}"
        );
    }

    /// Appends until `segments` segment files exist; returns the records written.
    fn fill(log: &mut HistoryLog, segments: usize) -> u64 {
        let mut n = 0;
        while log.segments() < segments {
            push(log, &format!("ch{}", n % 7), n, &[b'1'; 300]);
            n += 1;
        }
        n
    }

    #[test]
    fn corruption_in_an_earlier_segment_changes_the_epoch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, _) = open(dir.path());
        fill(&mut log, 3);
        push(&mut log, "last", 0, b"1");
        let epoch = log.epoch().clone();
        drop(log);
        let files = segment_files(dir.path());
        let records = records_of(&files[0]);
        let (pos, _) = records[records.len() / 2];
        patch(&files[0], |b| b[pos + 30] ^= 0x10);

        let (mut log, report) = open(dir.path());
        assert_ne!(log.epoch(), &epoch);
        let reason = report.epoch_reset.expect("epoch reset");
        assert!(
            reason.contains("bad crc") && reason.contains(".seg"),
            "{reason}"
        );
        assert_eq!(report.records, (records.len() / 2) as u64);
        assert_eq!(report.segments, 1);
        assert_eq!(segment_files(dir.path()).len(), 1);
        assert_eq!(log.top("last"), 0);
        let new_epoch = log.epoch().clone();
        push(&mut log, "last", 0, b"1");
        drop(log);
        let (log, report) = open(dir.path());
        assert_eq!(log.epoch(), &new_epoch);
        assert_eq!(report.epoch_reset, None);
        assert_eq!(log.top("last"), 1);
    }

    #[test]
    fn torn_tail_before_a_blank_new_segment_keeps_the_epoch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, _) = open(dir.path());
        let written = fill(&mut log, 2);
        let epoch = log.epoch().clone();
        drop(log);
        let files = segment_files(dir.path());
        let records = records_of(&files[0]);
        let (pos, total) = *records.last().expect("records");
        patch(&files[0], |b| b[pos + total - 4] ^= 1);
        // The crash came before the new segment's header reached the disk.
        patch(&files[1], |b| b.fill(0));
        let (log, report) = open(dir.path());
        assert_eq!(log.epoch(), &epoch);
        assert_eq!(report.epoch_reset, None);
        assert_eq!(report.truncated.len(), 2, "{:?}", report.truncated);
        assert_eq!(report.records, records.len() as u64 - 1);
        assert_eq!(report.segments, 1);
        assert_eq!(written, records.len() as u64 + 1);
    }

    #[test]
    fn another_partitions_segment_changes_the_epoch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, _) = open(dir.path());
        push(&mut log, "a", 0, b"1");
        drop(log);
        let (log, report) = HistoryLog::open(dir.path(), PARTITION + 1, SEG).expect("open");
        let reason = report.epoch_reset.expect("epoch reset");
        assert!(reason.contains("belongs to partition 7"), "{reason}");
        assert_eq!(log.top("a"), 0);
        assert_eq!(log.segments(), 1);
    }

    #[test]
    fn missing_epoch_gets_a_new_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, _) = open(dir.path());
        push(&mut log, "a", 0, b"1");
        let epoch = log.epoch().clone();
        drop(log);
        fs::remove_file(dir.path().join(EPOCH_FILE)).expect("remove");
        let (log, report) = open(dir.path());
        assert_ne!(log.epoch(), &epoch);
        let reason = report.epoch_reset.expect("epoch reset");
        assert!(reason.contains("EPOCH is missing"), "{reason}");
        assert_eq!(log.top("a"), 1, "records are kept under the new epoch");
        let new_epoch = log.epoch().clone();
        drop(log);
        let (log, report) = open(dir.path());
        assert_eq!((log.epoch(), report.epoch_reset), (&new_epoch, None));

        fs::write(dir.path().join(EPOCH_FILE), b"BAD").expect("write");
        let (log, report) = open(dir.path());
        assert_ne!(log.epoch(), &new_epoch);
        assert!(report.epoch_reset.expect("reset").contains("unreadable"));
    }

    #[test]
    fn remove_keeps_the_position_across_restarts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, _) = open(dir.path());
        for i in 0..5 {
            push(&mut log, "a", i, b"1");
        }
        push(&mut log, "b", 0, b"1");
        log.remove("a", 10).expect("remove");
        log.remove("unknown", 10).expect("remove");
        assert_eq!((log.top("a"), log.top("unknown")), (5, 0));
        assert_eq!(offsets(&log, "a"), Vec::<u64>::new());
        assert_eq!(log.first_available("a", 0), None);
        assert_eq!(log.indexed_records(), 1);
        drop(log);
        let (mut log, _) = open(dir.path());
        assert_eq!(log.top("a"), 5);
        assert_eq!(offsets(&log, "a"), Vec::<u64>::new());
        assert_eq!(log.indexed_records(), 1);
        assert_eq!(push(&mut log, "a", 20, b"6"), 6);
        drop(log);
        let (log, _) = open(dir.path());
        assert_eq!(offsets(&log, "a"), [6]);
    }

    #[test]
    fn retention_bounds_the_disk_and_keeps_quiet_channels_positions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, _) = open(dir.path());
        let (keep, ttl) = (10, 2_000);
        let data = [b'5'; 100];
        for q in 0..20 {
            for offset in 1..=3 {
                log.append(
                    &format!("quiet{q}"),
                    offset,
                    0,
                    &data,
                    None,
                    None,
                    keep,
                    ttl,
                )
                .expect("append");
            }
        }
        let (mut now, mut deleted, mut late_max, mut late_min) = (0, 0, 0, u64::MAX);
        let steps = 20_000u64;
        for step in 0..steps {
            now += 10;
            let channel = format!("busy{}", step % 200);
            let offset = log.top(&channel) + 1;
            log.append(&channel, offset, now, &data, None, None, keep, ttl)
                .expect("append");
            if step % 100 == 0 {
                deleted += log.retain(now).expect("retain");
            }
            if step >= steps / 2 {
                late_max = late_max.max(log.disk_bytes());
                late_min = late_min.min(log.disk_bytes());
            }
        }
        // ~3.2 MB were written in 64 KiB segments; what is live fits in a few.
        assert!(deleted >= 30, "{deleted} segments deleted");
        assert!(late_max <= 8 * SEG, "disk grew to {late_max}");
        assert!(late_min >= SEG);
        assert_eq!(
            log.read("quiet3", 0, false, 10, now).expect("read").0,
            vec![]
        );
        drop(log);

        let (mut log, report) = open(dir.path());
        assert_eq!(report.epoch_reset, None);
        assert!(report.truncated.is_empty(), "{:?}", report.truncated);
        assert_eq!(log.channels().count(), 220);
        for q in 0..20 {
            assert_eq!(log.top(&format!("quiet{q}")), 3);
            assert_eq!(offsets(&log, &format!("quiet{q}")), Vec::<u64>::new());
        }
        assert_eq!(log.top("busy7"), steps / 200);
        log.set_policies(|_| (keep, ttl));
        let (pubs, top) = log.read("busy7", 0, false, 100, now).expect("read");
        assert_eq!(top, 100);
        assert_eq!(pubs.iter().map(|p| p.offset).collect::<Vec<_>>(), [100]);
        assert!(log.disk_bytes() <= 8 * SEG);
    }

    #[test]
    fn flush_jobs_cover_appends_and_new_segments() {
        fn send_static<T: Send + 'static>(_: &T) {}
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, _) = open(dir.path());
        assert!(log.take_flush().is_none());
        push(&mut log, "a", 0, b"1");
        let job = log.take_flush().expect("dirty");
        send_static(&job);
        assert!(job.dir.is_none());
        assert!(job.bytes() > 0);
        std::thread::spawn(move || job.run())
            .join()
            .expect("thread")
            .expect("flush");
        assert!(log.take_flush().is_none(), "clean again");
        fill(&mut log, 2);
        let job = log.take_flush().expect("dirty");
        assert_eq!(job.ranges.len(), 2);
        assert!(job.dir.is_some());
        job.run().expect("flush");
        assert!(log.take_flush().is_none());
    }

    #[test]
    fn oversized_records_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, _) = open(dir.path());
        let max_data = SEG as usize - HEADER_LEN - RECORD_HEADER_LEN - BODY_FIXED_LEN - 1;
        let big = vec![b'1'; max_data + 1];
        let err = log
            .append("a", 1, 0, &big, None, None, KEEP, 0)
            .expect_err("too large");
        assert!(matches!(err, HistoryError::TooLarge { .. }), "{err}");
        assert!(err.to_string().contains("partition 7"), "{err}");
        let long_name = "n".repeat(70_000);
        assert!(matches!(
            log.append(&long_name, 1, 0, b"1", None, None, KEEP, 0),
            Err(HistoryError::TooLarge { .. })
        ));
        push(&mut log, "a", 0, b"1");
        // The largest record fills a whole segment of its own.
        push(&mut log, "a", 0, &big[..max_data]);
        push(&mut log, "a", 0, b"3");
        assert_eq!(log.segments(), 3);
        drop(log);
        let (log, report) = open(dir.path());
        assert_eq!(report.records, 3);
        assert_eq!(offsets(&log, "a"), [1, 2, 3]);
        assert!(HistoryLog::open(dir.path(), PARTITION, 5000).is_err());
    }
}
