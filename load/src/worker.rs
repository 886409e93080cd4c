//! A worker process: holds its share of the connections (from its own source address),
//! subscribes them, publishes where told, records every stamped publication it receives, and
//! reports to the coordinator as JSON lines on stdout. The coordinator drives it with lines
//! on stdin: the `WorkerSpec` first, then `go` (start publishing), `quiet` (stop publishing,
//! keep receiving: the drain) and `stop` (report and exit). SIGINT is ignored: Ctrl-C reaches the whole process group, and the coordinator
//! decides when workers stop, so results are never lost.

use std::cell::{Cell, RefCell};
use std::io::{BufRead, Write};
use std::net::Ipv4Addr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::channels::local_channel;
use serde::{Deserialize, Serialize};

use crate::client::{self, Incoming, WsUrl, WsWriter};
use crate::message::{self, Received};
use crate::stats::{encode_histogram, Counts, Recorder, Sample};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerSpec {
    pub worker: u32,
    pub ws_url: String,
    /// Source address of every connection of this worker (127.0.0.x).
    pub source_ip: Option<Ipv4Addr>,
    /// HS256 secret to sign connection tokens with; empty: connect without a token.
    pub token_secret: String,
    /// RS256 private key (PEM) to sign with instead of the secret.
    pub token_rsa_pem: Option<String>,
    /// Sign a subscription token for every subscribe too.
    pub sub_tokens: bool,
    pub connections: Vec<ConnSpec>,
    pub interval_ms: u64,
    /// Connections opened at once.
    pub connect_parallel: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnSpec {
    pub user: String,
    pub channels: Vec<String>,
    pub publish: Option<PublishSpec>,
}

/// Client-side publishing of one connection (the server must allow it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublishSpec {
    pub channel: String,
    pub publisher: u32,
    pub rate_hz: f64,
    pub size: usize,
    /// Stop after this many (0: until `stop`).
    pub count: u64,
}

/// Worker → coordinator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum WorkerLine {
    Ready {
        connected: u64,
        failed: u64,
        connect_s: f64,
        /// The first few connection errors, for the operator.
        errors: Vec<String>,
    },
    Sample(Sample),
    Done {
        sent: u64,
        counts: Counts,
        histogram: String,
        /// Error replies received (e.g. 103 to a publish the server forbids).
        error_replies: u64,
        /// Connections the server closed during the run.
        closed: u64,
    },
}

const PHASE_WAIT: u8 = 0;
const PHASE_GO: u8 = 1;
const PHASE_STOP: u8 = 2;
const PHASE_QUIET: u8 = 3;

/// Runs the worker; returns when told to stop (or stdin closes).
pub fn run() -> Result<(), String> {
    // SAFETY: setting a signal to be ignored installs no handler code.
    unsafe {
        let _ = nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGINT,
            nix::sys::signal::SigHandler::SigIgn,
        );
    }
    let stdin = std::io::stdin();
    let mut first = String::new();
    stdin
        .lock()
        .read_line(&mut first)
        .map_err(|e| format!("worker: reading the spec: {e}"))?;
    let spec: WorkerSpec =
        serde_json::from_str(&first).map_err(|e| format!("worker: bad spec: {e}"))?;
    let phase = Arc::new(AtomicU8::new(PHASE_WAIT));
    {
        let phase = phase.clone();
        // Commands arrive on stdin; EOF (the coordinator died) means stop.
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                match line.as_deref().map(str::trim) {
                    Ok("go") => phase.store(PHASE_GO, Ordering::SeqCst),
                    Ok("quiet") => phase.store(PHASE_QUIET, Ordering::SeqCst),
                    Ok("stop") | Err(_) => break,
                    Ok(_) => {}
                }
            }
            phase.store(PHASE_STOP, Ordering::SeqCst);
        });
    }
    let _ = nix::sys::resource::setrlimit(
        nix::sys::resource::Resource::RLIMIT_NOFILE,
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map_or(1024, |(_, hard)| hard),
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map_or(1024, |(_, hard)| hard),
    );
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .name("ringcast-load-worker")
        .spawn(move || worker_main(spec, phase))
        .map_err(|e| format!("worker: cannot start glommio (io_uring): {e}"))?
        .join()
        .map_err(|e| format!("worker: executor failed: {e:?}"))?
}

