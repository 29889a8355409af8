//! `ponte`: serve the cloud, administer it. Thin: parse, set up logging, call the library.

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use ponte::config::{Roles, ServeLayer, ServeSettings};
use ponte::{Cloud, CloudOptions};
use ponte_api::auth::{KeyFiles, UserAuth, UserClaims, UserKey};
use ponte_api::store::{self, EquipmentConfig};
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
    Demo(DemoArgs),
    /// Set up tenants, equipment and user tokens without SQL.
    Admin(AdminArgs),
}

#[derive(Args)]
struct StoreArgs {
    /// The `ponte serve` settings file, for its data_dir, database and user-JWT key
    #[arg(long, env = "PONTE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory: SQLite database and signing keys [default: ./ponte-data]
    #[arg(long, env = "PONTE_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Database URL (postgres://user@host/db) [default: SQLite in the data directory]
    #[arg(long, env = "PONTE_DATABASE", value_name = "URL")]
    database: Option<String>,
}

#[derive(Args)]
struct ServeArgs {
    /// TOML file with any of the settings below (keys are the flag names with `_`,
    /// e.g. `api_listen = "0.0.0.0:8000"`); flags and PONTE_… variables override it
    #[arg(long, env = "PONTE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory: SQLite database and signing keys [default: ./ponte-data]
    #[arg(long, env = "PONTE_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Database URL, postgres://user@host/db or sqlite:FILE [default: SQLite in the data
    /// directory]
    #[arg(long, env = "PONTE_DATABASE", value_name = "URL")]
    database: Option<String>,
    /// NATS URL for cluster routing (accepted, not used yet: this node routes only to
    /// connectors connected to it)
    #[arg(long, env = "PONTE_NATS", value_name = "URL")]
    nats: Option<String>,
    /// Roles to run, comma-separated: api, relay, gateway; api and relay always together
    /// until the NATS bus exists [default: api,relay,gateway]
    #[arg(long, env = "PONTE_ROLES", value_name = "LIST")]
    roles: Option<String>,
    /// API and console listen address [default: 127.0.0.1:8000]
    #[arg(long, env = "PONTE_API_LISTEN", value_name = "ADDR")]
    api_listen: Option<String>,
    /// Relay (/ws/connectors) listen address [default: 127.0.0.1:8001]
    #[arg(long, env = "PONTE_RELAY_LISTEN", value_name = "ADDR")]
    relay_listen: Option<String>,
    /// Remote-UI gateway listen address [default: 127.0.0.1:8002]
    #[arg(long, env = "PONTE_GATEWAY_LISTEN", value_name = "ADDR")]
    gateway_listen: Option<String>,
    /// Relay URL as connectors reach it [default: ws://<relay-listen>/ws/connectors]
    #[arg(long, env = "PONTE_RELAY_PUBLIC_URL", value_name = "URL")]
    relay_public_url: Option<String>,
    /// Gateway origin as browsers reach it; https:// makes the grant cookie Secure
    /// [default: http://<gateway-listen>]
    #[arg(long, env = "PONTE_GATEWAY_PUBLIC_URL", value_name = "URL")]
    gateway_public_url: Option<String>,
    /// Give each remote session its own origin, s-<session>.<gateway host> (needs
    /// wildcard DNS and certificate; *.localhost works without either) [default: false]
    #[arg(long, env = "PONTE_REMOTE_HOST_MODE", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    remote_host_mode: Option<bool>,
    /// Serve published routes on <slug>.<DOMAIN> (a wildcard DNS name with an optional
    /// port, e.g. pub.example.com; *.localhost works without DNS) [default: none]
    #[arg(long, env = "PONTE_PUBLIC_DOMAIN", value_name = "DOMAIN")]
    public_domain: Option<String>,
    /// Verify user JWTs with this HS256 secret (file) [default: the data directory's]
    #[arg(long, env = "PONTE_USER_JWT_SECRET_FILE", value_name = "FILE")]
    user_jwt_secret_file: Option<PathBuf>,
    /// Verify user JWTs with this RS256 public key (PEM file)
    #[arg(long, env = "PONTE_USER_JWT_PUBLIC_KEY", value_name = "FILE")]
    user_jwt_public_key: Option<PathBuf>,
    /// Connector token lifetime; rotated automatically a week before expiry [default: 90d]
    #[arg(long, env = "PONTE_CONNECTOR_TOKEN_TTL", value_name = "DURATION")]
    connector_token_ttl: Option<String>,
    /// Trust the last X-Forwarded-For hop as the client address (behind nginx)
    /// [default: false]
    #[arg(long, env = "PONTE_TRUST_FORWARDED_FOR", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    trust_forwarded_for: Option<bool>,
    /// On SIGTERM, how long requests in flight (downloads included) may take to finish
    /// before they are cut [default: 30s]
    #[arg(long, env = "PONTE_SHUTDOWN_GRACE", value_name = "DURATION")]
    shutdown_grace: Option<String>,
    /// A remote session ends after this long unused (sliding); 0 = never [default: 10m]
    #[arg(long, env = "PONTE_SESSION_IDLE_TTL", value_name = "DURATION")]
    session_idle_ttl: Option<String>,
    /// A remote session ends this long after it was opened, used or not; 0 = no cap
    /// [default: 4h]
    #[arg(long, env = "PONTE_SESSION_MAX_TTL", value_name = "DURATION")]
    session_max_ttl: Option<String>,
    /// Requests per second per remote session; 0 = no limit [default: 50]
    #[arg(long, env = "PONTE_SESSION_RATE_PER_SECOND", value_name = "N")]
    session_rate_per_second: Option<f64>,
    /// Requests a remote session may make at once above its rate; 0 = no limit
    /// [default: 200]
    #[arg(long, env = "PONTE_SESSION_RATE_BURST", value_name = "N")]
    session_rate_burst: Option<u32>,
    /// Requests per second per connector (gateway and proxy-http together); 0 = no
    /// limit [default: 200]
    #[arg(long, env = "PONTE_CONNECTOR_RATE_PER_SECOND", value_name = "N")]
    connector_rate_per_second: Option<f64>,
    /// Requests a connector may take at once above its rate; 0 = no limit [default: 400]
    #[arg(long, env = "PONTE_CONNECTOR_RATE_BURST", value_name = "N")]
    connector_rate_burst: Option<u32>,
    /// On every listener, a request's head must arrive whole within this, at most 30s;
    /// slower clients are disconnected [default: 10s]
    #[arg(long, env = "PONTE_HEADER_READ_TIMEOUT", value_name = "DURATION")]
    header_read_timeout: Option<String>,
    /// A kept-alive connection that sends no request for this long is closed (keep it
    /// above the upstream keepalive_timeout of a proxy in front) [default: 60s]
    #[arg(long, env = "PONTE_KEEPALIVE_IDLE_TIMEOUT", value_name = "DURATION")]
    keepalive_idle_timeout: Option<String>,
    /// Open connections per listener (api, relay, gateway each); past it, 503; 0 = no
    /// limit [default: 10000]
    #[arg(long, env = "PONTE_MAX_CONNECTIONS", value_name = "N")]
    max_connections: Option<u32>,
    /// Open connections per client address (IPv6: per /64) per listener; past it, 503;
    /// 0 = no limit. The TCP peer is counted: behind nginx that is nginx [default: 256;
    /// 0 with --trust-forwarded-for]
    #[arg(long, env = "PONTE_MAX_CONNECTIONS_PER_ADDRESS", value_name = "N")]
    max_connections_per_address: Option<u32>,
    /// Check the settings, print them resolved (passwords hidden) and exit
    #[arg(long)]
    check: bool,
}

