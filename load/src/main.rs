//! `ringcast-load`: measures a Centrifugo-protocol server (ringcast or Centrifugo itself) the
//! way its users will: the seed studies' scenarios (`broadcast`, `rooms`), idle connections
//! and fan-out. It drives real WebSocket connections from worker processes and the server
//! HTTP API, then writes a table, `summary.json`, `samples.csv` and SVG plots.
//!
//! Flow: `main` (CLI) → `scenario` (what to connect and publish, per configuration) →
//! `coordinator` (worker processes, measured phase, merging) → `worker` (connections via
//! `client`, accounting via `stats`, payloads via `message`) → `report`.

mod api;
mod client;
mod coordinator;
mod message;
mod report;
mod scenario;
mod stats;
mod worker;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ringcast-load",
    version,
    about = "Load generator for Centrifugo-protocol servers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Target {
    /// WebSocket endpoint
    #[arg(long, default_value = "ws://127.0.0.1:8000/connection/websocket")]
    ws_url: String,
    /// Server API prefix
    #[arg(long, default_value = "http://127.0.0.1:8000/api")]
    api_url: String,
    /// Server API key
    #[arg(long, env = "RINGCAST_HTTP_API_KEY", default_value = "")]
    api_key: String,
    /// HS256 secret to sign connection tokens with (empty: connect without a token)
    #[arg(
        long,
        env = "RINGCAST_CLIENT_TOKEN_HMAC_SECRET_KEY",
        default_value = ""
    )]
    token_secret: String,
    /// RS256 instead: sign connection (and subscription) tokens with this PEM private key
    #[arg(long)]
    token_rsa_key: Option<std::path::PathBuf>,
    /// Subscribe with a subscription token per channel (signed like the connection tokens)
    #[arg(long)]
    sub_tokens: bool,
    /// Connections per worker process
    #[arg(long, default_value_t = 5000)]
    per_worker: usize,
    /// Do not bind workers to 127.0.0.x source addresses
    #[arg(long)]
    no_source_ips: bool,
    /// Connections each worker sets up at once (connect, subscribe)
    #[arg(long, default_value_t = 64)]
    connect_parallel: usize,
    /// Sample interval in milliseconds
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
    /// Longest measured phase of one configuration, in seconds
    #[arg(long, default_value_t = 300)]
    max_seconds: u64,
    /// Time to wait for the last deliveries after publishing ends, in milliseconds
    #[arg(long, default_value_t = 2000)]
    drain_ms: u64,
    /// Directory for summary.json, samples.csv and the plots
    /// [default: load-results/<scenario>-<run id>]
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// One message to every member's personal channel of a room via /api/broadcast
    Broadcast {
        #[command(flatten)]
        target: Target,
        /// Room sizes (members), comma-separated
        #[arg(long, value_delimiter = ',', default_value = "100,1000,10000,100000")]
        members: Vec<usize>,
        /// Members online (connected, each subscribed to its personal channel)
        #[arg(long, default_value_t = 1000)]
        online: usize,
        /// Messages broadcast per room size
        #[arg(long, default_value_t = 20)]
        messages: u64,
        /// Milliseconds between messages
        #[arg(long, default_value_t = 500)]
        interval_ms_between: u64,
        /// Channels per API request, sent in parallel; 0: one request
        #[arg(long, default_value_t = 0)]
        batch: usize,
        /// Send one /api/publish per channel instead of /api/broadcast
        #[arg(long)]
        single_publishes: bool,
        /// With --single-publishes: keep-alive API connections
        #[arg(long, default_value_t = 4)]
        api_connections: usize,
        /// With --single-publishes: requests pipelined per connection
        #[arg(long, default_value_t = 64)]
        window: usize,
        /// Message size in bytes
        #[arg(long, default_value_t = 100)]
        size: usize,
        /// Personal channel prefix (a namespace with history, e.g. "personal:", as in the seed)
        #[arg(long, default_value = "personal-")]
        prefix: String,
    },
    /// R rooms × C clients chatting (client-side publish must be allowed by the server)
    Rooms {
        #[command(flatten)]
        target: Target,
        /// Configurations as ROOMSxCLIENTS, comma-separated, or "seed" for the seed study's grid
        #[arg(long, default_value = "seed")]
        grid: String,
        /// Messages per second per client
        #[arg(long, default_value_t = 1.0)]
        rate: f64,
        /// Message size in bytes
        #[arg(long, default_value_t = 100)]
        size: usize,
        /// Seconds of publishing per configuration
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// N connections, each subscribed to its own channel, held idle
    Idle {
        #[command(flatten)]
        target: Target,
        /// Connection counts, comma-separated
        #[arg(long, value_delimiter = ',', default_value = "10000")]
        connections: Vec<usize>,
        /// Seconds to hold them
        #[arg(long, default_value_t = 5)]
        hold: u64,
        /// The server's PID, to report its resident memory per connection
        #[arg(long)]
        server_pid: Option<u32>,
    },
    /// One channel, S subscribers, publish rate stepped up until delivery falls behind
    Fanout {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 1000)]
        subscribers: usize,
        /// Publish rates (messages/s), comma-separated, tried in order
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "10,20,50,100,200,500,1000,2000,5000"
        )]
        rates: Vec<f64>,
        /// Seconds per rate
        #[arg(long, default_value_t = 5)]
        step: u64,
        #[arg(long, default_value_t = 100)]
        size: usize,
        /// Keep stepping after a rate fails
        #[arg(long)]
        all: bool,
    },
    /// (internal) a worker process, driven by the coordinator over stdin/stdout
    #[command(hide = true)]
    Worker,
}

