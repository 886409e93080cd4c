//! TLS on the client port (issue 14): wss:// clients and the https:// API on one port, the
//! certificate read again on SIGHUP while open connections go on, a connection that does not
//! speak TLS refused and counted, the PROXY header before the handshake, and the internal
//! port's TLS choices (`tls_external`, `internal_tls`). Test certificates come from a CA made
//! for the test (rcgen); the client is rustls trusting that CA alone.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::tls::TestCa;
use common::{ApiConn, Client, DataDir, Server};
use serde_json::json;

const PUBLISH: &str = "channel.without_namespace.allow_publish_for_client=true";

/// A server with TLS on its client port from `ca`'s files, plus `extra`; its stderr in a file.
fn tls_server(ca: &TestCa, extra: &[&str]) -> (Server, DataDir, std::path::PathBuf) {
    let (_, cert, key) = ca.issue();
    let tls = TestCa::settings(&cert, &key);
    let mut settings: Vec<&str> = tls.iter().map(String::as_str).collect();
    settings.extend_from_slice(extra);
    let data = DataDir::new();
    let log = data.0.join("server.log");
    let command = Server::command(&data, None, &settings, &[]);
    let file = std::fs::File::create(&log).unwrap();
    (Server::spawn_with_stderr(command, file.into()), data, log)
}

fn wss_client(ca: &TestCa, server: &Server, user: &str) -> Client {
    let (tls, _) = ca.connect(server.address);
    let url = format!("wss://{}/connection/websocket", server.address);
    let mut client = Client::over_stream(Box::new(tls), &url);
    let reply = client.command("connect", json!({"token": common::token(user, 3600)}));
    assert!(reply.get("connect").is_some(), "connect failed: {reply}");
    client
}

/// wss:// and https:// on the one TLS port: the API publishes over TLS to a subscriber on
/// each shard, messages of many records each way (the client's publish and the pushes are
/// larger than one 16 KiB record), and `/metrics` answers over https too.
#[test]
fn wss_clients_and_the_https_api_share_the_tls_port() {
    let ca = TestCa::new("ringcast test CA");
    let (server, _data, _log) = tls_server(&ca, &[PUBLISH]);
    let mut clients: Vec<Client> = (0..4)
        .map(|i| wss_client(&ca, &server, &format!("u{i}")))
        .collect();
    for client in &mut clients {
        client.subscribe("news");
    }
    let (tls, _) = ca.connect(server.address);
    let mut api = ApiConn::over(Box::new(tls));
    let small = json!({"channel": "news", "data": {"n": 1}});
    let reply = api
        .post("publish", &small.to_string())
        .expect("API over https");
    assert!(reply.get("result").is_some(), "{reply}");
    let big = "x".repeat(50_000);
    let reply = api
        .post(
            "publish",
            &json!({"channel": "news", "data": {"big": big}}).to_string(),
        )
        .expect("a large publish over https");
    assert!(reply.get("result").is_some(), "{reply}");
    for client in &mut clients {
        assert_eq!(client.publication().1, json!({"n": 1}));
        assert_eq!(
            client.publication().1["big"].as_str().unwrap().len(),
            50_000
        );
    }
    // A client's own large publish reaches the others.
    let reply = clients[0].command("publish", json!({"channel": "news", "data": {"from": big}}));
    assert!(reply.get("publish").is_some(), "{reply}");
    for client in &mut clients {
        assert_eq!(
            client.publication().1["from"].as_str().unwrap().len(),
            50_000
        );
    }
    // /metrics over https.
    let (mut tls, _) = ca.connect(server.address);
    tls.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    let _ = tls.read_to_string(&mut text);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("centrifugo_node_num_clients 4"), "{text}");
}

