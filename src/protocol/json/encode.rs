//! Encoding: every reply and push of the client protocol in JSON, byte for byte as Centrifugo
//! writes them (reference §§3-6). Each function appends to a `Vec<u8>`; one call is one line
//! (no newline added: the caller joins lines of one frame with `\n`).

use std::fmt::Write as _;

use crate::protocol::{ErrorCode, Publication};

/// `fmt::Write` into a byte vector, for `write!` of numbers and fixed text into JSON.
pub struct ByteSink<'a>(pub &'a mut Vec<u8>);

impl std::fmt::Write for ByteSink<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Appends `s` as a JSON string.
pub fn put_str(out: &mut Vec<u8>, s: &str) {
    // Most strings here (channels, epochs, client ids) need no escape: copied as they are.
    // JSON escapes only '"', '\\' and control characters, as serde_json does.
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return;
    }
    // Writing JSON into a Vec has no I/O that could fail; serde_json escapes every &str.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Appends raw JSON (already validated) without its raw newlines: a JSON value holds raw
/// newlines only as whitespace, so removing them keeps the value and keeps one command or
/// reply per line.
pub fn put_raw(out: &mut Vec<u8>, raw: &[u8]) {
    out.extend(raw.iter().copied().filter(|&b| b != b'\n' && b != b'\r'));
}

/// `raw` (valid JSON) without raw newlines, as its own buffer.
pub fn raw_without_newlines(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    put_raw(&mut out, raw);
    out
}

fn open_reply(out: &mut Vec<u8>, id: u32) {
    out.extend_from_slice(b"{\"id\":");
    let _ = write!(ByteSink(out), "{id}");
}

/// The error object `{"code":C,"message":"..."}`, with `"temporary":true` when asked.
pub fn put_error(out: &mut Vec<u8>, code: ErrorCode, temporary: bool) {
    let _ = write!(
        ByteSink(out),
        "{{\"code\":{},\"message\":\"{}\"{}}}",
        code.code(),
        code.message(),
        if temporary { ",\"temporary\":true" } else { "" }
    );
}

/// `{"id":N,"<method>":{}}`
pub fn empty_result(out: &mut Vec<u8>, id: u32, method: &str) {
    open_reply(out, id);
    out.extend_from_slice(b",\"");
    out.extend_from_slice(method.as_bytes());
    out.extend_from_slice(b"\":{}}");
}

/// `{"id":N,"error":{"code":C,"message":"..."}}`, `temporary` for the codes SDKs retry.
pub fn error_reply(out: &mut Vec<u8>, id: u32, code: ErrorCode) {
    open_reply(out, id);
    out.extend_from_slice(b",\"error\":");
    put_error(out, code, code.temporary());
    out.push(b'}');
}

/// The connect result, fields in proto order.
pub struct ConnectResult<'a> {
    pub client: &'a str,
    pub version: &'a str,
    /// Seconds until the connection expires, if it does.
    pub ttl: Option<u32>,
    /// Server-side subscriptions the connection got, each with its subscribe result (raw
    /// JSON, `put_subscribe_result`).
    pub subs: &'a [(Box<str>, Vec<u8>)],
    /// The server's ping interval in seconds, if it pings.
    pub ping_seconds: Option<u32>,
    /// The server expects pongs.
    pub pong: bool,
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
        out.extend_from_slice(b",\"subs\":");
        put_raw_map(
            out,
            result.subs.iter().map(|(c, sub)| (&**c, sub.as_slice())),
        );
    }
    if let Some(ping) = result.ping_seconds {
        let _ = write!(ByteSink(out), ",\"ping\":{ping}");
    }
    if result.pong {
        out.extend_from_slice(b",\"pong\":true");
    }
    out.extend_from_slice(b"}}");
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

/// The refresh push of a connection the server API refreshed:
/// `{"push":{"refresh":{"expires":true,"ttl":T}}}` (`{}` without expiry).
pub fn refresh_push(out: &mut Vec<u8>, ttl: Option<u32>) {
    out.extend_from_slice(b"{\"push\":{\"refresh\":{");
    if let Some(ttl) = ttl {
        let _ = write!(ByteSink(out), "\"expires\":true,\"ttl\":{}", ttl.max(1));
    }
    out.extend_from_slice(b"}}}");
}

/// The publication push `{"push":{"channel":C,"pub":{"data":D,"info":I,"offset":N,"tags":T}}}`.
pub fn publication_push(out: &mut Vec<u8>, channel: &str, publication: &Publication) {
    out.extend_from_slice(b"{\"push\":{\"channel\":");
    put_str(out, channel);
    out.extend_from_slice(b",\"pub\":");
    put_publication(out, publication);
    out.extend_from_slice(b"}}");
}

