//! A channel's stream in Redis: the publish step and the history reads, each one atomic step
//! (a Lua script, loaded once per connection and called by EVALSHA, loaded again on
//! NOSCRIPT). Every node sees the same offsets and epoch for a channel, because Redis
//! assigns them.
//!
//! Keys of channel `c` under prefix `p` (a hash tag, so both share a Redis Cluster slot):
//!
//! ```text
//! meta   = p ".m.{" c "}"    hash: "s" top offset, "e" epoch       (expires: meta_ttl)
//! stream = p ".s.{" c "}"    stream: ID "<offset>-0", field "d" = payload (MAXLEN size,
//!                            expires: ttl)
//! pubsub = p ".p.{" c "}"    PUBLISH (SPUBLISH in a cluster) message =
//!                            offset ":" epoch ":" payload
//! idem   = p ".i.{" c "}." k hash: "o" offset, "e" epoch of the first publish with
//!                            idempotency key k (expires: the idempotency window)
//! ```
//!
//! A channel without history gets no offset (0) and touches no key: its publication is only
//! PUBLISHed. A Redis that lost a channel's meta hash starts it again with a new epoch (the
//! caller's candidate) at offset 1, so a client holding the old epoch is told it was not
//! recovered, never shown a gap as continuity.
//!
//! Imports `limits`; uses `connection`.

use bytes::Bytes;
use redis_protocol::resp2::types::BytesFrame;

use super::connection::{RedisConnection, RedisError};
use super::pubsub::PubSubMode;

/// The publish step. KEYS: meta, stream, idempotency key (the meta key again when there is
/// none). ARGV: payload, size (0: no history), ttl seconds, pubsub channel, meta ttl seconds
/// (0: none), epoch candidate, idempotency window seconds (0: no key), the publishing command
/// (`publish` or `spublish`). A key seen within its window returns the first result and
/// publishes nothing. Returns {offset, epoch}.
const PUBLISH_SCRIPT: &str = r#"
if ARGV[7] ~= '0' then
  local first = redis.call('hmget', KEYS[3], 'o', 'e')
  if first[1] then
    return {tonumber(first[1]), first[2]}
  end
end
local result
if ARGV[2] == '0' then
  redis.call(ARGV[8], ARGV[4], '0::' .. ARGV[1])
  result = {0, ''}
else
  local epoch = redis.call('hget', KEYS[1], 'e')
  if not epoch then
    epoch = ARGV[6]
    redis.call('hset', KEYS[1], 'e', epoch)
  end
  local offset = redis.call('hincrby', KEYS[1], 's', 1)
  if ARGV[5] ~= '0' then
    redis.call('expire', KEYS[1], ARGV[5])
  end
  redis.call('xadd', KEYS[2], 'MAXLEN', ARGV[2], offset .. '-0', 'd', ARGV[1])
  redis.call('expire', KEYS[2], ARGV[3])
  redis.call(ARGV[8], ARGV[4], offset .. ':' .. epoch .. ':' .. ARGV[1])
  result = {offset, epoch}
end
if ARGV[7] ~= '0' then
  redis.call('hset', KEYS[3], 'o', result[1], 'e', result[2])
  redis.call('expire', KEYS[3], ARGV[7])
end
return result
"#;

