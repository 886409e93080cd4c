//! Presence and join/leave over real sockets (issue 13): entries fed to the channel's owner
//! by subscribers on every shard, `presence` and `presence_stats` from clients and the API,
//! join and leave pushes to the subscribers that asked (or to all when forced), entries that
//! leave on unsubscribe, on disconnect and when the socket dies, and the refusals.

mod common;

use std::collections::BTreeSet;

use common::sdk::api_until;
use common::{clients_on_every_shard, Client, Server};
use serde_json::{json, Value};

/// `room:` has presence and join/leave for subscribers; `forced:` pushes them to everyone;
/// `quiet:` has neither; `open:` lets any client ask for presence.
const NAMESPACES: &str = r#"channel.namespaces=[
  {"name":"room","presence":true,"join_leave":true,"allow_subscribe_for_client":true,"allow_presence_for_subscriber":true},
  {"name":"forced","presence":true,"join_leave":true,"force_push_join_leave":true,"allow_subscribe_for_client":true},
  {"name":"quiet","allow_subscribe_for_client":true,"allow_presence_for_client":true},
  {"name":"open","presence":true,"allow_subscribe_for_client":true,"allow_presence_for_client":true}
]"#;

fn server() -> Server {
    Server::start(&[NAMESPACES])
}

fn code(reply: &Value) -> u64 {
    reply["error"]["code"]
        .as_u64()
        .unwrap_or_else(|| panic!("an error reply: {reply}"))
}

/// The clients in a `presence` result, by client id → user.
fn clients(presence: &Value) -> BTreeSet<(String, String)> {
    presence["presence"]
        .as_object()
        .unwrap_or_else(|| panic!("a presence result: {presence}"))
        .iter()
        .map(|(id, info)| {
            assert_eq!(info["client"], id.as_str(), "{presence}");
            (id.clone(), info["user"].as_str().unwrap().to_owned())
        })
        .collect()
}

/// The next join or leave push on `channel`: ("join" | "leave", its ClientInfo).
fn join_leave(client: &mut Client, channel: &str) -> (String, Value) {
    loop {
        let value = client.next_value().expect("open while waiting for a push");
        let Some(push) = value.get("push") else {
            continue;
        };
        if push["channel"] != channel {
            continue;
        }
        for kind in ["join", "leave"] {
            if let Some(event) = push.get(kind) {
                return (kind.to_owned(), event["info"].clone());
            }
        }
    }
}

#[test]
fn presence_lists_subscribers_of_every_shard_for_clients_and_the_api() {
    let server = server();
    // Subscribers on both shards: the owner of the channel gets entries over the ring too.
    let mut subscribers = clients_on_every_shard(&server, "u", 2);
    for client in &mut subscribers {
        client.subscribe("room:lobby");
    }
    // Two connections of one user: two clients, one user.
    let (mut twin, connected) = Client::connect(&server, "u0");
    twin.subscribe("room:lobby");
    let twin_id = connected["connect"]["client"].as_str().unwrap().to_owned();
    let expected = subscribers.len() as u64 + 1;
    let stats = api_until(&server, "presence_stats", "room:lobby", |r| {
        r["num_clients"] == expected
    });
    assert_eq!(stats["num_users"], expected - 1, "u0 counts once: {stats}");
    assert_eq!(server.metric("presence_entries"), expected);
    let listed = clients(&server.api("presence", &json!({"channel": "room:lobby"}))["result"]);
    assert_eq!(listed.len() as u64, expected);
    assert!(listed.contains(&(twin_id.clone(), "u0".into())));

    // The same from a subscriber, on whichever shard.
    for client in &mut subscribers {
        let reply = client.command("presence", json!({"channel": "room:lobby"}));
        assert_eq!(clients(&reply["presence"]), listed);
        let reply = client.command("presence_stats", json!({"channel": "room:lobby"}));
        assert_eq!(reply["presence_stats"], stats, "{reply}");
    }

    // Unsubscribing and disconnecting take the entries out.
    let reply = twin.command("unsubscribe", json!({"channel": "room:lobby"}));
    assert!(reply.get("unsubscribe").is_some(), "{reply}");
    api_until(&server, "presence_stats", "room:lobby", |r| {
        r["num_clients"] == expected - 1
    });
    drop(subscribers.pop());
    api_until(&server, "presence_stats", "room:lobby", |r| {
        r["num_clients"] == expected - 2
    });
    drop(subscribers);
    let gone = api_until(&server, "presence", "room:lobby", |r| {
        r["presence"].as_object().is_some_and(|p| p.is_empty())
    });
    assert_eq!(gone, json!({"presence": {}}));
    assert_eq!(server.metric("presence_entries"), 0);
    let stats = server.api("presence_stats", &json!({"channel": "room:lobby"}));
    assert_eq!(
        stats["result"],
        json!({"num_clients": 0, "num_users": 0}),
        "zero counts are written"
    );
}

