//! The Centrifugo client protocol v2 in JSON: parsing one command (one line of a frame) and
//! encoding replies and pushes byte for byte the way Centrifugo does (key order `id`, `error`,
//! `push`, result; zero values omitted; raw JSON payloads embedded verbatim without raw
//! newlines). See `../shared/reference/centrifugo-protocol.md`.
//!
//! Pure functions over bytes: no state, no I/O.

use std::fmt::Write as _;

use serde::Deserialize;
use serde_json::value::RawValue;

/// Error codes (reference §8.1).
pub mod code {
    pub const INTERNAL: u32 = 100;
    pub const UNKNOWN_CHANNEL: u32 = 102;
    pub const PERMISSION_DENIED: u32 = 103;
    pub const METHOD_NOT_FOUND: u32 = 104;
    pub const ALREADY_SUBSCRIBED: u32 = 105;
    pub const LIMIT_EXCEEDED: u32 = 106;
    pub const BAD_REQUEST: u32 = 107;
    pub const NOT_AVAILABLE: u32 = 108;
    pub const TOKEN_EXPIRED: u32 = 109;
    pub const UNRECOVERABLE_POSITION: u32 = 112;
}

/// The message text Centrifugo pairs with each error code.
pub fn error_message(code: u32) -> &'static str {
    match code {
        100 => "internal server error",
        101 => "unauthorized",
        102 => "unknown channel",
        103 => "permission denied",
        104 => "method not found",
        105 => "already subscribed",
        106 => "limit exceeded",
        107 => "bad request",
        108 => "not available",
        109 => "token expired",
        110 => "expired",
        111 => "too many requests",
        112 => "unrecoverable position",
        _ => "error",
    }
}

/// Disconnects (WebSocket close code and reason, reference §8.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disconnect {
    pub code: u16,
    pub reason: &'static str,
}

impl Disconnect {
    pub const EXPIRED: Disconnect = Disconnect {
        code: 3005,
        reason: "connection expired",
    };
    pub const SLOW: Disconnect = Disconnect {
        code: 3008,
        reason: "slow",
    };
    pub const NO_PONG: Disconnect = Disconnect {
        code: 3012,
        reason: "no pong",
    };
    pub const INVALID_TOKEN: Disconnect = Disconnect {
        code: 3500,
        reason: "invalid token",
    };
    pub const BAD_REQUEST: Disconnect = Disconnect {
        code: 3501,
        reason: "bad request",
    };
    pub const STALE: Disconnect = Disconnect {
        code: 3502,
        reason: "stale",
    };
    pub const NOT_AVAILABLE: Disconnect = Disconnect {
        code: 3508,
        reason: "not available",
    };
}

/// One parsed client command.
#[derive(Debug)]
pub struct Command<'a> {
    pub id: u32,
    pub request: Request<'a>,
}

#[derive(Debug)]
pub enum Request<'a> {
    Connect(ConnectRequest),
    Subscribe(SubscribeRequest),
    Unsubscribe(ChannelRequest),
    Publish(PublishRequest<'a>),
    Presence(ChannelRequest),
    PresenceStats(ChannelRequest),
    History(HistoryRequest),
    Rpc,
    Send,
    Refresh(RefreshRequest),
    SubRefresh(ChannelRequest),
    /// The empty command `{}`: the client's pong.
    Pong,
}

#[derive(Debug, Default, Deserialize)]
pub struct ConnectRequest {
    #[serde(default)]
    pub token: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct ChannelRequest {
    #[serde(default)]
    pub channel: String,
}

/// `subscribe`: the fields this server acts on (the rest are ignored).
#[derive(Debug, Default, Deserialize)]
pub struct SubscribeRequest {
    #[serde(default)]
    pub channel: String,
    #[serde(default)]
    pub recover: bool,
    #[serde(default)]
    pub epoch: String,
    #[serde(default)]
    pub offset: u64,
    #[serde(default)]
    pub positioned: bool,
    #[serde(default)]
    pub recoverable: bool,
    /// Bit 2: answer 112 instead of an unrecovered result.
    #[serde(default)]
    pub flag: i64,
}

/// Subscribe `flag` bit: the client prefers error 112 to `recovered: false`.
pub const FLAG_REJECT_UNRECOVERED: i64 = 2;

/// A stream position `{offset, epoch}`.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct StreamPosition {
    #[serde(default)]
    pub offset: u64,
    #[serde(default)]
    pub epoch: String,
}

