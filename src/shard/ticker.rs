//! The ticker: one timer for the whole shard (DESIGN invariant 6: none per connection). Each
//! tick it visits the connections whose deadline came (`Deadlines`, the wheel): it closes
//! those that are stale (no connect in time), did not answer a ping or outlived their token,
//! sends due pings, and puts each visited connection back in the wheel at its next deadline.
//! A connection with nothing due is not touched.

use std::rc::Rc;
use std::time::Duration;

use super::deadlines::Deadlines;
use super::Shard;
use crate::clock::Millis;
use crate::config::Config;
use crate::fanout::frames::PingFrames;
use crate::fanout::{Outbound, Phase};
use crate::limits::{TICK_MS_MAX, TICK_MS_MIN};
use crate::protocol::Disconnect;

/// The connection timeouts from the configuration, and the tick they imply.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    ping_interval: Option<Duration>,
    pong_timeout: Option<Duration>,
    stale: Duration,
    expired_grace: Duration,
    sub_expired_grace: Duration,
    /// A quarter of the pong timeout (or ping interval), within the tick limits.
    pub tick: Duration,
}

impl Timeouts {
    pub fn of(config: &Config) -> Self {
        let client = &config.client;
        let ping_interval = client.ping_interval.positive();
        let pong_timeout = client
            .pong_timeout
            .positive()
            .filter(|_| ping_interval.is_some());
        let base = pong_timeout
            .or(ping_interval)
            .unwrap_or(Duration::from_millis(TICK_MS_MAX));
        Timeouts {
            ping_interval,
            pong_timeout,
            stale: client
                .stale_close_delay
                .positive()
                .unwrap_or(Duration::ZERO),
            expired_grace: client
                .expired_close_delay
                .positive()
                .unwrap_or(Duration::ZERO),
            sub_expired_grace: client
                .expired_sub_close_delay
                .positive()
                .unwrap_or(Duration::ZERO),
            tick: (base / 4).clamp(
                Duration::from_millis(TICK_MS_MIN),
                Duration::from_millis(TICK_MS_MAX),
            ),
        }
    }

    /// When `conn` next needs a visit (`None`: never, until something changes).
    pub fn next_deadline(&self, conn: &Outbound) -> Option<Millis> {
        let live = &conn.liveness;
        if let Phase::Accepted(at) = live.phase.get() {
            return Some(at.after(self.stale));
        }
        let expiry = live.expires_at.get().map(|at| at.after(self.expired_grace));
        let sub_expiry = live
            .sub_expires_at
            .get()
            .map(|at| at.after(self.sub_expired_grace));
        let ping = self.ping_interval.map(|_| live.next_ping.get());
        [live.pong_due.get(), expiry, sub_expiry, ping]
            .into_iter()
            .flatten()
            .min()
    }

    /// Does what is due for `conn` at `now`; returns whether it stays open.
    fn visit(&self, conn: &Outbound, now: Millis, pings: &PingFrames) -> bool {
        let live = &conn.liveness;
        if let Phase::Accepted(at) = live.phase.get() {
            if now.since(at) > self.stale {
                conn.disconnect(Disconnect::Stale);
                return false;
            }
            return true;
        }
        if live.pong_due.get().is_some_and(|due| now > due) {
            conn.disconnect(Disconnect::NoPong);
            return false;
        }
        if live
            .expires_at
            .get()
            .is_some_and(|at| now > at.after(self.expired_grace))
        {
            conn.disconnect(Disconnect::Expired);
            return false;
        }
        if live
            .sub_expires_at
            .get()
            .is_some_and(|at| now > at.after(self.sub_expired_grace))
        {
            // The session ends the subscriptions whose tokens ran out (and sets the next).
            live.sub_expires_at.set(None);
            conn.expire_subscriptions();
        }
        let Some(interval) = self.ping_interval else {
            return true;
        };
        if now >= live.next_ping.get() {
            conn.push(pings.get(conn.framing()));
            if let Some(timeout) = self.pong_timeout {
                if live.pong_due.get().is_none() {
                    live.pong_due.set(Some(now.after(timeout)));
                }
            }
            live.next_ping.set(now.after(interval));
        }
        true
    }
}

impl Shard {
    /// Puts `conn` in the wheel at its next deadline, if that is earlier than its visit
    /// (a new connection; a token whose expiry changed).
    pub fn watch_deadlines(&self, conn: &Outbound) {
        if let Some(at) = self.timeouts.next_deadline(conn) {
            self.deadlines.borrow_mut().schedule(conn, at);
        }
    }

    pub async fn run_ticker(self: Rc<Self>) {
        let pings = PingFrames::default();
        loop {
            glommio::timer::sleep(self.timeouts.tick).await;
            let now = Millis::now();
            self.notice_drain();
            self.publish_due_offline(now);
            let due = self.deadlines.borrow_mut().take_due(now);
            for (id, tick) in due {
                let Some(conn) = self.registry.borrow().get(id).cloned() else {
                    continue; // closed since
                };
                if !Deadlines::claim(&conn, tick) {
                    continue; // stale: it is due at another tick
                }
                if self.timeouts.visit(&conn, now, &pings) {
                    self.watch_deadlines(&conn);
                }
            }
        }
    }
}
