//! `Readiness`: tells a shard's WebSocket reactor which sockets can be read or written,
//! without a glommio source (about 500 bytes) or a task per connection. A small io_uring of
//! the shard's own holds one poll per watched socket: a multishot `POLLIN` for the whole life
//! of a connection, and a one-shot `POLLOUT` while a write waits for room. The kernel keeps
//! the polls (no memory of ours per connection) and signals an eventfd on every completion;
//! the reactor awaits that eventfd as an io_uring read on glommio's own ring, so a shard with
//! nothing to do still sleeps in one `io_uring_enter`.
//!
//! Owns the ring and the eventfd; knows nothing of connections beyond their `Token`.

use std::future::Future;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, IntoRawFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use io_uring::{cqueue, opcode, squeue, types, IoUring};
use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::limits::{READINESS_COMPLETIONS, READINESS_SUBMISSIONS};

/// Which way a socket became ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    Read,
    Write,
}

/// Names one connection in the reactor's table: its slot and the slot's generation, so a
/// completion for a connection that has gone (and whose slot was reused) is recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Token {
    pub slot: u32,
    pub generation: u32,
}

/// One completion: the socket is ready `interest`-wise, or its poll ended (`armed` false:
/// a one-shot poll always; a multishot one only when cancelled or failed).
#[derive(Debug, Clone, Copy)]
pub struct Event {
    pub token: Token,
    pub interest: Interest,
    pub armed: bool,
}

/// `user_data` layout: removal (1 bit) | generation (30 bits) | interest (1 bit) | slot (32
/// bits). A removal's own completion carries `REMOVAL` and is ignored.
const REMOVAL: u64 = 1 << 63;
const GENERATION_MASK: u32 = (1 << 30) - 1;

fn user_data(token: Token, interest: Interest) -> u64 {
    let kind = match interest {
        Interest::Read => 0,
        Interest::Write => 1,
    };
    (u64::from(token.generation & GENERATION_MASK) << 33) | (kind << 32) | u64::from(token.slot)
}

fn decode(data: u64) -> Option<(Token, Interest)> {
    if data & REMOVAL != 0 {
        return None;
    }
    let interest = if data >> 32 & 1 == 0 {
        Interest::Read
    } else {
        Interest::Write
    };
    let token = Token {
        slot: data as u32,
        generation: (data >> 33) as u32 & GENERATION_MASK,
    };
    Some((token, interest))
}

/// The reactor's wait for its ring's eventfd. glommio's file read keeps every waker it is
/// polled with until it completes, and a glommio task's waker references are a 16-bit count:
/// a reactor woken 32,767 times by its ready list while no socket completes would overflow
/// it (and abort the process). So the read is polled with a waker of the bell's own, when it
/// starts and again only once that waker fired; the bell then wakes the reactor.
pub struct Bell {
    file: Rc<glommio::io::BufferedFile>,
    read: Option<Pin<Box<dyn Future<Output = ()>>>>,
    signal: Arc<BellSignal>,
    /// The reactor's waker as last handed to `signal`.
    reactor: Option<Waker>,
}

/// What the bell's read wakes: a flag, and the reactor.
#[derive(Default)]
struct BellSignal {
    fired: AtomicBool,
    /// Locked only when the read completes and when the reactor's waker changes (once).
    reactor: Mutex<Option<Waker>>,
}

impl Wake for BellSignal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.fired.store(true, Ordering::Release);
        let reactor = self.reactor.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(waker) = reactor.as_ref() {
            waker.wake_by_ref();
        }
    }
}

impl Bell {
    /// Ready once the eventfd was signalled since the last time it was (then a new read is
    /// started by the next poll). Registers `cx`'s waker.
    pub fn poll_rung(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self
            .reactor
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            *self
                .signal
                .reactor
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
            self.reactor = Some(cx.waker().clone());
        }
        let fired = self.signal.fired.swap(false, Ordering::AcqRel);
        if self.read.is_some() && !fired {
            // Polled already with the bell's waker, which has not fired.
            return Poll::Pending;
        }
        let file = self.file.clone();
        let read = self.read.get_or_insert_with(|| {
            Box::pin(async move {
                // An error is a wake-up too: the reactor looks at its ring either way.
                let _ = file.read_at(0, 8).await;
            })
        });
        let waker = Waker::from(self.signal.clone());
        match read.as_mut().poll(&mut Context::from_waker(&waker)) {
            Poll::Ready(()) => {
                self.read = None;
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

pub struct Readiness {
    ring: IoUring,
    /// Signalled by the ring on each completion. Blocking on purpose: an io_uring read of a
    /// non-blocking eventfd returns `EAGAIN` instead of waiting.
    bell: EventFd,
}

impl Readiness {
    pub fn new() -> io::Result<Self> {
        let ring = IoUring::builder()
            .setup_cqsize(READINESS_COMPLETIONS)
            .build(READINESS_SUBMISSIONS)
            .map_err(|e| io::Error::new(e.kind(), format!("readiness io_uring: {e}")))?;
        let bell = EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC)
            .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("eventfd: {e}")))?;
        ring.submitter()
            .register_eventfd(bell.as_fd().as_raw_fd())
            .map_err(|e| io::Error::new(e.kind(), format!("register eventfd: {e}")))?;
        Ok(Readiness { ring, bell })
    }

