//! Server memory per idle WebSocket connection: starts the release server, opens N real
//! connections from this (separate) process, each connected with a token, then each
//! subscribed to its own channel, and reports the server's RSS growth per connection.
//!
//! `cargo bench --bench idle_connections` (`-- quick` for 2,000 connections; default 10,000;
//! `-- N` for another count; `-- tls` for wss:// connections, the server's certificate from
//! a test CA). Stays under this machine's 20,000-open-files limit per process.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

#[path = "../tests/common/mod.rs"]
mod common;

const WARM_UP: usize = 200;

fn settle_rss(pid: u32) -> u64 {
    std::thread::sleep(Duration::from_millis(500));
    common::rss_kib(pid)
}

trait Stream: Read + Write {}

impl<T: Read + Write> Stream for T {}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let count = if args.iter().any(|a| a == "quick") {
        2_000
    } else {
        args.iter()
            .skip(1)
            .find_map(|a| a.parse().ok())
            .unwrap_or(10_000)
    };
    let token = common::token("idle", 24 * 3600);
    let tls = args.iter().any(|a| a == "tls");
    let ca = common::tls::TestCa::new("ringcast bench CA");
    let server = if tls {
        ca.server(&[])
    } else {
        common::Server::start(&[])
    };
    let (address, pid) = (server.address, server.pid());
    let open = |address: SocketAddr| -> Box<dyn Stream> {
        if tls {
            let (mut stream, _) = ca.connect(address);
            common::connect_over(&mut stream, &token);
            Box::new(stream)
        } else {
            Box::new(common::raw_connect(address, &token))
        }
    };

    let mut streams: Vec<Box<dyn Stream>> = (0..WARM_UP).map(|_| open(address)).collect();
    let before = settle_rss(pid);
    streams.extend((WARM_UP..count).map(|_| open(address)));
    let connected = settle_rss(pid);
    for (i, stream) in streams.iter_mut().enumerate() {
        let subscribe = format!("{{\"id\":2,\"subscribe\":{{\"channel\":\"personal#{i}\"}}}}");
        stream
            .write_all(&common::frame(0x1, true, subscribe.as_bytes()))
            .unwrap();
        common::read_until(stream, b"\"subscribe\":{}", 1);
    }
    let subscribed = settle_rss(pid);
    let measured = (count - WARM_UP) as f64;
    let kind = if tls { "wss:// (TLS 1.3)" } else { "ws://" };
    println!("server RSS, {count} idle {kind} WebSocket connections (2 shards), {WARM_UP} opened before the baseline\n");
    println!("| state | server RSS (KiB) | growth per connection (bytes) |");
    println!("|---|---|---|");
    println!("| {WARM_UP} connected (baseline) | {before} | - |");
    println!(
        "| {count} connected | {connected} | {:.0} |",
        (connected.saturating_sub(before)) as f64 * 1024.0 / measured
    );
    println!(
        "| {count} connected + 1 own channel each | {subscribed} | {:.0} |",
        (subscribed.saturating_sub(before)) as f64 * 1024.0 / measured
    );
    drop(streams);
    drop(server);
}
