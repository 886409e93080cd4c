//! The command line: genconfig writes a config that checkconfig accepts and serve runs with;
//! bad values are refused naming the key, from every source (file, environment, flag).

use std::process::{Command, Output};

fn ringcast(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ringcast"));
    command.args(args);
    // Isolate from the developer's environment.
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("RINGCAST_")) {
        command.env_remove(key);
    }
    command.envs(env.iter().copied());
    command.output().expect("ringcast runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn genconfig_output_passes_checkconfig_and_signs_tokens() {
    let dir = std::env::temp_dir().join(format!("ringcast-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ringcast.toml");
    let _ = std::fs::remove_file(&path);
    let path_str = path.to_str().unwrap();

    let output = ringcast(&["genconfig", "--output", path_str], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("api_key = \"") && text.contains("# "),
        "commented: {text}"
    );

    let again = ringcast(&["genconfig", "--output", path_str], &[]);
    assert!(
        !again.status.success(),
        "does not overwrite without --force"
    );

    let check = ringcast(&["checkconfig", "--config", path_str], &[]);
    assert!(check.status.success(), "{}", stderr(&check));
    let effective = String::from_utf8_lossy(&check.stdout);
    assert!(effective.contains("port = 8000"), "{effective}");

    // Environment over file, flag over environment.
    let check = ringcast(
        &["checkconfig", "--config", path_str, "--port", "9001"],
        &[("RINGCAST_PORT", "9000"), ("RINGCAST_SHARDS", "3")],
    );
    let effective = String::from_utf8_lossy(&check.stdout);
    assert!(
        effective.contains("port = 9001") && effective.contains("shards = 3"),
        "{effective}"
    );

    let token = ringcast(&["gentoken", "--user", "42", "--config", path_str], &[]);
    assert!(token.status.success(), "{}", stderr(&token));
    assert_eq!(
        String::from_utf8_lossy(&token.stdout)
            .trim()
            .split('.')
            .count(),
        3
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn invalid_values_are_refused_naming_the_key() {
    let output = ringcast(&["checkconfig"], &[("RINGCAST_PORT", "eighty")]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("RINGCAST_PORT") || stderr(&output).contains("--port"),
        "{}",
        stderr(&output)
    );

    let output = ringcast(
        &[
            "checkconfig",
            "--ping-interval-ms",
            "1000",
            "--pong-timeout-ms",
            "5000",
        ],
        &[],
    );
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("pong_timeout_ms"),
        "{}",
        stderr(&output)
    );

    let dir = std::env::temp_dir().join(format!("ringcast-cli-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(&path, "client_queue_max_bytes = \"big\"\n").unwrap();
    let output = ringcast(&["serve", "--config", path.to_str().unwrap()], &[]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("client_queue_max_bytes"),
        "{}",
        stderr(&output)
    );
    std::fs::remove_dir_all(&dir).unwrap();

    let output = ringcast(&["gentoken", "--user", "1"], &[]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("token_hmac_secret_key"),
        "{}",
        stderr(&output)
    );
}
