//! Redis: a pipelined connection per shard and Redis (`connection`), a channel's stream as
//! one-step scripts (`stream`: publish, history), its presence (`presence`), and the
//! subscriber connection (`pubsub`); a Redis Cluster's slot map (`cluster`); TLS (`tls`).

pub mod cluster;
pub mod connection;
pub mod presence;
pub mod pubsub;
pub mod stream;
pub mod tls;

pub use connection::{Link, RedisConnection, RedisError, RedisSettings};
pub use presence::{Presences, Present};
pub use pubsub::{PubSub, PubSubEvent, PubSubMode};
pub use stream::{Entry, History, Position, StreamPolicy, Streams};
