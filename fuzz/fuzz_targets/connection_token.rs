//! Token verification: any text (a JWT or not), as a connection token and as a subscription
//! token, no panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringcast::auth::Verifier;
use ringcast::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    thread_local! {
        static VERIFIER: Verifier = {
            let mut config = Config::default();
            config.client.token.hmac_secret_key = "fuzz-secret".into();
            Verifier::new(&config).expect("the default configuration's keys")
        };
    }
    VERIFIER.with(|verifier| {
        let _ = verifier.connect(text);
        let _ = verifier.subscribe(text);
    });
});
