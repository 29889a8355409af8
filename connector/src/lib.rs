//! Ponte connector: runs on the customer's LAN, dials out to the relay over WSS and
//! executes HTTP (and WebSocket) requests against local devices for the cloud.
//!
//! Must never: reach a target outside `allowed_targets`, accept inbound connections
//! other than its loopback health port, or log its token.
#![forbid(unsafe_code)]

pub mod config;
mod dispatch;
pub mod doctor;
pub mod exec;
pub mod health;
pub mod pair;
pub mod policy;
mod request;
mod session;
pub mod tls;
pub mod tunnel;
mod wsproxy;

use config::{Config, FileConfig, Secret};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// Heartbeat timings; tests shrink them.
#[derive(Debug, Clone)]
pub struct Timing {
    pub ping_interval: Duration,
    pub peer_timeout: Duration,
    /// A connection that stayed up this long resets the reconnect backoff.
    pub stable_after: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            ping_interval: ponte_protocol::limits::PING_INTERVAL,
            peer_timeout: ponte_protocol::limits::PEER_TIMEOUT,
            stable_after: tunnel::STABLE_AFTER,
        }
    }
}

/// Connections the health endpoint holds at once (a monitoring agent needs one or two).
const HEALTH_MAX_CONNECTIONS: usize = 64;

/// State shared by every connection attempt.
pub struct Shared {
    pub cfg: Config,
    pub exec: exec::Executor,
    pub status: Arc<health::Status>,
    pub token: Mutex<Secret>,
    pub relay_tls: Arc<rustls::ClientConfig>,
    pub timing: Timing,
}

/// A running connector.
pub struct Handle {
    pub shared: Arc<Shared>,
    /// Where the health endpoint listens, if enabled.
    pub health_addr: Option<SocketAddr>,
    /// The tunnel: ends after `shutdown`, once the requests in flight finished or the
    /// grace ran out, on the connection of the moment and on those a relay node asked to
    /// move.
    tunnel: tokio::task::JoinHandle<()>,
}

impl Handle {
    /// Waits until the tunnel has stopped (after `shutdown`).
    pub async fn stopped(self) {
        let _ = self.tunnel.await;
    }
}

/// Starts the connector: binds the health port, then connects and keeps reconnecting
/// until `shutdown`. Returns once started; the work runs on spawned tasks.
pub async fn start(
    cfg: Config,
    timing: Timing,
    shutdown: CancellationToken,
) -> anyhow::Result<Handle> {
    let status = Arc::new(health::Status::default());
    let mut health_addr = None;
    if let Some(addr) = cfg.health_listen {
        // The tunnel is the point of the connector; the health port is a convenience.
        // Taken (another connector, another program): keep the tunnel up and say so.
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => health_addr = Some(serve_health(listener, &status, &shutdown)?),
            Err(e) => error!(
                %addr, %e,
                "health endpoint could not listen (port taken?); the tunnel runs without it. \
                 Free the port or set health_listen to another address"
            ),
        }
    }
    // Never a target: the health port as bound, or as configured when it could not be.
    let exclude = health_addr.or(cfg.health_listen.filter(|a| a.port() != 0));
    let shared = Arc::new(Shared::new(cfg, timing, status, exclude)?);
    let tunnel = tokio::spawn(tunnel::run_forever(Arc::clone(&shared), shutdown));
    Ok(Handle {
        shared,
        health_addr,
        tunnel,
    })
}

impl Shared {
    /// Builds the connector state; `health_addr` is excluded from the reachable targets.
    pub fn new(
        cfg: Config,
        timing: Timing,
        status: Arc<health::Status>,
        health_addr: Option<SocketAddr>,
    ) -> anyhow::Result<Self> {
        let mut policy = match &cfg.allowed_targets {
            Some(t) => policy::TargetPolicy::parse(t).map_err(anyhow::Error::msg)?,
            None => policy::TargetPolicy::default_private(),
        };
        if let Some(a) = health_addr {
            policy = policy.with_health(a);
        }
        let relay_tls =
            tls::relay_config(cfg.relay_ca_file.as_deref()).map_err(anyhow::Error::msg)?;
        Ok(Shared {
            exec: exec::Executor::new(policy, cfg.per_target_concurrency),
            token: Mutex::new(cfg.token.clone()),
            cfg,
            status,
            relay_tls,
            timing,
        })
    }
}

fn serve_health(
    listener: tokio::net::TcpListener,
    status: &Arc<health::Status>,
    shutdown: &CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let bound = listener.local_addr()?;
    let app = health::app(Arc::clone(status));
    let stop = shutdown.clone();
    tokio::spawn(async move {
        // Loopback only, where every peer is the same address: one cap, no
        // per-address one.
        let limits = ponte_listen::Limits {
            max_connections: HEALTH_MAX_CONNECTIONS,
            max_connections_per_address: 0,
            ..Default::default()
        };
        if let Err(e) = ponte_listen::serve("health", listener, app, limits, stop).await {
            warn!(%e, "health endpoint stopped");
        }
    });
    info!(%bound, "health endpoint listening");
    Ok(bound)
}

/// TOKEN_ROTATE: use the new token from now on and persist it, so a restart uses it too.
pub(crate) fn rotate_token(shared: &Shared, token: String) {
    *shared.token.lock().unwrap() = Secret::new(token.clone());
    let Some(path) = &shared.cfg.config_path else {
        return info!("token rotated (kept in memory: no config file)");
    };
    let result = FileConfig::load(path, false).and_then(|mut f| {
        f.token = Some(Secret::new(token));
        f.save(path)
    });
    match result {
        Ok(()) => info!(path = %path.display(), "token rotated and saved"),
        Err(e) => {
            warn!(%e, "token rotated but could not be saved; the old one is used after a restart")
        }
    }
}
