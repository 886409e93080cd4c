//! A real `redis-server` (Debian's package, installed on first use) on a free loopback port,
//! with no persistence, stopped by pid on drop; it can be stopped and started again on the
//! same port. `RedisCluster`: three of them made a Redis Cluster by `redis-cli --cluster
//! create`; `SharedRedis`: either, as the Redis engine's tests run on both.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    child: Option<Child>,
    pub address: SocketAddr,
    dir: tempfile::TempDir,
    /// Arguments beyond the defaults (a cluster node's).
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts a redis-server on a free port.
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// Starts a redis-server on a free port with `extra` arguments.
    pub fn start_with(extra: &[&str]) -> RedisServer {
        let port = super::haproxy::free_port();
        let mut server = RedisServer {
            child: None,
            address: format!("127.0.0.1:{port}").parse().unwrap(),
            dir: tempfile::tempdir().unwrap(),
            extra: extra.iter().map(|a| a.to_string()).collect(),
        };
        server.up();
        server
    }

    /// Starts it (again) on its port and waits until it answers PING.
    pub fn up(&mut self) {
        assert!(self.child.is_none(), "already running");
        let binary = super::debian_tool("redis-server", "--version", "redis-server");
        let child = Command::new(binary)
            .args(["--bind", "127.0.0.1", "--port"])
            .arg(self.address.port().to_string())
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--enable-debug-command",
                "yes",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        // Bounded by the deadline.
        while self.command(&["PING"]).as_deref() != Some("+PONG\r\n") {
            assert!(Instant::now() < deadline, "redis-server never answered");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops it (SIGKILL) and waits for it to go.
    pub fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// One command in database `db` over a fresh connection; its raw answer.
    pub fn command_in(&self, db: &str, args: &[&str]) -> Option<String> {
        let mut answers = self.exchange(&[&["SELECT", db], args])?;
        let answer = answers.pop()?;
        (answers.pop()?.as_str() == "+OK\r\n").then_some(answer)
    }

    /// One command over a fresh connection; its raw answer (`None` if it cannot connect).
    pub fn command(&self, args: &[&str]) -> Option<String> {
        self.exchange(&[args])?.pop()
    }

    /// Commands over one fresh connection, each answered before the next is sent; their raw
    /// answers (each read in one go: they are small).
    fn exchange(&self, commands: &[&[&str]]) -> Option<Vec<String>> {
        let mut stream = TcpStream::connect(self.address).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut answers = Vec::with_capacity(commands.len());
        for args in commands {
            let mut request = format!("*{}\r\n", args.len());
            for arg in *args {
                request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
            }
            stream.write_all(request.as_bytes()).ok()?;
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).ok()?;
            answers.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        Some(answers)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.down();
    }
}

/// A Redis Cluster of `masters` redis-servers, each with `replicas` replicas, made by
/// `redis-cli --cluster create` (Debian's redis-tools, which redis-server brings); ready once
/// every node says `cluster_state:ok`. A node is deemed failed after a second.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    /// Each node's TLS port, when the cluster speaks TLS (`start_tls`).
    pub tls_ports: Vec<u16>,
}

impl RedisCluster {
    pub fn start(masters: usize, replicas: usize) -> RedisCluster {
        RedisCluster::start_with(masters, replicas, &[])
    }

    /// A cluster whose nodes also serve TLS (clients, the cluster bus and replication) with
    /// the certificate, key and CA files given; clients need no certificate.
    pub fn start_tls(masters: usize, cert: &Path, key: &Path, ca: &Path) -> RedisCluster {
        let files = [cert, key, ca].map(|p| p.to_str().expect("a UTF-8 path").to_owned());
        let tls = [
            "--tls-cluster",
            "yes",
            "--tls-replication",
            "yes",
            "--tls-cert-file",
            &files[0],
            "--tls-key-file",
            &files[1],
            "--tls-ca-cert-file",
            &files[2],
            "--tls-auth-clients",
            "no",
        ];
        RedisCluster::start_with(masters, 0, &tls)
    }

