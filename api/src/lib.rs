//! Ponte's cloud API: the store, user auth, pairing, remote sessions and the
//! tenant-scoped `/api` routes. It reaches connectors only through the [`Router`] port
//! (send a request, close a socket, push a rotated token), so it runs the same beside an
//! in-process relay or a remote one.
#![forbid(unsafe_code)]

pub mod audit;
pub mod auth;
pub mod directory;
pub mod error;
pub mod published;
pub mod ratelimit;
pub mod remote;
mod routes;
mod service;
pub mod sessions;
pub mod store;

use auth::{ConnectorIssuer, User, UserAuth};
use ponte_core::Router;
use ratelimit::{RateLimitConfig, RateLimits};
use sessions::{SessionConfig, Sessions};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::Store;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use routes::{app, openapi};

/// API settings.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// `ws(s)://…/ws/connectors` as connectors reach it; returned by claim.
    pub relay_public_url: String,
    /// `http(s)://…` of the gateway origin; session URLs start with it.
    pub gateway_public_url: String,
    /// Host mode: each remote session gets an origin of its own,
    /// `s-{sid}.<gateway host>` (wildcard DNS and certificate; `*.localhost` needs
    /// neither), and its launch URL points there.
    pub remote_host_mode: bool,
    /// Remote sessions: longest one device WebSocket message may take to be written to
    /// the browser; a browser that stops reading longer has that WebSocket closed (30 s).
    pub remote_ws_write_timeout: Duration,
    /// Pairing codes live this long (15 min).
    pub pairing_ttl: Duration,
    /// A connector token is rotated when it has less than this left.
    pub rotate_before: Duration,
    /// How often to look for tokens to rotate and sessions to expire.
    pub maintenance_every: Duration,
    /// How often batched heartbeats are written.
    pub heartbeat_flush: Duration,
    pub sessions: SessionConfig,
    pub rate_limits: RateLimitConfig,
    /// Largest device response proxy-http returns (larger: 413).
    pub proxy_max_response: usize,
    /// Largest proxy-http request body, after decoding (larger: 413).
    pub proxy_max_request: usize,
    /// Device response bytes all proxy-http calls together may buffer (64 MiB).
    pub proxy_budget: usize,
    /// Trust the last `X-Forwarded-For` hop as the client address (behind nginx).
    pub trust_forwarded_for: bool,
    /// Published routes: the domain their hosts are under (`pub.example.com`,
    /// `localhost:8002`, as in `Host`); each route is `{slug}.<domain>`, with the gateway
    /// public URL's scheme. `None`: routes cannot be published.
    pub public_domain: Option<String>,
}

impl ApiConfig {
    /// Where a browser opens a session: `<gateway>/remote/launch/<code>`, or in host mode
    /// `<scheme>://s-{sid}.<remote domain>/remote/launch/<code>`.
    pub fn launch_url(&self, session_id: &str, code: &str) -> String {
        let base = self.gateway_public_url.trim_end_matches('/');
        match (self.remote_domain(), base.split_once("://")) {
            (Some(domain), Some((scheme, _))) if self.remote_host_mode => {
                format!("{scheme}://s-{session_id}.{domain}/remote/launch/{code}")
            }
            _ => format!("{base}/remote/launch/{code}"),
        }
    }

    /// A published route's URL: `<scheme>://{slug}.<public domain>`, the scheme that of
    /// the gateway public URL. `None` without a public domain.
    pub fn route_url(&self, slug: &str) -> Option<String> {
        let domain = self.public_domain.as_deref()?;
        let scheme = self
            .gateway_public_url
            .split_once("://")
            .map_or("http", |(s, _)| s);
        Some(format!("{scheme}://{slug}.{domain}"))
    }

    /// Host mode's remote domain: the gateway public URL's `host[:port]`, lower case,
    /// without a default port (as browsers send it in `Host`); `None` when the URL has
    /// none, or names an IP address (an address has no subdomains).
    pub fn remote_domain(&self) -> Option<String> {
        let (scheme, rest) = self.gateway_public_url.split_once("://")?;
        let authority = rest.split(['/', '?', '#']).next()?.to_ascii_lowercase();
        let default = match scheme.to_ascii_lowercase().as_str() {
            "https" => ":443",
            _ => ":80",
        };
        let authority = authority
            .strip_suffix(default)
            .map(str::to_owned)
            .unwrap_or(authority);
        let host = authority
            .rsplit_once(':')
            .map_or(authority.as_str(), |(h, _)| h);
        let ip = host.starts_with('[') || host.parse::<std::net::IpAddr>().is_ok();
        (!host.is_empty() && !ip).then_some(authority)
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            relay_public_url: "ws://127.0.0.1:8001/ws/connectors".into(),
            gateway_public_url: "http://127.0.0.1:8002".into(),
            remote_host_mode: false,
            remote_ws_write_timeout: Duration::from_secs(30),
            pairing_ttl: Duration::from_secs(15 * 60),
            rotate_before: Duration::from_secs(7 * 24 * 3600),
            maintenance_every: Duration::from_secs(30),
            heartbeat_flush: Duration::from_secs(15),
            sessions: SessionConfig::default(),
            rate_limits: RateLimitConfig::default(),
            proxy_max_response: 8 * 1024 * 1024,
            proxy_max_request: 4 * 1024 * 1024,
            proxy_budget: 64 * 1024 * 1024,
            trust_forwarded_for: false,
            public_domain: None,
        }
    }
}

