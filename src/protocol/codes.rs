//! The protocol's codes as types: `ErrorCode` for reply errors (reference §8.1) and
//! `Disconnect` for WebSocket close codes with their reasons (§8.3). A code that is not in
//! these enums cannot be sent.

/// A reply error (`{"code":N,"message":"..."}`), reference §8.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    Internal,
    Unauthorized,
    UnknownChannel,
    PermissionDenied,
    MethodNotFound,
    AlreadySubscribed,
    LimitExceeded,
    BadRequest,
    NotAvailable,
    TokenExpired,
    Expired,
    TooManyRequests,
    UnrecoverablePosition,
}

impl ErrorCode {
    pub const fn code(self) -> u32 {
        match self {
            ErrorCode::Internal => 100,
            ErrorCode::Unauthorized => 101,
            ErrorCode::UnknownChannel => 102,
            ErrorCode::PermissionDenied => 103,
            ErrorCode::MethodNotFound => 104,
            ErrorCode::AlreadySubscribed => 105,
            ErrorCode::LimitExceeded => 106,
            ErrorCode::BadRequest => 107,
            ErrorCode::NotAvailable => 108,
            ErrorCode::TokenExpired => 109,
            ErrorCode::Expired => 110,
            ErrorCode::TooManyRequests => 111,
            ErrorCode::UnrecoverablePosition => 112,
        }
    }

    /// The message text Centrifugo pairs with the code.
    pub const fn message(self) -> &'static str {
        match self {
            ErrorCode::Internal => "internal server error",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::UnknownChannel => "unknown channel",
            ErrorCode::PermissionDenied => "permission denied",
            ErrorCode::MethodNotFound => "method not found",
            ErrorCode::AlreadySubscribed => "already subscribed",
            ErrorCode::LimitExceeded => "limit exceeded",
            ErrorCode::BadRequest => "bad request",
            ErrorCode::NotAvailable => "not available",
            ErrorCode::TokenExpired => "token expired",
            ErrorCode::Expired => "expired",
            ErrorCode::TooManyRequests => "too many requests",
            ErrorCode::UnrecoverablePosition => "unrecoverable position",
        }
    }

    /// Client replies mark these `temporary`, so SDKs retry (reference §8.1).
    pub const fn temporary(self) -> bool {
        matches!(self, ErrorCode::Internal | ErrorCode::TooManyRequests)
    }
}

/// A disconnect: the WebSocket close code and reason (reference §8.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disconnect {
    /// 3004: the server failed the connection (clients reconnect).
    ServerError,
    /// 3005: the connection token expired and was not refreshed.
    Expired,
    /// 3008: the connection could not keep up with its output.
    Slow,
    /// 3012: no pong to a ping in time.
    NoPong,
    /// 3500: a token that is malformed, badly signed or not a connection token.
    InvalidToken,
    /// 3501: a malformed command, or one the state does not allow.
    BadRequest,
    /// 3502: no connect command in time.
    Stale,
    /// 3507: the connect is not allowed (an anonymous token where they are disallowed).
    PermissionDenied,
    /// 3508: a command this server has no handler for (`send`).
    NotAvailable,
    /// 3503: the server API's `disconnect` without a code of its own.
    Force,
    /// 3504: one connection per user, and the user connected again.
    ConnectionLimit,
    /// 3505: the server API subscribed the connection past `client.channel_limit`.
    ChannelLimit,
    /// 3001: the server is shutting down (clients reconnect, to another node).
    Shutdown,
    /// 3010: the node lost track of a channel's stream (Redis restarted or pub/sub missed
    /// publications): clients reconnect and recover from the stream, or learn they cannot.
    InsufficientState,
}

/// A close with any code and reason: the server API's `disconnect` gives its own, and every
/// `Disconnect` is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomDisconnect {
    pub code: u16,
    pub reason: Box<str>,
}

impl From<Disconnect> for CustomDisconnect {
    fn from(d: Disconnect) -> Self {
        CustomDisconnect {
            code: d.code(),
            reason: d.reason().into(),
        }
    }
}

impl Disconnect {
    pub const fn code(self) -> u16 {
        match self {
            Disconnect::ServerError => 3004,
            Disconnect::Expired => 3005,
            Disconnect::Slow => 3008,
            Disconnect::NoPong => 3012,
            Disconnect::InvalidToken => 3500,
            Disconnect::BadRequest => 3501,
            Disconnect::Stale => 3502,
            Disconnect::PermissionDenied => 3507,
            Disconnect::NotAvailable => 3508,
            Disconnect::Force => 3503,
            Disconnect::ConnectionLimit => 3504,
            Disconnect::ChannelLimit => 3505,
            Disconnect::Shutdown => 3001,
            Disconnect::InsufficientState => 3010,
        }
    }

