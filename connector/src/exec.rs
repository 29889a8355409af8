//! Executes requests against devices: target policy, one HTTP client (connection pool)
//! per device, a per-device concurrency cap, error classification.
//!
//! The client is hyper's own (hyper-util's pooled client, rustls through hyper-rustls),
//! not reqwest: reqwest parsed every request's URL twice more (its redirect layer and its
//! response), a sixth of the connector's instructions per small request.
//!
//! Must never: connect to a target the policy refuses, follow redirects (the gateway
//! rewrites them), decompress bodies (bytes pass through untouched), or send
//! `Expect: 100-continue`.

use crate::policy::TargetPolicy;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt as _;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use ponte_protocol::{ErrorCode, Headers};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use url::Url;

/// A request body toward a device: empty, whole, or streamed (an upload).
pub type DeviceBody = UnsyncBoxBody<Bytes, std::io::Error>;

/// How a device client connects: name resolution through the policy, TCP, TLS for
/// https, all of it bounded by [`CONNECT_TIMEOUT`].
pub type DeviceConnector =
    TimedConnect<hyper_rustls::HttpsConnector<HttpConnector<PolicyResolver>>>;

/// The pooled HTTP/1.1 client of one device origin (cheap to clone: a handle).
pub type DeviceClient = hyper_util::client::legacy::Client<DeviceConnector, DeviceBody>;

/// An empty body, or `bytes` whole.
pub fn whole_body(bytes: impl Into<Bytes>) -> DeviceBody {
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// The next data of a device's body (trailers are skipped), `None` at its end.
pub async fn next_chunk(body: &mut hyper::body::Incoming) -> Result<Option<Bytes>, hyper::Error> {
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            return Ok(Some(data));
        }
    }
    Ok(None)
}

/// A failed request, as sent back in HTTP_RESPONSE_ERROR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct ExecError {
    pub code: ErrorCode,
    pub message: String,
}

impl ExecError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// Headers that describe one hop, never forwarded to a device.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "expect",
];

/// How long connecting to a device may take: resolving its name, TCP, and TLS on top (a
/// device that accepts TCP and never answers the TLS hello fails here, not at the
/// request's deadline; an upload's clocks only start once its body is read).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// TCP keep-alive toward devices (probe after 15 s idle, every 15 s, 3 probes), and how
/// long sent data may stay unacknowledged: a device that loses power mid-upload is
/// noticed in about 30 s rather than the kernel's ~15 min of retransmits. (reqwest's
/// defaults, kept when the connector moved to hyper's client.)
const TCP_KEEPALIVE: Duration = Duration::from_secs(15);
const TCP_KEEPALIVE_RETRIES: u32 = 3;
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);

/// Devices (host:port) remembered for pools and concurrency caps. The keys come from
/// the cloud, so the tables are bounded; past this, idle entries are dropped.
const MAX_DEVICES: usize = 1024;

#[derive(Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    /// The origin (scheme, host, port), kept as parsed: serialising it on every request
    /// cost more than the map lookup.
    https: bool,
    host: url::Host<String>,
    port: u16,
    tls_insecure: bool,
}

/// Name resolution for device hostnames: the system's, or a stand-in a test gives with
/// [`Executor::with_lookup`] (DNS that changes its answer between check and connect).
/// Every lookup the executor makes goes through it: the pre-check and the HTTP client's.
pub type Lookup =
    Arc<dyn Fn(String) -> BoxFuture<'static, std::io::Result<Vec<IpAddr>>> + Send + Sync>;

fn system_lookup() -> Lookup {
    Arc::new(|host: String| {
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .map(|a| a.ip())
                .collect())
        })
    })
}

pub struct Executor {
    policy: Arc<TargetPolicy>,
    lookup: Lookup,
    per_target: usize,
    clients: Mutex<HashMap<ClientKey, DeviceClient>>,
    permits: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// Base URLs as the cloud sends them, parsed once (see [`Executor::http_target`]).
    origins: Mutex<HashMap<String, Arc<Origin>>>,
}

/// A device's base URL, parsed and checked once.
pub struct Origin {
    /// The base URL as parsed (scheme, host and port for the policy, pools and caps).
    pub url: Url,
    /// The base as given, without its trailing `/`, when that is already the URL's
    /// canonical form: a plain path is then appended to it as text.
    plain: Option<String>,
}

/// One HTTP request's target: its origin and the URI sent to the device.
pub struct HttpTarget {
    pub origin: Arc<Origin>,
    pub uri: http::Uri,
}

