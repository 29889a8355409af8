//! Composes the cloud roles into one process: the store, the relay (`/ws/connectors`) and
//! the API (`/api`). The binary and the integration tests both start the cloud through
//! [`start`], so what is tested is what runs.

use anyhow::Context as _;
use ponte_api::auth::{ConnectorIssuer, KeyFiles, UserAuth, UserKey};
use ponte_api::directory::StoreDirectory;
use ponte_api::store::{self, Store};
use ponte_api::{Api, ApiConfig};
use ponte_relay::{ConnConfig, Relay, RelayConfig, TokenVerifier};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

pub mod admin;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod metrics;

/// Everything `ponte serve` needs besides its listeners.
#[derive(Debug, Clone)]
pub struct CloudOptions {
    /// `sqlite:…` or `postgres://…`; default `sqlite:<data_dir>/ponte.db`.
    pub database: Option<String>,
    /// Holds the SQLite database and the signing keys.
    pub data_dir: PathBuf,
    /// Verifies user JWTs; default: the HS256 secret in the data dir.
    pub user_key: Option<UserKey>,
    /// Lifetime of connector tokens.
    pub connector_token_ttl: Duration,
    pub api: ApiConfig,
    /// Signing keys; default: loaded from (or created in) `data_dir`.
    pub keys: Option<KeyFiles>,
    /// Timeouts and connection caps of each listener (API, relay, gateway).
    pub listen: ponte_listen::Limits,
}

/// Why a command failed: a usage or settings mistake (one line, exit 64), or anything
/// else (exit 1).
pub enum Failure {
    Usage(String),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Other(e)
    }
}

impl CloudOptions {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            database: None,
            data_dir: data_dir.into(),
            user_key: None,
            connector_token_ttl: Duration::from_secs(90 * 24 * 3600),
            api: ApiConfig::default(),
            keys: None,
            listen: ponte_listen::Limits::default(),
        }
    }

    pub fn database_url(&self) -> String {
        self.database.clone().unwrap_or_else(|| {
            format!(
                "sqlite:{}?mode=rwc",
                self.data_dir.join("ponte.db").display()
            )
        })
    }
}

/// A running cloud.
pub struct Cloud {
    pub api: Arc<Api>,
    pub relay: Relay,
    pub store: Arc<dyn Store>,
    pub api_addr: SocketAddr,
    pub relay_addr: SocketAddr,
    pub directory: Arc<StoreDirectory>,
    /// Secret the remote-UI grants are derived from (the data directory's).
    grant_secret: Vec<u8>,
    /// Stops the HTTP listeners (API, gateway) without touching the relay: a drain.
    http_stop: CancellationToken,
    /// The HTTP servers, each done once its last in-flight request has finished.
    servers: TaskTracker,
    /// Each listener's timeouts and caps.
    listen: ponte_listen::Limits,
}

