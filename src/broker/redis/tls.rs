//! TLS to Redis (`engine.redis.tls`, `rediss://` addresses): the rustls client configuration
//! made once from the settings, and `RedisStream`, a connection's socket with or without TLS,
//! which the command and pub/sub connections read and write alike. rustls's client connection
//! runs over the glommio socket: ciphertext moves whenever the connection is polled. The
//! handshake is completed at connect (`handshake`), before the first command, so no write
//! waits on it.
//!
//! Owns the client configuration and the per-connection TLS state. Imports `config`.

use std::fmt;
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore};
use rustls_pki_types::pem::PemObject;

use crate::config::pem::pem_data;
use crate::config::RedisTls;

/// How a connection speaks TLS: the configuration and the name the certificate must carry.
#[derive(Clone)]
pub struct ClientTls {
    pub config: Arc<ClientConfig>,
    pub server_name: ServerName<'static>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientTls({:?})", self.server_name)
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

impl ClientTls {
    /// The TLS of a connection to `host` with `settings` (`server_name` overrides `host`).
    pub fn new(settings: &RedisTls, host: &str) -> Result<ClientTls, String> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("engine.redis.tls: {e}"))?;
        let builder = if settings.insecure_skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider())))
        } else {
            let mut roots = RootCertStore::empty();
            if settings.server_ca_pem.is_empty() {
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            } else {
                let pem = pem_data(&settings.server_ca_pem)
                    .map_err(|e| format!("engine.redis.tls.server_ca_pem: {e}"))?;
                for cert in CertificateDer::pem_slice_iter(&pem) {
                    let cert = cert.map_err(|e| format!("engine.redis.tls.server_ca_pem: {e}"))?;
                    roots
                        .add(cert)
                        .map_err(|e| format!("engine.redis.tls.server_ca_pem: {e}"))?;
                }
            }
            builder.with_root_certificates(roots)
        };
        let config = if settings.cert_pem.is_empty() {
            builder.with_no_client_auth()
        } else {
            let cert = pem_data(&settings.cert_pem)
                .map_err(|e| format!("engine.redis.tls.cert_pem: {e}"))?;
            let key = pem_data(&settings.key_pem)
                .map_err(|e| format!("engine.redis.tls.key_pem: {e}"))?;
            let chain = CertificateDer::pem_slice_iter(&cert)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("engine.redis.tls.cert_pem: {e}"))?;
            let key = PrivateKeyDer::from_pem_slice(&key)
                .map_err(|e| format!("engine.redis.tls.key_pem: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("engine.redis.tls: {e}"))?
        };
        let name = if settings.server_name.is_empty() {
            host
        } else {
            &settings.server_name
        };
        let server_name = ServerName::try_from(name.to_owned())
            .map_err(|e| format!("engine.redis.tls: {name:?} is no server name: {e}"))?;
        Ok(ClientTls {
            config: Arc::new(config),
            server_name,
        })
    }
}

/// `insecure_skip_verify`: every certificate is taken (signatures still checked).
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A Redis connection's socket, plain or TLS.
pub enum RedisStream {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

/// rustls's client connection over a glommio socket.
pub struct TlsStream {
    socket: TcpStream,
    tls: ClientConnection,
}

impl RedisStream {
    /// `socket`, with TLS when `tls` says.
    pub fn new(socket: TcpStream, tls: Option<&ClientTls>) -> io::Result<RedisStream> {
        Ok(match tls {
            None => RedisStream::Plain(socket),
            Some(tls) => {
                let connection = ClientConnection::new(tls.config.clone(), tls.server_name.clone())
                    .map_err(io::Error::other)?;
                RedisStream::Tls(Box::new(TlsStream {
                    socket,
                    tls: connection,
                }))
            }
        })
    }

    /// The socket under it (for its timeouts).
    pub fn socket(&self) -> &TcpStream {
        match self {
            RedisStream::Plain(socket) => socket,
            RedisStream::Tls(tls) => &tls.socket,
        }
    }

    /// Completes the TLS handshake (nothing to do without TLS), so that later writes of any
    /// size are taken whole: rustls holds at most its buffer limit of plaintext before it.
    pub async fn handshake(&mut self) -> io::Result<()> {
        match self {
            RedisStream::Plain(_) => Ok(()),
            RedisStream::Tls(tls) => std::future::poll_fn(|cx| tls.poll_handshake(cx)).await,
        }
    }
}

/// The socket as blocking I/O for rustls, a pending poll turned into `WouldBlock`.
struct Polled<'a, 'b> {
    socket: &'a mut TcpStream,
    cx: &'a mut Context<'b>,
}

impl Read for Polled<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.socket).poll_read(self.cx, buf) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl Write for Polled<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.socket).poll_write(self.cx, buf) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl TlsStream {
    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Bounded by the handshake's messages: each pass sends or takes in some.
        loop {
            if let Poll::Ready(Err(e)) = self.poll_send(cx) {
                return Poll::Ready(Err(e));
            }
            if !self.tls.is_handshaking() {
                return self.poll_send(cx);
            }
            let mut socket = Polled {
                socket: &mut self.socket,
                cx,
            };
            match self.tls.read_tls(&mut socket) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into())),
                Ok(_) => {
                    if let Err(e) = self.tls.process_new_packets() {
                        let _ = self.poll_send(cx);
                        return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// Writes the ciphertext rustls holds; `Ready` once all of it is on the socket.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Bounded by rustls's buffer: each pass writes some of it or stops.
        while self.tls.wants_write() {
            let mut socket = Polled {
                socket: &mut self.socket,
                cx,
            };
            match self.tls.write_tls(&mut socket) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }

    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        // Bounded: each pass takes in ciphertext from the socket or returns.
        loop {
            match self.tls.reader().read(buf) {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            // The handshake's own records (and any output held back by it) go out first.
            if let Poll::Ready(Err(e)) = self.poll_send(cx) {
                return Poll::Ready(Err(e));
            }
            let mut socket = Polled {
                socket: &mut self.socket,
                cx,
            };
            match self.tls.read_tls(&mut socket) {
                Ok(0) => return Poll::Ready(Ok(0)),
                Ok(_) => {
                    if let Err(e) = self.tls.process_new_packets() {
                        // Tell Redis why before giving up.
                        let _ = self.poll_send(cx);
                        return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        // What rustls holds goes first, so its buffer stays bounded by one write.
        match self.poll_send(cx) {
            Poll::Ready(Ok(())) => {}
            other => return other.map(|r| r.map(|()| 0)),
        }
        let n = self.tls.writer().write(buf)?;
        // Sent now if the socket takes it; otherwise on the next write, read or flush.
        if let Poll::Ready(Err(e)) = self.poll_send(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }
}

impl AsyncRead for RedisStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            RedisStream::Plain(socket) => Pin::new(socket).poll_read(cx, buf),
            RedisStream::Tls(tls) => tls.poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for RedisStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            RedisStream::Plain(socket) => Pin::new(socket).poll_write(cx, buf),
            RedisStream::Tls(tls) => tls.poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            RedisStream::Plain(socket) => Pin::new(socket).poll_flush(cx),
            RedisStream::Tls(tls) => tls.poll_send(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            RedisStream::Plain(socket) => Pin::new(socket).poll_close(cx),
            RedisStream::Tls(tls) => {
                tls.tls.send_close_notify();
                match tls.poll_send(cx) {
                    Poll::Ready(_) => Pin::new(&mut tls.socket).poll_close(cx),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}
