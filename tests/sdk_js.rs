//! The official JavaScript SDK (`centrifuge` v5 from npm, run under node) against a real
//! server: connect with a token from `ringcast gentoken`, subscribe, receive a publication
//! sent through `/api/publish`, publish from the client, and get 103 where config forbids it.
//! Then recovery: the SDK subscribed with recovery loses its connection (a network cut, then
//! a server crash and restart) while the backend publishes, reconnects by itself, and must
//! receive exactly the missed publications with `recovered: true`. Then issue 13: presence,
//! presence stats and join/leave between two SDK processes (one killed), the API's
//! disconnect with a terminal code, and the API's subscribe/unsubscribe seen as server-side
//! subscriptions (`tests/sdk/js_presence.mjs`).
//! The SDK is installed from `tests/sdk/package-lock.json` with `npm ci` on first run.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;
use std::time::Duration;

use common::sdk::{self, gentoken, publication, step, subtoken_cmd, Lines};
use common::tls::TestCa;
use common::{DataDir, Proxy, Server, API_KEY};
use serde_json::json;

fn sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk")
}

/// Installs the SDK from the lock file once per test run; panics with what is missing.
fn install_sdk() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let dir = sdk_dir();
        if dir.join("node_modules/centrifuge/package.json").exists() {
            return;
        }
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .unwrap_or_else(|e| {
                panic!(
                    "this test needs node and npm (to install the centrifuge SDK from {}): {e}",
                    dir.join("package-lock.json").display()
                )
            });
        assert!(
            status.success(),
            "`npm ci` in {} failed: the centrifuge npm package could not be installed",
            dir.display()
        );
    });
}

/// What runs the scripts, for a panic if it cannot start.
const NODE_RUNS: &str = "node runs";

/// `node tests/sdk/<script>`, with the SDK installed.
fn node(script: &str) -> Command {
    install_sdk();
    let mut command = Command::new("node");
    command.arg(sdk_dir().join(script));
    command
}

/// Runs the SDK scenario; returns the JSON step lines it printed.
fn run_sdk(
    server: &Server,
    channel: &str,
    expect_denied: bool,
    history: bool,
) -> Vec<serde_json::Value> {
    let mut command = node("js_client.mjs");
    command
        .env("RINGCAST_WS_URL", server.ws_url())
        .env("RINGCAST_TOKEN", gentoken("js-user"))
        .env("RINGCAST_API_URL", format!("http://{}/api", server.address))
        .env("RINGCAST_API_KEY", API_KEY)
        .env("RINGCAST_CHANNEL", channel)
        .env(
            "RINGCAST_EXPECT_PUBLISH_DENIED",
            if expect_denied { "1" } else { "0" },
        )
        // Only a channel with history has offsets.
        .env("RINGCAST_REQUIRE_OFFSET", if history { "1" } else { "0" });
    sdk::run_lines(&mut command, NODE_RUNS, "SDK scenario")
}

#[test]
fn js_sdk_connects_subscribes_receives_and_publishes() {
    // History on: the scenario checks the offsets of what it receives and publishes.
    let server = Server::start(&[
        "channel.without_namespace.allow_publish_for_client=true",
        "channel.without_namespace.history_size=10",
        "channel.without_namespace.history_ttl=300s",
    ]);
    let steps = run_sdk(&server, "chat-room", false, true);
    assert_eq!(
        step(&steps, "connected")["client"].as_str().unwrap().len(),
        36
    );
    let api_offset = step(&steps, "api_publication")["offset"].as_u64().unwrap();
    let publish = step(&steps, "client_publish");
    assert_eq!(publish["ok"], true);
    assert_eq!(publish["offset"].as_u64().unwrap(), api_offset + 1);
    step(&steps, "done");
}

