//! Connection acceptance: connections per second from a TCP connect to a subscribed client,
//! and the server's CPU per connection, plain and with a PROXY v1 header, TLS 1.3, or both.
//! The release server runs one shard; 4 client threads in this process open the connections
//! (each: [PROXY header], [TLS handshake], upgrade, connect with a token, subscribe to its own
//! channel) and keep them open until the round ends. Server CPU comes from /proc/<pid>/stat
//! (10 ms ticks) over the round; the client threads share the machine's cores with it, so
//! the rate is the pair's, and the CPU per connection is the server's alone.
//!
//! `cargo bench --bench accept` (`-- quick`: 1,000 connections a round; default 4,000; `-- N`
//! for another count). Each variant runs twice, alternating, on a fresh server.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "../tests/common/mod.rs"]
mod common;

use common::tls::TestCa;

const THREADS: usize = 4;

#[derive(Clone, Copy, PartialEq)]
enum Variant {
    Plain,
    Proxy,
    Tls,
    ProxyTls,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Plain => "ws://",
            Variant::Proxy => "ws:// + PROXY v1",
            Variant::Tls => "wss:// (TLS 1.3)",
            Variant::ProxyTls => "wss:// + PROXY v1",
        }
    }
    fn proxy(self) -> bool {
        matches!(self, Variant::Proxy | Variant::ProxyTls)
    }
    fn tls(self) -> bool {
        matches!(self, Variant::Tls | Variant::ProxyTls)
    }
}

trait Stream: Read + Write + Send {}

impl<T: Read + Write + Send> Stream for T {}

/// Server CPU time (user + system) in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("proc stat");
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn open(
    variant: Variant,
    ca: &TestCa,
    address: SocketAddr,
    token: &str,
    i: usize,
) -> Box<dyn Stream> {
    let mut tcp = TcpStream::connect(address).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    if variant.proxy() {
        // A client address per connection, as a load balancer would name them.
        let header = format!(
            "PROXY TCP4 10.{}.{}.{} 127.0.0.1 {} {}\r\n",
            (i >> 16) & 255,
            (i >> 8) & 255,
            i & 255,
            1024 + i % 60000,
            address.port()
        );
        tcp.write_all(header.as_bytes()).unwrap();
    }
    let mut stream: Box<dyn Stream> = if variant.tls() {
        Box::new(ca.over(tcp).0)
    } else {
        Box::new(tcp)
    };
    common::connect_over(&mut stream, token);
    let subscribe = format!("{{\"id\":2,\"subscribe\":{{\"channel\":\"personal#{i}\"}}}}");
    stream
        .write_all(&common::frame(0x1, true, subscribe.as_bytes()))
        .unwrap();
    common::read_until(&mut stream, b"\"subscribe\":{}", 1);
    stream
}

/// One round: a fresh server, `count` connections; connections/s and server CPU µs each.
fn round(variant: Variant, ca: &Arc<TestCa>, count: usize) -> (f64, f64) {
    let mut settings = vec!["--shards", "1"];
    if variant.proxy() {
        settings.push("http_server.proxy_protocol=true");
    }
    let server = if variant.tls() {
        ca.server(&settings)
    } else {
        common::Server::start(&settings)
    };
    let (address, pid) = (server.address, server.pid());
    let token = common::token("accept", 3600);
    let ticks_before = cpu_ticks(pid);
    let started = Instant::now();
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (ca, token) = (ca.clone(), token.clone());
            std::thread::spawn(move || {
                (0..count / THREADS)
                    .map(|k| open(variant, &ca, address, &token, t * count + k))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let held: Vec<Box<dyn Stream>> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("client thread"))
        .collect();
    let elapsed = started.elapsed().as_secs_f64();
    let ticks = cpu_ticks(pid) - ticks_before;
    let opened = held.len() as f64;
    drop(held);
    drop(server);
    // 100 ticks a second (USER_HZ) on Linux.
    (opened / elapsed, ticks as f64 * 10_000.0 / opened)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let count = if args.iter().any(|a| a == "quick") {
        1_000
    } else {
        args.iter()
            .skip(1)
            .find_map(|a| a.parse().ok())
            .unwrap_or(4_000)
    };
    let ca = Arc::new(TestCa::new("ringcast bench CA"));
    let variants = [
        Variant::Plain,
        Variant::Proxy,
        Variant::Tls,
        Variant::ProxyTls,
    ];
    let mut results: Vec<(Variant, f64, f64)> = Vec::new();
    for _ in 0..2 {
        for variant in variants {
            let (rate, cpu) = round(variant, &ca, count);
            results.push((variant, rate, cpu));
        }
    }
    println!(
        "{count} connections a round, 1 server shard, {THREADS} client threads, two rounds each\n"
    );
    println!("| connection | connections/s | server CPU per connection (µs) |");
    println!("|---|---|---|");
    for variant in variants {
        let mine: Vec<&(Variant, f64, f64)> =
            results.iter().filter(|(v, _, _)| *v == variant).collect();
        let rates: Vec<String> = mine.iter().map(|(_, r, _)| format!("{r:.0}")).collect();
        let cpus: Vec<String> = mine.iter().map(|(_, _, c)| format!("{c:.0}")).collect();
        println!(
            "| {} | {} | {} |",
            variant.name(),
            rates.join(", "),
            cpus.join(", ")
        );
    }
}
