//! `RedisConnection`: one shard's connection to one Redis, with commands pipelined. Callers
//! encode a command into the connection's output and wait for its answer; one task per
//! connection (`run`) writes whatever is queued in one write and reads answers, which Redis
//! sends in command order, handing each to the oldest waiting caller. At most
//! `REDIS_IN_FLIGHT_MAX` commands wait at once (a caller past it waits for room), and every
//! answer must come within the I/O timeout; a broken or late connection fails every waiting
//! call, and the task connects again with a growing backoff. While it is down, calls fail at
//! once: a publish answers a temporary error instead of hanging.
//!
//! Owns the socket, the output not yet written, and the queue of waiting calls. RESP encoding
//! and decoding is the `redis-protocol` crate's. Imports `limits`. Tested against a real
//! redis-server in tests/redis.rs.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use redis_protocol::resp2::decode::decode_bytes_mut;
use redis_protocol::resp2::encode::extend_encode_borrowed;
use redis_protocol::resp2::types::{BorrowedFrame, BytesFrame};

use super::tls::{ClientTls, RedisStream};
use crate::limits::{
    REDIS_IN_FLIGHT_MAX, REDIS_READ_BYTES, REDIS_RECONNECT_MAX_MS, REDIS_RECONNECT_MIN_MS,
};

/// Why a call got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisError {
    /// Not connected now (connecting, or backing off after a failure): try again later.
    Unavailable,
    /// The connection broke (or timed out) with the call in flight: it may or may not have
    /// run.
    Broken(String),
    /// Redis answered with an error (`-ERR ...`, `-NOSCRIPT ...`).
    Reply(String),
}

impl std::fmt::Display for RedisError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RedisError::Unavailable => f.write_str("redis unavailable"),
            RedisError::Broken(why) => write!(f, "redis connection broke: {why}"),
            RedisError::Reply(e) => write!(f, "redis: {e}"),
        }
    }
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    pub address: SocketAddr,
    pub db: u32,
    pub user: String,
    pub password: String,
    pub connect_timeout: Duration,
    /// The longest an answer may take once its command was written.
    pub io_timeout: Duration,
    /// TLS, if the connection speaks it.
    pub tls: Option<ClientTls>,
}

/// The connection's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Connecting (or waiting to connect again): calls fail with `Unavailable`.
    Down,
    Up,
}

/// One call waiting for its answer.
#[derive(Default)]
struct Slot {
    answer: Option<Result<BytesFrame, RedisError>>,
    waker: Option<Waker>,
}

#[derive(Default)]
struct Shared {
    /// Encoded commands not yet written.
    out: BytesMut,
    /// Calls whose commands are queued or written, oldest first.
    waiting: VecDeque<Rc<RefCell<Slot>>>,
    /// The connection task, waiting for output or answers.
    task: Option<Waker>,
    /// Callers waiting for room in `waiting`.
    room: Vec<Waker>,
}

impl Drop for Shared {
    /// The last clone is gone: the connection's task learns it now (not at its next socket
    /// event, which an idle connection may never have) and ends.
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.wake();
        }
    }
}

/// A pipelined connection to one Redis; cheap to clone (the same connection).
#[derive(Clone)]
pub struct RedisConnection {
    shared: Rc<RefCell<Shared>>,
    link: Rc<Cell<Link>>,
    /// Failures of the connection since the start (for the metrics).
    failures: Rc<Cell<u64>>,
}

impl RedisConnection {
    /// A connection to `settings.address`, connected (and connected again after failures) by
    /// the task this spawns on the current glommio executor, until every clone is dropped.
    pub fn start(settings: RedisSettings) -> RedisConnection {
        let connection = RedisConnection {
            shared: Rc::default(),
            link: Rc::new(Cell::new(Link::Down)),
            failures: Rc::default(),
        };
        let weak = Rc::downgrade(&connection.shared);
        let link = connection.link.clone();
        let failures = connection.failures.clone();
        glommio::spawn_local(async move {
            run(weak, link, failures, settings).await;
        })
        .detach();
        connection
    }

    pub fn link(&self) -> Link {
        self.link.get()
    }

    pub fn failures(&self) -> u64 {
        self.failures.get()
    }

