//! The single-producer single-consumer ring: a fixed array of slots and two positions.
//!
//! Positions count pushes and pops since construction (wrapping `usize`); the slot of
//! position `p` is `p & mask`. `tail - head` (wrapping) is the number of items in the ring and
//! never exceeds the capacity. The producer alone writes `tail`, the consumer alone writes
//! `head`; each keeps a private copy of the other's position and reloads it only when the ring
//! looks full (producer) or empty (consumer), so the busy path touches the peer's cache line
//! once per refill instead of once per item.
//!
//! Ordering: a slot is written, then `tail` is stored with `Release`; the consumer loads
//! `tail` with `Acquire` before reading the slot, so it sees the written item. Symmetrically the
//! consumer moves the item out, then stores `head` with `Release`; the producer loads `head`
//! with `Acquire` before overwriting that slot, so the move-out happened before the overwrite.

use std::fmt;
use std::mem::MaybeUninit;

use crate::padded::CachePadded;
use crate::sync::{exclusive_load, Arc, AtomicBool, AtomicUsize, Cell, Ordering};

/// Largest capacity accepted: keeps `tail - head` far from wrapping ambiguity and the slot
/// array within what one allocation can hold.
pub const CAPACITY_MAX: usize = 1 << 30;

/// Creates a ring holding at most `capacity` items; `capacity` must be a power of two in
/// `1..=CAPACITY_MAX` (the slot index is a mask, not a division). All memory is allocated
/// here; `push`/`pop` never allocate.
pub fn channel<T>(capacity: usize) -> (Producer<T>, Consumer<T>) {
    assert!(
        capacity.is_power_of_two() && capacity <= CAPACITY_MAX,
        "ring capacity {capacity} must be a power of two in 1..={CAPACITY_MAX}"
    );
    let slots = (0..capacity)
        .map(|_| Cell::new(MaybeUninit::uninit()))
        .collect::<Vec<_>>()
        .into_boxed_slice();
    let shared = Arc::new(Shared {
        head: CachePadded(AtomicUsize::new(0)),
        tail: CachePadded(AtomicUsize::new(0)),
        producer_gone: AtomicBool::new(false),
        consumer_gone: AtomicBool::new(false),
        mask: capacity - 1,
        slots,
    });
    let producer = Producer {
        shared: shared.clone(),
        tail: 0,
        cached_head: 0,
    };
    let consumer = Consumer {
        shared,
        head: 0,
        cached_tail: 0,
    };
    (producer, consumer)
}

struct Shared<T> {
    /// Next position the consumer reads. Stored only by the consumer.
    head: CachePadded<AtomicUsize>,
    /// Next position the producer writes. Stored only by the producer.
    tail: CachePadded<AtomicUsize>,
    /// Set once by `Producer::drop`, after its last `tail` store.
    producer_gone: AtomicBool,
    /// Set once by `Consumer::drop`.
    consumer_gone: AtomicBool,
    mask: usize,
    /// Slots `head..tail` (mod capacity) hold initialized items; all others are uninitialized.
    slots: Box<[Cell<MaybeUninit<T>>]>,
}

// SAFETY: the ring moves `T` values from the producer's thread to the consumer's, so `T: Send`
// is required and sufficient. Each slot is accessed by one side at a time: the producer only
// touches slots outside `head..tail`, the consumer only slots inside, and the hand-over of a
// slot between them goes through a Release store / Acquire load of `tail` or `head`.
unsafe impl<T: Send> Send for Shared<T> {}
// SAFETY: as above; `&Shared` gives no access to a slot without the position protocol.
unsafe impl<T: Send> Sync for Shared<T> {}

impl<T> Shared<T> {
    fn capacity(&self) -> usize {
        self.mask + 1
    }
}