/// The publish step for many channels with one payload and policy (a broadcast). KEYS: the
/// first channel's meta key alone (a cluster routes a call by its declared keys, which must
/// share a slot). ARGV: payload, size (> 0), ttl seconds, meta ttl seconds (0: none), epoch
/// candidate, the publishing command, then meta key, stream key and pubsub channel of each
/// channel. Returns {offset1, epoch1, offset2, epoch2, ...}.
macro_rules! publish_many_script {
    () => {
        r#"
local out = {}
for i = 7, #ARGV, 3 do
  local meta, stream = ARGV[i], ARGV[i + 1]
  local epoch = redis.call('hget', meta, 'e')
  if not epoch then
    epoch = ARGV[5]
    redis.call('hset', meta, 'e', epoch)
  end
  local offset = redis.call('hincrby', meta, 's', 1)
  if ARGV[4] ~= '0' then
    redis.call('expire', meta, ARGV[4])
  end
  redis.call('xadd', stream, 'MAXLEN', ARGV[2], offset .. '-0', 'd', ARGV[1])
  redis.call('expire', stream, ARGV[3])
  redis.call(ARGV[6], ARGV[i + 2], offset .. ':' .. epoch .. ':' .. ARGV[1])
  out[#out + 1] = offset
  out[#out + 1] = epoch
end
return out
"#
    };
}
const PUBLISH_MANY_SCRIPT: &str = publish_many_script!();
/// The same for a cluster master: a batch's channels are in many slots (all of them this
/// master's), which a script may touch only when it says so (Redis 7's shebang flags).
const PUBLISH_MANY_CLUSTER_SCRIPT: &str = concat!(
    "#!lua flags=allow-cross-slot-keys\n",
    publish_many_script!()
);

/// The history read. KEYS: meta, stream. ARGV: from offset (exclusive), limit (0: none),
/// epoch candidate, meta ttl seconds (0: none). A channel without a position gets one (offset
/// 0, the candidate epoch), so subscribers hold an epoch a lost Redis would change. Returns
/// {top, epoch, id1, payload1, id2, payload2, ...}, oldest first.
const HISTORY_SCRIPT: &str = r#"
local epoch = redis.call('hget', KEYS[1], 'e')
if not epoch then
  epoch = ARGV[3]
  redis.call('hset', KEYS[1], 'e', epoch, 's', 0)
  if ARGV[4] ~= '0' then
    redis.call('expire', KEYS[1], ARGV[4])
  end
end
local top = redis.call('hget', KEYS[1], 's') or '0'
local out = {tonumber(top), epoch}
local entries
if ARGV[2] == '0' then
  entries = redis.call('xrange', KEYS[2], '(' .. ARGV[1] .. '-0', '+')
else
  entries = redis.call('xrange', KEYS[2], '(' .. ARGV[1] .. '-0', '+', 'COUNT', ARGV[2])
end
for _, entry in ipairs(entries) do
  out[#out + 1] = entry[1]
  out[#out + 1] = entry[2][2]
end
return out
"#;

/// Where a channel's stream stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub offset: u64,
    pub epoch: String,
}

/// One publication as the stream and pub/sub carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// 0 for a channel without history.
    pub offset: u64,
    pub epoch: String,
    pub payload: Bytes,
}

impl Entry {
    /// A pub/sub message (`offset ":" epoch ":" payload`); `None` if malformed.
    pub fn from_message(message: &Bytes) -> Option<Entry> {
        let first = message.iter().position(|&b| b == b':')?;
        let second = first + 1 + message[first + 1..].iter().position(|&b| b == b':')?;
        let offset = std::str::from_utf8(&message[..first]).ok()?.parse().ok()?;
        let epoch = std::str::from_utf8(&message[first + 1..second])
            .ok()?
            .to_owned();
        Some(Entry {
            offset,
            epoch,
            payload: message.slice(second + 1..),
        })
    }
}

/// What a history read found: the stream's position and the entries after `from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    /// Offset 0 for a channel never published to (or whose position Redis lost: then with a
    /// new epoch).
    pub top: Position,
    pub entries: Vec<Entry>,
}

/// How a channel's stream is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamPolicy {
    /// Publications kept (0: no history, no offsets).
    pub size: u64,
    pub ttl_secs: u64,
    /// How long the position outlives the last publication (0: forever).
    pub meta_ttl_secs: u64,
}

/// The keys of one channel.
pub struct ChannelKeys {
    pub meta: String,
    pub stream: String,
    pub pubsub: String,
}

impl ChannelKeys {
    pub fn new(prefix: &str, channel: &str) -> ChannelKeys {
        ChannelKeys {
            meta: format!("{prefix}.m.{{{channel}}}"),
            stream: format!("{prefix}.s.{{{channel}}}"),
            pubsub: pubsub_channel(prefix, channel),
        }
    }
}

