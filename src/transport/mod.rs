//! One accepted TCP connection, from the first byte to the close: HTTP/1.1 requests with
//! keep-alive and pipelining (`http::connection`) in a task of its own until the connection
//! closes or upgrades to a transport. `websocket` is the only transport today (its shard's
//! `Reactor` serves the upgraded connection from then on, without a task); SSE and
//! HTTP-streaming would be siblings. `readiness` tells the reactor which sockets are ready.
//!
//! Owns the socket and the connection's partial input. Imports `http`, `session`, `shard`,
//! `fanout`, `framing`.

pub mod readiness;
pub mod websocket;

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::rc::Rc;

use bytes::BytesMut;
use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;

use crate::http::connection::{self, Ended};
use crate::http::proxy_header::{self, Parsed, Proxied};
use crate::http::response::Response;
use crate::http::routes::Endpoints;
use crate::protocol::Refusal;
use crate::session::Context;

/// What one shard's transports need: the sessions' context and the WebSocket reactor.
pub struct Transport {
    pub ctx: Rc<Context>,
    pub websockets: Rc<websocket::Reactor>,
}

impl Transport {
    pub fn new(ctx: Rc<Context>) -> io::Result<Self> {
        let websockets = Rc::new(websocket::Reactor::new(ctx.clone())?);
        Ok(Transport { ctx, websockets })
    }
}

/// Serves one connection until it closes or its reactor takes it over.
pub async fn serve(transport: Rc<Transport>, mut stream: TcpStream, endpoints: Endpoints) {
    // The HTTP phase runs in its own (boxed) future: this task ends at the upgrade, and an
    // upgraded connection carries none of the HTTP and API machinery (DESIGN invariant 6).
    // I/O errors just end the connection: peers vanish all the time.
    let upgraded = Box::pin(upgrade(&transport.ctx, &mut stream, endpoints)).await;
    if let Ok(Some(leftover)) = upgraded {
        // A right-sized copy: the HTTP read buffer must not live as long as the connection.
        let input = BytesMut::from(&leftover[..]);
        drop(leftover);
        match detach(&stream) {
            Ok(fd) => transport.websockets.adopt(fd, input),
            Err(e) => eprintln!("ringcast: cannot hand over a WebSocket connection: {e}"),
        }
    }
}

/// The socket of `stream`, for the reactor: glommio's stream cannot give its descriptor up,
/// so this is a duplicate and the stream closes the original when dropped.
fn detach(stream: &TcpStream) -> io::Result<OwnedFd> {
    // SAFETY: the descriptor is open for as long as `stream` lives, which outlasts this call.
    let fd = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
    fd.try_clone_to_owned()
}

/// Serves HTTP requests until the connection closes (`None`) or upgrades to WebSocket
/// (`Some` with the bytes already read past the upgrade request).
async fn upgrade(
    ctx: &Context,
    stream: &mut TcpStream,
    endpoints: Endpoints,
) -> io::Result<Option<Vec<u8>>> {
    let shard = &ctx.shard;
    let socket_peer = stream.peer_addr().ok();
    // Behind an L4 load balancer: its PROXY header first, naming the client.
    let (peer, initial) = if endpoints.clients && shard.config.http_server.proxy_protocol {
        match read_proxy_header(stream, shard).await {
            Ok((proxied, rest)) => (
                match proxied {
                    Proxied::Client(address) => Some(address),
                    Proxied::Local => socket_peer,
                },
                rest,
            ),
            Err(()) => {
                shard.refuse_connection(Refusal::ProxyHeader, socket_peer);
                return Ok(None);
            }
        }
    } else {
        (socket_peer, Vec::new())
    };
    let Ended::Upgrade { head, leftover } =
        connection::serve(shard, stream, endpoints, initial).await?
    else {
        return Ok(None);
    };
    if let Err(refusal) = shard.admit_upgrade(head.origin.as_deref(), peer) {
        let status = match refusal {
            Refusal::Origin => 403,
            _ => 503,
        };
        Response::empty(status).write(stream, false).await?;
        return Ok(None);
    }
    match websocket::upgrade::response(&head) {
        Ok(response) => {
            stream.write_all(&response).await?;
            Ok(Some(leftover))
        }
        Err(response) => {
            response.write(stream, false).await?;
            Ok(None)
        }
    }
}

/// Reads the PROXY header a connection must start with (within `http_server.request_timeout`);
/// what it says, and the bytes read past it. `Err`: none came, or a malformed one.
async fn read_proxy_header(
    stream: &mut TcpStream,
    shard: &crate::shard::Shard,
) -> Result<(Proxied, Vec<u8>), ()> {
    use futures_lite::AsyncReadExt;
    let timeout = shard
        .config
        .http_server
        .request_timeout
        .positive()
        .unwrap_or(std::time::Duration::from_secs(10));
    let started = std::time::Instant::now();
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 512];
    // Bounded by the header's longest (`PROXY_HEADER_V2_BYTES_MAX`) and the timeout.
    loop {
        match proxy_header::parse(&bytes) {
            Parsed::Header { proxied, len } => return Ok((proxied, bytes.split_off(len))),
            Parsed::Invalid(_) => return Err(()),
            Parsed::Incomplete => {}
        }
        let left = timeout.saturating_sub(started.elapsed());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return Err(());
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return Err(()),
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::rc::Rc;

    /// A one-shard context on the calling glommio executor, for tests of the transport.
    pub(crate) fn context() -> Rc<crate::session::Context> {
        let links = ringcast_ring::mesh::mesh(1, 8)
            .unwrap()
            .into_iter()
            .next()
            .unwrap();
        let outbox = crate::router::Outbox::new(links.bind(), crate::router::Congestion::new(1));
        let config = crate::config::Config::default();
        let engine = crate::engine::ChannelOwner::new(0, 1, config.clone()).unwrap();
        let shard = Rc::new(crate::shard::Shard::new(
            0,
            1,
            config,
            Box::new(engine),
            outbox,
            crate::router::Lifecycle::new(),
        ));
        let current = glommio::executor().current_task_queue();
        let queues = crate::session::TaskQueues {
            intake: current,
            connections: current,
        };
        Rc::new(crate::session::Context::new(shard, queues).expect("default configuration"))
    }

    /// An idle WebSocket connection is its record in the reactor's table (no task), its
    /// `Outbound` and its channel entries (DESIGN invariant 6); this budget keeps the record
    /// from quietly growing. The HTTP phase is a task whose future must stay small too: every
    /// connection pays it until it upgrades.
    #[test]
    fn idle_connection_record_and_http_task_stay_small() {
        let record = std::mem::size_of::<super::websocket::connection::Connection>();
        assert!(
            record <= 256,
            "WebSocket connection record is {record} bytes"
        );
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(|| async {
                let ctx = context();
                let transport = Rc::new(super::Transport::new(ctx).unwrap());
                let listener = glommio::net::TcpListener::bind("127.0.0.1:0").unwrap();
                let stream = glommio::net::TcpStream::connect(listener.local_addr().unwrap())
                    .await
                    .unwrap();
                let http = super::serve(transport, stream, crate::http::routes::Endpoints::ALL);
                let size = std::mem::size_of_val(&http);
                assert!(size <= 900, "HTTP connection task is {size} bytes");
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
