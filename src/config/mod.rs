//! Configuration in Centrifugo v6's schema: the same nested keys (`client.token.hmac_secret_key`,
//! `http_api.key`, `channel.namespaces`, ...) read from a JSON, YAML or TOML file (by
//! extension), then `RINGCAST_*` / `CENTRIFUGO_*` environment variables along the same paths,
//! then the command-line flags, each overriding the one before; validated with errors that
//! name the key. Keys of ringcast's own live in sections of their own (`shards`,
//! `history_storage`). A Centrifugo key ringcast does not implement is accepted with a
//! warning; a key that is neither stops the start, naming the closest valid one.
//!
//! The pieces: `channel` (channel options and namespaces), `duration` (Go durations),
//! `keys` (the catalogue of Centrifugo's keys), `source` (files, environment, classification
//! of every key), `validate`, `overrides` (flags), `template` (`genconfig`).
//!
//! Owns nothing at run time: the validated `Config` is cloned into every shard. A leaf:
//! imports only `limits` and `rand`.

pub mod channel;
pub mod duration;
mod keys;
pub mod overrides;
pub mod pem;
mod source;
pub mod template;
mod validate;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use channel::{ChannelOptions, ChannelSection, Namespace, NamespaceId, NamespaceOptions};
pub use duration::GoDuration;
pub use overrides::Overrides;

/// The validated server configuration, section by section as Centrifugo v6 names them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub http_server: HttpServer,
    pub http_api: HttpApi,
    pub health: Endpoint,
    pub prometheus: Endpoint,
    pub websocket: WebSocket,
    pub client: Client,
    pub channel: ChannelSection,
    pub node: Node,
    /// ringcast: the shards (pinned threads).
    pub shards: Shards,
    /// ringcast: where and how channel history is stored.
    pub history_storage: HistoryStorage,
    /// ringcast: online/offline events per user.
    pub user_status: UserStatus,
    /// The drain on SIGTERM/SIGINT.
    pub shutdown: Shutdown,
    /// Where channels live: this node alone, or Redis shared with other nodes.
    pub engine: Engine,
}

/// Centrifugo's engine: `memory` (in ringcast the node's own persistent history) or `redis`
/// (offsets, history and delivery shared by every node using the same Redis).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Engine {
    #[serde(rename = "type")]
    pub kind: String,
    pub redis: RedisEngine,
}

impl Default for Engine {
    fn default() -> Self {
        Engine {
            kind: "memory".into(),
            redis: RedisEngine::default(),
        }
    }
}

impl Engine {
    pub fn is_redis(&self) -> bool {
        self.kind == "redis"
    }
}

/// Centrifugo's `engine.redis`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RedisEngine {
    /// `host:port` or `redis://[user:password@]host:port[/db]`; several: channels are spread
    /// over independent Redis instances by a stable hash of their names.
    pub address: Vec<String>,
    /// Seed addresses of a Redis Cluster (same forms as `address`); when set, the cluster is
    /// used instead of `address`: each channel lives on the master of its hash slot.
    pub cluster_address: Vec<String>,
    /// Prefix of every key and pub/sub channel.
    pub prefix: String,
    pub db: u32,
    pub user: String,
    pub password: String,
    pub connect_timeout: GoDuration,
    /// The longest a Redis answer may take.
    pub io_timeout: GoDuration,
    /// A node's presence entries expire this long after it last wrote them (it writes them
    /// again every third of it): a node that died leaves no entry behind for longer.
    pub presence_ttl: GoDuration,
    /// TLS to every Redis (`rediss://` addresses use it whether enabled or not).
    pub tls: RedisTls,
}

/// Centrifugo's client TLS object for Redis (`engine.redis.tls`). Each PEM value is PEM
/// text, a file path or base64 PEM.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RedisTls {
    pub enabled: bool,
    /// A client certificate chain and key, for a Redis that asks for one.
    pub cert_pem: String,
    pub key_pem: String,
    /// The CA Redis's certificate must chain to (empty: the Mozilla roots).
    pub server_ca_pem: String,
    /// Accept any certificate (testing only).
    pub insecure_skip_verify: bool,
    /// The name to verify (empty: the address's host).
    pub server_name: String,
}

