//! Who is online on this node. Each shard tells a user's owner shard (the partition hash of
//! the user's name, as for channels) when its first connection of the user opens and when
//! its last one closes; the owner counts the shards holding the user (`OnlineUsers`). So
//! the node counts each user once (`info`'s `num_users`), and with `user_status.channel` the
//! owner publishes the user's transitions there as `{"user":U,"status":"online"}` (at once)
//! and `{"user":U,"status":"offline"}` (`user_status.debounce` after the last connection
//! closed, unless one opened meanwhile: then no event at all). Anonymous connections count
//! as the one user `""`, which has no events.

use std::collections::VecDeque;
use std::hash::RandomState;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hashbrown::HashMap;

use super::Shard;
use crate::clock::Millis;
use crate::protocol::json::encode;
use crate::protocol::{ClientId, Disconnect, Refusal};
use crate::router::msg::{
    ClientFilter, PublishJob, PublishOptions, PublishReply, UserAction, UserActionKind,
};
use crate::router::{ChannelList, ShardMsg};

/// The users this shard owns that are online, and those whose offline event waits; with
/// `client.user_connection_limit`, how many connections each has on the node.
#[derive(Debug)]
pub struct OnlineUsers {
    /// Connections per user over the node (only with a user connection limit).
    connections: HashMap<Arc<str>, u32, RandomState>,
    /// Online users and how many shards hold a connection of each (at least 1). The name
    /// is the session's own allocation, shared: an entry costs its bucket, 24 bytes.
    users: HashMap<Arc<str>, u32, RandomState>,
    /// The users queued in `pending`: when their offline event is due, or `None` when they
    /// came back meanwhile (the event is off; the entry goes when its time comes).
    waiting: HashMap<Arc<str>, Option<Millis>, RandomState>,
    /// The same users by due time (the debounce is one for all, so oldest first), each once:
    /// one whose wait restarted is queued again at its new time when the old one comes.
    pending: VecDeque<(Millis, Arc<str>)>,
}

impl Default for OnlineUsers {
    fn default() -> Self {
        OnlineUsers {
            connections: HashMap::with_hasher(RandomState::new()),
            users: HashMap::with_hasher(RandomState::new()),
            waiting: HashMap::with_hasher(RandomState::new()),
            pending: VecDeque::new(),
        }
    }
}

impl OnlineUsers {
    /// A shard opened its first connection of `user`; true when the user came online (no
    /// connection anywhere before, and none closed within the debounce).
    pub fn connected(&mut self, user: &Arc<str>) -> bool {
        if let Some(shards) = self.users.get_mut(&**user) {
            *shards += 1;
            return false;
        }
        self.users.insert(user.clone(), 1);
        match self.waiting.get_mut(&**user) {
            // Back within the debounce: its offline event is off, and there is no online one.
            Some(due) => {
                *due = None;
                false
            }
            None => true,
        }
    }

    /// A shard closed its last connection of `user`. With `debounce` (events wanted) the
    /// offline event waits that long; returns true when it is due at once.
    pub fn disconnected(&mut self, user: &str, now: Millis, debounce: Option<Duration>) -> bool {
        let Some((name, shards)) = self.users.get_key_value_mut(user) else {
            debug_assert!(
                false,
                "a shard's last connection of a user it never announced"
            );
            return false;
        };
        debug_assert!(*shards > 0);
        *shards -= 1;
        if *shards > 0 {
            return false;
        }
        let name = name.clone();
        self.users.remove(user);
        match debounce {
            Some(wait) if !wait.is_zero() => {
                let due = now.after(wait);
                // Queued already (it left, came back and left again within the debounce):
                // the entry moves to the new time when the old one comes.
                if self.waiting.insert(name.clone(), Some(due)).is_none() {
                    self.pending.push_back((due, name));
                }
                false
            }
            events => events.is_some(),
        }
    }

    /// The users whose offline event is due at `now` (they are forgotten).
    pub fn due(&mut self, now: Millis) -> Vec<Arc<str>> {
        let mut due = Vec::new();
        // Bounded by the users queued: each pass takes one off (and puts back only a user
        // whose time moved past `now`).
        while let Some((at, _)) = self.pending.front() {
            if *at > now {
                break;
            }
            let Some((at, user)) = self.pending.pop_front() else {
                break;
            };
            match self.waiting.get(&*user).copied() {
                Some(Some(when)) if when <= at => {
                    self.waiting.remove(&*user);
                    due.push(user);
                }
                // Its wait restarted, at a later time than any queued before it.
                Some(Some(when)) => self.pending.push_back((when, user)),
                // It came back and stayed.
                Some(None) => {
                    self.waiting.remove(&*user);
                }
                None => debug_assert!(false, "every queued user is waiting"),
            }
        }
        debug_assert_eq!(self.pending.len(), self.waiting.len());
        due
    }

    /// A connection of `user` opened (`opened`) or closed; the user's connections now.
    pub fn count_connection(&mut self, user: &Arc<str>, opened: bool) -> u32 {
        if opened {
            let count = self.connections.entry(user.clone()).or_default();
            *count += 1;
            return *count;
        }
        let Some(count) = self.connections.get_mut(&**user) else {
            return 0;
        };
        *count = count.saturating_sub(1);
        let now = *count;
        if now == 0 {
            self.connections.remove(&**user);
        }
        now
    }

    /// Users with a connection open somewhere on the node, among those this shard owns.
    pub fn count(&self) -> usize {
        self.users.len()
    }
}

