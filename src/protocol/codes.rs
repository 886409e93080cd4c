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
    /// 3508: a command this server has no handler for (`send`).
    NotAvailable,
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
            Disconnect::NotAvailable => 3508,
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
            Disconnect::NotAvailable => "not available",
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
