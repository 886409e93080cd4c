//! Centrifugo's `PEMData`, the form of every PEM value in its TLS objects (`http_server.tls`,
//! `engine.redis.tls`, ...): read when a TLS configuration is made. Imports nothing.

use base64::Engine as _;

/// Centrifugo's `PEMData`: the PEM text itself, a path to a file holding it, or the PEM text
/// in base64.
pub fn pem_data(value: &str) -> Result<Vec<u8>, String> {
    if value.contains("-----BEGIN") {
        return Ok(value.as_bytes().to_vec());
    }
    // A path is not base64 of PEM text in practice, and a long base64 value is no path.
    if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(value.trim()) {
        if bytes.windows(10).any(|w| w == b"-----BEGIN") {
            return Ok(bytes);
        }
    }
    std::fs::read(value).map_err(|e| {
        format!("{value:?} is not PEM text nor base64 PEM, and reading it as a file: {e}")
    })
}