impl Shard {
    /// This shard opened its first connection of `user` (`true`) or closed its last
    /// (`false`): its owner hears of it.
    pub(super) fn announce_user(&self, user: &Arc<str>, online: bool) {
        let msg = ShardMsg::UserSeen {
            user: user.clone(),
            online,
        };
        self.to_owner(user, msg);
    }

    /// Owner work: a shard's first or last connection of `user`.
    pub(super) fn run_user_seen(&self, user: Arc<str>, online: bool) {
        let events = !self.config.user_status.channel.is_empty() && !user.is_empty();
        if online {
            if self.online.borrow_mut().connected(&user) && events {
                self.publish_user_status(&user, "online");
            }
            return;
        }
        let debounce = events.then(|| {
            self.config
                .user_status
                .debounce
                .positive()
                .unwrap_or(Duration::ZERO)
        });
        let now = Millis::now();
        if self.online.borrow_mut().disconnected(&user, now, debounce) {
            self.publish_user_status(&user, "offline");
        }
    }

    /// With `client.user_connection_limit`: tells the user's owner that a connection opened
    /// or closed.
    pub(super) fn count_user_connection(&self, user: &Arc<str>, client: ClientId, opened: bool) {
        if self.config.client.user_connection_limit == 0 || user.is_empty() {
            return;
        }
        let msg = ShardMsg::UserConnection {
            user: user.clone(),
            client: Box::new(client),
            opened,
        };
        self.to_owner(user, msg);
    }

    /// Owner work: counts a user's connections over the node; one past the limit is closed
    /// with 3504 (a connection the opening shard could not see past it: the others were on
    /// other shards).
    pub(super) fn run_user_connection(&self, user: Arc<str>, client: ClientId, opened: bool) {
        let count = self.online.borrow_mut().count_connection(&user, opened);
        let limit = self.config.client.user_connection_limit;
        if opened && count as usize > limit {
            self.count_refusal(Refusal::UserConnectionLimit);
            self.tell_user_action(UserAction {
                user: user.as_ref().into(),
                client: ClientFilter::Only(client),
                session: None,
                kind: UserActionKind::Disconnect {
                    code: Disconnect::ConnectionLimit.code(),
                    reason: Disconnect::ConnectionLimit.reason().into(),
                    whitelist: Vec::new(),
                },
            });
        }
    }

    /// Publishes the offline events that came due (the ticker calls this each tick).
    pub(super) fn publish_due_offline(&self, now: Millis) {
        let due = self.online.borrow_mut().due(now);
        for user in due {
            self.publish_user_status(&user, "offline");
        }
    }

    fn publish_user_status(&self, user: &str, status: &str) {
        let channel = &self.config.user_status.channel;
        let mut data = Vec::with_capacity(32 + user.len());
        data.extend_from_slice(b"{\"user\":");
        encode::put_str(&mut data, user);
        data.extend_from_slice(b",\"status\":");
        encode::put_str(&mut data, status);
        data.push(b'}');
        let job = PublishJob {
            channels: ChannelList::one(channel),
            data: Bytes::from(data),
            info: None,
            options: PublishOptions::default(),
            reply: PublishReply::Nobody,
        };
        self.to_owner(channel, ShardMsg::Publish(Box::new(job)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_is_online_while_any_shard_holds_them_and_offline_after_the_debounce() {
        let mut users = OnlineUsers::default();
        let u: Arc<str> = "u".into();
        let wait = Some(Duration::from_millis(100));
        let t0 = Millis::now();
        assert!(users.connected(&u), "first connection: online");
        assert!(!users.connected(&u), "a second shard: no event");
        assert_eq!(users.count(), 1);
        assert!(!users.disconnected("u", t0, wait));
        assert_eq!(users.count(), 1, "still on one shard");
        assert!(!users.disconnected("u", t0, wait), "offline waits");
        assert_eq!(users.count(), 0);
        // Back within the debounce: no events at all.
        assert!(!users.connected(&u));
        assert!(users.due(t0.after(Duration::from_millis(200))).is_empty());
        // Gone for good: offline once due, not before.
        assert!(!users.disconnected("u", t0, wait));
        assert!(users.due(t0.after(Duration::from_millis(50))).is_empty());
        assert_eq!(
            users.due(t0.after(Duration::from_millis(100))),
            vec![u.clone()]
        );
        assert!(users.connected(&u), "online again after it");
        // Leaving, coming back and leaving again within the debounce: one offline event, at
        // the last leave's time plus the debounce; the queue holds the user once.
        let t1 = t0.after(Duration::from_millis(100));
        assert!(!users.disconnected("u", t1, wait));
        assert!(!users.connected(&u));
        let t2 = t1.after(Duration::from_millis(50));
        assert!(!users.disconnected("u", t2, wait));
        assert_eq!(users.pending.len(), 1);
        assert_eq!(users.waiting.len(), 1);
        assert!(
            users.due(t1.after(Duration::from_millis(100))).is_empty(),
            "moved on"
        );
        assert_eq!(
            users.due(t2.after(Duration::from_millis(100))),
            vec![u.clone()]
        );
        assert!(users.pending.is_empty());
        assert!(users.connected(&u));
        // Without events the user is forgotten at once; with no debounce the event is now.
        assert!(!users.disconnected("u", t0, None));
        assert!(users.connected(&u));
        assert!(users.disconnected("u", t0, Some(Duration::ZERO)));
        assert_eq!(users.count(), 0);
    }
}
