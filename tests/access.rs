//! Who may do what, over real sockets (issue 12): Centrifugo's defaults (a client may not
//! subscribe by itself), subscription tokens (their channel, user and client, their expiry
//! and `sub_refresh`, the 2501 unsubscribe when not refreshed), private `$` channels,
//! user-limited channels, anonymous permissions, RSA and ECDSA connection tokens, audience
//! and issuer, and the refusal counters in `/metrics`.

mod common;

use std::time::{Duration, Instant};

use common::{Client, Closed, Server, SECRET};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn hs256(claims: Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// A subscription token for `user` and `channel`, expiring in `ttl` seconds.
fn sub_token(user: &str, channel: &str, ttl: i64) -> String {
    hs256(json!({"sub": user, "channel": channel, "exp": now() + ttl}))
}

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Centrifugo's default: no client subscribes by itself.
const CLOSED: &str = "channel.without_namespace.allow_subscribe_for_client=false";

fn code(reply: &Value) -> u64 {
    reply["error"]["code"]
        .as_u64()
        .unwrap_or_else(|| panic!("an error reply: {reply}"))
}

#[test]
fn subscription_tokens_open_channels_that_are_closed_by_default() {
    let server = Server::start(&[CLOSED]);
    let (mut ann, _) = Client::connect(&server, "ann");
    let reply = ann.command("subscribe", json!({"channel": "news"}));
    assert_eq!(code(&reply), 103, "closed by default: {reply}");
    assert_eq!(server.refusals("not_allowed"), 1);

    // A token for this user and channel opens it; the reply carries its expiry and data.
    let token = hs256(json!({
        "sub": "ann", "channel": "news", "exp": now() + 300, "data": {"welcome": true},
        "info": {"role": "reader"},
    }));
    let reply = ann.command("subscribe", json!({"channel": "news", "token": token}));
    let result = &reply["subscribe"];
    assert_eq!(result["expires"], true, "{reply}");
    assert!(
        (298..=300).contains(&result["ttl"].as_u64().unwrap()),
        "{reply}"
    );
    assert_eq!(result["data"], json!({"welcome": true}));
    server.api("publish", &json!({"channel": "news", "data": {"n": 1}}));
    assert_eq!(ann.publication(), ("news".into(), json!({"n": 1}), 0));

    // Expired: 109, so the SDK asks for a new token; garbage: 103.
    let reply = ann.command(
        "subscribe",
        json!({"channel": "other", "token": sub_token("ann", "other", -10)}),
    );
    assert_eq!(code(&reply), 109);
    let reply = ann.command("subscribe", json!({"channel": "other", "token": "x.y.z"}));
    assert_eq!(code(&reply), 103);
    assert_eq!(server.refusals("token_expired"), 1);
    assert_eq!(server.refusals("token_invalid"), 1);

    // Another user's token closes the connection with 3500, and no one else's.
    let (mut bob, _) = Client::connect(&server, "bob");
    bob.send_text(&json!({"id": 1, "subscribe": {"channel": "news", "token": token}}).to_string());
    assert_eq!(bob.expect_close(), Closed::Code(3500));
    server.api("publish", &json!({"channel": "news", "data": {"n": 2}}));
    assert_eq!(ann.publication().1, json!({"n": 2}));
    assert_eq!(server.refusals("token_mismatch"), 1);
}

#[test]
fn private_channels_always_need_a_token() {
    let server = Server::start(&[]);
    let (mut ann, _) = Client::connect(&server, "ann");
    assert!(ann
        .command("subscribe", json!({"channel": "open"}))
        .get("subscribe")
        .is_some());
    let reply = ann.command("subscribe", json!({"channel": "$personal"}));
    assert_eq!(code(&reply), 103, "{reply}");
    assert_eq!(server.refusals("private_without_token"), 1);
    let token = sub_token("ann", "$personal", 60);
    let reply = ann.command("subscribe", json!({"channel": "$personal", "token": token}));
    assert!(reply.get("subscribe").is_some(), "{reply}");
}

#[test]
fn user_limited_channels_admit_the_users_they_list() {
    let server = Server::start(&[
        CLOSED,
        r#"channel.namespaces=[{"name":"dialog","allow_user_limited_channels":true}]"#,
    ]);
    let (mut ann, _) = Client::connect(&server, "ann");
    let (mut carl, _) = Client::connect(&server, "carl");
    let reply = ann.command("subscribe", json!({"channel": "dialog:x#ann,bob"}));
    assert!(reply.get("subscribe").is_some(), "{reply}");
    let reply = carl.command("subscribe", json!({"channel": "dialog:x#ann,bob"}));
    assert_eq!(code(&reply), 103, "{reply}");
}

#[test]
fn anonymous_users_need_the_anonymous_options() {
    let server = Server::start(&[
        "client.allow_anonymous_connect_without_token=true",
        r#"channel.namespaces=[{"name":"users","allow_subscribe_for_client":true,"allow_publish_for_client":true},{"name":"all","allow_subscribe_for_client":true,"allow_subscribe_for_anonymous":true,"allow_publish_for_subscriber":true,"allow_publish_for_anonymous":true}]"#,
    ]);
    let mut anon = Client::open(&server);
    let reply = anon.command("connect", json!({}));
    assert!(reply.get("connect").is_some(), "{reply}");
    assert_eq!(
        code(&anon.command("subscribe", json!({"channel": "users:x"}))),
        103
    );
    assert_eq!(
        code(&anon.command("publish", json!({"channel": "users:x", "data": {}}))),
        103
    );
    assert_eq!(
        code(&anon.command("publish", json!({"channel": "all:x", "data": {}}))),
        103,
        "publish for subscribers only"
    );
    assert!(anon
        .command("subscribe", json!({"channel": "all:x"}))
        .get("subscribe")
        .is_some());
    let reply = anon.command("publish", json!({"channel": "all:x", "data": {"a": 1}}));
    assert!(reply.get("publish").is_some(), "{reply}");
    // The publication carries the subscriber's anonymous ClientInfo.
    let (_, data, _) = anon.publication();
    assert_eq!(data, json!({"a": 1}));
}

#[test]
fn anonymous_connection_tokens_can_be_disallowed() {
    let server = Server::start(&["client.disallow_anonymous_connection_tokens=true"]);
    let mut anon = Client::open(&server);
    anon.send_text(
        &json!({"id": 1, "connect": {"token": hs256(json!({"exp": now() + 60}))}}).to_string(),
    );
    assert_eq!(anon.expect_close(), Closed::Code(3507));
    let (_, reply) = Client::connect(&server, "ann");
    assert!(reply.get("connect").is_some(), "{reply}");
}

/// Waits for the unsubscribe push of `channel`, skipping anything else; returns its body.
fn unsubscribe_push(client: &mut Client, channel: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(
            Instant::now() < deadline,
            "no unsubscribe push for {channel}"
        );
        let value = client.next_value().expect("open");
        if value["push"]["channel"] == channel && value["push"].get("unsubscribe").is_some() {
            return value["push"]["unsubscribe"].clone();
        }
    }
}

