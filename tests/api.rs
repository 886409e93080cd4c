//! The server API's HTTP edge as Centrifugo has it (issue 13): the `api_key` query
//! parameter, and the transport error mode (`X-Centrifugo-Error-Mode: transport`: HTTP
//! statuses with the error object as the body).

mod common;

use common::{Server, API_KEY};
use serde_json::{json, Value};

fn post(server: &Server, path: &str, headers: &[(&str, &str)], body: Value) -> (u16, Value) {
    let (status, text) = server.http("POST", path, headers, body.to_string().as_bytes());
    let value = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, value)
}

#[test]
fn the_api_key_may_come_as_a_query_parameter() {
    let server = Server::start(&[]);
    let body = json!({"channel": "c", "data": {}});
    let path = format!("/api/publish?api_key={API_KEY}");
    assert_eq!(
        post(&server, &path, &[], body.clone()),
        (200, json!({"result": {}}))
    );
    assert_eq!(
        post(&server, "/api/publish?api_key=wrong", &[], body.clone()).0,
        401
    );
    assert_eq!(post(&server, "/api/publish", &[], body).0, 401);
}

#[test]
fn transport_error_mode_answers_with_http_statuses() {
    let server = Server::start(&[]);
    let transport = [
        ("X-API-Key", API_KEY),
        ("X-Centrifugo-Error-Mode", "transport"),
    ];
    // An unknown namespace: 404 with the error object itself as the body.
    let (status, body) = post(
        &server,
        "/api/publish",
        &transport,
        json!({"channel": "nope:x", "data": {}}),
    );
    assert_eq!(
        (status, body),
        (404, json!({"code": 102, "message": "unknown channel"}))
    );
    // History where it is off: 400.
    let (status, body) = post(&server, "/api/history", &transport, json!({"channel": "c"}));
    assert_eq!((status, &body["code"]), (400, &json!(108)), "{body}");
    // Success is unchanged; without the header errors stay in the body with 200.
    let (status, body) = post(
        &server,
        "/api/publish",
        &transport,
        json!({"channel": "c", "data": {}}),
    );
    assert_eq!((status, body), (200, json!({"result": {}})));
    let (status, body) = post(
        &server,
        "/api/publish",
        &[("X-API-Key", API_KEY)],
        json!({"channel": "nope:x", "data": {}}),
    );
    assert_eq!((status, &body["error"]["code"]), (200, &json!(102)));
}

