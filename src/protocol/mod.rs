//! The Centrifugo client protocol v2 as pure codecs (`../shared/reference/centrifugo-protocol.md`):
//! the command types, the transport-neutral `Publication`, the codes, and the JSON codec
//! (`json::decode` for commands, `json::encode` for replies and pushes). Protobuf would sit
//! beside `json` as a second codec of the same types.
//!
//! Pure functions and plain types: no state, no I/O. A leaf: imports only `limits` and
//! `rand`.

pub mod codes;
pub mod json;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

pub use codes::{CustomDisconnect, Disconnect, ErrorCode, Refusal};

/// How a connection's commands and replies are encoded. Protobuf would be the second variant;
/// with one, the type takes no bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Json,
}

/// A publication as the protocol defines it, independent of any codec: `data`, `info` and
/// `tags` are raw JSON (validated, raw newlines removed); `offset` is absent for publications
/// without a stream position (`skip_history`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    pub offset: Option<std::num::NonZeroU64>,
    pub data: Bytes,
    /// ClientInfo of a client-side publisher.
    pub info: Option<Bytes>,
    /// Tags map.
    pub tags: Option<Bytes>,
}

/// One parsed client command.
#[derive(Debug)]
pub struct Command<'a> {
    pub id: u32,
    pub request: Request<'a>,
}

#[derive(Debug)]
pub enum Request<'a> {
    Connect(ConnectRequest),
    Subscribe(SubscribeRequest),
    Unsubscribe(ChannelRequest),
    Publish(PublishRequest<'a>),
    Presence(ChannelRequest),
    PresenceStats(ChannelRequest),
    History(HistoryRequest),
    Rpc,
    Send,
    Refresh(RefreshRequest),
    SubRefresh(SubRefreshRequest),
    /// The empty command `{}`: the client's pong.
    Pong,
}

impl Request<'_> {
    /// The command's name, as Centrifugo's metrics label it.
    pub fn method(&self) -> &'static str {
        match self {
            Request::Connect(_) => "connect",
            Request::Subscribe(_) => "subscribe",
            Request::Unsubscribe(_) => "unsubscribe",
            Request::Publish(_) => "publish",
            Request::Presence(_) => "presence",
            Request::PresenceStats(_) => "presence_stats",
            Request::History(_) => "history",
            Request::Rpc => "rpc",
            Request::Send => "send",
            Request::Refresh(_) => "refresh",
            Request::SubRefresh(_) => "sub_refresh",
            Request::Pong => "pong",
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct ConnectRequest {
    #[serde(default)]
    pub token: String,
    /// A reconnecting client's positions in its server-side subscriptions.
    #[serde(default)]
    pub subs: std::collections::HashMap<String, SubscribePosition>,
}

/// Where a client was in a server-side subscription (connect's `subs` entry).
#[derive(Debug, Default, Deserialize)]
pub struct SubscribePosition {
    #[serde(default)]
    pub recover: bool,
    #[serde(default)]
    pub offset: u64,
    #[serde(default)]
    pub epoch: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct ChannelRequest {
    #[serde(default)]
    pub channel: String,
}

/// `subscribe`: the fields this server acts on (the rest are ignored).
#[derive(Debug, Default, Deserialize)]
pub struct SubscribeRequest {
    #[serde(default)]
    pub channel: String,
    #[serde(default)]
    pub recover: bool,
    #[serde(default)]
    pub epoch: String,
    #[serde(default)]
    pub offset: u64,
    #[serde(default)]
    pub positioned: bool,
    #[serde(default)]
    pub recoverable: bool,
    /// Bit 2: answer 112 instead of an unrecovered result.
    #[serde(default)]
    pub flag: i64,
    /// A subscription token ("" for none).
    #[serde(default)]
    pub token: String,
    /// The client asks for the channel's join and leave pushes.
    #[serde(default)]
    pub join_leave: bool,
    /// The subscription type (0: a stream, the one this server has; Centrifugo 6.8 adds
    /// maps and shared polls).
    #[serde(default, rename = "type")]
    pub kind: i64,
}

/// `sub_refresh`: a new subscription token for a subscribed channel.
#[derive(Debug, Default, Deserialize)]
pub struct SubRefreshRequest {
    #[serde(default)]
    pub channel: String,
    #[serde(default)]
    pub token: String,
}

/// Subscription options a token or the server API's `subscribe` overrides (`override`:
/// `{"presence": {"value": bool}, ...}`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SubscriptionOverrides {
    pub presence: Option<bool>,
    pub join_leave: Option<bool>,
    pub force_push_join_leave: Option<bool>,
    pub force_recovery: Option<bool>,
    pub force_positioning: Option<bool>,
}

/// An `override` object that is not one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadOverrides;

impl SubscriptionOverrides {
    /// Reads an `override` object (absent or null: none); anything but objects of
    /// `{"value": bool}` is an error. `{}` for a name means false, as Centrifugo's protobuf
    /// `BoolValue` reads it.
    pub fn from_json(value: Option<&serde_json::Value>) -> Result<Self, BadOverrides> {
        use serde_json::Value;
        let map = match value {
            None | Some(Value::Null) => return Ok(Self::default()),
            Some(Value::Object(map)) => map,
            Some(_) => return Err(BadOverrides),
        };
        let flag = |name: &str| -> Result<Option<bool>, BadOverrides> {
            match map.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Object(v)) => match v.get("value") {
                    None | Some(Value::Null) => Ok(Some(false)),
                    Some(Value::Bool(b)) => Ok(Some(*b)),
                    Some(_) => Err(BadOverrides),
                },
                Some(_) => Err(BadOverrides),
            }
        };
        Ok(SubscriptionOverrides {
            presence: flag("presence")?,
            join_leave: flag("join_leave")?,
            force_push_join_leave: flag("force_push_join_leave")?,
            force_recovery: flag("force_recovery")?,
            force_positioning: flag("force_positioning")?,
        })
    }
}