impl<T> Drop for Shared<T> {
    fn drop(&mut self) {
        // Both endpoints are gone, so `&mut self` is the only access: drop the items that were
        // pushed but never popped, each exactly once.
        let head = exclusive_load(&mut self.head.0);
        let tail = exclusive_load(&mut self.tail.0);
        debug_assert!(tail.wrapping_sub(head) <= self.capacity());
        let mut pos = head;
        while pos != tail {
            self.slots[pos & self.mask].with_mut(|slot| {
                // SAFETY: positions head..tail hold initialized items that were not popped.
                unsafe { (*slot).assume_init_drop() }
            });
            pos = pos.wrapping_add(1);
        }
    }
}

/// The error of a push into a full ring: the item comes back to the caller, who decides
/// whether to wait, retry or give up. The ring never overwrites or drops.
#[derive(PartialEq, Eq)]
pub struct Full<T>(pub T);

impl<T> fmt::Debug for Full<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Full(..)")
    }
}

impl<T> fmt::Display for Full<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ring is full")
    }
}

impl<T> std::error::Error for Full<T> {}

/// The writing end. Not `Clone`: there is exactly one producer.
pub struct Producer<T> {
    shared: Arc<Shared<T>>,
    /// Our own position; equals `shared.tail` after every publication.
    tail: usize,
    /// Last `head` we loaded; the true head is at or after it.
    cached_head: usize,
}

impl<T> fmt::Debug for Producer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("capacity", &self.capacity())
            .field("tail", &self.tail)
            .finish()
    }
}

impl<T> Producer<T> {
    pub fn capacity(&self) -> usize {
        self.shared.capacity()
    }

    /// Free slots as of our cached view of `head`, reloading it only if fewer than `wanted`
    /// look free.
    #[inline]
    fn free_slots(&mut self, wanted: usize) -> usize {
        let capacity = self.shared.capacity();
        let mut free = capacity - self.tail.wrapping_sub(self.cached_head);
        if free < wanted {
            // Acquire pairs with the consumer's Release store of `head`: the consumer has
            // finished moving items out of the slots we are about to reuse.
            self.cached_head = self.shared.head.load(Ordering::Acquire);
            free = capacity - self.tail.wrapping_sub(self.cached_head);
        }
        debug_assert!(free <= capacity, "ring positions out of order");
        free
    }

    /// # Safety
    /// `pos` must be in `tail..cached_head + capacity`, i.e. a free slot we own.
    #[inline]
    unsafe fn write_slot(&mut self, pos: usize, item: T) {
        self.shared.slots[pos & self.shared.mask].with_mut(|slot| {
            // SAFETY: the caller guarantees the slot is free, so the consumer does not read it
            // and it holds no initialized item that would be leaked.
            unsafe { slot.write(MaybeUninit::new(item)) }
        });
    }

    #[inline]
    fn publish(&mut self) {
        // Release pairs with the consumer's Acquire load of `tail`: the slot writes above are
        // visible before the consumer may read them.
        self.shared.tail.store(self.tail, Ordering::Release);
    }

    /// Appends one item, or gives it back if the ring is full.
    #[inline]
    pub fn push(&mut self, item: T) -> Result<(), Full<T>> {
        if self.free_slots(1) == 0 {
            return Err(Full(item));
        }
        // SAFETY: free_slots(1) > 0, so the slot at `tail` is free.
        unsafe { self.write_slot(self.tail, item) };
        self.tail = self.tail.wrapping_add(1);
        self.publish();
        Ok(())
    }

    /// Moves items from `items` into the ring until the ring is full or the iterator ends,
    /// and publishes them all with one store. Pulls an item from the iterator only when a
    /// slot is free for it, so whatever does not fit stays in the iterator. Returns how many
    /// were pushed.
    pub fn push_iter<I: Iterator<Item = T>>(&mut self, items: &mut I) -> usize {
        let wanted = items.size_hint().0.max(1);
        let free = self.free_slots(wanted);
        let start = self.tail;
        let mut pushed = 0;
        while pushed < free {
            let Some(item) = items.next() else { break };
            // SAFETY: pushed < free, so position start + pushed is a free slot.
            unsafe { self.write_slot(start.wrapping_add(pushed), item) };
            pushed += 1;
        }
        if pushed > 0 {
            self.tail = start.wrapping_add(pushed);
            self.publish();
        }
        pushed
    }

