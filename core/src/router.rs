//! The `Router` seam: "send this request to connector N and give me the response
//! stream", and the few things the API tells a connector's connection (close it, hand it
//! a new token).
//!
//! The gateway and the API only ever see this trait. The relay implements it in-process;
//! cluster mode will implement it over NATS. Nothing here knows about sockets.

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use ponte_protocol::Headers;
use std::time::Duration;

/// Identity of a connector: the `sub` claim of its token.
pub type ConnectorId = String;

/// A request body as handed to the router.
pub enum RequestBody {
    Empty,
    /// A body already in memory. Small ones travel inline in HTTP_REQUEST.
    Full(Bytes),
    /// A body read as it is sent (`req-stream`). `length`, when known, is passed to the
    /// device as `Content-Length` so it is not sent chunked (embedded HTTP servers often
    /// do not accept chunked uploads).
    Stream {
        length: Option<u64>,
        stream: BoxStream<'static, Result<Bytes, std::io::Error>>,
    },
}

impl std::fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestBody::Empty => f.write_str("Empty"),
            RequestBody::Full(b) => write!(f, "Full({} bytes)", b.len()),
            RequestBody::Stream { length, .. } => write!(f, "Stream(length={length:?})"),
        }
    }
}

/// An HTTP request for a device behind a connector.
#[derive(Debug)]
pub struct ProxyRequest {
    pub tenant_id: Option<i64>,
    pub equip_id: Option<i64>,
    /// `http(s)://host[:port]` of the device, as the connector sees it.
    pub base_url: String,
    pub method: String,
    /// Path and query, starting with `/`.
    pub path: String,
    pub headers: Headers,
    pub body: RequestBody,
    /// Bound on the wait for the response status line (`timeoutMs`).
    pub timeout: Duration,
    /// Bound on the silence between two body chunks once the response has started.
    pub idle_timeout: Duration,
    pub tls_insecure: bool,
}

impl ProxyRequest {
    /// A body-less request with default timeouts.
    pub fn new(base_url: impl Into<String>, method: &str, path: impl Into<String>) -> Self {
        Self {
            tenant_id: None,
            equip_id: None,
            base_url: base_url.into(),
            method: method.to_owned(),
            path: path.into(),
            headers: Headers::new(),
            body: RequestBody::Empty,
            timeout: ponte_protocol::limits::DEFAULT_TIMEOUT,
            idle_timeout: ponte_protocol::limits::DEFAULT_TIMEOUT,
            tls_insecure: false,
        }
    }
}

/// Status and headers of a device response, and its body still streaming.
pub struct ProxyResponse {
    pub status: u16,
    pub headers: Headers,
    pub body: ResponseBody,
}

/// A response body arriving from a connector. Dropping it before the end cancels the
/// request on the connector (which drops its connection to the device).
pub struct ResponseBody(Box<dyn BodySource>);

/// Where a [`ResponseBody`]'s chunks come from: implemented by each [`Router`].
pub trait BodySource: Send {
    /// The next chunk; `None` at the end. After an error, the stream is over.
    fn next_chunk(&mut self) -> BoxFuture<'_, Option<Result<Bytes, RouteError>>>;
}

impl ResponseBody {
    pub fn new(source: Box<dyn BodySource>) -> Self {
        Self(source)
    }

    /// The next piece of the body; `None` at the end. After an error, the stream is over.
    pub async fn chunk(&mut self) -> Option<Result<Bytes, RouteError>> {
        self.0.next_chunk().await
    }

    /// Turns the body into a `Stream`, e.g. for a hyper/axum response body.
    pub fn into_stream(self) -> BoxStream<'static, Result<Bytes, RouteError>> {
        Box::pin(futures_util::stream::unfold(self, |mut body| async move {
            body.chunk().await.map(|item| (item, body))
        }))
    }

    /// Reads the whole body, failing with [`RouteError::BodyTooLarge`] past `limit` bytes.
    pub async fn collect(mut self, limit: usize) -> Result<Bytes, RouteError> {
        let mut out = Vec::new();
        while let Some(chunk) = self.chunk().await {
            let chunk = chunk?;
            if out.len() + chunk.len() > limit {
                return Err(RouteError::BodyTooLarge(limit));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out.into())
    }
}

/// What a WebSocket peer sent, either way through the tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsFrame {
    Text(String),
    Binary(Bytes),
    Close {
        code: Option<u16>,
        reason: Option<String>,
    },
}

/// Where to open a device WebSocket.
#[derive(Debug, Clone)]
pub struct WsRequest {
    pub base_url: String,
    pub path: String,
    pub headers: Headers,
    pub protocols: Vec<String>,
    pub tls_insecure: bool,
    pub timeout: Duration,
}

