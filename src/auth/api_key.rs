//! The server API key: `X-API-Key: KEY`, `Authorization: apikey KEY` or the `api_key` query
//! parameter, compared in constant time; an empty configured key authorizes nothing (unless
//! `http_api.insecure`).

use crate::config::HttpApi;

/// The credentials a request carried.
#[derive(Debug, Default, Clone, Copy)]
pub struct Credentials<'a> {
    /// The `X-API-Key` header.
    pub api_key: Option<&'a str>,
    /// The `Authorization` header.
    pub authorization: Option<&'a str>,
    /// The `api_key` query parameter, looked at after the headers (as Centrifugo).
    pub query: Option<&'a str>,
}

/// True if the request may call the API.
pub fn authorized(api: &HttpApi, credentials: Credentials<'_>) -> bool {
    if api.insecure {
        return true;
    }
    let key = api.key.as_str();
    if key.is_empty() {
        return false;
    }
    let from_authorization = credentials.authorization.and_then(|auth| {
        let mut words = auth.split_ascii_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some(scheme), Some(given), None) if scheme.eq_ignore_ascii_case("apikey") => {
                Some(given)
            }
            _ => None,
        }
    });
    // Any of the places a key may come in authorizes, as in Centrifugo.
    [credentials.api_key, from_authorization, credentials.query]
        .into_iter()
        .flatten()
        .any(|given| constant_time_eq(given.as_bytes(), key.as_bytes()))
}

/// Compares without an early exit, so response timing does not leak the key.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_headers_and_the_insecure_mode() {
        let api = HttpApi {
            key: "k".into(),
            ..HttpApi::default()
        };
        let with = |api_key, authorization| Credentials {
            api_key,
            authorization,
            query: None,
        };
        assert!(authorized(&api, with(Some("k"), None)));
        assert!(authorized(&api, with(None, Some("apikey k"))));
        assert!(authorized(&api, with(None, Some("ApiKey k"))));
        assert!(!authorized(&api, with(Some("x"), None)));
        assert!(!authorized(&api, with(None, Some("bearer k"))));
        assert!(!authorized(&api, with(None, None)));
        let query = |key| Credentials {
            query: Some(key),
            ..Credentials::default()
        };
        assert!(authorized(&api, query("k")));
        assert!(!authorized(&api, query("x")));
        let empty = HttpApi::default();
        assert!(!authorized(&empty, with(Some(""), None)));
        let insecure = HttpApi {
            insecure: true,
            ..HttpApi::default()
        };
        assert!(authorized(&insecure, with(None, None)));
    }
}
