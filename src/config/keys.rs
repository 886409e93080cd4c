//! The catalogue of Centrifugo v6's configuration keys (`centrifugo_keys.txt`): what ringcast
//! accepts and ignores with a warning, and what it suggests for a key it does not know.

use std::collections::HashMap;
use std::sync::OnceLock;

/// What a catalogue key is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A value.
    Leaf,
    /// An object whose keys are in the catalogue.
    Object,
    /// A list of objects whose item keys are in the catalogue as `<path>[].<key>`.
    Objects,
    /// A map: any keys below.
    Map,
    /// A PRO key or section: anything below is accepted.
    Any,
}

/// Paths as the catalogue writes them: list items as `[]`, no indexes.
pub fn catalogue() -> &'static HashMap<&'static str, Kind> {
    static KEYS: OnceLock<HashMap<&'static str, Kind>> = OnceLock::new();
    KEYS.get_or_init(|| {
        include_str!("centrifugo_keys.txt")
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .filter_map(|line| {
                let (path, kind) = line.split_once(' ')?;
                let kind = match kind.trim() {
                    "leaf" => Kind::Leaf,
                    "object" => Kind::Object,
                    "objects" => Kind::Objects,
                    "map" => Kind::Map,
                    "any" => Kind::Any,
                    _ => return None,
                };
                Some((path, kind))
            })
            .collect()
    })
}

/// The catalogue's verdict on a path (list items written `[]`): `Some(kind)` when the key is
/// Centrifugo's, including keys below a map or a PRO section.
pub fn centrifugo_kind(path: &str) -> Option<Kind> {
    let keys = catalogue();
    if let Some(kind) = keys.get(path) {
        return Some(*kind);
    }
    // Below a map or a PRO section, anything goes.
    let mut prefix = path;
    while let Some(at) = prefix.rfind('.') {
        prefix = &prefix[..at];
        let parent = prefix.strip_suffix("[]").unwrap_or(prefix);
        if let Some(Kind::Map | Kind::Any) = keys.get(parent) {
            return Some(Kind::Any);
        }
    }
    None
}

/// Edit distance (Levenshtein) between two short strings.
pub fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

/// The closest of `candidates` to `key` (by the last path segment, then the whole path).
pub fn closest<'a>(key: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let last = |p: &str| p.rsplit('.').next().unwrap_or(p).to_owned();
    let key_last = last(key);
    candidates
        .into_iter()
        .map(|c| (distance(&key_last, &last(c)) * 4 + distance(key, c), c))
        .min_by_key(|(d, c)| (*d, c.len()))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_knows_oss_pro_and_map_keys() {
        assert_eq!(
            centrifugo_kind("client.token.hmac_secret_key"),
            Some(Kind::Leaf)
        );
        assert_eq!(centrifugo_kind("consumers"), Some(Kind::Objects));
        assert_eq!(
            centrifugo_kind("consumers[].postgresql.dsn"),
            Some(Kind::Leaf)
        );
        assert_eq!(
            centrifugo_kind("push_notifications.fcm.credentials_file"),
            Some(Kind::Any)
        );
        assert_eq!(
            centrifugo_kind("proxies[].http.static_headers.x-custom"),
            Some(Kind::Any)
        );
        assert_eq!(centrifugo_kind("client.tokn"), None);
        assert!(catalogue().len() > 1500);
        assert_eq!(distance("prot", "port"), 2);
        assert_eq!(
            closest(
                "http_server.prot",
                ["http_server.port", "http_server.address"]
            ),
            Some("http_server.port")
        );
    }
}