#[test]
fn join_and_leave_go_to_subscribers_that_asked_and_to_all_when_forced() {
    let server = server();
    let (mut watcher, _) = Client::connect(&server, "watcher");
    let reply = watcher.command(
        "subscribe",
        json!({"channel": "room:a", "join_leave": true}),
    );
    assert!(reply.get("subscribe").is_some(), "{reply}");
    // Its own join comes first: it is a subscriber when the owner announces it.
    let (kind, info) = join_leave(&mut watcher, "room:a");
    assert_eq!((kind.as_str(), &info["user"]), ("join", &json!("watcher")));
    let (mut deaf, _) = Client::connect(&server, "deaf");
    deaf.subscribe("room:a");
    let token = common::token("guest", 3600);
    let mut guest = Client::open(&server);
    let connected = guest.command("connect", json!({"token": token}));
    let guest_id = connected["connect"]["client"].as_str().unwrap().to_owned();
    guest.subscribe("room:a");

    let (kind, info) = join_leave(&mut watcher, "room:a");
    assert_eq!((kind.as_str(), &info["user"]), ("join", &json!("deaf")));
    let (kind, info) = join_leave(&mut watcher, "room:a");
    assert_eq!(kind, "join");
    assert_eq!(info, json!({"user": "guest", "client": guest_id}));

    // Leave on unsubscribe; then on a socket that just dies (no close frame).
    guest.command("unsubscribe", json!({"channel": "room:a"}));
    let (kind, info) = join_leave(&mut watcher, "room:a");
    assert_eq!(
        (kind.as_str(), &info["client"]),
        ("leave", &json!(guest_id))
    );
    drop(deaf);
    let (kind, info) = join_leave(&mut watcher, "room:a");
    assert_eq!((kind.as_str(), &info["user"]), ("leave", &json!("deaf")));

    // `deaf2` did not ask: it sees publications but no join/leave; in `forced:` everyone does.
    let (mut deaf2, _) = Client::connect(&server, "deaf2");
    deaf2.subscribe("room:a");
    deaf2.subscribe("forced:a");
    let (kind, info) = join_leave(&mut deaf2, "forced:a");
    assert_eq!((kind.as_str(), &info["user"]), ("join", &json!("deaf2")));
    let (mut other, _) = Client::connect(&server, "other");
    other.subscribe("room:a");
    other.subscribe("forced:a");
    server.api("publish", &json!({"channel": "room:a", "data": {"n": 1}}));
    // What deaf2 gets next on room:a is the publication, never other's join there.
    loop {
        let value = deaf2.next_value().unwrap();
        let push = &value["push"];
        if push["channel"] == "room:a" {
            assert!(push.get("pub").is_some(), "only the publication: {value}");
            break;
        }
        if push["channel"] == "forced:a" {
            assert_eq!(push["join"]["info"]["user"], "other", "{value}");
        }
    }
    let (kind, info) = join_leave(&mut watcher, "room:a");
    assert_eq!((kind.as_str(), &info["user"]), ("join", &json!("deaf2")));
}