/// `history` (client command and, with the same shape, the server API call).
#[derive(Debug, Default, Deserialize)]
pub struct HistoryRequest {
    #[serde(default)]
    pub channel: String,
    #[serde(default)]
    pub limit: i32,
    #[serde(default)]
    pub since: Option<StreamPosition>,
    #[serde(default)]
    pub reverse: bool,
}

#[derive(Debug, Deserialize)]
pub struct PublishRequest<'a> {
    #[serde(default)]
    pub channel: String,
    #[serde(borrow)]
    pub data: Option<&'a RawValue>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RefreshRequest {
    #[serde(default)]
    pub token: String,
}

/// The envelope: every request field as raw JSON, so unknown fields are ignored and the first
/// present request wins regardless of key order (js puts `id` last, python first).
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default)]
    id: u32,
    #[serde(borrow, default)]
    connect: Option<&'a RawValue>,
    #[serde(borrow, default)]
    subscribe: Option<&'a RawValue>,
    #[serde(borrow, default)]
    unsubscribe: Option<&'a RawValue>,
    #[serde(borrow, default)]
    publish: Option<&'a RawValue>,
    #[serde(borrow, default)]
    presence: Option<&'a RawValue>,
    #[serde(borrow, default)]
    presence_stats: Option<&'a RawValue>,
    #[serde(borrow, default)]
    history: Option<&'a RawValue>,
    #[serde(borrow, default)]
    ping: Option<&'a RawValue>,
    #[serde(borrow, default)]
    send: Option<&'a RawValue>,
    #[serde(borrow, default)]
    rpc: Option<&'a RawValue>,
    #[serde(borrow, default)]
    refresh: Option<&'a RawValue>,
    #[serde(borrow, default)]
    sub_refresh: Option<&'a RawValue>,
}

/// Why a line is not a command; both mean "bad request" to the client (close 3501).
#[derive(Debug, PartialEq, Eq)]
pub enum ParseError {
    Json,
    UnknownMethod,
}

fn inner<'a, T: Deserialize<'a>>(raw: &'a RawValue) -> Result<T, ParseError> {
    serde_json::from_str(raw.get()).map_err(|_| ParseError::Json)
}

/// Parses one command line.
pub fn parse_command(line: &[u8]) -> Result<Command<'_>, ParseError> {
    let envelope: Envelope<'_> = serde_json::from_slice(line).map_err(|_| ParseError::Json)?;
    let request = if let Some(raw) = envelope.connect {
        Request::Connect(inner(raw)?)
    } else if let Some(raw) = envelope.subscribe {
        Request::Subscribe(inner(raw)?)
    } else if let Some(raw) = envelope.unsubscribe {
        Request::Unsubscribe(inner(raw)?)
    } else if let Some(raw) = envelope.publish {
        Request::Publish(inner(raw)?)
    } else if let Some(raw) = envelope.presence {
        Request::Presence(inner(raw)?)
    } else if let Some(raw) = envelope.presence_stats {
        Request::PresenceStats(inner(raw)?)
    } else if let Some(raw) = envelope.history {
        Request::History(inner(raw)?)
    } else if envelope.ping.is_some() {
        // Defined but unused by SDKs; current Centrifugo treats it as malformed.
        return Err(ParseError::UnknownMethod);
    } else if envelope.send.is_some() {
        Request::Send
    } else if envelope.rpc.is_some() {
        Request::Rpc
    } else if let Some(raw) = envelope.refresh {
        Request::Refresh(inner(raw)?)
    } else if let Some(raw) = envelope.sub_refresh {
        Request::SubRefresh(inner(raw)?)
    } else if envelope.id == 0 {
        Request::Pong
    } else {
        return Err(ParseError::UnknownMethod);
    };
    Ok(Command {
        id: envelope.id,
        request,
    })
}

