//! loom models of the ring and of the park/wake handshake. Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p ringcast-ring --test loom --release`.
//! loom explores every interleaving (and every weak-memory outcome it models) of the threads
//! below; a data race on a slot, a lost item or a lost wake-up fails the model.
#![cfg(loom)]

use loom::thread;
use ringcast_ring::park::{LastRung, ParkFlag};
use ringcast_ring::spsc::channel;

#[test]
fn push_pop_transfers_in_order_across_wrap() {
    loom::model(|| {
        let (mut tx, mut rx) = channel::<u32>(2);
        let producer = thread::spawn(move || {
            for i in 0..3 {
                let mut item = i;
                loop {
                    match tx.push(item) {
                        Ok(()) => break,
                        Err(full) => {
                            item = full.0;
                            thread::yield_now();
                        }
                    }
                }
            }
        });
        let mut expected = 0;
        while expected < 3 {
            match rx.pop() {
                Some(v) => {
                    assert_eq!(v, expected);
                    expected += 1;
                }
                None => thread::yield_now(),
            }
        }
        producer.join().unwrap();
        assert_eq!(rx.pop(), None);
    });
}

#[test]
fn batches_transfer_in_order() {
    loom::model(|| {
        let (mut tx, mut rx) = channel::<u32>(2);
        let producer = thread::spawn(move || {
            let mut items = 0..3u32;
            while items.len() > 0 {
                if tx.push_iter(&mut items) == 0 {
                    thread::yield_now();
                }
            }
        });
        let mut got = Vec::new();
        while got.len() < 3 {
            if rx.pop_into(&mut got, 2) == 0 {
                thread::yield_now();
            }
        }
        producer.join().unwrap();
        assert_eq!(got, [0, 1, 2]);
    });
}

#[test]
fn undelivered_items_drop_once_whichever_end_goes_last() {
    loom::model(|| {
        let (mut tx, rx) = channel::<loom::sync::Arc<()>>(2);
        let token = loom::sync::Arc::new(());
        tx.push(token.clone()).unwrap();
        let consumer = thread::spawn(move || drop(rx));
        drop(tx);
        consumer.join().unwrap();
        assert_eq!(loom::sync::Arc::strong_count(&token), 1);
    });
}

/// The consumer parks with the `ParkFlag` protocol; the producer pushes one item and rings
/// (here: unparks the thread) only if `should_ring` says so. If a wake-up could be lost, some
/// interleaving leaves the consumer parked forever and loom reports a deadlock.
#[test]
fn park_and_wake_never_lose_a_wake_up() {
    loom::model(|| {
        let flag = loom::sync::Arc::new(ParkFlag::new());
        let (mut tx, mut rx) = channel::<u32>(1);
        let consumer_flag = flag.clone();
        let consumer = thread::spawn(move || loop {
            if let Some(v) = rx.pop() {
                assert_eq!(v, 7);
                return;
            }
            consumer_flag.announce();
            if !rx.is_empty() {
                consumer_flag.retract();
                continue;
            }
            thread::park();
            consumer_flag.retract();
        });
        let consumer_thread = consumer.thread().clone();
        tx.push(7).unwrap();
        if flag.should_ring(&mut LastRung::default()) {
            consumer_thread.unpark();
        }
        consumer.join().unwrap();
    });
}

/// Two producers, one parked consumer: exactly-one-ringer does not starve the other item.
#[test]
fn two_producers_wake_one_consumer() {
    loom::model(|| {
        let flag = loom::sync::Arc::new(ParkFlag::new());
        let (mut tx_a, mut rx_a) = channel::<u32>(1);
        let (mut tx_b, mut rx_b) = channel::<u32>(1);
        let consumer_flag = flag.clone();
        let consumer = thread::spawn(move || {
            let mut got = 0;
            while got < 2 {
                let mut found = false;
                for rx in [&mut rx_a, &mut rx_b] {
                    if rx.pop().is_some() {
                        got += 1;
                        found = true;
                    }
                }
                if found {
                    continue;
                }
                consumer_flag.announce();
                if !rx_a.is_empty() || !rx_b.is_empty() {
                    consumer_flag.retract();
                    continue;
                }
                thread::park();
                consumer_flag.retract();
            }
        });
        let consumer_thread = consumer.thread().clone();
        let flag_b = flag.clone();
        let thread_b = consumer_thread.clone();
        let producer_b = thread::spawn(move || {
            tx_b.push(2).unwrap();
            if flag_b.should_ring(&mut LastRung::default()) {
                thread_b.unpark();
            }
        });
        tx_a.push(1).unwrap();
        if flag.should_ring(&mut LastRung::default()) {
            consumer_thread.unpark();
        }
        producer_b.join().unwrap();
        consumer.join().unwrap();
    });
}

/// One producer, two park generations: its memory of the last generation it rang for must
/// not suppress the ring the second park needs.
#[test]
fn producer_rings_again_for_a_new_park() {
    loom::model(|| {
        let flag = loom::sync::Arc::new(ParkFlag::new());
        let (mut tx, mut rx) = channel::<u32>(1);
        let consumer_flag = flag.clone();
        let consumer = thread::spawn(move || {
            let mut got = 0;
            while got < 2 {
                if rx.pop().is_some() {
                    got += 1;
                    continue;
                }
                consumer_flag.announce();
                if !rx.is_empty() {
                    consumer_flag.retract();
                    continue;
                }
                thread::park();
                consumer_flag.retract();
            }
        });
        let consumer_thread = consumer.thread().clone();
        let mut last = LastRung::default();
        for item in 0..2 {
            while tx.push(item).is_err() {
                thread::yield_now();
            }
            if flag.should_ring(&mut last) {
                consumer_thread.unpark();
            }
        }
        consumer.join().unwrap();
    });
}
