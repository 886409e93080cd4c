//! Durability and retention tasks: the syncer makes history durable by the configured policy
//! (and, under `always`, releases the held publications once their sync returns); retention
//! runs once a second.

use std::rc::Rc;
use std::time::Duration;

use super::publish::Held;
use super::Shard;
use crate::config::Fsync;
use crate::engine::SyncJob;
use crate::limits::{
    HELD_BATCHES_HIGH, HISTORY_DIRTY_DROP_INTERVAL_MS, HISTORY_RETENTION_INTERVAL_MS,
};

impl Shard {
    /// Runs a blocking history sync off the shard's core. A failed sync ends the process:
    /// the kernel may have dropped the dirty pages, so the data can neither be trusted as
    /// durable nor synced again, and acknowledging anything after it would be a lie. A
    /// restart verifies the log and keeps what is really there (crash-only, as PostgreSQL
    /// does on fsync failure).
    pub(super) async fn run_sync(&self, job: SyncJob) {
        self.history_syncs.set(self.history_syncs.get() + 1);
        let result = if self.hooks.fail_syncs {
            Err(std::io::Error::other("RINGCAST_TEST_FAIL_SYNC is set"))
        } else {
            glommio::executor().spawn_blocking(job).await
        };
        if let Err(e) = result {
            eprintln!(
                "ringcast: shard {}: history sync failed: {e}; stopping so that nothing \
                 unsynced is acknowledged (a restart recovers the log)",
                self.id
            );
            std::process::exit(crate::EXIT_SYNC_FAILED);
        }
    }

    /// The syncer: makes history durable by the configured policy. With `always` it waits
    /// for held publications, syncs everything appended so far (one sync for all of them:
    /// group commit), then delivers and answers them in order.
    pub async fn run_syncer(self: Rc<Self>) {
        match self.config.history_storage.fsync {
            Fsync::Never => loop {
                // Nothing is synced, but the log's record of dirty ranges (which keeps
                // mappings of retained-away segments alive) must not grow.
                glommio::timer::sleep(Duration::from_millis(HISTORY_DIRTY_DROP_INTERVAL_MS)).await;
                drop(self.engine.borrow_mut().take_syncs());
            },
            Fsync::Interval => {
                let interval =
                    Duration::from_millis(self.config.history_storage.fsync_interval.as_millis());
                loop {
                    glommio::timer::sleep(interval).await;
                    let jobs = self.engine.borrow_mut().take_syncs();
                    for job in jobs {
                        self.run_sync(job).await;
                    }
                }
            }
            Fsync::Always => {
                let Some(bell) = self.sync_bell_rx.borrow_mut().take() else {
                    return;
                };
                while bell.recv().await.is_some() {
                    let batch: Vec<Held> = self.held.borrow_mut().drain(..).collect();
                    let jobs = self.engine.borrow_mut().take_syncs();
                    for job in jobs {
                        self.run_sync(job).await;
                    }
                    if self.held.borrow().len() <= HELD_BATCHES_HIGH / 2 {
                        self.outbox.borrow_mut().set_held_pressure(false);
                    }
                    for held in batch {
                        for outcome in held.outcomes {
                            let offset = outcome.publication.offset.map_or(0, |o| o.get());
                            let Some(channel) = outcome.channel.as_deref() else {
                                debug_assert!(false, "a held outcome carries its channel");
                                continue;
                            };
                            let shards = self.engine.borrow_mut().release(channel, offset);
                            self.fan_out(outcome, shards, held.exclude);
                        }
                        self.send_published(held.reply, held.answers);
                    }
                }
            }
        }
    }

    /// Retention: drops what history no longer serves and deletes segments nothing
    /// references. The deletions (and the syncs they wait for) run off the core, one job at a
    /// time: the next retention starts after the last one's jobs finished.
    pub async fn run_retention(self: Rc<Self>) {
        loop {
            glommio::timer::sleep(Duration::from_millis(HISTORY_RETENTION_INTERVAL_MS)).await;
            let jobs = self.engine.borrow_mut().retain();
            for job in jobs {
                self.run_sync(job).await;
            }
        }
    }
}
