//! An HTTP response and its encoding.

use std::io;

use futures_lite::{AsyncWrite, AsyncWriteExt};

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
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}{}\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len(),
            if keep_alive {
                ""
            } else {
                "Connection: close\r\n"
            },
            self.extra_headers,
        )
        .into_bytes();
        out.extend_from_slice(&self.body);
        out
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
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        417 => "Expectation Failed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        _ => "Unknown",
    }
}
