//! WebSocket framing (RFC 6455) for the server side: header parsing comes from tungstenite
//! (`FrameHeader::parse`), the rest is the small state a server needs per connection:
//! unmasking, reassembly of fragmented messages, the message size limit (close 1009), UTF-8
//! validation of text (close 1007), control-frame rules and lengths (close 1002). Outgoing
//! frames are built here as `Bytes` so one encoded push can be shared by every receiver
//! (server frames are unmasked, hence identical for all).
//!
//! Owns no socket: the transport feeds received bytes in and writes the frames out.

use std::io::Cursor;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

use crate::limits::{WEBSOCKET_CLOSE_REASON_BYTES_MAX, WEBSOCKET_CONTROL_PAYLOAD_BYTES_MAX};

/// Close codes this module produces.
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
pub const CLOSE_INVALID_PAYLOAD: u16 = 1007;
pub const CLOSE_TOO_BIG: u16 = 1009;

/// The opcodes of the frames a server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Opcode {
    Text = 0x1,
    Close = 0x8,
    Pong = 0xA,
}

/// The kind of message being reassembled from fragments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Partial {
    /// No fragmented message in progress.
    #[default]
    None,
    Text,
    Binary,
}

/// One complete incoming message or control frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A complete text or binary message (JSON either way; text is valid UTF-8).
    Message(Bytes),
    Ping(Bytes),
    Pong,
    /// The peer closes; its close code if it sent one.
    Close(Option<u16>),
}

/// A protocol violation: close the connection with this code and reason.
#[derive(Debug, PartialEq, Eq)]
pub struct Violation {
    pub code: u16,
    pub reason: &'static str,
}

fn violation(code: u16, reason: &'static str) -> Violation {
    Violation { code, reason }
}

/// Per-connection reassembly state. Empty (no allocation) between messages.
#[derive(Debug, Default)]
pub struct FrameReader {
    /// Fragments of an unfinished message, unmasked.
    partial: Vec<u8>,
    /// What the unfinished message is.
    partial_kind: Partial,
}

impl FrameReader {
    /// True between messages (no fragment held).
    pub fn is_idle(&self) -> bool {
        self.partial_kind == Partial::None && self.partial.is_empty()
    }

    /// Takes the next complete message or control frame off the front of `input`, if `input`
    /// holds one; leaves incomplete frames in place. `max_message` bounds a whole message,
    /// fragments included.
    pub fn next(
        &mut self,
        input: &mut BytesMut,
        max_message: usize,
    ) -> Result<Option<Incoming>, Violation> {
        // Bounded: every iteration consumes one whole frame from `input` or returns.
        loop {
            let mut cursor = Cursor::new(&input[..]);
            let (header, length) = match FrameHeader::parse(&mut cursor) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => return Ok(None),
                Err(_) => return Err(violation(CLOSE_PROTOCOL_ERROR, "bad frame header")),
            };
            let header_len = cursor.position() as usize;
            // RFC 6455 §5.2: the most significant bit of a 64-bit length must be 0.
            if length > i64::MAX as u64 {
                return Err(violation(CLOSE_PROTOCOL_ERROR, "bad frame length"));
            }
            if header.rsv1 || header.rsv2 || header.rsv3 {
                return Err(violation(CLOSE_PROTOCOL_ERROR, "reserved bits set"));
            }
            let Some(mask) = header.mask else {
                return Err(violation(CLOSE_PROTOCOL_ERROR, "client frame not masked"));
            };
            let is_control = matches!(header.opcode, OpCode::Control(_));
            if is_control
                && (!header.is_final || length > WEBSOCKET_CONTROL_PAYLOAD_BYTES_MAX as u64)
            {
                return Err(violation(CLOSE_PROTOCOL_ERROR, "bad control frame"));
            }
            // Check the size before buffering the payload, so an oversized message is refused
            // from its header alone.
            if !is_control && length.saturating_add(self.partial.len() as u64) > max_message as u64
            {
                return Err(violation(CLOSE_TOO_BIG, "message too big"));
            }
            let length = length as usize;
            if input.len() < header_len + length {
                input.reserve(header_len + length - input.len());
                return Ok(None);
            }
            input.advance(header_len);
            let mut payload = input.split_to(length);
            unmask(&mut payload, mask);

            match header.opcode {
                OpCode::Control(Control::Ping) => {
                    return Ok(Some(Incoming::Ping(payload.freeze())))
                }
                OpCode::Control(Control::Pong) => return Ok(Some(Incoming::Pong)),
                OpCode::Control(Control::Close) => return close_code(&payload).map(Some),
                OpCode::Control(Control::Reserved(_)) | OpCode::Data(Data::Reserved(_)) => {
                    return Err(violation(CLOSE_PROTOCOL_ERROR, "unknown opcode"))
                }
                OpCode::Data(Data::Continue) => {
                    let is_text = match self.partial_kind {
                        Partial::None => {
                            return Err(violation(
                                CLOSE_PROTOCOL_ERROR,
                                "continuation without start",
                            ))
                        }
                        Partial::Text => true,
                        Partial::Binary => false,
                    };
                    self.partial.extend_from_slice(&payload);
                    if header.is_final {
                        self.partial_kind = Partial::None;
                        let message = Bytes::from(std::mem::take(&mut self.partial));
                        return finish(message, is_text).map(Some);
                    }
                }
                OpCode::Data(data) => {
                    if self.partial_kind != Partial::None {
                        return Err(violation(
                            CLOSE_PROTOCOL_ERROR,
                            "new message inside fragmented one",
                        ));
                    }
                    let is_text = data == Data::Text;
                    if header.is_final {
                        return finish(payload.freeze(), is_text).map(Some);
                    }
                    self.partial_kind = if is_text {
                        Partial::Text
                    } else {
                        Partial::Binary
                    };
                    self.partial.extend_from_slice(&payload);
                }
            }
        }
    }
}

