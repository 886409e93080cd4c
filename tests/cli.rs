//! The command line: genconfig writes a config (JSON, YAML or TOML) that checkconfig accepts and
//! serve runs with; checkconfig prints the effective configuration and the ignored keys of a
//! Centrifugo v6 file; bad values are refused naming the key, from every source (file,
//! environment, flag), and typos with the closest key.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn ringcast(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ringcast"));
    command.args(args);
    // Isolate from the developer's environment.
    for (key, _) in
        std::env::vars().filter(|(k, _)| k.starts_with("RINGCAST_") || k.starts_with("CENTRIFUGO_"))
    {
        command.env_remove(key);
    }
    command.envs(env.iter().copied());
    command.output().expect("ringcast runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The effective configuration checkconfig printed.
fn effective(output: &Output) -> Value {
    assert!(output.status.success(), "{}", stderr(output));
    serde_json::from_slice(&output.stdout).expect("checkconfig prints JSON")
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("ringcast-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn file(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .to_str()
        .unwrap()
        .to_owned()
}

#[test]
fn genconfig_output_passes_checkconfig_and_signs_tokens() {
    let dir = TempDir::new("gen");
    for name in ["config.json", "config.yaml", "config.toml"] {
        let path = dir.file(name);
        let output = ringcast(&["genconfig", "--config", &path], &[]);
        assert!(output.status.success(), "{}", stderr(&output));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("hmac_secret_key"), "{name}: {text}");

        let again = ringcast(&["genconfig", "-c", &path], &[]);
        assert!(
            !again.status.success(),
            "does not overwrite without --force"
        );
        let forced = ringcast(&["genconfig", "-c", &path, "--force"], &[]);
        assert!(
            forced.status.success(),
            "a bare --force: {}",
            stderr(&forced)
        );

        let check = ringcast(&["checkconfig", "--config", &path], &[]);
        let config = effective(&check);
        assert_eq!(config["http_server"]["port"], 8000, "{name}");
        assert_eq!(
            config["http_api"]["key"].as_str().unwrap().len(),
            64,
            "{name}"
        );
        assert!(!stderr(&check).contains("warning"), "{}", stderr(&check));

        let token = ringcast(&["gentoken", "--user", "42", "--config", &path], &[]);
        assert!(token.status.success(), "{}", stderr(&token));
        let token = String::from_utf8_lossy(&token.stdout).trim().to_owned();
        assert_eq!(token.split('.').count(), 3);
    }

    // Environment over file, flag over environment; RINGCAST_ over CENTRIFUGO_.
    let path = dir.file("config.json");
    let check = ringcast(
        &["checkconfig", "--config", &path, "--port", "9001"],
        &[
            ("RINGCAST_HTTP_SERVER_PORT", "9000"),
            ("RINGCAST_SHARDS_COUNT", "3"),
            ("CENTRIFUGO_HTTP_API_KEY", "from-centrifugo-env"),
            ("CENTRIFUGO_CLIENT_PING_INTERVAL", "30s"),
            ("RINGCAST_CLIENT_PING_INTERVAL", "40s"),
        ],
    );
    let config = effective(&check);
    assert_eq!(config["http_server"]["port"], 9001);
    assert_eq!(config["shards"]["count"], 3);
    assert_eq!(config["http_api"]["key"], "from-centrifugo-env");
    assert_eq!(config["client"]["ping_interval"], "40s");
}

#[test]
fn a_centrifugo_v6_config_is_read_as_it_is() {
    let check = ringcast(&["checkconfig", "-c", &fixture("chat-config.json")], &[]);
    let config = effective(&check);
    assert_eq!(
        config["client"]["token"]["hmac_secret_key"],
        "chat-token-secret"
    );
    assert_eq!(config["http_api"]["key"], "chat-api-key");
    assert_eq!(config["channel"]["namespaces"][0]["name"], "personal");
    assert_eq!(config["channel"]["namespaces"][0]["history_ttl"], "10m");
    let warnings = stderr(&check);
    for ignored in ["admin", "consumers", "push_notifications"] {
        assert!(
            warnings.contains(&format!("ignoring {ignored}:")),
            "{ignored}: {warnings}"
        );
    }
    // The same file through YAML and TOML.
    for name in ["chat-config.yaml", "chat-config.toml"] {
        let config = effective(&ringcast(&["checkconfig", "-c", &fixture(name)], &[]));
        assert_eq!(config["http_server"]["port"], 9000, "{name}");
    }
}

#[test]
fn invalid_values_are_refused_naming_the_key() {
    let output = ringcast(&["checkconfig"], &[("RINGCAST_HTTP_SERVER_PORT", "eighty")]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("http_server.port"),
        "{}",
        stderr(&output)
    );

    let output = ringcast(
        &["checkconfig"],
        &[
            ("RINGCAST_CLIENT_PING_INTERVAL", "1s"),
            ("RINGCAST_CLIENT_PONG_TIMEOUT", "5s"),
        ],
    );
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("client.pong_timeout"),
        "{}",
        stderr(&output)
    );

    let output = ringcast(&["checkconfig", "--port", "x"], &[]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("--port"), "{}", stderr(&output));

    let dir = TempDir::new("bad");
    let path = dir.file("bad.json");
    std::fs::write(&path, r#"{"client": {"queue_max_size": "big"}}"#).unwrap();
    let output = ringcast(&["serve", "--config", &path], &[]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("client.queue_max_size"),
        "{}",
        stderr(&output)
    );

    let path = dir.file("typo.yaml");
    std::fs::write(&path, "http_api:\n  kye: secret\n").unwrap();
    let output = ringcast(&["serve", "-c", &path], &[]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("unknown key http_api.kye (did you mean http_api.key?)"),
        "{}",
        stderr(&output)
    );

    let output = ringcast(&["gentoken", "--user", "1"], &[]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("client.token.hmac_secret_key"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn boolean_flags_work_bare_and_with_a_value() {
    let config = effective(&ringcast(&["checkconfig", "--health.enabled=false"], &[]));
    assert_eq!(config["health"]["enabled"], false);
    let config = effective(&ringcast(
        &[
            "checkconfig",
            "--prometheus.enabled",
            "false",
            "--http_api.insecure",
        ],
        &[],
    ));
    assert_eq!(config["prometheus"]["enabled"], false);
    assert_eq!(config["http_api"]["insecure"], true);
    // The Centrifugo v6 names of the common flags.
    let config = effective(&ringcast(
        &[
            "checkconfig",
            "--http_server.port",
            "8100",
            "--http_api.key",
            "k",
        ],
        &[],
    ));
    assert_eq!(config["http_server"]["port"], 8100);
    assert_eq!(config["http_api"]["key"], "k");
}
