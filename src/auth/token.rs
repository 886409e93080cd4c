//! Connection tokens: HS256 JWTs verified with the configured secret (jsonwebtoken), and the
//! signing side for `ringcast gentoken`. Claims as Centrifugo reads them: `sub` (user id, ""
//! = anonymous), `exp` (expired → error 109), `nbf`, `info` (raw JSON copied into ClientInfo),
//! `channels` (server-side subscriptions). A `channel` claim makes a connection token invalid
//! (it marks a subscription token).
//!
//! Owns the decoding key, built once per shard (`Verifier`). Imports `config` and `clock`.

use crate::clock::unix_secs;
use crate::config::Config;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// What a valid connection token grants.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectClaims {
    pub user: String,
    /// Unix seconds at which the connection expires, if the token has `exp`.
    pub expires_at: Option<u64>,
    /// The `info` claim re-encoded as compact JSON (so it holds no raw newline).
    pub info: Option<String>,
    pub channels: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// `exp` has passed: the client should fetch a new token (error 109).
    Expired,
    /// Malformed, bad signature, wrong algorithm or forbidden claims (close 3500).
    Invalid,
}

#[derive(Deserialize)]
struct RawClaims {
    #[serde(default)]
    sub: String,
    #[serde(default)]
    exp: Option<u64>,
    #[serde(default)]
    info: Option<serde_json::Value>,
    #[serde(default)]
    channels: Vec<String>,
    #[serde(default)]
    channel: Option<String>,
}

/// The keys tokens are checked with.
pub struct Verifier {
    key: DecodingKey,
}

impl Verifier {
    pub fn new(config: &Config) -> Self {
        Verifier {
            key: DecodingKey::from_secret(config.client.token.hmac_secret_key.as_bytes()),
        }
    }

    /// Verifies a connection token.
    pub fn connect(&self, token: &str) -> Result<ConnectClaims, TokenError> {
        verify_connect(token, &self.key)
    }
}

/// Verifies a connection token; the key is used only for HS256 (other algorithms are
/// refused as invalid, as Centrifugo does when no key is configured for them).
pub fn verify_connect(token: &str, key: &DecodingKey) -> Result<ConnectClaims, TokenError> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.required_spec_claims.clear();
    validation.validate_nbf = true;
    validation.leeway = 0;
    let data =
        jsonwebtoken::decode::<RawClaims>(token, key, &validation).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => TokenError::Expired,
            _ => TokenError::Invalid,
        })?;
    let claims = data.claims;
    if claims.channel.is_some() {
        return Err(TokenError::Invalid);
    }
    Ok(ConnectClaims {
        user: claims.sub,
        expires_at: claims.exp,
        info: claims.info.filter(|v| !v.is_null()).map(|v| v.to_string()),
        channels: claims.channels,
    })
}

#[derive(Serialize)]
struct OutClaims<'a> {
    sub: &'a str,
    iat: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<u64>,
}

/// Signs an HS256 connection token for `user`, expiring `ttl_seconds` from now (never if
/// `None`).
pub fn sign_connect(
    user: &str,
    ttl_seconds: Option<u64>,
    secret: &str,
) -> Result<String, jsonwebtoken::errors::Error> {
    let now = unix_secs();
    let claims = OutClaims {
        sub: user,
        iat: now,
        exp: ttl_seconds.map(|ttl| now + ttl),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(secret: &str) -> DecodingKey {
        DecodingKey::from_secret(secret.as_bytes())
    }

    #[test]
    fn signed_token_verifies_with_the_same_secret_only() {
        let token = sign_connect("42", Some(60), "s3cret").unwrap();
        let claims = verify_connect(&token, &key("s3cret")).unwrap();
        assert_eq!(claims.user, "42");
        assert!(claims.expires_at.unwrap() >= unix_secs() + 59);
        assert_eq!(
            verify_connect(&token, &key("other")),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            verify_connect("not.a.token", &key("s3cret")),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn expired_token_is_expired_not_invalid() {
        let claims = OutClaims {
            sub: "1",
            iat: 1,
            exp: Some(unix_secs() - 10),
        };
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"k"),
        )
        .unwrap();
        assert_eq!(verify_connect(&token, &key("k")), Err(TokenError::Expired));
    }

    #[test]
    fn info_and_channels_claims_are_read_and_channel_claim_is_refused() {
        let encode = |json: serde_json::Value| {
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &json,
                &EncodingKey::from_secret(b"k"),
            )
            .unwrap()
        };
        let token = encode(
            serde_json::json!({"sub": "u", "info": {"name": "Ann"}, "channels": ["a", "b"]}),
        );
        let claims = verify_connect(&token, &key("k")).unwrap();
        assert_eq!(claims.info.as_deref(), Some(r#"{"name":"Ann"}"#));
        assert_eq!(claims.channels, ["a", "b"]);
        assert_eq!(claims.expires_at, None);
        let token = encode(serde_json::json!({"sub": "u", "channel": "x"}));
        assert_eq!(verify_connect(&token, &key("k")), Err(TokenError::Invalid));
    }
}
