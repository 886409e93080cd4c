//! `PresenceTable`: who is in each channel this owner owns (client id → user and infos),
//! fed by the subscribers' shards (`PresenceJoin` once a subscriber joined, `PresenceLeave`
//! when it leaves for any reason). Counts are kept, not computed: `stats` costs the same for
//! a channel of one client as for one of a million.
//!
//! A user's name is held once per channel (the entries share it with the user count). Owned
//! by the engine; touches nothing else.

use std::hash::RandomState;
use std::sync::Arc;

use hashbrown::HashMap;

use crate::limits::PRESENCE_CHANNEL_ENTRIES_MAX;
use crate::protocol::ClientId;
use crate::router::msg::{ClientInfos, PresenceItem, PresenceStats};

/// One client's entry.
#[derive(Debug)]
struct Entry {
    user: Arc<str>,
    infos: Option<Arc<ClientInfos>>,
    /// Its channel announces joins and leaves (the subscription's options, with a token's
    /// overrides, decided that on the subscriber's shard).
    join_leave: bool,
}

#[derive(Debug)]
struct ChannelPresence {
    clients: HashMap<ClientId, Entry, RandomState>,
    /// Distinct users among `clients`, with how many entries each has.
    users: HashMap<Arc<str>, u32, RandomState>,
}

impl Default for ChannelPresence {
    fn default() -> Self {
        ChannelPresence {
            clients: HashMap::with_hasher(RandomState::new()),
            users: HashMap::with_hasher(RandomState::new()),
        }
    }
}

/// What `join` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joined {
    /// A new entry; announce it when `join_leave`.
    Added { join_leave: bool },
    /// The client was there already (its entry is replaced; nothing to announce).
    Replaced,
    /// The channel holds `PRESENCE_CHANNEL_ENTRIES_MAX` entries: not recorded.
    Full,
}

/// The presence of every owned channel that has any.
#[derive(Debug)]
pub struct PresenceTable {
    channels: HashMap<Arc<str>, ChannelPresence, RandomState>,
    entries: usize,
}

impl Default for PresenceTable {
    fn default() -> Self {
        PresenceTable {
            channels: HashMap::with_hasher(RandomState::new()),
            entries: 0,
        }
    }
}

impl PresenceTable {
    /// Records `item` in `channel`.
    pub fn join(&mut self, channel: &Arc<str>, item: PresenceItem, join_leave: bool) -> Joined {
        let presence = match self.channels.get_mut(&**channel) {
            Some(presence) => presence,
            None => self.channels.entry(channel.clone()).or_default(),
        };
        if let Some(entry) = presence.clients.get_mut(&item.client) {
            // A client id is one subscription per channel; a repeat only refreshes it.
            entry.infos = item.infos;
            entry.join_leave = join_leave;
            return Joined::Replaced;
        }
        if presence.clients.len() >= PRESENCE_CHANNEL_ENTRIES_MAX {
            return Joined::Full;
        }
        // The user's name, held once per channel.
        let user = match presence.users.get_key_value_mut(&*item.user) {
            Some((name, count)) => {
                *count += 1;
                name.clone()
            }
            None => {
                presence.users.insert(item.user.clone(), 1);
                item.user
            }
        };
        presence.clients.insert(
            item.client,
            Entry {
                user,
                infos: item.infos,
                join_leave,
            },
        );
        self.entries += 1;
        Joined::Added { join_leave }
    }

    /// Removes `client` from `channel`; returns its entry and whether to announce the leave.
    pub fn leave(&mut self, channel: &str, client: ClientId) -> Option<(PresenceItem, bool)> {
        let presence = self.channels.get_mut(channel)?;
        let entry = presence.clients.remove(&client)?;
        self.entries -= 1;
        if let Some(count) = presence.users.get_mut(&*entry.user) {
            *count -= 1;
            if *count == 0 {
                presence.users.remove(&*entry.user);
            }
        }
        debug_assert!(presence.users.len() <= presence.clients.len());
        if presence.clients.is_empty() {
            self.channels.remove(channel);
        }
        let item = PresenceItem {
            client,
            user: entry.user,
            infos: entry.infos,
        };
        Some((item, entry.join_leave))
    }

    /// Every entry of `channel` (in no particular order).
    pub fn list(&self, channel: &str) -> Vec<PresenceItem> {
        let Some(presence) = self.channels.get(channel) else {
            return Vec::new();
        };
        presence
            .clients
            .iter()
            .map(|(client, entry)| PresenceItem {
                client: *client,
                user: entry.user.clone(),
                infos: entry.infos.clone(),
            })
            .collect()
    }

    /// The counts of `channel`: O(1).
    pub fn stats(&self, channel: &str) -> PresenceStats {
        self.channels
            .get(channel)
            .map_or(PresenceStats::default(), |p| PresenceStats {
                num_clients: p.clients.len() as u32,
                num_users: p.users.len() as u32,
            })
    }

    /// Entries over every channel.
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// The channels with entries.
    pub fn channels(&self) -> Vec<Arc<str>> {
        self.channels.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(client: u8, user: &str) -> PresenceItem {
        let mut id = [0; 16];
        id[0] = client;
        PresenceItem {
            client: ClientId::from_bytes(id),
            user: user.into(),
            infos: None,
        }
    }

    #[test]
    fn counts_follow_joins_and_leaves() {
        let mut table = PresenceTable::default();
        let c: Arc<str> = "c".into();
        assert_eq!(
            table.join(&c, item(1, "u"), true),
            Joined::Added { join_leave: true }
        );
        assert_eq!(
            table.join(&c, item(2, "u"), true),
            Joined::Added { join_leave: true }
        );
        assert_eq!(
            table.join(&c, item(3, "v"), false),
            Joined::Added { join_leave: false }
        );
        assert_eq!(table.join(&c, item(3, "v"), false), Joined::Replaced);
        let stats = table.stats("c");
        assert_eq!((stats.num_clients, stats.num_users), (3, 2));
        assert_eq!(table.list("c").len(), 3);
        let (left, announce) = table.leave("c", item(1, "u").client).unwrap();
        assert_eq!((&*left.user, announce), ("u", true));
        assert!(table.leave("c", item(1, "u").client).is_none(), "left once");
        assert_eq!(table.stats("c").num_users, 2, "u has another client");
        table.leave("c", item(2, "u").client);
        assert_eq!(table.stats("c").num_users, 1);
        table.leave("c", item(3, "v").client);
        assert_eq!(table.stats("c"), PresenceStats::default());
        assert_eq!(table.entries(), 0);
        assert!(table.channels.is_empty(), "an empty channel keeps nothing");
    }

    #[test]
    fn entries_share_the_user_name() {
        let mut table = PresenceTable::default();
        let c: Arc<str> = "c".into();
        table.join(&c, item(1, "user"), false);
        table.join(&c, item(2, "user"), false);
        let list = table.list("c");
        assert!(Arc::ptr_eq(&list[0].user, &list[1].user));
    }
}