impl WsRequest {
    /// A WebSocket to `path` on the device, no extra headers, default timeout.
    pub fn new(base_url: impl Into<String>, path: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            path: path.into(),
            headers: Headers::new(),
            protocols: Vec::new(),
            tls_insecure: false,
            timeout: ponte_protocol::limits::DEFAULT_TIMEOUT,
        }
    }
}

/// An open device WebSocket: receive with `recv`, send with `send`. Dropping it closes
/// the device side.
pub struct WsChannel {
    pub protocol: Option<String>,
    inner: Box<dyn WsSource>,
}

/// Both directions of an open device WebSocket: implemented by each [`Router`].
pub trait WsSource: Send {
    fn recv(&mut self) -> BoxFuture<'_, Option<WsFrame>>;
    fn send(&mut self, frame: WsFrame) -> BoxFuture<'_, Result<(), RouteError>>;
}

impl WsChannel {
    /// `protocol`: the subprotocol the device chose.
    pub fn new(protocol: Option<String>, inner: Box<dyn WsSource>) -> Self {
        Self { protocol, inner }
    }

    /// Next message from the device; `None` once the stream is closed.
    pub async fn recv(&mut self) -> Option<WsFrame> {
        self.inner.recv().await
    }

    /// Sends a message to the device. Waits while the tunnel is congested.
    pub async fn send(&mut self, frame: WsFrame) -> Result<(), RouteError> {
        self.inner.send(frame).await
    }
}

/// Newer connections refused because another one with the same identity is live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conflict {
    /// Connections refused since the contest began.
    pub refused: u64,
    /// When the last one was refused.
    pub last_refused: std::time::SystemTime,
}

/// Send requests to connectors, and control their connections. Implemented by the
/// in-process relay (and later over NATS).
pub trait Router: Send + Sync + 'static {
    fn send(
        &self,
        connector: &str,
        request: ProxyRequest,
    ) -> BoxFuture<'static, Result<ProxyResponse, RouteError>>;

    fn open_ws(
        &self,
        connector: &str,
        request: WsRequest,
    ) -> BoxFuture<'static, Result<WsChannel, RouteError>>;

    /// Whether the connector holds a connection right now (on this node).
    fn is_online(&self, connector: &str) -> bool;

    /// Closes the connector's connection (token renewed or revoked, unpaired); false if
    /// it had none.
    fn disconnect(&self, connector: &str, reason: &str) -> bool;

    /// Hands the connector a new token over its connection (TOKEN_ROTATE); false if it
    /// is not connected or cannot rotate.
    fn rotate_token(&self, connector: &str, token: String, expires_at: Option<String>) -> bool;

    /// Whether the connector is connected and announced `token-rotate`.
    fn can_rotate(&self, connector: &str) -> bool;

    /// Newer connections refused because another install with the same token is live.
    fn conflict(&self, connector: &str) -> Option<Conflict>;
}

/// Every way a routed request can fail, classified so the HTTP status is right:
/// upstream (device/connector → 502/504/403), downstream (caller → 4xx), internal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("connector is offline")]
    Offline,
    #[error("timed out waiting for the device")]
    Timeout,
    #[error("could not connect to the device: {0}")]
    ConnectFailed(String),
    #[error("target forbidden by the connector's allowed_targets: {0}")]
    TargetForbidden(String),
    #[error("busy: {0}")]
    Busy(String),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("request cancelled")]
    Cancelled,
    #[error("connector reported an error: {0}")]
    Connector(String),
    #[error("connector broke the protocol: {0}")]
    Protocol(String),
    #[error("connection to the connector was lost")]
    Disconnected,
    #[error("connector cannot carry binary bodies")]
    BinaryUnsupported,
    #[error("request body exceeds the {0}-byte limit")]
    BodyTooLarge(usize),
    #[error("request body could not be read: {0}")]
    BodyRead(String),
}

impl RouteError {
    /// [`Self::status`] as a `StatusCode`.
    pub fn status_code(&self) -> http::StatusCode {
        http::StatusCode::from_u16(self.status()).unwrap_or(http::StatusCode::BAD_GATEWAY)
    }

