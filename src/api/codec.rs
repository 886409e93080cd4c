//! The server API's JSON (Centrifugo v5/v6 shapes): request bodies into `ApiCommand`s (unknown
//! fields ignored) and `ApiReply`s into `{"result":...}` or `{"error":{"code":N,"message":"..."}}`
//! bodies.

use std::fmt::Write as _;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{ApiCommand, ApiReply, BatchReply, NodeInfo, PublishResult};
use crate::protocol::json::encode::{self, ByteSink};
use crate::protocol::{ClientId, Disconnect, ErrorCode, HistoryRequest, SubscriptionOverrides};
use crate::router::msg::{
    ClientFilter, Excluded, HistoryPage, HistoryQuery, Position, PresenceKind, PublishOptions,
    RecoverFrom, ServerSubscribe, UserAction, UserActionKind,
};
use crate::router::ChannelNames;
use crate::shard::{client_info, ChannelsPage};

/// Why a request is not a command.
#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// No such method (HTTP 404).
    UnknownMethod,
    /// The body is not valid JSON for the method (HTTP 400).
    BadRequest,
}

/// The fields `publish` and `broadcast` share.
#[derive(Deserialize)]
struct PublishFields<'a> {
    #[serde(default)]
    channel: String,
    #[serde(default)]
    channels: Option<ChannelNames>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    /// The data base64-encoded (it wins over `data`, as in Centrifugo); it must hold JSON,
    /// the protocol's encoding.
    #[serde(default)]
    b64data: Option<String>,
    #[serde(borrow, default)]
    tags: Option<&'a RawValue>,
    #[serde(default)]
    skip_history: bool,
    /// A repeat within the window publishes nothing and answers the first result.
    #[serde(default)]
    idempotency_key: Option<String>,
    #[serde(default)]
    exclude_client: Option<String>,
}

/// Raw JSON without raw newlines; `null` counts as absent.
fn raw(value: Option<&RawValue>) -> Option<Bytes> {
    value
        .filter(|v| v.get() != "null")
        .map(|v| Bytes::from(encode::raw_without_newlines(v.get().as_bytes())))
}

/// The fields of the user actions (`disconnect`, `subscribe`, `unsubscribe`, `refresh`).
#[derive(Deserialize)]
struct UserFields<'a> {
    #[serde(default)]
    user: String,
    #[serde(default)]
    channel: String,
    #[serde(default)]
    client: String,
    #[serde(default)]
    session: String,
    #[serde(borrow, default)]
    info: Option<&'a RawValue>,
    #[serde(default)]
    b64info: Option<String>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(default)]
    b64data: Option<String>,
    #[serde(default)]
    recover_since: Option<StreamPosition>,
    #[serde(default, rename = "override")]
    overrides: Option<serde_json::Value>,
    #[serde(default)]
    expire_at: i64,
    #[serde(default)]
    expired: bool,
    #[serde(default)]
    whitelist: Vec<String>,
    #[serde(default)]
    disconnect: Option<DisconnectFields>,
}

#[derive(Deserialize)]
struct StreamPosition {
    #[serde(default)]
    offset: u64,
    #[serde(default)]
    epoch: String,
}

#[derive(Deserialize)]
struct DisconnectFields {
    #[serde(default)]
    code: u32,
    #[serde(default)]
    reason: String,
}

/// The codes a close frame may carry for an application (RFC 6455 §7.4.2: 3000-4999).
const CLOSE_CODES: std::ops::RangeInclusive<u32> = 3000..=4999;

/// Raw JSON or its base64 form (which wins, and must hold JSON): `Err` when the base64 is
/// not that.
fn raw_or_b64(raw_value: Option<&RawValue>, b64: Option<&str>) -> Result<Option<Box<str>>, ()> {
    let bytes = match b64.filter(|b| !b.is_empty()) {
        Some(b64) => Some(from_b64(b64).ok_or(())?),
        None => raw(raw_value),
    };
    Ok(bytes.map(|b| String::from_utf8_lossy(&b).into()))
}

