//! Reading history back for a channel's owner: the recovery of a resubscribing client
//! (reference §6, stream mode) and `history` queries, both stopping at the visible top so
//! nothing is both recovered and delivered.

use std::num::NonZeroU64;

use crate::clock::unix_ms;
use crate::config::ChannelOptions;
use crate::history::StoredPublication;
use crate::protocol::{ErrorCode, Publication};
use crate::router::msg::{HistoryPage, HistoryQuery, RecoverFrom, Recovery};

use super::ChannelOwner;

/// A stored publication as the protocol carries it.
fn publication(stored: StoredPublication) -> Publication {
    Publication {
        offset: NonZeroU64::new(stored.offset),
        data: stored.data,
        info: stored.info,
        tags: stored.tags,
    }
}

impl ChannelOwner {
    /// The publications after `from` up to `top`, if all of them are still served and fit
    /// `client.recovery_max_publication_limit`; else `recovered: false`.
    pub(super) fn recover(
        &self,
        channel: &str,
        options: &ChannelOptions,
        from: &RecoverFrom,
        epoch: &str,
        top: u64,
    ) -> Recovery {
        let not_recovered = Recovery {
            recovered: false,
            offset: top,
            publications: Vec::new(),
        };
        if !from.epoch.is_empty() && *from.epoch != *epoch {
            return not_recovered;
        }
        if from.offset >= top {
            return Recovery {
                recovered: from.offset == top,
                offset: top,
                publications: Vec::new(),
            };
        }
        if !options.history() {
            return not_recovered;
        }
        let Ok(log) = self.log_of(channel) else {
            return not_recovered;
        };
        let now = unix_ms();
        // A position older than what is still served cannot be recovered: say so without
        // reading (and copying) up to `limit` publications first.
        if log
            .first_available(channel, now)
            .is_none_or(|first| first > from.offset + 1)
        {
            return not_recovered;
        }
        let limit = self.config.client.recovery_max_publication_limit;
        let stored = match log.read(channel, from.offset, false, limit, now) {
            Ok((pubs, _)) => pubs,
            Err(e) => {
                eprintln!("ringcast: history read of {channel:?}: {e}");
                return not_recovered;
            }
        };
        let visible: Vec<StoredPublication> =
            stored.into_iter().filter(|p| p.offset <= top).collect();
        let complete = visible.first().is_some_and(|p| p.offset == from.offset + 1)
            && visible.last().is_some_and(|p| p.offset == top);
        if !complete {
            return not_recovered;
        }
        Recovery {
            recovered: true,
            offset: from.offset,
            publications: visible.into_iter().map(publication).collect(),
        }
    }

    /// A `history` query (reference §6): 108 without history, 112 on an epoch mismatch,
    /// 107 for `reverse` from offset 0.
    pub(super) fn query_history(
        &mut self,
        channel: &str,
        query: &HistoryQuery,
    ) -> Result<HistoryPage, ErrorCode> {
        // Checked before any state exists: queries of channels without history leave nothing.
        let options = self
            .config
            .channel_options(channel)
            .ok_or(ErrorCode::UnknownChannel)?;
        if !options.history() {
            return Err(ErrorCode::NotAvailable);
        }
        let state = self.state(channel)?;
        let (top, partition) = (state.visible, state.partition);
        let epoch = self.epoch(partition, &options);
        if let Some((offset, since_epoch)) = &query.since {
            if !since_epoch.is_empty() && **since_epoch != *epoch {
                return Err(ErrorCode::UnrecoverablePosition);
            }
            if query.reverse && *offset == 0 {
                return Err(ErrorCode::BadRequest);
            }
        }
        let limit = query.limit_up_to(self.config.client.history_max_publication_limit);
        let mut publications = Vec::new();
        if limit > 0 {
            let log = self.log_of(channel)?;
            let from = query.since.as_ref().map_or(0, |(offset, _)| *offset);
            // Under `always` the log may hold records not yet visible: never return them.
            let (stored, _) = if query.reverse && from == 0 {
                // Newest first from the visible top: everything below top + 1.
                log.read(channel, top + 1, true, limit, unix_ms())
            } else {
                log.read(channel, from, query.reverse, limit, unix_ms())
            }
            .map_err(|e| {
                eprintln!("ringcast: history read of {channel:?}: {e}");
                ErrorCode::Internal
            })?;
            publications = stored
                .into_iter()
                .filter(|p| p.offset <= top)
                .map(publication)
                .collect();
        }
        self.forget_if_idle(channel);
        Ok(HistoryPage {
            publications,
            epoch,
            offset: top,
        })
    }
}
