//! The `ringcast` command line: serve, genconfig, checkconfig, gentoken. The server itself is
//! the library (`src/lib.rs`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use ringcast::config::{Config, Overrides};
use ringcast::{server, token};

#[derive(Parser)]
#[command(
    name = "ringcast",
    version,
    about = "Thread-per-core messaging server speaking the Centrifugo protocol"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct ConfigArgs {
    /// TOML configuration file (see `ringcast genconfig`)
    #[arg(long, short, env = "RINGCAST_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    overrides: Overrides,
}

impl ConfigArgs {
    fn load(&self) -> Result<Config, String> {
        Config::load(self.config.as_deref(), &self.overrides).map_err(|e| e.to_string())
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the server
    Serve(ConfigArgs),
    /// Write a commented default configuration with fresh random secrets
    Genconfig {
        /// Where to write it
        #[arg(long, short, default_value = "ringcast.toml")]
        output: PathBuf,
        /// Replace the file if it exists
        #[arg(long)]
        force: bool,
    },
    /// Check a configuration and print the effective values
    Checkconfig(ConfigArgs),
    /// Print an HS256 connection token signed with the configured secret
    Gentoken {
        /// User id (the token's `sub` claim)
        #[arg(long, short)]
        user: String,
        /// Lifetime in seconds; 0 = the token never expires
        #[arg(long, default_value_t = 86_400)]
        ttl: u64,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(&args),
        Command::Genconfig { output, force } => genconfig(&output, force),
        Command::Checkconfig(args) => args.load().map(|config| {
            print!(
                "{}",
                toml::to_string(&config).expect("a config always serializes")
            );
            eprintln!("configuration is valid");
        }),
        Command::Gentoken { user, ttl, config } => config.load().and_then(|config| {
            if config.token_hmac_secret_key.is_empty() {
                return Err("no token_hmac_secret_key configured: pass --config FILE, \
                     --token-hmac-secret-key or RINGCAST_TOKEN_HMAC_SECRET_KEY"
                    .into());
            }
            let ttl = (ttl > 0).then_some(ttl);
            println!(
                "{}",
                token::sign_connect(&user, ttl, &config.token_hmac_secret_key)
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

fn genconfig(output: &std::path::Path, force: bool) -> Result<(), String> {
    if output.exists() && !force {
        return Err(format!(
            "{} exists; pass --force to replace it",
            output.display()
        ));
    }
    std::fs::write(output, Config::commented_default())
        .map_err(|e| format!("cannot write {}: {e}", output.display()))?;
    eprintln!("wrote {}", output.display());
    Ok(())
}

fn serve(args: &ConfigArgs) -> Result<(), String> {
    let mut config = args.load()?;
    if config.generate_missing_secrets() {
        let token = token::sign_connect("dev", Some(86_400), &config.token_hmac_secret_key);
        println!(
            "DEV MODE: no api_key / token_hmac_secret_key configured, generated for this run only\n  \
             api_key               = {}\n  \
             token_hmac_secret_key = {}\n  \
             token for user \"dev\" (valid 24 h): {token}\n  \
             For fixed secrets: ringcast genconfig && ringcast serve --config ringcast.toml",
            config.api_key, config.token_hmac_secret_key
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
