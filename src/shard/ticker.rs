//! The ticker: one timer for the whole shard (DESIGN invariant 6: none per connection). Every
//! tick it sends due pings and closes connections that are stale (no connect in time), did
//! not answer a ping, or outlived their token. It scans every connection per tick; a timer
//! wheel would touch only the due ones (not needed at today's tick of pong timeout / 4).

use std::rc::Rc;
use std::time::Duration;

use super::Shard;
use crate::clock::Millis;
use crate::fanout::frames::PingFrames;
use crate::fanout::Phase;
use crate::limits::{TICK_MS_MAX, TICK_MS_MIN};
use crate::protocol::Disconnect;

impl Shard {
    pub async fn run_ticker(self: Rc<Self>) {
        let client = &self.config.client;
        let ping_interval = client.ping_interval.positive();
        let pong_timeout = client
            .pong_timeout
            .positive()
            .filter(|_| ping_interval.is_some());
        let stale = client
            .stale_close_delay
            .positive()
            .unwrap_or(Duration::ZERO);
        let expired_grace = client
            .expired_close_delay
            .positive()
            .unwrap_or(Duration::ZERO);
        let base = pong_timeout
            .or(ping_interval)
            .unwrap_or(Duration::from_millis(TICK_MS_MAX));
        let tick = (base / 4).clamp(
            Duration::from_millis(TICK_MS_MIN),
            Duration::from_millis(TICK_MS_MAX),
        );
        let pings = PingFrames::default();
        loop {
            glommio::timer::sleep(tick).await;
            let now = Millis::now();
            for conn in self.registry.borrow().connections() {
                let live = &conn.liveness;
                if let Phase::Accepted(at) = live.phase.get() {
                    if now.since(at) > stale {
                        conn.disconnect(Disconnect::Stale);
                    }
                    continue;
                }
                if live.pong_due.get().is_some_and(|due| now > due) {
                    conn.disconnect(Disconnect::NoPong);
                    continue;
                }
                if live
                    .expires_at
                    .get()
                    .is_some_and(|at| now > at.after(expired_grace))
                {
                    conn.disconnect(Disconnect::Expired);
                    continue;
                }
                let Some(interval) = ping_interval else {
                    continue;
                };
                if now >= live.next_ping.get() {
                    conn.push(pings.get(conn.framing()));
                    if let Some(timeout) = pong_timeout {
                        if live.pong_due.get().is_none() {
                            live.pong_due.set(Some(now.after(timeout)));
                        }
                    }
                    live.next_ping.set(now.after(interval));
                }
            }
        }
    }
}
