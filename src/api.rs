//! The server HTTP API (`POST /api/<method>`, Centrifugo v5/v6 shapes) and `/metrics`.
//! Authentication by `X-API-Key: KEY` or `Authorization: apikey KEY`; a missing or wrong key
//! gets 401 with an empty body. Bodies that are not valid JSON for the method get 400; other
//! errors are 200 with `{"error":{"code":N,"message":"..."}}`.
//!
//! Owns nothing: it parses, asks the `Shard` (which routes to channel owners), and formats.

use std::fmt::Write as _;
use std::rc::Rc;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::conn::{Head, Response};
use crate::protocol::{self, code, ByteSink};
use crate::router::{Published, ShardStats};
use crate::session::{CHANNEL_MAX_LENGTH, VERSION};
use crate::shard::Shard;

fn authorized(shard: &Shard, head: &Head) -> bool {
    let key = shard.config.api_key.as_str();
    if key.is_empty() {
        return false;
    }
    let given = match (&head.api_key, &head.authorization) {
        (Some(given), _) => Some(given.as_str()),
        (None, Some(auth)) => {
            let mut words = auth.split_ascii_whitespace();
            match (words.next(), words.next(), words.next()) {
                (Some(scheme), Some(given), None) if scheme.eq_ignore_ascii_case("apikey") => {
                    Some(given)
                }
                _ => None,
            }
        }
        (None, None) => None,
    };
    given.is_some_and(|given| constant_time_eq(given.as_bytes(), key.as_bytes()))
}

/// Compares without an early exit, so response timing does not leak the key.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Handles `POST /api/<method>`.
pub async fn handle(shard: &Rc<Shard>, head: &Head, method: &str, body: &[u8]) -> Response {
    if !authorized(shard, head) {
        return Response::empty(401);
    }
    match method {
        "publish" => publish(shard, body).await,
        "broadcast" => broadcast(shard, body).await,
        "info" => info(shard).await,
        "history" => history(shard, body).await,
        "history_remove" => history_remove(shard, body).await,
        _ => Response::new(404, "text/plain", "Not Found"),
    }
}

fn bad_request() -> Response {
    Response::new(400, "text/plain", "Bad Request")
}

fn error_body(code: u32) -> Vec<u8> {
    format!(
        "{{\"code\":{code},\"message\":\"{}\"}}",
        protocol::error_message(code)
    )
    .into_bytes()
}

fn error_response(code: u32) -> Response {
    let mut body = b"{\"error\":".to_vec();
    body.extend(error_body(code));
    body.push(b'}');
    Response::json(body)
}

/// The fields `publish` and `broadcast` share; unknown fields are ignored.
#[derive(Deserialize)]
struct PublishFields<'a> {
    #[serde(default)]
    channel: String,
    #[serde(default)]
    channels: Option<Vec<String>>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(borrow, default)]
    tags: Option<&'a RawValue>,
    #[serde(default)]
    skip_history: bool,
}

impl PublishFields<'_> {
    fn payload(&self) -> Option<(Bytes, Option<Bytes>)> {
        let data = self.data.filter(|d| d.get() != "null")?;
        let raw = |value: &RawValue| {
            let mut out = Vec::with_capacity(value.get().len());
            protocol::put_raw(&mut out, value.get().as_bytes());
            Bytes::from(out)
        };
        let tags = self.tags.filter(|t| t.get() != "null").map(raw);
        Some((raw(data), tags))
    }
}

fn channel_error(channel: &str) -> Option<u32> {
    (channel.is_empty() || channel.len() > CHANNEL_MAX_LENGTH).then_some(code::BAD_REQUEST)
}

/// `{"offset":N,"epoch":E}`, or `{}` for a publication without a position.
fn put_publish_result(out: &mut Vec<u8>, offset: u64, epoch: &str) {
    if offset == 0 {
        out.extend_from_slice(b"{}");
        return;
    }
    out.extend_from_slice(b"{\"offset\":");
    let _ = write!(ByteSink(out), "{offset}");
    out.extend_from_slice(b",\"epoch\":");
    protocol::put_str(out, epoch);
    out.push(b'}');
}

