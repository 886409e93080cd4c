//! Fan-out, the shard's local side of delivery (DESIGN invariants 4-6): the `Hub` (channel →
//! local subscribers, deliveries handed to each subscriber's queue), subscriptions waiting
//! for their owner's answer (`subscription`), each connection's bounded output queue
//! (`Outbound`), the list of connections with something for their transport to do
//! (`ready`), the frames a delivery takes per (codec, framing) pair (`frames`), and the
//! registry of the shard's connections and users (`registry`).
//!
//! Imports leaves only (`protocol`, `framing`, `router::msg`, `clock`, `limits`, `config`): it is told
//! what to deliver and queues it; it never routes.

pub mod frames;
pub mod hub;
pub mod outbound;
pub mod pending_connect;
pub mod ready;
pub mod registry;
pub mod subscription;

pub use hub::{Hub, Unsubscribed};
pub use outbound::{Chores, Outbound, Phase};
pub use pending_connect::{ConnectSlot, PendingConnect};
pub use ready::ReadyList;
pub use registry::Registry;
pub use subscription::{
    PendingSubscription, RecoveryAsk, StreamMode, SubscribeReply, SubscribeStep, TokenReply,
};
