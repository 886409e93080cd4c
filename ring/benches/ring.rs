//! Ring benchmarks: throughput at batch 1 and 32 and cross-thread round trip, ringcast-ring
//! against `rtrb` and `crossbeam_queue::ArrayQueue` in the same run, plus the cost of
//! parking: round trip with both sides parking, and wake-up latency of a parked glommio shard.
//!
//! `cargo bench -p ringcast-ring --features glommio --bench ring` (add `-- quick` for a short
//! run, `-- wake-only` for the glommio wake-up figure alone).
//! The two sides are pinned to the first two CPUs of the process's affinity mask.

use std::hint::black_box;
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use hdrhistogram::Histogram;
use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;
use ringcast_ring::mesh::mesh;

const CAPACITY: usize = 1024;

/// The CPUs this process may run on, read once before any thread is pinned (after a pin,
/// the calling thread's own mask would shrink to one CPU).
static CPUS: OnceLock<Vec<usize>> = OnceLock::new();

fn allowed_cpus() -> Vec<usize> {
    let set = sched_getaffinity(Pid::from_raw(0)).expect("sched_getaffinity");
    (0..CpuSet::count())
        .filter(|&c| set.is_set(c).unwrap_or(false))
        .collect()
}

/// Pins the calling thread to the `index`-th allowed CPU.
fn pin(index: usize) {
    let cpus = CPUS.get().expect("CPUS initialised in main");
    let mut set = CpuSet::new();
    set.set(cpus[index % cpus.len()]).expect("cpu index");
    sched_setaffinity(Pid::from_raw(0), &set).expect("sched_setaffinity");
}

/// One queue implementation as the benchmark drives it.
trait Sender: Send + 'static {
    /// Pushes items `first..first + n` (stopping when full); returns how many were pushed.
    fn send(&mut self, first: u64, n: usize) -> usize;
}
trait Receiver: Send + 'static {
    /// Pops up to `max` items, adding them to `sum`; returns how many were popped.
    fn recv(&mut self, max: usize, sum: &mut u64) -> usize;
}

struct Ours(ringcast_ring::Producer<u64>);
struct OursRx(ringcast_ring::Consumer<u64>);
impl Sender for Ours {
    fn send(&mut self, first: u64, n: usize) -> usize {
        if n == 1 {
            usize::from(self.0.push(first).is_ok())
        } else {
            self.0.push_iter(&mut (first..first + n as u64))
        }
    }
}
impl Receiver for OursRx {
    fn recv(&mut self, max: usize, sum: &mut u64) -> usize {
        if max == 1 {
            return self.0.pop().map(|v| *sum += v).map_or(0, |_| 1);
        }
        let drain = self.0.drain(max);
        let n = drain.len();
        *sum += drain.sum::<u64>();
        n
    }
}

struct Rtrb(rtrb::Producer<u64>);
struct RtrbRx(rtrb::Consumer<u64>);
impl Sender for Rtrb {
    fn send(&mut self, first: u64, n: usize) -> usize {
        if n == 1 {
            return usize::from(self.0.push(first).is_ok());
        }
        let n = self.0.slots().min(n);
        match self.0.write_chunk_uninit(n) {
            Ok(chunk) => chunk.fill_from_iter(first..),
            Err(_) => 0,
        }
    }
}
impl Receiver for RtrbRx {
    fn recv(&mut self, max: usize, sum: &mut u64) -> usize {
        if max == 1 {
            return self.0.pop().map(|v| *sum += v).map_or(0, |_| 1);
        }
        let n = self.0.slots().min(max);
        if n == 0 {
            return 0;
        }
        let chunk = self.0.read_chunk(n).expect("slots checked");
        *sum += chunk.into_iter().sum::<u64>();
        n
    }
}

struct Crossbeam(Arc<ArrayQueue<u64>>);
impl Sender for Crossbeam {
    fn send(&mut self, first: u64, n: usize) -> usize {
        (0..n)
            .take_while(|&i| self.0.push(first + i as u64).is_ok())
            .count()
    }
}
impl Receiver for Crossbeam {
    fn recv(&mut self, max: usize, sum: &mut u64) -> usize {
        (0..max)
            .map_while(|_| self.0.pop())
            .map(|v| *sum += v)
            .count()
    }
}

type Pair = (Box<dyn Sender>, Box<dyn Receiver>);

