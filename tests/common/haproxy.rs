//! A real HAProxy (Debian's package, installed on first use) in TCP mode in front of ringcast
//! servers, started on a free loopback port and stopped on drop.

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running HAProxy, stopped on drop.
pub struct Haproxy {
    child: Child,
    /// Where clients connect.
    pub front: SocketAddr,
    _dir: tempfile::TempDir,
}

/// A free loopback port (free when asked; the caller binds it soon after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Haproxy {
    /// HAProxy with one frontend on a free port and a backend of `servers` (HAProxy `server`
    /// lines without the keyword, e.g. `a 127.0.0.1:8000 send-proxy-v2`) plus `options`
    /// (backend lines such as `option httpchk GET /health`); returns once it listens.
    pub fn start(servers: &[String], options: &[&str]) -> Haproxy {
        let binary = super::debian_tool("haproxy", "-v", "haproxy");
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("haproxy.cfg");
        let mut text = format!(
            "global\n  maxconn 1000\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n  timeout check 1s\n\
             frontend clients\n  bind 127.0.0.1:{port}\n  default_backend ringcast\n\
             backend ringcast\n  balance roundrobin\n"
        );
        for option in options {
            text.push_str(&format!("  {option}\n"));
        }
        for server in servers {
            text.push_str(&format!("  server {server}\n"));
        }
        std::fs::write(&config, text).unwrap();
        let child = Command::new(binary)
            .args(["-db", "-f"])
            .arg(&config)
            .stdout(Stdio::null())
            .spawn()
            .expect("haproxy starts");
        let front: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let haproxy = Haproxy {
            child,
            front,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(front).is_err() {
            assert!(Instant::now() < deadline, "haproxy never listened");
            std::thread::sleep(Duration::from_millis(20));
        }
        haproxy
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/connection/websocket", self.front)
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
