//! Listening sockets: one per shard on the same address (SO_REUSEPORT, so the kernel spreads
//! connections over the shards), with SO_REUSEADDR too, the classic guard for a restart while
//! the port's old connections sit in TIME_WAIT (on Linux 6.18 the reuse-port flag the old
//! accepted sockets inherit already lets the bind through; a foreign client socket whose
//! ephemeral port is ours blocks it either way: `net.ipv4.ip_local_reserved_ports` prevents
//! that); and the accept loop that hands each connection to its own task on the accepting
//! shard.
//!
//! The listener is non-blocking and has TCP_NODELAY, which accepted sockets inherit; the loop
//! drains the kernel's queue with `accept4` (non-blocking and close-on-exec from the start)
//! and waits through glommio only when the queue is empty: a connection costs one syscall to
//! accept instead of glommio's four (it toggles the listener's flags around `accept`) and
//! none to set options.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::time::Duration;

use glommio::net::{TcpListener, TcpStream};
use nix::errno::Errno;
use nix::sys::socket::{
    accept4, bind, listen, setsockopt, socket, sockopt, AddressFamily, Backlog, SockFlag, SockType,
    SockaddrIn, SockaddrIn6,
};

use crate::clock::ThrottledLog;
use crate::limits::{
    ACCEPT_BACKOFF_MS, ACCEPT_BATCH, ACCEPT_EMFILE_BACKOFF_MS, LISTEN_BACKLOG,
    LOG_REPEAT_INTERVAL_MS,
};
use crate::transport::{PortService, Transport};

/// A non-blocking TCP socket for `address` with SO_REUSEADDR, SO_REUSEPORT and TCP_NODELAY,
/// bound, not yet listening.
pub fn bound_socket(address: SocketAddr) -> io::Result<OwnedFd> {
    let family = if address.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let flags = SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK;
    let fd = socket(family, SockType::Stream, flags, None)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    setsockopt(&fd, sockopt::ReusePort, &true)?;
    // Inherited by every accepted socket: replies and pushes leave at once.
    setsockopt(&fd, sockopt::TcpNoDelay, &true)?;
    match address {
        SocketAddr::V4(a) => bind(fd.as_raw_fd(), &SockaddrIn::from(a))?,
        SocketAddr::V6(a) => bind(fd.as_raw_fd(), &SockaddrIn6::from(a))?,
    }
    Ok(fd)
}

/// A shard's listening socket: glommio's listener, to wait for connections, and its
/// descriptor, to take queued ones directly.
pub struct Listener {
    waiter: TcpListener,
    /// `waiter`'s descriptor, open while `waiter` lives.
    fd: RawFd,
}

/// This shard's listener on `address`.
pub fn listen_on(address: SocketAddr) -> io::Result<Listener> {
    let fd = bound_socket(address)?;
    listen(&fd, Backlog::new(LISTEN_BACKLOG).map_err(io::Error::from)?)?;
    let fd = fd.into_raw_fd();
    // SAFETY: `fd` is an open, bound, listening TCP socket that this function owns; its
    // ownership moves into the listener, which closes it on drop.
    let waiter = unsafe { <TcpListener as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    Ok(Listener { waiter, fd })
}

/// The next connection: from the kernel's queue if one is waiting (`accept4`), else the next
/// to arrive (through glommio).
async fn next_connection(listener: &Listener) -> io::Result<TcpStream> {
    let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
    loop {
        match accept4(listener.fd, flags) {
            // SAFETY: `accept4` returned a new descriptor that nothing else owns.
            Ok(fd) => return Ok(unsafe { <TcpStream as std::os::fd::FromRawFd>::from_raw_fd(fd) }),
            // A connection reset while queued, or a signal: take the next.
            Err(Errno::ECONNABORTED | Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return listener.waiter.accept().await.map_err(io::Error::from),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Accepts connections until cancelled (the drain); each gets its own task.
pub async fn accept_loop(
    shard_id: usize,
    listener: Listener,
    transport: Rc<Transport>,
    port: Rc<PortService>,
) {
    let mut in_a_row = 0;
    let mut failures = ThrottledLog::new(Duration::from_millis(LOG_REPEAT_INTERVAL_MS));
    loop {
        match next_connection(&listener).await {
            Ok(stream) => {
                let serve = crate::transport::serve(transport.clone(), stream, port.clone());
                glommio::spawn_local(serve).detach();
                in_a_row += 1;
                if in_a_row == ACCEPT_BATCH {
                    // A connect storm must not starve the shard's connections.
                    in_a_row = 0;
                    futures_lite::future::yield_now().await;
                }
            }
            Err(e) => {
                let out_of_files = e.raw_os_error() == Some(nix::errno::Errno::EMFILE as i32);
                let hint = if out_of_files {
                    " (out of file descriptors: raise LimitNOFILE, see tuning/)"
                } else {
                    ""
                };
                failures.write(|| format!("ringcast: shard {shard_id}: accept failed: {e}{hint}"));
                // Back off instead of spinning; longer when out of files, which come back
                // only as connections close.
                let wait = if out_of_files {
                    ACCEPT_EMFILE_BACKOFF_MS
                } else {
                    ACCEPT_BACKOFF_MS
                };
                glommio::timer::sleep(Duration::from_millis(wait)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::getsockopt;
    use std::os::fd::BorrowedFd;

    /// Connections taken from the queue and those waited for (io_uring's accept waits even on
    /// a non-blocking listener) both come out with TCP_NODELAY, inherited from the listener;
    /// those taken from the queue are non-blocking from the start.
    #[test]
    fn accepted_sockets_are_nonblocking_with_nodelay() {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(|| async {
                let listener = listen_on("127.0.0.1:0".parse().unwrap()).unwrap();
                let address = listener.waiter.local_addr().unwrap();
                // One already queued (taken by accept4) ...
                let _queued = std::net::TcpStream::connect(address).unwrap();
                let first = next_connection(&listener).await.unwrap();
                // ... and one that arrives while the loop waits (taken through glommio).
                let late = std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(50));
                    std::net::TcpStream::connect(address).unwrap()
                });
                let second = next_connection(&listener).await.unwrap();
                let _late = late.join().unwrap();
                for stream in [&first, &second] {
                    // SAFETY: the stream owns the descriptor and outlives this borrow.
                    let fd = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
                    assert!(getsockopt(&fd, sockopt::TcpNoDelay).unwrap());
                }
                // SAFETY: as above.
                let fd = unsafe { BorrowedFd::borrow_raw(first.as_raw_fd()) };
                let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL).unwrap();
                let flags = nix::fcntl::OFlag::from_bits_truncate(flags);
                assert!(flags.contains(nix::fcntl::OFlag::O_NONBLOCK));
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
