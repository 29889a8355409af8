//! The gateway's shared state and settings.

use ponte_core::published::RouteAuthority;
use ponte_core::session::SessionAuthority;
use ponte_core::Router;
use std::sync::Arc;

/// Gateway settings.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Cap on lol_html's buffering per page (a tag or attribute longer than this fails
    /// the page rather than grow memory).
    pub max_html_memory: usize,
    /// Mark the grant cookie `Secure` (the public URL is https).
    pub secure_cookies: bool,
    /// Host mode: the remote domain (`remote.example.com`, `localhost:8002`, as in the
    /// `Host` header). A request to `s-{sid}.<domain>` belongs to session `sid`, whatever
    /// its path; the gateway's own host then serves no session (only `/health`). The
    /// `Host` must reach the gateway as the browser sent it (nginx: `proxy_set_header Host
    /// $host`), in both modes: state-changing requests are checked against it.
    pub host_mode: Option<String>,
    /// Longest a message of a device WebSocket may take to be written to the browser. A
    /// browser that stops reading for longer has that WebSocket closed, so what it holds
    /// (one message and the relay's queue for it) is given back.
    pub ws_write_timeout: std::time::Duration,
    /// Published routes: requests to `{slug}.<public domain>` go to that route (with a
    /// [`RouteAuthority`] given to [`Gateway::with_routes`]); `None`: no public side.
    pub public: Option<PublicConfig>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            max_html_memory: 4 * 1024 * 1024,
            secure_cookies: false,
            host_mode: None,
            ws_write_timeout: std::time::Duration::from_secs(30),
            public: None,
        }
    }
}

/// Shared state of the gateway role.
#[derive(Clone)]
pub struct Gateway {
    pub(crate) router: Arc<dyn Router>,
    pub(crate) sessions: Arc<dyn SessionAuthority>,
    pub(crate) routes: Option<Arc<dyn RouteAuthority>>,
    pub(crate) cfg: Arc<GatewayConfig>,
}

impl Gateway {
    pub fn new(
        router: Arc<dyn Router>,
        sessions: Arc<dyn SessionAuthority>,
        cfg: GatewayConfig,
    ) -> Self {
        Self {
            router,
            sessions,
            routes: None,
            cfg: Arc::new(cfg),
        }
    }

    /// Serves published routes from `routes` (on the hosts of `GatewayConfig::public`).
    pub fn with_routes(mut self, routes: Arc<dyn RouteAuthority>) -> Self {
        self.routes = Some(routes);
        self
    }
}

/// Where a session lives: under `/remote/s/{sid}/`, or on its own host (host mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Path,
    Host,
}

/// Settings of the public side of the gateway.
#[derive(Debug, Clone)]
pub struct PublicConfig {
    /// The public domain as it appears in `Host` (`pub.example.com`, `localhost:8002`):
    /// a request to `{slug}.<domain>` belongs to route `slug`, whatever its path.
    pub domain: String,
    /// The routes are served over https (`X-Forwarded-Proto: https`).
    pub https: bool,
    /// Largest request body passed to a device (larger: 413).
    pub max_body: u64,
    /// Take the client's address from the last `X-Forwarded-For` hop (behind nginx).
    pub trust_forwarded_for: bool,
}

impl PublicConfig {
    pub fn new(domain: impl Into<String>) -> Self {
        Self {
            domain: domain.into().to_ascii_lowercase(),
            https: false,
            max_body: 8 * 1024 * 1024,
            trust_forwarded_for: false,
        }
    }
}