#[test]
fn sub_refresh_extends_a_subscription_and_an_unrefreshed_one_ends_with_2501() {
    let server = Server::start(&[CLOSED, "client.expired_sub_close_delay=1s"]);
    let (mut ann, _) = Client::connect(&server, "ann");
    for channel in ["kept", "lapsed"] {
        let reply = ann.command(
            "subscribe",
            json!({"channel": channel, "token": sub_token("ann", channel, 2)}),
        );
        assert_eq!(reply["subscribe"]["expires"], true, "{reply}");
    }
    let reply = ann.command(
        "sub_refresh",
        json!({"channel": "kept", "token": sub_token("ann", "kept", 120)}),
    );
    let ttl = reply["sub_refresh"]["ttl"].as_u64().unwrap_or(0);
    assert!((118..=120).contains(&ttl), "{reply}");
    // "lapsed" goes 2 s + 1 s of grace after its token: the push, then no publications.
    let push = unsubscribe_push(&mut ann, "lapsed");
    assert_eq!(
        push,
        json!({"code": 2501, "reason": "subscription expired"})
    );
    server.api(
        "broadcast",
        &json!({"channels": ["lapsed", "kept"], "data": {"n": 1}}),
    );
    assert_eq!(ann.publication(), ("kept".into(), json!({"n": 1}), 0));
    // Refreshing a channel one is not subscribed to: 103; another user's token: 3500.
    let reply = ann.command(
        "sub_refresh",
        json!({"channel": "lapsed", "token": sub_token("ann", "lapsed", 60)}),
    );
    assert_eq!(code(&reply), 103);
    ann.send_text(
        &json!({"id": 99, "sub_refresh": {"channel": "kept", "token": sub_token("bob", "kept", 60)}})
            .to_string(),
    );
    assert_eq!(ann.expect_close(), Closed::Code(3500));
}

