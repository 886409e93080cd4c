//! The server API's request decoder: any method name and body, no panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringcast::api::codec::decode;

const METHODS: [&str; 6] = ["publish", "broadcast", "history", "history_remove", "info", "x"];

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let method = METHODS[usize::from(which) % METHODS.len()];
    let _ = decode(method, body);
});
