//! The four scenarios (issue 5, from `../shared/seeds/`): `broadcast` (one message to every
//! member's personal channel of a room), `rooms` (R rooms × C chatting clients), `idle`
//! (connections held, memory per connection) and `fanout` (one channel, publish rate stepped
//! up until delivery falls behind). Each configuration is one `RunResult`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::api::{ApiClient, ApiUrl};
use crate::coordinator::{interrupted, plan, Placement, Workers};
use crate::message;
use crate::report::RunResult;
use crate::stats::{new_histogram, Latency};
use crate::worker::{ConnSpec, PublishSpec};

/// What every scenario needs.
#[derive(Debug, Clone)]
pub struct Common {
    pub placement: Placement,
    pub api: ApiUrl,
    pub api_key: String,
    /// Longest measured phase of one configuration.
    pub max: Duration,
    /// Time to wait for the last deliveries after publishing ends.
    pub drain: Duration,
    /// Prefix of every channel name of this invocation (fresh per run: old history and
    /// offsets never mix in).
    pub run_id: String,
}

/// A random run id: 6 letters.
pub fn run_id() -> String {
    let mut bytes = [0u8; 6];
    let _ = getrandom::getrandom(&mut bytes);
    bytes.iter().map(|b| (b'a' + b % 26) as char).collect()
}

fn connect_timeout(connections: usize) -> Duration {
    Duration::from_secs(30 + connections as u64 / 500)
}

fn params(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// Sleeps until `at`, waking for Ctrl-C; false if interrupted or past `deadline`.
fn sleep_until(at: Instant, deadline: Instant) -> bool {
    // A publisher behind its schedule never sleeps: the deadline must still end it.
    if interrupted() || Instant::now() >= deadline {
        return false;
    }
    // Bounded by `at`.
    while Instant::now() < at {
        if interrupted() || Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep((at - Instant::now()).min(Duration::from_millis(20)));
    }
    !interrupted()
}

pub struct BroadcastArgs {
    pub members: Vec<usize>,
    pub online: usize,
    pub messages: u64,
    pub interval: Duration,
    pub via: Via,
    pub size: usize,
    pub prefix: String,
}

/// How one message reaches the members' channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `/api/broadcast` with this many channels per request (0: all in one), requests in
    /// parallel.
    Broadcast { batch: usize },
    /// One `/api/publish` per channel, spread over `connections` keep-alive connections, each
    /// with up to `window` requests pipelined.
    Publish { connections: usize, window: usize },
}

