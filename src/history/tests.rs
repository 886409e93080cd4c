//! Unit tests of the history log: round trips, reads, segments, every kind of damage at
//! start-up, retention, flush jobs, limits.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::epoch::EPOCH_FILE;
use super::record::{header, layout, parse_record};
use super::segment::list_segments;
use super::*;

const SEG: u64 = 64 * 1024;
const PARTITION: u32 = 7;
const KEEP: usize = 1_000_000;
/// Keep everything, no ttl.
const ALL: Policy = Policy {
    keep: KEEP,
    ttl_ms: 0,
    meta_ttl_ms: 0,
};

fn policy_with(keep: usize, ttl_ms: u64, meta_ttl_ms: u64) -> Policy {
    Policy {
        keep,
        ttl_ms,
        meta_ttl_ms,
    }
}

fn open(dir: &Path) -> (HistoryLog, OpenReport) {
    HistoryLog::open(dir, PARTITION, SEG).expect("open")
}

/// Appends the channel's next publication (keep everything, no ttl); returns its offset.
fn push(log: &mut HistoryLog, channel: &str, time_ms: u64, data: &[u8]) -> u64 {
    let offset = log.top(channel) + 1;
    log.append(channel, offset, time_ms, Entry::data(data), ALL)
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
    let mut pos = header::LEN;
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
    let epoch = log.epoch().clone();
    log.append(
        "a",
        1,
        100,
        Entry {
            data: br#"{"x":1}"#,
            info: Some(br#"{"user":"u"}"#),
            tags: None,
        },
        ALL,
    )
    .expect("append");
    log.append(
        "a",
        2,
        200,
        Entry {
            data: b"2",
            info: None,
            tags: Some(br#"{"t":"v"}"#),
        },
        ALL,
    )
    .expect("append");
    log.append(
        "a",
        3,
        300,
        Entry {
            data: b"[3]",
            info: Some(b"{}"),
            tags: Some(b"{}"),
        },
        ALL,
    )
    .expect("append");
    log.append("b", 1, 400, Entry::data(b"\"b\""), ALL)
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
    let _ = log.append("a", 3, 0, Entry::data(b"3"), ALL);
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
            Entry::data(format!("{i}").as_bytes()),
            policy_with(100, 5000, 0),
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

    log.append("c", 11, 11_000, Entry::data(b"11"), policy_with(3, 5000, 0))
        .expect("append");
    assert_eq!(log.indexed_records(), 3);
    assert_eq!(log.first_available("c", 11_000), Some(9));
    drop(log);

    // After a restart nothing is trimmed until the owner states the policy.
    let (mut log, _) = open(dir.path());
    assert_eq!(log.indexed_records(), 11);
    assert_eq!(log.first_available("c", 1_000_000), Some(1));
    log.set_policies(|_| policy_with(4, 5000, 0));
    assert_eq!(log.indexed_records(), 4);
    assert_eq!(offsets(&log, "c"), [8, 9, 10, 11]);
    assert_eq!(log.first_available("c", 14_500), Some(10));
    log.set_policy("c", policy_with(2, 0, 0));
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
            Entry {
                data: data.as_bytes(),
                info: Some(b"{}"),
                tags: Some(b"{\"k\":1}"),
            },
            ALL,
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
    log.remove("a").expect("remove");
    log.remove("unknown").expect("remove");
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
fn retired_segments_go_only_when_their_job_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = open(dir.path());
    let policy = policy_with(1, 0, 0);
    let data = [b'5'; 100];
    // "quiet" is written once, in the first segment; "busy" fills three more.
    log.append("quiet", 1, 0, Entry::data(&data), policy)
        .expect("append");
    let mut offset = 0;
    while log.segments() < 4 {
        offset += 1;
        log.append("busy", offset, 0, Entry::data(&data), policy)
            .expect("append");
    }
    log.take_flush().expect("dirty").run().expect("flush");
    log.set_policy("quiet", policy_with(0, 0, 0));
    let files = segment_files(dir.path());
    assert_eq!(files.len(), 4);

    let job = log
        .retain(0, |_| false)
        .expect("retain")
        .expect("segments to retire");
    assert_eq!((job.retired(), log.segments()), (3, 1));
    assert!(
        job.bytes() > 0,
        "the carried position of \"quiet\" is synced first"
    );
    assert!(
        files.iter().all(|f| f.exists()),
        "nothing is deleted before the job runs"
    );
    let syncer = log
        .take_flush()
        .expect("the syncer's job still covers the position");
    assert_eq!(syncer.retired(), 0);

    // A crash before the job ran: the retired files are read again, as the oldest segments.
    drop((job, syncer, log));
    let (mut log, report) = open(dir.path());
    assert_eq!((report.epoch_reset, report.truncated.len()), (None, 0));
    assert_eq!((log.top("quiet"), log.top("busy")), (1, offset));
    log.set_policies(|_| policy);
    log.set_policy("quiet", policy_with(0, 0, 0));
    let job = log
        .retain(0, |_| false)
        .expect("retain")
        .expect("segments to retire");
    assert_eq!(job.retired(), 3, "the same three, retired again");
    job.run().expect("retire");
    assert_eq!(segment_files(dir.path()), files[3..]);
    drop(log);
    let (log, report) = open(dir.path());
    assert_eq!(report.epoch_reset, None);
    assert_eq!((log.top("quiet"), log.top("busy")), (1, offset));
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
                Entry::data(&data),
                Policy {
                    keep,
                    ttl_ms: ttl,
                    meta_ttl_ms: 0,
                },
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
        log.append(
            &channel,
            offset,
            now,
            Entry::data(&data),
            Policy {
                keep,
                ttl_ms: ttl,
                meta_ttl_ms: 0,
            },
        )
        .expect("append");
        if step % 100 == 0 {
            if let Some(job) = log.retain(now, |_| false).expect("retain") {
                deleted += job.retired();
                job.run().expect("retire");
            }
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
    log.set_policies(|_| Policy {
        keep,
        ttl_ms: ttl,
        meta_ttl_ms: 0,
    });
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
    log.take_flush()
        .expect("the new partition's files")
        .run()
        .expect("flush");
    assert!(log.take_flush().is_none());
    push(&mut log, "a", 0, b"1");
    let job = log.take_flush().expect("dirty");
    send_static(&job);
    assert!(job.epoch.is_none() && job.dirs.is_empty());
    assert!(job.bytes() > 0);
    std::thread::spawn(move || job.run())
        .join()
        .expect("thread")
        .expect("flush");
    assert!(log.take_flush().is_none(), "clean again");
    fill(&mut log, 2);
    let job = log.take_flush().expect("dirty");
    assert_eq!(job.ranges.len(), 2);
    assert_eq!(job.dirs, [dir.path()]);
    job.run().expect("flush");
    assert!(log.take_flush().is_none());
}

#[test]
fn a_new_partition_leaves_its_syncs_to_the_first_flush_job() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("007");
    let (mut log, report) = open(&dir);
    assert_eq!((report.epoch_reset, report.no_space), (None, None));
    assert_eq!(
        fs::read(dir.join(EPOCH_FILE)).expect("EPOCH"),
        log.epoch().as_bytes()
    );
    let job = log.take_flush().expect("the new partition's files");
    assert_eq!(job.epoch, Some(dir.join(EPOCH_FILE)));
    assert_eq!(job.ranges.len(), 1);
    assert_eq!((job.ranges[0].from, job.ranges[0].to), (0, header::LEN));
    assert_eq!(job.dirs, [dir.clone(), root.path().to_path_buf()]);
    job.run().expect("flush");
    assert!(log.take_flush().is_none());

    // A reopened partition is not new: nothing to sync until something is appended.
    let epoch = log.epoch().clone();
    drop(log);
    let (mut log, report) = open(&dir);
    assert_eq!((log.epoch(), report.epoch_reset), (&epoch, None));
    assert!(log.take_flush().is_none());
}

#[test]
fn a_crash_before_the_first_flush_job_leaves_a_log_that_opens() {
    // What a crash can leave of a new partition whose first job never ran: a torn EPOCH (or
    // none) and a blank segment. The log opens with a new epoch and nothing in it.
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, _) = open(dir.path());
    let epoch = log.epoch().clone();
    drop(log);
    fs::write(dir.path().join(EPOCH_FILE), b"").expect("tear EPOCH");
    let files = segment_files(dir.path());
    assert_eq!(files.len(), 1);
    patch(&files[0], |bytes| bytes[..header::LEN].fill(0));
    let (mut log, report) = open(dir.path());
    assert_ne!(log.epoch(), &epoch);
    assert!(report.epoch_reset.is_some());
    assert_eq!((log.top("a"), log.segments()), (0, 1));
    assert_eq!(push(&mut log, "a", 0, b"1"), 1);
}

#[test]
fn oversized_records_are_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = open(dir.path());
    let max_data = SEG as usize - header::LEN - layout::FRAMING_LEN - layout::BODY_FIXED_LEN - 1;
    let big = vec![b'1'; max_data + 1];
    let err = log
        .append("a", 1, 0, Entry::data(&big), ALL)
        .expect_err("too large");
    assert!(matches!(err, HistoryError::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains("partition 7"), "{err}");
    let long_name = "n".repeat(70_000);
    assert!(matches!(
        log.append(&long_name, 1, 0, Entry::data(b"1"), ALL),
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

/// Rewrites field `at` of the body of the record at `pos` and recomputes its CRC: a record
/// that passes the checksum but carries a value out of bounds.
fn rewrite_field(path: &Path, pos: usize, at: std::ops::Range<usize>, value: &[u8]) {
    patch(path, |b| {
        let body = pos + layout::FRAMING_LEN;
        let len = u32::from_le_bytes(b[pos..pos + 4].try_into().unwrap()) as usize;
        b[body + at.start..body + at.end].copy_from_slice(value);
        let crc = crc32c::crc32c(&b[body..body + len]);
        b[pos + 4..pos + 8].copy_from_slice(&crc.to_le_bytes());
    });
}

#[test]
fn values_read_from_disk_are_checked_against_their_bounds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (file, records, epoch) = ten_records(dir.path());
    // A checksum-valid last record whose offset is the largest u64: the next publish would
    // overflow. It is a defect, cut like a torn tail.
    let (pos, _) = records[9];
    rewrite_field(&file, pos, layout::OFFSET, &u64::MAX.to_le_bytes());
    let (mut log, report) = open(dir.path());
    assert_eq!(log.top("a"), 9, "{:?}", report.truncated);
    assert!(
        report.truncated[0].contains("offset"),
        "{:?}",
        report.truncated
    );
    assert_eq!(log.epoch(), &epoch);
    assert_eq!(push(&mut log, "a", 10, b"10"), 10);
    drop(log);
    // The same for a sequence number at its type's maximum.
    let records = records_of(&file);
    let (pos, _) = records[9];
    rewrite_field(&file, pos, layout::SEQ, &u64::MAX.to_le_bytes());
    let (log, report) = open(dir.path());
    assert_eq!(log.top("a"), 9);
    assert!(
        report.truncated[0].contains("seq"),
        "{:?}",
        report.truncated
    );
}

#[test]
fn corruption_in_the_middle_moves_the_damaged_files_aside() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = open(dir.path());
    fill(&mut log, 3);
    drop(log);
    let files = segment_files(dir.path());
    let records = records_of(&files[0]);
    let (pos, _) = records[1];
    patch(&files[0], |b| b[pos + 20] ^= 0x01);
    let (_, report) = open(dir.path());
    assert!(report.epoch_reset.is_some());
    let aside: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(".seg.corrupt-"))
        .collect();
    // The damaged segment copied aside before its cut, the two after it moved aside whole.
    assert_eq!(aside.len(), 3, "{aside:?}");
    for later in &files[1..] {
        let name = later.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            aside.iter().any(|a| a.starts_with(&name)),
            "{name} in {aside:?}"
        );
        assert!(
            report
                .truncated
                .iter()
                .any(|w| w.contains(&name) && w.contains("moved aside")),
            "{:?}",
            report.truncated
        );
    }
    // What was moved aside is never read again.
    let (log, report) = open(dir.path());
    assert_eq!(report.epoch_reset, None);
    assert_eq!(log.segments(), 1);
}

