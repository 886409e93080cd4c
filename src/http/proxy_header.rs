//! The PROXY protocol header (HAProxy's, versions 1 and 2) that an L4 load balancer sends
//! before the client's bytes, naming the client's real address. A pure parser: `parse` reads
//! what arrived so far and says whether it holds a whole header (and how long it is), needs
//! more, or is no header. With `http_server.proxy_protocol` on, a connection must start with
//! one (`transport::serve`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::limits::PROXY_HEADER_V2_BYTES_MAX;

/// Version 2's 12-byte signature.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Version 1's lines are at most 107 bytes with their CRLF.
const V1_BYTES_MAX: usize = 107;

/// What a header says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proxied {
    /// A client's connection relayed: its address as the balancer saw it.
    Client(SocketAddr),
    /// The balancer's own connection (v2 `LOCAL`, v1 `UNKNOWN`: a health check): the
    /// socket's address stands.
    Local,
}

/// What `parse` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// A whole header of `len` bytes.
    Header { proxied: Proxied, len: usize },
    /// A header's beginning: read more.
    Incomplete,
    /// Not a PROXY header, or a malformed one.
    Invalid(&'static str),
}

/// Reads a header at the start of `bytes`.
pub fn parse(bytes: &[u8]) -> Parsed {
    if bytes.is_empty() {
        return Parsed::Incomplete;
    }
    let signature = &V2_SIGNATURE[..bytes.len().min(V2_SIGNATURE.len())];
    if bytes.starts_with(signature) {
        return parse_v2(bytes);
    }
    let v1 = b"PROXY ";
    if bytes.len() < v1.len() {
        return if v1.starts_with(bytes) {
            Parsed::Incomplete
        } else {
            Parsed::Invalid("no PROXY header")
        };
    }
    if bytes.starts_with(v1) {
        return parse_v1(bytes);
    }
    Parsed::Invalid("no PROXY header")
}

/// `PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n` or `PROXY UNKNOWN ...\r\n`.
fn parse_v1(bytes: &[u8]) -> Parsed {
    let window = &bytes[..bytes.len().min(V1_BYTES_MAX)];
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        return if bytes.len() >= V1_BYTES_MAX {
            Parsed::Invalid("PROXY v1 line too long")
        } else {
            Parsed::Incomplete
        };
    };
    let len = end + 2;
    let Ok(line) = std::str::from_utf8(&bytes[..end]) else {
        return Parsed::Invalid("PROXY v1 line not ASCII");
    };
    let fields: Vec<&str> = line.split(' ').collect();
    match fields.as_slice() {
        ["PROXY", "UNKNOWN", ..] => Parsed::Header {
            proxied: Proxied::Local,
            len,
        },
        ["PROXY", family @ ("TCP4" | "TCP6"), source, _destination, port, _dport] => {
            let Ok(ip) = source.parse::<IpAddr>() else {
                return Parsed::Invalid("PROXY v1 source address");
            };
            if (*family == "TCP4") != ip.is_ipv4() {
                return Parsed::Invalid("PROXY v1 address family");
            }
            let Ok(port) = port.parse::<u16>() else {
                return Parsed::Invalid("PROXY v1 source port");
            };
            Parsed::Header {
                proxied: Proxied::Client(SocketAddr::new(ip, port)),
                len,
            }
        }
        _ => Parsed::Invalid("PROXY v1 fields"),
    }
}

