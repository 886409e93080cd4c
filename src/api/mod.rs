//! The server API as typed commands (`ApiCommand`), executed against the shard (`execute`)
//! into typed replies (`ApiReply`); `codec` turns Centrifugo's JSON request bodies into
//! commands and replies into JSON. No HTTP inside: the HTTP edge authenticates and calls
//! `codec` and `execute`, and so can any other source of commands later (batch, consumers).
//!
//! Imports `shard`, `router::msg`, `protocol`, `config`, `metrics`, `limits`.

pub mod codec;
mod history;
mod info;
mod publish;

use bytes::Bytes;

use crate::protocol::ErrorCode;
use crate::router::msg::{HistoryPage, HistoryQuery, Position};
use crate::shard::Shard;

pub use info::NodeInfo;

/// One server API command.
#[derive(Debug)]
pub enum ApiCommand {
    Publish {
        channel: String,
        data: Option<Bytes>,
        tags: Option<Bytes>,
        skip_history: bool,
    },
    Broadcast {
        channels: Vec<String>,
        data: Option<Bytes>,
        tags: Option<Bytes>,
        skip_history: bool,
    },
    History {
        channel: String,
        query: HistoryQuery,
    },
    HistoryRemove {
        channel: String,
    },
    Info,
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
    Info(Result<NodeInfo, ErrorCode>),
}

/// Runs one command on `shard`.
pub async fn execute(shard: &Shard, command: ApiCommand) -> ApiReply {
    match command {
        ApiCommand::Publish {
            channel,
            data,
            tags,
            skip_history,
        } => ApiReply::Publish(publish::publish(shard, channel, data, tags, skip_history).await),
        ApiCommand::Broadcast {
            channels,
            data,
            tags,
            skip_history,
        } => {
            ApiReply::Broadcast(publish::broadcast(shard, channels, data, tags, skip_history).await)
        }
        ApiCommand::History { channel, query } => {
            ApiReply::History(history::history(shard, &channel, query).await)
        }
        ApiCommand::HistoryRemove { channel } => {
            ApiReply::HistoryRemove(history::remove(shard, &channel).await)
        }
        ApiCommand::Info => ApiReply::Info(info::info(shard).await),
    }
}

/// 107 for an empty or too long channel name.
fn check_channel(shard: &Shard, channel: &str) -> Result<(), ErrorCode> {
    if channel.is_empty() || channel.len() > shard.config.channel.max_length {
        Err(ErrorCode::BadRequest)
    } else {
        Ok(())
    }
}
