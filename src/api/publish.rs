//! `publish` and `broadcast`: validated here (channel names, data present and not nested
//! deeper than `JSON_DEPTH_MAX`), sent to the channels' owners through the shard, and their
//! answers gathered into the reply.

use bytes::Bytes;

use super::{check_channel, PublishResult};
use crate::limits::JSON_DEPTH_MAX;
use crate::protocol::json::decode;
use crate::protocol::ErrorCode;
use crate::router::msg::PublishOptions;
use crate::router::ChannelNames;
use crate::shard::{PublishSent, Shard};

/// The data of a publication, or 107 if it is missing or nested too deep.
fn check_payload(data: Option<Bytes>, tags: &Option<Bytes>) -> Result<Bytes, ErrorCode> {
    let data = data.ok_or(ErrorCode::BadRequest)?;
    let shallow = decode::depth_within(&data, JSON_DEPTH_MAX)
        && tags
            .as_ref()
            .is_none_or(|tags| decode::depth_within(tags, JSON_DEPTH_MAX));
    if !shallow {
        return Err(ErrorCode::BadRequest);
    }
    Ok(data)
}

pub fn start_publish(
    shard: &Shard,
    channel: String,
    data: Option<Bytes>,
    options: PublishOptions,
) -> Result<PublishSent, ErrorCode> {
    check_channel(shard, &channel)?;
    let data = check_payload(data, &options.tags)?;
    Ok(shard.send_publish_one(&channel, data, options))
}

pub async fn finish_publish(shard: &Shard, sent: PublishSent) -> PublishResult {
    let (results, complete) = shard.publish_answers(sent).await;
    match results.into_iter().next() {
        Some(published) if complete => published.result,
        _ => Err(ErrorCode::Internal),
    }
}

/// One entry per requested channel, in request order: an error for bad names now, the rest
/// sent to their owners.
pub fn start_broadcast(
    shard: &Shard,
    channels: ChannelNames,
    data: Option<Bytes>,
    options: &PublishOptions,
) -> Result<(Vec<PublishResult>, PublishSent), ErrorCode> {
    if channels.is_empty() {
        return Err(ErrorCode::BadRequest);
    }
    let data = check_payload(data, &options.tags)?;
    let mut entries: Vec<PublishResult> = vec![Err(ErrorCode::Internal); channels.len()];
    let keep = |index: u32, channel: &str| match check_channel(shard, channel) {
        Err(code) => {
            entries[index as usize] = Err(code);
            false
        }
        Ok(()) => true,
    };
    let sent = shard.send_publish(channels, keep, data, options);
    Ok((entries, sent))
}

/// The owners' answers into the entries. An owner that did not answer in time leaves its
/// channels' entries as internal errors; answers that did arrive are reported as they are.
pub async fn finish_broadcast(
    shard: &Shard,
    mut entries: Vec<PublishResult>,
    sent: PublishSent,
) -> Vec<PublishResult> {
    let (results, _complete) = shard.publish_answers(sent).await;
    for published in results {
        entries[published.index as usize] = published.result;
    }
    entries
}
