//! What the SDK compatibility tests (`tests/sdk_js.rs`, `tests/sdk_python.rs`) share: tokens
//! and subscription-token commands for the scripts, the JSON step lines a script prints (all
//! at once, or as they come from a running one), and the tests both SDKs pass with a script
//! of their own: the server-side subscription recovery, presence and join/leave between two
//! processes, and the API's disconnect with a terminal code.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Proxy, Server, SECRET};

/// A connection token for `user` from `ringcast gentoken` (an hour).
pub fn gentoken(user: &str) -> String {
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

/// `s` quoted for a shell (`js_sub_token.mjs` runs `RINGCAST_SUBTOKEN_CMD` with /bin/sh,
/// `py_client.py` splits it like one).
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The command the SDK's `getToken` / `get_token` runs (with `--user U --channel C`
/// appended): a subscription token that lives `ttl` seconds.
pub fn subtoken_cmd(ttl: u64) -> String {
    format!(
        "{} gensubtoken --token-hmac-secret-key {} --ttl {ttl}",
        shell_quote(env!("CARGO_BIN_EXE_ringcast")),
        shell_quote(SECRET)
    )
}

/// A connection token for `user` whose `channels` claim subscribes the connection to
/// `channels` on the server (server-side subscriptions).
pub fn channels_token(user: &str, channels: &[&str]) -> String {
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

/// The first step line named `name`.
pub fn step<'a>(steps: &'a [Value], name: &str) -> &'a Value {
    steps
        .iter()
        .find(|s| s["step"] == name)
        .unwrap_or_else(|| panic!("no step {name} in {steps:?}"))
}

/// The `api_publication` step of the publication `{"n": n}`.
pub fn publication(steps: &[Value], n: u64) -> &Value {
    steps
        .iter()
        .find(|s| s["step"] == "api_publication" && s["n"] == n)
        .unwrap_or_else(|| panic!("publication n={n} not received: {steps:?}"))
}

