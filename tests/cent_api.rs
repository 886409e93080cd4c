//! `cent` (PyPI), the Python client of Centrifugo's server HTTP API, against a real server
//! (issue 13): its synchronous `Client(api_url, api_key)` and request classes call publish
//! (twice with one idempotency key), broadcast, history, presence, presence_stats, channels,
//! info, subscribe, unsubscribe, refresh, batch and disconnect; cent must parse every reply
//! (its pydantic models refuse a reply of another shape; batch in a test of its own), and
//! every result must be what the server has to answer. A raw WebSocket client, connected and
//! subscribed first, is what presence lists and the user actions act on: it must get the
//! subscribe, unsubscribe (2000) and refresh pushes and be closed with 3503.
//! cent is installed from `tests/cent/requirements.txt` (pinned, with hashes) into the venv
//! `tests/cent/.venv` on first run; `tests/cent/cent_client.py` makes the calls.

mod common;

use std::process::Command;
use std::sync::Once;

use common::venv::Venv;
use common::{sdk, Client, Closed, Server, API_KEY};
use serde_json::{json, Value};

/// cent in `tests/cent/.venv`, pinned in `tests/cent/requirements.txt`.
fn venv() -> Venv {
    Venv::in_tests("cent", "cent", "cent", "the cent API client")
}

/// Makes the venv and installs cent from the lock file, once per test run, unless the pinned
/// version is importable already; panics with what is missing.
fn install_cent() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| venv().install());
}

/// What runs the script, for a panic if it cannot start.
const PYTHON_RUNS: &str = "the venv's python runs";

/// `room:` has presence and history; clients subscribe by themselves.
const NAMESPACE: &str = r#"channel.namespaces=[{"name":"room","presence":true,"history_size":10,"history_ttl":"300s","allow_subscribe_for_client":true,"allow_presence_for_subscriber":true}]"#;

/// The line of `call`, which must have a result (cent raised nothing).
fn result<'a>(lines: &'a [Value], call: &str) -> &'a Value {
    let line = sdk::step(lines, call);
    assert!(
        line.get("error").is_none(),
        "cent raised for {call}: {line}"
    );
    &line["result"]
}

/// The channel the raw client subscribes to (presence, history).
const CHANNEL: &str = "room:cent";
/// The second channel: broadcast publishes there too, subscribe and unsubscribe use it.
const OTHER: &str = "room:other";
/// The raw client's user, whom the user actions act on.
const USER: &str = "cent-user";

/// A raw client of `USER`, subscribed to `CHANNEL` once the channel's presence lists it; with
/// its client id.
fn raw_subscriber(server: &Server) -> (Client, String) {
    let (mut raw, connected) = Client::connect(server, USER);
    let raw_id = connected["connect"]["client"].as_str().unwrap().to_owned();
    raw.subscribe(CHANNEL);
    // The entry reaches the channel's owner over the rings after the subscribe reply.
    sdk::api_until(server, "presence_stats", CHANNEL, |r| r["num_clients"] == 1);
    (raw, raw_id)
}

