//! The Redis connection (issue 15's foundation, `broker::redis`) against a real redis-server:
//! pipelined calls answered in order, error answers, a Redis that goes away (calls fail at
//! once instead of hanging) and comes back (calls succeed again), and an answer later than
//! the I/O timeout (the connection is dropped and made again).

mod common;

use std::time::{Duration, Instant};

use common::redis::RedisServer;
use redis_protocol::resp2::types::BytesFrame;
use ringcast::broker::redis::{Link, RedisConnection, RedisError, RedisSettings};

fn settings(server: &RedisServer, io_timeout: Duration) -> RedisSettings {
    RedisSettings {
        address: server.address,
        db: 0,
        user: String::new(),
        password: String::new(),
        connect_timeout: Duration::from_secs(1),
        io_timeout,
    }
}

/// Runs `test` on a glommio executor of its own.
fn on_executor<F, Fut>(test: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .spawn(|| async move { test().await })
        .unwrap()
        .join()
        .unwrap();
}

/// Waits (10 s at most) until the connection is `link`.
async fn until(connection: &RedisConnection, link: Link) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while connection.link() != link {
        assert!(
            Instant::now() < deadline,
            "the connection never became {link:?}"
        );
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
}

fn integer(frame: BytesFrame) -> i64 {
    match frame {
        BytesFrame::Integer(n) => n,
        other => panic!("an integer: {other:?}"),
    }
}

#[test]
fn pipelined_calls_are_answered_in_order() {
    let server = RedisServer::start();
    let settings = settings(&server, Duration::from_secs(5));
    on_executor(move || async move {
        let connection = RedisConnection::start(settings);
        until(&connection, Link::Up).await;
        // 10,000 INCRs at once, more than the in-flight limit: each caller gets its own
        // answer, and the answers are the counts in the order the calls were made.
        let calls: Vec<_> = (0..10_000)
            .map(|_| {
                let connection = connection.clone();
                glommio::spawn_local(async move { connection.call(&[b"INCR", b"n"]).await })
            })
            .collect();
        let mut answers = Vec::new();
        for call in calls {
            answers.push(integer(call.await.unwrap()));
        }
        let expected: Vec<i64> = (1..=10_000).collect();
        assert_eq!(answers, expected);
        // An error answer is the caller's alone.
        let e = connection.call(&[b"INCRBY", b"n", b"x"]).await.unwrap_err();
        assert!(
            matches!(e, RedisError::Reply(ref m) if m.contains("not an integer")),
            "{e}"
        );
        assert_eq!(
            integer(connection.call(&[b"INCR", b"n"]).await.unwrap()),
            10_001
        );
    });
}

#[test]
fn a_lost_redis_fails_calls_at_once_and_a_returning_one_serves_again() {
    let server = std::sync::Arc::new(std::sync::Mutex::new(RedisServer::start()));
    let settings = settings(&server.lock().unwrap(), Duration::from_secs(5));
    let control = server.clone();
    on_executor(move || async move {
        let connection = RedisConnection::start(settings);
        until(&connection, Link::Up).await;
        connection.call(&[b"SET", b"k", b"1"]).await.unwrap();
        control.lock().unwrap().down();
        until(&connection, Link::Down).await;
        let started = Instant::now();
        let e = connection.call(&[b"GET", b"k"]).await.unwrap_err();
        assert_eq!(e, RedisError::Unavailable);
        assert!(started.elapsed() < Duration::from_secs(1), "no hang");
        control.lock().unwrap().up();
        until(&connection, Link::Up).await;
        // A fresh Redis (no persistence): the key is gone, the connection serves.
        assert_eq!(
            connection.call(&[b"GET", b"k"]).await.unwrap(),
            BytesFrame::Null
        );
        assert!(connection.failures() >= 1);
    });
}

#[test]
fn an_answer_later_than_the_io_timeout_breaks_the_connection_which_recovers() {
    let server = RedisServer::start();
    let settings = settings(&server, Duration::from_millis(300));
    on_executor(move || async move {
        let connection = RedisConnection::start(settings);
        until(&connection, Link::Up).await;
        let started = Instant::now();
        let e = connection
            .call(&[b"DEBUG", b"SLEEP", b"1"])
            .await
            .unwrap_err();
        assert!(matches!(e, RedisError::Broken(_)), "{e}");
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "failed at the timeout"
        );
        // Redis sleeps on for the rest of its second: calls fail until it answers again,
        // then the connection serves.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match connection.call(&[b"PING"]).await {
                Ok(frame) => {
                    assert_eq!(frame, BytesFrame::SimpleString("PONG".into()));
                    break;
                }
                Err(e) => assert!(Instant::now() < deadline, "never served again: {e}"),
            }
            glommio::timer::sleep(Duration::from_millis(20)).await;
        }
    });
}
