//! The server API as typed commands (`ApiCommand`), executed against the shard (`execute`)
//! into typed replies (`ApiReply`); `codec` turns Centrifugo's JSON request bodies into
//! commands and replies into JSON. No HTTP inside: the HTTP edge authenticates and calls
//! `codec` and `execute`, and so can any other source of commands later (batch, consumers).
//!
//! Imports `shard`, `router::msg`, `protocol`, `config`, `metrics`, `limits`.

pub mod codec;
mod info;
mod publish;

use bytes::Bytes;

use crate::clock::unix_secs;
use crate::limits::{API_BATCH_COMMANDS_MAX, API_CHANNELS_PAGE_MAX};
use crate::protocol::ErrorCode;
use crate::router::msg::{
    ChannelsQuery, HistoryPage, HistoryQuery, Position, PresenceAnswer, PresenceItem, PresenceKind,
    PresenceStats, PublishOptions, UserAction, UserActionKind,
};
use crate::router::ChannelNames;

use crate::shard::{
    ChannelsAsk, ChannelsPage, HistoryAsk, PresenceAsk, PublishSent, RemoveAsk, Shard, StatsAsk,
    UserAsk,
};

pub use info::NodeInfo;

/// One server API command.
#[derive(Debug)]
pub enum ApiCommand {
    Publish {
        channel: String,
        data: Option<Bytes>,
        options: PublishOptions,
    },
    Broadcast {
        channels: ChannelNames,
        data: Option<Bytes>,
        options: PublishOptions,
    },
    History {
        channel: String,
        query: HistoryQuery,
    },
    HistoryRemove {
        channel: String,
    },
    /// `presence` (`List`) or `presence_stats` (`Stats`).
    Presence {
        channel: String,
        kind: PresenceKind,
    },
    Info,
    /// `disconnect`, `subscribe`, `unsubscribe` or `refresh`: an action on a user's
    /// connections on every shard.
    User(UserAction),
    /// A command whose parameters are refused (`code`) before it is sent anywhere.
    Refused {
        method: &'static str,
        code: ErrorCode,
    },
    /// Channels with subscribers on this node: those matching `pattern`, after `cursor`, at
    /// most `limit` (0: the most a page holds, `API_CHANNELS_PAGE_MAX`).
    Channels {
        pattern: Option<String>,
        cursor: Option<String>,
        limit: usize,
    },
    /// Commands in order (`parallel`: all sent at once, replies still in order). An entry
    /// that is not a command is its error.
    Batch {
        commands: Vec<Result<ApiCommand, ErrorCode>>,
        parallel: bool,
        /// The legacy `POST /api` form: the commands' ids (one per command), the replies
        /// encoded as its lines.
        legacy_ids: Option<Vec<u32>>,
    },
}

/// A publication's result: its position (if it has one) or an error.
pub type PublishResult = Result<Option<Position>, ErrorCode>;

/// What a command answers.
#[derive(Debug)]
pub enum ApiReply {
    Publish(PublishResult),
    /// One entry per requested channel, in request order.
    Broadcast(Result<Vec<PublishResult>, ErrorCode>),
    History(Result<HistoryPage, ErrorCode>),
    HistoryRemove(Result<(), ErrorCode>),
    Presence(Result<Vec<PresenceItem>, ErrorCode>),
    PresenceStats(Result<PresenceStats, ErrorCode>),
    /// A user action's reply (`{}`), once the user's connections on every shard applied it.
    User(Result<(), ErrorCode>),
    /// A command refused before it was sent anywhere (`ApiCommand::Refused`).
    Refused(ErrorCode),
    Channels(Result<ChannelsPage, ErrorCode>),
    /// Boxed: the counters make it the one large variant.
    Info(Result<Box<NodeInfo>, ErrorCode>),
    /// Each command's reply, in order (with the legacy form's ids, when it came so).
    Batch(Result<Vec<BatchReply>, ErrorCode>, Option<Vec<u32>>),
}

