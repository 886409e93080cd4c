//! Which path goes where (`route`, by the configured handler prefixes), and the answers of
//! the routes served over plain HTTP (the server API, `/health`, `/metrics`) in two steps:
//! `prepare` (check and decode) then `dispatch` (sent to the shards, now, in request order)
//! and `Dispatched::response` (the answers awaited).

use std::time::Instant;

use super::{Head, Response};
use crate::api::codec::ErrorMode;
use crate::api::{self, codec, ApiCommand};
use crate::auth::api_key::{self, Credentials};
use crate::config::Config;
use crate::metrics::latency::Timed;
use crate::metrics::prometheus;
use crate::shard::{Shard, StatsAsk};

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

/// What one listener serves: with `http_server.internal_port` the public port serves the
/// clients (and the API when `http_api.external`), the internal one the API, /metrics and
/// /health; without it one listener serves everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoints {
    pub clients: bool,
    pub api: bool,
    /// /metrics and /health.
    pub internal: bool,
}

impl Endpoints {
    pub const ALL: Endpoints = Endpoints {
        clients: true,
        api: true,
        internal: true,
    };

    /// The public listener's, with a separate internal listener.
    pub fn public(config: &Config) -> Endpoints {
        Endpoints {
            clients: true,
            api: config.http_api.external,
            internal: false,
        }
    }

    /// The internal listener's.
    pub fn internal(config: &Config) -> Endpoints {
        Endpoints {
            clients: false,
            api: !config.http_api.external,
            internal: true,
        }
    }
}

