//! One accepted TCP connection, from the first byte to the close: HTTP/1.1 requests with
//! keep-alive (parsed with httparse) routed to `/connection/websocket` (upgrade), `/api/...`
//! (`api`), `/health` and `/metrics`; after an upgrade, the WebSocket loop that feeds frames to
//! the `Session` and writes the connection's `Outbound` queue to the socket.
//!
//! Owns the socket and the connection's partial input; everything it sends goes through the
//! `Outbound` queue (or, before the upgrade, straight to the socket).

use std::future::poll_fn;
use std::io;
use std::net::Shutdown;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use bytes::BytesMut;
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use crate::api;
use crate::hub::{Millis, Outbound};
use crate::protocol::Disconnect;
use crate::session::Session;
use crate::shard::Shard;
use crate::ws::{self, FrameReader, Incoming};

/// Largest request head (request line and headers).
const HEAD_MAX: usize = 16 << 10;
/// Largest API request body.
const BODY_MAX: usize = 10 << 20;
/// An HTTP connection idle this long between requests is closed.
const HTTP_IDLE: Duration = Duration::from_secs(60);
/// Time a closing connection gets to take our close frame and hang up.
const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// A socket that takes no bytes for this long is a slow client (Centrifugo's write timeout).
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// Most bytes written to the socket in one go when frames are coalesced.
const WRITE_BATCH: usize = 64 << 10;

/// An HTTP response.
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub extra_headers: &'static str,
}

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            content_type,
            body: body.into(),
            extra_headers: "",
        }
    }

    pub fn empty(status: u16) -> Self {
        Response::new(status, "text/plain", Vec::new())
    }

    pub fn json(body: impl Into<Vec<u8>>) -> Self {
        Response::new(200, "application/json", body)
    }

    fn encode(&self, keep_alive: bool) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}{}\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len(),
            if keep_alive {
                ""
            } else {
                "Connection: close\r\n"
            },
            self.extra_headers,
        )
        .into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        _ => "Unknown",
    }
}

/// What the request head says, copied out of the read buffer.
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
}

fn parse_head(bytes: &[u8]) -> Option<Head> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return None,
    }
    let version = request.version?;
    let mut head = Head {
        method: request.method?.to_owned(),
        path: request.path?.split('?').next().unwrap_or("").to_owned(),
        keep_alive: version == 1,
        ..Head::default()
    };
    for header in request.headers.iter() {
        let value = std::str::from_utf8(header.value).ok()?.trim();
        let has_token = |token: &str| {
            value
                .split(',')
                .any(|part| part.trim().eq_ignore_ascii_case(token))
        };
        match header.name.to_ascii_lowercase().as_str() {
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
            "authorization" => head.authorization = Some(value.to_owned()),
            _ => {}
        }
    }
    Some(head)
}

/// Serves one connection until it closes.
pub async fn serve(shard: Rc<Shard>, mut stream: TcpStream) {
    // The HTTP phase runs in its own (boxed) future and ends before the WebSocket phase
    // starts: a task is as large as its largest state, and the idle WebSocket state should
    // not carry the HTTP and API machinery (DESIGN invariant 6). I/O errors just end the
    // connection: peers vanish all the time.
    let upgraded = Box::pin(serve_http(&shard, &mut stream)).await;
    if let Ok(Some(leftover)) = upgraded {
        // A right-sized copy: the HTTP read buffer must not live as long as the connection.
        let input = BytesMut::from(&leftover[..]);
        drop(leftover);
        websocket(&shard, &mut stream, input).await;
    }
}

