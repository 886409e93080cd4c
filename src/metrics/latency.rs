//! `Latencies`: how long client commands and server API methods took, per shard, by method:
//! a count and a sum since the start, and an hdrhistogram of the recent past for the
//! quantiles. At a scrape every shard's are merged (`merge`: histograms add exactly, unlike
//! quantiles) and rendered as the summaries Centrifugo exposes
//! (`centrifugo_client_command_duration_seconds`, `centrifugo_api_command_duration_seconds`),
//! so its dashboards read them unchanged.
//!
//! The recent past is two windows of `LATENCY_WINDOW_MS`: quantiles cover the current one and
//! the one before (one to two windows), as a Go summary's sliding age does. A leaf: imports
//! `limits`.

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::limits::{LATENCY_MAX_US, LATENCY_SIGNIFICANT_DIGITS, LATENCY_WINDOW_MS};

/// What is timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timed {
    /// A client command, on the connection's shard.
    ClientCommand,
    /// A server API method, from its dispatch to its answer.
    ApiMethod,
}

/// The quantiles exposed, as Centrifugo's summaries have them.
pub const QUANTILES: [f64; 3] = [0.5, 0.99, 0.999];

/// One method's timings.
#[derive(Clone)]
pub struct MethodTimings {
    count: u64,
    sum_us: u64,
    /// The current window and the one before it.
    windows: [Histogram<u32>; 2],
    current: usize,
    /// When the current window began (milliseconds of the caller's clock).
    window_began_ms: u64,
}

impl MethodTimings {
    fn new(now_ms: u64) -> Self {
        let histogram = || {
            Histogram::new_with_bounds(1, LATENCY_MAX_US, LATENCY_SIGNIFICANT_DIGITS)
                .expect("constant bounds are valid")
        };
        MethodTimings {
            count: 0,
            sum_us: 0,
            windows: [histogram(), histogram()],
            current: 0,
            window_began_ms: now_ms,
        }
    }

    /// Moves to a new window when the current one is over; both are cleared after a gap of
    /// two windows.
    fn rotate(&mut self, now_ms: u64) {
        let age = now_ms.saturating_sub(self.window_began_ms);
        if age < LATENCY_WINDOW_MS {
            return;
        }
        self.current ^= 1;
        self.windows[self.current].reset();
        if age >= 2 * LATENCY_WINDOW_MS {
            self.windows[self.current ^ 1].reset();
        }
        self.window_began_ms = now_ms;
    }

    fn record(&mut self, micros: u64, now_ms: u64) {
        self.rotate(now_ms);
        self.count += 1;
        self.sum_us += micros;
        // Clamped into the histogram's range: a longer call counts as the longest.
        let value = micros.clamp(1, LATENCY_MAX_US);
        self.windows[self.current].saturating_record(value);
    }

    /// Adds `other`'s counts (another shard's) to these.
    fn merge(&mut self, other: &MethodTimings) {
        self.count += other.count;
        self.sum_us += other.sum_us;
        for window in &other.windows {
            // Same bounds on every shard: adding cannot fail.
            let _ = self.windows[self.current].add(window);
        }
    }

    /// The recent quantiles `QUANTILES`, in seconds (0 when nothing was recorded lately).
    fn quantiles(&self) -> [f64; QUANTILES.len()] {
        let mut recent = self.windows[0].clone();
        let _ = recent.add(&self.windows[1]);
        QUANTILES.map(|q| {
            if recent.is_empty() {
                0.0
            } else {
                recent.value_at_quantile(q) as f64 / 1e6
            }
        })
    }
}

/// Every method's timings on one shard (or merged over the shards).
#[derive(Clone, Default)]
pub struct Latencies {
    client: Vec<(&'static str, MethodTimings)>,
    api: Vec<(&'static str, MethodTimings)>,
}

impl std::fmt::Debug for Latencies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let counts = |list: &[(&'static str, MethodTimings)]| -> Vec<(&'static str, u64)> {
            list.iter().map(|(m, t)| (*m, t.count)).collect()
        };
        f.debug_struct("Latencies")
            .field("client", &counts(&self.client))
            .field("api", &counts(&self.api))
            .finish()
    }
}

impl Latencies {
    /// Records that `method` took `elapsed`, at `now_ms`.
    pub fn record(&mut self, timed: Timed, method: &'static str, elapsed: Duration, now_ms: u64) {
        let list = match timed {
            Timed::ClientCommand => &mut self.client,
            Timed::ApiMethod => &mut self.api,
        };
        // Linear: a handful of methods, each in the list once.
        let timings = match list.iter().position(|(m, _)| *m == method) {
            Some(i) => &mut list[i].1,
            None => {
                list.push((method, MethodTimings::new(now_ms)));
                &mut list.last_mut().expect("just pushed").1
            }
        };
        timings.record(elapsed.as_micros() as u64, now_ms);
    }

