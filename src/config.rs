//! Configuration: the embedded defaults, a TOML file, `RINGCAST_*` environment variables and
//! command-line flags, each overriding the one before. Every key exists in all three forms
//! (`api_key` in TOML, `RINGCAST_API_KEY`, `--api-key`); the names are Centrifugo's v5 names on
//! purpose. `Config::validate` refuses bad values with a message naming the key.
//!
//! Owns nothing at run time: the validated `Config` is cloned into every shard.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;

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
        Ok(())
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
}
