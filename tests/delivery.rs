//! Delivery over real sockets with 2 shards: client and API publications reach subscribers on
//! every shard, per-channel order and contiguous offsets hold under concurrent publishers,
//! broadcast reaches 1,000 channels, and a slow consumer is cut without hurting the others
//! (by its queue's limit, or by the write timeout when its socket stays full).

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::{Client, Closed, Server};
use serde_json::json;

const CLIENTS: usize = 8;

/// History on for every channel: only a channel with history has a stream (offsets), as in
/// Centrifugo.
const PUBLISH_WITH_HISTORY: [&str; 3] = [
    "channel.without_namespace.allow_publish_for_client=true",
    "channel.without_namespace.history_size=10",
    "channel.without_namespace.history_ttl=300s",
];

/// Opens connected clients (at least `CLIENTS`) until every shard has gained one: SO_REUSEPORT
/// spreads connections by a hash of their addresses, so a few more may be needed.
fn clients_on_every_shard(server: &Server, role: &str) -> Vec<Client> {
    common::clients_on_every_shard(server, role, CLIENTS)
}

#[test]
fn publications_from_clients_and_api_reach_subscribers_on_every_shard() {
    let server = Server::start(&PUBLISH_WITH_HISTORY);
    let channels = ["news", "room-1", "room-2", "sport"];
    // Subscribers and publishers on every shard, channels owned by both shards: every
    // publication crosses shards on its way to some subscriber.
    let mut subscribers = clients_on_every_shard(&server, "sub");
    for client in &mut subscribers {
        for channel in channels {
            client.subscribe(channel);
        }
    }
    let owners: std::collections::HashSet<u32> = channels
        .iter()
        .map(|c| ringcast::router::owner_of(c, 2) as u32)
        .collect();
    assert_eq!(
        owners.len(),
        2,
        "the test channels are owned by both shards"
    );
    let mut publishers = clients_on_every_shard(&server, "pub");
    let published = publishers.len();
    for (i, publisher) in publishers.iter_mut().enumerate() {
        let channel = channels[i % channels.len()];
        let reply = publisher.command("publish", json!({"channel": channel, "data": {"from": i}}));
        assert_eq!(reply["publish"], json!({}), "{reply}");
    }
    for channel in channels {
        let result = server.api(
            "publish",
            &json!({"channel": channel, "data": {"from": "api"}}),
        );
        assert!(
            result["result"]["offset"].as_u64().unwrap() >= 1,
            "{result}"
        );
    }
    for subscriber in &mut subscribers {
        let mut got: HashMap<String, Vec<(serde_json::Value, u64)>> = HashMap::new();
        for _ in 0..published + channels.len() {
            let (channel, data, offset) = subscriber.publication();
            got.entry(channel).or_default().push((data, offset));
        }
        for channel in channels {
            let publications = &got[channel];
            let offsets: Vec<u64> = publications.iter().map(|p| p.1).collect();
            let expected: Vec<u64> = (1..=offsets.len() as u64).collect();
            assert_eq!(offsets, expected, "{channel}: contiguous offsets from 1");
            assert_eq!(publications.last().unwrap().0, json!({"from": "api"}));
        }
    }
    // Client publications carry the publisher's ClientInfo.
    let mut watcher = Client::connect(&server, "watcher").0;
    watcher.subscribe("info-check");
    publishers[0].command("publish", json!({"channel": "info-check", "data": 1}));
    let value = watcher.next_value().unwrap();
    assert_eq!(value["push"]["pub"]["info"]["user"], "pub0", "{value}");
    assert!(value["push"]["pub"]["info"]["client"].is_string());
}

#[test]
fn order_holds_with_concurrent_publishers() {
    const PER_PUBLISHER: u64 = 300;
    let server = Server::start(&PUBLISH_WITH_HISTORY);
    let mut subscribers: Vec<Client> = (0..4)
        .map(|i| {
            let mut client = Client::connect(&server, &format!("s{i}")).0;
            client.subscribe("race");
            client
        })
        .collect();
    let address = server.address;
    std::thread::scope(|scope| {
        // Two WebSocket publishers and two API publishers, all at once.
        for p in 0..2u64 {
            let server = &server;
            scope.spawn(move || {
                let mut client = Client::connect(server, &format!("p{p}")).0;
                for n in 0..PER_PUBLISHER {
                    client.command(
                        "publish",
                        json!({"channel": "race", "data": {"p": p, "n": n}}),
                    );
                }
            });
        }
        for p in 2..4u64 {
            let server = &server;
            scope.spawn(move || {
                for n in 0..PER_PUBLISHER {
                    server.api(
                        "publish",
                        &json!({"channel": "race", "data": {"p": p, "n": n}}),
                    );
                }
            });
        }
        let _ = address;
    });
    let total = 4 * PER_PUBLISHER;
    for subscriber in &mut subscribers {
        let mut next_n = [0u64; 4];
        for expected_offset in 1..=total {
            let (_, data, offset) = subscriber.publication();
            assert_eq!(offset, expected_offset, "offsets are contiguous, in order");
            let p = data["p"].as_u64().unwrap() as usize;
            assert_eq!(
                data["n"].as_u64().unwrap(),
                next_n[p],
                "publisher {p} in order"
            );
            next_n[p] += 1;
        }
        assert_eq!(next_n, [PER_PUBLISHER; 4]);
    }
}

