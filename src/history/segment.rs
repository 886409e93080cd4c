//! Segment files: creating, opening and verifying the header of a fixed-size file, its
//! read-write memory mapping (`Mapping`, shared with flush jobs), the head's stage (appended
//! records waiting to land in the file: `stage`, `land`), reserving blocks ahead of the
//! writes (a full disk is an error value, not a SIGBUS), and the directory operations on
//! segment files: listing, removing, quarantining, syncing.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::{Advice, MmapOptions, MmapRaw};
use nix::errno::Errno;
use nix::fcntl::{fallocate, FallocateFlags};

use super::error::{io_error, HistoryError};
use super::record::{get_u32, get_u64, header, layout};
use crate::limits::{
    HISTORY_ALLOCATE_AHEAD_BYTES, HISTORY_PWRITE_MIN_BYTES, HISTORY_SEGMENT_BYTES_MAX,
    HISTORY_SEQ_MAX, HISTORY_STAGE_KEPT_BYTES,
};

/// A segment file's mapping, shared with flush jobs so a job outlives retention.
#[derive(Debug)]
pub struct Mapping {
    pub map: MmapRaw,
    pub path: PathBuf,
    /// Usable bytes: the file size rounded down to 8.
    pub size: usize,
}

impl Mapping {
    /// The mapped bytes. Only this module writes them, through `Segment::write` or the
    /// `pwrite` in `Segment::land` (both take `&mut Segment`, so `&mut HistoryLog`); no slice
    /// from here lives across such a call: they
    /// live inside one `&self` method or the open-time scan, which writes nothing. The file
    /// being changed by another process is the usual mmap hazard, not guarded against.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping is `size` bytes long and lives as long as `self`; see above for
        // why no write overlaps the returned slice.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr(), self.size) }
    }
}

#[derive(Debug)]
pub struct Segment {
    pub mapping: Arc<Mapping>,
    pub base_seq: u64,
    pub file_len: u64,
    /// End of the valid records; the write position of the head segment.
    pub end: usize,
    /// Index entries pointing into this segment; retention deletes it only at 0.
    pub refs: u64,
    /// The head segment's file, kept to reserve blocks ahead of the writes.
    pub file: Option<File>,
    /// Bytes from the start known to have blocks reserved.
    pub allocated: usize,
    /// Records appended to the head and not yet in the file's pages (`stage`, `land`): they
    /// start at `staged_from`, a record boundary, and reads look here first.
    staged: Vec<u8>,
    staged_from: usize,
}

impl Segment {
    /// A segment as found or created: its end after the header, nothing staged.
    fn new(mapping: Arc<Mapping>, base_seq: u64, file_len: u64, file: Option<File>) -> Self {
        Segment {
            mapping,
            base_seq,
            file_len,
            end: header::LEN,
            refs: 0,
            file,
            allocated: 0,
            staged: Vec::new(),
            staged_from: 0,
        }
    }

    /// Appends `src` at `pos` (right after what is staged) to the staged bytes.
    pub fn stage(&mut self, pos: usize, src: &[u8]) {
        self.stage_at(pos, src.len());
        self.staged.extend_from_slice(src);
    }

    /// `stage` of `len` zero bytes.
    pub fn stage_zeros(&mut self, pos: usize, len: usize) {
        self.stage_at(pos, len);
        self.staged.resize(self.staged.len() + len, 0);
    }

    fn stage_at(&mut self, pos: usize, len: usize) {
        assert!(
            pos + len <= self.mapping.size,
            "write past the end of a segment"
        );
        if self.staged.is_empty() {
            self.staged_from = pos;
        }
        debug_assert_eq!(
            pos,
            self.staged_from + self.staged.len(),
            "staged bytes are contiguous"
        );
    }

    pub fn staged_len(&self) -> usize {
        self.staged.len()
    }

    /// The bytes a record at `pos` is read from, and its position in them: the staged bytes
    /// if it is staged (they start at a record boundary), else the mapping.
    pub fn bytes_at(&self, pos: usize) -> (&[u8], usize) {
        if !self.staged.is_empty() && pos >= self.staged_from {
            (&self.staged, pos - self.staged_from)
        } else {
            (self.mapping.bytes(), pos)
        }
    }

