//! The upgrade handshake (RFC 6455 §4.2): checks of the request and the 101 response, with
//! the `centrifuge-json` subprotocol echoed when asked (Protobuf is refused until it exists).

use crate::framing::websocket::accept_key;
use crate::http::{Head, Response};

/// The 101 response for a valid upgrade request, or the error response.
pub fn response(head: &Head) -> Result<Vec<u8>, Response> {
    let bad = |why: &'static str| Response::text(400, why);
    if head.method != "GET" {
        return Err(Response::empty(405));
    }
    if !head.upgrade_websocket || !head.connection_upgrade {
        return Err(bad("Bad Request: not a WebSocket upgrade"));
    }
    if head.ws_version.as_deref() != Some("13") {
        let mut response = bad("Bad Request: unsupported WebSocket version");
        response.extra_headers = "Sec-WebSocket-Version: 13\r\n";
        return Err(response);
    }
    let Some(key) = head.ws_key.as_deref().filter(|k| valid_key(k)) else {
        return Err(bad("Bad Request: missing or malformed Sec-WebSocket-Key"));
    };
    let protocol = if head.ws_protocols.iter().any(|p| p == "centrifuge-json") {
        "Sec-WebSocket-Protocol: centrifuge-json\r\n"
    } else if !head.ws_protocols.is_empty()
        && head.ws_protocols.iter().all(|p| p == "centrifuge-protobuf")
    {
        return Err(bad("Bad Request: only the JSON protocol is supported"));
    } else {
        ""
    };
    Ok(format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n{protocol}\r\n",
        accept_key(key.as_bytes())
    )
    .into_bytes())
}

/// A key is the base64 form of 16 bytes: 22 characters and "==".
fn valid_key(key: &str) -> bool {
    key.len() == 24
        && key.ends_with("==")
        && key[..22]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}