#[test]
fn an_unreadable_segment_stops_the_open_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = open(dir.path());
    fill(&mut log, 2);
    let epoch = log.epoch().clone();
    drop(log);
    let files = segment_files(dir.path());
    // A segment name that cannot be opened as a file: an I/O error, not lost history.
    let bad = dir.path().join(format!("{:020}.seg", 1u64 << 40));
    fs::create_dir(&bad).unwrap();
    let err = HistoryLog::open(dir.path(), PARTITION, SEG).expect_err("refused");
    assert!(
        err.to_string().contains(&bad.display().to_string()),
        "{err}"
    );
    fs::remove_dir(&bad).unwrap();
    assert_eq!(segment_files(dir.path()), files, "nothing was deleted");
    let (log, report) = open(dir.path());
    assert_eq!((log.epoch(), report.epoch_reset), (&epoch, None));
}

#[test]
fn a_partition_directory_without_segments_opens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = open(dir.path());
    push(&mut log, "a", 0, b"1");
    let epoch = log.epoch().clone();
    drop(log);
    // What a failed segment create on a full disk leaves: the directory and its epoch.
    for file in segment_files(dir.path()) {
        fs::remove_file(file).unwrap();
    }
    let (mut log, report) = open(dir.path());
    assert!(report.truncated.is_empty(), "{:?}", report.truncated);
    assert_eq!(log.epoch(), &epoch, "no segments is not lost history");
    assert_eq!(push(&mut log, "b", 0, b"1"), 1);
}

