//! The one path from this shard to any shard: a call when the target is this shard, a ring
//! message (through the outbox, FIFO per destination) otherwise.

use super::{Origin, Shard};
use crate::router::{owner_of, ShardMsg};

impl Shard {
    /// Sends `msg` to shard `to`: handled now if that is this shard, else queued for it.
    pub(super) fn to_shard(&self, to: usize, msg: ShardMsg) {
        if to == self.id {
            self.handle(msg, Origin::Local);
        } else {
            self.outbox.borrow_mut().send(to, msg);
        }
    }

    /// Sends `msg` to the owner of `channel`.
    pub(super) fn to_owner(&self, channel: &str, msg: ShardMsg) {
        self.to_shard(owner_of(channel, self.count), msg);
    }

    /// The shard that owns `channel`.
    pub(super) fn owner_of(&self, channel: &str) -> usize {
        owner_of(channel, self.count)
    }
}
