//! What a Prometheus scrape every second costs publishing: API publishes per second to one
//! channel with 20 subscribers, from 4 publisher threads on keep-alive connections, for
//! `SECONDS` each round; rounds without and with a thread that GETs `/metrics` once a second,
//! alternating, on one release server (2 shards), so the ratio holds while the machine drifts.
//!
//! `cargo bench --bench scrape` (`-- quick`: 2 s rounds, 2 pairs; default 3 s rounds, 6 pairs).

use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "../tests/common/mod.rs"]
mod common;

const PUBLISHERS: usize = 4;
const SUBSCRIBERS: usize = 20;

/// Publishes for `seconds` (scraping `/metrics` every second if `scrape`); publishes/s and
/// each scrape's time and size.
fn round(server: &common::Server, seconds: u64, scrape: bool) -> (f64, Vec<(Duration, usize)>) {
    let address = server.address;
    let stop = Arc::new(AtomicBool::new(false));
    let published = Arc::new(AtomicU64::new(0));
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|_| {
            let (stop, published) = (stop.clone(), published.clone());
            std::thread::spawn(move || {
                let mut api = common::ApiConn::open(address).expect("API connection");
                let body = r#"{"channel":"room","data":{"text":"a message of some sixty bytes, as chats send them"}}"#;
                // Bounded by the round's end.
                while !stop.load(Ordering::Relaxed) {
                    api.post("publish", body).expect("published");
                    published.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let scraper = scrape.then(|| {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut scrapes = Vec::new();
            // Bounded by the round's end.
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let answer = common::raw_at(
                    address,
                    b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                );
                assert!(answer.starts_with(b"HTTP/1.1 200"));
                scrapes.push((started.elapsed(), answer.len()));
                std::thread::sleep(Duration::from_secs(1));
            }
            scrapes
        })
    });
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    for publisher in publishers {
        publisher.join().expect("publisher");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let scrapes = scraper.map_or_else(Vec::new, |s| s.join().expect("scraper"));
    (published.load(Ordering::Relaxed) as f64 / elapsed, scrapes)
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    let (seconds, pairs) = if quick { (2, 2) } else { (3, 6) };
    let server = common::Server::start(&[]);
    let token = common::token("scrape", 3600);
    let readers: Vec<_> = (0..SUBSCRIBERS)
        .map(|_| {
            let mut stream = common::raw_connect(server.address, &token);
            let subscribe = r#"{"id":2,"subscribe":{"channel":"room"}}"#;
            std::io::Write::write_all(&mut stream, &common::frame(0x1, true, subscribe.as_bytes()))
                .unwrap();
            common::read_until(&mut stream, b"\"subscribe\":{}", 1);
            stream.set_read_timeout(None).unwrap();
            std::thread::spawn(move || {
                let mut sink = vec![0u8; 64 << 10];
                // Bounded by the server: it ends when the connection closes.
                while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
            })
        })
        .collect();
    let mut rows = Vec::new();
    let mut all_scrapes = Vec::new();
    for _ in 0..pairs {
        let (without, _) = round(&server, seconds, false);
        let (with, scrapes) = round(&server, seconds, true);
        rows.push((without, with, scrapes.len()));
        all_scrapes.extend(scrapes);
    }
    println!(
        "API publishes/s, 1 channel x {SUBSCRIBERS} subscribers, {PUBLISHERS} keep-alive publishers, {seconds} s rounds\n"
    );
    println!("| pair | without scrapes | with a scrape each second (scrapes) | ratio |");
    println!("|---|---|---|---|");
    for (i, (without, with, scrapes)) in rows.iter().enumerate() {
        println!(
            "| {} | {without:.0} | {with:.0} ({scrapes}) | {:.3} |",
            i + 1,
            with / without
        );
    }
    let mut ratios: Vec<f64> = rows.iter().map(|(a, b, _)| b / a).collect();
    ratios.sort_by(f64::total_cmp);
    all_scrapes.sort();
    let (median, size) = all_scrapes[all_scrapes.len() / 2];
    println!(
        "\nmedian ratio {:.3}; a scrape under load: median {:.2} ms for {size} bytes (fresh connection each)",
        ratios[ratios.len() / 2],
        median.as_secs_f64() * 1e3
    );
    drop(server);
    for reader in readers {
        let _ = reader.join();
    }
}
