//! `PendingConnect`: a connect reply waiting for the results of the connection's server-side
//! subscriptions. Centrifugo's connect result carries each one's subscribe result (its
//! position, and what a recovery found), and the SDKs take a server-side subscription's
//! recovered publications from there. The reply's place at the head of the connection's
//! output is held by a barrier from the start, so nothing a subscription delivers meanwhile
//! goes out before it; the last result fills it in.
//!
//! Owns the reply's parts; touches only the connection's `Outbound`.

use std::cell::RefCell;
use std::rc::Rc;

use super::outbound::Outbound;
use crate::protocol::json::encode;

/// A connect reply and the subscribe results it waits for.
#[derive(Debug)]
pub struct PendingConnect {
    conn: Rc<Outbound>,
    parts: RefCell<Parts>,
}

#[derive(Debug)]
struct Parts {
    id: u32,
    client: Box<str>,
    ttl: Option<u32>,
    ping_seconds: Option<u32>,
    pong: bool,
    /// Each channel with its result once known.
    subs: Vec<(Box<str>, Option<Vec<u8>>)>,
    waiting: usize,
}

/// Where one server-side subscription's result goes.
#[derive(Debug, Clone)]
pub struct ConnectSlot {
    pending: Rc<PendingConnect>,
    index: usize,
}

impl PendingConnect {
    /// The reply to connect command `id` of `conn`, waiting for `channels` (at least one);
    /// holds its place in the output now. Returns a slot per channel, in order.
    pub fn start(
        conn: Rc<Outbound>,
        id: u32,
        result: &encode::ConnectResult<'_>,
        channels: &[Box<str>],
    ) -> Vec<ConnectSlot> {
        debug_assert!(!channels.is_empty());
        conn.push_barrier();
        let pending = Rc::new(PendingConnect {
            conn,
            parts: RefCell::new(Parts {
                id,
                client: result.client.into(),
                ttl: result.ttl,
                ping_seconds: result.ping_seconds,
                pong: result.pong,
                subs: channels.iter().map(|c| (c.clone(), None)).collect(),
                waiting: channels.len(),
            }),
        });
        (0..channels.len())
            .map(|index| ConnectSlot {
                pending: pending.clone(),
                index,
            })
            .collect()
    }
}

impl ConnectSlot {
    /// This subscription's result (`{}` when it was refused); the last one sends the reply.
    pub fn fill(self, result: Vec<u8>) {
        let mut parts = self.pending.parts.borrow_mut();
        let slot = &mut parts.subs[self.index].1;
        debug_assert!(slot.is_none(), "one result per subscription");
        if slot.replace(result).is_none() {
            parts.waiting -= 1;
        }
        if parts.waiting > 0 {
            return;
        }
        let subs: Vec<(Box<str>, Vec<u8>)> = std::mem::take(&mut parts.subs)
            .into_iter()
            .map(|(channel, result)| (channel, result.unwrap_or_else(|| b"{}".to_vec())))
            .collect();
        let mut reply = Vec::new();
        encode::connect_reply(
            &mut reply,
            parts.id,
            &encode::ConnectResult {
                client: &parts.client,
                version: crate::VERSION,
                ttl: parts.ttl,
                subs: &subs,
                ping_seconds: parts.ping_seconds,
                pong: parts.pong,
            },
        );
        let frame = self.pending.conn.framing().message(&reply);
        self.pending.conn.fill_barrier(frame);
    }
}
