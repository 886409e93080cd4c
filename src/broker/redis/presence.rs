//! A channel's presence in Redis, shared by every node: each node writes the entries of its
//! own subscribers with an expiry and writes them again before it passes (so a crashed
//! node's entries go once their expiry passes), and reads see every node's. Entries whose
//! expiry passed are dropped by the reads themselves, in the same script.
//!
//! Keys of channel `c` under prefix `p` (one hash tag, so they share a Cluster slot):
//!
//! ```text
//! entries = p ".ph.{" c "}"   hash: client id -> user NUL conn_info NUL chan_info
//! expiry  = p ".pz.{" c "}"   sorted set: client id scored by its expiry (unix seconds)
//! ```
//!
//! Imports nothing of the crate; uses `connection` and `stream`'s script loader.

use redis_protocol::resp2::types::BytesFrame;

use super::connection::{RedisConnection, RedisError};
use super::stream::Script;

/// Adds or renews entries. KEYS: entries, expiry. ARGV: ttl seconds, now (unix seconds),
/// then client, value pairs.
const ADD_SCRIPT: &str = r#"
local expire_at = tonumber(ARGV[2]) + tonumber(ARGV[1])
for i = 3, #ARGV, 2 do
  redis.call('hset', KEYS[1], ARGV[i], ARGV[i + 1])
  redis.call('zadd', KEYS[2], expire_at, ARGV[i])
end
redis.call('expire', KEYS[1], ARGV[1])
redis.call('expire', KEYS[2], ARGV[1])
return 1
"#;

/// Removes an entry. KEYS: entries, expiry. ARGV: client.
const REMOVE_SCRIPT: &str = r#"
redis.call('hdel', KEYS[1], ARGV[1])
redis.call('zrem', KEYS[2], ARGV[1])
return 1
"#;

/// Drops expired entries, then answers. KEYS: entries, expiry. ARGV: now (unix seconds),
/// "list" or "stats". A list is {client1, value1, ...}; stats are {clients, users}.
const READ_SCRIPT: &str = r#"
local expired = redis.call('zrangebyscore', KEYS[2], '-inf', ARGV[1])
for _, client in ipairs(expired) do
  redis.call('hdel', KEYS[1], client)
end
if #expired > 0 then
  redis.call('zremrangebyscore', KEYS[2], '-inf', ARGV[1])
end
if ARGV[2] == 'list' then
  return redis.call('hgetall', KEYS[1])
end
local users = {}
local count = 0
for _, value in ipairs(redis.call('hvals', KEYS[1])) do
  local at = string.find(value, '\0', 1, true)
  local user = at and string.sub(value, 1, at - 1) or value
  if not users[user] then
    users[user] = true
    count = count + 1
  end
end
return {redis.call('hlen', KEYS[1]), count}
"#;

/// One presence entry as Redis keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Present {
    pub client: String,
    pub user: String,
    pub conn_info: Option<String>,
    pub chan_info: Option<String>,
}

impl Present {
    fn value(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.user.len() + 2);
        out.extend_from_slice(self.user.as_bytes());
        out.push(0);
        out.extend_from_slice(self.conn_info.as_deref().unwrap_or("").as_bytes());
        out.push(0);
        out.extend_from_slice(self.chan_info.as_deref().unwrap_or("").as_bytes());
        out
    }

    fn from_value(client: String, value: &[u8]) -> Present {
        let mut parts = value.splitn(3, |&b| b == 0);
        let mut next = || {
            parts
                .next()
                .map(|p| String::from_utf8_lossy(p).into_owned())
        };
        let user = next().unwrap_or_default();
        let conn_info = next().filter(|s| !s.is_empty());
        let chan_info = next().filter(|s| !s.is_empty());
        Present {
            client,
            user,
            conn_info,
            chan_info,
        }
    }
}

/// One shard's presence scripts on one Redis.
pub struct Presences {
    connection: RedisConnection,
    prefix: String,
    add: Script,
    remove: Script,
    read: Script,
}

fn keys(prefix: &str, channel: &str) -> (String, String) {
    (
        format!("{prefix}.ph.{{{channel}}}"),
        format!("{prefix}.pz.{{{channel}}}"),
    )
}

