//! The gateway's HTTP side: `/remote/launch/{code}`, `ANY /remote/s/{sid}/…`, the Referer
//! fallback for requests that lost the prefix, and `/health`.
//!
//! Paths are taken raw from the request line, never percent-decoded: the session is the
//! first segment after `/remote/s/`, and what follows goes to that session's device as it
//! came. No path trick can select another session, and nothing from the path is ever
//! written into a response header except through [`http::HeaderValue`]'s checks.

use crate::published::{self, PublicConfig};
use crate::rewrite::{
    device_request_headers, rewrite_body, rewrite_response_headers, service_worker_allowed,
    shim_script, BodyPlan, Scope,
};
use axum::body::Body;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use ponte_core::published::RouteAuthority;
use ponte_core::session::{Admitted, Denied, SessionAuthority, GRANT_COOKIE};
use ponte_core::{ProxyRequest, RequestBody, RouteError, Router, WsChannel, WsFrame, WsRequest};
use ponte_protocol::Headers;
use std::sync::Arc;
use tracing::{debug, info, warn};

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
    sessions: Arc<dyn SessionAuthority>,
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

/// The gateway's routes.
pub fn app(gw: Gateway) -> axum::Router {
    let router = axum::Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/remote/launch/{code}", get(launch_page).post(launch))
        .fallback(dispatch)
        .with_state(gw.clone());
    let router = match gw.cfg.host_mode {
        // Ahead of the routes: on a session's host every path is the device's.
        Some(_) => router.layer(axum::middleware::from_fn_with_state(
            gw.clone(),
            session_host,
        )),
        None => router,
    };
    let router = match gw.cfg.public {
        // Outermost: a published route's host serves that route and nothing of the
        // gateway's own (no launch links, no sessions, no Referer fallback).
        Some(_) => router.layer(axum::middleware::from_fn_with_state(gw, public_host)),
        None => router,
    };
    router.layer(axum::middleware::from_fn(|req, next| {
        ponte_core::metrics::track("gateway", req, next)
    }))
}

/// Where a session lives: under `/remote/s/{sid}/`, or on its own host (host mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Path,
    Host,
}

/// Requests to `{slug}.<public domain>` go to that published route, whatever the path;
/// any other name under the public domain serves nothing.
async fn public_host(
    State(gw): State<Gateway>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let host = gw
        .cfg
        .public
        .as_ref()
        .and_then(|p| published::public_host(p, req.headers()));
    match host {
        Some(host) => published::serve(gw, host, req).await,
        None => next.run(req).await,
    }
}

/// Host mode: requests to `s-{sid}.<domain>` go to that session (its launch link
/// included); any other host gets the gateway's own routes, which then serve no session.
async fn session_host(
    State(gw): State<Gateway>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(sid) = host_session(&gw.cfg, req.headers()) else {
        return next.run(req).await;
    };
    if let Some(code) = req.uri().path().strip_prefix("/remote/launch/") {
        if !code.is_empty() && !code.contains('/') {
            if req.method() == Method::GET {
                return launch_confirm();
            }
            if req.method() == Method::POST {
                if cross_origin(req.headers()) {
                    return cross_origin_refused(&sid);
                }
                return launch_into(&gw, code, Some(&sid)).await;
            }
        }
    }
    proxy(gw, sid, Mode::Host, req).await
}

/// The session a `Host` of `s-{sid}.<domain>` names.
fn host_session(cfg: &GatewayConfig, headers: &HeaderMap) -> Option<String> {
    let domain = cfg.host_mode.as_deref()?;
    let host = headers
        .get(header::HOST)?
        .to_str()
        .ok()?
        .to_ascii_lowercase();
    let (label, rest) = host.strip_prefix("s-")?.split_once('.')?;
    (rest == domain && valid_session_id(label)).then(|| label.to_owned())
}

