//! Connection and subscription tokens: JWTs verified as Centrifugo verifies them
//! (`jwtverify` in Centrifugo v6), and the signing side for `ringcast gentoken` and
//! `gensubtoken`.
//!
//! The order of checks, and what each failure answers: the header's algorithm must have a
//! configured key and the signature must verify, `aud`/`iss` must match when configured, a
//! connection token must not carry `channel` (all **invalid**: close 3500 on connect, error
//! 103 on subscribe); then `exp` must be in the future and `nbf` in the past (**expired**:
//! error 109, the SDK asks for a new token); a subscription token must name its `channel`
//! (invalid), and every channel a token names must be in a configured namespace (**unknown
//! channel**, error 102). Claims: `sub` (or `client.token.user_id_claim`), `exp`, `nbf`,
//! `expire_at` (replaces `exp` as the expiry; 0: never), `info`/`b64info`, and per kind:
//! `channels`, `subs` (with `info`, `data`, `override` each), `meta` for connections;
//! `channel`, `client`, `data`/`b64data`, `override` for subscriptions.
//!
//! Pure: values in, claims or a refusal out. Imports `config`, `clock` and `auth::keys`.

use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, EncodingKey, Header, Validation};
use serde_json::{Map, Value};

use super::keys::TokenKeys;
use crate::clock::{unix_ms, unix_secs};
use crate::config::ChannelSection;

/// Why a token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// `exp` passed or `nbf` not reached: the client should fetch a new token (error 109).
    Expired,
    /// The token cannot be trusted or is malformed (close 3500 / error 103).
    Invalid(Invalid),
    /// A channel the token names is in no configured namespace (error 102).
    UnknownChannel,
    /// Its key is not known yet (a JWKS `kid` being fetched): a temporary error, retried.
    Unverifiable,
}

/// What made a token invalid (for logs, metrics and `checktoken`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// Not three base64url parts, or a header that does not parse.
    Malformed,
    /// An algorithm with no configured key (`none` included).
    Algorithm,
    Signature,
    /// A claim of the wrong type, or undecodable base64 or JSON in one.
    Claims,
    Audience,
    Issuer,
    /// A connection token with a `channel` claim (that marks a subscription token).
    ChannelClaim,
    /// A subscription token without a `channel` claim.
    NoChannel,
}

impl Invalid {
    pub fn as_str(self) -> &'static str {
        match self {
            Invalid::Malformed => "malformed",
            Invalid::Algorithm => "algorithm",
            Invalid::Signature => "signature",
            Invalid::Claims => "claims",
            Invalid::Audience => "audience",
            Invalid::Issuer => "issuer",
            Invalid::ChannelClaim => "channel_claim",
            Invalid::NoChannel => "no_channel",
        }
    }
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenError::Expired => f.write_str("token expired (exp passed or nbf not reached)"),
            TokenError::Invalid(why) => write!(f, "invalid token: {}", why.as_str()),
            TokenError::UnknownChannel => f.write_str("a channel of the token has no namespace"),
            TokenError::Unverifiable => {
                f.write_str("the key of the token's kid is not known (yet) at the JWKS endpoint")
            }
        }
    }
}

pub use crate::protocol::SubscriptionOverrides as Overrides;

/// What a token says about one subscription: channel info for the subscriber's ClientInfo,
/// data for the subscribe result, overrides of the namespace's options. JSON kept compact.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscriptionGrant {
    pub info: Option<Box<str>>,
    pub data: Option<Box<str>>,
    pub overrides: Overrides,
}

/// What a valid connection token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectClaims {
    pub user: String,
    /// Unix seconds at which the connection expires (`expire_at`, else `exp`), if ever.
    pub expires_at: Option<u64>,
    /// The `info` claim (or decoded `b64info`) as compact JSON.
    pub info: Option<String>,
    /// Server-side subscriptions: `subs` when present, else `channels`, each once, in order.
    pub subs: Vec<(String, SubscriptionGrant)>,
    /// `meta`, kept on the server only.
    pub meta: Option<String>,
}

/// What a valid subscription token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeClaims {
    pub user: String,
    pub channel: String,
    /// The connection it is for, when the token names one.
    pub client: Option<String>,
    /// Unix seconds at which the subscription expires (`expire_at`, else `exp`), if ever.
    pub expires_at: Option<u64>,
    pub grant: SubscriptionGrant,
}