fn emit(line: &WorkerLine) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut out, line);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

/// What the worker's tasks share (one thread: `Rc` and `Cell`).
#[derive(Default)]
struct Shared {
    recorder: RefCell<Recorder>,
    sent: Cell<u64>,
    sent_interval: Cell<u64>,
    connected: Cell<u64>,
    failed: Cell<u64>,
    error_replies: Cell<u64>,
    closed: Cell<u64>,
    errors: RefCell<Vec<String>>,
}

async fn worker_main(spec: WorkerSpec, phase: Arc<AtomicU8>) -> Result<(), String> {
    let url = WsUrl::parse(&spec.ws_url)?;
    let shared = Rc::new(Shared::default());
    // Every token signed before the connects start: an RS256 signature costs the client
    // about a millisecond, which would otherwise set the connect rate.
    let signer = Signer::new(&spec)?;
    let tokens: Vec<Tokens> = spec
        .connections
        .iter()
        .map(|conn| signer.tokens(conn, spec.sub_tokens))
        .collect();
    let started = Instant::now();
    let total = spec.connections.len() as u64;
    let parallel = spec.connect_parallel.max(1) as u64;
    for (index, conn) in spec.connections.iter().enumerate() {
        // Bounded by the connections finishing their setup (or failing).
        while (index as u64) >= shared.connected.get() + shared.failed.get() + parallel {
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        glommio::spawn_local(connection(
            url.clone(),
            spec.source_ip,
            tokens[index].clone(),
            index as u32,
            conn.clone(),
            shared.clone(),
            phase.clone(),
        ))
        .detach();
    }
    while shared.connected.get() + shared.failed.get() < total {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    emit(&WorkerLine::Ready {
        connected: shared.connected.get(),
        failed: shared.failed.get(),
        connect_s: started.elapsed().as_secs_f64(),
        errors: shared.errors.borrow().clone(),
    });
    // Bounded by the coordinator's `stop` (or stdin EOF).
    while phase.load(Ordering::SeqCst) == PHASE_WAIT {
        glommio::timer::sleep(Duration::from_millis(2)).await;
    }
    let go = Instant::now();
    let interval = Duration::from_millis(spec.interval_ms.max(10));
    let mut next = go + interval;
    while phase.load(Ordering::SeqCst) != PHASE_STOP {
        glommio::timer::sleep(Duration::from_millis(5)).await;
        if Instant::now() >= next {
            next += interval;
            report_sample(&shared, go);
        }
    }
    report_sample(&shared, go);
    let recorder = shared.recorder.borrow();
    emit(&WorkerLine::Done {
        sent: shared.sent.get(),
        counts: recorder.counts,
        histogram: encode_histogram(&recorder.total()),
        error_replies: shared.error_replies.get(),
        closed: shared.closed.get(),
    });
    Ok(())
}

fn report_sample(shared: &Shared, go: Instant) {
    let (counts, histogram) = shared.recorder.borrow_mut().take_interval();
    emit(&WorkerLine::Sample(Sample {
        t: go.elapsed().as_secs_f64(),
        sent: shared.sent_interval.replace(0),
        counts,
        histogram: encode_histogram(&histogram),
    }));
}

/// A connection's tokens: its connection token ("" for none) and one subscription token per
/// channel (empty when not asked for).
#[derive(Debug, Clone, Default)]
struct Tokens {
    connect: String,
    channels: Vec<String>,
}

/// Signs the tokens of a worker's connections: HS256 with the secret, or RS256 with the key.
struct Signer {
    /// `None`: no tokens at all (empty secret, no key).
    key: Option<(jsonwebtoken::Algorithm, jsonwebtoken::EncodingKey)>,
}

impl Signer {
    fn new(spec: &WorkerSpec) -> Result<Self, String> {
        let key = match (&spec.token_rsa_pem, spec.token_secret.as_str()) {
            (Some(pem), _) => Some((
                jsonwebtoken::Algorithm::RS256,
                jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes())
                    .map_err(|e| format!("RSA signing key: {e}"))?,
            )),
            (None, "") => None,
            (None, secret) => Some((
                jsonwebtoken::Algorithm::HS256,
                jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
            )),
        };
        Ok(Signer { key })
    }

    fn sign(&self, claims: &serde_json::Value) -> String {
        let Some((alg, key)) = &self.key else {
            return String::new();
        };
        jsonwebtoken::encode(&jsonwebtoken::Header::new(*alg), claims, key).unwrap_or_default()
    }

    fn tokens(&self, conn: &ConnSpec, sub_tokens: bool) -> Tokens {
        let exp = message::now_us() / 1_000_000 + 24 * 3600;
        Tokens {
            connect: self.sign(&serde_json::json!({"sub": conn.user, "exp": exp})),
            channels: if sub_tokens {
                conn.channels
                    .iter()
                    .map(|c| {
                        self.sign(&serde_json::json!({"sub": conn.user, "channel": c, "exp": exp}))
                    })
                    .collect()
            } else {
                Vec::new()
            },
        }
    }
}

fn note_error(shared: &Shared, error: String) {
    let mut errors = shared.errors.borrow_mut();
    if errors.len() < 5 {
        errors.push(error);
    }
}

/// One connection: connect, subscribe, then read (recording stamped publications) while a
/// writer task sends what the reader and the publisher hand it.
async fn connection(
    url: WsUrl,
    source: Option<Ipv4Addr>,
    tokens: Tokens,
    index: u32,
    spec: ConnSpec,
    shared: Rc<Shared>,
    phase: Arc<AtomicU8>,
) {
    let (mut reader, writer) = match client::connect(&url, source).await {
        Ok(halves) => halves,
        Err(e) => {
            note_error(&shared, format!("connect: {e}"));
            shared.failed.set(shared.failed.get() + 1);
            return;
        }
    };
    // Everything this connection sends goes through one queue to its writer task.
    let (out, queue) = local_channel::new_bounded::<Out>(1024);
    let out = Rc::new(out);
    glommio::spawn_local(write_loop(writer, queue)).detach();
    let mut hello = format!(
        "{{\"id\":1,\"connect\":{{\"token\":\"{}\"}}}}",
        tokens.connect
    );
    for (i, channel) in spec.channels.iter().enumerate() {
        hello.push('\n');
        let token = match tokens.channels.get(i) {
            Some(token) => format!(",\"token\":\"{token}\""),
            None => String::new(),
        };
        hello.push_str(&format!(
            "{{\"id\":{},\"subscribe\":{{\"channel\":{}{token}}}}}",
            i + 2,
            serde_json::to_string(channel).unwrap_or_default()
        ));
    }
    if out.send(Out::Text(hello.into_bytes())).await.is_err() {
        shared.failed.set(shared.failed.get() + 1);
        return;
    }
    let setup_replies = 1 + spec.channels.len() as u64;
    let mut replies_due = setup_replies;
    let mut ready = false;
    let mut publish = spec.publish.clone();
    // Bounded by the server closing or the worker stopping (the process exits).
    loop {
        let message = match reader.next().await {
            Ok(Incoming::Text(text)) => text,
            Ok(Incoming::Ping(payload)) => {
                let _ = out.try_send(Out::Pong(payload));
                continue;
            }
            Ok(Incoming::Close(code)) => {
                if ready {
                    shared.closed.set(shared.closed.get() + 1);
                } else {
                    note_error(&shared, format!("closed during setup: {code:?}"));
                    shared.failed.set(shared.failed.get() + 1);
                }
                return;
            }
            Err(e) => {
                if !ready {
                    note_error(&shared, format!("read during setup: {e}"));
                    shared.failed.set(shared.failed.get() + 1);
                } else {
                    shared.closed.set(shared.closed.get() + 1);
                }
                return;
            }
        };
        let now = message::now_us();
        for line in message.split(|&b| b == b'\n') {
            match message::classify(line) {
                // Recorded from the first one: the channels are this run's own, so nothing
                // stamped arrives before publishing starts, even if that is before `go` is read.
                Received::Stamped(stamp) => shared.recorder.borrow_mut().record(
                    index,
                    stamp.p,
                    stamp.s,
                    now.saturating_sub(stamp.t),
                ),
                Received::Ping => {
                    let _ = out.try_send(Out::Text(b"{}".to_vec()));
                }
                Received::Foreign => {}
                Received::Other => {
                    let error = message::error_code(line);
                    if error.is_some() {
                        shared.error_replies.set(shared.error_replies.get() + 1);
                    }
                    let setup =
                        !ready && message::reply_id(line).is_some_and(|id| id <= setup_replies);
                    if setup {
                        if let Some(code) = error {
                            // A connection whose connect or subscribe failed receives
                            // nothing: it must not count among the receivers.
                            note_error(&shared, format!("setup error reply {code}"));
                            shared.failed.set(shared.failed.get() + 1);
                            return;
                        }
                        replies_due -= 1;
                        if replies_due == 0 {
                            ready = true;
                            shared.connected.set(shared.connected.get() + 1);
                            // Only a connection that is connected and subscribed publishes.
                            if let Some(publish) = publish.take() {
                                glommio::spawn_local(publish_loop(
                                    publish,
                                    out.clone(),
                                    shared.clone(),
                                    phase.clone(),
                                ))
                                .detach();
                            }
                        }
                    }
                }
            }
        }
    }
}

/// What a connection's writer task sends.
enum Out {
    Text(Vec<u8>),
    Pong(Vec<u8>),
}

async fn write_loop(mut writer: WsWriter, queue: local_channel::LocalReceiver<Out>) {
    while let Some(item) = queue.recv().await {
        let sent = match item {
            Out::Text(payload) => writer.send_text(&payload).await,
            Out::Pong(payload) => writer.send_pong(&payload).await,
        };
        if sent.is_err() {
            return;
        }
    }
    writer.close().await;
}

/// Publishes at `rate_hz` from `go` until `stop` (or `count`).
async fn publish_loop(
    spec: PublishSpec,
    out: Rc<local_channel::LocalSender<Out>>,
    shared: Rc<Shared>,
    phase: Arc<AtomicU8>,
) {
    while phase.load(Ordering::SeqCst) == PHASE_WAIT {
        glommio::timer::sleep(Duration::from_millis(2)).await;
    }
    debug_assert_ne!(PHASE_QUIET, PHASE_GO);
    let period = Duration::from_secs_f64(1.0 / spec.rate_hz.max(0.001));
    // Each publisher starts at a random point of its period, so they do not all fire at once.
    let mut jitter = [0u8; 2];
    let _ = getrandom::getrandom(&mut jitter);
    let offset = period.mul_f64(f64::from(u16::from_ne_bytes(jitter)) / 65_536.0);
    let mut next = Instant::now() + offset;
    let channel = serde_json::to_string(&spec.channel).unwrap_or_default();
    let mut seq = 0u64;
    // Bounded by `stop` and by `count`.
    while phase.load(Ordering::Relaxed) == PHASE_GO && (spec.count == 0 || seq < spec.count) {
        let now = Instant::now();
        if next > now {
            glommio::timer::sleep(next - now).await;
        }
        next += period;
        seq += 1;
        let data = message::data(seq, spec.publisher, message::now_us(), spec.size);
        let command = format!(
            "{{\"id\":{},\"publish\":{{\"channel\":{channel},\"data\":{data}}}}}",
            seq + 1_000
        );
        if out.send(Out::Text(command.into_bytes())).await.is_err() {
            return;
        }
        shared.sent.set(shared.sent.get() + 1);
        shared.sent_interval.set(shared.sent_interval.get() + 1);
    }
}
