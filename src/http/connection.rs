//! One HTTP/1.1 connection before any upgrade, with pipelining: requests are read and
//! dispatched as they arrive, up to `HTTP_PIPELINE_REQUESTS_MAX` in flight, each answered by a
//! task of its own (an API publish waits for its owner shard without holding the next
//! request back), and the responses leave in request order. The loop ends when the peer
//! closes, a request asks to close, a request is refused, or an upgrade request arrives (after
//! every earlier response has been written).

use std::collections::VecDeque;
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::{future, AsyncReadExt, AsyncWriteExt};
use glommio::task::JoinHandle;

use super::request::{buffered, read_more, Buffered, Expect, Head};
use super::response::Response;
use super::routes::{self, Endpoints, Route};
use super::stream::Stream;
use crate::limits::{
    HTTP_BODY_BYTES_MAX, HTTP_BUFFER_KEPT_BYTES_MAX, HTTP_IDLE_MS, HTTP_PIPELINE_REQUESTS_MAX,
    HTTP_REFUSAL_LINGER_BYTES_MAX, HTTP_REFUSAL_LINGER_MS,
};
use crate::shard::{ApiInFlight, Shard};

/// How the HTTP phase ended.
pub enum Ended {
    /// The connection is done.
    Closed,
    /// A WebSocket upgrade request was accepted by the caller's check: its head, and the bytes
    /// read past it.
    Upgrade { head: Box<Head>, leftover: Vec<u8> },
}

/// A request dispatched and not yet answered.
struct InFlight<'a> {
    answer: JoinHandle<Response>,
    keep_alive: bool,
    /// An API request counts for the drain until its response is written.
    _api: Option<ApiInFlight<'a>>,
}

/// What to do with the connection next.
enum Next {
    /// Dispatch a request whose whole body is buffered.
    Dispatch {
        head: Head,
        head_len: usize,
        length: usize,
    },
    /// Refuse with this response and close, after the earlier responses.
    Refuse(Response),
    /// An upgrade request: hand the connection over, after the earlier responses.
    Upgrade { head: Head, head_len: usize },
    /// Read more (a head or body is incomplete), wanting this many more bytes (0: unknown).
    Read(usize),
    /// The client waits for `100 Continue` before it sends the body: answer it (after the
    /// earlier responses), then read the body.
    Continue,
}

/// What the buffer asks for; `continued`: the head at its start got its `100 Continue`.
fn next(shard: &Shard, endpoints: Endpoints, buffer: &[u8], continued: bool) -> Next {
    let (head, head_len) = match buffered(buffer) {
        Buffered::Partial => return Next::Read(0),
        Buffered::TooLarge => return Next::Refuse(Response::empty(431)),
        Buffered::Bad => return Next::Refuse(Response::text(400, "Bad Request")),
        Buffered::Head { head, head_len } => (head, head_len),
    };
    if routes::route(&shard.config, endpoints, &head.method, &head.path) == Route::WebSocket {
        return Next::Upgrade { head, head_len };
    }
    if head.chunked {
        return Next::Refuse(Response::text(501, "chunked bodies are not supported"));
    }
    if head.expect == Expect::Unknown {
        return Next::Refuse(Response::text(417, "Expectation Failed"));
    }
    let length = head.content_length.unwrap_or(0);
    if length > HTTP_BODY_BYTES_MAX {
        return Next::Refuse(Response::empty(413));
    }
    match (head_len + length).checked_sub(buffer.len()) {
        // Nothing of the body yet: the client may be waiting for the interim answer.
        Some(missing)
            if missing > 0
                && head.expect == Expect::Continue
                && !continued
                && buffer.len() == head_len =>
        {
            Next::Continue
        }
        Some(missing) if missing > 0 => Next::Read(missing),
        _ => Next::Dispatch {
            head,
            head_len,
            length,
        },
    }
}

