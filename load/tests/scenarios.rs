//! Each scenario at a small size against a real ringcast server: the counts must add up
//! (every expected delivery received once, nothing lost or duplicated) and the output files
//! must be written. No timing assertions.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// The ringcast server binary next to this package's binary (same target directory),
/// built on demand when only this package was built.
fn server_binary() -> PathBuf {
    let load = PathBuf::from(env!("CARGO_BIN_EXE_ringcast-load"));
    let server = load.with_file_name("ringcast");
    if !server.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "ringcast", "--bin", "ringcast"])
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the ringcast server failed");
    }
    server
}

struct Server {
    child: Child,
    port: u16,
    data: PathBuf,
}

impl Server {
    fn start() -> Server {
        let data = std::env::temp_dir().join(format!("ringcast-load-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data);
        let mut child = Command::new(server_binary())
            .args([
                "serve",
                "--address",
                "127.0.0.1",
                "--port",
                "0",
                "--shards",
                "2",
                "--api-key",
                "k",
                "--token-hmac-secret-key",
                "s",
                "--data-dir",
            ])
            .arg(&data)
            .env(
                "RINGCAST_CHANNEL_WITHOUT_NAMESPACE_ALLOW_PUBLISH_FOR_CLIENT",
                "true",
            )
            // The load generator's clients subscribe by themselves (Centrifugo's default
            // would refuse them).
            .env(
                "RINGCAST_CHANNEL_WITHOUT_NAMESPACE_ALLOW_SUBSCRIBE_FOR_CLIENT",
                "true",
            )
            .env("RINGCAST_CHANNEL_WITHOUT_NAMESPACE_HISTORY_SIZE", "10")
            .env("RINGCAST_CHANNEL_WITHOUT_NAMESPACE_HISTORY_TTL", "60s")
            .stdout(Stdio::piped())
            .spawn()
            .expect("server starts");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let port = loop {
            let line = lines.next().expect("server output").expect("readable");
            if let Some(rest) = line.split("listening on ").nth(1) {
                let address: std::net::SocketAddr =
                    rest.split_whitespace().next().unwrap().parse().unwrap();
                break address.port();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Server { child, port, data }
    }

    fn load(&self, out: &Path, scenario: &str, args: &[&str]) -> Value {
        let ws = format!("ws://127.0.0.1:{}/connection/websocket", self.port);
        let api = format!("http://127.0.0.1:{}/api", self.port);
        let output = Command::new(env!("CARGO_BIN_EXE_ringcast-load"))
            .arg(scenario)
            .args(["--ws-url", &ws, "--api-url", &api, "--api-key", "k"])
            .args([
                "--token-secret",
                "s",
                "--per-worker",
                "40",
                "--drain-ms",
                "3000",
            ])
            .arg("--out")
            .arg(out)
            .args(args)
            .output()
            .expect("ringcast-load runs");
        assert!(
            output.status.success(),
            "{scenario} failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        for file in ["summary.json", "samples.csv"] {
            assert!(out.join(file).exists(), "{scenario}: {file} written");
        }
        let text = std::fs::read_to_string(out.join("summary.json")).unwrap();
        serde_json::from_str(&text).expect("summary.json is JSON")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

fn u(value: &Value) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("not a count: {value}"))
}

/// Every expected delivery arrived exactly once.
fn complete(run: &Value) {
    let counts = &run["counts"];
    assert!(u(&run["sent"]) > 0, "{run}");
    assert_eq!(
        u(&counts["received"]),
        u(&run["expected"]),
        "{}",
        run["label"]
    );
    assert_eq!(u(&counts["lost"]), 0, "{}", run["label"]);
    assert_eq!(u(&counts["duplicated"]), 0, "{}", run["label"]);
    assert_eq!(u(&counts["out_of_order"]), 0, "{}", run["label"]);
}

#[test]
fn every_scenario_runs_small_and_the_counts_add_up() {
    let server = Server::start();
    let out = std::env::temp_dir().join(format!("ringcast-load-out-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);

    // Idle first: on a fresh server, RSS growth is not hidden by memory freed earlier.
    let pid = server.child.id().to_string();
    let summary = server.load(
        &out.join("idle"),
        "idle",
        &["--connections", "300", "--hold", "1", "--server-pid", &pid],
    );
    let run = &summary["runs"][0];
    assert_eq!(run["extra"]["connected"], 300.0);
    assert_eq!(
        run["extra"]["closed"], 0.0,
        "nobody was disconnected while idle"
    );
    assert!(run["extra"]["connect_per_s"].as_f64().unwrap() > 0.0);
    assert!(
        run["extra"]["rss_bytes_per_conn"].as_f64().unwrap() > 0.0,
        "the server grows with its connections: {run}"
    );

    let summary = server.load(
        &out.join("broadcast"),
        "broadcast",
        &[
            "--members",
            "50,200",
            "--online",
            "30",
            "--messages",
            "3",
            "--interval-ms-between",
            "50",
            "--batch",
            "64",
        ],
    );
    let runs = summary["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    for run in runs {
        complete(run);
        assert_eq!(u(&run["sent"]), 3);
        assert_eq!(u(&run["expected"]), 90, "3 messages × 30 online");
        assert_eq!(u(&run["api_call"]["count"]), 3);
    }

    // The same room as single publishes, pipelined over two connections.
    let summary = server.load(
        &out.join("publishes"),
        "broadcast",
        &[
            "--members",
            "200",
            "--online",
            "30",
            "--messages",
            "3",
            "--interval-ms-between",
            "50",
            "--single-publishes",
            "--api-connections",
            "2",
            "--window",
            "16",
        ],
    );
    let run = &summary["runs"][0];
    complete(run);
    assert_eq!(u(&run["expected"]), 90, "3 messages × 30 online");
    assert_eq!(run["params"]["api_connections"], 2.0);
    assert_eq!(run["extra"]["api_errors"], 0.0);

    let summary = server.load(
        &out.join("rooms"),
        "rooms",
        &["--grid", "2x3,3x4", "--rate", "5", "--seconds", "1"],
    );
    for run in summary["runs"].as_array().unwrap() {
        complete(run);
        let clients = run["params"]["clients"].as_f64().unwrap() as u64;
        assert_eq!(u(&run["expected"]), u(&run["sent"]) * clients);
    }

    let summary = server.load(
        &out.join("fanout"),
        "fanout",
        &[
            "--subscribers",
            "50",
            "--rates",
            "5,10",
            "--step",
            "1",
            "--all",
        ],
    );
    let runs = summary["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    for run in runs {
        complete(run);
        assert_eq!(u(&run["expected"]), u(&run["sent"]) * 50);
    }
    let _ = std::fs::remove_dir_all(&out);
}