async fn publish(shard: &Rc<Shard>, body: &[u8]) -> Response {
    let Ok(fields) = serde_json::from_slice::<PublishFields<'_>>(body) else {
        return bad_request();
    };
    if let Some(code) = channel_error(&fields.channel) {
        return error_response(code);
    }
    let Some((data, tags)) = fields.payload() else {
        return error_response(code::BAD_REQUEST);
    };
    let channel: Arc<str> = fields.channel.as_str().into();
    let results = shard
        .publish(vec![(0, channel)], data, tags, fields.skip_history)
        .await;
    let Some(Published { result, .. }) = results.and_then(|r| r.into_iter().next()) else {
        return error_response(code::INTERNAL);
    };
    match result {
        Ok((offset, epoch)) => {
            let mut body = b"{\"result\":".to_vec();
            put_publish_result(&mut body, offset, &epoch);
            body.push(b'}');
            Response::json(body)
        }
        Err(code) => error_response(code),
    }
}

async fn broadcast(shard: &Rc<Shard>, body: &[u8]) -> Response {
    let Ok(fields) = serde_json::from_slice::<PublishFields<'_>>(body) else {
        return bad_request();
    };
    let channels = fields.channels.as_deref().unwrap_or_default();
    if channels.is_empty() {
        return error_response(code::BAD_REQUEST);
    }
    let Some((data, tags)) = fields.payload() else {
        return error_response(code::BAD_REQUEST);
    };
    // One entry per requested channel, in request order: an error for bad names, the
    // owner's answer for the rest. An owner that did not answer in time leaves its
    // channels' entries empty (reported as internal errors); answers that did arrive are
    // reported as they are.
    let mut entries: Vec<Result<(u64, Arc<str>), u32>> = vec![Err(code::INTERNAL); channels.len()];
    let mut valid = Vec::with_capacity(channels.len());
    for (index, channel) in channels.iter().enumerate() {
        match channel_error(channel) {
            Some(code) => entries[index] = Err(code),
            None => valid.push((index as u32, Arc::<str>::from(channel.as_str()))),
        }
    }
    let (results, _complete) = shard
        .publish_partial(valid, data, tags, fields.skip_history)
        .await;
    for published in results {
        entries[published.index as usize] = published.result;
    }
    let mut body = b"{\"result\":{\"responses\":[".to_vec();
    for (i, entry) in entries.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        match entry {
            Ok((offset, epoch)) => {
                body.extend_from_slice(b"{\"result\":");
                put_publish_result(&mut body, *offset, epoch);
                body.push(b'}');
            }
            Err(code) => {
                body.extend_from_slice(b"{\"error\":");
                body.extend(error_body(*code));
                body.push(b'}');
            }
        }
    }
    body.extend_from_slice(b"]}}");
    Response::json(body)
}

async fn history(shard: &Rc<Shard>, body: &[u8]) -> Response {
    let Ok(request) = serde_json::from_slice::<protocol::HistoryRequest>(body) else {
        return bad_request();
    };
    if let Some(code) = channel_error(&request.channel) {
        return error_response(code);
    }
    match shard.history(&request.channel, &request).await {
        Some(Ok(page)) => {
            let mut body = b"{\"result\":".to_vec();
            protocol::put_history_result(&mut body, &page.publications, &page.epoch, page.offset);
            body.push(b'}');
            Response::json(body)
        }
        Some(Err(code)) => error_response(code),
        None => error_response(code::INTERNAL),
    }
}