fn malformed(frame: &BytesFrame) -> RedisError {
    RedisError::Reply(format!("unexpected presence answer: {frame:?}"))
}

impl Presences {
    pub fn new(connection: RedisConnection, prefix: &str) -> Presences {
        Presences {
            connection,
            prefix: prefix.to_owned(),
            add: Script::new(ADD_SCRIPT),
            remove: Script::new(REMOVE_SCRIPT),
            read: Script::new(READ_SCRIPT),
        }
    }

    /// Writes (or renews) `entries` of `channel`, expiring `ttl_secs` after `now_secs`.
    pub async fn add(
        &self,
        channel: &str,
        entries: &[Present],
        ttl_secs: u64,
        now_secs: u64,
    ) -> Result<(), RedisError> {
        if entries.is_empty() {
            return Ok(());
        }
        let (hash, zset) = keys(&self.prefix, channel);
        let (ttl, now) = (ttl_secs.max(1).to_string(), now_secs.to_string());
        let values: Vec<Vec<u8>> = entries.iter().map(Present::value).collect();
        let mut args: Vec<&[u8]> = vec![ttl.as_bytes(), now.as_bytes()];
        for (entry, value) in entries.iter().zip(&values) {
            args.push(entry.client.as_bytes());
            args.push(value);
        }
        self.add
            .call(&self.connection, &[hash.as_bytes(), zset.as_bytes()], &args)
            .await
            .map(drop)
    }

    pub async fn remove(&self, channel: &str, client: &str) -> Result<(), RedisError> {
        let (hash, zset) = keys(&self.prefix, channel);
        self.remove
            .call(
                &self.connection,
                &[hash.as_bytes(), zset.as_bytes()],
                &[client.as_bytes()],
            )
            .await
            .map(drop)
    }

    /// Every live entry of `channel`, from every node.
    pub async fn list(&self, channel: &str, now_secs: u64) -> Result<Vec<Present>, RedisError> {
        let answer = self.read(channel, now_secs, b"list").await?;
        let BytesFrame::Array(parts) = &answer else {
            return Err(malformed(&answer));
        };
        parts
            .chunks(2)
            .map(|pair| match pair {
                [BytesFrame::BulkString(client), BytesFrame::BulkString(value)] => Ok(
                    Present::from_value(String::from_utf8_lossy(client).into_owned(), value),
                ),
                _ => Err(malformed(&answer)),
            })
            .collect()
    }

    /// (clients, distinct users) in `channel`, from every node.
    pub async fn stats(&self, channel: &str, now_secs: u64) -> Result<(u32, u32), RedisError> {
        let answer = self.read(channel, now_secs, b"stats").await?;
        match &answer {
            BytesFrame::Array(parts) => match parts.as_slice() {
                [BytesFrame::Integer(clients), BytesFrame::Integer(users)] => {
                    Ok((*clients as u32, *users as u32))
                }
                _ => Err(malformed(&answer)),
            },
            _ => Err(malformed(&answer)),
        }
    }

    /// The read script, after dropping what expired by `now_secs`: `what` is "list" or
    /// "stats".
    async fn read(
        &self,
        channel: &str,
        now_secs: u64,
        what: &[u8],
    ) -> Result<BytesFrame, RedisError> {
        let (hash, zset) = keys(&self.prefix, channel);
        let now = now_secs.to_string();
        self.read
            .call(
                &self.connection,
                &[hash.as_bytes(), zset.as_bytes()],
                &[now.as_bytes(), what],
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_keeps_user_and_infos_apart() {
        let entry = Present {
            client: "c".into(),
            user: "42".into(),
            conn_info: Some("{\"a\":1}".into()),
            chan_info: None,
        };
        assert_eq!(Present::from_value("c".into(), &entry.value()), entry);
        let anonymous = Present {
            client: "d".into(),
            user: String::new(),
            conn_info: None,
            chan_info: Some("{}".into()),
        };
        assert_eq!(
            Present::from_value("d".into(), &anonymous.value()),
            anonymous
        );
    }
}
