//! The request head (`Head`, what the server acts on, copied out of the read buffer),
//! `parse_head` (pure, fuzzed), and reading a head and a body from the socket within their
//! limits.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::Poll;

use futures_lite::AsyncRead;

use crate::limits::{
    HTTP_BODY_READ_BYTES, HTTP_HEADERS_MAX, HTTP_HEAD_BYTES_MAX, HTTP_HEAD_READ_BYTES,
};

/// What the request head says.
#[derive(Debug, Default)]
pub struct Head {
    pub method: String,
    pub path: String,
    pub keep_alive: bool,
    pub content_length: Option<usize>,
    pub chunked: bool,
    pub upgrade_websocket: bool,
    pub connection_upgrade: bool,
    pub ws_version: Option<String>,
    pub ws_key: Option<String>,
    pub ws_protocols: Vec<String>,
    pub api_key: Option<String>,
    pub authorization: Option<String>,
    /// The `api_key` query parameter (Centrifugo takes the key there too).
    pub query_api_key: Option<String>,
    /// `X-Centrifugo-Error-Mode: transport`: API errors as HTTP statuses.
    pub transport_errors: bool,
    /// The `Origin` header (a browser's page), checked at the WebSocket upgrade.
    pub origin: Option<String>,
    pub expect: Expect,
}

/// The request's `Expect` header.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    #[default]
    Nothing,
    /// `100-continue`: the client waits for `100 Continue` before it sends the body (curl
    /// does for bodies over 1 MiB, and waits a second when no answer comes).
    Continue,
    /// Any other expectation: 417, as Go's net/http (Centrifugo) answers.
    Unknown,
}

/// Parses a complete request head; `None` if it is malformed.
pub fn parse_head(bytes: &[u8]) -> Option<Head> {
    let mut headers = [httparse::EMPTY_HEADER; HTTP_HEADERS_MAX];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return None,
    }
    let version = request.version?;
    let (path, query) = request.path?.split_once('?').unwrap_or((request.path?, ""));
    let mut head = Head {
        method: request.method?.to_owned(),
        path: path.to_owned(),
        keep_alive: version == 1,
        query_api_key: query
            .split('&')
            .find_map(|pair| pair.strip_prefix("api_key="))
            .map(str::to_owned),
        ..Head::default()
    };
    for header in request.headers.iter() {
        let value = std::str::from_utf8(header.value).ok()?.trim();
        let has_token = |token: &str| {
            value
                .split(',')
                .any(|part| part.trim().eq_ignore_ascii_case(token))
        };
        let mut lower = [0u8; HEADER_NAME_BYTES_MAX];
        match lowercase(header.name, &mut lower) {
            "connection" => {
                // Tokens of every Connection header count (`Connection: keep-alive` and
                // `Connection: Upgrade` may come as two headers).
                if has_token("close") {
                    head.keep_alive = false;
                } else if has_token("keep-alive") {
                    head.keep_alive = true;
                }
                head.connection_upgrade |= has_token("upgrade");
            }
            "content-length" => {
                // Digits only (`+5`, `-1`, ` 5 5` are refused), and repeated headers must
                // agree: a disagreement is a request-smuggling attempt or a broken client.
                if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                let length: usize = value.parse().ok()?;
                if head.content_length.is_some_and(|l| l != length) {
                    return None;
                }
                head.content_length = Some(length);
            }
            "transfer-encoding" => head.chunked = true,
            "upgrade" => head.upgrade_websocket = has_token("websocket"),
            "sec-websocket-version" => head.ws_version = Some(value.to_owned()),
            "sec-websocket-key" => head.ws_key = Some(value.to_owned()),
            "sec-websocket-protocol" => head
                .ws_protocols
                .extend(value.split(',').map(|p| p.trim().to_owned())),
            "x-api-key" => head.api_key = Some(value.to_owned()),
            "x-centrifugo-error-mode" => head.transport_errors = value == "transport",
            "authorization" => head.authorization = Some(value.to_owned()),
            "origin" => head.origin = Some(value.to_owned()),
            "expect" => {
                // Any expectation but 100-continue fails (417, as Go's net/http answers); an
                // HTTP/1.0 client gets no interim answer.
                let continues = value
                    .split(',')
                    .all(|token| token.trim().eq_ignore_ascii_case("100-continue"));
                head.expect = match (continues, version) {
                    (false, _) => Expect::Unknown,
                    (true, 1) => Expect::Continue,
                    (true, _) => Expect::Nothing,
                };
            }
            _ => {}
        }
    }
    Some(head)
}

/// The longest header name the server reads (`sec-websocket-protocol`) fits this.
const HEADER_NAME_BYTES_MAX: usize = 32;

/// `name` in lower case, written into `buffer` (no allocation per header); an empty name for
/// one longer than any the server reads.
fn lowercase<'a>(name: &str, buffer: &'a mut [u8; HEADER_NAME_BYTES_MAX]) -> &'a str {
    let Some(lower) = buffer.get_mut(..name.len()) else {
        return "";
    };
    lower.copy_from_slice(name.as_bytes());
    lower.make_ascii_lowercase();
    // ASCII case mapping keeps UTF-8 valid; httparse admits only token bytes anyway.
    std::str::from_utf8(lower).unwrap_or("")
}