/// A user action from its fields; bad values (a close code outside 3000-4999, base64 that
/// is not JSON, a malformed `override`) are 107.
fn user_action(method: &str, f: UserFields<'_>) -> Result<ApiCommand, ErrorCode> {
    let bad = |()| ErrorCode::BadRequest;
    let nonempty = |s: String| (!s.is_empty()).then(|| s.into_boxed_str());
    let kind = match method {
        "disconnect" => {
            let (code, reason) = match f.disconnect {
                Some(d) if CLOSE_CODES.contains(&d.code) => (d.code as u16, d.reason.into()),
                Some(_) => return Err(ErrorCode::BadRequest),
                None => (Disconnect::Force.code(), Disconnect::Force.reason().into()),
            };
            UserActionKind::Disconnect {
                code,
                reason,
                whitelist: f
                    .whitelist
                    .iter()
                    .filter_map(|c| ClientId::parse(c))
                    .collect(),
            }
        }
        "subscribe" => UserActionKind::Subscribe(ServerSubscribe {
            channel: f.channel.into(),
            info: raw_or_b64(f.info, f.b64info.as_deref()).map_err(bad)?,
            data: raw_or_b64(f.data, f.b64data.as_deref()).map_err(bad)?,
            recover_since: f.recover_since.map(|p| RecoverFrom {
                offset: p.offset,
                epoch: p.epoch.into(),
            }),
            expire_at: u64::try_from(f.expire_at).ok().filter(|&at| at > 0),
            overrides: SubscriptionOverrides::from_json(f.overrides.as_ref())
                .map_err(|_| ErrorCode::BadRequest)?,
        }),
        "unsubscribe" => UserActionKind::Unsubscribe {
            channel: f.channel.into(),
        },
        _ => UserActionKind::Refresh {
            expired: f.expired,
            expire_at: u64::try_from(f.expire_at).ok().filter(|&at| at > 0),
            info: raw_or_b64(f.info, f.b64info.as_deref()).map_err(bad)?,
        },
    };
    let client = match f.client.as_str() {
        "" => ClientFilter::Any,
        text => ClientId::parse(text).map_or(ClientFilter::Nobody, ClientFilter::Only),
    };
    Ok(ApiCommand::User(UserAction {
        user: f.user.into(),
        client,
        session: nonempty(f.session),
        kind,
    }))
}

/// The name of a method that can be refused after decoding, as the reply keys it.
fn static_method(method: &str) -> &'static str {
    match method {
        "publish" => "publish",
        "broadcast" => "broadcast",
        "disconnect" => "disconnect",
        "subscribe" => "subscribe",
        "unsubscribe" => "unsubscribe",
        "refresh" => "refresh",
        _ => "unknown",
    }
}

/// Centrifugo's legacy method names, by their numbers (`Command.MethodType`).
const LEGACY_METHODS: [&str; 13] = [
    "publish",
    "broadcast",
    "unsubscribe",
    "disconnect",
    "presence",
    "presence_stats",
    "history",
    "history_remove",
    "channels",
    "info",
    "rpc",
    "subscribe",
    "refresh",
];

/// A legacy command's method: a JSON string (any case) or number.
fn legacy_method(raw: &str) -> Option<String> {
    if let Ok(name) = serde_json::from_str::<String>(raw) {
        return Some(name.to_ascii_lowercase());
    }
    let number: usize = raw.trim().parse().ok()?;
    LEGACY_METHODS.get(number).map(|m| (*m).to_owned())
}

/// `b64data` decoded, if it is base64 of JSON (compacted like raw `data`).
fn from_b64(text: &str) -> Option<Bytes> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    serde_json::from_slice::<&RawValue>(&bytes).ok()?;
    Some(Bytes::from(encode::raw_without_newlines(&bytes)))
}

