//! The configuration reader (Centrifugo v6 layout in JSON, YAML or TOML): any text, no panic;
//! a configuration it accepts is valid.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringcast::config::Config;

const FORMATS: [&str; 3] = ["json", "yaml", "toml"];

fuzz_target!(|data: &[u8]| {
    let Some((&which, text)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    if let Ok(loaded) = Config::parse(text, FORMATS[usize::from(which) % FORMATS.len()]) {
        assert!(loaded.config.validate().is_ok());
    }
});