    /// With `tls` arguments, each node gets a TLS port too.
    fn start_with(masters: usize, replicas: usize, tls: &[&str]) -> RedisCluster {
        let mut tls_ports = Vec::new();
        let nodes: Vec<RedisServer> = (0..masters * (1 + replicas))
            .map(|_| {
                // The bus port defaults to the port + 10000, which may be past 65535.
                let bus = super::haproxy::free_port().to_string();
                let mut args = vec![
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-port",
                    &bus,
                    "--cluster-node-timeout",
                    "1000",
                ];
                let tls_port = super::haproxy::free_port();
                let tls_port_text = tls_port.to_string();
                if !tls.is_empty() {
                    tls_ports.push(tls_port);
                    args.extend(["--tls-port", &tls_port_text]);
                    args.extend_from_slice(tls);
                }
                RedisServer::start_with(&args)
            })
            .collect();
        let cli = super::debian_tool("redis-cli", "--version", "redis-tools");
        let status = Command::new(cli)
            .args(["--cluster", "create"])
            .args(nodes.iter().map(|n| n.address.to_string()))
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdout(Stdio::null())
            .status()
            .expect("redis-cli runs");
        assert!(status.success(), "redis-cli --cluster create failed");
        let cluster = RedisCluster { nodes, tls_ports };
        let deadline = Instant::now() + Duration::from_secs(20);
        // Bounded by the deadline.
        while !cluster.nodes.iter().all(|n| {
            n.command(&["CLUSTER", "INFO"])
                .is_some_and(|info| info.contains("cluster_state:ok"))
        }) {
            assert!(Instant::now() < deadline, "the cluster never became ok");
            std::thread::sleep(Duration::from_millis(50));
        }
        cluster
    }

    /// The replica of the master on `port`.
    pub fn replica_of(&self, port: u16) -> &RedisServer {
        let of = format!(":{port}\r\n");
        self.nodes
            .iter()
            .find(|n| {
                n.command(&["ROLE"])
                    .is_some_and(|role| role.contains("$5\r\nslave\r\n") && role.contains(&of))
            })
            .expect("a replica of that master")
    }

    /// Stops (SIGKILL) the node on `port`.
    pub fn kill(&mut self, port: u16) {
        let node = self.nodes.iter_mut().find(|n| n.address.port() == port);
        node.expect("a node on that port").down();
    }

    /// The node serving `key`'s slot (the others answer MOVED).
    pub fn serving(&mut self, key: &str) -> &mut RedisServer {
        self.nodes
            .iter_mut()
            .find(|n| {
                n.command(&["EXISTS", key])
                    .is_some_and(|answer| answer.starts_with(':'))
            })
            .expect("one node serves every slot")
    }
}

/// The Redis the nodes of a test share.
pub enum SharedRedis {
    One(RedisServer),
    Cluster(RedisCluster),
}

impl SharedRedis {
    pub fn one() -> SharedRedis {
        SharedRedis::One(RedisServer::start())
    }

    /// Three masters.
    pub fn cluster() -> SharedRedis {
        SharedRedis::Cluster(RedisCluster::start(3, 0))
    }

    /// The engine setting that names it.
    pub fn setting(&self) -> String {
        match self {
            SharedRedis::One(server) => format!("engine.redis.address={}", server.address),
            SharedRedis::Cluster(cluster) => {
                let seeds: Vec<String> = cluster
                    .nodes
                    .iter()
                    .map(|n| n.address.to_string())
                    .collect();
                format!("engine.redis.cluster_address={}", seeds.join(" "))
            }
        }
    }

    /// The redis-server keeping `key`.
    pub fn serving(&mut self, key: &str) -> &mut RedisServer {
        match self {
            SharedRedis::One(server) => server,
            SharedRedis::Cluster(cluster) => cluster.serving(key),
        }
    }
}