/// Appends `s` as a JSON string.
pub fn put_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
}

/// Appends raw JSON (already validated) without its raw newlines: a JSON value holds raw
/// newlines only as whitespace, so removing them keeps the value and keeps one command or
/// reply per line.
pub fn put_raw(out: &mut Vec<u8>, raw: &[u8]) {
    out.extend(raw.iter().copied().filter(|&b| b != b'\n' && b != b'\r'));
}

fn open_reply(out: &mut Vec<u8>, id: u32) {
    out.extend_from_slice(b"{\"id\":");
    let _ = write!(ByteSink(out), "{id}");
}

/// `{"id":N,"<method>":{}}`
pub fn empty_result(out: &mut Vec<u8>, id: u32, method: &str) {
    open_reply(out, id);
    out.extend_from_slice(b",\"");
    out.extend_from_slice(method.as_bytes());
    out.extend_from_slice(b"\":{}}");
}

/// `{"id":N,"error":{"code":C,"message":"..."}}`
pub fn error_reply(out: &mut Vec<u8>, id: u32, code: u32, temporary: bool) {
    open_reply(out, id);
    let _ = write!(
        ByteSink(out),
        ",\"error\":{{\"code\":{code},\"message\":\"{}\"{}}}}}",
        error_message(code),
        if temporary { ",\"temporary\":true" } else { "" }
    );
}

/// The connect result, fields in proto order.
pub struct ConnectResult<'a> {
    pub client: &'a str,
    pub version: &'a str,
    /// Seconds until the connection expires, if it does.
    pub ttl: Option<u32>,
    /// Server-side subscriptions (from the token's `channels` claim).
    pub subs: &'a [String],
    pub ping_seconds: u32,
}

pub fn connect_reply(out: &mut Vec<u8>, id: u32, result: &ConnectResult<'_>) {
    open_reply(out, id);
    out.extend_from_slice(b",\"connect\":{\"client\":");
    put_str(out, result.client);
    out.extend_from_slice(b",\"version\":");
    put_str(out, result.version);
    if let Some(ttl) = result.ttl {
        let _ = write!(ByteSink(out), ",\"expires\":true,\"ttl\":{}", ttl.max(1));
    }
    if !result.subs.is_empty() {
        out.extend_from_slice(b",\"subs\":{");
        for (i, channel) in result.subs.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            put_str(out, channel);
            out.extend_from_slice(b":{}");
        }
        out.push(b'}');
    }
    let _ = write!(
        ByteSink(out),
        ",\"ping\":{},\"pong\":true}}}}",
        result.ping_seconds
    );
}

/// `{"id":N,"refresh":{"client":..,"version":..,"expires":true,"ttl":T}}` (or without expiry).
pub fn refresh_reply(out: &mut Vec<u8>, id: u32, client: &str, version: &str, ttl: Option<u32>) {
    open_reply(out, id);
    out.extend_from_slice(b",\"refresh\":{\"client\":");
    put_str(out, client);
    out.extend_from_slice(b",\"version\":");
    put_str(out, version);
    if let Some(ttl) = ttl {
        let _ = write!(ByteSink(out), ",\"expires\":true,\"ttl\":{}", ttl.max(1));
    }
    out.extend_from_slice(b"}}");
}

/// The publication push `{"push":{"channel":C,"pub":{"data":D,"info":I,"offset":N,"tags":T}}}`.
/// `data`, `info` and `tags` are raw JSON; `info` and `tags` are omitted when `None`.
pub fn publication_push(
    out: &mut Vec<u8>,
    channel: &str,
    data: &[u8],
    info: Option<&[u8]>,
    offset: u64,
    tags: Option<&[u8]>,
) {
    out.extend_from_slice(b"{\"push\":{\"channel\":");
    put_str(out, channel);
    out.extend_from_slice(b",\"pub\":");
    put_publication(out, data, info, offset, tags);
    out.extend_from_slice(b"}}");
}

