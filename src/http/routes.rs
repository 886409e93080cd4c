//! Which path goes where (`route`, by the configured handler prefixes), and the answers of
//! the routes served over plain HTTP: the server API, `/health`, `/metrics`.

use super::{Head, Response};
use crate::api::{self, codec};
use crate::auth::api_key::{self, Credentials};
use crate::config::Config;
use crate::metrics::prometheus;
use crate::shard::Shard;

/// Where a request goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Route<'a> {
    /// The WebSocket endpoint: an upgrade.
    WebSocket,
    /// A server API method.
    Api(&'a str),
    Health,
    Metrics,
    MethodNotAllowed,
    NotFound,
}

/// The route of a request for `path` with `method`.
pub fn route<'a>(config: &Config, method: &str, path: &'a str) -> Route<'a> {
    if path == config.websocket.handler_prefix {
        return Route::WebSocket;
    }
    let get_only = |route: Route<'a>| {
        if method == "GET" {
            route
        } else {
            Route::MethodNotAllowed
        }
    };
    if config.health.enabled && path == config.health.handler_prefix {
        return get_only(Route::Health);
    }
    if config.prometheus.enabled && path == config.prometheus.handler_prefix {
        return get_only(Route::Metrics);
    }
    let prefix = config.http_api.handler_prefix.as_str();
    if !config.http_api.disabled {
        if let Some(rest) = path.strip_prefix(prefix) {
            if rest.is_empty() || rest.starts_with('/') {
                if method != "POST" {
                    return Route::MethodNotAllowed;
                }
                return Route::Api(rest.trim_start_matches('/'));
            }
        }
    }
    Route::NotFound
}

/// The response of a plain HTTP route (not the WebSocket one).
pub async fn respond(shard: &Shard, head: &Head, route: Route<'_>, body: &[u8]) -> Response {
    match route {
        Route::Health => Response::json(&b"{}"[..]),
        Route::Metrics => match shard.collect_stats().await {
            Some(per_shard) => Response::new(
                200,
                prometheus::CONTENT_TYPE,
                prometheus::render(&per_shard),
            ),
            None => Response::text(500, "a shard did not answer"),
        },
        Route::Api(method) => {
            let credentials = Credentials {
                api_key: head.api_key.as_deref(),
                authorization: head.authorization.as_deref(),
            };
            if !api_key::authorized(&shard.config.http_api, credentials) {
                return Response::empty(401);
            }
            match codec::decode(method, body) {
                Ok(command) => Response::json(codec::encode(&api::execute(shard, command).await)),
                Err(codec::DecodeError::UnknownMethod) => Response::text(404, "Not Found"),
                Err(codec::DecodeError::BadRequest) => Response::text(400, "Bad Request"),
            }
        }
        Route::MethodNotAllowed => Response::empty(405),
        Route::NotFound | Route::WebSocket => Response::text(404, "Not Found"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_follow_the_configured_prefixes() {
        let mut config = Config::default();
        assert_eq!(
            route(&config, "GET", "/connection/websocket"),
            Route::WebSocket
        );
        assert_eq!(
            route(&config, "POST", "/api/publish"),
            Route::Api("publish")
        );
        assert_eq!(route(&config, "POST", "/api"), Route::Api(""));
        assert_eq!(
            route(&config, "GET", "/api/publish"),
            Route::MethodNotAllowed
        );
        assert_eq!(route(&config, "POST", "/apix"), Route::NotFound);
        assert_eq!(route(&config, "GET", "/health"), Route::Health);
        assert_eq!(route(&config, "POST", "/metrics"), Route::MethodNotAllowed);
        config.http_api.handler_prefix = "/v1/api".into();
        config.health.enabled = false;
        assert_eq!(route(&config, "POST", "/v1/api/info"), Route::Api("info"));
        assert_eq!(route(&config, "GET", "/health"), Route::NotFound);
        config.http_api.disabled = true;
        assert_eq!(route(&config, "POST", "/v1/api/info"), Route::NotFound);
    }
}