/// One message to all M members' personal channels through `/api/broadcast`, repeated.
/// Completed configurations are pushed to `runs` as they finish, so an error in a later one
/// keeps them.
pub fn broadcast(
    common: &Common,
    args: &BroadcastArgs,
    runs: &mut Vec<RunResult>,
) -> Result<(), String> {
    for &members in &args.members {
        if interrupted() {
            break;
        }
        let online = args.online.min(members);
        let channel = |i: usize| format!("{}{}-{members}-{i}", args.prefix, common.run_id);
        let conns = (0..online)
            .map(|i| ConnSpec {
                user: format!("member{i}"),
                channels: vec![channel(i)],
                publish: None,
            })
            .collect();
        let specs = plan(&common.placement, conns);
        let mut workers = Workers::spawn(&specs)?;
        let ready = workers.wait_ready(connect_timeout(online))?;
        let label = format!("M={members}");
        eprintln!(
            "[{label}] {} of {online} online members connected in {:.1}s{}",
            ready.connected,
            ready.connect_s,
            first_error(&ready.errors)
        );
        let all: Vec<String> = (0..members).map(channel).collect();
        let (batch, lanes) = match args.via {
            Via::Broadcast { batch: 0 } => (members, 1),
            Via::Broadcast { batch } => (batch, members.div_ceil(batch)),
            Via::Publish { connections, .. } => (1, connections.clamp(1, members.max(1))),
        };
        let batches: Vec<String> = match args.via {
            Via::Broadcast { .. } => all
                .chunks(batch)
                .map(|c| serde_json::to_string(c).unwrap_or_default())
                .collect(),
            // One lane per connection: its channels, each to get its own publish.
            Via::Publish { .. } => (0..lanes)
                .map(|lane| {
                    let mine: Vec<&String> = all.iter().skip(lane).step_by(lanes).collect();
                    serde_json::to_string(&mine).unwrap_or_default()
                })
                .collect(),
        };
        let via = args.via;
        let api_times = Arc::new(Mutex::new(new_histogram()));
        let sent = Arc::new(Mutex::new(0u64));
        let api_errors = Arc::new(Mutex::new(Vec::<String>::new()));
        let publishing = {
            let (api_times, sent, api_errors) =
                (api_times.clone(), sent.clone(), api_errors.clone());
            let (api, key, messages, interval, size, max) = (
                common.api.clone(),
                common.api_key.clone(),
                args.messages,
                args.interval,
                args.size,
                common.max,
            );
            std::thread::spawn(move || {
                let mut clients: Vec<ApiClient> = (0..batches.len())
                    .map(|_| ApiClient::new(api.clone(), &key))
                    .collect();
                let start = Instant::now();
                let deadline = start + max;
                for n in 1..=messages {
                    if !sleep_until(start + interval * (n as u32 - 1), deadline) {
                        return;
                    }
                    let data = message::data(n, 0, message::now_us(), size);
                    let began = Instant::now();
                    // Batches (or lanes of publishes) go out in parallel, one keep-alive
                    // connection each.
                    let failures: Vec<String> = std::thread::scope(|scope| {
                        let handles: Vec<_> = clients
                            .iter_mut()
                            .zip(&batches)
                            .map(|(client, channels)| {
                                let data = &data;
                                scope.spawn(move || match via {
                                    Via::Broadcast { .. } => {
                                        let body =
                                            format!("{{\"channels\":{channels},\"data\":{data}}}");
                                        client.post("broadcast", body.as_bytes()).map(drop)
                                    }
                                    Via::Publish { window, .. } => {
                                        let names: Vec<String> =
                                            serde_json::from_str(channels).unwrap_or_default();
                                        let bodies: Vec<Vec<u8>> = names
                                            .iter()
                                            .map(|c| {
                                                format!("{{\"channel\":\"{c}\",\"data\":{data}}}")
                                                    .into_bytes()
                                            })
                                            .collect();
                                        client.post_pipelined("publish", &bodies, window).map(drop)
                                    }
                                })
                            })
                            .collect();
                        handles
                            .into_iter()
                            .filter_map(|h| h.join().ok().and_then(Result::err))
                            .collect()
                    });
                    let us = began.elapsed().as_micros() as u64;
                    let _ = api_times.lock().map(|mut h| h.saturating_record(us.max(1)));
                    *sent.lock().expect("not poisoned") += 1;
                    if let Ok(mut errors) = api_errors.lock() {
                        errors.extend(failures.into_iter().take(3));
                    }
                }
            })
        };
        let connected = ready.connected;
        let (measured, sent) =
            measure_published(&mut workers, publishing, &sent, connected, common, &label)?;
        let errors = api_errors.lock().expect("not poisoned").clone();
        if !errors.is_empty() {
            eprintln!("[{label}] API errors: {}", errors.join("; "));
        }
        let api_call = Latency::of(&api_times.lock().expect("not poisoned"));
        let mut extra = BTreeMap::new();
        extra.insert(
            "connect_per_s".into(),
            ready.connected as f64 / ready.connect_s.max(1e-9),
        );
        extra.insert("api_errors".into(), errors.len() as f64);
        let (api_connections, window) = match args.via {
            Via::Broadcast { .. } => (lanes, 1),
            Via::Publish {
                connections,
                window,
            } => (connections, window),
        };
        let params = params(&[
            ("members", members as f64),
            ("online", connected as f64),
            ("batch", batch as f64),
            ("api_connections", api_connections as f64),
            ("window", window as f64),
            ("messages", args.messages as f64),
        ]);
        let mut run = measured.into_run(label, params, sent, sent * connected, extra);
        run.api_call = Some(api_call);
        runs.push(run);
    }
    Ok(())
}

/// The measured phase of a scenario whose publisher (this process) counts what it sent in
/// `sent`, each message expected by every one of `receivers`. Returns the workers' results
/// and the final count sent.
fn measure_published(
    workers: &mut Workers,
    publishing: std::thread::JoinHandle<()>,
    sent: &Arc<Mutex<u64>>,
    receivers: u64,
    common: &Common,
    label: &str,
) -> Result<(crate::coordinator::Measured, u64), String> {
    let expected = || *sent.lock().expect("not poisoned") * receivers;
    let measured = workers.measure(publishing, &expected, common.drain, common.max, label)?;
    let sent = *sent.lock().expect("not poisoned");
    Ok((measured, sent))
}

