//! One upgraded WebSocket connection, as a record in its shard's reactor: no task and no
//! buffer while it is idle (DESIGN invariant 6). `Connection::serve` does whatever is due
//! without waiting: it reads what the socket holds (through the reactor's one read buffer),
//! hands complete messages to the session, and writes the `Outbound` queue, small frames
//! coalesced into one write. A write the socket cannot take whole waits in `unsent` for the
//! reactor's next `POLLOUT`. Only the closing handshake, which waits on the peer, runs as a
//! task (`finish`).
//!
//! Over TLS the connection also holds its `TlsRecords` (keys and sequence numbers, no
//! buffer): input is decrypted as it is read, ciphertext short of a whole record waiting in
//! `Partial` like a partial frame, and output is sealed on its way to the socket, so
//! `unsent` holds ciphertext then.
//!
//! Owns the socket and the connection's partial input and output; reaches the shard through
//! the session and `Outbound`.

use std::borrow::Cow;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use nix::errno::Errno;
use nix::sys::socket::{recv, send, MsgFlags};

use crate::clock::Millis;
use crate::fanout::{Chores, Outbound};
use crate::framing::tls::{Status, TlsRecords};
use crate::framing::websocket::{self, FrameReader, Incoming};
use crate::http::stream::{Stream, TlsStream};
use crate::limits::{
    REACTOR_READ_ROUND_BYTES_MAX, WEBSOCKET_CLOSE_LINGER_MS, WEBSOCKET_LINGER_READ_BYTES,
    WEBSOCKET_WRITE_BATCH_BYTES_MAX,
};
use crate::protocol::{CustomDisconnect, Disconnect};
use crate::session::Session;
use crate::shard::Shard;

/// How a WebSocket connection ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// We close with this code and reason; after what is queued when `Flush::Queued`.
    Close(u16, Cow<'static, str>, Flush),
    /// The peer sent a close frame (with this code) or vanished.
    PeerClosed(Option<u16>),
}

impl End {
    /// The end a disconnect asks for: a slow connection's queue is dropped, any other
    /// reason's is sent before the close frame.
    pub fn disconnect(d: Disconnect) -> End {
        let flush = if d == Disconnect::Slow {
            Flush::Drop
        } else {
            Flush::Queued
        };
        End::Close(d.code(), Cow::Borrowed(d.reason()), flush)
    }

    /// The end the server API asked for: after what is queued.
    pub fn custom(d: CustomDisconnect) -> End {
        End::Close(d.code, Cow::Owned(d.reason.into()), Flush::Queued)
    }
}

/// Whether the close frame waits for the queued output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    Queued,
    /// The connection is too slow (or broken) for what is queued.
    Drop,
}

/// Whether the socket may hold input not read yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Input {
    /// Read up to `EAGAIN`: the read poll completes when more arrives.
    Drained,
    /// Signalled (or never read): read before waiting again.
    Pending,
}

/// Whether the socket takes writes now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Open,
    /// A write found the socket full at `since`; a `POLLOUT` poll is armed.
    Waiting {
        since: Millis,
    },
}

/// What `serve` left to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// Everything due is done.
    Done,
    /// The input round's budget ran out with input left: serve again soon.
    MoreInput,
    /// A write just found the socket full: arm a `POLLOUT` poll.
    WriteBlocked,
}

/// The reactor's buffers, lent to the connection it serves.
pub struct Scratch {
    /// What one `recv` reads into.
    pub read: Box<[u8]>,
    /// Small frames coalesced into one write.
    pub batch: Vec<u8>,
    /// A write sealed for TLS.
    pub sealed: Vec<u8>,
}

pub struct Connection {
    fd: OwnedFd,
    /// The connection's TLS state, when it came over TLS.
    tls: Option<Box<TlsRecords>>,
    input_state: Input,
    pub output: Output,
    /// The reactor holds a deadline entry for this connection's waits (one at a time).
    pub stall_watched: bool,
    /// Input and output in flight; `None` (no allocation) while the connection is idle.
    partial: Option<Box<Partial>>,
    pub session: Session,
}

/// What a connection holds only while input or output is in flight.
#[derive(Default)]
struct Partial {
    reader: FrameReader,
    /// Received bytes not yet a complete frame.
    input: BytesMut,
    /// Over TLS: received ciphertext not yet a whole record.
    cipher: BytesMut,
    /// The rest of a write the socket did not take, sent before anything queued after it.
    unsent: Bytes,
}