/// One publication as pushes, history and recovery carry it:
/// `{"data":D,"info":I,"offset":N,"tags":T}` (`info`, `offset`, `tags` omitted when absent).
pub fn put_publication(out: &mut Vec<u8>, publication: &Publication) {
    out.extend_from_slice(b"{\"data\":");
    put_raw(out, &publication.data);
    if let Some(info) = &publication.info {
        out.extend_from_slice(b",\"info\":");
        put_raw(out, info);
    }
    if let Some(offset) = publication.offset {
        let _ = write!(ByteSink(out), ",\"offset\":{offset}");
    }
    if let Some(tags) = &publication.tags {
        out.extend_from_slice(b",\"tags\":");
        put_raw(out, tags);
    }
    out.push(b'}');
}

fn put_publications(out: &mut Vec<u8>, publications: &[Publication]) {
    out.push(b'[');
    for (i, publication) in publications.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        put_publication(out, publication);
    }
    out.push(b']');
}

/// The subscribe result (reference §6), field order as Centrifugo writes it.
pub struct SubscribeResult<'a> {
    /// Seconds until the subscription expires, if it does (its token's expiry).
    pub ttl: Option<u32>,
    /// The subscription token's `data`, raw JSON.
    pub data: Option<&'a str>,
    pub recoverable: bool,
    pub positioned: bool,
    pub epoch: &'a str,
    pub offset: u64,
    /// `Some(recovered)` when the client asked to recover, with the recovered publications.
    pub recovered: Option<bool>,
    pub publications: &'a [Publication],
}

pub fn subscribe_reply(out: &mut Vec<u8>, id: u32, result: &SubscribeResult<'_>) {
    open_reply(out, id);
    out.extend_from_slice(b",\"subscribe\":");
    put_subscribe_result(out, result);
    out.push(b'}');
}

/// The subscribe result object `{...}` (also what a connect result's `subs` map holds).
pub fn put_subscribe_result(out: &mut Vec<u8>, result: &SubscribeResult<'_>) {
    out.push(b'{');
    let body = out.len();
    // Each field after the first is preceded by a comma.
    let field = |out: &mut Vec<u8>, name: &[u8]| {
        if out.len() > body {
            out.push(b',');
        }
        out.push(b'"');
        out.extend_from_slice(name);
        out.extend_from_slice(b"\":");
    };
    if let Some(ttl) = result.ttl {
        field(out, b"expires");
        out.extend_from_slice(b"true");
        field(out, b"ttl");
        let _ = write!(ByteSink(out), "{}", ttl.max(1));
    }
    if result.recoverable || result.positioned {
        if result.recoverable {
            field(out, b"recoverable");
            out.extend_from_slice(b"true");
        }
        if result.positioned {
            field(out, b"positioned");
            out.extend_from_slice(b"true");
        }
        field(out, b"epoch");
        put_str(out, result.epoch);
        field(out, b"offset");
        let _ = write!(ByteSink(out), "{}", result.offset);
        if let Some(recovered) = result.recovered {
            field(out, b"was_recovering");
            out.extend_from_slice(b"true");
            field(out, b"recovered");
            out.extend_from_slice(if recovered { b"true" } else { b"false" });
            if !result.publications.is_empty() {
                field(out, b"publications");
                put_publications(out, result.publications);
            }
        }
    }
    if let Some(data) = result.data {
        field(out, b"data");
        put_raw(out, data.as_bytes());
    }
    out.push(b'}');
}

/// The history result body `{"publications":[...],"epoch":E,"offset":N}`.
pub fn put_history_result(
    out: &mut Vec<u8>,
    publications: &[Publication],
    epoch: &str,
    offset: u64,
) {
    out.extend_from_slice(b"{\"publications\":");
    put_publications(out, publications);
    out.extend_from_slice(b",\"epoch\":");
    put_str(out, epoch);
    let _ = write!(ByteSink(out), ",\"offset\":{offset}}}");
}

/// `{"id":N,"history":{...}}`
pub fn history_reply(
    out: &mut Vec<u8>,
    id: u32,
    publications: &[Publication],
    epoch: &str,
    offset: u64,
) {
    open_reply(out, id);
    out.extend_from_slice(b",\"history\":");
    put_history_result(out, publications, epoch, offset);
    out.push(b'}');
}