#[test]
fn broadcast_reaches_a_thousand_channels() {
    let server = Server::start(&[]);
    let names: Vec<String> = (0..1000).map(|i| format!("user#{i}")).collect();
    // 128 channels per client at most, so 10 clients with 100 each.
    let mut clients: Vec<Client> = names
        .chunks(100)
        .enumerate()
        .map(|(i, chunk)| {
            let mut client = Client::connect(&server, &format!("b{i}")).0;
            for name in chunk {
                client.subscribe(name);
            }
            client
        })
        .collect();
    let mut channels: Vec<serde_json::Value> = names.iter().map(|n| json!(n)).collect();
    channels.insert(500, json!(""));
    let reply = server.api(
        "broadcast",
        &json!({"channels": channels, "data": {"hello": 1}}),
    );
    let responses = reply["result"]["responses"].as_array().unwrap();
    assert_eq!(responses.len(), 1001, "one entry per channel, in order");
    assert_eq!(responses[500]["error"]["code"], 107, "empty channel name");
    // Without history there is no stream: `{}`, and pushes without an offset (Centrifugo's
    // answers).
    for (i, response) in responses.iter().enumerate().filter(|(i, _)| *i != 500) {
        assert_eq!(response["result"], json!({}), "entry {i}: {response}");
    }
    for (client, chunk) in clients.iter_mut().zip(names.chunks(100)) {
        let seen: Vec<(String, serde_json::Value, u64)> =
            (0..100).map(|_| client.publication()).collect();
        assert!(seen.iter().all(|(_, _, offset)| *offset == 0), "no offsets");
        let mut seen: Vec<String> = seen.into_iter().map(|(channel, _, _)| channel).collect();
        seen.sort();
        let mut expected = chunk.to_vec();
        expected.sort();
        assert_eq!(seen, expected);
    }
}

#[test]
fn slow_consumer_is_disconnected_and_healthy_one_misses_nothing() {
    const MESSAGES: usize = 400;
    let server = Server::start(&["client.queue_max_size=65536"]);
    let mut healthy = Client::connect(&server, "healthy").0;
    healthy.subscribe("firehose");

    // The slow one: subscribes, then never reads again.
    let mut slow = TcpStream::connect(server.address).unwrap();
    let request = "GET /connection/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    slow.write_all(request.as_bytes()).unwrap();
    let commands = format!(
        "{{\"id\":1,\"connect\":{{\"token\":\"{}\"}}}}\n{{\"id\":2,\"subscribe\":{{\"channel\":\"firehose\"}}}}",
        common::token("slow", 3600)
    );
    slow.write_all(&common::frame(0x1, true, commands.as_bytes()))
        .unwrap();
    // Wait until the server has the subscription: both subscribers counted.
    wait_until(|| server.metric("subscriptions") == 2);

    let payload = "x".repeat(32 << 10);
    // The healthy subscriber acknowledges each publication and the next one is published
    // only then: its backlog never passes one message, however slowly this machine runs its
    // thread, while the slow one's grows until it is cut.
    let (ack, acked) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut got = 0;
        while got < MESSAGES {
            let (_, data, _) = healthy.publication();
            assert_eq!(data["n"], got, "healthy subscriber misses nothing");
            got += 1;
            ack.send(()).expect("the publisher waits");
        }
        healthy
    });
    for n in 0..MESSAGES {
        server.api(
            "publish",
            &json!({"channel": "firehose", "data": {"n": n, "pad": payload}}),
        );
        acked
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the healthy subscriber received the publication");
    }
    let mut healthy = reader.join().unwrap();
    wait_until(|| server.metric("slow_disconnects_total") == 1);
    // The healthy one is still connected and served.
    server.api(
        "publish",
        &json!({"channel": "firehose", "data": {"n": "after"}}),
    );
    assert_eq!(healthy.publication().1["n"], "after");
    drop(slow);
}