/// Subscribe `flag` bit: the client prefers error 112 to `recovered: false`.
pub const FLAG_REJECT_UNRECOVERED: i64 = 2;

/// A stream position `{offset, epoch}`.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct StreamPosition {
    #[serde(default)]
    pub offset: u64,
    #[serde(default)]
    pub epoch: String,
}

/// `history` (client command and, with the same shape, the server API call).
#[derive(Debug, Default, Deserialize)]
pub struct HistoryRequest {
    #[serde(default)]
    pub channel: String,
    #[serde(default)]
    pub limit: i32,
    #[serde(default)]
    pub since: Option<StreamPosition>,
    #[serde(default)]
    pub reverse: bool,
}

#[derive(Debug, Deserialize)]
pub struct PublishRequest<'a> {
    #[serde(default)]
    pub channel: String,
    #[serde(borrow)]
    pub data: Option<&'a RawValue>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RefreshRequest {
    #[serde(default)]
    pub token: String,
}

/// A client id: a random version-4 UUID, the shape Centrifugo gives them, kept as its 16
/// bytes (every connection holds one; the text form is built when a reply needs it).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub struct ClientId([u8; 16]);

impl ClientId {
    /// No client id yet (a session before its connect).
    pub const NONE: ClientId = ClientId([0; 16]);

    pub fn random() -> Result<ClientId, crate::rand::RandomError> {
        crate::rand::uuid_v4().map(ClientId)
    }

    /// The client id of connection `conn` of shard `shard`: a version-4 UUID whose last 62
    /// bits say where the connection is (shard: 14 bits after the variant, connection: 48
    /// bits), the rest random (60 bits). So a client id finds its connection without a
    /// table (the API's `exclude_client`); connection ids are never reused.
    pub fn for_connection(shard: usize, conn: u64) -> Result<ClientId, crate::rand::RandomError> {
        debug_assert!(shard < 1 << 14 && conn < 1 << 48);
        let mut bytes = crate::rand::uuid_v4()?;
        bytes[8] = 0x80 | ((shard >> 8) as u8 & 0x3f);
        bytes[9] = shard as u8;
        bytes[10..].copy_from_slice(&conn.to_be_bytes()[2..]);
        Ok(ClientId(bytes))
    }

    /// Where the connection of a `for_connection` id is: (shard, connection id).
    pub fn connection(&self) -> (usize, u64) {
        let shard = (usize::from(self.0[8] & 0x3f) << 8) | usize::from(self.0[9]);
        let mut conn = [0u8; 8];
        conn[2..].copy_from_slice(&self.0[10..]);
        (shard, u64::from_be_bytes(conn))
    }

    pub const fn from_bytes(bytes: [u8; 16]) -> ClientId {
        ClientId(bytes)
    }

    /// The id written as `Display` writes it (`8-4-4-4-12` hex digits), e.g. from an API
    /// request; `None` for anything else.
    pub fn parse(text: &str) -> Option<ClientId> {
        let text = text.as_bytes();
        if text.len() != 36 {
            return None;
        }
        let mut bytes = [0u8; 16];
        let mut digits = text
            .iter()
            .enumerate()
            .filter(|&(i, _)| !matches!(i, 8 | 13 | 18 | 23));
        if [8, 13, 18, 23].iter().any(|&i| text[i] != b'-') {
            return None;
        }
        for byte in &mut bytes {
            let (_, &hi) = digits.next()?;
            let (_, &lo) = digits.next()?;
            let hex = |d: u8| (d as char).to_digit(16);
            *byte = (hex(hi)? << 4 | hex(lo)?) as u8;
        }
        Some(ClientId(bytes))
    }
}

impl std::fmt::Display for ClientId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, byte) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_parse_as_they_print() {
        let id = ClientId::random().unwrap();
        assert_eq!(ClientId::parse(&id.to_string()), Some(id));
        assert_eq!(ClientId::parse(&id.to_string().to_uppercase()), Some(id));
        assert_eq!(ClientId::parse("not-an-id"), None);
        assert_eq!(ClientId::parse(&id.to_string().replace('-', "x")), None);
    }

    #[test]
    fn client_ids_name_their_connection() {
        let id = ClientId::for_connection(5, 0x1234_5678_9abc).unwrap();
        assert_eq!(id.connection(), (5, 0x1234_5678_9abc));
        let text = id.to_string();
        assert_eq!(&text[14..15], "4", "version 4: {text}");
        assert!(
            matches!(&text[19..20], "8" | "9" | "a" | "b"),
            "variant: {text}"
        );
        let max = ClientId::for_connection((1 << 14) - 1, (1 << 48) - 1).unwrap();
        assert_eq!(max.connection(), ((1 << 14) - 1, (1 << 48) - 1));
        assert_ne!(
            ClientId::for_connection(5, 1).unwrap(),
            ClientId::for_connection(5, 1).unwrap(),
            "random otherwise"
        );
    }

    #[test]
    fn client_ids_are_uuid_v4() {
        let id = ClientId::random().unwrap().to_string();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_ne!(id, ClientId::random().unwrap().to_string());
    }
}
