//! Configuration: the embedded defaults, a TOML file, `RINGCAST_*` environment variables and
//! command-line flags, each overriding the one before. Every key exists in all three forms
//! (`api_key` in TOML, `RINGCAST_API_KEY`, `--api-key`); the names are Centrifugo's v5 names on
//! purpose. `Config::validate` refuses bad values with a message naming the key.
//!
//! Owns nothing at run time: the validated `Config` is cloned into every shard.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The validated server configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub address: IpAddr,
    /// Port for WebSocket clients, the HTTP API, /health and /metrics.
    pub port: u16,
    /// Number of shards (one pinned thread each); 0 = one per CPU in the affinity mask.
    pub shards: usize,
    /// Key for the server HTTP API. Empty = generated at start (dev mode).
    pub api_key: String,
    /// HMAC secret for HS256 connection tokens. Empty = generated at start (dev mode).
    pub token_hmac_secret_key: String,
    /// Let clients connect without a token (as anonymous users).
    pub allow_anonymous_connect_without_token: bool,
    /// Let connected clients subscribe to channels without a subscription token.
    pub allow_subscribe_for_client: bool,
    /// Let connected clients publish to channels.
    pub allow_publish_for_client: bool,
    /// Bytes a connection may have queued for sending before it is disconnected as slow.
    pub client_queue_max_bytes: usize,
    /// Largest incoming WebSocket message; larger ones close the connection with 1009.
    pub websocket_message_max_bytes: usize,
    /// Interval between server pings `{}`.
    pub ping_interval_ms: u64,
    /// How long a client may take to answer a ping before it is disconnected (3012).
    pub pong_timeout_ms: u64,
    /// Directory for persistent data: channel history under `history/<partition>/`.
    pub data_dir: PathBuf,
    /// Size of each history segment file.
    pub history_segment_bytes: u64,
    /// When history appends are made durable: `never` (the OS decides), `interval` (every
    /// `history_fsync_interval_ms`) or `always` (before the publish is acknowledged).
    pub history_fsync: Fsync,
    pub history_fsync_interval_ms: u64,
    /// Most publications a recovering subscriber is sent (Centrifugo's
    /// `client.recovery_max_publication_limit`); more missed means "not recovered".
    pub recovery_max_publication_limit: usize,
    /// Most publications one `history` call returns (`client.history_max_publication_limit`).
    pub history_max_publication_limit: usize,
    /// Options of channels without a namespace (Centrifugo v5 keeps them at the top level).
    pub history_size: usize,
    pub history_ttl: DurationMs,
    pub force_recovery: bool,
    pub allow_recovery: bool,
    pub force_positioning: bool,
    pub allow_positioning: bool,
    pub allow_history_for_client: bool,
    pub allow_history_for_subscriber: bool,
    /// Channel namespaces (`name:rest`), each with its own options.
    pub namespaces: Vec<Namespace>,
}

/// History durability policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Fsync {
    Never,
    Interval,
    Always,
}

/// A duration in milliseconds, written as Centrifugo writes them: `"300s"`, `"5m"`, `"1h"`,
/// `"250ms"`, `"1d"`, or a bare number of seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct DurationMs(pub u64);

impl std::str::FromStr for DurationMs {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let digits = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(digits);
        let number: u64 = number.parse().map_err(|_| {
            format!("{text:?} is not a duration like \"300s\", \"5m\" or \"250ms\"")
        })?;
        let scale = match unit {
            "" | "s" => 1_000,
            "ms" => 1,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => {
                return Err(format!(
                    "{text:?}: unknown unit {unit:?} (use ms, s, m, h or d)"
                ))
            }
        };
        number
            .checked_mul(scale)
            .map(DurationMs)
            .ok_or_else(|| format!("{text:?} is too long"))
    }
}

impl std::fmt::Display for DurationMs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_multiple_of(1_000) {
            write!(f, "{}s", self.0 / 1_000)
        } else {
            write!(f, "{}ms", self.0)
        }
    }
}