impl Partial {
    fn is_idle(&self) -> bool {
        self.reader.is_idle()
            && self.input.is_empty()
            && self.cipher.is_empty()
            && self.unsent.is_empty()
    }
}

impl Connection {
    /// A connection just upgraded, with the bytes read past its upgrade request and, over
    /// TLS, its records with the ciphertext read past them.
    pub fn new(
        fd: OwnedFd,
        session: Session,
        input: BytesMut,
        tls: Option<(Box<TlsRecords>, BytesMut)>,
    ) -> Self {
        let (tls, cipher) = match tls {
            Some((records, cipher)) => (Some(records), cipher),
            None => (None, BytesMut::new()),
        };
        let partial = (!input.is_empty() || !cipher.is_empty()).then(|| {
            Box::new(Partial {
                input,
                cipher,
                ..Partial::default()
            })
        });
        Connection {
            fd,
            tls,
            input_state: Input::Pending,
            output: Output::Open,
            stall_watched: false,
            partial,
            session,
        }
    }

    pub fn out(&self) -> &Rc<Outbound> {
        self.session.out()
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// The read poll fired: input (or the peer's close) is there.
    pub fn readable(&mut self) {
        self.input_state = Input::Pending;
    }

    /// The write poll fired: the socket has room again.
    pub fn writable(&mut self) {
        self.output = Output::Open;
    }

    /// Does everything due now: reads and handles input (unless the node is congested),
    /// acts on a pending disconnect, writes what is queued. `read_buffer` is the reactor's
    /// one buffer, `batch` its one buffer for coalescing writes.
    pub fn serve(
        &mut self,
        shard: &Shard,
        scratch: &mut Scratch,
        now: Millis,
    ) -> Result<Served, End> {
        let mut served = Served::Done;
        // The server's chores before the client's input: an API action acknowledged as
        // applied precedes every command read after it.
        self.do_chores()?;
        if self.input_state == Input::Pending && !shard.hold_intake(self.session.out()) {
            served = self.read(shard, &mut scratch.read)?;
            // And those the input itself brought (a connect telling its own shard to close a
            // connection past a limit): a wake while the connection is served lists nothing.
            self.do_chores()?;
        }
        if let Some(d) = self.session.out().pending_disconnect() {
            return Err(End::disconnect(d));
        }
        if self.output == Output::Open
            && !self.write(shard, &mut scratch.batch, &mut scratch.sealed)?
        {
            self.output = Output::Waiting { since: now };
            served = Served::WriteBlocked;
        }
        if self.partial.as_ref().is_some_and(|p| p.is_idle()) {
            // Idle connections hold no buffer.
            self.partial = None;
        }
        Ok(served)
    }

    /// What the connection must do besides its I/O (`Chores`).
    fn do_chores(&mut self) -> Result<(), End> {
        if self.session.out().take_chore(Chores::EXPIRED_SUBSCRIPTIONS) {
            self.session.expire_subscriptions();
        }
        if self.session.out().take_chore(Chores::DIRECTIVES) {
            self.session.apply_directives().map_err(End::custom)?;
        }
        Ok(())
    }

    /// Reads what the socket holds (up to a round's budget) and handles every complete frame.
    fn read(&mut self, shard: &Shard, buffer: &mut [u8]) -> Result<Served, End> {
        let max_message = shard.config.websocket.message_size_limit;
        if self.partial.as_ref().is_some_and(|p| !p.input.is_empty()) {
            // What came with the upgrade request, or frames a round's budget left.
            self.handle_input(max_message)?;
        }
        if self.tls.is_some() && self.partial.as_ref().is_some_and(|p| !p.cipher.is_empty()) {
            // Records that came with the upgrade request.
            self.decrypt(&[])?;
            self.handle_input(max_message)?;
        }
        let mut taken = 0;
        // Bounded: each pass reads at least one byte, and the round's budget ends the loop.
        while taken < REACTOR_READ_ROUND_BYTES_MAX {
            match recv(self.fd.as_raw_fd(), buffer, MsgFlags::MSG_DONTWAIT) {
                Ok(0) => return Err(End::PeerClosed(None)),
                Ok(n) => {
                    taken += n;
                    shard.count_bytes(n, 0);
                    let peer_closed = match self.tls {
                        Some(_) => self.decrypt(&buffer[..n])? == Status::PeerClosed,
                        None => {
                            let partial = self.partial.get_or_insert_with(Default::default);
                            partial.input.extend_from_slice(&buffer[..n]);
                            false
                        }
                    };
                    self.handle_input(max_message)?;
                    if peer_closed {
                        return Err(End::PeerClosed(None));
                    }
                }
                Err(Errno::EAGAIN) => {
                    self.input_state = Input::Drained;
                    return Ok(Served::Done);
                }
                Err(Errno::EINTR) => {}
                Err(_) => return Err(End::PeerClosed(None)),
            }
        }
        Ok(Served::MoreInput)
    }

    /// Over TLS: adds `bytes` to the ciphertext and decrypts every whole record into the
    /// input. What TLS answers (a key update, an alert) goes out before any later output.
    fn decrypt(&mut self, bytes: &[u8]) -> Result<Status, End> {
        let Some(tls) = self.tls.as_deref_mut() else {
            return Ok(Status::Open);
        };
        let partial = self.partial.get_or_insert_with(Default::default);
        partial.cipher.extend_from_slice(bytes);
        let mut answer = Vec::new();
        let status = tls.read(&mut partial.cipher, &mut partial.input, &mut answer);
        if partial.cipher.is_empty() {
            partial.cipher = BytesMut::new();
        }
        if !answer.is_empty() {
            let mut unsent = BytesMut::from(&partial.unsent[..]);
            unsent.extend_from_slice(&answer);
            partial.unsent = unsent.freeze();
        }
        // A peer that breaks TLS gets no close frame: nothing can be sealed for it.
        status.map_err(|_| End::Close(1002, Cow::Borrowed(""), Flush::Drop))
    }

    /// Everything complete in the input, in order.
    fn handle_input(&mut self, max_message: usize) -> Result<(), End> {
        let Some(partial) = self.partial.as_deref_mut() else {
            return Ok(());
        };
        // Bounded: each pass takes one frame off the input or ends the loop.
        loop {
            match partial.reader.next(&mut partial.input, max_message) {
                Ok(Some(Incoming::Message(message))) => {
                    if let Err(d) = self.session.handle_message(&message) {
                        return Err(End::disconnect(d));
                    }
                }
                Ok(Some(Incoming::Ping(payload))) => {
                    self.session.out().push(websocket::pong_frame(&payload));
                }
                Ok(Some(Incoming::Pong)) => {}
                Ok(Some(Incoming::Close(code))) => return Err(End::PeerClosed(code)),
                Ok(None) => break,
                Err(violation) => {
                    return Err(End::Close(
                        violation.code,
                        Cow::Borrowed(violation.reason),
                        Flush::Drop,
                    ))
                }
            }
        }
        if partial.input.is_empty() {
            // An emptied `BytesMut` still holds the allocation its frames were split from.
            partial.input = BytesMut::new();
        }
        Ok(())
    }

    /// Writes `unsent`, then the queue, coalescing small frames through `batch` (and over TLS
    /// sealing them through `sealed`). Returns false if the socket filled up first.
    fn write(
        &mut self,
        shard: &Shard,
        batch: &mut Vec<u8>,
        sealed: &mut Vec<u8>,
    ) -> Result<bool, End> {
        let fd = self.fd.as_raw_fd();
        let out = self.session.out();
        // Bounded: each pass sends or takes frames off the queue, which only this loop
        // shortens and the queue's byte limit bounds; a full socket ends it.
        loop {
            if let Some(partial) = self.partial.as_deref_mut().filter(|p| !p.unsent.is_empty()) {
                match send_some(fd, &partial.unsent) {
                    Ok(Some(n)) => {
                        shard.count_bytes(0, n);
                        partial.unsent.advance(n);
                    }
                    Ok(None) => return Ok(false),
                    Err(_) => return Err(End::PeerClosed(None)),
                }
                if !partial.unsent.is_empty() {
                    return Ok(false);
                }
                continue;
            }
            let Some(first) = out.pop() else {
                return Ok(true);
            };
            let plain: &[u8] =
                if !out.has_output() || first.len() >= WEBSOCKET_WRITE_BATCH_BYTES_MAX {
                    // One frame: sent as it is, no copy.
                    &first
                } else {
                    batch.clear();
                    batch.extend_from_slice(&first);
                    while batch.len() < WEBSOCKET_WRITE_BATCH_BYTES_MAX {
                        let Some(frame) = out.pop() else { break };
                        batch.extend_from_slice(&frame);
                    }
                    batch
                };
            let wire: &[u8] = match self.tls.as_deref_mut() {
                None => plain,
                Some(tls) => {
                    sealed.clear();
                    if tls.seal(plain, sealed).is_err() {
                        return Err(End::PeerClosed(None));
                    }
                    sealed
                }
            };
            let whole = send_some(fd, wire).map(|sent| (sent, wire));
            if let Ok((Some(n), _)) = &whole {
                shard.count_bytes(0, *n);
            }
            match whole {
                Ok((Some(n), bytes)) if n == bytes.len() => {}
                Ok((sent, bytes)) => {
                    // Only the rest waits, in a buffer of its own.
                    let rest = Bytes::copy_from_slice(&bytes[sent.unwrap_or(0)..]);
                    self.partial.get_or_insert_with(Default::default).unsent = rest;
                    return Ok(false);
                }
                Err(_) => return Err(End::PeerClosed(None)),
            }
        }
    }

    /// Leaves the session's channels and hands over what the closing handshake needs.
    pub fn close(mut self) -> Closing {
        self.session.close();
        Closing {
            fd: self.fd,
            out: self.session.out().clone(),
            unsent: self.partial.map(|p| p.unsent).unwrap_or_default(),
            tls: self.tls,
        }
    }
}

/// `send` without waiting: `Some(bytes taken)`, `None` if the socket is full.
fn send_some(fd: RawFd, bytes: &[u8]) -> io::Result<Option<usize>> {
    // Bounded: EINTR only repeats the call.
    loop {
        match send(fd, bytes, MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL) {
            Ok(n) => return Ok(Some(n)),
            Err(Errno::EAGAIN) => return Ok(None),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// A connection whose session has ended, for its closing handshake.
pub struct Closing {
    fd: OwnedFd,
    pub out: Rc<Outbound>,
    /// Ciphertext over TLS.
    unsent: Bytes,
    tls: Option<Box<TlsRecords>>,
}

/// Sends what is left (unless the connection was too slow for it) and the close frame, and
/// gives the peer a moment to hang up. Runs as a task: it waits on the peer.
pub async fn finish(closing: Closing, end: End, write_timeout: Option<Duration>) {
    let Closing {
        fd,
        out,
        unsent,
        tls,
    } = closing;
    // SAFETY: the descriptor is ours alone (the reactor gave it up); the stream closes it.
    let mut tcp = unsafe { TcpStream::from_raw_fd(fd.into_raw_fd()) };
    let _ = tcp.set_write_timeout(write_timeout);
    let queued = matches!(end, End::Close(_, _, Flush::Queued) | End::PeerClosed(_));
    // `unsent` is what the socket already owes the peer (ciphertext over TLS): it goes out
    // as it is, before anything sealed after it.
    if queued && tcp.write_all(&unsent).await.is_err() {
        return;
    }
    let mut stream = match tls {
        None => Stream::Plain(tcp),
        Some(records) => Stream::Tls(Box::new(TlsStream::resume(tcp, records, BytesMut::new()))),
    };
    match end {
        End::Close(code, reason, flush) => {
            if flush == Flush::Queued && write_rest(&mut stream, &out).await.is_err() {
                return;
            }
            let linger = Duration::from_millis(WEBSOCKET_CLOSE_LINGER_MS);
            let _ = stream.tcp().set_write_timeout(Some(linger));
            if stream
                .write_all(&websocket::close_frame(code, &reason))
                .await
                .is_ok()
            {
                linger_after_close(&mut stream).await;
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
            if write_rest(&mut stream, &out).await.is_ok() {
                let _ = stream.write_all(&websocket::close_frame(code, "")).await;
                let _ = stream.shutdown_write().await;
            }
        }
    }
}

/// Writes every queued frame.
async fn write_rest(stream: &mut Stream, out: &Outbound) -> io::Result<()> {
    // Bounded: the queue only shrinks here (the connection's session has ended, so nothing
    // but a ping can be added, and its byte limit bounds the queue).
    while let Some(frame) = out.pop() {
        stream.write_all(&frame).await?;
    }
    stream.flush().await
}

/// After our close frame: stop sending and give the peer a moment to close its side.
async fn linger_after_close(stream: &mut Stream) {
    let _ = stream.shutdown_write().await;
    let _ = stream.set_read_timeout(Some(Duration::from_millis(WEBSOCKET_CLOSE_LINGER_MS)));
    let mut sink = [0u8; WEBSOCKET_LINGER_READ_BYTES];
    // Bounded by the read timeout and the peer's close.
    while let Ok(n) = stream.read(&mut sink).await {
        if n == 0 {
            break;
        }
    }
}