    /// Puts the staged bytes in the file's pages. Many at once go in with one `pwrite`: a
    /// write through the mapping faults once per new 4 KiB page (about 4.5 µs each here, the
    /// largest cost of a broadcast's appends), `pwrite` fills the page cache for about 0.8 µs
    /// a page. A few go through the mapping (no call; the page is usually mapped already).
    /// Never fails: what `pwrite` did not write is copied through the mapping, where the
    /// next sync meets any I/O error (blocks are reserved where the filesystem can, so no
    /// SIGBUS there).
    pub fn land(&mut self) {
        if self.staged.is_empty() {
            return;
        }
        let mut landed = 0;
        if self.staged.len() >= HISTORY_PWRITE_MIN_BYTES {
            if let Some(file) = &self.file {
                // Bounded: each round writes something or stops.
                while landed < self.staged.len() {
                    let at = (self.staged_from + landed) as u64;
                    match file.write_at(&self.staged[landed..], at) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => landed += n,
                    }
                }
            }
        }
        let (from, rest) = (self.staged_from + landed, landed..self.staged.len());
        let staged = std::mem::take(&mut self.staged);
        self.write(from, &staged[rest]);
        self.staged = staged;
        self.staged.clear();
        self.staged.shrink_to(HISTORY_STAGE_KEPT_BYTES);
    }

    pub fn write(&mut self, pos: usize, src: &[u8]) {
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

    pub fn zero(&mut self, pos: usize, len: usize) {
        assert!(
            pos + len <= self.mapping.size,
            "zeroing past the end of a segment"
        );
        // SAFETY: as in `write`.
        unsafe { std::ptr::write_bytes(self.mapping.map.as_mut_ptr().add(pos), 0, len) }
    }

    /// Reserves blocks up to `upto` (plus some ahead): a full disk is then an error here
    /// instead of a SIGBUS when a write faults on a sparse page.
    pub fn reserve(&mut self, upto: usize, partition: u32) -> Result<(), HistoryError> {
        if upto <= self.allocated {
            return Ok(());
        }
        let Some(file) = &self.file else {
            return Ok(());
        };
        let until = (upto + HISTORY_ALLOCATE_AHEAD_BYTES).min(self.mapping.size);
        match fallocate(
            file,
            FallocateFlags::empty(),
            self.allocated as i64,
            (until - self.allocated) as i64,
        ) {
            Ok(()) => self.allocated = until,
            // Cannot reserve on this filesystem: blocks get allocated as written.
            Err(Errno::EOPNOTSUPP | Errno::ENOSYS) => self.allocated = self.mapping.size,
            Err(e) => {
                return Err(io_error(partition, "reserve space in", &self.mapping.path)(
                    e.into(),
                ))
            }
        }
        Ok(())
    }
}

impl Drop for Segment {
    /// Staged records reach the file even if nobody landed them (a log dropped at shutdown).
    fn drop(&mut self) {
        self.land();
    }
}

/// Why a segment file is not usable as found.
pub enum SegmentFault {
    /// Its content is not a segment of this partition (the scan decides what that means).
    Defect { reason: String, blank: bool },
    /// The file could not be read at all: an I/O error, not a content problem. The start
    /// stops with it: deleting history because a disk had a bad moment would be wrong.
    Io(HistoryError),
}

pub fn segment_name(base_seq: u64) -> String {
    format!("{base_seq:020}.seg")
}