impl Default for RedisEngine {
    fn default() -> Self {
        RedisEngine {
            address: vec!["127.0.0.1:6379".into()],
            cluster_address: Vec::new(),
            prefix: "centrifugo".into(),
            db: 0,
            user: String::new(),
            password: String::new(),
            connect_timeout: GoDuration::from_secs(1),
            io_timeout: GoDuration::from_secs(4),
            presence_ttl: GoDuration::from_secs(60),
            tls: RedisTls::default(),
        }
    }
}

/// One Redis address, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisAddress {
    /// `host:port`.
    pub host_port: String,
    pub user: Option<String>,
    pub password: Option<String>,
    pub db: Option<u32>,
    /// `rediss://`: TLS (with `engine.redis.tls`'s settings, enabled or not).
    pub tls: bool,
}

impl RedisAddress {
    /// `host:port` or `redis[s]://[user:password@]host:port[/db]`.
    pub fn parse(text: &str) -> Result<RedisAddress, String> {
        let (tls, rest) = match (
            text.strip_prefix("redis://"),
            text.strip_prefix("rediss://"),
        ) {
            (Some(rest), _) => (false, Some(rest)),
            (_, Some(rest)) => (true, Some(rest)),
            _ => (false, None),
        };
        let Some(rest) = rest else {
            if text.contains("://") {
                return Err(format!("{text:?}: only redis:// or rediss:// addresses"));
            }
            if !text.contains(':') {
                return Err(format!("{text:?} is not host:port"));
            }
            return Ok(RedisAddress {
                host_port: text.to_owned(),
                user: None,
                password: None,
                db: None,
                tls: false,
            });
        };
        let (credentials, rest) = match rest.rsplit_once('@') {
            Some((credentials, rest)) => (Some(credentials), rest),
            None => (None, rest),
        };
        let (host_port, db) = match rest.split_once('/') {
            Some((host_port, "")) => (host_port, None),
            Some((host_port, db)) => (
                host_port,
                Some(
                    db.parse()
                        .map_err(|_| format!("{text:?}: bad database number"))?,
                ),
            ),
            None => (rest, None),
        };
        let host_port = if host_port.contains(':') {
            host_port.to_owned()
        } else {
            format!("{host_port}:6379")
        };
        let (user, password) = match credentials {
            None => (None, None),
            Some(c) => match c.split_once(':') {
                Some((user, password)) => (
                    (!user.is_empty()).then(|| user.to_owned()),
                    Some(password.to_owned()),
                ),
                None => (None, Some(c.to_owned())),
            },
        };
        Ok(RedisAddress {
            host_port,
            user,
            password,
            db,
            tls,
        })
    }
}

/// The drain on SIGTERM or SIGINT: `/health` answers 503 at once; clients are still accepted
/// for `accept_delay` (the load balancer sees the failing check first), then no more; the
/// clients are closed with 3001 over at most `timeout`; API calls in flight are answered;
/// the history is synced; the process exits 0. A second signal exits at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Shutdown {
    /// Centrifugo's: the longest the drain may take after the accept delay.
    pub timeout: GoDuration,
    /// ringcast: how long clients are still accepted after the signal.
    pub accept_delay: GoDuration,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown {
            timeout: GoDuration::from_secs(30),
            accept_delay: GoDuration::from_secs(3),
        }
    }
}

/// ringcast (beyond Centrifugo): each user's online/offline transitions on this node,
/// published to a channel the backend subscribes to or reads through history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UserStatus {
    /// The channel the events go to (empty: no events). Its namespace must exist; give it
    /// history to read missed events back.
    pub channel: String,
    /// A user goes offline this long after their last connection closed, unless one opens
    /// again meanwhile (then there is no event at all). 0: at once.
    pub debounce: GoDuration,
}