/// `GET` of a launch link spends nothing: it answers a page that confirms with a `POST`
/// (its script does so at once), so a chat app's link preview, which only GETs, leaves
/// the code usable for the admin.
async fn launch_page(State(gw): State<Gateway>) -> Response {
    // In host mode sessions live on their own hosts only; the apex serves none, so their
    // isolation cannot be side-stepped through it.
    if gw.cfg.host_mode.is_some() {
        return denied(&Denied::NotFound);
    }
    launch_confirm()
}

/// The confirmation page. Its form posts to the page's own URL, so the code is written
/// nowhere in it.
fn launch_confirm() -> Response {
    const PAGE: &str = "<!doctype html><html lang=pt-BR><meta charset=utf-8>\
        <title>Acesso remoto</title>\
        <body><h1>Acesso remoto</h1><form method=post id=abrir><p>Abrindo o acesso remoto…</p>\
        <button id=continuar>Continuar</button></form>\
        <script>document.getElementById('abrir').submit()</script></body></html>";
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            // Not `no-referrer`: the form's POST would carry `Origin: null` and be
            // refused as cross-origin. The code's URL goes to this origin only.
            (header::REFERRER_POLICY, "same-origin"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; form-action 'self'; \
                 frame-ancestors 'none'; base-uri 'none'",
            ),
        ],
        PAGE,
    )
        .into_response()
}

/// `POST` of a launch link (from its confirmation page): one-time launch code → grant
/// cookie scoped to the session → 303 into the session.
async fn launch(
    State(gw): State<Gateway>,
    Path(code): Path<String>,
    headers: HeaderMap,
) -> Response {
    if gw.cfg.host_mode.is_some() {
        return denied(&Denied::NotFound);
    }
    if cross_origin(&headers) {
        return cross_origin_refused("-");
    }
    launch_into(&gw, &code, None).await
}

fn cross_origin_refused(sid: &str) -> Response {
    warn!(session_id = %sid, "cross-origin launch refused");
    error(
        StatusCode::FORBIDDEN,
        "CROSS_ORIGIN",
        "a launch link is confirmed from its own page",
    )
}

/// `host_sid`: the launch link was opened on that session's host (host mode); only a
/// code for that session is spent, another session's is refused and stays usable.
async fn launch_into(gw: &Gateway, code: &str, host_sid: Option<&str>) -> Response {
    match gw.sessions.launch(code, host_sid).await {
        Ok(l) => {
            let prefix = match host_sid {
                Some(_) => "/".to_owned(),
                None => format!("/remote/s/{}/", l.session_id),
            };
            let cookie = format!(
                "{GRANT_COOKIE}={}; Path={prefix}; Max-Age={}; HttpOnly; SameSite=Lax{}",
                l.grant,
                l.max_age.as_secs(),
                if gw.cfg.secure_cookies {
                    "; Secure"
                } else {
                    ""
                }
            );
            info!(session_id = %l.session_id, "remote session launched");
            let mut resp = StatusCode::SEE_OTHER.into_response();
            let h = resp.headers_mut();
            for (name, value) in [
                (header::LOCATION, prefix.as_str()),
                (header::SET_COOKIE, cookie.as_str()),
                (header::CACHE_CONTROL, "no-store"),
                (header::REFERRER_POLICY, "no-referrer"),
            ] {
                match HeaderValue::from_str(value) {
                    Ok(v) => {
                        h.insert(name, v);
                    }
                    Err(_) => return denied(&Denied::Unavailable("bad session id".into())),
                }
            }
            resp
        }
        Err(d) => denied(&d),
    }
}

