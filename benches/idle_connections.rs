//! Server memory per idle WebSocket connection: starts the release server, opens N real
//! connections from this (separate) process, each connected with a token, then each
//! subscribed to its own channel, and reports the server's RSS growth per connection.
//!
//! `cargo bench --bench idle_connections` (`-- quick` for 2,000 connections; default 10,000;
//! `-- N` for another count). Stays under this machine's 20,000-open-files limit per process.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

#[path = "../tests/common/mod.rs"]
mod common;

const WARM_UP: usize = 200;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Reads from `stream` until `needle` has been seen.
fn read_until(stream: &mut TcpStream, needle: &[u8]) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.windows(needle.len()).any(|w| w == needle) {
        let n = stream.read(&mut buf).expect("server answers");
        assert!(n > 0, "server closed: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
}

fn open(address: SocketAddr, token: &str) -> TcpStream {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut request = b"GET /connection/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".to_vec();
    request.extend(common::frame(
        0x1,
        true,
        format!("{{\"id\":1,\"connect\":{{\"token\":\"{token}\"}}}}").as_bytes(),
    ));
    stream.write_all(&request).unwrap();
    read_until(&mut stream, b"\"connect\":{");
    stream
}

fn settle_rss(pid: u32) -> u64 {
    std::thread::sleep(Duration::from_millis(500));
    rss_kib(pid)
}

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
    let server = common::Server::start(&[]);
    let (address, pid) = (server.address, server.pid());

    let mut streams: Vec<TcpStream> = (0..WARM_UP).map(|_| open(address, &token)).collect();
    let before = settle_rss(pid);
    streams.extend((WARM_UP..count).map(|_| open(address, &token)));
    let connected = settle_rss(pid);
    for (i, stream) in streams.iter_mut().enumerate() {
        let subscribe = format!("{{\"id\":2,\"subscribe\":{{\"channel\":\"personal#{i}\"}}}}");
        stream
            .write_all(&common::frame(0x1, true, subscribe.as_bytes()))
            .unwrap();
        read_until(stream, b"\"subscribe\":{}");
    }
    let subscribed = settle_rss(pid);
    let measured = (count - WARM_UP) as f64;
    println!("server RSS, {count} idle WebSocket connections (2 shards), {WARM_UP} opened before the baseline\n");
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
