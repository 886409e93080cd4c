//! TLS records over buffers the caller owns: `TlsRecords` wraps rustls's unbuffered server
//! connection, which keeps the keys and the handshake state but no I/O buffer of its own. So
//! an idle TLS connection costs its keys, not the 4 KiB read buffer (and more) a buffered
//! rustls connection keeps for its whole life (DESIGN invariant 6): the ciphertext not yet a
//! whole record lives with the connection's other partial input, and records are decrypted in
//! place and sealed into the caller's write buffer.
//!
//! Pure: no socket. The HTTP phase (`http::stream`) and the WebSocket reactor
//! (`transport::websocket`) drive the same records.

use std::sync::Arc;

use bytes::{Buf, BytesMut};
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};

use crate::limits::TLS_STEPS_MAX;

/// The most plaintext one record carries (RFC 8446 §5.1).
const TLS_RECORD_PLAINTEXT_MAX: usize = 16 << 10;

/// Where the connection stands after its input was processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The handshake needs more of the peer's bytes.
    Handshaking,
    /// Application data flows both ways.
    Open,
    /// The peer sent its close_notify: no more input will come.
    PeerClosed,
}

/// Why the records cannot go on: the peer broke the protocol (or the handshake failed), or
/// an operation was asked in the wrong state.
#[derive(Debug)]
pub struct TlsError(pub String);

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TLS: {}", self.0)
    }
}

impl std::error::Error for TlsError {}

impl From<rustls::Error> for TlsError {
    fn from(e: rustls::Error) -> Self {
        TlsError(e.to_string())
    }
}

/// One server-side TLS connection's state: keys, sequence numbers, the handshake.
pub struct TlsRecords {
    conn: UnbufferedServerConnection,
    status: Status,
}

/// What one step of the state machine left to do.
enum Step {
    /// Go on processing.
    Again,
    /// Stop with this status.
    Stop(Status),
}

impl TlsRecords {
    pub fn new(config: Arc<rustls::ServerConfig>) -> Result<Self, TlsError> {
        Ok(TlsRecords {
            conn: UnbufferedServerConnection::new(config)?,
            status: Status::Handshaking,
        })
    }

    pub fn status(&self) -> Status {
        self.status
    }

    /// Processes the ciphertext in `incoming`, removing every whole record: decrypted
    /// application data is appended to `plaintext`, and what the protocol sends in answer
    /// (handshake flights, tickets, key updates, alerts) to `outgoing`, which the caller must
    /// send before anything it seals later. A record cut short stays in `incoming`.
    pub fn read(
        &mut self,
        incoming: &mut BytesMut,
        plaintext: &mut BytesMut,
        outgoing: &mut Vec<u8>,
    ) -> Result<Status, TlsError> {
        // Bounded: each step consumes a record, encodes a message or stops; a stuck state
        // machine ends at the limit instead of spinning.
        for _ in 0..TLS_STEPS_MAX {
            let UnbufferedStatus { mut discard, state } =
                self.conn.process_tls_records(&mut incoming[..]);
            let step = match state {
                Err(e) => {
                    // What rustls queued to tell the peer (an alert) goes out first.
                    incoming.advance(discard.min(incoming.len()));
                    let _ = self.flush_alerts(outgoing);
                    return Err(e.into());
                }
                Ok(ConnectionState::ReadTraffic(mut records)) => {
                    // Bounded by the records in `incoming`.
                    while let Some(record) = records.next_record() {
                        let record = record?;
                        discard += record.discard;
                        plaintext.extend_from_slice(record.payload);
                    }
                    Step::Again
                }
                Ok(ConnectionState::EncodeTlsData(mut data)) => {
                    encode(outgoing, |out| data.encode(out))?;
                    Step::Again
                }
                Ok(ConnectionState::TransmitTlsData(data)) => {
                    // `outgoing` is sent in order before anything sealed after it.
                    data.done();
                    Step::Again
                }
                Ok(ConnectionState::BlockedHandshake) => Step::Stop(Status::Handshaking),
                Ok(ConnectionState::WriteTraffic(_)) => Step::Stop(Status::Open),
                Ok(ConnectionState::PeerClosed | ConnectionState::Closed) => {
                    Step::Stop(Status::PeerClosed)
                }
                Ok(_) => return Err(TlsError("unexpected early data".into())),
            };
            incoming.advance(discard);
            if let Step::Stop(status) = step {
                self.status = status;
                return Ok(status);
            }
        }
        Err(TlsError("the TLS state machine did not settle".into()))
    }

