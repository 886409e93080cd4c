//! `/metrics` (issue 14): the Prometheus text passes a real parser (`promtool check metrics`,
//! from Debian's prometheus package, installed on first use), and what it reports moves with
//! what the server did: client command and API method latencies as Centrifugo's summaries,
//! history appends and syncs, the rings.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Client, Server};
use serde_json::json;

fn scrape(server: &Server) -> String {
    let (status, text) = server.http("GET", "/metrics", &[], b"");
    assert_eq!(status, 200);
    text
}

/// The value of the sample line starting with `series ` (name and labels as written).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{series} ")))
        .unwrap_or_else(|| panic!("no {series} in {text}"))
        .parse()
        .unwrap()
}

/// `promtool check metrics` over `text`: its exit status and what it printed.
fn promtool(text: &str) -> (bool, String) {
    let promtool = common::debian_tool("promtool", "--version", "prometheus");
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let mut said = String::from_utf8_lossy(&out.stdout).into_owned();
    said.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), said)
}

#[test]
fn metrics_pass_promtool_and_follow_what_the_server_did() {
    let server = Server::start(&[
        "channel.without_namespace.history_size=10",
        "channel.without_namespace.history_ttl=300s",
        "history_storage.fsync_interval=50ms",
        "channel.without_namespace.allow_history_for_client=true",
    ]);
    let mut client = Client::connect(&server, "alice").0;
    client.subscribe("news");
    for n in 0..5 {
        server.api("publish", &json!({"channel": "news", "data": {"n": n}}));
        assert_eq!(client.publication().1, json!({"n": n}));
    }
    let reply = client.command("history", json!({"channel": "news", "limit": 10}));
    assert!(reply.get("history").is_some(), "{reply}");
    server.api(
        "broadcast",
        &json!({"channels": ["a", "b", "c"], "data": {"to": "three"}}),
    );

    // History syncs run on their interval: wait for one after the appends.
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = scrape(&server);
        if sample(&text, "ringcast_history_syncs_total") >= 1.0 {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "a history sync is counted: {text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // Five publishes and the broadcast's three channels, every one with history.
    assert_eq!(sample(&text, "ringcast_history_appends_total"), 8.0);
    assert!(sample(&text, "ringcast_history_appended_bytes_total") >= 8.0 * 7.0);
    assert!(sample(&text, "ringcast_history_segments") >= 1.0);
    let client_count = |method: &str| {
        sample(
            &text,
            &format!("centrifugo_client_command_duration_seconds_count{{method=\"{method}\"}}"),
        )
    };
    assert_eq!(client_count("connect"), 1.0);
    assert_eq!(client_count("subscribe"), 1.0);
    assert_eq!(client_count("history"), 1.0);
    assert_eq!(
        sample(
            &text,
            "centrifugo_api_command_duration_seconds_count{protocol=\"http\",method=\"publish\"}"
        ),
        5.0
    );
    let p99 = sample(
        &text,
        "centrifugo_api_command_duration_seconds{protocol=\"http\",method=\"publish\",quantile=\"0.99\"}",
    );
    assert!(p99 > 0.0 && p99 < 10.0, "a publish's p99 in seconds: {p99}");
    // The broadcast of 3: in the bucket up to 10, and every one above.
    assert_eq!(
        sample(&text, "ringcast_broadcast_channels_bucket{le=\"1\"}"),
        0.0
    );
    assert_eq!(
        sample(&text, "ringcast_broadcast_channels_bucket{le=\"10\"}"),
        1.0
    );
    assert_eq!(
        sample(&text, "ringcast_broadcast_channels_bucket{le=\"+Inf\"}"),
        1.0
    );
    assert_eq!(sample(&text, "ringcast_broadcast_channels_sum"), 3.0);
    // The client's frames in, the replies and five publications out.
    assert!(sample(&text, "ringcast_bytes_in_total") > 0.0);
    assert!(sample(&text, "ringcast_bytes_out_total") >= 5.0 * 20.0);
    sample(&text, "ringcast_ring_occupancy_messages");
    sample(&text, "ringcast_ring_waits_total");

    let (ok, said) = promtool(&text);
    // promtool's notes on names are allowed for Centrifugo's own (kept as Centrifugo spells
    // them, for its dashboards); nothing else may be reported.
    let problems: Vec<&str> = said
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("centrifugo_"))
        .collect();
    assert!(
        problems.is_empty(),
        "promtool reports problems (ok: {ok}):\n{said}"
    );
    assert!(
        ok || said
            .lines()
            .all(|l| l.trim().is_empty() || l.starts_with("centrifugo_"))
    );
}