#[test]
fn rsa_and_ecdsa_connection_tokens_with_audience_and_issuer() {
    let rsa_key = fixture("token-rsa-public.pem");
    let ec_key = fixture("token-ec256-public.pem");
    let rsa_setting = format!("client.token.rsa_public_key={rsa_key}");
    let ec_setting = format!("client.token.ecdsa_public_key={ec_key}");
    let server = Server::start(&[
        &rsa_setting,
        &ec_setting,
        "client.token.audience=chat",
        "client.token.issuer=backend",
    ]);
    let rsa = EncodingKey::from_rsa_pem(fixture("token-rsa-private.pem").as_bytes()).unwrap();
    let ec = EncodingKey::from_ec_pem(fixture("token-ec256-private.pem").as_bytes()).unwrap();
    let claims = json!({"sub": "ann", "aud": "chat", "iss": "backend", "exp": now() + 60});
    for (alg, key) in [(Algorithm::RS256, &rsa), (Algorithm::ES256, &ec)] {
        let token = jsonwebtoken::encode(&Header::new(alg), &claims, key).unwrap();
        let mut client = Client::open(&server);
        let reply = client.command("connect", json!({"token": token}));
        assert!(reply.get("connect").is_some(), "{alg:?}: {reply}");
    }
    // The wrong audience, the wrong issuer, an HS256 token (the test secret is configured
    // too, so HMAC is on: only aud/iss stop it): each closes with 3500.
    for bad in [
        json!({"sub": "ann", "aud": "other", "iss": "backend"}),
        json!({"sub": "ann", "aud": "chat", "iss": "evil"}),
    ] {
        let token = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &bad, &rsa).unwrap();
        let mut client = Client::open(&server);
        client.send_text(&json!({"id": 1, "connect": {"token": token}}).to_string());
        assert_eq!(client.expect_close(), Closed::Code(3500), "{bad}");
    }
    // Not yet valid (nbf): 109, as Centrifugo answers.
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &json!({"sub": "ann", "aud": "chat", "iss": "backend", "nbf": now() + 600}),
        &rsa,
    )
    .unwrap();
    let mut client = Client::open(&server);
    let reply = client.command("connect", json!({"token": token}));
    assert_eq!(code(&reply), 109, "{reply}");
}

#[test]
fn a_connection_token_subscribes_its_channels_with_their_info() {
    let server = Server::start(&[
        CLOSED,
        "channel.without_namespace.allow_publish_for_subscriber=true",
    ]);
    let token = hs256(json!({
        "sub": "ann", "exp": now() + 60,
        "subs": {"room": {"info": {"seat": 7}, "data": {"welcome": 1}}},
    }));
    let mut ann = Client::open(&server);
    let reply = ann.command("connect", json!({"token": token}));
    assert_eq!(
        reply["connect"]["subs"]["room"]["data"],
        json!({"welcome": 1}),
        "the subscription's data in its result: {reply}"
    );
    // Its own publication carries the channel info the token gave.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = ann.command("publish", json!({"channel": "room", "data": {"x": 1}}));
        if reply.get("publish").is_some() {
            break;
        }
        // The server-side subscription joins a moment after the connect reply.
        assert!(Instant::now() < deadline, "{reply}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let value = loop {
        let value = ann.next_value().expect("open");
        if value["push"].get("pub").is_some() {
            break value;
        }
    };
    assert_eq!(
        value["push"]["pub"]["info"]["chan_info"],
        json!({"seat": 7}),
        "{value}"
    );
    assert_eq!(value["push"]["pub"]["info"]["user"], "ann");
}

#[test]
fn every_user_is_subscribed_to_their_personal_channel() {
    let server = Server::start(&[
        CLOSED,
        "client.subscribe_to_user_personal_channel.enabled=true",
        "client.subscribe_to_user_personal_channel.personal_channel_namespace=personal",
        r#"channel.namespaces=[{"name":"personal"}]"#,
    ]);
    let (mut ann, reply) = Client::connect(&server, "ann");
    assert!(
        reply["connect"]["subs"].get("personal:#ann").is_some(),
        "{reply}"
    );
    server.wait_metric("subscriptions", 1);
    server.api(
        "publish",
        &json!({"channel": "personal:#ann", "data": {"dm": 1}}),
    );
    assert_eq!(
        ann.publication(),
        ("personal:#ann".into(), json!({"dm": 1}), 0)
    );
    // Anonymous connections have no personal channel.
    let anonymous = Server::start(&[
        "client.allow_anonymous_connect_without_token=true",
        "client.subscribe_to_user_personal_channel.enabled=true",
    ]);
    let mut anon = Client::open(&anonymous);
    let reply = anon.command("connect", json!({}));
    assert!(reply["connect"].get("subs").is_none(), "{reply}");
}