    /// The eventfd, to await (`Bell`): a read completes once some completion is waiting (the
    /// counter keeps a signal that comes before the read).
    pub fn bell(&self) -> io::Result<Bell> {
        let fd = self
            .bell
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| io::Error::new(e.kind(), format!("dup eventfd: {e}")))?;
        // SAFETY: a fresh descriptor (from dup) that nothing else owns; the file closes it.
        let file = unsafe { glommio::io::BufferedFile::from_raw_fd(fd.into_raw_fd()) };
        Ok(Bell {
            file: Rc::new(file),
            read: None,
            signal: Arc::new(BellSignal::default()),
            reactor: None,
        })
    }

    /// Polls `fd` for reading for as long as it is watched (multishot).
    pub fn watch_reads(&mut self, fd: RawFd, token: Token) -> io::Result<()> {
        let entry = opcode::PollAdd::new(types::Fd(fd), libc_events::POLLIN)
            .multi(true)
            .build()
            .user_data(user_data(token, Interest::Read));
        self.push(&entry)
    }

    /// Polls `fd` once for room to write.
    pub fn watch_write(&mut self, fd: RawFd, token: Token) -> io::Result<()> {
        let entry = opcode::PollAdd::new(types::Fd(fd), libc_events::POLLOUT)
            .build()
            .user_data(user_data(token, Interest::Write));
        self.push(&entry)
    }

    /// Cancels the poll of `token` for `interest`. Its last completion (not armed) still
    /// comes and is to be ignored by generation.
    pub fn forget(&mut self, token: Token, interest: Interest) -> io::Result<()> {
        let entry = opcode::PollRemove::new(user_data(token, interest))
            .build()
            .user_data(REMOVAL);
        self.push(&entry)
    }

    fn push(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        // Bounded: one submit empties the queue (the kernel takes every entry or fails).
        for _ in 0..2 {
            // SAFETY: poll and poll-remove entries point at no memory of ours.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return Ok(());
            }
            self.submit()?;
        }
        Err(io::Error::other("readiness submission queue stays full"))
    }

    /// Hands queued polls and removals to the kernel; also flushes completions the kernel
    /// held back while the completion queue was full.
    pub fn submit(&mut self) -> io::Result<()> {
        let pending = !self.ring.submission().is_empty() || self.ring.submission().cq_overflow();
        if pending {
            // Bounded: EINTR and EBUSY (completions to reap first) are retried a few times.
            for _ in 0..4 {
                match self.ring.submit() {
                    Ok(_) => return Ok(()),
                    Err(e) if e.raw_os_error() == Some(nix::libc::EINTR) => continue,
                    Err(e) if e.raw_os_error() == Some(nix::libc::EBUSY) => return Ok(()),
                    Err(e) => return Err(io::Error::new(e.kind(), format!("io_uring: {e}"))),
                }
            }
        }
        Ok(())
    }

    /// Moves the completions that arrived into `into` (at most `max`).
    pub fn drain(&mut self, into: &mut Vec<Event>, max: usize) {
        let mut completions = self.ring.completion();
        completions.sync();
        for cqe in completions.by_ref().take(max) {
            let Some((token, interest)) = decode(cqe.user_data()) else {
                continue;
            };
            into.push(Event {
                token,
                interest,
                armed: cqueue::more(cqe.flags()),
            });
        }
    }

    /// True if completions wait to be drained.
    pub fn has_completions(&mut self) -> bool {
        if self.ring.submission().cq_overflow() {
            return true;
        }
        let mut completions = self.ring.completion();
        completions.sync();
        !completions.is_empty()
    }

    /// Generations wrap within the bits a token carries.
    pub fn next_generation(generation: u32) -> u32 {
        generation.wrapping_add(1) & GENERATION_MASK
    }
}

/// Poll bits as io_uring takes them (`u32`).
mod libc_events {
    pub const POLLIN: u32 = nix::libc::POLLIN as u32;
    pub const POLLOUT: u32 = nix::libc::POLLOUT as u32;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_survive_the_user_data_round_trip() {
        for (slot, generation) in [(0, 0), (7, 1), (u32::MAX, GENERATION_MASK)] {
            for interest in [Interest::Read, Interest::Write] {
                let token = Token { slot, generation };
                assert_eq!(decode(user_data(token, interest)), Some((token, interest)));
            }
        }
        assert_eq!(decode(REMOVAL), None);
        assert_eq!(Readiness::next_generation(GENERATION_MASK), 0);
    }

    #[test]
    fn a_socket_with_input_completes_its_read_poll() {
        use std::io::Write;
        let mut readiness = Readiness::new().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let token = Token {
            slot: 3,
            generation: 9,
        };
        readiness.watch_reads(server.as_raw_fd(), token).unwrap();
        readiness.submit().unwrap();
        let mut events = Vec::new();
        readiness.drain(&mut events, 16);
        assert!(events.is_empty(), "nothing to read yet: {events:?}");
        client.write_all(b"x").unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while events.is_empty() && std::time::Instant::now() < deadline {
            // Entering the kernel runs the poll's completion (task work) on this thread.
            readiness.ring.submit_and_wait(1).unwrap();
            readiness.drain(&mut events, 16);
        }
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].token, token);
        assert_eq!(events[0].interest, Interest::Read);
        assert!(events[0].armed, "multishot polls stay armed");
        // The eventfd was signalled.
        let mut fds = [nix::poll::PollFd::new(
            readiness.bell.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        assert_eq!(
            nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO).unwrap(),
            1
        );
        readiness.forget(token, Interest::Read).unwrap();
        readiness.submit().unwrap();
        events.clear();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while events.is_empty() && std::time::Instant::now() < deadline {
            readiness.ring.submit_and_wait(1).unwrap();
            readiness.drain(&mut events, 16);
        }
        assert_eq!(events.len(), 1);
        assert!(!events[0].armed, "a removed poll ends");
    }
}
