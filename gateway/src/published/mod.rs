//! Published routes: chosen paths of a device reachable by the public on the route's own
//! origin, `{slug}.<public domain>`, with no Ponte login (DESIGN.md "Published routes").
//!
//! A request is decided before anything reaches the device, in this order: the route
//! (unknown, deleted or expired: 404), the path after [`path::normalize`] (malformed:
//! 400; outside the globs: 404), the method (405), a WebSocket upgrade (403 unless the
//! route allows it), the rate limits (429), the body's declared size (413). The device
//! then gets the normalised path, its own `Host`, `X-Forwarded-For/-Proto/-Host`, and
//! everything else the client sent but hop-by-hop headers and Ponte's own cookies.
//! Nothing is rewritten either way, except that a device's `Set-Cookie` loses its
//! `Domain`, so a device's own headers do not set cookies for its sibling hosts. (Its
//! pages still can, from script: every route is same-site with every other unless the
//! public domain is a public suffix. `ponte serve` refuses a public domain that shares a
//! parent with the gateway's or the API's host, and the README says to register it.)
//!
//! Must never: read or set a Ponte credential on these origins; send the device a path
//! other than the one the globs were matched against; keep a stream open once its route
//! is deleted.

use crate::answer::error;
use crate::rewrite::drop_hop_by_hop;
use crate::state::{Gateway, PublicConfig};
use crate::stream::{cut_on_end, is_upgrade, pump_ws, ws_protocols, Meter, Usage, MAX_WS_MESSAGE};
use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, Request, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use futures_util::{StreamExt, TryStreamExt};
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use ponte_core::published::{client_ip, path, valid_slug, Published, RouteDenied};
use ponte_core::{ProxyRequest, RequestBody, RouteError, WsRequest};
use ponte_protocol::Headers;
use std::net::{IpAddr, SocketAddr};
use tracing::{debug, warn};

/// Where a request's `Host` puts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PublicHost {
    /// `{slug}.<public domain>`: that route.
    Route(String),
    /// The public domain itself, or any other name under it (`a.b.<domain>`, a label
    /// that is no slug): a public origin that serves nothing, never the gateway's own
    /// routes (launch links and sessions must not live on a route's sibling).
    Nothing,
}

/// The public host a `Host` names, if it is under the public domain (one trailing dot,
/// as a browser may send it, is the same name).
pub(crate) fn public_host(cfg: &PublicConfig, headers: &HeaderMap) -> Option<PublicHost> {
    let host = headers
        .get(header::HOST)?
        .to_str()
        .ok()?
        .to_ascii_lowercase();
    let (name, port) = split_port(&host);
    let name = name.strip_suffix('.').unwrap_or(name);
    let (domain, domain_port) = split_port(&cfg.domain);
    if port != domain_port {
        return None;
    }
    if name == domain {
        return Some(PublicHost::Nothing);
    }
    let under = name.strip_suffix(domain)?.strip_suffix('.')?;
    Some(match valid_slug(under) {
        true => PublicHost::Route(under.to_owned()),
        false => PublicHost::Nothing,
    })
}

/// `name:port` → (`name`, `Some(port)`); IPv6 literals have no subdomains and never match.
fn split_port(host: &str) -> (&str, Option<&str>) {
    match host.rsplit_once(':') {
        Some((n, p)) if !n.contains(':') => (n, Some(p)),
        _ => (host, None),
    }
}

/// The route a `Host` of `{slug}.<public domain>` names.
#[cfg(test)]
fn host_route(cfg: &PublicConfig, headers: &HeaderMap) -> Option<String> {
    match public_host(cfg, headers)? {
        PublicHost::Route(slug) => Some(slug),
        PublicHost::Nothing => None,
    }
}

/// The client's address: the peer, or with `trust_forwarded_for` the last
/// `X-Forwarded-For` hop (what nginx in front of us saw).
fn client_addr(cfg: &PublicConfig, req: &Request) -> Option<IpAddr> {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    client_ip(req.headers(), peer, cfg.trust_forwarded_for)
}