async fn dispatch(State(gw): State<Gateway>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    if gw.cfg.host_mode.is_some() {
        return denied(&Denied::NotFound);
    }
    if let Some(rest) = path.strip_prefix("/remote/s/") {
        let (sid, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if !valid_session_id(sid) {
            return denied(&Denied::NotFound);
        }
        if tail.is_empty() {
            // `/remote/s/{sid}` → `/remote/s/{sid}/`: relative URLs need the slash, and
            // the grant cookie's path has it.
            let query = req
                .uri()
                .query()
                .map(|q| format!("?{q}"))
                .unwrap_or_default();
            return redirect(
                StatusCode::PERMANENT_REDIRECT,
                &format!("/remote/s/{sid}/{query}"),
            );
        }
        return proxy(gw, sid.to_owned(), Mode::Path, req).await;
    }
    // A navigation that lost the prefix (`location.replace("/x")`): its Referer names the
    // session it came from.
    if let Some(sid) = referer_session(req.headers()) {
        let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
        debug!(session_id = %sid, path = %req.uri().path(), "request without the prefix sent back under it");
        return redirect(
            StatusCode::TEMPORARY_REDIRECT,
            &format!("/remote/s/{sid}{pq}"),
        );
    }
    error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "no such page on the gateway",
    )
}

async fn proxy(gw: Gateway, sid: String, mode: Mode, req: Request) -> Response {
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

/// A response body that the session's end cuts even while nothing polls it. hyper polls a
/// body only when the browser's socket takes more, so a browser that stopped reading would
/// otherwise keep the device's answer (and its tunnel stream) open until the write gave
/// up. A watcher task drops the device stream when the session ends, and the browser then
/// sees the body end; the watcher ends with the response (a drop guard), so nothing is
/// left behind per request.
pub(crate) fn cut_on_end<T: Send + 'static>(
    body: futures_util::stream::BoxStream<'static, T>,
    ended: tokio_util::sync::CancellationToken,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    let slot = Arc::new(std::sync::Mutex::new(Some(body)));
    let done = tokio_util::sync::CancellationToken::new();
    let (watched, finished) = (slot.clone(), done.clone());
    tokio::spawn(async move {
        tokio::select! {
            () = ended.cancelled() => drop(watched.lock().unwrap_or_else(|e| e.into_inner()).take()),
            () = finished.cancelled() => {}
        }
    });
    let guard = done.drop_guard();
    futures_util::stream::poll_fn(move |cx| {
        let _response_alive = &guard;
        match slot.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            Some(body) => body.poll_next_unpin(cx),
            None => std::task::Poll::Ready(None),
        }
    })
}

/// Largest WebSocket message carried either way: what one tunnel frame holds (the
/// connector's limit). A bigger one from the browser closes its socket with 1009.
pub(crate) const MAX_WS_MESSAGE: usize = ponte_protocol::limits::MAX_WS_MESSAGE;