/// The command `method` (the path after the API prefix) with `body`.
pub fn decode(method: &str, body: &[u8]) -> Result<ApiCommand, DecodeError> {
    let bad = |_| DecodeError::BadRequest;
    match method {
        "publish" | "broadcast" => {
            let f: PublishFields<'_> = serde_json::from_slice(body).map_err(bad)?;
            let data = match f.b64data.as_deref().filter(|b| !b.is_empty()) {
                // Undecodable or not JSON: no data, which the command answers with 107.
                Some(b64) => from_b64(b64),
                None => raw(f.data),
            };
            let method = static_method(method);
            // Beyond Centrifugo: the client whose connection the live delivery leaves out
            // (its id names the connection, see `ClientId::for_connection`).
            let exclude = match f.exclude_client.as_deref().filter(|c| !c.is_empty()) {
                None => None,
                Some(text) => match ClientId::parse(text) {
                    Some(client) => {
                        let (shard, conn) = client.connection();
                        Some(Excluded { shard, conn })
                    }
                    None => {
                        return Ok(ApiCommand::Refused {
                            method,
                            code: ErrorCode::BadRequest,
                        })
                    }
                },
            };
            let options = PublishOptions {
                tags: raw(f.tags),
                skip_history: f.skip_history,
                idempotency_key: f.idempotency_key.filter(|k| !k.is_empty()).map(Into::into),
                exclude,
            };
            Ok(if method == "publish" {
                ApiCommand::Publish {
                    channel: f.channel,
                    data,
                    options,
                }
            } else {
                ApiCommand::Broadcast {
                    channels: f.channels.unwrap_or_default(),
                    data,
                    options,
                }
            })
        }
        "history" => {
            let r: HistoryRequest = serde_json::from_slice(body).map_err(bad)?;
            Ok(ApiCommand::History {
                channel: r.channel,
                query: HistoryQuery {
                    limit: r.limit,
                    since: r.since.map(|s| (s.offset, s.epoch.into_boxed_str())),
                    reverse: r.reverse,
                },
            })
        }
        "history_remove" | "presence" | "presence_stats" => {
            #[derive(Deserialize)]
            struct Fields {
                #[serde(default)]
                channel: String,
            }
            let f: Fields = serde_json::from_slice(body).map_err(bad)?;
            let channel = f.channel;
            Ok(match method {
                "presence" => ApiCommand::Presence {
                    channel,
                    kind: PresenceKind::List,
                },
                "presence_stats" => ApiCommand::Presence {
                    channel,
                    kind: PresenceKind::Stats,
                },
                _ => ApiCommand::HistoryRemove { channel },
            })
        }
        "info" => Ok(ApiCommand::Info),
        "disconnect" | "subscribe" | "unsubscribe" | "refresh" => {
            let f: UserFields<'_> = serde_json::from_slice(body).map_err(bad)?;
            Ok(
                user_action(method, f).unwrap_or_else(|code| ApiCommand::Refused {
                    method: static_method(method),
                    code,
                }),
            )
        }
        "channels" => {
            #[derive(Deserialize)]
            struct Fields {
                #[serde(default)]
                pattern: Option<String>,
                #[serde(default)]
                cursor: Option<String>,
                #[serde(default)]
                limit: usize,
            }
            let f: Fields = serde_json::from_slice(body).map_err(bad)?;
            Ok(ApiCommand::Channels {
                pattern: f.pattern,
                cursor: f.cursor,
                limit: f.limit,
            })
        }
        "batch" => {
            #[derive(Deserialize)]
            struct Batch<'a> {
                #[serde(borrow, default)]
                commands: Vec<std::collections::BTreeMap<&'a str, &'a RawValue>>,
                #[serde(default)]
                parallel: bool,
            }
            let batch: Batch<'_> = serde_json::from_slice(body).map_err(bad)?;
            let commands = batch
                .commands
                .iter()
                .map(|command| {
                    // One method per command, as Centrifugo's `Command` carries; no batch
                    // inside a batch.
                    let mut methods = command.iter().filter(|(_, v)| v.get() != "null");
                    match (methods.next(), methods.next()) {
                        (Some((&method, params)), None) if method != "batch" => {
                            decode(method, params.get().as_bytes()).map_err(|e| match e {
                                DecodeError::UnknownMethod => ErrorCode::MethodNotFound,
                                DecodeError::BadRequest => ErrorCode::BadRequest,
                            })
                        }
                        _ => Err(ErrorCode::MethodNotFound),
                    }
                })
                .collect();
            Ok(ApiCommand::Batch {
                commands,
                parallel: batch.parallel,
                legacy_ids: None,
            })
        }
        // The legacy form, `POST /api`: one `{"id":N,"method":M,"params":{...}}` per line,
        // run in order; `method` by name (any case) or by Centrifugo's number.
        "" => {
            #[derive(Deserialize)]
            struct Legacy<'a> {
                #[serde(default)]
                id: u32,
                #[serde(borrow)]
                method: &'a RawValue,
                #[serde(borrow, default)]
                params: Option<&'a RawValue>,
            }
            let mut ids = Vec::new();
            let mut commands = Vec::new();
            for line in body.split(|&b| b == b'\n') {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let command: Legacy<'_> = serde_json::from_slice(line).map_err(bad)?;
                ids.push(command.id);
                let params = command.params.map_or("{}", RawValue::get);
                commands.push(match legacy_method(command.method.get()) {
                    Some(method) if method != "batch" => decode(&method, params.as_bytes())
                        .map_err(|e| match e {
                            DecodeError::UnknownMethod => ErrorCode::MethodNotFound,
                            DecodeError::BadRequest => ErrorCode::BadRequest,
                        }),
                    _ => Err(ErrorCode::MethodNotFound),
                });
            }
            Ok(ApiCommand::Batch {
                commands,
                parallel: false,
                legacy_ids: Some(ids),
            })
        }
        _ => Err(DecodeError::UnknownMethod),
    }
}

