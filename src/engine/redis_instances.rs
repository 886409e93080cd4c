//! The Redis instances a shard uses, and which one keeps a channel. Independent instances
//! (`engine.redis.address`) are placed by a stable hash of the channel's name (the hash that
//! places channels on shards), so every node picks the same one; a Redis Cluster's masters
//! (`engine.redis.cluster_address`) by the hash slot of the channel's keys.
//!
//! A cluster's slot map is read at start (`RedisTopology::discover`, before the shards run)
//! and followed while the node runs (`RedisInstances::follow_cluster`): when a master answers
//! MOVED or drops a subscription (a resharding, a manual failover) or a master's connection
//! is down (a failover in progress), the shard reads the map again through a master it reaches, connects to masters
//! it did not know, moves each pub/sub subscription it holds to the master now serving its
//! slot, and lets go of masters that serve nothing. The shard then checks the streams it
//! tracks (what a moved subscription missed shows as a gap, and its subscribers recover).
//!
//! Owns the instances (their connections) and the routing. Imports `broker`, `config`,
//! `router::partition`, `limits`.

use std::cell::{Cell, RefCell};
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::broker::redis::cluster::{self, Resolve, SlotMap, SLOTS};
use crate::broker::redis::pubsub::Handler;
use crate::broker::redis::stream::pubsub_channel;
use crate::broker::redis::tls::ClientTls;
use crate::broker::redis::{
    Link, Presences, PubSub, PubSubMode, RedisConnection, RedisError, RedisSettings, Streams,
};
use crate::config::{Config, RedisAddress, RedisTls};
use crate::limits::{
    REDIS_CLUSTER_UNCHANGED_READS_MAX, REDIS_RECONNECT_MIN_MS, REDIS_SUBSCRIBE_MOVE_TRIES,
};

/// How channels are placed on the instances.
#[derive(Debug, Clone)]
pub enum Placement {
    /// Independent instances (`engine.redis.address`): by a stable hash of the name.
    ByHash,
    /// A cluster's masters (`engine.redis.cluster_address`): by the hash slot of the keys.
    BySlot(Arc<SlotMap>),
}

/// The Redis instances every shard of the node uses, and how channels are placed on them;
/// made once at start (a cluster's map is read then).
#[derive(Debug, Clone)]
pub struct RedisTopology {
    pub instances: Vec<RedisSettings>,
    pub placement: Placement,
}