/// A device WebSocket reports its traffic to the session (bytes, idle expiry) at most
/// this often, so a busy socket costs no store work per message.
const WS_ACTIVITY_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// A device WebSocket through the tunnel. The device side is opened first, so a device
/// that refuses gets an HTTP error the page can see, not an accepted socket that closes.
async fn websocket(
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
            debug!(session_id = %sid, "device WebSocket not opened");
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

/// The subprotocols a browser's WebSocket handshake offers, in order.
pub(crate) fn ws_protocols(incoming: &HeaderMap) -> Vec<String> {
    incoming
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

/// Live traffic of one device WebSocket, handed to the session at most every
/// [`WS_ACTIVITY_EVERY`]: counts its bytes and slides the idle expiry, so a page that
/// only talks over its WebSocket is not cut off. What is left at the end goes with the
/// stream's [`Usage`].
struct WsActivity {
    pending: u64,
    last: tokio::time::Instant,
}

impl WsActivity {
    fn new() -> Self {
        Self {
            pending: 0,
            last: tokio::time::Instant::now(),
        }
    }

    fn add(&mut self, usage: &mut Usage, bytes: u64) {
        self.pending += bytes;
        if self.last.elapsed() >= WS_ACTIVITY_EVERY {
            usage.meter.activity(self.pending);
            self.pending = 0;
            self.last = tokio::time::Instant::now();
        }
    }

    /// Bytes not yet handed over, for the stream's final [`Usage`].
    fn finish(self, usage: &mut Usage) {
        usage.bytes += self.pending;
    }
}

/// A read error from the browser's socket: a message over [`MAX_WS_MESSAGE`] closes with
/// 1009 (message too big), any other protocol fault with 1002; `None` when the socket
/// itself failed and no close can be sent.
fn browser_error_close(e: axum::Error) -> Option<(u16, &'static str)> {
    use tungstenite::Error as E;
    match e.into_inner().downcast::<E>().map(|e| *e) {
        Ok(E::Capacity(_)) => Some((1009, "message too big")),
        Ok(E::Protocol(_) | E::Utf8(_)) => Some((1002, "protocol error")),
        _ => None,
    }
}

/// Copies messages both ways until either side closes or the session ends. One message
/// is in hand at a time: a browser that reads slowly stops this loop from taking more
/// from the tunnel (the relay then ends the stream once its per-stream queue is full,
/// rather than buffer), and a congested tunnel stops it reading from the browser.
/// Every wait also watches the session's end.
pub(crate) async fn pump_ws(
    mut browser: WebSocket,
    mut device: WsChannel,
    ended: tokio_util::sync::CancellationToken,
    mut usage: Usage,
    write_timeout: std::time::Duration,
) {
    let mut activity = WsActivity::new();
    let (code, reason) = loop {
        tokio::select! {
            () = ended.cancelled() => break (Some(1008), "remote session ended".to_owned()),
            msg = browser.recv() => {
                let frame = match msg {
                    Some(Ok(Message::Text(t))) => WsFrame::Text(t.as_str().to_owned()),
                    Some(Ok(Message::Binary(b))) => WsFrame::Binary(b),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(c))) => {
                        let (code, reason) =
                            c.map_or((None, None), |c| (Some(c.code), Some(c.reason.to_string())));
                        let _ = tokio::select! {
                            r = device.send(WsFrame::Close { code, reason }) => r,
                            () = ended.cancelled() => Ok(()),
                        };
                        // Reading on lets the library send the reply, so the page sees a
                        // clean close.
                        let _ = tokio::time::timeout(CLOSE_GRACE, async {
                            while browser.recv().await.is_some() {}
                        })
                        .await;
                        activity.finish(&mut usage);
                        return;
                    }
                    Some(Err(e)) => {
                        let close = browser_error_close(e);
                        let _ = tokio::select! {
                            r = device.send(WsFrame::Close { code: Some(1001), reason: None }) => r,
                            () = ended.cancelled() => Ok(()),
                        };
                        if let Some((code, reason)) = close {
                            debug!(stream = %usage.meter.name(), code, "browser WebSocket closed: {reason}");
                            let _ = tokio::time::timeout(
                                CLOSE_GRACE,
                                browser.send(close_message(Some(code), reason)),
                            )
                            .await;
                        }
                        activity.finish(&mut usage);
                        return;
                    }
                    None => {
                        let _ = tokio::select! {
                            r = device.send(WsFrame::Close { code: Some(1001), reason: None }) => r,
                            () = ended.cancelled() => Ok(()),
                        };
                        activity.finish(&mut usage);
                        return;
                    }
                };
                activity.add(&mut usage, ws_len(&frame));
                let sent = tokio::select! {
                    r = device.send(frame) => r,
                    () = ended.cancelled() => break (Some(1008), "remote session ended".to_owned()),
                };
                if let Err(e) = sent {
                    break (Some(1011), e.to_string());
                }
            }
            frame = device.recv() => {
                let msg = match frame {
                    Some(WsFrame::Text(t)) => {
                        activity.add(&mut usage, t.len() as u64);
                        Message::Text(t.into())
                    }
                    Some(WsFrame::Binary(b)) => {
                        activity.add(&mut usage, b.len() as u64);
                        Message::Binary(b)
                    }
                    Some(WsFrame::Close { code, reason }) => break (code, reason.unwrap_or_default()),
                    None => break (Some(1011), "device connection lost".to_owned()),
                };
                // A browser that stops reading does not hold this message (and the
                // relay's queue behind it) for ever: past the deadline the stream closes.
                let sent = tokio::select! {
                    r = tokio::time::timeout(write_timeout, browser.send(msg)) => r,
                    () = ended.cancelled() => break (Some(1008), "remote session ended".to_owned()),
                };
                let Ok(sent) = sent else {
                    warn!(
                        stream = %usage.meter.name(),
                        timeout_s = write_timeout.as_secs_f64(),
                        "browser stopped reading a device WebSocket; closing it"
                    );
                    break (Some(1008), "browser stopped reading".to_owned());
                };
                if sent.is_err() {
                    let _ = tokio::select! {
                        r = device.send(WsFrame::Close { code: Some(1001), reason: None }) => r,
                        () = ended.cancelled() => Ok(()),
                    };
                    activity.finish(&mut usage);
                    return;
                }
            }
        }
    };
    activity.finish(&mut usage);
    // The device's side goes first (dropping the channel closes it), so a browser slow to
    // finish the close handshake holds nothing open on the device.
    drop(device);
    // Tell the browser why, within a bound: one that stopped reading is left.
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        if browser.send(close_message(code, &reason)).await.is_ok() {
            while browser.recv().await.is_some() {}
        }
    })
    .await;
}