/// The same scenario over wss:// and the API over https://, the server's certificate from a
/// test CA that node trusts through `NODE_EXTRA_CA_CERTS` (as an operator's private CA).
#[test]
fn js_sdk_over_wss_with_a_test_ca() {
    let ca = TestCa::new("ringcast SDK test CA");
    let server = ca.server(&[
        "channel.without_namespace.allow_publish_for_client=true",
        "channel.without_namespace.history_size=10",
        "channel.without_namespace.history_ttl=300s",
    ]);
    let mut command = node("js_client.mjs");
    command
        .env(
            "RINGCAST_WS_URL",
            format!("wss://{}/connection/websocket", server.address),
        )
        .env("RINGCAST_TOKEN", gentoken("js-user"))
        .env(
            "RINGCAST_API_URL",
            format!("https://{}/api", server.address),
        )
        .env("RINGCAST_API_KEY", API_KEY)
        .env("RINGCAST_CHANNEL", "secure-room")
        .env("RINGCAST_EXPECT_PUBLISH_DENIED", "0")
        .env("RINGCAST_REQUIRE_OFFSET", "1")
        .env("NODE_EXTRA_CA_CERTS", ca.ca_file());
    let steps = sdk::run_lines(&mut command, NODE_RUNS, "SDK scenario over wss://");
    step(&steps, "connected");
    let api_offset = step(&steps, "api_publication")["offset"].as_u64().unwrap();
    let publish = step(&steps, "client_publish");
    assert_eq!(publish["ok"], true);
    assert_eq!(publish["offset"].as_u64().unwrap(), api_offset + 1);
    step(&steps, "done");
}

#[test]
fn js_sdk_sees_permission_error_when_client_publish_is_off() {
    let server = Server::start(&[]);
    let steps = run_sdk(&server, "news", true, false);
    assert_eq!(step(&steps, "client_publish")["denied"], 103);
    // No history, no stream: the SDK sees no offset, as from Centrifugo.
    assert_eq!(
        step(&steps, "api_publication")["offset"],
        serde_json::Value::Null
    );
    step(&steps, "done");
}

#[test]
fn js_sdk_recovers_missed_publications_after_a_cut_and_a_server_restart() {
    let flags = [
        "channel.without_namespace.history_size=100",
        "channel.without_namespace.history_ttl=300s",
        "channel.without_namespace.force_recovery=true",
    ];
    let mut script = node("js_recovery.mjs");
    let data = DataDir::new();
    let server = Server::start_in(&data, &flags);
    let proxy = Proxy::start(server.address);
    let channel = "recover-me";
    script
        .env("RINGCAST_WS_URL", proxy.ws_url())
        .env("RINGCAST_TOKEN", gentoken("js-user"))
        .env("RINGCAST_CHANNEL", channel)
        .env("RINGCAST_FINAL_N", "10");
    let (mut child, lines) = Lines::spawn(&mut script, NODE_RUNS);
    let mut seen = Vec::new();
    let publish = |server: &Server, n: u64| sdk::publish_n(server, channel, n);

    let first = lines.wait("subscribed", &mut seen);
    assert_eq!(first["recoverable"], true, "{first}");
    for n in 1..=3 {
        publish(&server, n);
    }
    while lines.wait("publication", &mut seen)["n"] != 3 {}

    // A network cut: the server stays up and publishes while the client is away.
    proxy.cut();
    lines.wait("connecting", &mut seen);
    for n in 4..=6 {
        publish(&server, n);
    }
    proxy.up(server.address);
    let second = lines.wait("subscribed", &mut seen);
    assert_eq!(
        (&second["wasRecovering"], &second["recovered"]),
        (&true.into(), &true.into()),
        "{second}"
    );
    while lines.wait("publication", &mut seen)["n"] != 6 {}

    // A crash: kill -9, restart over the same data directory, publish before the client
    // is let back in.
    proxy.cut();
    lines.wait("connecting", &mut seen);
    server.kill();
    let server = Server::start_in(&data, &flags);
    for n in 7..=9 {
        publish(&server, n);
    }
    proxy.up(server.address);
    let third = lines.wait("subscribed", &mut seen);
    assert_eq!(
        (&third["wasRecovering"], &third["recovered"]),
        (&true.into(), &true.into()),
        "{third}"
    );
    assert_eq!(
        third["epoch"], first["epoch"],
        "the epoch survives the restart"
    );
    while lines.wait("publication", &mut seen)["n"] != 9 {}
    publish(&server, 10);
    lines.wait("done", &mut seen);
    assert!(child.0.wait().unwrap().success());

    let expected: Vec<(u64, u64)> = (1..=10).map(|n| (n, n)).collect();
    assert_eq!(
        sdk::received(&seen),
        expected,
        "every publication exactly once, in order"
    );
}