/// A client that never reads, subscribed to `channel` with its connect and subscribe sent in
/// the same write as its upgrade request (the server must serve what came with the request).
fn silent_subscriber(server: &Server, user: &str, channel: &str) -> TcpStream {
    let mut stream = TcpStream::connect(server.address).unwrap();
    let mut bytes = b"GET /connection/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".to_vec();
    let commands = format!(
        "{{\"id\":1,\"connect\":{{\"token\":\"{}\"}}}}\n{{\"id\":2,\"subscribe\":{{\"channel\":\"{channel}\"}}}}",
        common::token(user, 3600)
    );
    bytes.extend(common::frame(0x1, true, commands.as_bytes()));
    stream.write_all(&bytes).unwrap();
    stream
}

#[test]
fn a_connection_whose_socket_stays_full_past_the_write_timeout_is_cut_as_slow() {
    // The queue limit is far above what the socket buffers hold, so only the write timeout
    // can cut the silent subscriber.
    let server = Server::start(&[
        "client.queue_max_size=268435456",
        "websocket.write_timeout=300ms",
    ]);
    let _silent = silent_subscriber(&server, "silent", "stream");
    wait_until(|| server.metric("subscriptions") == 1);
    let payload = "x".repeat(64 << 10);
    // Bounded: at most 2,000 publications of 64 KiB (128 MiB, under the queue limit); the
    // socket buffers fill long before.
    for n in 0..2_000 {
        if server.metric("slow_disconnects_total") == 1 {
            break;
        }
        server.api(
            "publish",
            &json!({"channel": "stream", "data": {"n": n, "pad": payload}}),
        );
    }
    wait_until(|| server.metric("slow_disconnects_total") == 1);
    wait_until(|| server.metric("subscriptions") == 0);
}

fn wait_until(mut condition: impl FnMut() -> bool) {
    for _ in 0..200 {
        if condition() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("condition not met within 10 s");
}

#[test]
fn unanswered_pings_disconnect_with_no_pong() {
    // A pong timeout far above a loaded machine's scheduling delays: the answering client
    // must never miss it, and the silent one always does.
    let server = Server::start(&["client.ping_interval=1s", "client.pong_timeout=800ms"]);
    let (mut answering, reply) = Client::connect(&server, "a");
    assert_eq!(
        reply["connect"]["ping"], 1,
        "ping interval rounded up to whole seconds"
    );
    assert_eq!(reply["connect"]["pong"], true);
    // The silent client connects, then reads nothing (so it answers no ping).
    let mut silent = Client::open(&server);
    silent.send_text(&format!(
        "{{\"id\":1,\"connect\":{{\"token\":\"{}\"}}}}",
        common::token("b", 3600)
    ));
    // The answering client keeps talking for three ping intervals; `Client` answers every
    // ping it reads on the way.
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_millis(3_000) {
        let reply = answering.command("rpc", json!({"method": "m"}));
        assert_eq!(reply["error"]["code"], 108);
        std::thread::sleep(Duration::from_millis(30));
    }
    answering.subscribe("alive");
    server.api("publish", &json!({"channel": "alive", "data": 1}));
    assert_eq!(answering.publication().1, json!(1));
    assert_eq!(silent.expect_close(), Closed::Code(3012));
}

#[test]
fn the_deadline_wheel_closes_stale_and_expired_connections_only() {
    let server = Server::start(&[
        "client.stale_close_delay=1s",
        "client.expired_close_delay=1s",
    ]);
    // Lives on: a token for an hour, answering pings.
    let (mut alive, _) = Client::connect(&server, "alive");
    // Never sends connect: closed as stale (3502) once the stale delay passed.
    let mut stale = Client::open(&server);
    // Its token expires in two seconds and it never refreshes: closed as expired (3005)
    // once the grace passed.
    let mut expiring = Client::open(&server);
    expiring.send_text(&format!(
        "{{\"id\":1,\"connect\":{{\"token\":\"{}\"}}}}",
        common::token("soon", 2)
    ));
    assert_eq!(stale.expect_close(), Closed::Code(3502));
    assert_eq!(expiring.expect_close(), Closed::Code(3005));
    let reply = alive.command("rpc", json!({"method": "m"}));
    assert_eq!(
        reply["error"]["code"], 108,
        "the other connection is untouched"
    );
}
