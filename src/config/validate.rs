//! `Config::validate`: every value checked against its range and every runtime relation
//! between values (a client message fits a history segment, the pong timeout is shorter than
//! the ping interval, ...), each error naming the key and the accepted values.

use super::{ChannelOptions, Config, ConfigError, GoDuration, NamespaceOptions};
use crate::limits::{
    CHANNEL_NAME_BYTES_MAX, CLIENT_CHANNELS_MAX, CLIENT_QUEUE_BYTES_MAX, CLIENT_QUEUE_BYTES_MIN,
    HISTORY_SEGMENT_ALIGN_BYTES, HISTORY_SEGMENT_BYTES_MAX, HISTORY_SEGMENT_BYTES_MIN,
    PING_INTERVAL_MS_MIN, SHARDS_MAX, WEBSOCKET_MESSAGE_BYTES_MAX, WEBSOCKET_MESSAGE_BYTES_MIN,
};

/// Bytes a history record needs besides its data, its ClientInfo and its channel name:
/// framing, fixed fields, padding, the ClientInfo's keys and client id.
const RECORD_OVERHEAD_BYTES: u64 = 8 + 40 + 7 + 128;

fn fail(key: &str, why: String) -> Result<(), ConfigError> {
    Err(ConfigError(format!("invalid {key}: {why}")))
}

fn check_range<T: PartialOrd + std::fmt::Display>(
    key: &str,
    value: T,
    min: T,
    max: T,
) -> Result<(), ConfigError> {
    if value < min || value > max {
        return fail(key, format!("{value} is outside {min}..={max}"));
    }
    Ok(())
}

