//! One accepted TCP connection, from the first byte to the close: HTTP/1.1 requests with
//! keep-alive and pipelining (`http::connection`) until the connection closes or upgrades to
//! a transport. `websocket` is the only transport today; SSE and HTTP-streaming would be
//! siblings.
//!
//! Owns the socket and the connection's partial input. Imports `http`, `session`, `shard`,
//! `fanout::Outbound`, `framing`.

pub mod websocket;

use std::io;
use std::rc::Rc;

use bytes::BytesMut;
use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;

use crate::http::connection::{self, Ended};
use crate::session::Context;

/// Serves one connection until it closes.
pub async fn serve(ctx: Rc<Context>, mut stream: TcpStream) {
    // The HTTP phase runs in its own (boxed) future and ends before the WebSocket phase
    // starts: a task is as large as its largest state, and the idle WebSocket state should
    // not carry the HTTP and API machinery (DESIGN invariant 6). I/O errors just end the
    // connection: peers vanish all the time.
    let upgraded = Box::pin(upgrade(&ctx, &mut stream)).await;
    if let Ok(Some(leftover)) = upgraded {
        // A right-sized copy: the HTTP read buffer must not live as long as the connection.
        let input = BytesMut::from(&leftover[..]);
        drop(leftover);
        // The WebSocket phase moves to the connections' queue (see `TaskQueues`); this task,
        // in the intake queue, ends here.
        let connections = ctx.queues.connections;
        let spawned = glommio::spawn_local_into(websocket_phase(ctx, stream, input), connections);
        match spawned {
            Ok(task) => {
                task.detach();
            }
            // Only if the queue is gone, which it never is while the shard runs.
            Err(e) => eprintln!("ringcast: cannot start a WebSocket connection: {e}"),
        }
    }
}

/// An upgraded connection, as a task of its own: what an idle connection costs.
async fn websocket_phase(ctx: Rc<Context>, mut stream: TcpStream, input: BytesMut) {
    websocket::connection::run(&ctx, &mut stream, input).await;
}

/// Serves HTTP requests until the connection closes (`None`) or upgrades to WebSocket
/// (`Some` with the bytes already read past the upgrade request).
async fn upgrade(ctx: &Context, stream: &mut TcpStream) -> io::Result<Option<Vec<u8>>> {
    let Ended::Upgrade { head, leftover } = connection::serve(&ctx.shard, stream).await? else {
        return Ok(None);
    };
    match websocket::upgrade::response(&head) {
        Ok(response) => {
            stream.write_all(&response).await?;
            stream.set_read_timeout(None)?;
            let write_timeout = ctx.shard.config.websocket.write_timeout.positive();
            stream.set_write_timeout(write_timeout)?;
            Ok(Some(leftover))
        }
        Err(response) => {
            response.write(stream, false).await?;
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    /// An idle WebSocket connection costs its task (the `serve` future), its `Outbound` and
    /// little else (DESIGN invariant 6); this budget keeps the future from quietly growing
    /// (a stack buffer or a long-lived HTTP value in it costs every connection).
    #[test]
    fn idle_connection_task_stays_small() {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(|| async {
                let links = ringcast_ring::mesh::mesh(1, 8)
                    .unwrap()
                    .into_iter()
                    .next()
                    .unwrap();
                let outbox =
                    crate::router::Outbox::new(links.bind(), crate::router::Congestion::new(1));
                let config = crate::config::Config::default();
                let engine = crate::engine::ChannelOwner::new(0, 1, config.clone()).unwrap();
                let shard = Rc::new(crate::shard::Shard::new(
                    0,
                    1,
                    config,
                    Box::new(engine),
                    outbox,
                ));
                let current = glommio::executor().current_task_queue();
                let queues = crate::session::TaskQueues {
                    intake: current,
                    connections: current,
                };
                let ctx = Rc::new(crate::session::Context::new(shard, queues));
                let listener = glommio::net::TcpListener::bind("127.0.0.1:0").unwrap();
                let stream = glommio::net::TcpStream::connect(listener.local_addr().unwrap())
                    .await
                    .unwrap();
                let task = super::websocket_phase(ctx.clone(), stream, bytes::BytesMut::new());
                let size = std::mem::size_of_val(&task);
                assert!(size <= 900, "WebSocket connection task is {size} bytes");
                drop(task);
                let stream = glommio::net::TcpStream::connect(listener.local_addr().unwrap())
                    .await
                    .unwrap();
                let http = super::serve(ctx, stream);
                let size = std::mem::size_of_val(&http);
                assert!(size <= 900, "HTTP connection task is {size} bytes");
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
