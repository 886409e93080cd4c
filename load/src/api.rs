//! A blocking HTTP/1.1 keep-alive client for the server API (`POST <api>/<method>`), enough
//! for the coordinator's publish and broadcast calls.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// `http://host:port/prefix`, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiUrl {
    pub address: SocketAddr,
    pub host: String,
    pub prefix: String,
}

impl ApiUrl {
    pub fn parse(url: &str) -> Result<ApiUrl, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url:?}: only http:// API URLs are supported"))?;
        let (host, prefix) = match rest.find('/') {
            Some(at) => (&rest[..at], rest[at..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let address = host
            .parse()
            .map_err(|_| format!("{url:?}: the host must be IP:PORT"))?;
        Ok(ApiUrl {
            address,
            host: host.to_owned(),
            prefix: prefix.to_owned(),
        })
    }
}

pub struct ApiClient {
    url: ApiUrl,
    key: String,
    stream: Option<BufReader<TcpStream>>,
}

impl ApiClient {
    pub fn new(url: ApiUrl, key: &str) -> ApiClient {
        ApiClient {
            url,
            key: key.to_owned(),
            stream: None,
        }
    }

    /// `POST <prefix>/<method>` with `body`; the response body of a 200, else an error
    /// naming the status. Reconnects once if the kept-alive connection was closed.
    pub fn post(&mut self, method: &str, body: &[u8]) -> Result<Vec<u8>, String> {
        match self.try_post(method, body) {
            Ok(response) => Ok(response),
            Err(_) if self.stream.is_some() => {
                self.stream = None;
                self.try_post(method, body)
            }
            Err(e) => Err(e),
        }
    }

    fn try_post(&mut self, method: &str, body: &[u8]) -> Result<Vec<u8>, String> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(self.url.address)
                .map_err(|e| format!("API {}: {e}", self.url.address))?;
            let _ = stream.set_nodelay(true);
            let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
            self.stream = Some(BufReader::new(stream));
        }
        let stream = self.stream.as_mut().expect("connected above");
        let head = format!(
            "POST {}/{method} HTTP/1.1\r\nHost: {}\r\nX-API-Key: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.url.prefix,
            self.url.host,
            self.key,
            body.len()
        );
        let io = |e: std::io::Error| format!("API {method}: {e}");
        let inner = stream.get_mut();
        inner.write_all(head.as_bytes()).map_err(io)?;
        inner.write_all(body).map_err(io)?;
        let mut status = String::new();
        if stream.read_line(&mut status).map_err(io)? == 0 {
            return Err(format!("API {method}: connection closed"));
        }
        let mut length = 0usize;
        let mut close = false;
        loop {
            let mut line = String::new();
            if stream.read_line(&mut line).map_err(io)? == 0 {
                return Err(format!("API {method}: connection closed in the head"));
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = value
                        .parse()
                        .map_err(|_| format!("API {method}: bad Content-Length"))?;
                } else if name.eq_ignore_ascii_case("connection") {
                    close = value.eq_ignore_ascii_case("close");
                }
            }
        }
        let mut response = vec![0; length];
        stream.read_exact(&mut response).map_err(io)?;
        if close {
            self.stream = None;
        }
        if !status.starts_with("HTTP/1.1 200") {
            return Err(format!(
                "API {method}: {} {}",
                status.trim_end(),
                String::from_utf8_lossy(&response)
            ));
        }
        Ok(response)
    }
}

impl ApiClient {
    /// Posts every body of `bodies` to `method` on one keep-alive connection, with up to
    /// `window` requests written ahead of their responses (HTTP/1.1 pipelining); returns the
    /// response bodies in order. A server that answers one request at a time still works:
    /// the window then only saves the client's round trips.
    pub fn post_pipelined(
        &mut self,
        method: &str,
        bodies: &[Vec<u8>],
        window: usize,
    ) -> Result<Vec<Vec<u8>>, String> {
        let window = window.max(1);
        if self.stream.is_none() {
            let stream = TcpStream::connect(self.url.address)
                .map_err(|e| format!("API {}: {e}", self.url.address))?;
            let _ = stream.set_nodelay(true);
            let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
            self.stream = Some(BufReader::new(stream));
        }
        let stream = self.stream.as_mut().expect("connected above");
        let io = |e: std::io::Error| format!("API {method}: {e}");
        let request = |body: &[u8]| {
            let mut out = format!(
                "POST {}/{method} HTTP/1.1\r\nHost: {}\r\nX-API-Key: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                self.url.prefix,
                self.url.host,
                self.key,
                body.len()
            )
            .into_bytes();
            out.extend_from_slice(body);
            out
        };
        let mut responses = Vec::with_capacity(bodies.len());
        let mut written = 0;
        // Bounded by `bodies`: each round writes requests up to the window, then reads one.
        while responses.len() < bodies.len() {
            let ahead = (responses.len() + window).min(bodies.len());
            if written < ahead {
                let batch: Vec<u8> = bodies[written..ahead]
                    .iter()
                    .flat_map(|body| request(body))
                    .collect();
                stream.get_mut().write_all(&batch).map_err(io)?;
                written = ahead;
            }
            let (status, body) = read_response(stream).map_err(|e| format!("API {method}: {e}"))?;
            if !status.starts_with("HTTP/1.1 200") {
                self.stream = None;
                return Err(format!(
                    "API {method}: {} {}",
                    status.trim_end(),
                    String::from_utf8_lossy(&body)
                ));
            }
            responses.push(body);
        }
        Ok(responses)
    }
}

/// One response: its status line and body.
fn read_response(stream: &mut BufReader<TcpStream>) -> std::io::Result<(String, Vec<u8>)> {
    let closed = || std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed");
    let mut status = String::new();
    if stream.read_line(&mut status)? == 0 {
        return Err(closed());
    }
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if stream.read_line(&mut line)? == 0 {
            return Err(closed());
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, "bad Content-Length")
                })?;
            }
        }
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body)?;
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_urls_split() {
        let url = ApiUrl::parse("http://127.0.0.1:8000/api").unwrap();
        assert_eq!(url.address, "127.0.0.1:8000".parse().unwrap());
        assert_eq!(url.prefix, "/api");
        assert_eq!(
            ApiUrl::parse("http://127.0.0.1:1/api/").unwrap().prefix,
            "/api"
        );
        assert!(ApiUrl::parse("https://127.0.0.1:1/api").is_err());
    }
}