impl Config {
    /// Checks every value that could be wrong, naming the key in the error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Err(why) = self.http_server.ip() {
            return fail("http_server.address", why);
        }
        check_range("shards.count", self.shards.count, 0, SHARDS_MAX)?;
        match self.engine.kind.as_str() {
            "memory" => {}
            "redis" => {
                let redis = &self.engine.redis;
                if redis.address.is_empty() && redis.cluster_address.is_empty() {
                    return fail("engine.redis.address", "no address".into());
                }
                for (key, list) in [
                    ("engine.redis.address", &redis.address),
                    ("engine.redis.cluster_address", &redis.cluster_address),
                ] {
                    for address in list {
                        if let Err(why) = super::RedisAddress::parse(address) {
                            return fail(key, why);
                        }
                    }
                }
                if !redis.cluster_address.is_empty() {
                    // A brace in the prefix would move the hash tag off the channel's name,
                    // scattering a channel's keys over slots.
                    if redis.prefix.contains(['{', '}']) {
                        return fail(
                            "engine.redis.prefix",
                            "no braces with a cluster: keys are hash-tagged {channel}".into(),
                        );
                    }
                    if redis.db != 0 {
                        return fail("engine.redis.db", "a Redis Cluster has only db 0".into());
                    }
                }
                if self.engine.redis.io_timeout.as_millis() < 1 {
                    return fail("engine.redis.io_timeout", "below 1ms".into());
                }
            }
            other => return fail("engine.type", format!("{other:?}: \"memory\" or \"redis\"")),
        }
        for (key, tls) in [
            ("http_server.tls", &self.http_server.tls),
            ("http_server.internal_tls", &self.http_server.internal_tls),
        ] {
            if tls.enabled && (tls.cert_pem.is_empty() || tls.key_pem.is_empty()) {
                return fail(key, "enabled without both cert_pem and key_pem".into());
            }
        }
        let c = &self.client;
        check_range(
            "client.queue_max_size",
            c.queue_max_size,
            CLIENT_QUEUE_BYTES_MIN,
            CLIENT_QUEUE_BYTES_MAX,
        )?;
        check_range(
            "client.channel_limit",
            c.channel_limit,
            1,
            CLIENT_CHANNELS_MAX,
        )?;
        check_range(
            "websocket.message_size_limit",
            self.websocket.message_size_limit,
            WEBSOCKET_MESSAGE_BYTES_MIN,
            WEBSOCKET_MESSAGE_BYTES_MAX,
        )?;
        if self.websocket.write_timeout.as_millis() < 1 {
            return fail(
                "websocket.write_timeout",
                format!(
                    "{} is below the minimum of 1ms",
                    self.websocket.write_timeout
                ),
            );
        }
        if let Some(ping) = c.ping_interval.positive() {
            let ping_ms = ping.as_millis() as u64;
            if ping_ms < PING_INTERVAL_MS_MIN {
                return fail(
                    "client.ping_interval",
                    format!(
                        "{} is below the minimum of {PING_INTERVAL_MS_MIN}ms",
                        c.ping_interval
                    ),
                );
            }
            if let Some(pong) = c.pong_timeout.positive() {
                if pong >= ping {
                    return fail(
                        "client.pong_timeout",
                        format!(
                            "{} must be below client.ping_interval ({})",
                            c.pong_timeout, c.ping_interval
                        ),
                    );
                }
            }
        }
        for (key, delay) in [
            ("client.expired_close_delay", c.expired_close_delay),
            ("client.stale_close_delay", c.stale_close_delay),
        ] {
            if delay.is_negative() {
                return fail(key, format!("{delay} is negative"));
            }
        }
        check_range(
            "channel.max_length",
            self.channel.max_length,
            1,
            CHANNEL_NAME_BYTES_MAX,
        )?;
        if self.channel.namespace_boundary.is_empty() {
            return fail("channel.namespace_boundary", "must not be empty".into());
        }
        for (key, prefix) in [
            ("http_api.handler_prefix", &self.http_api.handler_prefix),
            ("websocket.handler_prefix", &self.websocket.handler_prefix),
            ("health.handler_prefix", &self.health.handler_prefix),
            ("prometheus.handler_prefix", &self.prometheus.handler_prefix),
        ] {
            if !prefix.starts_with('/') {
                return fail(key, format!("{prefix:?} must start with /"));
            }
        }
        self.validate_history_storage()?;
        self.validate_tokens()?;
        self.validate_channels()
    }

    fn validate_history_storage(&self) -> Result<(), ConfigError> {
        let h = &self.history_storage;
        if h.data_dir.as_os_str().is_empty() {
            return fail("history_storage.data_dir", "empty path".into());
        }
        if !(HISTORY_SEGMENT_BYTES_MIN..=HISTORY_SEGMENT_BYTES_MAX).contains(&h.segment_size)
            || !h.segment_size.is_multiple_of(HISTORY_SEGMENT_ALIGN_BYTES)
        {
            return fail(
                "history_storage.segment_size",
                format!(
                    "{} is not a multiple of {HISTORY_SEGMENT_ALIGN_BYTES} in \
                     {HISTORY_SEGMENT_BYTES_MIN}..={HISTORY_SEGMENT_BYTES_MAX}",
                    h.segment_size
                ),
            );
        }
        if h.fsync_interval.as_millis() < 1 {
            return fail(
                "history_storage.fsync_interval",
                format!("{} is below the minimum of 1ms", h.fsync_interval),
            );
        }
        // Every publication a client may send must fit one record of a segment: its data is
        // at most one message, its ClientInfo (user and connection info from the connect
        // token) at most another, plus its channel name and fixed overhead.
        let largest = 2 * self.websocket.message_size_limit as u64
            + self.channel.max_length as u64
            + RECORD_OVERHEAD_BYTES;
        if largest > self.history_segment_payload_bytes() {
            return fail(
                "history_storage.segment_size",
                format!(
                    "{} cannot hold the largest client publication \
                     (2 × websocket.message_size_limit {} + channel.max_length {} + {} bytes \
                     of record): raise it or lower those",
                    h.segment_size,
                    self.websocket.message_size_limit,
                    self.channel.max_length,
                    RECORD_OVERHEAD_BYTES
                ),
            );
        }
        Ok(())
    }

    /// Bytes of one segment a record may take (the segment minus its header).
    pub fn history_segment_payload_bytes(&self) -> u64 {
        self.history_storage.segment_size - 64
    }

    fn validate_tokens(&self) -> Result<(), ConfigError> {
        let sub = &self.client.subscription_token;
        let kinds = [
            ("client.token", &self.client.token, true),
            ("client.subscription_token", &sub.token, sub.enabled),
        ];
        for (section, token, used) in kinds {
            if !used {
                continue;
            }
            for (exact, pattern, name) in [
                (&token.audience, &token.audience_regex, "audience"),
                (&token.issuer, &token.issuer_regex, "issuer"),
            ] {
                if !exact.is_empty() && !pattern.is_empty() {
                    return fail(
                        &format!("{section}.{name}_regex"),
                        format!("use {name} or {name}_regex, not both"),
                    );
                }
                if let Err(e) = regex::Regex::new(pattern) {
                    return fail(
                        &format!("{section}.{name}_regex"),
                        format!("{pattern:?} does not compile: {e}"),
                    );
                }
            }
        }
        if let Err(why) = self.http_server.internal() {
            return fail("http_server.internal_port", why);
        }
        for pattern in &self.client.allowed_origins {
            if let Err(e) = glob::Pattern::new(pattern) {
                return fail(
                    "client.allowed_origins",
                    format!("{pattern:?} is no pattern: {e}"),
                );
            }
        }
        let status = &self.user_status;
        if !status.channel.is_empty() && self.channel_options(&status.channel).is_none() {
            return fail(
                "user_status.channel",
                format!("{:?} is in no configured namespace", status.channel),
            );
        }
        if status.debounce.is_negative() {
            return fail("user_status.debounce", "may not be negative".into());
        }
        let personal = &self.client.subscribe_to_user_personal_channel;
        if personal.enabled {
            let ns = &personal.personal_channel_namespace;
            if !ns.is_empty() && !self.channel.namespaces.iter().any(|n| n.name == *ns) {
                return fail(
                    "client.subscribe_to_user_personal_channel.personal_channel_namespace",
                    format!("namespace {ns:?} is not configured"),
                );
            }
        }
        Ok(())
    }

    fn validate_channels(&self) -> Result<(), ConfigError> {
        check_whole_seconds("channel.history_meta_ttl", self.channel.history_meta_ttl)?;
        let check_options = |key: &str, o: &NamespaceOptions| {
            if !o.channel_regex.is_empty() {
                if let Err(e) = regex::Regex::new(&o.channel_regex) {
                    return fail(
                        &format!("{key}.channel_regex"),
                        format!("{:?} does not compile: {e}", o.channel_regex),
                    );
                }
            }
            check_options(key, o, self.channel.history_meta_ttl_ms(o))
        };
        check_options("channel.without_namespace", &self.channel.without_namespace)?;
        let mut seen = std::collections::HashSet::new();
        for (i, ns) in self.channel.namespaces.iter().enumerate() {
            let key = format!("channel.namespaces[{i}]");
            let valid = ns.name.len() >= 2
                && ns
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
            if !valid {
                return fail(
                    &format!("{key}.name"),
                    format!("{:?} must match ^[-a-zA-Z0-9_.]{{2,}}$", ns.name),
                );
            }
            if !seen.insert(ns.name.as_str()) {
                return fail(
                    &format!("{key}.name"),
                    format!("{:?} is defined twice", ns.name),
                );
            }
            check_options(&key, &ns.options)?;
        }
        Ok(())
    }
}