fn first_error(errors: &[String]) -> String {
    errors
        .first()
        .map(|e| format!(" (first error: {e})"))
        .unwrap_or_default()
}

pub struct RoomsArgs {
    pub grid: Vec<(usize, usize)>,
    pub rate_hz: f64,
    pub size: usize,
    pub duration: Duration,
}

/// The seed study's grid of rooms × clients per room.
pub fn seed_grid() -> Vec<(usize, usize)> {
    let mut grid: Vec<(usize, usize)> = (1..=11).map(|c| (1, c * 10)).collect();
    grid.extend((2..=16).step_by(2).map(|c| (25, c)));
    grid.extend((8..=12).step_by(2).map(|c| (50, c)));
    grid.push((75, 8));
    grid.extend((100..=250).step_by(50).map(|r| (r, 4)));
    grid
}

/// R rooms × C clients; every client publishes into its room at `rate_hz` (client-side
/// publish: the server must allow it) and receives every message of its room.
/// Completed configurations are pushed to `runs` as they finish, so an error in a later one
/// keeps them.
pub fn rooms(common: &Common, args: &RoomsArgs, runs: &mut Vec<RunResult>) -> Result<(), String> {
    for &(rooms, clients) in &args.grid {
        if interrupted() {
            break;
        }
        let label = format!("R={rooms} C={clients}");
        let mut conns = Vec::with_capacity(rooms * clients);
        for r in 0..rooms {
            let channel = format!("room-{}-{rooms}x{clients}-{r}", common.run_id);
            for c in 0..clients {
                conns.push(ConnSpec {
                    user: format!("r{r}c{c}"),
                    channels: vec![channel.clone()],
                    publish: Some(PublishSpec {
                        channel: channel.clone(),
                        publisher: (r * clients + c) as u32,
                        rate_hz: args.rate_hz,
                        size: args.size,
                        count: 0,
                    }),
                });
            }
        }
        let specs = plan(&common.placement, conns);
        let mut workers = Workers::spawn(&specs)?;
        let ready = workers.wait_ready(connect_timeout(rooms * clients))?;
        eprintln!(
            "[{label}] {} of {} clients connected in {:.1}s{}",
            ready.connected,
            rooms * clients,
            ready.connect_s,
            first_error(&ready.errors)
        );
        let duration = args.duration.min(common.max);
        let publishing = std::thread::spawn(move || {
            let _ = sleep_until(Instant::now() + duration, Instant::now() + duration);
        });
        // Not known until the workers report what they sent: drain for the full time.
        let measured = workers.measure(publishing, &|| 0, common.drain, common.max, &label)?;
        let expected = measured.sent_by_workers * clients as u64;
        let mut extra = BTreeMap::new();
        // Over the publishing time (the drain after it adds no new messages).
        extra.insert(
            "deliveries_per_s".into(),
            measured.counts.received as f64
                / duration.as_secs_f64().min(measured.duration_s).max(1e-9),
        );
        extra.insert("error_replies".into(), measured.error_replies as f64);
        let params = params(&[
            ("rooms", rooms as f64),
            ("clients", clients as f64),
            ("rate_hz", args.rate_hz),
            ("size", args.size as f64),
        ]);
        let sent = measured.sent_by_workers;
        runs.push(measured.into_run(label, params, sent, expected, extra));
    }
    Ok(())
}

pub struct IdleArgs {
    pub connections: Vec<usize>,
    pub hold: Duration,
    pub server_pid: Option<u32>,
}

/// Resident memory of a process in bytes (Linux /proc).
pub fn rss_bytes(pid: u32) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("server pid {pid}: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .ok_or_else(|| format!("server pid {pid}: no VmRSS"))
}

/// CPU time a process has used so far (user + system, Linux /proc), in microseconds.
pub fn cpu_us(pid: u32) -> Result<u64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("server pid {pid}: {e}"))?;
    // Fields after the command name (which may hold spaces): state is field 3, utime 14.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| format!("server pid {pid}: unreadable stat"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    let (Some(utime), Some(stime)) = (ticks(11), ticks(12)) else {
        return Err(format!("server pid {pid}: no utime/stime in stat"));
    };
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|&hz| hz > 0)
        .unwrap_or(100) as u64;
    Ok((utime + stime) * 1_000_000 / hz)
}

