//! Bad input gets its defined answer, and a healthy client on the same server keeps working
//! through all of it.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{Client, Closed, Server};
use serde_json::{json, Value};

const UPGRADE: &str = "GET /connection/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// A raw connection after a successful upgrade, for sending frames tungstenite would refuse
/// to produce.
fn upgraded(server: &Server) -> TcpStream {
    let mut stream = TcpStream::connect(server.address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(UPGRADE.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    assert!(String::from_utf8_lossy(&head)
        .contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    stream
}

/// Reads server frames until a close frame; returns its code.
fn close_code_of(stream: &mut TcpStream) -> Option<u16> {
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    let mut rest = &bytes[..];
    // Bounded by the received bytes.
    while rest.len() >= 2 {
        let opcode = rest[0] & 0x0f;
        let (len, header) = match rest[1] & 0x7f {
            126 => (u16::from_be_bytes([rest[2], rest[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(rest[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        let payload = &rest[header..header + len];
        if opcode == 0x8 {
            return (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
        }
        rest = &rest[header + len..];
    }
    None
}

fn connect_command() -> String {
    format!(
        "{{\"id\":1,\"connect\":{{\"token\":\"{}\"}}}}",
        common::token("u", 3600)
    )
}

#[test]
fn every_kind_of_bad_input_gets_its_answer_while_others_keep_working() {
    let server = Server::start(&["websocket.message_size_limit=1024"]);
    let mut healthy = Client::connect(&server, "healthy").0;
    healthy.subscribe("heartbeat");
    let mut beat = 0;
    let mut check_healthy = |healthy: &mut Client| {
        beat += 1;
        server.api("publish", &json!({"channel": "heartbeat", "data": beat}));
        assert_eq!(
            healthy.publication().1,
            json!(beat),
            "healthy client still served"
        );
    };

    // Malformed HTTP.
    let (status, _) = common::parse_response(&server.raw(b"GARBAGE\r\n\r\n"));
    assert_eq!(status, 400);
    let (status, _) = common::parse_response(&server.raw(&[b'x'; 20_000]));
    assert_eq!(status, 431, "endless head");
    check_healthy(&mut healthy);

    // Bad upgrades: no key, wrong version, plain GET.
    let no_key = UPGRADE.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "");
    assert_eq!(
        common::parse_response(&server.raw(no_key.as_bytes())).0,
        400
    );
    let old = UPGRADE.replace("Version: 13", "Version: 8");
    assert_eq!(common::parse_response(&server.raw(old.as_bytes())).0, 400);
    let plain = server.http("GET", "/connection/websocket", &[], b"");
    assert_eq!(plain.0, 400);
    assert_eq!(server.http("GET", "/nowhere", &[], b"").0, 404);
    check_healthy(&mut healthy);

    // Bad frames: unmasked → 1002; invalid UTF-8 text → 1007; oversized message → 1009.
    let mut stream = upgraded(&server);
    stream.write_all(&common::frame(0x1, false, b"{}")).unwrap();
    assert_eq!(close_code_of(&mut stream), Some(1002));
    let mut stream = upgraded(&server);
    stream
        .write_all(&common::frame(0x1, true, &[0xff, 0xfe, 0xfd]))
        .unwrap();
    assert_eq!(close_code_of(&mut stream), Some(1007));
    let mut stream = upgraded(&server);
    stream
        .write_all(&common::frame(0x1, true, &[b' '; 2000]))
        .unwrap();
    assert_eq!(close_code_of(&mut stream), Some(1009));
    // A client's close is echoed with its code when the code may be sent, else 1002.
    for (sent, echoed) in [(4001u16, 4001), (1000, 1000), (1005, 1002), (999, 1002)] {
        let mut stream = upgraded(&server);
        stream
            .write_all(&common::frame(0x8, true, &sent.to_be_bytes()))
            .unwrap();
        assert_eq!(close_code_of(&mut stream), Some(echoed), "close {sent}");
    }
    check_healthy(&mut healthy);

    // Content-Length must be digits, and repeated ones must agree.
    for bad in ["+5", "5, 5"] {
        let request =
            format!("POST /api/info HTTP/1.1\r\nHost: x\r\nContent-Length: {bad}\r\n\r\n12345");
        assert_eq!(
            common::parse_response(&server.raw(request.as_bytes())).0,
            400,
            "{bad}"
        );
    }
    let twice =
        "POST /api/info HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\n12345";
    assert_eq!(common::parse_response(&server.raw(twice.as_bytes())).0, 400);

    // Protocol errors close with 3501 bad request: non-JSON, unknown method, a command
    // before connect, a second connect.
    for lines in [
        vec!["not json".to_owned()],
        vec![connect_command(), r#"{"id":2,"frobnicate":{}}"#.to_owned()],
        vec![r#"{"id":1,"subscribe":{"channel":"x"}}"#.to_owned()],
        vec![
            connect_command(),
            connect_command().replace("\"id\":1", "\"id\":2"),
        ],
        vec![
            connect_command(),
            r#"{"id":2,"subscribe":{"channel":""}}"#.to_owned(),
        ],
    ] {
        let mut client = Client::open(&server);
        for line in &lines {
            client.send_text(line);
        }
        assert_eq!(client.expect_close(), Closed::Code(3501), "{lines:?}");
    }
    // No token while anonymous connects are off: 3501 too.
    let mut client = Client::open(&server);
    client.send_text(r#"{"id":1,"connect":{}}"#);
    assert_eq!(client.expect_close(), Closed::Code(3501));
    check_healthy(&mut healthy);

    // Tokens: a bad one closes with 3500, an expired one gets error 109.
    let mut client = Client::open(&server);
    client.send_text(r#"{"id":1,"connect":{"token":"abc.def.ghi"}}"#);
    assert_eq!(client.expect_close(), Closed::Code(3500));
    let mut expired = Client::open(&server);
    let reply = expired.command("connect", json!({"token": common::token("u", -60)}));
    assert_eq!(
        reply["error"],
        json!({"code": 109, "message": "token expired"})
    );
    // After the error the server waits for the client to leave (as Centrifugo does).
    drop(expired);

    // Subscribe twice → 105; publish while forbidden → 103; `send` → close 3508.
    let (mut client, _) = Client::connect(&server, "twice");
    client.subscribe("dup");
    let reply = client.command("subscribe", json!({"channel": "dup"}));
    assert_eq!(reply["error"]["code"], 105, "{reply}");
    let reply = client.command("publish", json!({"channel": "dup", "data": {}}));
    assert_eq!(
        reply["error"],
        json!({"code": 103, "message": "permission denied"})
    );
    let reply = client.command("unsubscribe", json!({"channel": "never-subscribed"}));
    assert_eq!(reply["unsubscribe"], json!({}));
    client.send_text(r#"{"send":{"data":{}}}"#);
    assert_eq!(client.expect_close(), Closed::Code(3508));
    check_healthy(&mut healthy);

    // API: wrong or missing key → 401 with an empty body; bad JSON → 400; missing data →
    // error 107; unknown method → 404; GET → 405.
    let body = br#"{"channel":"x","data":1}"#;
    assert_eq!(
        server.http("POST", "/api/publish", &[("X-API-Key", "wrong")], body),
        (401, String::new())
    );
    assert_eq!(
        server.http("POST", "/api/publish", &[], body),
        (401, String::new())
    );
    assert_eq!(
        server
            .http(
                "POST",
                "/api/publish",
                &[("Authorization", "apikey wrong")],
                body
            )
            .0,
        401
    );
    let key = [("Authorization", "apikey test-api-key")];
    assert_eq!(server.http("POST", "/api/publish", &key, b"{nope").0, 400);
    let (status, reply) = server.http("POST", "/api/publish", &key, br#"{"channel":"x"}"#);
    assert_eq!(
        (status, reply.as_str()),
        (200, r#"{"error":{"code":107,"message":"bad request"}}"#)
    );
    assert_eq!(server.http("POST", "/api/nope", &key, b"{}").0, 404);
    assert_eq!(server.http("GET", "/api/publish", &key, b"").0, 405);
    check_healthy(&mut healthy);

    // Every refused connection is gone from the server's books; only the healthy one stays.
    let mut connections = 0;
    for _ in 0..100 {
        connections = server.metric("connections");
        if connections == 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(connections, 1, "closed connections are unregistered");
}

#[test]
fn http_keep_alive_serves_several_requests_on_one_connection() {
    let server = Server::start(&[]);
    let mut stream = TcpStream::connect(server.address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let request = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    // Two requests pipelined in one write, then a third after reading.
    stream
        .write_all(&[&request[..], &request[..]].concat())
        .unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while seen.matches("200 OK").count() < 2 {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "server closed a keep-alive connection");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut rest = String::new();
    stream.read_to_string(&mut rest).unwrap();
    assert!(rest.starts_with("HTTP/1.1 200 OK"), "{rest}");
    assert!(rest.contains("Connection: close"));
}

#[test]
fn anonymous_connect_when_allowed_and_connect_result_shape() {
    let server = Server::start(&["client.allow_anonymous_connect_without_token=true"]);
    let mut client = Client::open(&server);
    let reply = client.command("connect", json!({"name": "js"}));
    let result = &reply["connect"];
    assert_eq!(result["client"].as_str().unwrap().len(), 36, "{reply}");
    assert_eq!(result["ping"], 25);
    assert_eq!(result["pong"], true);
    assert!(result.get("expires").is_none());
    // A token with exp reports expires/ttl.
    let mut client = Client::open(&server);
    let reply = client.command("connect", json!({"token": common::token("42", 120)}));
    assert_eq!(reply["connect"]["expires"], true);
    let ttl = reply["connect"]["ttl"].as_u64().unwrap();
    assert!((110..=120).contains(&ttl), "{reply}");
}

#[test]
fn publication_data_nested_past_the_limit_is_refused_with_107() {
    let server = Server::start(&["channel.without_namespace.allow_publish_for_client=true"]);
    let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    // The finding: 5,000,000 levels through the API, which subscribers' SDKs cannot parse.
    let deep = format!(r#"{{"channel":"c","data":{}}}"#, nested(5_000_000));
    let (status, body) = server.http(
        "POST",
        "/api/publish",
        &[("X-API-Key", common::API_KEY)],
        deep.as_bytes(),
    );
    assert_eq!(status, 200);
    assert!(body.contains(r#""code":107"#), "{body}");
    // serde_json itself refuses values this deep, so the bodies go out as raw text.
    let post = |method: &str, body: String| {
        let (status, body) = server.http(
            "POST",
            &format!("/api/{method}"),
            &[("X-API-Key", common::API_KEY)],
            body.as_bytes(),
        );
        assert_eq!(status, 200, "{body}");
        body
    };
    let body = post(
        "broadcast",
        format!(r#"{{"channels":["a","b"],"data":{}}}"#, nested(200)),
    );
    assert!(body.contains(r#""code":107"#), "{body}");
    // At the limit it is accepted.
    let body = post(
        "publish",
        format!(r#"{{"channel":"c","data":{}}}"#, nested(128)),
    );
    assert_eq!(body, r#"{"result":{}}"#);
    // A client publish gets the same answer and stays connected.
    let (mut client, _) = Client::connect(&server, "u");
    client.send_text(&format!(
        r#"{{"id":100,"publish":{{"channel":"c","data":{}}}}}"#,
        nested(129)
    ));
    let reply = client.reply(100);
    assert_eq!(reply["error"]["code"], 107, "{reply}");
    client.subscribe("still-here");
}

#[test]
fn the_connect_reply_lists_only_the_subscriptions_made() {
    let server = Server::start(&["client.channel_limit=2"]);
    let token = |channels: Value| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &json!({"sub": "u", "channels": channels}),
            &jsonwebtoken::EncodingKey::from_secret(common::SECRET.as_bytes()),
        )
        .unwrap()
    };
    // A channel in no configured namespace refuses the connect with 102, as Centrifugo.
    let mut client = Client::open(&server);
    let reply = client.command(
        "connect",
        json!({"token": token(json!(["news", "nope:unknown-namespace"]))}),
    );
    assert_eq!(reply["error"]["code"], 102, "{reply}");
    let mut client = Client::open(&server);
    let reply = client.command(
        "connect",
        json!({"token": token(json!(["news", "news", "sport", "weather"]))}),
    );
    let subs = reply["connect"]["subs"].as_object().expect("subs");
    let listed: Vec<&String> = subs.keys().collect();
    assert_eq!(listed, ["news", "sport"], "{reply}");
    // And they are real: publications reach the connection on both.
    server.wait_metric("subscriptions", 2);
    server.api("publish", &json!({"channel": "sport", "data": {"goal": 1}}));
    assert_eq!(client.publication().0, "sport");
}

/// Reads one HTTP response (status, body) from `reader`.
fn read_response(reader: &mut std::io::BufReader<TcpStream>) -> (u16, String) {
    use std::io::BufRead;
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some(value) = line.strip_prefix("Content-Length: ") {
            length = value.parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    std::io::Read::read_exact(reader, &mut body).unwrap();
    let code = status.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, String::from_utf8(body).unwrap())
}

#[test]
fn pipelined_api_requests_are_answered_in_order() {
    // History on: the offsets in the answers prove the order.
    let server = Server::start(&[
        "channel.without_namespace.history_size=10",
        "channel.without_namespace.history_ttl=300s",
    ]);
    let stream = TcpStream::connect(server.address).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    // 300 requests in one write (more than the server keeps in flight): publishes to one
    // channel, to channels of both shards, and ones that fail, interleaved.
    let mut requests = Vec::new();
    let mut expected = Vec::new();
    for i in 0..300u32 {
        let (body, want) = match i % 3 {
            0 => (r#"{"channel":"seq","data":1}"#.to_owned(), i / 3 + 1),
            1 => (format!(r#"{{"channel":"spread-{i}","data":1}}"#), 1),
            _ => (r#"{"channel":"nope:x","data":1}"#.to_owned(), 0),
        };
        requests.extend_from_slice(
            format!(
                "POST /api/publish HTTP/1.1\r\nHost: t\r\nX-API-Key: {}\r\nContent-Length: {}\r\n\r\n{body}",
                common::API_KEY,
                body.len()
            )
            .as_bytes(),
        );
        expected.push(want);
    }
    // Then a WebSocket upgrade: answered after every earlier response.
    requests.extend_from_slice(b"GET /connection/websocket HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
    (&stream).write_all(&requests).unwrap();
    let mut reader = std::io::BufReader::new(stream);
    for (i, want) in expected.iter().enumerate() {
        let (status, body) = read_response(&mut reader);
        assert_eq!(status, 200, "request {i}: {body}");
        let reply: serde_json::Value = serde_json::from_str(&body).unwrap();
        if *want == 0 {
            assert_eq!(reply["error"]["code"], 102, "request {i}: {reply}");
        } else {
            assert_eq!(reply["result"]["offset"], *want, "request {i}: {reply}");
        }
    }
    let mut status = String::new();
    std::io::BufRead::read_line(&mut reader, &mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 101"), "{status}");
}

#[test]
fn expect_100_continue_is_answered_before_the_body_is_read() {
    use std::io::BufRead;
    let server = Server::start(&[]);
    let stream = TcpStream::connect(server.address).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let body = r#"{"channel":"c","data":{"x":1}}"#;
    let head = |expect: &str| {
        format!(
            "POST /api/publish HTTP/1.1\r\nHost: t\r\nX-API-Key: {}\r\nContent-Length: {}\r\n{expect}\r\n",
            common::API_KEY,
            body.len()
        )
    };
    // A plain request first, pipelined with the head of one that waits: the interim answer
    // comes after the first request's response, and only then is the body sent (as curl
    // does), so a server that never answers 100 fails this test by its read timeout.
    let mut two = format!("{}{body}", head("")).into_bytes();
    two.extend_from_slice(head("Expect: 100-continue\r\n").as_bytes());
    (&stream).write_all(&two).unwrap();
    let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
    let (status, reply) = read_response(&mut reader);
    assert_eq!(status, 200, "{reply}");
    let mut interim = String::new();
    reader.read_line(&mut interim).unwrap();
    assert_eq!(interim, "HTTP/1.1 100 Continue\r\n");
    let mut blank = String::new();
    reader.read_line(&mut blank).unwrap();
    assert_eq!(blank, "\r\n");
    (&stream).write_all(body.as_bytes()).unwrap();
    let (status, reply) = read_response(&mut reader);
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply, r#"{"result":{}}"#);

    // A body sent without waiting is read as it comes (an interim answer is allowed, not
    // needed); an unknown expectation gets 417.
    let eager = format!("{}{body}", head("Expect: 100-continue\r\n"));
    (&stream).write_all(eager.as_bytes()).unwrap();
    let (mut status, mut reply) = read_response(&mut reader);
    if status == 100 {
        (status, reply) = read_response(&mut reader);
    }
    assert_eq!((status, reply.as_str()), (200, r#"{"result":{}}"#));
    (&stream)
        .write_all(head("Expect: something-else\r\n").as_bytes())
        .unwrap();
    let (status, _) = read_response(&mut reader);
    assert_eq!(status, 417);
}
