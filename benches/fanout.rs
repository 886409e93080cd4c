//! Engine fan-out with virtual (socket-less) subscribers: one publication to 1k … 1M
//! subscribers of one channel, on one shard and spread over shards, through the real engine
//! (offset), the encode-once delivery, the ring mesh and hubs (one `Outbound` queue push per
//! subscriber).
//! Reports nanoseconds per delivery: the time from the owner's publish until every shard
//! has queued the frame for every local subscriber, divided by the subscriber count.
//!
//! `cargo bench --bench fanout` (`-- quick` for fewer rounds). Shards are plain threads pinned
//! to the first CPUs of the affinity mask, parking on the mesh doorbells like the server's.

use std::rc::Rc;
use std::thread;
use std::time::{Duration, Instant};

use std::sync::Arc;

use bytes::Bytes;
use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;
use ringcast::clock::Millis;
use ringcast::config::Config;
use ringcast::engine::{ChannelOwner, Engine, PublishInput};
use ringcast::fanout::frames;
use ringcast::fanout::{Hub, Outbound, PendingSubscription, SubscribeReply, SubscribeStep};
use ringcast::router::msg::{Delivery, StreamTop, SubscribeAnswer};
use ringcast::router::owner_of;
use ringcast_ring::mesh::{mesh, BoundLinks};

const CHANNEL: &str = "bench";

enum Msg {
    /// A publication to deliver to the local subscribers of `CHANNEL`.
    Deliver(Arc<Delivery>),
    /// Empty every subscriber queue (between timed rounds).
    Drain,
    /// A shard finished the last request.
    Done,
    Stop,
}

fn allowed_cpus() -> Vec<usize> {
    let set = sched_getaffinity(Pid::from_raw(0)).expect("affinity");
    (0..CpuSet::count())
        .filter(|&c| set.is_set(c).unwrap_or(false))
        .collect()
}

fn pin(cpu: usize) {
    let mut set = CpuSet::new();
    set.set(cpu).expect("cpu");
    sched_setaffinity(Pid::from_raw(0), &set).expect("pin");
}

fn subscribers(hub: &mut Hub, count: usize, first_id: u64) -> Vec<Rc<Outbound>> {
    let now = Millis::now();
    (0..count)
        .map(|i| {
            let conn = Rc::new(Outbound::new(first_id + i as u64, usize::MAX, now, now));
            let sub = PendingSubscription::plain(conn.clone(), SubscribeReply::ServerSide(None));
            // The first subscriber registers the shard; the owner's answer lets it join.
            if let SubscribeStep::AskOwner { name, ticket, .. } = hub.subscribe(CHANNEL, sub) {
                hub.subscribed(SubscribeAnswer {
                    channel: name,
                    registration: true,
                    ticket,
                    result: Ok(StreamTop {
                        epoch: "bench".into(),
                        offset: 0,
                    }),
                    recovery: None,
                });
            }
            conn
        })
        .collect()
}

fn drain(conns: &[Rc<Outbound>]) {
    for conn in conns {
        while conn.pop().is_some() {}
    }
}

fn recv_one(links: &mut BoundLinks<Msg>, inbox: &mut Vec<Msg>) -> Msg {
    // Bounded by the peer, which always answers.
    loop {
        if let Some(msg) = inbox.pop() {
            return msg;
        }
        if links.recv_into(inbox, 16) == 0 {
            links.park_blocking(None).expect("park");
        }
        inbox.reverse();
    }
}

/// A non-owner shard: delivers every frame to its local subscribers and acknowledges.
fn follower(mut links: BoundLinks<Msg>, count: usize, cpu: usize) {
    pin(cpu);
    let mut hub = Hub::default();
    let conns = subscribers(&mut hub, count, 0);
    let mut inbox = Vec::new();
    links.send(0, Msg::Done).expect("ready");
    loop {
        match recv_one(&mut links, &mut inbox) {
            Msg::Deliver(delivery) => {
                let delivered = hub.deliver_remote(&delivery, None);
                debug_assert_eq!(delivered, count);
            }
            Msg::Drain => drain(&conns),
            Msg::Stop => return,
            Msg::Done => unreachable!(),
        }
        links
            .send(0, Msg::Done)
            .expect("ring has room: one message in flight");
    }
}