/// Keeps each endpoint on its own cache lines: two small boxes allocated back to back would
/// otherwise share a line and the benchmark would measure false sharing, not the queue.
#[repr(align(128))]
struct Padded<T>(T);
impl<T: Sender> Sender for Padded<T> {
    fn send(&mut self, first: u64, n: usize) -> usize {
        self.0.send(first, n)
    }
}
impl<T: Receiver> Receiver for Padded<T> {
    fn recv(&mut self, max: usize, sum: &mut u64) -> usize {
        self.0.recv(max, sum)
    }
}

fn make(kind: &str, capacity: usize) -> Pair {
    match kind {
        "ringcast-ring" => {
            let (tx, rx) = ringcast_ring::channel(capacity);
            (Box::new(Padded(Ours(tx))), Box::new(Padded(OursRx(rx))))
        }
        "rtrb" => {
            let (tx, rx) = rtrb::RingBuffer::new(capacity);
            (Box::new(Padded(Rtrb(tx))), Box::new(Padded(RtrbRx(rx))))
        }
        "crossbeam ArrayQueue" => {
            let q = Arc::new(ArrayQueue::new(capacity));
            (
                Box::new(Padded(Crossbeam(q.clone()))),
                Box::new(Padded(Crossbeam(q))),
            )
        }
        _ => unreachable!(),
    }
}

const KINDS: [&str; 3] = ["ringcast-ring", "rtrb", "crossbeam ArrayQueue"];

/// Million items per second moved from one pinned thread to another.
fn throughput(kind: &str, batch: usize, items: u64) -> f64 {
    let (mut tx, mut rx) = make(kind, CAPACITY);
    let producer = thread::spawn(move || {
        pin(0);
        let mut next = 0;
        while next < items {
            let n = batch.min((items - next) as usize);
            next += tx.send(next, n) as u64;
        }
    });
    pin(1);
    let started = Instant::now();
    let (mut got, mut sum) = (0u64, 0u64);
    while got < items {
        got += rx.recv(batch, &mut sum) as u64;
    }
    let elapsed = started.elapsed();
    producer.join().unwrap();
    assert_eq!(
        sum,
        items * (items - 1) / 2,
        "{kind}: lost or duplicated items"
    );
    items as f64 / elapsed.as_secs_f64() / 1e6
}

/// Round trip through two queues with both sides spinning: nanoseconds per round.
fn round_trip_spinning(kind: &str, rounds: u64) -> Histogram<u64> {
    let (mut ping_tx, mut ping_rx) = make(kind, CAPACITY);
    let (mut pong_tx, mut pong_rx) = make(kind, CAPACITY);
    let echo = thread::spawn(move || {
        pin(1);
        let mut sum = 0;
        let mut seen = 0;
        while seen < rounds {
            if ping_rx.recv(1, &mut sum) == 1 {
                while pong_tx.send(seen, 1) == 0 {}
                seen += 1;
            }
        }
    });
    pin(0);
    let mut histogram = Histogram::<u64>::new(3).unwrap();
    let mut sum = 0;
    for i in 0..rounds {
        let started = Instant::now();
        while ping_tx.send(i, 1) == 0 {}
        while pong_rx.recv(1, &mut sum) == 0 {}
        histogram
            .record(started.elapsed().as_nanos() as u64)
            .unwrap();
    }
    echo.join().unwrap();
    black_box(sum);
    histogram
}

/// Round trip over the mesh where both sides park (eventfd + poll) whenever they wait.
fn round_trip_parking(rounds: u64) -> Histogram<u64> {
    let mut links = mesh::<u64>(2, 8).unwrap().into_iter();
    let (a, b) = (links.next().unwrap(), links.next().unwrap());
    let echo = thread::spawn(move || {
        pin(1);
        let mut links = b.bind();
        let mut inbox = Vec::with_capacity(8);
        let mut seen = 0;
        while seen < rounds {
            inbox.clear();
            if links.recv_into(&mut inbox, 8) == 0 {
                links.park_blocking(None).unwrap();
                continue;
            }
            for &v in &inbox {
                links.send(0, v).unwrap();
                seen += 1;
            }
        }
    });
    pin(0);
    let mut links = a.bind();
    let mut histogram = Histogram::<u64>::new(3).unwrap();
    let mut inbox = Vec::with_capacity(8);
    for i in 0..rounds {
        let started = Instant::now();
        links.send(1, i).unwrap();
        inbox.clear();
        while links.recv_into(&mut inbox, 8) == 0 {
            links.park_blocking(None).unwrap();
        }
        histogram
            .record(started.elapsed().as_nanos() as u64)
            .unwrap();
    }
    echo.join().unwrap();
    histogram
}