#[test]
fn presence_refusals_and_the_unchanged_rest() {
    let server = server();
    let (mut client, _) = Client::connect(&server, "u");
    // Not a subscriber of room: (presence for subscribers only): 103.
    let reply = client.command("presence", json!({"channel": "room:x"}));
    assert_eq!(code(&reply), 103);
    // No presence in quiet: 108, for the client and the API.
    let reply = client.command("presence_stats", json!({"channel": "quiet:x"}));
    assert_eq!(code(&reply), 108);
    let reply = server.api("presence", &json!({"channel": "quiet:x"}));
    assert_eq!(reply["error"]["code"], 108, "{reply}");
    // Unknown namespace: 102; no channel: 107 for the API, 3501 for a client.
    assert_eq!(
        server.api("presence_stats", &json!({"channel": "nope:x"}))["error"]["code"],
        102
    );
    assert_eq!(
        server.api("presence", &json!({"channel": ""}))["error"]["code"],
        107
    );
    let reply = client.command("presence", json!({"channel": "nope:x"}));
    assert_eq!(code(&reply), 102);
    // A client allowed by `allow_presence_for_client` asks without subscribing.
    let reply = client.command("presence", json!({"channel": "open:x"}));
    assert_eq!(reply["presence"], json!({"presence": {}}), "{reply}");
    // The connection still works after every refusal.
    client.subscribe("room:x");
    let reply = client.command("presence_stats", json!({"channel": "room:x"}));
    assert_eq!(reply["presence_stats"]["num_users"], 1, "{reply}");
    client.send_text(r#"{"id":99,"presence":{"channel":""}}"#);
    assert_eq!(client.expect_close(), common::Closed::Code(3501));
}

#[test]
fn a_slow_consumer_cut_leaves_presence() {
    let server = Server::start(&[NAMESPACES, "client.queue_max_size=65536"]);
    let (mut watcher, _) = Client::connect(&server, "watcher");
    let reply = watcher.command(
        "subscribe",
        json!({"channel": "room:s", "join_leave": true}),
    );
    assert!(reply.get("subscribe").is_some(), "{reply}");
    // The slow one: in room:s and in a busy channel, and it never reads.
    let mut slow = std::net::TcpStream::connect(server.address).unwrap();
    let mut bytes = b"GET /connection/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".to_vec();
    let commands = format!(
        "{{\"id\":1,\"connect\":{{\"token\":\"{}\"}}}}\n{{\"id\":2,\"subscribe\":{{\"channel\":\"room:s\"}}}}\n{{\"id\":3,\"subscribe\":{{\"channel\":\"busy\"}}}}",
        common::token("slow", 3600)
    );
    bytes.extend(common::frame(0x1, true, commands.as_bytes()));
    std::io::Write::write_all(&mut slow, &bytes).unwrap();
    let (kind, info) = join_leave(&mut watcher, "room:s");
    assert_eq!((kind.as_str(), &info["user"]), ("join", &json!("watcher")));
    let (kind, info) = join_leave(&mut watcher, "room:s");
    assert_eq!((kind.as_str(), &info["user"]), ("join", &json!("slow")));
    // Publications to the busy channel until the slow one is cut (bounded).
    let payload = "x".repeat(32 << 10);
    for n in 0..2_000 {
        if server.metric("slow_disconnects_total") > 0 {
            break;
        }
        server.api(
            "publish",
            &json!({"channel": "busy", "data": {"n": n, "pad": payload}}),
        );
    }
    // Counted once its closing handshake is over (a linger of up to two seconds).
    server.wait_metric("slow_disconnects_total", 1);
    let (kind, info) = join_leave(&mut watcher, "room:s");
    assert_eq!((kind.as_str(), &info["user"]), ("leave", &json!("slow")));
    api_until(&server, "presence_stats", "room:s", |r| {
        r["num_clients"] == 1
    });
    drop(slow);
}
