//! Presence, join/leave and the API's user actions at size (issue 13), against the release
//! server over loopback, clients in this process (raw WebSocket frames, no SDK):
//!
//! 1. bytes per presence entry: the owner's `PresenceTable` alone (this process counts its
//!    allocations) and the server's RSS growth when 10,000 subscribers of one channel have
//!    presence (against 10,000 subscribers of a channel without it);
//! 2. `presence_stats` and `presence` answer times through the API on that channel;
//! 3. a join/leave storm: N clients subscribe to a channel whose 1,000 listeners take its
//!    join pushes, against the same storm in a channel without join/leave: subscribes/s and
//!    pushes delivered;
//! 4. API `disconnect` of one user among 10,000 connected users: answer time, and the time
//!    until that client sees its close.
//!
//! `cargo bench --bench presence` (`-- quick` for 2,000 subscribers and a 500-client storm).
//! Stays under this machine's 20,000-open-files limit per process.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringcast::engine::presence::PresenceTable;
use ringcast::protocol::ClientId;
use ringcast::router::msg::{ClientInfos, PresenceItem};

#[path = "../tests/common/mod.rs"]
mod common;

/// Counts the bytes this process holds on the heap (for the table-alone figure).
struct Counting;

static HELD: AtomicI64 = AtomicI64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HELD.fetch_add(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HELD.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        HELD.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const NAMESPACES: &str = r#"channel.namespaces=[
  {"name":"room","presence":true,"join_leave":true,"allow_subscribe_for_client":true,"allow_presence_for_subscriber":true},
  {"name":"plain","allow_subscribe_for_client":true}
]"#;

fn settle_rss(pid: u32) -> u64 {
    std::thread::sleep(Duration::from_millis(500));
    common::rss_kib(pid)
}

fn send(stream: &mut TcpStream, text: &str) {
    stream
        .write_all(&common::frame(0x1, true, text.as_bytes()))
        .expect("send");
}

/// A connected client of `user`.
fn open(address: SocketAddr, user: &str) -> TcpStream {
    common::raw_connect(address, &common::token(user, 24 * 3600))
}

