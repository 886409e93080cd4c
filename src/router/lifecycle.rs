//! `Lifecycle`: whether the process serves or drains (a SIGTERM or SIGINT came), and how many
//! shards have drained. Besides the congestion flags, the one state shared across cores
//! outside the rings: the flag written once by the signal thread and read by every shard
//! (`/health` answers 503 from the next request on; each shard's ticker starts its drain); the
//! count raised once by each shard, which all wait for before they end together (a shard that
//! ended early would leave its share of the internal listener, and the answers other shards
//! ask of it, unserved).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Debug, Default)]
struct State {
    draining: AtomicBool,
    drained: AtomicUsize,
}

#[derive(Debug, Clone, Default)]
pub struct Lifecycle(Arc<State>);

impl Lifecycle {
    pub fn new() -> Self {
        Self::default()
    }

    /// The process stops serving: from now on every shard drains.
    pub fn drain(&self) {
        // Release: a shard that sees the flag sees what the signal thread did before.
        self.0.draining.store(true, Ordering::Release);
    }

    pub fn draining(&self) -> bool {
        self.0.draining.load(Ordering::Acquire)
    }

    /// A shard finished its drain.
    pub fn drained(&self) {
        self.0.drained.fetch_add(1, Ordering::AcqRel);
    }

    /// How many shards have finished their drain.
    pub fn shards_drained(&self) -> usize {
        self.0.drained.load(Ordering::Acquire)
    }
}
