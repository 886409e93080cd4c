//! Test harness: starts the real `ringcast` binary on a free port and talks to it over real
//! sockets (a tiny HTTP/1.1 client and tungstenite's WebSocket client).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tungstenite::{Message, WebSocket};

pub mod haproxy;
pub mod redis;
pub mod sdk;
pub mod tls;
pub mod venv;

/// What a test client talks over: a TCP socket, or TLS over one.
pub trait ClientStream: Read + Write + Send {}

impl<T: Read + Write + Send> ClientStream for T {}

pub const API_KEY: &str = "test-api-key";
pub const SECRET: &str = "test-secret";

/// A directory for one test's data, removed on drop.
pub struct DataDir(pub PathBuf);

impl DataDir {
    pub fn new() -> DataDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "ringcast-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("temp dir is writable");
        DataDir(path)
    }

    pub fn path(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The setting tests get unless they give it: clients may subscribe to channels without a
/// namespace by themselves.
pub const OPEN_SUBSCRIBE: &str = "channel.without_namespace.allow_subscribe_for_client";

/// A running server process, killed on drop.
pub struct Server {
    child: Child,
    pub address: SocketAddr,
    /// The internal endpoints' listener, when `http_server.internal_port` gives them one.
    pub internal: Option<SocketAddr>,
    /// The data directory when the server made its own.
    _data: Option<DataDir>,
}

impl Server {
    /// Starts `ringcast serve` on 127.0.0.1, a free port, 2 shards and the test secrets, plus
    /// `extra` (and `OPEN_SUBSCRIBE` unless `extra` sets it), with a fresh data directory of
    /// its own. `extra` holds flags (`--shards`, `2`)
    /// and configuration settings `path=value` (`client.queue_max_size=65536`), which reach
    /// the server as the environment variables of their paths (`RINGCAST_CLIENT_...`).
    pub fn start(extra: &[&str]) -> Server {
        let data = DataDir::new();
        let mut server = Server::start_in(&data, extra);
        server._data = Some(data);
        server
    }

    /// `start` on an existing data directory (to restart over the same history).
    pub fn start_in(data: &DataDir, extra: &[&str]) -> Server {
        Server::start_with(data, None, extra)
    }

    /// `start_in` on a given port (0: any free one).
    pub fn start_with(data: &DataDir, port: Option<u16>, extra: &[&str]) -> Server {
        Server::start_env(data, port, extra, &[])
    }

    /// `start_with` plus environment variables for the server process.
    pub fn start_env(
        data: &DataDir,
        port: Option<u16>,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        Server::spawn(Server::command(data, port, extra, env))
    }

    /// The `ringcast serve` command `start_env` runs: 127.0.0.1, `port` (0: any free one),
    /// 2 shards unless `extra` says, the test secrets, `data`; settings in `extra` as the
    /// environment variables of their paths.
    pub fn command(
        data: &DataDir,
        port: Option<u16>,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Command {
        let port = port.unwrap_or(0).to_string();
        let (settings, extra): (Vec<&str>, Vec<&str>) = extra
            .iter()
            .partition(|a| !a.starts_with("--") && a.contains('='));
        let mut settings: Vec<(String, String)> = settings
            .iter()
            .filter_map(|s| s.split_once('='))
            .map(|(key, value)| (setting_env(key), value.to_owned()))
            .collect();
        // Most tests subscribe to channels without a namespace and without a token: allowed
        // here unless `extra` says otherwise (Centrifugo's default, which the access tests
        // state, is not).
        let open = setting_env(OPEN_SUBSCRIBE);
        if !settings.iter().any(|(key, _)| *key == open) {
            settings.push((open, "true".into()));
        }
        let mut args = vec![
            "serve",
            "--address",
            "127.0.0.1",
            "--port",
            &port,
            "--data-dir",
            data.path(),
            "--api-key",
            API_KEY,
            "--token-hmac-secret-key",
            SECRET,
        ];
        // `extra` may choose the shard count; the default is 2.
        if !extra.contains(&"--shards") {
            args.extend_from_slice(&["--shards", "2"]);
        }
        args.extend_from_slice(&extra);
        // A bench may time another build of the server (`RINGCAST_SERVER_BIN`).
        let binary = std::env::var_os("RINGCAST_SERVER_BIN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_ringcast").into());
        let mut command = Command::new(binary);
        command.args(&args).envs(settings).envs(env.iter().copied());
        command
    }

    /// Runs `command` (a ringcast server, possibly wrapped) and waits for its
    /// "listening on" line.
    pub fn spawn(command: Command) -> Server {
        Server::spawn_with_stderr(command, Stdio::inherit())
    }

    /// `spawn` with the server's stderr going to `stderr` (a file a test reads back).
    pub fn spawn_with_stderr(mut command: Command, stderr: Stdio) -> Server {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("the ringcast binary starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let (address, internal) = loop {
            let line = lines
                .next()
                .expect("server printed its address before exiting")
                .expect("stdout is readable");
            let after = |marker: &str| -> Option<SocketAddr> {
                let rest = line.split(marker).nth(1)?;
                rest.split_whitespace().next()?.parse().ok()
            };
            if let Some(address) = after("listening on ") {
                break (address, after("internal endpoints on "));
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server {
            child,
            address,
            internal,
            _data: None,
        }
    }

    /// Waits up to `timeout` for the server to exit by itself; how it ended if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Waits up to `timeout` for the server to exit by itself; its exit code if it did.
    pub fn exit_code(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Kills the server with SIGKILL and waits for it (a crash, not a shutdown).
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends the server `signal` (SIGTERM to drain, SIGHUP to reload, ...).
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid() as i32), signal)
            .expect("the server takes signals");
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/connection/websocket", self.address)
    }

    /// `POST /api/<method>` with the right key.
    pub fn api(&self, method: &str, body: &Value) -> Value {
        let (status, body) = self.http(
            "POST",
            &format!("/api/{method}"),
            &[("X-API-Key", API_KEY)],
            body.to_string().as_bytes(),
        );
        assert_eq!(status, 200, "api {method}: {body}");
        serde_json::from_str(&body).expect("api answers JSON")
    }

    /// One HTTP/1.1 request on a fresh connection (to the internal listener when there is
    /// one: the API and /metrics live there); returns status and body.
    pub fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, String) {
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(body);
        let response = raw_at(self.internal.unwrap_or(self.address), &bytes);
        parse_response(&response)
    }

    /// Sends raw bytes on a fresh connection and returns everything the server sends back
    /// until it closes (or 10 s pass).
    pub fn raw(&self, bytes: &[u8]) -> Vec<u8> {
        raw_at(self.address, bytes)
    }

    /// Waits until `metric` reads `value` (10 s at most; a state another shard changes
    /// arrives over a ring).
    #[allow(dead_code)]
    pub fn wait_metric(&self, name: &str, value: u64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let now = self.metric(name);
            if now == value {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "ringcast_{name} stayed {now}, expected {value}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn metric(&self, name: &str) -> u64 {
        let (status, text) = self.http("GET", "/metrics", &[], b"");
        assert_eq!(status, 200);
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("ringcast_{name} ")))
            .unwrap_or_else(|| panic!("metric {name} in {text}"))
            .parse()
            .unwrap()
    }
}

