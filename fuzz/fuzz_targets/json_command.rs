//! The client protocol's command parser and the nesting check: any line, no panic; the check
//! is monotonic in its limit and never refuses what nests less deep than the line is long.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringcast::limits::JSON_DEPTH_MAX;
use ringcast::protocol::json::decode::{depth_within, parse_command};

fuzz_target!(|data: &[u8]| {
    let _ = parse_command(data);
    if depth_within(data, JSON_DEPTH_MAX) {
        assert!(depth_within(data, JSON_DEPTH_MAX + 1));
    }
    assert!(depth_within(data, data.len()));
});
