//! `Reactor`: every upgraded WebSocket connection of one shard, as records in one table, and
//! the one task that serves them (DESIGN invariant 6: an idle connection is a record, not a
//! task). The reactor wakes when its ring (`Readiness`) reports sockets ready or when
//! connections are put on its `ReadyList` (output queued, a disconnect asked for, reading
//! allowed again); it serves each such connection (`Connection::serve`) and sleeps again.
//! A write that finds its socket full arms a `POLLOUT` poll and a deadline
//! (`websocket.write_timeout`): a connection that stays full that long is closed as slow
//! (3008). A connection that ends leaves the table; its closing handshake runs as a task.
//!
//! Owns the table, the ring and the reactor's buffers; reaches the shard through `Context`.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::{poll_fn, Future};
use std::io;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use bytes::BytesMut;

use super::connection::{self, Connection, End, Output, Scratch, Served};
use crate::clock::Millis;
use crate::fanout::{Outbound, ReadyList};
use crate::framing::tls::TlsRecords;
use crate::limits::{
    REACTOR_BATCH, REACTOR_EVENTS_MAX, SHARD_READ_BUFFER_BYTES, WEBSOCKET_WRITE_BATCH_BYTES_MAX,
};
use crate::protocol::Disconnect;
use crate::session::{Context, Session};
use crate::transport::readiness::{Event, Interest, Readiness, Token};

/// One slot of the table: the connection there, if any, and the slot's generation (bumped
/// when a connection leaves, so its late completions are told apart).
struct Entry {
    generation: u32,
    conn: Option<Box<Connection>>,
}

/// The connections by slot, with the free slots to reuse.
#[derive(Default)]
struct Table {
    entries: Vec<Entry>,
    free: Vec<u32>,
}

impl Table {
    fn insert(&mut self, make: impl FnOnce(Token) -> Connection) -> Token {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                let slot = u32::try_from(self.entries.len()).expect("fewer than 2^32 connections");
                self.entries.push(Entry {
                    generation: 0,
                    conn: None,
                });
                slot
            }
        };
        let entry = &mut self.entries[slot as usize];
        debug_assert!(entry.conn.is_none());
        let token = Token {
            slot,
            generation: entry.generation,
        };
        entry.conn = Some(Box::new(make(token)));
        token
    }

    /// Takes the connection out for serving (put it back with `put`), if `slot` holds one of
    /// `generation` (any generation when `None`).
    fn take(&mut self, slot: u32, generation: Option<u32>) -> Option<(Token, Box<Connection>)> {
        let entry = self.entries.get_mut(slot as usize)?;
        if generation.is_some_and(|g| g != entry.generation) {
            return None;
        }
        let conn = entry.conn.take()?;
        let token = Token {
            slot,
            generation: entry.generation,
        };
        Some((token, conn))
    }

    fn put(&mut self, token: Token, conn: Box<Connection>) {
        let entry = &mut self.entries[token.slot as usize];
        debug_assert!(entry.conn.is_none() && entry.generation == token.generation);
        entry.conn = Some(conn);
    }

    /// Frees the slot of a connection taken out for good.
    fn release(&mut self, token: Token) {
        let entry = &mut self.entries[token.slot as usize];
        debug_assert!(entry.conn.is_none() && entry.generation == token.generation);
        entry.generation = Readiness::next_generation(entry.generation);
        self.free.push(token.slot);
    }

    fn get_mut(&mut self, token: Token) -> Option<&mut Connection> {
        let entry = self.entries.get_mut(token.slot as usize)?;
        (entry.generation == token.generation)
            .then_some(entry.conn.as_deref_mut())
            .flatten()
    }
}

/// What the serving loop works with, borrowed as one.
struct State {
    table: Table,
    readiness: Readiness,
    /// Connections whose write waits for room, earliest deadline first: at most one entry
    /// per connection (`Connection::stall_watched`), so at most as many as connections.
    stalls: BinaryHeap<Reverse<(Millis, Token)>>,
}

pub struct Reactor {
    ctx: Rc<Context>,
    ready: Rc<ReadyList>,
    state: RefCell<State>,
    write_timeout: Option<Duration>,
}

