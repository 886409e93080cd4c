//! The official Python SDK (`centrifuge-python` from PyPI, asyncio over `websockets`) against
//! a real server: connect with a token from `ringcast gentoken`, subscribe, receive a
//! publication sent through `/api/publish` (scenario `basic`). Ready for subscription tokens
//! (issue 12): subscribe through the SDK's `get_token` callback, which runs
//! `ringcast gensubtoken`, stay subscribed while short-lived tokens are refreshed
//! (`sub_token`), and get 103 without a token (`sub_denied`). Issue 13: presence, presence
//! stats and join/leave between two SDK processes (one killed with SIGKILL) and the API's
//! disconnect with a terminal code (`tests/sdk_py/py_presence.py`).
//! The SDK is installed from `tests/sdk_py/requirements.txt` (pinned, with hashes) into the
//! venv `tests/sdk_py/.venv` on first run; `tests/sdk_py/py_client.py` runs the scenarios.

mod common;

use std::process::Command;
use std::sync::Once;

use common::sdk::{self, gentoken, publication, step, subtoken_cmd};
use common::tls::TestCa;
use common::venv::Venv;
use common::{Server, API_KEY};

/// centrifuge-python in `tests/sdk_py/.venv`, pinned in `tests/sdk_py/requirements.txt`.
fn venv() -> Venv {
    Venv::in_tests(
        "sdk_py",
        "centrifuge-python",
        "centrifuge",
        "the centrifuge-python SDK",
    )
}

/// Makes the venv and installs the SDK from the lock file, once per test run, unless the
/// pinned version is importable already; panics with what is missing.
fn install_sdk() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| venv().install());
}

/// What runs the scripts, for a panic if it cannot start.
const PYTHON_RUNS: &str = "the venv's python runs";

/// The venv's python running `tests/sdk_py/<script>`, with the SDK installed.
fn python(script: &str) -> Command {
    install_sdk();
    let venv = venv();
    let mut command = Command::new(venv.python());
    command
        .arg(venv.dir.join(script))
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

/// The basic scenario over wss:// and the API over https://, the server's certificate from a
/// test CA that Python's default context trusts through `SSL_CERT_FILE`.
#[test]
fn python_sdk_over_wss_with_a_test_ca() {
    let ca = TestCa::new("ringcast SDK test CA");
    let server = ca.server(&["channel.without_namespace.allow_subscribe_for_client=true"]);
    let ws = format!("wss://{}/connection/websocket", server.address);
    let api = format!("https://{}/api", server.address);
    let ca_file = ca.ca_file().display().to_string();
    let steps = run_scenario(
        &server,
        "basic",
        "py-secure",
        &[
            ("RINGCAST_WS_URL", &ws),
            ("RINGCAST_API_URL", &api),
            ("SSL_CERT_FILE", &ca_file),
        ],
    );
    assert_eq!(step(&steps, "subscribed")["channel"], "py-secure");
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

/// The venv's python running `py_presence.py` with the overall timeout it gets here.
fn presence_script() -> Command {
    let mut script = python("py_presence.py");
    script.env("RINGCAST_TIMEOUT_S", "25");
    script
}

#[test]
fn python_sdk_presence_and_join_leave_between_two_clients_and_a_killed_one() {
    // Two Python processes subscribe to room:lobby with `join_leave=True`; one is killed with
    // SIGKILL and the other must see its leave.
    sdk::presence_and_join_leave_between_two_processes(
        presence_script,
        PYTHON_RUNS,
        ["py-alice", "py-bob"],
    );
}

#[test]
fn python_sdk_reports_an_api_disconnect_with_a_terminal_code() {
    sdk::api_disconnect_with_a_terminal_code(presence_script(), PYTHON_RUNS, "py-banned");
}
