//! The process as an operator meets it: a panic on one shard ends the process (crash-only), a
//! restart binds at once while the port's old connections are in TIME_WAIT, `ringcast -c
//! config.json` serves a Centrifugo configuration as `centrifugo -c config.json` does, and a
//! full disk at start is reported while the server serves what it can.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Client, DataDir, Server, API_KEY, SECRET};
use serde_json::json;

#[test]
fn a_panic_on_one_shard_ends_the_process() {
    let data = DataDir::new();
    let mut server =
        Server::start_env(&data, None, &[], &[("RINGCAST_TEST_PANIC_CHANNEL", "boom")]);
    assert_eq!(
        server.api("info", &json!({}))["result"]["nodes"][0]["num_clients"],
        0
    );
    // The owner shard of "boom" panics while publishing; no answer comes.
    let body = r#"{"channel":"boom","data":{}}"#;
    let request = format!(
        "POST /api/publish HTTP/1.1\r\nHost: t\r\nX-API-Key: {API_KEY}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = server.raw(request.as_bytes());
    let status = server
        .wait_exit(Duration::from_secs(20))
        .expect("the whole process ends, not just the shard's thread");
    assert_eq!(
        status.signal(),
        Some(nix::sys::signal::Signal::SIGABRT as i32),
        "{status:?}"
    );
}

/// Sockets in TIME_WAIT whose local port is `port` (/proc/net/tcp, IPv4).
fn time_wait_on(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields
                .get(1)
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            local_port == Some(port) && fields.get(3) == Some(&"06")
        })
        .count()
}

#[test]
fn a_restart_binds_at_once_while_old_connections_are_in_time_wait() {
    let data = DataDir::new();
    let server = Server::start_in(&data, &[]);
    let address = server.address;
    // Keep-alive connections the server side will close first (its process dies).
    let mut conns = Vec::new();
    for _ in 0..200 {
        let mut stream = TcpStream::connect(address).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 256];
        let n = stream.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        conns.push(stream);
    }
    server.kill();
    // Each client sees the server's FIN, then closes: the server's side waits in TIME_WAIT.
    for mut stream in conns {
        let mut buf = [0u8; 64];
        while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while time_wait_on(address.port()) == 0 {
        assert!(Instant::now() < deadline, "no TIME_WAIT sockets appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    let restarted = Server::start_with(&data, Some(address.port()), &[]);
    assert_eq!(restarted.address, address);
    assert_eq!(restarted.http("GET", "/health", &[], b"").0, 200);
}

#[test]
fn a_centrifugo_config_runs_with_no_command_as_centrifugo_does() {
    let data = DataDir::new();
    let path = data.0.join("config.json");
    let config = json!({
        "client": {"token": {"hmac_secret_key": SECRET}, "allowed_origins": ["*"]},
        "http_api": {"key": API_KEY},
        "http_server": {"address": "127.0.0.1"},
        "admin": {"enabled": true, "password": "p", "secret": "s"},
        "channel": {
            "namespaces": [{
                "name": "chat",
                "history_size": 10,
                "history_ttl": "300s",
                "force_positioning": true,
                "allow_subscribe_for_client": true,
                "allow_publish_for_client": true
            }]
        },
        "shards": {"count": 2},
        "history_storage": {"data_dir": data.path()}
    });
    std::fs::write(&path, config.to_string()).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_ringcast"));
    // No command: `ringcast -c config.json`, as one runs `centrifugo -c config.json`.
    command.args(["-c", path.to_str().unwrap(), "--port", "0"]);
    let server = Server::spawn(command);
    let (mut client, _) = Client::connect(&server, "42");
    let reply = client.command("subscribe", json!({"channel": "chat:room"}));
    assert_eq!(reply["subscribe"]["positioned"], true, "{reply}");
    server.api(
        "publish",
        &json!({"channel": "chat:room", "data": {"text": "hi"}}),
    );
    let (channel, data, offset) = client.publication();
    assert_eq!((channel.as_str(), offset), ("chat:room", 1));
    assert_eq!(data, json!({"text": "hi"}));
    let reply = client.command("publish", json!({"channel": "chat:room", "data": 1}));
    assert!(reply.get("publish").is_some(), "{reply}");
    let reply = client.command("publish", json!({"channel": "lobby", "data": 1}));
    assert_eq!(reply["error"]["code"], 103, "{reply}");
}

/// `unshare` arguments that give the server a private mount namespace (to mount a small
/// tmpfs), or `None` where this machine cannot.
fn mount_namespace() -> Option<Vec<&'static str>> {
    for args in [vec!["-Urm"], vec!["-m"]] {
        let ok = Command::new("unshare")
            .args(&args)
            .args(["sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"])
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Some(args);
        }
    }
    None
}

#[test]
fn a_full_disk_at_start_is_reported_and_the_server_serves_what_it_can() {
    let unshare = mount_namespace().unwrap_or_else(|| {
        panic!(
            "this test needs `unshare` (util-linux) and either user namespaces or root, to \
             mount a small tmpfs as a full disk"
        )
    });
    let data = DataDir::new();
    let history = "hs:personal";
    let partition = ringcast::router::partition(history);
    // What a full disk left behind: partition directories without segments. Then the disk
    // stays full (a filler file takes all of an 8 MiB tmpfs).
    let script = format!(
        "set -e; mount -t tmpfs -o size=8m tmpfs \"$1\"; \
         mkdir -p \"$1/history/{partition:03}\" \"$1/history/200\"; \
         head -c 16m /dev/zero > \"$1/filler\" 2>/dev/null || true; \
         shift; exec \"$@\""
    );
    let namespaces = r#"[{"name":"hs","history_size":10,"history_ttl":"60s"}]"#;
    let serve = Server::command(
        &data,
        None,
        &[],
        &[("RINGCAST_CHANNEL_NAMESPACES", namespaces)],
    );
    let mut command = Command::new("unshare");
    command
        .args(&unshare)
        .args(["sh", "-c", &script, "sh", data.path()])
        .arg(serve.get_program())
        .args(serve.get_args())
        .envs(serve.get_envs().filter_map(|(k, v)| Some((k, v?))));
    let server = Server::spawn(command);
    // Channels without history are unaffected.
    let reply = server.api("publish", &json!({"channel": "plain", "data": 1}));
    assert_eq!(reply["result"], json!({}), "{reply}");
    // A history channel of the full partition fails with a temporary-looking internal error,
    // and the server stays up.
    let reply = server.api("publish", &json!({"channel": history, "data": 1}));
    assert_eq!(reply["error"]["code"], 100, "{reply}");
    assert_eq!(server.http("GET", "/health", &[], b"").0, 200);
    // Room again (the filler removed through the server's own view of its mounts): the
    // partition creates its first segment and serves.
    let filler = format!("/proc/{}/root{}/filler", server.pid(), data.path());
    std::fs::remove_file(&filler).expect("remove the filler");
    let reply = server.api("publish", &json!({"channel": history, "data": 2}));
    assert_eq!(reply["result"]["offset"], 1, "{reply}");
    let reply = server.api("history", &json!({"channel": history, "limit": 10}));
    assert_eq!(reply["result"]["publications"][0]["data"], 2, "{reply}");
}
