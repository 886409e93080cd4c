//! A partition's log is created on its first use (a subscribe or publish of a channel with
//! history in it), and creating it (directory, `EPOCH`, first segment, reserved space) is
//! blocking filesystem work that must not stall the shard (DESIGN: no blocking work on a
//! shard). The work that needs the log waits here, in arrival order, while a blocking thread
//! creates it (`run_log_creator`); meanwhile the shard serves everything else. Later work on
//! any partition some waiting message touches waits behind it too, so per-channel order holds
//! (DESIGN invariant 3). When the log is in place the waiting work is handled again, in order.
//!
//! Past `DEFERRED_MESSAGES_HIGH` waiting messages the shard raises its congestion flag (sources
//! of new traffic hold back) and its ring loop stops taking messages until the logs exist.

use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use glommio::channels::local_channel::LocalSender;

use super::{Origin, Shard};
use crate::limits::{DEFERRED_MESSAGES_HIGH, PARTITIONS, TEST_LOG_GATE_WAIT_MS};
use crate::router::{partition, ShardMsg};

/// Engine work waiting for partition logs, and which partitions it holds up.
pub(super) struct PendingLogs {
    /// Partitions whose log a blocking thread is creating, and how many.
    creating: Vec<bool>,
    creating_count: usize,
    /// Partitions that some waiting message touches: later work there waits too.
    held: Vec<bool>,
    queue: VecDeque<(ShardMsg, Origin)>,
}

impl Default for PendingLogs {
    fn default() -> Self {
        PendingLogs {
            creating: vec![false; PARTITIONS as usize],
            creating_count: 0,
            held: vec![false; PARTITIONS as usize],
            queue: VecDeque::new(),
        }
    }
}

impl PendingLogs {
    pub fn is_full(&self) -> bool {
        self.queue.len() >= DEFERRED_MESSAGES_HIGH
    }

    /// Asks the creator for `partition`'s log unless it is being created.
    fn start_creating(&mut self, partition: u32, requests: &LocalSender<u32>) {
        let i = partition as usize;
        if self.creating[i] {
            return;
        }
        self.creating[i] = true;
        self.creating_count += 1;
        // The creator's queue holds each partition at most once and has room for all.
        let sent = requests.try_send(partition);
        assert!(
            sent.is_ok(),
            "the log creation queue has room for every partition"
        );
    }

    fn created(&mut self, partition: u32) {
        let i = partition as usize;
        debug_assert!(self.creating[i]);
        if std::mem::replace(&mut self.creating[i], false) {
            self.creating_count -= 1;
        }
    }
}

/// What a message asks of the engine, as far as logs go.
enum LogUse {
    /// Not engine work on channels: never waits.
    None,
    /// Work that creates a history channel's log when it is missing (subscribe, publish).
    Creates,
    /// Work on channels that creates nothing but keeps its order with the rest.
    Ordered,
}

fn log_use(msg: &ShardMsg) -> LogUse {
    match msg {
        ShardMsg::Subscribe(_) | ShardMsg::Publish(_) => LogUse::Creates,
        ShardMsg::Unsubscribe { .. } | ShardMsg::History(_) | ShardMsg::HistoryRemove { .. } => {
            LogUse::Ordered
        }
        _ => LogUse::None,
    }
}

/// The channels a message of engine work names.
fn channels_of(msg: &ShardMsg) -> Box<dyn Iterator<Item = &str> + '_> {
    match msg {
        ShardMsg::Subscribe(job) => Box::new(std::iter::once(&*job.channel)),
        ShardMsg::Publish(job) => Box::new(job.channels.iter().map(|(_, channel)| channel)),
        ShardMsg::Unsubscribe { channel, .. } | ShardMsg::HistoryRemove { channel, .. } => {
            Box::new(std::iter::once(&**channel))
        }
        ShardMsg::History(job) => Box::new(std::iter::once(&*job.channel)),
        _ => Box::new(std::iter::empty()),
    }
}

impl Shard {
    /// Returns `msg` if it can be handled now; otherwise keeps it (and starts creating the
    /// logs it needs) until they exist.
    pub(super) fn hold_for_logs(&self, msg: ShardMsg, origin: Origin) -> Option<ShardMsg> {
        let uses = log_use(&msg);
        if matches!(uses, LogUse::None) {
            return Some(msg);
        }
        let mut pending = self.pending_logs.borrow_mut();
        let engine = self.engine.borrow();
        let quiet = pending.queue.is_empty() && pending.creating_count == 0;
        if quiet && !engine.may_miss_logs() {
            // The common case: every log exists and nothing waits.
            return Some(msg);
        }
        let mut wait = false;
        for channel in channels_of(&msg) {
            // While nothing is created or waits, only a missing log can hold the message
            // (and the partition need not be computed for channels without history).
            if !quiet {
                let p = partition::partition(channel) as usize;
                wait |= pending.held[p] || pending.creating[p];
            }
            if matches!(uses, LogUse::Creates) {
                if let Some(p) = engine.missing_log(channel) {
                    pending.start_creating(p, &self.log_requests);
                    wait = true;
                }
            }
        }
        if !wait {
            return Some(msg);
        }
        // Everything later on any of its partitions waits behind it.
        for channel in channels_of(&msg) {
            pending.held[partition::partition(channel) as usize] = true;
        }
        pending.queue.push_back((msg, origin));
        let full = pending.is_full();
        drop(engine);
        drop(pending);
        if full {
            self.outbox.borrow_mut().set_deferred_pressure(true);
        }
        None
    }

    /// Creates partition logs off the shard as work asks for them, for the life of the shard.
    pub async fn run_log_creator(self: Rc<Self>) {
        let Some(requests) = self.log_requests_rx.borrow_mut().take() else {
            return;
        };
        // Bounded by the shard's life; each round creates one log.
        while let Some(p) = requests.recv().await {
            let job = self.engine.borrow().log_job(p);
            let gate = self.hooks.log_gate.clone();
            let created = glommio::executor()
                .spawn_blocking(move || {
                    if let Some(gate) = gate {
                        wait_for_gate(&gate);
                    }
                    job()
                })
                .await;
            self.engine.borrow_mut().install_log(p, created);
            self.pending_logs.borrow_mut().created(p);
            self.handle_held();
        }
    }

    /// Handles the waiting work again, in order: what no longer waits runs, the rest waits on.
    fn handle_held(&self) {
        let queue = {
            let mut pending = self.pending_logs.borrow_mut();
            pending.held.iter_mut().for_each(|h| *h = false);
            std::mem::take(&mut pending.queue)
        };
        // Bounded by the queue taken; work that still waits goes back in order.
        for (msg, origin) in queue {
            self.handle(msg, origin);
        }
        let full = self.pending_logs.borrow().is_full();
        self.outbox.borrow_mut().set_deferred_pressure(full);
    }

    /// True while the shard holds as much waiting work as it may: the ring loop then takes
    /// no more messages.
    pub(super) fn holds_too_much(&self) -> bool {
        self.pending_logs.borrow().is_full()
    }
}

/// The test hook's wait: until `gate` exists or `TEST_LOG_GATE_WAIT_MS` passed.
fn wait_for_gate(gate: &std::path::Path) {
    let deadline = std::time::Instant::now() + Duration::from_millis(TEST_LOG_GATE_WAIT_MS);
    // Bounded by the deadline.
    while !gate.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}
