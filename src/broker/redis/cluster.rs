//! A Redis Cluster's slot map (`engine.redis.cluster_address`): which master serves each of
//! the 16,384 hash slots, read once with `CLUSTER SLOTS` from the first seed that answers,
//! before the shards start. A channel's keys and its pub/sub channel share one hash tag
//! (`{channel}`), so one master serves all of them: each master is then used as one more
//! independent Redis (`engine::redis` places a channel by its slot instead of by its name's
//! hash), and pub/sub is Redis 7's sharded kind (SPUBLISH/SSUBSCRIBE), which keeps a message
//! on the master of its channel's slot instead of sending it over the cluster bus to every
//! node.
//!
//! The map is read before the shards start, and again by each shard while it runs when a
//! master answers MOVED or cannot be reached (`engine::redis_instances` follows it).
//!
//! Owns the map and its parsing. Blocking I/O (std sockets): it runs before any executor.
//! Imports nothing of the crate beyond this module's siblings.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use bytes::BytesMut;
use redis_protocol::resp2::decode::decode_bytes_mut;
use redis_protocol::resp2::types::BytesFrame;

use super::connection::{encode_command, RedisSettings};

/// Hash slots in a Redis Cluster.
pub const SLOTS: usize = 16_384;

/// The largest `CLUSTER SLOTS` answer read (a cluster of hundreds of masters fits).
const SLOTS_ANSWER_MAX_BYTES: usize = 4 << 20;

/// Which master serves each slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotMap {
    /// The masters, in the order first seen.
    pub masters: Vec<SocketAddr>,
    /// Index into `masters` of each slot's master.
    owner: Vec<u16>,
}

impl SlotMap {
    /// The master (index into `masters`) serving `key`'s slot.
    pub fn master_of(&self, key: &[u8]) -> usize {
        self.master_of_slot(usize::from(slot(key)))
    }

    /// The master (index into `masters`) serving `slot`.
    pub fn master_of_slot(&self, slot: usize) -> usize {
        usize::from(self.owner[slot])
    }
}

/// How a master named by host name (not an IP address) is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolve {
    /// Through DNS (blocking: at start, before the shards run).
    Dns,
    /// Not at all: the map is refused (a shard's loop must not block on DNS).
    IpOnly,
}

/// `key`'s hash slot, by Redis's rule (the hash tag's text if it has a non-empty one).
pub fn slot(key: &[u8]) -> u16 {
    redis_protocol::redis_keyslot(key)
}

/// Reads the slot map from the first of `seeds` that answers.
pub fn discover(seeds: &[RedisSettings]) -> Result<SlotMap, String> {
    let mut failures = Vec::new();
    for seed in seeds {
        let address = seed.address;
        match ask(address, seed).and_then(|answer| parse_slots(&answer, address, Resolve::Dns)) {
            Ok(map) => return Ok(map),
            Err(e) => failures.push(format!("{address}: {e}")),
        }
    }
    Err(format!(
        "no Redis Cluster seed gave its slots ({})",
        failures.join("; ")
    ))
}

/// A blocking socket, plain or TLS.
trait Duplex: Read + Write {}
impl<T: Read + Write> Duplex for T {}

