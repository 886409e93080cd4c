//! `http_server.internal_port` (issue 14): the server API, /metrics and /health on a listener
//! of their own, the public port serving only clients (and the API with
//! `http_api.external`); during the drain the internal listener stays reachable while the
//! public one stops accepting.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{Client, Server, API_KEY};

/// One request to `address`; its status and response.
fn request(address: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nX-API-Key: {API_KEY}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a response: {response:?}"));
    (status, response)
}

fn status(address: SocketAddr, method: &str, path: &str, body: &str) -> u16 {
    request(address, method, path, body).0
}

/// A metric's node line from the internal listener.
fn metric(address: SocketAddr, name: &str) -> u64 {
    let (_, text) = request(address, "GET", "/metrics", "");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn internal_endpoints_have_their_own_listener() {
    let server = Server::start(&["http_server.internal_port=0", "shutdown.accept_delay=100ms"]);
    let internal = server.internal.expect("an internal listener");
    let public = server.address;
    // The internal port: API, metrics, health; no clients.
    assert_eq!(status(internal, "POST", "/api/info", "{}"), 200);
    assert_eq!(status(internal, "GET", "/metrics", ""), 200);
    assert_eq!(status(internal, "GET", "/health", ""), 200);
    assert_eq!(status(internal, "GET", "/connection/websocket", ""), 404);
    // The public port: clients only.
    assert_eq!(status(public, "POST", "/api/info", "{}"), 404);
    assert_eq!(status(public, "GET", "/metrics", ""), 404);
    assert_eq!(status(public, "GET", "/health", ""), 404);
    let (mut client, _) = Client::connect(&server, "u");
    client.subscribe("x");
    assert_eq!(metric(internal, "ringcast_connections_accepted_total"), 1);
    assert_eq!(metric(internal, "ringcast_draining"), 0);
    // The drain: health fails on the internal port, which stays reachable (the API answers)
    // while the public one stops accepting.
    server.signal(nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    while status(internal, "GET", "/health", "") != 503 {
        assert!(Instant::now() < deadline, "health never failed");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Right away (the drain ends with the one client's close, in about two seconds).
    assert_eq!(
        status(internal, "POST", "/api/info", "{}"),
        200,
        "the API still answers"
    );
    // Each shard notices the drain within a tick (a second at most).
    while metric(internal, "ringcast_draining") == 0 {
        assert!(Instant::now() < deadline, "no shard reported its drain");
        std::thread::sleep(Duration::from_millis(20));
    }
    while TcpStream::connect(public).is_ok() {
        assert!(Instant::now() < deadline, "the public port kept accepting");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_api_stays_public_when_external() {
    let server = Server::start(&["http_server.internal_port=0", "http_api.external=true"]);
    let internal = server.internal.expect("an internal listener");
    assert_eq!(status(server.address, "POST", "/api/info", "{}"), 200);
    assert_eq!(status(internal, "POST", "/api/info", "{}"), 404);
    assert_eq!(status(internal, "GET", "/metrics", ""), 200);
}
