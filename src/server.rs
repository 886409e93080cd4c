//! Start-up: raise the open-file limit, pick the shards' CPUs, build the ring mesh, start one
//! pinned glommio executor per shard with its own SO_REUSEPORT listener (DESIGN data flow,
//! "accept"), and report what is wrong before serving (invariant 8).

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::Duration;

use glommio::net::TcpListener;
use glommio::{LocalExecutorBuilder, Placement};
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use ringcast_ring::mesh::{mesh, ShardLinks};

use crate::config::Config;
use crate::conn;
use crate::owner::ChannelOwner;
use crate::router::{Congestion, Outbox, ShardMsg, RING_CAPACITY};
use crate::shard::Shard;

/// A started server.
pub struct Server {
    pub address: SocketAddr,
    pub shards: usize,
    pub open_files_limit: u64,
    executors: Vec<glommio::ExecutorJoinHandle<()>>,
    /// Held for the life of the server: one process per data directory.
    _data_lock: nix::fcntl::Flock<std::fs::File>,
}

/// Creates the data directory and takes its lock, so two servers never write one history.
fn lock_data_dir(dir: &std::path::Path) -> Result<nix::fcntl::Flock<std::fs::File>, String> {
    let history = dir.join("history");
    std::fs::create_dir_all(&history)
        .map_err(|e| format!("cannot create data directory {}: {e}", history.display()))?;
    let path = dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
        format!(
            "data directory {} is in use by another ringcast process ({e})",
            dir.display()
        )
    })
}

impl Server {
    /// Blocks until every shard has stopped (they run until the process ends).
    pub fn wait(self) {
        for executor in self.executors {
            let _ = executor.join();
        }
    }
}

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns the limit now in force.
fn raise_open_files_limit() -> u64 {
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(_) => soft,
        },
        Ok((soft, _)) => soft,
        Err(_) => 0,
    }
}

/// The CPUs this process may run on.
fn allowed_cpus() -> Vec<usize> {
    match nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)) {
        Ok(set) => (0..nix::sched::CpuSet::count())
            .filter(|&c| set.is_set(c).unwrap_or(false))
            .collect(),
        Err(_) => (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect(),
    }
}

/// For port 0: finds a free port that every shard can then bind with SO_REUSEPORT. The
/// returned socket is bound but not listening (so it takes no connections); it holds the
/// port until the shards have bound it.
fn reserve_port(address: std::net::IpAddr) -> io::Result<(std::os::fd::OwnedFd, u16)> {
    use nix::sys::socket::{
        bind, getsockname, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType,
        SockaddrIn, SockaddrIn6, SockaddrLike, SockaddrStorage,
    };
    let family = if address.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    setsockopt(&fd, sockopt::ReusePort, &true)?;
    use std::os::fd::AsRawFd;
    match SocketAddr::new(address, 0) {
        SocketAddr::V4(a) => bind(fd.as_raw_fd(), &SockaddrIn::from(a))?,
        SocketAddr::V6(a) => bind(fd.as_raw_fd(), &SockaddrIn6::from(a))?,
    }
    let bound: SockaddrStorage = getsockname(fd.as_raw_fd())?;
    let port = bound
        .as_sockaddr_in()
        .map(|a| a.port())
        .or_else(|| bound.as_sockaddr_in6().map(|a| a.port()))
        .filter(|_| bound.len() > 0)
        .ok_or_else(|| io::Error::other("getsockname returned no port"))?;
    Ok((fd, port))
}

/// Starts every shard; returns once all of them listen, or the first start-up error.
pub fn start(config: Config) -> Result<Server, String> {
    let open_files_limit = raise_open_files_limit();
    let cpus = allowed_cpus();
    let shards = if config.shards == 0 {
        cpus.len().max(1)
    } else {
        config.shards
    };
    let (reservation, port) = if config.port == 0 {
        let (fd, port) =
            reserve_port(config.address).map_err(|e| format!("cannot find a free port: {e}"))?;
        (Some(fd), port)
    } else {
        (None, config.port)
    };
    let address = SocketAddr::new(config.address, port);
    let data_lock = lock_data_dir(&config.data_dir)?;
    let links = mesh::<ShardMsg>(shards, RING_CAPACITY)
        .map_err(|e| format!("cannot create the shard mesh: {e}"))?;
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
    let congestion = Congestion::new(shards);
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
        let executor = LocalExecutorBuilder::new(placement)
            .name(&format!("ringcast-{id}"))
            .spawn(move || shard_main(id, shards, config, links, congestion, address, ready))
            .map_err(|e| {
                format!("cannot start shard {id} (is io_uring usable here? glommio needs it): {e}")
            })?;
        executors.push(executor);
    }
    drop(ready_tx);
    for _ in 0..shards {
        match ready_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err("a shard did not start within 30 s".into()),
        }
    }
    drop(reservation);
    Ok(Server {
        address,
        shards,
        open_files_limit,
        executors,
        _data_lock: data_lock,
    })
}

async fn shard_main(
    id: usize,
    shards: usize,
    config: Config,
    links: ShardLinks<ShardMsg>,
    congestion: Congestion,
    address: SocketAddr,
    ready: mpsc::Sender<Result<(), String>>,
) {
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
    let listener = match TcpListener::bind(address) {
        Ok(listener) => listener,
        Err(e) => {
            let _ = ready.send(Err(format!("shard {id} cannot listen on {address}: {e}")));
            return;
        }
    };
    let shard = Rc::new(Shard::new(
        id,
        shards,
        config,
        owner,
        Outbox::new(links.bind(), congestion),
    ));
    glommio::spawn_local(shard.clone().run_syncer()).detach();
    glommio::spawn_local(shard.clone().run_retention()).detach();
    let ring_loop = shard.clone();
    glommio::spawn_local(async move {
        if let Err(e) = ring_loop.run_ring_loop().await {
            eprintln!("ringcast: shard {id}: ring loop stopped: {e}");
        }
    })
    .detach();
    glommio::spawn_local(shard.clone().run_ticker()).detach();
    let _ = ready.send(Ok(()));
    // Runs for the life of the process; each round accepts one connection.
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                glommio::spawn_local(conn::serve(shard.clone(), stream)).detach();
            }
            Err(e) => {
                // Out of file descriptors or a transient error: back off instead of spinning.
                eprintln!("ringcast: shard {id}: accept failed: {e}");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}