impl ServeArgs {
    fn layer(&self) -> ServeLayer {
        ServeLayer {
            data_dir: self.data_dir.clone(),
            database: self.database.clone(),
            nats: self.nats.clone(),
            roles: self.roles.clone().map(Roles::Csv),
            api_listen: self.api_listen.clone(),
            relay_listen: self.relay_listen.clone(),
            gateway_listen: self.gateway_listen.clone(),
            relay_public_url: self.relay_public_url.clone(),
            gateway_public_url: self.gateway_public_url.clone(),
            remote_host_mode: self.remote_host_mode,
            public_domain: self.public_domain.clone(),
            user_jwt_secret_file: self.user_jwt_secret_file.clone(),
            user_jwt_public_key: self.user_jwt_public_key.clone(),
            connector_token_ttl: self.connector_token_ttl.clone(),
            trust_forwarded_for: self.trust_forwarded_for,
            shutdown_grace: self.shutdown_grace.clone(),
            session_idle_ttl: self.session_idle_ttl.clone(),
            session_max_ttl: self.session_max_ttl.clone(),
            session_rate_per_second: self.session_rate_per_second,
            session_rate_burst: self.session_rate_burst,
            connector_rate_per_second: self.connector_rate_per_second,
            connector_rate_burst: self.connector_rate_burst,
            header_read_timeout: self.header_read_timeout.clone(),
            keepalive_idle_timeout: self.keepalive_idle_timeout.clone(),
            max_connections: self.max_connections,
            max_connections_per_address: self.max_connections_per_address,
        }
    }
}

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

#[derive(Args)]
struct AdminArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(subcommand)]
    cmd: AdminCmd,
}

#[derive(Subcommand)]
enum AdminCmd {
    /// Institutions (tenants).
    #[command(subcommand)]
    Tenant(TenantCmd),
    /// Devices.
    #[command(subcommand)]
    Equipment(EquipmentCmd),
    /// Print a user JWT signed with the data directory's key.
    UserToken(UserTokenArgs),
}