/// What the read buffer holds at its start.
#[derive(Debug)]
// Built and matched once per request, on the stack: boxing the head would cost every API
// request an allocation to spare a move.
#[allow(clippy::large_enum_variant)]
pub enum Buffered {
    /// Not yet a whole head.
    Partial,
    /// A head longer than `HTTP_HEAD_BYTES_MAX` (431).
    TooLarge,
    /// A malformed head (400).
    Bad,
    /// A parsed head of `head_len` bytes; its body is complete when the buffer holds
    /// `head_len + content_length` bytes.
    Head { head: Head, head_len: usize },
}

/// Inspects the start of `buffer` for a request head; reads nothing.
pub fn buffered(buffer: &[u8]) -> Buffered {
    match find_head_end(buffer) {
        Some(len) => match parse_head(&buffer[..len]) {
            Some(head) => Buffered::Head {
                head,
                head_len: len,
            },
            // More header lines than are read: 431, as for a head too long.
            None if header_lines(&buffer[..len]) > HTTP_HEADERS_MAX => Buffered::TooLarge,
            None => Buffered::Bad,
        },
        None if buffer.len() >= HTTP_HEAD_BYTES_MAX => Buffered::TooLarge,
        None => Buffered::Partial,
    }
}

/// The header lines of a complete head (its lines but the request line and the empty end).
fn header_lines(head: &[u8]) -> usize {
    head.windows(2)
        .filter(|w| *w == b"\r\n")
        .count()
        .saturating_sub(2)
}

fn find_head_end(buffer: &[u8]) -> Option<usize> {
    let window = &buffer[..buffer.len().min(HTTP_HEAD_BYTES_MAX)];
    window
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
}

/// Reads what the socket has into `buffer`, room made for `want` more bytes (the rest of a
/// known body; 0 when unknown) within the read sizes' limits; 0 at end of input.
/// Cancellation-safe: glommio receives only inside the poll, into the slice it is given, and
/// the buffer grows only by what was received.
pub async fn read_more(
    stream: &mut (impl AsyncRead + Unpin),
    buffer: &mut Vec<u8>,
    want: usize,
    scratch: &RefCell<Box<[u8]>>,
) -> io::Result<usize> {
    let room = want.clamp(HTTP_HEAD_READ_BYTES, HTTP_BODY_READ_BYTES);
    poll_fn(|cx| {
        // Read through the shard's buffer (borrowed only inside this poll: glommio reads
        // readiness-first), so a connection's own buffer grows by what arrived, not by a
        // zeroed read's worth.
        let mut scratch = scratch.borrow_mut();
        let room = room.min(scratch.len());
        let polled = Pin::new(&mut *stream).poll_read(cx, &mut scratch[..room]);
        if let Poll::Ready(Ok(n)) = &polled {
            buffer.extend_from_slice(&scratch[..*n]);
        }
        polled
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_match_in_any_case() {
        let head = parse_head(
            b"POST /api/publish HTTP/1.1\r\nCONTENT-Length: 5\r\nx-API-key: k\r\n\
              Connection: CLOSE\r\nX-A-Header-Name-Longer-Than-Any-Read: 1\r\n\r\n",
        )
        .unwrap();
        assert_eq!(head.content_length, Some(5));
        assert_eq!(head.api_key.as_deref(), Some("k"));
        assert!(!head.keep_alive);
    }

    #[test]
    fn expect_continue_is_answered_for_http_1_1_only() {
        let parse = |version: &str, header: &str| {
            parse_head(format!("POST /api/publish HTTP/{version}\r\n{header}\r\n").as_bytes())
                .unwrap()
                .expect
        };
        assert_eq!(parse("1.1", "Expect: 100-Continue\r\n"), Expect::Continue);
        assert_eq!(parse("1.1", "Expect: something\r\n"), Expect::Unknown);
        assert_eq!(parse("1.1", ""), Expect::Nothing);
        assert_eq!(parse("1.0", "Expect: 100-continue\r\n"), Expect::Nothing);
        assert_eq!(parse("1.0", "Expect: other\r\n"), Expect::Unknown);
        assert_eq!(
            parse("1.1", "Expect: 100-continue, 100-continue\r\n"),
            Expect::Continue
        );
    }

    #[test]
    fn content_length_is_strict_and_connection_tokens_combine() {
        let head = |extra: &str| {
            parse_head(format!("POST /api/x HTTP/1.1\r\nHost: a\r\n{extra}\r\n").as_bytes())
        };
        assert_eq!(
            head("Content-Length: 5\r\n").unwrap().content_length,
            Some(5)
        );
        assert!(head("Content-Length: +5\r\n").is_none());
        assert!(head("Content-Length: 5, 5\r\n").is_none());
        assert!(head("Content-Length:\r\n").is_none());
        assert!(head("Content-Length: 5\r\nContent-Length: 6\r\n").is_none());
        assert_eq!(
            head("Content-Length: 5\r\nContent-Length: 5\r\n")
                .unwrap()
                .content_length,
            Some(5)
        );
        let both = head("Connection: keep-alive\r\nConnection: Upgrade\r\n").unwrap();
        assert!(both.connection_upgrade && both.keep_alive);
    }
}