/// `count` SDK clients (`js_recovery.mjs`, users js-user-0...) on `url` subscribed to
/// `channel` with recovery, each until it received n = 10: the process, its lines, and the
/// lines seen so far (past its first `subscribed`).
fn recovering_clients(
    count: usize,
    url: &str,
    channel: &str,
) -> Vec<(sdk::KillOnDrop, Lines, Vec<serde_json::Value>)> {
    (0..count)
        .map(|i| {
            let mut script = node("js_recovery.mjs");
            script
                .env("RINGCAST_WS_URL", url)
                .env("RINGCAST_TOKEN", gentoken(&format!("js-user-{i}")))
                .env("RINGCAST_CHANNEL", channel)
                .env("RINGCAST_FINAL_N", "10");
            let (child, lines) = Lines::spawn(&mut script, NODE_RUNS);
            let mut seen = Vec::new();
            lines.wait("subscribed", &mut seen);
            (child, lines, seen)
        })
        .collect()
}

/// A rolling restart behind a real HAProxy (TCP mode, `send-proxy-v2`, health checks on the
/// internal port's `/health`): two SDK clients subscribed with recovery through HAProxy; the
/// node gets SIGTERM while the backend publishes through its internal API (answered through
/// the drain). The clients see 3001 and reconnect through HAProxy while the node is away
/// (HAProxy takes it out on the failing health check); the node exits 0, starts again over its
/// history on the same ports, HAProxy lets the clients back in, and they recover: every
/// acknowledged publication reaches each client exactly once, in order.
#[test]
fn js_sdk_clients_ride_a_drain_and_restart_behind_haproxy() {
    use common::haproxy::{free_port, Haproxy};
    let port = free_port();
    let internal = free_port().to_string();
    let internal_setting = format!("http_server.internal_port={internal}");
    let flags = [
        "channel.without_namespace.history_size=100",
        "channel.without_namespace.history_ttl=300s",
        "channel.without_namespace.force_recovery=true",
        "http_server.proxy_protocol=true",
        &internal_setting,
        "shutdown.accept_delay=1s",
        "shutdown.timeout=1s",
    ];
    let data = DataDir::new();
    let mut server = Server::start_with(&data, Some(port), &flags);
    let haproxy = Haproxy::start(
        &[format!(
            "a {} send-proxy-v2 check port {internal} inter 100 fall 1 rise 1",
            server.address
        )],
        &["option httpchk GET /health", "http-check expect status 200"],
    );
    let channel = "rolling";
    let mut clients = recovering_clients(2, &haproxy.ws_url(), channel);
    for n in 1..=3 {
        sdk::publish_n(&server, channel, n);
    }
    for (_, lines, seen) in &mut clients {
        while lines.wait("publication", seen)["n"] != 3 {}
    }

    // SIGTERM: the API still answers while the node drains.
    server.signal(nix::sys::signal::Signal::SIGTERM);
    for n in 4..=6 {
        sdk::publish_n(&server, channel, n);
    }
    for (_, lines, seen) in &mut clients {
        let connecting = lines.wait("connecting", seen);
        assert_eq!(connecting["code"], 3001, "the shutdown code: {connecting}");
    }
    assert_eq!(
        server.exit_code(Duration::from_secs(20)),
        Some(0),
        "the drained node exits 0"
    );

    // Back on the same ports over the same history; the clients come back through HAProxy.
    let server = Server::start_with(&data, Some(port), &flags);
    for n in 7..=9 {
        sdk::publish_n(&server, channel, n);
    }
    for (_, lines, seen) in &mut clients {
        let back = lines.wait("subscribed", seen);
        assert_eq!(
            (&back["wasRecovering"], &back["recovered"]),
            (&true.into(), &true.into()),
            "{back}"
        );
        while lines.wait("publication", seen)["n"] != 9 {}
    }
    sdk::publish_n(&server, channel, 10);
    let expected: Vec<(u64, u64)> = (1..=10).map(|n| (n, n)).collect();
    for (child, lines, seen) in &mut clients {
        lines.wait("done", seen);
        assert!(child.0.wait().unwrap().success());
        assert_eq!(
            sdk::received(seen),
            expected,
            "every acknowledged publication exactly once, in order"
        );
    }
}