impl Serialize for DurationMs {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for DurationMs {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Seconds(s) => s
                .checked_mul(1_000)
                .map(DurationMs)
                .ok_or_else(|| serde::de::Error::custom("duration too long")),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// One channel namespace: channels named `<name>:<rest>` take these options. Unset
/// permissions fall back to the top-level ones.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Namespace {
    pub name: String,
    pub history_size: usize,
    pub history_ttl: DurationMs,
    pub force_recovery: bool,
    pub allow_recovery: bool,
    pub force_positioning: bool,
    pub allow_positioning: bool,
    pub allow_history_for_client: bool,
    pub allow_history_for_subscriber: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_subscribe_for_client: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_publish_for_client: Option<bool>,
}

/// The options that apply to one channel, resolved from its namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelOptions {
    pub history_size: usize,
    pub history_ttl_ms: u64,
    pub force_recovery: bool,
    pub allow_recovery: bool,
    pub force_positioning: bool,
    pub allow_positioning: bool,
    pub allow_history_for_client: bool,
    pub allow_history_for_subscriber: bool,
    pub allow_subscribe_for_client: bool,
    pub allow_publish_for_client: bool,
}

impl ChannelOptions {
    /// History is on only with both a size and a ttl, as in Centrifugo.
    pub fn history(&self) -> bool {
        self.history_size > 0 && self.history_ttl_ms > 0
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            address: IpAddr::from([0, 0, 0, 0]),
            port: 8000,
            shards: 0,
            api_key: String::new(),
            token_hmac_secret_key: String::new(),
            allow_anonymous_connect_without_token: false,
            allow_subscribe_for_client: true,
            allow_publish_for_client: false,
            client_queue_max_bytes: 1 << 20,
            websocket_message_max_bytes: 64 << 10,
            ping_interval_ms: 25_000,
            pong_timeout_ms: 8_000,
            data_dir: PathBuf::from("data"),
            history_segment_bytes: 64 << 20,
            history_fsync: Fsync::Interval,
            history_fsync_interval_ms: 100,
            recovery_max_publication_limit: 300,
            history_max_publication_limit: 300,
            history_size: 0,
            history_ttl: DurationMs(0),
            force_recovery: false,
            allow_recovery: false,
            force_positioning: false,
            allow_positioning: false,
            allow_history_for_client: false,
            allow_history_for_subscriber: false,
            namespaces: Vec::new(),
        }
    }
}

