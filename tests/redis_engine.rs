//! The Redis engine (issue 15) with a real redis-server and two ringcast nodes: a client on
//! node A receives what the API publishes through node B, with offsets contiguous and equal
//! on both nodes; a client that left node A recovers on node B what it missed; history reads
//! the same through either node; a Redis restart makes publishes fail with an error (no
//! hang), and once it is back with its data lost, the subscribers holding positions in the
//! old stream are closed with 3010 to recover, are told they cannot, and receive what
//! follows.

mod common;

use std::time::{Duration, Instant};

use common::redis::SharedRedis;
use common::{Client, Closed, Server};
use serde_json::{json, Value};

/// A node on the Redis at `redis`, history on for channels without a namespace.
fn node(redis: &SharedRedis) -> Server {
    node_with(
        redis,
        &[
            "channel.without_namespace.history_size=100",
            "channel.without_namespace.history_ttl=300s",
            "channel.without_namespace.force_recovery=true",
            "channel.without_namespace.allow_history_for_client=true",
        ],
    )
}

/// A node on the Redis at `redis` (key prefix `rt`) with `settings`.
fn node_with(redis: &SharedRedis, settings: &[&str]) -> Server {
    let address = redis.setting();
    let mut all = vec![
        "engine.type=redis",
        address.as_str(),
        "engine.redis.prefix=rt",
    ];
    all.extend_from_slice(settings);
    Server::start(&all)
}

fn publish(server: &Server, channel: &str, n: u64) -> Value {
    server.api("publish", &json!({"channel": channel, "data": {"n": n}}))
}

/// Each test below runs on one redis-server and on a three-master Redis Cluster:
/// `<test>::one_redis` and `<test>::cluster`.
macro_rules! on_each_redis {
    ($($test:ident),* $(,)?) => {
        $(
            mod $test {
                #[test]
                fn one_redis() {
                    super::$test(super::SharedRedis::one());
                }

                #[test]
                fn cluster() {
                    super::$test(super::SharedRedis::cluster());
                }
            }
        )*
    };
}

on_each_redis!(
    two_nodes_share_offsets_delivery_history_and_recovery,
    a_redis_restart_fails_publishes_then_delivery_resumes_with_a_new_epoch,
    user_actions_reach_the_other_node,
    presence_lists_both_nodes_and_a_killed_nodes_entries_expire,
    a_broadcast_publishes_every_channel_in_batches,
    info_lists_the_nodes_and_a_gone_one_drops_out,
    exclude_client_holds_across_nodes,
    channels_lists_every_nodes_channels,
    joins_and_leaves_reach_every_node,
);

/// The `n` and offset of the next publication `client` receives.
fn next(client: &mut Client) -> (u64, u64) {
    let (_, data, offset) = client.publication();
    (data["n"].as_u64().unwrap(), offset)
}