impl Executor {
    pub fn new(policy: TargetPolicy, per_target: usize) -> Self {
        Self {
            policy: Arc::new(policy),
            lookup: system_lookup(),
            per_target,
            clients: Mutex::default(),
            permits: Mutex::default(),
            origins: Mutex::default(),
        }
    }

    /// The same executor resolving device hostnames with `lookup`.
    pub fn with_lookup(mut self, lookup: Lookup) -> Self {
        self.lookup = lookup;
        self.clients.lock().unwrap().clear();
        self
    }

    pub fn policy(&self) -> &TargetPolicy {
        &self.policy
    }

    /// `base_url` + `path` → URL, or BAD_REQUEST.
    pub fn target_url(base_url: &str, path: &str, ws: bool) -> Result<Url, ExecError> {
        let bad = |m: String| ExecError::new(ErrorCode::BadRequest, m);
        if !path.starts_with('/') {
            return Err(bad(format!("path {path:?} must start with '/'")));
        }
        let mut url = Url::parse(&format!("{}{}", base_url.trim_end_matches('/'), path))
            .map_err(|e| bad(format!("invalid target {base_url}{path}: {e}")))?;
        match (url.scheme(), ws) {
            ("http" | "https", false) => {}
            ("http", true) => url.set_scheme("ws").expect("ws is a valid scheme"),
            ("https", true) => url.set_scheme("wss").expect("wss is a valid scheme"),
            ("ws" | "wss", true) => {}
            (s, _) => return Err(bad(format!("unsupported scheme {s:?}"))),
        }
        if url.host().is_none() || !url.username().is_empty() || url.password().is_some() {
            return Err(bad(
                "target must be scheme://host[:port] without credentials".into(),
            ));
        }
        Ok(url)
    }

    /// `base_url` + `path` → the HTTP target, or BAD_REQUEST: the same URL as
    /// [`Executor::target_url`] gives, without parsing it again on every request. The
    /// base is parsed once; a path of plain characters (no dot segment, nothing the URL
    /// parser would escape or split off) is appended as text, anything else is parsed
    /// whole as before.
    pub fn http_target(&self, base_url: &str, path: &str) -> Result<HttpTarget, ExecError> {
        let origin = self.origin(base_url)?;
        let text = match &origin.plain {
            Some(base) if is_plain_path(path) => format!("{base}{path}"),
            _ => Self::target_url(base_url, path, false)?.into(),
        };
        let uri = http::Uri::try_from(text).map_err(|e| {
            ExecError::new(ErrorCode::BadRequest, format!("invalid target path: {e}"))
        })?;
        Ok(HttpTarget { origin, uri })
    }

    fn origin(&self, base_url: &str) -> Result<Arc<Origin>, ExecError> {
        if let Some(o) = self.origins.lock().unwrap().get(base_url) {
            return Ok(Arc::clone(o));
        }
        let url = Self::target_url(base_url, "/", false)?;
        let trimmed = base_url.trim_end_matches('/');
        let plain = (url.as_str().trim_end_matches('/') == trimmed
            && url.query().is_none()
            && url.fragment().is_none())
        .then(|| trimmed.to_owned());
        let origin = Arc::new(Origin { url, plain });
        let mut origins = self.origins.lock().unwrap();
        if origins.len() >= MAX_DEVICES {
            // Cheap to parse again; the keys come from the cloud.
            origins.clear();
        }
        origins.insert(base_url.to_owned(), Arc::clone(&origin));
        Ok(origin)
    }

    /// Refuses a target the policy does not allow, before any connection is attempted.
    /// Returns the first allowed address (hostnames are checked on what they resolve to).
    pub async fn check_target(&self, url: &Url) -> Result<SocketAddr, ExecError> {
        let port = url.port_or_known_default().unwrap_or(80);
        let host = match url.host() {
            Some(url::Host::Ipv4(ip)) => return self.allow(ip.into(), port),
            Some(url::Host::Ipv6(ip)) => return self.allow(ip.into(), port),
            Some(url::Host::Domain(host)) => host,
            None => return Err(ExecError::new(ErrorCode::TargetForbidden, "no host")),
        };
        let addrs = (self.lookup)(host.to_owned()).await.map_err(|e| {
            ExecError::new(
                ErrorCode::ConnectFailed,
                format!("cannot resolve {host}: {e}"),
            )
        })?;
        let mut last = format!("{host} did not resolve");
        for ip in addrs {
            match self.policy.check_resolved(host, ip, port) {
                Ok(()) => return Ok(SocketAddr::new(ip, port)),
                Err(e) => last = e,
            }
        }
        Err(ExecError::new(ErrorCode::TargetForbidden, last))
    }