/// A JWKS endpoint on loopback: serves whatever `body` holds (500 when empty), counting the
/// requests. Stops with the test process.
struct JwksServer {
    url: String,
    body: std::sync::Arc<std::sync::Mutex<String>>,
    requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl JwksServer {
    fn start(body: &str) -> JwksServer {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/jwks", listener.local_addr().unwrap());
        let served = std::sync::Arc::new(std::sync::Mutex::new(body.to_owned()));
        let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (body, count) = (served.clone(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request);
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let body = body.lock().unwrap().clone();
                let status = if body.is_empty() {
                    "500 Internal Server Error"
                } else {
                    "200 OK"
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        JwksServer {
            url,
            body: served,
            requests,
        }
    }

    fn serve(&self, body: &str) {
        *self.body.lock().unwrap() = body.to_owned();
    }
}

/// An RS256 connection token for `user` signed with `private` and naming `kid`.
fn rs256_with_kid(user: &str, private: &str, kid: &str) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.into());
    let key = EncodingKey::from_rsa_pem(fixture(private).as_bytes()).unwrap();
    jsonwebtoken::encode(&header, &json!({"sub": user, "exp": now() + 60}), &key).unwrap()
}

/// Connects with `token` until the server accepts it (a key still being fetched answers
/// 100, temporary, which an SDK retries): the connect reply, or the last error.
fn connect_retrying(server: &Server, token: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut client = Client::open(server);
        let reply = client.command("connect", json!({"token": token}));
        if reply.get("connect").is_some() || Instant::now() > deadline {
            return reply;
        }
        assert_eq!(
            reply["error"]["code"], 100,
            "only the temporary error: {reply}"
        );
        assert_eq!(reply["error"]["temporary"], true, "{reply}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn jwks_keys_are_fetched_by_kid_rotated_and_served_from_cache_when_the_endpoint_fails() {
    let jwks = JwksServer::start(&fixture("token-jwks-1.json"));
    let endpoint = format!("client.token.jwks_public_endpoint={}", jwks.url);
    let server = Server::start(&[&endpoint]);
    let first = rs256_with_kid("ann", "token-rsa-private.pem", "key-1");
    let reply = connect_retrying(&server, &first);
    assert!(reply.get("connect").is_some(), "{reply}");
    // The endpoint rotates in key-2: a token naming it makes the server fetch again.
    jwks.serve(&fixture("token-jwks-2.json"));
    let second = rs256_with_kid("bob", "token-rsa2-private.pem", "key-2");
    let reply = connect_retrying(&server, &second);
    assert!(reply.get("connect").is_some(), "{reply}");
    // The endpoint fails: cached keys still verify, at once.
    jwks.serve("");
    for token in [&first, &second] {
        let mut client = Client::open(&server);
        let reply = client.command("connect", json!({"token": token}));
        assert!(reply.get("connect").is_some(), "{reply}");
    }
    // A kid nobody has: a temporary error, never a pass; fetches stay rate-limited.
    let before = jwks.requests.load(std::sync::atomic::Ordering::SeqCst);
    let started = Instant::now();
    let unknown = rs256_with_kid("carl", "token-rsa2-private.pem", "key-3");
    for _ in 0..20 {
        let mut client = Client::open(&server);
        let reply = client.command("connect", json!({"token": unknown}));
        assert_eq!(reply["error"]["code"], 100, "{reply}");
    }
    let fetches = jwks.requests.load(std::sync::atomic::Ordering::SeqCst) - before;
    // At most one fetch a second (JWKS_FETCH_INTERVAL_MIN_MS), whatever the machine's speed.
    let allowed = started.elapsed().as_secs() as usize + 2;
    assert!(
        fetches <= allowed,
        "{fetches} fetches for 20 connects (at most {allowed})"
    );
    assert!(server.refusals("token_unverifiable") >= 20);
    // A token signed with key-2's private key but naming key-1: a bad signature, 3500.
    let mismatched = rs256_with_kid("dan", "token-rsa2-private.pem", "key-1");
    let mut client = Client::open(&server);
    client.send_text(&json!({"id": 1, "connect": {"token": mismatched}}).to_string());
    assert_eq!(client.expect_close(), Closed::Code(3500));
}

#[test]
fn a_subscription_type_this_server_does_not_have_is_refused() {
    let server = Server::start(&[]);
    let (mut ann, _) = Client::connect(&server, "ann");
    // Centrifugo 6.8's map subscription (type 1): refused, never taken for a stream.
    let reply = ann.command("subscribe", json!({"channel": "m", "type": 1}));
    assert_eq!(code(&reply), 103, "{reply}");
    assert!(ann
        .command("subscribe", json!({"channel": "m"}))
        .get("subscribe")
        .is_some());
}
