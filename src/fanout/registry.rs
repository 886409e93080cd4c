//! `Registry`: the shard's connections by id, and its connected users with their
//! connections (the server API's user actions find a user's connections here).

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use smallvec::SmallVec;

use super::outbound::Outbound;
use crate::protocol::Disconnect;

#[derive(Debug, Default)]
pub struct Registry {
    connections: HashMap<u64, Rc<Outbound>>,
    /// Connected users and the ids of their connections on this shard (one inline: most
    /// users have one connection).
    users: HashMap<Arc<str>, SmallVec<[u64; 1]>>,
    slow_disconnects: u64,
}

impl Registry {
    pub fn register(&mut self, conn: Rc<Outbound>) {
        let previous = self.connections.insert(conn.id, conn);
        assert!(previous.is_none(), "connection ids are unique per shard");
    }

    pub fn unregister(&mut self, id: u64) {
        if let Some(conn) = self.connections.remove(&id) {
            if conn.pending_disconnect() == Some(Disconnect::Slow) {
                self.slow_disconnects += 1;
            }
        }
    }

    /// Connection `conn` is connected as `user`; true if it is the user's first here.
    pub fn add_user(&mut self, user: &Arc<str>, conn: u64) -> bool {
        let conns = self.users.entry(user.clone()).or_default();
        debug_assert!(!conns.contains(&conn));
        conns.push(conn);
        conns.len() == 1
    }

    /// Connection `conn` of `user` ended; true if it was the user's last here.
    pub fn remove_user(&mut self, user: &str, conn: u64) -> bool {
        let Some(conns) = self.users.get_mut(user) else {
            return false;
        };
        if let Some(at) = conns.iter().position(|&c| c == conn) {
            conns.swap_remove(at);
        }
        if conns.is_empty() {
            self.users.remove(user);
            return true;
        }
        false
    }

    /// The connections of `user` on this shard.
    pub fn user_connections(&self, user: &str) -> impl Iterator<Item = &Rc<Outbound>> {
        self.users
            .get(user)
            .into_iter()
            .flatten()
            .filter_map(|id| self.connections.get(id))
    }

    /// The connection `id`, if it is still here.
    pub fn get(&self, id: u64) -> Option<&Rc<Outbound>> {
        self.connections.get(&id)
    }

    pub fn connections(&self) -> impl Iterator<Item = &Rc<Outbound>> {
        self.connections.values()
    }

    pub fn connection_count(&self) -> usize {
        self.connections.len()
    }

    /// How many connections `user` has on this shard.
    pub fn user_connection_count(&self, user: &str) -> usize {
        self.users.get(user).map_or(0, |conns| conns.len())
    }

    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    pub fn slow_disconnects(&self) -> u64 {
        self.slow_disconnects
    }
}
