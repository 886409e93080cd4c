//! History log benchmark: append throughput of one partition under each fsync policy (and the
//! tail of single appends' latency, where a page fault or a segment roll shows), the start-up
//! scan of a ~1 GiB log, and index memory per record. Plain `main`, bounded run time
//! (about 30 s); logs live in a temporary directory under the target directory (not /tmp, which
//! may be small) and are removed at the end.
//!
//! `cargo bench --bench history`

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use nix::fcntl::{posix_fadvise, PosixFadviseAdvice};
use ringcast::history::{Entry, HistoryLog, Policy, CHANNEL_BYTES, INDEX_BYTES_PER_RECORD};

/// The channels' history policy.
const POLICY: Policy = Policy {
    keep: KEEP,
    ttl_ms: TTL_MS,
    meta_ttl_ms: 0,
};

const SEGMENT: u64 = 64 << 20;
const CHANNELS: usize = 1000;
const KEEP: usize = 100;
const TTL_MS: u64 = 3_600_000;
/// How long each append mode runs.
const BUDGET: Duration = Duration::from_secs(2);
const SCAN_SEGMENTS: usize = 16;

#[derive(Clone, Copy, PartialEq)]
enum SyncPolicy {
    /// Append only; the kernel writes back when it likes.
    Never,
    /// A flush job every 100 ms of wall time, run inline.
    Interval,
    /// Group commit: a batch of 64 appends, then flush and wait.
    Group,
    /// Flush and wait after every append.
    Each,
}

fn main() {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    std::fs::create_dir_all(&target).expect("create the target directory");
    let base = tempfile::Builder::new()
        .prefix("history-bench-")
        .tempdir_in(&target)
        .expect("temporary directory under the target directory");
    println!("history log bench in {}", base.path().display());
    println!(
        "appends: 100-byte payloads, {CHANNELS} channels round-robin, keep {KEEP}, \
         {} MiB segments, {} s per policy, retain every 65,536 appends",
        SEGMENT >> 20,
        BUDGET.as_secs()
    );
    for (name, policy) in [
        ("never", SyncPolicy::Never),
        ("interval 100 ms", SyncPolicy::Interval),
        ("always, group commit of 64", SyncPolicy::Group),
        ("always, per append", SyncPolicy::Each),
    ] {
        appends(
            &base.path().join(name.replace([' ', ','], "-")),
            name,
            policy,
        );
    }
    scan(&base.path().join("scan"));
    println!(
        "index memory: {INDEX_BYTES_PER_RECORD} bytes per indexed record (+ deque slack up to \
         the next power of two), {CHANNEL_BYTES} bytes per channel + its name"
    );
}

fn channel_names() -> Vec<String> {
    (0..CHANNELS).map(|i| format!("chat:room-{i:04}")).collect()
}

fn payload() -> Vec<u8> {
    let mut data = vec![b'x'; 100];
    data[0] = b'"';
    data[99] = b'"';
    data
}

fn flush(log: &mut HistoryLog) {
    if let Some(job) = log.take_flush() {
        job.run().expect("flush");
    }
}