/// The route of a request for `path` with `method` on a listener serving `endpoints`.
pub fn route<'a>(config: &Config, endpoints: Endpoints, method: &str, path: &'a str) -> Route<'a> {
    if endpoints.clients && path == config.websocket.handler_prefix {
        return Route::WebSocket;
    }
    let get_only = |route: Route<'a>| {
        if method == "GET" {
            route
        } else {
            Route::MethodNotAllowed
        }
    };
    if endpoints.internal && config.health.enabled && path == config.health.handler_prefix {
        return get_only(Route::Health);
    }
    if endpoints.internal && config.prometheus.enabled && path == config.prometheus.handler_prefix {
        return get_only(Route::Metrics);
    }
    let prefix = config.http_api.handler_prefix.as_str();
    if endpoints.api && !config.http_api.disabled {
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

/// A request checked and decoded, not yet sent anywhere.
pub enum Prepared {
    /// Answered already: `/health`, and every refusal (401, 404, 400, 405).
    Ready(Response),
    Api(ApiCommand, ErrorMode),
    Metrics,
}

impl Prepared {
    /// True for requests that bring new traffic in (held back while the node is congested).
    pub fn publishes(&self) -> bool {
        matches!(self, Prepared::Api(command, _) if command.publishes())
    }

    /// True for the server API's user actions (and batches holding one), which the requests
    /// after them wait for.
    pub fn acts_on_users(&self) -> bool {
        matches!(self, Prepared::Api(command, _) if command.acts_on_users())
    }

    /// A server API request (the drain waits for these to be answered).
    pub fn is_api(&self) -> bool {
        matches!(self, Prepared::Api(..))
    }

    /// Sends the request to the shards that answer it, now.
    pub fn dispatch(self, shard: &Shard) -> Dispatched {
        match self {
            Prepared::Ready(response) => Dispatched::Ready(response),
            Prepared::Api(command, mode) => {
                let method = command.method();
                let started = Instant::now();
                Dispatched::Api(api::start(shard, command), mode, method, started)
            }
            Prepared::Metrics => Dispatched::Metrics(shard.send_stats_requests(true)),
        }
    }
}

/// A request on its way: its response once the answers are in.
pub enum Dispatched {
    Ready(Response),
    /// With the method's name and when it was dispatched, for its latency.
    Api(api::Started, ErrorMode, &'static str, Instant),
    Metrics(StatsAsk),
}

impl Dispatched {
    pub async fn response(self, shard: &Shard) -> Response {
        match self {
            Dispatched::Ready(response) => response,
            Dispatched::Api(started, mode, method, at) => {
                let reply = api::finish(shard, started).await;
                shard.record_latency(Timed::ApiMethod, method, at.elapsed());
                match (mode, codec::transport_error(&reply)) {
                    (ErrorMode::Transport, Some((status, body))) => {
                        Response::new(status, "application/json", body)
                    }
                    _ => Response::json(codec::encode(&reply)),
                }
            }
            Dispatched::Metrics(ask) => match shard.stats_answers(ask, true).await {
                Some((per_shard, latencies)) => Response::new(
                    200,
                    prometheus::CONTENT_TYPE,
                    prometheus::render(
                        &per_shard,
                        &latencies,
                        1 + crate::engine::redis::peers().len(),
                        crate::VERSION,
                    ),
                ),
                None => Response::text(500, "a shard did not answer"),
            },
        }
    }
}

/// Checks and decodes a plain HTTP request (not the WebSocket one).
pub fn prepare(shard: &Shard, head: &Head, route: Route<'_>, body: &[u8]) -> Prepared {
    match route {
        // Draining: failing, so the load balancer stops sending clients here.
        Route::Health if shard.draining() => {
            Prepared::Ready(Response::new(503, "application/json", &b"{}"[..]))
        }
        Route::Health => Prepared::Ready(Response::json(&b"{}"[..])),
        Route::Metrics => Prepared::Metrics,
        Route::Api(method) => {
            let credentials = Credentials {
                api_key: head.api_key.as_deref(),
                authorization: head.authorization.as_deref(),
                query: head.query_api_key.as_deref(),
            };
            if !api_key::authorized(&shard.config.http_api, credentials) {
                return Prepared::Ready(Response::empty(401));
            }
            match codec::decode(method, body) {
                Ok(command) => Prepared::Api(
                    command,
                    if head.transport_errors {
                        ErrorMode::Transport
                    } else {
                        ErrorMode::InBody
                    },
                ),
                Err(codec::DecodeError::UnknownMethod) => {
                    Prepared::Ready(Response::text(404, "Not Found"))
                }
                Err(codec::DecodeError::BadRequest) => {
                    Prepared::Ready(Response::text(400, "Bad Request"))
                }
            }
        }
        Route::MethodNotAllowed => Prepared::Ready(Response::empty(405)),
        Route::NotFound | Route::WebSocket => Prepared::Ready(Response::text(404, "Not Found")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_follow_the_configured_prefixes() {
        let mut config = Config::default();
        assert_eq!(
            route(&config, Endpoints::ALL, "GET", "/connection/websocket"),
            Route::WebSocket
        );
        assert_eq!(
            route(&config, Endpoints::ALL, "POST", "/api/publish"),
            Route::Api("publish")
        );
        assert_eq!(
            route(&config, Endpoints::ALL, "POST", "/api"),
            Route::Api("")
        );
        assert_eq!(
            route(&config, Endpoints::ALL, "GET", "/api/publish"),
            Route::MethodNotAllowed
        );
        assert_eq!(
            route(&config, Endpoints::ALL, "POST", "/apix"),
            Route::NotFound
        );
        assert_eq!(
            route(&config, Endpoints::ALL, "GET", "/health"),
            Route::Health
        );
        assert_eq!(
            route(&config, Endpoints::ALL, "POST", "/metrics"),
            Route::MethodNotAllowed
        );
        config.http_api.handler_prefix = "/v1/api".into();
        config.health.enabled = false;
        assert_eq!(
            route(&config, Endpoints::ALL, "POST", "/v1/api/info"),
            Route::Api("info")
        );
        assert_eq!(
            route(&config, Endpoints::ALL, "GET", "/health"),
            Route::NotFound
        );
        config.http_api.disabled = true;
        assert_eq!(
            route(&config, Endpoints::ALL, "POST", "/v1/api/info"),
            Route::NotFound
        );
    }
}