/// Serves HTTP requests until the connection closes (`None`) or upgrades to WebSocket
/// (`Some` with the bytes already read past the upgrade request).
async fn serve_http(shard: &Rc<Shard>, stream: &mut TcpStream) -> io::Result<Option<Vec<u8>>> {
    stream.set_read_timeout(Some(HTTP_IDLE))?;
    let mut buffer: Vec<u8> = Vec::new();
    // Bounded by the peer: every round handles one request or returns.
    loop {
        let head_len = match read_head(stream, &mut buffer).await? {
            HeadRead::Complete(len) => len,
            HeadRead::Closed => return Ok(None),
            HeadRead::TooLarge => {
                write_response(stream, &Response::empty(431), false).await?;
                return Ok(None);
            }
        };
        let Some(head) = parse_head(&buffer[..head_len]) else {
            write_response(
                stream,
                &Response::new(400, "text/plain", "Bad Request"),
                false,
            )
            .await?;
            return Ok(None);
        };
        buffer.drain(..head_len);

        if head.path == "/connection/websocket" {
            return match upgrade_response(&head) {
                Ok(response) => {
                    stream.write_all(&response).await?;
                    stream.set_read_timeout(None)?;
                    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
                    Ok(Some(buffer))
                }
                Err(response) => {
                    write_response(stream, &response, false).await?;
                    Ok(None)
                }
            };
        }

        let body = if head.chunked {
            write_response(
                stream,
                &Response::new(501, "text/plain", "chunked bodies are not supported"),
                false,
            )
            .await?;
            return Ok(None);
        } else {
            let length = head.content_length.unwrap_or(0);
            if length > BODY_MAX {
                write_response(stream, &Response::empty(413), false).await?;
                return Ok(None);
            }
            while buffer.len() < length {
                let mut chunk = vec![0; (length - buffer.len()).min(64 << 10)];
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    return Ok(None);
                }
                buffer.extend_from_slice(&chunk[..n]);
            }
            buffer.drain(..length).collect::<Vec<u8>>()
        };

        let response = match (head.method.as_str(), head.path.as_str()) {
            ("GET", "/health") => Response::json(&b"{}"[..]),
            ("GET", "/metrics") => api::metrics(shard).await,
            (_, "/health" | "/metrics") => Response::empty(405),
            (method, path) if path == "/api" || path.starts_with("/api/") => {
                if method != "POST" {
                    Response::empty(405)
                } else {
                    let method = path.trim_start_matches("/api").trim_start_matches('/');
                    api::handle(shard, &head, method, &body).await
                }
            }
            _ => Response::new(404, "text/plain", "Not Found"),
        };
        write_response(stream, &response, head.keep_alive).await?;
        if !head.keep_alive {
            return Ok(None);
        }
        if buffer.capacity() > 4096 {
            buffer.shrink_to(4096);
        }
    }
}

enum HeadRead {
    /// The head ends at this length of the buffer.
    Complete(usize),
    Closed,
    TooLarge,
}

