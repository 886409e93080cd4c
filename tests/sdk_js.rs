//! The official JavaScript SDK (`centrifuge` v5 from npm, run under node) against a real
//! server: connect with a token from `ringcast gentoken`, subscribe, receive a publication
//! sent through `/api/publish`, publish from the client, and get 103 where config forbids it.
//! Then recovery: the SDK subscribed with recovery loses its connection (a network cut, then
//! a server crash and restart) while the backend publishes, reconnects by itself, and must
//! receive exactly the missed publications with `recovered: true`.
//! The SDK is installed from `tests/sdk/package-lock.json` with `npm ci` on first run.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;

use common::{DataDir, Proxy, Server, API_KEY, SECRET};

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

fn gentoken(user: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_ringcast"))
        .args([
            "gentoken",
            "--user",
            user,
            "--ttl",
            "3600",
            "--token-hmac-secret-key",
            SECRET,
        ])
        .output()
        .expect("ringcast gentoken runs");
    assert!(output.status.success(), "gentoken failed: {output:?}");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// Runs the SDK scenario; returns the JSON step lines it printed.
fn run_sdk(
    server: &Server,
    channel: &str,
    expect_denied: bool,
    history: bool,
) -> Vec<serde_json::Value> {
    install_sdk();
    let output = Command::new("node")
        .arg(sdk_dir().join("js_client.mjs"))
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
        .env("RINGCAST_REQUIRE_OFFSET", if history { "1" } else { "0" })
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "SDK scenario failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("the scenario prints JSON lines"))
        .collect()
}

fn step<'a>(steps: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    steps
        .iter()
        .find(|s| s["step"] == name)
        .unwrap_or_else(|| panic!("no step {name} in {steps:?}"))
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

/// Reads the recovery script's JSON lines as they come.
struct Lines(std::sync::mpsc::Receiver<serde_json::Value>);

impl Lines {
    /// The next line with `step == name`, remembering every line in `seen`.
    fn wait(&self, name: &str, seen: &mut Vec<serde_json::Value>) -> serde_json::Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = self
                .0
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no {name} from the SDK; saw {seen:?}"));
            seen.push(line.clone());
            assert_ne!(line["step"], "error", "SDK scenario failed: {line}");
            if line["step"] == name {
                return line;
            }
        }
    }
}

#[test]
fn js_sdk_recovers_missed_publications_after_a_cut_and_a_server_restart() {
    install_sdk();
    let flags = [
        "channel.without_namespace.history_size=100",
        "channel.without_namespace.history_ttl=300s",
        "channel.without_namespace.force_recovery=true",
    ];
    let data = DataDir::new();
    let server = Server::start_in(&data, &flags);
    let proxy = Proxy::start(server.address);
    let channel = "recover-me";
    let mut child = Command::new("node")
        .arg(sdk_dir().join("js_recovery.mjs"))
        .env("RINGCAST_WS_URL", proxy.ws_url())
        .env("RINGCAST_TOKEN", gentoken("js-user"))
        .env("RINGCAST_CHANNEL", channel)
        .env("RINGCAST_FINAL_N", "10")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("node runs");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let value = serde_json::from_str(&line).expect("the script prints JSON lines");
            if tx.send(value).is_err() {
                return;
            }
        }
    });
    let lines = Lines(rx);
    let mut seen = Vec::new();
    let publish = |server: &Server, n: u64| {
        let reply = server.api(
            "publish",
            &serde_json::json!({"channel": channel, "data": {"n": n}}),
        );
        assert_eq!(reply["result"]["offset"], n, "{reply}");
    };

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
    assert!(child.wait().unwrap().success());

    let received: Vec<(u64, u64)> = seen
        .iter()
        .filter(|l| l["step"] == "publication")
        .map(|l| (l["n"].as_u64().unwrap(), l["offset"].as_u64().unwrap()))
        .collect();
    let expected: Vec<(u64, u64)> = (1..=10).map(|n| (n, n)).collect();
    assert_eq!(
        received, expected,
        "every publication exactly once, in order"
    );
}

/// `s` quoted for a shell (`js_sub_token.mjs` runs `RINGCAST_SUBTOKEN_CMD` with /bin/sh).
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The command the SDK's `getToken` runs (with `--user U --channel C` appended): a
/// subscription token that lives `ttl` seconds.
fn subtoken_cmd(ttl: u64) -> String {
    format!(
        "{} gensubtoken --token-hmac-secret-key {} --ttl {ttl}",
        shell_quote(env!("CARGO_BIN_EXE_ringcast")),
        shell_quote(SECRET)
    )
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
    install_sdk();
    let output = Command::new("node")
        .arg(sdk_dir().join("js_sub_token.mjs"))
        .env("RINGCAST_SCENARIO", scenario)
        .env("RINGCAST_WS_URL", server.ws_url())
        .env("RINGCAST_TOKEN", gentoken(user))
        .env("RINGCAST_USER", user)
        .env("RINGCAST_CHANNEL", channel)
        .env("RINGCAST_API_URL", format!("http://{}/api", server.address))
        .env("RINGCAST_API_KEY", API_KEY)
        .envs(env.iter().copied())
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "JS SDK scenario {scenario} failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("the scenario prints JSON lines, not {l:?}: {e}"))
        })
        .collect()
}

