//! Published routes as the gateway asks the API about them (DESIGN.md "Published
//! routes"): a live route, why one is refused, the route's name and path rules, and the
//! client address a rate limit counts against.

pub mod path;

use http::HeaderMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A live route, as the gateway needs it for one request.
#[derive(Debug, Clone)]
pub struct Published {
    pub id: i32,
    pub slug: String,
    pub connector_id: String,
    /// The equipment's `localBaseUrl`.
    pub base_url: String,
    pub tls_insecure: bool,
    /// Wait for the device's response head.
    pub timeout: Duration,
    /// Path globs ([`path::valid_glob`]).
    pub paths: Arc<[String]>,
    /// Upper-case methods; `GET` allows `HEAD`.
    pub methods: Arc<[String]>,
    pub websocket: bool,
    /// The route's rate (the authority's buckets).
    pub requests_per_minute: u32,
    /// Cancelled when the route is deleted: its open streams stop.
    pub ended: CancellationToken,
}

/// Why a public request is refused before it reaches a device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteDenied {
    /// No such route, deleted, or expired: 404.
    #[error("no such public route")]
    NotFound,
    /// Per route or per client address: 429 with Retry-After.
    #[error("too many requests")]
    Limited { retry_after_secs: u64 },
    /// The equipment left the addon, the connector is unpaired, or the store failed: 503.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// The published routes as the gateway sees them. The API implements it.
#[async_trait::async_trait]
pub trait RouteAuthority: Send + Sync + 'static {
    /// The live route named `slug`: not deleted, not expired, its equipment on the addon.
    /// `client` pays for lookups the implementation cannot answer from memory (a flood of
    /// made-up names must not become a flood of store reads).
    async fn route(&self, slug: &str, client: IpAddr) -> Result<Published, RouteDenied>;
    /// Takes one request from the route's rate and from `client`'s share of it.
    fn admit(&self, route: &Published, client: IpAddr) -> Result<(), RouteDenied>;
    /// One request and the bytes it delivered (batched by the implementation).
    fn record(&self, route_id: i32, bytes: u64);
    /// Bytes of a device WebSocket (not a request).
    fn activity(&self, route_id: i32, bytes: u64);
}

/// A route's host label: 3–40 of `a-z 0-9 -`, no `-` at either end, not `s-…` (the
/// shape of a host-mode session's label), no `--` (punycode and its kin).
pub fn valid_slug(s: &str) -> bool {
    (3..=40).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.starts_with("s-")
        && !s.contains("--")
}

/// The client's address: the last `X-Forwarded-For` hop when `trust_forwarded_for` (the
/// one a proxy in front of us appended) and there is one, else the TCP peer's.
pub fn client_ip(
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
    trust_forwarded_for: bool,
) -> Option<IpAddr> {
    if trust_forwarded_for {
        let last = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|s| s.trim().parse::<IpAddr>().ok())
            .next_back();
        if last.is_some() {
            return last;
        }
    }
    peer.map(|p| p.ip())
}
