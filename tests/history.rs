//! Persistent history and recovery over real sockets and real restarts (issue 4): crashes
//! with `always`, torn and bit-flipped segment tails, a different shard count, recovery with
//! no gap and no duplicate while publications flow, positions that cannot be recovered,
//! history and history_remove, and retention keeping disk use bounded.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Client, DataDir, Server};
use serde_json::{json, Value};

/// History on for channels without a namespace, recovery forced, the client may read it.
const HISTORY: [&str; 5] = [
    "channel.without_namespace.history_size=1000",
    "channel.without_namespace.history_ttl=1h",
    "channel.without_namespace.force_recovery=true",
    "channel.without_namespace.allow_history_for_client=true",
    "client.history_max_publication_limit=1000",
];

/// `HISTORY` with `extra` added: settings (`path=value`) replace the same path; flags with
/// their values are appended.
fn with(extra: &[&'static str]) -> Vec<&'static str> {
    let mut args = HISTORY.to_vec();
    for item in extra {
        let key = item.split('=').next().unwrap_or(item);
        match args
            .iter()
            .position(|a| a.split('=').next() == Some(key) && a.contains('='))
        {
            Some(at) if item.contains('=') => args[at] = item,
            _ => args.push(item),
        }
    }
    args
}

fn publish(server: &Server, channel: &str, n: u64) -> Value {
    server.api("publish", &json!({"channel": channel, "data": {"n": n}}))
}

/// The channel's whole history through the API: (offset, n) pairs, oldest first.
fn history(server: &Server, channel: &str) -> (Vec<(u64, u64)>, u64, String) {
    let reply = server.api("history", &json!({"channel": channel, "limit": -1}));
    let result = &reply["result"];
    let pubs = result["publications"]
        .as_array()
        .unwrap_or_else(|| panic!("history of {channel}: {reply}"))
        .iter()
        .map(|p| {
            (
                p["offset"].as_u64().unwrap(),
                p["data"]["n"].as_u64().unwrap(),
            )
        })
        .collect();
    (
        pubs,
        result["offset"].as_u64().unwrap(),
        result["epoch"].as_str().unwrap().to_owned(),
    )
}

/// Segment files of the data directory, every partition.
fn segments(data: &DataDir) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for partition in std::fs::read_dir(data.0.join("history")).unwrap().flatten() {
        for file in std::fs::read_dir(partition.path()).unwrap().flatten() {
            if file.path().extension().is_some_and(|e| e == "seg") {
                files.push(file.path());
            }
        }
    }
    files.sort();
    files
}

/// Acknowledged (offset, n) pairs per channel.
type Acked = BTreeMap<String, Vec<(u64, u64)>>;

#[test]
fn acknowledged_publications_survive_kill_9_with_always() {
    let data = DataDir::new();
    let server = Server::start_in(&data, &with(&["history_storage.fsync=always"]));
    let channels: Vec<String> = (0..8).map(|i| format!("crash-{i}")).collect();
    // Acknowledged (offset, n) per channel, from four publishing threads.
    let acked: Arc<Mutex<Acked>> = Default::default();
    let stop = Arc::new(AtomicBool::new(false));
    let address = server.address;
    let publishers: Vec<_> = (0..4)
        .map(|t| {
            let (acked, stop, channels) = (acked.clone(), stop.clone(), channels.clone());
            std::thread::spawn(move || {
                let Some(mut api) = common::ApiConn::open(address) else {
                    return;
                };
                // Bounded: stops on the flag or after 2,000 publications.
                for n in 0..2_000u64 {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let channel = &channels[(t * 2 + (n as usize % 2)) % channels.len()];
                    let body = json!({"channel": channel, "data": {"n": n}}).to_string();
                    let Some(reply) = api.post("publish", &body) else {
                        return; // the server is gone
                    };
                    let offset = reply["result"]["offset"].as_u64().expect("offset");
                    acked
                        .lock()
                        .unwrap()
                        .entry(channel.clone())
                        .or_default()
                        .push((offset, n));
                }
            })
        })
        .collect();
    // Kill while publishing goes on, once a good number was acknowledged (bounded: 15 s;
    // how long that takes depends on this disk's sync latency).
    let waiting = Instant::now();
    while acked.lock().unwrap().values().map(Vec::len).sum::<usize>() < 200
        && waiting.elapsed() < Duration::from_secs(15)
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    server.kill();
    stop.store(true, Ordering::SeqCst);
    for p in publishers {
        p.join().unwrap();
    }
    let acked = acked.lock().unwrap();
    let total: usize = acked.values().map(Vec::len).sum();
    assert!(
        total > 50,
        "only {total} publications acknowledged before the kill"
    );

    let server = Server::start_in(&data, &HISTORY);
    for channel in &channels {
        let (stored, top, _) = history(&server, channel);
        let offsets: Vec<u64> = stored.iter().map(|(o, _)| *o).collect();
        assert_eq!(
            offsets,
            (1..=top).collect::<Vec<_>>(),
            "{channel}: offsets contiguous from 1, no duplicate"
        );
        for (offset, n) in acked.get(channel).into_iter().flatten() {
            assert_eq!(
                stored.get(*offset as usize - 1),
                Some(&(*offset, *n)),
                "{channel}: acknowledged publication {offset} is there"
            );
        }
        // Publishing continues right after the last stored offset.
        assert_eq!(publish(&server, channel, 0)["result"]["offset"], top + 1);
    }
}

/// Publishes `count` to `channel`, kills the server, damages the segment that holds the last
/// record with `damage(file bytes, end of data)`, restarts, and checks the channel lost
/// exactly its last publication and goes on from there with the same epoch.
fn damaged_tail_is_cut(damage: impl Fn(&PathBuf, usize)) {
    let data = DataDir::new();
    let server = Server::start_in(&data, &HISTORY);
    let channel = "tail";
    for n in 1..=20 {
        publish(&server, channel, n);
    }
    let (_, _, epoch) = history(&server, channel);
    server.kill();
    let files = segments(&data);
    assert_eq!(files.len(), 1, "one channel, one partition, one segment");
    let bytes = std::fs::read(&files[0]).unwrap();
    let end = bytes.iter().rposition(|&b| b != 0).expect("data written") + 1;
    damage(&files[0], end);

    let server = Server::start_in(&data, &HISTORY);
    let (stored, top, again) = history(&server, channel);
    assert_eq!(top, 19, "the damaged last record is cut, the rest kept");
    assert_eq!(stored, (1..=19).map(|n| (n, n)).collect::<Vec<_>>());
    assert_eq!(again, epoch, "a torn tail keeps the epoch");
    assert_eq!(publish(&server, channel, 20)["result"]["offset"], 20);
    let (stored, _, _) = history(&server, channel);
    assert_eq!(stored.last(), Some(&(20, 20)));
}

#[test]
fn a_truncated_segment_tail_is_cut_and_the_server_serves() {
    damaged_tail_is_cut(|file, end| {
        let f = std::fs::OpenOptions::new().write(true).open(file).unwrap();
        f.set_len(end as u64 - 3).unwrap();
    });
}

#[test]
fn a_bit_flipped_segment_tail_is_cut_and_the_server_serves() {
    damaged_tail_is_cut(|file, end| {
        let mut bytes = std::fs::read(file).unwrap();
        bytes[end - 5] ^= 0x10;
        std::fs::write(file, bytes).unwrap();
    });
}

#[test]
fn a_failed_sync_under_always_acknowledges_and_delivers_nothing() {
    let data = DataDir::new();
    let mut server = Server::start_env(
        &data,
        None,
        &with(&["history_storage.fsync=always"]),
        &[("RINGCAST_TEST_FAIL_SYNC", "1")],
    );
    let (mut subscriber, _) = Client::connect(&server, "s");
    subscriber.subscribe("durable");
    let mut api = common::ApiConn::open(server.address).unwrap();
    let body = json!({"channel": "durable", "data": {"n": 1}}).to_string();
    assert_eq!(api.post("publish", &body), None, "no acknowledgement");
    assert_eq!(
        server.exit_code(Duration::from_secs(10)),
        Some(70),
        "the server stops on a failed sync"
    );
    match subscriber.next_value() {
        Err(_) => {}
        Ok(value) => assert!(value.get("push").is_none(), "delivered: {value}"),
    }
}

#[test]
fn history_survives_a_restart_with_another_shard_count() {
    let data = DataDir::new();
    let server = Server::start_in(&data, &HISTORY);
    let channels: Vec<String> = (0..40).map(|i| format!("reshard-{i}")).collect();
    for (i, channel) in channels.iter().enumerate() {
        for n in 1..=(i as u64 % 5 + 1) {
            publish(&server, channel, n);
        }
    }
    let before: Vec<_> = channels.iter().map(|c| history(&server, c)).collect();
    drop(server);
    for shards in ["1", "3"] {
        let server = Server::start_in(&data, &with(&["--shards", shards]));
        let after: Vec<_> = channels.iter().map(|c| history(&server, c)).collect();
        assert_eq!(after, before, "history with {shards} shards");
    }
}

/// Subscribes with recovery from (offset, epoch); returns the subscribe result.
fn recover(client: &mut Client, channel: &str, offset: u64, epoch: &str, flag: i64) -> Value {
    client.command(
        "subscribe",
        json!({"channel": channel, "recover": true, "offset": offset, "epoch": epoch, "flag": flag}),
    )
}

#[test]
fn recovery_across_a_reconnect_and_unrecoverable_positions() {
    let server = Server::start(&with(&["channel.without_namespace.history_size=10"]));
    let channel = "rec";
    let (mut client, _) = Client::connect(&server, "u1");
    let reply = client.command("subscribe", json!({"channel": channel}));
    let result = &reply["subscribe"];
    assert_eq!(
        (&result["recoverable"], &result["offset"]),
        (&json!(true), &json!(0))
    );
    let epoch = result["epoch"].as_str().unwrap().to_owned();
    publish(&server, channel, 1);
    assert_eq!(client.publication().2, 1);
    drop(client);

    for n in 2..=6 {
        publish(&server, channel, n);
    }
    let (mut client, _) = Client::connect(&server, "u1");
    let reply = recover(&mut client, channel, 1, &epoch, 0);
    let result = &reply["subscribe"];
    assert_eq!(result["recovered"], true, "{reply}");
    assert_eq!(result["was_recovering"], true);
    assert_eq!(
        result["offset"], 1,
        "the client's own offset when recovered"
    );
    let recovered: Vec<u64> = result["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(recovered, [2, 3, 4, 5, 6]);
    publish(&server, channel, 7);
    assert_eq!(
        client.publication().2,
        7,
        "live publications follow without a gap"
    );

    // A wrong epoch: reported, no publications.
    let (mut other, _) = Client::connect(&server, "u2");
    let reply = recover(&mut other, channel, 1, "not-the-epoch", 0);
    assert_eq!(reply["subscribe"]["recovered"], false, "{reply}");
    assert!(reply["subscribe"].get("publications").is_none());
    assert_eq!(reply["subscribe"]["offset"], 7);
    // Older than the retained history (10 kept): not recovered, or 112 when asked.
    for n in 8..=20 {
        publish(&server, channel, n);
    }
    let (mut late, _) = Client::connect(&server, "u3");
    let reply = recover(&mut late, channel, 2, &epoch, 0);
    assert_eq!(reply["subscribe"]["recovered"], false, "{reply}");
    let (mut strict, _) = Client::connect(&server, "u4");
    let reply = recover(&mut strict, channel, 2, &epoch, 2);
    assert_eq!(reply["error"]["code"], 112, "{reply}");
    // ... and the refused subscription is not held against the connection.
    let reply = recover(&mut strict, channel, 15, &epoch, 2);
    assert_eq!(reply["subscribe"]["recovered"], true, "{reply}");
    assert_eq!(
        reply["subscribe"]["publications"].as_array().unwrap().len(),
        5
    );
}

#[test]
fn recovering_while_publications_flow_has_no_gap_and_no_duplicate() {
    // Anchors read only at the end: room for every publication in their queues, and a
    // write that blocks on their full sockets must not cut them as slow (3008) before then:
    // the default write timeout is 1 s, and how soon their sockets fill depends on how fast
    // the machine publishes.
    let server = Server::start(&with(&[
        "client.queue_max_size=16777216",
        "websocket.write_timeout=60s",
    ]));
    // Subscribers that stay on every shard: each shard keeps receiving the channel, so
    // recovering subscribers take the path where the owner answers a shard that is already
    // registered while deliveries to it are in flight.
    let mut anchors = common::clients_on_every_shard(&server, "anchor", 2);
    let mut epoch = String::new();
    for anchor in &mut anchors {
        let reply = anchor.command("subscribe", json!({"channel": "flow"}));
        epoch = reply["subscribe"]["epoch"].as_str().unwrap().to_owned();
    }
    // The publisher stops after PUBLICATIONS; readers never wait for one past it, so a
    // machine that publishes them all before the rounds end passes as well as a slow one.
    const PUBLICATIONS: u64 = 50_000;
    let stop = Arc::new(AtomicBool::new(false));
    let address = server.address;
    let publisher = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut api = common::ApiConn::open(address).expect("server up");
            let mut n = 0u64;
            // Bounded by the flag and by PUBLICATIONS.
            while !stop.load(Ordering::SeqCst) && n < PUBLICATIONS {
                n += 1;
                let body = json!({"channel": "flow", "data": {"n": n}}).to_string();
                api.post("publish", &body).expect("server up");
            }
        })
    };
    // Subscribers join from positions behind the moving top, on both shards (connections
    // are spread over shards by the kernel), each checking its stream.
    let mut checked = 0;
    for round in 0..12u64 {
        std::thread::sleep(Duration::from_millis(30));
        let (mut client, _) = Client::connect(&server, &format!("r{round}"));
        let since = history_top(&server, "flow").saturating_sub(round * 7);
        let reply = recover(&mut client, "flow", since, &epoch, 0);
        let result = &reply["subscribe"];
        if result["recovered"] != true {
            continue; // fell out of the 1,000 kept: allowed, and reported
        }
        let mut next = since + 1;
        // No publications field when nothing was missed.
        let recovered = result["publications"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for p in &recovered {
            assert_eq!(p["offset"], next, "recovered publications in order");
            next += 1;
        }
        // Then live ones, starting exactly after the recovered ones (up to the last one).
        let deadline = Instant::now() + Duration::from_millis(300);
        while Instant::now() < deadline && next <= PUBLICATIONS {
            let (_, _, offset) = client.publication();
            assert_eq!(offset, next, "live publication after recovery");
            next += 1;
        }
        checked += 1;
    }
    stop.store(true, Ordering::SeqCst);
    publisher.join().unwrap();
    assert!(checked >= 6, "only {checked} subscribers recovered");
    // The anchors saw every publication once, in order.
    for anchor in &mut anchors {
        let total = history_top(&server, "flow");
        for expected in 1..=total {
            assert_eq!(anchor.publication().2, expected);
        }
    }
}

