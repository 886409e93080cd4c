//! What an open TLS connection's state costs (issue 14: idle TLS connections stay small): the
//! `TlsRecords` of a finished TLS 1.3 handshake, its box and everything it allocated, counted
//! by a global allocator that counts only while the server side runs. The whole WebSocket
//! connection's cost is in BENCHMARKS.md (`cargo bench --bench idle_connections -- tls`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;

use bytes::BytesMut;
use ringcast::framing::tls::{Status, TlsRecords};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// Bytes the server side holds, counted while `COUNTING` is on in this thread.
static HELD: AtomicIsize = AtomicIsize::new(0);

thread_local!(static COUNTING: Cell<bool> = const { Cell::new(false) });

struct CountingAllocator;

fn count(delta: isize) {
    if COUNTING.with(Cell::get) {
        HELD.fetch_add(delta, Ordering::Relaxed);
    }
}

// SAFETY: every call forwards to the system allocator unchanged; counting has no effect on it.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as isize - layout.size() as isize);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Runs `f` as the server side: its allocations and frees are counted.
fn as_server<T>(f: impl FnOnce() -> T) -> T {
    COUNTING.with(|c| c.set(true));
    let result = f();
    COUNTING.with(|c| c.set(false));
    result
}

#[test]
fn an_open_tls_connection_holds_its_keys_and_little_else() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let der = CertificateDer::from_pem_slice(cert.cert.pem().as_bytes()).unwrap();
    let key = PrivateKeyDer::from_pem_slice(cert.signing_key.serialize_pem().as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let server_config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![der.clone()], key)
            .unwrap(),
    );
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).unwrap();
    let client_config = Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let name = ServerName::try_from("localhost").unwrap();
    let mut client = rustls::ClientConnection::new(client_config, name).unwrap();

    let before = HELD.load(Ordering::Relaxed);
    // The configuration is shared by every connection: kept alive here, as the server does.
    let mut server = as_server(|| Box::new(TlsRecords::new(server_config.clone()).unwrap()));
    let (mut incoming, mut plain, mut out) =
        as_server(|| (BytesMut::new(), BytesMut::new(), Vec::new()));
    // Bounded: a TLS 1.3 handshake is two flights each way.
    for _ in 0..4 {
        let mut wire = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut wire).unwrap();
        }
        as_server(|| {
            incoming.extend_from_slice(&wire);
            server.read(&mut incoming, &mut plain, &mut out).unwrap();
        });
        let mut rest = &out[..];
        while !rest.is_empty() {
            client.read_tls(&mut rest).unwrap();
            client.process_new_packets().unwrap();
        }
        out.clear();
        if server.status() == Status::Open && !client.is_handshaking() {
            break;
        }
    }
    assert_eq!(server.status(), Status::Open);
    // The buffers are the reactor's, not the connection's: they go.
    as_server(move || drop((incoming, plain, out)));
    let held = HELD.load(Ordering::Relaxed) - before;
    eprintln!("an open TLS 1.3 connection's state: {held} bytes");
    assert!(
        held <= 3_000,
        "an open TLS connection's state is {held} bytes (keys, sequence numbers, the rustls \
         state machine); it was 2,545"
    );
}