/// Runs `cent_client.py` with `scenario`; its JSON lines, after checking it succeeded.
fn run_cent(server: &Server, scenario: &str) -> Vec<Value> {
    install_cent();
    let venv = venv();
    let mut command = Command::new(venv.python());
    command
        .arg(venv.dir.join("cent_client.py"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .env("RINGCAST_SCENARIO", scenario)
        .env("RINGCAST_API_URL", format!("http://{}/api", server.address))
        .env("RINGCAST_API_KEY", API_KEY)
        .env("RINGCAST_CHANNEL", CHANNEL)
        .env("RINGCAST_OTHER_CHANNEL", OTHER)
        .env("RINGCAST_USER", USER)
        .env("RINGCAST_PATTERN", "room:*")
        .env("RINGCAST_TIMEOUT_S", "25");
    let lines = sdk::run_lines(
        &mut command,
        PYTHON_RUNS,
        &format!("cent scenario {scenario}"),
    );
    sdk::step(&lines, "done");
    lines
}

#[test]
fn cent_calls_every_api_method_the_server_has() {
    let server = Server::start(&[NAMESPACE]);
    let (channel, other, user) = (CHANNEL, OTHER, USER);
    let (mut raw, raw_id) = raw_subscriber(&server);
    let lines = run_cent(&server, "calls");

    // publish with an idempotency key, twice: one publication, the same result.
    let first = result(&lines, "publish");
    assert_eq!(first["offset"], 1, "{first}");
    let epoch = first["epoch"].as_str().unwrap_or_default().to_owned();
    assert!(
        !epoch.is_empty(),
        "a channel with history has an epoch: {first}"
    );
    assert_eq!(
        result(&lines, "publish_repeat"),
        first,
        "the repeat answers the first result"
    );
    let broadcast = &result(&lines, "broadcast")["responses"];
    assert_eq!(
        broadcast[0]["result"]["offset"], 2,
        "the idempotent repeat published nothing: {broadcast}"
    );
    assert_eq!(broadcast[0]["result"]["epoch"], epoch.as_str());
    assert_eq!(broadcast[1]["result"]["offset"], 1, "{broadcast}");
    assert!(
        broadcast[0]["error"].is_null() && broadcast[1]["error"].is_null(),
        "{broadcast}"
    );

    let history = result(&lines, "history");
    assert_eq!(
        (&history["offset"], &history["epoch"]),
        (&2.into(), &epoch.as_str().into())
    );
    let publications: Vec<(&Value, &Value)> = history["publications"]
        .as_array()
        .unwrap_or_else(|| panic!("{history}"))
        .iter()
        .map(|p| (&p["offset"], &p["data"]))
        .collect();
    assert_eq!(
        publications,
        [(&json!(1), &json!({"n": 1})), (&json!(2), &json!({"n": 2}))],
        "{history}"
    );

    let presence = result(&lines, "presence");
    assert_eq!(
        presence["presence"],
        json!({raw_id.as_str(): {"client": raw_id, "user": user, "conn_info": null, "chan_info": null}}),
        "presence lists the raw client: {presence}"
    );
    assert_eq!(
        result(&lines, "presence_stats"),
        &json!({"num_clients": 1, "num_users": 1})
    );
    // Only channels with subscribers are active: room:other has history, no subscriber.
    assert_eq!(
        result(&lines, "channels"),
        &json!({"channels": {channel: {"num_clients": 1}}})
    );
    let info = result(&lines, "info");
    let node = &info["nodes"][0];
    assert!(
        node["uid"].as_str().is_some_and(|s| !s.is_empty())
            && node["name"].as_str().is_some_and(|s| !s.is_empty()),
        "{info}"
    );
    assert_eq!(
        (&node["num_clients"], &node["num_users"], &node["num_subs"]),
        (&1.into(), &1.into(), &1.into()),
        "{info}"
    );
    for call in ["subscribe", "unsubscribe", "refresh", "disconnect"] {
        assert_eq!(result(&lines, call), &json!({}), "{call}");
    }

    // What the raw client got, in the order each path keeps: the publications of its channel
    // (the idempotent one once), the subscribe, unsubscribe and refresh pushes; then the close.
    let mut data = Vec::new();
    let mut user_pushes = Vec::new();
    while data.len() < 2 || user_pushes.len() < 3 {
        let value = raw
            .next_value()
            .unwrap_or_else(|closed| panic!("closed ({closed:?}) after {data:?} {user_pushes:?}"));
        let push = &value["push"];
        if let Some(publication) = push.get("pub") {
            assert_eq!(push["channel"], channel, "{value}");
            data.push(publication["data"].clone());
        } else if push.get("subscribe").is_some()
            || push.get("unsubscribe").is_some()
            || push.get("refresh").is_some()
        {
            user_pushes.push(value["push"].clone());
        } else {
            panic!("an unexpected frame: {value}");
        }
    }
    assert_eq!(data, [json!({"n": 1}), json!({"n": 2})]);
    let subscribe = &user_pushes[0];
    assert_eq!(
        (&subscribe["channel"], &subscribe["subscribe"]["data"]),
        (&other.into(), &json!({"welcome": true})),
        "{user_pushes:?}"
    );
    let unsubscribe = &user_pushes[1];
    assert_eq!(
        (&unsubscribe["channel"], &unsubscribe["unsubscribe"]["code"]),
        (&other.into(), &2000.into()),
        "{user_pushes:?}"
    );
    let refresh = &user_pushes[2]["refresh"];
    assert_eq!(refresh["expires"], true, "{user_pushes:?}");
    assert!(
        refresh["ttl"]
            .as_u64()
            .is_some_and(|t| (590..=600).contains(&t)),
        "{user_pushes:?}"
    );
    assert_eq!(raw.expect_close(), Closed::Code(3503));
}

#[test]
fn cent_batch_gets_the_replies_in_order() {
    // cent's BatchRequest posts {"commands": [{"<method>": {...}}, ...], "parallel": false}
    // and reads the replies from the top-level `replies` of the body, as Centrifugo answers.
    let server = Server::start(&[NAMESPACE]);
    let (_raw, _) = raw_subscriber(&server);
    let lines = run_cent(&server, "batch");
    let replies = &result(&lines, "batch")["replies"];
    let epoch = replies[0]["epoch"].as_str().unwrap_or_default();
    assert!(!epoch.is_empty(), "{replies}");
    assert_eq!(
        replies,
        &json!([
            {"class": "PublishResult", "offset": 1, "epoch": epoch},
            {"class": "PresenceStatsResult", "num_clients": 1, "num_users": 1},
            {"class": "HistoryResult", "publications": [], "offset": 1, "epoch": epoch},
        ]),
        "{replies}"
    );
}