/// The request's headers as the device gets them.
fn device_headers(
    cfg: &PublicConfig,
    base_url: &str,
    client: IpAddr,
    incoming: &HeaderMap,
) -> Headers {
    let mut h = incoming.clone();
    drop_hop_by_hop(&mut h);
    // Ponte's cookies are never read here, nor passed on (a sibling host's, planted with
    // a parent `Domain`).
    h.remove(header::COOKIE);
    let kept: Vec<&str> = incoming
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .filter(|c| !crate::rewrite::reserved_cookie(c.split('=').next().unwrap_or(c)))
        .collect();
    let mut out = Headers::new();
    for (name, value) in h.iter() {
        // Values that are not text cannot travel in the JSON envelope.
        if let Ok(v) = value.to_str() {
            out.append(name.as_str(), v);
        }
    }
    if !kept.is_empty() {
        out.append("cookie", kept.join("; "));
    }
    if is_upgrade(incoming) {
        out.append("upgrade", "websocket");
        out.append("connection", "upgrade");
    }
    let authority = base_url.split_once("://").map_or("", |(_, a)| a);
    let authority = authority.split('/').next().unwrap_or_default();
    if !authority.is_empty() {
        out.append("host", authority);
    }
    out.append("x-forwarded-for", client.to_string());
    out.append(
        "x-forwarded-proto",
        if cfg.https { "https" } else { "http" },
    );
    if let Some(host) = incoming.get(header::HOST).and_then(|v| v.to_str().ok()) {
        out.append("x-forwarded-host", host);
    }
    out
}

/// A device's response headers for the public: hop-by-hop ones go, and a `Set-Cookie`
/// loses its `Domain` (host-only: it reaches this route's host and no other).
fn response_headers(route: &Published, headers: &Headers) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers.iter() {
        let value = if name.eq_ignore_ascii_case("set-cookie") {
            match cookie::Cookie::parse(value) {
                Ok(mut c) => {
                    c.unset_domain();
                    c.to_string()
                }
                Err(_) => {
                    warn!(route = %route.slug, "device Set-Cookie dropped: it does not parse");
                    continue;
                }
            }
        } else {
            value.to_owned()
        };
        match (
            header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            (Ok(n), Ok(v)) => {
                out.append(n, v);
            }
            _ => warn!(route = %route.slug, header = %name, "device header dropped: not valid"),
        }
    }
    drop_hop_by_hop(&mut out);
    out
}

fn allows(route: &Published, method: &Method) -> bool {
    let m = method.as_str();
    route
        .methods
        .iter()
        .any(|a| a == m || (m == "HEAD" && a == "GET"))
}

fn refused(d: &RouteDenied) -> Response {
    // The public hears what happened, never why in detail (the log has it).
    let (status, code, message) = match d {
        RouteDenied::NotFound => (
            StatusCode::NOT_FOUND,
            "ROUTE_NOT_FOUND",
            "no such public route",
        ),
        RouteDenied::Limited { .. } => (
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED",
            "too many requests",
        ),
        RouteDenied::Unavailable(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "this route is unavailable right now",
        ),
    };
    if status.is_server_error() {
        warn!(code, "public request refused: {d}");
    }
    let mut resp = error(status, code, message);
    if let RouteDenied::Limited { retry_after_secs } = d {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, (*retry_after_secs).into());
    }
    resp
}

/// A device that could not answer: its status and code for the public, the detail (the
/// device's LAN address, the connector's words) for the log only.
fn device_failed(route: &Published, e: &RouteError) -> Response {
    let status = e.status_code();
    let detail = format_args!("public route {}: {e}", route.slug);
    let _route = tracing::warn_span!("public", route = %route.slug).entered();
    ponte_core::report("gateway", e.source(), status, e.code(), &detail);
    let message = match status.as_u16() {
        504 => "the device did not answer in time",
        429 | 503 => "the device is busy; retry shortly",
        _ => "the device could not be reached",
    };
    ponte_core::error_answer(status, e.code(), message)
}