/// A glommio shard parked on its links; a plain thread sends a timestamp every `gap`. The
/// shard records how long after the send it saw each message: the wake-up latency. The first
/// `WARM_UP` messages are not recorded: a fresh executor's first wake-up lags by ~10 ms (seen
/// on this machine; executor and io_uring start-up), which is a start-up cost, not a park cost.
fn glommio_wake_latency(samples: u64, gap: Duration) -> Histogram<u64> {
    const WARM_UP: u64 = 20;
    let mut links = mesh::<u64>(2, 1024).unwrap().into_iter();
    let (sender, shard) = (links.next().unwrap(), links.next().unwrap());
    let base = Instant::now();
    let handle = glommio::LocalExecutorBuilder::new(glommio::Placement::Fixed(1))
        .spawn(move || async move {
            let mut links = shard.bind();
            let mut histogram = Histogram::<u64>::new(3).unwrap();
            let mut inbox = Vec::with_capacity(8);
            let mut seen = 0;
            while seen < WARM_UP + samples {
                inbox.clear();
                if links.recv_into(&mut inbox, 8) == 0 {
                    links.park().await.unwrap();
                    continue;
                }
                let now = base.elapsed().as_nanos() as u64;
                for &sent in &inbox {
                    seen += 1;
                    if seen > WARM_UP {
                        histogram.record(now.saturating_sub(sent)).unwrap();
                    }
                }
            }
            histogram
        })
        .unwrap();
    pin(0);
    let mut links = sender.bind();
    for _ in 0..WARM_UP + samples {
        thread::sleep(gap);
        let mut item = base.elapsed().as_nanos() as u64;
        // The ring holds 1024 messages; it can only fill during the start-up lag.
        while let Err(full) = links.send(1, item) {
            item = full.0;
            thread::sleep(gap);
        }
    }
    handle.join().unwrap()
}

fn median_of<F: FnMut() -> f64>(runs: usize, mut f: F) -> f64 {
    let mut v: Vec<f64> = (0..runs).map(|_| f()).collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn print_histogram(label: &str, h: &Histogram<u64>) {
    println!(
        "| {label} | {} | {} | {} | {} |",
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.len()
    );
}

fn main() {
    CPUS.set(allowed_cpus()).expect("set once");
    let quick = std::env::args().any(|a| a == "quick");
    let (items, runs, rounds, wakes) = if quick {
        (2_000_000, 1, 20_000, 200)
    } else {
        (50_000_000, 5, 500_000, 2_000)
    };
    let wake_only = std::env::args().any(|a| a == "wake-only");
    if !wake_only {
        queue_benchmarks(items, runs, rounds);
    }
    wake_benchmark(wakes);
}

fn queue_benchmarks(items: u64, runs: usize, rounds: u64) {
    println!("ring benchmarks: {items} items per throughput run, median of {runs} runs, capacity {CAPACITY}\n");
    println!("| queue | batch 1 (M items/s) | batch 32 (M items/s) |");
    println!("|---|---|---|");
    for kind in KINDS {
        let one = median_of(runs, || throughput(kind, 1, items));
        let batch = median_of(runs, || throughput(kind, 32, items));
        println!("| {kind} | {one:.1} | {batch:.1} |");
    }
    println!("\nround trip (ns): ping over one ring, pong over another, {rounds} rounds\n");
    println!("| queue, mode | p50 | p99 | p99.9 | samples |");
    println!("|---|---|---|---|---|");
    for kind in KINDS {
        print_histogram(
            &format!("{kind}, spinning"),
            &round_trip_spinning(kind, rounds),
        );
    }
    print_histogram(
        "ringcast-ring mesh, both sides parking (eventfd)",
        &round_trip_parking(rounds / 10),
    );
}

fn wake_benchmark(wakes: u64) {
    println!("\nwake-up latency of a parked glommio shard (ns), one message every 1 ms\n");
    println!("| mode | p50 | p99 | p99.9 | samples |");
    println!("|---|---|---|---|---|");
    print_histogram(
        "glommio park → first message seen",
        &glommio_wake_latency(wakes, Duration::from_millis(1)),
    );
}