    /// HTTP status for the caller.
    pub fn status(&self) -> u16 {
        match self {
            RouteError::Offline | RouteError::Disconnected => 502,
            RouteError::Timeout => 504,
            RouteError::ConnectFailed(_)
            | RouteError::Connector(_)
            | RouteError::Protocol(_)
            | RouteError::BinaryUnsupported => 502,
            RouteError::TargetForbidden(_) => 403,
            RouteError::Busy(_) => 429,
            RouteError::BadRequest(_) | RouteError::BodyRead(_) => 400,
            RouteError::Cancelled => 499,
            RouteError::BodyTooLarge(_) => 413,
        }
    }

    /// Who the failure is on: the device side, the caller, or neither.
    pub fn source(&self) -> crate::ErrorSource {
        use crate::ErrorSource::*;
        match self {
            RouteError::Offline
            | RouteError::Disconnected
            | RouteError::Timeout
            | RouteError::ConnectFailed(_)
            | RouteError::TargetForbidden(_)
            | RouteError::Busy(_)
            | RouteError::Connector(_)
            | RouteError::Protocol(_)
            | RouteError::BinaryUnsupported => Upstream,
            RouteError::BadRequest(_)
            | RouteError::Cancelled
            | RouteError::BodyTooLarge(_)
            | RouteError::BodyRead(_) => Downstream,
        }
    }

    /// Stable machine-readable code for JSON error bodies and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            RouteError::Offline => "CONNECTOR_OFFLINE",
            RouteError::Timeout => "TIMEOUT",
            RouteError::ConnectFailed(_) => "CONNECT_FAILED",
            RouteError::TargetForbidden(_) => "TARGET_FORBIDDEN",
            RouteError::Busy(_) => "BUSY",
            RouteError::BadRequest(_) => "BAD_REQUEST",
            RouteError::Cancelled => "CANCELLED",
            RouteError::Connector(_) => "CONNECTOR_ERROR",
            RouteError::Protocol(_) => "PROTOCOL_ERROR",
            RouteError::Disconnected => "CONNECTOR_DISCONNECTED",
            RouteError::BinaryUnsupported => "BINARY_UNSUPPORTED",
            RouteError::BodyTooLarge(_) => "BODY_TOO_LARGE",
            RouteError::BodyRead(_) => "BODY_READ",
        }
    }

    /// The error a connector reported on the wire.
    pub fn from_wire(err: &ponte_protocol::ResponseError) -> Self {
        use ponte_protocol::ErrorCode as C;
        let reason = err.reason().to_owned();
        match err.code.as_deref().and_then(C::parse) {
            Some(C::Timeout) => RouteError::Timeout,
            Some(C::ConnectFailed) => RouteError::ConnectFailed(reason),
            Some(C::TargetForbidden) => RouteError::TargetForbidden(reason),
            Some(C::Busy) => RouteError::Busy(reason),
            Some(C::BadRequest) => RouteError::BadRequest(reason),
            Some(C::Cancelled) => RouteError::Cancelled,
            Some(C::Internal) | None => RouteError::Connector(reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What callers see for each failure: the statuses and codes DESIGN.md and the
    /// README list.
    #[test]
    fn errors_map_to_the_documented_statuses_and_codes() {
        use crate::ErrorSource::{Downstream as Down, Upstream as Up};
        let s = || String::from("x");
        for (err, status, code, source) in [
            (RouteError::Offline, 502, "CONNECTOR_OFFLINE", Up),
            (RouteError::Disconnected, 502, "CONNECTOR_DISCONNECTED", Up),
            (RouteError::Timeout, 504, "TIMEOUT", Up),
            (RouteError::ConnectFailed(s()), 502, "CONNECT_FAILED", Up),
            (
                RouteError::TargetForbidden(s()),
                403,
                "TARGET_FORBIDDEN",
                Up,
            ),
            (RouteError::Busy(s()), 429, "BUSY", Up),
            (RouteError::Protocol(s()), 502, "PROTOCOL_ERROR", Up),
            (RouteError::BadRequest(s()), 400, "BAD_REQUEST", Down),
            (RouteError::Cancelled, 499, "CANCELLED", Down),
            (RouteError::BodyTooLarge(1), 413, "BODY_TOO_LARGE", Down),
            (RouteError::BodyRead(s()), 400, "BODY_READ", Down),
        ] {
            assert_eq!(
                (err.status(), err.code(), err.source()),
                (status, code, source),
                "{err:?}"
            );
        }
    }

    /// A request names no timeouts unless its caller does: 60 s for the answer to
    /// start, 60 s of silence between body chunks.
    #[test]
    fn a_request_waits_60_s_by_default() {
        let r = ProxyRequest::new("http://127.0.0.1:1", "GET", "/");
        assert_eq!(r.timeout, Duration::from_secs(60));
        assert_eq!(r.idle_timeout, Duration::from_secs(60));
    }
}
