//! An HTTP response and its encoding.

use std::io;

use futures_lite::{AsyncWrite, AsyncWriteExt};

/// Room for a head without extra headers (status line, content type, length, close).
const RESPONSE_HEAD_BYTES: usize = 128;

pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub extra_headers: &'static str,
}

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            content_type,
            body: body.into(),
            extra_headers: "",
        }
    }

    pub fn empty(status: u16) -> Self {
        Response::new(status, "text/plain", Vec::new())
    }

    pub fn json(body: impl Into<Vec<u8>>) -> Self {
        Response::new(200, "application/json", body)
    }

    pub fn text(status: u16, text: &'static str) -> Self {
        Response::new(status, "text/plain", text)
    }

    pub fn encode(&self, keep_alive: bool) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out, keep_alive);
        out
    }

    /// Appends the response to `out` (pipelined responses share one buffer and one write).
    pub fn encode_into(&self, out: &mut Vec<u8>, keep_alive: bool) {
        let reason = reason(self.status);
        let close = if keep_alive {
            ""
        } else {
            "Connection: close\r\n"
        };
        out.reserve(RESPONSE_HEAD_BYTES + self.extra_headers.len() + self.body.len());
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(itoa::Buffer::new().format(self.status).as_bytes());
        out.push(b' ');
        out.extend_from_slice(reason.as_bytes());
        out.extend_from_slice(b"\r\nContent-Type: ");
        out.extend_from_slice(self.content_type.as_bytes());
        out.extend_from_slice(b"\r\nContent-Length: ");
        out.extend_from_slice(itoa::Buffer::new().format(self.body.len()).as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(close.as_bytes());
        out.extend_from_slice(self.extra_headers.as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
    }

    pub async fn write(
        &self,
        stream: &mut (impl AsyncWrite + Unpin),
        keep_alive: bool,
    ) -> io::Result<()> {
        stream.write_all(&self.encode(keep_alive)).await
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_is_encoded_as_http_1_1() {
        let mut response = Response::json(&b"{}"[..]);
        response.extra_headers = "X-A: b\r\n";
        assert_eq!(
            response.encode(true),
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nX-A: b\r\n\r\n{}"
        );
        assert_eq!(
            Response::empty(404).encode(false),
            b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    }
}