fn finish(message: Bytes, is_text: bool) -> Result<Incoming, Violation> {
    if is_text && std::str::from_utf8(&message).is_err() {
        return Err(violation(
            CLOSE_INVALID_PAYLOAD,
            "invalid UTF-8 in text message",
        ));
    }
    Ok(Incoming::Message(message))
}

fn close_code(payload: &[u8]) -> Result<Incoming, Violation> {
    match payload {
        [] => Ok(Incoming::Close(None)),
        [_] => Err(violation(CLOSE_PROTOCOL_ERROR, "bad close frame")),
        [a, b, reason @ ..] => {
            if std::str::from_utf8(reason).is_err() {
                return Err(violation(
                    CLOSE_INVALID_PAYLOAD,
                    "invalid UTF-8 in close reason",
                ));
            }
            Ok(Incoming::Close(Some(u16::from_be_bytes([*a, *b]))))
        }
    }
}

fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= mask[i & 3];
    }
}

/// Length of the header of an unmasked server frame carrying `len` payload bytes.
pub fn header_len(len: usize) -> usize {
    match len {
        0..=125 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    }
}

/// Appends the header of an unmasked, final server frame with `opcode` and a payload of `len`
/// bytes.
pub fn put_header(out: &mut impl BufMut, opcode: Opcode, len: usize) {
    out.put_u8(0x80 | opcode as u8);
    match len {
        0..=125 => out.put_u8(len as u8),
        126..=0xFFFF => {
            out.put_u8(126);
            out.put_u16(len as u16);
        }
        _ => {
            out.put_u8(127);
            out.put_u64(len as u64);
        }
    }
}

/// A text frame carrying `payload`.
pub fn text_frame(payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(header_len(payload.len()) + payload.len());
    put_header(&mut out, Opcode::Text, payload.len());
    out.put_slice(payload);
    out.freeze()
}

/// A close frame with `code` and `reason` (cut to fit the bytes a close frame allows).
pub fn close_frame(code: u16, reason: &str) -> Bytes {
    let mut end = reason.len().min(WEBSOCKET_CLOSE_REASON_BYTES_MAX);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let reason = &reason.as_bytes()[..end];
    let mut out = BytesMut::with_capacity(4 + reason.len());
    put_header(&mut out, Opcode::Close, 2 + reason.len());
    out.put_u16(code);
    out.put_slice(reason);
    out.freeze()
}

/// A pong answering a ping with `payload`.
pub fn pong_frame(payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(2 + payload.len());
    put_header(&mut out, Opcode::Pong, payload.len());
    out.put_slice(payload);
    out.freeze()
}

/// The `Sec-WebSocket-Accept` value for a client's `Sec-WebSocket-Key`.
pub fn accept_key(key: &[u8]) -> String {
    tungstenite::handshake::derive_accept_key(key)
}