/// Command-line flags (each also read from its `RINGCAST_*` variable by clap); a value given
/// here replaces the file's.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct Overrides {
    /// Address to listen on [default: 0.0.0.0]
    #[arg(long, env = "RINGCAST_ADDRESS")]
    pub address: Option<IpAddr>,
    /// Port to listen on [default: 8000]
    #[arg(long, env = "RINGCAST_PORT")]
    pub port: Option<u16>,
    /// Number of shards; 0 = one per CPU [default: 0]
    #[arg(long, env = "RINGCAST_SHARDS")]
    pub shards: Option<usize>,
    /// HTTP API key
    #[arg(long, env = "RINGCAST_API_KEY")]
    pub api_key: Option<String>,
    /// HMAC secret for HS256 connection tokens
    #[arg(long, env = "RINGCAST_TOKEN_HMAC_SECRET_KEY")]
    pub token_hmac_secret_key: Option<String>,
    /// Allow connecting without a token [default: false]
    #[arg(long, env = "RINGCAST_ALLOW_ANONYMOUS_CONNECT_WITHOUT_TOKEN")]
    pub allow_anonymous_connect_without_token: Option<bool>,
    /// Allow client-side subscribe [default: true]
    #[arg(long, env = "RINGCAST_ALLOW_SUBSCRIBE_FOR_CLIENT")]
    pub allow_subscribe_for_client: Option<bool>,
    /// Allow client-side publish [default: false]
    #[arg(long, env = "RINGCAST_ALLOW_PUBLISH_FOR_CLIENT")]
    pub allow_publish_for_client: Option<bool>,
    /// Per-connection send queue limit in bytes [default: 1048576]
    #[arg(long, env = "RINGCAST_CLIENT_QUEUE_MAX_BYTES")]
    pub client_queue_max_bytes: Option<usize>,
    /// Largest incoming WebSocket message in bytes [default: 65536]
    #[arg(long, env = "RINGCAST_WEBSOCKET_MESSAGE_MAX_BYTES")]
    pub websocket_message_max_bytes: Option<usize>,
    /// Server ping interval in milliseconds [default: 25000]
    #[arg(long, env = "RINGCAST_PING_INTERVAL_MS")]
    pub ping_interval_ms: Option<u64>,
    /// Pong timeout in milliseconds [default: 8000]
    #[arg(long, env = "RINGCAST_PONG_TIMEOUT_MS")]
    pub pong_timeout_ms: Option<u64>,
    /// Directory for persistent data (history) [default: data]
    #[arg(long, env = "RINGCAST_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Size of each history segment file in bytes [default: 67108864]
    #[arg(long, env = "RINGCAST_HISTORY_SEGMENT_BYTES")]
    pub history_segment_bytes: Option<u64>,
    /// History durability: never, interval or always [default: interval]
    #[arg(long, env = "RINGCAST_HISTORY_FSYNC")]
    pub history_fsync: Option<Fsync>,
    /// Interval between history syncs with `interval` [default: 100]
    #[arg(long, env = "RINGCAST_HISTORY_FSYNC_INTERVAL_MS")]
    pub history_fsync_interval_ms: Option<u64>,
    /// Most publications sent to a recovering subscriber [default: 300]
    #[arg(long, env = "RINGCAST_RECOVERY_MAX_PUBLICATION_LIMIT")]
    pub recovery_max_publication_limit: Option<usize>,
    /// Most publications one history call returns [default: 300]
    #[arg(long, env = "RINGCAST_HISTORY_MAX_PUBLICATION_LIMIT")]
    pub history_max_publication_limit: Option<usize>,
    /// History size of channels without a namespace [default: 0]
    #[arg(long, env = "RINGCAST_HISTORY_SIZE")]
    pub history_size: Option<usize>,
    /// History ttl of channels without a namespace, e.g. 300s [default: 0s]
    #[arg(long, env = "RINGCAST_HISTORY_TTL")]
    pub history_ttl: Option<DurationMs>,
    /// Recovery for every subscriber of channels without a namespace [default: false]
    #[arg(long, env = "RINGCAST_FORCE_RECOVERY")]
    pub force_recovery: Option<bool>,
    /// Recovery for subscribers that ask for it [default: false]
    #[arg(long, env = "RINGCAST_ALLOW_RECOVERY")]
    pub allow_recovery: Option<bool>,
    /// Positioning for every subscriber [default: false]
    #[arg(long, env = "RINGCAST_FORCE_POSITIONING")]
    pub force_positioning: Option<bool>,
    /// Positioning for subscribers that ask for it [default: false]
    #[arg(long, env = "RINGCAST_ALLOW_POSITIONING")]
    pub allow_positioning: Option<bool>,
    /// Let clients call history [default: false]
    #[arg(long, env = "RINGCAST_ALLOW_HISTORY_FOR_CLIENT")]
    pub allow_history_for_client: Option<bool>,
    /// Let subscribers call history [default: false]
    #[arg(long, env = "RINGCAST_ALLOW_HISTORY_FOR_SUBSCRIBER")]
    pub allow_history_for_subscriber: Option<bool>,
}

/// Applies every `Some` field of `Overrides` to `Config`; one list, so a key cannot be
/// forgotten in one of the two places.
macro_rules! apply_overrides {
    ($config:expr, $overrides:expr, $($key:ident),* $(,)?) => {
        $(if let Some(value) = $overrides.$key.clone() {
            $config.$key = value;
        })*
    };
}