/// The API's shared state.
pub struct Api {
    pub cfg: ApiConfig,
    pub store: Arc<dyn Store>,
    /// Requests to connectors, and control of their connections.
    pub router: Arc<dyn Router>,
    pub users: UserAuth,
    pub issuer: ConnectorIssuer,
    pub sessions: Sessions,
    /// Published routes: lookups, rate limits, counters, deletes.
    pub routes: published::PublicRoutes,
    pub limits: RateLimits,
    /// The audit log's queue and writer.
    pub audit: Arc<audit::Auditor>,
    /// Bytes of device responses all proxy-http calls may hold at once (permits are
    /// bytes); a call that cannot take more answers 503 BUSY.
    pub proxy_budget: tokio::sync::Semaphore,
    /// User ids already recorded in USRUsuario by this process (bounded: cleared when
    /// it reaches 100k; the insert is idempotent, so forgetting costs one write).
    known_users: Mutex<HashSet<i32>>,
    /// One-time console sign-in links: code digest → (user token, expiry). Bounded:
    /// at most [`CONSOLE_LINKS_MAX`] live; the oldest is dropped to make room.
    console_links: Mutex<HashMap<String, (String, std::time::Instant)>>,
    /// Connectors already warned about as unable to rotate a token nearing expiry
    /// (bounded by the connectors of this store; replaced on every rotation pass).
    expiry_warned: Mutex<HashSet<i32>>,
}

/// Live one-time console sign-in links kept at most.
pub const CONSOLE_LINKS_MAX: usize = 1000;

impl Api {
    pub fn new(
        cfg: ApiConfig,
        store: Arc<dyn Store>,
        router: Arc<dyn Router>,
        users: UserAuth,
        issuer: ConnectorIssuer,
    ) -> Arc<Self> {
        let auditor = audit::Auditor::new(Arc::clone(&store));
        tokio::spawn(Arc::clone(&auditor).run());
        Arc::new(Self {
            audit: auditor,
            proxy_budget: tokio::sync::Semaphore::new(cfg.proxy_budget),
            sessions: Sessions::new(Arc::clone(&store), cfg.sessions.clone()),
            routes: published::PublicRoutes::new(Arc::clone(&store)),
            limits: RateLimits::new(cfg.rate_limits),
            cfg,
            store,
            router,
            users,
            issuer,
            known_users: Mutex::default(),
            console_links: Mutex::default(),
            expiry_warned: Mutex::default(),
        })
    }

    /// A one-time console sign-in path, `/entrar/<code>`, valid for `ttl`, that signs
    /// the browser in with `user_token` (`ponte demo` prints one). Only the code's
    /// digest is kept, in this process.
    pub fn console_link(&self, user_token: String, ttl: Duration) -> String {
        let code = auth::random_id();
        let now = std::time::Instant::now();
        let mut links = self.console_links.lock().unwrap();
        links.retain(|_, (_, exp)| *exp > now);
        if links.len() >= CONSOLE_LINKS_MAX {
            if let Some(oldest) = links
                .iter()
                .min_by_key(|(_, (_, e))| *e)
                .map(|(k, _)| k.clone())
            {
                links.remove(&oldest);
            }
        }
        links.insert(auth::digest(&code), (user_token, now + ttl));
        format!("/entrar/{code}")
    }

    /// A console sign-in code's user token, if the code is live, without spending it.
    pub(crate) fn peek_console_link(&self, code: &str) -> Option<String> {
        let links = self.console_links.lock().unwrap();
        let (token, exp) = links.get(&auth::digest(code))?;
        (*exp > std::time::Instant::now()).then(|| token.clone())
    }

    /// Spends a console sign-in code: its user token, if the code is live.
    pub(crate) fn take_console_link(&self, code: &str) -> Option<String> {
        let (token, exp) = self
            .console_links
            .lock()
            .unwrap()
            .remove(&auth::digest(code))?;
        (exp > std::time::Instant::now()).then_some(token)
    }