/// `CLUSTER SLOTS` on `seed`, after AUTH when a password is set, and a check that it has
/// sharded pub/sub.
fn ask(seed: SocketAddr, settings: &RedisSettings) -> Result<BytesFrame, String> {
    let socket = TcpStream::connect_timeout(&seed, settings.connect_timeout)
        .map_err(|e| format!("cannot connect: {e}"))?;
    socket
        .set_read_timeout(Some(settings.io_timeout))
        .and_then(|()| socket.set_write_timeout(Some(settings.io_timeout)))
        .map_err(|e| e.to_string())?;
    let mut stream: Box<dyn Duplex> = match &settings.tls {
        None => Box::new(socket),
        Some(tls) => {
            let connection =
                rustls::ClientConnection::new(tls.config.clone(), tls.server_name.clone())
                    .map_err(|e| e.to_string())?;
            Box::new(rustls::StreamOwned::new(connection, socket))
        }
    };
    let mut out = BytesMut::new();
    let mut commands = 0;
    if !settings.password.is_empty() {
        let mut auth: Vec<&[u8]> = vec![b"AUTH"];
        if !settings.user.is_empty() {
            auth.push(settings.user.as_bytes());
        }
        auth.push(settings.password.as_bytes());
        encode_command(&mut out, &auth)?;
        commands += 1;
    }
    encode_command(&mut out, &[b"CLUSTER", b"SLOTS"])?;
    // Sharded pub/sub came with Redis 7.0; an older Redis knows no SSUBSCRIBE.
    encode_command(&mut out, &[b"COMMAND", b"INFO", b"SSUBSCRIBE"])?;
    commands += 2;
    stream.write_all(&out).map_err(|e| e.to_string())?;
    let mut input = BytesMut::new();
    let mut chunk = [0u8; 16 << 10];
    let mut answers = Vec::with_capacity(commands);
    // Bounded by the read timeout and SLOTS_ANSWER_MAX_BYTES.
    while answers.len() < commands {
        match decode_bytes_mut(&mut input).map_err(|e| format!("bad RESP: {e}"))? {
            Some((frame, _, _)) => answers.push(frame),
            None => {
                if input.len() > SLOTS_ANSWER_MAX_BYTES {
                    return Err("the CLUSTER SLOTS answer is too large".into());
                }
                let n = stream.read(&mut chunk).map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err("closed before answering".into());
                }
                input.extend_from_slice(&chunk[..n]);
            }
        }
    }
    for answer in &answers {
        if let BytesFrame::Error(e) = answer {
            return Err(format!("{e}"));
        }
    }
    match answers.pop() {
        Some(BytesFrame::Array(info)) if !matches!(info.first(), None | Some(BytesFrame::Null)) => {
        }
        _ => return Err(
            "this Redis has no sharded pub/sub (SSUBSCRIBE): a cluster needs Redis 7.0 or later"
                .into(),
        ),
    }
    answers.pop().ok_or_else(|| "no answer".to_owned())
}