/// The 16-byte header (signature, version and command, family and protocol, length), then the
/// addresses and any TLVs (skipped).
fn parse_v2(bytes: &[u8]) -> Parsed {
    if bytes.len() < 16 {
        return Parsed::Incomplete;
    }
    let version_command = bytes[12];
    if version_command >> 4 != 2 {
        return Parsed::Invalid("PROXY v2 version");
    }
    let body = usize::from(u16::from_be_bytes([bytes[14], bytes[15]]));
    let len = 16 + body;
    if len > PROXY_HEADER_V2_BYTES_MAX {
        return Parsed::Invalid("PROXY v2 header too long");
    }
    if bytes.len() < len {
        return Parsed::Incomplete;
    }
    let addresses = &bytes[16..len];
    match version_command & 0x0f {
        0 => {
            return Parsed::Header {
                proxied: Proxied::Local,
                len,
            }
        }
        1 => {}
        _ => return Parsed::Invalid("PROXY v2 command"),
    }
    let proxied = match bytes[13] >> 4 {
        // AF_INET: source, destination (4 bytes each), source port, destination port.
        1 if addresses.len() >= 12 => {
            let ip = Ipv4Addr::new(addresses[0], addresses[1], addresses[2], addresses[3]);
            let port = u16::from_be_bytes([addresses[8], addresses[9]]);
            Proxied::Client(SocketAddr::new(IpAddr::V4(ip), port))
        }
        // AF_INET6: 16 bytes each.
        2 if addresses.len() >= 36 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&addresses[..16]);
            let port = u16::from_be_bytes([addresses[32], addresses[33]]);
            Proxied::Client(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(octets)), port))
        }
        // AF_UNSPEC (or a unix socket): nothing to take; the socket's address stands.
        0 | 3 => Proxied::Local,
        _ => return Parsed::Invalid("PROXY v2 addresses"),
    };
    Parsed::Header { proxied, len }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, addresses: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(0x20 | command);
        out.push(family << 4 | 1);
        out.extend_from_slice(&(addresses.len() as u16).to_be_bytes());
        out.extend_from_slice(addresses);
        out
    }

    #[test]
    fn version_1() {
        let line = b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\nGET / HTTP/1.1\r\n";
        assert_eq!(
            parse(line),
            Parsed::Header {
                proxied: Proxied::Client("192.0.2.7:56324".parse().unwrap()),
                len: 45
            }
        );
        let six = b"PROXY TCP6 2001:db8::1 2001:db8::2 1000 443\r\n";
        assert!(matches!(
            parse(six),
            Parsed::Header {
                proxied: Proxied::Client(a),
                ..
            } if a.is_ipv6()
        ));
        assert!(matches!(
            parse(b"PROXY UNKNOWN\r\n"),
            Parsed::Header {
                proxied: Proxied::Local,
                len: 15
            }
        ));
        assert_eq!(parse(b"PROXY TCP4 192.0.2.7"), Parsed::Incomplete);
        assert_eq!(parse(b"PRO"), Parsed::Incomplete);
        assert!(matches!(parse(b"GET / HTTP/1.1\r\n"), Parsed::Invalid(_)));
        assert!(matches!(
            parse(b"PROXY TCP4 2001:db8::1 192.0.2.1 1 2\r\n"),
            Parsed::Invalid(_)
        ));
        assert!(matches!(
            parse(b"PROXY TCP4 192.0.2.7 198.51.100.1 99999 443\r\n"),
            Parsed::Invalid(_)
        ));
        assert!(matches!(parse(&[b'P'; 200]), Parsed::Invalid(_)));
    }

    #[test]
    fn version_2() {
        let mut addresses = vec![192, 0, 2, 7, 198, 51, 100, 1];
        addresses.extend_from_slice(&56324u16.to_be_bytes());
        addresses.extend_from_slice(&443u16.to_be_bytes());
        // A TLV after the addresses is skipped.
        addresses.extend_from_slice(&[0x05, 0, 2, 0xab, 0xcd]);
        let mut header = v2(1, 1, &addresses);
        let len = header.len();
        header.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(
            parse(&header),
            Parsed::Header {
                proxied: Proxied::Client("192.0.2.7:56324".parse().unwrap()),
                len
            }
        );
        for cut in 1..len {
            assert_eq!(parse(&header[..cut]), Parsed::Incomplete, "{cut}");
        }
        assert!(matches!(
            parse(&v2(0, 0, &[])),
            Parsed::Header {
                proxied: Proxied::Local,
                len: 16
            }
        ));
        assert!(matches!(parse(&v2(1, 1, &[1, 2, 3])), Parsed::Invalid(_)));
        assert!(matches!(parse(&v2(7, 1, &addresses)), Parsed::Invalid(_)));
        let mut too_long = v2(1, 1, &[]);
        too_long[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
        assert!(matches!(parse(&too_long), Parsed::Invalid(_)));
    }
}
