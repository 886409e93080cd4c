//! Who may open a WebSocket (issue 14, limits): `client.allowed_origins` (403, and without
//! the key only requests with no `Origin`, as Centrifugo), `client.connection_limit` and
//! `client.connection_rate_limit` (503), each refusal counted by reason, the others served.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Client, Server};
use serde_json::json;

/// The status code of a WebSocket upgrade request with `origin`; the stream, for an upgrade
/// that succeeded (to keep it open).
fn upgrade(server: &Server, origin: Option<&str>) -> (u16, TcpStream) {
    let mut stream = TcpStream::connect(server.address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let origin = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
    let request = format!(
        "GET /connection/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{origin}\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    // Bounded by the read timeout and the head's end.
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&head);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a status line: {text:?}"));
    (status, stream)
}

#[test]
fn origins_are_checked_as_centrifugo_checks_them() {
    // Without allowed_origins: only requests without an Origin (not browsers).
    let server = Server::start(&[]);
    assert_eq!(upgrade(&server, None).0, 101);
    assert_eq!(upgrade(&server, Some("https://app.example.com")).0, 403);
    assert_eq!(server.refusals("origin"), 1);
    drop(server);

    let server = Server::start(&[
        r#"client.allowed_origins=["https://*.example.com","http://localhost:3000"]"#,
    ]);
    assert_eq!(upgrade(&server, Some("https://app.example.com")).0, 101);
    assert_eq!(upgrade(&server, Some("HTTPS://App.Example.com")).0, 101);
    assert_eq!(upgrade(&server, Some("http://localhost:3000")).0, 101);
    assert_eq!(upgrade(&server, None).0, 101, "no Origin: not a browser");
    assert_eq!(upgrade(&server, Some("https://example.org")).0, 403);
    assert_eq!(upgrade(&server, Some("http://localhost:3001")).0, 403);
    assert_eq!(server.refusals("origin"), 2);
    // A client connects and works meanwhile.
    let (mut client, _) = Client::connect(&server, "u");
    client.subscribe("x");

    let server = Server::start(&[r#"client.allowed_origins=["*"]"#]);
    assert_eq!(upgrade(&server, Some("https://anything.test")).0, 101);
}

#[test]
fn a_bad_origin_pattern_stops_the_start() {
    let data = common::DataDir::new();
    let mut command = Server::command(&data, None, &[r#"client.allowed_origins=["[a"]"#], &[]);
    let output = command.output().expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("client.allowed_origins"), "{stderr}");
}

#[test]
fn the_connection_limit_refuses_upgrades_past_it_and_admits_again_below() {
    let server = Server::start(&["--shards", "1", "client.connection_limit=2"]);
    let (mut a, _) = Client::connect(&server, "a");
    let (b, _) = Client::connect(&server, "b");
    let (status, _) = upgrade(&server, None);
    assert_eq!(status, 503, "a third connection");
    assert_eq!(server.refusals("connection_limit"), 1);
    // The two keep working; once one leaves, a new one is admitted.
    a.subscribe("x");
    drop(b);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = upgrade(&server, None);
        if status == 101 {
            break;
        }
        assert!(Instant::now() < deadline, "never admitted again");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(a
        .command("presence", json!({"channel": "x"}))
        .get("error")
        .is_some());
}

#[test]
fn the_connection_rate_limit_refuses_a_burst_past_it() {
    let server = Server::start(&["--shards", "1", "client.connection_rate_limit=2"]);
    // A burst: the bucket holds 2 and refills 2 a second, so a burst of 50 local upgrades
    // meets a refusal unless each took half a second.
    let mut statuses = Vec::new();
    let mut open = Vec::new();
    for _ in 0..50 {
        let (status, stream) = upgrade(&server, None);
        statuses.push(status);
        open.push(stream);
        if status == 503 {
            break;
        }
    }
    assert_eq!(statuses.last(), Some(&503), "{statuses:?}");
    assert_eq!(statuses[0], 101);
    assert_eq!(server.refusals("connection_rate"), 1);
}

#[test]
fn a_connection_limit_the_open_files_limit_caps_is_warned_at_start() {
    let data = common::DataDir::new();
    let log_path = data.0.join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    // This machine's hard limit is far below a million descriptors.
    let command = Server::command(&data, None, &["client.connection_limit=100000000"], &[]);
    let server = Server::spawn_with_stderr(command, log.into());
    let logged = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        logged.contains("caps client.connection_limit") && logged.contains("LimitNOFILE"),
        "{logged}"
    );
    // It still serves, up to what it can hold.
    let (mut client, _) = Client::connect(&server, "u");
    client.subscribe("x");
}

#[test]
fn the_user_connection_limit_closes_connections_past_it_with_3504() {
    // One shard: the connect itself is refused.
    let server = Server::start(&["--shards", "1", "client.user_connection_limit=2"]);
    let (_a, _) = Client::connect(&server, "limited");
    let (_b, _) = Client::connect(&server, "limited");
    let mut third = Client::open(&server);
    third.send_text(&format!(
        r#"{{"id":1,"connect":{{"token":"{}"}}}}"#,
        common::token("limited", 3600)
    ));
    assert_eq!(third.expect_close(), common::Closed::Code(3504));
    assert_eq!(server.refusals("user_connection_limit"), 1);
    let (mut other, _) = Client::connect(&server, "other");
    other.subscribe("x");

    // Two shards: a connection past the limit on another shard is closed once the user's
    // owner counts it.
    let server = Server::start(&["client.user_connection_limit=1"]);
    let mut clients = Vec::new();
    let mut closed = 0;
    for _ in 0..8 {
        let mut client = Client::open(&server);
        client.send_text(&format!(
            r#"{{"id":1,"connect":{{"token":"{}"}}}}"#,
            common::token("solo", 3600)
        ));
        match client.next_value() {
            Ok(reply) if reply.get("connect").is_some() => clients.push(client),
            Ok(reply) => panic!("{reply}"),
            Err(common::Closed::Code(3504)) => closed += 1,
            Err(other) => panic!("{other:?}"),
        }
    }
    // Every connection past the first is closed with 3504, at connect or soon after: once
    // the node holds one, each other client finds its close.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while server.api("info", &json!({}))["result"]["nodes"][0]["num_clients"] != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "never down to one connection: {}",
            server.api("info", &json!({}))
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut open = 0;
    for mut client in clients {
        client.send_text(r#"{"id":2,"presence":{"channel":"x"}}"#);
        match client.next_value() {
            Ok(_) => open += 1,
            Err(code) => {
                assert_eq!(code, common::Closed::Code(3504));
                closed += 1;
            }
        }
    }
    assert_eq!((open, closed), (1, 7));
}

#[test]
fn the_command_rate_limit_answers_111_past_it_and_lets_the_connection_go_on() {
    let server = Server::start(&["client.command_rate_limit=5"]);
    let (mut client, _) = Client::connect(&server, "busy");
    // Thirty commands in one message: the bucket holds five (the connect came before it
    // was made), so most are answered 111, temporary.
    let commands: Vec<String> = (2..32)
        .map(|id| format!(r#"{{"id":{id},"presence_stats":{{"channel":"x"}}}}"#))
        .collect();
    client.send_text(&commands.join("\n"));
    let mut limited = 0;
    for id in 2..32 {
        let reply = client.reply(id);
        if reply["error"]["code"] == 111 {
            assert_eq!(reply["error"]["temporary"], true, "{reply}");
            limited += 1;
        }
    }
    assert!(limited >= 20, "{limited} of 30 limited");
    assert_eq!(server.refusals("command_rate"), limited);
    // The bucket refills: the connection is served again.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let reply = client.command("presence_stats", json!({"channel": "x"}));
        if reply["error"]["code"] != 111 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never served again");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (mut other, _) = Client::connect(&server, "calm");
    other.subscribe("y");
}