/// The map a `CLUSTER SLOTS` answer gives: each item `[first, last, [host, port, ...],
/// replicas...]`. A master that names no host ("", "?" or null) is at the asked node's
/// address; one named by host name is resolved as `resolve` says.
pub fn parse_slots(
    answer: &BytesFrame,
    seed: SocketAddr,
    resolve: Resolve,
) -> Result<SlotMap, String> {
    let BytesFrame::Array(ranges) = answer else {
        return Err(format!("CLUSTER SLOTS answered {answer:?}"));
    };
    let mut masters: Vec<SocketAddr> = Vec::new();
    let mut owner = vec![u16::MAX; SLOTS];
    for range in ranges {
        let malformed = || format!("a malformed CLUSTER SLOTS item: {range:?}");
        let BytesFrame::Array(parts) = range else {
            return Err(malformed());
        };
        let (Some(BytesFrame::Integer(first)), Some(BytesFrame::Integer(last))) =
            (parts.first(), parts.get(1))
        else {
            return Err(malformed());
        };
        let Some(BytesFrame::Array(master)) = parts.get(2) else {
            return Err(malformed());
        };
        let host = match master.first() {
            Some(BytesFrame::BulkString(h)) => String::from_utf8_lossy(h).into_owned(),
            Some(BytesFrame::Null) => String::new(),
            _ => return Err(malformed()),
        };
        let Some(BytesFrame::Integer(port)) = master.get(1) else {
            return Err(malformed());
        };
        let port = u16::try_from(*port).map_err(|_| malformed())?;
        let address = match host.as_str() {
            "" | "?" => SocketAddr::new(seed.ip(), port),
            host if host.parse::<std::net::IpAddr>().is_ok() => {
                SocketAddr::new(host.parse().map_err(|_| malformed())?, port)
            }
            host if resolve == Resolve::IpOnly => {
                return Err(format!(
                    "master {host}:{port} is named by host name, resolved at start only"
                ))
            }
            host => {
                use std::net::ToSocketAddrs;
                (host, port)
                    .to_socket_addrs()
                    .map_err(|e| format!("master {host}:{port}: {e}"))?
                    .next()
                    .ok_or_else(|| format!("master {host}:{port}: no address"))?
            }
        };
        let index = match masters.iter().position(|m| *m == address) {
            Some(i) => i,
            None => {
                masters.push(address);
                masters.len() - 1
            }
        };
        let index = u16::try_from(index).map_err(|_| "more masters than slots".to_owned())?;
        let (first, last) = (usize::try_from(*first), usize::try_from(*last));
        let (Ok(first), Ok(last)) = (first, last) else {
            return Err(malformed());
        };
        if first > last || last >= SLOTS {
            return Err(malformed());
        }
        owner[first..=last].fill(index);
    }
    if let Some(slot) = owner.iter().position(|&o| o == u16::MAX) {
        return Err(format!(
            "slot {slot} has no master (is the cluster's state ok? CLUSTER INFO says)"
        ));
    }
    Ok(SlotMap { masters, owner })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn bulk(s: &str) -> BytesFrame {
        BytesFrame::BulkString(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn range(first: i64, last: i64, host: &str, port: i64) -> BytesFrame {
        BytesFrame::Array(vec![
            BytesFrame::Integer(first),
            BytesFrame::Integer(last),
            BytesFrame::Array(vec![bulk(host), BytesFrame::Integer(port), bulk("id")]),
        ])
    }

    #[test]
    fn slots_map_to_their_masters() {
        let seed: SocketAddr = "127.0.0.1:7000".parse().unwrap();
        let answer = BytesFrame::Array(vec![
            range(0, 5460, "127.0.0.1", 7000),
            range(5461, 10922, "", 7001),
            range(10923, 16383, "127.0.0.1", 7002),
        ]);
        let map = parse_slots(&answer, seed, Resolve::IpOnly).unwrap();
        assert_eq!(map.masters.len(), 3);
        assert_eq!(map.masters[1], "127.0.0.1:7001".parse().unwrap());
        // Redis's own examples: CLUSTER KEYSLOT "foo" is 12182, "{user1000}.following" 3443.
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"{user1000}.following"), 3443);
        assert_eq!(map.master_of(b"foo"), 2);
        assert_eq!(map.master_of(b"{user1000}.following"), 0);
    }

    #[test]
    fn masters_by_host_name_are_resolved_only_when_asked() {
        let seed: SocketAddr = "127.0.0.1:7000".parse().unwrap();
        let answer = BytesFrame::Array(vec![range(0, 16383, "redis-a.invalid", 7000)]);
        let e = parse_slots(&answer, seed, Resolve::IpOnly).unwrap_err();
        assert!(e.contains("host name"), "{e}");
        let unnamed = BytesFrame::Array(vec![BytesFrame::Array(vec![
            BytesFrame::Integer(0),
            BytesFrame::Integer(16383),
            BytesFrame::Array(vec![BytesFrame::Null, BytesFrame::Integer(7001)]),
        ])]);
        let map = parse_slots(&unnamed, seed, Resolve::IpOnly).unwrap();
        assert_eq!(map.masters, ["127.0.0.1:7001".parse().unwrap()]);
    }

    #[test]
    fn a_slot_without_master_is_an_error() {
        let seed: SocketAddr = "127.0.0.1:7000".parse().unwrap();
        let answer = BytesFrame::Array(vec![range(0, 100, "127.0.0.1", 7000)]);
        let e = parse_slots(&answer, seed, Resolve::IpOnly).unwrap_err();
        assert!(e.contains("slot 101 has no master"), "{e}");
    }
}