impl Cloud {
    /// Serves the remote-UI gateway role on `listener` until `shutdown`. Its public URL
    /// (https: grant cookies are `Secure`) and host mode come from the API's settings,
    /// so the links the API hands out and the gateway agree.
    pub fn serve_gateway(
        &self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> anyhow::Result<SocketAddr> {
        let addr = listener.local_addr()?;
        let authority =
            ponte_api::remote::RemoteAuthority::new(Arc::clone(&self.api), &self.grant_secret);
        let public = &self.api.cfg.gateway_public_url;
        let host_mode = match self.api.cfg.remote_host_mode {
            true => Some(self.api.cfg.remote_domain().with_context(|| {
                format!(
                    "host mode needs a gateway public URL with a DNS name (sessions get \
                     s-<id>.<name>), not {public:?}"
                )
            })?),
            false => None,
        };
        let https = public.starts_with("https://");
        let published = self.api.cfg.public_domain.as_ref().map(|domain| {
            let mut p = ponte_gateway::PublicConfig::new(domain);
            p.https = https;
            p.trust_forwarded_for = self.api.cfg.trust_forwarded_for;
            p
        });
        if let Some(p) = &published {
            // A route's page runs the device's script: on a name related to the gateway's
            // or the API's it could set cookies for them (and the reverse).
            for (what, url) in [
                ("gateway_public_url", public.as_str()),
                ("relay_public_url", self.api.cfg.relay_public_url.as_str()),
            ] {
                if let Some(host) = url_host(url) {
                    anyhow::ensure!(
                        !related_names(&p.domain, &host),
                        "public_domain {:?} is too close to {what}'s host {host:?}: published \
                         routes need a domain of their own (not the same name, a parent, a \
                         child or a sibling), e.g. pub.example.net beside remote.example.com",
                        p.domain
                    );
                }
            }
        }
        let gateway = ponte_gateway::Gateway::new(
            Arc::new(self.relay.clone()),
            authority,
            ponte_gateway::GatewayConfig {
                secure_cookies: https,
                host_mode,
                ws_write_timeout: self.api.cfg.remote_ws_write_timeout,
                public: published,
                ..Default::default()
            },
        )
        .with_routes(ponte_api::published::RouteDesk::new(Arc::clone(&self.api)));
        let app = ponte_gateway::app(gateway);
        // Stops on the caller's shutdown or on a drain, whichever comes first.
        let stop = self.http_stop.child_token();
        let either = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => either.cancel(),
                _ = either.cancelled() => {}
            }
        });
        let limits = self.listen.clone();
        self.servers
            .spawn(ponte_listen::serve("gateway", listener, app, limits, stop));
        info!(gateway_addr = %addr, "gateway started");
        Ok(addr)
    }

    /// Graceful stop, first half: the API and gateway stop accepting connections, the
    /// relay refuses new connector connections and asks connectors to move
    /// ([`ponte_relay::Relay::move_connectors`]), and this waits up to `grace` for the
    /// requests in flight (a download included) to finish; true if they all did. The
    /// relay keeps serving the connectors still here meanwhile, since the streams in
    /// flight ride on them: cancel the shutdown token afterwards.
    /// Device WebSockets already upgraded are not waited for; the relay's stop closes them.
    pub async fn drain(&self, grace: Duration) -> bool {
        self.http_stop.cancel();
        self.servers.close();
        // Connectors that speak `reconnect` move to another node early in the grace (a
        // quarter of it, at most 10 s, spread at random), while what is in flight here
        // finishes on their old connections.
        self.relay
            .move_connectors((grace / 4).min(Duration::from_secs(10)));
        let in_flight = self.relay.streams_in_flight();
        info!(
            in_flight,
            grace_s = grace.as_secs(),
            "draining: no new requests"
        );
        tokio::time::timeout(grace, self.servers.wait())
            .await
            .is_ok()
    }

    /// Graceful stop, second half (after [`Cloud::drain`]): writes what the API keeps
    /// in memory for the store, the audit queue and session usage, retrying for up to
    /// `grace` while the store is unavailable. Returns the audit entries left unwritten.
    pub async fn flush(&self, grace: Duration) -> usize {
        let lost = self.api.flush(grace).await;
        self.directory.flush().await;
        lost
    }
}

