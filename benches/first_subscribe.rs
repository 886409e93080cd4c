//! The first use of a channel with history in a partition that has no log yet: the
//! partition's log (directory, epoch, first segment) is created before the subscribe is
//! answered. This times the subscribe reply for a channel in a fresh partition, next to one in
//! a partition whose log exists, against the release server (1 shard, history on for every
//! channel), and meanwhile the round trip of another client's command on the same shard
//! (what a log created on the shard thread would hold up).
//!
//! `cargo bench --bench first_subscribe` (`RINGCAST_SERVER_BIN=path` times another build)

use std::time::{Duration, Instant};

use ringcast::limits::PARTITIONS;
use ringcast::router::partition;
use serde_json::json;

#[path = "../tests/common/mod.rs"]
mod common;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Two channel names per partition: (first, second).
fn names() -> Vec<(String, String)> {
    let mut first: Vec<Option<String>> = vec![None; PARTITIONS as usize];
    let mut second: Vec<Option<String>> = vec![None; PARTITIONS as usize];
    // Bounded: 100,000 names cover every partition twice (checked below).
    for i in 0..100_000 {
        let name = format!("fresh-{i}");
        let p = partition(&name) as usize;
        if first[p].is_none() {
            first[p] = Some(name);
        } else if second[p].is_none() {
            second[p] = Some(name);
        }
    }
    first
        .into_iter()
        .zip(second)
        .map(|(a, b)| (a.expect("first name"), b.expect("second name")))
        .collect()
}

fn main() {
    let server = common::Server::start(&[
        "--shards",
        "1",
        "channel.without_namespace.history_size=10",
        "channel.without_namespace.history_ttl=300s",
        "client.channel_limit=1000",
    ]);
    let (mut client, _) = common::Client::connect(&server, "u");
    // The probe: another connection's commands, one at a time, while the subscribes run.
    let (mut probe, _) = common::Client::connect(&server, "probe");
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probing = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut times = Vec::new();
            // Bounded by the subscribes' end (and each command's reply timeout).
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let started = Instant::now();
                let reply = probe.command("rpc", json!({"method": "probe"}));
                times.push(started.elapsed());
                assert!(reply.get("error").is_some(), "{reply}");
            }
            times
        })
    };
    let mut fresh = Vec::new();
    let mut existing = Vec::new();
    for (first, second) in names() {
        for (name, times) in [(first, &mut fresh), (second, &mut existing)] {
            let started = Instant::now();
            let reply = client.command("subscribe", json!({"channel": name}));
            times.push(started.elapsed());
            assert!(reply.get("subscribe").is_some(), "{reply}");
        }
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut probes = probing.join().expect("the probe ran");
    probes.sort();
    fresh.sort();
    existing.sort();
    println!("subscribe reply, {} partitions (ms):", fresh.len());
    println!("| partition | p50 | p90 | p99 | max |");
    println!("|---|---|---|---|---|");
    let probe_label = format!("another client's command meanwhile ({})", probes.len());
    for (label, times) in [
        ("fresh (log created)", &fresh),
        ("log exists", &existing),
        (probe_label.as_str(), &probes),
    ] {
        println!(
            "| {label} | {:.3} | {:.3} | {:.3} | {:.3} |",
            percentile(times, 0.5).as_secs_f64() * 1e3,
            percentile(times, 0.9).as_secs_f64() * 1e3,
            percentile(times, 0.99).as_secs_f64() * 1e3,
            times.last().unwrap().as_secs_f64() * 1e3
        );
    }
}