    fn allow(&self, ip: std::net::IpAddr, port: u16) -> Result<SocketAddr, ExecError> {
        self.policy
            .check_addr(ip, port)
            .map(|()| SocketAddr::new(ip, port))
            .map_err(|m| ExecError::new(ErrorCode::TargetForbidden, m))
    }

    /// Waits for a free slot on this device (host:port). Embedded devices handle few
    /// connections; the rest queue here (bounded by the relay's per-connector stream cap).
    pub async fn permit(&self, url: &Url) -> OwnedSemaphorePermit {
        let key = format!(
            "{}:{}",
            url.host_str().unwrap_or(""),
            url.port_or_known_default().unwrap_or(0)
        );
        let sem = {
            let mut permits = self.permits.lock().unwrap();
            if permits.len() >= MAX_DEVICES && !permits.contains_key(&key) {
                // Forget devices with nothing in flight; busy ones keep their cap.
                permits.retain(|_, s| s.available_permits() < self.per_target);
            }
            Arc::clone(
                permits
                    .entry(key)
                    .or_insert_with(|| Arc::new(Semaphore::new(self.per_target))),
            )
        };
        sem.acquire_owned()
            .await
            .expect("semaphore is never closed")
    }

    /// The pooled client for this device.
    pub fn client(&self, url: &Url, tls_insecure: bool) -> Result<DeviceClient, ExecError> {
        let key = ClientKey {
            https: matches!(url.scheme(), "https" | "wss"),
            host: url
                .host()
                .map_or(url::Host::Domain(String::new()), |h| h.to_owned()),
            port: url.port_or_known_default().unwrap_or(80),
            tls_insecure,
        };
        if let Some(c) = self.clients.lock().unwrap().get(&key) {
            return Ok(c.clone());
        }
        let resolver = PolicyResolver {
            policy: Arc::clone(&self.policy),
            lookup: Arc::clone(&self.lookup),
            // One client per origin, so the port is fixed: the resolver runs the full,
            // port-exact check (health port included) on every lookup.
            port: url.port_or_known_default().unwrap_or(80),
        };
        let mut http = HttpConnector::new_with_resolver(resolver);
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_keepalive(Some(TCP_KEEPALIVE));
        http.set_keepalive_interval(Some(TCP_KEEPALIVE));
        http.set_keepalive_retries(Some(TCP_KEEPALIVE_RETRIES));
        http.set_tcp_user_timeout(Some(TCP_USER_TIMEOUT));
        let tls = crate::tls::device_config(tls_insecure);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls).clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(self.per_target)
            .build(TimedConnect(https));
        let mut clients = self.clients.lock().unwrap();
        if clients.len() >= MAX_DEVICES {
            // Pools are cheap to rebuild; requests in flight keep their own handle.
            clients.clear();
        }
        clients.insert(key, client.clone());
        Ok(client)
    }
}

/// Copies caller headers toward the device, minus hop-by-hop ones and those the
/// `Connection` header names. `keep_length` keeps Content-Length (streamed bodies).
pub fn request_headers(h: &Headers, keep_length: bool) -> Result<http::HeaderMap, ExecError> {
    use http::header::{HeaderMap, HeaderName, HeaderValue};
    let named_by_connection: Vec<String> = h
        .get_all("connection")
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .collect();
    let mut out = HeaderMap::new();
    for (n, v) in h.iter() {
        let lower = n.to_ascii_lowercase();
        if HOP_BY_HOP.contains(&lower.as_str())
            || named_by_connection.contains(&lower)
            || (!keep_length && lower == "content-length")
        {
            continue;
        }
        let name = HeaderName::from_bytes(n.as_bytes()).map_err(|_| {
            ExecError::new(ErrorCode::BadRequest, format!("invalid header name {n:?}"))
        })?;
        let value = HeaderValue::from_str(v).map_err(|_| {
            ExecError::new(
                ErrorCode::BadRequest,
                format!("invalid value for header {n}"),
            )
        })?;
        out.append(name, value);
    }
    // As reqwest did: some device firmwares answer 406 to a request without one.
    if !out.contains_key(http::header::ACCEPT) {
        out.insert(http::header::ACCEPT, HeaderValue::from_static("*/*"));
    }
    Ok(out)
}

