//! The access rules one by one, in Centrifugo's order of checks.

use super::*;
use crate::auth::token::sign_hs256;
use crate::config::{Namespace, NamespaceOptions};
use crate::protocol::ClientId;
use serde_json::{json, Map, Value};

const SECRET: &str = "k";

fn config() -> Config {
    let mut config = Config::default();
    config.client.token.hmac_secret_key = SECRET.into();
    config.channel.max_length = 40;
    config.channel.namespaces.push(Namespace {
        name: "open".into(),
        options: NamespaceOptions {
            options: ChannelOptions {
                allow_subscribe_for_client: true,
                allow_publish_for_subscriber: true,
                allow_history_for_subscriber: true,
                history_size: 10,
                history_ttl: crate::config::GoDuration::from_secs(60),
                ..ChannelOptions::default()
            },
            channel_regex: "^[a-z]+$".into(),
        },
    });
    config.channel.namespaces.push(Namespace {
        name: "dialog".into(),
        options: NamespaceOptions {
            options: ChannelOptions {
                allow_user_limited_channels: true,
                allow_subscribe_for_client: true,
                ..ChannelOptions::default()
            },
            channel_regex: String::new(),
        },
    });
    config
}

fn token(user: &str, claims: Value) -> String {
    let Value::Object(claims) = claims else {
        unreachable!()
    };
    sign_hs256(user, Some(60), claims, SECRET).unwrap()
}

const ANN: Asker<'static> = Asker {
    user: "ann",
    client: ClientId::NONE,
};
const ANON: Asker<'static> = Asker {
    user: "",
    client: ClientId::NONE,
};

fn subscribe(
    config: &Config,
    who: Asker<'_>,
    channel: &str,
    token: &str,
) -> Result<Source, Denied> {
    let access = Access::new(config).unwrap();
    let verifier = Verifier::new(config).unwrap();
    access
        .subscribe(config, &verifier, who, channel, token)
        .map(|a| a.source)
}

fn code(result: Result<Source, Denied>) -> Result<Source, u32> {
    result.map_err(|d| match d {
        Denied::Error(code, _) => code.code(),
        Denied::Disconnect(d, _) => u32::from(d.code()),
    })
}

#[test]
fn subscribe_follows_centrifugos_defaults_and_order() {
    let config = config();
    let sub = |who, channel: &str, token: &str| code(subscribe(&config, who, channel, token));
    // Centrifugo's default: a client may not subscribe by itself.
    assert_eq!(sub(ANN, "news", ""), Err(103));
    assert_eq!(sub(ANN, "nope:x", ""), Err(102));
    assert_eq!(sub(ANN, "open:UPPER", ""), Err(107), "channel_regex");
    assert_eq!(sub(ANN, "news-é", ""), Err(107), "not ASCII");
    assert_eq!(sub(ANN, &"x".repeat(41), ""), Err(107), "too long");
    assert_eq!(sub(ANN, "open:room", ""), Ok(Source::ClientAllowed));
    assert_eq!(
        sub(ANON, "open:room", ""),
        Err(103),
        "anonymous needs its own option"
    );
    // Private channels need a token, whatever the namespace allows.
    assert_eq!(sub(ANN, "$open:room", ""), Err(103));
    let t = token("ann", json!({"channel": "$open:room"}));
    assert!(matches!(
        sub(ANN, "$open:room", &t),
        Ok(Source::Token { .. })
    ));
    // A token for another channel, user or client: close 3500.
    assert_eq!(sub(ANN, "open:other", &t), Err(3500));
    let bob = token("bob", json!({"channel": "$open:room"}));
    assert_eq!(sub(ANN, "$open:room", &bob), Err(3500));
    let pinned = token("ann", json!({"channel": "news", "client": "c-other"}));
    assert_eq!(sub(ANN, "news", &pinned), Err(3500));
    // Expired 109, invalid 103, unknown namespace in the token 102.
    let mut claims = Map::new();
    claims.insert("channel".into(), json!("news"));
    claims.insert("exp".into(), json!(1));
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    assert_eq!(sub(ANN, "news", &expired), Err(109));
    assert_eq!(sub(ANN, "news", "garbage"), Err(103));
    assert_eq!(
        sub(ANN, "news", &token("ann", json!({}))),
        Err(103),
        "no channel claim"
    );
}

