//! Bounded multi-thread stress: every item arrives exactly once and in order, for several
//! capacities and batch sizes, through a bare ring and through a parking mesh.
#![cfg(not(loom))]

use std::thread;
use std::time::{Duration, Instant};

use ringcast_ring::mesh::mesh;
use ringcast_ring::spsc::channel;

/// Items per configuration: enough for millions of index hand-overs across the whole test,
/// few enough to stay well under a second per configuration in a debug build.
const ITEMS: u64 = 200_000;
/// A run that takes longer than this is hung, not slow.
const DEADLINE: Duration = Duration::from_secs(60);

fn run_pair(capacity: usize, batch: usize) {
    let (mut tx, mut rx) = channel::<u64>(capacity);
    let started = Instant::now();
    let producer = thread::spawn(move || {
        let mut next = 0u64;
        while next < ITEMS {
            let end = (next + batch as u64).min(ITEMS);
            let mut items = next..end;
            let pushed = if batch == 1 {
                usize::from(tx.push(next).is_ok())
            } else {
                tx.push_iter(&mut items)
            };
            next += pushed as u64;
            if pushed == 0 {
                assert!(started.elapsed() < DEADLINE, "producer stuck");
                thread::yield_now();
            }
        }
    });
    let mut expected = 0u64;
    let mut buffer = Vec::with_capacity(batch);
    while expected < ITEMS {
        buffer.clear();
        if rx.pop_into(&mut buffer, batch) == 0 {
            assert!(started.elapsed() < DEADLINE, "consumer stuck at {expected}");
            thread::yield_now();
            continue;
        }
        for &item in &buffer {
            assert_eq!(
                item, expected,
                "capacity {capacity} batch {batch}: out of order or lost"
            );
            expected += 1;
        }
    }
    producer.join().unwrap();
    assert_eq!(
        rx.pop(),
        None,
        "capacity {capacity} batch {batch}: duplicate after the end"
    );
}

#[test]
fn ring_delivers_exactly_once_in_order() {
    for capacity in [1, 2, 8, 64, 1024] {
        for batch in [1, 7, 32] {
            run_pair(capacity, batch);
        }
    }
}

/// Four shards on four threads, each sending `PER_PEER` sequenced items to every other shard
/// and parking whenever it has nothing to read. Each receiver checks per-sender order.
#[test]
fn mesh_with_parking_delivers_everything_in_order() {
    const SHARDS: usize = 4;
    const PER_PEER: u64 = 20_000;
    let links = mesh::<(usize, u64)>(SHARDS, 16).unwrap();
    let started = Instant::now();
    let threads: Vec<_> = links
        .into_iter()
        .map(|unbound| {
            thread::spawn(move || {
                let mut links = unbound.bind();
                let me = links.shard();
                let mut next_to_send = [0u64; SHARDS];
                let mut next_expected = [0u64; SHARDS];
                let mut received = 0u64;
                let mut inbox = Vec::with_capacity(64);
                let total_in = PER_PEER * (SHARDS as u64 - 1);
                while received < total_in
                    || next_to_send
                        .iter()
                        .enumerate()
                        .any(|(to, &n)| to != me && n < PER_PEER)
                {
                    assert!(started.elapsed() < DEADLINE, "shard {me} stuck");
                    let mut progressed = false;
                    for to in (0..SHARDS).filter(|&to| to != me) {
                        let start = next_to_send[to];
                        let end = (start + 5).min(PER_PEER);
                        let sent = links.send_iter(to, &mut (start..end).map(|seq| (me, seq)));
                        next_to_send[to] += sent as u64;
                        progressed |= sent > 0;
                    }
                    inbox.clear();
                    links.recv_into(&mut inbox, 64);
                    for &(from, seq) in &inbox {
                        assert_eq!(seq, next_expected[from], "shard {me} from {from}");
                        next_expected[from] += 1;
                        received += 1;
                    }
                    progressed |= !inbox.is_empty();
                    let sending_done =
                        (0..SHARDS).all(|to| to == me || next_to_send[to] == PER_PEER);
                    if !progressed && sending_done {
                        // Only a shard with nothing left to send sleeps; a peer still owes it
                        // items, so a sleep that runs to the timeout is a lost wake-up.
                        let woken = links.park_blocking(Some(Duration::from_secs(10))).unwrap();
                        assert!(
                            woken,
                            "shard {me}: lost wake-up (slept 10 s with items owed)"
                        );
                    } else if !progressed {
                        thread::yield_now();
                    }
                }
                received
            })
        })
        .collect();
    for handle in threads {
        assert_eq!(handle.join().unwrap(), PER_PEER * (SHARDS as u64 - 1));
    }
}
