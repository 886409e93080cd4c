//! The official Python SDK (`centrifuge-python` from PyPI, asyncio over `websockets`) against
//! a real server: connect with a token from `ringcast gentoken`, subscribe, receive a
//! publication sent through `/api/publish` (scenario `basic`). Ready for subscription tokens
//! (issue 12): subscribe through the SDK's `get_token` callback, which runs
//! `ringcast gensubtoken`, stay subscribed while short-lived tokens are refreshed
//! (`sub_token`), and get 103 without a token (`sub_denied`).
//! The SDK is installed from `tests/sdk_py/requirements.txt` (pinned, with hashes) into the
//! venv `tests/sdk_py/.venv` on first run; `tests/sdk_py/py_client.py` runs the scenarios.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Once;

use common::{Server, API_KEY, SECRET};

fn sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk_py")
}

fn venv_python() -> PathBuf {
    sdk_dir().join(".venv/bin/python")
}

/// The `centrifuge-python` version `requirements.txt` pins.
fn pinned_version() -> String {
    let path = sdk_dir().join("requirements.txt");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .find_map(|l| l.strip_prefix("centrifuge-python=="))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("{} pins no centrifuge-python", path.display()))
        .to_owned()
}

/// The `centrifuge-python` version importable from the venv, if any.
fn installed_version() -> Option<String> {
    let output = Command::new(venv_python())
        .args([
            "-c",
            "import centrifuge, importlib.metadata as m; print(m.version('centrifuge-python'))",
        ])
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn tail(output: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Makes the venv and installs the SDK from the lock file, once per test run, unless the
/// pinned version is importable already; panics with what is missing.
fn install_sdk() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let dir = sdk_dir();
        let pinned = pinned_version();
        if installed_version().as_deref() == Some(pinned.as_str()) {
            return;
        }
        let venv = dir.join(".venv");
        let has_pip = Command::new(venv_python())
            .args(["-m", "pip", "--version"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !has_pip {
            // A venv made without ensurepip (Debian's python3 without python3-venv) has no
            // pip: start again.
            let _ = std::fs::remove_dir_all(&venv);
            let output = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .output()
                .unwrap_or_else(|e| {
                    panic!(
                        "this test needs python3 (>= 3.11) to install the centrifuge-python SDK \
                         from {} into {}: {e}",
                        dir.join("requirements.txt").display(),
                        venv.display()
                    )
                });
            if !output.status.success() {
                let _ = std::fs::remove_dir_all(&venv);
                panic!(
                    "`python3 -m venv {}` failed: this test needs python3's venv module with \
                     ensurepip (on Debian/Ubuntu: apt-get install python3-venv)\n{}",
                    venv.display(),
                    tail(&output)
                );
            }
        }
        let output = Command::new(venv_python())
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
                "--require-hashes",
                "-r",
            ])
            .arg(dir.join("requirements.txt"))
            .output()
            .expect("the venv's python runs");
        assert!(
            output.status.success(),
            "`{} -m pip install --require-hashes -r requirements.txt` in {} failed: the \
             centrifuge-python SDK could not be installed from PyPI\n{}",
            venv_python().display(),
            dir.display(),
            tail(&output)
        );
        let installed = installed_version();
        assert_eq!(
            installed.as_deref(),
            Some(pinned.as_str()),
            "centrifuge-python {pinned} is not importable from {} after pip install",
            venv.display()
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

/// `s` quoted for a shell (the script splits `RINGCAST_SUBTOKEN_CMD` like one).
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The command the SDK's `get_token` runs (with `--user U --channel C` appended): a
/// subscription token that lives `ttl` seconds.
fn subtoken_cmd(ttl: u64) -> String {
    format!(
        "{} gensubtoken --token-hmac-secret-key {} --ttl {ttl}",
        shell_quote(env!("CARGO_BIN_EXE_ringcast")),
        shell_quote(SECRET)
    )
}

/// Runs `py_client.py` with `scenario` on `channel` (plus `env`); returns the JSON step lines
/// it printed, after checking it succeeded.
fn run_scenario(
    server: &Server,
    scenario: &str,
    channel: &str,
    env: &[(&str, &str)],
) -> Vec<serde_json::Value> {
    install_sdk();
    let output = Command::new(venv_python())
        .arg(sdk_dir().join("py_client.py"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .env("RINGCAST_SCENARIO", scenario)
        .env("RINGCAST_WS_URL", server.ws_url())
        .env("RINGCAST_TOKEN", gentoken("py-user"))
        .env("RINGCAST_API_URL", format!("http://{}/api", server.address))
        .env("RINGCAST_API_KEY", API_KEY)
        .env("RINGCAST_CHANNEL", channel)
        .env("RINGCAST_USER", "py-user")
        .envs(env.iter().copied())
        .output()
        .expect("the venv's python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "Python SDK scenario {scenario} failed\nstdout:\n{stdout}\nstderr:\n{}",
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

fn step<'a>(steps: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    steps
        .iter()
        .find(|s| s["step"] == name)
        .unwrap_or_else(|| panic!("no step {name} in {steps:?}"))
}

/// The `api_publication` step of the publication `{"n": n}`.
fn publication(steps: &[serde_json::Value], n: u64) -> &serde_json::Value {
    steps
        .iter()
        .find(|s| s["step"] == "api_publication" && s["n"] == n)
        .unwrap_or_else(|| panic!("publication n={n} not received: {steps:?}"))
}

#[test]
fn python_sdk_connects_subscribes_and_receives_an_api_publication() {
    let server = Server::start(&["channel.without_namespace.allow_subscribe_for_client=true"]);
    let steps = run_scenario(&server, "basic", "py-room", &[]);
    assert_eq!(
        step(&steps, "connected")["client"].as_str().unwrap().len(),
        36,
        "a client id is a UUID: {steps:?}"
    );
    assert_eq!(step(&steps, "subscribed")["channel"], "py-room");
    // No history: the SDK sees offset 0 (absent), as from Centrifugo.
    assert_eq!(publication(&steps, 1)["offset"], 0);
    step(&steps, "done");
    assert!(
        steps.iter().all(|s| s["step"] != "error"),
        "no error step: {steps:?}"
    );
}

#[test]
fn python_sdk_subscribes_with_get_token_and_refreshes_short_lived_tokens() {
    // Clients may not subscribe by themselves here: only a subscription token lets them in.
    let server = Server::start(&["channel.without_namespace.allow_subscribe_for_client=false"]);
    // 3 s tokens and a 5 s stay: the SDK refreshes when the subscribe reply's `ttl` runs out
    // (`expires: true`), so at least once during the stay.
    let cmd = subtoken_cmd(3);
    let steps = run_scenario(
        &server,
        "sub_token",
        "py-token-room",
        &[
            ("RINGCAST_SUBTOKEN_CMD", cmd.as_str()),
            ("RINGCAST_EXPECT_REFRESH_AFTER_S", "5"),
        ],
    );
    assert_eq!(step(&steps, "subscribed")["channel"], "py-token-room");
    let first_call = step(&steps, "get_token");
    assert_eq!(
        (&first_call["call"], &first_call["channel"]),
        (&1.into(), &"py-token-room".into()),
        "{steps:?}"
    );
    publication(&steps, 1);
    publication(&steps, 2);
    let done = step(&steps, "done");
    let calls = done["get_token_calls"].as_u64().unwrap();
    assert!(
        calls >= 2,
        "get_token called {calls} times: once to subscribe, then at least once to refresh \
         (does the subscribe reply say `expires: true` and `ttl`?): {steps:?}"
    );
    assert_eq!(
        done["resubscribes"], 0,
        "the subscription stayed up through the refreshes: {steps:?}"
    );
}

#[test]
fn python_sdk_sees_103_subscribing_without_a_token() {
    // Where a token is needed (the same configuration as the test above), none is 103.
    let server = Server::start(&["channel.without_namespace.allow_subscribe_for_client=false"]);
    let steps = run_scenario(&server, "sub_denied", "py-token-room", &[]);
    assert_eq!(step(&steps, "unsubscribed")["code"], 103, "{steps:?}");
    step(&steps, "done");

    // A private channel needs a token even where clients may subscribe by themselves.
    let server = Server::start(&["channel.without_namespace.allow_subscribe_for_client=true"]);
    let steps = run_scenario(&server, "sub_denied", "$py-private", &[]);
    assert_eq!(step(&steps, "unsubscribed")["code"], 103, "{steps:?}");
    step(&steps, "done");
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

/// A running script's JSON lines as they come.
struct Lines(std::sync::mpsc::Receiver<serde_json::Value>);

impl Lines {
    /// The next line with `step == name` (20 s at most), remembering every line in `seen`;
    /// an `error` line fails.
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

/// Runs `py_server_subs.py` over `ws_url` with `token`, watching `channel` until the
/// publication `{"n": final_n}`; its JSON lines as they come.
fn spawn_server_subs(
    ws_url: &str,
    token: &str,
    channel: &str,
    final_n: u64,
) -> (KillOnDrop, Lines) {
    install_sdk();
    let mut child = Command::new(venv_python())
        .arg(sdk_dir().join("py_server_subs.py"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .env("RINGCAST_WS_URL", ws_url)
        .env("RINGCAST_TOKEN", token)
        .env("RINGCAST_CHANNEL", channel)
        .env("RINGCAST_FINAL_N", final_n.to_string())
        .env("RINGCAST_TIMEOUT_S", "25")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the venv's python runs");
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
fn python_sdk_recovers_a_server_side_subscription_after_a_cut() {
    // History and forced recovery for `feed`; the token's `channels` claim subscribes the
    // connection to it on the server: the SDK only listens with its client event handler.
    let server = Server::start(&[
        "channel.without_namespace.history_size=100",
        "channel.without_namespace.history_ttl=300s",
        "channel.without_namespace.force_recovery=true",
    ]);
    let proxy = common::Proxy::start(server.address);
    let channel = "feed";
    let token = channels_token("py-user", &[channel]);
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
        (&first["recoverable"], &first["was_recovering"]),
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
        (&second["was_recovering"], &second["recovered"]),
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