/// Subscribes every stream to `channel` (all sent first, then every reply read).
fn subscribe_all(streams: &mut [TcpStream], channel: &str, join_leave: bool) {
    let command = format!(
        "{{\"id\":2,\"subscribe\":{{\"channel\":\"{channel}\",\"join_leave\":{join_leave}}}}}"
    );
    for stream in streams.iter_mut() {
        send(stream, &command);
    }
    for stream in streams.iter_mut() {
        common::read_until(stream, b"\"id\":2,\"subscribe\"", 1);
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn p99(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[(v.len() * 99 / 100).min(v.len() - 1)]
}

/// Part 1a: the owner's table alone: what it holds for `entries` clients (their user
/// names and infos, which the subscribers' shards allocate and hand over, included).
fn table_bytes(entries: usize) {
    let channel: Arc<str> = "room:big".into();
    let item = |i: usize, info: bool| {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&(i as u64).to_le_bytes());
        PresenceItem {
            client: ClientId::from_bytes(id),
            user: format!("user{i}").into(),
            infos: info.then(|| {
                Arc::new(ClientInfos {
                    conn_info: Some(r#"{"name":"A. User","avatar":42}"#.into()),
                    chan_info: None,
                })
            }),
        }
    };
    for (label, info) in [
        ("user `userN`, no info", false),
        ("and a 30-byte conn_info", true),
    ] {
        let before = HELD.load(Ordering::Relaxed);
        let mut table = PresenceTable::default();
        for i in 0..entries {
            table.join(&channel, item(i, info), true);
        }
        let held = HELD.load(Ordering::Relaxed) - before;
        let started = Instant::now();
        let mut clients = 0;
        for _ in 0..1_000_000 {
            clients += std::hint::black_box(&table).stats("room:big").num_clients;
        }
        let stats_ns = started.elapsed().as_nanos() as f64 / 1e6;
        let started = Instant::now();
        let listed = table.list("room:big").len();
        let list = started.elapsed();
        println!(
            "| owner's table alone, {entries} entries, {label} | {:.0} B/entry | stats {:.1} ns | list {:.2} ms ({listed}) |",
            held as f64 / entries as f64,
            stats_ns,
            list.as_secs_f64() * 1e3,
        );
        assert!(clients > 0);
    }
}

/// An HTTP/1.1 keep-alive connection to the API.
struct Api {
    stream: TcpStream,
}

impl Api {
    fn open(address: SocketAddr) -> Api {
        let stream = TcpStream::connect(address).expect("api connect");
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        Api { stream }
    }

    /// One call; returns the body.
    fn call(&mut self, method: &str, body: &str) -> Vec<u8> {
        let request = format!(
            "POST /api/{method} HTTP/1.1\r\nHost: x\r\nX-API-Key: {}\r\nContent-Length: {}\r\n\r\n{body}",
            common::API_KEY,
            body.len()
        );
        self.stream.write_all(request.as_bytes()).unwrap();
        let mut response = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = self.stream.read(&mut buf).expect("api answers");
            assert!(n > 0, "api closed");
            response.extend_from_slice(&buf[..n]);
            let Some(head_end) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let head = String::from_utf8_lossy(&response[..head_end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .expect("content-length");
            if response.len() >= head_end + 4 + length {
                return response[head_end + 4..head_end + 4 + length].to_vec();
            }
        }
    }

    fn timed(&mut self, method: &str, body: &str, runs: usize) -> (Vec<Duration>, usize) {
        let mut times = Vec::with_capacity(runs);
        let mut bytes = 0;
        for _ in 0..runs {
            let started = Instant::now();
            bytes = self.call(method, body).len();
            times.push(started.elapsed());
        }
        (times, bytes)
    }
}

/// Drains the listeners until they hold `expected` join pushes in all (or the deadline).
fn drain_joins(listeners: &mut [TcpStream], expected: usize, deadline: Instant) -> usize {
    let needle = b"\"join\":{";
    let mut seen = 0;
    let mut buf = vec![0u8; 1 << 16];
    // Each listener's bytes carried over between reads (a push may span two reads).
    let mut tails: Vec<Vec<u8>> = vec![Vec::new(); listeners.len()];
    while seen < expected && Instant::now() < deadline {
        let mut idle = true;
        for (stream, tail) in listeners.iter_mut().zip(&mut tails) {
            match stream.read(&mut buf) {
                Ok(0) => panic!("a listener was closed (slow?)"),
                Ok(n) => {
                    idle = false;
                    tail.extend_from_slice(&buf[..n]);
                    seen += tail.windows(needle.len()).filter(|w| *w == needle).count();
                    let keep = tail.len().min(needle.len() - 1);
                    tail.drain(..tail.len() - keep);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("listener read: {e}"),
            }
        }
        if idle {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    seen
}

/// Part 3: `storm` clients subscribe to `channel` while 1,000 listeners subscribed with
/// join_leave read its pushes.
fn storm(address: SocketAddr, pid: u32, channel: &str, storm: usize) {
    let listeners_n = 1_000;
    let mut listeners: Vec<TcpStream> = (0..listeners_n)
        .map(|i| open(address, &format!("listener{i}")))
        .collect();
    subscribe_all(&mut listeners, channel, true);
    // Their own joins and each other's (how many depends on the order they joined in) are
    // read until none came for a second.
    for stream in &listeners {
        stream.set_nonblocking(true).unwrap();
    }
    while drain_joins(
        &mut listeners,
        usize::MAX,
        Instant::now() + Duration::from_secs(1),
    ) > 0
    {}
    let mut clients: Vec<TcpStream> = (0..storm)
        .map(|i| open(address, &format!("stormer{i}")))
        .collect();
    let cpu_before = cpu_ticks(pid);
    let started = Instant::now();
    let command = format!("{{\"id\":2,\"subscribe\":{{\"channel\":\"{channel}\"}}}}");
    for client in &mut clients {
        send(client, &command);
    }
    for client in &mut clients {
        common::read_until(client, b"\"id\":2,\"subscribe\"", 1);
    }
    let replied = started.elapsed();
    let expected = if channel.starts_with("room:") {
        storm * listeners_n
    } else {
        0
    };
    let delivered = drain_joins(
        &mut listeners,
        expected,
        Instant::now() + Duration::from_secs(120),
    );
    let all = started.elapsed();
    let cpu = cpu_ticks(pid) - cpu_before;
    println!(
        "| {channel} | {storm} | {:.0} /s | {delivered} | {:.2} s | {:.0} ms |",
        storm as f64 / replied.as_secs_f64(),
        all.as_secs_f64(),
        cpu as f64 * 10.0,
    );
    assert_eq!(
        delivered, expected,
        "every join push reached every listener"
    );
}

/// The server's user + system CPU time in clock ticks (10 ms).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    let subscribers = if quick { 2_000 } else { 10_000 };
    let storm_size = if quick { 500 } else { 2_000 };

    println!("## Presence (issue 13), {subscribers} subscribers in one channel\n");
    println!("| what | size | time | |");
    println!("|---|---|---|---|");
    table_bytes(subscribers);

    let server = common::Server::start(&[NAMESPACES]);
    let (address, pid) = (server.address, server.pid());
    let mut streams: Vec<TcpStream> = (0..subscribers)
        .map(|i| open(address, &format!("user{i}")))
        .collect();
    let connected = settle_rss(pid);
    subscribe_all(&mut streams, "plain:big", false);
    let plain = settle_rss(pid);
    subscribe_all(&mut streams, "room:big", false);
    let mut api = Api::open(address);
    let deadline = Instant::now() + Duration::from_secs(30);
    let expected = format!("\"num_clients\":{subscribers}");
    while !String::from_utf8_lossy(&api.call("presence_stats", r#"{"channel":"room:big"}"#))
        .contains(&expected)
    {
        assert!(Instant::now() < deadline, "presence never counted everyone");
        std::thread::sleep(Duration::from_millis(50));
    }
    let with_presence = settle_rss(pid);
    println!(
        "\nserver RSS (KiB): {connected} connected; {plain} after subscribing all to a channel without presence (+{:.0} B/subscriber); {with_presence} after subscribing all to a presence channel (+{:.0} B/subscriber, presence entry included)\n",
        plain.saturating_sub(connected) as f64 * 1024.0 / subscribers as f64,
        with_presence.saturating_sub(plain) as f64 * 1024.0 / subscribers as f64,
    );

    let (stats, stats_bytes) = api.timed("presence_stats", r#"{"channel":"room:big"}"#, 1_000);
    // An empty channel with the same owner shard: the same path but for the entries.
    let empty = (0..)
        .map(|i| format!("room:empty{i}"))
        .find(|c| ringcast::router::owner_of(c, 2) == ringcast::router::owner_of("room:big", 2))
        .unwrap();
    let (plain_stats, _) = api.timed(
        "presence_stats",
        &format!("{{\"channel\":\"{empty}\"}}"),
        1_000,
    );
    let (list, list_bytes) = api.timed("presence", r#"{"channel":"room:big"}"#, 20);
    println!("| API call | answer bytes | p50 | p99 |");
    println!("|---|---|---|---|");
    println!(
        "| presence_stats, {subscribers} entries | {stats_bytes} | {:?} | {:?} |",
        median(stats.clone()),
        p99(stats)
    );
    println!(
        "| presence_stats, empty channel | - | {:?} | {:?} |",
        median(plain_stats.clone()),
        p99(plain_stats)
    );
    println!(
        "| presence, {subscribers} entries | {list_bytes} | {:?} | {:?} |",
        median(list.clone()),
        p99(list)
    );

    // Part 4: disconnect one user among all those connected.
    let runs = 50.min(subscribers);
    let mut answers = Vec::new();
    let mut closes = Vec::new();
    for i in 0..runs {
        let victim = i * (subscribers / runs);
        let stream = &mut streams[victim];
        let started = Instant::now();
        let body = api.call("disconnect", &format!("{{\"user\":\"user{victim}\"}}"));
        answers.push(started.elapsed());
        assert_eq!(body, b"{\"result\":{}}");
        let mut buf = [0u8; 4096];
        // Bounded by the read timeout: the close frame (0x88) or the end of the stream.
        loop {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) if buf[..n].contains(&0x88) => break,
                Ok(_) => {}
                Err(e) => panic!("victim read: {e}"),
            }
        }
        closes.push(started.elapsed());
    }
    println!(
        "| disconnect one user among {subscribers} | - | {:?} (answer) / {:?} (close seen) | {:?} / {:?} |",
        median(answers.clone()),
        median(closes.clone()),
        p99(answers),
        p99(closes)
    );
    drop(streams);
    drop(api);
    drop(server);

    println!("\n## Join/leave storm: clients subscribing while 1,000 listeners take the pushes\n");
    println!("| channel | subscribers | subscribes/s (replies) | join pushes delivered | all delivered after | server CPU |");
    println!("|---|---|---|---|---|---|");
    for channel in ["plain:storm", "room:storm"] {
        let server = common::Server::start(&[NAMESPACES]);
        storm(server.address, server.pid(), channel, storm_size);
    }
}
