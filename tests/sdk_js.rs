//! The official JavaScript SDK (`centrifuge` v5 from npm, run under node) against a real
//! server: connect with a token from `ringcast gentoken`, subscribe, receive a publication
//! sent through `/api/publish`, publish from the client, and get 103 where config forbids it.
//! The SDK is installed from `tests/sdk/package-lock.json` with `npm ci` on first run.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;

use common::{Server, API_KEY, SECRET};

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
fn run_sdk(server: &Server, channel: &str, expect_denied: bool) -> Vec<serde_json::Value> {
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
    let server = Server::start(&["--allow-publish-for-client", "true"]);
    let steps = run_sdk(&server, "chat:room", false);
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
    let steps = run_sdk(&server, "news", true);
    assert_eq!(step(&steps, "client_publish")["denied"], 103);
    step(&steps, "done");
}
