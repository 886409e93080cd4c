//! Every token shape the issue lists, against the answer Centrifugo gives it. The RSA and
//! ECDSA keys are test-only fixtures (`tests/fixtures/token-*.pem`).

use super::*;
use crate::config::{Config, Token};
use serde_json::json;

const SECRET: &str = "s3cret";

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn keys(token: Token) -> TokenKeys {
    TokenKeys::new(&token, "client.token").expect("keys")
}

fn hmac_keys() -> TokenKeys {
    keys(Token {
        hmac_secret_key: SECRET.into(),
        ..Token::default()
    })
}

fn sign(alg: Algorithm, claims: Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(&Header::new(alg), &claims, key).expect("sign")
}

fn hs256(claims: Value) -> String {
    sign(
        Algorithm::HS256,
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
}

fn channels() -> ChannelSection {
    Config::default().channel
}

fn connect(token: &str) -> Result<ConnectClaims, TokenError> {
    verify_connect(token, &hmac_keys(), &channels())
}

fn subscribe(token: &str) -> Result<SubscribeClaims, TokenError> {
    verify_subscribe(token, &hmac_keys(), &channels())
}

fn now() -> u64 {
    unix_secs()
}

#[test]
fn a_connection_token_grants_its_claims() {
    let token = hs256(json!({
        "sub": "42", "exp": now() + 60, "info": {"name": "Ann"}, "meta": {"plan": "x"},
        "channels": ["a", "b", "a"],
    }));
    let claims = connect(&token).expect("valid");
    assert_eq!(claims.user, "42");
    assert!(claims.expires_at.unwrap() >= now() + 59);
    assert_eq!(claims.info.as_deref(), Some(r#"{"name":"Ann"}"#));
    assert_eq!(claims.meta.as_deref(), Some(r#"{"plan":"x"}"#));
    let subs: Vec<&str> = claims.subs.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(subs, ["a", "b"], "each channel once");

    // expire_at replaces exp as the expiry; 0 means never.
    let token = hs256(json!({"sub": "1", "exp": now() + 60, "expire_at": now() + 600}));
    assert!(connect(&token).unwrap().expires_at.unwrap() >= now() + 599);
    let token = hs256(json!({"sub": "1", "exp": now() + 60, "expire_at": 0}));
    assert_eq!(connect(&token).unwrap().expires_at, None);
    // b64info wins over info and must hold JSON.
    let token = hs256(json!({"sub": "1", "info": {"a": 1}, "b64info": "eyJiIjoyfQ=="}));
    assert_eq!(connect(&token).unwrap().info.as_deref(), Some(r#"{"b":2}"#));
    let token = hs256(json!({"sub": "1", "b64info": "bm90IGpzb24="}));
    assert_eq!(connect(&token), Err(TokenError::Invalid(Invalid::Claims)));
}

#[test]
fn subs_carry_info_data_and_overrides_and_win_over_channels() {
    let token = hs256(json!({
        "sub": "1", "channels": ["ignored"],
        "subs": {"room": {"info": {"role": "mod"}, "b64data": "eyJ4IjoxfQ==",
                          "override": {"force_recovery": {"value": true}, "presence": {}}}},
    }));
    let claims = connect(&token).expect("valid");
    assert_eq!(claims.subs.len(), 1);
    let (channel, grant) = &claims.subs[0];
    assert_eq!(channel, "room");
    assert_eq!(grant.info.as_deref(), Some(r#"{"role":"mod"}"#));
    assert_eq!(grant.data.as_deref(), Some(r#"{"x":1}"#));
    assert_eq!(grant.overrides.force_recovery, Some(true));
    assert_eq!(grant.overrides.presence, Some(false));
    assert_eq!(grant.overrides.join_leave, None);
    // A channel in no configured namespace: 102.
    let token = hs256(json!({"sub": "1", "channels": ["nope:x"]}));
    assert_eq!(connect(&token), Err(TokenError::UnknownChannel));
}

#[test]
fn bad_shapes_get_centrifugos_answers() {
    let expired = hs256(json!({"sub": "1", "exp": now() - 10}));
    assert_eq!(connect(&expired), Err(TokenError::Expired));
    let not_yet = hs256(json!({"sub": "1", "nbf": now() + 60}));
    assert_eq!(
        connect(&not_yet),
        Err(TokenError::Expired),
        "nbf: as Centrifugo, expired"
    );
    let wrong_key = sign(
        Algorithm::HS256,
        json!({"sub": "1"}),
        &EncodingKey::from_secret(b"other"),
    );
    assert_eq!(
        connect(&wrong_key),
        Err(TokenError::Invalid(Invalid::Signature))
    );
    // A bad signature on an expired token is invalid, not expired.
    let both = sign(
        Algorithm::HS256,
        json!({"sub": "1", "exp": now() - 10}),
        &EncodingKey::from_secret(b"other"),
    );
    assert_eq!(connect(&both), Err(TokenError::Invalid(Invalid::Signature)));
    let hs512 = sign(
        Algorithm::HS512,
        json!({"sub": "1"}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    );
    assert_eq!(
        connect(&hs512).unwrap().user,
        "1",
        "HS512 with the same secret"
    );
    // RS256 without an RSA key configured.
    let rsa = EncodingKey::from_rsa_pem(fixture("token-rsa-private.pem").as_bytes()).unwrap();
    let rs256 = sign(Algorithm::RS256, json!({"sub": "1"}), &rsa);
    assert_eq!(
        connect(&rs256),
        Err(TokenError::Invalid(Invalid::Algorithm))
    );
    // alg none: header {"alg":"none"}, claims, empty signature.
    let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiIxIn0.";
    assert_eq!(connect(none), Err(TokenError::Invalid(Invalid::Algorithm)));
    for garbage in ["", "garbage", "a.b.c", "....", "eyJhbGciOiJIUzI1NiJ9.e30"] {
        assert!(
            matches!(connect(garbage), Err(TokenError::Invalid(_))),
            "{garbage:?}"
        );
    }
    let typed = hs256(json!({"sub": ["1"]}));
    assert_eq!(connect(&typed), Err(TokenError::Invalid(Invalid::Claims)));
    let channel = hs256(json!({"sub": "1", "channel": "x"}));
    assert_eq!(
        connect(&channel),
        Err(TokenError::Invalid(Invalid::ChannelClaim))
    );
    // No sub: anonymous.
    assert_eq!(connect(&hs256(json!({}))).unwrap().user, "");
}

#[test]
fn rsa_and_ecdsa_tokens_verify_with_their_public_keys() {
    let keys = keys(Token {
        rsa_public_key: fixture("token-rsa-public.pem"),
        ecdsa_public_key: fixture("token-ec256-public.pem"),
        ..Token::default()
    });
    let rsa = EncodingKey::from_rsa_pem(fixture("token-rsa-private.pem").as_bytes()).unwrap();
    let ec = EncodingKey::from_ec_pem(fixture("token-ec256-private.pem").as_bytes()).unwrap();
    for (alg, key) in [
        (Algorithm::RS256, &rsa),
        (Algorithm::RS384, &rsa),
        (Algorithm::RS512, &rsa),
        (Algorithm::ES256, &ec),
    ] {
        let token = sign(alg, json!({"sub": "7"}), key);
        let claims = verify_connect(&token, &keys, &channels()).expect("verifies");
        assert_eq!(claims.user, "7", "{alg:?}");
    }
    // HS256 with no HMAC secret configured: refused.
    assert_eq!(
        verify_connect(&hs256(json!({"sub": "7"})), &keys, &channels()),
        Err(TokenError::Invalid(Invalid::Algorithm))
    );
    // ES384 with its own key.
    let keys384 = self::keys(Token {
        ecdsa_public_key: fixture("token-ec384-public.pem"),
        ..Token::default()
    });
    let ec384 = EncodingKey::from_ec_pem(fixture("token-ec384-private.pem").as_bytes()).unwrap();
    let token = sign(Algorithm::ES384, json!({"sub": "8"}), &ec384);
    assert_eq!(
        verify_connect(&token, &keys384, &channels()).unwrap().user,
        "8"
    );
    // A key that is not PEM is a configuration error naming the key.
    let err = TokenKeys::new(
        &Token {
            rsa_public_key: "nope".into(),
            ..Token::default()
        },
        "client.token",
    )
    .err()
    .expect("refused");
    assert!(err.contains("client.token.rsa_public_key"), "{err}");
}

#[test]
fn audience_issuer_and_user_id_claim_are_checked_when_configured() {
    let keys = keys(Token {
        hmac_secret_key: SECRET.into(),
        audience: "chat".into(),
        issuer: "backend".into(),
        user_id_claim: "uid".into(),
        ..Token::default()
    });
    let check = |claims: Value| verify_connect(&hs256(claims), &keys, &channels());
    assert_eq!(
        check(json!({"uid": "5", "aud": "chat", "iss": "backend"}))
            .unwrap()
            .user,
        "5"
    );
    assert_eq!(
        check(json!({"uid": 6, "aud": ["x", "chat"], "iss": "backend"}))
            .unwrap()
            .user,
        "6"
    );
    assert_eq!(
        check(json!({"uid": "5", "aud": "other", "iss": "backend"})),
        Err(TokenError::Invalid(Invalid::Audience))
    );
    assert_eq!(
        check(json!({"uid": "5", "iss": "backend"})),
        Err(TokenError::Invalid(Invalid::Audience))
    );
    assert_eq!(
        check(json!({"uid": "5", "aud": "chat", "iss": "evil"})),
        Err(TokenError::Invalid(Invalid::Issuer))
    );
}

#[test]
fn subscription_tokens_name_their_channel() {
    let token = hs256(json!({
        "sub": "42", "channel": "$news", "client": "c1", "exp": now() + 60,
        "info": {"a": 1}, "data": {"welcome": true},
        "override": {"force_positioning": {"value": true}},
    }));
    let claims = subscribe(&token).expect("valid");
    assert_eq!(
        (claims.user.as_str(), claims.channel.as_str()),
        ("42", "$news")
    );
    assert_eq!(claims.client.as_deref(), Some("c1"));
    assert!(claims.expires_at.unwrap() >= now() + 59);
    assert_eq!(claims.grant.info.as_deref(), Some(r#"{"a":1}"#));
    assert_eq!(claims.grant.data.as_deref(), Some(r#"{"welcome":true}"#));
    assert_eq!(claims.grant.overrides.force_positioning, Some(true));

    assert_eq!(
        subscribe(&hs256(json!({"sub": "42"}))),
        Err(TokenError::Invalid(Invalid::NoChannel))
    );
    assert_eq!(
        subscribe(&hs256(json!({"sub": "42", "channel": "nope:x"}))),
        Err(TokenError::UnknownChannel)
    );
    assert_eq!(
        subscribe(&hs256(
            json!({"sub": "42", "channel": "x", "exp": now() - 1})
        )),
        Err(TokenError::Expired)
    );
    // A connection token is no subscription token, and the other way round.
    assert_eq!(
        subscribe(&hs256(json!({"sub": "42"}))),
        Err(TokenError::Invalid(Invalid::NoChannel))
    );
    assert_eq!(
        connect(&hs256(json!({"sub": "42", "channel": "x"}))),
        Err(TokenError::Invalid(Invalid::ChannelClaim))
    );
}

#[test]
fn signed_tokens_verify() {
    let token = sign_connect("42", Some(60), SECRET).unwrap();
    assert_eq!(connect(&token).unwrap().user, "42");
    let mut claims = Map::new();
    claims.insert("channel".into(), json!("news"));
    let token = sign_hs256("42", None, claims, SECRET).unwrap();
    let claims = subscribe(&token).unwrap();
    assert_eq!((claims.channel.as_str(), claims.expires_at), ("news", None));
}

#[test]
fn a_rotated_secret_verifies_until_its_time_and_patterns_match_aud_and_iss() {
    let rotated = |until: i64| {
        keys(Token {
            hmac_secret_key: "new".into(),
            hmac_previous_secret_key: SECRET.into(),
            hmac_previous_secret_key_valid_until: until,
            ..Token::default()
        })
    };
    let old = hs256(json!({"sub": "1"}));
    let verify = |keys: &TokenKeys| verify_connect(&old, keys, &channels()).map(|c| c.user);
    assert_eq!(verify(&rotated(0)), Ok("1".into()), "no end set");
    assert_eq!(verify(&rotated(now() as i64 + 60)), Ok("1".into()));
    assert_eq!(
        verify(&rotated(now() as i64 - 60)),
        Err(TokenError::Invalid(Invalid::Signature)),
        "past its end"
    );
    let patterns = keys(Token {
        hmac_secret_key: SECRET.into(),
        audience_regex: "^chat-[a-z]+$".into(),
        issuer_regex: "^https://auth\\.example\\.com/".into(),
        ..Token::default()
    });
    let check = |claims: Value| verify_connect(&hs256(claims), &patterns, &channels());
    assert!(check(json!({"aud": "chat-eu", "iss": "https://auth.example.com/t1"})).is_ok());
    assert_eq!(
        check(json!({"aud": "chat-EU", "iss": "https://auth.example.com/t1"})),
        Err(TokenError::Invalid(Invalid::Audience))
    );
    assert_eq!(
        check(json!({"aud": ["x", "chat-us"], "iss": "https://evil.com/"})),
        Err(TokenError::Invalid(Invalid::Issuer))
    );
}
