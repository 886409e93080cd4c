//! Listening sockets: one per shard on the same address (SO_REUSEPORT, so the kernel spreads
//! connections over the shards), with SO_REUSEADDR too, the classic guard for a restart while
//! the port's old connections sit in TIME_WAIT (on Linux 6.18 the reuse-port flag the old
//! accepted sockets inherit already lets the bind through; a foreign client socket whose
//! ephemeral port is ours blocks it either way: `net.ipv4.ip_local_reserved_ports` prevents
//! that); and the accept loop that hands each connection to its own task on the accepting
//! shard.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd};
use std::rc::Rc;
use std::time::Duration;

use glommio::net::TcpListener;
use nix::sys::socket::{
    bind, listen, setsockopt, socket, sockopt, AddressFamily, Backlog, SockFlag, SockType,
    SockaddrIn, SockaddrIn6,
};

use crate::limits::{ACCEPT_BACKOFF_MS, LISTEN_BACKLOG};
use crate::session::Context;

/// A TCP socket for `address` with SO_REUSEADDR and SO_REUSEPORT, bound, not yet listening.
pub fn bound_socket(address: SocketAddr) -> io::Result<OwnedFd> {
    let family = if address.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    setsockopt(&fd, sockopt::ReusePort, &true)?;
    match address {
        SocketAddr::V4(a) => bind(fd.as_raw_fd(), &SockaddrIn::from(a))?,
        SocketAddr::V6(a) => bind(fd.as_raw_fd(), &SockaddrIn6::from(a))?,
    }
    Ok(fd)
}

/// This shard's listener on `address`.
pub fn listen_on(address: SocketAddr) -> io::Result<TcpListener> {
    let fd = bound_socket(address)?;
    listen(&fd, Backlog::new(LISTEN_BACKLOG).map_err(io::Error::from)?)?;
    // SAFETY: `fd` is an open, bound, listening TCP socket that this function owns; its
    // ownership moves into the listener, which closes it on drop.
    Ok(unsafe { <TcpListener as std::os::fd::FromRawFd>::from_raw_fd(fd.into_raw_fd()) })
}

/// Accepts connections for the life of the process; each gets its own task.
pub async fn accept_loop(shard_id: usize, listener: TcpListener, ctx: Rc<Context>) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                glommio::spawn_local(crate::transport::serve(ctx.clone(), stream)).detach();
            }
            Err(e) => {
                let hint = if e.raw_os_error() == Some(nix::errno::Errno::EMFILE as i32) {
                    " (out of file descriptors: raise LimitNOFILE, see tuning/)"
                } else {
                    ""
                };
                // Back off instead of spinning.
                eprintln!("ringcast: shard {shard_id}: accept failed: {e}{hint}");
                glommio::timer::sleep(Duration::from_millis(ACCEPT_BACKOFF_MS)).await;
            }
        }
    }
}