    /// Seals `plaintext` into records appended to `outgoing` (with anything the protocol had
    /// pending before them). Only once the handshake is done.
    pub fn seal(&mut self, plaintext: &[u8], outgoing: &mut Vec<u8>) -> Result<(), TlsError> {
        self.with_writer(outgoing, |writer, out| {
            // A record's overhead (header, tag, content type) is under 64 bytes.
            let hint = plaintext.len() + 64 * (plaintext.len() / TLS_RECORD_PLAINTEXT_MAX + 1);
            encrypt(out, hint, |buf| writer.encrypt(plaintext, buf))
        })
    }

    /// Appends the close_notify alert to `outgoing`.
    pub fn close_notify(&mut self, outgoing: &mut Vec<u8>) -> Result<(), TlsError> {
        self.with_writer(outgoing, |writer, out| {
            encrypt(out, 64, |buf| writer.queue_close_notify(buf))
        })
    }

    /// Encodes what rustls has queued (an alert after a failure), as far as it can.
    fn flush_alerts(&mut self, outgoing: &mut Vec<u8>) -> Result<(), TlsError> {
        for _ in 0..TLS_STEPS_MAX {
            match self.conn.process_tls_records(&mut []).state {
                Ok(ConnectionState::EncodeTlsData(mut data)) => {
                    encode(outgoing, |out| data.encode(out))?
                }
                Ok(ConnectionState::TransmitTlsData(data)) => data.done(),
                _ => return Ok(()),
            }
        }
        Ok(())
    }

    /// Runs `write` in the state that allows sealing application data, after encoding what
    /// the protocol has pending.
    fn with_writer(
        &mut self,
        outgoing: &mut Vec<u8>,
        write: impl FnOnce(
            &mut rustls::unbuffered::WriteTraffic<'_, rustls::server::ServerConnectionData>,
            &mut Vec<u8>,
        ) -> Result<(), TlsError>,
    ) -> Result<(), TlsError> {
        // Bounded: pending messages are encoded one per step.
        for _ in 0..TLS_STEPS_MAX {
            match self.conn.process_tls_records(&mut []).state? {
                ConnectionState::EncodeTlsData(mut data) => {
                    encode(outgoing, |out| data.encode(out))?
                }
                ConnectionState::TransmitTlsData(mut data) => {
                    if let Some(mut writer) = data.may_encrypt_app_data() {
                        return write(&mut writer, outgoing);
                    }
                    data.done();
                }
                ConnectionState::WriteTraffic(mut writer) => return write(&mut writer, outgoing),
                ConnectionState::PeerClosed => {
                    // Half-closed: we may still send (our close frame, then close_notify).
                    return Err(TlsError("the peer closed".into()));
                }
                _ => return Err(TlsError("not ready to send application data".into())),
            }
        }
        Err(TlsError("the TLS state machine did not settle".into()))
    }
}

/// Runs an encoder that writes into a slice, growing `out`'s tail until it fits.
fn encode(
    out: &mut Vec<u8>,
    f: impl FnMut(&mut [u8]) -> Result<usize, EncodeError>,
) -> Result<(), TlsError> {
    grow_into(out, 512, f, |e| match e {
        EncodeError::InsufficientSize(e) => Some(e.required_size),
        _ => None,
    })
}

/// Like `encode`, for sealing application data (`want`: the expected size).
fn encrypt(
    out: &mut Vec<u8>,
    want: usize,
    f: impl FnMut(&mut [u8]) -> Result<usize, EncryptError>,
) -> Result<(), TlsError> {
    grow_into(out, want, f, |e| match e {
        EncryptError::InsufficientSize(e) => Some(e.required_size),
        _ => None,
    })
}

