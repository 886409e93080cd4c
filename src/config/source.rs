//! Where configuration comes from and how each key is judged: a file (JSON, YAML or TOML, by
//! extension) parsed into one tree, environment variables laid over it along the same paths,
//! and every key classified against what ringcast implements (kept), Centrifugo's catalogue
//! (ignored, with a warning) or neither (an error naming the closest valid key). Values are
//! read as loosely as Centrifugo reads them (`"port": "8000"`, `"true"` for a bool, one value
//! where a list is expected), then deserialized with the failing key's path in the error.

use std::path::Path;

use serde_json::{Map, Value};

use super::keys::{self, Kind};
use super::{Config, ConfigError, GoDuration, Namespace};

/// Environment variable prefixes, weakest first: ringcast's own wins over Centrifugo's.
const ENV_PREFIXES: [&str; 2] = ["CENTRIFUGO_", "RINGCAST_"];

/// The path of the one list of objects ringcast implements.
const NAMESPACES: &str = "channel.namespaces";

/// Reads and parses a configuration file; its format is its extension's.
pub fn read_file(path: &Path, warnings: &mut Vec<String>) -> Result<Value, ConfigError> {
    let format = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
    let origin = format!("config file {}", path.display());
    parse_text(&text, &format, &origin, warnings)
}

/// Parses `text` in `format` (`json`, `yaml`/`yml`, `toml`) and classifies its keys.
pub fn parse_text(
    text: &str,
    format: &str,
    origin: &str,
    warnings: &mut Vec<String>,
) -> Result<Value, ConfigError> {
    let fail = |e: String| ConfigError(format!("{origin}: {e}"));
    let mut tree: Value = match format {
        "json" => serde_json::from_str(text).map_err(|e| fail(e.to_string()))?,
        "yaml" | "yml" => serde_yaml::from_str(text).map_err(|e| fail(e.to_string()))?,
        "toml" => toml::from_str(text).map_err(|e| fail(e.to_string()))?,
        other => {
            return Err(fail(format!(
                "unknown format {other:?}: name the file *.json, *.yaml, *.yml or *.toml"
            )))
        }
    };
    if tree.is_null() {
        // An empty YAML document.
        tree = Value::Object(Map::new());
    }
    let Value::Object(map) = &mut tree else {
        return Err(fail(
            "the configuration must be an object of sections".into(),
        ));
    };
    lowercase_keys(map);
    let mut errors = Vec::new();
    classify(map, &schema(), "", "", origin, warnings, &mut errors);
    if !errors.is_empty() {
        return Err(fail(errors.join("; ")));
    }
    Ok(tree)
}

/// Keys are case-insensitive, as in Centrifugo.
fn lowercase_keys(map: &mut Map<String, Value>) {
    let old = std::mem::take(map);
    for (key, mut value) in old {
        match &mut value {
            Value::Object(inner) => lowercase_keys(inner),
            Value::Array(items) => {
                for item in items {
                    if let Value::Object(inner) = item {
                        lowercase_keys(inner);
                    }
                }
            }
            _ => {}
        }
        map.insert(key.to_ascii_lowercase(), value);
    }
}

