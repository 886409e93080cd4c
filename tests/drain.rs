//! The drain on SIGTERM (issue 14): `/health` answers 503 at once, clients are closed with
//! 3001 (reconnect advised), the history is synced and the process exits 0; a restart serves
//! every acknowledged publication. A second signal stops the process at once (exit 1).

mod common;

use std::time::{Duration, Instant};

use common::{Client, Closed, DataDir, Server};
use nix::sys::signal::Signal;
use serde_json::json;

const HISTORY: &str = r#"channel.namespaces=[{"name":"news","history_size":100,"history_ttl":"300s","force_recovery":true,"allow_subscribe_for_client":true}]"#;

#[test]
fn sigterm_drains_clients_with_3001_syncs_the_history_and_exits_0() {
    let data = DataDir::new();
    let mut server = Server::start_in(
        &data,
        &[
            HISTORY,
            "shutdown.accept_delay=200ms",
            "shutdown.timeout=3s",
            "history_storage.fsync=interval",
            "history_storage.fsync_interval=10s",
        ],
    );
    let mut clients = common::clients_on_every_shard(&server, "c", 2);
    for client in &mut clients {
        client.subscribe("news:a");
    }
    let mut offsets = Vec::new();
    for n in 0..10 {
        let reply = server.api("publish", &json!({"channel": "news:a", "data": {"n": n}}));
        offsets.push(reply["result"]["offset"].as_u64().expect("an offset"));
    }
    assert_eq!(server.http("GET", "/health", &[], b"").0, 200);

    server.signal(Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.http("GET", "/health", &[], b"").0 != 503 {
        assert!(Instant::now() < deadline, "/health never failed");
        std::thread::sleep(Duration::from_millis(10));
    }
    for client in &mut clients {
        assert_eq!(
            client.expect_close(),
            Closed::Code(3001),
            "reconnect advised"
        );
    }
    assert_eq!(
        server.exit_code(Duration::from_secs(20)),
        Some(0),
        "a drained server exits 0"
    );

    // Everything acknowledged is served after a restart (the drain synced it; the 10 s sync
    // interval never came, though a process exit alone keeps the page cache anyway).
    let server = Server::start_in(&data, &[HISTORY]);
    let history = server.api("history", &json!({"channel": "news:a", "limit": 100}));
    let got: Vec<u64> = history["result"]["publications"]
        .as_array()
        .unwrap_or_else(|| panic!("{history}"))
        .iter()
        .map(|p| p["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(got, offsets);
    let (mut client, _) = Client::connect(&server, "after");
    client.subscribe("news:a");
}

#[test]
fn a_second_signal_stops_at_once() {
    // A drain that would wait a minute before it stops accepting.
    let mut server = Server::start(&["shutdown.accept_delay=60s"]);
    server.signal(Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.http("GET", "/health", &[], b"").0 != 503 {
        assert!(Instant::now() < deadline, "/health never failed");
        std::thread::sleep(Duration::from_millis(10));
    }
    server.signal(Signal::SIGINT);
    assert_eq!(server.exit_code(Duration::from_secs(10)), Some(1));
}
