//! The server API acting on users (issue 13) over real sockets: `disconnect` of every
//! connection of a user on every shard (with its code, the `client` filter and the
//! `whitelist`), `subscribe` and `unsubscribe` with their pushes, `refresh`, `channels` with a
//! pattern and pages, one connection per user, and the refusals of bad parameters.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Client, Closed, Server};
use serde_json::{json, Value};

const NAMESPACES: &str = r#"channel.namespaces=[
  {"name":"room","presence":true,"allow_subscribe_for_client":true,"allow_presence_for_subscriber":true},
  {"name":"news","history_size":10,"history_ttl":"60s","force_recovery":true}
]"#;

/// Connections of `user` until every shard holds at least one (the kernel spreads them);
/// returns them with their client ids.
fn user_on_every_shard(server: &Server, user: &str) -> Vec<(Client, String)> {
    let before = server.shard_metric("connections");
    let mut clients = Vec::new();
    for _ in 0..64 {
        let (client, reply) = Client::connect(server, user);
        let id = reply["connect"]["client"].as_str().unwrap().to_owned();
        clients.push((client, id));
        let now = server.shard_metric("connections");
        if now.iter().zip(&before).all(|(n, b)| n > b) {
            return clients;
        }
    }
    panic!("64 connections never reached every shard");
}

fn code(reply: &Value) -> u64 {
    reply["error"]["code"]
        .as_u64()
        .unwrap_or_else(|| panic!("an error reply: {reply}"))
}

/// The next push on `client` that has `field`, skipping others.
fn push_with(client: &mut Client, field: &str) -> Value {
    loop {
        let value = client.next_value().expect("open while waiting for a push");
        if let Some(push) = value.get("push") {
            if push.get(field).is_some() {
                return push.clone();
            }
        }
    }
}

#[test]
fn disconnect_reaches_every_connection_of_the_user_on_every_shard() {
    let server = Server::start(&[]);
    let mut doomed = user_on_every_shard(&server, "doomed");
    assert!(doomed.len() >= 2);
    let (mut bystander, _) = Client::connect(&server, "bystander");

    // `client` picks one connection: only it closes, with the default code.
    let (mut first, first_id) = doomed.remove(0);
    let reply = server.api("disconnect", &json!({"user": "doomed", "client": first_id}));
    assert_eq!(reply, json!({"result": {}}));
    assert_eq!(first.expect_close(), Closed::Code(3503));

    // The whitelist spares one; every other connection closes with the code given.
    let (mut spared, spared_id) = doomed.pop().unwrap();
    let reply = server.api(
        "disconnect",
        &json!({"user": "doomed", "whitelist": [spared_id],
                "disconnect": {"code": 4001, "reason": "banned"}}),
    );
    assert_eq!(reply, json!({"result": {}}));
    for (mut client, _) in doomed {
        assert_eq!(client.expect_close(), Closed::Code(4001));
    }
    let reply = spared.command("presence_stats", json!({"channel": "x"}));
    assert!(
        reply.get("error").is_some(),
        "spared and still answering: {reply}"
    );
    let reply = bystander.command("publish", json!({"channel": "x", "data": {}}));
    assert!(
        reply.get("error").is_some(),
        "the bystander still answers: {reply}"
    );

    // A session filter matches nothing (ringcast's connections have no session id).
    let reply = server.api("disconnect", &json!({"user": "doomed", "session": "s1"}));
    assert_eq!(reply, json!({"result": {}}));
    let reply = spared.command("presence_stats", json!({"channel": "x"}));
    assert!(reply.get("error").is_some(), "{reply}");

    // Bad input: a close code outside 3000-4999 is 107; the rest keeps working.
    let reply = server.api(
        "disconnect",
        &json!({"user": "doomed", "disconnect": {"code": 1000, "reason": "x"}}),
    );
    assert_eq!(code(&reply), 107);
    server.api("disconnect", &json!({"user": "doomed"}));
    assert_eq!(spared.expect_close(), Closed::Code(3503));
}

