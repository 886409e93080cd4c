//! The bytes a delivery or a ping takes on each connection. The owner encodes a publication
//! once, in the form most connections take (JSON codec, WebSocket framing), into a `Delivery`
//! that also carries the transport-neutral publication (DESIGN invariant 4). On each shard,
//! `LocalFrames` hands every subscriber the frame for its (codec, framing) pair: the common
//! one, shared by reference count; another pair would be encoded here, once per shard and
//! publication, on first use.

use std::sync::Arc;

use bytes::Bytes;

use crate::framing::{websocket, Framing};
use crate::protocol::json::encode;
use crate::protocol::{Codec, Publication};
use crate::router::msg::{Delivery, Excluded};

/// The delivery of `publication` on `channel`, its common frame encoded.
pub fn delivery(
    channel: Arc<str>,
    publication: Publication,
    exclude: Option<Excluded>,
) -> Delivery {
    let mut json = Vec::with_capacity(64 + channel.len() + publication.data.len());
    encode::publication_push(&mut json, &channel, &publication);
    let mut frame = Vec::with_capacity(websocket::header_len(json.len()) + json.len());
    websocket::put_header(&mut frame, websocket::Opcode::Text, json.len());
    frame.extend_from_slice(&json);
    Delivery {
        channel,
        publication,
        frame: Bytes::from(frame),
        exclude,
    }
}

/// The frames of one delivery on one shard.
pub struct LocalFrames {
    common: Bytes,
}

impl LocalFrames {
    /// For a delivery encoded on this shard: its frame is shared as it is.
    pub fn local(delivery: &Delivery) -> Self {
        LocalFrames {
            common: delivery.frame.clone(),
        }
    }

    /// For a delivery from another shard: one core-local copy first, so the per-subscriber
    /// reference counting touches a counter in this core's cache instead of one shared with
    /// every other shard (a contended atomic per delivery otherwise).
    pub fn remote(delivery: &Delivery) -> Self {
        LocalFrames {
            common: Bytes::copy_from_slice(&delivery.frame),
        }
    }

    /// The frame for a connection with `codec` and `framing`.
    #[inline]
    pub fn get(&self, codec: Codec, framing: Framing) -> &Bytes {
        match (codec, framing) {
            (Codec::Json, Framing::WebSocket) => &self.common,
        }
    }
}

/// The server's ping in every framing, built once per shard.
pub struct PingFrames {
    websocket: Bytes,
}

impl Default for PingFrames {
    fn default() -> Self {
        PingFrames {
            websocket: Framing::WebSocket.message(encode::PING),
        }
    }
}

impl PingFrames {
    pub fn get(&self, framing: Framing) -> Bytes {
        match framing {
            Framing::WebSocket => self.websocket.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU64;

    #[test]
    fn the_common_frame_is_the_json_push_in_a_text_frame() {
        let publication = Publication {
            offset: NonZeroU64::new(1),
            data: Bytes::from_static(b"{}"),
            info: None,
            tags: None,
        };
        let d = delivery("a".into(), publication, None);
        assert_eq!(d.frame[0], 0x81);
        assert_eq!(
            &d.frame[2..],
            br#"{"push":{"channel":"a","pub":{"data":{},"offset":1}}}"#
        );
        let local = LocalFrames::local(&d);
        let remote = LocalFrames::remote(&d);
        let (a, b) = (
            local.get(Codec::Json, Framing::WebSocket),
            remote.get(Codec::Json, Framing::WebSocket),
        );
        assert_eq!(a, b);
        assert_eq!(
            a.as_ptr(),
            d.frame.as_ptr(),
            "local deliveries share the bytes"
        );
        assert_ne!(
            b.as_ptr(),
            d.frame.as_ptr(),
            "remote ones get a core-local copy"
        );
        assert_eq!(
            &PingFrames::default().get(Framing::WebSocket)[..],
            b"\x81\x02{}"
        );
    }
}
