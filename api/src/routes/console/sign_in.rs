//! Sign-in: `/entrar` with a pasted token or a one-time link, `/sair`, the cookie bound
//! to the browser's login key, and the checks every console POST passes (its login key,
//! its origin).

use super::layout::{esc, Page};
use super::St;
use crate::auth::{TokenError, User};
use crate::error::ApiError;
use crate::routes::extract::P;
use crate::Api;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;
use std::sync::Arc;

/// The console's sign-in cookie: the user JWT. Over https it is `__Host-` prefixed, so
/// no sibling host (a device page on the gateway's domain) can set one that shadows it.
const COOKIE: &str = "ponte_console";
const HOST_COOKIE: &str = "__Host-ponte_console";
/// The form field that carries the login key ([`LoginKey`]).
const LOGIN_FIELD: &str = "_login";
/// Browsers drop cookies over 4 KiB; a token that long cannot be kept.
const MAX_TOKEN_LEN: usize = 3800;

/// The signed-in console user, for pages that only show; without a valid cookie, a
/// redirect to `/entrar`.
pub(super) struct ConsoleUser(pub(super) User);

impl FromRequestParts<Arc<Api>> for ConsoleUser {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, api: &Arc<Api>) -> Result<Self, Response> {
        // Every candidate is tried: a cookie planted with a longer path comes first, and
        // must not lock the admin out (`/console.js` removes it).
        let user = logins(&parts.headers)
            .into_iter()
            .find_map(|(_, t)| api.users.verify(&t).ok())
            .ok_or_else(to_sign_in)?;
        api.remember_user(&user)
            .await
            .map_err(|e| Page::error(ApiError::from(e)))?;
        Ok(ConsoleUser(user))
    }
}

/// The signed-in console user for a POST: the cookie bound to the login key the form
/// carries. A cookie a device page planted (even a valid one of its attacker) is bound
/// to a key this browser's console pages do not hold, so it is never the one used.
pub(super) struct BoundUser(pub(super) User);

impl axum::extract::FromRequest<Arc<Api>> for BoundUser {
    type Rejection = Response;
    async fn from_request(req: axum::extract::Request, api: &Arc<Api>) -> Result<Self, Response> {
        let headers = req.headers().clone();
        let Form(form) = Form::<std::collections::HashMap<String, String>>::from_request(req, api)
            .await
            .map_err(|_| not_bound())?;
        let key = form.get(LOGIN_FIELD).ok_or_else(not_bound)?;
        // Compared as digests, so the comparison's timing says nothing of the id.
        let bound = crate::auth::digest(&login_id(key));
        let user = logins(&headers)
            .into_iter()
            .filter(|(id, _)| crate::auth::digest(id) == bound)
            .find_map(|(_, t)| api.users.verify(&t).ok())
            .ok_or_else(not_bound)?;
        api.remember_user(&user)
            .await
            .map_err(|e| Page::error(ApiError::from(e)))?;
        Ok(BoundUser(user))
    }
}

fn not_bound() -> Response {
    tracing::warn!("console: a form without this browser's login key refused");
    Page::error(ApiError::new(
        StatusCode::FORBIDDEN,
        "CONSOLE_LOGIN",
        "this browser's console login did not send this form; sign in again",
    ))
}

/// The public id of a login key: what the cookie names.
fn login_id(key: &str) -> String {
    crate::auth::digest(&format!("ponte console login\0{key}"))
}

/// Every console cookie the request carries, as (login id, user token). A cookie is
/// `<login id>.<token>`; anything else (an old raw token) is no login.
fn logins(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .filter(|c| c.name() == COOKIE || c.name() == HOST_COOKIE)
        .filter_map(|c| {
            let (id, token) = c.value().split_once('.')?;
            (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| (id.to_owned(), token.to_owned()))
        })
        .take(8)
        .collect()
}

pub(super) fn to_sign_in() -> Response {
    Redirect::to("/entrar").into_response()
}

pub(super) fn https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
}