fn two_nodes_share_offsets_delivery_history_and_recovery(redis: SharedRedis) {
    let (a, b) = (node(&redis), node(&redis));
    let (mut on_a, _) = Client::connect(&a, "alice");
    let (mut on_b, _) = Client::connect(&b, "bob");
    let reply = on_a.command("subscribe", json!({"channel": "news"}));
    let epoch = reply["subscribe"]["epoch"].as_str().unwrap().to_owned();
    assert!(!epoch.is_empty(), "a position with an epoch: {reply}");
    on_b.subscribe("news");

    // Published through B: both nodes' clients get the same offsets, in order.
    for n in 1..=5 {
        let reply = publish(&b, "news", n);
        assert_eq!(reply["result"]["offset"], n, "{reply}");
        assert_eq!(reply["result"]["epoch"], epoch.as_str());
    }
    for client in [&mut on_a, &mut on_b] {
        let got: Vec<(u64, u64)> = (0..5).map(|_| next(client)).collect();
        assert_eq!(got, [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5)]);
    }
    // Published through A too: one stream.
    assert_eq!(publish(&a, "news", 6)["result"]["offset"], 6);
    assert_eq!(next(&mut on_b), (6, 6));
    assert_eq!(next(&mut on_a), (6, 6));

    // The client leaves A, 7..9 are published, it comes back on B and recovers them.
    drop(on_a);
    for n in 7..=9 {
        publish(&b, "news", n);
    }
    let (mut back, _) = Client::connect(&b, "alice");
    let reply = back.command(
        "subscribe",
        json!({"channel": "news", "recover": true, "offset": 6, "epoch": epoch}),
    );
    let result = &reply["subscribe"];
    assert_eq!(result["recovered"], true, "{reply}");
    let recovered: Vec<u64> = result["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(recovered, [7, 8, 9]);
    publish(&a, "news", 10);
    assert_eq!(
        next(&mut back),
        (10, 10),
        "live after the recovered, no gap"
    );

    // An idempotency key holds across nodes: the repeat through A gets the first result.
    let first = b.api(
        "publish",
        &json!({"channel": "news", "data": {"n": 11}, "idempotency_key": "k-11"}),
    );
    let again = a.api(
        "publish",
        &json!({"channel": "news", "data": {"n": 11}, "idempotency_key": "k-11"}),
    );
    assert_eq!(first["result"], again["result"], "{first} {again}");
    assert_eq!(first["result"]["offset"], 11);
    publish(&a, "news", 12);
    assert_eq!(next(&mut back), (11, 11));
    assert_eq!(next(&mut back), (12, 12), "the repeat published nothing");

    // History is the same through either node.
    let through_a = a.api("history", &json!({"channel": "news", "limit": -1}));
    let through_b = b.api("history", &json!({"channel": "news", "limit": -1}));
    assert_eq!(through_a, through_b);
    assert_eq!(through_a["result"]["offset"], 12, "{through_a}");
    assert_eq!(
        through_a["result"]["publications"]
            .as_array()
            .unwrap()
            .len(),
        12
    );
    let newest = a.api(
        "history",
        &json!({"channel": "news", "limit": 2, "reverse": true}),
    );
    let offsets: Vec<u64> = newest["result"]["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, [12, 11]);
}

fn a_redis_restart_fails_publishes_then_delivery_resumes_with_a_new_epoch(mut redis: SharedRedis) {
    let (a, b) = (node(&redis), node(&redis));
    let (mut on_a, _) = Client::connect(&a, "alice");
    let reply = on_a.command("subscribe", json!({"channel": "feed"}));
    let epoch = reply["subscribe"]["epoch"].as_str().unwrap().to_owned();
    publish(&b, "feed", 1);
    assert_eq!(next(&mut on_a), (1, 1));

    // The redis-server keeping the channel (in a cluster, the master of its slot).
    let serving = redis.serving("rt.m.{feed}");
    serving.down();
    // Publishing answers an error at once while Redis is away; the client stays connected.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let started = Instant::now();
        let (status, body) = b.http(
            "POST",
            "/api/publish",
            &[("X-API-Key", common::API_KEY)],
            json!({"channel": "feed", "data": {"n": 2}})
                .to_string()
                .as_bytes(),
        );
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "no hang: {body}"
        );
        if status == 200 && body.contains("\"error\"") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "publish never failed: {status} {body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Counted: the failed calls, and the connections down.
    assert!(b.metric("redis_errors_total") > 0);
    assert!(b.metric("redis_links_down") > 0);
    serving.up();
    // Back: publishes go through again and reach the client on the other node (its node
    // subscribed the channel again). Redis lost the stream: a new epoch, offset 1 again.
    let position = publish_until_accepted(&b, "feed", 3)["result"].clone();
    assert_eq!(position["offset"], 1);
    assert_ne!(
        position["epoch"],
        epoch.as_str(),
        "Redis lost the stream: a new epoch"
    );
    // The subscriber on A held a position in the lost stream: its node tells it to recover
    // (3010, reconnect advised) instead of delivering across the gap.
    assert_eq!(on_a.expect_close(), Closed::Code(3010));
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.metric("redis_links_down") != 0 {
        assert!(Instant::now() < deadline, "the connections came back");
        std::thread::sleep(Duration::from_millis(20));
    }
    // It comes back with its old position: not recovered, and live from the new stream.
    let (mut again, _) = Client::connect(&a, "alice");
    let reply = again.command(
        "subscribe",
        json!({"channel": "feed", "recover": true, "offset": 1, "epoch": epoch}),
    );
    assert_eq!(reply["subscribe"]["recovered"], false, "{reply}");
    assert_eq!(reply["subscribe"]["epoch"], position["epoch"], "{reply}");
    assert_eq!(publish(&b, "feed", 4)["result"]["offset"], 2);
    assert_eq!(next(&mut again), (4, 2));
}

