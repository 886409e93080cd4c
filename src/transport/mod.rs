//! One accepted TCP connection, from the first byte to the close: a PROXY header when the port
//! asks for one, a TLS handshake when it serves TLS (`PortService`), then HTTP/1.1 requests with
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
use std::sync::Arc;

use bytes::BytesMut;
use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;

use crate::framing::tls::TlsRecords;
use crate::http::connection::{self, Ended};
use crate::http::proxy_header::{self, Parsed, Proxied};
use crate::http::response::Response;
use crate::http::routes::Endpoints;
use crate::http::stream::{Stream, TlsStream};
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

/// What one listening port serves: which endpoints, and over TLS or not.
pub struct PortService {
    pub endpoints: Endpoints,
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// Serves one connection until it closes or its reactor takes it over.
pub async fn serve(transport: Rc<Transport>, tcp: TcpStream, port: Rc<PortService>) {
    // The HTTP phase runs in its own (boxed) future: this task ends at the upgrade, and an
    // upgraded connection carries none of the HTTP and API machinery (DESIGN invariant 6).
    // I/O errors just end the connection: peers vanish all the time.
    let upgraded = Box::pin(upgrade(&transport.ctx, tcp, &port)).await;
    if let Ok(Some((stream, leftover))) = upgraded {
        let (tcp, tls) = stream.into_parts();
        // A right-sized copy: the HTTP read buffer must not live as long as the connection.
        // What TLS decrypted and HTTP did not read yet comes after it.
        let plain = tls.as_ref().map_or(&[][..], |t| &t.plain[..]);
        let mut input = BytesMut::with_capacity(leftover.len() + plain.len());
        input.extend_from_slice(&leftover);
        input.extend_from_slice(plain);
        drop(leftover);
        let tls = tls.map(|t| (t.records, t.cipher));
        match detach(&tcp) {
            Ok(fd) => transport.websockets.adopt(fd, input, tls),
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
/// (`Some` with the stream and the bytes already read past the upgrade request).
async fn upgrade(
    ctx: &Context,
    mut tcp: TcpStream,
    port: &PortService,
) -> io::Result<Option<(Stream, Vec<u8>)>> {
    let shard = &ctx.shard;
    let endpoints = port.endpoints;
    let socket_peer = tcp.peer_addr().ok();
    // Behind an L4 load balancer: its PROXY header first, naming the client (before TLS).
    let (peer, initial) = if endpoints.clients && shard.config.http_server.proxy_protocol {
        match read_proxy_header(&mut tcp, shard).await {
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
    let (mut stream, initial) = match &port.tls {
        None => (Stream::Plain(tcp), initial),
        Some(config) => {
            let records = match TlsRecords::new(config.clone()) {
                Ok(records) => Box::new(records),
                Err(e) => {
                    eprintln!("ringcast: cannot start a TLS connection: {e}");
                    return Ok(None);
                }
            };
            let mut tls = TlsStream::accept(tcp, records, initial);
            if tls.handshake(request_timeout(shard)).await.is_err() {
                shard.refuse_connection(Refusal::TlsHandshake, peer);
                return Ok(None);
            }
            (Stream::Tls(Box::new(tls)), Vec::new())
        }
    };
    let ended = connection::serve(shard, &mut stream, endpoints, initial).await?;
    let Ended::Upgrade { head, leftover } = ended else {
        if matches!(stream, Stream::Tls(_)) {
            // What is sealed still goes out, then close_notify.
            let _ = stream.shutdown_write().await;
        }
        return Ok(None);
    };
    if let Err(refusal) = shard.admit_upgrade(head.origin.as_deref(), peer) {
        let status = match refusal {
            Refusal::Origin => 403,
            _ => 503,
        };
        Response::empty(status).write(&mut stream, false).await?;
        let _ = stream.shutdown_write().await;
        return Ok(None);
    }
    match websocket::upgrade::response(&head) {
        Ok(response) => {
            stream.write_all(&response).await?;
            // With TLS, the sealed response leaves before the reactor takes the socket.
            stream.flush().await?;
            Ok(Some((stream, leftover)))
        }
        Err(response) => {
            response.write(&mut stream, false).await?;
            let _ = stream.shutdown_write().await;
            Ok(None)
        }
    }
}

/// `http_server.request_timeout`: a request head, a PROXY header and a TLS handshake must
/// each arrive whole within it.
fn request_timeout(shard: &crate::shard::Shard) -> std::time::Duration {
    shard
        .config
        .http_server
        .request_timeout
        .positive()
        .unwrap_or(std::time::Duration::from_secs(10))
}

/// Reads the PROXY header a connection must start with (within `http_server.request_timeout`);
/// what it says, and the bytes read past it. `Err`: none came, or a malformed one.
async fn read_proxy_header(
    stream: &mut TcpStream,
    shard: &crate::shard::Shard,
) -> Result<(Proxied, Vec<u8>), ()> {
    use futures_lite::AsyncReadExt;
    let timeout = request_timeout(shard);
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
                let port = Rc::new(super::PortService {
                    endpoints: crate::http::routes::Endpoints::ALL,
                    tls: None,
                });
                let http = super::serve(transport, stream, port);
                let size = std::mem::size_of_val(&http);
                assert!(size <= 900, "HTTP connection task is {size} bytes");
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