async fn history_remove(shard: &Rc<Shard>, body: &[u8]) -> Response {
    #[derive(Deserialize)]
    struct Fields {
        #[serde(default)]
        channel: String,
    }
    let Ok(fields) = serde_json::from_slice::<Fields>(body) else {
        return bad_request();
    };
    if let Some(code) = channel_error(&fields.channel) {
        return error_response(code);
    }
    match shard.history_remove(&fields.channel).await {
        Some(Ok(())) => Response::json(b"{\"result\":{}}".to_vec()),
        Some(Err(code)) => error_response(code),
        None => error_response(code::INTERNAL),
    }
}

/// This node's id for `info`, fixed for the life of the process.
fn node_uid() -> &'static str {
    static UID: OnceLock<String> = OnceLock::new();
    UID.get_or_init(protocol::new_client_id)
}

async fn info(shard: &Rc<Shard>) -> Response {
    let Some(per_shard) = shard.collect_stats().await else {
        return error_response(code::INTERNAL);
    };
    let mut stats = ShardStats::default();
    for shard_stats in per_shard {
        stats += shard_stats;
    }
    let mut body = Vec::new();
    body.extend_from_slice(b"{\"result\":{\"nodes\":[{\"uid\":");
    protocol::put_str(&mut body, node_uid());
    let _ = write!(
        ByteSink(&mut body),
        ",\"name\":\"ringcast\",\"version\":\"{VERSION}\",\"num_clients\":{},\"num_users\":{},\"num_channels\":{},\"uptime\":{},\"num_subs\":{}}}]}}}}",
        stats.connections,
        stats.users,
        stats.channels,
        shard.started.elapsed().as_secs(),
        stats.subscriptions,
    );
    Response::json(body)
}

/// `GET /metrics`: Prometheus text, every shard's counters summed.
pub async fn metrics(shard: &Rc<Shard>) -> Response {
    let Some(per_shard) = shard.collect_stats().await else {
        return Response::new(500, "text/plain", "a shard did not answer");
    };
    type Field = fn(&ShardStats) -> u64;
    let metrics: [(&str, &str, &str, Field); 9] = [
        ("connections", "gauge", "Open WebSocket connections.", |s| {
            s.connections
        }),
        (
            "subscriptions",
            "gauge",
            "Channel subscriptions of connected clients.",
            |s| s.subscriptions,
        ),
        (
            "channels",
            "gauge",
            "Channels with at least one subscriber, by owner shard.",
            |s| s.channels,
        ),
        (
            "messages_in_total",
            "counter",
            "WebSocket messages received from clients.",
            |s| s.messages_in,
        ),
        (
            "messages_out_total",
            "counter",
            "Publications handed to subscriber connections.",
            |s| s.messages_out,
        ),
        (
            "publications_total",
            "counter",
            "Publications accepted by channel owners.",
            |s| s.publications,
        ),
        (
            "slow_disconnects_total",
            "counter",
            "Connections closed because their send queue was full.",
            |s| s.slow_disconnects,
        ),
        (
            "history_disk_bytes",
            "gauge",
            "Bytes of history segment files, by owner shard.",
            |s| s.history_bytes,
        ),
        (
            "history_records",
            "gauge",
            "Publications held in the history index, by owner shard.",
            |s| s.history_records,
        ),
    ];
    let mut text = String::new();
    for (name, kind, help, field) in metrics {
        let total: u64 = per_shard.iter().map(field).sum();
        let _ = writeln!(
            text,
            "# HELP ringcast_{name} {help}\n# TYPE ringcast_{name} {kind}\nringcast_{name} {total}"
        );
        let _ = writeln!(
            text,
            "# HELP ringcast_shard_{name} {help} Per shard.\n# TYPE ringcast_shard_{name} {kind}"
        );
        for (id, stats) in per_shard.iter().enumerate() {
            let _ = writeln!(
                text,
                "ringcast_shard_{name}{{shard=\"{id}\"}} {}",
                field(stats)
            );
        }
    }
    Response::new(200, "text/plain; version=0.0.4", text)
}