    /// Sends the command `args` (name first) and waits for its answer. An error answer is
    /// `RedisError::Reply`.
    pub async fn call(&self, args: &[&[u8]]) -> Result<BytesFrame, RedisError> {
        if self.link.get() == Link::Down {
            return Err(RedisError::Unavailable);
        }
        // Bounded by the answers: each one frees a place. A caller waits behind those
        // already waiting, so commands keep the order of the calls.
        let mut queued = false;
        poll_fn(|cx| {
            let mut shared = self.shared.borrow_mut();
            if shared.waiting.len() < REDIS_IN_FLIGHT_MAX && (queued || shared.room.is_empty()) {
                return Poll::Ready(());
            }
            queued = true;
            shared.room.push(cx.waker().clone());
            Poll::Pending
        })
        .await;
        if self.link.get() == Link::Down {
            return Err(RedisError::Unavailable);
        }
        let slot = Rc::new(RefCell::new(Slot::default()));
        {
            let mut shared = self.shared.borrow_mut();
            if let Err(e) = encode_command(&mut shared.out, args) {
                return Err(RedisError::Broken(e));
            }
            shared.waiting.push_back(slot.clone());
            if let Some(task) = shared.task.take() {
                task.wake();
            }
        }
        let answer = poll_fn(|cx| {
            let mut slot = slot.borrow_mut();
            match slot.answer.take() {
                Some(answer) => Poll::Ready(answer),
                None => {
                    slot.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await;
        match answer? {
            BytesFrame::Error(e) => Err(RedisError::Reply(e.to_string())),
            frame => Ok(frame),
        }
    }
}

/// Appends the command `args` (an array of bulk strings) to `out`.
pub(super) fn encode_command(out: &mut BytesMut, args: &[&[u8]]) -> Result<(), String> {
    let parts: Vec<BorrowedFrame<'_>> = args.iter().map(|a| BorrowedFrame::BulkString(a)).collect();
    extend_encode_borrowed(out, &BorrowedFrame::Array(&parts), false)
        .map(drop)
        .map_err(|e| format!("cannot encode a command: {e}"))
}

/// Answers the oldest waiting call.
fn answer(shared: &mut Shared, answer: Result<BytesFrame, RedisError>) -> bool {
    let Some(slot) = shared.waiting.pop_front() else {
        return false;
    };
    let mut slot = slot.borrow_mut();
    slot.answer = Some(answer);
    if let Some(waker) = slot.waker.take() {
        waker.wake();
    }
    for waker in shared.room.drain(..) {
        waker.wake();
    }
    true
}

/// Fails every waiting call and drops what was not written.
fn fail_all(shared: &mut Shared, why: &str) {
    shared.out.clear();
    // Bounded by the queue.
    while answer(shared, Err(RedisError::Broken(why.to_owned()))) {}
}

/// Connects, serves, and connects again, until the connection's last clone is dropped.
async fn run(
    shared: std::rc::Weak<RefCell<Shared>>,
    link: Rc<Cell<Link>>,
    failures: Rc<Cell<u64>>,
    settings: RedisSettings,
) {
    let mut backoff = REDIS_RECONNECT_MIN_MS;
    // Bounded by the connection's life: it ends when every clone is gone.
    loop {
        if shared.strong_count() == 0 {
            return;
        }
        let why = match connect(&settings).await {
            Ok(stream) => {
                backoff = REDIS_RECONNECT_MIN_MS;
                link.set(Link::Up);
                let ended = serve(&shared, stream, settings.io_timeout).await;
                link.set(Link::Down);
                ended
            }
            Err(e) => e.to_string(),
        };
        failures.set(failures.get() + 1);
        if let Some(shared) = shared.upgrade() {
            fail_all(&mut shared.borrow_mut(), &why);
        }
        glommio::timer::sleep(Duration::from_millis(backoff)).await;
        backoff = (backoff * 2).min(REDIS_RECONNECT_MAX_MS);
    }
}

/// A connected, authenticated socket on the configured database (TLS done, if configured).
pub(super) async fn connect(settings: &RedisSettings) -> io::Result<RedisStream> {
    let connect = TcpStream::connect_timeout(settings.address, settings.connect_timeout);
    let socket = connect.await.map_err(io::Error::from)?;
    socket.set_nodelay(true).map_err(io::Error::from)?;
    let mut stream = RedisStream::new(socket, settings.tls.as_ref())?;
    let timeout = Some(settings.connect_timeout);
    let socket = stream.socket();
    socket.set_read_timeout(timeout).map_err(io::Error::from)?;
    socket.set_write_timeout(timeout).map_err(io::Error::from)?;
    stream.handshake().await?;
    let mut handshake: Vec<Vec<Vec<u8>>> = Vec::new();
    if !settings.password.is_empty() {
        let mut auth = vec![b"AUTH".to_vec()];
        if !settings.user.is_empty() {
            auth.push(settings.user.as_bytes().to_vec());
        }
        auth.push(settings.password.as_bytes().to_vec());
        handshake.push(auth);
    }
    if settings.db != 0 {
        handshake.push(vec![
            b"SELECT".to_vec(),
            settings.db.to_string().into_bytes(),
        ]);
    }
    for command in handshake {
        let args: Vec<&[u8]> = command.iter().map(Vec::as_slice).collect();
        match call_once(&mut stream, &args, settings.io_timeout).await? {
            BytesFrame::Error(e) => {
                return Err(io::Error::other(format!(
                    "{}: {e}",
                    String::from_utf8_lossy(args[0])
                )))
            }
            _ => continue,
        }
    }
    // The set-up's deadlines end here: a socket timeout would break an idle connection (a
    // quiet pub/sub, a shard publishing nothing); `serve` keeps its own deadline per answer.
    let socket = stream.socket();
    socket.set_read_timeout(None).map_err(io::Error::from)?;
    socket.set_write_timeout(None).map_err(io::Error::from)?;
    Ok(stream)
}

/// One command and its answer on a socket nobody else uses yet.
async fn call_once(
    stream: &mut RedisStream,
    args: &[&[u8]],
    timeout: Duration,
) -> io::Result<BytesFrame> {
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    let mut out = BytesMut::new();
    encode_command(&mut out, args).map_err(io::Error::other)?;
    let socket = stream.socket();
    socket
        .set_write_timeout(Some(timeout))
        .map_err(io::Error::from)?;
    socket
        .set_read_timeout(Some(timeout))
        .map_err(io::Error::from)?;
    stream.write_all(&out).await?;
    let mut input = BytesMut::new();
    let mut chunk = [0u8; 512];
    // Bounded by the read timeout and the answer's size.
    loop {
        if let Some((frame, _, _)) = decode_bytes_mut(&mut input).map_err(io::Error::other)? {
            return Ok(frame);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        input.extend_from_slice(&chunk[..n]);
    }
}

/// Serves the connection until it breaks; returns why.
async fn serve(
    shared: &std::rc::Weak<RefCell<Shared>>,
    mut stream: RedisStream,
    io_timeout: Duration,
) -> String {
    let mut input = BytesMut::new();
    let mut chunk = vec![0u8; REDIS_READ_BYTES];
    // The deadline of the oldest unanswered command, while one is unanswered.
    let mut deadline: Option<glommio::timer::Timer> = None;
    poll_fn(|cx| {
        let Some(shared) = shared.upgrade() else {
            return Poll::Ready("closed".to_owned());
        };
        let mut shared = shared.borrow_mut();
        // Bounded: each pass writes some bytes or stops.
        while !shared.out.is_empty() {
            match Pin::new(&mut stream).poll_write(cx, &shared.out) {
                Poll::Ready(Ok(0)) => return Poll::Ready("the socket took nothing".to_owned()),
                Poll::Ready(Ok(n)) => shared.out.advance(n),
                Poll::Ready(Err(e)) => return Poll::Ready(e.to_string()),
                Poll::Pending => break,
            }
        }
        // Bounded: each pass reads some bytes or stops.
        loop {
            match Pin::new(&mut stream).poll_read(cx, &mut chunk) {
                Poll::Ready(Ok(0)) => return Poll::Ready("redis closed the connection".to_owned()),
                Poll::Ready(Ok(n)) => {
                    input.extend_from_slice(&chunk[..n]);
                    // Bounded by the input: each frame decoded shortens it.
                    loop {
                        match decode_bytes_mut(&mut input) {
                            Ok(Some((frame, _, _))) => {
                                if !answer(&mut shared, Ok(frame)) {
                                    return Poll::Ready("an answer nobody asked for".to_owned());
                                }
                                // A new oldest command: its own deadline.
                                deadline = None;
                            }
                            Ok(None) => break,
                            Err(e) => return Poll::Ready(format!("bad RESP: {e}")),
                        }
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(e.to_string()),
                Poll::Pending => break,
            }
        }
        if shared.waiting.is_empty() {
            deadline = None;
        } else {
            let timer = deadline.get_or_insert_with(|| glommio::timer::Timer::new(io_timeout));
            if Pin::new(timer).poll(cx).is_ready() {
                return Poll::Ready("an answer took longer than the I/O timeout".to_owned());
            }
        }
        shared.task = Some(cx.waker().clone());
        Poll::Pending
    })
    .await
}
