//! One request of a remote session through to its device: admitted by its grant, the
//! request and response rewritten for the session's scope, a device WebSocket pumped.

use crate::answer::{denied, error, route_failed};
use crate::rewrite::{
    device_request_headers, rewrite_body, rewrite_response_headers, service_worker_allowed,
    shim_script, BodyPlan, Scope,
};
use crate::state::{Gateway, Mode};
use crate::stream::{cut_on_end, is_upgrade, pump_ws, ws_protocols, Meter, Usage, MAX_WS_MESSAGE};
use axum::body::Body;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, Request};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use ponte_core::session::{Admitted, Denied, GRANT_COOKIE};
use ponte_core::{ProxyRequest, RequestBody, RouteError, WsRequest};
use ponte_protocol::Headers;
use std::sync::Arc;
use tracing::warn;

pub(crate) async fn proxy(gw: Gateway, sid: String, mode: Mode, req: Request) -> Response {
    // A request that changes state, or opens a WebSocket (which has no CORS), must come
    // from the session's own pages: in host mode sibling session hosts are same-site, so
    // their SameSite=Lax grant cookies would otherwise ride along on requests one device's
    // page makes to another's.
    let unsafe_method = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if (unsafe_method || is_upgrade(req.headers())) && cross_origin(req.headers()) {
        warn!(session_id = %sid, method = %req.method(), "cross-origin request refused");
        return error(
            StatusCode::FORBIDDEN,
            "CROSS_ORIGIN",
            "requests that change state must come from the session's own pages",
        );
    }
    let admitted = match admit(&gw, &sid, req.headers()).await {
        Ok(a) => a,
        Err(d) => return denied(&d),
    };
    let scope = Arc::new(match mode {
        Mode::Path => Scope::new(&sid, &admitted.base_url),
        Mode::Host => Scope::host(&admitted.base_url),
    });
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let Some(device_path) = scope.device_path(pq).map(|p| p.into_owned()) else {
        return denied(&Denied::NotFound);
    };
    // A service worker's script: the browser lets it control at most the script's
    // directory, or what the script's `Service-Worker-Allowed` says.
    let worker_script = req
        .headers()
        .get("service-worker")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"script"));
    let script_path = req.uri().path().to_owned();
    // A worker's or service worker's script: no injected `<script>` runs in it, so the
    // same shim is prepended to the script itself (asked of the device uncompressed).
    let worker_dest = req
        .headers()
        .get("sec-fetch-dest")
        .is_some_and(|v| matches!(v.as_bytes(), b"worker" | b"sharedworker" | b"serviceworker"));
    let (mut parts, body) = req.into_parts();
    let mut headers = Headers::new();
    for (name, value) in device_request_headers(&scope, &parts.headers).iter() {
        if worker_dest && name == header::ACCEPT_ENCODING {
            continue;
        }
        // Values that are not text cannot travel in the JSON envelope; devices do not need them.
        if let Ok(v) = value.to_str() {
            headers.append(name.as_str(), v);
        }
    }
    if is_upgrade(&parts.headers) {
        return match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
            Ok(ws) => websocket(gw, sid, admitted, device_path, headers, &parts.headers, ws).await,
            Err(rejection) => rejection.into_response(),
        };
    }
    let length = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let has_body =
        length.is_some_and(|n| n > 0) || parts.headers.contains_key(header::TRANSFER_ENCODING);
    let mut pr = ProxyRequest::new(&admitted.base_url, parts.method.as_str(), device_path);
    pr.headers = headers;
    pr.timeout = admitted.timeout;
    pr.tls_insecure = admitted.tls_insecure;
    if has_body && parts.method != Method::GET && parts.method != Method::HEAD {
        pr.body = RequestBody::Stream {
            length,
            stream: body
                .into_data_stream()
                .map_err(std::io::Error::other)
                .boxed(),
        };
    }
    let sent = tokio::select! {
        r = gw.router.send(&admitted.connector_id, pr) => r,
        () = admitted.ended.cancelled() => Err(RouteError::Cancelled),
    };
    let resp = match sent {
        Ok(r) => r,
        Err(e) => return route_failed(&e),
    };
    let mut out_headers = HeaderMap::with_capacity(resp.headers.len() + 2);
    for (name, value) in resp.headers.iter() {
        match (
            header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(n), Ok(v)) => {
                out_headers.append(n, v);
            }
            _ => warn!(session_id = %sid, header = %name, "device header dropped: not valid"),
        }
    }
    let allowed = out_headers.get("service-worker-allowed").map(|v| {
        v.to_str()
            .ok()
            .and_then(|v| service_worker_allowed(&scope, v, &script_path))
    });
    let plan = rewrite_response_headers(&scope, &mut out_headers);
    let encoded = out_headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    let shim = (worker_dest && plan == BodyPlan::Pass && (200..300).contains(&resp.status))
        .then(|| {
            if encoded {
                warn!(session_id = %sid, "worker script sent compressed: not scoped");
                return None;
            }
            for name in [header::CONTENT_LENGTH, header::ETAG] {
                out_headers.remove(name);
            }
            out_headers.remove("content-md5");
            Some(Bytes::from(shim_script(&scope) + "\n"))
        })
        .flatten();
    if worker_script {
        match allowed {
            Some(Some(scope_path)) => {
                if let Ok(v) = HeaderValue::from_str(&scope_path) {
                    out_headers.insert("service-worker-allowed", v);
                }
            }
            // The device asks for a scope outside the session: no worker from it.
            Some(None) => {
                warn!(session_id = %sid, "service worker refused: its scope would leave the session");
                return error(
                    StatusCode::FORBIDDEN,
                    "WORKER_SCOPE",
                    "a service worker may not control pages outside its remote session",
                );
            }
            None => {}
        }
    }
    let mut usage = Usage::new(Meter::Session(gw.sessions.clone(), sid));
    let body = resp.body.into_stream().map_err(std::io::Error::other);
    let body = futures_util::stream::iter(shim.map(Ok))
        .chain(rewrite_body(plan, scope, gw.cfg.max_html_memory, body))
        .inspect(move |c| {
            // The whole `usage` moves in (not a copy of its counter): its drop records.
            let usage = &mut usage;
            if let Ok(c) = c {
                usage.bytes += c.len() as u64;
            }
        })
        .boxed();
    let mut response = Response::new(Body::from_stream(cut_on_end(body, admitted.ended)));
    *response.status_mut() = StatusCode::from_u16(resp.status).unwrap_or(StatusCode::BAD_GATEWAY);
    *response.headers_mut() = out_headers;
    response
}

