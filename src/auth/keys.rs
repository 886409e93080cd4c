//! `TokenKeys`: what one kind of token (connection, or subscription when it has keys of its
//! own) is checked with: the decoding key of each configured algorithm family (HMAC, RSA,
//! ECDSA, and the HMAC secret before a rotation), and the audience, issuer and user-id claim
//! the configuration asks for (exactly, or by pattern). Built once
//! from `client.token` (or `client.subscription_token`); a key that does not parse is a
//! configuration error, named by its key.
//!
//! Owns nothing but the keys; imports `config`.

use jsonwebtoken::{Algorithm, DecodingKey};
use regex::Regex;

use std::sync::Arc;

use super::jwks::JwksKeys;
use crate::clock::unix_secs;
use crate::config::Token;

/// What a claim (`aud`, `iss`) must be: exactly a value, or match a pattern.
pub enum Expected {
    Exactly(String),
    Matching(Regex),
}

impl Expected {
    pub fn accepts(&self, value: &str) -> bool {
        match self {
            Expected::Exactly(v) => v == value,
            Expected::Matching(re) => re.is_match(value),
        }
    }
}

/// The keys and claim checks of one token kind.
pub struct TokenKeys {
    /// When set, every token is verified with the key its `kid` names there (as Centrifugo:
    /// the other keys are then not used).
    pub jwks: Option<Arc<JwksKeys>>,
    hmac: Option<DecodingKey>,
    /// The HMAC secret before a rotation, and until when (Unix seconds) it is accepted.
    previous_hmac: Option<(DecodingKey, Option<u64>)>,
    rsa: Option<DecodingKey>,
    ecdsa: Option<DecodingKey>,
    /// One `aud` must be this, when set.
    pub audience: Option<Expected>,
    /// `iss` must be this, when set.
    pub issuer: Option<Expected>,
    /// The claim holding the user id (`sub` unless configured).
    pub user_id_claim: String,
}

impl TokenKeys {
    /// The keys of `token`; `section` names it in errors (`client.token`).
    pub fn new(token: &Token, section: &str) -> Result<Self, String> {
        let pem =
            |text: &str, parse: fn(&[u8]) -> jsonwebtoken::errors::Result<DecodingKey>, key| {
                if text.is_empty() {
                    return Ok(None);
                }
                parse(text.as_bytes())
                    .map(Some)
                    .map_err(|e| format!("{section}.{key}: not a usable PEM public key: {e}"))
            };
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        let expected = |exact: &str,
                        pattern: &str,
                        key: &str|
         -> Result<Option<Expected>, String> {
            if !pattern.is_empty() {
                return Regex::new(pattern)
                    .map(|re| Some(Expected::Matching(re)))
                    .map_err(|e| format!("{section}.{key}: {pattern:?} does not compile: {e}"));
            }
            Ok(non_empty(exact).map(Expected::Exactly))
        };
        Ok(TokenKeys {
            jwks: (!token.jwks_public_endpoint.is_empty())
                .then(|| JwksKeys::of(&token.jwks_public_endpoint)),
            hmac: (!token.hmac_secret_key.is_empty())
                .then(|| DecodingKey::from_secret(token.hmac_secret_key.as_bytes())),
            previous_hmac: (!token.hmac_previous_secret_key.is_empty()).then(|| {
                (
                    DecodingKey::from_secret(token.hmac_previous_secret_key.as_bytes()),
                    u64::try_from(token.hmac_previous_secret_key_valid_until)
                        .ok()
                        .filter(|t| *t > 0),
                )
            }),
            rsa: pem(
                &token.rsa_public_key,
                DecodingKey::from_rsa_pem,
                "rsa_public_key",
            )?,
            ecdsa: pem(
                &token.ecdsa_public_key,
                DecodingKey::from_ec_pem,
                "ecdsa_public_key",
            )?,
            audience: expected(&token.audience, &token.audience_regex, "audience_regex")?,
            issuer: expected(&token.issuer, &token.issuer_regex, "issuer_regex")?,
            user_id_claim: non_empty(&token.user_id_claim).unwrap_or_else(|| "sub".into()),
        })
    }

    /// The key for a token signed with `alg`, if that algorithm is enabled (as Centrifugo:
    /// HS256/384/512 with the HMAC secret, RS256/384/512 with the RSA key, ES256/384 with
    /// the ECDSA key; nothing else).
    pub fn key_for(&self, alg: Algorithm) -> Option<&DecodingKey> {
        match alg {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => self.hmac.as_ref(),
            Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 => self.rsa.as_ref(),
            Algorithm::ES256 | Algorithm::ES384 => self.ecdsa.as_ref(),
            _ => None,
        }
    }

    /// The previous HMAC secret, for a token the current one does not verify, while it is
    /// still accepted.
    pub fn previous_hmac(&self, alg: Algorithm) -> Option<&DecodingKey> {
        let (key, until) = self.previous_hmac.as_ref()?;
        let hmac = matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512);
        (hmac && until.is_none_or(|t| unix_secs() <= t)).then_some(key)
    }
}