/// One publication as history and recovery return it:
/// `{"data":D,"info":I,"offset":N,"tags":T}` (`info`, `tags` omitted when absent).
pub fn put_publication(
    out: &mut Vec<u8>,
    data: &[u8],
    info: Option<&[u8]>,
    offset: u64,
    tags: Option<&[u8]>,
) {
    out.extend_from_slice(b"{\"data\":");
    put_raw(out, data);
    if let Some(info) = info {
        out.extend_from_slice(b",\"info\":");
        put_raw(out, info);
    }
    if offset > 0 {
        let _ = write!(ByteSink(out), ",\"offset\":{offset}");
    }
    if let Some(tags) = tags {
        out.extend_from_slice(b",\"tags\":");
        put_raw(out, tags);
    }
    out.push(b'}');
}

/// The subscribe result (reference §6), field order as Centrifugo writes it.
pub struct SubscribeResult<'a> {
    pub recoverable: bool,
    pub positioned: bool,
    pub epoch: &'a str,
    pub offset: u64,
    /// `Some(recovered)` when the client asked to recover; `publications` is the raw JSON
    /// array content (comma-joined publications), empty for none.
    pub recovered: Option<bool>,
    pub publications: &'a [u8],
}

pub fn subscribe_reply(out: &mut Vec<u8>, id: u32, result: &SubscribeResult<'_>) {
    open_reply(out, id);
    out.extend_from_slice(b",\"subscribe\":{");
    if result.recoverable || result.positioned {
        if result.recoverable {
            out.extend_from_slice(b"\"recoverable\":true,");
        }
        if result.positioned {
            out.extend_from_slice(b"\"positioned\":true,");
        }
        out.extend_from_slice(b"\"epoch\":");
        put_str(out, result.epoch);
        let _ = write!(ByteSink(out), ",\"offset\":{}", result.offset);
        if let Some(recovered) = result.recovered {
            let _ = write!(
                ByteSink(out),
                ",\"was_recovering\":true,\"recovered\":{recovered}"
            );
            if !result.publications.is_empty() {
                out.extend_from_slice(b",\"publications\":[");
                out.extend_from_slice(result.publications);
                out.push(b']');
            }
        }
    }
    out.extend_from_slice(b"}}");
}

/// The history result body `{"publications":[...],"epoch":E,"offset":N}`;
/// `publications` is the comma-joined array content.
pub fn put_history_result(out: &mut Vec<u8>, publications: &[u8], epoch: &str, offset: u64) {
    out.extend_from_slice(b"{\"publications\":[");
    out.extend_from_slice(publications);
    out.extend_from_slice(b"],\"epoch\":");
    put_str(out, epoch);
    let _ = write!(ByteSink(out), ",\"offset\":{offset}}}");
}

/// ClientInfo `{"user":U,"client":C,"conn_info":I}` as raw JSON.
pub fn client_info(user: &str, client: &str, conn_info: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(48 + user.len() + client.len());
    out.extend_from_slice(b"{\"user\":");
    put_str(&mut out, user);
    out.extend_from_slice(b",\"client\":");
    put_str(&mut out, client);
    if let Some(info) = conn_info {
        out.extend_from_slice(b",\"conn_info\":");
        put_raw(&mut out, info.as_bytes());
    }
    out.push(b'}');
    out
}

/// `fmt::Write` into a byte vector, for `write!` of numbers and fixed text into JSON.
pub struct ByteSink<'a>(pub &'a mut Vec<u8>);

impl std::fmt::Write for ByteSink<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// A client id: a random version-4 UUID, the shape Centrifugo gives them, kept as its 16
/// bytes (every connection holds one; the text form is built when a reply needs it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClientId([u8; 16]);

impl ClientId {
    pub fn random() -> ClientId {
        let mut b = [0u8; 16];
        getrandom::getrandom(&mut b).expect("the OS random source works");
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        ClientId(b)
    }
}

