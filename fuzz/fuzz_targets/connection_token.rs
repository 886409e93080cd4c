//! Connection token verification: any text (a JWT or not), no panic.
#![no_main]

use jsonwebtoken::DecodingKey;
use libfuzzer_sys::fuzz_target;
use ringcast::auth::token::verify_connect;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let key = DecodingKey::from_secret(b"fuzz-secret");
    let _ = verify_connect(text, &key);
});
