//! `GET /health` on the connector's local port (default 127.0.0.1:22100): JSON with
//! connection state, relay URL, last heartbeat and version, for operators and `doctor`.

use axum::extract::State;
use axum::routing::get;
use axum::Json;
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

#[derive(Debug, Default)]
pub struct Status {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    relay_url: Option<String>,
    connected_since: Option<SystemTime>,
    last_heartbeat: Option<SystemTime>,
    /// Devices recently asked for (host:port), newest last; bounded for `doctor`.
    targets: std::collections::VecDeque<String>,
}

/// How many recent targets the health endpoint remembers.
const RECENT_TARGETS: usize = 32;

impl Status {
    pub fn set_connected(&self, url: Option<&str>) {
        let mut i = self.inner.lock().unwrap();
        i.connected_since = url.map(|_| SystemTime::now());
        if let Some(u) = url {
            i.relay_url = Some(u.to_owned());
            i.last_heartbeat = Some(SystemTime::now());
        }
    }

    pub fn heartbeat(&self) {
        self.inner.lock().unwrap().last_heartbeat = Some(SystemTime::now());
    }

    pub fn record_target(&self, host_port: String) {
        let mut i = self.inner.lock().unwrap();
        if let Some(pos) = i.targets.iter().position(|t| *t == host_port) {
            i.targets.remove(pos);
        } else if i.targets.len() >= RECENT_TARGETS {
            i.targets.pop_front();
        }
        i.targets.push_back(host_port);
    }

    pub fn is_connected(&self) -> bool {
        self.inner.lock().unwrap().connected_since.is_some()
    }

    pub fn to_json(&self) -> serde_json::Value {
        let i = self.inner.lock().unwrap();
        let ts = |t: Option<SystemTime>| {
            t.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map(|d| d.as_millis() as u64)
        };
        json!({
            "connected": i.connected_since.is_some(),
            "relayUrl": i.relay_url,
            "connectedSince": ts(i.connected_since),
            "lastHeartbeat": ts(i.last_heartbeat),
            "version": env!("CARGO_PKG_VERSION"),
            "targets": i.targets,
        })
    }
}

pub fn app(status: Arc<Status>) -> axum::Router {
    axum::Router::new()
        .route(
            "/health",
            get(|State(s): State<Arc<Status>>| async move { Json(s.to_json()) }),
        )
        .with_state(status)
}