    pub const fn reason(self) -> &'static str {
        match self {
            Disconnect::ServerError => "internal server error",
            Disconnect::Expired => "connection expired",
            Disconnect::Slow => "slow",
            Disconnect::NoPong => "no pong",
            Disconnect::InvalidToken => "invalid token",
            Disconnect::BadRequest => "bad request",
            Disconnect::Stale => "stale",
            Disconnect::PermissionDenied => "permission denied",
            Disconnect::NotAvailable => "not available",
            Disconnect::Force => "force disconnect",
            Disconnect::ConnectionLimit => "connection limit",
            Disconnect::ChannelLimit => "channel limit",
            Disconnect::Shutdown => "shutdown",
            Disconnect::InsufficientState => "insufficient state",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_texts_follow_the_reference() {
        assert_eq!(ErrorCode::PermissionDenied.code(), 103);
        assert_eq!(
            ErrorCode::UnrecoverablePosition.message(),
            "unrecoverable position"
        );
        assert!(ErrorCode::Internal.temporary() && !ErrorCode::BadRequest.temporary());
        assert_eq!(
            (Disconnect::Slow.code(), Disconnect::Slow.reason()),
            (3008, "slow")
        );
        assert_eq!(Disconnect::BadRequest.code(), 3501);
    }
}

/// Why a client's connect or command was refused by the access rules or a token: one
/// counter each in `/metrics` (`ringcast_refusals_total{reason="..."}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The channel's namespace is not configured (102).
    UnknownChannel,
    /// Too long, not ASCII, or not matching the namespace's `channel_regex` (107).
    BadChannel,
    /// The feature is off for the channel (history, presence: 108).
    NotAvailable,
    /// A private (`$`) channel without a subscription token (103).
    PrivateWithoutToken,
    /// A token's `exp` passed or `nbf` not reached (109).
    TokenExpired,
    /// A token that cannot be trusted or is malformed (3500 on connect, 103 on subscribe).
    TokenInvalid,
    /// A subscription token for another channel, user or client (3500).
    TokenMismatch,
    /// A grant whose `expire_at` is already past (110).
    Expired,
    /// No rule lets this client do it (103).
    NotAllowed,
    /// A connect without a token while anonymous connects are off (3501).
    NoToken,
    /// A token whose key is not known yet (a JWKS `kid` being fetched): 100, temporary.
    TokenUnverifiable,
    /// A WebSocket upgrade from an origin `client.allowed_origins` does not allow (403).
    Origin,
    /// A WebSocket upgrade past `client.connection_limit` (503).
    ConnectionLimit,
    /// A WebSocket upgrade past `client.connection_rate_limit` (503).
    ConnectionRate,
    /// A user's connection past `client.user_connection_limit` (3504).
    UserConnectionLimit,
    /// A connection without a valid PROXY header where `http_server.proxy_protocol` asks for
    /// one (closed).
    ProxyHeader,
    /// A command past `client.command_rate_limit` (111).
    CommandRate,
    /// A TLS handshake that failed or did not finish within `http_server.request_timeout`
    /// (closed).
    TlsHandshake,
}

impl Refusal {
    pub const ALL: [Refusal; 18] = [
        Refusal::UnknownChannel,
        Refusal::BadChannel,
        Refusal::NotAvailable,
        Refusal::PrivateWithoutToken,
        Refusal::TokenExpired,
        Refusal::TokenInvalid,
        Refusal::TokenMismatch,
        Refusal::Expired,
        Refusal::NotAllowed,
        Refusal::NoToken,
        Refusal::TokenUnverifiable,
        Refusal::Origin,
        Refusal::ConnectionLimit,
        Refusal::ConnectionRate,
        Refusal::UserConnectionLimit,
        Refusal::ProxyHeader,
        Refusal::CommandRate,
        Refusal::TlsHandshake,
    ];

    /// Its place in `ALL` (and in a counter array).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::UnknownChannel => "unknown_channel",
            Refusal::BadChannel => "bad_channel",
            Refusal::NotAvailable => "not_available",
            Refusal::PrivateWithoutToken => "private_without_token",
            Refusal::TokenExpired => "token_expired",
            Refusal::TokenInvalid => "token_invalid",
            Refusal::TokenMismatch => "token_mismatch",
            Refusal::Expired => "expired",
            Refusal::NotAllowed => "not_allowed",
            Refusal::NoToken => "no_token",
            Refusal::TokenUnverifiable => "token_unverifiable",
            Refusal::Origin => "origin",
            Refusal::ConnectionLimit => "connection_limit",
            Refusal::ConnectionRate => "connection_rate",
            Refusal::UserConnectionLimit => "user_connection_limit",
            Refusal::ProxyHeader => "proxy_header",
            Refusal::CommandRate => "command_rate",
            Refusal::TlsHandshake => "tls_handshake",
        }
    }
}

#[cfg(test)]
mod refusal_tests {
    use super::Refusal;

    #[test]
    fn every_refusal_sits_at_its_index() {
        for (i, refusal) in Refusal::ALL.iter().enumerate() {
            assert_eq!(refusal.index(), i, "{refusal:?}");
        }
    }
}