impl Server {
    /// `ringcast_refusals_total{reason="<reason>"}`.
    pub fn refusals(&self, reason: &str) -> u64 {
        let (_, body) = self.http("GET", "/metrics", &[], b"");
        let line = format!("ringcast_refusals_total{{reason=\"{reason}\"}} ");
        body.lines()
            .find_map(|l| l.strip_prefix(&line))
            .unwrap_or_else(|| panic!("no {line} in /metrics"))
            .parse()
            .unwrap()
    }

    /// A per-shard metric: `ringcast_shard_<name>{shard="i"}` for every shard, in order.
    pub fn shard_metric(&self, name: &str) -> Vec<u64> {
        let (status, text) = self.http("GET", "/metrics", &[], b"");
        assert_eq!(status, 200);
        let prefix = format!("ringcast_shard_{name}{{shard=\"");
        text.lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .map(|rest| rest.rsplit(' ').next().unwrap().parse().unwrap())
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn parse_response(response: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(response);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("HTTP status line in {text:?}"));
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

/// An HS256 connection token for `user` signed with the test secret.
pub fn token(user: &str, ttl_seconds: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = serde_json::json!({"sub": user, "exp": now + ttl_seconds});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// A WebSocket client speaking the Centrifugo JSON protocol.
pub struct Client {
    ws: WebSocket<Box<dyn ClientStream>>,
    next_id: u32,
    /// Pushes and replies received but not yet asked for.
    pending: std::collections::VecDeque<Value>,
}

/// How a connection ended, as the client saw it.
#[derive(Debug, PartialEq, Eq)]
pub enum Closed {
    Code(u16),
    NoCode,
}

impl Client {
    pub fn open(server: &Server) -> Client {
        Client::open_at(server.address)
    }

    /// A client of the server (or the load balancer) at `address`.
    pub fn open_at(address: SocketAddr) -> Client {
        let stream = TcpStream::connect(address).expect("connect");
        Client::over(stream)
    }

    /// A client over a connected `stream`.
    pub fn over(stream: TcpStream) -> Client {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let url = format!("ws://{}/connection/websocket", stream.peer_addr().unwrap());
        Client::over_stream(Box::new(stream), &url)
    }

    /// A client over any stream (TLS: `tls::TestCa::connect`), its upgrade request for
    /// `url`; the stream's read timeout is the caller's.
    pub fn over_stream(stream: Box<dyn ClientStream>, url: &str) -> Client {
        let (ws, _) = tungstenite::client::client(url, stream).expect("handshake");
        Client {
            ws,
            next_id: 1,
            pending: Default::default(),
        }
    }

    /// `open_at` and a connect as `user`.
    pub fn connect_at(address: SocketAddr, user: &str) -> Client {
        let mut client = Client::open_at(address);
        let reply = client.command("connect", serde_json::json!({"token": token(user, 3600)}));
        assert!(reply.get("connect").is_some(), "connect failed: {reply}");
        client
    }

    /// Opens and connects with a token for `user`; returns the connect result.
    pub fn connect(server: &Server, user: &str) -> (Client, Value) {
        let mut client = Client::open(server);
        let reply = client.command("connect", serde_json::json!({"token": token(user, 3600)}));
        assert!(reply.get("connect").is_some(), "connect failed: {reply}");
        (client, reply)
    }

    pub fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).expect("send");
    }

    /// Sends one command and returns its reply (pushes that arrive first are kept).
    pub fn command(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut command = serde_json::Map::new();
        command.insert("id".into(), id.into());
        command.insert(method.into(), params);
        self.send_text(&Value::Object(command).to_string());
        self.reply(id)
    }

    /// Waits for the reply with `id`.
    pub fn reply(&mut self, id: u32) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(at) = self
                .pending
                .iter()
                .position(|v| v.get("id").and_then(Value::as_u64) == Some(u64::from(id)))
            {
                return self.pending.remove(at).unwrap();
            }
            assert!(Instant::now() < deadline, "no reply to command {id}");
            match self.read_values() {
                Ok(values) => self.pending.extend(values),
                Err(closed) => panic!("connection closed ({closed:?}) waiting for reply {id}"),
            }
        }
    }

    pub fn subscribe(&mut self, channel: &str) {
        let reply = self.command("subscribe", serde_json::json!({"channel": channel}));
        assert!(
            reply.get("subscribe").is_some(),
            "subscribe {channel}: {reply}"
        );
    }

    /// Next publication push: (channel, data, offset).
    pub fn publication(&mut self) -> (String, Value, u64) {
        loop {
            let value = self
                .next_value()
                .expect("connection open while waiting for a publication");
            if let Some(push) = value.get("push") {
                if let Some(publication) = push.get("pub") {
                    return (
                        push["channel"].as_str().unwrap().to_owned(),
                        publication["data"].clone(),
                        publication["offset"].as_u64().unwrap_or(0),
                    );
                }
            }
        }
    }

    /// The next JSON value (reply, push or ping), answering pings on the way.
    pub fn next_value(&mut self) -> Result<Value, Closed> {
        // Bounded by the socket's read timeout.
        loop {
            if let Some(value) = self.pending.pop_front() {
                return Ok(value);
            }
            let values = self.read_values()?;
            self.pending.extend(values);
        }
    }

    fn read_values(&mut self) -> Result<Vec<Value>, Closed> {
        loop {
            match self.ws.read() {
                Ok(Message::Text(text)) => {
                    let mut values = Vec::new();
                    for line in text.split('\n') {
                        let value: Value = serde_json::from_str(line)
                            .unwrap_or_else(|e| panic!("server sent bad JSON {line:?}: {e}"));
                        if value.as_object().is_some_and(|o| o.is_empty()) {
                            // Server ping: answer with a pong (the server may be closing).
                            let _ = self.ws.send(Message::text("{}"));
                            continue;
                        }
                        values.push(value);
                    }
                    if !values.is_empty() {
                        return Ok(values);
                    }
                }
                Ok(Message::Close(frame)) => {
                    return Err(frame.map_or(Closed::NoCode, |f| Closed::Code(u16::from(f.code))))
                }
                Ok(_) => {}
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    return Err(Closed::NoCode)
                }
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    panic!("timed out waiting for the server")
                }
                Err(_) => return Err(Closed::NoCode),
            }
        }
    }

    /// Reads until the server closes; returns the close code.
    pub fn expect_close(&mut self) -> Closed {
        self.pending.clear();
        loop {
            match self.read_values() {
                Ok(_) => continue,
                Err(closed) => return closed,
            }
        }
    }
}