async fn read_head(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> io::Result<HeadRead> {
    let mut searched = 0;
    loop {
        if let Some(at) = find_head_end(buffer, searched) {
            return Ok(HeadRead::Complete(at));
        }
        if buffer.len() >= HEAD_MAX {
            return Ok(HeadRead::TooLarge);
        }
        searched = buffer.len().saturating_sub(3);
        let mut chunk = vec![0u8; 2048];
        let n = match stream.read(&mut chunk).await {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::TimedOut && buffer.is_empty() => 0,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(HeadRead::Closed);
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

fn find_head_end(buffer: &[u8], from: usize) -> Option<usize> {
    buffer[from..]
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| from + i + 4)
}

async fn write_response(
    stream: &mut TcpStream,
    response: &Response,
    keep_alive: bool,
) -> io::Result<()> {
    stream.write_all(&response.encode(keep_alive)).await
}

/// The 101 response for a valid upgrade request, or the error response.
fn upgrade_response(head: &Head) -> Result<Vec<u8>, Response> {
    let bad = |why: &'static str| Response::new(400, "text/plain", why);
    if head.method != "GET" {
        return Err(Response::empty(405));
    }
    if !head.upgrade_websocket || !head.connection_upgrade {
        return Err(bad("Bad Request: not a WebSocket upgrade"));
    }
    if head.ws_version.as_deref() != Some("13") {
        let mut response = bad("Bad Request: unsupported WebSocket version");
        response.extra_headers = "Sec-WebSocket-Version: 13\r\n";
        return Err(response);
    }
    let Some(key) = head.ws_key.as_deref().filter(|k| valid_ws_key(k)) else {
        return Err(bad("Bad Request: missing or malformed Sec-WebSocket-Key"));
    };
    let protocol = if head.ws_protocols.iter().any(|p| p == "centrifuge-json") {
        "Sec-WebSocket-Protocol: centrifuge-json\r\n"
    } else if !head.ws_protocols.is_empty()
        && head.ws_protocols.iter().all(|p| p == "centrifuge-protobuf")
    {
        return Err(bad("Bad Request: only the JSON protocol is supported"));
    } else {
        ""
    };
    Ok(format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n{protocol}\r\n",
        ws::accept_key(key.as_bytes())
    )
    .into_bytes())
}

/// A key is the base64 form of 16 bytes: 22 characters and "==".
fn valid_ws_key(key: &str) -> bool {
    key.len() == 24
        && key.ends_with("==")
        && key[..22]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// How a WebSocket connection ends.
enum End {
    /// We close with this code and reason.
    Close(u16, &'static str, bool),
    /// The peer sent a close frame (with this code) or vanished.
    PeerClosed(Option<u16>),
}

enum Wake {
    Input,
    Output,
    Eof,
    Failed,
}

async fn websocket(shard: &Rc<Shard>, stream: &mut TcpStream, input: BytesMut) {
    let now = Millis::now();
    let interval = Duration::from_millis(shard.config.ping_interval_ms);
    // The first ping comes at a random point in [interval/2, interval], so a shard's pings
    // do not all fall on the same tick.
    let mut jitter = [0u8; 2];
    let _ = getrandom::getrandom(&mut jitter);
    let first_ping = now
        .after(interval / 2 + interval.mul_f64(f64::from(u16::from_ne_bytes(jitter)) / 131_070.0));
    let out = Rc::new(Outbound::new(
        shard.next_connection_id(),
        shard.config.client_queue_max_bytes,
        now,
        first_ping,
    ));
    shard.hub.borrow_mut().register(out.clone());
    let mut session = Session::new(shard.clone(), out.clone());
    let end = run_websocket(shard, stream, &out, &mut session, input).await;
    session.close();
    // Boxed: the closing steps run once, and inline they would enlarge every idle task.
    Box::pin(finish(stream, &out, end)).await;
    shard.hub.borrow_mut().unregister(out.id);
}

/// Sends the close frame (after what is queued, unless the connection was too slow for that)
/// and gives the peer a moment to hang up.
async fn finish(stream: &mut TcpStream, out: &Outbound, end: End) {
    match end {
        End::Close(code, reason, flush) => {
            if flush {
                let _ = write_queued(stream, out).await;
            }
            let _ = stream.set_write_timeout(Some(CLOSE_LINGER));
            if stream
                .write_all(&ws::close_frame(code, reason))
                .await
                .is_ok()
            {
                linger(stream).await;
            }
        }
        End::PeerClosed(code) => {
            // Echo the close as RFC 6455 asks; a code that may not be sent on the wire (1004,
            // 1005, 1006, 1015, below 1000, 1016..2999, 5000 and above) is a protocol error.
            let code = match code {
                None => 1000,
                Some(c) if matches!(c, 1000..=1003 | 1007..=1014 | 3000..=4999) => c,
                Some(_) => 1002,
            };
            let _ = write_queued(stream, out).await;
            let _ = stream.write_all(&ws::close_frame(code, "")).await;
        }
    }
}

/// After our close frame: stop sending and give the peer a moment to close its side.
async fn linger(stream: &mut TcpStream) {
    let _ = stream.shutdown(Shutdown::Write).await;
    let _ = stream.set_read_timeout(Some(CLOSE_LINGER));
    let mut sink = [0u8; 512];
    // Bounded by the read timeout and the peer's close.
    while let Ok(n) = stream.read(&mut sink).await {
        if n == 0 {
            break;
        }
    }
}

async fn run_websocket(
    shard: &Rc<Shard>,
    stream: &mut TcpStream,
    out: &Rc<Outbound>,
    session: &mut Session,
    mut input: BytesMut,
) -> End {
    let max_message = shard.config.websocket_message_max_bytes;
    let mut reader = FrameReader::default();
    loop {
        // Everything complete in the input, in order.
        loop {
            match reader.next(&mut input, max_message) {
                Ok(Some(Incoming::Message(message))) => {
                    if let Err(d) = session.handle_message(&message) {
                        return End::Close(d.code, d.reason, true);
                    }
                }
                Ok(Some(Incoming::Ping(payload))) => {
                    out.push(ws::pong_frame(&payload));
                }
                Ok(Some(Incoming::Pong)) => {}
                Ok(Some(Incoming::Close(code))) => return End::PeerClosed(code),
                Ok(None) => break,
                Err(violation) => return End::Close(violation.code, violation.reason, false),
            }
        }
        if input.is_empty() && input.capacity() > 0 {
            // Idle connections hold no buffer.
            input = BytesMut::new();
        }
        if let Some(d) = out.pending_disconnect() {
            return End::Close(d.code, d.reason, d != Disconnect::SLOW);
        }
        match write_queued(stream, out).await {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                out.disconnect(Disconnect::SLOW);
                return End::Close(Disconnect::SLOW.code, Disconnect::SLOW.reason, false);
            }
            Err(_) => return End::PeerClosed(None),
        }
        match wait(shard, stream, out, &mut input).await {
            Wake::Input | Wake::Output => {}
            Wake::Eof | Wake::Failed => return End::PeerClosed(None),
        }
    }
}

/// Waits until input arrives (appended to `input`, read through the shard's buffer) or
/// output is queued. While the node is congested it does not read (backpressure on the
/// client's commands) but still wakes for output, so pings and deliveries keep flowing.
async fn wait(
    shard: &Shard,
    stream: &mut TcpStream,
    out: &Rc<Outbound>,
    input: &mut BytesMut,
) -> Wake {
    poll_fn(|cx| {
        if out.has_output() || out.pending_disconnect().is_some() {
            return Poll::Ready(Wake::Output);
        }
        out.set_waker(cx.waker());
        if shard.hold_intake(out) {
            return Poll::Pending;
        }
        let mut buffer = shard.read_buffer.borrow_mut();
        match Pin::new(&mut *stream).poll_read(cx, &mut buffer[..]) {
            Poll::Ready(Ok(0)) => Poll::Ready(Wake::Eof),
            Poll::Ready(Ok(n)) => {
                input.extend_from_slice(&buffer[..n]);
                Poll::Ready(Wake::Input)
            }
            Poll::Ready(Err(_)) => Poll::Ready(Wake::Failed),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// Writes every queued frame, coalescing small ones into one write.
async fn write_queued(stream: &mut TcpStream, out: &Outbound) -> io::Result<()> {
    // Bounded: each round takes frames off the queue; new ones only arrive while we await,
    // and the queue's byte limit bounds them.
    while let Some(first) = out.pop() {
        if !out.has_output() || first.len() >= WRITE_BATCH {
            stream.write_all(&first).await?;
            continue;
        }
        let mut batch = Vec::with_capacity(WRITE_BATCH.min(first.len() + out.queued_bytes()));
        batch.extend_from_slice(&first);
        while batch.len() < WRITE_BATCH {
            let Some(frame) = out.pop() else { break };
            batch.extend_from_slice(&frame);
        }
        stream.write_all(&batch).await?;
    }
    stream.flush().await
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    /// An idle WebSocket connection costs its task (the `serve` future), its `Outbound` and
    /// little else (DESIGN invariant 6); this budget keeps the future from quietly growing
    /// (a stack buffer or a long-lived HTTP value in it costs every connection).
    #[test]
    fn content_length_is_strict_and_connection_tokens_combine() {
        let head = |extra: &str| {
            super::parse_head(format!("POST /api/x HTTP/1.1\r\nHost: a\r\n{extra}\r\n").as_bytes())
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

    #[test]
    fn idle_connection_task_stays_small() {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(|| async {
                let links = ringcast_ring::mesh::mesh(1, 8)
                    .unwrap()
                    .into_iter()
                    .next()
                    .unwrap();
                let outbox =
                    crate::router::Outbox::new(links.bind(), crate::router::Congestion::new(1));
                let config = crate::config::Config::default();
                let owner = crate::owner::ChannelOwner::new(0, 1, config.clone());
                let shard = Rc::new(crate::shard::Shard::new(0, 1, config, owner, outbox));
                let listener = glommio::net::TcpListener::bind("127.0.0.1:0").unwrap();
                let stream = glommio::net::TcpStream::connect(listener.local_addr().unwrap())
                    .await
                    .unwrap();
                let task = super::serve(shard, stream);
                let size = std::mem::size_of_val(&task);
                assert!(size <= 900, "connection task is {size} bytes");
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
