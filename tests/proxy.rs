//! The PROXY protocol on the client port (issue 14, `http_server.proxy_protocol`): a
//! connection starts with a v1 or v2 header naming the client, whose address the server then
//! logs and limits by; a connection without one is refused. Raw headers here; a real HAProxy
//! in front of two servers in `haproxy_sends_the_clients_addresses_to_both_servers`.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{DataDir, Server};

const UPGRADE: &str = "GET /connection/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

/// A server with the PROXY protocol on, its stderr in a file; the server and the file.
fn server(extra: &[&str]) -> (Server, DataDir, std::path::PathBuf) {
    let data = DataDir::new();
    let log = data.0.join("server.log");
    let mut settings = vec!["http_server.proxy_protocol=true"];
    settings.extend_from_slice(extra);
    let command = Server::command(&data, None, &settings, &[]);
    let file = std::fs::File::create(&log).unwrap();
    (Server::spawn_with_stderr(command, file.into()), data, log)
}

/// Sends `bytes`, returns what came back until the close (or 10 s).
fn exchange(address: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(bytes).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    // Bounded by the read timeout and the close.
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if got.windows(4).any(|w| w == b"\r\n\r\n") && got.starts_with(b"HTTP/1.1 101") {
                    break;
                }
            }
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

fn v2_header(source: SocketAddr) -> Vec<u8> {
    let SocketAddr::V4(source) = source else {
        panic!("IPv4 here")
    };
    let mut out = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    out.extend_from_slice(&[0x21, 0x11, 0, 12]);
    out.extend_from_slice(&source.ip().octets());
    out.extend_from_slice(&[127, 0, 0, 1]);
    out.extend_from_slice(&source.port().to_be_bytes());
    out.extend_from_slice(&8000u16.to_be_bytes());
    out
}

#[test]
fn v1_and_v2_headers_name_the_client_and_a_connection_without_one_is_refused() {
    let (server, _data, log) = server(&[]);
    // v1 then an upgrade from a browser origin (refused: allowed_origins is empty): the log
    // names the client the header named, not the socket's address.
    let request = format!(
        "PROXY TCP4 203.0.113.7 127.0.0.1 4242 8000\r\n{UPGRADE}Origin: https://evil.test\r\n\r\n"
    );
    let answer = exchange(server.address, request.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer:?}");
    common::wait_for_line(&log, "refused a connection from 203.0.113.7:4242: origin");
    // v2, then a WebSocket upgrade that goes through.
    let mut request = v2_header("198.51.100.9:5151".parse().unwrap());
    request.extend_from_slice(format!("{UPGRADE}\r\n").as_bytes());
    let answer = exchange(server.address, &request);
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer:?}");
    // No header: closed without an answer, counted, logged with the socket's address.
    let answer = exchange(server.address, format!("{UPGRADE}\r\n").as_bytes());
    assert_eq!(answer, "", "nothing answered");
    common::wait_for_line(&log, "refused a connection from 127.0.0.1");
    let (_, metrics) = {
        // The internal endpoints need a header too on the one listener: a LOCAL header (a
        // health check's) lets /metrics through.
        let mut request = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00".to_vec();
        request.extend_from_slice(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let answer = exchange(server.address, &request);
        common::parse_response(answer.as_bytes())
    };
    assert!(
        metrics.contains("ringcast_refusals_total{reason=\"proxy_header\"} 1"),
        "{metrics}"
    );
}

/// A TCP connection to `to` from the loopback address `from` (a client's own address).
fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    use nix::sys::socket::{bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrIn};
    use std::os::fd::{FromRawFd, IntoRawFd};
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::empty(),
        None,
    )
    .unwrap();
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrIn::new(from[0], from[1], from[2], from[3], 0),
    )
    .unwrap();
    let SocketAddr::V4(to) = to else {
        panic!("IPv4")
    };
    connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn::from(to)).unwrap();
    // SAFETY: the descriptor is a connected TCP socket this function owns.
    unsafe { TcpStream::from_raw_fd(fd.into_raw_fd()) }
}

#[test]
fn haproxy_sends_the_clients_addresses_to_both_servers() {
    let (a, _data_a, log_a) = server(&["http_server.internal_port=0"]);
    let (b, _data_b, log_b) = server(&["http_server.internal_port=0"]);
    let haproxy = common::haproxy::Haproxy::start(
        &[
            format!("a {} send-proxy-v2", a.address),
            format!("b {} send-proxy-v2", b.address),
        ],
        &[],
    );
    let front = haproxy.front;

    // Clients through HAProxy reach both servers (round robin) and are served.
    let mut clients: Vec<common::Client> = (0..4)
        .map(|i| common::Client::connect_at(front, &format!("c{i}")))
        .collect();
    for client in &mut clients {
        client.subscribe("news");
    }
    for server in [&a, &b] {
        let internal = server.internal.unwrap();
        let mut stream = TcpStream::connect(internal).unwrap();
        let body = r#"{"channel":"news","data":{"n":1}}"#;
        write!(
            stream,
            "POST /api/publish HTTP/1.1\r\nHost: x\r\nX-API-Key: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            common::API_KEY,
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    // Each server delivers to its own clients only (no engine between them yet): every
    // client gets one publication, so both servers hold clients.
    for client in &mut clients {
        let (channel, data, _) = client.publication();
        assert_eq!(
            (channel.as_str(), data),
            ("news", serde_json::json!({"n": 1}))
        );
    }

    // The servers see the clients' own addresses: a client at 127.0.0.5 with a refused
    // origin is logged as 127.0.0.5 (HAProxy connects from 127.0.0.1).
    for _ in 0..2 {
        let mut stream = connect_from([127, 0, 0, 5], front);
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(stream, "{UPGRADE}Origin: https://evil.test\r\n\r\n").unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let logs = [&log_a, &log_b].map(|l| std::fs::read_to_string(l).unwrap_or_default());
        if logs
            .iter()
            .all(|l| l.contains("refused a connection from 127.0.0.5:"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "{logs:?}");
        std::thread::sleep(Duration::from_millis(20));
    }

    // A direct connection, without the header, is refused.
    assert_eq!(exchange(a.address, format!("{UPGRADE}\r\n").as_bytes()), "");
}
