//! What the gateway asks of the session store. The API implements it; the gateway never
//! reads the database itself.

use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The cookie that carries a session grant, scoped to `/remote/s/{sid}/`.
pub const GRANT_COOKIE: &str = "__ponte_rs";

/// A launch code exchanged for a session grant.
#[derive(Debug, Clone)]
pub struct Launched {
    pub session_id: String,
    /// The `__ponte_rs` cookie's value: names the session, user and tenant; signed.
    pub grant: String,
    /// Until the session's absolute cap.
    pub max_age: Duration,
}

/// A request admitted to a session: where it goes.
#[derive(Debug, Clone)]
pub struct Admitted {
    pub connector_id: String,
    /// The equipment's `localBaseUrl`.
    pub base_url: String,
    pub tls_insecure: bool,
    /// Wait for the device's response head.
    pub timeout: Duration,
    /// Cancelled when the session ends: open streams stop.
    pub ended: CancellationToken,
}

/// Why a request is refused; each maps to one status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No grant cookie (a leaked link without it): 401.
    #[error("this remote session needs its launch link")]
    NoGrant,
    /// A grant for another session, user or tenant, or a forged one: 403.
    #[error("this grant is not valid for this session")]
    WrongGrant,
    /// 404.
    #[error("no such remote session")]
    NotFound,
    /// Idle or absolute limit reached: 410, with a page saying so.
    #[error("this remote session has expired")]
    Expired,
    /// Closed by its user or an admin: 410.
    #[error("this remote session was ended")]
    Ended,
    /// The launch code was used or has expired: 410.
    #[error("this launch link was already used or has expired")]
    LaunchUsed,
    /// Rate limit (per session or per connector): 429 with Retry-After.
    #[error("too many requests")]
    Limited { retry_after_secs: u64 },
    /// The equipment no longer uses the addon, or the store failed: 503.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl Denied {
    pub fn status(&self) -> u16 {
        match self {
            Denied::NoGrant => 401,
            Denied::WrongGrant => 403,
            Denied::NotFound => 404,
            Denied::Expired | Denied::Ended | Denied::LaunchUsed => 410,
            Denied::Limited { .. } => 429,
            Denied::Unavailable(_) => 503,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Denied::NoGrant => "SESSION_GRANT_MISSING",
            Denied::WrongGrant => "SESSION_GRANT_INVALID",
            Denied::NotFound => "SESSION_NOT_FOUND",
            Denied::Expired => "SESSION_EXPIRED",
            Denied::Ended => "SESSION_ENDED",
            Denied::LaunchUsed => "LAUNCH_CODE_INVALID",
            Denied::Limited { .. } => "RATE_LIMITED",
            Denied::Unavailable(_) => "UNAVAILABLE",
        }
    }
}

/// The session store as the gateway sees it.
#[async_trait::async_trait]
pub trait SessionAuthority: Send + Sync + 'static {
    /// Exchanges a one-time launch code (it cannot be used again). With `session_id`
    /// (host mode: the session whose host the link was opened on) only that session's
    /// code is spent; another's is refused and stays usable.
    async fn launch(&self, code: &str, session_id: Option<&str>) -> Result<Launched, Denied>;
    /// Checks one request for `session_id` carrying `grant` (`None`: no cookie), slides
    /// the idle expiry and takes a rate-limit token for the session and its connector.
    async fn admit(&self, session_id: &str, grant: Option<&str>) -> Result<Admitted, Denied>;
    /// Bytes delivered to the browser for a session (batched by the implementation).
    fn record(&self, session_id: &str, bytes: u64);
    /// Traffic on a stream that outlives its request (a device WebSocket), either way:
    /// counts `bytes` (not a request) and slides the idle expiry as a request would. The
    /// gateway calls it at most about once a second per stream; the implementation keeps
    /// its store writes coarse (never one per call).
    fn activity(&self, session_id: &str, bytes: u64);
}