    /// Free slots right now (reloads the consumer's position).
    pub fn free_len(&mut self) -> usize {
        self.free_slots(usize::MAX)
    }

    /// True once the consumer has been dropped: pushes still succeed while there is room, but
    /// nobody will read them.
    pub fn is_abandoned(&self) -> bool {
        self.shared.consumer_gone.load(Ordering::Relaxed)
    }
}

impl<T> Drop for Producer<T> {
    fn drop(&mut self) {
        // Release pairs with the consumer's Acquire load in `is_abandoned`: a consumer that
        // sees the flag then sees our final `tail`.
        self.shared.producer_gone.store(true, Ordering::Release);
    }
}

/// The reading end. Not `Clone`: there is exactly one consumer.
pub struct Consumer<T> {
    shared: Arc<Shared<T>>,
    /// Our own position; equals `shared.head` after every publication.
    head: usize,
    /// Last `tail` we loaded; the true tail is at or after it.
    cached_tail: usize,
}

impl<T> fmt::Debug for Consumer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("capacity", &self.capacity())
            .field("head", &self.head)
            .finish()
    }
}

impl<T> Consumer<T> {
    pub fn capacity(&self) -> usize {
        self.shared.capacity()
    }

    /// Items available as of our cached view of `tail`, reloading it only if fewer than
    /// `wanted` look available.
    #[inline]
    fn available(&mut self, wanted: usize) -> usize {
        let mut available = self.cached_tail.wrapping_sub(self.head);
        if available < wanted {
            // Acquire pairs with the producer's Release store of `tail`: the items in the newly
            // published slots are fully written.
            self.cached_tail = self.shared.tail.load(Ordering::Acquire);
            available = self.cached_tail.wrapping_sub(self.head);
        }
        debug_assert!(available <= self.capacity(), "ring positions out of order");
        available
    }

    /// # Safety
    /// `pos` must be in `head..cached_tail`, i.e. a published slot not yet read.
    #[inline]
    unsafe fn read_slot(&mut self, pos: usize) -> T {
        self.shared.slots[pos & self.shared.mask].with_mut(|slot| {
            // SAFETY: the caller guarantees the slot holds an initialized item that nobody
            // else reads; after this the slot counts as uninitialized (head moves past it).
            unsafe { slot.read().assume_init() }
        })
    }

    #[inline]
    fn publish(&mut self) {
        // Release pairs with the producer's Acquire load of `head`: our reads of the freed
        // slots happen before the producer overwrites them.
        self.shared.head.store(self.head, Ordering::Release);
    }

    /// Takes the oldest item, if any.
    #[inline]
    pub fn pop(&mut self) -> Option<T> {
        if self.available(1) == 0 {
            return None;
        }
        // SAFETY: available(1) > 0, so `head` is a published, unread slot.
        let item = unsafe { self.read_slot(self.head) };
        self.head = self.head.wrapping_add(1);
        self.publish();
        Some(item)
    }

    /// Moves up to `max` items, oldest first, to the end of `out` and frees their slots with
    /// one store. Returns how many were moved. `out` grows only if the caller did not reserve
    /// room for `max` items.
    pub fn pop_into(&mut self, out: &mut Vec<T>, max: usize) -> usize {
        let take = self.available(max).min(max);
        let start = self.head;
        for i in 0..take {
            // SAFETY: i < available, so start + i is a published, unread slot.
            out.push(unsafe { self.read_slot(start.wrapping_add(i)) });
        }
        if take > 0 {
            self.head = start.wrapping_add(take);
            self.publish();
        }
        take
    }

