//! Randomness the server hands out: epochs (eight lowercase letters, Centrifugo's shape), client
//! ids (version-4 UUID bytes) and secrets (64 hex characters for dev mode and `genconfig`).
//!
//! Owns one ChaCha12 generator per thread, seeded from the OS random source (getrandom) on
//! first use; values handed out per connection (client ids, ping jitter) come from it, so a
//! connect costs no syscall for them. Epochs and secrets, rare and long-lived, read the OS
//! source each time. A failing OS random source is an error value: the caller decides whether
//! that stops it (start-up) or fails one request.

use std::cell::RefCell;
use std::fmt::Write as _;

use rand_chacha::ChaCha12Rng;
use rand_core::{RngCore, SeedableRng};

/// The OS random source failed (no entropy source: a broken sandbox or kernel).
#[derive(Debug)]
pub struct RandomError(pub getrandom::Error);

impl std::fmt::Display for RandomError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the OS random source failed: {}", self.0)
    }
}

impl std::error::Error for RandomError {}

/// `N` random bytes.
pub fn bytes<const N: usize>() -> Result<[u8; N], RandomError> {
    let mut out = [0u8; N];
    getrandom::getrandom(&mut out).map_err(RandomError)?;
    Ok(out)
}

thread_local! {
    /// This thread's generator; `None` until first used.
    static GENERATOR: RefCell<Option<ChaCha12Rng>> = const { RefCell::new(None) };
}

/// `N` random bytes from this thread's generator (a cryptographically secure stream, seeded
/// once from the OS source).
pub fn fast_bytes<const N: usize>() -> Result<[u8; N], RandomError> {
    GENERATOR.with(|cell| {
        let mut generator = cell.borrow_mut();
        let generator = match generator.as_mut() {
            Some(g) => g,
            None => generator.insert(ChaCha12Rng::from_seed(bytes::<32>()?)),
        };
        let mut out = [0u8; N];
        generator.fill_bytes(&mut out);
        Ok(out)
    })
}

/// Eight random lowercase letters: a stream epoch.
pub fn epoch() -> Result<String, RandomError> {
    Ok(letters(bytes::<8>()?))
}

/// `epoch` from this thread's generator: no system call, for a candidate made at every
/// Redis publish and read (used only when the channel has no epoch yet).
pub fn fast_epoch() -> Result<String, RandomError> {
    Ok(letters(fast_bytes::<8>()?))
}

fn letters(bytes: [u8; 8]) -> String {
    bytes.iter().map(|b| (b'a' + b % 26) as char).collect()
}

/// 16 random bytes with the version-4 UUID bits set.
pub fn uuid_v4() -> Result<[u8; 16], RandomError> {
    let mut b = fast_bytes::<16>()?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    Ok(b)
}

/// 32 random bytes as 64 hex characters.
pub fn secret() -> Result<String, RandomError> {
    Ok(bytes::<32>()?
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let e = epoch().unwrap();
        assert!(e.len() == 8 && e.bytes().all(|b| b.is_ascii_lowercase()));
        let s = secret().unwrap();
        assert!(s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(s, secret().unwrap());
        let u = uuid_v4().unwrap();
        assert_eq!(u[6] >> 4, 4);
        assert_eq!(u[8] >> 6, 2);
        assert_ne!(u, uuid_v4().unwrap());
    }

    #[test]
    fn threads_draw_different_streams() {
        let here = fast_bytes::<16>().unwrap();
        let there = std::thread::spawn(|| fast_bytes::<16>().unwrap())
            .join()
            .unwrap();
        assert_ne!(here, there);
        assert_ne!(here, fast_bytes::<16>().unwrap());
    }
}