/// Runs a script to its end; returns the JSON step lines it printed, after checking it
/// succeeded. `runs` says what `command` runs (for a panic if it cannot start), `scenario`
/// names the run in the failure message.
pub fn run_lines(command: &mut Command, runs: &str, scenario: &str) -> Vec<Value> {
    let output = command.output().unwrap_or_else(|e| panic!("{runs}: {e:?}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{scenario} failed\nstdout:\n{stdout}\nstderr:\n{}",
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

/// A child process killed on drop: a failed assertion leaves no SDK process behind.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running script's JSON lines as they come.
pub struct Lines(Receiver<Value>);

impl Lines {
    /// Starts `command` with its stdout piped (`runs` says what it runs, for a panic if it
    /// cannot start); the process, and its JSON lines as they come.
    pub fn spawn(command: &mut Command, runs: &str) -> (KillOnDrop, Lines) {
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{runs}: {e:?}"));
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

    /// The next line with `step == name` (20 s at most), remembering every line in `seen`;
    /// an `error` line fails.
    pub fn wait(&self, name: &str, seen: &mut Vec<Value>) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
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

/// Publishes `{"n": n}` to `channel` through the server API; it must get offset `n`.
pub fn publish_n(server: &Server, channel: &str, n: u64) {
    let reply = server.api(
        "publish",
        &serde_json::json!({"channel": channel, "data": {"n": n}}),
    );
    assert_eq!(reply["result"]["offset"], n, "{reply}");
}

/// `(n, offset)` of every `publication` line in `seen`, in order.
pub fn received(seen: &[Value]) -> Vec<(u64, u64)> {
    seen.iter()
        .filter(|l| l["step"] == "publication")
        .map(|l| (l["n"].as_u64().unwrap(), l["offset"].as_u64().unwrap()))
        .collect()
}

/// The server-side subscription test: the SDK, connected through a `Proxy` with a token
/// whose `channels` claim subscribes it to `feed` (history and forced recovery on), only
/// listens; publication 1, a cut, publications 2 and 3 while it is away, the proxy back,
/// publication 4. It must ask to recover from offset 1 in its reconnect's connect, be told
/// `recovered` with 2 and 3 in the reply, and receive 1-4 exactly once, in order.
///
/// `script` runs the SDK's `*_server_subs` script (interpreter, script and its timeout; this
/// adds the URL, token, channel and final publication), `runs` says what it runs, `user` is
/// the connection's user and `was_recovering` the key of the SDK's was-recovering flag in
/// the script's `subscribed` lines.
pub fn server_side_subscription_recovers_after_a_cut(
    mut script: Command,
    runs: &str,
    user: &str,
    was_recovering: &str,
) {
    let server = Server::start(&[
        "channel.without_namespace.history_size=100",
        "channel.without_namespace.history_ttl=300s",
        "channel.without_namespace.force_recovery=true",
    ]);
    let proxy = Proxy::start(server.address);
    let channel = "feed";
    let token = channels_token(user, &[channel]);
    script
        .env("RINGCAST_WS_URL", proxy.ws_url())
        .env("RINGCAST_TOKEN", &token)
        .env("RINGCAST_CHANNEL", channel)
        .env("RINGCAST_FINAL_N", "4");
    let (mut child, lines) = Lines::spawn(&mut script, runs);
    let mut seen = Vec::new();
    let publish = |n: u64| publish_n(&server, channel, n);

    let first = lines.wait("subscribed", &mut seen);
    assert_eq!(
        (&first["recoverable"], &first[was_recovering]),
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
        (&second[was_recovering], &second["recovered"]),
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

    assert_eq!(
        received(&seen),
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

impl Lines {
    /// The first line with `step == name` for which `check` holds: one in `seen` already, or
    /// the next that comes (20 s at most for each line waited for); an `error` line fails.
    pub fn wait_until(
        &self,
        name: &str,
        seen: &mut Vec<Value>,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        if let Some(line) = seen.iter().find(|l| l["step"] == name && check(l)) {
            return line.clone();
        }
        loop {
            let line = self.wait(name, seen);
            if check(&line) {
                return line;
            }
        }
    }
}

/// A namespace with presence and join/leave for subscribers, which clients may subscribe to
/// by themselves (`*_presence` scripts).
pub const PRESENCE_NAMESPACE: &str = r#"channel.namespaces=[{"name":"room","presence":true,"join_leave":true,"allow_subscribe_for_client":true,"allow_presence_for_subscriber":true}]"#;

/// Asks the API's `method` (`presence`, `presence_stats`) for `channel` until `check` holds
/// for its result (10 s at most; entries reach the channel's owner over the rings).
pub fn api_until(
    server: &Server,
    method: &str,
    channel: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = server.api(method, &serde_json::json!({"channel": channel}));
        if check(&reply["result"]) {
            return reply["result"].clone();
        }
        assert!(Instant::now() < deadline, "{method} never matched: {reply}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The client ids of an API presence result, each checked to name its user.
fn presence_ids(result: &Value) -> Vec<(String, String)> {
    let mut ids: Vec<(String, String)> = result["presence"]
        .as_object()
        .unwrap_or_else(|| panic!("a presence result: {result}"))
        .iter()
        .map(|(id, info)| {
            assert_eq!(info["client"], id.as_str(), "{result}");
            (
                id.clone(),
                info["user"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    ids.sort();
    ids
}

/// Presence and join/leave between two SDK processes connected to different shards:
/// `script()` runs the SDK's `*_presence` script (this adds the scenario, URL, token and
/// channel). The first process
/// (user `users[0]`) subscribes to `room:lobby` with join/leave, then the second; each must
/// list both clients in presence and presence stats, the first must see both joins and the
/// second its own; the API lists both. Then the second process is killed (SIGKILL: its
/// socket just dies): the first must see its leave, the API and the first's presence only
/// the first; a publication `{"end": true}` then ends the first.
pub fn presence_and_join_leave_between_two_processes(
    script: impl Fn() -> Command,
    runs: &str,
    users: [&str; 2],
) {
    let channel = "room:lobby";
    let client_id = |line: Value| line["client"].as_str().unwrap_or_default().to_owned();
    // The two SDK clients must be on different shards (the kernel spreads connections over
    // the shards' listeners): a client id says which shard holds it, so an attempt that put
    // both on one shard starts again on a fresh server (each attempt does with odds 1/2).
    let mut attempts = 0;
    let (server, (mut first, first_lines), (mut second, second_lines), ids) = loop {
        attempts += 1;
        assert!(
            attempts <= 16,
            "16 attempts put both SDK clients on one shard"
        );
        let server = Server::start(&[PRESENCE_NAMESPACE]);
        let spawn = |user: &str| {
            let mut command = script();
            command
                .env("RINGCAST_SCENARIO", "presence")
                .env("RINGCAST_WS_URL", server.ws_url())
                .env("RINGCAST_TOKEN", gentoken(user))
                .env("RINGCAST_CHANNEL", channel)
                .env("RINGCAST_EXPECT_CLIENTS", "2");
            Lines::spawn(&mut command, runs)
        };
        // The first subscribes before the second starts: it sees the second's join for sure.
        let first = spawn(users[0]);
        let mut first_seen = Vec::new();
        let first_id = client_id(first.1.wait("connected", &mut first_seen));
        assert_eq!(
            first.1.wait("subscribed", &mut first_seen)["channel"],
            channel
        );
        let second = spawn(users[1]);
        let mut second_seen = Vec::new();
        let second_id = client_id(second.1.wait("connected", &mut second_seen));
        if super::shard_of(&first_id) != super::shard_of(&second_id) {
            break (
                server,
                first,
                second,
                (first_id, first_seen, second_id, second_seen),
            );
        }
    };
    let (first_id, mut first_seen, second_id, mut second_seen) = ids;
    assert_eq!(first_id.len(), 36, "a client id is a UUID: {first_seen:?}");
    assert_ne!(first_id, second_id);

    let both = serde_json::json!({
        first_id.as_str(): {"client": first_id, "user": users[0]},
        second_id.as_str(): {"client": second_id, "user": users[1]},
    });
    for (lines, seen) in [
        (&first_lines, &mut first_seen),
        (&second_lines, &mut second_seen),
    ] {
        let presence = lines.wait("presence", seen);
        assert_eq!(presence["clients"], both, "presence lists both clients");
        let stats = lines.wait("presence_stats", seen);
        assert_eq!(
            (&stats["num_clients"], &stats["num_users"]),
            (&2.into(), &2.into()),
            "{stats}"
        );
    }
    // Join events (the server announces a subscriber's join to itself too, as Centrifugo).
    let joined = |lines: &Lines, seen: &mut Vec<Value>, id: &str, user: &str| {
        let join = lines.wait_until("join", seen, |l| l["client"] == id);
        assert_eq!(
            (&join["channel"], &join["user"]),
            (&channel.into(), &user.into()),
            "{join}"
        );
    };
    joined(&first_lines, &mut first_seen, &first_id, users[0]);
    joined(&first_lines, &mut first_seen, &second_id, users[1]);
    joined(&second_lines, &mut second_seen, &second_id, users[1]);
    let mut expected = vec![
        (first_id.clone(), users[0].to_owned()),
        (second_id.clone(), users[1].to_owned()),
    ];
    expected.sort();
    let listed = api_until(&server, "presence", channel, |r| {
        r["presence"].as_object().is_some_and(|p| p.len() == 2)
    });
    assert_eq!(presence_ids(&listed), expected, "{listed}");

    // SIGKILL: no close frame, no unsubscribe, the socket just dies.
    second.0.kill().expect("the second SDK process is killed");
    let _ = second.0.wait();
    let leave = first_lines.wait_until("leave", &mut first_seen, |l| {
        l["client"] == second_id.as_str()
    });
    assert_eq!(
        (&leave["channel"], &leave["user"]),
        (&channel.into(), &users[1].into()),
        "{leave}"
    );
    let listed = api_until(&server, "presence", channel, |r| {
        r["presence"].as_object().is_some_and(|p| p.len() == 1)
    });
    assert_eq!(
        presence_ids(&listed),
        [(first_id.clone(), users[0].to_owned())],
        "{listed}"
    );
    let stats = server.api("presence_stats", &serde_json::json!({"channel": channel}));
    assert_eq!(
        stats["result"],
        serde_json::json!({"num_clients": 1, "num_users": 1})
    );
    let after = first_lines.wait("presence_after", &mut first_seen);
    assert_eq!(
        after["clients"],
        serde_json::json!({first_id.as_str(): {"client": first_id, "user": users[0]}}),
        "{after}"
    );
    // The first process stays subscribed until this publication tells it to end.
    server.api(
        "publish",
        &serde_json::json!({"channel": channel, "data": {"end": true}}),
    );
    first_lines.wait("done", &mut first_seen);
    assert!(first.0.wait().unwrap().success(), "{first_seen:?}");
    assert!(
        first_seen
            .iter()
            .filter(|l| l["step"] == "leave")
            .all(|l| l["client"] == second_id.as_str()),
        "only the killed client left: {first_seen:?}"
    );
}

/// `/api/disconnect` with a code of its own, 4501 (4500-4999: terminal, the SDK must not
/// reconnect): `script` runs the SDK's `*_presence` script (this adds the scenario, URL and
/// token); the SDK must report its disconnected event with the code and reason given and make
/// no new connection.
pub fn api_disconnect_with_a_terminal_code(mut script: Command, runs: &str, user: &str) {
    let server = Server::start(&[]);
    script
        .env("RINGCAST_SCENARIO", "disconnect")
        .env("RINGCAST_WS_URL", server.ws_url())
        .env("RINGCAST_TOKEN", gentoken(user));
    let (mut child, lines) = Lines::spawn(&mut script, runs);
    let mut seen = Vec::new();
    lines.wait("connected", &mut seen);
    let reply = server.api(
        "disconnect",
        &serde_json::json!({"user": user, "disconnect": {"code": 4501, "reason": "banned"}}),
    );
    assert_eq!(reply, serde_json::json!({"result": {}}));
    let disconnected = lines.wait("disconnected", &mut seen);
    assert_eq!(
        (&disconnected["code"], &disconnected["reason"]),
        (&4501.into(), &"banned".into()),
        "the SDK reports the code and reason given: {disconnected}"
    );
    assert_eq!(
        disconnected["connects_after_disconnect"], 0,
        "a terminal code: no reconnect: {disconnected}"
    );
    lines.wait("done", &mut seen);
    assert!(child.0.wait().unwrap().success(), "{seen:?}");
}
