//! The HTTP request head parser: any bytes, no panic; a parsed head is self-consistent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringcast::http::request::parse_head;

fuzz_target!(|data: &[u8]| {
    if let Some(head) = parse_head(data) {
        assert!(!head.method.is_empty());
        assert!(!head.path.contains('?'));
    }
});
