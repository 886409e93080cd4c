//! The `ringcast` command line: `serve` (also the default, as `centrifugo` runs the server
//! when given no command), `genconfig`, `checkconfig`, `gentoken`. The server itself is the
//! library (`src/lib.rs`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use ringcast::auth::token;
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
        Some(Command::Gentoken { user, ttl, config }) => config
            .load()
            .and_then(|config| gentoken(&config, &user, ttl)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("ringcast: {message}");
            ExitCode::FAILURE
        }
    }
}

fn gentoken(config: &Config, user: &str, ttl: u64) -> Result<(), String> {
    let secret = &config.client.token.hmac_secret_key;
    if secret.is_empty() {
        return Err(
            "no client.token.hmac_secret_key configured: pass --config FILE, \
             --token-hmac-secret-key or RINGCAST_CLIENT_TOKEN_HMAC_SECRET_KEY"
                .into(),
        );
    }
    let ttl = (ttl > 0).then_some(ttl);
    let token = token::sign_connect(user, ttl, secret).map_err(|e| e.to_string())?;
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
    println!(
        "ringcast listening on {} ({} shards, open files limit {})",
        server.address, server.shards, server.open_files_limit
    );
    server.wait();
    Ok(())
}