/// The pub/sub channel of `channel` (with the keys' hash tag: in a cluster, the same slot).
pub fn pubsub_channel(prefix: &str, channel: &str) -> String {
    format!("{prefix}.p.{{{channel}}}")
}

/// The channel whose pub/sub channel is `pubsub`, if it is one.
pub fn channel_of_pubsub<'a>(prefix: &str, pubsub: &'a [u8]) -> Option<&'a str> {
    let rest = pubsub.strip_prefix(prefix.as_bytes())?;
    let tagged = rest.strip_prefix(b".p.{")?.strip_suffix(b"}")?;
    std::str::from_utf8(tagged).ok()
}

/// A loaded script: its SHA1, and its text to load again after NOSCRIPT.
pub(super) struct Script {
    text: &'static str,
    sha: std::cell::RefCell<Option<Bytes>>,
}

impl Script {
    pub(super) const fn new(text: &'static str) -> Script {
        Script {
            text,
            sha: std::cell::RefCell::new(None),
        }
    }

    /// EVALSHA, loading the script first when this connection (or a restarted Redis) does
    /// not know it.
    pub(super) async fn call(
        &self,
        connection: &RedisConnection,
        keys: &[&[u8]],
        args: &[&[u8]],
    ) -> Result<BytesFrame, RedisError> {
        // Bounded: a NOSCRIPT answer loads it once and tries again once.
        for _ in 0..2 {
            let sha = self.sha.borrow().clone();
            let sha = match sha {
                Some(sha) => sha,
                None => {
                    let loaded = connection
                        .call(&[b"SCRIPT", b"LOAD", self.text.as_bytes()])
                        .await?;
                    let BytesFrame::BulkString(sha) = loaded else {
                        return Err(RedisError::Reply(format!(
                            "SCRIPT LOAD answered {loaded:?}"
                        )));
                    };
                    *self.sha.borrow_mut() = Some(sha.clone());
                    sha
                }
            };
            let count = keys.len().to_string();
            let mut call: Vec<&[u8]> = vec![b"EVALSHA", &sha, count.as_bytes()];
            call.extend_from_slice(keys);
            call.extend_from_slice(args);
            match connection.call(&call).await {
                Err(RedisError::Reply(e)) if e.starts_with("NOSCRIPT") => {
                    *self.sha.borrow_mut() = None;
                }
                other => return other,
            }
        }
        Err(RedisError::Reply(
            "NOSCRIPT after loading the script".into(),
        ))
    }
}

/// One shard's scripts on one Redis.
pub struct Streams {
    connection: RedisConnection,
    prefix: String,
    mode: PubSubMode,
    publish: Script,
    publish_many: Script,
    history: Script,
}

fn integer(frame: &BytesFrame) -> Option<u64> {
    match frame {
        BytesFrame::Integer(n) => u64::try_from(*n).ok(),
        BytesFrame::BulkString(b) | BytesFrame::SimpleString(b) => {
            std::str::from_utf8(b).ok()?.parse().ok()
        }
        _ => None,
    }
}

fn text(frame: &BytesFrame) -> Option<String> {
    match frame {
        BytesFrame::BulkString(b) | BytesFrame::SimpleString(b) => {
            Some(String::from_utf8_lossy(b).into_owned())
        }
        _ => None,
    }
}

fn malformed(what: &str, frame: &BytesFrame) -> RedisError {
    RedisError::Reply(format!("unexpected {what} answer: {frame:?}"))
}

impl Streams {
    pub fn new(connection: RedisConnection, prefix: &str, mode: PubSubMode) -> Streams {
        Streams {
            connection,
            prefix: prefix.to_owned(),
            mode,
            publish: Script::new(PUBLISH_SCRIPT),
            publish_many: Script::new(match mode {
                PubSubMode::Classic => PUBLISH_MANY_SCRIPT,
                PubSubMode::Sharded => PUBLISH_MANY_CLUSTER_SCRIPT,
            }),
            history: Script::new(HISTORY_SCRIPT),
        }
    }