#[test]
fn a_head_not_prepared_at_open_is_prepared_at_the_first_append() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (file, records, _) = ten_records(dir.path());
    let (pos, _) = records[9];
    // Record 10 torn: the open cuts it; then pretend the disk was full, so the head was not
    // prepared and the stale bytes of records 10 and after were never zeroed.
    let stale = fs::read(&file).unwrap();
    patch(&file, |b| b[pos + 20] ^= 1);
    let (mut log, _) = open(dir.path());
    assert_eq!(log.top("a"), 9);
    let head = log.segs.head_mut().unwrap();
    head.file = None;
    head.write(pos, &stale[pos..pos + 256]);
    // The first append prepares the head: it zeroes what follows the last record first.
    assert_eq!(push(&mut log, "a", 10, b"{\"n\":10}"), 10);
    drop(log);
    let (log, report) = open(dir.path());
    assert!(report.truncated.is_empty(), "{:?}", report.truncated);
    assert_eq!(offsets(&log, "a"), (1..=10).collect::<Vec<_>>());
    assert_eq!(
        log.read("a", 9, false, 5, 0).expect("read").0[0]
            .data
            .as_ref(),
        b"{\"n\":10}"
    );
}

/// Retention visits only channels whose oldest publication is due: expiry is exact to the
/// bucket, a channel with newer publications keeps them, trims by `keep` move nothing too
/// early, and a reopened log schedules what it scanned once the policies are stated.
#[test]
fn expiry_visits_channels_when_their_oldest_publication_is_due() {
    use crate::limits::HISTORY_EXPIRY_BUCKET_MS as BUCKET;
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = open(dir.path());
    let ttl = 10 * BUCKET;
    let policy = policy_with(3, ttl, 0);
    let t0 = 100 * BUCKET;
    let append = |log: &mut HistoryLog, channel: &str, time_ms: u64| {
        let offset = log.top(channel) + 1;
        log.append(channel, offset, time_ms, Entry::data(b"1"), policy)
            .expect("append");
    };
    for c in 0..100 {
        append(&mut log, &format!("c{c}"), t0);
    }
    // "late" gets one now and one 5 buckets later; "trimmed" gets 5 (keep 3 drops 2).
    append(&mut log, "late", t0);
    append(&mut log, "late", t0 + 5 * BUCKET);
    for i in 0..5 {
        append(&mut log, "trimmed", t0 + i * BUCKET);
    }
    assert_eq!(log.expiry.len(), 102, "one entry per channel");
    let live = |log: &HistoryLog, channel: &str, now: u64| {
        log.read(channel, 0, false, usize::MAX, now)
            .expect("read")
            .0
            .len()
    };

    log.retain(t0 + ttl - 1, |_| false).expect("retain");
    assert_eq!(log.indexed_records(), 100 + 2 + 3, "nothing due yet");
    // One bucket after the expiry, everything written at t0 is gone from the index.
    log.retain(t0 + ttl + BUCKET, |_| false).expect("retain");
    assert_eq!(log.top("c7"), 1, "positions stay");
    assert_eq!(live(&log, "c7", 0), 0);
    assert_eq!(live(&log, "late", 0), 1, "the newer one stays");
    assert_eq!(
        live(&log, "trimmed", 0),
        3,
        "keep 3 left those written 2, 3 and 4 buckets after t0"
    );
    assert_eq!(log.indexed_records(), 4);
    assert_eq!(
        log.expiry.len(),
        2,
        "only late and trimmed are scheduled again"
    );

    log.retain(t0 + ttl + 6 * BUCKET, |_| false)
        .expect("retain");
    assert_eq!(log.indexed_records(), 0);
    assert_eq!(log.expiry.len(), 0);

    // A reopened log schedules the scanned channels when their policy is stated.
    append(&mut log, "again", t0 + 20 * BUCKET);
    drop(log);
    let (mut log, _) = open(dir.path());
    assert_eq!(log.expiry.len(), 0, "policies are unknown after open");
    log.set_policies(|_| policy);
    // The scan indexed every record still on disk (expired ones too); retention drops those
    // at its next pass.
    assert_eq!(log.expiry.len(), 103);
    log.retain(t0 + 20 * BUCKET + ttl - 1, |_| false)
        .expect("retain");
    assert_eq!(log.indexed_records(), 1);
    log.retain(t0 + 21 * BUCKET + ttl, |_| false)
        .expect("retain");
    assert_eq!(log.indexed_records(), 0);
}