#[test]
fn subscribe_and_unsubscribe_from_the_api_with_their_pushes() {
    let server = Server::start(&[NAMESPACES]);
    let mut clients = user_on_every_shard(&server, "alice");
    let reply = server.api(
        "subscribe",
        &json!({"user": "alice", "channel": "room:1", "data": {"welcome": true},
                "info": {"role": "guest"}}),
    );
    assert_eq!(reply, json!({"result": {}}));
    for (client, _) in &mut clients {
        let push = push_with(client, "subscribe");
        assert_eq!(push["channel"], "room:1");
        assert_eq!(
            push["subscribe"]["data"],
            json!({"welcome": true}),
            "{push}"
        );
    }
    // They are subscribers: publications arrive, presence lists them with the channel info.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = server.api("presence_stats", &json!({"channel": "room:1"}));
        if stats["result"]["num_clients"] == clients.len() as u64 {
            break;
        }
        assert!(Instant::now() < deadline, "{stats}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let presence = server.api("presence", &json!({"channel": "room:1"}));
    for (_, id) in &clients {
        assert_eq!(
            presence["result"]["presence"][id]["chan_info"],
            json!({"role": "guest"}),
            "{presence}"
        );
    }
    server.api("publish", &json!({"channel": "room:1", "data": {"n": 1}}));
    for (client, _) in &mut clients {
        let (channel, data, _) = client.publication();
        assert_eq!((channel.as_str(), &data), ("room:1", &json!({"n": 1})));
    }

    // With recovery from a position: the push carries what was missed.
    let top = server.api("publish", &json!({"channel": "news:1", "data": {"n": 1}}));
    let epoch = top["result"]["epoch"].as_str().unwrap().to_owned();
    server.api("publish", &json!({"channel": "news:1", "data": {"n": 2}}));
    server.api(
        "subscribe",
        &json!({"user": "alice", "channel": "news:1",
                "recover_since": {"offset": 1, "epoch": epoch}}),
    );
    for (client, _) in &mut clients {
        // Centrifugo's push (recoverable, epoch, offset, positioned, data): the client's own
        // position when recovered; the missed publications follow as publication pushes.
        let push = push_with(client, "subscribe");
        let result = &push["subscribe"];
        assert_eq!(result["recoverable"], true, "{push}");
        assert_eq!(
            (&result["epoch"], &result["offset"]),
            (&json!(epoch), &json!(1)),
            "{push}"
        );
        assert!(result.get("publications").is_none(), "{push}");
        let (channel, data, offset) = client.publication();
        assert_eq!(
            (channel.as_str(), &data, offset),
            ("news:1", &json!({"n": 2}), 2)
        );
    }

    // Unsubscribe: the push with 2000, and nothing more from the channel.
    let reply = server.api(
        "unsubscribe",
        &json!({"user": "alice", "channel": "room:1"}),
    );
    assert_eq!(reply, json!({"result": {}}));
    for (client, _) in &mut clients {
        let push = push_with(client, "unsubscribe");
        assert_eq!(push["channel"], "room:1");
        assert_eq!(push["unsubscribe"]["code"], 2000, "{push}");
    }
    server.api("publish", &json!({"channel": "room:1", "data": {"n": 2}}));
    server.api("publish", &json!({"channel": "news:1", "data": {"n": 3}}));
    for (client, _) in &mut clients {
        let (channel, data, _) = client.publication();
        assert_eq!(
            (channel.as_str(), &data),
            ("news:1", &json!({"n": 3})),
            "room:1 is left"
        );
    }

    // Bad input.
    let api = |method: &str, body: Value| code(&server.api(method, &body));
    assert_eq!(api("subscribe", json!({"user": "alice"})), 107);
    assert_eq!(
        api("subscribe", json!({"user": "alice", "channel": "nope:1"})),
        102
    );
    assert_eq!(
        api(
            "subscribe",
            json!({"user": "alice", "channel": "room:1", "b64info": "%%%"})
        ),
        107
    );
    assert_eq!(
        api(
            "subscribe",
            json!({"user": "alice", "channel": "room:1", "override": 1})
        ),
        107
    );
    assert_eq!(
        api("unsubscribe", json!({"user": "alice", "channel": "nope:1"})),
        102
    );
    assert_eq!(
        api(
            "subscribe",
            json!({"user": "alice", "channel": "room:1", "expire_at": 1})
        ),
        110,
        "expired before it began"
    );
}

#[test]
fn refresh_from_the_api_moves_the_expiry_or_ends_the_connection() {
    let server = Server::start(&[]);
    let (mut client, _) = Client::connect(&server, "bob");
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let reply = server.api("refresh", &json!({"user": "bob", "expire_at": at}));
    assert_eq!(reply, json!({"result": {}}));
    let push = push_with(&mut client, "refresh");
    assert_eq!(push["refresh"]["expires"], true, "{push}");
    let ttl = push["refresh"]["ttl"].as_u64().unwrap();
    assert!((590..=600).contains(&ttl), "{push}");
    server.api("refresh", &json!({"user": "bob", "expired": true}));
    assert_eq!(client.expect_close(), Closed::Code(3005));
}

#[test]
fn channels_lists_active_channels_by_pattern_in_pages() {
    let server = Server::start(&[
        r#"channel.namespaces=[{"name":"chat","allow_subscribe_for_client":true}]"#,
    ]);
    let mut clients = common::clients_on_every_shard(&server, "c", 2);
    for (i, client) in clients.iter_mut().enumerate() {
        client.subscribe("chat:shared");
        for k in 0..3 {
            client.subscribe(&format!("chat:{i}-{k}"));
        }
        client.subscribe("other");
    }
    let n = clients.len();
    let listed = |body: Value| -> (BTreeMap<String, u64>, Option<String>) {
        let reply = server.api("channels", &body);
        let result = &reply["result"];
        let channels = result["channels"]
            .as_object()
            .unwrap_or_else(|| panic!("{reply}"))
            .iter()
            .map(|(name, info)| (name.clone(), info["num_clients"].as_u64().unwrap()))
            .collect();
        (channels, result["next_cursor"].as_str().map(str::to_owned))
    };
    let (all, cursor) = listed(json!({}));
    assert_eq!(all.len(), 3 * n + 2, "{all:?}");
    assert_eq!(cursor, None);
    assert_eq!(all["chat:shared"], n as u64, "counted over both shards");
    assert_eq!(all["other"], n as u64);
    let (chat, _) = listed(json!({"pattern": "chat:*"}));
    assert_eq!(chat.len(), 3 * n + 1);
    assert!(!chat.contains_key("other"));
    let (one, _) = listed(json!({"pattern": "chat:?-1"}));
    assert_eq!(one.len(), n.min(10), "{one:?}");

    // Pages of 4 walk every channel once, in order.
    let mut walked = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let mut body = json!({"limit": 4});
        if let Some(c) = &cursor {
            body["cursor"] = json!(c);
        }
        let (page, next) = listed(body);
        assert!(page.len() <= 4);
        walked.extend(page);
        cursor = next;
        if cursor.is_none() {
            break;
        }
    }
    assert!(cursor.is_none(), "paging ends");
    let names: Vec<&String> = walked.iter().map(|(n, _)| n).collect();
    assert!(names.windows(2).all(|w| w[0] < w[1]), "{names:?}");
    assert_eq!(walked.into_iter().collect::<BTreeMap<_, _>>(), all);

    // A bad glob is 107; a client leaving takes its channels out.
    assert_eq!(
        code(&server.api("channels", &json!({"pattern": "[a"}))),
        107
    );
    drop(clients);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !listed(json!({})).0.is_empty() {
        assert!(Instant::now() < deadline, "channels never emptied");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn one_connection_per_user_closes_the_older_one() {
    let server = Server::start(&[
        "client.subscribe_to_user_personal_channel.enabled=true",
        "client.subscribe_to_user_personal_channel.single_connection=true",
    ]);
    let (mut older, _) = Client::connect(&server, "solo");
    let (mut newer, _) = Client::connect(&server, "solo");
    assert_eq!(older.expect_close(), Closed::Code(3504));
    let (mut other, _) = Client::connect(&server, "someone");
    let reply = newer.command("publish", json!({"channel": "x", "data": {}}));
    assert!(reply.get("error").is_some(), "still open: {reply}");
    let reply = other.command("publish", json!({"channel": "x", "data": {}}));
    assert!(reply.get("error").is_some(), "still open: {reply}");
}

/// (user, status) pairs.
type Events = [(String, String)];

/// The `status:users` events in history, as (user, status), oldest first.
fn status_events(server: &Server) -> Vec<(String, String)> {
    let history = server.api("history", &json!({"channel": "status:users", "limit": 100}));
    history["result"]["publications"]
        .as_array()
        .unwrap_or_else(|| panic!("{history}"))
        .iter()
        .map(|p| {
            let data = &p["data"];
            (
                data["user"].as_str().unwrap().to_owned(),
                data["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn online_and_offline_events_are_debounced_and_users_count_once() {
    let server = Server::start(&[
        r#"channel.namespaces=[{"name":"status","history_size":100,"history_ttl":"300s"}]"#,
        "user_status.channel=status:users",
        "user_status.debounce=400ms",
    ]);
    let wait_for = |what: &str, check: &dyn Fn(&Events) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let events = status_events(&server);
            if check(&events) {
                return events;
            }
            assert!(Instant::now() < deadline, "{what}: {events:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let event = |user: &str, status: &str| (user.to_owned(), status.to_owned());
    // Alice on every shard: online once, counted once.
    let alice = user_on_every_shard(&server, "alice");
    let (bob, _) = Client::connect(&server, "bob");
    wait_for("both online", &|e| e.len() == 2);
    let info = server.api("info", &json!({}));
    assert_eq!(info["result"]["nodes"][0]["num_users"], 2, "{info}");
    assert_eq!(server.metric("users"), 2);
    // Under Centrifugo's name too (its Grafana dashboard reads these).
    let (_, metrics) = server.http("GET", "/metrics", &[], b"");
    assert!(
        metrics.contains("\ncentrifugo_node_num_users 2\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("\ncentrifugo_node_num_clients "),
        "{metrics}"
    );

    // Bob reconnects within the debounce: no event at all.
    drop(bob);
    let (_bob, _) = Client::connect(&server, "bob");
    // Alice closes all her connections: offline after the debounce, once.
    drop(alice);
    // A sentinel counted by bob's shard comes and goes after him: once its offline is in
    // the channel, an offline of bob's (due earlier, on the same shard's queue, published
    // over the same ring) would be there before it.
    let shards = server.shard_metric("connections").len();
    let bobs_owner = ringcast::router::owner_of("bob", shards);
    let sentinel = (0..)
        .map(|i| format!("sentinel{i}"))
        .find(|name| ringcast::router::owner_of(name, shards) == bobs_owner)
        .unwrap();
    drop(Client::connect(&server, &sentinel));
    let events = wait_for("alice and the sentinel offline", &|e| {
        e.contains(&event("alice", "offline")) && e.contains(&event(&sentinel, "offline"))
    });
    let mut events: Vec<_> = events.into_iter().filter(|(u, _)| *u != sentinel).collect();
    events[..2].sort();
    assert_eq!(
        events,
        vec![
            event("alice", "online"),
            event("bob", "online"),
            event("alice", "offline")
        ],
        "bob's reconnect within the debounce made no event"
    );
    assert_eq!(server.metric("users"), 1);
}

#[test]
fn api_subscribe_overrides_and_expiry_and_refresh_info() {
    let server = Server::start(&[
        NAMESPACES,
        "client.expired_sub_close_delay=1s",
        "client.ping_interval=2s",
        "client.pong_timeout=1s",
    ]);
    let (mut client, connected) = Client::connect(&server, "carol");
    let id = connected["connect"]["client"].as_str().unwrap().to_owned();
    // `override` turns presence off for this subscription: it is not listed.
    server.api(
        "subscribe",
        &json!({"user": "carol", "channel": "room:quiet",
                "override": {"presence": {"value": false}}}),
    );
    push_with(&mut client, "subscribe");
    // A second subscription with presence, after a refresh gave the connection info.
    let reply = server.api(
        "refresh",
        &json!({"user": "carol", "info": {"name": "Carol"}}),
    );
    assert_eq!(reply, json!({"result": {}}));
    push_with(&mut client, "refresh");
    let expire_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 2;
    server.api(
        "subscribe",
        &json!({"user": "carol", "channel": "room:listed", "expire_at": expire_at}),
    );
    let push = push_with(&mut client, "subscribe");
    assert_eq!(push["channel"], "room:listed");
    let deadline = Instant::now() + Duration::from_secs(10);
    let presence = loop {
        let reply = server.api("presence", &json!({"channel": "room:listed"}));
        if reply["result"]["presence"].get(&id).is_some() {
            break reply;
        }
        assert!(Instant::now() < deadline, "{reply}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        presence["result"]["presence"][&id]["conn_info"],
        json!({"name": "Carol"}),
        "the refreshed info: {presence}"
    );
    let quiet = server.api("presence", &json!({"channel": "room:quiet"}));
    assert_eq!(quiet["result"], json!({"presence": {}}), "overridden off");
    // The API subscription expires (no token to refresh it): the 2501 unsubscribe push.
    let push = push_with(&mut client, "unsubscribe");
    assert_eq!(push["channel"], "room:listed");
    assert_eq!(push["unsubscribe"]["code"], 2501, "{push}");
}

#[test]
fn user_actions_are_applied_when_the_api_answers() {
    // Every user on every shard, the channel's owner maybe on another: the API's answer must
    // come after each connection applied the action, so a publication the backend sends
    // right after it is delivered (subscribe) or not (unsubscribe), with no waiting between.
    let server = Server::start(&[NAMESPACES]);
    let mut clients = user_on_every_shard(&server, "dave");
    for round in 0..20 {
        let channel = format!("room:r{round}");
        let reply = server.api("subscribe", &json!({"user": "dave", "channel": channel}));
        assert_eq!(reply, json!({"result": {}}));
        server.api(
            "publish",
            &json!({"channel": channel, "data": {"round": round}}),
        );
        for (client, _) in &mut clients {
            push_with(client, "subscribe");
            let (got, data, _) = client.publication();
            assert_eq!(
                (got.as_str(), &data),
                (channel.as_str(), &json!({"round": round}))
            );
        }
        let reply = server.api("unsubscribe", &json!({"user": "dave", "channel": channel}));
        assert_eq!(reply, json!({"result": {}}));
        server.api(
            "publish",
            &json!({"channel": channel, "data": {"late": round}}),
        );
        // A marker through another channel they are all in comes next, not the late one.
        server.api(
            "subscribe",
            &json!({"user": "dave", "channel": format!("room:m{round}")}),
        );
        server.api(
            "publish",
            &json!({"channel": format!("room:m{round}"), "data": {"m": round}}),
        );
        for (client, _) in &mut clients {
            push_with(client, "unsubscribe");
            let (got, data, _) = client.publication();
            assert_eq!(
                (got.as_str(), &data),
                (format!("room:m{round}").as_str(), &json!({"m": round})),
                "nothing of the channel after the unsubscribe"
            );
        }
    }
}

/// One POST of `body` to `/api/<method>` as raw HTTP/1.1 bytes (`close`: the last of a
/// pipeline).
fn raw_post(method: &str, body: &Value, close: bool) -> Vec<u8> {
    let body = body.to_string();
    format!(
        "POST /api/{method} HTTP/1.1\r\nHost: x\r\nX-API-Key: {}\r\nContent-Length: {}\r\n{}\r\n{body}",
        common::API_KEY,
        body.len(),
        if close { "Connection: close\r\n" } else { "" },
    )
    .into_bytes()
}

#[test]
fn a_pipelined_publish_after_a_subscribe_reaches_the_new_subscriber() {
    // An API client that pipelines (sends the publish without waiting for the subscribe's
    // answer) gets what one request at a time gets: the subscribe is applied first.
    let server = Server::start(&[NAMESPACES]);
    let mut clients = user_on_every_shard(&server, "erin");
    for round in 0..20 {
        let channel = format!("room:p{round}");
        let mut requests = raw_post(
            "subscribe",
            &json!({"user": "erin", "channel": channel}),
            false,
        );
        requests.extend(raw_post(
            "publish",
            &json!({"channel": channel, "data": {"round": round}}),
            true,
        ));
        let responses = String::from_utf8(server.raw(&requests)).unwrap();
        assert_eq!(responses.matches("HTTP/1.1 200").count(), 2, "{responses}");
        for (client, _) in &mut clients {
            push_with(client, "subscribe");
            let (got, data, _) = client.publication();
            assert_eq!(
                (got.as_str(), &data),
                (channel.as_str(), &json!({"round": round}))
            );
        }
    }
}
