//! The shard mesh: for N shards, one SPSC ring for every ordered pair (i, j) with i ≠ j, and one
//! `Doorbell` per shard, built once at start. Shard i gets a sender to every other shard and a
//! receiver from every other shard; there is no ring from a shard to itself, so a self-send
//! cannot be expressed (the caller handles the local case without a ring).
//!
//! Typestate: `mesh()` returns one `ShardLinks` per shard. They are `Send`, so the start-up
//! code can move each to its shard's thread; there the shard calls `bind()` and gets
//! `BoundLinks`, which is `!Send`, so an endpoint cannot leave the thread that owns it.

use std::io;
use std::marker::PhantomData;
use std::time::Duration;

use crate::doorbell::Doorbell;
use crate::park::LastRung;
use crate::spsc::{self, Consumer, Full, Producer};
use crate::sync::Arc;

/// Most shards a mesh may have: N² rings are built up front, and a shard visits N-1 rings
/// whenever it drains or parks.
pub const SHARDS_MAX: usize = 256;

/// Builds the mesh for `shards` shards (1..=SHARDS_MAX), each ring holding `capacity` items
/// (a power of two). Returns the links of shard 0, 1, ..., in order.
pub fn mesh<T: Send>(shards: usize, capacity: usize) -> io::Result<Vec<ShardLinks<T>>> {
    assert!(
        (1..=SHARDS_MAX).contains(&shards),
        "mesh of {shards} shards: must be 1..={SHARDS_MAX}"
    );
    let doorbells = (0..shards)
        .map(|_| Doorbell::new().map(Arc::new))
        .collect::<io::Result<Vec<_>>>()?;
    let mut links: Vec<ShardLinks<T>> = (0..shards)
        .map(|shard| ShardLinks {
            shard,
            outgoing: (0..shards).map(|_| None).collect(),
            incoming: (0..shards).map(|_| None).collect(),
            doorbell: doorbells[shard].clone(),
        })
        .collect();
    for from in 0..shards {
        for to in 0..shards {
            if from == to {
                continue;
            }
            let (producer, consumer) = spsc::channel(capacity);
            links[from].outgoing[to] = Some(Outgoing {
                ring: producer,
                doorbell: doorbells[to].clone(),
                last_rung: LastRung::default(),
            });
            links[to].incoming[from] = Some(consumer);
        }
    }
    Ok(links)
}

struct Outgoing<T> {
    ring: Producer<T>,
    /// The destination shard's doorbell.
    doorbell: Arc<Doorbell>,
    /// The destination's park generation we last rang for.
    last_rung: LastRung,
}

/// One shard's endpoints before its thread has claimed them. `Send` (if `T` is).
pub struct ShardLinks<T> {
    shard: usize,
    /// Indexed by destination shard; `None` at our own index.
    outgoing: Vec<Option<Outgoing<T>>>,
    /// Indexed by source shard; `None` at our own index.
    incoming: Vec<Option<Consumer<T>>>,
    /// Ours: producers into this shard ring it.
    doorbell: Arc<Doorbell>,
}

impl<T> ShardLinks<T> {
    pub fn shard(&self) -> usize {
        self.shard
    }

    /// Claims the endpoints for the calling thread; the result cannot be sent elsewhere.
    pub fn bind(self) -> BoundLinks<T> {
        BoundLinks {
            links: self,
            #[cfg(feature = "glommio")]
            waiter: None,
            _bound: PhantomData,
        }
    }
}

/// One shard's endpoints, bound to the shard's thread (`!Send`).
pub struct BoundLinks<T> {
    links: ShardLinks<T>,
    #[cfg(feature = "glommio")]
    waiter: Option<crate::doorbell::GlommioWaiter>,
    /// A raw pointer is neither `Send` nor `Sync`: this is what pins the links to a thread.
    _bound: PhantomData<*const ()>,
}

impl<T> BoundLinks<T> {
    pub fn shard(&self) -> usize {
        self.links.shard
    }

    pub fn shards(&self) -> usize {
        self.links.outgoing.len()
    }

    fn outgoing(&mut self, to: usize) -> &mut Outgoing<T> {
        let shard = self.links.shard;
        assert_ne!(
            to, shard,
            "shard {shard} sending to itself: the local case never uses a ring"
        );
        self.links.outgoing[to]
            .as_mut()
            .expect("every other shard has a ring")
    }