/// Serves one request to a host under the public domain.
pub(crate) async fn serve(gw: Gateway, host: PublicHost, req: Request) -> Response {
    let PublicHost::Route(slug) = host else {
        return refused(&RouteDenied::NotFound);
    };
    let (Some(cfg), Some(routes)) = (gw.cfg.public.clone(), gw.routes.clone()) else {
        return refused(&RouteDenied::NotFound);
    };
    let Some(client) = client_addr(&cfg, &req) else {
        return refused(&RouteDenied::Unavailable("no client address".into()));
    };
    let route = match routes.route(&slug, client).await {
        Ok(r) => r,
        Err(d) => return refused(&d),
    };
    let path = match path::normalize(req.uri().path()) {
        Ok(p) => p,
        Err(e) => {
            debug!(route = %slug, "public request refused: {e}");
            return error(StatusCode::BAD_REQUEST, "BAD_PATH", &e.to_string());
        }
    };
    if !route.paths.iter().any(|g| path::matches(g, &path.decoded)) {
        return error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "this path is not published",
        );
    }
    if !allows(&route, req.method()) {
        let mut resp = error(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            "this method is not published for this path",
        );
        let mut allow: Vec<&str> = route.methods.iter().map(String::as_str).collect();
        if allow.contains(&"GET") && !allow.contains(&"HEAD") {
            allow.push("HEAD");
        }
        if let Ok(v) = HeaderValue::from_str(&allow.join(", ")) {
            resp.headers_mut().insert(header::ALLOW, v);
        }
        return resp;
    }
    let upgrade = is_upgrade(req.headers());
    if upgrade && !route.websocket {
        return error(
            StatusCode::FORBIDDEN,
            "WEBSOCKET_NOT_ALLOWED",
            "this route does not carry WebSockets",
        );
    }
    if let Err(d) = routes.admit(&route, client) {
        return refused(&d);
    }
    let length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if length.is_some_and(|n| n > cfg.max_body) {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "BODY_TOO_LARGE",
            "request body too large",
        );
    }
    let device_path = match req.uri().query() {
        Some(q) => format!("{}?{q}", path.encoded),
        None => path.encoded,
    };
    let headers = device_headers(&cfg, &route.base_url, client, req.headers());
    let usage = Usage::new(Meter::Route(routes, route.id, route.slug.clone()));
    let (mut parts, body) = req.into_parts();
    if upgrade {
        return match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
            Ok(ws) => websocket(gw, route, device_path, headers, &parts.headers, ws, usage).await,
            Err(rejection) => rejection.into_response(),
        };
    }
    let has_body =
        length.is_some_and(|n| n > 0) || parts.headers.contains_key(header::TRANSFER_ENCODING);
    let mut pr = ProxyRequest::new(&route.base_url, parts.method.as_str(), device_path);
    pr.headers = headers;
    pr.timeout = route.timeout;
    pr.tls_insecure = route.tls_insecure;
    if has_body && parts.method != Method::GET && parts.method != Method::HEAD {
        // A body without a length is cut at the cap: the device's request fails rather
        // than the gateway forward more than it allows.
        let cap = cfg.max_body;
        let mut seen = 0u64;
        pr.body = RequestBody::Stream {
            length,
            stream: body
                .into_data_stream()
                .map_err(std::io::Error::other)
                .and_then(move |chunk| {
                    seen += chunk.len() as u64;
                    let over = seen > cap;
                    async move {
                        match over {
                            true => Err(std::io::Error::other("request body over the limit")),
                            false => Ok(chunk),
                        }
                    }
                })
                .boxed(),
        };
    }
    let sent = tokio::select! {
        r = gw.router.send(&route.connector_id, pr) => r,
        () = route.ended.cancelled() => Err(RouteError::Cancelled),
    };
    let resp = match sent {
        Ok(r) => r,
        Err(e) => return device_failed(&route, &e),
    };
    let out_headers = response_headers(&route, &resp.headers);
    let mut usage = usage;
    let body = resp
        .body
        .into_stream()
        .map_err(std::io::Error::other)
        .inspect(move |c| {
            // The whole `usage` moves in: its drop records.
            let usage = &mut usage;
            if let Ok(c) = c {
                usage.bytes += c.len() as u64;
            }
        })
        .boxed();
    let mut response = Response::new(Body::from_stream(cut_on_end(body, route.ended)));
    *response.status_mut() = StatusCode::from_u16(resp.status).unwrap_or(StatusCode::BAD_GATEWAY);
    *response.headers_mut() = out_headers;
    response
}

