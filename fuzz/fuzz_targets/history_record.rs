//! The history record codec as the start-up scan runs it: a segment's bytes after a valid
//! header, records parsed and verified one after the other. No panic, every record in
//! bounds, positions always move forward.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringcast::history::record::{header, parse_record};
use ringcast::limits::STREAM_OFFSET_MAX;

fuzz_target!(|data: &[u8]| {
    let mut bytes = vec![0u8; header::LEN];
    bytes.extend_from_slice(data);
    let mut pos = header::LEN;
    // Bounded: every valid record moves `pos` forward by at least its framing.
    while let Ok(Some(record)) = parse_record(&bytes, pos, true) {
        assert!(record.total >= 8 && pos + record.total <= bytes.len());
        assert!(record.offset >= 1 && record.offset <= STREAM_OFFSET_MAX);
        assert!(!record.channel.is_empty());
        pos += record.total;
    }
});
