//! Command-line flags that override the file and the environment: the common ones scripts
//! use (`--address`, `--port`, `--shards`, `--data-dir`, `--api-key`,
//! `--token-hmac-secret-key`, each also under its Centrifugo v6 dotted name) and Centrifugo's
//! boolean flags for keys ringcast implements, bare (`--health.enabled`) or with a value
//! (`--health.enabled=false`).

use std::path::PathBuf;

use super::Config;

#[derive(Debug, Default, Clone, clap::Args)]
pub struct Overrides {
    /// Address to listen on (http_server.address) [default: all interfaces]
    #[arg(long, short = 'a', visible_alias = "http_server.address")]
    pub address: Option<String>,
    /// Port to listen on (http_server.port) [default: 8000; 0 = any free port]
    #[arg(long, short = 'p', visible_alias = "http_server.port")]
    pub port: Option<u16>,
    /// Shards, one pinned thread each (shards.count) [default: 0 = one per CPU]
    #[arg(long, visible_alias = "shards.count")]
    pub shards: Option<usize>,
    /// Directory for persistent data (history_storage.data_dir) [default: data]
    #[arg(long, visible_alias = "history_storage.data_dir")]
    pub data_dir: Option<PathBuf>,
    /// Server API key (http_api.key)
    #[arg(long, visible_alias = "http_api.key")]
    pub api_key: Option<String>,
    /// HMAC secret for HS256 connection tokens (client.token.hmac_secret_key)
    #[arg(long, visible_alias = "client.token.hmac_secret_key")]
    pub token_hmac_secret_key: Option<String>,
    /// Serve /health [default: true]
    #[arg(long = "health.enabled", num_args = 0..=1, default_missing_value = "true")]
    pub health_enabled: Option<bool>,
    /// Serve /metrics [default: true]
    #[arg(long = "prometheus.enabled", num_args = 0..=1, default_missing_value = "true")]
    pub prometheus_enabled: Option<bool>,
    /// The server API without a key (trusted networks only) [default: false]
    #[arg(long = "http_api.insecure", num_args = 0..=1, default_missing_value = "true")]
    pub http_api_insecure: Option<bool>,
}

impl Overrides {
    /// Applies every flag given.
    pub fn apply(&self, config: &mut Config) {
        fn set<T: Clone>(flag: &Option<T>, key: &mut T) {
            if let Some(value) = flag {
                *key = value.clone();
            }
        }
        set(&self.address, &mut config.http_server.address);
        set(&self.port, &mut config.http_server.port);
        set(&self.shards, &mut config.shards.count);
        set(&self.data_dir, &mut config.history_storage.data_dir);
        set(&self.api_key, &mut config.http_api.key);
        set(
            &self.token_hmac_secret_key,
            &mut config.client.token.hmac_secret_key,
        );
        set(&self.health_enabled, &mut config.health.enabled);
        set(&self.prometheus_enabled, &mut config.prometheus.enabled);
        set(&self.http_api_insecure, &mut config.http_api.insecure);
    }
}