/// Two nodes sharing channels through Redis behind a real HAProxy (TCP, `send-proxy-v2`,
/// health checks on each internal port): four SDK clients subscribed with recovery spread over
/// both nodes; node A gets SIGTERM while the backend publishes through node B's API. A's
/// clients see 3001, reconnect through HAProxy (which took A out on its failing health
/// check) to B, and recover there: every client receives every acknowledged publication
/// exactly once, in order, with the same offsets. (Issue 14's drain test, which needs issue
/// 15's shared channels.)
#[test]
fn js_sdk_clients_move_to_the_other_node_when_one_drains_behind_haproxy() {
    use common::haproxy::{free_port, Haproxy};
    use common::redis::RedisServer;
    let redis = RedisServer::start();
    let redis_address = format!("engine.redis.address={}", redis.address);
    let start = |data: &DataDir| {
        let port = free_port();
        let internal = free_port();
        let internal_setting = format!("http_server.internal_port={internal}");
        let flags = [
            "engine.type=redis",
            redis_address.as_str(),
            "channel.without_namespace.history_size=100",
            "channel.without_namespace.history_ttl=300s",
            "channel.without_namespace.force_recovery=true",
            "http_server.proxy_protocol=true",
            internal_setting.as_str(),
            "shutdown.accept_delay=1s",
            "shutdown.timeout=1s",
        ];
        (Server::start_with(data, Some(port), &flags), internal)
    };
    let (data_a, data_b) = (DataDir::new(), DataDir::new());
    let ((a, internal_a), (b, internal_b)) = (start(&data_a), start(&data_b));
    let haproxy = Haproxy::start(
        &[
            format!(
                "a {} send-proxy-v2 check port {internal_a} inter 100 fall 1 rise 1",
                a.address
            ),
            format!(
                "b {} send-proxy-v2 check port {internal_b} inter 100 fall 1 rise 1",
                b.address
            ),
        ],
        &["option httpchk GET /health", "http-check expect status 200"],
    );
    let channel = "moving";
    let mut clients = recovering_clients(4, &haproxy.ws_url(), channel);
    for n in 1..=3 {
        sdk::publish_n(&b, channel, n);
    }
    for (_, lines, seen) in &mut clients {
        while lines.wait("publication", seen)["n"] != 3 {}
    }
    let mut a = a;
    a.signal(nix::sys::signal::Signal::SIGTERM);
    for n in 4..=6 {
        sdk::publish_n(&b, channel, n);
    }
    assert_eq!(
        a.exit_code(Duration::from_secs(20)),
        Some(0),
        "A drained and exited 0"
    );
    for n in 7..=10 {
        sdk::publish_n(&b, channel, n);
    }
    let expected: Vec<(u64, u64)> = (1..=10).map(|n| (n, n)).collect();
    let mut moved = 0;
    for (child, lines, seen) in &mut clients {
        lines.wait("done", seen);
        assert!(child.0.wait().unwrap().success());
        assert_eq!(
            sdk::received(seen),
            expected,
            "every acknowledged publication exactly once, in order"
        );
        let drained: Vec<&serde_json::Value> = seen
            .iter()
            .filter(|l| l["step"] == "connecting" && l["code"] == 3001)
            .collect();
        if !drained.is_empty() {
            moved += 1;
            let back = seen
                .iter()
                .filter(|l| l["step"] == "subscribed")
                .nth(1)
                .unwrap_or_else(|| panic!("subscribed again: {seen:?}"));
            assert_eq!(back["recovered"], true, "{back}");
        }
    }
    assert!(moved >= 1, "some clients were on the drained node");
}