/// A raw, final client frame: `opcode`, masked or not (clients must mask; tests also send
/// bad frames on purpose).
pub fn frame(opcode: u8, masked: bool, payload: &[u8]) -> Vec<u8> {
    let mask = masked.then_some([1, 2, 3, 4]);
    ringcast::framing::websocket::client_frame(opcode, true, mask, payload)
}

/// The environment variable of a configuration path: `client.queue_max_size` →
/// `RINGCAST_CLIENT_QUEUE_MAX_SIZE`.
pub fn setting_env(path: &str) -> String {
    format!("RINGCAST_{}", path.replace('.', "_").to_ascii_uppercase())
}

/// At least `min` connected clients (users `<role>0`, `<role>1`, ...) such that every shard
/// holds at least one of them (the kernel spreads connections; per-shard metrics tell).
pub fn clients_on_every_shard(server: &Server, role: &str, min: usize) -> Vec<Client> {
    let before = server.shard_metric("connections");
    let mut clients = Vec::new();
    for i in 0..64 {
        clients.push(Client::connect(server, &format!("{role}{i}")).0);
        let now = server.shard_metric("connections");
        if clients.len() >= min && now.iter().zip(&before).all(|(n, b)| n > b) {
            return clients;
        }
    }
    panic!("64 connections never reached every shard");
}