    /// Items waiting right now (reloads the producer's position).
    pub fn len(&mut self) -> usize {
        self.available(usize::MAX)
    }

    /// True if nothing is waiting (reloads the producer's position only if the cached view
    /// says empty).
    pub fn is_empty(&mut self) -> bool {
        self.available(1) == 0
    }

    /// True once the producer has been dropped. Items it pushed before that are still
    /// delivered: check `is_empty` after this returns true to know the ring is finished.
    pub fn is_abandoned(&self) -> bool {
        // Acquire pairs with the Release store in `Producer::drop`.
        self.shared.producer_gone.load(Ordering::Acquire)
    }
}

impl<T> Drop for Consumer<T> {
    fn drop(&mut self) {
        self.shared.consumer_gone.store(true, Ordering::Relaxed);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::atomic::AtomicUsize as StdAtomicUsize;

    #[test]
    fn empty_ring_pops_nothing() {
        let (_tx, mut rx) = channel::<u32>(4);
        assert_eq!(rx.pop(), None);
        assert!(rx.is_empty());
        assert_eq!(rx.len(), 0);
        let mut out = Vec::new();
        assert_eq!(rx.pop_into(&mut out, 8), 0);
        assert!(out.is_empty());
    }

    #[test]
    fn full_ring_gives_the_item_back() {
        let (mut tx, mut rx) = channel::<String>(2);
        tx.push("a".into()).unwrap();
        tx.push("b".into()).unwrap();
        assert_eq!(tx.free_len(), 0);
        let Full(back) = tx.push("c".into()).unwrap_err();
        assert_eq!(back, "c");
        assert_eq!(rx.pop().as_deref(), Some("a"));
        tx.push(back).unwrap();
        assert_eq!(rx.pop().as_deref(), Some("b"));
        assert_eq!(rx.pop().as_deref(), Some("c"));
        assert_eq!(rx.pop(), None);
    }

    #[test]
    fn capacity_one_alternates() {
        let (mut tx, mut rx) = channel::<u64>(1);
        for i in 0..10 {
            tx.push(i).unwrap();
            assert!(tx.push(99).is_err());
            assert_eq!(rx.pop(), Some(i));
        }
    }

    #[test]
    fn wraps_around_many_times_in_order() {
        let (mut tx, mut rx) = channel::<usize>(8);
        let mut next_out = 0;
        for i in 0..1000 {
            tx.push(i).unwrap();
            if i % 3 == 2 {
                // Keep the ring partly filled so head and tail cross slot 0 at varied offsets.
                while rx.len() > 2 {
                    assert_eq!(rx.pop(), Some(next_out));
                    next_out += 1;
                }
            }
        }
        while let Some(v) = rx.pop() {
            assert_eq!(v, next_out);
            next_out += 1;
        }
        assert_eq!(next_out, 1000);
    }

    #[test]
    fn positions_wrap_past_usize_max() {
        // Start both positions just below usize::MAX so the wrapping arithmetic is exercised.
        let (mut tx, mut rx) = channel::<usize>(4);
        let start = usize::MAX - 5;
        tx.tail = start;
        tx.cached_head = start;
        tx.shared.tail.store(start, Ordering::Relaxed);
        tx.shared.head.store(start, Ordering::Relaxed);
        rx.head = start;
        rx.cached_tail = start;
        for i in 0..40 {
            tx.push(i).unwrap();
            tx.push(i + 1000).unwrap();
            assert_eq!(rx.pop(), Some(i));
            assert_eq!(rx.pop(), Some(i + 1000));
        }
        assert!(rx.is_empty());
    }

    #[test]
    fn push_iter_stops_at_full_and_keeps_the_rest() {
        let (mut tx, mut rx) = channel::<u32>(8);
        let mut source: VecDeque<u32> = (0..20).collect();
        assert_eq!(
            tx.push_iter(&mut std::iter::from_fn(|| source.pop_front())),
            8
        );
        assert_eq!(
            source.len(),
            12,
            "items that did not fit stay with the caller"
        );
        assert_eq!(source.front(), Some(&8));
        let mut out = Vec::with_capacity(8);
        assert_eq!(rx.pop_into(&mut out, 3), 3);
        assert_eq!(out, [0, 1, 2]);
        // Exactly the freed room is used, across the wrap point.
        assert_eq!(
            tx.push_iter(&mut std::iter::from_fn(|| source.pop_front())),
            3
        );
        assert_eq!(rx.pop_into(&mut out, 100), 8);
        assert_eq!(out, (0..11).collect::<Vec<_>>());
        assert_eq!(tx.push_iter(&mut std::iter::empty()), 0);
    }

    #[test]
    fn pop_into_batch_boundaries() {
        for capacity in [1usize, 2, 4, 16] {
            for batch in [1usize, 2, 3, 16, 17] {
                let (mut tx, mut rx) = channel::<usize>(capacity);
                let mut sent = 0;
                let mut got = Vec::new();
                while got.len() < 100 {
                    sent += tx.push_iter(&mut (sent..100));
                    let before = got.len();
                    let n = rx.pop_into(&mut got, batch);
                    assert!(n <= batch && n <= capacity);
                    assert_eq!(got.len() - before, n);
                }
                assert_eq!(
                    got,
                    (0..100).collect::<Vec<_>>(),
                    "capacity {capacity} batch {batch}"
                );
            }
        }
    }

    #[test]
    #[should_panic(expected = "power of two")]
    fn capacity_must_be_a_power_of_two() {
        let _ = channel::<u8>(3);
    }

    #[test]
    #[should_panic(expected = "power of two")]
    fn capacity_zero_is_refused() {
        let _ = channel::<u8>(0);
    }

    struct Counted<'a>(&'a StdAtomicUsize);
    impl Drop for Counted<'_> {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn undelivered_items_are_dropped_exactly_once() {
        // (positions already used, items pushed, items popped) on a ring of 4: covers an empty
        // ring, a partial one, a full one, and undelivered items that straddle the wrap point.
        for (shift, pushed, popped) in [(0, 0, 0), (0, 3, 0), (0, 4, 1), (0, 4, 4), (3, 4, 1)] {
            let drops = StdAtomicUsize::new(0);
            let (mut tx, mut rx) = channel::<Counted<'_>>(4);
            for _ in 0..shift {
                tx.push(Counted(&drops)).unwrap();
                drop(rx.pop());
            }
            drops.store(0, Ordering::Relaxed);
            for _ in 0..pushed {
                tx.push(Counted(&drops)).unwrap();
            }
            for _ in 0..popped {
                drop(rx.pop().expect("pushed above"));
            }
            assert_eq!(drops.load(Ordering::Relaxed), popped);
            drop(tx);
            assert_eq!(
                drops.load(Ordering::Relaxed),
                popped,
                "the consumer still holds the ring"
            );
            drop(rx);
            assert_eq!(
                drops.load(Ordering::Relaxed),
                pushed,
                "shift {shift} pushed {pushed} popped {popped}"
            );
        }
    }

    #[test]
    fn abandonment_is_visible_to_both_ends() {
        let (mut tx, rx) = channel::<u8>(2);
        assert!(!tx.is_abandoned());
        drop(rx);
        assert!(tx.is_abandoned());
        tx.push(1).unwrap();

        let (tx, mut rx) = channel::<u8>(2);
        assert!(!rx.is_abandoned());
        let mut tx = tx;
        tx.push(7).unwrap();
        drop(tx);
        assert!(rx.is_abandoned());
        assert_eq!(
            rx.pop(),
            Some(7),
            "items pushed before the drop are still delivered"
        );
    }

    #[test]
    fn endpoints_are_send_but_not_clone() {
        fn assert_send<T: Send>() {}
        assert_send::<Producer<Vec<u8>>>();
        assert_send::<Consumer<Vec<u8>>>();
    }
}