/// Device response headers for the wire; per-hop ones are dropped.
pub fn response_headers(h: &http::HeaderMap) -> Headers {
    h.iter()
        .filter(|(n, _)| {
            !matches!(
                n.as_str(),
                "connection" | "keep-alive" | "transfer-encoding" | "trailer" | "upgrade"
            )
        })
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// Classifies a failed request to `authority`: the message names the device, never a
/// query (device UIs put session tokens there, and this message reaches logs, the cloud
/// and the caller's error body).
pub fn classify(err: &hyper_util::client::legacy::Error, authority: &str) -> ExecError {
    let msg = chain(&format!("{authority}: "), err);
    let code = if msg.contains("forbidden by allowed_targets") {
        ErrorCode::TargetForbidden
    } else if timed_out(err) {
        ErrorCode::Timeout
    } else if err.is_connect() {
        ErrorCode::ConnectFailed
    } else {
        ErrorCode::Internal
    };
    ExecError::new(code, msg)
}

/// A device body that failed after its head.
pub fn body_failed(err: &hyper::Error) -> ExecError {
    ExecError::new(ErrorCode::Internal, chain("device body failed: ", err))
}

/// `prefix`, the error and its sources, queries cut off.
fn chain(prefix: &str, err: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = format!("{prefix}{err}");
    let mut src = err.source();
    while let Some(s) = src {
        msg = format!("{msg}: {s}");
        src = s.source();
    }
    without_queries(&msg)
}

fn timed_out(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut src = Some(err);
    while let Some(e) = src {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        src = e.source();
    }
    false
}

/// True for a path the URL parser leaves as it is: it starts with `/`, has no dot
/// segment (plain or escaped) and only characters that need no escaping and end nothing
/// (no `#`, no space, nothing outside ASCII).
fn is_plain_path(path: &str) -> bool {
    let b = path.as_bytes();
    b.first() == Some(&b'/')
        && !path.contains("/.")
        && !path.contains("%2e")
        && !path.contains("%2E")
        && b.iter().all(|&c| {
            c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    b'/' | b'-'
                        | b'_'
                        | b'.'
                        | b'~'
                        | b'%'
                        | b'?'
                        | b'='
                        | b'&'
                        | b'+'
                        | b','
                        | b';'
                        | b':'
                        | b'@'
                        | b'!'
                        | b'$'
                        | b'*'
                        | b'('
                        | b')'
                )
        })
}

/// `text` with the query string of every `http(s)://…` URL in it cut off.
pub fn without_queries(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_url = false;
    let mut skipping = false;
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        if !in_url && (rest.starts_with("http://") || rest.starts_with("https://")) {
            in_url = true;
        }
        let c = rest.chars().next().unwrap();
        if in_url && (c.is_whitespace() || c == ')' || c == '"' || c == '\'' || c == '>') {
            in_url = false;
            skipping = false;
        }
        if in_url && (c == '?' || c == '#') && !skipping {
            skipping = true;
        }
        if !skipping {
            out.push(c);
        }
        i += c.len_utf8();
    }
    out
}

/// A connector whose every connection attempt, from name lookup to the end of the TLS
/// handshake, ends within [`CONNECT_TIMEOUT`] (hyper's own connect timeout covers only
/// the TCP connect); the error is `TimedOut`, classified as TIMEOUT.
#[derive(Clone)]
pub struct TimedConnect<C>(C);

impl<C> tower_service::Service<http::Uri> for TimedConnect<C>
where
    C: tower_service::Service<http::Uri> + Send,
    C::Future: Send + 'static,
    C::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = C::Response;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = BoxFuture<'static, Result<C::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connecting = self.0.call(uri);
        Box::pin(async move {
            match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
                Ok(r) => r.map_err(Into::into),
                Err(_) => Err(Box::new(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "connecting took longer than {} s",
                        CONNECT_TIMEOUT.as_secs()
                    ),
                )) as Self::Error),
            }
        })
    }
}

/// DNS for the device clients: resolves, then keeps only addresses the policy allows,
/// so a name that changes after the pre-check still cannot reach a forbidden address.
/// (hyper connects to an IP literal without asking: those were checked before.)
#[derive(Clone)]
pub struct PolicyResolver {
    policy: Arc<TargetPolicy>,
    lookup: Lookup,
    port: u16,
}

impl tower_service::Service<Name> for PolicyResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = BoxFuture<'static, std::io::Result<Self::Response>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = Arc::clone(&self.policy);
        let lookup = Arc::clone(&self.lookup);
        let port = self.port;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs = lookup(host.clone()).await?;
            // The port is the connector's to set (hyper puts the URL's in).
            let allowed: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|ip| policy.check_resolved(&host, *ip, port).is_ok())
                .map(|ip| SocketAddr::new(ip, 0))
                .collect();
            if allowed.is_empty() {
                return Err(std::io::Error::other(format!(
                    "{host} resolves only to addresses forbidden by allowed_targets"
                )));
            }
            Ok(allowed.into_iter())
        })
    }
}

#[cfg(test)]
mod tests;
