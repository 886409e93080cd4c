//! Loading Centrifugo v6 configurations: a chat application's file in JSON, YAML and TOML
//! (`tests/fixtures/chat-config.*`), the effective values, the ignored-key warnings, typos
//! refused with a suggestion, the environment along the same paths, flags.

use super::*;

fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    vars.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn load(name: &str) -> Loaded {
    Config::load_from(Some(&fixture(name)), &[], &Overrides::default()).expect("loads")
}

/// What every one of the three files says.
fn check_chat(config: &Config) {
    assert_eq!(config.client.token.hmac_secret_key, "chat-token-secret");
    assert_eq!(config.http_api.key, "chat-api-key");
    assert_eq!(config.http_server.address, "127.0.0.1");
    assert_eq!(config.http_server.port, 9000);
    assert_eq!(config.client.ping_interval, GoDuration::from_secs(20));
    assert_eq!(config.client.pong_timeout, GoDuration::from_secs(5));
    assert_eq!(config.client.queue_max_size, 2 << 20);
    assert_eq!(config.websocket.message_size_limit, 32768);
    assert!(config.prometheus.enabled);
    let personal = config.channel_options("personal:42").expect("namespace");
    assert_eq!(personal.history_size, 300);
    assert_eq!(personal.history_ttl_ms(), 600_000);
    assert!(personal.force_recovery && personal.history());
    assert!(
        !personal.allow_publish_for_client,
        "namespaces inherit nothing"
    );
    let room = config.channel_options("room:1").expect("namespace");
    assert_eq!((room.history_size, room.history_ttl_ms()), (100, 3_600_000));
    assert!(room.allow_history_for_subscriber);
    let plain = config.channel_options("lobby").expect("no namespace");
    assert!(plain.allow_publish_for_client && !plain.history());
    assert_eq!(config.channel_options("nope:1"), None);
    assert_eq!(config.channel_options("$personal:7"), Some(personal));
}

/// The keys the warnings name, sorted.
fn ignored(warnings: &[String]) -> Vec<String> {
    let mut keys: Vec<String> = warnings
        .iter()
        .filter_map(|w| w.split("ignoring ").nth(1))
        .filter_map(|w| w.split(':').next())
        .map(str::to_owned)
        .collect();
    keys.sort();
    keys
}

#[test]
fn a_chat_applications_json_config_loads_with_warnings_for_what_is_ignored() {
    let loaded = load("chat-config.json");
    check_chat(&loaded.config);
    assert_eq!(
        loaded.config.client.allowed_origins,
        ["http://localhost:9000"],
        "read, not ignored"
    );
    assert_eq!(loaded.config.history_storage, HistoryStorage::default());
    assert_eq!(loaded.config.engine.kind, "memory");
    assert_eq!(
        loaded.config.engine.redis.address,
        ["redis:6379"],
        "a string is a list of one"
    );
    assert_eq!(
        ignored(&loaded.warnings),
        [
            "admin",
            "consumers",
            "database",
            "log",
            "prometheus.instrument_http_handlers",
            "push_notifications",
        ]
    );
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| w.contains("push_notifications") && w.contains("Centrifugo PRO key")),
        "{:?}",
        loaded.warnings
    );
    assert!(
        !loaded.warnings.iter().any(|w| w.contains("presence")),
        "presence is served: {:?}",
        loaded.warnings
    );
}

#[test]
fn the_same_config_in_yaml_and_toml() {
    let yaml = load("chat-config.yaml");
    check_chat(&yaml.config);
    assert_eq!(yaml.config.shards.count, 2);
    assert_eq!(
        yaml.config.history_storage.data_dir,
        std::path::PathBuf::from("/var/lib/ringcast")
    );
    assert_eq!(yaml.config.history_storage.fsync, Fsync::Always);
    assert!(ignored(&yaml.warnings).contains(&"admin".to_string()));
    let toml = load("chat-config.toml");
    check_chat(&toml.config);
    assert_eq!(toml.config.history_storage.segment_size, 16 << 20);
    assert_eq!(
        toml.config.history_storage.fsync_interval,
        GoDuration::from_millis(250)
    );
    assert!(ignored(&toml.warnings).contains(&"log".to_string()));
}