/// A TCP proxy in front of a server, to cut clients off as a network would: `cut` closes
/// every proxied connection, and while `down` new connections are closed at once.
pub struct Proxy {
    pub address: SocketAddr,
    target: std::sync::Arc<std::sync::Mutex<SocketAddr>>,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    streams: std::sync::Arc<std::sync::Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    pub fn start(target: SocketAddr) -> Proxy {
        use std::sync::{atomic::AtomicBool, Arc, Mutex};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("proxy binds");
        let address = listener.local_addr().unwrap();
        let proxy = Proxy {
            address,
            target: Arc::new(Mutex::new(target)),
            up: Arc::new(AtomicBool::new(true)),
            streams: Arc::new(Mutex::new(Vec::new())),
        };
        let (target, up, streams) = (
            proxy.target.clone(),
            proxy.up.clone(),
            proxy.streams.clone(),
        );
        // Lives until the test process ends; each accepted client costs two threads.
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if !up.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let to = *target.lock().unwrap();
                let Ok(server) = TcpStream::connect(to) else {
                    continue;
                };
                let mut kept = streams.lock().unwrap();
                for (from, into) in [(&client, &server), (&server, &client)] {
                    let (mut from, mut into) =
                        (from.try_clone().unwrap(), into.try_clone().unwrap());
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut into);
                        let _ = into.shutdown(std::net::Shutdown::Both);
                    });
                }
                kept.push(client);
                kept.push(server);
            }
        });
        proxy
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/connection/websocket", self.address)
    }

    /// Closes every connection through the proxy and refuses new ones until `up`.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for stream in self.streams.lock().unwrap().drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Lets connections through again, to `target`.
    pub fn up(&self, target: SocketAddr) {
        *self.target.lock().unwrap() = target;
        self.up.store(true, Ordering::SeqCst);
    }
}