/// Appends stage their records until `land`: reads see them at once, the file gets them in
/// one `pwrite` (many) or through the mapping (few), byte for byte what a verified scan
/// reads back, and dropping the log lands what is left.
#[test]
fn staged_appends_are_read_at_once_and_land_in_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = open(dir.path());
    let data = [b'7'; 200];
    for _ in 0..100 {
        push(&mut log, "s", 1, &data);
    }
    assert!(log.has_staged());
    assert_eq!(offsets(&log, "s"), (1..=100).collect::<Vec<_>>());
    let file = segment_files(dir.path()).pop().expect("a segment");
    assert_eq!(
        records_of(&file).len(),
        0,
        "nothing in the file before land"
    );
    log.land();
    assert!(!log.has_staged());
    assert_eq!(records_of(&file).len(), 100, "landed with pwrite");
    push(&mut log, "s", 2, b"1");
    assert_eq!(records_of(&file).len(), 100);
    log.land();
    assert_eq!(records_of(&file).len(), 101, "landed through the mapping");
    push(&mut log, "s", 3, b"2");
    drop(log);
    assert_eq!(
        records_of(&file).len(),
        102,
        "dropping the log lands the rest"
    );
    let (log, report) = open(dir.path());
    assert!(report.truncated.is_empty(), "{:?}", report.truncated);
    assert_eq!(offsets(&log, "s").len(), 102);
}

