//! `Lifecycle`: whether the process serves or drains (a SIGTERM or SIGINT came). Besides the
//! congestion flags, the one state shared across cores outside the rings: written once by the
//! signal thread, read by every shard (`/health` answers 503 from the next request on; each
//! shard's ticker starts its drain).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Debug, Clone, Default)]
pub struct Lifecycle(Arc<AtomicBool>);

impl Lifecycle {
    pub fn new() -> Self {
        Self::default()
    }

    /// The process stops serving: from now on every shard drains.
    pub fn drain(&self) {
        // Release: a shard that sees the flag sees what the signal thread did before.
        self.0.store(true, Ordering::Release);
    }

    pub fn draining(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}
