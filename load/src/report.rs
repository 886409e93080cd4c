//! Results of a load run and how they are written: the terminal table, `summary.json`,
//! `samples.csv` (per-interval samples of every configuration) and SVG plots (latency
//! percentiles per configuration, sent vs received per configuration, latency over time).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::stats::{Counts, Latency, MergedSample};

/// One configuration of a scenario (one point of a sweep).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunResult {
    /// Short label for tables and plot axes, e.g. `"M=1000"` or `"R=25 C=8"`.
    pub label: String,
    /// The configuration's parameters by name (members, online, rooms, clients, rate_hz, ...).
    pub params: BTreeMap<String, f64>,
    /// Length of the measured phase.
    pub duration_s: f64,
    /// Messages published.
    pub sent: u64,
    /// Deliveries expected: every published message times its online receivers.
    pub expected: u64,
    pub counts: Counts,
    /// End-to-end delivery latency over the whole measured phase.
    pub latency: Latency,
    /// Latency of the HTTP API calls the scenario made (broadcast), if any.
    pub api_call: Option<Latency>,
    /// Other figures by name: `deliveries_per_s`, `connect_per_s`, `rss_bytes_per_conn`, ...
    pub extra: BTreeMap<String, f64>,
    /// Per-interval samples, merged over workers.
    pub samples: Vec<MergedSample>,
    /// Why the run ended early, if it did (Ctrl-C, a worker failed, time limit).
    pub stopped: Option<String>,
}

/// A whole invocation: one scenario, one or more configurations.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub scenario: String,
    /// The WebSocket URL measured.
    pub target: String,
    /// Start time, RFC 3339 UTC.
    pub started: String,
    /// The command line that produced it.
    pub command: String,
    pub runs: Vec<RunResult>,
}
