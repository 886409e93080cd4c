//! Admission of new WebSocket connections at the upgrade: `client.allowed_origins` (403, as
//! Centrifugo's upgrader answers), `client.connection_limit` and
//! `client.connection_rate_limit` (503, as Centrifugo's middleware answers). Each shard
//! enforces its share of the node's limits (the limit divided by the shards, rounded up): the
//! kernel spreads connections evenly over the shards' listeners, so the shares add up to the
//! node's limit within one connection per shard, with no counter shared across cores.

use std::cell::Cell;

use super::Shard;
use crate::clock::Millis;
use crate::config::Config;
use crate::protocol::Refusal;

/// Which origins may open a WebSocket.
#[derive(Debug)]
enum Origins {
    /// Only requests without an `Origin` header (`allowed_origins` empty: not browsers).
    Absent,
    /// Any (`["*"]`).
    Any,
    /// Those matching one of these globs (the origin in lower case, as Centrifugo).
    Matching(Vec<glob::Pattern>),
}

/// A token bucket: `capacity` tokens, refilled at `capacity` per second (a connection rate
/// here, a connection's command rate in its session).
#[derive(Debug)]
pub struct TokenBucket {
    capacity: f64,
    tokens: Cell<f64>,
    refilled: Cell<Millis>,
}

impl TokenBucket {
    /// A full bucket of `per_second` tokens.
    pub fn new(per_second: usize) -> TokenBucket {
        TokenBucket {
            capacity: per_second as f64,
            tokens: Cell::new(per_second as f64),
            refilled: Cell::new(Millis::now()),
        }
    }

    /// Takes a token if there is one.
    pub fn take(&self, now: Millis) -> bool {
        let elapsed = now.since(self.refilled.get()).as_secs_f64();
        self.refilled.set(now);
        let tokens = (self.tokens.get() + elapsed * self.capacity).min(self.capacity);
        if tokens < 1.0 {
            self.tokens.set(tokens);
            return false;
        }
        self.tokens.set(tokens - 1.0);
        true
    }
}

/// One shard's share of the admission rules.
#[derive(Debug)]
pub struct Admission {
    origins: Origins,
    /// Connections this shard may hold, if limited.
    limit: Option<usize>,
    rate: Option<TokenBucket>,
}

impl Admission {
    pub fn new(config: &Config, shards: usize) -> Admission {
        let client = &config.client;
        let origins = match client.allowed_origins.as_slice() {
            [] => Origins::Absent,
            [any] if any == "*" => Origins::Any,
            patterns => Origins::Matching(
                // Validation compiled each already; one that fails here allows nothing.
                patterns
                    .iter()
                    .filter_map(|p| glob::Pattern::new(p).ok())
                    .collect(),
            ),
        };
        let share = |limit: usize| (limit > 0).then(|| limit.div_ceil(shards.max(1)));
        Admission {
            origins,
            limit: share(client.connection_limit),
            rate: share(client.connection_rate_limit).map(TokenBucket::new),
        }
    }

    fn origin_allowed(&self, origin: Option<&str>) -> bool {
        let Some(origin) = origin.filter(|o| !o.is_empty()) else {
            return true;
        };
        match &self.origins {
            Origins::Absent => false,
            Origins::Any => true,
            Origins::Matching(patterns) => {
                let origin = origin.to_ascii_lowercase();
                patterns.iter().any(|p| p.matches(&origin))
            }
        }
    }
}

impl Shard {
    /// May a WebSocket upgrade from `peer` with this `Origin` proceed? The refusal is counted
    /// and logged with the client's address; the caller answers it (`Refusal::Origin` 403, the
    /// limits 503).
    pub fn admit_upgrade(
        &self,
        origin: Option<&str>,
        peer: Option<std::net::SocketAddr>,
    ) -> Result<(), Refusal> {
        let admission = &self.admission;
        let refusal = if !admission.origin_allowed(origin) {
            Some(Refusal::Origin)
        } else if admission
            .limit
            .is_some_and(|limit| self.registry.borrow().connection_count() >= limit)
        {
            Some(Refusal::ConnectionLimit)
        } else if admission
            .rate
            .as_ref()
            .is_some_and(|rate| !rate.take(Millis::now()))
        {
            Some(Refusal::ConnectionRate)
        } else {
            None
        };
        match refusal {
            Some(refusal) => {
                self.refuse_connection(refusal, peer);
                Err(refusal)
            }
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(origins: &[&str], limit: usize, rate: usize, shards: usize) -> Admission {
        let mut config = Config::default();
        config.client.allowed_origins = origins.iter().map(|o| o.to_string()).collect();
        config.client.connection_limit = limit;
        config.client.connection_rate_limit = rate;
        Admission::new(&config, shards)
    }

    #[test]
    fn origins_as_centrifugo_checks_them() {
        let none = admission(&[], 0, 0, 1);
        assert!(none.origin_allowed(None), "no Origin: not a browser");
        assert!(!none.origin_allowed(Some("https://example.com")));
        let any = admission(&["*"], 0, 0, 1);
        assert!(any.origin_allowed(Some("https://anything.test")));
        let some = admission(&["https://*.example.com", "http://localhost:3000"], 0, 0, 1);
        assert!(some.origin_allowed(Some("https://app.example.com")));
        assert!(
            some.origin_allowed(Some("HTTPS://APP.EXAMPLE.COM")),
            "lower-cased"
        );
        assert!(some.origin_allowed(Some("http://localhost:3000")));
        assert!(!some.origin_allowed(Some("https://example.org")));
        assert!(!some.origin_allowed(Some("http://localhost:3001")));
    }

    #[test]
    fn limits_are_shared_out_rounded_up() {
        assert_eq!(admission(&[], 10, 0, 4).limit, Some(3));
        assert_eq!(admission(&[], 1, 0, 2).limit, Some(1));
        assert_eq!(admission(&[], 0, 0, 2).limit, None);
        let rate = admission(&[], 0, 4, 2).rate.unwrap();
        assert_eq!(rate.capacity, 2.0);
        let now = rate.refilled.get();
        assert!(rate.take(now) && rate.take(now), "a full bucket");
        assert!(!rate.take(now), "empty");
        assert!(
            rate.take(now.after(std::time::Duration::from_millis(500))),
            "refilled"
        );
    }
}
