//! History as a client and an operator meet it, against the release server:
//!
//! 1. Recovery: a client that missed 1,000 publications reconnects and subscribes with
//!    `recover`; the time from opening the socket to holding the subscribe reply with all
//!    1,000 publications (connect, subscribe, read, parse), over repeated rounds.
//! 2. Restart: a 1 GiB history (written with `HistoryLog` directly, 100-byte payloads) in the
//!    data directory; the time from spawning `ringcast serve` to the first answered
//!    `GET /health`, next to the same with an empty data directory.
//!
//! `cargo bench --bench recovery` (`-- quick` for 20 rounds and 256 MiB).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use ringcast::history::{Entry, HistoryLog, Policy};
use ringcast::limits::PARTITIONS;
use ringcast::router::partition;
use serde_json::json;

#[path = "../tests/common/mod.rs"]
mod common;

const MISSED: u64 = 1_000;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn recovery(rounds: usize) {
    let server = common::Server::start(&[
        "channel.without_namespace.history_size=2000",
        "channel.without_namespace.history_ttl=1h",
        "channel.without_namespace.force_recovery=true",
        "client.recovery_max_publication_limit=1000",
    ]);
    let mut api = common::ApiConn::open(server.address).expect("api");
    let mut samples = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let channel = format!("missed-{round}");
        let (mut client, _) = common::Client::connect(&server, "bench");
        let reply = client.command("subscribe", json!({"channel": channel}));
        let epoch = reply["subscribe"]["epoch"].as_str().unwrap().to_owned();
        drop(client);
        let payload = "x".repeat(80);
        for n in 0..MISSED {
            let body = json!({"channel": channel, "data": {"n": n, "p": payload}}).to_string();
            api.post("publish", &body).expect("publish");
        }
        let started = Instant::now();
        let (mut client, _) = common::Client::connect(&server, "bench");
        let reply = client.command(
            "subscribe",
            json!({"channel": channel, "recover": true, "offset": 0, "epoch": epoch}),
        );
        let elapsed = started.elapsed();
        let result = &reply["subscribe"];
        assert_eq!(result["recovered"], true, "{reply}");
        assert_eq!(
            result["publications"].as_array().unwrap().len() as u64,
            MISSED
        );
        samples.push(elapsed);
    }
    samples.sort();
    println!(
        "recovery of {MISSED} missed publications (connect + subscribe with recover + read reply), {rounds} rounds: p50 {:.2?} p99 {:.2?} max {:.2?}",
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
        samples[samples.len() - 1]
    );
}

/// Writes about `bytes` of history (100-byte payloads) spread over every partition.
fn build_history(data: &common::DataDir, bytes: u64) -> u64 {
    let payload = [b'7'; 100];
    let per_partition = bytes / u64::from(PARTITIONS);
    // Channels per partition: names whose hash lands there.
    let mut names: Vec<Vec<String>> = vec![Vec::new(); PARTITIONS as usize];
    let mut i = 0u64;
    while names.iter().any(|n| n.len() < 4) {
        let name = format!("restart-{i}");
        let p = partition(&name) as usize;
        if names[p].len() < 4 {
            names[p].push(name);
        }
        i += 1;
    }
    let mut records = 0;
    for p in 0..PARTITIONS {
        let dir = data.0.join("history").join(format!("{p:03}"));
        let (mut log, _) = HistoryLog::open(&dir, p, 64 << 20).expect("open");
        let mut offsets = [0u64; 4];
        let mut written = 0;
        // Record size: 8 header + 48 body fields + name + payload, padded to 8.
        while written < per_partition {
            written += 4 * (56 + 16 + payload.len() as u64);
            for (c, name) in names[p as usize].iter().enumerate() {
                offsets[c] += 1;
                let policy = Policy {
                    keep: 1_000,
                    ttl_ms: 0,
                    meta_ttl_ms: 0,
                };
                log.append(name, offsets[c], 1, Entry::data(&payload), policy)
                    .expect("append");
                records += 1;
            }
        }
        if let Some(flush) = log.take_flush() {
            flush.run().expect("flush");
        }
    }
    records
}

/// Spawns the release server on `data` and returns the time to the first answered
/// `GET /health`, plus the server's own start-up line about history.
fn time_to_health(data: &common::DataDir) -> (Duration, String) {
    let started = Instant::now();
    let mut child = common::Server::command(data, None, &[], &[])
        .stdout(Stdio::piped())
        .spawn()
        .expect("server starts");
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut history = String::new();
    let address: std::net::SocketAddr = loop {
        let line = lines.next().expect("server output").expect("readable");
        if line.contains("history:") {
            history.push_str(&line);
            history.push('\n');
        }
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    // Bounded: the server answers within its start-up, or the bench fails.
    let elapsed = loop {
        if let Ok(mut stream) = TcpStream::connect(address) {
            stream
                .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut response = Vec::new();
            let _ = stream.read_to_end(&mut response);
            if response.starts_with(b"HTTP/1.1 200") {
                break started.elapsed();
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no /health answer"
        );
        std::thread::sleep(Duration::from_millis(1));
    };
    let _ = child.kill();
    let _ = child.wait();
    (elapsed, history)
}

/// Asks the kernel to drop the segments' (clean, synced) pages, so the next start reads
/// them from disk: a cold start without root's drop_caches.
fn evict_from_page_cache(data: &common::DataDir) {
    use nix::fcntl::{posix_fadvise, PosixFadviseAdvice};
    for partition in std::fs::read_dir(data.0.join("history")).unwrap().flatten() {
        for file in std::fs::read_dir(partition.path()).unwrap().flatten() {
            let f = std::fs::File::open(file.path()).unwrap();
            f.sync_all().unwrap();
            posix_fadvise(&f, 0, 0, PosixFadviseAdvice::POSIX_FADV_DONTNEED).unwrap();
        }
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    recovery(if quick { 20 } else { 100 });

    let empty = common::DataDir::new();
    let (baseline, _) = time_to_health(&empty);
    let size: u64 = if quick { 256 << 20 } else { 1 << 30 };
    let data = common::DataDir::new();
    let built = Instant::now();
    let records = build_history(&data, size);
    println!(
        "built {:.0} MiB of history ({records} records) in {:.1?}",
        size as f64 / f64::from(1 << 20),
        built.elapsed()
    );
    for cold in [false, true] {
        if cold {
            evict_from_page_cache(&data);
        }
        let (with_history, history) = time_to_health(&data);
        print!("{history}");
        println!(
            "time to first answered /health ({} cache): {baseline:.2?} with an empty data directory, {with_history:.2?} with {:.0} MiB of history",
            if cold { "cold" } else { "warm" },
            size as f64 / f64::from(1 << 20),
        );
    }
}
