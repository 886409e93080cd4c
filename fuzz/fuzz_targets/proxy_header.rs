//! The PROXY protocol header parser: any bytes, no panic; a whole header's length lies within
//! the bytes given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringcast::http::proxy_header::{parse, Parsed};

fuzz_target!(|data: &[u8]| {
    if let Parsed::Header { len, .. } = parse(data) {
        assert!(len <= data.len() && len > 0);
    }
});
