//! Start-up: `HistoryLog::open` in three steps. `scan` reads every segment file and indexes
//! its valid records, stopping at the first defect; `plan` decides from what the scan found
//! what is cut, deleted, quarantined, and whether the epoch survives; `apply` carries the plan
//! out (new epoch first, so a crash in between never leaves lost history under the old one)
//! and prepares the head segment for writes. The rules are in the module doc (`history`).

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Advice;
use nix::errno::Errno;
use nix::fcntl::{fallocate, FallocateFlags};

use super::epoch::{
    new_epoch, read_epoch, remove_leftover, write_first_epoch, write_new_epoch, EpochFile,
};
use super::error::{io_error, HistoryError, OpenReport};
use super::flush::DirEntries;
use super::index::{entry, Segments};
use super::record::{header, parse_record, RecordView, KIND_FLOOR, KIND_POSITION};
use super::segment::{
    file_name, is_blank, list_segments, map_for_appends, open_segment, quarantine, quarantine_copy,
    remove_segment_file, sync_dir, Mapping, Segment, SegmentFault,
};
use super::HistoryLog;
use crate::limits::{
    HISTORY_SEGMENT_ALIGN_BYTES, HISTORY_SEGMENT_BYTES_MAX, HISTORY_SEGMENT_BYTES_MIN,
};

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

/// What the scan found: the files, the stored epoch (or why there is none usable), and the
/// first defect.
struct Scan {
    files: Vec<(u64, PathBuf)>,
    stored_epoch: Result<Option<Arc<str>>, String>,
    cut: Option<Cut>,
}

/// What to do about it.
#[derive(Default)]
struct Plan {
    /// Files holding nothing (a crash while starting a segment): deleted.
    delete: Vec<PathBuf>,
    /// Files that may hold valid records past lost ones: moved aside.
    quarantine: Vec<PathBuf>,
    /// The damaged segment that stays as the head, cut at the defect: copied aside first.
    copy_aside: Option<PathBuf>,
    /// Why history was lost (a new epoch follows), empty if it was not.
    lost: Vec<String>,
}

impl HistoryLog {
    /// Opens the partition's log in `dir` (created if missing), scans and verifies every
    /// segment, truncates a torn or corrupt tail and rebuilds the index; keeps the epoch from
    /// `EPOCH` unless history was lost (see the module doc). `segment_size` (a multiple of
    /// 4096 within the limits) applies to segments created from now on.
    pub fn open(
        dir: &Path,
        partition: u32,
        segment_size: u64,
    ) -> Result<(HistoryLog, OpenReport), HistoryError> {
        if !(HISTORY_SEGMENT_BYTES_MIN..=HISTORY_SEGMENT_BYTES_MAX).contains(&segment_size)
            || !segment_size.is_multiple_of(HISTORY_SEGMENT_ALIGN_BYTES)
        {
            return Err(HistoryError::Config {
                partition,
                reason: format!(
                    "segment size {segment_size} is not a multiple of \
                     {HISTORY_SEGMENT_ALIGN_BYTES} between {HISTORY_SEGMENT_BYTES_MIN} and \
                     {HISTORY_SEGMENT_BYTES_MAX}"
                ),
            });
        }
        fs::create_dir_all(dir).map_err(io_error(partition, "create directory", dir))?;
        let mut report = OpenReport {
            partition,
            ..OpenReport::default()
        };
        let mut log = HistoryLog {
            dir: dir.to_path_buf(),
            partition,
            segment_size,
            epoch: Arc::from(""),
            epoch_file: EpochFile::Durable,
            segs: Segments::default(),
            next_seq: 1,
            channels: Default::default(),
            indexed: 0,
            expiry: Default::default(),
            dirty_from: 0,
            pending: Vec::new(),
            dir_entries: DirEntries::Durable,
            floor: 0,
            floor_written: None,
            appended: 0,
            appended_bytes: 0,
        };
        let scan = log.scan(&mut report)?;
        let plan = log.plan(&scan, &mut report);
        log.apply(scan, plan, &mut report)?;
        report.segments = log.segs.list.len();
        Ok((log, report))
    }