/// Signs in with `token` (already verified): a new login key, the cookie bound to it,
/// and a page whose script keeps the key in this origin's storage and goes home.
fn signed_in(headers: &HeaderMap, token: &str) -> Response {
    let key = crate::auth::random_id();
    let value = format!("{}.{token}", login_id(&key));
    let set = match https(headers) {
        true => format!("{HOST_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Secure"),
        false => format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict"),
    };
    let body = format!(
        r#"<section class="card narrow"><h1>Entrando…</h1>
<p id="login" data-key="{key}" data-next="/">Entrando no console.</p>
<noscript><p class="error">O console precisa de JavaScript.</p></noscript></section>"#
    );
    let mut resp = Page::new("Entrando", None).body(body).into_response();
    if let Ok(v) = HeaderValue::from_str(&set) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

pub(super) async fn sign_in_page() -> Response {
    Page::new("Entrar", None)
        .body(SIGN_IN_FORM.replace("{error}", ""))
        .into_response()
}

const SIGN_IN_FORM: &str = r#"<section class="card narrow">
<h1>Entrar</h1>
{error}
<p>Cole o token de usuário (JWT) emitido pelo SaaS ou por <code>ponte admin user-token</code>.</p>
<form method="post" action="/entrar">
<textarea name="token" id="token" rows="5" required></textarea>
<button type="submit" id="entrar">Entrar</button>
</form>
</section>"#;

#[derive(Deserialize)]
pub(super) struct TokenForm {
    token: String,
}

pub(super) async fn sign_in(State(api): St, headers: HeaderMap, form: Form<TokenForm>) -> Response {
    if let Err(r) = same_origin(&headers) {
        return r;
    }
    let token = form.token.trim();
    if token.len() > MAX_TOKEN_LEN {
        let err = format!(
            r#"<p class="error" id="erro">Token longo demais para o console ({} bytes; máximo {MAX_TOKEN_LEN}).</p>"#,
            token.len()
        );
        let mut resp = Page::new("Entrar", None)
            .body(SIGN_IN_FORM.replace("{error}", &err))
            .into_response();
        *resp.status_mut() = StatusCode::BAD_REQUEST;
        return resp;
    }
    match api.users.verify(token) {
        Ok(_) => signed_in(&headers, token),
        Err(e) => {
            let why = match e {
                TokenError::Expired => "O token expirou.".to_owned(),
                TokenError::Invalid(m) => format!("Token inválido: {m}"),
            };
            let err = format!(r#"<p class="error" id="erro">{}</p>"#, esc(&why));
            let mut resp = Page::new("Entrar", None)
                .body(SIGN_IN_FORM.replace("{error}", &err))
                .into_response();
            *resp.status_mut() = StatusCode::UNAUTHORIZED;
            resp
        }
    }
}

/// A one-time sign-in link (`ponte demo` prints one), opened: a page that says who it
/// signs in as and confirms with a POST. A GET spends nothing, so a chat app's link
/// preview leaves it usable. The page submits itself only when the browser says the
/// link was opened directly (`Sec-Fetch-Site: none`: typed, pasted, from another app);
/// sent from another page — a device page opening an attacker's link, say — it waits
/// for a click.
pub(super) async fn sign_in_link_page(
    State(api): St,
    headers: HeaderMap,
    P(code): P<String>,
) -> Response {
    let Some(user) = api
        .peek_console_link(&code)
        .and_then(|t| api.users.verify(&t).ok())
    else {
        return link_invalid();
    };
    let name = user
        .name
        .clone()
        .unwrap_or_else(|| format!("Usuário {}", user.id));
    let auto = headers.get("sec-fetch-site").is_some_and(|v| v == "none");
    let body = format!(
        r#"<section class="card narrow"><h1>Entrar no console</h1>
<form method="post"{auto}><p>Entrar como <strong id="entrar-como">{name}</strong>?</p>
<button id="entrar-link">Entrar</button></form></section>"#,
        auto = if auto { r#" data-auto="1""# } else { "" },
        name = esc(&name),
    );
    // The layout's `Referrer-Policy: same-origin` keeps the code's URL on this origin
    // (`no-referrer` would make the form's POST `Origin: null`, refused).
    Page::new("Entrar", None).body(body).into_response()
}

/// The sign-in link's confirmation: spends the code.
pub(super) async fn sign_in_link(
    State(api): St,
    headers: HeaderMap,
    P(code): P<String>,
) -> Response {
    if let Err(r) = same_origin(&headers) {
        return r;
    }
    match api.take_console_link(&code) {
        Some(token) if token.len() <= MAX_TOKEN_LEN && api.users.verify(&token).is_ok() => {
            signed_in(&headers, &token)
        }
        _ => link_invalid(),
    }
}

fn link_invalid() -> Response {
    let body = r#"<section class="card narrow"><h1>Link inválido</h1>
<p id="erro">Este link de acesso já foi usado ou expirou. <a href="/entrar">Entrar com um token</a>.</p></section>"#;
    let mut resp = Page::new("Link inválido", None).body(body).into_response();
    *resp.status_mut() = StatusCode::GONE;
    resp
}

pub(super) async fn sign_out(headers: HeaderMap) -> Response {
    if let Err(r) = same_origin(&headers) {
        return r;
    }
    let mut resp = Redirect::to("/entrar").into_response();
    let h = resp.headers_mut();
    h.append(
        header::SET_COOKIE,
        HeaderValue::from_static("ponte_console=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    if https(&headers) {
        h.append(
            header::SET_COOKIE,
            HeaderValue::from_static(
                "__Host-ponte_console=; Path=/; HttpOnly; SameSite=Strict; Secure; Max-Age=0",
            ),
        );
    }
    resp
}

/// A state change must come from a page of this origin: `Origin` names this host (or,
/// without `Origin`, the fetch metadata says same-origin). Refused otherwise: 403.
#[allow(clippy::result_large_err)]
pub(super) fn same_origin(headers: &HeaderMap) -> Result<(), Response> {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin = headers.get(header::ORIGIN).and_then(|h| h.to_str().ok());
    let ok = match (origin, host) {
        (Some(o), Some(h)) => o
            .split_once("://")
            .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(h)),
        (None, _) => headers
            .get("sec-fetch-site")
            .is_some_and(|v| v == "same-origin"),
        (Some(_), None) => false,
    };
    if ok {
        return Ok(());
    }
    tracing::warn!(?origin, ?host, "console: cross-origin form refused");
    Err(Page::error(ApiError::new(
        StatusCode::FORBIDDEN,
        "CROSS_ORIGIN",
        "this form must be sent from the console's own pages",
    )))
}