/// N connections, each subscribed to a channel of its own, held idle.
/// Completed configurations are pushed to `runs` as they finish, so an error in a later one
/// keeps them.
pub fn idle(common: &Common, args: &IdleArgs, runs: &mut Vec<RunResult>) -> Result<(), String> {
    for &n in &args.connections {
        if interrupted() {
            break;
        }
        let label = format!("N={n}");
        let conns = (0..n)
            .map(|i| ConnSpec {
                user: format!("idle{i}"),
                channels: vec![format!("idle-{}-{n}-{i}", common.run_id)],
                publish: None,
            })
            .collect();
        let before = args.server_pid.map(rss_bytes).transpose()?;
        let cpu_before = args.server_pid.map(cpu_us).transpose()?;
        let specs = plan(&common.placement, conns);
        let mut workers = Workers::spawn(&specs)?;
        let ready = workers.wait_ready(connect_timeout(n))?;
        // The server's CPU over the connect phase (to 10 ms: the kernel's tick).
        let cpu_us_per_connect = match (args.server_pid.map(cpu_us).transpose()?, cpu_before) {
            (Some(after), Some(before)) => {
                Some(after.saturating_sub(before) as f64 / ready.connected.max(1) as f64)
            }
            _ => None,
        };
        let connect_per_s = ready.connected as f64 / ready.connect_s.max(1e-9);
        eprintln!(
            "[{label}] {} connected in {:.1}s ({connect_per_s:.0}/s){}{}",
            ready.connected,
            ready.connect_s,
            cpu_us_per_connect.map_or(String::new(), |us| format!(
                ", server CPU {us:.1} µs per connect"
            )),
            first_error(&ready.errors)
        );
        let hold = args.hold.min(common.max);
        // The server's RSS at the end of the hold, while every connection is still open.
        let held_rss = Arc::new(Mutex::new(None));
        let publishing = {
            let (held_rss, pid) = (held_rss.clone(), args.server_pid);
            std::thread::spawn(move || {
                let end = Instant::now() + hold;
                let _ = sleep_until(end, end);
                *held_rss.lock().expect("not poisoned") = pid.map(rss_bytes);
            })
        };
        let measured = workers.measure(publishing, &|| 0, Duration::ZERO, common.max, &label)?;
        let mut extra = BTreeMap::new();
        extra.insert("connect_per_s".into(), connect_per_s);
        extra.insert("connected".into(), ready.connected as f64);
        if let Some(us) = cpu_us_per_connect {
            extra.insert("server_cpu_us_per_connect".into(), us);
        }
        extra.insert("closed".into(), measured.closed as f64);
        let held_rss = held_rss.lock().expect("not poisoned").take();
        if let (Some(after), Some(before)) = (held_rss, before) {
            let after = after?;
            extra.insert(
                "rss_bytes_per_conn".into(),
                after.saturating_sub(before) as f64 / ready.connected.max(1) as f64,
            );
        }
        drop(workers);
        let params = params(&[("connections", n as f64)]);
        runs.push(measured.into_run(label, params, 0, 0, extra));
    }
    Ok(())
}

pub struct FanoutArgs {
    pub subscribers: usize,
    pub rates: Vec<f64>,
    pub step: Duration,
    pub size: usize,
    /// Keep stepping after a step fails.
    pub all: bool,
}

