//! `Registry`: the shard's connections by id and its connected users with their connection
//! counts (where the per-user index for the server API and presence counts will live).

use std::collections::HashMap;
use std::rc::Rc;

use super::outbound::Outbound;
use crate::protocol::Disconnect;

#[derive(Debug, Default)]
pub struct Registry {
    connections: HashMap<u64, Rc<Outbound>>,
    /// Connected users and how many of their connections this shard holds.
    users: HashMap<Rc<str>, u32>,
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

    pub fn add_user(&mut self, user: &Rc<str>) {
        *self.users.entry(user.clone()).or_default() += 1;
    }

    pub fn remove_user(&mut self, user: &str) {
        if let Some(count) = self.users.get_mut(user) {
            *count -= 1;
            if *count == 0 {
                self.users.remove(user);
            }
        }
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

    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    pub fn slow_disconnects(&self) -> u64 {
        self.slow_disconnects
    }
}