    pub fn connection(&self) -> &RedisConnection {
        &self.connection
    }

    /// Publishes `payload` to `channel` in one step: next offset, stream, PUBLISH. Returns
    /// the publication's position (offset 0 without history). With `idempotency` (key,
    /// window in seconds), a key seen within its window returns the first result instead.
    pub async fn publish(
        &self,
        channel: &str,
        payload: &[u8],
        policy: StreamPolicy,
        epoch_candidate: &str,
        idempotency: Option<(&str, u64)>,
    ) -> Result<Position, RedisError> {
        let keys = ChannelKeys::new(&self.prefix, channel);
        let (size, ttl, meta_ttl) = (
            policy.size.to_string(),
            policy.ttl_secs.max(1).to_string(),
            policy.meta_ttl_secs.to_string(),
        );
        let (idem_key, window) = match idempotency {
            Some((key, window)) => (
                format!("{}.i.{{{channel}}}.{key}", self.prefix),
                window.max(1).to_string(),
            ),
            None => (keys.meta.clone(), "0".to_owned()),
        };
        let answer = self
            .publish
            .call(
                &self.connection,
                &[
                    keys.meta.as_bytes(),
                    keys.stream.as_bytes(),
                    idem_key.as_bytes(),
                ],
                &[
                    payload,
                    size.as_bytes(),
                    ttl.as_bytes(),
                    keys.pubsub.as_bytes(),
                    meta_ttl.as_bytes(),
                    epoch_candidate.as_bytes(),
                    window.as_bytes(),
                    self.mode.publish().as_bytes(),
                ],
            )
            .await?;
        match &answer {
            BytesFrame::Array(parts) if parts.len() == 2 => Ok(Position {
                offset: integer(&parts[0]).ok_or_else(|| malformed("publish", &answer))?,
                epoch: text(&parts[1]).ok_or_else(|| malformed("publish", &answer))?,
            }),
            _ => Err(malformed("publish", &answer)),
        }
    }

    /// Publishes `payload` to every one of `channels` (all with history, `policy.size` > 0) in
    /// one script call; their positions, in order.
    pub async fn publish_many(
        &self,
        channels: &[&str],
        payload: &[u8],
        policy: StreamPolicy,
        epoch_candidate: &str,
    ) -> Result<Vec<Position>, RedisError> {
        debug_assert!(
            policy.size > 0,
            "channels without history take the one-channel path"
        );
        let keys: Vec<ChannelKeys> = channels
            .iter()
            .map(|c| ChannelKeys::new(&self.prefix, c))
            .collect();
        let Some(first) = keys.first() else {
            return Ok(Vec::new());
        };
        let (size, ttl, meta_ttl) = (
            policy.size.to_string(),
            policy.ttl_secs.max(1).to_string(),
            policy.meta_ttl_secs.to_string(),
        );
        let mut args: Vec<&[u8]> = vec![
            payload,
            size.as_bytes(),
            ttl.as_bytes(),
            meta_ttl.as_bytes(),
            epoch_candidate.as_bytes(),
            self.mode.publish().as_bytes(),
        ];
        args.extend(
            keys.iter()
                .flat_map(|k| [k.meta.as_bytes(), k.stream.as_bytes(), k.pubsub.as_bytes()]),
        );
        let answer = self
            .publish_many
            .call(&self.connection, &[first.meta.as_bytes()], &args)
            .await?;
        let BytesFrame::Array(parts) = &answer else {
            return Err(malformed("publish", &answer));
        };
        if parts.len() != channels.len() * 2 {
            return Err(malformed("publish", &answer));
        }
        parts
            .chunks(2)
            .map(|pair| {
                Ok(Position {
                    offset: integer(&pair[0]).ok_or_else(|| malformed("publish", &answer))?,
                    epoch: text(&pair[1]).ok_or_else(|| malformed("publish", &answer))?,
                })
            })
            .collect()
    }