/// The server API's user actions reach the user's connections on every node: a disconnect
/// through node A closes the user's connection on node B with the code given, and a
/// subscribe through B subscribes the user's connection on A.
fn user_actions_reach_the_other_node(redis: SharedRedis) {
    let (a, b) = (node(&redis), node(&redis));
    let (mut on_a, _) = Client::connect(&a, "erin");
    let (mut on_b, _) = Client::connect(&b, "dave");
    // A node serves once it listens on the control channel: a subscribe through B for erin
    // (on A) reaches A.
    b.api("subscribe", &json!({"user": "erin", "channel": "from-b"}));
    let push = on_a.next_value().expect("open");
    assert_eq!(push["push"]["channel"], "from-b", "{push}");
    assert!(push["push"]["subscribe"].is_object(), "{push}");
    a.api(
        "disconnect",
        &json!({"user": "dave", "disconnect": {"code": 4321, "reason": "bye"}}),
    );
    assert_eq!(on_b.expect_close(), Closed::Code(4321));
}

/// Presence is every node's: the API through either node lists the subscribers of both, and
/// a killed node's entries are gone once their ttl passed (it no longer renews them).
fn presence_lists_both_nodes_and_a_killed_nodes_entries_expire(redis: SharedRedis) {
    let node = || {
        node_with(
            &redis,
            &[
                "engine.redis.presence_ttl=2s",
                "channel.without_namespace.presence=true",
            ],
        )
    };
    let (a, b) = (node(), node());
    let (mut on_a, reply_a) = Client::connect(&a, "alice");
    let (mut on_b, reply_b) = Client::connect(&b, "bob");
    on_a.subscribe("room");
    on_b.subscribe("room");
    let id = |reply: &Value| reply["connect"]["client"].as_str().unwrap().to_owned();
    let (id_a, id_b) = (id(&reply_a), id(&reply_b));
    let clients = |server: &Server| -> Vec<String> {
        let reply = server.api("presence", &json!({"channel": "room"}));
        let mut ids: Vec<String> = reply["result"]["presence"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        ids.sort();
        ids
    };
    let mut both = vec![id_a.clone(), id_b.clone()];
    both.sort();
    // The entries are written as the subscribers join: wait until both show.
    let deadline = Instant::now() + Duration::from_secs(10);
    while clients(&a) != both {
        assert!(Instant::now() < deadline, "both entries: {:?}", clients(&a));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(clients(&b), both, "the same through either node");
    let stats = a.api("presence_stats", &json!({"channel": "room"}));
    assert_eq!(
        (
            &stats["result"]["num_clients"],
            &stats["result"]["num_users"]
        ),
        (&json!(2), &json!(2)),
        "{stats}"
    );
    // B dies without a word: its entry outlives it by at most its ttl, A's stays (renewed).
    b.kill();
    let deadline = Instant::now() + Duration::from_secs(10);
    while clients(&a) != [id_a.clone()] {
        assert!(
            Instant::now() < deadline,
            "B's entry expires: {:?}",
            clients(&a)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(clients(&a), [id_a], "A's entry is renewed past its ttl");
    drop(on_a);
}

/// A broadcast's channels go to Redis in batches (more than one here): every channel gets
/// its own next offset, the answer lists them in the request's order, and a subscriber on
/// the other node receives its channel's publication.
fn a_broadcast_publishes_every_channel_in_batches(redis: SharedRedis) {
    let (a, b) = (node(&redis), node(&redis));
    let (mut on_a, _) = Client::connect(&a, "alice");
    on_a.subscribe("personal-599");
    publish(&b, "personal-0", 0);
    let channels: Vec<String> = (0..600).map(|i| format!("personal-{i}")).collect();
    let reply = b.api(
        "broadcast",
        &json!({"channels": channels, "data": {"n": 1}}),
    );
    let responses = reply["result"]["responses"].as_array().unwrap();
    assert_eq!(responses.len(), 600, "{reply}");
    let offsets: Vec<u64> = responses
        .iter()
        .map(|r| r["result"]["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets[0], 2, "personal-0 had one publication before");
    assert!(offsets[1..].iter().all(|&o| o == 1), "{offsets:?}");
    assert_eq!(next(&mut on_a), (1, 1));
}

/// `info` lists every node heard from lately (each tells the others its counts every two
/// seconds), `centrifugo_node_num_nodes` counts them, and a node that is gone drops out.
fn info_lists_the_nodes_and_a_gone_one_drops_out(redis: SharedRedis) {
    let (a, b) = (node(&redis), node(&redis));
    let (_on_b, _) = Client::connect(&b, "bob");
    let nodes = |server: &Server| -> Vec<Value> {
        server.api("info", &json!({}))["result"]["nodes"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while nodes(&a).len() != 2 {
        assert!(Instant::now() < deadline, "B never showed: {:?}", nodes(&a));
        std::thread::sleep(Duration::from_millis(100));
    }
    let listed = nodes(&a);
    assert_ne!(listed[0]["uid"], listed[1]["uid"]);
    let clients: u64 = listed
        .iter()
        .map(|n| n["num_clients"].as_u64().unwrap())
        .sum();
    assert_eq!(clients, 1, "B's client, counted by B: {listed:?}");
    let (_, metrics) = a.http("GET", "/metrics", &[], b"");
    assert!(
        metrics.contains("\ncentrifugo_node_num_nodes 2\n"),
        "{metrics}"
    );
    b.kill();
    let deadline = Instant::now() + Duration::from_secs(15);
    while nodes(&a).len() != 1 {
        assert!(
            Instant::now() < deadline,
            "B never dropped out: {:?}",
            nodes(&a)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `exclude_client` holds across nodes: published through B, the named client on A is left
/// out of live delivery, the other is not.
fn exclude_client_holds_across_nodes(redis: SharedRedis) {
    let (a, b) = (node(&redis), node(&redis));
    let (mut first, reply) = Client::connect(&a, "alice");
    let (mut second, _) = Client::connect(&a, "bob");
    first.subscribe("talk");
    second.subscribe("talk");
    let excluded = reply["connect"]["client"].as_str().unwrap().to_owned();
    b.api(
        "publish",
        &json!({"channel": "talk", "data": {"n": 1}, "exclude_client": excluded}),
    );
    publish(&b, "talk", 2);
    assert_eq!(next(&mut second), (1, 1));
    assert_eq!(next(&mut second), (2, 2));
    assert_eq!(next(&mut first), (2, 2), "the excluded client never got 1");
}

/// `channels` across nodes: the node asked surveys the others over the control channel and
/// merges their answers with its own (counts of a channel on both nodes added up).
fn channels_lists_every_nodes_channels(redis: SharedRedis) {
    let (a, b) = (node(&redis), node(&redis));
    let (mut on_a, _) = Client::connect(&a, "alice");
    let (mut on_b, _) = Client::connect(&b, "bob");
    on_a.subscribe("only-a");
    on_b.subscribe("only-b");
    on_a.subscribe("shared");
    on_b.subscribe("shared");
    // Each node hears of the other within its first announcement (every 2 s).
    let until = |server: &Server, query: Value, expected: Value| {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let reply = server.api("channels", &query);
            if reply["result"]["channels"] == expected {
                return;
            }
            assert!(Instant::now() < deadline, "never {expected}: {reply}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    until(
        &a,
        json!({}),
        json!({"only-a": {"num_clients": 1}, "only-b": {"num_clients": 1}, "shared": {"num_clients": 2}}),
    );
    until(
        &b,
        json!({"pattern": "only-*"}),
        json!({"only-a": {"num_clients": 1}, "only-b": {"num_clients": 1}}),
    );
}

/// Joins and leaves reach the subscribers of every node: a listener on A hears B's
/// subscriber join and leave.
fn joins_and_leaves_reach_every_node(redis: SharedRedis) {
    let node = || {
        node_with(
            &redis,
            &[
                "channel.without_namespace.presence=true",
                "channel.without_namespace.join_leave=true",
                "channel.without_namespace.force_push_join_leave=true",
            ],
        )
    };
    let (a, b) = (node(), node());
    let (mut listener, _) = Client::connect(&a, "watcher");
    listener.subscribe("lobby");
    let (mut visitor, reply) = Client::connect(&b, "visitor");
    let visitor_id = reply["connect"]["client"].as_str().unwrap().to_owned();
    visitor.subscribe("lobby");
    // The next join or leave push the listener gets: (kind, client id).
    let mut next_event = || loop {
        let value = listener.next_value().expect("open");
        let push = &value["push"];
        for kind in ["join", "leave"] {
            if push[kind].is_object() {
                return (
                    kind,
                    push[kind]["info"]["client"].as_str().unwrap().to_owned(),
                );
            }
        }
    };
    // Its own join may come first (the listener joined the channel too).
    let mut event = next_event();
    if event.1 != visitor_id {
        event = next_event();
    }
    assert_eq!(event, ("join", visitor_id.clone()));
    visitor.command("unsubscribe", json!({"channel": "lobby"}));
    assert_eq!(next_event(), ("leave", visitor_id));
}

/// A node reaches Redis over TLS (`rediss://`, the test CA as `engine.redis.tls.server_ca_pem`)
/// as an ACL user with a password: publishes and delivery across two nodes work through it;
/// with a wrong password the node cannot publish and says so in the answer.
#[test]
fn nodes_reach_redis_over_tls_as_an_acl_user() {
    use common::tls::TestCa;
    let ca = TestCa::new("redis test CA");
    let (_, cert, key) = ca.issue();
    let tls_port = common::haproxy::free_port().to_string();
    let redis = common::redis::RedisServer::start_with(&[
        "--tls-port",
        &tls_port,
        "--tls-cert-file",
        cert.to_str().unwrap(),
        "--tls-key-file",
        key.to_str().unwrap(),
        "--tls-ca-cert-file",
        ca.ca_file().to_str().unwrap(),
        "--tls-auth-clients",
        "no",
        "--user",
        "app",
        "on",
        ">secret",
        "~*",
        "&*",
        "+@all",
    ]);
    assert!(redis.command(&["PING"]).is_some());
    let trust = format!(
        "engine.redis.tls.server_ca_pem={}",
        ca.ca_file().to_str().unwrap()
    );
    let node = |password: &str| {
        let address = format!("engine.redis.address=rediss://app:{password}@127.0.0.1:{tls_port}");
        Server::start(&[
            "engine.type=redis",
            &address,
            &trust,
            "engine.redis.prefix=rt",
            "channel.without_namespace.history_size=10",
            "channel.without_namespace.history_ttl=300s",
        ])
    };
    let (a, b) = (node("secret"), node("secret"));
    let (mut on_a, _) = Client::connect(&a, "alice");
    on_a.subscribe("secure");
    assert_eq!(publish(&b, "secure", 1)["result"]["offset"], 1);
    assert_eq!(next(&mut on_a), (1, 1));

    // The wrong password: its connections never come up (AUTH refused), so publishing fails.
    let refused = node("wrong");
    let reply = publish(&refused, "secure", 2);
    assert!(reply["error"].is_object(), "{reply}");
    assert!(refused.metric("redis_links_down") > 0);
    assert_eq!(a.metric("redis_links_down"), 0);
}

/// A Redis Cluster's failover is followed without restarting the nodes: the replica of a
/// channel's master takes over (CLUSTER FAILOVER: the old master answers MOVED and drops its
/// sharded subscriptions); the node publishing reads the slot map again and publishes there,
/// offsets continuing, and the node with the subscriber moves its subscription: the
/// subscriber gets the next publication, live or (if it came while the subscription moved)
/// by recovering after a 3010. Then the new master is killed: its replica (the old master)
/// is promoted once the cluster deems it failed, and the nodes follow again, having seen its
/// connections go down.
#[test]
fn a_cluster_failover_is_followed_without_a_restart() {
    let mut cluster = common::redis::RedisCluster::start(3, 1);
    let master = cluster.serving("rt.m.{news}").address.port();
    let redis = SharedRedis::Cluster(cluster);
    let (a, b) = (node(&redis), node(&redis));
    let (mut on_a, _) = Client::connect(&a, "alice");
    let reply = on_a.command("subscribe", json!({"channel": "news"}));
    let epoch = reply["subscribe"]["epoch"].as_str().unwrap().to_owned();
    assert_eq!(publish(&b, "news", 1)["result"]["offset"], 1);
    assert_eq!(next(&mut on_a), (1, 1));

    let SharedRedis::Cluster(cluster) = &redis else {
        unreachable!()
    };
    let replica = cluster.replica_of(master);
    assert_eq!(
        replica.command(&["CLUSTER", "FAILOVER"]).as_deref(),
        Some("+OK\r\n")
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !replica
        .command(&["ROLE"])
        .is_some_and(|role| role.contains("$6\r\nmaster\r\n"))
    {
        assert!(Instant::now() < deadline, "the replica never took over");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Through B: an error while B still sends to the old master, then the new one's answer.
    let published = publish_until_accepted(&b, "news", 2);
    assert_eq!(published["result"]["offset"], 2, "{published}");
    assert_eq!(
        published["result"]["epoch"],
        epoch.as_str(),
        "the replica kept the stream"
    );
    let mut on_a = receive_or_recover(on_a, &a, &epoch, 2);

    // The new master dies; the cluster promotes its replica (the first master).
    let SharedRedis::Cluster(mut cluster) = redis else {
        unreachable!()
    };
    let new_master = cluster.serving("rt.m.{news}").address.port();
    assert_ne!(new_master, master);
    cluster.kill(new_master);
    let published = publish_until_accepted(&b, "news", 3);
    assert_eq!(published["result"]["offset"], 3, "{published}");
    on_a = receive_or_recover(on_a, &a, &epoch, 3);
    // Every shard of both nodes saw the dead master's connections down, followed the map
    // and let that master go: no connection is down any more.
    let deadline = Instant::now() + Duration::from_secs(20);
    while a.metric("redis_links_down") + b.metric("redis_links_down") != 0 {
        assert!(
            Instant::now() < deadline,
            "the dead master was never let go"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(on_a);
}

/// Publishes `n` on `channel` through `server` until it is accepted (30 s at most: calls
/// fail with an error until the node follows the cluster); the accepted reply.
fn publish_until_accepted(server: &Server, channel: &str, n: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let reply = publish(server, channel, n);
        if reply["result"].is_object() {
            return reply;
        }
        assert!(
            Instant::now() < deadline,
            "publishing never came back: {reply}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The publication at `offset` (its `n` the offset) reaches `client`, live, or by recovering
/// on `server` after a 3010 (the node found the channel's stream moved past what it
/// delivered); the client that has it.
fn receive_or_recover(mut client: Client, server: &Server, epoch: &str, offset: u64) -> Client {
    match client.next_value() {
        Ok(value) => {
            let publication = &value["push"]["pub"];
            assert_eq!(publication["offset"], offset, "{value}");
            assert_eq!(publication["data"]["n"], offset, "{value}");
            client
        }
        Err(closed) => {
            assert_eq!(closed, Closed::Code(3010));
            let (mut back, _) = Client::connect(server, "alice");
            let reply = back.command(
                "subscribe",
                json!({"channel": "news", "recover": true, "offset": offset - 1, "epoch": epoch}),
            );
            assert_eq!(reply["subscribe"]["recovered"], true, "{reply}");
            let publications = &reply["subscribe"]["publications"];
            assert_eq!(publications[0]["offset"], offset, "{reply}");
            back
        }
    }
}

/// `engine.redis.db` selects the database: the node's keys are there and not in db 0.
#[test]
fn the_configured_database_holds_the_keys() {
    let redis = SharedRedis::one();
    let server = node_with(
        &redis,
        &[
            "engine.redis.db=3",
            "channel.without_namespace.history_size=10",
            "channel.without_namespace.history_ttl=300s",
        ],
    );
    assert_eq!(publish(&server, "in-db", 1)["result"]["offset"], 1);
    let SharedRedis::One(redis) = &redis else {
        unreachable!()
    };
    let exists = |db: &str| {
        redis
            .command_in(db, &["EXISTS", "rt.m.{in-db}"])
            .unwrap_or_default()
    };
    assert_eq!(exists("3"), ":1\r\n");
    assert_eq!(exists("0"), ":0\r\n");
}

/// A Redis Cluster over TLS (client connections, the cluster bus and replication): the nodes
/// read the slot map from a `rediss://` seed (which reports the masters' TLS ports to a TLS
/// client) and speak TLS to every master, checked against the test CA; channels on every
/// master are shared between two nodes.
#[test]
fn a_cluster_over_tls_serves_two_nodes() {
    use common::tls::TestCa;
    let ca = TestCa::new("redis cluster test CA");
    let (_, cert, key) = ca.issue();
    let cluster = common::redis::RedisCluster::start_tls(3, &cert, &key, &ca.ca_file());
    let seed = format!(
        "engine.redis.cluster_address=rediss://127.0.0.1:{}",
        cluster.tls_ports[0]
    );
    let trust = format!(
        "engine.redis.tls.server_ca_pem={}",
        ca.ca_file().to_str().unwrap()
    );
    let node = || {
        Server::start(&[
            "engine.type=redis",
            &seed,
            &trust,
            "engine.redis.prefix=rt",
            "channel.without_namespace.history_size=10",
            "channel.without_namespace.history_ttl=300s",
        ])
    };
    let (a, b) = (node(), node());
    // Six channels: with three masters, some land on each (asserted below).
    let channels: Vec<String> = (0..6).map(|i| format!("tls-{i}")).collect();
    let mut masters: Vec<u16> = Vec::new();
    let mut cluster = cluster;
    for channel in &channels {
        masters.push(
            cluster
                .serving(&format!("rt.m.{{{channel}}}"))
                .address
                .port(),
        );
    }
    masters.sort_unstable();
    masters.dedup();
    assert!(masters.len() > 1, "the channels span masters: {masters:?}");
    let (mut on_a, _) = Client::connect(&a, "alice");
    for channel in &channels {
        on_a.subscribe(channel);
    }
    for (i, channel) in channels.iter().enumerate() {
        assert_eq!(publish(&b, channel, i as u64)["result"]["offset"], 1);
        let (got, data, offset) = on_a.publication();
        assert_eq!(
            (got.as_str(), data["n"].as_u64(), offset),
            (channel.as_str(), Some(i as u64), 1)
        );
    }
}