impl Overrides {
    pub fn apply(&self, config: &mut Config) {
        apply_overrides!(
            config,
            self,
            address,
            port,
            shards,
            api_key,
            token_hmac_secret_key,
            allow_anonymous_connect_without_token,
            allow_subscribe_for_client,
            allow_publish_for_client,
            client_queue_max_bytes,
            websocket_message_max_bytes,
            ping_interval_ms,
            pong_timeout_ms,
            data_dir,
            history_segment_bytes,
            history_fsync,
            history_fsync_interval_ms,
            recovery_max_publication_limit,
            history_max_publication_limit,
            history_size,
            history_ttl,
            force_recovery,
            allow_recovery,
            force_positioning,
            allow_positioning,
            allow_history_for_client,
            allow_history_for_subscriber,
        );
    }
}

/// A configuration error, worded for the person starting the server.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Defaults, then the file (if any), then the overrides; validated.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ConfigError(format!("cannot read config file {}: {e}", path.display()))
                })?;
                Config::from_toml(&text)
                    .map_err(|e| ConfigError(format!("config file {}: {e}", path.display())))?
            }
            None => Config::default(),
        };
        overrides.apply(&mut config);
        config.validate()?;
        Ok(config)
    }

    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError(e.to_string()))
    }

    /// Checks every value that could be wrong, naming the key in the error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |key: &str, why: String| Err(ConfigError(format!("invalid {key}: {why}")));
        if self.shards > ringcast_ring::mesh::SHARDS_MAX {
            return fail(
                "shards",
                format!(
                    "{} is above the limit of {}",
                    self.shards,
                    ringcast_ring::mesh::SHARDS_MAX
                ),
            );
        }
        if self.client_queue_max_bytes < 1024 {
            return fail(
                "client_queue_max_bytes",
                format!(
                    "{} is below the minimum of 1024",
                    self.client_queue_max_bytes
                ),
            );
        }
        if !(125..=64 << 20).contains(&self.websocket_message_max_bytes) {
            return fail(
                "websocket_message_max_bytes",
                format!(
                    "{} is outside 125..=67108864",
                    self.websocket_message_max_bytes
                ),
            );
        }
        if self.ping_interval_ms < 10 {
            return fail(
                "ping_interval_ms",
                format!("{} is below the minimum of 10", self.ping_interval_ms),
            );
        }
        if self.pong_timeout_ms == 0 || self.pong_timeout_ms >= self.ping_interval_ms {
            return fail(
                "pong_timeout_ms",
                format!(
                    "{} must be above 0 and below ping_interval_ms ({})",
                    self.pong_timeout_ms, self.ping_interval_ms
                ),
            );
        }
        if !(64 << 10..=1 << 32).contains(&self.history_segment_bytes)
            || !self.history_segment_bytes.is_multiple_of(4096)
        {
            return fail(
                "history_segment_bytes",
                format!(
                    "{} is not a multiple of 4096 in 65536..=4294967296",
                    self.history_segment_bytes
                ),
            );
        }
        if self.history_fsync_interval_ms == 0 {
            return fail(
                "history_fsync_interval_ms",
                "0 is below the minimum of 1".into(),
            );
        }
        if self.data_dir.as_os_str().is_empty() {
            return fail("data_dir", "empty path".into());
        }
        let mut seen = std::collections::HashSet::new();
        for (i, ns) in self.namespaces.iter().enumerate() {
            let valid = ns.name.len() >= 2
                && ns
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid {
                return fail(
                    &format!("namespaces[{i}].name"),
                    format!("{:?} must match ^[-a-zA-Z0-9_]{{2,}}$", ns.name),
                );
            }
            if !seen.insert(ns.name.as_str()) {
                return fail(
                    &format!("namespaces[{i}].name"),
                    format!("{:?} is defined twice", ns.name),
                );
            }
        }
        Ok(())
    }

    /// The options of `channel`, from its namespace (the text before the first `:`), or
    /// `None` if that namespace is not configured (error 102).
    pub fn channel_options(&self, channel: &str) -> Option<ChannelOptions> {
        // A private channel's `$` is not part of its namespace (`$chat:x` is in `chat`).
        let channel = channel.strip_prefix('$').unwrap_or(channel);
        let Some((name, _)) = channel.split_once(':') else {
            return Some(ChannelOptions {
                history_size: self.history_size,
                history_ttl_ms: self.history_ttl.0,
                force_recovery: self.force_recovery,
                allow_recovery: self.allow_recovery,
                force_positioning: self.force_positioning,
                allow_positioning: self.allow_positioning,
                allow_history_for_client: self.allow_history_for_client,
                allow_history_for_subscriber: self.allow_history_for_subscriber,
                allow_subscribe_for_client: self.allow_subscribe_for_client,
                allow_publish_for_client: self.allow_publish_for_client,
            });
        };
        let ns = self.namespaces.iter().find(|ns| ns.name == name)?;
        Some(ChannelOptions {
            history_size: ns.history_size,
            history_ttl_ms: ns.history_ttl.0,
            force_recovery: ns.force_recovery,
            allow_recovery: ns.allow_recovery,
            force_positioning: ns.force_positioning,
            allow_positioning: ns.allow_positioning,
            allow_history_for_client: ns.allow_history_for_client,
            allow_history_for_subscriber: ns.allow_history_for_subscriber,
            allow_subscribe_for_client: ns
                .allow_subscribe_for_client
                .unwrap_or(self.allow_subscribe_for_client),
            allow_publish_for_client: ns
                .allow_publish_for_client
                .unwrap_or(self.allow_publish_for_client),
        })
    }

    /// Fills empty secrets with fresh random ones; returns true if it did (dev mode).
    pub fn generate_missing_secrets(&mut self) -> bool {
        let mut generated = false;
        for secret in [&mut self.api_key, &mut self.token_hmac_secret_key] {
            if secret.is_empty() {
                *secret = random_secret();
                generated = true;
            }
        }
        generated
    }

    /// The commented default configuration `genconfig` writes, with fresh secrets.
    pub fn commented_default() -> String {
        let d = Config::default();
        let mut out = String::new();
        let _ = write!(
            out,
            r#"# ringcast configuration. Every key can also be set as an environment variable
# (RINGCAST_<KEY in upper case>) or a flag (--<key with dashes>); flags win over the
# environment, which wins over this file.

# Address and port for WebSocket clients (/connection/websocket), the HTTP API (/api/...),
# /health and /metrics.
address = "{address}"
port = {port}

# Shards: one pinned thread per CPU core; 0 = every CPU this process may run on.
shards = {shards}

# Key for the server HTTP API (X-API-Key: KEY or Authorization: apikey KEY).
api_key = "{api_key}"

# HMAC secret for HS256 connection tokens (ringcast gentoken signs with it).
token_hmac_secret_key = "{secret}"

# Let clients connect without a token, as anonymous users.
allow_anonymous_connect_without_token = {anonymous}

# Let connected clients subscribe / publish by themselves.
allow_subscribe_for_client = {subscribe}
allow_publish_for_client = {publish}

# Bytes queued for one connection before it is disconnected as slow (close code 3008).
client_queue_max_bytes = {queue}

# Largest incoming WebSocket message; larger ones close the connection with 1009.
websocket_message_max_bytes = {message}

# Server ping interval and the time a client has to answer (close code 3012).
ping_interval_ms = {ping}
pong_timeout_ms = {pong}

# Persistent data: channel history lives in <data_dir>/history/<partition>/ as fixed-size,
# memory-mapped segment files, and survives restarts.
data_dir = "{data_dir}"
history_segment_bytes = {segment}
# never: the OS writes back when it likes; interval: every history_fsync_interval_ms;
# always: a publish is acknowledged (and delivered) only once its record is on disk.
history_fsync = "interval"
history_fsync_interval_ms = {fsync_interval}
# Most publications a recovering subscriber is sent, and one history call returns.
recovery_max_publication_limit = {recovery_limit}
history_max_publication_limit = {history_limit}

# Options of channels without a namespace. History is on when both size and ttl are set.
history_size = {history_size}
history_ttl = "{history_ttl}"
force_recovery = false
allow_recovery = false
force_positioning = false
allow_positioning = false
allow_history_for_client = false
allow_history_for_subscriber = false

# Namespaces: channels named "<name>:..." take the options of their namespace, e.g.
# [[namespaces]]
# name = "chat"
# history_size = 100
# history_ttl = "300s"
# force_recovery = true
# allow_history_for_subscriber = true
"#,
            address = d.address,
            port = d.port,
            shards = d.shards,
            api_key = random_secret(),
            secret = random_secret(),
            anonymous = d.allow_anonymous_connect_without_token,
            subscribe = d.allow_subscribe_for_client,
            publish = d.allow_publish_for_client,
            queue = d.client_queue_max_bytes,
            message = d.websocket_message_max_bytes,
            ping = d.ping_interval_ms,
            pong = d.pong_timeout_ms,
            data_dir = d.data_dir.display(),
            segment = d.history_segment_bytes,
            fsync_interval = d.history_fsync_interval_ms,
            recovery_limit = d.recovery_max_publication_limit,
            history_limit = d.history_max_publication_limit,
            history_size = d.history_size,
            history_ttl = d.history_ttl,
        );
        out
    }
}

