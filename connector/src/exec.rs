//! Executes requests against devices: target policy, one HTTP client (connection pool)
//! per device, a per-device concurrency cap, error classification.
//!
//! Must never: connect to a target the policy refuses, follow redirects (the gateway
//! rewrites them), decompress bodies (bytes pass through untouched), or send
//! `Expect: 100-continue`.

use crate::policy::TargetPolicy;
use futures_util::future::BoxFuture;
use ponte_protocol::{ErrorCode, Headers};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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
    clients: Mutex<HashMap<ClientKey, reqwest::Client>>,
    permits: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Executor {
    pub fn new(policy: TargetPolicy, per_target: usize) -> Self {
        Self {
            policy: Arc::new(policy),
            lookup: system_lookup(),
            per_target,
            clients: Mutex::default(),
            permits: Mutex::default(),
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
    pub fn client(&self, url: &Url, tls_insecure: bool) -> Result<reqwest::Client, ExecError> {
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
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .http1_only()
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(self.per_target)
            .danger_accept_invalid_certs(tls_insecure)
            .dns_resolver(Arc::new(PolicyResolver {
                policy: Arc::clone(&self.policy),
                lookup: Arc::clone(&self.lookup),
                // One client per origin, so the port is fixed: the resolver runs the
                // full, port-exact check (health port included) on every lookup.
                port: url.port_or_known_default().unwrap_or(80),
            }))
            .build()
            .map_err(|e| {
                ExecError::new(ErrorCode::Internal, format!("building HTTP client: {e}"))
            })?;
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
pub fn request_headers(
    h: &Headers,
    keep_length: bool,
) -> Result<reqwest::header::HeaderMap, ExecError> {
    use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
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
    Ok(out)
}

/// Device response headers for the wire; per-hop ones are dropped.
pub fn response_headers(h: &reqwest::header::HeaderMap) -> Headers {
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

/// Classifies a client error.
pub fn classify(err: &reqwest::Error) -> ExecError {
    let mut msg = err.to_string();
    let mut src = std::error::Error::source(err);
    while let Some(s) = src {
        msg = format!("{msg}: {s}");
        src = s.source();
    }
    // reqwest names the URL in its errors; device UIs put session tokens in queries,
    // and this message reaches logs, the cloud and the caller's error body.
    let msg = without_queries(&msg);
    let code = if msg.contains("forbidden by allowed_targets") {
        ErrorCode::TargetForbidden
    } else if err.is_timeout() {
        ErrorCode::Timeout
    } else if err.is_connect() {
        ErrorCode::ConnectFailed
    } else if err.is_builder() {
        ErrorCode::BadRequest
    } else {
        ErrorCode::Internal
    };
    ExecError::new(code, msg)
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

/// DNS for the device clients: resolves, then keeps only addresses the policy allows,
/// so a name that changes after the pre-check still cannot reach a forbidden address.
struct PolicyResolver {
    policy: Arc<TargetPolicy>,
    lookup: Lookup,
    port: u16,
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
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
                return Err(format!(
                    "{host} resolves only to addresses forbidden by allowed_targets"
                )
                .into());
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::without_queries;

    #[test]
    fn urls_in_messages_lose_their_queries() {
        for (input, want) in [
            (
                "error sending request for url (http://10.0.0.5/cgi?session=SECRET&x=1): boom",
                "error sending request for url (http://10.0.0.5/cgi): boom",
            ),
            (
                "https://d/a?b#c and http://e/f?g",
                "https://d/a and http://e/f",
            ),
            ("no url? here", "no url? here"),
            ("http://d/p", "http://d/p"),
        ] {
            assert_eq!(without_queries(input), want, "{input}");
        }
    }
}
