//! `ParkFlag`: the lost-wakeup-free handshake between one sleeping consumer and any number of
//! producers. Pure atomics, no I/O, so loom can check it; `Doorbell` pairs it with an eventfd.
//!
//! The flag is a park *generation*: odd while the consumer is parked (or about to be), even
//! while it is awake. Only the consumer writes it; producers only read it, so the busy path has
//! no read-modify-write at all.
//!
//! ```text
//! Consumer (going to sleep):             Producer (after publishing items):
//!   1. state := next odd generation        1. tail := t            (Release, in the ring)
//!   2. fence(SeqCst)                       2. fence(SeqCst)
//!   3. re-check every ring                 3. g := state
//!   4. found work → state := next even     4. if g is odd and g ≠ the generation this
//!      else      → wait for the bell,            producer last rang for: ring the bell
//!                  then state := next even        and remember g
//! ```
//!
//! Why no wake-up is lost: the two SeqCst fences are ordered one way or the other in the
//! single total order of SeqCst operations. If the consumer's fence comes first, the
//! producer's load at step 3 sees the odd generation (or a later value: an even one means the
//! consumer is already awake and will re-check before sleeping again; a later odd one is a new
//! generation, so the producer rings). If the producer's fence comes first, the consumer's
//! re-check sees the new `tail`. A producer that skips ringing because it already rang for
//! generation g relies on its earlier ring, which the eventfd counter keeps until read.
//!
//! Cost in the busy case: one fence and one plain load per published batch. While a consumer
//! is parked, each producer rings at most once per generation; a ring that lands after the
//! consumer found work leaves one spurious wake-up pending, which costs a loop iteration,
//! never an item.

use crate::padded::CachePadded;
use crate::sync::{fence, AtomicUsize, Ordering};

#[derive(Debug, Default)]
pub struct ParkFlag {
    generation: CachePadded<AtomicUsize>,
}

/// A producer's memory of the generation it last rang for; starts at 0 (even: never parked).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LastRung(usize);

impl ParkFlag {
    pub fn new() -> Self {
        Self::default()
    }

    /// Consumer, steps 1–2. The caller must then re-check every ring it consumes before
    /// sleeping, and call `retract` if it finds work. Only the consumer may call this.
    #[inline]
    pub fn announce(&self) {
        // Relaxed: only the consumer writes the generation, so it reads back its own last value.
        let generation = self.generation.load(Ordering::Relaxed);
        debug_assert!(
            generation.is_multiple_of(2),
            "announce while already parked"
        );
        self.generation
            .store(generation.wrapping_add(1), Ordering::Relaxed);
        // Orders the store above before the caller's re-check loads of the ring tails; pairs
        // with the producer's fence in `should_ring`.
        fence(Ordering::SeqCst);
    }

    /// Consumer: it found work after announcing, or it woke up. Only the consumer may call it.
    #[inline]
    pub fn retract(&self) {
        let generation = self.generation.load(Ordering::Relaxed);
        if generation % 2 == 1 {
            self.generation
                .store(generation.wrapping_add(1), Ordering::Relaxed);
        }
    }

    /// Producer, steps 2–4, called after the ring's `tail` store. Returns true if the caller
    /// must ring the bell.
    #[inline]
    pub fn should_ring(&self, last: &mut LastRung) -> bool {
        // Orders the caller's `tail` store before the load below; pairs with the fence in
        // `announce`.
        fence(Ordering::SeqCst);
        let generation = self.generation.load(Ordering::Relaxed);
        if generation % 2 == 1 && generation != last.0 {
            last.0 = generation;
            true
        } else {
            false
        }
    }

    /// Whether the consumer has announced and not yet retracted (diagnostics).
    pub fn is_parked(&self) -> bool {
        self.generation.load(Ordering::Relaxed) % 2 == 1
    }
}