/// What ringcast implements: the default configuration as a tree (leaves give each key's
/// type), with the namespace item's keys under `channel.namespaces`.
fn schema() -> Map<String, Value> {
    match serde_json::to_value(Config::default()) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

fn namespace_schema() -> Map<String, Value> {
    match serde_json::to_value(Namespace::default()) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// Walks `map` against `schema`: implemented keys stay, Centrifugo's keys are removed with a
/// warning (after their own keys are checked against the catalogue), others are errors.
/// `path` is the key as the user sees it (`channel.namespaces[0].name`), `catalogue_path` as
/// the catalogue writes it (`channel.namespaces[].name`).
fn classify(
    map: &mut Map<String, Value>,
    schema: &Map<String, Value>,
    path: &str,
    catalogue_path: &str,
    origin: &str,
    warnings: &mut Vec<String>,
    errors: &mut Vec<String>,
) {
    let keys: Vec<String> = map.keys().cloned().collect();
    for key in keys {
        let shown = join(path, &key);
        let listed = join(catalogue_path, &key);
        match (schema.get(&key), map.get_mut(&key)) {
            (Some(Value::Object(sub)), Some(Value::Object(inner))) => {
                classify(inner, sub, &shown, &listed, origin, warnings, errors)
            }
            (Some(Value::Array(_)), Some(Value::Array(items))) if listed == NAMESPACES => {
                let item_schema = namespace_schema();
                for (i, item) in items.iter_mut().enumerate() {
                    if let Value::Object(inner) = item {
                        let shown = format!("{shown}[{i}]");
                        let listed = format!("{listed}[]");
                        classify(
                            inner,
                            &item_schema,
                            &shown,
                            &listed,
                            origin,
                            warnings,
                            errors,
                        );
                    }
                }
            }
            // Implemented; a value of the wrong shape is reported by deserialization.
            (Some(_), _) => {}
            (None, value) => match keys::centrifugo_kind(&listed) {
                Some(kind) => {
                    if let Some(value) = value {
                        check_catalogue(value, kind, &shown, &listed, errors);
                    }
                    warnings.push(format!(
                        "{origin}: ignoring {shown}: a Centrifugo {}key ringcast does not \
                         implement",
                        if kind == Kind::Any { "PRO " } else { "" }
                    ));
                    map.remove(&key);
                }
                None => errors.push(unknown_key(&shown, &key, schema, catalogue_path)),
            },
        }
    }
}

/// The error for a key that is neither ringcast's nor Centrifugo's, with the closest key at
/// the same level.
fn unknown_key(
    shown: &str,
    key: &str,
    schema: &Map<String, Value>,
    catalogue_path: &str,
) -> String {
    let prefix = if catalogue_path.is_empty() {
        String::new()
    } else {
        format!("{catalogue_path}.")
    };
    let siblings: Vec<String> = schema
        .keys()
        .cloned()
        .chain(
            keys::catalogue()
                .keys()
                .filter_map(|k| k.strip_prefix(prefix.as_str()))
                .filter(|k| !k.contains('.') && !k.contains('['))
                .map(str::to_owned),
        )
        .collect();
    let parent = shown.strip_suffix(key).unwrap_or("");
    match keys::closest(key, siblings.iter().map(String::as_str)) {
        Some(best) => format!("unknown key {shown} (did you mean {parent}{best}?)"),
        None => format!("unknown key {shown}"),
    }
}

/// Checks the keys inside an ignored Centrifugo object against the catalogue, so a typo
/// there is caught too.
fn check_catalogue(value: &Value, kind: Kind, shown: &str, listed: &str, errors: &mut Vec<String>) {
    match (kind, value) {
        (Kind::Object, Value::Object(map)) => {
            for (key, inner) in map {
                let child_shown = join(shown, key);
                let child_listed = join(listed, key);
                match keys::centrifugo_kind(&child_listed) {
                    Some(kind) => check_catalogue(inner, kind, &child_shown, &child_listed, errors),
                    None => errors.push(unknown_key(&child_shown, key, &Map::new(), listed)),
                }
            }
        }
        (Kind::Objects, Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                check_catalogue(
                    item,
                    Kind::Object,
                    &format!("{shown}[{i}]"),
                    &format!("{listed}[]"),
                    errors,
                );
            }
        }
        _ => {}
    }
}

/// The environment variable names of a key path.
fn env_name(prefix: &str, path: &str) -> String {
    format!("{prefix}{}", path.replace('.', "_").to_ascii_uppercase())
}

/// Every implemented leaf path of `schema` under `path`.
fn leaves(schema: &Map<String, Value>, path: &str, out: &mut Vec<String>) {
    for (key, value) in schema {
        let p = join(path, key);
        match value {
            Value::Object(sub) => leaves(sub, &p, out),
            Value::Array(_) if p == NAMESPACES => {}
            _ => out.push(p),
        }
    }
}

/// Sets `path` (dotted, objects only) in `tree` to `value`, creating objects on the way.
fn set_path(tree: &mut Value, path: &str, value: Value) {
    let mut node = tree;
    for part in path.split('.') {
        if !node.is_object() {
            *node = Value::Object(Map::new());
        }
        let Value::Object(map) = node else { return };
        node = map.entry(part.to_owned()).or_insert(Value::Null);
    }
    *node = value;
}

/// Lays the environment over `tree`: `RINGCAST_<PATH>` (or `CENTRIFUGO_<PATH>`) for every
/// implemented key, `..._CHANNEL_NAMESPACES` (a JSON array, or names to add) and
/// `..._CHANNEL_NAMESPACES_<NAME>_<KEY>` for each namespace. Unknown variables with either
/// prefix get a warning, as in Centrifugo.
pub fn apply_env(
    tree: &mut Value,
    env: &[(String, String)],
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let lookup = |name: &str| {
        env.iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.clone())
    };
    let mut used: Vec<String> = Vec::new();
    let mut paths = Vec::new();
    leaves(&schema(), "", &mut paths);
    for prefix in ENV_PREFIXES {
        for path in &paths {
            let name = env_name(prefix, path);
            if let Some(value) = lookup(&name) {
                set_path(tree, path, Value::String(value));
                used.push(name);
            }
        }
        let list_name = env_name(prefix, NAMESPACES);
        if let Some(value) = lookup(&list_name) {
            apply_namespace_list(tree, &list_name, &value, warnings)?;
            used.push(list_name);
        }
    }
    // Per-namespace variables, for the namespaces that exist now.
    let item_keys: Vec<String> = namespace_schema()
        .keys()
        .filter(|k| *k != "name")
        .cloned()
        .collect();
    if let Some(Value::Array(items)) = tree.pointer_mut("/channel/namespaces") {
        for item in items.iter_mut() {
            let Some(name) = item.get("name").and_then(Value::as_str).map(str::to_owned) else {
                continue;
            };
            let env_ns = name.replace(['.', '-'], "_").to_ascii_uppercase();
            for prefix in ENV_PREFIXES {
                for key in &item_keys {
                    let var = format!(
                        "{}_{env_ns}_{}",
                        env_name(prefix, NAMESPACES),
                        key.to_ascii_uppercase()
                    );
                    if let Some(value) = lookup(&var) {
                        if let Value::Object(map) = item {
                            map.insert(key.clone(), Value::String(value));
                        }
                        used.push(var);
                    }
                }
            }
        }
    }
    warn_unknown_env(env, &used, &paths, warnings);
    Ok(())
}

