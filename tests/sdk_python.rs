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

use common::sdk::{self, gentoken, publication, step, subtoken_cmd};
use common::{Server, API_KEY};

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

/// What runs the scripts, for a panic if it cannot start.
const PYTHON_RUNS: &str = "the venv's python runs";

/// The venv's python running `tests/sdk_py/<script>`, with the SDK installed.
fn python(script: &str) -> Command {
    install_sdk();
    let mut command = Command::new(venv_python());
    command
        .arg(sdk_dir().join(script))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1");
    command
}

/// Runs `py_client.py` with `scenario` on `channel` (plus `env`); returns the JSON step lines
/// it printed, after checking it succeeded.
fn run_scenario(
    server: &Server,
    scenario: &str,
    channel: &str,
    env: &[(&str, &str)],
) -> Vec<serde_json::Value> {
    let mut command = python("py_client.py");
    command
        .env("RINGCAST_SCENARIO", scenario)
        .env("RINGCAST_WS_URL", server.ws_url())
        .env("RINGCAST_TOKEN", gentoken("py-user"))
        .env("RINGCAST_API_URL", format!("http://{}/api", server.address))
        .env("RINGCAST_API_KEY", API_KEY)
        .env("RINGCAST_CHANNEL", channel)
        .env("RINGCAST_USER", "py-user")
        .envs(env.iter().copied());
    sdk::run_lines(
        &mut command,
        PYTHON_RUNS,
        &format!("Python SDK scenario {scenario}"),
    )
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

#[test]
fn python_sdk_recovers_a_server_side_subscription_after_a_cut() {
    // History and forced recovery for `feed`; the token's `channels` claim subscribes the
    // connection to it on the server: the SDK only listens with its client event handler.
    let mut script = python("py_server_subs.py");
    script.env("RINGCAST_TIMEOUT_S", "25");
    sdk::server_side_subscription_recovers_after_a_cut(
        script,
        PYTHON_RUNS,
        "py-user",
        "was_recovering",
    );
}