/// Serves requests until the connection ends or upgrades.
/// `initial`: bytes read already (past a PROXY header).
pub async fn serve(
    shard: &Rc<Shard>,
    stream: &mut Stream,
    endpoints: Endpoints,
    initial: Vec<u8>,
) -> io::Result<Ended> {
    let idle = Duration::from_millis(HTTP_IDLE_MS);
    let request_timeout = shard
        .config
        .http_server
        .request_timeout
        .positive()
        .unwrap_or(idle);
    stream.set_read_timeout(Some(idle))?;
    // When the request being read began (its first byte), while one is incomplete: it must
    // be whole within `request_timeout` however slowly its bytes come.
    let mut request_began: Option<Instant> = None;
    let mut buffer: Vec<u8> = initial;
    let mut in_flight: VecDeque<InFlight<'_>> = VecDeque::new();
    // Reading stops after a request that asks to close.
    let mut reading = true;
    // The head at the buffer's start got its `100 Continue`.
    let mut continued = false;
    // Bounded by the peer: every round writes a response, dispatches a request or reads.
    loop {
        if !write_ready(stream, &mut in_flight, None).await? {
            return Ok(Ended::Closed);
        }
        if !reading {
            if in_flight.is_empty() {
                return Ok(Ended::Closed);
            }
            if !write_front(stream, &mut in_flight).await? {
                return Ok(Ended::Closed);
            }
            continue;
        }
        if in_flight.len() >= HTTP_PIPELINE_REQUESTS_MAX {
            if !write_front(stream, &mut in_flight).await? {
                return Ok(Ended::Closed);
            }
            continue;
        }
        match next(shard, endpoints, &buffer, continued) {
            Next::Dispatch {
                head,
                head_len,
                length,
            } => {
                let body = &buffer[head_len..head_len + length];
                let route = routes::route(&shard.config, endpoints, &head.method, &head.path);
                let prepared = routes::prepare(shard, &head, route, body);
                buffer.drain(..head_len + length);
                continued = false;
                reading = head.keep_alive;
                let keep_alive = head.keep_alive;
                request_began = None;
                // Sent now, in request order (a congested node holds publishes back here,
                // before anything later is sent); answered by a task of its own.
                if prepared.publishes() {
                    shard.wait_for_room().await;
                }
                let acts_on_users = prepared.acts_on_users();
                let api = prepared.is_api().then(|| shard.api_in_flight());
                let dispatched = prepared.dispatch(shard);
                let shard = shard.clone();
                let answer =
                    glommio::spawn_local(async move { dispatched.response(&shard).await }).detach();
                in_flight.push_back(InFlight {
                    answer,
                    keep_alive,
                    _api: api,
                });
                if acts_on_users {
                    // Answered only once the user's connections applied it: the requests
                    // after it start then, as if the connection sent one at a time (a
                    // publish right after a subscribe reaches the new subscriber).
                    drain(stream, &mut in_flight).await?;
                }
                if buffer.capacity() > HTTP_BUFFER_KEPT_BYTES_MAX && buffer.is_empty() {
                    buffer.shrink_to(HTTP_BUFFER_KEPT_BYTES_MAX);
                }
            }
            Next::Refuse(response) => {
                refuse(stream, &mut in_flight, response).await?;
                return Ok(Ended::Closed);
            }
            Next::Upgrade { head, head_len } => {
                drain(stream, &mut in_flight).await?;
                buffer.drain(..head_len);
                return Ok(Ended::Upgrade {
                    head: Box::new(head),
                    leftover: buffer,
                });
            }
            Next::Continue => {
                // An interim answer belongs to the request being read: the earlier ones'
                // final answers go first.
                while !in_flight.is_empty() {
                    if !write_front(stream, &mut in_flight).await? {
                        return Ok(Ended::Closed);
                    }
                }
                stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
                continued = true;
            }
            Next::Read(want) => {
                // Between requests the idle timeout; within one what is left of its time.
                let timeout = if buffer.is_empty() {
                    request_began = None;
                    idle
                } else {
                    let began = *request_began.get_or_insert_with(Instant::now);
                    request_timeout.saturating_sub(began.elapsed()).min(idle)
                };
                if timeout.is_zero() {
                    refuse(stream, &mut in_flight, Response::empty(408)).await?;
                    return Ok(Ended::Closed);
                }
                stream.set_read_timeout(Some(timeout))?;
                let timed_out = |e: &io::Error| e.kind() == io::ErrorKind::TimedOut;
                if in_flight.is_empty() {
                    match read_more(stream, &mut buffer, want, &shard.read_buffer).await {
                        Ok(0) => return Ok(Ended::Closed),
                        Ok(_) => {}
                        // An idle keep-alive connection timing out between requests.
                        Err(e) if timed_out(&e) && buffer.is_empty() => return Ok(Ended::Closed),
                        // A request that did not arrive in time.
                        Err(e) if timed_out(&e) => {
                            refuse(stream, &mut in_flight, Response::empty(408)).await?;
                            return Ok(Ended::Closed);
                        }
                        Err(e) => return Err(e),
                    }
                    continue;
                }
                // Read more or write the oldest answer, whichever comes first.
                let front = &mut in_flight[0];
                let read = async {
                    Step::Read(read_more(stream, &mut buffer, want, &shard.read_buffer).await)
                };
                let answered = async { Step::Answered((&mut front.answer).await) };
                match future::or(read, answered).await {
                    Step::Read(Ok(0)) => reading = false,
                    Step::Read(Ok(_)) => {}
                    Step::Read(Err(e)) if timed_out(&e) && !buffer.is_empty() => {
                        refuse(stream, &mut in_flight, Response::empty(408)).await?;
                        return Ok(Ended::Closed);
                    }
                    Step::Read(Err(e)) => return Err(e),
                    Step::Answered(response) => {
                        let Some(done) = in_flight.pop_front() else {
                            continue;
                        };
                        let first = Some((response, done.keep_alive));
                        if !write_ready(stream, &mut in_flight, first).await? {
                            return Ok(Ended::Closed);
                        }
                    }
                }
            }
        }
    }
}