/// Centrifugo's checks of one option set: history needs both size and ttl (whole seconds),
/// the ttl is no longer than the meta ttl that applies (`meta_ttl_ms`), recovery needs
/// history.
fn check_options(key: &str, o: &ChannelOptions, meta_ttl_ms: u64) -> Result<(), ConfigError> {
    if (o.history_size > 0) != (o.history_ttl.0 > 0) {
        return fail(
            &format!("{key}.history_size"),
            "history_size and history_ttl must be set together".into(),
        );
    }
    check_whole_seconds(&format!("{key}.history_ttl"), o.history_ttl)?;
    check_whole_seconds(&format!("{key}.history_meta_ttl"), o.history_meta_ttl)?;
    if o.history_ttl_ms() > meta_ttl_ms {
        return fail(
            &format!("{key}.history_ttl"),
            format!(
                "{} can not be greater than the history meta ttl ({}): a position would go \
                 before its publications",
                o.history_ttl,
                GoDuration::from_millis(meta_ttl_ms as i64)
            ),
        );
    }
    if o.force_recovery && !o.history() {
        return fail(
            &format!("{key}.force_recovery"),
            "needs history (history_size and history_ttl)".into(),
        );
    }
    Ok(())
}

/// A duration Centrifugo takes in whole seconds only, and never negative.
fn check_whole_seconds(key: &str, d: GoDuration) -> Result<(), ConfigError> {
    if d.0 < 0 || d.0 % 1_000_000_000 != 0 {
        return fail(key, format!("{d} must be a whole number of seconds"));
    }
    Ok(())
}
