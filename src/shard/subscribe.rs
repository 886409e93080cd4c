//! Subscribing: the hub decides whether the subscriber joins at once or asks the owner; the
//! owner's step (register + recover, DESIGN invariant 3) and its answer travel on the same
//! FIFO ring as the channel's deliveries.

use std::sync::Arc;

use super::Shard;
use crate::fanout::hub::Settled;
use crate::fanout::{PendingSubscription, SubscribeStep};
use crate::protocol::{ClientId, ErrorCode};
use crate::router::msg::{RecoverFrom, Recovery, StreamTop, SubscribeAnswer, SubscribeJob};
use crate::router::ShardMsg;

impl Shard {
    /// Subscribes a connection. The reply is queued on the connection when the subscriber
    /// joins: at once if this shard already receives the channel and no recovery is asked,
    /// else when the owner's answer arrives (before any delivery it did not include).
    pub fn subscribe(&self, channel: &str, sub: PendingSubscription, recover: Option<RecoverFrom>) {
        let step = self.hub.borrow_mut().subscribe(channel, sub);
        self.settle();
        let SubscribeStep::AskOwner {
            name,
            register,
            ticket,
        } = step
        else {
            return;
        };
        let job = SubscribeJob {
            channel: name,
            from: self.id,
            register,
            ticket,
            recover,
        };
        self.to_owner(channel, ShardMsg::Subscribe(Box::new(job)));
    }

    /// Ends a connection's subscription (joined or waiting). `presence_client`: the client, when
    /// the subscription has a presence entry (presence or join/leave on), which leaves the
    /// owner's presence if the subscriber had joined.
    pub fn unsubscribe(&self, channel: &str, conn_id: u64, presence_client: Option<ClientId>) {
        let done = self.hub.borrow_mut().unsubscribe(channel, conn_id);
        self.settle();
        if let (true, Some(client)) = (done.joined, presence_client) {
            // Before the shard's own leave: the owner still sends this shard the push.
            self.leave_presence(channel, client);
        }
        if done.last {
            self.leave_owner(channel.into());
        }
    }

    /// Owner work: one subscription step, answered to the subscriber's shard.
    pub(super) fn run_subscribe(&self, job: SubscribeJob) {
        if self.redis().is_some() {
            return self.run_subscribe_redis(job);
        }
        let (result, recovery) = self.engine.borrow_mut().subscribe(
            &job.channel,
            job.from,
            job.register,
            job.recover.as_ref(),
        );
        self.answer_subscribe(job, result, recovery);
    }

    /// Sends a subscription step's answer to the subscriber's shard.
    pub(super) fn answer_subscribe(
        &self,
        job: SubscribeJob,
        result: Result<StreamTop, ErrorCode>,
        recovery: Option<Recovery>,
    ) {
        let answer = SubscribeAnswer {
            channel: job.channel,
            registration: job.register,
            ticket: job.ticket,
            result,
            recovery,
        };
        self.to_shard(job.from, ShardMsg::Subscribed(Box::new(answer)));
    }

    pub(super) fn apply_subscribed(&self, answer: SubscribeAnswer) {
        let left = self.hub.borrow_mut().subscribed(answer);
        self.settle();
        if let Some(channel) = left {
            self.leave_owner(channel);
        }
    }

    /// Hands on what the hub settled (after every `Hub::subscribe`, `subscribed` and
    /// `unsubscribe`): the presence entries of subscribers that joined to their channels'
    /// owners, the acks of API subscriptions settled to the calls waiting.
    fn settle(&self) {
        let Settled { joined, acked } = self.hub.borrow_mut().take_settled();
        for join in joined {
            let channel = join.channel.clone();
            self.to_owner(&channel, ShardMsg::PresenceJoin(join));
        }
        for ack in acked {
            self.directive_done(Some(ack));
        }
    }

    /// Tells the owner this shard has no subscriber of `channel` any more.
    fn leave_owner(&self, channel: Arc<str>) {
        let owner = self.owner_of(&channel);
        self.to_shard(
            owner,
            ShardMsg::Unsubscribe {
                channel,
                from: self.id,
            },
        );
    }
}