impl Reactor {
    pub fn new(ctx: Rc<Context>) -> io::Result<Self> {
        let write_timeout = ctx.shard.config.websocket.write_timeout.positive();
        Ok(Reactor {
            ctx,
            ready: Rc::new(ReadyList::default()),
            state: RefCell::new(State {
                table: Table::default(),
                readiness: Readiness::new()?,
                stalls: BinaryHeap::new(),
            }),
            write_timeout,
        })
    }

    /// Takes an upgraded connection (its socket and the bytes read past the upgrade).
    /// Over TLS, `tls` holds its records and the ciphertext read past them.
    pub fn adopt(&self, fd: OwnedFd, input: BytesMut, tls: Option<(Box<TlsRecords>, BytesMut)>) {
        let shard = &self.ctx.shard;
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
        let id = shard.next_connection_id();
        let limit = shard.config.client.queue_max_size;
        let mut state = self.state.borrow_mut();
        let State {
            table, readiness, ..
        } = &mut *state;
        let token = table.insert(|token| {
            let out =
                Outbound::new(id, limit, now, first_ping).listed_in(self.ready.clone(), token.slot);
            let session = Session::new(self.ctx.clone(), Rc::new(out));
            Connection::new(fd, session, input, tls)
        });
        let Some((token, conn)) = table.take(token.slot, Some(token.generation)) else {
            unreachable!("the slot was just filled");
        };
        if let Err(e) = readiness.watch_reads(conn.raw_fd(), token) {
            eprintln!("ringcast: cannot watch a WebSocket connection: {e}");
            table.release(token);
            return; // dropping it closes the socket; it was never registered
        }
        shard.register_connection(conn.out().clone());
        // Served at once: the client may have sent its connect with the upgrade.
        conn.out().wake();
        table.put(token, conn);
    }

    /// Serves the shard's WebSocket connections for the life of the shard.
    pub async fn run(self: Rc<Self>) {
        let mut bell = match self.state.borrow().readiness.bell() {
            Ok(bell) => bell,
            Err(e) => {
                // Without it no connection would ever be served: a crash the supervisor sees.
                panic!(
                    "ringcast: shard {}: WebSocket reactor: {e}",
                    self.ctx.shard.id
                );
            }
        };
        let mut stall_timer: Option<(Millis, glommio::timer::Timer)> = None;
        let mut scratch = Scratch {
            read: vec![0u8; SHARD_READ_BUFFER_BYTES].into_boxed_slice(),
            batch: Vec::with_capacity(WEBSOCKET_WRITE_BATCH_BYTES_MAX),
            sealed: Vec::new(),
        };
        let mut events = Vec::new();
        let mut listed = Vec::new();
        loop {
            // Wait for a completion, a listed connection or the first stall's deadline.
            let first_stall = self
                .state
                .borrow()
                .stalls
                .peek()
                .map(|Reverse((at, _))| *at);
            if stall_timer.as_ref().map(|(at, _)| *at) != first_stall {
                stall_timer = first_stall.map(|at| {
                    // A millisecond late rather than early: `Millis` rounds down.
                    let wait = at.since(Millis::now()) + Duration::from_millis(1);
                    (at, glommio::timer::Timer::new(wait))
                });
            }
            poll_fn(|cx| {
                if !self.ready.is_empty() || self.state.borrow_mut().readiness.has_completions() {
                    return Poll::Ready(());
                }
                self.ready.set_waker(cx.waker());
                if bell.poll_rung(cx).is_ready() {
                    return Poll::Ready(());
                }
                if let Some((_, timer)) = stall_timer.as_mut() {
                    if Pin::new(timer).poll(cx).is_ready() {
                        stall_timer = None;
                        return Poll::Ready(());
                    }
                }
                Poll::Pending
            })
            .await;

            let now = Millis::now();
            self.state
                .borrow_mut()
                .readiness
                .drain(&mut events, REACTOR_EVENTS_MAX);
            let mut served = 0;
            for event in events.drain(..) {
                self.on_event(event, &mut scratch, now);
                served += 1;
                if served % REACTOR_BATCH == 0 {
                    self.submit();
                    glommio::executor().yield_if_needed().await;
                }
            }
            self.ready.take(&mut listed);
            for slot in listed.drain(..) {
                self.serve(slot, None, &mut scratch, now);
                served += 1;
                if served % REACTOR_BATCH == 0 {
                    self.submit();
                    glommio::executor().yield_if_needed().await;
                }
            }
            self.expire_stalls(Millis::now());
            self.submit();
        }
    }