fn history_top(server: &Server, channel: &str) -> u64 {
    let reply = server.api("history", &json!({"channel": channel, "limit": 0}));
    reply["result"]["offset"].as_u64().unwrap()
}

#[test]
fn client_and_api_history_and_history_remove() {
    let server = Server::start(&HISTORY);
    for n in 1..=5 {
        publish(&server, "h", n);
    }
    let (mut client, _) = Client::connect(&server, "u");
    let reply = client.command("history", json!({"channel": "h", "limit": 2}));
    let pubs = reply["history"]["publications"].as_array().unwrap();
    assert_eq!(
        pubs.iter()
            .map(|p| p["offset"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(reply["history"]["offset"], 5);
    let reply = client.command(
        "history",
        json!({"channel": "h", "limit": 2, "reverse": true}),
    );
    let pubs = reply["history"]["publications"].as_array().unwrap();
    assert_eq!(pubs[0]["offset"], 5);
    assert_eq!(pubs[1]["offset"], 4);
    let epoch = reply["history"]["epoch"].as_str().unwrap().to_owned();
    let reply = client.command(
        "history",
        json!({"channel": "h", "limit": -1, "since": {"offset": 3, "epoch": epoch}}),
    );
    assert_eq!(
        reply["history"]["publications"].as_array().unwrap().len(),
        2
    );
    let reply = client.command(
        "history",
        json!({"channel": "h", "limit": -1, "since": {"offset": 3, "epoch": "other"}}),
    );
    assert_eq!(reply["error"]["code"], 112);

    // skip_history: delivered without an offset, not stored, position unchanged.
    client.command("subscribe", json!({"channel": "h"}));
    let reply = server.api(
        "publish",
        &json!({"channel": "h", "data": {"n": 0}, "skip_history": true}),
    );
    assert_eq!(reply["result"], json!({}));
    let (_, data, offset) = client.publication();
    assert_eq!(
        (data, offset),
        (json!({"n": 0}), 0),
        "delivered, without an offset"
    );
    assert_eq!(history(&server, "h").1, 5);

    assert_eq!(
        server.api("history_remove", &json!({"channel": "h"}))["result"],
        json!({})
    );
    let (stored, top, _) = history(&server, "h");
    assert!(stored.is_empty());
    assert_eq!(top, 5, "the position survives history_remove");
    assert_eq!(publish(&server, "h", 6)["result"]["offset"], 6);
}

#[test]
fn channels_without_history_answer_108_have_no_stream_and_leave_no_state() {
    let server = Server::start(&["channel.without_namespace.allow_history_for_client=true"]);
    let (mut client, _) = Client::connect(&server, "u");
    let reply = client.command("history", json!({"channel": "plain"}));
    assert_eq!(reply["error"]["code"], 108);
    let reply = server.api("history", &json!({"channel": "plain"}));
    assert_eq!(reply["error"]["code"], 108);
    // As in Centrifugo: no offset, no epoch.
    assert_eq!(publish(&server, "plain", 1)["result"], json!({}));
    client.subscribe("plain");
    assert_eq!(publish(&server, "plain", 2)["result"], json!({}));
    assert_eq!(client.publication(), ("plain".into(), json!({"n": 2}), 0));
    server.wait_metric("channel_states", 1);
    // Publications to names nobody subscribes to leave nothing behind.
    for i in 0..200 {
        assert_eq!(
            publish(&server, &format!("gone-{i}"), i)["result"],
            json!({})
        );
    }
    assert_eq!(server.metric("channel_states"), 1);
    let reply = client.command("unsubscribe", json!({"channel": "plain"}));
    assert!(reply.get("unsubscribe").is_some(), "{reply}");
    server.wait_metric("channel_states", 0);
    assert!(segments_of(&server).is_empty(), "nothing stored");
    assert_eq!(server.metric("history_channels"), 0);
}

fn segments_of(server: &Server) -> Vec<u64> {
    server
        .shard_metric("history_disk_bytes")
        .into_iter()
        .filter(|&b| b > 0)
        .collect()
}

#[test]
fn retention_keeps_disk_use_bounded_under_steady_load() {
    const SEGMENT: u64 = 65_536;
    let server = Server::start(&[
        "channel.without_namespace.history_size=50",
        "channel.without_namespace.history_ttl=1s",
        "history_storage.segment_size=65536",
        // A client publication must fit a segment (the server checks it at start).
        "websocket.message_size_limit=16384",
    ]);
    let disk = || -> u64 { server.shard_metric("history_disk_bytes").iter().sum() };
    let payload = "x".repeat(1000);
    let record = payload.len() as u64 + 50;
    // (elapsed, bytes written so far, bytes on disk), for the failure message.
    let mut samples: Vec<(Duration, u64, u64)> = Vec::new();
    let started = Instant::now();
    let mut written = 0u64;
    // Bounded: until 10 s have passed and 16 segments were written, at most 60 s.
    while (started.elapsed() < Duration::from_secs(10) || written < 16 * SEGMENT)
        && started.elapsed() < Duration::from_secs(60)
    {
        for _ in 0..20 {
            server.api(
                "publish",
                &json!({"channel": "steady", "data": {"p": payload}}),
            );
            written += record;
        }
        samples.push((started.elapsed(), written, disk()));
    }
    assert!(
        written >= 16 * SEGMENT,
        "too little written in 60 s: {written} bytes"
    );
    // Everything is past its ttl a second after the last publication; retention (a pass a
    // second, its deletions after a sync on the blocking thread, however slow the disk is
    // now) must bring the disk down to the head and at most two more segments. Without
    // deletion the disk would hold all that was written. Waited for, not timed.
    let waiting = Instant::now();
    let mut now = disk();
    while now > 3 * SEGMENT && waiting.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(100));
        now = disk();
    }
    assert!(
        now <= 3 * SEGMENT,
        "{written} bytes written, {now} still on disk after 30 s: segments are not deleted \
         ({samples:?})"
    );
}

/// A partition's log is created on its first use off the shard: while the creation is held
/// open (the test gate), the shard answers other work; the waiting subscribe is answered once
/// the log exists, and its channel then works as any other.
#[test]
fn a_new_partition_log_is_created_off_the_shard_while_the_shard_serves_on() {
    let data = DataDir::new();
    let gate = std::path::Path::new(data.path()).join("log-gate");
    let gate_text = gate.to_str().unwrap().to_owned();
    let namespaces = r#"[{"name":"hs","history_size":10,"history_ttl":"60s","allow_subscribe_for_client":true}]"#;
    let server = Server::start_env(
        &data,
        None,
        &["--shards", "1"],
        &[
            ("RINGCAST_CHANNEL_NAMESPACES", namespaces),
            ("RINGCAST_TEST_LOG_GATE", &gate_text),
        ],
    );
    let (mut waiting, _) = Client::connect(&server, "waiting");
    // The subscribe's reply comes only when the log exists.
    waiting.send_text(r#"{"id":100,"subscribe":{"channel":"hs:first"}}"#);
    // A later command's reply: the subscribe has been handed to its owner by then.
    let rpc = waiting.command("rpc", json!({"method": "x"}));
    assert!(rpc.get("error").is_some(), "{rpc}");
    // Meanwhile the one shard serves a channel without history, start to end.
    let (mut other, _) = Client::connect(&server, "other");
    other.subscribe("plain");
    let reply = server.api("publish", &json!({"channel": "plain", "data": {"n": 1}}));
    assert!(reply.get("result").is_some(), "{reply}");
    let (channel, data, _) = other.publication();
    assert_eq!((channel.as_str(), data["n"].as_u64()), ("plain", Some(1)));
    // The waiting subscriber has not joined: the creation is still held.
    assert_eq!(server.metric("subscriptions"), 1);
    std::fs::write(&gate, b"").unwrap();
    let reply = waiting.reply(100);
    assert!(reply.get("subscribe").is_some(), "{reply}");
    let reply = server.api("publish", &json!({"channel": "hs:first", "data": {"n": 2}}));
    assert_eq!(reply["result"]["offset"], 1, "{reply}");
    let (channel, data, offset) = waiting.publication();
    assert_eq!(
        (channel.as_str(), data["n"].as_u64(), offset),
        ("hs:first", Some(2), 1)
    );
}

/// `channel.history_meta_ttl`: once a channel's history has expired and its meta ttl has
/// passed since its last publication, the log forgets it (`ringcast_history_channels` falls
/// to 0); its next publication starts above every dropped position, with the same epoch, so
/// a client that held the last position recovers the new stream and one that missed a
/// publication of the old stream is told it cannot.
#[test]
fn positions_go_after_the_history_meta_ttl_and_the_next_stream_starts_above_them() {
    let server = Server::start(&with(&[
        "channel.without_namespace.history_size=10",
        "channel.without_namespace.history_ttl=1s",
        "channel.history_meta_ttl=2s",
    ]));
    let (mut client, _) = Client::connect(&server, "u1");
    let reply = client.command("subscribe", json!({"channel": "m"}));
    let epoch = reply["subscribe"]["epoch"].as_str().unwrap().to_owned();
    for n in 1..=3 {
        assert_eq!(publish(&server, "m", n)["result"]["offset"], n);
        assert_eq!(client.publication().2, n);
    }
    let reply = client.command("unsubscribe", json!({"channel": "m"}));
    assert!(reply.get("unsubscribe").is_some(), "{reply}");
    assert_eq!(server.metric("history_channels"), 1);
    server.wait_metric("history_channels", 0);

    let result = &publish(&server, "m", 4)["result"];
    assert_eq!(result["offset"], 4, "above the dropped top 3: {result}");
    assert_eq!(result["epoch"], epoch.as_str());
    assert_eq!(server.metric("history_channels"), 1);
    let (mut caught_up, _) = Client::connect(&server, "u2");
    let reply = recover(&mut caught_up, "m", 3, &epoch, 0);
    assert_eq!(reply["subscribe"]["recovered"], true, "{reply}");
    assert_eq!(reply["subscribe"]["publications"][0]["offset"], 4);
    let (mut behind, _) = Client::connect(&server, "u3");
    let reply = recover(&mut behind, "m", 2, &epoch, 0);
    assert_eq!(reply["subscribe"]["recovered"], false, "{reply}");
}

/// A connection token's channels are subscribed server-side, and the connect reply carries
/// each one's subscribe result; a reconnecting client names its positions in connect's
/// `subs` and gets the missed publications in that result, before any live one.
#[test]
fn server_side_subscriptions_recover_across_a_reconnect() {
    let server = Server::start(&HISTORY);
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "u", "channels": ["feed", "other"]}),
        &jsonwebtoken::EncodingKey::from_secret(common::SECRET.as_bytes()),
    )
    .unwrap();
    let mut client = Client::open(&server);
    let reply = client.command("connect", json!({"token": token}));
    let feed = &reply["connect"]["subs"]["feed"];
    assert_eq!(
        (&feed["recoverable"], &feed["offset"]),
        (&json!(true), &json!(0)),
        "{reply}"
    );
    let epoch = feed["epoch"].as_str().unwrap().to_owned();
    assert!(reply["connect"]["subs"].get("other").is_some(), "{reply}");
    publish(&server, "feed", 1);
    assert_eq!(client.publication(), ("feed".into(), json!({"n": 1}), 1));
    drop(client);

    publish(&server, "feed", 2);
    publish(&server, "feed", 3);
    let mut client = Client::open(&server);
    let reply = client.command(
        "connect",
        json!({"token": token, "subs": {"feed": {"recover": true, "offset": 1, "epoch": epoch}}}),
    );
    let feed = &reply["connect"]["subs"]["feed"];
    assert_eq!(feed["recovered"], true, "{reply}");
    assert_eq!(feed["was_recovering"], true);
    let recovered: Vec<u64> = feed["publications"]
        .as_array()
        .unwrap_or_else(|| panic!("{reply}"))
        .iter()
        .map(|p| p["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(recovered, [2, 3]);
    publish(&server, "feed", 4);
    assert_eq!(client.publication(), ("feed".into(), json!({"n": 4}), 4));
    // A position in another epoch: not recovered, told so.
    let mut late = Client::open(&server);
    let reply = late.command(
        "connect",
        json!({"token": token, "subs": {"feed": {"recover": true, "offset": 1, "epoch": "other"}}}),
    );
    assert_eq!(
        reply["connect"]["subs"]["feed"]["recovered"], false,
        "{reply}"
    );
}
