//! Lock-free inter-core rings for a thread-per-core server: an SPSC ring, a doorbell that lets
//! an idle consumer sleep without losing a wake-up, and the N×N mesh that connects N shards.
//! This crate knows nothing about the server that uses it.
//!
//! # Contract of the ring ([`spsc`])
//!
//! - **One writer, one reader.** [`spsc::channel`] returns one [`Producer`] and one
//!   [`Consumer`]. Neither is `Clone`; `push` and `pop` take `&mut self`, so the compiler
//!   enforces a single writer and a single reader. Both are `Send` when `T` is.
//! - **Capacity** is fixed at construction (a power of two); every slot is allocated then, and
//!   nothing is allocated afterwards.
//! - **Full**: `push` returns [`Full`] carrying the item back; the caller decides whether to
//!   wait. The ring never overwrites and never drops an item.
//! - **Empty**: `pop` returns `None`.
//! - **Batches**: [`Producer::push_iter`] and [`Consumer::pop_into`] move many items with one
//!   index publication, which is what makes a burst cheap across cores.
//! - **Drop**: items pushed and never popped are dropped exactly once, when both ends are gone.
//! - **FIFO**: items are popped in the order they were pushed.
//!
//! # Why the orderings are enough
//!
//! The ring has two positions, `tail` (stored only by the producer) and `head` (stored only
//! by the consumer). A slot is handed from producer to consumer by the producer's `Release`
//! store of `tail` after writing the slot, matched by the consumer's `Acquire` load of `tail`
//! before reading it; it is handed back by the consumer's `Release` store of `head` after
//! moving the item out, matched by the producer's `Acquire` load of `head` before overwriting
//! it. Nothing else is shared. Each side keeps a cached copy of the other's position and
//! reloads it only when the ring looks full (producer) or empty (consumer); a stale copy only
//! under-estimates what is available, so it is always safe. The two positions live on
//! separate cache lines ([`padded`](crate) padding of 128 bytes).
//!
//! # Parking and wake-up ([`park`], [`doorbell`])
//!
//! A consumer with nothing to do may sleep; producers wake it. The handshake is:
//!
//! 1. the consumer announces a new odd park generation, issues a `SeqCst` fence, and
//!    re-checks every ring it reads; if it finds work it retracts (next even generation) and
//!    carries on, otherwise it sleeps on the doorbell (an eventfd);
//! 2. a producer, after publishing `tail`, issues a `SeqCst` fence and loads the generation;
//!    if it is odd and not the one this producer already rang for, it writes the eventfd.
//!
//! The two fences are totally ordered, so either the producer sees the announcement or the
//! consumer's re-check sees the item: no wake-up is lost (checked by the loom models in
//! `tests/loom.rs`). Only the consumer writes the generation, so in the busy case a producer
//! pays one fence and one load per batch: no system call and no read-modify-write. The full
//! argument is in [`park`]. The eventfd can be waited on by a plain thread
//! ([`Doorbell::wait_blocking`]) or, with the `glommio` feature, awaited by a glommio task as an
//! io_uring read ([`mesh::BoundLinks::park`]), so an idle shard sleeps inside its executor and
//! uses no CPU.
//!
//! # The mesh ([`mesh`])
//!
//! [`mesh::mesh`] builds, once at start, a ring for every ordered pair of distinct shards and a
//! doorbell per shard. Each shard's [`mesh::ShardLinks`] is `Send` so start-up code can move it
//! to the shard's thread; [`mesh::ShardLinks::bind`] turns it into [`mesh::BoundLinks`], which is
//! `!Send`. There is no ring from a shard to itself.
//!
//! Build with `RUSTFLAGS="--cfg loom"` to swap the atomics for loom's model-checked ones
//! (`cargo test -p ringcast-ring --test loom --release`).

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]
#![warn(missing_debug_implementations)]

mod padded;
pub mod park;
pub mod spsc;
mod sync;

#[cfg(not(loom))]
pub mod doorbell;
#[cfg(not(loom))]
pub mod mesh;

#[cfg(not(loom))]
pub use doorbell::Doorbell;
pub use park::ParkFlag;
pub use spsc::{channel, Consumer, Drain, Full, Producer};