/// What a publish reply with an offset and an epoch takes.
const REPLY_BYTES_MIN: usize = 96;

/// The response body of `reply`.
pub fn encode(reply: &ApiReply) -> Vec<u8> {
    // Room for a publish reply with its position: one allocation, not four doublings.
    let mut out = Vec::with_capacity(REPLY_BYTES_MIN);
    match (reply, reply_error(reply)) {
        (ApiReply::Batch(replies, Some(ids)), _) => put_legacy(&mut out, replies, ids),
        (_, Some(code)) => put_error(&mut out, code),
        // Centrifugo's batch answer is `{"replies":[...]}` itself, not under `result` (cent
        // reads `replies` at the top).
        (ApiReply::Batch(_, None), None) => put_value(&mut out, reply),
        (_, None) => put_result(&mut out, |out| put_value(out, reply)),
    }
    out
}

/// The legacy form's reply: a line per command, `{"id":N,"result":...}` or
/// `{"id":N,"error":...}` (no `id` when it was 0).
fn put_legacy(out: &mut Vec<u8>, replies: &Result<Vec<BatchReply>, ErrorCode>, ids: &[u32]) {
    let replies = match replies {
        Ok(replies) => replies,
        Err(code) => return put_error(out, *code),
    };
    for (i, (entry, id)) in replies.iter().zip(ids).enumerate() {
        if i > 0 {
            out.push(b'\n');
        }
        out.push(b'{');
        if *id > 0 {
            let _ = write!(ByteSink(out), "\"id\":{id},");
        }
        let error = match entry {
            Ok((_, reply)) => reply_error(reply),
            Err(code) => Some(*code),
        };
        match (error, entry) {
            (Some(code), _) => {
                out.extend_from_slice(b"\"error\":");
                encode::put_error(out, code, false);
            }
            (None, Ok((_, reply))) => {
                out.extend_from_slice(b"\"result\":");
                put_value(out, reply);
            }
            (None, Err(_)) => {}
        }
        out.push(b'}');
    }
}

/// The error a reply is as a whole, if it is one.
fn reply_error(reply: &ApiReply) -> Option<ErrorCode> {
    match reply {
        ApiReply::Publish(Err(code))
        | ApiReply::Broadcast(Err(code))
        | ApiReply::History(Err(code))
        | ApiReply::HistoryRemove(Err(code))
        | ApiReply::Presence(Err(code))
        | ApiReply::PresenceStats(Err(code))
        | ApiReply::User(Err(code))
        | ApiReply::Channels(Err(code))
        | ApiReply::Info(Err(code))
        | ApiReply::Refused(code)
        | ApiReply::Batch(Err(code), None) => Some(*code),
        _ => None,
    }
}