#[test]
fn b64data_publishes_the_json_it_encodes() {
    use base64::Engine as _;
    let server = Server::start(&[]);
    let (mut client, _) = common::Client::connect(&server, "u");
    client.subscribe("c");
    let key = [("X-API-Key", API_KEY)];
    let encoded = base64::engine::general_purpose::STANDARD.encode(br#"{"n": 7}"#);
    let (status, body) = post(
        &server,
        "/api/publish",
        &key,
        json!({"channel": "c", "data": {"ignored": true}, "b64data": encoded}),
    );
    assert_eq!((status, body), (200, json!({"result": {}})));
    assert_eq!(client.publication(), ("c".into(), json!({"n": 7}), 0));
    // Not base64, or base64 of something that is not JSON: 107.
    let not_json = base64::engine::general_purpose::STANDARD.encode(b"plain text");
    for b64 in ["%%%", not_json.as_str()] {
        let (_, body) = post(
            &server,
            "/api/publish",
            &key,
            json!({"channel": "c", "b64data": b64}),
        );
        assert_eq!(body["error"]["code"], 107, "{b64}: {body}");
    }
}

#[test]
fn batch_runs_its_commands_in_order_and_answers_each() {
    let server = Server::start(&[
        "channel.without_namespace.history_size=10",
        "channel.without_namespace.history_ttl=60s",
    ]);
    let key = [("X-API-Key", API_KEY)];
    let commands = json!([
        {"publish": {"channel": "b", "data": {"n": 1}}},
        {"publish": {"channel": "b", "data": {"n": 2}}},
        {"history": {"channel": "b", "limit": -1}},
        {"nope": {}},
        {"publish": {"channel": "nope:x", "data": {}}},
        {"broadcast": {"channels": ["b", "b2"], "data": {"n": 3}}},
    ]);
    let (status, body) = post(&server, "/api/batch", &key, json!({"commands": commands}));
    assert_eq!(status, 200, "{body}");
    assert!(body.get("result").is_none(), "replies at the top: {body}");
    let replies = body["replies"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"));
    assert_eq!(replies.len(), 6, "{body}");
    assert_eq!(replies[0]["publish"]["offset"], 1, "{body}");
    assert_eq!(replies[1]["publish"]["offset"], 2);
    // In order: the history read after both publishes sees both.
    let offsets: Vec<u64> = replies[2]["history"]["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, [1, 2], "{body}");
    assert_eq!(replies[3]["error"]["code"], 104, "an unknown method");
    assert_eq!(replies[4]["error"]["code"], 102, "an unknown namespace");
    assert_eq!(
        replies[5]["broadcast"]["responses"][0]["result"]["offset"],
        3
    );

    // Parallel: sent at once, replies still in request order.
    let commands: Vec<Value> = (0..20)
        .map(|i| json!({"publish": {"channel": format!("p{i}"), "data": {"i": i}}}))
        .collect();
    let (_, body) = post(
        &server,
        "/api/batch",
        &key,
        json!({"commands": commands, "parallel": true}),
    );
    assert!(body.get("result").is_none(), "replies at the top: {body}");
    let replies = body["replies"].as_array().unwrap();
    assert_eq!(replies.len(), 20);
    assert!(
        replies.iter().all(|r| r["publish"]["offset"] == 1),
        "{body}"
    );
    // Too many commands: 107 for the batch.
    let commands: Vec<Value> = (0..1001).map(|_| json!({"info": {}})).collect();
    let (_, body) = post(&server, "/api/batch", &key, json!({"commands": commands}));
    assert_eq!(body["error"]["code"], 107, "{body}");
}

#[test]
fn info_reports_the_node_and_each_shard() {
    let server = Server::start(&["--shards", "2"]);
    let clients = common::clients_on_every_shard(&server, "u", 1);
    let (_, body) = post(&server, "/api/info", &[("X-API-Key", API_KEY)], json!({}));
    let node = &body["result"]["nodes"][0];
    let shards = node["shards"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"));
    assert_eq!(shards.len(), 2, "{body}");
    let sum: u64 = shards
        .iter()
        .map(|s| s["num_clients"].as_u64().unwrap())
        .sum();
    assert_eq!(node["num_clients"].as_u64(), Some(sum), "{body}");
    assert_eq!(sum, clients.len() as u64, "{body}");
    assert!(
        shards.iter().all(|s| s["num_clients"].as_u64() >= Some(1)),
        "{body}"
    );
}

#[test]
fn the_legacy_api_form_runs_each_line_in_order() {
    let server = Server::start(&[
        "channel.without_namespace.history_size=10",
        "channel.without_namespace.history_ttl=60s",
    ]);
    let body = [
        json!({"id": 1, "method": "publish", "params": {"channel": "l", "data": {"n": 1}}}),
        json!({"id": 2, "method": "PUBLISH", "params": {"channel": "l", "data": {"n": 2}}}),
        json!({"id": 3, "method": 6, "params": {"channel": "l", "limit": -1}}),
        json!({"id": 4, "method": "nope", "params": {}}),
    ]
    .iter()
    .map(Value::to_string)
    .collect::<Vec<_>>()
    .join("\n");
    let (status, text) = server.http("POST", "/api", &[("X-API-Key", API_KEY)], body.as_bytes());
    assert_eq!(status, 200, "{text}");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert_eq!(
        (&lines[0]["id"], &lines[0]["result"]["offset"]),
        (&json!(1), &json!(1))
    );
    assert_eq!(lines[1]["result"]["offset"], 2);
    assert_eq!(
        lines[2]["result"]["publications"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(
        (&lines[3]["id"], &lines[3]["error"]["code"]),
        (&json!(4), &json!(104))
    );
    // Not JSON: 400, as the methods' own paths answer.
    let (status, _) = server.http("POST", "/api", &[("X-API-Key", API_KEY)], b"{");
    assert_eq!(status, 400);
}

#[test]
fn a_repeated_idempotency_key_publishes_once_and_answers_the_same_offset() {
    let server = Server::start(&[
        "channel.without_namespace.history_size=10",
        "channel.without_namespace.history_ttl=60s",
    ]);
    let (mut client, _) = common::Client::connect(&server, "u");
    client.subscribe("i");
    let key = [("X-API-Key", API_KEY)];
    let publish = |n: u64, idempotency_key: &str| {
        post(
            &server,
            "/api/publish",
            &key,
            json!({"channel": "i", "data": {"n": n}, "idempotency_key": idempotency_key}),
        )
        .1
    };
    let first = publish(1, "k1");
    assert_eq!(first["result"]["offset"], 1, "{first}");
    assert_eq!(
        publish(2, "k1"),
        first,
        "the same answer, nothing published"
    );
    assert_eq!(
        publish(3, "k2")["result"]["offset"],
        2,
        "another key publishes"
    );
    // The subscriber saw the two publications, not the repeat.
    assert_eq!(client.publication().1, json!({"n": 1}));
    assert_eq!(client.publication().1, json!({"n": 3}));
    let (_, history) = post(
        &server,
        "/api/history",
        &key,
        json!({"channel": "i", "limit": -1}),
    );
    assert_eq!(
        history["result"]["publications"].as_array().map(Vec::len),
        Some(2)
    );
    // Keys are per channel: the same key on a broadcast to another channel publishes there.
    let (_, body) = post(
        &server,
        "/api/broadcast",
        &key,
        json!({"channels": ["i", "j"], "data": {"n": 4}, "idempotency_key": "k1"}),
    );
    let responses = &body["result"]["responses"];
    assert_eq!(responses[0]["result"]["offset"], 1, "i: k1's first result");
    assert_eq!(responses[1]["result"]["offset"], 1, "j: published");
}

#[test]
fn exclude_client_leaves_the_publisher_out_of_live_delivery_only() {
    let server = Server::start(&[
        "channel.without_namespace.history_size=100",
        "channel.without_namespace.history_ttl=60s",
        "channel.without_namespace.allow_publish_for_subscriber=true",
    ]);
    let mut clients = common::clients_on_every_shard(&server, "x", 2);
    for client in &mut clients {
        client.subscribe("feed");
    }
    // Each client publishes its index; the publication's info carries its client id.
    let n = clients.len();
    for (i, client) in clients.iter_mut().enumerate() {
        let reply = client.command("publish", json!({"channel": "feed", "data": {"who": i}}));
        assert!(reply.get("publish").is_some(), "{reply}");
    }
    let mut ids = vec![String::new(); n];
    for client in &mut clients {
        for _ in 0..n {
            let value = loop {
                let value = client.next_value().unwrap();
                if value["push"].get("pub").is_some() {
                    break value;
                }
            };
            let publication = &value["push"]["pub"];
            let who = publication["data"]["who"].as_u64().unwrap() as usize;
            ids[who] = publication["info"]["client"].as_str().unwrap().to_owned();
        }
    }
    let all: std::collections::BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(all.len(), n, "{all:?}");
    // Each client, excluded in turn, misses only the publications that exclude it.
    for excluded in &all {
        let reply = server.api(
            "publish",
            &json!({"channel": "feed", "data": {"skip": excluded}, "exclude_client": excluded}),
        );
        assert!(reply["result"]["offset"].is_u64(), "{reply}");
        let reply = server.api(
            "broadcast",
            &json!({"channels": ["feed"], "data": {"all": true}, "exclude_client": "" }),
        );
        assert!(reply.get("result").is_some(), "{reply}");
    }
    for (i, client) in clients.iter_mut().enumerate() {
        let mut skips = std::collections::BTreeSet::new();
        let mut alls = 0;
        while alls < all.len() {
            let (_, data, _) = client.publication();
            if let Some(skip) = data.get("skip") {
                skips.insert(skip.as_str().unwrap().to_owned());
            } else {
                alls += 1;
            }
        }
        let mut expected = all.clone();
        expected.remove(&ids[i]);
        assert_eq!(skips, expected, "client {i} misses only its own exclusion");
    }
    // History keeps every publication.
    let history = server.api("history", &json!({"channel": "feed", "limit": 100}));
    let count = history["result"]["publications"].as_array().unwrap().len();
    assert_eq!(count, clients.len() + 2 * all.len());
    // A malformed client id is 107.
    let reply = server.api(
        "publish",
        &json!({"channel": "feed", "data": {}, "exclude_client": "nope"}),
    );
    assert_eq!(reply["error"]["code"], 107, "{reply}");
}
