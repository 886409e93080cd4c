//! The broker: what ringcast nodes share through, Redis (`redis`), never a cluster protocol of
//! our own. Only the engine uses it. Imports `limits`.

pub mod redis;