/// Verifies a connection token.
pub fn verify_connect(
    token: &str,
    keys: &TokenKeys,
    channels: &ChannelSection,
) -> Result<ConnectClaims, TokenError> {
    let claims = verified_claims(token, keys)?;
    if claims.contains_key("channel") {
        return Err(TokenError::Invalid(Invalid::ChannelClaim));
    }
    check_time(&claims)?;
    let user = user_of(&claims, keys)?;
    let mut subs: Vec<(String, SubscriptionGrant)> = Vec::new();
    match claims.get("subs") {
        Some(Value::Object(map)) if !map.is_empty() => {
            for (channel, options) in map {
                let options = options
                    .as_object()
                    .ok_or(TokenError::Invalid(Invalid::Claims))?;
                subs.push((channel.clone(), grant_of(options)?));
            }
        }
        Some(Value::Object(_) | Value::Null) | None => {
            let mut seen = std::collections::HashSet::new();
            for channel in strings(claims.get("channels"))? {
                // Each once, in the token's order (a set: the list is the backend's to size).
                if seen.insert(channel.clone()) {
                    subs.push((channel, SubscriptionGrant::default()));
                }
            }
        }
        Some(_) => return Err(TokenError::Invalid(Invalid::Claims)),
    }
    if subs.iter().any(|(c, _)| channels.options(c).is_none()) {
        return Err(TokenError::UnknownChannel);
    }
    Ok(ConnectClaims {
        user,
        expires_at: expiry_of(&claims)?,
        info: json_or_b64(&claims, "info", "b64info")?,
        subs,
        meta: claims
            .get("meta")
            .filter(|v| !v.is_null())
            .map(Value::to_string),
    })
}

/// Verifies a subscription token.
pub fn verify_subscribe(
    token: &str,
    keys: &TokenKeys,
    channels: &ChannelSection,
) -> Result<SubscribeClaims, TokenError> {
    let claims = verified_claims(token, keys)?;
    check_time(&claims)?;
    let channel = match claims.get("channel") {
        Some(Value::String(c)) if !c.is_empty() => c.clone(),
        Some(Value::String(_) | Value::Null) | None => {
            return Err(TokenError::Invalid(Invalid::NoChannel))
        }
        Some(_) => return Err(TokenError::Invalid(Invalid::Claims)),
    };
    if channels.options(&channel).is_none() {
        return Err(TokenError::UnknownChannel);
    }
    let client = match claims.get("client") {
        Some(Value::String(c)) if !c.is_empty() => Some(c.clone()),
        Some(Value::String(_) | Value::Null) | None => None,
        Some(_) => return Err(TokenError::Invalid(Invalid::Claims)),
    };
    Ok(SubscribeClaims {
        user: user_of(&claims, keys)?,
        channel,
        client,
        expires_at: expiry_of(&claims)?,
        grant: grant_of(&claims)?,
    })
}

/// The claims of a token whose algorithm, signature, audience and issuer check out.
fn verified_claims(token: &str, keys: &TokenKeys) -> Result<Map<String, Value>, TokenError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| {
        // A header that names an algorithm this library does not know (`none` among them)
        // is an algorithm refusal; anything else is malformed.
        TokenError::Invalid(if names_an_algorithm(token) {
            Invalid::Algorithm
        } else {
            Invalid::Malformed
        })
    })?;
    let from_jwks;
    let key = match &keys.jwks {
        Some(jwks) => {
            let kid = header
                .kid
                .as_deref()
                .ok_or(TokenError::Invalid(Invalid::Algorithm))?;
            from_jwks = jwks.key(kid).ok_or(TokenError::Unverifiable)?;
            &from_jwks
        }
        None => keys
            .key_for(header.alg)
            .ok_or(TokenError::Invalid(Invalid::Algorithm))?,
    };
    // Time claims are checked afterwards, in Centrifugo's order (a bad signature on an
    // expired token is invalid, not expired); audience and issuer here, by hand.
    let mut validation = Validation::new(header.alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    let decode = |key| jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation);
    let data = match decode(key) {
        // A secret rotated away still verifies what it signed, while accepted.
        Err(e) if *e.kind() == ErrorKind::InvalidSignature => {
            match keys.previous_hmac(header.alg) {
                Some(previous) => decode(previous),
                None => Err(e),
            }
        }
        other => other,
    }
    .map_err(|e| match e.kind() {
        ErrorKind::InvalidSignature => TokenError::Invalid(Invalid::Signature),
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidKeyFormat => {
            TokenError::Invalid(Invalid::Algorithm)
        }
        ErrorKind::Json(_) => TokenError::Invalid(Invalid::Claims),
        _ => TokenError::Invalid(Invalid::Malformed),
    })?;
    let claims = data.claims;
    if let Some(audience) = &keys.audience {
        let matches = match claims.get("aud") {
            Some(Value::String(aud)) => audience.accepts(aud),
            Some(Value::Array(auds)) => auds
                .iter()
                .any(|a| a.as_str().is_some_and(|a| audience.accepts(a))),
            _ => false,
        };
        if !matches {
            return Err(TokenError::Invalid(Invalid::Audience));
        }
    }
    if let Some(issuer) = &keys.issuer {
        let matches = claims
            .get("iss")
            .and_then(Value::as_str)
            .is_some_and(|iss| issuer.accepts(iss));
        if !matches {
            return Err(TokenError::Invalid(Invalid::Issuer));
        }
    }
    Ok(claims)
}