/// How long a closing socket is given to finish its close handshake.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

fn ws_len(frame: &WsFrame) -> u64 {
    match frame {
        WsFrame::Text(t) => t.len() as u64,
        WsFrame::Binary(b) => b.len() as u64,
        WsFrame::Close { .. } => 0,
    }
}

/// A close frame for the browser. Codes an endpoint may send pass (1000–1003,
/// 1007–1014, 3000–4999); 1005/1006/1015 (which only describe a close) mean no code;
/// anything else becomes 1011.
pub(crate) fn close_message(code: Option<u16>, reason: &str) -> Message {
    let frame = code.filter(|c| !matches!(c, 1005 | 1006 | 1015)).map(|c| {
        let code = match c {
            1000..=1003 | 1007..=1014 | 3000..=4999 => c,
            _ => 1011,
        };
        CloseFrame {
            code,
            // A close reason is at most 123 bytes; cut on a char boundary.
            reason: truncate(reason, 123).into(),
        }
    });
    Message::Close(frame)
}

pub(crate) fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Where a stream's traffic is counted: its remote session, or its published route.
pub(crate) enum Meter {
    Session(Arc<dyn SessionAuthority>, String),
    Route(Arc<dyn RouteAuthority>, i32, String),
}

impl Meter {
    /// One request and the bytes it delivered.
    fn record(&self, bytes: u64) {
        match self {
            Meter::Session(s, sid) => s.record(sid, bytes),
            Meter::Route(r, id, _) => r.record(*id, bytes),
        }
    }

    /// Traffic of a stream that outlives its request (about once a second at most).
    fn activity(&self, bytes: u64) {
        match self {
            Meter::Session(s, sid) => s.activity(sid, bytes),
            Meter::Route(r, id, _) => r.activity(*id, bytes),
        }
    }

    /// What the stream belongs to, for logs: the session id or the route's slug.
    fn name(&self) -> &str {
        match self {
            Meter::Session(_, sid) => sid,
            Meter::Route(_, _, slug) => slug,
        }
    }
}

/// Counts what one response delivered; recorded once, when the body is done or dropped.
pub(crate) struct Usage {
    meter: Meter,
    pub(crate) bytes: u64,
}

impl Usage {
    pub(crate) fn new(meter: Meter) -> Self {
        Self { meter, bytes: 0 }
    }
}

impl Drop for Usage {
    fn drop(&mut self) {
        self.meter.record(self.bytes);
    }
}