impl RedisTopology {
    /// The configured instances, or the masters of the configured cluster (blocking: asks a
    /// seed for the slot map).
    pub fn discover(config: &Config) -> Result<RedisTopology, String> {
        let redis = &config.engine.redis;
        if redis.cluster_address.is_empty() {
            return Ok(RedisTopology {
                instances: settings(config, &redis.address, "engine.redis.address")?,
                placement: Placement::ByHash,
            });
        }
        let seeds = settings(
            config,
            &redis.cluster_address,
            "engine.redis.cluster_address",
        )?;
        let map = cluster::discover(&seeds)?;
        // Each master as the first seed says (credentials, timeouts, TLS), its certificate
        // checked against its own address unless `server_name` says otherwise.
        let instances = map
            .masters
            .iter()
            .map(|&address| {
                let tls = match &seeds[0].tls {
                    None => None,
                    Some(_) => Some(ClientTls::new(&redis.tls, &address.ip().to_string())?),
                };
                Ok(RedisSettings {
                    address,
                    tls,
                    ..seeds[0].clone()
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(RedisTopology {
            instances,
            placement: Placement::BySlot(Arc::new(map)),
        })
    }

    /// How pub/sub runs: sharded in a cluster.
    pub fn mode(&self) -> PubSubMode {
        match self.placement {
            Placement::ByHash => PubSubMode::Classic,
            Placement::BySlot(_) => PubSubMode::Sharded,
        }
    }

    /// What the server logs at start.
    pub fn describe(&self) -> String {
        let list = |all: &[RedisSettings]| {
            all.iter()
                .map(|s| s.address.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self.placement {
            Placement::ByHash => format!("redis at {}", list(&self.instances)),
            Placement::BySlot(_) => format!(
                "Redis Cluster of {} masters ({}; sharded pub/sub)",
                self.instances.len(),
                list(&self.instances)
            ),
        }
    }
}

/// The settings of each address in `addresses` (the configuration's `key`).
fn settings(
    config: &Config,
    addresses: &[String],
    key: &str,
) -> Result<Vec<RedisSettings>, String> {
    let redis = &config.engine.redis;
    addresses
        .iter()
        .map(|text| {
            let address = RedisAddress::parse(text)?;
            let resolved = address
                .host_port
                .to_socket_addrs()
                .map_err(|e| format!("{key} {text:?}: {e}"))?
                .next()
                .ok_or_else(|| format!("{key} {text:?}: no address"))?;
            let tls = (redis.tls.enabled || address.tls)
                .then(|| {
                    let host = address.host_port.rsplit_once(':').map_or("", |(h, _)| h);
                    ClientTls::new(
                        &redis.tls,
                        host.trim_start_matches('[').trim_end_matches(']'),
                    )
                })
                .transpose()?;
            Ok(RedisSettings {
                tls,
                address: resolved,
                db: address.db.unwrap_or(redis.db),
                user: address.user.unwrap_or_else(|| redis.user.clone()),
                password: address.password.unwrap_or_else(|| redis.password.clone()),
                connect_timeout: Duration::from_millis(redis.connect_timeout.as_millis().max(1)),
                io_timeout: Duration::from_millis(redis.io_timeout.as_millis().max(1)),
            })
        })
        .collect()
}

/// One Redis instance as a shard uses it.
pub struct Instance {
    pub address: SocketAddr,
    pub streams: Streams,
    pub presences: Presences,
    pub pubsub: PubSub,
}

/// Which instance keeps a channel, as this shard routes now.
enum Routing {
    ByHash,
    /// The instance (index) serving each slot.
    BySlot(Rc<[u16]>),
}

/// A shard's Redis instances.
pub struct RedisInstances {
    /// Every instance this shard has used, by index; a cluster master let go is `None` (its
    /// index is not used again, so an index taken before a change stays meaningful).
    all: RefCell<Vec<Option<Rc<Instance>>>>,
    routing: RefCell<Routing>,
    mode: PubSubMode,
    prefix: String,
    /// How to reach a cluster master found later: the first one's settings, its TLS made
    /// again for the new address.
    template: RedisSettings,
    tls: RedisTls,
    handler: Box<dyn Fn() -> Handler>,
    /// A master answered MOVED: the slot map is to be read again.
    stale: Cell<bool>,
    /// A `follow_cluster` runs.
    following: Cell<bool>,
    /// Reads since `stale` was set that found the map unchanged.
    unchanged_reads: Cell<u32>,
}

impl RedisInstances {
    /// Connects to every instance of `topology` (the connections come up by themselves);
    /// each pub/sub connection hands its events to a `handler()`.
    pub fn start(
        config: &Config,
        topology: &RedisTopology,
        handler: Box<dyn Fn() -> Handler>,
    ) -> RedisInstances {
        let mode = topology.mode();
        let prefix = config.engine.redis.prefix.clone();
        let all = topology
            .instances
            .iter()
            .map(|settings| Some(Rc::new(open(settings, &prefix, mode, handler()))))
            .collect();
        let routing = match &topology.placement {
            Placement::ByHash => Routing::ByHash,
            Placement::BySlot(map) => Routing::BySlot(
                (0..SLOTS)
                    .map(|slot| map.master_of_slot(slot) as u16)
                    .collect(),
            ),
        };
        RedisInstances {
            all: RefCell::new(all),
            routing: RefCell::new(routing),
            mode,
            prefix,
            template: topology.instances[0].clone(),
            tls: config.engine.redis.tls.clone(),
            handler,
            stale: Cell::new(false),
            following: Cell::new(false),
            unchanged_reads: Cell::new(0),
        }
    }

    pub fn mode(&self) -> PubSubMode {
        self.mode
    }

    /// The instance (index) keeping `key` (a channel's pub/sub channel, or the control
    /// channel): by `name`'s hash, or by `key`'s slot.
    pub fn route(&self, key: &[u8], name: &str) -> usize {
        match &*self.routing.borrow() {
            Routing::ByHash => {
                crate::router::partition::partition(name) as usize % self.all.borrow().len()
            }
            Routing::BySlot(slots) => usize::from(slots[usize::from(cluster::slot(key))]),
        }
    }

    /// The instance (index) keeping `channel`: its pub/sub channel's name (and slot) made
    /// only in a cluster.
    pub fn route_channel(&self, channel: &str) -> usize {
        match &*self.routing.borrow() {
            Routing::ByHash => {
                crate::router::partition::partition(channel) as usize % self.all.borrow().len()
            }
            Routing::BySlot(slots) => {
                let key = pubsub_channel(&self.prefix, channel);
                usize::from(slots[usize::from(cluster::slot(key.as_bytes()))])
            }
        }
    }

    /// The instance at `index`, unless it was let go.
    pub fn get(&self, index: usize) -> Option<Rc<Instance>> {
        self.all.borrow().get(index).cloned().flatten()
    }

    /// The instance keeping `key`: routing names only instances in use.
    pub fn of(&self, key: &[u8], name: &str) -> Rc<Instance> {
        self.live(self.route(key, name))
    }

    /// The instance keeping `channel`.
    pub fn of_channel(&self, channel: &str) -> Rc<Instance> {
        self.live(self.route_channel(channel))
    }

    fn live(&self, index: usize) -> Rc<Instance> {
        self.get(index)
            .unwrap_or_else(|| panic!("routing names instance {index}, which was let go"))
    }

    /// Connections down now (command and pub/sub connections of the instances in use).
    pub fn links_down(&self) -> u64 {
        self.all
            .borrow()
            .iter()
            .flatten()
            .map(|i| {
                u64::from(i.streams.connection().link() == Link::Down)
                    + u64::from(i.pubsub.link() == Link::Down)
            })
            .sum()
    }

    /// A call failed with `e`: a MOVED answer means the slot map changed.
    pub fn note_failure(&self, e: &RedisError) {
        if let RedisError::Reply(why) = e {
            if why.starts_with("MOVED ") {
                self.stale.set(true);
            }
        }
    }

    /// Redis dropped a subscription by itself: the slot map changed.
    pub fn note_dropped(&self) {
        self.stale.set(true);
    }

    /// Whether the slot map should be read again: a cluster, and a MOVED answer seen or a
    /// connection down.
    pub fn should_follow(&self) -> bool {
        matches!(*self.routing.borrow(), Routing::BySlot(_))
            && (self.stale.get() || self.links_down() > 0)
    }

    /// Reads a cluster's slot map again and follows it (see the module's text). Returns
    /// whether any slot changed master.
    pub async fn follow_cluster(&self) -> bool {
        if self.following.replace(true) {
            return false;
        }
        let changed = self.read_and_follow().await;
        self.following.set(false);
        changed
    }

    async fn read_and_follow(&self) -> bool {
        let reachable: Vec<Rc<Instance>> = self
            .all
            .borrow()
            .iter()
            .flatten()
            .filter(|i| i.streams.connection().link() == Link::Up)
            .cloned()
            .collect();
        let mut found = None;
        let mut refused = None;
        for instance in reachable {
            let Ok(answer) = instance
                .streams
                .connection()
                .call(&[b"CLUSTER", b"SLOTS"])
                .await
            else {
                continue;
            };
            match cluster::parse_slots(&answer, instance.address, Resolve::IpOnly) {
                Ok(map) => {
                    found = Some(map);
                    break;
                }
                // A node mid-change may not cover every slot yet: ask another, or later.
                Err(e) => refused = Some(e),
            }
        }
        let Some(map) = found else {
            let reads = self.unchanged_reads.get() + 1;
            self.unchanged_reads
                .set(reads % REDIS_CLUSTER_UNCHANGED_READS_MAX);
            if let Some(e) = refused.filter(|_| reads == 1) {
                eprintln!("ringcast: redis cluster: cannot follow the slot map: {e}");
            }
            return false;
        };
        // Each master's instance: the one in use for its address, or a new one.
        let mut index_of = Vec::with_capacity(map.masters.len());
        for &address in &map.masters {
            let known = self
                .all
                .borrow()
                .iter()
                .position(|i| i.as_ref().is_some_and(|i| i.address == address));
            let index = match known {
                Some(index) => index,
                None => match self.open_master(address) {
                    Ok(instance) => {
                        let mut all = self.all.borrow_mut();
                        all.push(Some(Rc::new(instance)));
                        all.len() - 1
                    }
                    Err(e) => {
                        eprintln!("ringcast: redis cluster: master {address}: {e}");
                        return false;
                    }
                },
            };
            index_of.push(index as u16);
        }
        let slots: Rc<[u16]> = (0..SLOTS)
            .map(|slot| index_of[map.master_of_slot(slot)])
            .collect();
        let unchanged = match &*self.routing.borrow() {
            Routing::BySlot(old) => **old == *slots,
            Routing::ByHash => true,
        };
        if unchanged {
            // The master asked may not know of the change yet: read again at the next
            // checks, a bounded number of times (a spurious signal must not keep it going).
            let reads = self.unchanged_reads.get() + 1;
            self.unchanged_reads.set(reads);
            if reads >= REDIS_CLUSTER_UNCHANGED_READS_MAX {
                self.stale.set(false);
                self.unchanged_reads.set(0);
            }
            return false;
        }
        self.stale.set(false);
        self.unchanged_reads.set(0);
        self.routing.replace(Routing::BySlot(slots));
        eprintln!(
            "ringcast: redis cluster: the slot map changed; following it ({} masters)",
            map.masters.len()
        );
        self.move_subscriptions().await;
        // Masters that serve nothing now and hold no subscription are let go.
        let mut all = self.all.borrow_mut();
        for (index, slot) in all.iter_mut().enumerate() {
            let serving = index_of.contains(&(index as u16));
            if !serving && slot.as_ref().is_some_and(|i| i.pubsub.wanted() == 0) {
                *slot = None;
            }
        }
        true
    }

    /// Every pub/sub channel held on an instance that no longer keeps it moves to the one
    /// that does. Resolves once every moved channel is confirmed there, or its master's
    /// connection did not come up within `REDIS_SUBSCRIBE_MOVE_TRIES` waits (the channel
    /// stays wanted there and is subscribed once it is up).
    async fn move_subscriptions(&self) {
        let mut moves: Vec<(Rc<Instance>, Bytes)> = Vec::new();
        let all: Vec<(usize, Rc<Instance>)> = self
            .all
            .borrow()
            .iter()
            .enumerate()
            .filter_map(|(index, i)| i.clone().map(|i| (index, i)))
            .collect();
        for (index, instance) in all {
            for name in instance.pubsub.wanted_channels() {
                // By slot (this runs in a cluster only): the name is the key.
                let to = self.route(&name, "");
                if to == index {
                    continue;
                }
                // Wanted on the new master at once, so that a subscriber leaving meanwhile
                // unsubscribes it there.
                instance.pubsub.unsubscribe(&name);
                if let Some(target) = self.get(to) {
                    target.pubsub.want(&name);
                    moves.push((target, name));
                }
            }
        }
        // A new master's connection comes up first (bounded waits), so that its subscribes
        // are sent now rather than at its first connection.
        let mut targets: Vec<&Rc<Instance>> = moves.iter().map(|(target, _)| target).collect();
        targets.sort_by_key(|t| t.address);
        targets.dedup_by_key(|t| t.address);
        for target in targets {
            for _ in 0..REDIS_SUBSCRIBE_MOVE_TRIES {
                if target.pubsub.link() == Link::Up {
                    break;
                }
                glommio::timer::sleep(Duration::from_millis(REDIS_RECONNECT_MIN_MS)).await;
            }
        }
        // The subscribes went out together (each one SSUBSCRIBE in the connection's next
        // write); their confirmations are awaited together, each for at most the I/O timeout
        // (a master that took the connection and then went silent does not hold this up).
        let wait = self.template.io_timeout;
        let confirmations: Vec<_> = moves
            .into_iter()
            .map(|(target, name)| {
                glommio::spawn_local(async move {
                    let confirmed = async { Ok(target.pubsub.subscribe(&name).await) };
                    let _ = glommio::timer::timeout(wait, confirmed).await;
                })
                .detach()
            })
            .collect();
        for confirmation in confirmations {
            let _ = confirmation.await;
        }
    }

    /// An instance for a cluster master found while running.
    fn open_master(&self, address: SocketAddr) -> Result<Instance, String> {
        let tls = match &self.template.tls {
            None => None,
            Some(_) => Some(ClientTls::new(&self.tls, &address.ip().to_string())?),
        };
        let settings = RedisSettings {
            address,
            tls,
            ..self.template.clone()
        };
        Ok(open(&settings, &self.prefix, self.mode, (self.handler)()))
    }
}

/// Connects to one instance.
fn open(settings: &RedisSettings, prefix: &str, mode: PubSubMode, handler: Handler) -> Instance {
    let connection = RedisConnection::start(settings.clone());
    Instance {
        address: settings.address,
        streams: Streams::new(connection.clone(), prefix, mode),
        presences: Presences::new(connection, prefix),
        pubsub: PubSub::start(settings.clone(), mode, handler),
    }
}
