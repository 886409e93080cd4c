//! Delivery accounting: what every receiver records (end-to-end latency into an
//! hdrhistogram, and per stream the received / lost / duplicated / out-of-order counts), the
//! per-interval samples a worker reports, and how the coordinator merges workers' results.
//!
//! A stream is one publisher's messages as one connection receives them on one channel;
//! each message carries the publisher's sequence number (from 1) and its send time.

use std::collections::{BTreeSet, HashMap};

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Latencies are recorded in microseconds, up to 10 minutes, 3 significant digits.
pub const LATENCY_MAX_US: u64 = 600_000_000;

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("valid histogram bounds")
}

/// Gaps remembered per stream to tell a late (out-of-order) message from a duplicate.
const MISSING_REMEMBERED: usize = 4096;

/// Publishers below this index are tracked in a per-receiver array (one cache line holds
/// four streams of one receiver, and a receiver's messages arrive together); others in a map.
const DENSE_PUBLISHERS: u32 = 1024;

/// One stream's position: the next sequence number expected and the recent gaps (boxed:
/// streams rarely have any, and a small tracker keeps a receiver's streams in few lines).
#[derive(Debug)]
struct StreamTracker {
    next: u64,
    // Boxed on purpose: 8 bytes in the tracker where the set itself takes 24.
    #[allow(clippy::box_collection)]
    missing: Option<Box<BTreeSet<u64>>>,
}

impl Default for StreamTracker {
    fn default() -> Self {
        StreamTracker {
            next: 1,
            missing: None,
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Messages received once each (duplicates not counted).
    pub received: u64,
    /// Sequence numbers skipped and not (yet) seen.
    pub lost: u64,
    pub duplicated: u64,
    /// Arrived after a later message of the same stream.
    pub out_of_order: u64,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, o: Counts) {
        self.received += o.received;
        self.lost += o.lost;
        self.duplicated += o.duplicated;
        self.out_of_order += o.out_of_order;
    }
}

/// What one receiving process records.
pub struct Recorder {
    /// From the start of the measured phase to the last `take_interval`.
    taken: Histogram<u64>,
    /// Since the last `take_interval`.
    pub interval: Histogram<u64>,
    pub counts: Counts,
    interval_counts: Counts,
    /// By receiver, then publisher (below `DENSE_PUBLISHERS`).
    dense: Vec<Vec<StreamTracker>>,
    /// The other streams, by `(receiver, publisher)` packed into one u64.
    sparse: HashMap<u64, StreamTracker>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            taken: new_histogram(),
            interval: new_histogram(),
            counts: Counts::default(),
            interval_counts: Counts::default(),
            dense: Vec::new(),
            sparse: HashMap::default(),
        }
    }
}

impl Recorder {
    /// Records one received message of stream `(receiver, publisher)` with sequence `seq`
    /// (from 1) and end-to-end latency `latency_us`.
    pub fn record(&mut self, receiver: u32, publisher: u32, seq: u64, latency_us: u64) {
        let stream = if publisher < DENSE_PUBLISHERS {
            let receiver = receiver as usize;
            if self.dense.len() <= receiver {
                self.dense.resize_with(receiver + 1, Vec::new);
            }
            let streams = &mut self.dense[receiver];
            if streams.len() <= publisher as usize {
                streams.resize_with(publisher as usize + 1, StreamTracker::default);
            }
            &mut streams[publisher as usize]
        } else {
            self.sparse
                .entry(u64::from(receiver) << 32 | u64::from(publisher))
                .or_default()
        };
        let mut delta = Counts::default();
        if seq == stream.next {
            stream.next += 1;
            delta.received = 1;
        } else if seq > stream.next {
            // A gap: the skipped ones are lost unless they turn up later.
            let skipped = seq - stream.next;
            delta.lost = skipped;
            // Only the most recent gaps are remembered (a huge jump must not loop for ages).
            let from = stream
                .next
                .max(seq.saturating_sub(MISSING_REMEMBERED as u64));
            let remembered = stream.missing.get_or_insert_with(Box::default);
            for missing in from..seq {
                if remembered.len() >= MISSING_REMEMBERED {
                    remembered.pop_first();
                }
                remembered.insert(missing);
            }
            stream.next = seq + 1;
            delta.received = 1;
        } else if stream.missing.as_mut().is_some_and(|m| m.remove(&seq)) {
            // Late, not lost.
            delta.received = 1;
            delta.out_of_order = 1;
            self.counts.lost -= 1;
            self.interval_counts.lost = self.interval_counts.lost.saturating_sub(1);
        } else {
            delta.duplicated = 1;
        }
        if delta.received == 1 {
            // Into the interval only; `take_interval` adds it to the rest (once a second,
            // not once per message: the receivers' CPU is taken from the server under test).
            self.interval
                .saturating_record(latency_us.clamp(1, LATENCY_MAX_US));
        }
        self.counts += delta;
        self.interval_counts += delta;
    }

    /// The counts and latencies since the last call, and a fresh interval.
    pub fn take_interval(&mut self) -> (Counts, Histogram<u64>) {
        let counts = std::mem::take(&mut self.interval_counts);
        let histogram = std::mem::replace(&mut self.interval, new_histogram());
        // Same bounds, so adding cannot fail.
        let _ = self.taken.add(&histogram);
        (counts, histogram)
    }

    /// Latencies since the start of the measured phase.
    pub fn total(&self) -> Histogram<u64> {
        let mut total = self.taken.clone();
        // Same bounds, so adding cannot fail.
        let _ = total.add(&self.interval);
        total
    }
}