/// Session ids are UUIDs: hex and dashes only.
fn valid_session_id(sid: &str) -> bool {
    sid.len() == 36 && sid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

/// Every `__ponte_rs` the request carries: a page can plant one for a wider path or a
/// parent domain (cookie tossing), which the browser may send first, so each is tried.
fn grant_cookies(headers: &HeaderMap) -> Vec<&str> {
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
async fn admit(gw: &Gateway, sid: &str, headers: &HeaderMap) -> Result<Admitted, Denied> {
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

pub(crate) fn is_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// True when the browser says the request comes from another origin than the one it is
/// sent to (`Origin` naming another host, or `Sec-Fetch-Site` other than same-origin).
/// Requests without either header (non-browser clients, old browsers) pass.
fn cross_origin(headers: &HeaderMap) -> bool {
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

/// The session a same-origin Referer under `/remote/s/{sid}/` names.
fn referer_session(headers: &HeaderMap) -> Option<String> {
    let referer = headers.get(header::REFERER)?.to_str().ok()?;
    let rest = referer.split_once("://")?.1;
    let path = &rest[rest.find('/')?..];
    let sid = path.strip_prefix("/remote/s/")?.split('/').next()?;
    valid_session_id(sid).then(|| sid.to_owned())
}

fn redirect(status: StatusCode, location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(v) => (status, [(header::LOCATION, v)]).into_response(),
        Err(_) => error(
            StatusCode::BAD_REQUEST,
            "BAD_PATH",
            "path cannot be redirected",
        ),
    }
}

/// A refusal as a small page (these are mostly browser navigations), with the JSON code
/// in a header for scripts.
fn denied(d: &Denied) -> Response {
    let status = StatusCode::from_u16(d.status()).unwrap_or(StatusCode::FORBIDDEN);
    let source = ponte_core::ErrorSource::of_status(status);
    ponte_core::report("gateway", source, status, d.code(), d);
    let (title, text) = match d {
        Denied::NoGrant => (
            "Acesso remoto",
            "Abra a sessão pelo botão Gerenciar Remotamente.",
        ),
        Denied::WrongGrant => (
            "Acesso negado",
            "Esta sessão remota pertence a outro usuário.",
        ),
        Denied::NotFound => ("Sessão não encontrada", "Esta sessão remota não existe."),
        Denied::Expired => (
            "Sessão expirada",
            "Esta sessão remota expirou. Abra uma nova.",
        ),
        Denied::Ended => ("Sessão encerrada", "Esta sessão remota foi encerrada."),
        Denied::LaunchUsed => (
            "Link inválido",
            "Este link já foi usado ou expirou. Abra uma nova sessão.",
        ),
        Denied::Limited { .. } => ("Muitas requisições", "Aguarde alguns segundos."),
        Denied::Unavailable(_) => (
            "Indisponível",
            "O acesso remoto está indisponível no momento.",
        ),
    };
    let page = format!(
        "<!doctype html><html lang=pt-BR><meta charset=utf-8><title>{title}</title>\
         <body><h1>{title}</h1><p>{text}</p><p><small>{}</small></p></body></html>",
        d.code()
    );
    let mut resp = (
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        page,
    )
        .into_response();
    resp.headers_mut()
        .insert("x-ponte-error", HeaderValue::from_static(d.code()));
    if let Denied::Limited { retry_after_secs } = d {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, (*retry_after_secs).into());
    }
    resp
}

/// A JSON error answer, counted and logged (a 5xx as ours, the rest as the caller's).
pub(crate) fn error(status: StatusCode, code: &'static str, message: &str) -> Response {
    let source = ponte_core::ErrorSource::of_status(status);
    ponte_core::error_response("gateway", source, status, code, message)
}

/// A routed request that failed: answered, counted and logged as its source says (a
/// device that cannot be reached is a warning an operator sees).
pub(crate) fn route_failed(e: &RouteError) -> Response {
    ponte_core::error_response(
        "gateway",
        e.source(),
        e.status_code(),
        e.code(),
        &e.to_string(),
    )
}