    /// Records a user first seen in a valid JWT.
    pub(crate) async fn remember_user(&self, user: &User) -> Result<(), store::StoreError> {
        if self.known_users.lock().unwrap().contains(&user.id) {
            return Ok(());
        }
        let name = user
            .name
            .clone()
            .unwrap_or_else(|| format!("Usuário {}", user.id));
        self.store
            .ensure_user(user.id, &name, user.email.as_deref())
            .await?;
        let mut known = self.known_users.lock().unwrap();
        if known.len() >= 100_000 {
            known.clear();
        }
        known.insert(user.id);
        Ok(())
    }

    /// Graceful stop of what the API writes in the background: the audit queue and the
    /// session usage counters are written (retrying while the store is unavailable, up
    /// to `grace`). Returns the number of audit entries that could not be written.
    pub async fn flush(&self, grace: Duration) -> usize {
        let lost = self.audit.close(grace).await;
        self.sessions.maintain().await;
        self.routes.flush().await;
        lost
    }

    /// Background work until `shutdown`: token rotation, session expiry and usage
    /// flushes, rate-limiter pruning.
    pub async fn maintain(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            self.rotate_tokens().await;
            self.sessions.maintain().await;
            self.routes.flush().await;
            self.limits.prune();
            tokio::select! {
                _ = tokio::time::sleep(self.cfg.maintenance_every) => {}
                _ = shutdown.cancelled() => break,
            }
        }
        self.sessions.maintain().await;
        self.routes.flush().await;
    }

    /// Sends a fresh token to every connected connector whose token nears expiry. The
    /// store is updated first (compare-and-swap on the old `jti`), and put back if the
    /// connector cannot take TOKEN_ROTATE, so a connector never holds a revoked token.
    pub async fn rotate_tokens(&self) {
        // A token is used for at least a tenth of its lifetime, so a TTL shorter than
        // `rotate_before` does not make every fresh token due at once.
        let ttl = self.issuer.ttl();
        let before = self.cfg.rotate_before.min(ttl - ttl / 10);
        let horizon =
            store::now() + chrono::TimeDelta::from_std(before).unwrap_or(chrono::TimeDelta::MAX);
        let due = match self.store.tokens_expiring(horizon).await {
            Ok(d) => d,
            Err(err) => return warn!(%err, "could not list tokens to rotate"),
        };
        let mut stuck = HashSet::new();
        for con in due {
            let Some(old) = con.token_id.clone() else {
                continue;
            };
            let id = con.id.to_string();
            // Only a connector here that announced `token-rotate` can take a new token;
            // the others keep theirs (no swap, so no window where theirs is refused),
            // and are reported: at expiry they are locked out until someone renews.
            if !self.router.can_rotate(&id) {
                stuck.insert(con.id);
                continue;
            }
            let new = self.issuer.mint(con.id, con.client_id, con.tenant_id);
            match self
                .store
                .rotate_token(con.id, &old, &new.jti, new.expires_at)
                .await
            {
                Ok(true) => {}
                Ok(false) => continue,
                Err(err) => {
                    warn!(connector_id = con.id, %err, "could not store a rotated token");
                    continue;
                }
            }
            let expires = store::rfc3339(new.expires_at);
            if self.router.rotate_token(&id, new.token, Some(expires)) {
                info!(connector_id = con.id, "connector token rotated");
                self.audit.record(store::AuditEntry {
                    action: "connector.rotate".into(),
                    tenant_id: con.tenant_id,
                    ..Default::default()
                });
            } else {
                let restore = con.token_expires_at.unwrap_or(new.expires_at);
                if let Err(err) = self.store.swap_token(con.id, &new.jti, &old, restore).await {
                    warn!(connector_id = con.id, %err, "could not restore the token after a failed rotation");
                }
            }
        }
        ponte_core::metrics::tokens_expiring(stuck.len());
        let mut warned = self.expiry_warned.lock().unwrap();
        for id in stuck.difference(&warned) {
            warn!(
                connector_id = id,
                "connector token expires within the rotation window and the connector \
                 cannot take a rotated token (legacy, or not connected): renew it \
                 (POST …/connector/token) and store the new token on the connector"
            );
        }
        *warned = stuck;
    }

    /// Whether the connector's token nears expiry with no way to rotate it over the
    /// tunnel (for the status card and the console).
    pub fn token_expiring(&self, con: &store::Connector) -> bool {
        let ttl = self.issuer.ttl();
        let before = self.cfg.rotate_before.min(ttl - ttl / 10);
        let horizon =
            store::now() + chrono::TimeDelta::from_std(before).unwrap_or(chrono::TimeDelta::MAX);
        con.token_id.is_some()
            && con.status != store::ConnectorStatus::PAIRING
            && con.token_expires_at.is_some_and(|exp| exp < horizon)
            && !self.router.can_rotate(&con.id.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::ApiConfig;
    use std::time::Duration;

    /// The numbers the README and DESIGN state, by value: a change to one fails here
    /// until the documents say the same.
    #[test]
    fn defaults_are_the_documented_ones() {
        let cfg = ApiConfig::default();
        let min = |m: u64| Duration::from_secs(m * 60);
        assert_eq!(cfg.pairing_ttl, min(15));
        assert_eq!(cfg.rotate_before, min(7 * 24 * 60));
        assert_eq!(cfg.maintenance_every, Duration::from_secs(30));
        assert_eq!(cfg.heartbeat_flush, Duration::from_secs(15));
        assert_eq!(cfg.remote_ws_write_timeout, Duration::from_secs(30));
        assert_eq!(cfg.proxy_max_response, 8 << 20);
        assert_eq!(cfg.proxy_max_request, 4 << 20);
        assert!(!cfg.trust_forwarded_for);
        assert_eq!(cfg.public_domain, None);
        assert_eq!(crate::published::ROUTE_CACHE_TTL, Duration::from_secs(2));
        assert_eq!(crate::published::DEFAULT_RPM, 120);
        assert_eq!(crate::ratelimit::ROUTE_CLIENTS_MAX, 50_000);
        let s = &cfg.sessions;
        assert_eq!((s.idle, s.max, s.launch_ttl), (min(10), min(240), min(2)));
        // The idle expiry is written at most every 30 s (a twentieth of a short TTL).
        let step = |idle| crate::sessions::slide_step(idle).num_milliseconds();
        assert_eq!(step(min(10)), 30_000);
        assert_eq!(step(min(4 * 60)), 30_000);
        assert_eq!(step(min(1)), 3_000);
        let rate = |r: crate::ratelimit::Rate| (r.per_second, r.burst);
        let r = &cfg.rate_limits;
        assert_eq!(rate(r.session), (50.0, 200));
        assert_eq!(rate(r.connector), (200.0, 400));
        assert_eq!(rate(r.claim), (10.0 / 60.0, 5), "10 a minute, burst 5");
        assert_eq!(rate(r.claim_global), (1.0, 30));
        // The gateway waits 30 s for a device's answer, proxy-http 60 s (unless set).
        assert_eq!(
            crate::service::device::BROWSER_TIMEOUT,
            Duration::from_secs(30)
        );
        assert_eq!(
            ponte_protocol::limits::DEFAULT_TIMEOUT,
            Duration::from_secs(60)
        );
        assert_eq!(crate::audit::AUDIT_QUEUE, 8192);
        assert_eq!(crate::audit::MAX_ENTRY_BYTES, 4096);
        assert_eq!(crate::audit::BATCH, 1024);
    }

    #[test]
    fn launch_urls_in_path_and_host_mode() {
        let cfg = |url: &str, host: bool| ApiConfig {
            gateway_public_url: url.into(),
            remote_host_mode: host,
            ..Default::default()
        };
        for (url, host, want) in [
            (
                "http://127.0.0.1:8002/",
                false,
                "http://127.0.0.1:8002/remote/launch/C",
            ),
            (
                "https://remote.example.com",
                true,
                "https://s-S.remote.example.com/remote/launch/C",
            ),
            (
                "https://Remote.Example.com:443/x",
                true,
                "https://s-S.remote.example.com/remote/launch/C",
            ),
            (
                "http://localhost:8002",
                true,
                "http://s-S.localhost:8002/remote/launch/C",
            ),
            // An address has no subdomains: path mode's URL (and `ponte serve` refuses).
            (
                "http://127.0.0.1:8002",
                true,
                "http://127.0.0.1:8002/remote/launch/C",
            ),
            (
                "http://[::1]:8002",
                true,
                "http://[::1]:8002/remote/launch/C",
            ),
        ] {
            assert_eq!(cfg(url, host).launch_url("S", "C"), want, "{url}");
        }
        assert_eq!(cfg("http://127.0.0.1:8002", true).remote_domain(), None);
        // Published routes: `{slug}.<public domain>`, with the gateway's scheme.
        let mut c = cfg("https://remote.example.com", false);
        assert_eq!(c.route_url("nexora"), None);
        c.public_domain = Some("pub.example.com".into());
        assert_eq!(
            c.route_url("nexora").as_deref(),
            Some("https://nexora.pub.example.com")
        );
        assert_eq!(
            cfg("http://localhost:80", true).remote_domain().as_deref(),
            Some("localhost")
        );
    }
}