/// Runs `js_sub_token.mjs` with `scenario` for the connection of `user` on `channel` (plus
/// `env`); returns the JSON step lines it printed, after checking it succeeded.
fn run_sub_token(
    server: &Server,
    scenario: &str,
    user: &str,
    channel: &str,
    env: &[(&str, &str)],
) -> Vec<serde_json::Value> {
    let mut command = node("js_sub_token.mjs");
    command
        .env("RINGCAST_SCENARIO", scenario)
        .env("RINGCAST_WS_URL", server.ws_url())
        .env("RINGCAST_TOKEN", gentoken(user))
        .env("RINGCAST_USER", user)
        .env("RINGCAST_CHANNEL", channel)
        .env("RINGCAST_API_URL", format!("http://{}/api", server.address))
        .env("RINGCAST_API_KEY", API_KEY)
        .envs(env.iter().copied());
    sdk::run_lines(
        &mut command,
        NODE_RUNS,
        &format!("JS SDK scenario {scenario}"),
    )
}

#[test]
fn js_sdk_subscribes_to_a_private_personal_channel_with_get_token_and_refreshes() {
    // A namespace where clients may not subscribe by themselves (Centrifugo's default), and
    // a private channel (`$`): only a subscription token lets the SDK in.
    let server = Server::start(&[r#"channel.namespaces=[{"name":"personal"}]"#]);
    // 3 s tokens and a 5 s stay: the SDK refreshes (sub_refresh) when the subscribe reply's
    // `ttl` runs out (`expires: true`), so at least once during the stay.
    let cmd = subtoken_cmd(3);
    let channel = "$personal:js-user";
    let steps = run_sub_token(
        &server,
        "personal",
        "js-user",
        channel,
        &[
            ("RINGCAST_SUBTOKEN_CMD", cmd.as_str()),
            ("RINGCAST_STAY_S", "5"),
        ],
    );
    let first_call = step(&steps, "get_token");
    assert_eq!(
        (&first_call["call"], &first_call["channel"]),
        (&1.into(), &channel.into()),
        "{steps:?}"
    );
    let subscribed = step(&steps, "subscribed");
    assert_eq!(subscribed["channel"], channel, "{steps:?}");
    assert_eq!(
        subscribed["expires"], true,
        "the subscribe reply says the token expires: {steps:?}"
    );
    publication(&steps, 1);
    step(&steps, "stayed_subscribed");
    publication(&steps, 2);
    let done = step(&steps, "done");
    let calls = done["get_token_calls"].as_u64().unwrap();
    assert!(
        calls >= 2,
        "getToken called {calls} times: once to subscribe, then at least once to refresh \
         (does the subscribe reply say `expires: true` and `ttl`?): {steps:?}"
    );
    let refreshes = done["sub_refreshes"].as_array().unwrap();
    assert!(
        !refreshes.is_empty() && refreshes.iter().all(|r| r["expires"] == true),
        "every sub_refresh answered with `expires: true` and a ttl: {steps:?}"
    );
    assert_eq!(
        done["resubscribes"], 0,
        "the subscription stayed up through the refreshes: {steps:?}"
    );
}

#[test]
fn js_sdk_is_disconnected_with_3500_for_a_token_of_another_user() {
    let server = Server::start(&[r#"channel.namespaces=[{"name":"personal"}]"#]);
    let cmd = subtoken_cmd(60);
    let steps = run_sub_token(
        &server,
        "other_user",
        "js-user",
        "$personal:js-user",
        &[
            ("RINGCAST_SUBTOKEN_CMD", cmd.as_str()),
            ("RINGCAST_OTHER_USER", "someone-else"),
        ],
    );
    assert_eq!(
        step(&steps, "get_token")["user"],
        "someone-else",
        "{steps:?}"
    );
    let disconnected = step(&steps, "disconnected");
    assert_eq!(
        disconnected["code"], 3500,
        "the SDK reports the server's 3500 (invalid token): {steps:?}"
    );
    assert!(
        disconnected["sub_events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["event"] != "subscribed"),
        "never subscribed: {steps:?}"
    );
    assert_eq!(step(&steps, "done")["disconnect_code"], 3500, "{steps:?}");
}

#[test]
fn js_sdk_recovers_a_server_side_subscription_after_a_cut() {
    // History and forced recovery for `feed`; the token's `channels` claim subscribes the
    // connection to it on the server: the SDK only listens with client-level events.
    let mut script = node("js_server_subs.mjs");
    script.env("RINGCAST_TIMEOUT_MS", "25000");
    sdk::server_side_subscription_recovers_after_a_cut(
        script,
        NODE_RUNS,
        "js-user",
        "wasRecovering",
    );
}

/// `node js_presence.mjs` with the overall timeout it gets here.
fn presence_script() -> Command {
    let mut script = node("js_presence.mjs");
    script.env("RINGCAST_TIMEOUT_MS", "25000");
    script
}

#[test]
fn js_sdk_presence_and_join_leave_between_two_clients_and_a_killed_one() {
    // Two node processes subscribe to room:lobby with `joinLeave: true`; one is killed with
    // SIGKILL and the other must see its leave.
    sdk::presence_and_join_leave_between_two_processes(
        presence_script,
        NODE_RUNS,
        ["js-alice", "js-bob"],
    );
}

#[test]
fn js_sdk_reports_an_api_disconnect_with_a_terminal_code() {
    sdk::api_disconnect_with_a_terminal_code(presence_script(), NODE_RUNS, "js-banned");
}

#[test]
fn js_sdk_sees_api_subscribe_publications_and_unsubscribe() {
    // The SDK connects with no subscription; the API subscribes its user to room:srv (a
    // server-side subscription: the `subscribe` push), publishes there, then unsubscribes it
    // (the `unsubscribe` push, code 2000). The SDK reports them with its client-level events.
    let server = Server::start(&[sdk::PRESENCE_NAMESPACE]);
    let user = "js-srv";
    let channel = "room:srv";
    let mut script = presence_script();
    script
        .env("RINGCAST_SCENARIO", "server_subs")
        .env("RINGCAST_WS_URL", server.ws_url())
        .env("RINGCAST_TOKEN", gentoken(user))
        .env("RINGCAST_CHANNEL", channel);
    let (mut child, lines) = Lines::spawn(&mut script, NODE_RUNS);
    let mut seen = Vec::new();
    lines.wait("connected", &mut seen);

    let reply = server.api(
        "subscribe",
        &json!({"user": user, "channel": channel, "data": {"welcome": true}}),
    );
    assert_eq!(reply, json!({"result": {}}));
    let subscribed = lines.wait("server_subscribed", &mut seen);
    assert_eq!(subscribed["channel"], channel, "{subscribed}");
    assert_eq!(subscribed["data"], json!({"welcome": true}), "{subscribed}");

    let reply = server.api("publish", &json!({"channel": channel, "data": {"n": 1}}));
    assert!(reply.get("result").is_some(), "{reply}");
    let publication = lines.wait("server_publication", &mut seen);
    assert_eq!(
        (&publication["channel"], &publication["data"]),
        (&channel.into(), &json!({"n": 1})),
        "{publication}"
    );

    let reply = server.api("unsubscribe", &json!({"user": user, "channel": channel}));
    assert_eq!(reply, json!({"result": {}}));
    let unsubscribed = lines.wait("server_unsubscribed", &mut seen);
    assert_eq!(unsubscribed["channel"], channel, "{unsubscribed}");
    lines.wait("done", &mut seen);
    assert!(child.0.wait().unwrap().success(), "{seen:?}");
    let steps: Vec<&serde_json::Value> = seen.iter().map(|l| &l["step"]).collect();
    assert_eq!(
        steps,
        [
            "connected",
            "server_subscribed",
            "server_publication",
            "server_unsubscribed",
            "done"
        ],
        "in this order, nothing else: {seen:?}"
    );
}