impl Default for UserStatus {
    fn default() -> Self {
        UserStatus {
            channel: String::new(),
            debounce: GoDuration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpServer {
    /// Address to listen on; empty = every interface (0.0.0.0).
    pub address: String,
    /// Port for WebSocket clients, the HTTP API, /health and /metrics (0 = any free port).
    pub port: u16,
    /// ringcast: a request (head and body) must arrive whole within this from its first
    /// byte, else 408 and the connection closes (a client trickling bytes holds nothing).
    pub request_timeout: GoDuration,
    /// The internal endpoints' address (the server API unless `http_api.external`,
    /// /metrics, /health); empty: `address`.
    pub internal_address: String,
    /// Their port (a string, as Centrifugo has it); empty: `port`, all on one listener.
    pub internal_port: String,
    /// ringcast: connections to the client port start with a PROXY protocol header (v1 or
    /// v2) from an L4 load balancer naming the client's address; one without is refused.
    pub proxy_protocol: bool,
    /// TLS on the client port (wss://, https://), and on the internal port unless
    /// `tls_external` or `internal_tls` says otherwise.
    pub tls: Tls,
    /// TLS for the client port only: the internal port stays plain.
    pub tls_external: bool,
    /// The internal port's own TLS, when enabled.
    pub internal_tls: Tls,
}

/// Centrifugo's TLS object. Each PEM value is the PEM text itself, a path to a file holding
/// it, or the PEM text in base64 (as Centrifugo's `PEMData`). The certificate and key are
/// read again on SIGHUP; connections open keep theirs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Tls {
    pub enabled: bool,
    /// The certificate chain, leaf first.
    pub cert_pem: String,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key_pem: String,
    /// When set, clients must present a certificate this CA signed (mutual TLS).
    pub client_ca_pem: String,
}

impl Default for HttpServer {
    fn default() -> Self {
        HttpServer {
            address: String::new(),
            port: 8000,
            request_timeout: GoDuration::from_secs(10),
            internal_address: String::new(),
            internal_port: String::new(),
            proxy_protocol: false,
            tls: Tls::default(),
            tls_external: false,
            internal_tls: Tls::default(),
        }
    }
}

impl HttpServer {
    /// The address to bind: empty means every interface, `localhost` the loopback one.
    pub fn ip(&self) -> Result<IpAddr, String> {
        parse_ip(&self.address)
    }

    /// The TLS the client port serves, if any.
    pub fn client_tls(&self) -> Option<&Tls> {
        self.tls.enabled.then_some(&self.tls)
    }

    /// The internal endpoints' own listener (address, port; port 0: any free one), when
    /// `internal_port` names one other than `port`; `None`: everything on one listener.
    pub fn internal(&self) -> Result<Option<(IpAddr, u16)>, String> {
        if self.internal_port.is_empty() {
            return Ok(None);
        }
        let port: u16 = self
            .internal_port
            .trim()
            .parse()
            .map_err(|_| format!("{:?} is not a port", self.internal_port))?;
        if port == self.port && port != 0 {
            return Ok(None);
        }
        let address = match self.internal_address.as_str() {
            "" => self.ip()?,
            other => parse_ip(other)?,
        };
        Ok(Some((address, port)))
    }
}

/// An address to bind: empty means every interface, `localhost` the loopback one.
fn parse_ip(address: &str) -> Result<IpAddr, String> {
    match address {
        "" => Ok(IpAddr::from([0, 0, 0, 0])),
        "localhost" => Ok(IpAddr::from([127, 0, 0, 1])),
        other => other
            .parse()
            .map_err(|_| format!("{other:?} is not an IP address")),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpApi {
    /// Key for the server API (`X-API-Key: KEY` or `Authorization: apikey KEY`). Empty =
    /// generated at start (dev mode) unless `insecure`.
    pub key: String,
    pub handler_prefix: String,
    /// No server API at all.
    pub disabled: bool,
    /// The API without a key (trusted networks only).
    pub insecure: bool,
    /// With a separate internal port: the API on the public port (with the clients) instead.
    pub external: bool,
}

impl Default for HttpApi {
    fn default() -> Self {
        HttpApi {
            key: String::new(),
            handler_prefix: "/api".into(),
            disabled: false,
            insecure: false,
            external: false,
        }
    }
}

/// `/health` and `/metrics`: on by default in ringcast (Centrifugo: off).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Endpoint {
    pub enabled: bool,
    pub handler_prefix: String,
}

/// A section written without a prefix gets its endpoint's (`fill_zero_defaults`).
impl Default for Endpoint {
    fn default() -> Self {
        Endpoint::on("")
    }
}

impl Endpoint {
    fn on(prefix: &str) -> Self {
        Endpoint {
            enabled: true,
            handler_prefix: prefix.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WebSocket {
    /// Largest incoming message in bytes; larger ones close the connection with 1009.
    pub message_size_limit: usize,
    /// A socket that takes no bytes for this long is a slow client (3008).
    pub write_timeout: GoDuration,
    pub handler_prefix: String,
}

impl Default for WebSocket {
    fn default() -> Self {
        WebSocket {
            message_size_limit: 65_536,
            write_timeout: GoDuration::from_secs(1),
            handler_prefix: "/connection/websocket".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Client {
    /// How connection tokens (and subscription tokens, unless `subscription_token` is
    /// enabled) are verified.
    pub token: Token,
    /// Keys of their own for subscription tokens.
    pub subscription_token: SubscriptionToken,
    /// Connect without a token, as an anonymous user.
    pub allow_anonymous_connect_without_token: bool,
    /// Refuse connection tokens without a user (close 3507).
    pub disallow_anonymous_connection_tokens: bool,
    /// Server ping interval (negative: no pings).
    pub ping_interval: GoDuration,
    /// Time a client has to answer a ping (negative: not checked); below `ping_interval`.
    pub pong_timeout: GoDuration,
    /// Bytes a connection may have queued before it is disconnected as slow (3008).
    pub queue_max_size: usize,
    /// Channels one connection may subscribe to (more → error 106).
    pub channel_limit: usize,
    /// Grace after a connection token expires before the connection is closed (3005).
    pub expired_close_delay: GoDuration,
    /// Grace after a subscription token expires before the subscription ends (2501).
    pub expired_sub_close_delay: GoDuration,
    /// Development only: anyone may connect, subscribe, publish and read history.
    pub insecure: bool,
    /// A server-side subscription of every user's connections to their personal channel.
    pub subscribe_to_user_personal_channel: PersonalChannel,
    /// A client that sends no connect command within this is closed (3502).
    pub stale_close_delay: GoDuration,
    /// Most publications one `history` call returns.
    pub history_max_publication_limit: usize,
    /// Most publications sent to a recovering subscriber; more missed → `recovered: false`.
    pub recovery_max_publication_limit: usize,
    /// Origins a WebSocket upgrade may come from (globs, `*` any); empty: only requests
    /// without an `Origin` header (not browsers), as Centrifugo.
    pub allowed_origins: Vec<String>,
    /// Connections the node holds at most (0: no limit); each shard takes its share.
    pub connection_limit: usize,
    /// Connections one user may hold on the node (0: no limit); past it close 3504.
    pub user_connection_limit: usize,
    /// New connections per second the node accepts at most (0: no limit); each shard its
    /// share.
    pub connection_rate_limit: usize,
    /// ringcast: commands per second one connection may send (0: no limit; bursts up to as
    /// many); past it a command is answered 111 (too many requests, temporary).
    pub command_rate_limit: usize,
}

impl Default for Client {
    fn default() -> Self {
        Client {
            token: Token::default(),
            subscription_token: SubscriptionToken::default(),
            allow_anonymous_connect_without_token: false,
            disallow_anonymous_connection_tokens: false,
            ping_interval: GoDuration::from_secs(25),
            pong_timeout: GoDuration::from_secs(8),
            queue_max_size: 1_048_576,
            channel_limit: 128,
            expired_close_delay: GoDuration::from_secs(25),
            expired_sub_close_delay: GoDuration::from_secs(25),
            insecure: false,
            subscribe_to_user_personal_channel: PersonalChannel::default(),
            stale_close_delay: GoDuration::from_secs(10),
            history_max_publication_limit: 300,
            recovery_max_publication_limit: 300,
            allowed_origins: Vec::new(),
            connection_limit: 0,
            user_connection_limit: 0,
            connection_rate_limit: 0,
            command_rate_limit: 0,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Token {
    /// HMAC secret for HS256/384/512 tokens. Empty: no HMAC tokens (for connection tokens
    /// with no other key configured: generated at start, dev mode).
    pub hmac_secret_key: String,
    /// The secret before a rotation: tokens it signed still verify (until
    /// `hmac_previous_secret_key_valid_until`, Unix seconds, when that is set).
    pub hmac_previous_secret_key: String,
    pub hmac_previous_secret_key_valid_until: i64,
    /// PEM public key for RS256/384/512 tokens.
    pub rsa_public_key: String,
    /// Keys by `kid` from this JWKS URL instead of the keys above (fetched off the shards,
    /// cached).
    pub jwks_public_endpoint: String,
    /// PEM public key for ES256/384 tokens.
    pub ecdsa_public_key: String,
    /// Tokens must carry this `aud` (empty: not checked).
    pub audience: String,
    /// Tokens must carry this `iss` (empty: not checked).
    pub issuer: String,
    /// Or an `aud` / `iss` matching this pattern (Go RE2 syntax; not with the exact one).
    pub audience_regex: String,
    pub issuer_regex: String,
    /// The claim holding the user id (empty: `sub`).
    pub user_id_claim: String,
}

impl Token {
    /// Whether any key is configured (a token can be verified at all).
    pub fn has_key(&self) -> bool {
        !(self.hmac_secret_key.is_empty()
            && self.rsa_public_key.is_empty()
            && self.ecdsa_public_key.is_empty()
            && self.jwks_public_endpoint.is_empty())
    }
}

/// `client.subscribe_to_user_personal_channel`: every connection of a user (not anonymous)
/// is subscribed to `#<user>`, or `<namespace>:#<user>` with `personal_channel_namespace`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PersonalChannel {
    pub enabled: bool,
    pub personal_channel_namespace: String,
    /// One connection per user: a new connection closes the user's others (3504).
    pub single_connection: bool,
}

impl Config {
    /// The personal channel of `user` (with `client.subscribe_to_user_personal_channel`).
    pub fn personal_channel(&self, user: &str) -> String {
        let ns = &self
            .client
            .subscribe_to_user_personal_channel
            .personal_channel_namespace;
        let boundary = &self.channel.user_boundary;
        if ns.is_empty() {
            format!("{boundary}{user}")
        } else {
            format!("{ns}{}{boundary}{user}", self.channel.namespace_boundary)
        }
    }
}

/// `client.subscription_token`: when enabled, subscription tokens are verified with these
/// keys instead of the connection token's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SubscriptionToken {
    pub enabled: bool,
    #[serde(flatten)]
    pub token: Token,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Node {
    /// The node's name in `/api/info` (empty: "ringcast").
    pub name: String,
}

/// ringcast: shards.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Shards {
    /// Shards (one pinned thread each); 0 = one per CPU in the affinity mask.
    pub count: usize,
}

/// ringcast: the history log's storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HistoryStorage {
    /// Directory for persistent data: `history/<partition>/` and the `LOCK` file.
    pub data_dir: PathBuf,
    /// Size of each history segment file in bytes.
    pub segment_size: u64,
    /// When appends are made durable.
    pub fsync: Fsync,
    /// Sync period with `fsync = interval`.
    pub fsync_interval: GoDuration,
}

impl Default for HistoryStorage {
    fn default() -> Self {
        HistoryStorage {
            data_dir: PathBuf::from("data"),
            segment_size: 64 << 20,
            fsync: Fsync::Interval,
            fsync_interval: GoDuration::from_millis(100),
        }
    }
}

/// History durability policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Fsync {
    /// The kernel writes pages back when it likes.
    Never,
    /// Every `fsync_interval`.
    Interval,
    /// A publication is delivered and acknowledged only once its record is on disk.
    Always,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            http_server: HttpServer::default(),
            http_api: HttpApi::default(),
            health: Endpoint::on("/health"),
            prometheus: Endpoint::on("/metrics"),
            websocket: WebSocket::default(),
            client: Client::default(),
            channel: ChannelSection::default(),
            node: Node::default(),
            shards: Shards::default(),
            history_storage: HistoryStorage::default(),
            user_status: UserStatus::default(),
            shutdown: Shutdown::default(),
            engine: Engine::default(),
        }
    }
}

/// A configuration error, worded for the person starting the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// A loaded configuration and what loading it had to say.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    /// One line per Centrifugo key (file or environment) that ringcast accepts but ignores.
    pub warnings: Vec<String>,
}

impl Config {
    /// Defaults, then the file (if any), then the environment, then the flags; validated.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Loaded, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Config::load_from(file, &env, overrides)
    }

    /// `load` with the environment given (tests).
    pub fn load_from(
        file: Option<&Path>,
        env: &[(String, String)],
        overrides: &Overrides,
    ) -> Result<Loaded, ConfigError> {
        let mut warnings = Vec::new();
        let mut tree = match file {
            Some(path) => source::read_file(path, &mut warnings)?,
            None => serde_json::Value::Object(Default::default()),
        };
        source::apply_env(&mut tree, env, &mut warnings)?;
        let mut config = source::deserialize(tree)?;
        config.fill_zero_defaults();
        overrides.apply(&mut config);
        config.validate()?;
        Ok(Loaded { config, warnings })
    }

    /// Parses one configuration text in `format` (`json`, `yaml` or `toml`), without the
    /// environment or flags; validated. Returns the warnings too.
    pub fn parse(text: &str, format: &str) -> Result<Loaded, ConfigError> {
        let mut warnings = Vec::new();
        let tree = source::parse_text(text, format, "configuration", &mut warnings)?;
        let mut config = source::deserialize(tree)?;
        config.fill_zero_defaults();
        config.validate()?;
        Ok(Loaded { config, warnings })
    }

    /// Centrifugo applies a key's default to any value left at zero, so `"channel_limit": 0`
    /// means 128 there; a configuration moved from Centrifugo means the same here. The port
    /// is the exception: 0 asks for any free port, from every source.
    fn fill_zero_defaults(&mut self) {
        let d = Config::default();
        let fill_usize = |v: &mut usize, d: usize| {
            if *v == 0 {
                *v = d
            }
        };
        let fill_duration = |v: &mut GoDuration, d: GoDuration| {
            if v.0 == 0 {
                *v = d
            }
        };
        let fill_string = |v: &mut String, d: &str| {
            if v.is_empty() {
                *v = d.into()
            }
        };
        fill_duration(
            &mut self.http_server.request_timeout,
            d.http_server.request_timeout,
        );
        let r = &mut self.engine.redis;
        fill_duration(&mut r.connect_timeout, d.engine.redis.connect_timeout);
        fill_duration(&mut r.io_timeout, d.engine.redis.io_timeout);
        fill_duration(&mut r.presence_ttl, d.engine.redis.presence_ttl);
        fill_string(&mut r.prefix, &d.engine.redis.prefix);
        if self.engine.kind.is_empty() {
            self.engine.kind = d.engine.kind.clone();
        }
        let c = &mut self.client;
        fill_duration(&mut c.ping_interval, d.client.ping_interval);
        fill_duration(&mut c.pong_timeout, d.client.pong_timeout);
        fill_duration(&mut c.expired_close_delay, d.client.expired_close_delay);
        fill_duration(
            &mut c.expired_sub_close_delay,
            d.client.expired_sub_close_delay,
        );
        fill_duration(&mut c.stale_close_delay, d.client.stale_close_delay);
        fill_usize(&mut c.queue_max_size, d.client.queue_max_size);
        fill_usize(&mut c.channel_limit, d.client.channel_limit);
        fill_usize(
            &mut c.history_max_publication_limit,
            d.client.history_max_publication_limit,
        );
        fill_usize(
            &mut c.recovery_max_publication_limit,
            d.client.recovery_max_publication_limit,
        );
        fill_usize(
            &mut self.websocket.message_size_limit,
            d.websocket.message_size_limit,
        );
        fill_duration(&mut self.websocket.write_timeout, d.websocket.write_timeout);
        fill_string(
            &mut self.websocket.handler_prefix,
            &d.websocket.handler_prefix,
        );
        fill_string(
            &mut self.http_api.handler_prefix,
            &d.http_api.handler_prefix,
        );
        fill_string(&mut self.health.handler_prefix, &d.health.handler_prefix);
        fill_string(
            &mut self.prometheus.handler_prefix,
            &d.prometheus.handler_prefix,
        );
        fill_usize(&mut self.channel.max_length, d.channel.max_length);
        fill_string(&mut self.channel.private_prefix, &d.channel.private_prefix);
        fill_string(
            &mut self.channel.namespace_boundary,
            &d.channel.namespace_boundary,
        );
    }

    /// The options of `channel`, or `None` if its namespace is not configured (error 102).
    pub fn channel_options(&self, channel: &str) -> Option<ChannelOptions> {
        self.channel.options(channel).copied()
    }

    /// Fills empty secrets with fresh random ones; returns true if it did (dev mode). The
    /// API key is left empty when the API is insecure or disabled.
    pub fn generate_missing_secrets(&mut self) -> Result<bool, crate::rand::RandomError> {
        let mut generated = false;
        let api_needs_key = !self.http_api.insecure && !self.http_api.disabled;
        let mut secrets = Vec::new();
        // Connection tokens need some key; an RSA or ECDSA key alone is a choice, not a gap.
        if !self.client.token.has_key() {
            secrets.push(&mut self.client.token.hmac_secret_key);
        }
        if api_needs_key {
            secrets.push(&mut self.http_api.key);
        }
        for secret in secrets {
            if secret.is_empty() {
                *secret = crate::rand::secret()?;
                generated = true;
            }
        }
        Ok(generated)
    }

    /// The effective configuration as JSON in the v6 layout (`checkconfig`).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

#[cfg(test)]
mod tests;
