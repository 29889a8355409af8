//! The gateway's HTTP side: `/remote/launch/{code}`, `ANY /remote/s/{sid}/…`, the Referer
//! fallback for requests that lost the prefix, and `/health`.
//!
//! Paths are taken raw from the request line, never percent-decoded: the session is the
//! first segment after `/remote/s/`, and what follows goes to that session's device as it
//! came. No path trick can select another session, and nothing from the path is ever
//! written into a response header except through [`http::HeaderValue`]'s checks.

use crate::authority::{Denied, SessionAuthority, GRANT_COOKIE};
use crate::rewrite::{device_request_headers, rewrite_body, rewrite_response_headers, Scope};
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use ponte_protocol::Headers;
use ponte_relay::{ProxyRequest, RequestBody, RouteError, Router};
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
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            max_html_memory: 4 * 1024 * 1024,
            secure_cookies: false,
        }
    }
}

/// Shared state of the gateway role.
#[derive(Clone)]
pub struct Gateway {
    router: Arc<dyn Router>,
    sessions: Arc<dyn SessionAuthority>,
    cfg: Arc<GatewayConfig>,
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
            cfg: Arc::new(cfg),
        }
    }
}

/// The gateway's routes.
pub fn app(gw: Gateway) -> axum::Router {
    axum::Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/remote/launch/{code}", get(launch))
        .fallback(dispatch)
        .with_state(gw)
}

/// One-time launch code → grant cookie scoped to the session → 302 into the session.
async fn launch(State(gw): State<Gateway>, Path(code): Path<String>) -> Response {
    match gw.sessions.launch(&code).await {
        Ok(l) => {
            let prefix = format!("/remote/s/{}/", l.session_id);
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
            let mut resp = StatusCode::FOUND.into_response();
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
        return proxy(gw, sid.to_owned(), req).await;
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

async fn proxy(gw: Gateway, sid: String, req: Request) -> Response {
    let grant = grant_cookie(req.headers());
    let admitted = match gw.sessions.admit(&sid, grant.as_deref()).await {
        Ok(a) => a,
        Err(d) => return denied(&d),
    };
    let scope = Arc::new(Scope::new(&sid, &admitted.base_url));
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let Some(device_path) = scope.device_path(pq).map(|p| p.into_owned()) else {
        return denied(&Denied::NotFound);
    };
    let (parts, body) = req.into_parts();
    let mut headers = Headers::new();
    for (name, value) in device_request_headers(&scope, &parts.headers).iter() {
        // Values that are not text cannot travel in the JSON envelope; devices do not need them.
        if let Ok(v) = value.to_str() {
            headers.append(name.as_str(), v);
        }
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
        Err(e) => {
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_GATEWAY);
            return error(status, e.code(), &e.to_string());
        }
    };
    let mut out_headers = HeaderMap::new();
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
    let plan = rewrite_response_headers(&scope, &mut out_headers);
    let mut usage = Usage {
        sessions: gw.sessions.clone(),
        sid,
        bytes: 0,
    };
    let body = resp.body.into_stream().map_err(std::io::Error::other);
    let body = rewrite_body(plan, scope, gw.cfg.max_html_memory, body)
        .inspect(move |c| {
            // The whole `usage` moves in (not a copy of its counter): its drop records.
            let usage = &mut usage;
            if let Ok(c) = c {
                usage.bytes += c.len() as u64;
            }
        })
        .take_until(admitted.ended.cancelled_owned());
    let mut response = Response::new(Body::from_stream(body));
    *response.status_mut() = StatusCode::from_u16(resp.status).unwrap_or(StatusCode::BAD_GATEWAY);
    *response.headers_mut() = out_headers;
    response
}

/// Counts what one response delivered; recorded once, when the body is done or dropped.
struct Usage {
    sessions: Arc<dyn SessionAuthority>,
    sid: String,
    bytes: u64,
}

impl Drop for Usage {
    fn drop(&mut self) {
        self.sessions.record(&self.sid, self.bytes);
    }
}

/// Session ids are UUIDs: hex and dashes only.
fn valid_session_id(sid: &str) -> bool {
    sid.len() == 36 && sid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

fn grant_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == GRANT_COOKIE)
        .map(|(_, value)| value.to_owned())
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
    if status.is_server_error() {
        warn!(code = d.code(), "remote request refused: {d}");
    } else {
        debug!(code = d.code(), "remote request refused: {d}");
    }
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

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({"error": {"code": code, "message": message}});
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        Bytes::from(body.to_string()),
    )
        .into_response()
}