fn common(target: &Target) -> Result<scenario::Common, String> {
    let ws = client::WsUrl::parse(&target.ws_url)?;
    Ok(scenario::Common {
        placement: coordinator::Placement {
            ws_url: target.ws_url.clone(),
            token_secret: target.token_secret.clone(),
            token_rsa_pem: target
                .token_rsa_key
                .as_ref()
                .map(|path| {
                    std::fs::read_to_string(path)
                        .map_err(|e| format!("--token-rsa-key {}: {e}", path.display()))
                })
                .transpose()?,
            sub_tokens: target.sub_tokens,
            per_worker: target.per_worker,
            connect_parallel: target.connect_parallel,
            interval_ms: target.interval_ms,
            source_ips: !target.no_source_ips && ws.address.ip().is_loopback(),
        },
        api: api::ApiUrl::parse(&target.api_url)?,
        api_key: target.api_key.clone(),
        max: Duration::from_secs(target.max_seconds),
        drain: Duration::from_millis(target.drain_ms),
        run_id: scenario::run_id(),
    })
}

fn parse_grid(grid: &str) -> Result<Vec<(usize, usize)>, String> {
    if grid == "seed" {
        return Ok(scenario::seed_grid());
    }
    grid.split(',')
        .map(|item| {
            let (r, c) = item
                .trim()
                .split_once('x')
                .ok_or_else(|| format!("{item:?}: expected ROOMSxCLIENTS, e.g. 25x8"))?;
            let number = |s: &str| {
                s.parse::<usize>()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| format!("{item:?}: {s:?} is not a positive number"))
            };
            Ok((number(r)?, number(c)?))
        })
        .collect()
}

