//! The process: start-up checks (`startup`), the ring mesh built once, and one pinned glommio
//! executor per shard with its history opened, its tasks started and its own listener
//! (DESIGN data flow, "accept"). Imports everything below it; nothing imports it but `main`.

pub mod startup;

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use glommio::{Latency, LocalExecutorBuilder, Placement, Shares};
use ringcast_ring::mesh::{mesh, ShardLinks};

use crate::config::Config;
use crate::engine::redis::RedisTopology;
use crate::engine::ChannelOwner;
use crate::http::routes::Endpoints;
use crate::limits::{INTAKE_LATENCY_MS, RING_CAPACITY_MESSAGES, SHARD_START_TIMEOUT_MS};
use crate::net::listener;
use crate::net::tls::ServerTls;
use crate::router::{Congestion, Lifecycle, Outbox, ShardMsg};
use crate::session::{Context, TaskQueues};
use crate::shard::Shard;
use crate::transport::{PortService, Transport};

/// A started server.
pub struct Server {
    pub address: SocketAddr,
    /// The internal endpoints' listener, when they have one of their own.
    pub internal_address: Option<SocketAddr>,
    pub shards: usize,
    pub open_files_limit: u64,
    executors: Vec<glommio::ExecutorJoinHandle<()>>,
    /// Held for the life of the server: one process per data directory.
    _data_lock: nix::fcntl::Flock<std::fs::File>,
}

impl Server {
    /// Blocks until every shard has stopped (they run until the process ends).
    pub fn wait(self) {
        for executor in self.executors {
            let _ = executor.join();
        }
    }
}

/// Starts every shard; returns once all of them listen, or the first start-up error.
pub fn start(config: Config) -> Result<Server, String> {
    let open_files_limit = startup::raise_open_files_limit()?;
    let redis = if config.engine.is_redis() {
        let topology = RedisTopology::discover(&config)?;
        eprintln!(
            "ringcast: engine: {} (shared by every node: offsets, history, recovery, \
             delivery, presence, joins and leaves, user actions, idempotency keys, \
             exclude_client, channels and info)",
            topology.describe()
        );
        Some(Arc::new(topology))
    } else {
        None
    };
    for warning in startup::limit_warnings(open_files_limit, config.client.connection_limit) {
        eprintln!("ringcast: warning: {warning}");
    }
    let cpus = startup::allowed_cpus();
    let shards = match config.shards.count {
        0 => cpus.len().max(1),
        n => n,
    };
    let ip = config.http_server.ip()?;
    let (reservation, port) = match config.http_server.port {
        0 => {
            let (fd, port) =
                startup::reserve_port(ip).map_err(|e| format!("cannot find a free port: {e}"))?;
            (Some(fd), port)
        }
        port => (None, port),
    };
    let address = SocketAddr::new(ip, port);
    let (internal_reservation, internal) = match config.http_server.internal()? {
        None => (None, None),
        Some((ip, 0)) => {
            let (fd, port) = startup::reserve_port(ip)
                .map_err(|e| format!("cannot find a free internal port: {e}"))?;
            (Some(fd), Some(SocketAddr::new(ip, port)))
        }
        Some((ip, port)) => (None, Some(SocketAddr::new(ip, port))),
    };
    let data_lock = startup::lock_data_dir(&config.history_storage.data_dir)?;
    let client_tls = config
        .http_server
        .client_tls()
        .map(|tls| ServerTls::load("http_server.tls", tls))
        .transpose()?;
    let own_internal_tls = match internal {
        Some(_) if config.http_server.internal_tls.enabled => Some(ServerTls::load(
            "http_server.internal_tls",
            &config.http_server.internal_tls,
        )?),
        _ => None,
    };
    let listener_tls = ListenerTls {
        client: client_tls.as_ref().map(|t| t.config.clone()),
        // The internal port's own TLS, else the client port's unless `tls_external`.
        internal: match &own_internal_tls {
            Some(own) => Some(own.config.clone()),
            None if config.http_server.tls_external => None,
            None => client_tls.as_ref().map(|t| t.config.clone()),
        },
    };
    let reloadable: Vec<ServerTls> = client_tls.into_iter().chain(own_internal_tls).collect();
    let links = mesh::<ShardMsg>(shards, RING_CAPACITY_MESSAGES)
        .map_err(|e| format!("cannot create the shard mesh: {e}"))?;
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
    let congestion = Congestion::new(shards);
    // SIGTERM, SIGINT and SIGHUP go to the signal thread alone: blocked here, before the shards'
    // threads start (they inherit the mask).
    let lifecycle = Lifecycle::new();
    let signals = startup::block_signals()?;
    let mut executors = Vec::with_capacity(shards);
    for (id, links) in links.into_iter().enumerate() {
        // Pin one shard per allowed CPU; with more shards than CPUs let the OS place them.
        let placement = if shards <= cpus.len() {
            Placement::Fixed(cpus[id])
        } else {
            Placement::Unbound
        };
        let config = config.clone();
        let ready = ready_tx.clone();
        let congestion = congestion.clone();
        let lifecycle = lifecycle.clone();
        let tls = listener_tls.clone();
        let redis = redis.clone();
        let executor = LocalExecutorBuilder::new(placement)
            .name(&format!("ringcast-{id}"))
            .ring_depth(crate::limits::IO_RING_DEPTH)
            .spawn(move || {
                let shared = Shared {
                    congestion,
                    lifecycle,
                    address,
                    internal,
                    tls,
                    redis,
                };
                shard_main(id, shards, config, links, shared, ready)
            })
            .map_err(|e| format!("cannot start shard {id}: {e}; {}", startup::io_uring_hint()))?;
        executors.push(executor);
    }
    drop(ready_tx);
    for _ in 0..shards {
        match ready_rx.recv_timeout(Duration::from_millis(SHARD_START_TIMEOUT_MS)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(format!(
                    "a shard did not start within {} s (opening a large history on a slow \
                     disk? the shard's own error, if any, is above)",
                    SHARD_START_TIMEOUT_MS / 1000
                ))
            }
        }
    }
    drop(reservation);
    drop(internal_reservation);
    startup::watch_signals(signals, lifecycle, reloadable)?;
    Ok(Server {
        address,
        internal_address: internal,
        shards,
        open_files_limit,
        executors,
        _data_lock: data_lock,
    })
}

