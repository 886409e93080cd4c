//! `Congestion`: which shards hold a long outgoing backlog. The one piece of cross-core shared
//! memory outside the rings (DESIGN invariant 1 names it as the exception): each shard writes
//! only its own flag; sources of new traffic on every shard (connections reading commands,
//! API calls) read all of them and hold back while any is set, so a slow shard slows the whole
//! node's intake instead of letting some shard's backlog grow without bound. Shard-internal
//! forwarding never waits on it (no deadlock).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct Congestion(Arc<[AtomicBool]>);

impl Congestion {
    pub fn new(shards: usize) -> Self {
        Congestion((0..shards).map(|_| AtomicBool::new(false)).collect())
    }

    /// True while any shard is congested. A flag is pacing advice, not a synchronisation
    /// point: Relaxed suffices, a stale read only delays a source by one poll.
    pub fn any(&self) -> bool {
        self.0.iter().any(|f| f.load(Ordering::Relaxed))
    }

    /// Sets `shard`'s flag (called by that shard only). Relaxed: see `any`.
    pub fn set(&self, shard: usize, congested: bool) {
        self.0[shard].store(congested, Ordering::Relaxed);
    }
}
