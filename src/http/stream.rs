//! The byte stream of a connection in its HTTP phase: the TCP socket as it is, or TLS over it
//! (`TlsStream`, `framing::tls` records driven through the socket). The HTTP code reads and
//! writes a `Stream` without knowing which; at an upgrade the TLS state and what it holds
//! unread move on to the WebSocket reactor (`into_parts`), and a closing handshake resumes a
//! stream from them.
//!
//! Owns the socket and, with TLS, the ciphertext and plaintext in flight. Imports `framing`
//! and `limits`.

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use futures_lite::{future::poll_fn, AsyncRead, AsyncWrite, AsyncWriteExt};
use glommio::net::TcpStream;

use crate::framing::tls::{Status, TlsError, TlsRecords};
use crate::limits::{TLS_READ_BYTES, TLS_WRITE_BUFFER_BYTES_MAX};

/// A connection's stream: plain TCP, or TLS over it.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

/// What a TLS connection carries past its HTTP phase: its records' state and the input read
/// but not yet used.
pub struct TlsParts {
    pub records: Box<TlsRecords>,
    /// Ciphertext read, not yet a whole record.
    pub cipher: BytesMut,
    /// Decrypted, not yet read.
    pub plain: BytesMut,
}

impl Stream {
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => &tls.tcp,
        }
    }

    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.tcp()
            .set_read_timeout(timeout)
            .map_err(io::Error::from)
    }

    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.tcp().peer_addr().ok()
    }

    /// Ends our side: with TLS its close_notify first.
    pub async fn shutdown_write(&mut self) -> io::Result<()> {
        if let Stream::Tls(tls) = self {
            tls.queue_close_notify();
            self.flush().await?;
        }
        match self {
            Stream::Plain(tcp) => tcp.shutdown(Shutdown::Write).await,
            Stream::Tls(tls) => tls.tcp.shutdown(Shutdown::Write).await,
        }
        .map_err(io::Error::from)
    }

    /// The socket and, with TLS, what the records hold. Whatever was sealed is sent already
    /// (after a flush).
    pub fn into_parts(self) -> (TcpStream, Option<TlsParts>) {
        match self {
            Stream::Plain(tcp) => (tcp, None),
            Stream::Tls(tls) => {
                let TlsStream {
                    tcp,
                    records,
                    cipher_in,
                    plain_in,
                    cipher_out,
                    ..
                } = *tls;
                debug_assert!(cipher_out.is_empty(), "sealed output left unsent");
                let parts = TlsParts {
                    records,
                    cipher: cipher_in,
                    plain: plain_in,
                };
                (tcp, Some(parts))
            }
        }
    }
}

/// TLS over a TCP socket, with the buffers only the HTTP phase needs.
pub struct TlsStream {
    tcp: TcpStream,
    records: Box<TlsRecords>,
    /// Ciphertext read, not yet a whole record.
    cipher_in: BytesMut,
    /// Decrypted, not yet read.
    plain_in: BytesMut,
    /// Sealed (or protocol output), not yet written; `written` of it went out.
    cipher_out: Vec<u8>,
    written: usize,
    close_notify_queued: bool,
}