/// Opens the store (applying migrations), loads or creates keys, and serves the API on
/// `api_listener` and the relay on `relay_listener` until `shutdown`.
pub async fn start(
    opts: CloudOptions,
    api_listener: TcpListener,
    relay_listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<Cloud> {
    let keys = match opts.keys.clone() {
        Some(k) => k,
        None => KeyFiles::load_or_create(&opts.data_dir)?,
    };
    let url = opts.database_url();
    let store = store::open(&url)
        .await
        .with_context(|| format!("opening the database {}", redact(&url)))?;
    // The per-request lookups (session, equipment, connector) from memory.
    let store = store::CachedStore::wrap(store);
    // Nothing is connected to a process that has just started.
    store.mark_all_offline().await?;
    let verifier = TokenVerifier::from_rsa_pems(&[&keys.connector_public_pem])
        .context("loading the connector verification key")?;
    let directory = StoreDirectory::new(Arc::clone(&store));
    tokio::spawn(Arc::clone(&directory).run(opts.api.heartbeat_flush, shutdown.child_token()));
    let relay = Relay::new(
        RelayConfig {
            verifier,
            directory: directory.clone(),
            conn: ConnConfig::default(),
            read_buffer: 4096,
        },
        shutdown.child_token(),
    );
    let user_key = opts
        .user_key
        .clone()
        .unwrap_or_else(|| UserKey::Hs256(keys.user_secret.clone()));
    let users = UserAuth::new(user_key).context("loading the user token key")?;
    let issuer =
        ConnectorIssuer::from_rsa_pem(&keys.connector_private_pem, opts.connector_token_ttl)
            .context("loading the connector signing key")?;
    let api = Api::new(
        opts.api.clone(),
        Arc::clone(&store),
        Arc::new(relay.clone()),
        users,
        issuer,
    );
    tokio::spawn(Arc::clone(&api).maintain(shutdown.child_token()));
    let api_addr = api_listener.local_addr()?;
    let relay_addr = relay_listener.local_addr()?;
    tokio::spawn(ponte_relay::serve_with(
        relay_listener,
        relay.clone(),
        opts.listen.clone(),
        shutdown.child_token(),
    ));
    let prometheus = metrics::handle();
    tokio::spawn(metrics::upkeep(prometheus, shutdown.child_token()));
    let scraped = relay.clone();
    let app = ponte_api::app(Arc::clone(&api)).route(
        "/metrics",
        axum::routing::get(move || std::future::ready(metrics::render(&scraped))),
    );
    let http_stop = shutdown.child_token();
    let servers = TaskTracker::new();
    servers.spawn(ponte_listen::serve(
        "api",
        api_listener,
        app,
        opts.listen.clone(),
        http_stop.clone(),
    ));
    info!(%api_addr, %relay_addr, store = store.backend(), "ponte cloud started");
    Ok(Cloud {
        api,
        relay,
        store,
        api_addr,
        relay_addr,
        directory,
        grant_secret: keys.user_secret.clone(),
        http_stop,
        servers,
        listen: opts.listen.clone(),
    })
}

/// A database URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..s + 3], user, &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// The host name of a URL, lower case, without port.
fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = match authority.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    };
    Some(host.to_ascii_lowercase())
}

/// Whether two host names (ports ignored) are the same, one under the other, or siblings
/// under one parent: names whose pages could set cookies for each other without a public
/// suffix between them. Loopback names (`localhost`, `*.localhost`) are for trying Ponte
/// on one machine and never related.
pub fn related_names(a: &str, b: &str) -> bool {
    let bare = |n: &str| {
        let n = n.to_ascii_lowercase();
        let n = match n.rsplit_once(':') {
            Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h.to_owned(),
            _ => n,
        };
        n.trim_end_matches('.').to_owned()
    };
    let (a, b) = (bare(a), bare(b));
    let local = |n: &str| n == "localhost" || n.ends_with(".localhost");
    if local(&a)
        || local(&b)
        || a.parse::<std::net::IpAddr>().is_ok()
        || b.parse::<std::net::IpAddr>().is_ok()
    {
        return false;
    }
    let under = |x: &str, y: &str| x == y || x.ends_with(&format!(".{y}"));
    let parent = |n: &str| n.split_once('.').map(|(_, p)| p.to_owned());
    under(&a, &b)
        || under(&b, &a)
        || matches!((parent(&a), parent(&b)), (Some(pa), Some(pb)) if pa == pb && pa.contains('.'))
}

#[cfg(test)]
mod related_tests {
    use super::related_names;

    #[test]
    fn public_domains_close_to_the_gateway_are_refused() {
        for (a, b) in [
            ("pub.example.com", "remote.example.com"),
            ("pub.example.com", "example.com"),
            ("remote.pub.example.com", "pub.example.com"),
            ("pub.example.com:443", "PUB.example.com"),
        ] {
            assert!(related_names(a, b), "{a} {b}");
        }
        for (a, b) in [
            ("pub.example.net", "remote.example.com"),
            ("pub.localhost:8002", "localhost"),
            ("pub.localhost:8002", "127.0.0.1"),
            ("rotas.empresa.com.br", "remoto.outra.com.br"),
        ] {
            assert!(!related_names(a, b), "{a} {b}");
        }
    }
}