/// One command's reply in a batch: its method and reply, or the error of an entry that was
/// no command.
pub type BatchReply = Result<(&'static str, ApiReply), ErrorCode>;

/// A command that has been checked and sent to the shards that answer it.
pub enum Started {
    /// Answered without asking anyone (an invalid request).
    Ready(ApiReply),
    Publish(PublishSent),
    /// Entries for the channels refused up front, and the publish to the rest.
    Broadcast(Vec<PublishResult>, PublishSent),
    History(HistoryAsk),
    HistoryRemove(RemoveAsk),
    Presence(PresenceKind, PresenceAsk),
    User(UserAsk),
    Channels(ChannelsAsk, usize),
    Info(StatsAsk),
    /// A batch's commands: started already (parallel) or to run one after another (and the
    /// legacy form's ids).
    Batch(Vec<BatchEntry>, Option<Vec<u32>>),
}

/// One command of a batch on its way.
pub enum BatchEntry {
    Started(&'static str, Started),
    Waiting(ApiCommand),
    Refused(ErrorCode),
}

impl ApiCommand {
    /// Commands that bring new traffic in, held back while the node is congested.
    pub fn publishes(&self) -> bool {
        match self {
            ApiCommand::Publish { .. } | ApiCommand::Broadcast { .. } => true,
            ApiCommand::Batch { commands, .. } => commands
                .iter()
                .any(|c| c.as_ref().is_ok_and(ApiCommand::publishes)),
            _ => false,
        }
    }

    /// User actions (`disconnect`, `subscribe`, `unsubscribe`, `refresh`), answered once the
    /// user's connections applied them: what a pipelining client sends after one waits.
    pub fn acts_on_users(&self) -> bool {
        match self {
            ApiCommand::User(_) => true,
            ApiCommand::Batch { commands, .. } => commands
                .iter()
                .any(|c| c.as_ref().is_ok_and(ApiCommand::acts_on_users)),
            _ => false,
        }
    }

    /// The method's name (the key of its reply in a batch).
    pub fn method(&self) -> &'static str {
        match self {
            ApiCommand::Publish { .. } => "publish",
            ApiCommand::Broadcast { .. } => "broadcast",
            ApiCommand::History { .. } => "history",
            ApiCommand::HistoryRemove { .. } => "history_remove",
            ApiCommand::Presence {
                kind: PresenceKind::List,
                ..
            } => "presence",
            ApiCommand::Presence {
                kind: PresenceKind::Stats,
                ..
            } => "presence_stats",
            ApiCommand::Info => "info",
            ApiCommand::User(action) => match action.kind {
                UserActionKind::Disconnect { .. } => "disconnect",
                UserActionKind::Subscribe(_) => "subscribe",
                UserActionKind::Unsubscribe { .. } => "unsubscribe",
                UserActionKind::Refresh { .. } => "refresh",
            },
            ApiCommand::Refused { method, .. } => method,
            ApiCommand::Channels { .. } => "channels",
            ApiCommand::Batch { .. } => "batch",
        }
    }
}

/// Runs one command on `shard`: waits for room when it publishes, then `start`, `finish`.
pub async fn execute(shard: &Shard, command: ApiCommand) -> ApiReply {
    if command.publishes() {
        shard.wait_for_room().await;
    }
    let started = start(shard, command);
    finish(shard, started).await
}

/// The first half of `execute`: checks the command and sends it to its shards now, without
/// waiting, so that commands started in an order reach each owner in that order (a
/// connection's pipelined publishes to one channel keep their order).
pub fn start(shard: &Shard, command: ApiCommand) -> Started {
    match command {
        ApiCommand::Publish {
            channel,
            data,
            options,
        } => match publish::start_publish(shard, channel, data, options) {
            Ok(sent) => Started::Publish(sent),
            Err(code) => Started::Ready(ApiReply::Publish(Err(code))),
        },
        ApiCommand::Broadcast {
            channels,
            data,
            options,
        } => {
            shard.count_broadcast(channels.len());
            match publish::start_broadcast(shard, channels, data, &options) {
                Ok((entries, sent)) => Started::Broadcast(entries, sent),
                Err(code) => Started::Ready(ApiReply::Broadcast(Err(code))),
            }
        }
        ApiCommand::History { channel, query } => match check_channel(shard, &channel) {
            Ok(()) => Started::History(shard.send_history(&channel, query)),
            Err(code) => Started::Ready(ApiReply::History(Err(code))),
        },
        ApiCommand::HistoryRemove { channel } => match check_channel(shard, &channel) {
            Ok(()) => Started::HistoryRemove(shard.send_history_remove(&channel)),
            Err(code) => Started::Ready(ApiReply::HistoryRemove(Err(code))),
        },
        ApiCommand::Presence { channel, kind } => match check_presence(shard, &channel) {
            Ok(()) => Started::Presence(kind, shard.send_presence(&channel, kind)),
            Err(code) => Started::Ready(presence_reply(kind, Err(code))),
        },
        ApiCommand::Info => Started::Info(shard.send_stats_requests(false)),
        ApiCommand::User(action) => match check_user_action(shard, &action) {
            Ok(()) => Started::User(shard.send_user_action(action)),
            Err(code) => Started::Ready(ApiReply::User(Err(code))),
        },
        ApiCommand::Refused { code, .. } => Started::Ready(ApiReply::Refused(code)),
        ApiCommand::Channels {
            pattern,
            cursor,
            limit,
        } => {
            if pattern
                .as_deref()
                .is_some_and(|p| glob::Pattern::new(p).is_err())
            {
                return Started::Ready(ApiReply::Channels(Err(ErrorCode::BadRequest)));
            }
            let limit = match limit {
                0 => API_CHANNELS_PAGE_MAX,
                n => n.min(API_CHANNELS_PAGE_MAX),
            };
            let query = ChannelsQuery {
                pattern: pattern.filter(|p| !p.is_empty()).map(Into::into),
                after: cursor.filter(|c| !c.is_empty()).map(Into::into),
                limit,
            };
            Started::Channels(shard.send_channels(query), limit)
        }
        ApiCommand::Batch {
            commands,
            parallel,
            legacy_ids,
        } => {
            if commands.len() > API_BATCH_COMMANDS_MAX {
                return Started::Ready(ApiReply::Batch(Err(ErrorCode::BadRequest), legacy_ids));
            }
            let entries = commands
                .into_iter()
                .map(|command| match command {
                    Ok(command) if parallel => {
                        BatchEntry::Started(command.method(), start(shard, command))
                    }
                    Ok(command) => BatchEntry::Waiting(command),
                    Err(code) => BatchEntry::Refused(code),
                })
                .collect();
            Started::Batch(entries, legacy_ids)
        }
    }
}

/// The second half of `execute`: the answers, as the command's reply.
pub async fn finish(shard: &Shard, started: Started) -> ApiReply {
    match started {
        Started::Ready(reply) => reply,
        Started::Publish(sent) => ApiReply::Publish(publish::finish_publish(shard, sent).await),
        Started::Broadcast(entries, sent) => {
            ApiReply::Broadcast(Ok(publish::finish_broadcast(shard, entries, sent).await))
        }
        Started::History(ask) => ApiReply::History(shard.history_answer(ask).await),
        Started::HistoryRemove(ask) => {
            ApiReply::HistoryRemove(shard.history_remove_answer(ask).await)
        }
        Started::Presence(kind, ask) => presence_reply(kind, shard.presence_answer(ask).await),
        Started::User(ask) => ApiReply::User(shard.user_action_answer(ask).await),
        Started::Channels(ask, limit) => {
            ApiReply::Channels(shard.channels_answer(ask, limit).await)
        }
        Started::Info(ask) => ApiReply::Info(info::info(shard, ask).await.map(Box::new)),
        Started::Batch(entries, legacy_ids) => {
            let mut replies = Vec::with_capacity(entries.len());
            // Bounded by `API_BATCH_COMMANDS_MAX`; a batch holds no batch (the codec reads
            // none), so the recursion is one level deep.
            for entry in entries {
                replies.push(match entry {
                    BatchEntry::Started(method, started) => {
                        Ok((method, Box::pin(finish(shard, started)).await))
                    }
                    BatchEntry::Waiting(command) => {
                        let method = command.method();
                        Ok((method, Box::pin(execute(shard, command)).await))
                    }
                    BatchEntry::Refused(code) => Err(code),
                });
            }
            ApiReply::Batch(Ok(replies), legacy_ids)
        }
    }
}

/// The reply of a presence query of `kind`.
fn presence_reply(kind: PresenceKind, answer: Result<PresenceAnswer, ErrorCode>) -> ApiReply {
    match (kind, answer) {
        (PresenceKind::List, Ok(PresenceAnswer::List(items))) => ApiReply::Presence(Ok(items)),
        (PresenceKind::Stats, Ok(PresenceAnswer::Stats(stats))) => {
            ApiReply::PresenceStats(Ok(stats))
        }
        (PresenceKind::List, Err(code)) => ApiReply::Presence(Err(code)),
        (PresenceKind::Stats, Err(code)) => ApiReply::PresenceStats(Err(code)),
        // The owner answers the kind it was asked.
        (PresenceKind::List, Ok(_)) => ApiReply::Presence(Err(ErrorCode::Internal)),
        (PresenceKind::Stats, Ok(_)) => ApiReply::PresenceStats(Err(ErrorCode::Internal)),
    }
}

/// A presence query's channel: a valid name (107), a namespace (102), presence on (108).
fn check_presence(shard: &Shard, channel: &str) -> Result<(), ErrorCode> {
    check_channel(shard, channel)?;
    let options = shard
        .config
        .channel_options(channel)
        .ok_or(ErrorCode::UnknownChannel)?;
    if !options.presence {
        return Err(ErrorCode::NotAvailable);
    }
    Ok(())
}

/// A user action's channel, when it names one: a valid name (107) with a namespace (102);
/// `subscribe` needs one, `unsubscribe` without one leaves every channel.
fn check_user_action(shard: &Shard, action: &UserAction) -> Result<(), ErrorCode> {
    let channel = match &action.kind {
        UserActionKind::Subscribe(sub) if sub.expire_at.is_some_and(|at| at <= unix_secs()) => {
            // Expired before it began (Centrifugo refuses it too).
            return Err(ErrorCode::Expired);
        }
        UserActionKind::Subscribe(sub) => Some(&*sub.channel),
        UserActionKind::Unsubscribe { channel } if !channel.is_empty() => Some(&**channel),
        _ => None,
    };
    if let Some(channel) = channel {
        check_channel(shard, channel)?;
        shard
            .config
            .channel_options(channel)
            .ok_or(ErrorCode::UnknownChannel)?;
    }
    Ok(())
}

/// 107 for an empty or too long channel name.
fn check_channel(shard: &Shard, channel: &str) -> Result<(), ErrorCode> {
    if channel.is_empty() || channel.len() > shard.config.channel.max_length {
        Err(ErrorCode::BadRequest)
    } else {
        Ok(())
    }
}