/// SIGHUP reads the certificate files again: new handshakes get the new certificate, a
/// connection opened before keeps working (it still receives), and a broken file on a later
/// SIGHUP keeps the certificate served.
#[test]
fn sighup_serves_a_new_certificate_to_new_connections_only() {
    let ca = TestCa::new("ringcast test CA");
    let (server, _data, log) = tls_server(
        &ca,
        &[
            "http_server.internal_port=0",
            "http_server.tls_external=true",
        ],
    );
    let (_, first) = ca.connect(server.address);
    let mut before = wss_client(&ca, &server, "before");
    before.subscribe("news");

    let (second, cert_path, key_path) = ca.issue();
    assert_ne!(first, second);
    let hup = |count: usize| {
        server.signal(nix::sys::signal::Signal::SIGHUP);
        let deadline = Instant::now() + Duration::from_secs(10);
        // Bounded by the deadline: the signal thread logs each reload.
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.matches("SIGHUP").count() >= count {
                return text;
            }
            assert!(Instant::now() < deadline, "no SIGHUP line in {text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let text = hup(1);
    assert!(text.contains("http_server.tls reloaded"), "{text}");
    let (_, presented) = ca.connect(server.address);
    assert_eq!(
        presented, second,
        "a new handshake gets the new certificate"
    );

    // The connection from before the reload still delivers.
    server.api(
        "publish",
        &json!({"channel": "news", "data": {"after": "reload"}}),
    );
    assert_eq!(before.publication().1, json!({"after": "reload"}));

    // A broken key on the next reload: refused, the certificate served stays.
    std::fs::write(&key_path, "garbage").unwrap();
    let _ = cert_path;
    let text = hup(2);
    assert!(text.contains("the certificate served stays"), "{text}");
    let (_, presented) = ca.connect(server.address);
    assert_eq!(presented, second);
    // The server still runs: SIGHUP no longer ends it (its default action would).
    let mut after = wss_client(&ca, &server, "after");
    after.subscribe("news");
}

/// A client speaking plain HTTP to the TLS port, and one that connects and says nothing,
/// are closed (the second within `http_server.request_timeout`) and counted as
/// `tls_handshake` refusals; TLS clients meanwhile go on.
#[test]
fn a_connection_that_does_not_speak_tls_is_refused_and_counted() {
    let ca = TestCa::new("ringcast test CA");
    let (server, _data, _log) = tls_server(
        &ca,
        &[
            "http_server.internal_port=0",
            "http_server.tls_external=true",
            "http_server.request_timeout=1s",
        ],
    );
    let mut working = wss_client(&ca, &server, "working");
    working.subscribe("news");

    let answer = common::raw_at(
        server.address,
        b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(
        !answer.starts_with(b"HTTP/1.1"),
        "no plain HTTP answer on the TLS port: {:?}",
        String::from_utf8_lossy(&answer)
    );
    let mut silent = TcpStream::connect(server.address).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    let mut sink = [0u8; 64];
    let n = silent.read(&mut sink).unwrap_or(0);
    assert_eq!(n, 0, "closed without an answer");
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "closed by the handshake deadline"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.refusals("tls_handshake") < 2 {
        assert!(Instant::now() < deadline, "both refusals counted");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The internal port stays plain with `tls_external`, and the TLS client goes on.
    server.api("publish", &json!({"channel": "news", "data": 1}));
    assert_eq!(working.publication().1, json!(1));
}

/// With the PROXY protocol on, the load balancer's header comes first and the handshake after
/// it: the server logs the client the header names.
#[test]
fn the_proxy_header_comes_before_the_handshake() {
    let ca = TestCa::new("ringcast test CA");
    let (server, _data, log) = tls_server(&ca, &["http_server.proxy_protocol=true"]);
    let mut tcp = TcpStream::connect(server.address).unwrap();
    tcp.write_all(b"PROXY TCP4 203.0.113.7 127.0.0.1 4242 8000\r\n")
        .unwrap();
    let (mut tls, _) = ca.over(tcp);
    tls.write_all(
        b"GET /connection/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
          Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
          Sec-WebSocket-Version: 13\r\nOrigin: https://evil.test\r\n\r\n",
    )
    .unwrap();
    let mut answer = String::new();
    let _ = tls.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer:?}");
    common::wait_for_line(&log, "refused a connection from 203.0.113.7:4242: origin");
    // Without the header, a TLS client is refused before its handshake.
    let tcp = TcpStream::connect(server.address).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(ca.client_config(), name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    assert!(
        tls.conn.complete_io(&mut tls.sock).is_err() || tls.conn.is_handshaking(),
        "no handshake without a PROXY header"
    );
}

/// The internal port serves the client port's TLS unless `tls_external`; `internal_tls`
/// gives it a certificate of its own.
#[test]
fn the_internal_port_takes_the_client_ports_tls_or_its_own() {
    let ca = TestCa::new("ringcast test CA");
    let (server, _data, _log) = tls_server(&ca, &["http_server.internal_port=0"]);
    let internal = server.internal.expect("an internal listener");
    let (mut tls, _) = ca.connect(internal);
    tls.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let e = tls.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?} {e:?}");

    let other = TestCa::new("ringcast internal CA");
    let (own, cert, key) = other.issue();
    let own_tls = [
        "http_server.internal_tls.enabled=true".to_string(),
        format!("http_server.internal_tls.cert_pem={}", cert.display()),
        format!("http_server.internal_tls.key_pem={}", key.display()),
    ];
    let mut extra: Vec<&str> = own_tls.iter().map(String::as_str).collect();
    extra.push("http_server.internal_port=0");
    let (server, _data, _log) = tls_server(&ca, &extra);
    let internal = server.internal.expect("an internal listener");
    let (_, presented) = other.connect(internal);
    assert_eq!(presented, own, "the internal port's own certificate");
}