    /// The channel's position (made with `epoch_candidate` if it has none) and its
    /// publications after offset `from` (at most `limit`; 0: all kept), oldest first, read
    /// together.
    pub async fn history(
        &self,
        channel: &str,
        from: u64,
        limit: usize,
        epoch_candidate: &str,
        meta_ttl_secs: u64,
    ) -> Result<History, RedisError> {
        let keys = ChannelKeys::new(&self.prefix, channel);
        let (from, limit, meta_ttl) = (
            from.to_string(),
            limit.to_string(),
            meta_ttl_secs.to_string(),
        );
        let answer = self
            .history
            .call(
                &self.connection,
                &[keys.meta.as_bytes(), keys.stream.as_bytes()],
                &[
                    from.as_bytes(),
                    limit.as_bytes(),
                    epoch_candidate.as_bytes(),
                    meta_ttl.as_bytes(),
                ],
            )
            .await?;
        let BytesFrame::Array(parts) = &answer else {
            return Err(malformed("history", &answer));
        };
        if parts.len() < 2 || parts.len() % 2 != 0 {
            return Err(malformed("history", &answer));
        }
        let top = integer(&parts[0]).ok_or_else(|| malformed("history", &answer))?;
        let epoch = text(&parts[1]).ok_or_else(|| malformed("history", &answer))?;
        let mut entries = Vec::with_capacity(parts.len() / 2 - 1);
        for pair in parts[2..].chunks(2) {
            let id = text(&pair[0]).ok_or_else(|| malformed("history", &answer))?;
            let offset = id
                .strip_suffix("-0")
                .and_then(|o| o.parse().ok())
                .ok_or_else(|| malformed("history", &answer))?;
            let BytesFrame::BulkString(payload) = &pair[1] else {
                return Err(malformed("history", &answer));
            };
            entries.push(Entry {
                offset,
                epoch: epoch.clone(),
                payload: payload.clone(),
            });
        }
        Ok(History {
            top: Position { offset: top, epoch },
            entries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_splits_at_its_first_two_colons_only() {
        let entry = Entry::from_message(&Bytes::from_static(b"12:abcd:{\"a\":\"b:c\"}")).unwrap();
        assert_eq!(entry.offset, 12);
        assert_eq!(entry.epoch, "abcd");
        assert_eq!(&entry.payload[..], b"{\"a\":\"b:c\"}");
        let entry = Entry::from_message(&Bytes::from_static(b"0::x")).unwrap();
        assert_eq!((entry.offset, entry.epoch.as_str()), (0, ""));
        assert!(Entry::from_message(&Bytes::from_static(b"nope")).is_none());
        assert!(Entry::from_message(&Bytes::from_static(b"x:e:p")).is_none());
    }

    #[test]
    fn a_channels_keys_share_a_hash_tag() {
        let keys = ChannelKeys::new("centrifugo", "chat:index");
        assert_eq!(keys.meta, "centrifugo.m.{chat:index}");
        assert_eq!(keys.stream, "centrifugo.s.{chat:index}");
        assert_eq!(keys.pubsub, "centrifugo.p.{chat:index}");
        assert_eq!(
            channel_of_pubsub("centrifugo", keys.pubsub.as_bytes()),
            Some("chat:index")
        );
        assert_eq!(channel_of_pubsub("centrifugo", b"centrifugo.control"), None);
        // Every key of a channel is in one slot, even with braces in the channel's name.
        for channel in ["chat:index", "a{b}c", "x}y"] {
            let keys = ChannelKeys::new("centrifugo", channel);
            let slot = super::super::cluster::slot(keys.meta.as_bytes());
            assert_eq!(super::super::cluster::slot(keys.stream.as_bytes()), slot);
            assert_eq!(super::super::cluster::slot(keys.pubsub.as_bytes()), slot);
        }
    }
}