fn run(cli: Cli) -> Result<(), String> {
    let (name, target, runs) = match cli.command {
        Command::Worker => return worker::run(),
        Command::Broadcast {
            target,
            members,
            online,
            messages,
            interval_ms_between,
            batch,
            single_publishes,
            api_connections,
            window,
            size,
            prefix,
        } => {
            coordinator::catch_ctrl_c();
            let common = common(&target)?;
            let via = if single_publishes {
                scenario::Via::Publish {
                    connections: api_connections,
                    window,
                }
            } else {
                scenario::Via::Broadcast { batch }
            };
            let args = scenario::BroadcastArgs {
                members,
                online,
                messages,
                interval: Duration::from_millis(interval_ms_between),
                via,
                size,
                prefix,
            };
            {
                let mut runs = Vec::new();
                let result = scenario::broadcast(&common, &args, &mut runs);
                ("broadcast", target, (runs, result.err()))
            }
        }
        Command::Rooms {
            target,
            grid,
            rate,
            size,
            seconds,
        } => {
            coordinator::catch_ctrl_c();
            let common = common(&target)?;
            let args = scenario::RoomsArgs {
                grid: parse_grid(&grid)?,
                rate_hz: rate,
                size,
                duration: Duration::from_secs(seconds),
            };
            {
                let mut runs = Vec::new();
                let result = scenario::rooms(&common, &args, &mut runs);
                ("rooms", target, (runs, result.err()))
            }
        }
        Command::Idle {
            target,
            connections,
            hold,
            server_pid,
        } => {
            coordinator::catch_ctrl_c();
            let common = common(&target)?;
            let args = scenario::IdleArgs {
                connections,
                hold: Duration::from_secs(hold),
                server_pid,
            };
            {
                let mut runs = Vec::new();
                let result = scenario::idle(&common, &args, &mut runs);
                ("idle", target, (runs, result.err()))
            }
        }
        Command::Fanout {
            target,
            subscribers,
            rates,
            step,
            size,
            all,
        } => {
            coordinator::catch_ctrl_c();
            let common = common(&target)?;
            let args = scenario::FanoutArgs {
                subscribers,
                rates,
                step: Duration::from_secs(step),
                size,
                all,
            };
            {
                let mut runs = Vec::new();
                let result = scenario::fanout(&common, &args, &mut runs);
                ("fanout", target, (runs, result.err()))
            }
        }
    };
    let (runs, failure) = runs;
    let report = report::Report {
        scenario: name.to_owned(),
        target: target.ws_url.clone(),
        started: report::now_rfc3339(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        runs,
        error: failure.clone(),
    };
    print!("{}", report::table(&report));
    let dir = target.out.clone().unwrap_or_else(|| {
        PathBuf::from("load-results").join(format!("{name}-{}", scenario::run_id()))
    });
    let written =
        report::write_all(&report, &dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for path in written {
        println!("wrote {}", path.display());
    }
    if name == "fanout" {
        let best = report
            .runs
            .iter()
            .filter(|r| r.extra.get("passed") == Some(&1.0))
            .filter_map(|r| r.params.get("rate_hz"))
            .fold(None::<f64>, |best, &rate| {
                Some(best.map_or(rate, |b| b.max(rate)))
            });
        match best {
            Some(rate) => println!("highest rate with no loss and p99 < 100 ms: {rate}/s"),
            None => println!("no rate passed (no loss and p99 < 100 ms)"),
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("ringcast-load: {e}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_parse() {
        assert_eq!(parse_grid("1x10, 25x8").unwrap(), [(1, 10), (25, 8)]);
        assert_eq!(parse_grid("seed").unwrap(), scenario::seed_grid());
        assert!(parse_grid("3").is_err());
        assert!(parse_grid("0x5").is_err());
    }

    #[test]
    fn the_cli_parses_every_scenario() {
        Cli::try_parse_from(["ringcast-load", "broadcast", "--members", "10,20"]).unwrap();
        Cli::try_parse_from(["ringcast-load", "rooms", "--grid", "2x3"]).unwrap();
        Cli::try_parse_from(["ringcast-load", "idle", "--server-pid", "1"]).unwrap();
        Cli::try_parse_from(["ringcast-load", "fanout", "--rates", "1,2"]).unwrap();
        assert!(Cli::try_parse_from(["ringcast-load", "nope"]).is_err());
    }
}