/// A histogram as text (V2 serialization, base64) for the worker → coordinator pipe.
pub fn encode_histogram(histogram: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    V2Serializer::new()
        .serialize(histogram, &mut bytes)
        .expect("serializing into a Vec cannot fail");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn decode_histogram(text: &str) -> Result<Histogram<u64>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("histogram is not base64: {e}"))?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| format!("histogram does not decode: {e:?}"))
}

/// One interval of one worker (or, merged, of the whole run).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the measured phase started, at the end of the interval.
    pub t: f64,
    /// Messages this worker's publishers sent in the interval.
    pub sent: u64,
    pub counts: Counts,
    /// Latencies of the interval (`encode_histogram`).
    pub histogram: String,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn of(histogram: &Histogram<u64>) -> Latency {
        if histogram.is_empty() {
            return Latency::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            count: histogram.len(),
            mean_ms: histogram.mean() / 1000.0,
            p50_ms: ms(histogram.value_at_quantile(0.5)),
            p90_ms: ms(histogram.value_at_quantile(0.9)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            p999_ms: ms(histogram.value_at_quantile(0.999)),
            max_ms: ms(histogram.max()),
        }
    }
}

/// Merges workers' samples into one series: intervals of the same index summed.
pub fn merge_samples(per_worker: &[Vec<Sample>]) -> Result<Vec<MergedSample>, String> {
    let intervals = per_worker.iter().map(Vec::len).max().unwrap_or(0);
    let mut merged = Vec::with_capacity(intervals);
    for i in 0..intervals {
        let mut histogram = new_histogram();
        let mut sample = MergedSample::default();
        for samples in per_worker {
            let Some(s) = samples.get(i) else { continue };
            sample.t = sample.t.max(s.t);
            sample.sent += s.sent;
            sample.counts += s.counts;
            histogram
                .add(decode_histogram(&s.histogram)?)
                .map_err(|e| format!("histograms do not merge: {e:?}"))?;
        }
        sample.latency = Latency::of(&histogram);
        merged.push(sample);
    }
    Ok(merged)
}

/// One interval of the whole run.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct MergedSample {
    pub t: f64,
    pub sent: u64,
    pub counts: Counts,
    pub latency: Latency,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_gaps_late_and_duplicates_are_told_apart() {
        let mut r = Recorder::default();
        for seq in [1, 2, 3] {
            r.record(7, 1, seq, 1_000);
        }
        assert_eq!(r.counts.received, 3);
        r.record(7, 1, 6, 2_000); // 4 and 5 missing
        assert_eq!((r.counts.received, r.counts.lost), (4, 2));
        r.record(7, 1, 4, 3_000); // late
        assert_eq!(
            (r.counts.received, r.counts.lost, r.counts.out_of_order),
            (5, 1, 1)
        );
        r.record(7, 1, 4, 3_000); // again: a duplicate
        r.record(7, 1, 2, 3_000); // a duplicate of an in-order one
        assert_eq!(r.counts.duplicated, 2);
        // Another receiver of the same publisher is its own stream.
        r.record(8, 1, 1, 500);
        assert_eq!(r.counts.received, 6);
        assert_eq!(r.total().len(), 6, "only first receptions are timed");
        assert!(
            r.total().equivalent(r.total().max(), 3_000),
            "max is 3 ms within precision"
        );
    }

    #[test]
    fn far_publishers_are_tracked_like_near_ones() {
        let mut r = Recorder::default();
        for publisher in [3, DENSE_PUBLISHERS + 7] {
            let before = r.counts;
            r.record(2, publisher, 1, 10);
            r.record(2, publisher, 3, 10);
            r.record(2, publisher, 2, 10); // late
            r.record(2, publisher, 2, 10); // duplicate
            assert_eq!(r.counts.received - before.received, 3);
            assert_eq!(r.counts.lost - before.lost, 0);
            assert_eq!(r.counts.out_of_order - before.out_of_order, 1);
            assert_eq!(r.counts.duplicated - before.duplicated, 1);
        }
    }

    #[test]
    fn a_huge_jump_is_one_gap_not_a_long_loop() {
        let mut r = Recorder::default();
        r.record(1, 1, u64::MAX / 2, 10);
        assert_eq!(r.counts.lost, u64::MAX / 2 - 1);
        assert_eq!(r.counts.received, 1);
    }

    #[test]
    fn intervals_reset_and_merge_across_workers() {
        let mut a = Recorder::default();
        let mut b = Recorder::default();
        a.record(1, 1, 1, 1_000);
        b.record(1, 1, 1, 9_000);
        b.record(1, 1, 3, 9_000);
        let sample = |r: &mut Recorder, t, sent| {
            let (counts, histogram) = r.take_interval();
            Sample {
                t,
                sent,
                counts,
                histogram: encode_histogram(&histogram),
            }
        };
        let first = vec![vec![sample(&mut a, 1.0, 5)], vec![sample(&mut b, 1.02, 7)]];
        let merged = merge_samples(&first).unwrap();
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].sent, 12);
        assert_eq!(merged[0].counts.received, 3);
        assert_eq!(merged[0].counts.lost, 1);
        assert_eq!(merged[0].latency.count, 3);
        assert!((merged[0].latency.max_ms - 9.0).abs() < 0.01);
        assert!((merged[0].t - 1.02).abs() < 1e-9);
        let (counts, histogram) = a.take_interval();
        assert_eq!((counts.received, histogram.len()), (0, 0), "fresh interval");
        assert_eq!(a.total().len(), 1, "totals are kept");
    }

    #[test]
    fn histograms_survive_the_pipe() {
        let mut h = new_histogram();
        for v in [1, 10, 100, 1_000, 123_456] {
            h.record(v).unwrap();
        }
        let back = decode_histogram(&encode_histogram(&h)).unwrap();
        assert_eq!(back.len(), 5);
        assert_eq!(back.max(), h.max());
        assert!(decode_histogram("not base64!").is_err());
    }
}