pub fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// The segment files of `dir` in base_seq order.
pub fn list_segments(dir: &Path, partition: u32) -> Result<Vec<(u64, PathBuf)>, HistoryError> {
    let mut files = Vec::new();
    let entries = fs::read_dir(dir).map_err(io_error(partition, "list", dir))?;
    for dir_entry in entries {
        let dir_entry = dir_entry.map_err(io_error(partition, "list", dir))?;
        let name = dir_entry.file_name();
        let Some(name) = name.to_str() else { continue };
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

/// Opens an existing segment file and checks its header.
pub fn open_segment(path: &Path, partition: u32, number: u64) -> Result<Segment, SegmentFault> {
    let io =
        |op: &'static str| move |e: io::Error| SegmentFault::Io(io_error(partition, op, path)(e));
    let defect = |reason: String, blank: bool| SegmentFault::Defect { reason, blank };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io("open"))?;
    let file_len = file.metadata().map_err(io("stat"))?.len();
    if file_len < (header::LEN + layout::FRAMING_LEN) as u64 {
        return Err(defect(format!("only {file_len} bytes long"), true));
    }
    if file_len > HISTORY_SEGMENT_BYTES_MAX {
        return Err(defect(format!("{file_len} bytes, more than 4 GiB"), false));
    }
    let map = MmapOptions::new().map_raw(&file).map_err(io("map"))?;
    let mapping = Mapping {
        map,
        path: path.to_path_buf(),
        size: (file_len & !7) as usize,
    };
    let head = &mapping.bytes()[..header::LEN];
    if head.iter().all(|&b| b == 0) {
        return Err(defect("header is all zero".into(), true));
    }
    if &head[header::MAGIC] != header::MAGIC_BYTES {
        return Err(defect("bad magic".into(), false));
    }
    let version = get_u32(head, header::VERSION);
    if version != header::FORMAT_VERSION {
        return Err(defect(format!("format version {version}"), false));
    }
    let owner = get_u32(head, header::PARTITION);
    if owner != partition {
        return Err(defect(format!("belongs to partition {owner}"), false));
    }
    let base_seq = get_u64(head, header::BASE_SEQ);
    if base_seq != number {
        return Err(defect(
            format!("header says base_seq {base_seq}, file name {number}"),
            false,
        ));
    }
    if base_seq == 0 || base_seq > HISTORY_SEQ_MAX {
        return Err(defect(
            format!("base_seq {base_seq} is outside 1..={HISTORY_SEQ_MAX}"),
            false,
        ));
    }
    Ok(Segment::new(Arc::new(mapping), base_seq, file_len, None))
}

/// A file holding no record: too short for one, all-zero header, or a header and no record.
pub fn is_blank(path: &Path) -> bool {
    let mut start = [0u8; header::LEN + layout::FRAMING_LEN];
    let Ok(mut file) = File::open(path) else {
        return false;
    };
    match file.read_exact(&mut start) {
        Ok(()) => {}
        Err(e) => return e.kind() == io::ErrorKind::UnexpectedEof,
    }
    start[..header::LEN].iter().all(|&b| b == 0)
        || (&start[header::MAGIC] == header::MAGIC_BYTES
            && start[header::LEN..].iter().all(|&b| b == 0))
}

/// Creates segment `base_seq` of `size` bytes with its header written (not yet synced).
pub fn create_segment(
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
    let map = map_for_appends(&file, partition, path)?;
    let mapping = Mapping {
        map,
        path: path.to_path_buf(),
        size: size as usize,
    };
    let mut seg = Segment::new(Arc::new(mapping), base_seq, size, Some(file));
    // The header write faults a page in too: reserve before it.
    seg.reserve(header::LEN, partition)?;
    let mut head = [0u8; header::LEN];
    head[header::MAGIC].copy_from_slice(header::MAGIC_BYTES);
    head[header::VERSION].copy_from_slice(&header::FORMAT_VERSION.to_le_bytes());
    head[header::PARTITION].copy_from_slice(&partition.to_le_bytes());
    head[header::BASE_SEQ].copy_from_slice(&base_seq.to_le_bytes());
    head[header::CREATED_MS].copy_from_slice(&crate::clock::unix_ms().to_le_bytes());
    seg.write(0, &head);
    Ok(seg)
}

/// Maps a segment that appends will write. Readahead is off for it (`MADV_RANDOM`): a write
/// fault on a page the log has not touched would otherwise read (zero-fill, as the blocks are
/// reserved but unwritten) the whole readahead window around it on the shard thread, 8 MiB
/// here: milliseconds for the first write to a new segment (`benches/first_subscribe.rs`) and
/// a stall of up to tens of milliseconds every few MiB of appends (`benches/history.rs`).
/// Without it each page faults alone (a few µs each, once per 4 KiB). Faulting the reserved
/// range in at once (`MADV_POPULATE_WRITE`) was measured too: about 1 ms per MiB in one
/// call, a worse tail than single faults.
pub fn map_for_appends(file: &File, partition: u32, path: &Path) -> Result<MmapRaw, HistoryError> {
    let map = MmapOptions::new()
        .map_raw(file)
        .map_err(io_error(partition, "map", path))?;
    // A hint: appends are correct without it.
    let _ = map.advise(Advice::Random);
    Ok(map)
}

pub fn remove_segment_file(path: &Path, partition: u32) -> Result<(), HistoryError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error(partition, "remove", path)(e)),
    }
}

/// The name a quarantined copy of `path` gets: `<name>.corrupt-<unix ms>`, never a `.seg`
/// file the scan would read again.
pub fn quarantine_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".corrupt-{}", crate::clock::unix_ms()));
    PathBuf::from(name)
}

/// Moves a segment file aside (kept as evidence, never read again); returns its new name.
pub fn quarantine(path: &Path, partition: u32) -> Result<PathBuf, HistoryError> {
    let to = quarantine_path(path);
    fs::rename(path, &to).map_err(io_error(partition, "quarantine", path))?;
    Ok(to)
}

/// Copies a segment file aside before it is cut (the bytes past the cut are evidence);
/// returns the copy's name.
pub fn quarantine_copy(path: &Path, partition: u32) -> Result<PathBuf, HistoryError> {
    let to = quarantine_path(path);
    fs::copy(path, &to).map_err(io_error(partition, "copy aside", path))?;
    Ok(to)
}

pub fn sync_dir(dir: &Path, partition: u32) -> Result<(), HistoryError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(partition, "fsync", dir))
}