/// ClientInfo `{"user":U,"client":C,"conn_info":I,"chan_info":J}` as raw JSON (the infos
/// only when present: the connection token's and the subscription's).
pub fn client_info(
    user: &str,
    client: &str,
    conn_info: Option<&str>,
    chan_info: Option<&str>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(48 + user.len() + client.len());
    out.extend_from_slice(b"{\"user\":");
    put_str(&mut out, user);
    out.extend_from_slice(b",\"client\":");
    put_str(&mut out, client);
    if let Some(info) = conn_info {
        out.extend_from_slice(b",\"conn_info\":");
        put_raw(&mut out, info.as_bytes());
    }
    if let Some(info) = chan_info {
        out.extend_from_slice(b",\"chan_info\":");
        put_raw(&mut out, info.as_bytes());
    }
    out.push(b'}');
    out
}

/// The subscribe push of a subscription the server made, with the fields Centrifugo's
/// `Subscribe` push has (each omitted when zero or empty):
/// `{"push":{"channel":C,"subscribe":{"recoverable":true,"epoch":E,"offset":N,"positioned":true,"data":D}}}`.
/// A recovery's publications are not in it (the caller pushes them after it).
pub fn subscribe_push(out: &mut Vec<u8>, channel: &str, result: &SubscribeResult<'_>) {
    out.extend_from_slice(b"{\"push\":{\"channel\":");
    put_str(out, channel);
    out.extend_from_slice(b",\"subscribe\":{");
    let mut first = true;
    let mut field = |out: &mut Vec<u8>, name: &str| {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        out.push(b'"');
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":");
    };
    if result.recoverable {
        field(out, "recoverable");
        out.extend_from_slice(b"true");
    }
    if !result.epoch.is_empty() {
        field(out, "epoch");
        put_str(out, result.epoch);
    }
    if result.offset > 0 {
        field(out, "offset");
        let _ = write!(ByteSink(out), "{}", result.offset);
    }
    if result.positioned {
        field(out, "positioned");
        out.extend_from_slice(b"true");
    }
    if let Some(data) = result.data {
        field(out, "data");
        put_raw(out, data.as_bytes());
    }
    out.extend_from_slice(b"}}}");
}

/// A join or leave push: `{"push":{"channel":C,"join":{"info":CLIENTINFO}}}` (`leave`
/// likewise).
pub fn join_leave_push(out: &mut Vec<u8>, channel: &str, kind: &str, info: &[u8]) {
    out.extend_from_slice(b"{\"push\":{\"channel\":");
    put_str(out, channel);
    out.extend_from_slice(b",\"");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\":{\"info\":");
    out.extend_from_slice(info);
    out.extend_from_slice(b"}}}");
}

/// `{"id":N,"presence":{"presence":{CLIENT:CLIENTINFO,...}}}`; `entries` yields each client's
/// id and its ClientInfo, raw JSON.
pub fn presence_reply<'a>(
    out: &mut Vec<u8>,
    id: u32,
    entries: impl Iterator<Item = (&'a str, &'a [u8])>,
) {
    open_reply(out, id);
    out.extend_from_slice(b",\"presence\":");
    put_presence_result(out, entries);
    out.push(b'}');
}

/// `{"presence":{CLIENT:CLIENTINFO,...}}`.
pub fn put_presence_result<'a>(
    out: &mut Vec<u8>,
    entries: impl Iterator<Item = (&'a str, &'a [u8])>,
) {
    out.extend_from_slice(b"{\"presence\":");
    put_raw_map(out, entries);
    out.push(b'}');
}

/// `{"K":V,...}` from names and raw JSON values.
fn put_raw_map<'a>(out: &mut Vec<u8>, entries: impl Iterator<Item = (&'a str, &'a [u8])>) {
    out.push(b'{');
    for (i, (name, value)) in entries.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        put_str(out, name);
        out.push(b':');
        out.extend_from_slice(value);
    }
    out.push(b'}');
}

/// `{"id":N,"presence_stats":{"num_clients":C,"num_users":U}}`.
pub fn presence_stats_reply(out: &mut Vec<u8>, id: u32, num_clients: u32, num_users: u32) {
    open_reply(out, id);
    out.extend_from_slice(b",\"presence_stats\":");
    put_presence_stats(out, num_clients, num_users);
    out.push(b'}');
}

/// `{"num_clients":C,"num_users":U}` (both always written).
pub fn put_presence_stats(out: &mut Vec<u8>, num_clients: u32, num_users: u32) {
    let _ = write!(
        ByteSink(out),
        "{{\"num_clients\":{num_clients},\"num_users\":{num_users}}}"
    );
}