    /// Sends one item to shard `to` (≠ our shard) and wakes it if it is parked. A full ring
    /// gives the item back.
    #[inline]
    pub fn send(&mut self, to: usize, item: T) -> Result<(), Full<T>> {
        let out = self.outgoing(to);
        out.ring.push(item)?;
        out.doorbell.notify(&mut out.last_rung);
        Ok(())
    }

    /// Sends as many items from `items` as fit into the ring to shard `to`, with one index
    /// publication and at most one wake-up. What does not fit stays in the iterator.
    pub fn send_iter<I: Iterator<Item = T>>(&mut self, to: usize, items: &mut I) -> usize {
        let out = self.outgoing(to);
        let sent = out.ring.push_iter(items);
        if sent > 0 {
            out.doorbell.notify(&mut out.last_rung);
        }
        sent
    }

    /// Free slots in the ring to shard `to` right now.
    pub fn free_len(&mut self, to: usize) -> usize {
        self.outgoing(to).ring.free_len()
    }

    /// Moves up to `max_per_peer` items from each incoming ring to `out`, visiting every peer
    /// once (so one busy peer cannot starve the others). Returns the number moved.
    pub fn recv_into(&mut self, out: &mut Vec<T>, max_per_peer: usize) -> usize {
        self.links
            .incoming
            .iter_mut()
            .flatten()
            .map(|ring| ring.pop_into(out, max_per_peer))
            .sum()
    }

    /// True if every incoming ring is empty.
    pub fn is_idle(&mut self) -> bool {
        self.links
            .incoming
            .iter_mut()
            .flatten()
            .all(|ring| ring.is_empty())
    }

    /// Announces that this shard is about to sleep and re-checks every incoming ring. Returns
    /// true if the shard may sleep now; false if work arrived (the announcement is already
    /// retracted). After sleeping, call `retract_park`.
    pub fn prepare_park(&mut self) -> bool {
        self.links.doorbell.announce();
        if self.is_idle() {
            true
        } else {
            self.links.doorbell.retract();
            false
        }
    }

    /// Ends a park: the shard is awake (rung, timed out, or woken by something else).
    pub fn retract_park(&self) {
        self.links.doorbell.retract();
    }

    /// Parks the calling plain thread until a peer sends, or `timeout` passes. Returns at once
    /// if anything is waiting. Returns false only if it slept for the whole `timeout`.
    pub fn park_blocking(&mut self, timeout: Option<Duration>) -> io::Result<bool> {
        if !self.prepare_park() {
            return Ok(true);
        }
        let result = self.links.doorbell.wait_blocking(timeout);
        self.retract_park();
        result
    }

    /// Wakes this shard's own parked loop (see `Doorbell::ring`): for work that one of the
    /// shard's tasks queued while the loop sleeps. Costs a syscall; use it only off the busy
    /// path.
    pub fn wake_self(&self) {
        self.links.doorbell.ring();
    }

    /// A waiter for this shard's doorbell that the caller owns, so the links need not stay
    /// borrowed while a task sleeps: `prepare_park`, then `waiter.wait().await`, then
    /// `retract_park`.
    #[cfg(feature = "glommio")]
    pub fn glommio_waiter(&self) -> io::Result<crate::doorbell::GlommioWaiter> {
        self.links.doorbell.glommio_waiter()
    }

    /// Parks the calling glommio task until a peer sends; the executor keeps running its other
    /// tasks, and sleeps in the kernel if it has nothing else. Returns at once if anything is
    /// waiting.
    #[cfg(feature = "glommio")]
    pub async fn park(&mut self) -> io::Result<()> {
        if self.waiter.is_none() {
            self.waiter = Some(self.links.doorbell.glommio_waiter()?);
        }
        if !self.prepare_park() {
            return Ok(());
        }
        let waiter = self.waiter.as_ref().expect("created above");
        let result = waiter.wait().await;
        self.retract_park();
        result
    }
}

impl<T> std::fmt::Debug for ShardLinks<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardLinks")
            .field("shard", &self.shard)
            .field("shards", &self.outgoing.len())
            .finish()
    }
}

impl<T> std::fmt::Debug for BoundLinks<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundLinks")
            .field("shard", &self.links.shard)
            .field("shards", &self.links.outgoing.len())
            .finish()
    }
}