#[test]
fn a_typo_is_refused_with_the_closest_key() {
    let err = Config::parse(r#"{"http_server": {"prot": 9000}}"#, "json").unwrap_err();
    assert!(
        err.0
            .contains("unknown key http_server.prot (did you mean http_server.port?)"),
        "{err}"
    );
    let err = Config::parse(r#"{"clinet": {}}"#, "json").unwrap_err();
    assert!(err.0.contains("did you mean client?"), "{err}");
    let err = Config::parse(
        r#"{"channel": {"namespaces": [{"name": "chat", "histroy_size": 3}]}}"#,
        "json",
    )
    .unwrap_err();
    assert!(
        err.0.contains(
            "channel.namespaces[0].histroy_size (did you mean channel.namespaces[0].history_size?)"
        ),
        "{err}"
    );
    // Inside a section ringcast ignores, typos are still caught.
    let err = Config::parse(
        r#"{"consumers": [{"name": "pg", "postgresql": {"dsnn": "x"}}]}"#,
        "json",
    )
    .unwrap_err();
    assert!(err.0.contains("consumers[0].postgresql.dsnn"), "{err}");
    assert!(err.0.contains("dsn?"), "{err}");
    // Old flat keys are neither ringcast's nor Centrifugo v6's.
    let err = Config::parse("api_key = \"x\"", "toml").unwrap_err();
    assert!(err.0.contains("unknown key api_key"), "{err}");
}

#[test]
fn values_are_read_as_loosely_as_centrifugo_reads_them_and_errors_name_the_key() {
    let loaded = Config::parse(
        r#"{"http_server": {"port": "8100"}, "client": {"allow_anonymous_connect_without_token": "true", "channel_limit": 0},
            "Channel": {"Max_Length": 100}}"#,
        "json",
    )
    .unwrap();
    assert_eq!(loaded.config.http_server.port, 8100);
    assert!(loaded.config.client.allow_anonymous_connect_without_token);
    assert_eq!(
        loaded.config.client.channel_limit, 128,
        "zero takes the default"
    );
    assert_eq!(
        loaded.config.channel.max_length, 100,
        "keys are case-insensitive"
    );
    let err = Config::parse(r#"{"http_server": {"port": "x"}}"#, "json").unwrap_err();
    assert!(err.0.contains("http_server.port"), "{err}");
    // A connection counts its queued bytes in a u32.
    let err = Config::parse(r#"{"client": {"queue_max_size": 5368709120}}"#, "json").unwrap_err();
    assert!(err.0.contains("client.queue_max_size"), "{err}");
    let err = Config::parse(r#"{"client": {"ping_interval": "25"}}"#, "json").unwrap_err();
    assert!(
        err.0.contains("client.ping_interval") && err.0.contains("missing unit"),
        "{err}"
    );
    let err = Config::parse(
        r#"{"client": {"ping_interval": "10s", "pong_timeout": "10s"}}"#,
        "json",
    )
    .unwrap_err();
    assert!(err.0.contains("client.pong_timeout"), "{err}");
    let err = Config::parse(
        r#"{"channel": {"without_namespace": {"history_size": 10}}}"#,
        "json",
    )
    .unwrap_err();
    assert!(
        err.0.contains("channel.without_namespace.history_size"),
        "{err}"
    );
    let err = Config::parse(
        r#"{"channel": {"namespaces": [{"name": "ab", "channel_regex": "(unclosed"}]}}"#,
        "json",
    )
    .unwrap_err();
    assert!(
        err.0.contains("channel.namespaces[0].channel_regex"),
        "{err}"
    );
    let err = Config::parse(r#"{"channel": {"namespaces": [{"name": "a"}]}}"#, "json").unwrap_err();
    assert!(err.0.contains("channel.namespaces[0].name"), "{err}");
    let err = Config::parse("{}", "ini").unwrap_err();
    assert!(err.0.contains("*.json"), "{err}");
}

#[test]
fn the_environment_follows_the_same_paths_and_flags_win() {
    let vars = env(&[
        ("CENTRIFUGO_CLIENT_TOKEN_HMAC_SECRET_KEY", "from-centrifugo"),
        ("RINGCAST_HTTP_API_KEY", "from-ringcast"),
        ("CENTRIFUGO_HTTP_API_KEY", "loses-to-ringcast"),
        (
            "RINGCAST_CLIENT_ALLOW_ANONYMOUS_CONNECT_WITHOUT_TOKEN",
            "true",
        ),
        ("RINGCAST_CLIENT_PING_INTERVAL", "30s"),
        ("RINGCAST_CHANNEL_NAMESPACES_PERSONAL_HISTORY_SIZE", "5"),
        (
            "CENTRIFUGO_CHANNEL_NAMESPACES",
            r#"[{"name":"chat","history_size":10,"history_ttl":"60s","allow_publish_for_client":true}]"#,
        ),
        ("RINGCAST_CHANNEL_NAMESPACES_CHAT_HISTORY_SIZE", "20"),
        ("CENTRIFUGO_LOG_LEVEL", "debug"),
        ("RINGCAST_HTTP_API_KYE", "typo"),
        ("CENTRIFUGO_PORT", "tcp://10.0.0.1:8000"),
        ("RINGCAST_CONFIG", "ignored here"),
    ]);
    let overrides = Overrides {
        port: Some(0),
        ..Overrides::default()
    };
    let loaded = Config::load_from(None, &vars, &overrides).expect("loads");
    let c = &loaded.config;
    assert_eq!(c.client.token.hmac_secret_key, "from-centrifugo");
    assert_eq!(c.http_api.key, "from-ringcast");
    assert!(c.client.allow_anonymous_connect_without_token);
    assert_eq!(c.client.ping_interval, GoDuration::from_secs(30));
    assert_eq!(
        c.http_server.port, 0,
        "flags win, and 0 asks for any free port"
    );
    let chat = c
        .channel_options("chat:1")
        .expect("namespace from the environment");
    assert_eq!((chat.history_size, chat.history_ttl_ms()), (20, 60_000));
    assert!(chat.allow_publish_for_client);
    let warnings = loaded.warnings.join("\n");
    assert!(warnings.contains("CENTRIFUGO_LOG_LEVEL"), "{warnings}");
    assert!(
        warnings.contains("RINGCAST_HTTP_API_KYE") && warnings.contains("RINGCAST_HTTP_API_KEY?"),
        "{warnings}"
    );
    assert!(!warnings.contains("CENTRIFUGO_PORT"), "{warnings}");
    assert!(!warnings.contains("RINGCAST_CONFIG"), "{warnings}");

    // Names only: namespaces added with default options, then set field by field.
    let vars = env(&[
        ("RINGCAST_CHANNEL_NAMESPACES", "news sport"),
        (
            "RINGCAST_CHANNEL_NAMESPACES_NEWS_ALLOW_PUBLISH_FOR_CLIENT",
            "1",
        ),
    ]);
    let c = Config::load_from(None, &vars, &Overrides::default())
        .expect("loads")
        .config;
    assert!(
        c.channel_options("news:x")
            .unwrap()
            .allow_publish_for_client
    );
    assert!(
        !c.channel_options("sport:x")
            .unwrap()
            .allow_publish_for_client
    );
}

#[test]
fn genconfig_output_loads_back_in_every_format() {
    for format in ["json", "yaml", "toml"] {
        let text = template::generate(format).expect("generates");
        let loaded = Config::parse(&text, format).expect(format);
        assert!(
            loaded.warnings.is_empty(),
            "{format}: {:?}",
            loaded.warnings
        );
        let c = loaded.config;
        assert_eq!(c.http_api.key.len(), 64, "{format}");
        assert_eq!(c.client.token.hmac_secret_key.len(), 64, "{format}");
        assert_ne!(c.http_api.key, c.client.token.hmac_secret_key);
        let defaults = Config {
            http_api: HttpApi {
                key: c.http_api.key.clone(),
                ..HttpApi::default()
            },
            client: Client {
                token: c.client.token.clone(),
                ..Client::default()
            },
            ..Config::default()
        };
        assert_eq!(c, defaults, "{format}");
    }
    assert!(template::generate("ini").is_err());
}

#[test]
fn effective_config_prints_in_the_v6_layout_and_parses_back() {
    let loaded = load("chat-config.json");
    let text = loaded.config.to_json();
    let back = Config::parse(&text, "json").expect("parses back");
    assert!(
        back.warnings.is_empty(),
        "no key ignored: {:?}",
        back.warnings
    );
    assert_eq!(back.config, loaded.config);
}

/// `history_meta_ttl` as Centrifugo takes it: a namespace's own, else the section's, else 30
/// days (also for 0); whole seconds; never shorter than the history ttl it covers.
#[test]
fn history_meta_ttl_is_inherited_and_never_shorter_than_the_history_ttl() {
    let c = Config::parse(
        r#"{"channel": {"history_meta_ttl": "48h",
            "without_namespace": {"history_size": 10, "history_ttl": "1h"},
            "namespaces": [{"name": "own", "history_meta_ttl": "2h"}, {"name": "inherits"}]}}"#,
        "json",
    )
    .unwrap()
    .config;
    let meta = |channel: &str| {
        c.channel
            .history_meta_ttl_ms(&c.channel_options(channel).expect("known"))
    };
    assert_eq!(meta("x"), 48 * 3_600_000);
    assert_eq!(meta("own:x"), 2 * 3_600_000);
    assert_eq!(meta("inherits:x"), 48 * 3_600_000);
    let c = Config::parse(r#"{"channel": {"history_meta_ttl": "0s"}}"#, "json")
        .unwrap()
        .config;
    assert_eq!(
        c.channel.history_meta_ttl_ms(&c.channel.without_namespace),
        crate::limits::HISTORY_META_TTL_DEFAULT_MS
    );

    let err = Config::parse(
        r#"{"channel": {"history_meta_ttl": "30m",
            "namespaces": [{"name": "chat", "history_size": 10, "history_ttl": "1h"}]}}"#,
        "json",
    )
    .unwrap_err();
    assert!(
        err.0.contains("channel.namespaces[0].history_ttl") && err.0.contains("30m"),
        "{err}"
    );
    let err = Config::parse(r#"{"channel": {"history_meta_ttl": "1500ms"}}"#, "json").unwrap_err();
    assert!(err.0.contains("channel.history_meta_ttl"), "{err}");
    let err = Config::parse(
        r#"{"channel": {"without_namespace": {"history_meta_ttl": "-1s"}}}"#,
        "json",
    )
    .unwrap_err();
    assert!(
        err.0.contains("channel.without_namespace.history_meta_ttl"),
        "{err}"
    );
}

#[test]
fn personal_channels_and_token_patterns_are_checked() {
    let c = Config::parse(
        r#"{"client": {"subscribe_to_user_personal_channel": {"enabled": true, "personal_channel_namespace": "personal"}},
            "channel": {"namespaces": [{"name": "personal"}]}}"#,
        "json",
    )
    .unwrap()
    .config;
    assert_eq!(c.personal_channel("42"), "personal:#42");
    let err = Config::parse(
        r#"{"client": {"subscribe_to_user_personal_channel": {"enabled": true, "personal_channel_namespace": "nope"}}}"#,
        "json",
    )
    .unwrap_err();
    assert!(err.0.contains("personal_channel_namespace"), "{err}");
    assert!(Config::parse(
        r#"{"client": {"subscribe_to_user_personal_channel": {"enabled": true, "single_connection": true}}}"#,
        "json",
    )
    .is_ok());
    let err = Config::parse(
        r#"{"client": {"token": {"audience": "a", "audience_regex": "a"}}}"#,
        "json",
    )
    .unwrap_err();
    assert!(err.0.contains("client.token.audience_regex"), "{err}");
}

#[test]
fn redis_addresses_parse_as_centrifugo_writes_them() {
    use super::RedisAddress;
    let plain = RedisAddress::parse("127.0.0.1:6379").unwrap();
    assert_eq!(plain.host_port, "127.0.0.1:6379");
    assert_eq!((plain.user, plain.password, plain.db), (None, None, None));
    let url = RedisAddress::parse("redis://app:secret@redis.internal:6380/2").unwrap();
    assert_eq!(url.host_port, "redis.internal:6380");
    assert_eq!(url.user.as_deref(), Some("app"));
    assert_eq!(url.password.as_deref(), Some("secret"));
    assert_eq!(url.db, Some(2));
    let bare = RedisAddress::parse("redis://:pw@localhost").unwrap();
    assert_eq!(
        (bare.host_port.as_str(), bare.user, bare.password.as_deref()),
        ("localhost:6379", None, Some("pw"))
    );
    let tls = RedisAddress::parse("rediss://:pw@redis.internal:6380").unwrap();
    assert!(tls.tls && !url.tls && !plain.tls);
    assert!(RedisAddress::parse("http://x:1").is_err());
    assert!(RedisAddress::parse("localhost").is_err());
}

#[test]
fn a_redis_cluster_is_named_by_its_seeds_and_keeps_keys_in_one_slot() {
    let loaded = Config::parse(
        r#"{"engine": {"type": "redis", "redis": {"cluster_address": ["10.0.0.1:7000", "redis://:pw@10.0.0.2:7001"]}}}"#,
        "json",
    )
    .unwrap();
    assert_eq!(loaded.config.engine.redis.cluster_address.len(), 2);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let err = Config::parse(
        r#"{"engine": {"type": "redis", "redis": {"cluster_address": ["a:1"], "prefix": "x{y}"}}}"#,
        "json",
    )
    .unwrap_err();
    assert!(err.0.contains("engine.redis.prefix"), "{err}");
    let err = Config::parse(
        r#"{"engine": {"type": "redis", "redis": {"cluster_address": ["a:1"], "db": 1}}}"#,
        "json",
    )
    .unwrap_err();
    assert!(err.0.contains("engine.redis.db"), "{err}");
}
