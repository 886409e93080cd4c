//! Authentication: connection tokens (`token`: verifying JWTs, signing them for `gentoken`)
//! and the server API key (`api_key`). Pure checks over values the edges hand in; imports
//! `config` and `clock`.

pub mod api_key;
pub mod token;
