//! Presence: a subscriber's entry goes to its channel's owner once it joined, and leaves
//! when it does (for any reason: unsubscribe, disconnect, a cut slow consumer, a dead
//! socket, all end in `Shard::unsubscribe`); the owner announces joins and leaves to the
//! shards with subscribers (one frame, encoded once) and answers presence queries: a
//! client's straight to its connection's shard, the API's awaited here.

use std::sync::Arc;

use bytes::Bytes;

use super::ask::Ask;
use super::Shard;
use crate::engine::redis::JoinLeaveKind;
use crate::engine::Joined;
use crate::framing::Framing;
use crate::limits::PRESENCE_REPLY_ENTRIES_MAX;
use crate::protocol::json::encode;
use crate::protocol::{ClientId, ErrorCode};
use crate::router::msg::{
    ConnAnswer, ConnRef, JoinLeave, PresenceAnswer, PresenceItem, PresenceJob, PresenceJoin,
    PresenceKind, PresenceReplyTo, ReplyTo,
};
use crate::router::ShardMsg;

/// A presence query sent to its owner.
pub type PresenceAsk = Ask<Result<PresenceAnswer, ErrorCode>>;

impl Shard {
    /// Owner work: records an entry, and announces it when the channel announces joins.
    pub(super) fn run_presence_join(&self, join: PresenceJoin) {
        // The ClientInfo a join push would carry, made before the entry moves into the table.
        let info = join.join_leave.then(|| client_info(&join.item));
        if self.redis().is_some() {
            // With the Redis engine the entry goes to Redis too.
            self.share_presence(
                join.channel.clone(),
                Some(join.item.clone()),
                join.item.client,
            );
        }
        let joined =
            self.engine
                .borrow_mut()
                .presence_add(&join.channel, join.item, join.join_leave);
        match (joined, info) {
            (Joined::Added { join_leave: true }, Some(info)) => {
                self.announce(join.channel, JoinLeaveKind::Join, info)
            }
            (Joined::Full, _) => self.presence_full.set(self.presence_full.get() + 1),
            _ => {}
        }
    }

    /// Owner work: removes an entry, announcing the leave when its join was announced.
    pub(super) fn run_presence_leave(&self, channel: Arc<str>, client: ClientId) {
        if self.redis().is_some() {
            self.share_presence(channel.clone(), None, client);
        }
        let left = self.engine.borrow_mut().presence_remove(&channel, client);
        if let Some((item, true)) = left {
            self.announce(channel, JoinLeaveKind::Leave, client_info(&item));
        }
    }

    /// A join or leave of ClientInfo `info`: pushed to this node's shards with subscribers,
    /// or with the Redis engine published on the channel's pub/sub, from which every node's
    /// owner (this one too) pushes it.
    fn announce(&self, channel: Arc<str>, kind: JoinLeaveKind, info: Vec<u8>) {
        if self.redis().is_some() {
            self.share_join_leave(channel, kind, info);
        } else {
            let frame = join_leave_frame(&channel, kind.as_str(), &info);
            self.push_join_leave(channel, frame);
        }
    }

    /// Sends a join or leave push to every shard with subscribers of the channel.
    pub(super) fn push_join_leave(&self, channel: Arc<str>, frame: Bytes) {
        let shards = match self.redis() {
            Some(redis) => redis.subscribers(&channel),
            None => self.engine.borrow().subscribers(&channel),
        };
        let event = Arc::new(JoinLeave { channel, frame });
        for shard in shards.iter() {
            self.to_shard(shard, ShardMsg::JoinLeave(event.clone()));
        }
    }

    /// A subscriber of this shard left `channel`: its entry leaves the owner's presence.
    pub(super) fn leave_presence(&self, channel: &str, client: ClientId) {
        let msg = ShardMsg::PresenceLeave {
            channel: channel.into(),
            client: Box::new(client),
        };
        self.to_owner(channel, msg);
    }

    /// A client's `presence` or `presence_stats`: the owner answers to connection `conn`'s
    /// command.
    pub fn presence_for_connection(
        &self,
        channel: &str,
        kind: PresenceKind,
        conn: u64,
        command: u32,
    ) {
        let reply = PresenceReplyTo::Conn(ConnRef {
            shard: self.id,
            conn,
            command,
        });
        self.ask_presence(channel, kind, reply);
    }

    /// The API's `presence` or `presence_stats`, sent to the owner now.
    pub fn send_presence(&self, channel: &str, kind: PresenceKind) -> PresenceAsk {
        let ask = self.presences.open(1);
        let reply = PresenceReplyTo::Api(ReplyTo {
            shard: self.id,
            request: ask.id,
        });
        self.ask_presence(channel, kind, reply);
        ask
    }

    /// The owner's answer to `send_presence` (100 if it did not answer in time).
    pub async fn presence_answer(&self, ask: PresenceAsk) -> Result<PresenceAnswer, ErrorCode> {
        let answer = self.presences.next(&ask).await;
        self.presences.close(&ask);
        answer.unwrap_or(Err(ErrorCode::Internal))
    }

    fn ask_presence(&self, channel: &str, kind: PresenceKind, reply: PresenceReplyTo) {
        let job = PresenceJob {
            channel: channel.into(),
            kind,
            reply,
        };
        self.to_owner(channel, ShardMsg::Presence(Box::new(job)));
    }

    /// Owner work: answers a presence query. A list longer than `PRESENCE_REPLY_ENTRIES_MAX`
    /// is refused with 106 (the counts are always answered).
    pub(super) fn run_presence(&self, job: PresenceJob) {
        if self.redis().is_some() {
            return self.run_presence_redis(job);
        }
        let result = {
            let engine = self.engine.borrow();
            let stats = engine.presence_stats(&job.channel);
            match job.kind {
                PresenceKind::Stats => Ok(PresenceAnswer::Stats(stats)),
                PresenceKind::List if stats.num_clients as usize > PRESENCE_REPLY_ENTRIES_MAX => {
                    Err(ErrorCode::LimitExceeded)
                }
                PresenceKind::List => Ok(PresenceAnswer::List(engine.presence(&job.channel))),
            }
        };
        self.answer_presence(job.reply, result);
    }

    /// Sends a presence query's result to whoever asked.
    pub(super) fn answer_presence(
        &self,
        reply: PresenceReplyTo,
        result: Result<PresenceAnswer, ErrorCode>,
    ) {
        match reply {
            PresenceReplyTo::Conn(to) => self.to_shard(
                to.shard,
                ShardMsg::ConnAnswer {
                    conn: to.conn,
                    command: to.command,
                    answer: Box::new(ConnAnswer::Presence(result)),
                },
            ),
            PresenceReplyTo::Api(to) => self.to_shard(
                to.shard,
                ShardMsg::PresenceAnswer {
                    request: to.request,
                    result: Box::new(result),
                },
            ),
        }
    }
}

/// The ClientInfo of a presence entry, raw JSON.
pub fn client_info(item: &PresenceItem) -> Vec<u8> {
    let infos = item.infos.as_deref();
    encode::client_info(
        &item.user,
        &item.client.to_string(),
        infos.and_then(|i| i.conn_info.as_deref()),
        infos.and_then(|i| i.chan_info.as_deref()),
    )
}

/// A join or leave push of the ClientInfo `info` (raw JSON), in the common (JSON, WebSocket)
/// form.
pub(super) fn join_leave_frame(channel: &str, kind: &str, info: &[u8]) -> Bytes {
    let mut json = Vec::new();
    encode::join_leave_push(&mut json, channel, kind, info);
    Framing::WebSocket.message(&json)
}
