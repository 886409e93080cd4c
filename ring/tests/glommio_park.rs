//! The doorbell on real glommio executors: an idle shard parked on its mesh links uses no CPU
//! and wakes on the first message; a parking ping-pong never loses a wake-up.
#![cfg(all(not(loom), feature = "glommio"))]

use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};
use nix::time::{clock_gettime, ClockId};
use ringcast_ring::mesh::{mesh, ShardLinks};

fn thread_cpu_time() -> Duration {
    Duration::from(clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).expect("thread CPU clock"))
}

fn spawn_shard<R: Send + 'static>(
    links: ShardLinks<u64>,
    body: impl AsyncFnOnce(ringcast_ring::mesh::BoundLinks<u64>) -> R + Send + 'static,
) -> glommio::ExecutorJoinHandle<R> {
    LocalExecutorBuilder::new(Placement::Unbound)
        .name("test-shard")
        .spawn(move || async move { body(links.bind()).await })
        .expect("glommio executor starts")
}

#[test]
fn parked_shard_sleeps_and_wakes_on_first_message() {
    const IDLE: Duration = Duration::from_millis(400);
    let mut links = mesh::<u64>(2, 8).unwrap().into_iter();
    let (sender, receiver) = (links.next().unwrap(), links.next().unwrap());

    let receiving = spawn_shard(receiver, async |mut links| {
        let cpu_before = thread_cpu_time();
        let wall_before = Instant::now();
        let mut inbox = Vec::new();
        while inbox.is_empty() {
            links.park().await.unwrap();
            links.recv_into(&mut inbox, 8);
        }
        (inbox, thread_cpu_time() - cpu_before, wall_before.elapsed())
    });
    let sending = spawn_shard(sender, async move |mut links| {
        glommio::timer::sleep(IDLE).await;
        links.send(1, 42).unwrap();
    });
    sending.join().unwrap();
    let (inbox, cpu, wall) = receiving.join().unwrap();
    assert_eq!(inbox, [42]);
    assert!(
        wall >= IDLE - Duration::from_millis(50),
        "woke before anything was sent: {wall:?}"
    );
    // A spinning shard would burn ~400 ms of CPU here; a parked one burns next to nothing.
    assert!(
        cpu < Duration::from_millis(60),
        "parked shard used {cpu:?} of CPU in {wall:?} of waiting"
    );
}

#[test]
fn parking_ping_pong_loses_no_wake_up() {
    const ROUNDS: u64 = 2_000;
    let mut links = mesh::<u64>(2, 4).unwrap().into_iter();
    let (a, b) = (links.next().unwrap(), links.next().unwrap());
    let player = |me: usize, serve: bool| {
        async move |mut links: ringcast_ring::mesh::BoundLinks<u64>| {
            let peer = 1 - me;
            let mut expected = 0;
            if serve {
                links.send(peer, 0).unwrap();
                expected = 1;
            }
            let mut inbox = Vec::new();
            while expected < ROUNDS {
                inbox.clear();
                // Every round trip parks: the peer must ring or this hangs (bounded below).
                let parked = glommio::timer::timeout(Duration::from_secs(10), async {
                    links.park().await.map_err(glommio::GlommioError::IoError)
                })
                .await;
                parked.expect("lost wake-up: parked 10 s with a message owed");
                links.recv_into(&mut inbox, 4);
                for &n in &inbox {
                    assert_eq!(n, expected, "shard {me}");
                    if n + 1 < ROUNDS {
                        links.send(peer, n + 1).unwrap();
                    }
                    // The peer answers n + 1 with n + 2.
                    expected += 2;
                }
            }
            expected
        }
    };
    let first = spawn_shard(a, player(0, true));
    let second = spawn_shard(b, player(1, false));
    assert!(first.join().unwrap() >= ROUNDS);
    assert!(second.join().unwrap() >= ROUNDS);
}
