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

    /// The slot of position `pos`.
    #[inline(always)]
    fn slot(&self, pos: usize) -> &Cell<MaybeUninit<T>> {
        let index = pos & self.mask;
        debug_assert!(index < self.slots.len());
        // SAFETY: `slots.len() == mask + 1` (set in `channel`, never changed), so
        // `pos & mask < slots.len()`. Skipping the bounds check matters on the per-item path.
        unsafe { self.slots.get_unchecked(index) }
    }

    /// Splits the `len` positions starting at `pos` into runs of contiguous slots: (first slot
    /// index, run length), at most two, the second starting at slot 0.
    #[inline(always)]
    fn runs(&self, pos: usize, len: usize) -> [(usize, usize); 2] {
        debug_assert!(len <= self.capacity());
        let first = pos & self.mask;
        let head_run = len.min(self.capacity() - first);
        [(first, head_run), (0, len - head_run)]
    }

    /// The slot `offset` places into the run starting at slot index `first`.
    ///
    /// # Safety
    /// `first + offset` must be below the capacity (true for runs from `runs`).
    #[inline(always)]
    unsafe fn slot_in_run(&self, first: usize, offset: usize) -> &Cell<MaybeUninit<T>> {
        debug_assert!(first + offset < self.slots.len());
        // SAFETY: the caller keeps the index within the slot array.
        unsafe { self.slots.get_unchecked(first + offset) }
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
            self.slot(pos).with_mut(|slot| {
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
        self.shared.slot(pos).with_mut(|slot| {
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
        // The free positions form at most two runs of contiguous slots (before and after the
        // wrap point); writing run by run keeps the index arithmetic out of the inner loop.
        for (first, len) in self.shared.runs(start, free) {
            let mut run_pushed = 0;
            while run_pushed < len {
                let Some(item) = items.next() else { break };
                // SAFETY: positions start..start + free are free slots we own, and
                // `first + run_pushed` is one of them (`runs` splits exactly that range).
                unsafe { self.shared.slot_in_run(first, run_pushed) }.with_mut(|slot| {
                    // SAFETY: as above; the slot holds no initialized item.
                    unsafe { slot.write(MaybeUninit::new(item)) }
                });
                run_pushed += 1;
            }
            pushed += run_pushed;
            if run_pushed < len {
                break;
            }
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
        self.shared.slot(pos).with_mut(|slot| {
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
        let drain = self.drain(max);
        let take = drain.len();
        out.extend(drain);
        take
    }

    /// Takes up to `max` items, oldest first, as an iterator that moves each item out as it
    /// goes; the freed slots are published to the producer with one store when the iterator
    /// is dropped. Items the iterator did not reach stay in the ring.
    pub fn drain(&mut self, max: usize) -> Drain<'_, T> {
        let take = self.available(max).min(max);
        let start = self.head;
        let [(first, first_len), (_, second_len)] = self.shared.runs(start, take);
        // Claim the items now, so a leaked `Drain` can never let an item be read twice (it
        // leaks the untaken ones instead); `Drop` gives the untaken ones back.
        self.head = start.wrapping_add(take);
        Drain {
            consumer: self,
            start,
            run: first,
            run_left: first_len,
            second_len,
            taken: 0,
        }
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

/// The iterator of `Consumer::drain`: walks the claimed items run by run (at most two runs of
/// contiguous slots) and publishes the new `head` on drop.
pub struct Drain<'a, T> {
    consumer: &'a mut Consumer<T>,
    /// Position of the first claimed item.
    start: usize,
    /// Slot index of the next item in the current run.
    run: usize,
    /// Items left in the current run.
    run_left: usize,
    /// Length of the run after the wrap point (starting at slot 0) not yet entered.
    second_len: usize,
    /// Items taken so far.
    taken: usize,
}

impl<T> Iterator for Drain<'_, T> {
    type Item = T;

    #[inline]
    fn next(&mut self) -> Option<T> {
        if self.run_left == 0 {
            if self.second_len == 0 {
                return None;
            }
            (self.run, self.run_left, self.second_len) = (0, self.second_len, 0);
        }
        // SAFETY: the runs cover exactly the claimed positions, which are published and not
        // yet read; `run` indexes the next of them and stays below the capacity.
        let item = unsafe { self.consumer.shared.slot_in_run(self.run, 0) }.with_mut(|slot| {
            // SAFETY: as above; after this the slot counts as uninitialized.
            unsafe { slot.read().assume_init() }
        });
        self.run += 1;
        self.run_left -= 1;
        self.taken += 1;
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.run_left + self.second_len;
        (left, Some(left))
    }
}

impl<T> ExactSizeIterator for Drain<'_, T> {}

impl<T> Drop for Drain<'_, T> {
    fn drop(&mut self) {
        // Give back what was not taken, then free the slots of what was.
        self.consumer.head = self.start.wrapping_add(self.taken);
        if self.taken > 0 {
            self.consumer.publish();
        }
    }
}

impl<T> fmt::Debug for Drain<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Drain").field("left", &self.len()).finish()
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
    fn drain_takes_in_order_and_leaves_the_rest() {
        let (mut tx, mut rx) = channel::<u32>(8);
        for i in 0..6 {
            tx.push(i).unwrap();
        }
        let mut drain = rx.drain(4);
        assert_eq!(drain.len(), 4);
        assert_eq!(drain.next(), Some(0));
        assert_eq!(drain.next(), Some(1));
        drop(drain);
        // Only the two taken slots were freed; the untaken two are still in the ring.
        assert_eq!(tx.free_len(), 4);
        assert_eq!(rx.drain(100).collect::<Vec<_>>(), [2, 3, 4, 5]);
        assert_eq!(tx.free_len(), 8);
        assert_eq!(rx.drain(3).count(), 0);
    }

    #[test]
    fn leaked_drain_never_yields_an_item_twice() {
        let drops = StdAtomicUsize::new(0);
        let (mut tx, mut rx) = channel::<Counted<'_>>(4);
        for _ in 0..3 {
            tx.push(Counted(&drops)).unwrap();
        }
        let mut drain = rx.drain(3);
        drop(drain.next());
        std::mem::forget(drain);
        assert_eq!(drops.load(Ordering::Relaxed), 1);
        // The leaked iterator keeps its claim: the two items it did not reach are leaked
        // (never dropped), never yielded a second time.
        assert_eq!(rx.drain(10).count(), 0);
        tx.push(Counted(&drops)).unwrap();
        drop(rx.pop().expect("the new item"));
        assert_eq!(drops.load(Ordering::Relaxed), 2);
        assert_eq!(
            tx.free_len(),
            4,
            "the claimed slots were freed by the next pop"
        );
        drop((tx, rx));
        assert_eq!(drops.load(Ordering::Relaxed), 2, "nothing dropped twice");
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