/// The result value of a reply that is not an error (`reply_error` is `None`).
fn put_value(out: &mut Vec<u8>, reply: &ApiReply) {
    match reply {
        ApiReply::Publish(Ok(position)) => put_position(out, position.as_ref()),
        ApiReply::Broadcast(Ok(entries)) => {
            // About what an entry with a position takes: one allocation, not a dozen doublings
            // of a reply that reaches megabytes.
            out.reserve(entries.len() * 48);
            out.extend_from_slice(b"{\"responses\":[");
            for (i, entry) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                put_entry(out, entry);
            }
            out.extend_from_slice(b"]}");
        }
        ApiReply::History(Ok(page)) => put_history(out, page),
        ApiReply::HistoryRemove(Ok(())) => out.extend_from_slice(b"{}"),
        ApiReply::Presence(Ok(items)) => {
            let entries: Vec<(String, Vec<u8>)> = items
                .iter()
                .map(|item| (item.client.to_string(), client_info(item)))
                .collect();
            out.reserve(entries.iter().map(|(c, i)| c.len() + i.len() + 4).sum());
            encode::put_presence_result(
                out,
                entries.iter().map(|(c, i)| (c.as_str(), i.as_slice())),
            );
        }
        ApiReply::PresenceStats(Ok(stats)) => {
            encode::put_presence_stats(out, stats.num_clients, stats.num_users)
        }
        ApiReply::User(Ok(())) => out.extend_from_slice(b"{}"),
        ApiReply::Channels(Ok(page)) => put_channels(out, page),
        ApiReply::Info(Ok(info)) => put_info(out, info),
        ApiReply::Batch(Ok(replies), _) => {
            out.extend_from_slice(b"{\"replies\":[");
            for (i, entry) in replies.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                // `{"<method>":<result>}`, or `{"error":...}`.
                match entry {
                    Ok((method, reply)) => match reply_error(reply) {
                        Some(code) => put_error(out, code),
                        None => {
                            out.push(b'{');
                            encode::put_str(out, method);
                            out.push(b':');
                            put_value(out, reply);
                            out.push(b'}');
                        }
                    },
                    Err(code) => put_error(out, *code),
                }
            }
            out.extend_from_slice(b"]}");
        }
        ApiReply::Publish(Err(_))
        | ApiReply::Broadcast(Err(_))
        | ApiReply::History(Err(_))
        | ApiReply::HistoryRemove(Err(_))
        | ApiReply::Presence(Err(_))
        | ApiReply::PresenceStats(Err(_))
        | ApiReply::User(Err(_))
        | ApiReply::Channels(Err(_))
        | ApiReply::Info(Err(_))
        | ApiReply::Refused(_)
        | ApiReply::Batch(Err(_), _) => debug_assert!(false, "errors are encoded by the caller"),
    }
}

/// How API errors reach the caller: in the reply body (Centrifugo's default), or as HTTP
/// statuses (`X-Centrifugo-Error-Mode: transport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorMode {
    InBody,
    Transport,
}

/// In transport mode, a reply that is an error as a whole: its HTTP status and body
/// `{"code":N,"message":"..."}` (Centrifugo's `MapErrorToHTTPCode`). `None`: the reply goes as
/// usual (a broadcast's per-channel errors stay in its body).
pub fn transport_error(reply: &ApiReply) -> Option<(u16, Vec<u8>)> {
    let code = reply_error(reply)?;
    let status = match code {
        ErrorCode::UnknownChannel | ErrorCode::MethodNotFound => 404,
        ErrorCode::BadRequest | ErrorCode::NotAvailable => 400,
        ErrorCode::UnrecoverablePosition => 416,
        _ => 500,
    };
    let mut body = Vec::new();
    encode::put_error(&mut body, code, false);
    Some((status, body))
}

fn put_result(out: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>)) {
    out.extend_from_slice(b"{\"result\":");
    body(out);
    out.push(b'}');
}

/// `{"error":{"code":N,"message":"..."}}` (API errors carry no `temporary`).
fn put_error(out: &mut Vec<u8>, code: ErrorCode) {
    out.extend_from_slice(b"{\"error\":");
    encode::put_error(out, code, false);
    out.push(b'}');
}

/// One publication's result: `{"result":{"offset":N,"epoch":E}}`, `{"result":{}}` without a
/// position, or the error.
fn put_entry(out: &mut Vec<u8>, result: &PublishResult) {
    match result {
        Ok(position) => put_result(out, |out| put_position(out, position.as_ref())),
        Err(code) => put_error(out, *code),
    }
}

/// `{"offset":N,"epoch":E}`, or `{}` without a position.
fn put_position(out: &mut Vec<u8>, position: Option<&Position>) {
    let Some(position) = position else {
        out.extend_from_slice(b"{}");
        return;
    };
    out.extend_from_slice(b"{\"offset\":");
    out.extend_from_slice(itoa::Buffer::new().format(position.offset.get()).as_bytes());
    out.extend_from_slice(b",\"epoch\":");
    encode::put_str(out, &position.epoch);
    out.push(b'}');
}

fn put_history(out: &mut Vec<u8>, page: &HistoryPage) {
    encode::put_history_result(out, &page.publications, &page.epoch, page.offset);
}