#[test]
fn user_limited_channels_admit_the_users_they_list() {
    let config = config();
    let sub = |who, channel: &str| code(subscribe(&config, who, channel, ""));
    assert_eq!(sub(ANN, "dialog:x#ann,bob"), Ok(Source::UserLimited));
    assert_eq!(
        sub(ANN, "dialog:x#bob,carl"),
        Err(103),
        "not listed, and client subscribe skips user-limited channels"
    );
    // Where the namespace does not allow them, '#' is just a character.
    assert_eq!(
        sub(ANN, "open:x#ann"),
        Err(107),
        "open's pattern refuses '#'"
    );
    let mut config = config.clone();
    config.channel.without_namespace.allow_subscribe_for_client = true;
    assert_eq!(
        code(subscribe(&config, ANN, "plain#bob", "")),
        Ok(Source::ClientAllowed)
    );
}

#[test]
fn insecure_allows_everything_it_can() {
    let mut config = config();
    config.client.insecure = true;
    assert_eq!(
        code(subscribe(&config, ANON, "news", "")),
        Ok(Source::Insecure)
    );
    assert_eq!(
        code(subscribe(&config, ANON, "$news", "")),
        Err(103),
        "private still needs a token"
    );
}

#[test]
fn publish_history_and_presence_rules() {
    let mut config = config();
    let access = Access::new(&config).unwrap();
    let err = |r: Result<ChannelOptions, Denied>| {
        r.map(|_| ()).map_err(|d| match d {
            Denied::Error(code, refusal) => (code.code(), refusal),
            Denied::Disconnect(..) => unreachable!(),
        })
    };
    assert_eq!(
        err(access.may(&config, ANN, "open:room", false, Feature::Publish)),
        Err((103, Refusal::NotAllowed))
    );
    assert_eq!(
        err(access.may(&config, ANN, "open:room", true, Feature::Publish)),
        Ok(())
    );
    assert_eq!(
        err(access.may(&config, ANON, "open:room", true, Feature::Publish)),
        Err((103, Refusal::NotAllowed))
    );
    assert_eq!(
        err(access.may(&config, ANN, "news", true, Feature::History)),
        Err((108, Refusal::NotAvailable))
    );
    assert_eq!(
        err(access.may(&config, ANN, "open:room", false, Feature::History)),
        Err((103, Refusal::NotAllowed))
    );
    assert_eq!(
        err(access.may(&config, ANN, "open:room", true, Feature::History)),
        Ok(())
    );
    assert_eq!(
        err(access.may(&config, ANN, "open:room", true, Feature::Presence)),
        Err((108, Refusal::NotAvailable))
    );
    config.channel.namespaces[0].options.presence = true;
    config.channel.namespaces[0]
        .options
        .allow_presence_for_client = true;
    assert_eq!(
        err(access.may(&config, ANN, "open:room", false, Feature::Presence)),
        Ok(())
    );
    assert_eq!(
        err(access.may(&config, ANON, "open:room", false, Feature::Presence)),
        Err((103, Refusal::NotAllowed))
    );
    config.channel.namespaces[0]
        .options
        .allow_presence_for_anonymous = true;
    assert_eq!(
        err(access.may(&config, ANON, "open:room", false, Feature::Presence)),
        Ok(())
    );
}

#[test]
fn token_overrides_replace_the_namespace_options() {
    let config = config();
    let access = Access::new(&config).unwrap();
    let verifier = Verifier::new(&config).unwrap();
    let t = token(
        "ann",
        json!({"channel": "open:room", "override": {"force_recovery": {"value": true}}, "data": {"hi": 1}}),
    );
    let allowed = access
        .subscribe(&config, &verifier, ANN, "open:room", &t)
        .unwrap();
    assert!(allowed.options.force_recovery);
    let Source::Token { grant, expires_at } = allowed.source else {
        panic!("token")
    };
    assert_eq!(grant.data.as_deref(), Some(r#"{"hi":1}"#));
    assert!(expires_at.is_some());
}
