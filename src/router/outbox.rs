//! `Outbox`: the shard's sending side of the mesh with a FIFO backlog per destination: a
//! message goes straight into the ring when nothing is queued before it, else behind the
//! queued ones, so per-destination order always holds (the owner relies on it for invariant
//! 3). The backlog has no hard bound on purpose: a full ring's producer must never drop or
//! block (shard-internal forwarding waiting on another shard could deadlock); instead a
//! backlog past `OUTBOX_BACKLOG_HIGH_MESSAGES` raises the shard's congestion flag, which holds
//! back every source of new traffic on the node until it drains.

use std::collections::VecDeque;

use ringcast_ring::mesh::BoundLinks;
use ringcast_ring::Full;

use super::congestion::Congestion;
use super::msg::ShardMsg;
use crate::limits::OUTBOX_BACKLOG_HIGH_MESSAGES;

/// The shard's sending side of the mesh with a FIFO backlog per destination: a message goes
/// straight into the ring when nothing is queued before it, else behind the queued ones, so
/// per-destination order always holds (the owner relies on it for invariant 3).
pub struct Outbox {
    links: BoundLinks<ShardMsg>,
    backlog: Vec<VecDeque<ShardMsg>>,
    congestion: Congestion,
    /// This shard's flag in `congestion`, as last written.
    congested: bool,
    /// The shard holds many publications waiting for a sync (`history_fsync = always`).
    held_pressure: bool,
    /// Work waiting for partition logs is past its limit.
    deferred_pressure: bool,
    /// Sends that could not go straight into their ring (full, or a backlog before them).
    waited: u64,
}

impl Outbox {
    pub fn new(links: BoundLinks<ShardMsg>, congestion: Congestion) -> Self {
        let backlog = (0..links.shards()).map(|_| VecDeque::new()).collect();
        Outbox {
            links,
            backlog,
            congestion,
            congested: false,
            held_pressure: false,
            deferred_pressure: false,
            waited: 0,
        }
    }

    /// Sends that had to wait in the backlog since the start.
    pub fn waited(&self) -> u64 {
        self.waited
    }

    /// Messages in this shard's outgoing rings now, not yet taken by their receivers.
    pub fn in_rings(&mut self) -> usize {
        let me = self.links.shard();
        (0..self.links.shards())
            .filter(|&to| to != me)
            .map(|to| crate::limits::RING_CAPACITY_MESSAGES.saturating_sub(self.links.free_len(to)))
            .sum()
    }

    /// Messages waiting behind full rings now.
    pub fn backlogged(&self) -> usize {
        self.backlog.iter().map(VecDeque::len).sum()
    }

    /// Publications held for durability count as backlog too.
    pub fn set_held_pressure(&mut self, pressure: bool) {
        self.held_pressure = pressure;
        self.update_congestion();
    }

    /// So does work waiting for partition logs past its limit.
    pub fn set_deferred_pressure(&mut self, pressure: bool) {
        if self.deferred_pressure != pressure {
            self.deferred_pressure = pressure;
            self.update_congestion();
        }
    }

    /// Sets this shard's flag from its backlogs, with hysteresis (set above `OUTBOX_BACKLOG_HIGH_MESSAGES`,
    /// cleared at half of it) so it does not flap.
    fn update_congestion(&mut self) {
        let longest = self.longest_backlog();
        let mark = if self.congested {
            OUTBOX_BACKLOG_HIGH_MESSAGES / 2
        } else {
            OUTBOX_BACKLOG_HIGH_MESSAGES
        };
        let congested = self.held_pressure || self.deferred_pressure || longest > mark;
        if congested != self.congested {
            self.congested = congested;
            self.congestion.set(self.links.shard(), congested);
        }
    }

    /// True while any shard of the node has a long backlog.
    pub fn congested_anywhere(&self) -> bool {
        self.congestion.any()
    }

    pub fn links(&mut self) -> &mut BoundLinks<ShardMsg> {
        &mut self.links
    }

    /// Sends `msg` to shard `to` (not this shard). Never blocks and never drops: a full ring
    /// queues it in the backlog and wakes this shard's loop to retry.
    pub fn send(&mut self, to: usize, msg: ShardMsg) {
        let backlog = &mut self.backlog[to];
        if backlog.is_empty() {
            if let Err(Full(msg)) = self.links.send(to, msg) {
                self.waited += 1;
                backlog.push_back(msg);
                self.links.wake_self();
            }
        } else {
            self.waited += 1;
            backlog.push_back(msg);
            if !self.congested && backlog.len() > OUTBOX_BACKLOG_HIGH_MESSAGES {
                self.update_congestion();
            }
        }
    }

    /// Moves backlogged messages into the rings as far as they fit; true if none are left.
    pub fn flush(&mut self) -> bool {
        let mut empty = true;
        for (to, backlog) in self.backlog.iter_mut().enumerate() {
            if backlog.is_empty() {
                continue;
            }
            self.links
                .send_iter(to, &mut std::iter::from_fn(|| backlog.pop_front()));
            empty &= backlog.is_empty();
        }
        if self.congested {
            self.update_congestion();
        }
        empty
    }

    pub fn longest_backlog(&self) -> usize {
        self.backlog.iter().map(VecDeque::len).max().unwrap_or(0)
    }

    /// Messages waiting behind the ring to `to`.
    pub fn backlog_len(&self, to: usize) -> usize {
        self.backlog[to].len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbox_keeps_order_behind_a_full_ring() {
        let mut links = ringcast_ring::mesh::mesh::<ShardMsg>(2, 2)
            .unwrap()
            .into_iter();
        let (a, b) = (links.next().unwrap(), links.next().unwrap());
        let mut outbox = Outbox::new(a.bind(), Congestion::new(2));
        let mut peer = b.bind();
        let stats = |request| ShardMsg::StatsRequest {
            request,
            from: 0,
            latencies: false,
        };
        for request in 0..5 {
            outbox.send(1, stats(request));
        }
        assert_eq!(outbox.backlog_len(1), 3);
        let mut got = Vec::new();
        for _ in 0..10 {
            outbox.flush();
            peer.recv_into(&mut got, 1);
        }
        let order: Vec<u64> = got
            .iter()
            .map(|m| match m {
                ShardMsg::StatsRequest { request, .. } => *request,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(order, [0, 1, 2, 3, 4]);
        assert!(outbox.flush());
    }
}
