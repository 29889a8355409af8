//! `ponte`: serve the cloud, administer it. Thin: parse, set up logging, call the library.

use clap::{Args, Parser, Subcommand};
use ponte::config::{ServeLayer, ServeSettings};
use ponte::{Cloud, CloudOptions, Failure};
use ponte_api::auth::UserKey;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Exit code for usage and configuration errors (EX_USAGE).
const EXIT_USAGE: u8 = 64;

/// At exit, how long the audit queue may wait for an unavailable store (inside the
/// unit's TimeoutStopSec, after the drain's grace).
const STORE_FLUSH_GRACE: Duration = Duration::from_secs(10);

#[derive(Parser)]
#[command(
    name = "ponte",
    version,
    about = "Ponte cloud: relay for on-prem connectors and the tenant-scoped API"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the cloud roles (api + console, relay, gateway) until SIGTERM / Ctrl-C.
    Serve(Box<ServeArgs>),
    /// Run everything on this machine: cloud, two simulated turnstiles and a paired
    /// connector; prints the console link.
    #[cfg(feature = "demo")]
    Demo(DemoArgs),
    /// Set up tenants, equipment and user tokens without SQL.
    Admin(ponte::admin::AdminArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// TOML file with any of the settings below (keys are the flag names with `_`,
    /// e.g. `api_listen = "0.0.0.0:8000"`); flags and PONTE_… variables override it
    #[arg(long, env = "PONTE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Check the settings, print them resolved (passwords hidden) and exit
    #[arg(long)]
    check: bool,
    #[command(flatten)]
    settings: ServeLayer,
}

