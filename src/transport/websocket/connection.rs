//! The WebSocket connection loop: parse complete frames from the input, hand messages to the
//! session, write the `Outbound` queue (coalesced), then wait for input or output. Reads go
//! through the shard's one read buffer, borrowed only inside a poll (glommio reads
//! readiness-first), so an idle connection holds no buffer.

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

use crate::clock::Millis;
use crate::fanout::Outbound;
use crate::framing::websocket::{self, FrameReader, Incoming};
use crate::limits::{
    WEBSOCKET_CLOSE_LINGER_MS, WEBSOCKET_LINGER_READ_BYTES, WEBSOCKET_WRITE_BATCH_BYTES_MAX,
};
use crate::protocol::Disconnect;
use crate::session::{Context, Session};
use crate::shard::Shard;

/// How a WebSocket connection ends.
enum End {
    /// We close with this code and reason; after what is queued when `Flush::Queued`.
    Close(u16, &'static str, Flush),
    /// The peer sent a close frame (with this code) or vanished.
    PeerClosed(Option<u16>),
}

/// Whether the close frame waits for the queued output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flush {
    Queued,
    /// The connection is too slow (or broken) for what is queued.
    Drop,
}

enum Wake {
    Input,
    Output,
    Eof,
    Failed,
}

/// Runs an upgraded connection until it ends.
pub async fn run(ctx: &Rc<Context>, stream: &mut TcpStream, input: BytesMut) {
    let shard = &ctx.shard;
    let now = Millis::now();
    // The first ping comes at a random point in [interval/2, interval], so a shard's pings
    // do not all fall on the same tick.
    let interval = shard
        .config
        .client
        .ping_interval
        .positive()
        .unwrap_or(Duration::ZERO);
    let jitter = crate::rand::fast_bytes::<2>().map_or(0, u16::from_ne_bytes);
    let spread = f64::from(jitter) / f64::from(u16::MAX) / 2.0;
    let first_ping = now.after(interval / 2 + interval.mul_f64(spread));
    let out = Rc::new(Outbound::new(
        shard.next_connection_id(),
        shard.config.client.queue_max_size,
        now,
        first_ping,
    ));
    shard.register_connection(out.clone());
    let mut session = Session::new(ctx.clone(), out.clone());
    let end = serve(shard, stream, &out, &mut session, input).await;
    session.close();
    // Boxed: the closing steps run once, and inline they would enlarge every idle task.
    Box::pin(finish(stream, &out, end)).await;
    shard.unregister_connection(out.id);
}

/// Sends the close frame (after what is queued, unless the connection was too slow for that)
/// and gives the peer a moment to hang up.
async fn finish(stream: &mut TcpStream, out: &Outbound, end: End) {
    match end {
        End::Close(code, reason, flush) => {
            if flush == Flush::Queued {
                let _ = write_queued(stream, out).await;
            }
            let linger = Duration::from_millis(WEBSOCKET_CLOSE_LINGER_MS);
            let _ = stream.set_write_timeout(Some(linger));
            if stream
                .write_all(&websocket::close_frame(code, reason))
                .await
                .is_ok()
            {
                linger_after_close(stream).await;
            }
        }
        End::PeerClosed(code) => {
            // Echo the close as RFC 6455 asks; a code that may not be sent on the wire (1004,
            // 1005, 1006, 1015, below 1000, 1016..2999, 5000 and above) is a protocol error.
            let code = match code {
                None => 1000,
                Some(c) if matches!(c, 1000..=1003 | 1007..=1014 | 3000..=4999) => c,
                Some(_) => websocket::CLOSE_PROTOCOL_ERROR,
            };
            let _ = write_queued(stream, out).await;
            let _ = stream.write_all(&websocket::close_frame(code, "")).await;
        }
    }
}

/// After our close frame: stop sending and give the peer a moment to close its side.
async fn linger_after_close(stream: &mut TcpStream) {
    let _ = stream.shutdown(Shutdown::Write).await;
    let _ = stream.set_read_timeout(Some(Duration::from_millis(WEBSOCKET_CLOSE_LINGER_MS)));
    let mut sink = [0u8; WEBSOCKET_LINGER_READ_BYTES];
    // Bounded by the read timeout and the peer's close.
    while let Ok(n) = stream.read(&mut sink).await {
        if n == 0 {
            break;
        }
    }
}

async fn serve(
    shard: &Rc<Shard>,
    stream: &mut TcpStream,
    out: &Rc<Outbound>,
    session: &mut Session,
    mut input: BytesMut,
) -> End {
    let max_message = shard.config.websocket.message_size_limit;
    let mut reader = FrameReader::default();
    loop {
        // Everything complete in the input, in order.
        loop {
            match reader.next(&mut input, max_message) {
                Ok(Some(Incoming::Message(message))) => {
                    if let Err(d) = session.handle_message(&message) {
                        return End::Close(d.code(), d.reason(), Flush::Queued);
                    }
                }
                Ok(Some(Incoming::Ping(payload))) => {
                    out.push(websocket::pong_frame(&payload));
                }
                Ok(Some(Incoming::Pong)) => {}
                Ok(Some(Incoming::Close(code))) => return End::PeerClosed(code),
                Ok(None) => break,
                Err(violation) => return End::Close(violation.code, violation.reason, Flush::Drop),
            }
        }
        if input.is_empty() && input.capacity() > 0 {
            // Idle connections hold no buffer.
            input = BytesMut::new();
        }
        if let Some(d) = out.pending_disconnect() {
            let flush = if d == Disconnect::Slow {
                Flush::Drop
            } else {
                Flush::Queued
            };
            return End::Close(d.code(), d.reason(), flush);
        }
        match write_queued(stream, out).await {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                out.disconnect(Disconnect::Slow);
                let d = Disconnect::Slow;
                return End::Close(d.code(), d.reason(), Flush::Drop);
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
        if !out.has_output() || first.len() >= WEBSOCKET_WRITE_BATCH_BYTES_MAX {
            stream.write_all(&first).await?;
            continue;
        }
        let mut batch = Vec::with_capacity(
            WEBSOCKET_WRITE_BATCH_BYTES_MAX.min(first.len() + out.queued_bytes()),
        );
        batch.extend_from_slice(&first);
        while batch.len() < WEBSOCKET_WRITE_BATCH_BYTES_MAX {
            let Some(frame) = out.pop() else { break };
            batch.extend_from_slice(&frame);
        }
        stream.write_all(&batch).await?;
    }
    stream.flush().await
}