/// One keep-alive HTTP connection to the API, for loops that publish a lot (a connection per
/// request would fill the port range with TIME_WAIT sockets).
pub struct ApiConn {
    stream: BufReader<Box<dyn ClientStream>>,
}

impl ApiConn {
    pub fn open(address: SocketAddr) -> Option<ApiConn> {
        let stream = TcpStream::connect(address).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .ok()?;
        Some(ApiConn::over(Box::new(stream)))
    }

    /// An API connection over any stream (TLS: `tls::TestCa::connect`).
    pub fn over(stream: Box<dyn ClientStream>) -> ApiConn {
        ApiConn {
            stream: BufReader::new(stream),
        }
    }

    /// `POST /api/<method>`; `None` if the server is gone or did not answer 200 with JSON.
    pub fn post(&mut self, method: &str, body: &str) -> Option<Value> {
        let request = format!(
            "POST /api/{method} HTTP/1.1\r\nHost: test\r\nX-API-Key: {API_KEY}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.stream.get_mut().write_all(request.as_bytes()).ok()?;
        let mut status = String::new();
        self.stream.read_line(&mut status).ok()?;
        if !status.starts_with("HTTP/1.1 200") {
            return None;
        }
        let mut length = 0;
        loop {
            let mut line = String::new();
            if self.stream.read_line(&mut line).ok()? == 0 {
                return None;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().ok()?;
                }
            }
        }
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).ok()?;
        serde_json::from_slice(&body).ok()
    }
}

/// Sends raw bytes to `address` on a fresh connection and returns everything the server
/// sends back until it closes (or 10 s pass).
pub fn raw_at(address: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(bytes).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    response
}

/// The shard holding the connection whose client id is `id` (`ClientId::for_connection`:
/// the 14 bits after the UUID's variant).
pub fn shard_of(id: &str) -> usize {
    let client =
        ringcast::protocol::ClientId::parse(id).unwrap_or_else(|| panic!("a client id: {id:?}"));
    client.connection().0
}

/// A process's resident set size in KiB (`/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Reads from `stream` until `needle` has been seen `times` times; returns what it read.
pub fn read_until(stream: &mut impl Read, needle: &[u8], times: usize) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 16384];
    while seen.windows(needle.len()).filter(|w| *w == needle).count() < times {
        let n = stream.read(&mut buf).expect("server answers");
        assert!(n > 0, "server closed: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    seen
}

/// A raw WebSocket connection (no client library: the benches hold thousands) that sent
/// connect with `token` and got its reply.
pub fn raw_connect(address: SocketAddr, token: &str) -> TcpStream {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    connect_over(&mut stream, token);
    stream
}

/// Sends the upgrade request and a connect with `token` over `stream`, and reads the reply.
pub fn connect_over(stream: &mut (impl Read + Write), token: &str) {
    let mut request = b"GET /connection/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".to_vec();
    request.extend(frame(
        0x1,
        true,
        format!("{{\"id\":1,\"connect\":{{\"token\":\"{token}\"}}}}").as_bytes(),
    ));
    stream.write_all(&request).unwrap();
    read_until(stream, b"\"connect\":{", 1);
}

/// `binary` (a Debian package's tool: haproxy, promtool), installed with apt-get from
/// `package` on first use where the test runs as root; else a panic that says how to get it.
/// `probe` is an argument that makes the tool print its version and exit 0.
pub fn debian_tool(binary: &'static str, probe: &str, package: &str) -> &'static str {
    let runs = || {
        Command::new(binary)
            .arg(probe)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if runs() {
        return binary;
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    if root {
        // Bounded: an install, then an index update and the install again.
        for args in [
            &["install", "-y", "-q", "--no-install-recommends", package][..],
            &["update", "-q"][..],
            &["install", "-y", "-q", "--no-install-recommends", package][..],
        ] {
            let _ = Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status();
            if runs() {
                return binary;
            }
        }
    }
    panic!(
        "this test needs {binary} (Debian: apt-get install {package}; .ci/run installs it); \
         it could not be installed here"
    );
}

/// Waits (10 s at most) until the file at `log` (a server's stderr) holds `needle`; returns
/// its text.
pub fn wait_for_line(log: &std::path::Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(Instant::now() < deadline, "no {needle:?} in {text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