/// A device WebSocket on a route that allows them; the device side is opened first.
async fn websocket(
    gw: Gateway,
    route: Published,
    device_path: String,
    headers: Headers,
    incoming: &HeaderMap,
    upgrade: WebSocketUpgrade,
    usage: Usage,
) -> Response {
    let mut wr = WsRequest::new(&route.base_url, device_path);
    wr.headers = headers;
    wr.protocols = ws_protocols(incoming);
    wr.tls_insecure = route.tls_insecure;
    wr.timeout = route.timeout;
    let opened = tokio::select! {
        r = gw.router.open_ws(&route.connector_id, wr) => r,
        () = route.ended.cancelled() => Err(RouteError::Cancelled),
    };
    let device = match opened {
        Ok(d) => d,
        Err(e) => return device_failed(&route, &e),
    };
    let upgrade = match device.protocol.clone() {
        Some(p) => upgrade.protocols([p]),
        None => upgrade,
    };
    let write_timeout = gw.cfg.ws_write_timeout;
    let ended = route.ended;
    upgrade
        .max_message_size(MAX_WS_MESSAGE)
        .max_frame_size(MAX_WS_MESSAGE)
        .on_upgrade(move |socket| pump_ws(socket, device, ended, usage, write_timeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        h
    }

    #[test]
    fn a_routes_host_is_its_slug_under_the_public_domain() {
        let cfg = PublicConfig::new("Pub.Localhost:8002");
        let route = |h: &str| host_route(&cfg, &headers(h));
        let public = |h: &str| public_host(&cfg, &headers(h));
        for (host, slug) in [
            ("nexora.pub.localhost:8002", "nexora"),
            ("NEXORA.Pub.Localhost:8002", "nexora"),
            ("nexora.pub.localhost.:8002", "nexora"),
        ] {
            assert_eq!(route(host).as_deref(), Some(slug), "{host}");
        }
        // Under the public domain but no route: public, serving nothing.
        for nothing in [
            "pub.localhost:8002",
            "pub.localhost.:8002",
            "a.nexora.pub.localhost:8002",
            "s-0000.pub.localhost:8002",
            "x.pub.localhost:8002",
        ] {
            assert_eq!(public(nothing), Some(PublicHost::Nothing), "{nothing}");
        }
        // Not under it: the gateway's own.
        for other in [
            "nexora.pub.localhost",
            "nexora.pub.localhost:8003",
            "nexorapub.localhost:8002",
            "localhost:8002",
            "127.0.0.1:8002",
        ] {
            assert_eq!(public(other), None, "{other}");
        }
    }

    #[test]
    fn slugs_are_plain_dns_labels() {
        for ok in ["nexora", "pos-1", "a1b2c3", &"a".repeat(40)] {
            assert!(valid_slug(ok), "{ok}");
        }
        for bad in [
            "ab",
            "Nexora",
            "-pos",
            "pos-",
            "s-abc",
            "xn--pos",
            "po_s",
            "po.s",
            &"a".repeat(41),
        ] {
            assert!(!valid_slug(bad), "{bad}");
        }
    }

    #[test]
    fn the_device_gets_its_host_the_forwarding_headers_and_no_ponte_cookie() {
        let cfg = PublicConfig {
            https: true,
            ..PublicConfig::new("pub.example.com")
        };
        let mut incoming = headers("nexora.pub.example.com");
        for (n, v) in [
            ("cookie", "__ponte_rs=g; app=1"),
            ("cookie", "ponte_console=c; other=2"),
            ("x-forwarded-for", "203.0.113.9"),
            ("x-real-ip", "203.0.113.9"),
            ("forwarded", "for=203.0.113.9"),
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "hop"),
            ("proxy-authorization", "Basic eA=="),
            ("te", "trailers"),
            ("authorization", "Bearer app"),
            ("accept", "text/html"),
        ] {
            incoming.append(n, HeaderValue::from_static(v));
        }
        let client: IpAddr = "198.51.100.7".parse().unwrap();
        let out = device_headers(&cfg, "http://192.168.1.50:3000", client, &incoming);
        let get = |n: &str| out.get_all(n).map(str::to_owned).collect::<Vec<String>>();
        assert_eq!(get("host"), ["192.168.1.50:3000"]);
        assert_eq!(get("x-forwarded-for"), ["198.51.100.7"]);
        assert_eq!(get("x-forwarded-proto"), ["https"]);
        assert_eq!(get("x-forwarded-host"), ["nexora.pub.example.com"]);
        assert_eq!(get("cookie"), ["app=1; other=2"]);
        assert_eq!(get("authorization"), ["Bearer app"]);
        assert_eq!(get("accept"), ["text/html"]);
        for gone in [
            "x-real-ip",
            "forwarded",
            "connection",
            "x-secret",
            "proxy-authorization",
            "te",
        ] {
            assert!(get(gone).is_empty(), "{gone}");
        }
    }
}