/// Median nanoseconds per delivery for `total` subscribers spread evenly over `shards`.
fn run(total: usize, shards: usize, rounds: usize, cpus: &[usize]) -> f64 {
    let per_shard = total / shards;
    let mut all = mesh::<Msg>(shards, 8).expect("mesh").into_iter();
    let owner_links = all.next().unwrap();
    let followers: Vec<_> = all
        .enumerate()
        .map(|(i, links)| {
            let cpu = cpus[(i + 1) % cpus.len()];
            thread::spawn(move || follower(links.bind(), per_shard, cpu))
        })
        .collect();
    pin(cpus[0]);
    let mut links = owner_links.bind();
    let mut inbox = Vec::new();
    for _ in 1..shards {
        assert!(matches!(recv_one(&mut links, &mut inbox), Msg::Done));
    }
    assert_eq!(owner_of(CHANNEL, 1), 0);
    let mut owner = ChannelOwner::new(0, 1, Config::default()).expect("owner");
    let mut hub = Hub::default();
    let local = subscribers(&mut hub, per_shard, 0);
    for shard in 0..shards {
        owner
            .subscribe(&CHANNEL.into(), shard, true, None)
            .0
            .expect("plain channel");
    }
    let payload = Bytes::from_static(br#"{"text":"hello, room","user":"42"}"#);
    let input = PublishInput {
        data: &payload,
        info: None,
        tags: None,
        skip_history: false,
        time_ms: 0,
    };
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        let outcome = owner.publish(CHANNEL, input).expect("plain channel");
        // What the owner's shard does: encode the frame once, send it to every shard.
        let interested = outcome.shards;
        let channel = outcome.channel.expect("the channel has subscribers");
        let delivery = Arc::new(frames::delivery(channel, outcome.publication, None));
        for shard in interested.iter().filter(|&s| s != 0) {
            links
                .send(shard, Msg::Deliver(delivery.clone()))
                .expect("room");
        }
        hub.deliver(&delivery, None);
        for _ in 1..shards {
            assert!(matches!(recv_one(&mut links, &mut inbox), Msg::Done));
        }
        samples.push(started.elapsed());
        // Untimed: empty the queues so memory stays flat across rounds.
        for shard in 1..shards {
            links.send(shard, Msg::Drain).expect("room");
        }
        drain(&local);
        for _ in 1..shards {
            assert!(matches!(recv_one(&mut links, &mut inbox), Msg::Done));
        }
    }
    for shard in 1..shards {
        links.send(shard, Msg::Stop).expect("room");
    }
    for f in followers {
        f.join().unwrap();
    }
    samples.sort();
    let median: Duration = samples[samples.len() / 2];
    median.as_nanos() as f64 / (per_shard * shards) as f64
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    let cpus = allowed_cpus();
    let spread = cpus.len().max(2);
    println!(
        "fan-out, virtual subscribers, one channel; median of rounds; {} CPUs\n",
        cpus.len()
    );
    println!("| subscribers | shards | rounds | ns per delivery |");
    println!("|---|---|---|---|");
    for total in [1_000, 10_000, 100_000, 1_000_000] {
        let rounds = match (quick, total) {
            (true, 1_000_000) => 5,
            (true, _) => 20,
            (false, 1_000_000) => 21,
            (false, 100_000) => 51,
            (false, _) => 201,
        };
        for shards in [1, spread] {
            let ns = run(total, shards, rounds, &cpus);
            println!("| {total} | {shards} | {rounds} | {ns:.1} |");
        }
    }
}