fn apply_namespace_list(
    tree: &mut Value,
    var: &str,
    value: &str,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let trimmed = value.trim();
    if trimmed.starts_with('[') {
        let origin = format!("environment variable {var}");
        let mut list: Value = serde_json::from_str(trimmed)
            .map_err(|e| ConfigError(format!("{origin}: not a JSON array of namespaces: {e}")))?;
        let Value::Array(items) = &mut list else {
            return Err(ConfigError(format!("{origin}: not a JSON array")));
        };
        let item_schema = namespace_schema();
        let mut errors = Vec::new();
        for (i, item) in items.iter_mut().enumerate() {
            if let Value::Object(map) = item {
                lowercase_keys(map);
                classify(
                    map,
                    &item_schema,
                    &format!("{NAMESPACES}[{i}]"),
                    &format!("{NAMESPACES}[]"),
                    &origin,
                    warnings,
                    &mut errors,
                );
            }
        }
        if !errors.is_empty() {
            return Err(ConfigError(format!("{origin}: {}", errors.join("; "))));
        }
        set_path(tree, NAMESPACES, list);
    } else {
        // Names: each adds an empty namespace unless it exists (Centrifugo's rule).
        let mut items = match tree.pointer("/channel/namespaces") {
            Some(Value::Array(items)) => items.clone(),
            _ => Vec::new(),
        };
        for name in trimmed.split_whitespace() {
            let exists = items
                .iter()
                .any(|item| item.get("name").and_then(Value::as_str) == Some(name));
            if !exists {
                items.push(serde_json::json!({ "name": name }));
            }
        }
        set_path(tree, NAMESPACES, Value::Array(items));
    }
    Ok(())
}

/// One warning per `RINGCAST_*` / `CENTRIFUGO_*` variable nothing read.
fn warn_unknown_env(
    env: &[(String, String)],
    used: &[String],
    paths: &[String],
    warnings: &mut Vec<String>,
) {
    let known: Vec<String> = paths.iter().map(|p| env_name("RINGCAST_", p)).collect();
    for (name, _) in env {
        let Some(prefix) = ENV_PREFIXES.iter().find(|p| name.starts_with(*p)) else {
            continue;
        };
        if used.contains(name) || exempt_env(name) {
            continue;
        }
        let rest = &name[prefix.len()..];
        let centrifugo = keys::catalogue()
            .iter()
            .any(|(path, kind)| *kind != Kind::Object && env_name("", path) == rest);
        if centrifugo || name.starts_with(&format!("{prefix}CHANNEL_NAMESPACES_")) {
            warnings.push(format!(
                "environment: ignoring {name}: a Centrifugo key ringcast does not implement \
                 (or a namespace that is not configured)"
            ));
            continue;
        }
        let ours = format!("RINGCAST_{rest}");
        let hint = keys::closest(&ours, known.iter().map(String::as_str))
            .map(|best| format!(" (did you mean {}{}?)", prefix, &best["RINGCAST_".len()..]))
            .unwrap_or_default();
        warnings.push(format!(
            "environment: ignoring {name}: no such configuration key{hint}"
        ));
    }
}

