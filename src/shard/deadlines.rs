//! `Deadlines`: the shard's timer wheel (DESIGN invariant 6). Each connection is in it at the
//! tick of its next deadline (stale close, ping, pong timeout, token expiry), so the ticker
//! visits only the connections that have something due instead of every connection every
//! tick: holding a million idle connections costs the visits their pings need, not a walk
//! over all of them.
//!
//! Entries are (connection id, tick). A connection's `Liveness::due_tick` names its live
//! entry; any other entry for it is stale and skipped, so rescheduling earlier is a push, and
//! a closed connection's entry is dropped when its slot comes round. Slots are indexed by tick
//! modulo `DEADLINE_WHEEL_SLOTS`, and nothing is scheduled more than one turn ahead: a later
//! deadline (a token valid for days, with pings off) gets a visit each turn and is put back,
//! so every entry leaves within a turn. Owns only the slots; `ticker` decides what a visit
//! does.

use std::time::Duration;

use crate::clock::Millis;
use crate::fanout::Outbound;
use crate::limits::DEADLINE_WHEEL_SLOTS;

#[derive(Debug)]
pub struct Deadlines {
    tick_ms: u64,
    slots: Vec<Vec<(u64, u64)>>,
    /// The first tick not visited yet.
    next: u64,
}

impl Deadlines {
    pub fn new(tick: Duration, now: Millis) -> Self {
        let tick_ms = u64::try_from(tick.as_millis()).unwrap_or(u64::MAX).max(1);
        Deadlines {
            tick_ms,
            slots: vec![Vec::new(); DEADLINE_WHEEL_SLOTS],
            next: now.as_ms() / tick_ms,
        }
    }

    /// The first tick whose start is after `at`: visiting then finds `now > at`.
    fn tick_after(&self, at: Millis) -> u64 {
        at.as_ms() / self.tick_ms + 1
    }

    /// Makes sure `conn` is visited at the first tick after `at` (at most one turn ahead: a
    /// later deadline is visited early and put back), unless it is already due no later.
    pub fn schedule(&mut self, conn: &Outbound, at: Millis) {
        let tick = self
            .tick_after(at)
            .clamp(self.next, self.next + DEADLINE_WHEEL_SLOTS as u64 - 1);
        let due = conn.liveness.due_tick.get();
        // Live ticks lie within a turn of each other, so their tags' wrapping difference
        // orders them.
        if due != 0 && tag(tick).wrapping_sub(due) as i32 >= 0 {
            return;
        }
        conn.liveness.due_tick.set(tag(tick));
        self.slots[(tick % DEADLINE_WHEEL_SLOTS as u64) as usize].push((conn.id, tick));
    }

    /// Whether a taken entry at `tick` is `conn`'s live one (else it is stale: skip it).
    /// Two ticks 2^32 apart share a tag; entries within a turn of each other cannot, and a
    /// tag of 0 is stored as 1, which at worst costs one early visit.
    pub fn is_live(conn: &Outbound, tick: u64) -> bool {
        conn.liveness.due_tick.get() == tag(tick)
    }

    /// For a taken entry: if it is `conn`'s live one, `conn` leaves the wheel (the visit puts
    /// it back) and this returns true; a stale entry returns false.
    pub fn claim(conn: &Outbound, tick: u64) -> bool {
        let live = Self::is_live(conn, tick);
        if live {
            conn.liveness.due_tick.set(0);
        }
        live
    }

    /// Takes the entries due by `now` (from every tick not visited yet, at most one turn of
    /// the wheel), as (connection id, tick).
    pub fn take_due(&mut self, now: Millis) -> Vec<(u64, u64)> {
        let now_tick = now.as_ms() / self.tick_ms;
        let mut due = Vec::new();
        let turns = (now_tick + 1)
            .saturating_sub(self.next)
            .min(DEADLINE_WHEEL_SLOTS as u64);
        for tick in self.next..self.next + turns {
            let slot = &mut self.slots[(tick % DEADLINE_WHEEL_SLOTS as u64) as usize];
            if slot.is_empty() {
                continue;
            }
            // Entries of later turns stay.
            let (now_due, later): (Vec<_>, Vec<_>) =
                slot.drain(..).partition(|&(_, t)| t <= now_tick);
            *slot = later;
            due.extend(now_due);
        }
        self.next = self.next.max(now_tick + 1);
        due
    }

    /// Entries in the wheel, stale ones included.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.slots.iter().map(Vec::len).sum()
    }
}

/// The 32-bit tag a connection keeps for a tick (never 0: that means "not in the wheel").
fn tag(tick: u64) -> u32 {
    (tick as u32).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(id: u64) -> Outbound {
        Outbound::new(id, 1 << 20, Millis::now(), Millis::now())
    }

    #[test]
    fn entries_come_due_once_in_order_and_earlier_wins() {
        let start = Millis::now();
        let tick = Duration::from_millis(100);
        let mut wheel = Deadlines::new(tick, start);
        let (a, b, c) = (conn(1), conn(2), conn(3));
        wheel.schedule(&a, start.after(Duration::from_millis(250)));
        wheel.schedule(&b, start.after(Duration::from_secs(3600)));
        wheel.schedule(&c, start.after(Duration::from_millis(900)));
        // Earlier wins; a later one is ignored while the earlier is pending.
        wheel.schedule(&c, start.after(Duration::from_millis(150)));
        wheel.schedule(&a, start.after(Duration::from_millis(800)));
        assert_eq!(wheel.len(), 4, "c's first entry is stale, not removed");

        assert!(wheel
            .take_due(start.after(Duration::from_millis(90)))
            .is_empty());
        let ids = |due: Vec<(u64, u64)>| due.into_iter().map(|(id, _)| id).collect::<Vec<_>>();
        let due = wheel.take_due(start.after(Duration::from_millis(350)));
        let live: Vec<_> = due
            .iter()
            .filter(|&&(id, t)| Deadlines::is_live([&a, &b, &c][id as usize - 1], t))
            .copied()
            .collect();
        assert_eq!(
            ids(live),
            [3, 1],
            "c (150 ms) then a (250 ms), nothing after their time"
        );
        // c's stale entry at 900 ms comes due later and is recognisably stale; b, an hour
        // out, is scheduled one turn (1,024 ticks) ahead, not sooner.
        let due = wheel.take_due(start.after(Duration::from_secs(101)));
        assert!(due
            .iter()
            .all(|&(id, t)| !Deadlines::is_live([&a, &b, &c][id as usize - 1], t)));
        assert_eq!(wheel.len(), 1, "only b's entry is left");
        // After one turn b is visited (early: the ticker finds nothing due and puts it back).
        let due = wheel.take_due(start.after(Duration::from_secs(103)));
        assert_eq!(ids(due), [2]);
        assert_eq!(wheel.len(), 0);
    }
}