/// Runs `f` on `want` more bytes at `out`'s end, again with the size an error asks for
/// (`required`); keeps what it wrote.
fn grow_into<E: std::fmt::Display>(
    out: &mut Vec<u8>,
    mut want: usize,
    mut f: impl FnMut(&mut [u8]) -> Result<usize, E>,
    required: fn(&E) -> Option<usize>,
) -> Result<(), TlsError> {
    // Bounded: the second try has the size the first asked for.
    for _ in 0..2 {
        let start = out.len();
        out.resize(start + want, 0);
        match f(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(e) => {
                out.truncate(start);
                match required(&e) {
                    Some(size) => want = size,
                    None => return Err(TlsError(e.to_string())),
                }
            }
        }
    }
    Err(TlsError("a TLS message did not fit".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

    fn configs() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let der = CertificateDer::from_pem_slice(cert.cert.pem().as_bytes()).unwrap();
        let key =
            PrivateKeyDer::from_pem_slice(cert.signing_key.serialize_pem().as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![der.clone()], key)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (Arc::new(server), Arc::new(client))
    }

    /// Moves the client's pending TLS bytes into `to`.
    fn client_out(client: &mut rustls::ClientConnection, to: &mut Vec<u8>) {
        while client.wants_write() {
            client.write_tls(to).unwrap();
        }
    }

    /// Feeds `bytes` to the client and returns the plaintext it decrypted.
    fn client_in(client: &mut rustls::ClientConnection, bytes: &[u8]) -> Vec<u8> {
        let mut rest = bytes;
        let mut plain = Vec::new();
        while !rest.is_empty() {
            client.read_tls(&mut rest).unwrap();
            client.process_new_packets().unwrap();
            // Taken as it comes: the client buffers little plaintext.
            let _ = std::io::Read::read_to_end(&mut client.reader(), &mut plain);
        }
        plain
    }

    /// A handshake and data both ways, the server fed one byte at a time (every record
    /// arrives cut), then the peer's close_notify.
    #[test]
    fn records_cut_anywhere_decrypt_whole_and_seal_for_the_peer() {
        let (server_config, client_config) = configs();
        let mut server = TlsRecords::new(server_config).unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let mut client = rustls::ClientConnection::new(client_config, name).unwrap();
        let (mut incoming, mut plain, mut out) = (BytesMut::new(), BytesMut::new(), Vec::new());
        // Bounded: a TLS 1.3 handshake is two flights each way.
        for _ in 0..4 {
            let mut wire = Vec::new();
            client_out(&mut client, &mut wire);
            std::io::Write::write_all(&mut client.writer(), b"").unwrap();
            for byte in wire {
                incoming.extend_from_slice(&[byte]);
                server.read(&mut incoming, &mut plain, &mut out).unwrap();
            }
            let _ = client_in(&mut client, &std::mem::take(&mut out));
            if server.status() == Status::Open && !client.is_handshaking() {
                break;
            }
        }
        assert_eq!(server.status(), Status::Open);
        // Client to server, larger than one record, fed a byte at a time.
        let message: Vec<u8> = (0..40_000u32).map(|i| i as u8).collect();
        std::io::Write::write_all(&mut client.writer(), &message).unwrap();
        let mut wire = Vec::new();
        client_out(&mut client, &mut wire);
        for byte in wire {
            incoming.extend_from_slice(&[byte]);
            server.read(&mut incoming, &mut plain, &mut out).unwrap();
        }
        assert_eq!(&plain[..], &message[..]);
        assert!(incoming.is_empty());
        // Server to client: sealed records the client reads back.
        let mut sealed = out;
        server.seal(&message, &mut sealed).unwrap();
        assert_eq!(client_in(&mut client, &sealed), message);
        // The client's close_notify: the server sees the peer closed.
        client.send_close_notify();
        let mut wire = Vec::new();
        client_out(&mut client, &mut wire);
        incoming.extend_from_slice(&wire);
        let status = server
            .read(&mut incoming, &mut plain, &mut Vec::new())
            .unwrap();
        assert_eq!(status, Status::PeerClosed);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let (server_config, _) = configs();
        let mut server = TlsRecords::new(server_config).unwrap();
        let mut incoming = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..]);
        let result = server.read(&mut incoming, &mut BytesMut::new(), &mut Vec::new());
        assert!(result.is_err());
    }
}
