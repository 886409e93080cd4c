//! The WebSocket frame reader: any byte stream, fed in pieces of any size, never panics,
//! never returns a message over the limit, and never buffers more than one frame past it.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use ringcast::framing::websocket::{FrameReader, Incoming};

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let max = 16 + usize::from(split) * 4;
    let mut reader = FrameReader::default();
    let mut input = BytesMut::new();
    // The first byte also chooses how the stream is cut into reads.
    let step = usize::from(split % 13) + 1;
    for chunk in rest.chunks(step) {
        input.extend_from_slice(chunk);
        loop {
            match reader.next(&mut input, max) {
                Ok(Some(Incoming::Message(message))) => assert!(message.len() <= max),
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(violation) => {
                    assert!(matches!(violation.code, 1002 | 1007 | 1009));
                    return;
                }
            }
        }
    }
});
