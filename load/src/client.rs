//! A minimal WebSocket client for the Centrifugo JSON protocol over glommio: connect from a
//! chosen source address, upgrade, send masked text frames, read server frames (answering
//! pings). Just what a load generator needs; the bytes follow RFC 6455.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{FromRawFd, IntoRawFd};

use futures_lite::io::{ReadHalf, WriteHalf};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

/// `ws://host:port/path`, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsUrl {
    pub address: SocketAddr,
    pub host: String,
    pub path: String,
}

impl WsUrl {
    pub fn parse(url: &str) -> Result<WsUrl, String> {
        let rest = url
            .strip_prefix("ws://")
            .ok_or_else(|| format!("{url:?}: only ws:// URLs are supported"))?;
        let (host, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        let address = host
            .parse::<SocketAddr>()
            .map_err(|_| format!("{url:?}: the host must be IP:PORT (e.g. 127.0.0.1:8000)"))?;
        Ok(WsUrl {
            address,
            host: host.to_owned(),
            path: path.to_owned(),
        })
    }
}

/// A message from the server.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    Text(Vec<u8>),
    /// A WebSocket ping: answer with a pong carrying the same payload.
    Ping(Vec<u8>),
    Close(Option<u16>),
}

/// Largest message accepted from the server (a bigger length is an error, not an
/// allocation).
pub const MESSAGE_MAX: usize = 64 << 20;

/// The reading half of a connection: parses server frames.
pub struct WsReader {
    half: ReadHalf<TcpStream>,
    input: Vec<u8>,
    /// Start of unparsed input.
    at: usize,
    /// A fragmented message being reassembled.
    fragments: Option<Vec<u8>>,
}

/// The writing half: masks and sends client frames.
pub struct WsWriter {
    half: WriteHalf<TcpStream>,
    mask_state: u32,
}

/// Starts connecting a non-blocking TCP socket from `source` (port chosen by the kernel) to
/// `to`; the handshake completes in the background (the first write waits for it), so a
/// worker never blocks its other connections on one connect (a full accept queue on the
/// server would stall it). Binding the source address is what lets one machine open more
/// connections than one address's port range allows.
fn connect_from(source: Option<Ipv4Addr>, to: SocketAddr) -> io::Result<std::net::TcpStream> {
    use nix::sys::socket::{
        bind, connect, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn,
    };
    use std::os::fd::AsRawFd;
    let SocketAddr::V4(to) = to else {
        return Err(io::Error::other("only IPv4 targets are supported"));
    };
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    if let Some(source) = source {
        // Many connections from one source address: let ports be reused across targets, and
        // choose the port at connect, where the kernel knows the whole 4-tuple and may reuse a
        // TIME_WAIT port (tcp_tw_reuse); a port chosen at bind avoids every port still held
        // by an earlier run's TIME_WAIT, and the search slows as those fill the range.
        setsockopt(&fd, sockopt::ReuseAddr, &true)?;
        setsockopt(&fd, sockopt::IpBindAddressNoPort, &true)?;
        bind(
            fd.as_raw_fd(),
            &SockaddrIn::from(SocketAddrV4::new(source, 0)),
        )?;
    }
    match connect(fd.as_raw_fd(), &SockaddrIn::from(to)) {
        Ok(()) | Err(nix::errno::Errno::EINPROGRESS) => {}
        Err(e) => return Err(e.into()),
    }
    setsockopt(&fd, sockopt::TcpNoDelay, &true)?;
    Ok(std::net::TcpStream::from(fd))
}

/// Opens the connection and completes the WebSocket upgrade; returns its two halves.
pub async fn connect(url: &WsUrl, source: Option<Ipv4Addr>) -> io::Result<(WsReader, WsWriter)> {
    let std_stream = connect_from(source, url.address)?;
    // SAFETY: the descriptor comes from `into_raw_fd`, so this is its only owner.
    let mut stream = unsafe { TcpStream::from_raw_fd(std_stream.into_raw_fd()) };
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        url.path, url.host
    );
    stream.write_all(request.as_bytes()).await?;
    let (read, write) = futures_lite::io::split(stream);
    let mut reader = WsReader {
        half: read,
        input: Vec::with_capacity(4096),
        at: 0,
        fragments: None,
    };
    // Bounded: the head is at most 16 KiB or the server is not a WebSocket server.
    let end = loop {
        if let Some(end) = find(&reader.input, b"\r\n\r\n") {
            break end + 4;
        }
        if reader.input.len() > 16 << 10 || reader.fill().await? == 0 {
            return Err(io::Error::other("no WebSocket upgrade response"));
        }
    };
    if !reader.input.starts_with(b"HTTP/1.1 101") {
        let head = String::from_utf8_lossy(&reader.input[..end]).into_owned();
        return Err(io::Error::other(format!("upgrade refused: {head}")));
    }
    reader.at = end;
    let mut seed = [0u8; 4];
    let _ = getrandom::getrandom(&mut seed);
    let writer = WsWriter {
        half: write,
        mask_state: u32::from_ne_bytes(seed) | 1,
    };
    Ok((reader, writer))
}

impl WsReader {
    async fn fill(&mut self) -> io::Result<usize> {
        // Consumed bytes go first, so the buffer holds at most one partial frame plus a read.
        if self.at > 0 {
            self.input.drain(..self.at);
            self.at = 0;
        }
        let len = self.input.len();
        self.input.resize(len + (16 << 10), 0);
        let n = self.half.read(&mut self.input[len..]).await;
        self.input.truncate(len + *n.as_ref().unwrap_or(&0));
        n
    }