impl std::fmt::Display for ClientId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, byte) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// A fresh client id in its text form.
pub fn new_client_id() -> String {
    ClientId::random().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn both_sdks_key_orders_parse() {
        let js = parse_command(br#"{"connect":{"token":"T","name":"js"},"id":1}"#).unwrap();
        assert_eq!(js.id, 1);
        assert!(
            matches!(js.request, Request::Connect(ConnectRequest { ref token }) if token == "T")
        );
        let py =
            parse_command(br#"{"id": 2, "subscribe": {"channel": "news", "flag": 1}}"#).unwrap();
        assert!(matches!(py.request, Request::Subscribe(ref c) if c.channel == "news"));
        let publish =
            parse_command(br#"{"publish":{"channel":"c","data":{"a" : 1}},"id":4}"#).unwrap();
        let Request::Publish(p) = publish.request else {
            panic!()
        };
        assert_eq!(p.data.unwrap().get(), r#"{"a" : 1}"#);
        assert!(matches!(
            parse_command(b"{}").unwrap().request,
            Request::Pong
        ));
        assert!(matches!(
            parse_command(br#"{"send":{"data":{}}}"#).unwrap().request,
            Request::Send
        ));
    }

    #[test]
    fn bad_lines_are_errors() {
        assert_eq!(parse_command(b"nope").unwrap_err(), ParseError::Json);
        assert_eq!(
            parse_command(br#"{"id":3,"frobnicate":{}}"#).unwrap_err(),
            ParseError::UnknownMethod
        );
        assert_eq!(
            parse_command(br#"{"id":3,"subscribe":{"channel":5}}"#).unwrap_err(),
            ParseError::Json
        );
    }

    #[test]
    fn replies_match_centrifugo_bytes() {
        assert_eq!(
            text(|o| empty_result(o, 2, "subscribe")),
            r#"{"id":2,"subscribe":{}}"#
        );
        assert_eq!(
            text(|o| error_reply(o, 4, 103, false)),
            r#"{"id":4,"error":{"code":103,"message":"permission denied"}}"#
        );
        let result = ConnectResult {
            client: "c0ffee",
            version: "0.0.1",
            ttl: None,
            subs: &[],
            ping_seconds: 25,
        };
        assert_eq!(
            text(|o| connect_reply(o, 1, &result)),
            r#"{"id":1,"connect":{"client":"c0ffee","version":"0.0.1","ping":25,"pong":true}}"#
        );
        assert_eq!(
            text(|o| publication_push(o, "chat:room", b"{\"n\":\n6}", None, 6, None)),
            r#"{"push":{"channel":"chat:room","pub":{"data":{"n":6},"offset":6}}}"#
        );
        let mut pubs = Vec::new();
        put_publication(&mut pubs, b"{\"n\":7}", None, 7, None);
        let result = SubscribeResult {
            recoverable: true,
            positioned: true,
            epoch: "ep1",
            offset: 6,
            recovered: Some(true),
            publications: &pubs,
        };
        assert_eq!(
            text(|o| subscribe_reply(o, 4, &result)),
            r#"{"id":4,"subscribe":{"recoverable":true,"positioned":true,"epoch":"ep1","offset":6,"was_recovering":true,"recovered":true,"publications":[{"data":{"n":7},"offset":7}]}}"#
        );
        let plain = SubscribeResult {
            recoverable: false,
            positioned: false,
            epoch: "",
            offset: 0,
            recovered: None,
            publications: &[],
        };
        assert_eq!(
            text(|o| subscribe_reply(o, 2, &plain)),
            r#"{"id":2,"subscribe":{}}"#
        );
        assert_eq!(
            text(|o| put_history_result(o, &pubs, "e", 9)),
            r#"{"publications":[{"data":{"n":7},"offset":7}],"epoch":"e","offset":9}"#
        );
        let info = client_info("42", "c", Some(r#"{"a":1}"#));
        assert_eq!(info, br#"{"user":"42","client":"c","conn_info":{"a":1}}"#);
    }

    #[test]
    fn client_ids_are_uuid_v4() {
        let id = new_client_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_ne!(id, new_client_id());
    }
}
