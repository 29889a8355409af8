//! `ponte-connector`: pair, run, doctor. Thin: parse, set up logging, call the library.

use clap::{Args, Parser, Subcommand};
use ponte_connector::config::{self, Config, FileConfig, RelayUrls, Secret};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Exit code for usage and configuration errors (EX_USAGE).
const EXIT_USAGE: u8 = 64;

#[derive(Parser)]
#[command(
    name = "ponte-connector",
    version,
    about = "Ponte on-prem connector: reaches LAN devices for the cloud over an outbound WebSocket"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Pair with the cloud: claim a one-time code, or store a token copied from the console.
    Pair(PairArgs),
    /// Connect to the relay and serve requests until stopped (SIGTERM / Ctrl-C).
    Run(RunArgs),
    /// Check config, DNS, TLS, relay reachability, token expiry and recently used devices.
    Doctor(CommonArgs),
}

#[derive(Args)]
struct CommonArgs {
    /// Config file [default: /etc/ponte/connector.toml as root, else ~/.config/ponte/connector.toml]
    #[arg(long, env = "PONTE_CONNECTOR_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Args)]
struct PairArgs {
    /// Cloud API base URL, e.g. https://cloud.example (with --code)
    #[arg(long, requires = "code", conflicts_with_all = ["relay_url", "token"])]
    server: Option<String>,
    /// One-time pairing code shown in the console, e.g. K7QM-4XPD
    #[arg(long, requires = "server")]
    code: Option<String>,
    /// Relay WebSocket URL, e.g. wss://cloud.example/ws/connectors (with --token)
    #[arg(long, requires = "token")]
    relay_url: Option<String>,
    /// Connector token copied from the console (with --relay-url)
    #[arg(long, requires = "relay_url")]
    token: Option<String>,
    /// Name shown in the console [default: hostname]
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Relay URL(s), comma-separated for failover
    #[arg(long, env = "PONTE_CONNECTOR_RELAY_URL", value_delimiter = ',')]
    relay_url: Option<Vec<String>>,
    /// Connector token
    #[arg(long, env = "PONTE_CONNECTOR_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Name reported to the cloud
    #[arg(long, env = "PONTE_CONNECTOR_NAME")]
    name: Option<String>,
    /// Allowed device targets, comma-separated (CIDR, IP, IP:port, host[:port]) [default: private ranges]
    #[arg(long, env = "PONTE_CONNECTOR_ALLOWED_TARGETS", value_delimiter = ',')]
    allowed_targets: Option<Vec<String>>,
    /// Health endpoint address, or "off" [default: 127.0.0.1:22100]
    #[arg(long, env = "PONTE_CONNECTOR_HEALTH_LISTEN")]
    health_listen: Option<String>,
    /// Concurrent requests per device [default: 4]
    #[arg(long, env = "PONTE_CONNECTOR_PER_TARGET_CONCURRENCY")]
    per_target_concurrency: Option<usize>,
    /// PEM file with extra CAs trusted for the relay
    #[arg(long, env = "PONTE_CONNECTOR_RELAY_CA_FILE")]
    relay_ca_file: Option<PathBuf>,
    /// On SIGTERM, how long requests in flight get to finish, in ms [default: 10000]
    #[arg(long, env = "PONTE_CONNECTOR_SHUTDOWN_GRACE_MS")]
    shutdown_grace_ms: Option<u64>,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            let msg = e.to_string();
            let first = msg.lines().next().unwrap_or("invalid arguments");
            eprintln!("ponte-connector: {}", first.trim_start_matches("error: "));
            return ExitCode::from(EXIT_USAGE);
        }
    };
    init_logging();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(dispatch(cli.cmd)) {
        Ok(code) => code,
        Err(Failure::Usage(m)) => {
            eprintln!("ponte-connector: {m}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(Failure::Other(e)) => {
            eprintln!("ponte-connector: {e:#}");
            ExitCode::FAILURE
        }
    }
}

enum Failure {
    Usage(String),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Other(e)
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("PONTE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("PONTE_LOG_FORMAT").is_ok_and(|v| v == "json");
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        b.json().init();
    } else {
        b.init();
    }
}

fn config_path(c: &CommonArgs) -> PathBuf {
    c.config.clone().unwrap_or_else(config::default_path)
}

async fn dispatch(cmd: Cmd) -> Result<ExitCode, Failure> {
    match cmd {
        Cmd::Pair(a) => {
            let path = config_path(&a.common);
            let paired = match (a.server, a.code, a.relay_url, a.token) {
                (Some(server), Some(code), None, None) => {
                    let name = a.name.unwrap_or_else(|| "ponte-connector".into());
                    ponte_connector::pair::with_code(&server, &code, &name, &path).await?
                }
                (None, None, Some(relay), Some(token)) => {
                    ponte_connector::pair::with_token(&relay, &token, &path)?
                }
                _ => {
                    return Err(Failure::Usage(
                        "pair needs --server URL --code CODE, or --relay-url URL --token JWT"
                            .into(),
                    ))
                }
            };
            println!(
                "Paired connector {} with relay {}",
                paired.connector_id, paired.relay_url
            );
            println!("Config written to {} (mode 0600)", path.display());
            if let Some(e) = paired.expires_at {
                println!(
                    "Token expires at {e}; the relay rotates it automatically while connected"
                );
            }
            println!(
                "Start it with: ponte-connector run --config {}",
                path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Run(a) => {
            let cfg = run_config(&a)?;
            let shutdown = CancellationToken::new();
            let grace = cfg.shutdown_grace;
            let handle = ponte_connector::start(cfg, Default::default(), shutdown.clone()).await?;
            tracing::info!(version = env!("CARGO_PKG_VERSION"), health = ?handle.health_addr, "connector started");
            wait_for_signal().await;
            tracing::info!("stopping");
            shutdown.cancel();
            // The tunnel drains within the grace, then says goodbye (6 s at most: the
            // close queued, written, and answered); a second signal stops at once.
            tokio::select! {
                _ = tokio::time::timeout(grace + Duration::from_secs(7), handle.stopped()) => {}
                _ = wait_for_signal() => tracing::warn!("second signal: stopping without waiting"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Doctor(c) => {
            let path = config_path(&c);
            let file = FileConfig::load(&path, true).map_err(|e| Failure::Usage(e.0))?;
            let ok = ponte_connector::doctor::run(file, path).await;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

fn run_config(a: &RunArgs) -> Result<Config, Failure> {
    let path = config_path(&a.common);
    let explicit = a.common.config.is_some();
    let file = FileConfig::load(&path, explicit).map_err(|e| Failure::Usage(e.0))?;
    let flags = FileConfig {
        relay_url: a.relay_url.clone().map(RelayUrls::Many),
        token: a.token.clone().map(Secret::new),
        name: a.name.clone(),
        allowed_targets: a.allowed_targets.clone(),
        health_listen: a.health_listen.clone(),
        per_target_concurrency: a.per_target_concurrency,
        relay_ca_file: a.relay_ca_file.clone(),
        shutdown_grace_ms: a.shutdown_grace_ms,
        ..Default::default()
    };
    Config::from_file_config(flags.over(file), Some(path)).map_err(|e| Failure::Usage(e.0))
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