/// A client frame (final when `fin`), masked with `mask` when given: what a browser sends.
/// For tests, fuzz seeds and tools; the server never sends one. Unmasked frames are allowed
/// here because tests send bad frames on purpose.
pub fn client_frame(opcode: u8, fin: bool, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n @ 0..=125 => out.push(mask_bit | n as u8),
        n @ 126..=0xFFFF => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(mask) => {
            out.extend_from_slice(&mask);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame, as a browser would send it.
    fn masked(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        client_frame(opcode, fin, Some([0x12, 0x34, 0x56, 0x78]), payload)
    }

    fn read_all(bytes: &[u8], max: usize) -> Vec<Result<Incoming, Violation>> {
        let mut reader = FrameReader::default();
        let mut input = BytesMut::new();
        let mut out = Vec::new();
        // Feed one byte at a time: every split point must work.
        for &b in bytes {
            input.put_u8(b);
            loop {
                match reader.next(&mut input, max) {
                    Ok(Some(m)) => out.push(Ok(m)),
                    Ok(None) => break,
                    Err(v) => {
                        out.push(Err(v));
                        return out;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn fragmented_text_with_interleaved_ping_reassembles() {
        let mut bytes = masked(0x1, false, b"{\"id\":");
        bytes.extend(masked(0x9, true, b"hi"));
        bytes.extend(masked(0x0, false, b"1,"));
        bytes.extend(masked(0x0, true, b"\"x\":2}"));
        bytes.extend(masked(0x8, true, &[0x03, 0xE8]));
        let got = read_all(&bytes, 1024);
        assert_eq!(
            got,
            [
                Ok(Incoming::Ping(Bytes::from_static(b"hi"))),
                Ok(Incoming::Message(Bytes::from_static(b"{\"id\":1,\"x\":2}"))),
                Ok(Incoming::Close(Some(1000))),
            ]
        );
    }

    #[test]
    fn violations_get_their_close_codes() {
        let too_big = masked(0x1, true, &[b'a'; 200]);
        assert_eq!(
            read_all(&too_big, 100),
            [Err(violation(1009, "message too big"))]
        );
        // The limit covers the whole message, fragments included.
        let mut fragments = masked(0x1, false, &[b'a'; 60]);
        fragments.extend(masked(0x0, true, &[b'a'; 60]));
        assert_eq!(
            read_all(&fragments, 100)[0].as_ref().unwrap_err().code,
            1009
        );
        let bad_utf8 = masked(0x1, true, &[0xff, 0xfe]);
        assert_eq!(read_all(&bad_utf8, 100)[0].as_ref().unwrap_err().code, 1007);
        let mut unmasked = masked(0x1, true, b"x");
        unmasked[1] &= 0x7f;
        unmasked.truncate(2);
        unmasked.push(b'x');
        assert_eq!(read_all(&unmasked, 100)[0].as_ref().unwrap_err().code, 1002);
        let orphan = masked(0x0, true, b"x");
        assert_eq!(read_all(&orphan, 100)[0].as_ref().unwrap_err().code, 1002);
        let long_ping = masked(0x9, true, &[0; 126]);
        assert_eq!(
            read_all(&long_ping, 1000)[0].as_ref().unwrap_err().code,
            1002
        );
        // A 64-bit length with its most significant bit set is malformed, not merely big.
        let mut huge = vec![0x81, 0x80 | 127];
        huge.extend_from_slice(&(1u64 << 63).to_be_bytes());
        huge.extend_from_slice(&[0x12, 0x34, 0x56, 0x78]);
        assert_eq!(read_all(&huge, 1000)[0].as_ref().unwrap_err().code, 1002);
        let mut big = vec![0x81, 0x80 | 127];
        big.extend_from_slice(&(1u64 << 62).to_be_bytes());
        big.extend_from_slice(&[0x12, 0x34, 0x56, 0x78]);
        assert_eq!(read_all(&big, 1000)[0].as_ref().unwrap_err().code, 1009);
    }

    #[test]
    fn server_frames_have_the_right_headers() {
        assert_eq!(&text_frame(b"{}")[..], b"\x81\x02{}");
        let long = text_frame(&[b'x'; 300]);
        assert_eq!(&long[..4], &[0x81, 126, 1, 44]);
        assert_eq!(long.len(), 304);
        assert_eq!(&close_frame(3008, "slow")[..], b"\x88\x06\x0b\xc0slow");
        assert_eq!(close_frame(3000, &"é".repeat(100)).len(), 2 + 2 + 122);
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