    /// Reads the files in order and indexes every valid record up to the first defect.
    fn scan(&mut self, report: &mut OpenReport) -> Result<Scan, HistoryError> {
        remove_leftover(&self.dir, self.partition)?;
        let files = list_segments(&self.dir, self.partition)?;
        let stored_epoch = read_epoch(&self.dir);
        self.next_seq = files.first().map_or(1, |(number, _)| *number);
        let mut cut = None;
        for (i, (number, path)) in files.iter().enumerate() {
            let seg = match open_segment(path, self.partition, *number) {
                Ok(seg) => seg,
                Err(SegmentFault::Io(e)) => return Err(e),
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
            if i > 0 && seg.base_seq != self.next_seq {
                cut = Some(Cut {
                    file: i,
                    position: None,
                    reason: format!(
                        "base_seq {} does not continue the previous segment (expected {})",
                        seg.base_seq, self.next_seq
                    ),
                    blank: false,
                });
                break;
            }
            self.next_seq = seg.base_seq;
            self.segs.list.push_back(seg);
            if let Some(reason) = self.scan_head(report) {
                let position = self.segs.head().map(|head| head.end);
                cut = Some(Cut {
                    file: i,
                    position,
                    reason,
                    blank: false,
                });
                break;
            }
        }
        Ok(Scan {
            files,
            stored_epoch,
            cut,
        })
    }

    /// Scans the head segment (just added) from its header on and indexes its records; returns
    /// the reason if it stopped at a bad record (the head's `end` is then that record).
    fn scan_head(&mut self, report: &mut OpenReport) -> Option<String> {
        let ordinal = self.segs.head_ordinal();
        let mapping = self.segs.head()?.mapping.clone();
        // A hint for the kernel's read-ahead; the scan is correct without it.
        let _ = mapping.map.advise(Advice::Sequential);
        let bytes = mapping.bytes();
        let mut pos = header::LEN;
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
        if let Some(head) = self.segs.head_mut() {
            head.end = pos;
        }
        outcome
    }

    fn index_scanned(&mut self, record: &RecordView<'_>, ordinal: u32, pos: usize) {
        if record.kind == KIND_FLOOR {
            self.floor = self.floor.max(record.offset);
            self.floor_written = Some((self.floor, ordinal));
            return;
        }
        // A name is allocated once per channel, not per record scanned.
        let slot = match self.channels.slot(record.channel) {
            Some(slot) => slot,
            None => self.channels.insert(&Arc::from(record.channel)),
        };
        let ch = self.channels.at_mut(slot);
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
        // A position record carries its channel's last publication time.
        ch.last_ms = record.time_ms;
    }

    /// Decides what the scan's defect means: a torn tail (cut, keep the epoch) or lost
    /// history (quarantine what follows, new epoch).
    fn plan(&self, scan: &Scan, report: &mut OpenReport) -> Plan {
        let partition = self.partition;
        let mut plan = Plan::default();
        match &scan.stored_epoch {
            Ok(Some(_)) => {}
            Ok(None) if scan.files.is_empty() => {}
            Ok(None) => plan.lost.push(format!(
                "EPOCH is missing while {} segment file(s) exist",
                scan.files.len()
            )),
            Err(why) => plan.lost.push(format!("EPOCH is unreadable: {why}")),
        }
        let Some(cut) = &scan.cut else {
            return plan;
        };
        let (_, cut_path) = &scan.files[cut.file];
        let name = file_name(cut_path);
        let later = &scan.files[cut.file + 1..];
        let tail =
            (cut.position.is_some() || cut.blank) && later.iter().all(|(_, path)| is_blank(path));
        let at = cut.position.unwrap_or(0);
        let what = match (cut.position, cut.blank || tail) {
            (Some(_), _) => "cut",
            (None, true) => "removed",
            (None, false) => "quarantined",
        };
        report.truncated.push(format!(
            "partition {partition}: segment {name}: {what} at byte {at}: {}",
            cut.reason
        ));
        match (cut.position, tail) {
            (None, true) => plan.delete.push(cut_path.clone()),
            (None, false) => plan.quarantine.push(cut_path.clone()),
            (Some(_), false) => plan.copy_aside = Some(cut_path.clone()),
            (Some(_), true) => {}
        }
        for (_, path) in later {
            if tail {
                plan.delete.push(path.clone());
            } else {
                plan.quarantine.push(path.clone());
            }
            report.truncated.push(format!(
                "partition {partition}: segment {}: {}",
                file_name(path),
                if tail {
                    "removed: blank, left by a crash while starting a segment"
                } else {
                    "quarantined: follows the lost records"
                }
            ));
        }
        if !tail {
            plan.lost.push(format!(
                "segment {name} at byte {at}: {}; records from seq {} on set aside, {} later \
                 segment file(s) quarantined",
                cut.reason,
                self.next_seq,
                later.len()
            ));
        }
        plan
    }

    /// Carries the plan out and prepares the head for writes.
    fn apply(
        &mut self,
        scan: Scan,
        plan: Plan,
        report: &mut OpenReport,
    ) -> Result<(), HistoryError> {
        let partition = self.partition;
        report.epoch_reset = (!plan.lost.is_empty()).then(|| plan.lost.join("; "));
        // A new partition (no `EPOCH`, no segment file) has nothing to protect: what it creates
        // is synced by its first flush job, off the shard thread.
        let new_partition = scan.files.is_empty() && matches!(scan.stored_epoch, Ok(None));
        let stored = scan.stored_epoch.ok().flatten();
        self.epoch = match (stored, &report.epoch_reset) {
            (Some(epoch), None) => epoch,
            _ if new_partition => {
                debug_assert!(plan.lost.is_empty());
                let epoch = new_epoch(&self.dir, partition)?;
                self.dir_entries = DirEntries::Created;
                match write_first_epoch(&self.dir, partition, &epoch) {
                    Ok(()) => self.epoch_file = EpochFile::Written,
                    Err(e) if e.is_no_space() => {
                        // Written with the first segment, once there is room.
                        report.no_space = Some(e.to_string());
                        self.epoch_file = EpochFile::Missing;
                    }
                    Err(e) => return Err(e),
                }
                epoch
            }
            _ => write_new_epoch(&self.dir, partition)?,
        };
        if let Some(path) = &plan.copy_aside {
            match quarantine_copy(path, partition) {
                Ok(copy) => report.truncated.push(format!(
                    "partition {partition}: damaged segment copied aside to {}",
                    copy.display()
                )),
                Err(e) => report.truncated.push(format!(
                    "partition {partition}: could not copy the damaged segment aside: {e}"
                )),
            }
        }
        for path in &plan.quarantine {
            let to = quarantine(path, partition)?;
            report.truncated.push(format!(
                "partition {partition}: segment {} moved aside to {}",
                file_name(path),
                file_name(&to)
            ));
        }
        for path in &plan.delete {
            remove_segment_file(path, partition)?;
        }
        let prepared = match self.segs.head() {
            // The first segment starts as a later one does: its header and directory entry
            // are synced by the next flush job.
            None => self.roll(),
            Some(head) => {
                self.dirty_from = head.end;
                self.prepare_head()
            }
        };
        match prepared {
            Ok(()) => {}
            Err(e) if e.is_no_space() => report.no_space = Some(e.to_string()),
            Err(e) => return Err(e),
        }
        if !new_partition {
            // Deletions, quarantines and a replaced epoch are durable before the log serves.
            sync_dir(&self.dir, partition)?;
        }
        Ok(())
    }

    /// Makes the head segment writable after the scan: full size, everything after its last
    /// valid record zero, that state durable. Runs at open, or at the first append when the
    /// disk was full at open (nothing is written after a head's records before this).
    pub(super) fn prepare_head(&mut self) -> Result<(), HistoryError> {
        let partition = self.partition;
        let segment_size = self.segment_size;
        let Some(head) = self.segs.head_mut() else {
            return Ok(());
        };
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
            let map = map_for_appends(&file, partition, &path)?;
            head.mapping = Arc::new(Mapping {
                map,
                path: path.clone(),
                size: segment_size as usize,
            });
            head.file_len = segment_size;
        } else {
            // Mapped by the scan; appends want no readahead (see `map_for_appends`).
            let _ = head.mapping.map.advise(Advice::Random);
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