#[cfg(feature = "demo")]
#[derive(Args)]
struct DemoArgs {
    /// Keep the database, keys and connector config here (new, empty, or a previous
    /// demo's) [default: a temporary directory, removed on exit]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// API and console listen address
    #[arg(long, default_value = "127.0.0.1:8000", value_name = "ADDR")]
    api_listen: String,
    /// Relay listen address
    #[arg(long, default_value = "127.0.0.1:8001", value_name = "ADDR")]
    relay_listen: String,
    /// Remote-UI gateway listen address
    #[arg(long, default_value = "127.0.0.1:8002", value_name = "ADDR")]
    gateway_listen: String,
    /// Each remote session on its own origin, s-<session>.localhost
    #[arg(long)]
    remote_host_mode: bool,
    /// On Ctrl-C / SIGTERM, how long requests in flight may take to finish
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    shutdown_grace: Duration,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if e.use_stderr() => {
            let msg = e.to_string();
            let first = msg.lines().next().unwrap_or("invalid arguments");
            eprintln!(
                "ponte: {} (see --help)",
                first.trim_start_matches("error: ")
            );
            return ExitCode::from(EXIT_USAGE);
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    init_logging();
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let result = rt.block_on(async {
        match cli.cmd {
            Cmd::Serve(a) => serve(*a).await,
            #[cfg(feature = "demo")]
            Cmd::Demo(a) => demo(a).await,
            Cmd::Admin(a) => ponte::admin::run(a).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(m)) => {
            eprintln!("ponte: {m}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(Failure::Other(e)) => {
            eprintln!("ponte: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("PONTE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("PONTE_LOG_FORMAT").is_ok_and(|v| v == "json");
    let b = tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        b.json().init();
    } else {
        b.init();
    }
}

async fn serve(a: ServeArgs) -> Result<(), Failure> {
    let cfg = ServeSettings::resolve(a.settings, a.config.as_deref()).map_err(Failure::Usage)?;
    if a.check {
        print!("{}", cfg.to_toml());
        return Ok(());
    }
    let mut signals = Signals::new();
    if let Some(nats) = &cfg.nats {
        tracing::warn!(
            nats = %ponte::redact(nats),
            "the NATS bus is not built yet: ignoring --nats; this node routes requests \
             only to connectors connected to it"
        );
    }
    let user_key = match (&cfg.user_jwt_secret_file, &cfg.user_jwt_public_key) {
        (Some(f), _) => Some(UserKey::Hs256(
            std::fs::read_to_string(f)
                .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", f.display())))?
                .trim()
                .as_bytes()
                .to_vec(),
        )),
        (None, Some(f)) => {
            Some(UserKey::Rs256Public(std::fs::read(f).map_err(|e| {
                Failure::Usage(format!("cannot read {}: {e}", f.display()))
            })?))
        }
        (None, None) => None,
    };
    let has = |r: &str| cfg.roles.iter().any(|x| x == r);
    let api_l = bind(&cfg.api_listen).await?;
    let relay_l = bind(&cfg.relay_listen).await?;
    let gateway_l = match has("gateway") {
        true => Some(bind(&cfg.gateway_listen).await?),
        false => None,
    };
    let mut opts = CloudOptions::new(&cfg.data_dir);
    opts.database = cfg.database.clone();
    opts.user_key = user_key;
    opts.connector_token_ttl = cfg.connector_token_ttl;
    opts.api.relay_public_url = cfg
        .relay_public_url
        .clone()
        .unwrap_or_else(|| format!("ws://{}/ws/connectors", relay_l.local_addr().unwrap()));
    opts.api.gateway_public_url = match (&cfg.gateway_public_url, &gateway_l) {
        (Some(u), _) => u.clone(),
        (None, Some(l)) => format!("http://{}", l.local_addr().unwrap()),
        (None, None) => "http://127.0.0.1:8002".into(),
    };
    opts.api.remote_host_mode = cfg.remote_host_mode;
    opts.api.public_domain = cfg.public_domain.clone();
    opts.api.trust_forwarded_for = cfg.trust_forwarded_for;
    cfg.apply_limits(&mut opts.api);
    opts.listen = cfg.listen_limits();
    let shutdown = CancellationToken::new();
    let cloud: Cloud = ponte::start(opts, api_l, relay_l, shutdown.clone()).await?;
    let gateway = match gateway_l {
        Some(l) => {
            let addr = cloud
                .serve_gateway(l, shutdown.child_token())
                .map_err(|e| Failure::Usage(format!("{e:#}")))?;
            format!(", gateway on http://{addr}")
        }
        None => String::new(),
    };
    eprintln!(
        "ponte: api on http://{}, relay on ws://{}/ws/connectors{gateway}",
        cloud.api_addr, cloud.relay_addr
    );
    stop_on_signal(&mut signals, &cloud, &shutdown, cfg.shutdown_grace).await;
    Ok(())
}

/// Waits for SIGTERM / Ctrl-C, then drains: no new requests, those in flight get
/// `grace` to finish (a second signal cuts them), then the relay and the rest stop.
async fn stop_on_signal(
    signals: &mut Signals,
    cloud: &Cloud,
    shutdown: &CancellationToken,
    grace: Duration,
) {
    signals.recv().await;
    tracing::info!(grace_s = grace.as_secs(), "signal received; draining");
    let drained = tokio::select! {
        d = cloud.drain(grace) => d,
        _ = signals.recv() => false,
    };
    if drained {
        tracing::info!("requests in flight finished; stopping");
    } else {
        tracing::warn!("requests still in flight are cut; stopping");
    }
    let lost = cloud.flush(STORE_FLUSH_GRACE).await;
    if lost > 0 {
        tracing::error!(lost, "audit entries could not be written before exit");
    }
    shutdown.cancel();
    // Let the relay's close frames and the heartbeat flush go out.
    tokio::time::sleep(Duration::from_millis(200)).await;
    cloud.store.close().await;
}

#[cfg(feature = "demo")]
async fn demo(a: DemoArgs) -> Result<(), Failure> {
    let mut signals = Signals::new();
    let shutdown = CancellationToken::new();
    let a_temp = a.data_dir.is_none();
    let data_dir = a.data_dir.unwrap_or_else(ponte::demo::temporary_dir);
    let opts = ponte::demo::DemoOptions {
        data_dir: data_dir.clone(),
        temporary: a_temp,
        api_listen: a.api_listen,
        relay_listen: a.relay_listen,
        gateway_listen: a.gateway_listen,
        remote_host_mode: a.remote_host_mode,
    };
    // Ctrl-C while starting (waiting for the connector) stops cleanly too.
    let started = tokio::select! {
        r = ponte::demo::start(opts, shutdown.clone()) => r,
        _ = signals.recv() => {
            shutdown.cancel();
            ponte::demo::cleanup(&data_dir, a_temp);
            eprintln!("ponte demo: stopped while starting");
            return Ok(());
        }
    };
    let demo = match started {
        Ok(d) => d,
        Err(e) => {
            shutdown.cancel();
            ponte::demo::cleanup(&data_dir, a_temp);
            let msg = format!("{e:#}");
            return Err(
                match msg.starts_with("cannot listen") || msg.contains("not a demo data directory")
                {
                    true => Failure::Usage(msg),
                    false => Failure::Other(e),
                },
            );
        }
    };
    let api = demo.cloud.api_addr;
    let mut devices = String::new();
    for (id, d) in &demo.devices {
        devices.push_str(&format!(
            "\n    {id}  {:<28} {}  (login admin / admin)",
            d.name(),
            d.base_url()
        ));
    }
    println!(
        "Ponte demo is running.\n\
         \n  Console   {console}\n            (signs you in as Admin Demo; one use, 15 min — then use the token below at http://{api}/entrar)\
         \n  API       http://{api}/api   (OpenAPI: http://{api}/api/openapi.json)\
         \n  Relay     ws://{relay}/ws/connectors   connector paired with code {code}, ONLINE\
         \n  Gateway   http://{gw}\
         \n  Metrics   http://{api}/metrics\
         \n  Data      {data}{temp}\
         \n  Turnstiles on the simulated LAN:{devices}\
         \n    {pos_id}  {pos_name:<28} {pos_url}  (POS: quotes under /approve/, back office /admin)\
         \n  Public    {public}\
         \n            (the POS quote's approval link: a published route, /approve/* only, no login)\
         \n\n  Admin token (8 h): {token}\
         \n  Try: TOKEN=<the token>; curl -s -H \"authorization: Bearer $TOKEN\" http://{api}/api/instituicao/2/connector/status\
         \n\nOpen the console, pick a turnstile, click \"Gerenciar Remotamente\". Ctrl-C stops everything.",
        console = demo.console_url,
        pos_id = demo.pos.0,
        pos_name = demo.pos.1.name(),
        pos_url = demo.pos.1.base_url(),
        public = demo.public_url,
        relay = demo.cloud.relay_addr,
        gw = demo.gateway_addr,
        code = demo.pairing_code,
        token = demo.admin_token,
        data = demo.data_dir.display(),
        temp = if a_temp { "   (temporary: removed on exit)" } else { "" },
    );
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    stop_on_signal(&mut signals, &demo.cloud, &shutdown, a.shutdown_grace).await;
    demo.cleanup();
    eprintln!("ponte demo: stopped");
    Ok(())
}

async fn bind(addr: &str) -> Result<tokio::net::TcpListener, Failure> {
    // The address parsed; binding can still fail (in use, no permission).
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Failure::Usage(format!("cannot listen on {addr}: {e}")))
}

/// SIGINT and SIGTERM, listened for from creation on: a signal that arrives between two
/// waits is kept for the next (a fresh `ctrl_c()` would miss it, and the process would
/// not stop).
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        Self {
            int: signal(SignalKind::interrupt()).expect("SIGINT handler"),
            term: signal(SignalKind::terminate()).expect("SIGTERM handler"),
        }
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}
