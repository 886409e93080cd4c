//! TLS for tests: a throwaway certificate authority (rcgen) that issues server certificates
//! for 127.0.0.1 and localhost, writes them where a server's `http_server.tls` can name them,
//! and opens client connections that trust only it (rustls).

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// A test CA and the files of the server certificate it issued last.
pub struct TestCa {
    params: CertificateParams,
    key: KeyPair,
    pub ca_pem: String,
    dir: tempfile::TempDir,
}

/// A TLS client connection, blocking.
pub type TlsClient = StreamOwned<ClientConnection, TcpStream>;

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let ca = params.self_signed(&key).expect("CA certificate");
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).expect("write CA");
        TestCa {
            params,
            key,
            ca_pem: ca.pem(),
            dir,
        }
    }

    /// The CA certificate's file (for NODE_EXTRA_CA_CERTS, SSL_CERT_FILE).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Issues a server certificate for 127.0.0.1 and localhost into `server.crt` and
    /// `server.key` (replacing earlier ones); returns the certificate (DER) and the paths.
    pub fn issue(&self) -> (Vec<u8>, PathBuf, PathBuf) {
        let key = KeyPair::generate().expect("server key");
        let params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".into()])
            .expect("server params");
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).expect("server certificate");
        let cert_path = self.dir.path().join("server.crt");
        let key_path = self.dir.path().join("server.key");
        std::fs::write(&cert_path, cert.pem()).expect("write certificate");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        (cert.der().to_vec(), cert_path, key_path)
    }

    /// The server settings for the files `issue` wrote.
    pub fn settings(cert: &Path, key: &Path) -> [String; 3] {
        [
            "http_server.tls.enabled=true".into(),
            format!("http_server.tls.cert_pem={}", cert.display()),
            format!("http_server.tls.key_pem={}", key.display()),
        ]
    }

    /// A server with TLS on its client port from a certificate this CA issues now, plus
    /// `extra` settings.
    pub fn server(&self, extra: &[&str]) -> super::Server {
        let (_, cert, key) = self.issue();
        let tls = TestCa::settings(&cert, &key);
        let mut settings: Vec<&str> = tls.iter().map(String::as_str).collect();
        settings.extend_from_slice(extra);
        super::Server::start(&settings)
    }

    /// A client configuration trusting this CA alone.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        let der = rustls::pki_types::pem::PemObject::from_pem_slice(self.ca_pem.as_bytes())
            .expect("CA PEM");
        roots.add(der).expect("CA root");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }

    /// A TLS connection to `address` that checks the server's certificate for 127.0.0.1,
    /// handshake done; with it, the certificate the server presented.
    pub fn connect(&self, address: SocketAddr) -> (TlsClient, Vec<u8>) {
        let tcp = TcpStream::connect(address).expect("connect");
        self.over(tcp)
    }

    /// `connect` over a connected socket (after a PROXY header, say).
    pub fn over(&self, tcp: TcpStream) -> (TlsClient, Vec<u8>) {
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let conn = ClientConnection::new(self.client_config(), name).expect("client");
        let mut tls = StreamOwned::new(conn, tcp);
        // Bounded: the handshake takes a few round trips, each within the read timeout.
        while tls.conn.is_handshaking() {
            tls.conn
                .complete_io(&mut tls.sock)
                .expect("TLS handshake with the server");
        }
        let presented: Vec<CertificateDer<'_>> = tls
            .conn
            .peer_certificates()
            .expect("server certificate")
            .to_vec();
        (tls, presented[0].to_vec())
    }
}