    /// These timings as they stand at `now_ms` (windows past their time rotated out), to
    /// send to the shard rendering a scrape.
    pub fn snapshot(&mut self, now_ms: u64) -> Latencies {
        for (_, timings) in self.client.iter_mut().chain(self.api.iter_mut()) {
            timings.rotate(now_ms);
        }
        self.clone()
    }

    /// Adds another shard's timings.
    pub fn merge(&mut self, other: &Latencies) {
        for (mine, theirs) in [
            (&mut self.client, &other.client),
            (&mut self.api, &other.api),
        ] {
            for (method, timings) in theirs {
                match mine.iter_mut().find(|(m, _)| m == method) {
                    Some((_, t)) => t.merge(timings),
                    None => mine.push((method, timings.clone())),
                }
            }
        }
    }

    /// The two summaries in the Prometheus text format, methods in name order.
    pub fn render(&self, text: &mut String) {
        let summaries = [
            (
                "centrifugo_client_command_duration_seconds",
                "Client command duration summary (on the connection's shard).",
                "",
                &self.client,
            ),
            (
                "centrifugo_api_command_duration_seconds",
                "Duration of API per command.",
                "protocol=\"http\",",
                &self.api,
            ),
        ];
        for (name, help, labels, list) in summaries {
            let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} summary");
            let mut methods: Vec<&(&'static str, MethodTimings)> = list.iter().collect();
            methods.sort_by_key(|(m, _)| *m);
            for (method, timings) in methods {
                for (q, value) in QUANTILES.iter().zip(timings.quantiles()) {
                    let _ = writeln!(
                        text,
                        "{name}{{{labels}method=\"{method}\",quantile=\"{q}\"}} {value}"
                    );
                }
                let _ = writeln!(
                    text,
                    "{name}_sum{{{labels}method=\"{method}\"}} {}\n{name}_count{{{labels}method=\"{method}\"}} {}",
                    timings.sum_us as f64 / 1e6,
                    timings.count
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_shards_give_quantiles_over_all_their_calls() {
        let mut a = Latencies::default();
        let mut b = Latencies::default();
        for _ in 0..90 {
            a.record(Timed::ApiMethod, "publish", Duration::from_micros(100), 0);
        }
        for _ in 0..10 {
            b.record(Timed::ApiMethod, "publish", Duration::from_millis(50), 0);
        }
        let mut all = a.snapshot(1);
        all.merge(&b.snapshot(1));
        let mut text = String::new();
        all.render(&mut text);
        assert!(
            text.contains("method=\"publish\",quantile=\"0.5\"} 0.0001"),
            "{text}"
        );
        // The 99th percentile is one of b's calls: only the merge of histograms sees it.
        assert!(
            text.contains("method=\"publish\",quantile=\"0.99\"} 0.05"),
            "{text}"
        );
        assert!(
            text.contains("_count{protocol=\"http\",method=\"publish\"} 100"),
            "{text}"
        );
    }

    #[test]
    fn old_windows_rotate_out_of_the_quantiles_but_not_the_count() {
        let mut l = Latencies::default();
        l.record(
            Timed::ClientCommand,
            "subscribe",
            Duration::from_millis(5),
            0,
        );
        let later = 2 * LATENCY_WINDOW_MS + 1;
        let snapshot = l.snapshot(later);
        let mut text = String::new();
        snapshot.render(&mut text);
        assert!(
            text.contains("method=\"subscribe\",quantile=\"0.5\"} 0\n"),
            "{text}"
        );
        assert!(text.contains("_count{method=\"subscribe\"} 1\n"), "{text}");
    }
}
