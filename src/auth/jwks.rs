//! `JwksKeys`: the public keys of a JWKS endpoint (`client.token.jwks_public_endpoint`), by
//! `kid`, cached for every shard of the process. Fetches run on a thread of their own, never
//! on a shard: a token whose `kid` the cache holds verifies at once whatever the endpoint
//! does; an unknown `kid` starts a fetch (at most one at a time, at most one per
//! `JWKS_FETCH_INTERVAL_MIN_MS`) and the token is answered as temporarily unverifiable (the
//! SDK retries); the cache is refetched in the background once it is older than
//! `JWKS_CACHE_MS`, so a key the endpoint dropped stops verifying. A failed fetch keeps what
//! the cache holds and is logged.
//!
//! Owns the cache and its fetch thread; imports `limits` and `clock`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::DecodingKey;

use crate::clock::Millis;
use crate::limits::{
    JWKS_BODY_BYTES_MAX, JWKS_CACHE_MS, JWKS_FETCH_INTERVAL_MIN_MS, JWKS_FETCH_TIMEOUT_MS,
};

/// The cached keys of one endpoint.
pub struct JwksKeys {
    endpoint: String,
    keys: RwLock<HashMap<String, DecodingKey>>,
    /// When the last fetch finished (successful or not), in `Millis` (0: never): an atomic,
    /// so a verification takes no lock for it.
    fetched_ms: AtomicU64,
    /// A fetch is running.
    fetching: AtomicBool,
}

impl JwksKeys {
    /// The process's cache for `endpoint` (one per endpoint, shared by every shard); a new
    /// one starts its first fetch.
    pub fn of(endpoint: &str) -> Arc<JwksKeys> {
        static ALL: OnceLock<Mutex<HashMap<String, Arc<JwksKeys>>>> = OnceLock::new();
        let mut all = ALL
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        all.entry(endpoint.to_owned())
            .or_insert_with(|| {
                let keys = Arc::new(JwksKeys {
                    endpoint: endpoint.to_owned(),
                    keys: RwLock::new(HashMap::new()),
                    fetched_ms: AtomicU64::new(0),
                    fetching: AtomicBool::new(false),
                });
                keys.clone().fetch_in_background(true);
                keys
            })
            .clone()
    }

    /// The key with `kid`, if cached; an unknown one (or a stale cache) starts a fetch.
    pub fn key(self: &Arc<Self>, kid: &str) -> Option<DecodingKey> {
        let key = self
            .keys
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(kid)
            .cloned();
        let fetched = self.fetched_ms.load(Ordering::Acquire);
        let age = (fetched > 0).then(|| Millis::now().as_ms().saturating_sub(fetched));
        let stale = age.is_none_or(|age| age > JWKS_CACHE_MS);
        let may_refetch = age.is_none_or(|age| age > JWKS_FETCH_INTERVAL_MIN_MS);
        if (key.is_none() && may_refetch) || stale {
            self.clone().fetch_in_background(false);
        }
        key
    }

    /// Starts a fetch on a thread of its own unless one runs.
    fn fetch_in_background(self: Arc<Self>, first: bool) {
        if self.fetching.swap(true, Ordering::AcqRel) {
            return;
        }
        let spawned = std::thread::Builder::new()
            .name("ringcast-jwks".into())
            .spawn(move || {
                match fetch(&self.endpoint) {
                    Ok(keys) => {
                        *self
                            .keys
                            .write()
                            .unwrap_or_else(|poisoned| poisoned.into_inner()) = keys;
                    }
                    Err(e) => eprintln!(
                        "ringcast: JWKS {}: {e}; {}",
                        self.endpoint,
                        if first {
                            "tokens wait for a fetch that works"
                        } else {
                            "the cached keys stay"
                        }
                    ),
                }
                self.fetched_ms
                    .store(Millis::now().as_ms(), Ordering::Release);
                self.fetching.store(false, Ordering::Release);
            });
        if let Err(e) = spawned {
            eprintln!("ringcast: JWKS: cannot start a fetch thread: {e}");
        }
    }
}

/// Fetches and parses the key set: keys without a `kid` or of a kind jsonwebtoken cannot
/// use are skipped.
fn fetch(endpoint: &str) -> Result<HashMap<String, DecodingKey>, String> {
    let response = ureq::AgentBuilder::new()
        .timeout(Duration::from_millis(JWKS_FETCH_TIMEOUT_MS))
        .build()
        .get(endpoint)
        .call()
        .map_err(|e| e.to_string())?;
    let mut body = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(response.into_reader(), JWKS_BODY_BYTES_MAX as u64 + 1),
        &mut body,
    )
    .map_err(|e| format!("reading the key set: {e}"))?;
    if body.len() > JWKS_BODY_BYTES_MAX {
        return Err(format!("the key set is over {JWKS_BODY_BYTES_MAX} bytes"));
    }
    let set: JwkSet = serde_json::from_slice(&body).map_err(|e| format!("not a JWK set: {e}"))?;
    Ok(set
        .keys
        .iter()
        .filter_map(|jwk| {
            let kid = jwk.common.key_id.clone()?;
            DecodingKey::from_jwk(jwk).ok().map(|key| (kid, key))
        })
        .collect())
}
