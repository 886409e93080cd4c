//! Slow and oversized HTTP clients (issue 14): a request must arrive whole within
//! `http_server.request_timeout` from its first byte however its bytes trickle in (408), and
//! a refused request's answer (408, 413, 431) reaches the client before the connection
//! closes, instead of a reset; other clients keep being served.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Client, Server};

/// What the server sent until it closed (or 10 s passed).
fn read_to_close(stream: &mut TcpStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    // Bounded by the read timeout and the close.
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn a_trickled_request_gets_408_within_the_request_timeout() {
    let server = Server::start(&["http_server.request_timeout=1s"]);
    let mut stream = TcpStream::connect(server.address).unwrap();
    stream.write_all(b"GET /health HTTP/1.1\r\n").unwrap();
    // One header byte every 100 ms: each read is quick, the request never ends.
    let started = Instant::now();
    let mut response = String::new();
    stream.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 1024];
    // Bounded: 15 s, far past the 1 s the server allows.
    while started.elapsed() < Duration::from_secs(15) {
        if stream.write_all(b"X").is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => response.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => break,
        }
        if response.contains("\r\n\r\n") {
            break;
        }
    }
    assert!(response.starts_with("HTTP/1.1 408"), "{response:?}");
    // Meanwhile and after, others are served.
    assert_eq!(server.http("GET", "/health", &[], b"").0, 200);
    let (mut client, _) = Client::connect(&server, "u");
    client.subscribe("x");
}

#[test]
fn an_oversized_body_gets_its_413_before_the_close() {
    let server = Server::start(&[]);
    let mut stream = TcpStream::connect(server.address).unwrap();
    let head = format!(
        "POST /api/publish HTTP/1.1\r\nHost: x\r\nX-API-Key: {}\r\nContent-Length: {}\r\n\r\n",
        common::API_KEY,
        64 << 20
    );
    stream.write_all(head.as_bytes()).unwrap();
    // The client goes on sending its body while it reads the answer, as curl does.
    let mut writer = stream.try_clone().unwrap();
    let sending = std::thread::spawn(move || {
        let chunk = vec![b'x'; 64 << 10];
        for _ in 0..128 {
            if writer.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let response = read_to_close(&mut stream);
    sending.join().unwrap();
    assert!(response.starts_with("HTTP/1.1 413"), "{response:?}");
}

#[test]
fn too_many_headers_get_431() {
    let server = Server::start(&[]);
    let mut stream = TcpStream::connect(server.address).unwrap();
    let mut request = String::from("GET /health HTTP/1.1\r\nHost: x\r\n");
    for i in 0..100 {
        request.push_str(&format!("X-H{i}: v\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let response = read_to_close(&mut stream);
    assert!(response.starts_with("HTTP/1.1 431"), "{response:?}");
    assert_eq!(server.http("GET", "/health", &[], b"").0, 200);
}

#[test]
fn out_of_file_descriptors_backs_off_logs_once_and_recovers() {
    use std::os::unix::process::CommandExt;
    let data = common::DataDir::new();
    let log_path = data.0.join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut command = Server::command(&data, None, &[], &[]);
    // SAFETY: only setrlimit between fork and exec (async-signal-safe).
    unsafe {
        command.pre_exec(|| {
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, 96, 96)
                .map_err(std::io::Error::from)
        });
    }
    let server = Server::spawn_with_stderr(command, log.into());
    // Far more connections than the server has descriptors for: the kernel queues them, the
    // server's accepts fail with EMFILE.
    let mut held = Vec::new();
    for _ in 0..200 {
        if let Ok(stream) = TcpStream::connect(server.address) {
            held.push(stream);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let failures = || {
        std::fs::read_to_string(&log_path)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("accept failed"))
            .count()
    };
    while failures() == 0 {
        assert!(Instant::now() < deadline, "the accepts never failed");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Once a second for a while: still at most one line per shard (every 10 s).
    std::thread::sleep(Duration::from_millis(1_500));
    let logged = failures();
    assert!(
        (1..=2).contains(&logged),
        "{logged} lines: {}",
        std::fs::read_to_string(&log_path).unwrap()
    );
    // The descriptors come back: the server serves again.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if server.http("GET", "/health", &[], b"").0 == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "never served again");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (mut client, _) = Client::connect(&server, "u");
    client.subscribe("x");
}