/// What `future::or` returns: the read finished, or the oldest answer did.
enum Step {
    Read(io::Result<usize>),
    Answered(Option<Response>),
}

/// An answer taken off the front: the response (`None`: its task could not answer, its shard
/// stopped) and whether the connection stays open after it.
type Answer = (Option<Response>, bool);

/// Writes `first` (taken off the front already) and every answer after it that is already
/// there, in order, in one write: pipelined requests get their responses in few sends.
/// Returns false if one of them closes the connection (nothing after it is written).
async fn write_ready(
    stream: &mut Stream,
    in_flight: &mut VecDeque<InFlight<'_>>,
    first: Option<Answer>,
) -> io::Result<bool> {
    let mut out = Vec::new();
    let mut open = true;
    let add = |out: &mut Vec<u8>, (response, keep_alive): Answer| {
        let response = response.unwrap_or_else(|| Response::text(500, "Internal Server Error"));
        response.encode_into(out, keep_alive);
        keep_alive
    };
    if let Some(answer) = first {
        open = add(&mut out, answer);
    }
    // Answers dispatched together finish together: let the tasks that are ready run once
    // before gathering, so one write carries them all.
    let mut yielded = false;
    // Bounded by the queue: each round takes one answer off it (or yields, once).
    while open {
        let Some(front) = in_flight.front_mut() else {
            break;
        };
        let Some(response) = future::poll_once(&mut front.answer).await else {
            if yielded || out.is_empty() {
                break;
            }
            yielded = true;
            future::yield_now().await;
            continue;
        };
        let Some(done) = in_flight.pop_front() else {
            break;
        };
        open = add(&mut out, (response, done.keep_alive));
    }
    if !out.is_empty() {
        stream.write_all(&out).await?;
    }
    Ok(open)
}

/// Waits for the oldest answer, then writes it with those ready after it.
async fn write_front(
    stream: &mut Stream,
    in_flight: &mut VecDeque<InFlight<'_>>,
) -> io::Result<bool> {
    let Some(done) = in_flight.pop_front() else {
        return Ok(true);
    };
    let response = done.answer.await;
    write_ready(stream, in_flight, Some((response, done.keep_alive))).await
}

/// Writes every answer still due, in order.
/// Refuses the request being read: the earlier responses, then `response` (closing), then a
/// moment for the client to read it: what it still sends is read and dropped (at most
/// `HTTP_REFUSAL_LINGER_BYTES_MAX`, for at most `HTTP_REFUSAL_LINGER_MS`), since closing a
/// socket with unread input resets it and the client would never see the response.
async fn refuse(
    stream: &mut Stream,
    in_flight: &mut VecDeque<InFlight<'_>>,
    response: Response,
) -> io::Result<()> {
    drain(stream, in_flight).await?;
    response.write(stream, false).await?;
    stream.flush().await?;
    let _ = stream.shutdown_write().await;
    stream.set_read_timeout(Some(Duration::from_millis(HTTP_REFUSAL_LINGER_MS)))?;
    let started = Instant::now();
    let mut sink = [0u8; 4096];
    let mut dropped = 0;
    // Bounded by the byte budget, the time budget and the read timeout.
    while dropped < HTTP_REFUSAL_LINGER_BYTES_MAX
        && started.elapsed() < Duration::from_millis(HTTP_REFUSAL_LINGER_MS)
    {
        match stream.read(&mut sink).await {
            Ok(0) | Err(_) => break,
            Ok(n) => dropped += n,
        }
    }
    Ok(())
}

async fn drain(stream: &mut Stream, in_flight: &mut VecDeque<InFlight<'_>>) -> io::Result<()> {
    // Bounded by the queue, which nothing fills meanwhile.
    while !in_flight.is_empty() {
        if !write_front(stream, in_flight).await? {
            in_flight.clear();
        }
    }
    Ok(())
}