/// The unsubscribe push `{"push":{"channel":C,"unsubscribe":{"code":N,"reason":R}}}`.
pub fn unsubscribe_push(out: &mut Vec<u8>, channel: &str, code: u32, reason: &str) {
    out.extend_from_slice(b"{\"push\":{\"channel\":");
    put_str(out, channel);
    let _ = write!(
        ByteSink(out),
        ",\"unsubscribe\":{{\"code\":{code},\"reason\":"
    );
    put_str(out, reason);
    out.extend_from_slice(b"}}}");
}

/// `{"id":N,"sub_refresh":{"expires":true,"ttl":T}}` (or `{}` without expiry).
pub fn sub_refresh_reply(out: &mut Vec<u8>, id: u32, ttl: Option<u32>) {
    open_reply(out, id);
    out.extend_from_slice(b",\"sub_refresh\":{");
    if let Some(ttl) = ttl {
        let _ = write!(ByteSink(out), "\"expires\":true,\"ttl\":{}", ttl.max(1));
    }
    out.extend_from_slice(b"}}");
}

/// The server's ping: an empty command.
pub const PING: &[u8] = b"{}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_str_writes_what_serde_json_writes() {
        for s in [
            "",
            "personal:42",
            "quote\"d",
            "back\\slash",
            "tab\there",
            "nl\n",
            "\u{1}\u{1f}",
            "\u{7f} del",
            "dé 漢字 😀",
            "/slash",
        ] {
            let mut ours = Vec::new();
            put_str(&mut ours, s);
            assert_eq!(ours, serde_json::to_vec(s).unwrap(), "{s:?}");
        }
    }
    use bytes::Bytes;
    use std::num::NonZeroU64;

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    }

    fn publication(data: &'static [u8], offset: u64) -> Publication {
        Publication {
            offset: NonZeroU64::new(offset),
            data: Bytes::from_static(data),
            info: None,
            tags: None,
        }
    }

    #[test]
    fn replies_match_centrifugo_bytes() {
        assert_eq!(
            text(|o| empty_result(o, 2, "subscribe")),
            r#"{"id":2,"subscribe":{}}"#
        );
        assert_eq!(
            text(|o| error_reply(o, 4, ErrorCode::PermissionDenied)),
            r#"{"id":4,"error":{"code":103,"message":"permission denied"}}"#
        );
        assert_eq!(
            text(|o| error_reply(o, 5, ErrorCode::Internal)),
            r#"{"id":5,"error":{"code":100,"message":"internal server error","temporary":true}}"#
        );
        let result = ConnectResult {
            client: "c0ffee",
            version: "0.0.1",
            ttl: None,
            subs: &[],
            ping_seconds: Some(25),
            pong: true,
        };
        assert_eq!(
            text(|o| connect_reply(o, 1, &result)),
            r#"{"id":1,"connect":{"client":"c0ffee","version":"0.0.1","ping":25,"pong":true}}"#
        );
        assert_eq!(
            text(|o| publication_push(o, "chat:room", &publication(b"{\"n\":\n6}", 6))),
            r#"{"push":{"channel":"chat:room","pub":{"data":{"n":6},"offset":6}}}"#
        );
        let pubs = [publication(b"{\"n\":7}", 7)];
        let result = SubscribeResult {
            ttl: None,
            data: None,
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
            ttl: None,
            data: None,
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
        let granted = SubscribeResult {
            ttl: Some(30),
            data: Some(r#"{"hi":1}"#),
            ..plain
        };
        assert_eq!(
            text(|o| subscribe_reply(o, 3, &granted)),
            r#"{"id":3,"subscribe":{"expires":true,"ttl":30,"data":{"hi":1}}}"#
        );
        assert_eq!(
            text(|o| unsubscribe_push(o, "c", 2501, "subscription expired")),
            r#"{"push":{"channel":"c","unsubscribe":{"code":2501,"reason":"subscription expired"}}}"#
        );
        assert_eq!(
            text(|o| sub_refresh_reply(o, 5, Some(0))),
            r#"{"id":5,"sub_refresh":{"expires":true,"ttl":1}}"#
        );
        assert_eq!(
            text(|o| put_history_result(o, &pubs, "e", 9)),
            r#"{"publications":[{"data":{"n":7},"offset":7}],"epoch":"e","offset":9}"#
        );
        assert_eq!(
            text(|o| history_reply(o, 3, &[], "e", 0)),
            r#"{"id":3,"history":{"publications":[],"epoch":"e","offset":0}}"#
        );
        let info = client_info("42", "c", Some(r#"{"a":1}"#), None);
        assert_eq!(info, br#"{"user":"42","client":"c","conn_info":{"a":1}}"#);
    }
}