/// A position goes once its meta ttl has passed since the channel's last publication and
/// nothing of its history is left: the channel is forgotten (its slot reused), unless its
/// owner holds it, and the floor rises to its top so its next stream, and every new one of
/// the partition, starts above any position a client may hold.
#[test]
fn positions_go_after_their_meta_ttl_and_the_floor_rises_above_them() {
    use crate::limits::{HISTORY_EXPIRY_BUCKET_MS as BUCKET, HISTORY_META_HELD_RECHECK_MS};
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = open(dir.path());
    let (ttl, meta) = (10 * BUCKET, 100 * BUCKET);
    let policy = policy_with(10, ttl, meta);
    let t0 = 1_000 * BUCKET;
    for offset in 1..=3 {
        log.append("a", offset, t0, Entry::data(b"1"), policy)
            .expect("append");
    }
    log.append("b", 1, t0 + 200 * BUCKET, Entry::data(b"1"), policy)
        .expect("append");
    log.append("held", 1, t0, Entry::data(b"1"), policy)
        .expect("append");
    let held = |name: &str| name == "held";

    log.retain(t0 + ttl + BUCKET, held).expect("retain");
    assert_eq!(
        log.indexed_records(),
        1,
        "a's and held's publications expired"
    );
    assert_eq!((log.channel_count(), log.floor()), (3, 0), "positions stay");

    log.retain(t0 + meta - 1, held).expect("retain");
    assert_eq!(log.channel_count(), 3, "not yet");
    log.retain(t0 + meta + BUCKET, held).expect("retain");
    assert_eq!(
        log.channel_count(),
        2,
        "a went; b published later, held is held"
    );
    assert_eq!(log.floor(), 3, "a's top");
    assert_eq!((log.top("a"), log.slot("a")), (3, None));
    assert_eq!(
        log.read("a", 0, false, 10, 0).expect("read"),
        (Vec::new(), 3)
    );

    // Its owner let go of "held": the next look after the recheck drops it.
    let later = t0 + meta + BUCKET + HISTORY_META_HELD_RECHECK_MS + BUCKET;
    log.retain(later, |_| false).expect("retain");
    assert_eq!((log.channel_count(), log.floor()), (1, 3));

    // "a" comes back above the floor, in a reused slot; "b" is untouched.
    let slot = log
        .append("a", 4, later, Entry::data(b"2"), policy)
        .expect("append");
    assert_eq!(log.channel_count(), 2);
    assert_eq!(offsets(&log, "a"), [4]);
    assert_eq!(log.top("b"), 1);
    assert_eq!(log.channel_at(slot).1, 4);

    // A publication keeps a position alive: "b" goes a meta ttl after its last one (and so
    // does the new "a", published since: the floor is the higher top).
    log.retain(t0 + 200 * BUCKET + meta + BUCKET, |_| false)
        .expect("retain");
    assert_eq!((log.channel_count(), log.floor()), (0, 4));
    assert_eq!(log.top("b"), 4);
}

