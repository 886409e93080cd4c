//! Issue 15's foundation (`broker::redis`) against a real redis-server: the connection
//! (pipelined calls answered in order, error answers, a Redis that goes away and comes back,
//! an answer later than the I/O timeout), a channel's stream (offsets and epoch from one
//! script, history read back, trimmed and expiring, a new epoch after Redis lost its data,
//! scripts loaded again), and the subscriber connection (delivery after the confirmation,
//! unsubscribe, batched SUBSCRIBEs, everything subscribed again after a restart).

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::redis::RedisServer;
use redis_protocol::resp2::types::BytesFrame;
use ringcast::broker::redis::{
    Entry, Link, PubSub, PubSubEvent, PubSubMode, RedisConnection, RedisError, RedisSettings,
    StreamPolicy, Streams,
};

fn settings(server: &RedisServer, io_timeout: Duration) -> RedisSettings {
    RedisSettings {
        address: server.address,
        db: 0,
        user: String::new(),
        password: String::new(),
        connect_timeout: Duration::from_secs(1),
        io_timeout,
        tls: None,
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

/// A connection to `settings`' Redis, once it is up.
async fn connected(settings: RedisSettings) -> RedisConnection {
    let connection = RedisConnection::start(settings);
    until(&connection, Link::Up).await;
    connection
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
        let connection = connected(settings).await;
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
        let connection = connected(settings).await;
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
        let connection = connected(settings).await;
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

fn policy(size: u64) -> StreamPolicy {
    StreamPolicy {
        size,
        ttl_secs: 60,
        meta_ttl_secs: 0,
    }
}

#[test]
fn publish_assigns_offsets_in_one_step_and_history_reads_them_back() {
    let server = RedisServer::start();
    let settings = settings(&server, Duration::from_secs(5));
    on_executor(move || async move {
        let connection = connected(settings).await;
        let streams = Streams::new(connection, "rc", PubSubMode::Classic);
        let mut epochs = Vec::new();
        for n in 1..=5u64 {
            let position = streams
                .publish(
                    "news",
                    format!("{{\"n\":{n}}}").as_bytes(),
                    policy(3),
                    "e1",
                    None,
                )
                .await
                .unwrap();
            assert_eq!(position.offset, n);
            epochs.push(position.epoch);
        }
        assert!(
            epochs.iter().all(|e| e == "e1"),
            "the first candidate stays: {epochs:?}"
        );
        // Kept: the last three, oldest first.
        let history = streams.history("news", 0, 0, "other", 0).await.unwrap();
        let top = history.top.clone();
        assert_eq!((top.offset, top.epoch.as_str()), (5, "e1"));
        let offsets: Vec<u64> = history.entries.iter().map(|e| e.offset).collect();
        assert_eq!(offsets, [3, 4, 5]);
        assert_eq!(&history.entries[2].payload[..], b"{\"n\":5}");
        // After an offset, with a limit.
        let after = streams.history("news", 3, 1, "other", 0).await.unwrap();
        let offsets: Vec<u64> = after.entries.iter().map(|e| e.offset).collect();
        assert_eq!(offsets, [4]);
        // Without history: no offset, no keys.
        let position = streams
            .publish("live", b"{}", policy(0), "e1", None)
            .await
            .unwrap();
        assert_eq!(position.offset, 0);
        // A read of a channel with no position gives it one, at 0, with the candidate epoch.
        let fresh = streams.history("fresh", 0, 0, "e9", 60).await.unwrap();
        assert_eq!((fresh.top.offset, fresh.top.epoch.as_str()), (0, "e9"));
        let position = streams
            .publish("fresh", b"{}", policy(10), "e10", None)
            .await
            .unwrap();
        assert_eq!((position.offset, position.epoch.as_str()), (1, "e9"));
    });
    // Both keys expire, and share a hash tag.
    let ttl = server.command(&["TTL", "rc.s.{news}"]).unwrap();
    assert!(
        ttl.starts_with(':') && ttl != ":-1\r\n" && ttl != ":-2\r\n",
        "{ttl}"
    );
    assert_eq!(
        server.command(&["EXISTS", "rc.m.{live}"]).unwrap(),
        ":0\r\n"
    );
}

#[test]
fn a_redis_that_lost_its_data_gives_a_new_epoch_and_reloads_the_scripts() {
    let server = std::sync::Arc::new(std::sync::Mutex::new(RedisServer::start()));
    let settings = settings(&server.lock().unwrap(), Duration::from_secs(5));
    let control = server.clone();
    on_executor(move || async move {
        let connection = connected(settings).await;
        let streams = Streams::new(connection.clone(), "rc", PubSubMode::Classic);
        for _ in 0..2 {
            streams
                .publish("news", b"{}", policy(10), "old", None)
                .await
                .unwrap();
        }
        // Restarted without persistence: data and loaded scripts are gone.
        control.lock().unwrap().down();
        until(&connection, Link::Down).await;
        control.lock().unwrap().up();
        until(&connection, Link::Up).await;
        let position = streams
            .publish("news", b"{}", policy(10), "new", None)
            .await
            .unwrap();
        assert_eq!((position.offset, position.epoch.as_str()), (1, "new"));
        let history = streams.history("news", 2, 0, "x", 0).await.unwrap();
        let top = history.top;
        assert_eq!((top.offset, top.epoch.as_str()), (1, "new"));
        assert!(
            history.entries.is_empty(),
            "nothing after the old offset in the new stream"
        );
    });
}

/// Collects what a `PubSub` hands its shard.
#[derive(Default)]
struct Received {
    messages: Vec<(String, Entry)>,
    resubscribed: u32,
    dropped: u32,
}

fn collecting(received: &Rc<RefCell<Received>>) -> Box<dyn FnMut(PubSubEvent<'_>)> {
    let received = received.clone();
    Box::new(move |event| match event {
        PubSubEvent::Message { channel, payload } => {
            let entry = Entry::from_message(&payload).expect("a well-formed message");
            received
                .borrow_mut()
                .messages
                .push((String::from_utf8_lossy(channel).into_owned(), entry));
        }
        PubSubEvent::Resubscribed => received.borrow_mut().resubscribed += 1,
        PubSubEvent::Dropped => received.borrow_mut().dropped += 1,
    })
}

/// Waits (10 s at most) until `check` holds.
async fn until_true(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "{what}");
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
}

#[test]
fn pubsub_delivers_after_the_confirmation_and_stops_after_unsubscribe() {
    let server = RedisServer::start();
    let settings = settings(&server, Duration::from_secs(5));
    on_executor(move || async move {
        let received = Rc::new(RefCell::new(Received::default()));
        let pubsub = PubSub::start(settings.clone(), PubSubMode::Classic, collecting(&received));
        until_true("pub/sub up", || pubsub.link() == Link::Up).await;
        let connection = connected(settings).await;
        let streams = Streams::new(connection, "rc", PubSubMode::Classic);
        pubsub.subscribe(b"rc.p.{a}").await.unwrap();
        streams
            .publish("a", b"{\"x\":1}", policy(10), "e", None)
            .await
            .unwrap();
        until_true("the message", || received.borrow().messages.len() == 1).await;
        let (channel, entry) = received.borrow().messages[0].clone();
        assert_eq!(
            (channel.as_str(), entry.offset, &entry.payload[..]),
            ("rc.p.{a}", 1, &b"{\"x\":1}"[..])
        );
        // Unsubscribed from a, subscribed to b (sent after): a's next message, published
        // before b's, never comes.
        pubsub.unsubscribe(b"rc.p.{a}");
        pubsub.subscribe(b"rc.p.{b}").await.unwrap();
        streams
            .publish("a", b"{}", policy(10), "e", None)
            .await
            .unwrap();
        streams
            .publish("b", b"{}", policy(10), "e", None)
            .await
            .unwrap();
        until_true("b's message", || received.borrow().messages.len() == 2).await;
        assert_eq!(received.borrow().messages[1].0, "rc.p.{b}");
    });
}

#[test]
fn pubsub_batches_subscriptions_and_resubscribes_after_a_restart() {
    let server = std::sync::Arc::new(std::sync::Mutex::new(RedisServer::start()));
    let settings = settings(&server.lock().unwrap(), Duration::from_secs(5));
    let control = server.clone();
    on_executor(move || async move {
        let received = Rc::new(RefCell::new(Received::default()));
        let pubsub = PubSub::start(settings.clone(), PubSubMode::Classic, collecting(&received));
        until_true("pub/sub up", || pubsub.link() == Link::Up).await;
        // 2,000 channels wanted at once: a few SUBSCRIBE commands, every one confirmed.
        let waits: Vec<_> = (0..2_000)
            .map(|i| {
                let pubsub = pubsub.clone();
                glommio::spawn_local(async move {
                    pubsub.subscribe(format!("rc.p.{{c{i}}}").as_bytes()).await
                })
            })
            .collect();
        for wait in waits {
            wait.await.unwrap();
        }
        let stats = control
            .lock()
            .unwrap()
            .command(&["INFO", "commandstats"])
            .unwrap();
        let calls: u64 = stats
            .lines()
            .find_map(|l| l.strip_prefix("cmdstat_subscribe:calls="))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("subscribe calls in {stats}"));
        assert!(calls <= 10, "2,000 channels in {calls} SUBSCRIBE commands");
        // Redis restarts: the connection comes back, subscribes everything again, says so.
        control.lock().unwrap().down();
        until_true("pub/sub down", || pubsub.link() == Link::Down).await;
        control.lock().unwrap().up();
        until_true("resubscribed", || received.borrow().resubscribed == 1).await;
        let connection = connected(settings).await;
        let streams = Streams::new(connection, "rc", PubSubMode::Classic);
        // Confirmed again (subscribe resolves once the new SUBSCRIBE's answer came).
        pubsub.subscribe(b"rc.p.{c1999}").await.unwrap();
        streams
            .publish("c1999", b"{}", policy(10), "e", None)
            .await
            .unwrap();
        until_true("a message after the restart", || {
            received
                .borrow()
                .messages
                .iter()
                .any(|(c, _)| c == "rc.p.{c1999}")
        })
        .await;
    });
}

/// Connections set up with deadlines (connect, AUTH as an ACL user) stay up while idle far
/// past them: the set-up's socket timeouts do not outlive it.
#[test]
fn idle_connections_outlive_their_set_up_deadlines() {
    let server = RedisServer::start_with(&["--user", "app", "on", ">secret", "~*", "&*", "+@all"]);
    let mut settings = settings(&server, Duration::from_millis(200));
    settings.connect_timeout = Duration::from_millis(200);
    settings.user = "app".into();
    settings.password = "secret".into();
    on_executor(move || async move {
        let connection = RedisConnection::start(settings.clone());
        let received = Rc::new(RefCell::new(Received::default()));
        let pubsub = PubSub::start(settings, PubSubMode::Classic, collecting(&received));
        until(&connection, Link::Up).await;
        pubsub.subscribe(b"rc.p.{idle}").await.unwrap();
        // Five times the deadlines with nothing said either way.
        glommio::timer::sleep(Duration::from_secs(1)).await;
        assert_eq!(connection.failures(), 0, "the command connection stayed up");
        assert_eq!(pubsub.link(), Link::Up);
        assert_eq!(received.borrow().resubscribed, 0, "the pub/sub stayed up");
        assert_eq!(
            integer(connection.call(&[b"INCR", b"idle"]).await.unwrap()),
            1
        );
    });
}

/// On a cluster master, a sharded subscribe for a channel of another master's slot is refused
/// (MOVED): that subscribe fails and the handler is told (the engine then reads the slot map
/// again), while the connection stays up and a channel of the master's own slots subscribes
/// and delivers as usual.
#[test]
fn a_refused_sharded_subscribe_fails_alone() {
    let mut cluster = common::redis::RedisCluster::start(3, 0);
    let first = "rc.p.{first}";
    let here = cluster.serving(first).address;
    let elsewhere = (0..100)
        .map(|i| format!("rc.p.{{other-{i}}}"))
        .find(|c| cluster.serving(c).address != here)
        .expect("a channel on another master");
    let mut settings = settings(&cluster.nodes[0], Duration::from_secs(5));
    settings.address = here;
    on_executor(move || async move {
        let received = Rc::new(RefCell::new(Received::default()));
        let pubsub = PubSub::start(settings.clone(), PubSubMode::Sharded, collecting(&received));
        until_true("connected", || pubsub.link() == Link::Up).await;
        let e = pubsub.subscribe(elsewhere.as_bytes()).await.unwrap_err();
        assert!(matches!(e, RedisError::Reply(_)), "{e}");
        assert_eq!(received.borrow().dropped, 1, "the handler was told");
        pubsub.subscribe(first.as_bytes()).await.unwrap();
        assert_eq!(pubsub.link(), Link::Up);
        let connection = connected(settings).await;
        connection
            .call(&[b"SPUBLISH", first.as_bytes(), b"1:e:x"])
            .await
            .unwrap();
        until_true("the message", || received.borrow().messages.len() == 1).await;
        assert_eq!(
            received.borrow().resubscribed,
            0,
            "the connection stayed up"
        );
    });
}