    fn on_event(&self, event: Event, scratch: &mut Scratch, now: Millis) {
        let Event {
            token,
            interest,
            armed,
        } = event;
        {
            let mut state = self.state.borrow_mut();
            let State {
                table, readiness, ..
            } = &mut *state;
            let Some((token, mut conn)) = table.take(token.slot, Some(token.generation)) else {
                return; // a connection that has gone
            };
            match interest {
                Interest::Read => {
                    conn.readable();
                    if !armed {
                        // A multishot poll ended on its own (the kernel may end one under
                        // memory pressure): poll again.
                        if let Err(e) = readiness.watch_reads(conn.raw_fd(), token) {
                            eprintln!("ringcast: cannot watch a WebSocket connection: {e}");
                            conn.out().disconnect(Disconnect::ServerError);
                        }
                    }
                }
                Interest::Write => conn.writable(),
            }
            table.put(token, conn);
        }
        self.serve(token.slot, Some(token.generation), scratch, now);
    }

    /// Serves the connection at `slot` (of `generation`, if given) once.
    fn serve(&self, slot: u32, generation: Option<u32>, scratch: &mut Scratch, now: Millis) {
        let Some((token, mut conn)) = self.state.borrow_mut().table.take(slot, generation) else {
            return;
        };
        // No borrow of the state is held here: serving runs the session, which may reach
        // any part of the shard (never this table).
        let result = conn.serve(&self.ctx.shard, scratch, now);
        conn.out().served();
        let mut state = self.state.borrow_mut();
        match result {
            Ok(Served::Done) => state.table.put(token, conn),
            Ok(Served::MoreInput) => {
                conn.out().wake();
                state.table.put(token, conn);
            }
            Ok(Served::WriteBlocked) => {
                let fd = conn.raw_fd();
                // A connection already watched keeps its entry: it is looked at again when
                // that entry is due.
                let watch = self.write_timeout.filter(|_| !conn.stall_watched);
                conn.stall_watched |= watch.is_some();
                state.table.put(token, conn);
                if let Err(e) = state.readiness.watch_write(fd, token) {
                    eprintln!("ringcast: cannot watch a WebSocket connection: {e}");
                }
                if let Some(timeout) = watch {
                    state.stalls.push(Reverse((now.after(timeout), token)));
                }
            }
            Err(end) => {
                drop(state);
                self.end(token, *conn, end);
            }
        }
    }

    /// Closes the connections whose write waited for room longer than the write timeout.
    fn expire_stalls(&self, now: Millis) {
        let Some(timeout) = self.write_timeout else {
            return;
        };
        // Bounded by the stalls due: each pass takes one off; one put back is due later.
        loop {
            let mut state = self.state.borrow_mut();
            let Some(&Reverse((deadline, token))) = state.stalls.peek() else {
                return;
            };
            if deadline > now {
                return;
            }
            state.stalls.pop();
            let Some(conn) = state.table.get_mut(token) else {
                continue; // gone
            };
            match conn.output {
                // The wait that began then is still on: too slow.
                Output::Waiting { since } if since.after(timeout) <= now => {}
                // A later wait: its own deadline.
                Output::Waiting { since } => {
                    state.stalls.push(Reverse((since.after(timeout), token)));
                    continue;
                }
                Output::Open => {
                    conn.stall_watched = false;
                    continue;
                }
            }
            let Some((token, conn)) = state.table.take(token.slot, Some(token.generation)) else {
                continue;
            };
            drop(state);
            conn.out().disconnect(Disconnect::Slow);
            self.end(token, *conn, End::disconnect(Disconnect::Slow));
        }
    }