#[derive(Subcommand)]
enum TenantCmd {
    /// Add (or rename) a client and one of its institutions.
    Add {
        #[arg(long)]
        cliente: i32,
        #[arg(long)]
        instituicao: i32,
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
enum EquipmentCmd {
    /// Register (or update) a device of an institution.
    Add {
        #[arg(long)]
        instituicao: i32,
        #[arg(long)]
        id: i32,
        #[arg(long)]
        name: String,
        /// Reach it through the institution's connector.
        #[arg(long)]
        addon: bool,
        /// The device as the connector sees it, e.g. http://192.168.1.50
        #[arg(long)]
        base_url: String,
        /// Accept the device's self-signed certificate.
        #[arg(long)]
        tls_insecure: bool,
    },
}

#[derive(Args)]
struct UserTokenArgs {
    #[arg(long)]
    user: i32,
    /// Institution the token grants (repeatable).
    #[arg(long, required_unless_present = "admin")]
    instituicao: Vec<i64>,
    /// Grant every institution.
    #[arg(long)]
    admin: bool,
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    ttl: Duration,
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
            Cmd::Demo(a) => demo(a).await,
            Cmd::Admin(a) => admin(a).await,
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
    let cfg = ServeSettings::resolve(a.layer(), a.config.as_deref()).map_err(Failure::Usage)?;
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

async fn admin(a: AdminArgs) -> Result<(), Failure> {
    // The same store and keys as `ponte serve` with the same settings.
    let flags = ServeLayer {
        data_dir: a.store.data_dir.clone(),
        database: a.store.database.clone(),
        ..Default::default()
    };
    let cfg = ServeSettings::resolve(flags, a.store.config.as_deref()).map_err(Failure::Usage)?;
    let mut opts = CloudOptions::new(&cfg.data_dir);
    opts.database = cfg.database.clone();
    if let AdminCmd::UserToken(t) = &a.cmd {
        let secret = match (&cfg.user_jwt_secret_file, &cfg.user_jwt_public_key) {
            (Some(f), _) => std::fs::read_to_string(f)
                .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", f.display())))?
                .trim()
                .as_bytes()
                .to_vec(),
            (None, Some(_)) => {
                return Err(Failure::Usage(
                    "user tokens are signed with the SaaS's RS256 key (user_jwt_public_key); \
                     ponte cannot mint them"
                        .into(),
                ))
            }
            (None, None) => KeyFiles::load_or_create(&opts.data_dir)?.user_secret,
        };
        let auth = UserAuth::new(UserKey::Hs256(secret)).context("loading the user token key")?;
        let exp = chrono::Utc::now().timestamp() as u64 + t.ttl.as_secs();
        let token = auth
            .mint(&UserClaims {
                sub: serde_json::json!(t.user),
                tenants: t.instituicao.clone(),
                admin: t.admin,
                exp,
                name: None,
                email: None,
            })
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        println!("{token}");
        return Ok(());
    }
    let url = opts.database_url();
    if opts.database.is_none() {
        std::fs::create_dir_all(&opts.data_dir)
            .with_context(|| format!("creating {}", opts.data_dir.display()))?;
    }
    let store = store::open(&url)
        .await
        .with_context(|| format!("opening the database {}", ponte::redact(&url)))?;
    match a.cmd {
        AdminCmd::Tenant(TenantCmd::Add {
            cliente,
            instituicao,
            name,
        }) => {
            store
                .upsert_client(cliente, &name)
                .await
                .map_err(anyhow::Error::from)?;
            store
                .upsert_institution(cliente, instituicao, &name)
                .await
                .map_err(|e| Failure::Usage(e.to_string()))?;
            println!("institution {instituicao} ({name}) of client {cliente} is ready");
        }
        AdminCmd::Equipment(EquipmentCmd::Add {
            instituicao,
            id,
            name,
            addon,
            base_url,
            tls_insecure,
        }) => {
            if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
                return Err(Failure::Usage(format!(
                    "--base-url must be http:// or https://, not {base_url:?}"
                )));
            }
            if store
                .institution(instituicao)
                .await
                .map_err(anyhow::Error::from)?
                .is_none()
            {
                return Err(Failure::Usage(format!(
                    "institution {instituicao} does not exist (ponte admin tenant add …)"
                )));
            }
            store
                .put_equipment(&store::Equipment {
                    id,
                    tenant_id: instituicao,
                    name: name.clone(),
                    brand: None,
                    model: None,
                    ip: None,
                    active: true,
                    uses_addon: addon,
                    config: Some(sqlx_json(EquipmentConfig {
                        local_base_url: Some(base_url.trim_end_matches('/').to_owned()),
                        tls_insecure,
                        ..Default::default()
                    })),
                })
                .await
                .map_err(|e| Failure::Usage(e.to_string()))?;
            println!("equipment {id} ({name}) registered in institution {instituicao}");
        }
        AdminCmd::UserToken(_) => unreachable!("handled above"),
    }
    Ok(())
}

fn sqlx_json<T>(t: T) -> ponte_api::store::Json<T> {
    ponte_api::store::Json(t)
}
