//! `genconfig`: a minimal configuration in Centrifugo v6's layout with fresh secrets, in the
//! format the output file's extension names (JSON, YAML or TOML), plus ringcast's own sections
//! with their defaults.

use serde_json::json;

use super::{Config, ConfigError};

/// The configuration text for `format` (`json`, `yaml`/`yml`, `toml`).
pub fn generate(format: &str) -> Result<String, ConfigError> {
    let random = |what: &str| {
        crate::rand::secret().map_err(|e| ConfigError(format!("cannot generate {what}: {e}")))
    };
    let d = Config::default();
    let tree = json!({
        "http_server": { "port": d.http_server.port },
        "http_api": { "key": random("an API key")? },
        "client": {
            "token": { "hmac_secret_key": random("a token secret")? },
            "allow_anonymous_connect_without_token": false,
        },
        "channel": {
            "without_namespace": {},
            "namespaces": [],
        },
        "shards": { "count": d.shards.count },
        "history_storage": {
            "data_dir": d.history_storage.data_dir,
            "segment_size": d.history_storage.segment_size,
            "fsync": d.history_storage.fsync,
            "fsync_interval": d.history_storage.fsync_interval,
        },
        "user_status": {
            "channel": d.user_status.channel,
            "debounce": d.user_status.debounce,
        },
    });
    let header = "ringcast configuration in Centrifugo v6's layout; every key is described in \
                  README.md (Configuration). shards, history_storage and user_status are ringcast's own.";
    let text = match format {
        "json" => serde_json::to_string_pretty(&tree)
            .map(|t| t + "\n")
            .map_err(|e| e.to_string()),
        "yaml" | "yml" => serde_yaml::to_string(&tree)
            .map(|t| format!("# {header}\n{t}"))
            .map_err(|e| e.to_string()),
        "toml" => toml::to_string_pretty(&tree)
            .map(|t| format!("# {header}\n{t}"))
            .map_err(|e| e.to_string()),
        other => Err(format!(
            "unknown format {other:?}: name the file *.json, *.yaml, *.yml or *.toml"
        )),
    };
    text.map_err(ConfigError)
}
