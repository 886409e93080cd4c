//! Start-up checks and preparations (DESIGN invariant 8): the open-files limit raised to the
//! hard limit, the CPUs the shards may use, the data directory and its lock, a free port for
//! port 0, error messages that name the fix, and the thread that takes SIGTERM/SIGINT.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::sys::signal::{SigSet, Signal};

use crate::limits::{IO_URING_MEMLOCK_BYTES_MIN, OPEN_FILES_RESERVED};
use crate::net::tls::ServerTls;
use crate::router::Lifecycle;

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns the limit now in force.
pub fn raise_open_files_limit() -> Result<u64, String> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)
        .map_err(|e| format!("cannot read the open files limit (RLIMIT_NOFILE): {e}"))?;
    if soft >= hard {
        return Ok(soft);
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => Ok(hard),
        Err(e) => {
            eprintln!(
                "ringcast: warning: cannot raise the open files limit from {soft} to {hard}: {e}"
            );
            Ok(soft)
        }
    }
}

/// Warnings for host limits that would cap or stop the server, each naming its fix (the
/// same checks as `tuning/check.sh`): open files below `client.connection_limit` (plus what
/// the server itself holds), and locked memory too small for io_uring on kernels before 5.12.
pub fn limit_warnings(open_files: u64, connection_limit: usize) -> Vec<String> {
    let mut warnings = Vec::new();
    let needed = connection_limit as u64 + OPEN_FILES_RESERVED;
    if connection_limit > 0 && open_files < needed {
        warnings.push(format!(
            "the open files limit ({open_files}) caps client.connection_limit \
             ({connection_limit}, {needed} descriptors with the server's own): raise the hard \
             limit (LimitNOFILE in tuning/ringcast.service, or tuning/limits.conf; \
             tuning/check.sh checks the host)"
        ));
    }
    let old_kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").is_ok_and(|release| {
        let mut parts = release.split(|c: char| !c.is_ascii_digit());
        let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        (major, minor) < (5, 12)
    });
    if old_kernel {
        if let Ok((soft, _)) = getrlimit(Resource::RLIMIT_MEMLOCK) {
            if soft < IO_URING_MEMLOCK_BYTES_MIN {
                warnings.push(format!(
                    "the locked-memory limit ({soft} bytes) may be too small for io_uring on \
                     this kernel (before 5.12 its rings are locked memory): set \
                     LimitMEMLOCK=infinity (tuning/ringcast.service) or memlock in \
                     tuning/limits.conf"
                ));
            }
        }
    }
    warnings
}

/// The CPUs this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
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
pub fn reserve_port(address: IpAddr) -> io::Result<(OwnedFd, u16)> {
    use nix::sys::socket::{getsockname, SockaddrLike, SockaddrStorage};
    let fd = crate::net::listener::bound_socket(SocketAddr::new(address, 0))?;
    let bound: SockaddrStorage = getsockname(fd.as_raw_fd())?;
    let port = bound
        .as_sockaddr_in()
        .map(|a| a.port())
        .or_else(|| bound.as_sockaddr_in6().map(|a| a.port()))
        .filter(|_| bound.len() > 0)
        .ok_or_else(|| io::Error::other("getsockname returned no port"))?;
    Ok((fd, port))
}

/// Creates the data directory and takes its lock, so two servers never write one history.
pub fn lock_data_dir(dir: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, String> {
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

/// The fix to try when a shard's executor (io_uring) cannot start.
pub fn io_uring_hint() -> String {
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(0);
    if disabled != 0 {
        return format!(
            "io_uring is disabled (kernel.io_uring_disabled = {disabled}): try \
             `sysctl -w kernel.io_uring_disabled=0`"
        );
    }
    match getrlimit(Resource::RLIMIT_MEMLOCK) {
        Ok((soft, _)) if soft < 512 << 10 => format!(
            "the locked-memory limit is {soft} bytes and glommio locks memory for its rings: \
             raise LimitMEMLOCK (systemd) or `ulimit -l`, see tuning/"
        ),
        _ => "is io_uring usable here (kernel 5.8 or later, not blocked by seccomp)?".into(),
    }
}

/// Blocks SIGTERM, SIGINT and SIGHUP in this thread, so that every thread started from it (the
/// shards) leaves them to the thread `watch_signals` starts.
pub fn block_signals() -> Result<SigSet, String> {
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGHUP);
    signals
        .thread_block()
        .map_err(|e| format!("cannot block SIGTERM/SIGINT/SIGHUP: {e}"))?;
    Ok(signals)
}

/// The signal thread: the first SIGTERM or SIGINT starts the drain (every shard sees
/// `lifecycle`); a second one ends the process at once (exit 1). SIGHUP reads the TLS
/// certificates and keys again (`tls`); a failed reload keeps the ones served.
pub fn watch_signals(
    signals: SigSet,
    lifecycle: Lifecycle,
    tls: Vec<ServerTls>,
) -> Result<(), String> {
    std::thread::Builder::new()
        .name("ringcast-signals".into())
        .spawn(move || {
            let mut stops = 0;
            // Bounded: the second stop signal ends the process; SIGHUPs come as the
            // operator sends them.
            loop {
                let Ok(signal) = signals.wait() else {
                    continue;
                };
                if signal == Signal::SIGHUP {
                    reload_certificates(&tls);
                    continue;
                }
                stops += 1;
                if stops == 1 {
                    eprintln!("ringcast: {signal:?}: draining (a second signal stops at once)");
                    lifecycle.drain();
                } else {
                    eprintln!("ringcast: {signal:?} again: stopping now");
                    std::process::exit(1);
                }
            }
        })
        .map(drop)
        .map_err(|e| format!("cannot start the signal thread: {e}"))
}

fn reload_certificates(tls: &[ServerTls]) {
    if tls.is_empty() {
        eprintln!("ringcast: SIGHUP: no TLS certificate to reload");
    }
    for listener in tls {
        match listener.reload() {
            Ok(()) => eprintln!("ringcast: SIGHUP: {} reloaded", listener.key()),
            Err(e) => eprintln!("ringcast: SIGHUP: {e}; the certificate served stays"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_limit_past_the_open_files_limit_is_named_with_its_fix() {
        let warnings = limit_warnings(20_000, 1_000_000);
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("caps client.connection_limit") && w.contains("LimitNOFILE")),
            "{warnings:?}"
        );
        assert!(limit_warnings(20_000, 10_000)
            .iter()
            .all(|w| !w.contains("connection_limit")));
        assert!(limit_warnings(20_000, 0)
            .iter()
            .all(|w| !w.contains("connection_limit")));
    }
}