/// `{"channels":{NAME:{"num_clients":N},...}}`, with `"next_cursor":NAME` when there may be
/// more (beyond Centrifugo).
fn put_channels(out: &mut Vec<u8>, page: &ChannelsPage) {
    out.reserve(page.channels.iter().map(|(c, _)| c.len() + 24).sum());
    out.extend_from_slice(b"{\"channels\":{");
    for (i, (name, count)) in page.channels.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        encode::put_str(out, name);
        let _ = write!(ByteSink(out), ":{{\"num_clients\":{count}}}");
    }
    out.push(b'}');
    if let Some(cursor) = &page.next_cursor {
        out.extend_from_slice(b",\"next_cursor\":");
        encode::put_str(out, cursor);
    }
    out.push(b'}');
}

fn put_info(out: &mut Vec<u8>, info: &NodeInfo) {
    out.extend_from_slice(b"{\"nodes\":[{\"uid\":");
    encode::put_str(out, &info.uid);
    out.extend_from_slice(b",\"name\":");
    encode::put_str(out, &info.name);
    let s = &info.stats;
    let _ = write!(
        ByteSink(out),
        ",\"version\":\"{}\",\"num_clients\":{},\"num_users\":{},\"num_channels\":{},\"uptime\":{},\"num_subs\":{}",
        info.version, s.connections, s.online_users, s.channels, info.uptime_seconds, s.subscriptions,
    );
    // Beyond Centrifugo: each shard's share (clients and subscriptions of its connections,
    // channels it owns; a user with connections on two shards counts on both; the node's
    // `num_users` counts each user once).
    out.extend_from_slice(b",\"shards\":[");
    for (id, s) in info.shards.iter().enumerate() {
        if id > 0 {
            out.push(b',');
        }
        let _ = write!(
            ByteSink(out),
            "{{\"shard\":{id},\"num_clients\":{},\"num_users\":{},\"num_channels\":{},\"num_subs\":{}}}",
            s.connections, s.users, s.channels, s.subscriptions,
        );
    }
    out.extend_from_slice(b"]}");
    for peer in &info.peers {
        out.extend_from_slice(b",{\"uid\":");
        encode::put_str(out, &peer.uid);
        out.extend_from_slice(b",\"name\":");
        encode::put_str(out, &peer.name);
        out.extend_from_slice(b",\"version\":");
        encode::put_str(out, &peer.version);
        let _ = write!(
            ByteSink(out),
            ",\"num_clients\":{},\"num_users\":{},\"num_channels\":{},\"uptime\":{},\"num_subs\":{}}}",
            peer.num_clients, peer.num_users, peer.num_channels, peer.uptime, peer.num_subs,
        );
    }
    out.extend_from_slice(b"]}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::msg::Position;
    use std::num::NonZeroU64;

    #[test]
    fn bodies_and_replies_in_centrifugo_shapes() {
        assert_eq!(
            decode("nope", b"{}").unwrap_err(),
            DecodeError::UnknownMethod
        );
        assert_eq!(
            decode("publish", b"[").unwrap_err(),
            DecodeError::BadRequest
        );
        let ApiCommand::Publish { data, channel, .. } = decode(
            "publish",
            b"{\"channel\":\"c\",\"data\":{\"a\":\n1},\"x\":1}",
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(
            (channel.as_str(), data.as_deref()),
            ("c", Some(&b"{\"a\":1}"[..]))
        );
        let position = Position {
            offset: NonZeroU64::new(3).unwrap(),
            epoch: "ep".into(),
        };
        let text = |reply: ApiReply| String::from_utf8(encode(&reply)).unwrap();
        assert_eq!(
            text(ApiReply::Publish(Ok(Some(position.clone())))),
            r#"{"result":{"offset":3,"epoch":"ep"}}"#
        );
        assert_eq!(text(ApiReply::Publish(Ok(None))), r#"{"result":{}}"#);
        assert_eq!(
            text(ApiReply::Broadcast(Ok(vec![
                Ok(Some(position)),
                Err(ErrorCode::BadRequest)
            ]))),
            r#"{"result":{"responses":[{"result":{"offset":3,"epoch":"ep"}},{"error":{"code":107,"message":"bad request"}}]}}"#
        );
        assert_eq!(
            text(ApiReply::HistoryRemove(Err(ErrorCode::Internal))),
            r#"{"error":{"code":100,"message":"internal server error"}}"#
        );
    }
}
