//! The JSON codec of the client protocol: `decode` turns one command line into a `Command`,
//! `encode` writes replies and pushes byte for byte the way Centrifugo does (key order `id`,
//! `error`, `push`, result; zero values omitted; raw JSON payloads embedded verbatim without
//! raw newlines).

pub mod decode;
pub mod encode;