fn appends(dir: &Path, name: &str, policy: SyncPolicy) {
    let (mut log, _) = HistoryLog::open(dir, 0, SEGMENT).expect("open");
    let names = channel_names();
    let data = payload();
    let mut offsets = vec![0u64; CHANNELS];
    let mut appended = 0u64;
    let mut flushes = 0u64;
    // Nanoseconds per `append` call alone (flushes excluded), up to 10 s.
    let mut latency = Histogram::<u64>::new_with_max(10_000_000_000, 3).expect("histogram");
    let (mut retains, mut deleted) = (0u64, 0usize);
    let (mut retain_max, mut job_max) = (Duration::ZERO, Duration::ZERO);
    let start = Instant::now();
    let mut last_flush = start;
    while start.elapsed() < BUDGET {
        for _ in 0..64 {
            let i = appended as usize % CHANNELS;
            offsets[i] += 1;
            let now_ms = start.elapsed().as_millis() as u64;
            let called = Instant::now();
            log.append(&names[i], offsets[i], now_ms, Entry::data(&data), POLICY)
                .expect("append");
            latency.saturating_record(called.elapsed().as_nanos() as u64);
            appended += 1;
            if policy == SyncPolicy::Each {
                flush(&mut log);
                flushes += 1;
            }
        }
        match policy {
            SyncPolicy::Group => {
                flush(&mut log);
                flushes += 1;
            }
            SyncPolicy::Interval if last_flush.elapsed() >= Duration::from_millis(100) => {
                flush(&mut log);
                flushes += 1;
                last_flush = Instant::now();
            }
            _ => {}
        }
        if appended & 0xffff == 0 {
            let called = Instant::now();
            let job = log
                .retain(start.elapsed().as_millis() as u64, |_| false)
                .expect("retain");
            retain_max = retain_max.max(called.elapsed());
            retains += 1;
            if let Some(job) = job {
                // What the server runs on a blocking thread.
                let called = Instant::now();
                deleted += job.retired();
                job.run().expect("retire");
                job_max = job_max.max(called.elapsed());
            }
        }
    }
    if policy != SyncPolicy::Never {
        flush(&mut log);
    }
    let elapsed = start.elapsed();
    println!(
        "append {name:<28} {:>10.0} appends/s {:>8.0} ns/append  ({appended} appends, {flushes} \
         flushes, {} MiB on disk at the end)",
        appended as f64 / elapsed.as_secs_f64(),
        elapsed.as_nanos() as f64 / appended as f64,
        log.disk_bytes() >> 20
    );
    println!(
        "       one append (µs): p99 {:.1}, p99.99 {:.1}, max {:.1}; {} appends over 100 µs",
        latency.value_at_quantile(0.99) as f64 / 1e3,
        latency.value_at_quantile(0.9999) as f64 / 1e3,
        latency.max() as f64 / 1e3,
        latency.count_between(100_000, u64::MAX)
    );
    println!(
        "       retain: {retains} calls retired {deleted} segments; longest call {:.2} ms, \
         longest job (syncs and deletes, off the shard in the server) {:.2} ms",
        retain_max.as_secs_f64() * 1e3,
        job_max.as_secs_f64() * 1e3
    );
    drop(log);
    std::fs::remove_dir_all(dir).expect("clean up");
}

fn scan(dir: &Path) {
    let started = Instant::now();
    let (mut log, _) = HistoryLog::open(dir, 0, SEGMENT).expect("open");
    let names = channel_names();
    let data = payload();
    let mut offsets = vec![0u64; CHANNELS];
    let mut appended = 0u64;
    while log.segments() <= SCAN_SEGMENTS {
        let i = appended as usize % CHANNELS;
        offsets[i] += 1;
        log.append(&names[i], offsets[i], appended, Entry::data(&data), POLICY)
            .expect("append");
        appended += 1;
    }
    flush(&mut log);
    drop(log);
    println!(
        "scan: built {appended} records in {SCAN_SEGMENTS} full segments + 1 in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Page cache warm: what a restart right after a clean stop sees.
    let start = Instant::now();
    let (log, report) = HistoryLog::open(dir, 0, SEGMENT).expect("open");
    let warm = start.elapsed();
    assert_eq!(report.records, appended);
    assert!(report.truncated.is_empty() && report.epoch_reset.is_none());
    print_scan("warm cache", warm, &report, log.indexed_records());
    drop(log);

    // Page cache dropped for these files (they are clean after the flush): a restart after
    // the cache was lost, e.g. a reboot.
    for entry in std::fs::read_dir(dir).expect("list") {
        let file = File::open(entry.expect("entry").path()).expect("open");
        posix_fadvise(&file, 0, 0, PosixFadviseAdvice::POSIX_FADV_DONTNEED).expect("fadvise");
    }
    let start = Instant::now();
    let (log, report) = HistoryLog::open(dir, 0, SEGMENT).expect("open");
    print_scan(
        "cold cache",
        start.elapsed(),
        &report,
        log.indexed_records(),
    );
    drop(log);
    std::fs::remove_dir_all(dir).expect("clean up");
}

fn print_scan(what: &str, took: Duration, report: &ringcast::history::OpenReport, indexed: usize) {
    println!(
        "scan {what}: open {:.0} ms for {} records, {} MiB, {} segments: {:.0} MB/s; {indexed} \
         records indexed ({} MiB of positions)",
        took.as_secs_f64() * 1000.0,
        report.records,
        report.bytes >> 20,
        report.segments,
        report.bytes as f64 / 1e6 / took.as_secs_f64(),
        (indexed * INDEX_BYTES_PER_RECORD) >> 20
    );
}
