//! Publishing: a client's publish and the API's publish/broadcast route to the channels'
//! owners (one ring message per owner shard, not per channel); the owner's work
//! (`run_publish`) assigns offsets through the engine, encodes each publication's frame once
//! and fans it out to the shards with subscribers, or holds it until its record is synced
//! (`history_fsync = always`), then answers whoever waits.

use std::sync::Arc;

use bytes::Bytes;

use super::ask::Ask;
use super::Shard;
use crate::clock::unix_ms;
use crate::engine::{Outcome, PublishInput, Release, ShardSet};
use crate::fanout::frames;
use crate::limits::HELD_BATCHES_HIGH;
use crate::router::msg::{
    ConnAnswer, ConnRef, Excluded, Position, PublishJob, PublishOptions, PublishReply, Published,
    ReplyTo,
};
use crate::router::{ChannelList, ChannelNames, ShardMsg};

/// A publish sent to its owners, waiting for their answers.
pub struct PublishSent {
    ask: Ask<Vec<Published>>,
    owners: usize,
}

/// Publications whose records wait to be durable: delivered and answered, in order, once the
/// sync that covers them completes.
pub(super) struct Held {
    pub outcomes: Vec<Outcome>,
    pub answers: Vec<Published>,
    pub reply: PublishReply,
    pub exclude: Option<Excluded>,
}

impl Shard {
    /// A client's publish: the owner answers the connection's command when the publication is
    /// accepted (order per connection holds because the ring to the owner is FIFO).
    pub fn publish_from_connection(
        &self,
        channel: &str,
        data: Bytes,
        info: Option<Bytes>,
        conn: u64,
        command: u32,
    ) {
        let job = PublishJob {
            channels: ChannelList::one(channel),
            data,
            info,
            options: PublishOptions::default(),
            reply: PublishReply::Conn(ConnRef {
                shard: self.id,
                conn,
                command,
            }),
        };
        self.to_owner(channel, ShardMsg::Publish(Box::new(job)));
    }

    /// Sends a publish's jobs to the owners now, in the order of the calls (one job per owner
    /// shard; this shard's last), without waiting for room (the caller waited). Names `keep`
    /// refuses (by index and name) are left out.
    pub fn send_publish(
        &self,
        channels: ChannelNames,
        mut keep: impl FnMut(u32, &str) -> bool,
        data: Bytes,
        options: &PublishOptions,
    ) -> PublishSent {
        let mut by_owner: Vec<Option<ChannelList>> = channels
            .split(self.count, |index, channel| {
                keep(index, channel).then(|| self.owner_of(channel))
            })
            .into_iter()
            .map(|list| (!list.is_empty()).then_some(list))
            .collect();
        let owners = by_owner.iter().flatten().count();
        let ask = self.published.open(owners);
        // This shard's own share runs inline (`to_shard`), so the other owners get theirs
        // first and work on them meanwhile.
        let order = (0..self.count).filter(|&o| o != self.id).chain([self.id]);
        for owner in order {
            let Some(channels) = by_owner[owner].take() else {
                continue;
            };
            let job = self.api_job(channels, data.clone(), options.clone(), ask.id);
            self.to_shard(owner, ShardMsg::Publish(Box::new(job)));
        }
        PublishSent { ask, owners }
    }

    /// `send_publish` for one channel (the API's `publish`): one job to its owner.
    pub fn send_publish_one(
        &self,
        channel: &str,
        data: Bytes,
        options: PublishOptions,
    ) -> PublishSent {
        let ask = self.published.open(1);
        let job = self.api_job(ChannelList::one(channel), data, options, ask.id);
        self.to_owner(channel, ShardMsg::Publish(Box::new(job)));
        PublishSent { ask, owners: 1 }
    }

    /// An API publish's job for one owner, answered to `request` on this shard.
    fn api_job(
        &self,
        channels: ChannelList,
        data: Bytes,
        options: PublishOptions,
        request: u64,
    ) -> PublishJob {
        PublishJob {
            channels,
            data,
            info: None,
            options,
            reply: PublishReply::Api(ReplyTo {
                shard: self.id,
                request,
            }),
        }
    }