/// 32 random bytes as 64 hex characters.
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).expect("the OS random source works");
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commented_default_parses_back_to_the_defaults_with_secrets() {
        let text = Config::commented_default();
        let parsed = Config::from_toml(&text).expect("genconfig output parses");
        assert_eq!(parsed.api_key.len(), 64);
        assert_eq!(parsed.token_hmac_secret_key.len(), 64);
        assert_ne!(parsed.api_key, parsed.token_hmac_secret_key);
        let defaults = Config {
            api_key: parsed.api_key.clone(),
            token_hmac_secret_key: parsed.token_hmac_secret_key.clone(),
            ..Config::default()
        };
        assert_eq!(parsed, defaults);
        parsed.validate().unwrap();
    }

    #[test]
    fn overrides_win_and_invalid_values_name_the_key() {
        let mut config = Config::from_toml("port = 9000\napi_key = \"file\"").unwrap();
        let overrides = Overrides {
            api_key: Some("flag".into()),
            ..Default::default()
        };
        overrides.apply(&mut config);
        assert_eq!((config.port, config.api_key.as_str()), (9000, "flag"));

        config.pong_timeout_ms = config.ping_interval_ms;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("pong_timeout_ms"), "{err}");

        let err = Config::from_toml("prot = 1").unwrap_err().to_string();
        assert!(err.contains("prot"), "{err}");
        let err = Config::from_toml("port = \"x\"").unwrap_err().to_string();
        assert!(err.contains("port"), "{err}");
    }

    #[test]
    fn namespaces_and_durations() {
        let config = Config::from_toml(
            "history_size = 10\nhistory_ttl = \"5m\"\n[[namespaces]]\nname = \"chat\"\nhistory_size = 3\nhistory_ttl = 30\nallow_publish_for_client = true\n",
        )
        .unwrap();
        config.validate().unwrap();
        let plain = config.channel_options("news").unwrap();
        assert_eq!((plain.history_size, plain.history_ttl_ms), (10, 300_000));
        assert!(plain.history() && !plain.allow_publish_for_client);
        let chat = config.channel_options("chat:1").unwrap();
        assert_eq!((chat.history_size, chat.history_ttl_ms), (3, 30_000));
        assert!(chat.allow_publish_for_client && chat.allow_subscribe_for_client);
        assert_eq!(config.channel_options("nope:1"), None);
        assert_eq!("250ms".parse::<DurationMs>(), Ok(DurationMs(250)));
        assert_eq!("2h".parse::<DurationMs>(), Ok(DurationMs(7_200_000)));
        assert!("5 parsecs".parse::<DurationMs>().is_err());
        let err = Config::from_toml("[[namespaces]]\nname = \"a\"")
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("namespaces[0].name"), "{err}");
        let err = Config::from_toml("history_ttl = \"1y\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("history_ttl"), "{err}");
    }
}