/// One channel with S subscribers; publish (API) at each rate for one step; a step passes
/// with no loss and p99 under 100 ms.
/// Completed configurations are pushed to `runs` as they finish, so an error in a later one
/// keeps them.
pub fn fanout(common: &Common, args: &FanoutArgs, runs: &mut Vec<RunResult>) -> Result<(), String> {
    for &rate in &args.rates {
        if interrupted() {
            break;
        }
        let label = format!("rate={rate}/s");
        let channel = format!("fanout-{}-{rate}", common.run_id);
        let conns = (0..args.subscribers)
            .map(|i| ConnSpec {
                user: format!("sub{i}"),
                channels: vec![channel.clone()],
                publish: None,
            })
            .collect();
        let specs = plan(&common.placement, conns);
        let mut workers = Workers::spawn(&specs)?;
        let ready = workers.wait_ready(connect_timeout(args.subscribers))?;
        eprintln!(
            "[{label}] {} subscribers connected in {:.1}s{}",
            ready.connected,
            ready.connect_s,
            first_error(&ready.errors)
        );
        // A publish call waits for the owner's answer, which under fan-out load takes tens of
        // milliseconds on a shared machine: one keep-alive API connection per 20 publications
        // a second, so the publisher keeps its rate while answers take up to 50 ms.
        let threads = (rate / 20.0).ceil().clamp(1.0, 256.0) as usize;
        let sent = Arc::new(Mutex::new(0u64));
        // How long each publish waited for its answer: a held publisher shows here first.
        let answers = Arc::new(Mutex::new(crate::stats::new_histogram()));
        let publishing = {
            let sent = sent.clone();
            let answers = answers.clone();
            let (api, key, step, size) = (
                common.api.clone(),
                common.api_key.clone(),
                args.step.min(common.max),
                args.size,
            );
            let body_channel = serde_json::to_string(&channel).unwrap_or_default();
            std::thread::spawn(move || {
                std::thread::scope(|scope| {
                    for t in 0..threads {
                        let (sent, answers, api, key, body_channel) = (
                            sent.clone(),
                            answers.clone(),
                            api.clone(),
                            key.clone(),
                            body_channel.clone(),
                        );
                        scope.spawn(move || {
                            let mut client = ApiClient::new(api, &key);
                            let period = Duration::from_secs_f64(threads as f64 / rate);
                            let start = Instant::now();
                            let end = start + step;
                            let mut seq = 0u64;
                            while sleep_until(start + period * seq as u32, end) {
                                seq += 1;
                                let data = message::data(seq, t as u32, message::now_us(), size);
                                let body =
                                    format!("{{\"channel\":{body_channel},\"data\":{data}}}");
                                let asked = Instant::now();
                                if client.post("publish", body.as_bytes()).is_err() {
                                    return;
                                }
                                let waited = asked.elapsed().as_micros() as u64;
                                let _ = answers.lock().expect("not poisoned").record(waited.max(1));
                                *sent.lock().expect("not poisoned") += 1;
                            }
                        });
                    }
                });
            })
        };
        let connected = ready.connected;
        let (measured, sent) =
            measure_published(&mut workers, publishing, &sent, connected, common, &label)?;
        let expected = sent * connected;
        // A step passes only if the rate was really reached, nothing was lost, and p99 < 100 ms.
        let step = args.step.min(common.max);
        let achieved = sent as f64 / step.as_secs_f64().max(1e-9);
        let passed = achieved >= 0.95 * rate
            && measured.counts.received == expected
            && measured.counts.lost == 0
            && measured.latency.p99_ms < 100.0;
        let mut extra = BTreeMap::new();
        extra.insert(
            "deliveries_per_s".into(),
            measured.counts.received as f64 / step.as_secs_f64().max(1e-9),
        );
        extra.insert("publish_per_s".into(), achieved);
        {
            let answers = answers.lock().expect("not poisoned");
            extra.insert(
                "api_p50_ms".into(),
                answers.value_at_quantile(0.5) as f64 / 1000.0,
            );
            extra.insert(
                "api_p99_ms".into(),
                answers.value_at_quantile(0.99) as f64 / 1000.0,
            );
        }
        extra.insert("passed".into(), f64::from(u8::from(passed)));
        let params = params(&[
            ("subscribers", connected as f64),
            ("rate_hz", rate),
            ("size", args.size as f64),
        ]);
        runs.push(measured.into_run(label, params, sent, expected, extra));
        if !passed && !args.all {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_grid_matches_the_study() {
        let grid = seed_grid();
        assert_eq!(grid.first(), Some(&(1, 10)));
        assert!(grid.contains(&(1, 110)));
        assert!(grid.contains(&(25, 2)) && grid.contains(&(25, 16)));
        assert!(grid.contains(&(50, 8)) && grid.contains(&(50, 12)));
        assert!(grid.contains(&(75, 8)));
        assert_eq!(grid.last(), Some(&(250, 4)));
        assert!(grid.contains(&(100, 4)) && grid.contains(&(150, 4)));
    }

    #[test]
    fn sleeping_stops_at_the_deadline_even_behind_schedule() {
        let past = Instant::now() - Duration::from_secs(1);
        assert!(
            !sleep_until(past, past),
            "behind schedule and past the deadline"
        );
        let soon = Instant::now() + Duration::from_millis(5);
        assert!(sleep_until(soon, soon + Duration::from_secs(1)));
        assert!(!sleep_until(
            soon + Duration::from_secs(5),
            Instant::now() + Duration::from_millis(5)
        ));
    }

    #[test]
    fn run_ids_are_letters() {
        let id = run_id();
        assert_eq!(id.len(), 6);
        assert!(id.bytes().all(|b| b.is_ascii_lowercase()));
    }
}