    /// The owners' answers to `send_publish`.
    pub async fn publish_answers(&self, sent: PublishSent) -> (Vec<Published>, bool) {
        let mut results = Vec::new();
        for _ in 0..sent.owners {
            match self.published.next(&sent.ask).await {
                Some(more) => results.extend(more),
                None => return (results, false),
            }
        }
        self.published.close(&sent.ask);
        (results, true)
    }

    /// Owner work for a publish job.
    pub(super) fn run_publish(&self, job: PublishJob) {
        if self.redis().is_some() {
            return self.run_publish_redis(job);
        }
        let mut answers = Vec::with_capacity(job.channels.len());
        let mut held = Vec::new();
        // Delivered once the job's records are in the files (`land`): a process killed then
        // cannot have delivered what its log lost.
        let mut ready = Vec::new();
        let time_ms = unix_ms();
        for (index, channel) in job.channels.iter() {
            if self.hooks.panic_channel.as_deref() == Some(channel) {
                panic!("RINGCAST_TEST_PANIC_CHANNEL: publishing to {channel:?}");
            }
            let key = job.options.idempotency_key.as_deref();
            if let Some(first) =
                key.and_then(|key| self.idempotent.borrow_mut().get(channel, key, time_ms))
            {
                // A repeat within the window: the first result, nothing published.
                answers.push(Published {
                    index,
                    result: Ok(first),
                });
                continue;
            }
            let input = PublishInput {
                data: &job.data,
                info: job.info.as_ref(),
                tags: job.options.tags.as_ref(),
                skip_history: job.options.skip_history,
                time_ms,
            };
            let result = self.engine.borrow_mut().publish(channel, input);
            let result = result.map(|outcome| {
                self.publications.set(self.publications.get() + 1);
                let position = outcome.publication.offset.map(|offset| Position {
                    offset,
                    epoch: outcome.epoch.clone(),
                });
                match outcome.release {
                    Release::Now if outcome.shards.is_empty() => {}
                    Release::Now => ready.push(outcome),
                    Release::AfterSync => held.push(outcome),
                }
                if let Some(key) = key {
                    self.idempotent
                        .borrow_mut()
                        .insert(channel, key, position.clone(), time_ms);
                }
                position
            });
            answers.push(Published { index, result });
        }
        // The records reach the files before anyone hears of them.
        self.engine.borrow_mut().land();
        for outcome in ready {
            let shards = outcome.shards;
            self.fan_out(outcome, shards, job.options.exclude);
        }
        if held.is_empty() {
            self.send_published(job.reply, answers);
            return;
        }
        let mut queue = self.held.borrow_mut();
        queue.push_back(Held {
            outcomes: held,
            answers,
            reply: job.reply,
            exclude: job.options.exclude,
        });
        if queue.len() > HELD_BATCHES_HIGH {
            // A slow disk: hold the node's intake until the syncer catches up.
            self.outbox.borrow_mut().set_held_pressure(true);
        }
        drop(queue);
        // Full means a ring is already pending: the syncer takes everything held.
        let _ = self.sync_bell.try_send(());
    }

    /// Answers a publish job's caller.
    pub(super) fn send_published(&self, reply: PublishReply, results: Vec<Published>) {
        match reply {
            PublishReply::Api(reply) => self.to_shard(
                reply.shard,
                ShardMsg::Published {
                    request: reply.request,
                    results,
                },
            ),
            PublishReply::Nobody => {}
            PublishReply::Conn(conn) => {
                let result = match results.first().map(|p| &p.result) {
                    Some(Err(code)) => Err(*code),
                    _ => Ok(()),
                };
                self.to_shard(
                    conn.shard,
                    ShardMsg::ConnAnswer {
                        conn: conn.conn,
                        command: conn.command,
                        answer: Box::new(ConnAnswer::Publish(result)),
                    },
                );
            }
        }
    }

    /// Encodes one publication's frame once and sends it to `shards`.
    pub(super) fn fan_out(&self, outcome: Outcome, shards: ShardSet, exclude: Option<Excluded>) {
        if shards.is_empty() {
            return;
        }
        let Some(channel) = outcome.channel else {
            debug_assert!(false, "an outcome with subscribers carries its channel");
            return;
        };
        let delivery = Arc::new(frames::delivery(channel, outcome.publication, exclude));
        for shard in shards.iter() {
            self.to_shard(shard, ShardMsg::Deliver(delivery.clone()));
        }
    }
}