fn broken(e: TlsError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl TlsStream {
    /// A TLS stream over `tcp` starting its handshake, with `cipher` read already (after a
    /// PROXY header).
    pub fn accept(tcp: TcpStream, records: Box<TlsRecords>, cipher: Vec<u8>) -> Self {
        Self::resume(tcp, records, BytesMut::from(&cipher[..]))
    }

    /// A stream resumed from the records of a connection (for its closing handshake).
    pub fn resume(tcp: TcpStream, records: Box<TlsRecords>, cipher: BytesMut) -> Self {
        TlsStream {
            tcp,
            records,
            cipher_in: cipher,
            plain_in: BytesMut::new(),
            cipher_out: Vec::new(),
            written: 0,
            close_notify_queued: false,
        }
    }

    /// Runs the handshake to its end, within `timeout` in all however slowly the peer sends.
    pub async fn handshake(&mut self, timeout: Duration) -> io::Result<()> {
        let started = Instant::now();
        // Bounded by the timeout: every step waits at most what is left of it.
        loop {
            if self.records.status() == Status::Open {
                // What the handshake still owes the peer (its tickets); no waiting for input,
                // which may be decrypted already.
                return poll_fn(|cx| self.poll_write_out(cx)).await;
            }
            let left = timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            self.tcp.set_read_timeout(Some(left))?;
            if !poll_fn(|cx| self.poll_step(cx)).await? {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            if self.records.status() == Status::PeerClosed {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    fn queue_close_notify(&mut self) {
        if !self.close_notify_queued && self.records.status() != Status::Handshaking {
            self.close_notify_queued = true;
            let _ = self.records.close_notify(&mut self.cipher_out);
        }
    }

    /// Writes out what is sealed.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Bounded: each pass writes some bytes or ends.
        while self.written < self.cipher_out.len() {
            let n =
                ready!(Pin::new(&mut self.tcp).poll_write(cx, &self.cipher_out[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.cipher_out.clear();
        self.written = 0;
        if self.cipher_out.capacity() > TLS_WRITE_BUFFER_BYTES_MAX {
            self.cipher_out = Vec::new();
        }
        Poll::Ready(Ok(()))
    }

    /// One step: sends what is sealed, processes the ciphertext held, and reads more if that
    /// gave nothing new. `Ready(Ok(false))`: the peer's end of stream.
    fn poll_step(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        ready!(self.poll_write_out(cx))?;
        let (plain_before, status_before) = (self.plain_in.len(), self.records.status());
        let status = self
            .records
            .read(
                &mut self.cipher_in,
                &mut self.plain_in,
                &mut self.cipher_out,
            )
            .map_err(broken);
        if self.cipher_in.is_empty() {
            // Nothing held between requests.
            self.cipher_in = BytesMut::new();
        }
        let status = match status {
            Ok(status) => status,
            Err(e) => {
                // The alert rustls queued, if the socket takes it now.
                let _ = self.poll_write_out(cx);
                return Poll::Ready(Err(e));
            }
        };
        if !self.cipher_out.is_empty()
            || self.plain_in.len() != plain_before
            || status != status_before
        {
            return Poll::Ready(Ok(true));
        }
        let mut chunk = [0u8; TLS_READ_BYTES];
        let n = ready!(Pin::new(&mut self.tcp).poll_read(cx, &mut chunk))?;
        if n == 0 {
            return Poll::Ready(Ok(false));
        }
        self.cipher_in.extend_from_slice(&chunk[..n]);
        Poll::Ready(Ok(true))
    }
}

impl AsyncRead for TlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // Bounded by the peer: every step reads from the socket or decrypts what it read.
        loop {
            if !this.plain_in.is_empty() {
                let n = buf.len().min(this.plain_in.len());
                buf[..n].copy_from_slice(&this.plain_in[..n]);
                this.plain_in.advance(n);
                if this.plain_in.is_empty() {
                    this.plain_in = BytesMut::new();
                }
                return Poll::Ready(Ok(n));
            }
            if this.records.status() == Status::PeerClosed {
                return Poll::Ready(Ok(0));
            }
            if !ready!(this.poll_step(cx))? {
                return Poll::Ready(Ok(0));
            }
        }
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.cipher_out.len() - this.written >= TLS_WRITE_BUFFER_BYTES_MAX {
            ready!(this.poll_write_out(cx))?;
        }
        let take = data.len().min(TLS_WRITE_BUFFER_BYTES_MAX);
        this.records
            .seal(&data[..take], &mut this.cipher_out)
            .map_err(broken)?;
        // Sent now if the socket takes it; else by the next write, flush or read.
        if let Poll::Ready(Err(e)) = this.poll_write_out(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(take))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_out(cx))?;
        Pin::new(&mut this.tcp).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.queue_close_notify();
        ready!(this.poll_write_out(cx))?;
        Pin::new(&mut this.tcp).poll_close(cx)
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Stream::Tls(tls) => Pin::new(&mut **tls).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write(cx, data),
            Stream::Tls(tls) => Pin::new(&mut **tls).poll_write(cx, data),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Stream::Tls(tls) => Pin::new(&mut **tls).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_close(cx),
            Stream::Tls(tls) => Pin::new(&mut **tls).poll_close(cx),
        }
    }
}