/// A device WebSocket through the tunnel. The device side is opened first, so a device
/// that refuses gets an HTTP error the page can see, not an accepted socket that closes.
pub(crate) async fn websocket(
    gw: Gateway,
    sid: String,
    admitted: Admitted,
    device_path: String,
    headers: Headers,
    incoming: &HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let mut wr = WsRequest::new(&admitted.base_url, device_path);
    wr.headers = headers;
    wr.protocols = ws_protocols(incoming);
    wr.tls_insecure = admitted.tls_insecure;
    wr.timeout = admitted.timeout;
    let opened = tokio::select! {
        r = gw.router.open_ws(&admitted.connector_id, wr) => r,
        () = admitted.ended.cancelled() => Err(RouteError::Cancelled),
    };
    let device = match opened {
        Ok(d) => d,
        Err(e) => {
            // The session names the failure in the log; `route_failed` counts and answers it.
            let _session = tracing::warn_span!("session", session_id = %sid).entered();
            return route_failed(&e);
        }
    };
    let upgrade = match device.protocol.clone() {
        Some(p) => upgrade.protocols([p]),
        None => upgrade,
    };
    let usage = Usage::new(Meter::Session(gw.sessions.clone(), sid));
    let write_timeout = gw.cfg.ws_write_timeout;
    upgrade
        .max_message_size(MAX_WS_MESSAGE)
        .max_frame_size(MAX_WS_MESSAGE)
        .on_upgrade(move |socket| pump_ws(socket, device, admitted.ended, usage, write_timeout))
}

/// Every `__ponte_rs` the request carries: a page can plant one for a wider path or a
/// parent domain (cookie tossing), which the browser may send first, so each is tried.
pub(crate) fn grant_cookies(headers: &HeaderMap) -> Vec<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .filter(|(name, _)| *name == GRANT_COOKIE)
        .map(|(_, value)| value)
        .take(4)
        .collect()
}

/// Admits the request with the first of its grants that is valid for `sid`; refused
/// with what the last one got (no grant at all: [`Denied::NoGrant`]).
pub(crate) async fn admit(
    gw: &Gateway,
    sid: &str,
    headers: &HeaderMap,
) -> Result<Admitted, Denied> {
    let grants = grant_cookies(headers);
    if grants.is_empty() {
        return gw.sessions.admit(sid, None).await;
    }
    let mut refused = Denied::NoGrant;
    for grant in grants {
        match gw.sessions.admit(sid, Some(grant)).await {
            Ok(a) => return Ok(a),
            Err(d @ Denied::WrongGrant) => refused = d,
            Err(d) => return Err(d),
        }
    }
    Err(refused)
}

/// True when the browser says the request comes from another origin than the one it is
/// sent to (`Origin` naming another host, or `Sec-Fetch-Site` other than same-origin).
/// Requests without either header (non-browser clients, old browsers) pass.
pub(crate) fn cross_origin(headers: &HeaderMap) -> bool {
    let text = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        if !matches!(site, "same-origin" | "none") {
            return true;
        }
    }
    match (text("origin"), text("host")) {
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_none_or(|(_, authority)| !authority.eq_ignore_ascii_case(host)),
        (Some(_), None) => true,
        (None, _) => false,
    }
}
