//! The gateway's HTTP side: `/remote/launch/{code}`, `ANY /remote/s/{sid}/…`, the Referer
//! fallback for requests that lost the prefix, and `/health`.
//!
//! Paths are taken raw from the request line, never percent-decoded: the session is the
//! first segment after `/remote/s/`, and what follows goes to that session's device as it
//! came. No path trick can select another session, and nothing from the path is ever
//! written into a response header except through [`http::HeaderValue`]'s checks.

use crate::answer::{denied, error, redirect};
use crate::published;
use crate::remote::{cross_origin, proxy};
use crate::state::{Gateway, GatewayConfig, Mode};
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use ponte_core::session::{Denied, GRANT_COOKIE};
use tracing::{debug, info, warn};

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

/// Requests to `{slug}.<public domain>` go to that published route, whatever the path;
/// any other name under the public domain serves nothing.
pub(crate) async fn public_host(
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
pub(crate) async fn session_host(
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
pub(crate) fn host_session(cfg: &GatewayConfig, headers: &HeaderMap) -> Option<String> {
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
pub(crate) async fn launch_page(State(gw): State<Gateway>) -> Response {
    // In host mode sessions live on their own hosts only; the apex serves none, so their
    // isolation cannot be side-stepped through it.
    if gw.cfg.host_mode.is_some() {
        return denied(&Denied::NotFound);
    }
    launch_confirm()
}

/// The confirmation page. Its form posts to the page's own URL, so the code is written
/// nowhere in it.
pub(crate) fn launch_confirm() -> Response {
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
pub(crate) async fn launch(
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

pub(crate) fn cross_origin_refused(sid: &str) -> Response {
    warn!(session_id = %sid, "cross-origin launch refused");
    error(
        StatusCode::FORBIDDEN,
        "CROSS_ORIGIN",
        "a launch link is confirmed from its own page",
    )
}

/// `host_sid`: the launch link was opened on that session's host (host mode); only a
/// code for that session is spent, another session's is refused and stays usable.
pub(crate) async fn launch_into(gw: &Gateway, code: &str, host_sid: Option<&str>) -> Response {
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

pub(crate) async fn dispatch(State(gw): State<Gateway>, req: Request) -> Response {
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

/// Session ids are UUIDs: hex and dashes only.
pub(crate) fn valid_session_id(sid: &str) -> bool {
    sid.len() == 36 && sid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

/// The session a same-origin Referer under `/remote/s/{sid}/` names.
pub(crate) fn referer_session(headers: &HeaderMap) -> Option<String> {
    let referer = headers.get(header::REFERER)?.to_str().ok()?;
    let rest = referer.split_once("://")?.1;
    let path = &rest[rest.find('/')?..];
    let sid = path.strip_prefix("/remote/s/")?.split('/').next()?;
    valid_session_id(sid).then(|| sid.to_owned())
}