/// What every shard shares with the others and the process.
struct Shared {
    congestion: Congestion,
    lifecycle: Lifecycle,
    address: SocketAddr,
    /// The internal endpoints' own listener, if any.
    internal: Option<SocketAddr>,
    tls: ListenerTls,
    /// The Redis instances (with `engine.type = "redis"`).
    redis: Option<Arc<RedisTopology>>,
}

/// The TLS configuration of each listener (`None`: plain).
#[derive(Clone)]
struct ListenerTls {
    client: Option<Arc<rustls::ServerConfig>>,
    internal: Option<Arc<rustls::ServerConfig>>,
}

/// One shard's life: its history opened, its tasks started, accepting until the drain
/// begins, then the drain (`Shard::drain`); it returns when drained, which ends the shard's
/// executor.
async fn shard_main(
    id: usize,
    shards: usize,
    config: Config,
    links: ShardLinks<ShardMsg>,
    shared: Shared,
    ready: mpsc::Sender<Result<(), String>>,
) {
    let Shared {
        congestion,
        lifecycle,
        address,
        internal,
        tls,
        redis,
    } = shared;
    // History first: no connection is accepted before every owned log is verified.
    let opened = std::time::Instant::now();
    let owner = match ChannelOwner::open(id, shards, config.clone()) {
        Ok((owner, reports)) => {
            let records: u64 = reports.iter().map(|r| r.records).sum();
            let bytes: u64 = reports.iter().map(|r| r.bytes).sum();
            if !reports.is_empty() {
                println!(
                    "ringcast: shard {id}: history: {} partitions, {records} records, {:.1} MB verified in {} ms",
                    reports.len(),
                    bytes as f64 / 1e6,
                    opened.elapsed().as_millis()
                );
            }
            owner
        }
        Err(e) => {
            let _ = ready.send(Err(format!("shard {id}: {e}")));
            return;
        }
    };
    let listener = match listener::listen_on(address) {
        Ok(listener) => listener,
        Err(e) => {
            let _ = ready.send(Err(format!("shard {id} cannot listen on {address}: {e}")));
            return;
        }
    };
    let internal_listener = match internal.map(listener::listen_on).transpose() {
        Ok(listener) => listener,
        Err(e) => {
            let _ = ready.send(Err(format!(
                "shard {id} cannot listen on the internal address {internal:?}: {e}"
            )));
            return;
        }
    };
    let shard = Rc::new(Shard::new(
        id,
        shards,
        config,
        Box::new(owner),
        Outbox::new(links.bind(), congestion),
        lifecycle,
    ));
    if let Some(topology) = &redis {
        match shard.attach_redis(topology) {
            Ok(Some(listening)) => {
                // Serving starts once the node hears the others' user actions, unless Redis
                // is away (then they are heard once it is back).
                let wait = shard.config.engine.redis.connect_timeout.positive();
                let wait = wait.unwrap_or_default() + Duration::from_millis(500);
                let heard = glommio::timer::timeout(wait, async { Ok(listening.await) }).await;
                if heard.is_err() {
                    eprintln!("ringcast: Redis is not reachable yet; serving, and trying on");
                }
            }
            Ok(None) => {}
            Err(e) => {
                let _ = ready.send(Err(format!("shard {id}: {e}")));
                return;
            }
        }
    }
    glommio::spawn_local(shard.clone().run_syncer()).detach();
    glommio::spawn_local(shard.clone().run_retention()).detach();
    glommio::spawn_local(shard.clone().run_log_creator()).detach();
    let queues = TaskQueues {
        intake: glommio::executor().create_task_queue(
            Shares::default(),
            Latency::Matters(Duration::from_millis(INTAKE_LATENCY_MS)),
            "intake",
        ),
        connections: glommio::executor().current_task_queue(),
    };
    let ring_loop = shard.clone();
    let ring_loop = async move {
        if let Err(e) = ring_loop.run_ring_loop().await {
            eprintln!("ringcast: shard {id}: ring loop stopped: {e}");
        }
    };
    let transport = match Context::new(shard.clone(), queues)
        .and_then(|ctx| Transport::new(Rc::new(ctx)).map_err(|e| e.to_string()))
    {
        Ok(transport) => Rc::new(transport),
        Err(e) => {
            let _ = ready.send(Err(format!("shard {id}: {e}")));
            return;
        }
    };
    let reactor = transport.websockets.clone().run();
    let public = Rc::new(PortService {
        endpoints: match internal_listener {
            Some(_) => Endpoints::public(&shard.config),
            None => Endpoints::ALL,
        },
        tls: tls.client,
    });
    // The internal listener (API, /metrics, /health) serves until the process ends, through
    // the drain too.
    if let Some(internal_listener) = internal_listener {
        let port = Rc::new(PortService {
            endpoints: Endpoints::internal(&shard.config),
            tls: tls.internal,
        });
        let internal_loop = listener::accept_loop(id, internal_listener, transport.clone(), port);
        match glommio::spawn_local_into(internal_loop, queues.intake) {
            Ok(task) => task.detach(),
            Err(e) => {
                let _ = ready.send(Err(format!("shard {id}: cannot start its tasks: {e}")));
                return;
            }
        };
    }
    let accept_loop = listener::accept_loop(id, listener, transport, public);
    // The ring loop and the accept loop in the intake queue (connections the accept loop
    // spawns start there too); the WebSocket reactor, which writes the deliveries, in the
    // connections' queue.
    let started = glommio::spawn_local_into(ring_loop, queues.intake)
        .and_then(|ring_loop| {
            ring_loop.detach();
            glommio::spawn_local_into(reactor, queues.connections)
        })
        .and_then(|reactor| {
            reactor.detach();
            glommio::spawn_local_into(accept_loop, queues.intake)
        });
    let accept_loop = match started {
        Ok(accept_loop) => accept_loop,
        Err(e) => {
            let _ = ready.send(Err(format!("shard {id}: cannot start its tasks: {e}")));
            return;
        }
    };
    glommio::spawn_local(shard.clone().run_ticker()).detach();
    let _ = ready.send(Ok(()));
    shard.drain_begun().await;
    let delay = shard.config.shutdown.accept_delay.positive();
    glommio::timer::sleep(delay.unwrap_or_default()).await;
    // No more clients: the listener closes (the kernel sends new connects elsewhere).
    accept_loop.cancel().await;
    shard.drain().await;
}

/// Makes a panic on any shard end the process (crash-only): a shard whose thread died would
/// leave the process half-serving, with nothing to restart it. The default hook prints the
/// panic first; then the process aborts, so the supervisor restarts it and start-up recovery
/// runs. The release profile also sets `panic = "abort"`; this covers every profile.
pub fn crash_on_panic() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        eprintln!("ringcast: a shard panicked; stopping the process (crash-only)");
        std::process::abort();
    }));
}