/// The floor survives a restart: it is written before the segments holding the dropped
/// positions are deleted, carried forward like a quiet channel's position, and read back by
/// the scan; positions carried forward keep their last publication's time.
#[test]
fn the_floor_is_written_before_dropped_positions_leave_the_disk() {
    use crate::limits::HISTORY_EXPIRY_BUCKET_MS as BUCKET;
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = open(dir.path());
    let meta = 100 * BUCKET;
    let policy = policy_with(1, BUCKET, meta);
    let data = [b'5'; 100];
    // "gone" (top 7) and "quiet" in the first segment; "busy" fills three more.
    for offset in 1..=7 {
        log.append("gone", offset, 0, Entry::data(&data), policy)
            .expect("append");
    }
    log.append("quiet", 1, 50 * BUCKET, Entry::data(&data), policy)
        .expect("append");
    let mut offset = 0;
    while log.segments() < 4 {
        offset += 1;
        log.append("busy", offset, meta, Entry::data(&data), policy)
            .expect("append");
    }
    log.take_flush().expect("dirty").run().expect("flush");

    // "gone" passes its meta ttl; "quiet" is carried forward; three segments retire.
    let job = log
        .retain(meta + BUCKET, |_| false)
        .expect("retain")
        .expect("segments to retire");
    assert_eq!((job.retired(), log.floor(), log.slot("gone")), (3, 7, None));
    job.run().expect("retire");
    drop(log);

    let (mut log, report) = open(dir.path());
    assert_eq!((report.epoch_reset, report.truncated.len()), (None, 0));
    assert_eq!(log.floor(), 7, "read back from its record");
    assert_eq!((log.top("gone"), log.slot("gone")), (7, None));
    assert_eq!(log.top("quiet"), 1);
    assert_eq!(log.top("brand-new"), 7);
    // The carried position kept the time of quiet's last publication: it goes a meta ttl
    // after that, not after the carry.
    log.set_policies(|_| policy);
    log.retain(50 * BUCKET + meta + BUCKET, |_| false)
        .expect("retain");
    assert_eq!(log.slot("quiet"), None);
    assert_eq!(log.floor(), 7, "quiet's top 1 is below it");
    log.append("gone", 8, 2 * meta, Entry::data(&data), policy)
        .expect("append");
    assert_eq!(offsets(&log, "gone"), [8]);
}
