//! A real `redis-server` (Debian's package, installed on first use) on a free loopback port,
//! with no persistence, stopped by pid on drop; it can be stopped and started again on the
//! same port.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    child: Option<Child>,
    pub address: SocketAddr,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts a redis-server on a free port.
    pub fn start() -> RedisServer {
        let port = super::haproxy::free_port();
        let mut server = RedisServer {
            child: None,
            address: format!("127.0.0.1:{port}").parse().unwrap(),
            dir: tempfile::tempdir().unwrap(),
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

    /// One command over a fresh connection; its raw answer (`None` if it cannot connect).
    pub fn command(&self, args: &[&str]) -> Option<String> {
        let mut stream = TcpStream::connect(self.address).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        stream.write_all(request.as_bytes()).ok()?;
        let mut buf = [0u8; 4096];
        let n = stream.read(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.down();
    }
}