/// The `api_publication` step of the publication `{"n": n}`.
fn publication(steps: &[serde_json::Value], n: u64) -> &serde_json::Value {
    steps
        .iter()
        .find(|s| s["step"] == "api_publication" && s["n"] == n)
        .unwrap_or_else(|| panic!("publication n={n} not received: {steps:?}"))
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

/// A connection token for `user` whose `channels` claim subscribes the connection to
/// `channels` on the server (server-side subscriptions).
fn channels_token(user: &str, channels: &[&str]) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"sub": user, "exp": now + 3600, "channels": channels}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// A child process killed on drop: a failed assertion leaves no SDK process behind.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `js_server_subs.mjs` over `ws_url` with `token`, watching `channel` until the
/// publication `{"n": final_n}`; its JSON lines as they come.
fn spawn_server_subs(
    ws_url: &str,
    token: &str,
    channel: &str,
    final_n: u64,
) -> (KillOnDrop, Lines) {
    install_sdk();
    let mut child = Command::new("node")
        .arg(sdk_dir().join("js_server_subs.mjs"))
        .env("RINGCAST_WS_URL", ws_url)
        .env("RINGCAST_TOKEN", token)
        .env("RINGCAST_CHANNEL", channel)
        .env("RINGCAST_FINAL_N", final_n.to_string())
        .env("RINGCAST_TIMEOUT_MS", "25000")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("node runs");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("the script prints JSON lines, not {line:?}: {e}"));
            if tx.send(value).is_err() {
                return;
            }
        }
    });
    (KillOnDrop(child), Lines(rx))
}

#[test]
fn js_sdk_recovers_a_server_side_subscription_after_a_cut() {
    // History and forced recovery for `feed`; the token's `channels` claim subscribes the
    // connection to it on the server: the SDK only listens with client-level events.
    let server = Server::start(&[
        "channel.without_namespace.history_size=100",
        "channel.without_namespace.history_ttl=300s",
        "channel.without_namespace.force_recovery=true",
    ]);
    let proxy = Proxy::start(server.address);
    let channel = "feed";
    let token = channels_token("js-user", &[channel]);
    let (mut child, lines) = spawn_server_subs(&proxy.ws_url(), &token, channel, 4);
    let mut seen = Vec::new();
    let publish = |n: u64| {
        let reply = server.api(
            "publish",
            &serde_json::json!({"channel": channel, "data": {"n": n}}),
        );
        assert_eq!(reply["result"]["offset"], n, "{reply}");
    };

    let first = lines.wait("subscribed", &mut seen);
    assert_eq!(
        (&first["recoverable"], &first["wasRecovering"]),
        (&true.into(), &false.into()),
        "the connect reply's subs: {first}"
    );
    let epoch = first["epoch"].as_str().unwrap_or_default().to_owned();
    assert!(
        !epoch.is_empty(),
        "a recoverable stream has an epoch: {first}"
    );
    publish(1);
    while lines.wait("publication", &mut seen)["n"] != 1 {}

    // A network cut: the server stays up and publishes while the client is away.
    proxy.cut();
    lines.wait("connecting", &mut seen);
    publish(2);
    publish(3);
    proxy.up(server.address);
    let connected = lines.wait("connected", &mut seen);
    assert_eq!(
        connected["sent_subs"][channel],
        serde_json::json!({"recover": true, "offset": 1, "epoch": epoch}),
        "the SDK asks to recover from its position in the reconnect's connect: {connected}"
    );
    let second = lines.wait("subscribed", &mut seen);
    assert_eq!(
        (&second["wasRecovering"], &second["recovered"]),
        (&true.into(), &true.into()),
        "{second}"
    );
    assert_eq!(second["epoch"], epoch.as_str(), "{second}");
    assert_eq!(
        second["reply_offsets"],
        serde_json::json!([2, 3]),
        "{second}"
    );
    while lines.wait("publication", &mut seen)["n"] != 3 {}
    publish(4);
    let done = lines.wait("done", &mut seen);
    assert!(child.0.wait().unwrap().success(), "{seen:?}");

    let received: Vec<(u64, u64)> = seen
        .iter()
        .filter(|l| l["step"] == "publication")
        .map(|l| (l["n"].as_u64().unwrap(), l["offset"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        received,
        [(1, 1), (2, 2), (3, 3), (4, 4)],
        "every publication exactly once, in order: {seen:?}"
    );
    assert_eq!(done["publications"], serde_json::json!([1, 2, 3, 4]));
    assert_eq!(
        seen.iter().filter(|l| l["step"] == "subscribed").count(),
        2,
        "subscribed once per connection: {seen:?}"
    );
}
