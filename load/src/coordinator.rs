//! The coordinator side: spreads connections over worker processes (each with its own
//! source address 127.0.0.x, so neither one process's open-files limit nor one address's
//! port range caps a run), starts them, drives them through the measured phase while the
//! scenario publishes, prints a progress line, and merges what they report. Ctrl-C ends the
//! measured phase early and still collects every worker's results.

use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::stats::{decode_histogram, merge_samples, new_histogram, Counts, Latency, Sample};
use crate::worker::{ConnSpec, WorkerLine, WorkerSpec};

/// How long workers get to report after `stop`.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Set by the SIGINT handler.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: nix::libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Installs the Ctrl-C handler (once per process).
pub fn catch_ctrl_c() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(
        SigHandler::Handler(on_sigint),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    let _ = unsafe { sigaction(Signal::SIGINT, &action) };
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// How to place connections on workers.
#[derive(Debug, Clone)]
pub struct Placement {
    pub ws_url: String,
    pub token_secret: String,
    /// RS256 signing key (PEM): when set, tokens are RS256 instead of HS256.
    pub token_rsa_pem: Option<String>,
    /// A subscription token for every subscribe.
    pub sub_tokens: bool,
    pub per_worker: usize,
    /// Connections each worker sets up at once.
    pub connect_parallel: usize,
    pub interval_ms: u64,
    /// Use 127.0.0.(k+1) as worker k's source address (a loopback target only).
    pub source_ips: bool,
}

/// Splits `connections` over workers of at most `per_worker` each.
pub fn plan(placement: &Placement, connections: Vec<ConnSpec>) -> Vec<WorkerSpec> {
    let per_worker = placement.per_worker.max(1);
    let workers = connections.len().div_ceil(per_worker).max(1);
    let mut specs: Vec<WorkerSpec> = (0..workers)
        .map(|k| WorkerSpec {
            worker: k as u32,
            ws_url: placement.ws_url.clone(),
            source_ip: placement
                .source_ips
                .then(|| Ipv4Addr::new(127, 0, 0, 1 + (k % 250) as u8)),
            token_secret: placement.token_secret.clone(),
            token_rsa_pem: placement.token_rsa_pem.clone(),
            sub_tokens: placement.sub_tokens,
            connections: Vec::new(),
            interval_ms: placement.interval_ms,
            connect_parallel: placement.connect_parallel,
        })
        .collect();
    // Round-robin, so every worker carries a similar mix (e.g. of rooms).
    for (i, conn) in connections.into_iter().enumerate() {
        specs[i % workers].connections.push(conn);
    }
    specs
}

pub struct Workers {
    children: Vec<Child>,
    stdins: Vec<ChildStdin>,
    lines: mpsc::Receiver<(usize, Result<WorkerLine, String>)>,
}

/// What the workers reported after connecting.
#[derive(Debug, Default)]
pub struct Ready {
    pub connected: u64,
    pub failed: u64,
    /// The slowest worker's connect time.
    pub connect_s: f64,
    pub errors: Vec<String>,
}

/// What the measured phase produced, merged over workers.
pub struct Measured {
    pub sent_by_workers: u64,
    pub counts: Counts,
    pub latency: Latency,
    pub samples: Vec<crate::stats::MergedSample>,
    pub error_replies: u64,
    pub closed: u64,
    pub duration_s: f64,
    pub stopped: Option<String>,
}

impl Measured {
    /// The configuration's result: what the workers measured plus what only the scenario
    /// knows (its parameters, what it sent, what it expected, its own figures).
    pub fn into_run(
        self,
        label: String,
        params: std::collections::BTreeMap<String, f64>,
        sent: u64,
        expected: u64,
        extra: std::collections::BTreeMap<String, f64>,
    ) -> crate::report::RunResult {
        crate::report::RunResult {
            label,
            params,
            duration_s: self.duration_s,
            sent,
            expected,
            counts: self.counts,
            latency: self.latency,
            api_call: None,
            extra,
            samples: self.samples,
            stopped: self.stopped,
        }
    }
}

impl Workers {
    /// Starts one worker process per spec (this executable, `worker` subcommand).
    pub fn spawn(specs: &[WorkerSpec]) -> Result<Workers, String> {
        let exe = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
        let (tx, lines) = mpsc::channel();
        let mut children = Vec::new();
        let mut stdins = Vec::new();
        for (k, spec) in specs.iter().enumerate() {
            let mut child = Command::new(&exe)
                .arg("worker")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|e| format!("cannot start worker {k}: {e}"))?;
            let mut stdin = child.stdin.take().expect("piped stdin");
            let stdout = child.stdout.take().expect("piped stdout");
            let mut line = serde_json::to_vec(spec).map_err(|e| e.to_string())?;
            line.push(b'\n');
            stdin
                .write_all(&line)
                .map_err(|e| format!("worker {k}: {e}"))?;
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let parsed = line
                        .map_err(|e| e.to_string())
                        .and_then(|l| serde_json::from_str(&l).map_err(|e| e.to_string()));
                    let failed = parsed.is_err();
                    if tx.send((k, parsed)).is_err() || failed {
                        return;
                    }
                }
                // The worker is gone (finished, crashed or killed): say so, or the
                // coordinator would wait for its report.
                let _ = tx.send((k, Err("exited".to_owned())));
            });
            children.push(child);
            stdins.push(stdin);
        }
        Ok(Workers {
            children,
            stdins,
            lines,
        })
    }

    fn broadcast(&mut self, command: &str) {
        for stdin in &mut self.stdins {
            let _ = stdin.write_all(format!("{command}\n").as_bytes());
            let _ = stdin.flush();
        }
    }

    /// Waits until every worker has connected its share (or failed to).
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<Ready, String> {
        let deadline = Instant::now() + timeout;
        let mut ready = Ready::default();
        let mut waiting = self.children.len();
        while waiting > 0 {
            if interrupted() {
                return Err("interrupted while connecting".into());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("{waiting} workers not connected after {timeout:?}"));
            }
            match self
                .lines
                .recv_timeout(left.min(Duration::from_millis(100)))
            {
                Ok((
                    _,
                    Ok(WorkerLine::Ready {
                        connected,
                        failed,
                        connect_s,
                        errors,
                    }),
                )) => {
                    ready.connected += connected;
                    ready.failed += failed;
                    ready.connect_s = ready.connect_s.max(connect_s);
                    ready.errors.extend(errors);
                    waiting -= 1;
                }
                Ok((k, Err(e))) => return Err(format!("worker {k}: {e}")),
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err("every worker exited".into())
                }
            }
        }
        Ok(ready)
    }

    /// The measured phase: `go`, then `publishing` runs on this thread's behalf in another
    /// (it returns when the scenario has published everything), then up to `drain` for the
    /// last deliveries (ending early once `expected()` deliveries arrived), then `stop`, and
    /// every worker's results merged. `progress` prints a line per interval.
    pub fn measure(
        &mut self,
        publishing: std::thread::JoinHandle<()>,
        expected: &dyn Fn() -> u64,
        drain: Duration,
        max: Duration,
        label: &str,
    ) -> Result<Measured, String> {
        let workers = self.children.len();
        self.broadcast("go");
        let started = Instant::now();
        let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); workers];
        let mut received = 0u64;
        let mut publishing = Some(publishing);
        let mut drain_from: Option<Instant> = None;
        let mut stopped = None;
        let mut done: Vec<Option<WorkerLine>> = vec![None; workers];
        let mut stop_sent: Option<Instant> = None;
        // Bounded by `max`, `drain`, Ctrl-C, and 10 s for the workers to answer `stop`.
        loop {
            if stop_sent.is_some_and(|at| at.elapsed() > STOP_GRACE) {
                let missing = done.iter().filter(|d| d.is_none()).count();
                stopped = Some(format!(
                    "{missing} workers did not report within {STOP_GRACE:?}"
                ));
                break;
            }
            if stop_sent.is_none() {
                if publishing.as_ref().is_some_and(|p| p.is_finished()) {
                    let _ = publishing.take().map(|p| p.join());
                    // Workers' own publishers stop too; receiving goes on while draining.
                    self.broadcast("quiet");
                    drain_from = Some(Instant::now());
                }
                let drained = drain_from.is_some_and(|at| {
                    at.elapsed() >= drain || (received >= expected() && expected() > 0)
                });
                if interrupted() {
                    stopped = Some("interrupted (Ctrl-C)".to_owned());
                }
                if started.elapsed() >= max {
                    stopped = Some(format!("time limit {max:?} reached"));
                }
                if drained || stopped.is_some() {
                    self.broadcast("stop");
                    stop_sent = Some(Instant::now());
                }
            }
            match self.lines.recv_timeout(Duration::from_millis(50)) {
                Ok((k, Ok(WorkerLine::Sample(sample)))) => {
                    received += sample.counts.received;
                    samples[k].push(sample);
                    if samples[k].len() == samples.iter().map(Vec::len).max().unwrap_or(0) {
                        eprint!(
                            "\r[{label}] t={:>5.1}s received {received} of {} expected   ",
                            started.elapsed().as_secs_f64(),
                            expected()
                        );
                    }
                }
                Ok((k, Ok(line @ WorkerLine::Done { .. }))) => {
                    done[k] = Some(line);
                    if done.iter().all(Option::is_some) {
                        break;
                    }
                }
                Ok((k, Err(e))) => {
                    if done[k].is_none() {
                        // A worker died mid-run: stop the others and report what they saw.
                        stopped = Some(format!("worker {k}: {e}"));
                        if stop_sent.is_none() {
                            self.broadcast("stop");
                            stop_sent = Some(Instant::now());
                        }
                        done[k] = Some(WorkerLine::Done {
                            sent: 0,
                            counts: Counts::default(),
                            histogram: crate::stats::encode_histogram(&new_histogram()),
                            error_replies: 0,
                            closed: 0,
                        });
                        if done.iter().all(Option::is_some) {
                            break;
                        }
                    }
                }
                Ok((_, Ok(WorkerLine::Ready { .. }))) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err("workers exited before reporting".into())
                }
            }
        }
        eprintln!();
        if let Some(p) = publishing.take() {
            // Publishing threads watch `interrupted()` and the time limit too.
            let _ = p.join();
        }
        let mut total = new_histogram();
        let mut measured = Measured {
            sent_by_workers: 0,
            counts: Counts::default(),
            latency: Latency::default(),
            samples: merge_samples(&samples)?,
            error_replies: 0,
            closed: 0,
            duration_s: started.elapsed().as_secs_f64(),
            stopped,
        };
        for line in done.into_iter().flatten() {
            if let WorkerLine::Done {
                sent,
                counts,
                histogram,
                error_replies,
                closed,
            } = line
            {
                measured.sent_by_workers += sent;
                measured.counts += counts;
                measured.error_replies += error_replies;
                measured.closed += closed;
                total
                    .add(decode_histogram(&histogram)?)
                    .map_err(|e| format!("histograms do not merge: {e:?}"))?;
            }
        }
        measured.latency = Latency::of(&total);
        Ok(measured)
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for stdin in &mut self.stdins {
            let _ = stdin.write_all(b"stop\n");
        }
        self.stdins.clear();
        // Bounded: workers exit on `stop` or stdin EOF; a stuck one is killed after 5 s.
        let deadline = Instant::now() + Duration::from_secs(5);
        for child in &mut self.children {
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_spread_round_robin_with_source_addresses() {
        let placement = Placement {
            ws_url: "ws://127.0.0.1:1/".into(),
            token_secret: String::new(),
            token_rsa_pem: None,
            sub_tokens: false,
            per_worker: 3,
            connect_parallel: 64,
            interval_ms: 1000,
            source_ips: true,
        };
        let conns: Vec<ConnSpec> = (0..7)
            .map(|i| ConnSpec {
                user: format!("u{i}"),
                channels: vec![format!("c{i}")],
                publish: None,
            })
            .collect();
        let specs = plan(&placement, conns);
        assert_eq!(specs.len(), 3);
        assert_eq!(
            specs
                .iter()
                .map(|s| s.connections.len())
                .collect::<Vec<_>>(),
            [3, 2, 2]
        );
        assert_eq!(specs[0].connections[1].user, "u3");
        assert_eq!(specs[2].source_ip, Some(Ipv4Addr::new(127, 0, 0, 3)));
        let none = plan(&placement, Vec::new());
        assert_eq!(none.len(), 1, "one (idle) worker even without connections");
    }
}