    /// The next text message (fragments reassembled), ping or close.
    pub async fn next(&mut self) -> io::Result<Incoming> {
        // Bounded by the socket: each round parses a frame or reads more bytes.
        loop {
            if let Some(frame) = parse_frame(&self.input[self.at..])? {
                let payload = &self.input[self.at + frame.start..self.at + frame.end];
                let mut message = None;
                match frame.opcode {
                    0x1 if frame.fin => message = Some(Incoming::Text(payload.to_vec())),
                    0x1 => self.fragments = Some(payload.to_vec()),
                    0x0 => {
                        let Some(mut fragments) = self.fragments.take() else {
                            return Err(io::Error::other("continuation without a first frame"));
                        };
                        if fragments.len() + payload.len() > MESSAGE_MAX {
                            return Err(io::Error::other("message too large"));
                        }
                        fragments.extend_from_slice(payload);
                        if frame.fin {
                            message = Some(Incoming::Text(fragments));
                        } else {
                            self.fragments = Some(fragments);
                        }
                    }
                    0x8 => {
                        let code = (payload.len() >= 2)
                            .then(|| u16::from_be_bytes([payload[0], payload[1]]));
                        message = Some(Incoming::Close(code));
                    }
                    0x9 => message = Some(Incoming::Ping(payload.to_vec())),
                    _ => {}
                }
                self.at += frame.end;
                if let Some(message) = message {
                    return Ok(message);
                }
                continue;
            }
            if self.fill().await? == 0 {
                return Ok(Incoming::Close(None));
            }
        }
    }
}

impl WsWriter {
    fn next_mask(&mut self) -> [u8; 4] {
        // xorshift32: masks need not be secret here, only varied.
        let mut x = self.mask_state;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.mask_state = x;
        x.to_ne_bytes()
    }

    /// Sends one masked frame with `opcode`.
    async fn send_frame(&mut self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        let mut frame = Vec::with_capacity(payload.len() + 14);
        frame.push(0x80 | opcode);
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 0xffff => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask = self.next_mask();
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.half.write_all(&frame).await
    }

    pub async fn send_text(&mut self, payload: &[u8]) -> io::Result<()> {
        self.send_frame(0x1, payload).await
    }

    pub async fn send_pong(&mut self, payload: &[u8]) -> io::Result<()> {
        self.send_frame(0xA, payload).await
    }

    pub async fn close(mut self) {
        let _ = self.send_frame(0x8, &1000u16.to_be_bytes()).await;
        let _ = self.half.close().await;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// One server frame's place in the input.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub start: usize,
    pub end: usize,
}

/// One complete unmasked server frame at the start of `input`, or `None` if more bytes are
/// needed; an error for a masked frame or a length over `MESSAGE_MAX`.
pub fn parse_frame(input: &[u8]) -> io::Result<Option<Frame>> {
    if input.len() < 2 {
        return Ok(None);
    }
    if input[1] & 0x80 != 0 {
        return Err(io::Error::other("the server sent a masked frame"));
    }
    let fin = input[0] & 0x80 != 0;
    let opcode = input[0] & 0x0f;
    let (len, header) = match input[1] & 0x7f {
        126 if input.len() >= 4 => (u64::from(u16::from_be_bytes([input[2], input[3]])), 4),
        127 if input.len() >= 10 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&input[2..10]);
            (u64::from_be_bytes(b), 10)
        }
        126 | 127 => return Ok(None),
        n => (u64::from(n), 2),
    };
    if len > MESSAGE_MAX as u64 {
        return Err(io::Error::other(format!(
            "frame of {len} bytes is too large"
        )));
    }
    let end = header + len as usize;
    if input.len() < end {
        return Ok(None);
    }
    Ok(Some(Frame {
        fin,
        opcode,
        start: header,
        end,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_address_host_and_path() {
        let url = WsUrl::parse("ws://127.0.0.1:8000/connection/websocket").unwrap();
        assert_eq!(url.address, "127.0.0.1:8000".parse().unwrap());
        assert_eq!(url.path, "/connection/websocket");
        assert_eq!(WsUrl::parse("ws://127.0.0.1:9").unwrap().path, "/");
        assert!(WsUrl::parse("wss://x:1/").is_err());
        assert!(WsUrl::parse("ws://localhost:8000/").is_err());
    }

    fn frame(fin: bool, opcode: u8, start: usize, end: usize) -> Option<Frame> {
        Some(Frame {
            fin,
            opcode,
            start,
            end,
        })
    }

    #[test]
    fn server_frames_parse_when_complete() {
        assert_eq!(parse_frame(b"\x81").unwrap(), None);
        assert_eq!(parse_frame(b"\x81\x02{}").unwrap(), frame(true, 1, 2, 4));
        assert_eq!(parse_frame(b"\x81\x02{").unwrap(), None);
        let mut long = vec![0x81, 126, 0x01, 0x00];
        long.extend(vec![b'x'; 256]);
        assert_eq!(parse_frame(&long).unwrap(), frame(true, 1, 4, 260));
        assert_eq!(parse_frame(&long[..100]).unwrap(), None);
        assert!(parse_frame(b"\x81\x82abcd").is_err(), "masked server frame");
        assert_eq!(
            parse_frame(b"\x88\x02\x03\xe8").unwrap(),
            frame(true, 8, 2, 4)
        );
        assert_eq!(parse_frame(b"\x01\x01a").unwrap(), frame(false, 1, 2, 3));
        let huge = [0x81, 127, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0];
        assert!(
            parse_frame(&huge).is_err(),
            "absurd lengths are errors, not overflows"
        );
        let mut eight = vec![0x82, 127];
        eight.extend_from_slice(&300u64.to_be_bytes());
        eight.extend(vec![0; 300]);
        assert_eq!(parse_frame(&eight).unwrap(), frame(true, 2, 10, 310));
    }
}