/// Variables with the prefixes that are not configuration: ringcast's own process settings,
/// Centrifugo's `${CENTRIFUGO_VAR_*}` values, and the service links Kubernetes injects
/// (`CENTRIFUGO_PORT`, `CENTRIFUGO_SERVICE_HOST`, ...).
fn exempt_env(name: &str) -> bool {
    if name == "RINGCAST_CONFIG" || name.starts_with("RINGCAST_TEST_") {
        return true;
    }
    if name.starts_with("CENTRIFUGO_VAR_") {
        return true;
    }
    let Some(rest) = name.strip_prefix("CENTRIFUGO") else {
        return false;
    };
    rest.starts_with("_PORT")
        || rest.starts_with("_SERVICE_")
        || rest.contains("_PORT")
        || rest.contains("_SERVICE_")
}

/// Converts values to the types the schema has, as loosely as Centrifugo does.
fn coerce(value: &mut Value, schema: &Value) {
    match (schema, &mut *value) {
        (Value::Object(sub), Value::Object(map)) => {
            for (key, inner) in map.iter_mut() {
                if let Some(s) = sub.get(key) {
                    coerce(inner, s);
                }
            }
        }
        (Value::Bool(_), Value::String(text)) => {
            if let Some(b) = parse_go_bool(text) {
                *value = Value::Bool(b);
            }
        }
        (Value::Bool(_), Value::Number(n)) => {
            if let Some(i) = n.as_i64().filter(|i| *i == 0 || *i == 1) {
                *value = Value::Bool(i == 1);
            }
        }
        (Value::Number(_), Value::String(text)) => {
            if let Ok(i) = text.trim().parse::<i64>() {
                *value = Value::from(i);
            } else if let Ok(u) = text.trim().parse::<u64>() {
                *value = Value::from(u);
            }
        }
        // A list of strings from the environment: a JSON array, or words separated by spaces
        // (as Centrifugo reads `CENTRIFUGO_CLIENT_ALLOWED_ORIGINS="https://a https://b"`).
        (Value::Array(_), Value::String(text)) => {
            *value = match serde_json::from_str::<Value>(text) {
                Ok(list @ Value::Array(_)) => list,
                _ => Value::Array(
                    text.split_whitespace()
                        .map(|word| Value::String(word.to_owned()))
                        .collect(),
                ),
            };
        }
        // A duration stays a number (nanoseconds, as Go reads it); other strings take the
        // number's text.
        (Value::String(default), Value::Number(_) | Value::Bool(_)) if !is_duration(default) => {
            *value = Value::String(value.to_string());
        }
        _ => {}
    }
}

/// The defaults of duration keys print as Go durations (`"25s"`, `"0s"`).
fn is_duration(default: &str) -> bool {
    !default.is_empty() && GoDuration::parse(default).is_ok()
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Coerces `tree` to the schema and deserializes it; errors name the key.
pub fn deserialize(mut tree: Value) -> Result<Config, ConfigError> {
    coerce(&mut tree, &Value::Object(schema()));
    if let Some(Value::Array(items)) = tree.pointer_mut("/channel/namespaces") {
        let item_schema = Value::Object(namespace_schema());
        for item in items {
            coerce(item, &item_schema);
        }
    }
    serde_path_to_error::deserialize(tree).map_err(|e| {
        let path = e.path().to_string();
        ConfigError(format!("invalid {path}: {}", e.inner()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_keys_are_exactly_these() {
        let mut paths = Vec::new();
        leaves(&schema(), "", &mut paths);
        let durations: Vec<&String> = paths
            .iter()
            .filter(|p| {
                let v = schema_value(p);
                v.as_str().is_some_and(is_duration)
            })
            .collect();
        assert_eq!(
            durations,
            [
                "channel.history_meta_ttl",
                "channel.without_namespace.history_meta_ttl",
                "channel.without_namespace.history_ttl",
                "client.expired_close_delay",
                "client.expired_sub_close_delay",
                "client.ping_interval",
                "client.pong_timeout",
                "client.stale_close_delay",
                "engine.redis.connect_timeout",
                "engine.redis.io_timeout",
                "engine.redis.presence_ttl",
                "history_storage.fsync_interval",
                "http_server.request_timeout",
                "shutdown.accept_delay",
                "shutdown.timeout",
                "user_status.debounce",
                "websocket.write_timeout",
            ]
        );
    }

    fn schema_value(path: &str) -> Value {
        let tree = Value::Object(schema());
        tree.pointer(&format!("/{}", path.replace('.', "/")))
            .cloned()
            .unwrap_or(Value::Null)
    }

    #[test]
    fn kubernetes_and_own_variables_are_exempt() {
        assert!(exempt_env("CENTRIFUGO_PORT"));
        assert!(exempt_env("CENTRIFUGO_SERVICE_HOST"));
        assert!(exempt_env("RINGCAST_CONFIG"));
        assert!(!exempt_env("CENTRIFUGO_CLIENT_TOKEN_HMAC_SECRET_KEY"));
        assert!(!exempt_env("RINGCAST_PORT"));
    }
}