/// Whether the token's header is JSON with a string `alg` (whatever its value).
fn names_an_algorithm(token: &str) -> bool {
    let Some(header) = token.split('.').next() else {
        return false;
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .is_some_and(|h| h.get("alg").is_some_and(Value::is_string))
}

/// `exp` not passed and `nbf` reached (a malformed one is invalid).
fn check_time(claims: &Map<String, Value>) -> Result<(), TokenError> {
    let now_ms = unix_ms() as f64;
    if let Some(exp) = seconds(claims.get("exp"))? {
        if now_ms >= exp * 1000.0 {
            return Err(TokenError::Expired);
        }
    }
    if let Some(nbf) = seconds(claims.get("nbf"))? {
        if now_ms < nbf * 1000.0 {
            return Err(TokenError::Expired);
        }
    }
    Ok(())
}

/// When what the token grants ends: `expire_at` (0: never) if present, else `exp`.
fn expiry_of(claims: &Map<String, Value>) -> Result<Option<u64>, TokenError> {
    let at = match claims.get("expire_at") {
        Some(v) if !v.is_null() => seconds(Some(v))?,
        _ => seconds(claims.get("exp"))?,
    };
    Ok(at.filter(|s| *s > 0.0).map(|s| s as u64))
}

/// A NumericDate claim (seconds, possibly fractional).
fn seconds(value: Option<&Value>) -> Result<Option<f64>, TokenError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .map(Some)
            .ok_or(TokenError::Invalid(Invalid::Claims)),
        Some(_) => Err(TokenError::Invalid(Invalid::Claims)),
    }
}

/// The user id: the configured claim, a string (a number is taken as its decimal text, as
/// Centrifugo's claim lookup does); absent: anonymous ("").
fn user_of(claims: &Map<String, Value>, keys: &TokenKeys) -> Result<String, TokenError> {
    match claims.get(&keys.user_id_claim) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(_) => Err(TokenError::Invalid(Invalid::Claims)),
    }
}

fn strings(value: Option<&Value>) -> Result<Vec<String>, TokenError> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or(TokenError::Invalid(Invalid::Claims))
            })
            .collect(),
        Some(_) => Err(TokenError::Invalid(Invalid::Claims)),
    }
}

/// `info`/`data`/`override` of a subscription, from a token's claims or one `subs` entry.
fn grant_of(claims: &Map<String, Value>) -> Result<SubscriptionGrant, TokenError> {
    Ok(SubscriptionGrant {
        info: json_or_b64(claims, "info", "b64info")?.map(String::into_boxed_str),
        data: json_or_b64(claims, "data", "b64data")?.map(String::into_boxed_str),
        overrides: overrides_of(claims.get("override"))?,
    })
}

/// A raw JSON claim, or its base64 form (which must hold JSON: the protocol is JSON), as
/// compact JSON; the base64 form wins, as in Centrifugo.
fn json_or_b64(
    claims: &Map<String, Value>,
    json: &str,
    b64: &str,
) -> Result<Option<String>, TokenError> {
    match claims.get(b64) {
        Some(Value::String(text)) if !text.is_empty() => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|_| TokenError::Invalid(Invalid::Claims))?;
            let value: Value =
                serde_json::from_slice(&bytes).map_err(|_| TokenError::Invalid(Invalid::Claims))?;
            return Ok(Some(value.to_string()));
        }
        Some(Value::String(_) | Value::Null) | None => {}
        Some(_) => return Err(TokenError::Invalid(Invalid::Claims)),
    }
    Ok(claims
        .get(json)
        .filter(|v| !v.is_null())
        .map(Value::to_string))
}

fn overrides_of(value: Option<&Value>) -> Result<Overrides, TokenError> {
    Overrides::from_json(value).map_err(|_| TokenError::Invalid(Invalid::Claims))
}

/// Signs an HS256 token for `user` with `claims` added (`channel` for a subscription
/// token), expiring `ttl_seconds` from now (never if `None`): `gentoken`, `gensubtoken`.
pub fn sign_hs256(
    user: &str,
    ttl_seconds: Option<u64>,
    mut claims: Map<String, Value>,
    secret: &str,
) -> Result<String, jsonwebtoken::errors::Error> {
    let now = unix_secs();
    claims.insert("sub".into(), Value::from(user));
    claims.insert("iat".into(), Value::from(now));
    if let Some(ttl) = ttl_seconds {
        claims.insert("exp".into(), Value::from(now + ttl));
    }
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
}

/// An HS256 connection token for `user` (tests, benches, `gentoken`).
pub fn sign_connect(
    user: &str,
    ttl_seconds: Option<u64>,
    secret: &str,
) -> Result<String, jsonwebtoken::errors::Error> {
    sign_hs256(user, ttl_seconds, Map::new(), secret)
}

#[cfg(test)]
mod tests;
