//! The `ringcast` command line: `serve` (also the default, as `centrifugo` runs the server
//! when given no command), `genconfig`, `checkconfig`, `gentoken`, `gensubtoken`,
//! `checktoken`, `checksubtoken`. The server itself is the library (`src/lib.rs`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use ringcast::auth::{token, Verifier};
use ringcast::config::{template, Config, Overrides};
use ringcast::server;

#[derive(Parser)]
#[command(
    name = "ringcast",
    version,
    about = "Thread-per-core messaging server speaking the Centrifugo protocol",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// With no command: run the server with these arguments.
    #[command(flatten)]
    serve: ConfigArgs,
}

#[derive(clap::Args, Default)]
struct ConfigArgs {
    /// Configuration file in Centrifugo v6's layout: .json, .yaml, .yml or .toml
    #[arg(long, short, env = "RINGCAST_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    overrides: Overrides,
}

impl ConfigArgs {
    /// The configuration, its warnings printed to stderr.
    fn load(&self) -> Result<Config, String> {
        let loaded =
            Config::load(self.config.as_deref(), &self.overrides).map_err(|e| e.to_string())?;
        for warning in &loaded.warnings {
            eprintln!("ringcast: warning: {warning}");
        }
        Ok(loaded.config)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the server
    Serve(ConfigArgs),
    /// Write a configuration with fresh random secrets (format from the file's extension)
    Genconfig {
        /// Where to write it: .json, .yaml, .yml or .toml
        #[arg(
            long,
            short,
            visible_alias = "output",
            short_alias = 'o',
            default_value = "config.json"
        )]
        config: PathBuf,
        /// Replace the file if it exists
        #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "false")]
        force: bool,
    },
    /// Check a configuration; print the effective values (JSON, v6 layout) and the ignored keys
    Checkconfig(ConfigArgs),
    /// Print an HS256 connection token signed with the configured secret
    Gentoken {
        /// User id (the token's `sub` claim)
        #[arg(long, short)]
        user: String,
        /// Lifetime in seconds; 0 = the token never expires
        #[arg(long, short, default_value_t = 86_400)]
        ttl: u64,
        /// Connection info (the `info` claim), JSON
        #[arg(long)]
        info: Option<String>,
        /// Server-side subscriptions (the `channels` claim), comma-separated
        #[arg(long, value_delimiter = ',')]
        channels: Vec<String>,
        /// Data kept on the server only (the `meta` claim), JSON
        #[arg(long)]
        meta: Option<String>,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Print an HS256 subscription token signed with the configured secret
    Gensubtoken {
        /// User id (the token's `sub` claim; must be the connection's user)
        #[arg(long, short)]
        user: String,
        /// The channel it allows (the `channel` claim)
        #[arg(long)]
        channel: String,
        /// Lifetime in seconds; 0 = the subscription never expires
        #[arg(long, short, default_value_t = 86_400)]
        ttl: u64,
        /// Channel info for the subscriber (the `info` claim), JSON
        #[arg(long)]
        info: Option<String>,
        /// Data for the subscribe result (the `data` claim), JSON
        #[arg(long)]
        data: Option<String>,
        /// Only this connection may use it (the `client` claim)
        #[arg(long)]
        client: Option<String>,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Verify a connection token with the configured keys; print its claims or why it is refused
    Checktoken {
        token: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Verify a subscription token with the configured keys; print its claims or why it is refused
    Checksubtoken {
        token: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => serve(&cli.serve),
        Some(Command::Serve(args)) => serve(&args),
        Some(Command::Genconfig { config, force }) => genconfig(&config, force),
        Some(Command::Checkconfig(args)) => args.load().map(|config| {
            println!("{}", config.to_json());
            eprintln!("configuration is valid");
        }),
        Some(Command::Gentoken {
            user,
            ttl,
            info,
            channels,
            meta,
            config,
        }) => config.load().and_then(|config| {
            let mut claims = json_claims(&[("info", info), ("meta", meta)])?;
            if !channels.is_empty() {
                claims.insert("channels".into(), channels.into());
            }
            let secret = &config.client.token.hmac_secret_key;
            print_token(&config.client.token, secret, &user, ttl, claims)
        }),
        Some(Command::Gensubtoken {
            user,
            channel,
            ttl,
            info,
            data,
            client,
            config,
        }) => config.load().and_then(|config| {
            let mut claims = json_claims(&[("info", info), ("data", data)])?;
            claims.insert("channel".into(), channel.into());
            if let Some(client) = client {
                claims.insert("client".into(), client.into());
            }
            let keys = match &config.client.subscription_token {
                s if s.enabled => &s.token,
                _ => &config.client.token,
            };
            print_token(keys, &keys.hmac_secret_key, &user, ttl, claims)
        }),
        Some(Command::Checktoken { token, config }) => config.load().and_then(|config| {
            let claims = Verifier::new(&config)?
                .connect(&token)
                .map_err(|e| e.to_string())?;
            println!(
                "{}",
                serde_json::json!({
                    "user": claims.user,
                    "expire_at": claims.expires_at,
                    "info": claims.info,
                    "meta": claims.meta,
                    "channels": claims.subs.iter().map(|(c, _)| c).collect::<Vec<_>>(),
                })
            );
            Ok(())
        }),
        Some(Command::Checksubtoken { token, config }) => config.load().and_then(|config| {
            let claims = Verifier::new(&config)?
                .subscribe(&token)
                .map_err(|e| e.to_string())?;
            println!(
                "{}",
                serde_json::json!({
                    "user": claims.user,
                    "channel": claims.channel,
                    "client": claims.client,
                    "expire_at": claims.expires_at,
                    "info": claims.grant.info,
                    "data": claims.grant.data,
                })
            );
            Ok(())
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("ringcast: {message}");
            ExitCode::FAILURE
        }
    }
}

/// JSON claims given on the command line, each checked to be JSON.
fn json_claims(
    given: &[(&str, Option<String>)],
) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let mut claims = serde_json::Map::new();
    for (name, text) in given {
        if let Some(text) = text {
            let value: serde_json::Value =
                serde_json::from_str(text).map_err(|e| format!("--{name} is not JSON: {e}"))?;
            claims.insert((*name).into(), value);
        }
    }
    Ok(claims)
}

/// Signs and prints an HS256 token with `secret`, adding the audience and issuer `keys`
/// configure (so the server accepts it).
fn print_token(
    keys: &ringcast::config::Token,
    secret: &str,
    user: &str,
    ttl: u64,
    mut claims: serde_json::Map<String, serde_json::Value>,
) -> Result<(), String> {
    if secret.is_empty() {
        return Err(
            "no HMAC secret configured (client.token.hmac_secret_key, or \
             client.subscription_token.hmac_secret_key when enabled): pass --config FILE, \
             --token-hmac-secret-key or RINGCAST_CLIENT_TOKEN_HMAC_SECRET_KEY"
                .into(),
        );
    }
    if !keys.audience.is_empty() {
        claims.insert("aud".into(), keys.audience.clone().into());
    }
    if !keys.issuer.is_empty() {
        claims.insert("iss".into(), keys.issuer.clone().into());
    }
    let ttl = (ttl > 0).then_some(ttl);
    let token = token::sign_hs256(user, ttl, claims, secret).map_err(|e| e.to_string())?;
    println!("{token}");
    Ok(())
}

fn genconfig(output: &Path, force: bool) -> Result<(), String> {
    if output.exists() && !force {
        return Err(format!(
            "{} exists; pass --force to replace it",
            output.display()
        ));
    }
    let format = output
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let text = template::generate(&format).map_err(|e| e.to_string())?;
    std::fs::write(output, text).map_err(|e| format!("cannot write {}: {e}", output.display()))?;
    eprintln!("wrote {}", output.display());
    Ok(())
}

fn serve(args: &ConfigArgs) -> Result<(), String> {
    server::crash_on_panic();
    let mut config = args.load()?;
    if config
        .generate_missing_secrets()
        .map_err(|e| e.to_string())?
    {
        let secret = &config.client.token.hmac_secret_key;
        let token = token::sign_connect("dev", Some(86_400), secret).map_err(|e| e.to_string())?;
        println!(
            "DEV MODE: no http_api.key / client.token.hmac_secret_key configured, generated for \
             this run only\n  \
             http_api.key                   = {}\n  \
             client.token.hmac_secret_key   = {secret}\n  \
             token for user \"dev\" (valid 24 h): {token}\n  \
             For fixed secrets: ringcast genconfig && ringcast serve --config config.json",
            config.http_api.key
        );
    }
    let server = server::start(config)?;
    let internal = server
        .internal_address
        .map(|a| format!("; internal endpoints on {a} (API, /metrics, /health)"))
        .unwrap_or_default();
    println!(
        "ringcast listening on {} ({} shards, open files limit {}){internal}",
        server.address, server.shards, server.open_files_limit
    );
    server.wait();
    Ok(())
}
