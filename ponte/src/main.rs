//! `ponte`: serve the cloud, administer it. Thin: parse, set up logging, call the library.

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use ponte::{Cloud, CloudOptions};
use ponte_api::auth::{KeyFiles, UserAuth, UserClaims, UserKey};
use ponte_api::store::{self, EquipmentConfig};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Exit code for usage and configuration errors (EX_USAGE).
const EXIT_USAGE: u8 = 64;

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
    /// Run the cloud roles (api, relay) until SIGTERM / Ctrl-C.
    Serve(ServeArgs),
    /// Set up tenants, equipment and user tokens without SQL.
    Admin(AdminArgs),
}

#[derive(Args)]
struct StoreArgs {
    /// Data directory: SQLite database and signing keys.
    #[arg(long, env = "PONTE_DATA_DIR", default_value = "./ponte-data")]
    data_dir: PathBuf,
    /// Database URL (postgres://user@host/db); default: SQLite in the data directory.
    #[arg(long, env = "PONTE_DATABASE")]
    database: Option<String>,
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Roles to run, comma-separated: api, relay, gateway. api and relay always run
    /// together (they share the connector sockets until the NATS bus exists).
    #[arg(
        long,
        env = "PONTE_ROLES",
        default_value = "api,relay,gateway",
        value_delimiter = ','
    )]
    roles: Vec<String>,
    #[arg(long, env = "PONTE_GATEWAY_LISTEN", default_value = "127.0.0.1:8002")]
    gateway_listen: String,
    #[arg(long, env = "PONTE_API_LISTEN", default_value = "127.0.0.1:8000")]
    api_listen: String,
    #[arg(long, env = "PONTE_RELAY_LISTEN", default_value = "127.0.0.1:8001")]
    relay_listen: String,
    /// Relay URL as connectors reach it [default: ws://<relay-listen>/ws/connectors]
    #[arg(long, env = "PONTE_RELAY_PUBLIC_URL")]
    relay_public_url: Option<String>,
    /// Gateway origin as browsers reach it [default: http://<gateway-listen>]
    #[arg(long, env = "PONTE_GATEWAY_PUBLIC_URL")]
    gateway_public_url: Option<String>,
    /// Give each remote session its own origin, s-<session>.<gateway host> (needs
    /// wildcard DNS and certificate; *.localhost works without either)
    #[arg(long, env = "PONTE_REMOTE_HOST_MODE")]
    remote_host_mode: bool,
    /// Verify user JWTs with this HS256 secret (file) instead of the data directory's.
    #[arg(
        long,
        env = "PONTE_USER_JWT_SECRET_FILE",
        conflicts_with = "user_jwt_public_key"
    )]
    user_jwt_secret_file: Option<PathBuf>,
    /// Verify user JWTs with this RS256 public key (PEM file).
    #[arg(long, env = "PONTE_USER_JWT_PUBLIC_KEY")]
    user_jwt_public_key: Option<PathBuf>,
    /// Connector token lifetime (rotated automatically a week before expiry).
    #[arg(long, env = "PONTE_CONNECTOR_TOKEN_TTL", default_value = "90d", value_parser = humantime::parse_duration)]
    connector_token_ttl: Duration,
    /// Trust the last X-Forwarded-For hop as the client address (behind nginx).
    #[arg(long, env = "PONTE_TRUST_FORWARDED_FOR")]
    trust_forwarded_for: bool,
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
            Cmd::Serve(a) => serve(a).await,
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
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        b.json().init();
    } else {
        b.init();
    }
}

async fn serve(a: ServeArgs) -> Result<(), Failure> {
    for role in &a.roles {
        if !matches!(role.as_str(), "api" | "relay" | "gateway") {
            return Err(Failure::Usage(format!(
                "unknown role {role:?} in --roles (known: api, relay, gateway)"
            )));
        }
    }
    let has = |r: &str| a.roles.iter().any(|x| x == r);
    if !(has("api") && has("relay")) {
        return Err(Failure::Usage(
            "--roles must include api and relay (they share the connector sockets; \
             running them apart needs the NATS bus, not built yet)"
                .into(),
        ));
    }
    let user_key = match (&a.user_jwt_secret_file, &a.user_jwt_public_key) {
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
    let api_l = bind(&a.api_listen).await?;
    let relay_l = bind(&a.relay_listen).await?;
    let gateway_l = match has("gateway") {
        true => Some(bind(&a.gateway_listen).await?),
        false => None,
    };
    let mut opts = CloudOptions::new(&a.store.data_dir);
    opts.database = a.store.database;
    opts.user_key = user_key;
    opts.connector_token_ttl = a.connector_token_ttl;
    opts.api.relay_public_url = a
        .relay_public_url
        .unwrap_or_else(|| format!("ws://{}/ws/connectors", relay_l.local_addr().unwrap()));
    opts.api.gateway_public_url = match (&a.gateway_public_url, &gateway_l) {
        (Some(u), _) => u.trim_end_matches('/').to_owned(),
        (None, Some(l)) => format!("http://{}", l.local_addr().unwrap()),
        (None, None) => "http://127.0.0.1:8002".into(),
    };
    opts.api.remote_host_mode = a.remote_host_mode;
    opts.api.trust_forwarded_for = a.trust_forwarded_for;
    let shutdown = CancellationToken::new();
    let cloud: Cloud = ponte::start(opts, api_l, relay_l, shutdown.clone()).await?;
    let gateway = match gateway_l {
        Some(l) => {
            let addr = cloud.serve_gateway(l, shutdown.child_token())?;
            format!(", gateway on http://{addr}")
        }
        None => String::new(),
    };
    eprintln!(
        "ponte: api on http://{}, relay on ws://{}/ws/connectors{gateway}",
        cloud.api_addr, cloud.relay_addr
    );
    wait_for_signal().await;
    tracing::info!("shutting down");
    shutdown.cancel();
    // Let the directory flush and sockets close.
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(())
}

async fn bind(addr: &str) -> Result<tokio::net::TcpListener, Failure> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Failure::Usage(format!("cannot listen on {addr}: {e}")))
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

async fn admin(a: AdminArgs) -> Result<(), Failure> {
    let mut opts = CloudOptions::new(&a.store.data_dir);
    opts.database = a.store.database;
    if let AdminCmd::UserToken(t) = &a.cmd {
        let keys = KeyFiles::load_or_create(&opts.data_dir)?;
        let auth = UserAuth::new(UserKey::Hs256(keys.user_secret))
            .context("loading the user token key")?;
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