    /// Takes a connection that ended out of the table and starts its closing handshake.
    fn end(&self, token: Token, conn: Connection, end: End) {
        {
            let mut state = self.state.borrow_mut();
            let State {
                table, readiness, ..
            } = &mut *state;
            let _ = readiness.forget(token, Interest::Read);
            if matches!(conn.output, Output::Waiting { .. }) {
                let _ = readiness.forget(token, Interest::Write);
            }
            table.release(token);
        }
        let shard = self.ctx.shard.clone();
        let closing = conn.close();
        let write_timeout = self.write_timeout;
        let task = async move {
            let id = closing.out.id;
            connection::finish(closing, end, write_timeout).await;
            shard.unregister_connection(id);
        };
        match glommio::spawn_local_into(task, self.ctx.queues.connections) {
            Ok(task) => {
                task.detach();
            }
            // Only if the queue is gone, which it never is while the shard runs.
            Err(e) => eprintln!("ringcast: cannot close a WebSocket connection: {e}"),
        }
    }

    fn submit(&self) {
        if let Err(e) = self.state.borrow_mut().readiness.submit() {
            eprintln!("ringcast: shard {}: {e}", self.ctx.shard.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::OwnedFd;

    use super::*;

    fn connection(ctx: &Rc<Context>) -> Connection {
        let (fd, _peer): (OwnedFd, OwnedFd) = nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::Stream,
            None,
            nix::sys::socket::SockFlag::empty(),
        )
        .unwrap();
        let now = Millis::now();
        let out = Rc::new(Outbound::new(0, 1 << 20, now, now));
        Connection::new(fd, Session::new(ctx.clone(), out), BytesMut::new(), None)
    }

    /// The slot and generation rules the reactor relies on to ignore completions of
    /// connections that have gone.
    #[test]
    fn a_released_slot_is_reused_with_a_new_generation() {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(|| async {
                let ctx = crate::transport::tests::context();
                let mut table = Table::default();
                let a = table.insert(|_| connection(&ctx));
                assert_eq!((a.slot, a.generation), (0, 0));
                assert!(table.get_mut(a).is_some());
                let (taken, conn) = table.take(a.slot, Some(a.generation)).unwrap();
                assert_eq!(taken, a);
                assert!(table.get_mut(a).is_none(), "out while it is served");
                table.put(a, conn);
                let (_, gone) = table.take(a.slot, None).unwrap();
                drop(gone);
                table.release(a);
                let b = table.insert(|_| connection(&ctx));
                assert_eq!(
                    (b.slot, b.generation),
                    (0, 1),
                    "the slot again, a new generation"
                );
                assert!(table.get_mut(a).is_none(), "the old token finds nothing");
                assert!(table.take(a.slot, Some(a.generation)).is_none());
                assert!(table.get_mut(b).is_some());
                let c = table.insert(|_| connection(&ctx));
                assert_eq!((c.slot, c.generation), (1, 0));
            })
            .unwrap()
            .join()
            .unwrap();
    }

    /// A reactor woken far more often than a glommio task's 32,767 waker references (a
    /// shard delivering to subscribers that send nothing: no socket completes, every wake
    /// comes from the ready list) keeps running, and still hears its ring afterwards.
    #[test]
    fn wakes_past_a_tasks_reference_limit_without_socket_events() {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(|| async {
                let ctx = crate::transport::tests::context();
                let reactor = Rc::new(Reactor::new(ctx).unwrap());
                let running = glommio::spawn_local(reactor.clone().run()).detach();
                // Bounded: a fixed count of wakes, each let run once.
                for _ in 0..40_000 {
                    reactor.ready.push(u32::MAX);
                    futures_lite::future::yield_now().await;
                    futures_lite::future::yield_now().await;
                }
                // A socket completion still wakes it: a connection adopted now is served.
                let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
                reactor.adopt(OwnedFd::from(ours), BytesMut::new(), None);
                let mut theirs = theirs;
                std::io::Write::write_all(&mut theirs, &[0x88, 0x80, 0, 0, 0, 0]).unwrap();
                theirs
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                theirs.set_nonblocking(true).unwrap();
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                let mut answer = [0u8; 16];
                // Bounded by the deadline: the reactor answers the close frame.
                loop {
                    match std::io::Read::read(&mut theirs, &mut answer) {
                        Ok(n) if n > 0 => break,
                        _ => {
                            assert!(std::time::Instant::now() < deadline, "the reactor hears");
                            glommio::timer::sleep(Duration::from_millis(5)).await;
                        }
                    }
                }
                drop(running);
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
