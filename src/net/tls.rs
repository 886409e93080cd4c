//! TLS set-up for a listener: Centrifugo's TLS object (`http_server.tls`,
//! `http_server.internal_tls`) turned into a rustls server configuration whose certificate can
//! be read again (`ServerTls::reload`, on SIGHUP) without touching the connections that are
//! open: each handshake takes the certificate current when it starts.
//!
//! Owns the configuration and the current certificate. The certificate sits behind a lock the
//! handshakes read (never the message path: DESIGN invariant 1 is about that); a reload swaps
//! it. Imports `config`.

use std::fmt;
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::pem::pem_data;
use crate::config::Tls;

/// A listener's TLS: the configuration every handshake uses, and what reloads it.
pub struct ServerTls {
    pub config: Arc<rustls::ServerConfig>,
    certificate: Arc<CurrentCertificate>,
}

/// The certificate handshakes get, replaceable while the server runs.
struct CurrentCertificate {
    /// The key the settings came from (`http_server.tls`), for messages.
    key: &'static str,
    settings: Tls,
    current: RwLock<Arc<CertifiedKey>>,
}

impl fmt::Debug for CurrentCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CurrentCertificate({})", self.key)
    }
}

impl ResolvesServerCert for CurrentCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // A poisoned lock only means a reload panicked midway; the value is whole either way.
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        Some(current.clone())
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

impl ServerTls {
    /// Loads the certificate, key and client CA `settings` name; errors name `key`.
    pub fn load(key: &'static str, settings: &Tls) -> Result<ServerTls, String> {
        let provider = provider();
        let certified = certified_key(key, settings, &provider)?;
        let certificate = Arc::new(CurrentCertificate {
            key,
            settings: settings.clone(),
            current: RwLock::new(Arc::new(certified)),
        });
        let verifier = if settings.client_ca_pem.is_empty() {
            WebPkiClientVerifier::no_client_auth()
        } else {
            let pem = pem_data(&settings.client_ca_pem)
                .map_err(|e| format!("{key}.client_ca_pem: {e}"))?;
            let mut roots = rustls::RootCertStore::empty();
            // Bounded by the PEM text.
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| format!("{key}.client_ca_pem: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("{key}.client_ca_pem: {e}"))?;
            }
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| format!("{key}.client_ca_pem: {e}"))?
        };
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("{key}: {e}"))?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(certificate.clone());
        // WebSocket upgrades and the API are HTTP/1.1; a client offering h2 falls back.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(ServerTls {
            config: Arc::new(config),
            certificate,
        })
    }

    /// The configuration key this TLS comes from.
    pub fn key(&self) -> &'static str {
        self.certificate.key
    }

    /// Reads the certificate and key again; new handshakes use them, open connections keep
    /// theirs. On error the current ones stay.
    pub fn reload(&self) -> Result<(), String> {
        let c = &self.certificate;
        let certified = certified_key(c.key, &c.settings, &provider())?;
        *c.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(certified);
        Ok(())
    }
}

/// The certificate chain and key `settings` name, checked to belong together.
fn certified_key(
    key: &str,
    settings: &Tls,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, String> {
    let cert_pem = pem_data(&settings.cert_pem).map_err(|e| format!("{key}.cert_pem: {e}"))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{key}.cert_pem: {e}"))?;
    if chain.is_empty() {
        return Err(format!("{key}.cert_pem: no CERTIFICATE in it"));
    }
    let key_pem = pem_data(&settings.key_pem).map_err(|e| format!("{key}.key_pem: {e}"))?;
    let private =
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| format!("{key}.key_pem: {e}"))?;
    CertifiedKey::from_der(chain, private, provider)
        .map_err(|e| format!("{key}: the certificate and key do not go together: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn certificate(name: &str) -> (String, String) {
        let cert = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        (cert.cert.pem(), cert.signing_key.serialize_pem())
    }

    fn settings(cert_pem: String, key_pem: String) -> Tls {
        Tls {
            enabled: true,
            cert_pem,
            key_pem,
            client_ca_pem: String::new(),
        }
    }

    fn served(tls: &ServerTls) -> Vec<u8> {
        let current = tls.certificate.current.read().unwrap().clone();
        current.cert[0].to_vec()
    }

    /// PEM text, a file and base64 all load; a reload picks up a replaced file; a broken
    /// file on reload keeps the certificate served.
    #[test]
    fn loads_every_pem_form_and_reloads_from_files() {
        let (cert, key) = certificate("one.test");
        ServerTls::load("http_server.tls", &settings(cert.clone(), key.clone())).unwrap();
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        ServerTls::load("http_server.tls", &settings(b64(&cert), b64(&key))).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let cert_path = dir.path().join("server.crt");
        let key_path = dir.path().join("server.key");
        std::fs::write(&cert_path, &cert).unwrap();
        std::fs::write(&key_path, &key).unwrap();
        let from_files = settings(
            cert_path.display().to_string(),
            key_path.display().to_string(),
        );
        let tls = ServerTls::load("http_server.tls", &from_files).unwrap();
        let first = served(&tls);

        let (cert2, key2) = certificate("two.test");
        std::fs::write(&cert_path, &cert2).unwrap();
        std::fs::write(&key_path, &key2).unwrap();
        tls.reload().unwrap();
        let second = served(&tls);
        assert_ne!(first, second, "the reload serves the new certificate");

        std::fs::write(&key_path, "not a key").unwrap();
        let e = tls.reload().unwrap_err();
        assert!(e.contains("http_server.tls.key_pem"), "{e}");
        assert_eq!(
            served(&tls),
            second,
            "a failed reload keeps the certificate"
        );
    }

    #[test]
    fn a_key_of_another_certificate_is_refused_by_name() {
        let (cert, _) = certificate("one.test");
        let (_, key) = certificate("two.test");
        let e = ServerTls::load("http_server.tls", &settings(cert, key))
            .err()
            .unwrap();
        assert!(e.contains("do not go together"), "{e}");
        let e = ServerTls::load(
            "http_server.tls",
            &settings("/no/such/file.crt".into(), "x".into()),
        )
        .err()
        .unwrap();
        assert!(e.contains("http_server.tls.cert_pem"), "{e}");
    }
}
