//! The reference console at the API origin `/`: server-rendered pages in Portuguese, as
//! the SaaS shows them — the institution settings with the "Connector On-Premise" card,
//! the equipment page with "Gerenciar Remotamente", the audit list of remote sessions.
//!
//! It is a thin skin over the API: every action calls the same handler the JSON route
//! does, as the signed-in user, so the tenant checks, audit rows and errors are the
//! API's. Every POST must come from this origin (`Origin`), so a device page open in the
//! gateway — which shares the site when only the port differs — cannot drive the console.
//!
//! Sign-in keeps the user JWT in an HttpOnly, SameSite=Strict cookie, bound to a login
//! key the browser keeps in this origin's `localStorage`. Cookies ignore ports: a device
//! page served by the gateway on the same host can write any cookie of that host from
//! script (no name, `__Host-` included, is out of its reach, and the injected script is
//! no barrier to a hostile page), for example a valid cookie of the attacker's own. So a
//! cookie alone never decides who acts: every POST carries the login key (`_login`,
//! added by `/console.js`), and only the cookie bound to it is used. A device page cannot
//! write this origin's storage. Pages that only show (GET) use the cookie, and
//! `/console.js` deletes any console cookie a script can see — ours are HttpOnly, so a
//! visible one was planted — and reloads, so a planted one does not stay in charge.
//! Must never: render a value unescaped, or show a pairing code or token after the
//! response that created it (they are stored hashed; `Cache-Control: no-store`).

use super::public::{delete_route, list_routes};
use super::{
    connector_status, create_session, end_session, get_equipment, list_sessions, pair, renew_token,
    tenant, unpair, P,
};
use crate::auth::{TokenError, User};
use crate::error::ApiError;
use crate::store::{ConnectorStatus, SessionStatus};
use crate::Api;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::fmt::Write as _;
use std::sync::Arc;

type St = State<Arc<Api>>;

/// The console's sign-in cookie: the user JWT. Over https it is `__Host-` prefixed, so
/// no sibling host (a device page on the gateway's domain) can set one that shadows it.
const COOKIE: &str = "ponte_console";
const HOST_COOKIE: &str = "__Host-ponte_console";
/// The form field that carries the login key ([`LoginKey`]).
const LOGIN_FIELD: &str = "_login";
/// Browsers drop cookies over 4 KiB; a token that long cannot be kept.
const MAX_TOKEN_LEN: usize = 3800;

/// The console's routes, merged into the API's app.
pub(super) fn routes() -> axum::Router<Arc<Api>> {
    axum::Router::new()
        .route("/", get(home))
        .route("/console.css", get(css))
        .route("/console.js", get(js))
        .route("/entrar", get(sign_in_page).post(sign_in))
        .route("/entrar/{code}", get(sign_in_link_page).post(sign_in_link))
        .route("/sair", post(sign_out))
        .route("/instituicao", get(pick))
        .route("/instituicao/{tid}", get(institution_page))
        .route("/instituicao/{tid}/connector/pareamento", post(pairing))
        .route(
            "/instituicao/{tid}/connector/token",
            get(confirm_renew).post(renew),
        )
        .route(
            "/instituicao/{tid}/connector/desparear",
            get(confirm_unpair).post(do_unpair),
        )
        .route("/instituicao/{tid}/equipamento/{eid}", get(equipment_page))
        .route("/instituicao/{tid}/equipamento/{eid}/remoto", post(remote))
        .route("/instituicao/{tid}/sessoes", get(sessions_page))
        .route(
            "/instituicao/{tid}/equipamento/{eid}/sessoes/{sid}/encerrar",
            post(end),
        )
        .route(
            "/instituicao/{tid}/equipamento/{eid}/rotas-publicas/{id}/encerrar",
            post(end_route),
        )
}

// ---- sign-in ----

/// The signed-in console user, for pages that only show; without a valid cookie, a
/// redirect to `/entrar`.
struct ConsoleUser(User);

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
struct BoundUser(User);

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

fn to_sign_in() -> Response {
    Redirect::to("/entrar").into_response()
}

fn https(headers: &HeaderMap) -> bool {
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

async fn sign_in_page() -> Response {
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
struct TokenForm {
    token: String,
}

async fn sign_in(State(api): St, headers: HeaderMap, form: Form<TokenForm>) -> Response {
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
async fn sign_in_link_page(State(api): St, headers: HeaderMap, P(code): P<String>) -> Response {
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
async fn sign_in_link(State(api): St, headers: HeaderMap, P(code): P<String>) -> Response {
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

async fn sign_out(headers: HeaderMap) -> Response {
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
fn same_origin(headers: &HeaderMap) -> Result<(), Response> {
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

// ---- pages ----

async fn home(user: Result<ConsoleUser, Response>) -> Response {
    let ConsoleUser(user) = match user {
        Ok(u) => u,
        Err(r) => return r,
    };
    if let (false, [tid]) = (user.admin, user.tenants.as_slice()) {
        return Redirect::to(&format!("/instituicao/{tid}")).into_response();
    }
    let mut body = String::from(r#"<section class="card narrow"><h1>Instituições</h1><ul>"#);
    for tid in &user.tenants {
        let _ = write!(
            body,
            r#"<li><a href="/instituicao/{tid}">Instituição {tid}</a></li>"#
        );
    }
    body.push_str(
        r#"</ul><form method="get" action="/instituicao"><label>Instituição nº
<input name="id" type="number" min="1" required></label> <button>Abrir</button></form></section>"#,
    );
    Page::new("Instituições", Some(&user))
        .body(body)
        .into_response()
}

#[derive(Deserialize)]
struct Pick {
    id: i32,
}

/// The home page's "Instituição nº" form.
async fn pick(
    q: Result<axum::extract::Query<Pick>, axum::extract::rejection::QueryRejection>,
) -> Response {
    match q {
        Ok(q) => Redirect::to(&format!("/instituicao/{}", q.id)).into_response(),
        Err(_) => Redirect::to("/").into_response(),
    }
}

async fn js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        JS,
    )
}

async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        CSS,
    )
}

async fn institution_page(State(api): St, user: ConsoleUser, P(tid): P<i32>) -> PageResult {
    let ConsoleUser(user) = user;
    let ins = tenant(&api, &user, tid).await?;
    let Json(status) = connector_status(State(Arc::clone(&api)), user.clone(), P(tid)).await?;
    let equipment = api.store.list_equipment(tid, 500).await?;
    let online = status.status == ConnectorStatus::ONLINE;
    let (badge, label) = match (status.paired, status.status) {
        (_, ConnectorStatus::ONLINE) => ("online", "ONLINE"),
        (false, ConnectorStatus::PAIRING) => ("pairing", "AGUARDANDO PAREAMENTO"),
        (false, _) => ("offline", "NÃO PAREADO"),
        (true, _) => ("offline", "OFFLINE"),
    };
    let mut b = String::new();
    let _ = write!(
        b,
        r#"<h1>Configurações da Instituição</h1>
<p class="sub">{name} · nº {tid}</p>
<section class="card" id="connector-card">
<h2>Connector On-Premise</h2>
<p>Status: <span class="badge {badge}" id="connector-status">{label}</span></p>
<dl>"#,
        name = esc(&ins.name),
    );
    let dash = || "—".to_owned();
    let row = |b: &mut String, id: &str, k: &str, v: String| {
        let _ = write!(b, r#"<dt>{k}</dt><dd id="{id}">{}</dd>"#, esc(&v));
    };
    row(
        &mut b,
        "connector-name",
        "Nome",
        status
            .name
            .clone()
            .filter(|_| status.paired)
            .unwrap_or_else(dash),
    );
    row(
        &mut b,
        "connector-version",
        "Versão",
        status.version.clone().unwrap_or_else(dash),
    );
    let heartbeat = status
        .last_heartbeat
        .as_deref()
        .and_then(parse_ts)
        .map(|t| format!("último heartbeat: {}", ago(t, Utc::now())))
        .unwrap_or_else(|| "último heartbeat: nunca".into());
    row(&mut b, "connector-heartbeat", "Heartbeat", heartbeat);
    if let Some(since) = status.connected_since.as_deref().and_then(parse_ts) {
        row(&mut b, "connector-since", "Conectado desde", local(since));
    }
    if let Some(host) = status
        .metadata
        .as_ref()
        .and_then(|m| m.get("hostname"))
        .and_then(|h| h.as_str())
    {
        row(&mut b, "connector-host", "Servidor", host.to_owned());
    }
    if let Some(exp) = status.token_expires_at.as_deref().and_then(parse_ts) {
        row(
            &mut b,
            "connector-token-exp",
            "Token válido até",
            local(exp),
        );
    }
    if status.token_expiring {
        row(
            &mut b,
            "connector-token-warning",
            "Atenção",
            "o token expira em menos de 7 dias e este connector não o renova sozinho \
             (versão antiga ou desconectado): clique em Renovar Token e grave o novo token \
             no connector"
                .to_owned(),
        );
    }
    if let Some(dup) = &status.duplicate {
        let at = parse_ts(&dup.last_refused_at)
            .map(local)
            .unwrap_or_else(|| dup.last_refused_at.clone());
        row(
            &mut b,
            "connector-duplicate",
            "Atenção",
            format!(
                "outra instalação usa o mesmo token ({} conexões recusadas, a última em {at}); \
                 a conexão ativa foi mantida. Pare a cópia, ou renove o token e pareie cada \
                 instalação com o seu",
                dup.refused_connections
            ),
        );
    }
    let _ = write!(
        b,
        r#"</dl>
<div class="actions">
<form method="post" action="/instituicao/{tid}/connector/pareamento"><button id="gerar-codigo">Gerar Código de Pareamento</button></form>
<a class="button" id="renovar-token" href="/instituicao/{tid}/connector/token">Renovar Token</a>
<a class="button danger" id="desparear" href="/instituicao/{tid}/connector/desparear">Desparear</a>
<a class="button quiet" href="/instituicao/{tid}">Atualizar</a>
</div>
</section>
<section class="card">
<h2>Equipamentos</h2>
<table id="equipamentos"><thead><tr><th>Código</th><th>Descrição</th><th>Addon</th><th>Acesso remoto</th></tr></thead><tbody>"#
    );
    for e in &equipment {
        let remote = match (e.uses_addon, online) {
            (true, true) => "disponível",
            (true, false) => "connector offline",
            (false, _) => "—",
        };
        let _ = write!(
            b,
            r#"<tr><td>{id}</td><td><a href="/instituicao/{tid}/equipamento/{id}">{name}</a></td><td>{addon}</td><td>{remote}</td></tr>"#,
            id = e.id,
            name = esc(&e.name),
            addon = if e.uses_addon { "Sim" } else { "Não" },
        );
    }
    if equipment.is_empty() {
        b.push_str(r#"<tr><td colspan="4">Nenhum equipamento cadastrado.</td></tr>"#);
    }
    let _ = write!(
        b,
        r#"</tbody></table></section>
<p><a href="/instituicao/{tid}/sessoes" id="link-sessoes">Sessões remotas (auditoria)</a></p>"#
    );
    Ok(Page::new("Configurações da Instituição", Some(&user))
        .body(b)
        .into_response())
}

/// The public origin of this API as the browser sees it, for the commands shown.
fn server_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1:8000");
    let scheme = if https(headers) { "https" } else { "http" };
    format!("{scheme}://{host}")
}

async fn pairing(
    State(api): St,
    headers: HeaderMap,
    P(tid): P<i32>,
    user: BoundUser,
) -> PageResult {
    if let Err(r) = same_origin(&headers) {
        return Ok(r);
    }
    let BoundUser(user) = user;
    let (_, Json(code)) = pair(State(Arc::clone(&api)), user.clone(), P(tid)).await?;
    let expires = parse_ts(&code.expires_at).map(local).unwrap_or_default();
    let server = server_url(&headers);
    let body = format!(
        r#"<section class="card narrow">
<h1>Código de Pareamento</h1>
<p class="code" id="codigo-pareamento">{code}</p>
<p>Vale uma única vez, até {expires}.</p>
<p>No servidor da rede local, instale o <code>ponte-connector</code> e execute:</p>
<pre id="comando-pareamento">sudo -u ponte ponte-connector pair --server {server} --code {code}
sudo systemctl enable --now ponte-connector</pre>
<p>O status do connector muda para ONLINE quando ele conectar.</p>
<p><a class="button" href="/instituicao/{tid}" id="voltar">Voltar</a></p>
</section>"#,
        code = esc(&code.pairing_code),
        expires = esc(&expires),
        server = esc(&server),
    );
    Ok(Page::new("Código de Pareamento", Some(&user))
        .body(body)
        .into_response())
}

fn confirm(user: &User, tid: i32, title: &str, what: &str, action: &str, button: &str) -> Response {
    let body = format!(
        r#"<section class="card narrow">
<h1>{title}</h1>
<p>{what}</p>
<form method="post" action="/instituicao/{tid}/connector/{action}">
<button class="danger" id="confirmar">{button}</button>
<a class="button quiet" href="/instituicao/{tid}">Cancelar</a>
</form>
</section>"#
    );
    Page::new(title, Some(user)).body(body).into_response()
}

async fn confirm_renew(State(api): St, user: ConsoleUser, P(tid): P<i32>) -> PageResult {
    let ConsoleUser(user) = user;
    tenant(&api, &user, tid).await?;
    Ok(confirm(
        &user,
        tid,
        "Renovar Token",
        "Um novo token será emitido e o atual deixa de valer agora: o connector em \
         execução é desconectado até receber o novo token.",
        "token",
        "Renovar Token",
    ))
}

async fn renew(State(api): St, headers: HeaderMap, P(tid): P<i32>, user: BoundUser) -> PageResult {
    if let Err(r) = same_origin(&headers) {
        return Ok(r);
    }
    let BoundUser(user) = user;
    let Json(issued) = renew_token(State(Arc::clone(&api)), user.clone(), P(tid)).await?;
    let expires = parse_ts(&issued.expires_at).map(local).unwrap_or_default();
    let body = format!(
        r#"<section class="card">
<h1>Novo Token do Connector</h1>
<p>O token anterior foi revogado. Este é mostrado uma única vez; vale até {expires}.</p>
<pre id="token-connector" class="wrap">{token}</pre>
<p>No servidor da rede local:</p>
<pre id="comando-token" class="wrap">sudo -u ponte ponte-connector pair --relay-url {relay} --token {token}
sudo systemctl restart ponte-connector</pre>
<p><a class="button" href="/instituicao/{tid}" id="voltar">Voltar</a></p>
</section>"#,
        token = esc(&issued.token),
        relay = esc(&issued.relay_url),
        expires = esc(&expires),
    );
    Ok(Page::new("Novo Token", Some(&user))
        .body(body)
        .into_response())
}

async fn confirm_unpair(State(api): St, user: ConsoleUser, P(tid): P<i32>) -> PageResult {
    let ConsoleUser(user) = user;
    tenant(&api, &user, tid).await?;
    Ok(confirm(
        &user,
        tid,
        "Desparear",
        "O token do connector é revogado e ele é desconectado agora. Para voltar a usá-lo, \
         gere um novo código de pareamento.",
        "desparear",
        "Desparear",
    ))
}

async fn do_unpair(
    State(api): St,
    headers: HeaderMap,
    P(tid): P<i32>,
    user: BoundUser,
) -> PageResult {
    if let Err(r) = same_origin(&headers) {
        return Ok(r);
    }
    let BoundUser(user) = user;
    unpair(State(Arc::clone(&api)), user, P(tid)).await?;
    Ok(Redirect::to(&format!("/instituicao/{tid}")).into_response())
}

async fn equipment_page(
    State(api): St,
    user: ConsoleUser,
    P((tid, eid)): P<(i32, i32)>,
) -> PageResult {
    let ConsoleUser(user) = user;
    let Json(eq) = get_equipment(State(Arc::clone(&api)), user.clone(), P((tid, eid))).await?;
    let Json(status) = connector_status(State(Arc::clone(&api)), user.clone(), P(tid)).await?;
    let online = status.status == ConnectorStatus::ONLINE;
    // The button exists only when it can work: the equipment uses the addon and the
    // institution's connector is ONLINE (the API answers 409 otherwise).
    let action = match (eq.usa_addon, online) {
        (true, true) => format!(
            r#"<form method="post" action="/instituicao/{tid}/equipamento/{eid}/remoto"><button id="gerenciar-remotamente">Gerenciar Remotamente</button></form>"#
        ),
        (true, false) => {
            r#"<span class="muted" id="remoto-indisponivel">Acesso remoto indisponível: o connector da instituição está offline.</span>"#.to_owned()
        }
        (false, _) => String::new(),
    };
    let cfg = eq.config.clone().unwrap_or_default();
    let mut b = format!(
        r#"<header class="page-header"><div><h1 id="equipamento-nome">{name}</h1><p class="sub">Configuração do equipamento · código {eid}</p></div>{action}</header>
<section class="card"><h2>Dados</h2><dl>"#,
        name = esc(&eq.name),
    );
    let yes_no = |v: bool| if v { "Sim" } else { "Não" }.to_owned();
    for (k, v) in [
        ("Marca", eq.brand.clone().unwrap_or_default()),
        ("Modelo", eq.model.clone().unwrap_or_default()),
        ("Endereço IP", eq.ip.clone().unwrap_or_default()),
        ("Ativo", yes_no(eq.active)),
        ("Usa o addon (connector)", yes_no(eq.usa_addon)),
        (
            "URL na rede local",
            cfg.local_base_url.clone().unwrap_or_default(),
        ),
        ("Modo", cfg.modo.clone().unwrap_or_default()),
        ("Login", cfg.login.clone().unwrap_or_default()),
        ("Aceitar certificado próprio", yes_no(cfg.tls_insecure)),
    ] {
        let v = if v.is_empty() { "—".to_owned() } else { v };
        let _ = write!(b, "<dt>{k}</dt><dd>{}</dd>", esc(&v));
    }
    b.push_str("</dl></section>");
    if eq.usa_addon {
        let Json(routes) =
            list_routes(State(Arc::clone(&api)), user.clone(), P((tid, eid))).await?;
        b.push_str(
            r#"<section class="card"><h2>Rotas públicas</h2><p class="sub">Caminhos deste equipamento abertos ao público, sem login (publicados pela API: POST …/rotas-publicas).</p><table id="rotas"><thead><tr><th>Endereço</th><th>Caminhos</th><th>Métodos</th><th>Expira</th><th>Requisições</th><th>Último uso</th><th></th></tr></thead><tbody>"#,
        );
        for r in &routes {
            let when = |t: &Option<String>| {
                t.as_deref()
                    .and_then(parse_ts)
                    .map(local)
                    .unwrap_or_else(|| "—".into())
            };
            let _ = write!(
                b,
                r#"<tr data-route="{id}"><td><a href="{url}" rel="noreferrer noopener" target="_blank">{url}</a></td><td>{paths}</td><td>{methods}</td><td>{expires}</td><td>{req}</td><td>{last}</td><td><form method="post" action="/instituicao/{tid}/equipamento/{eid}/rotas-publicas/{id}/encerrar"><button class="small">Encerrar</button></form></td></tr>"#,
                id = r.id,
                url = esc(&r.url),
                paths = esc(&r.paths.join(" ")),
                methods = esc(&r.methods.join(" ")),
                expires = esc(&when(&r.expires_at)),
                req = r.requests,
                last = esc(&when(&r.last_used_at)),
            );
        }
        if routes.is_empty() {
            b.push_str(r#"<tr><td colspan="7">Nenhuma rota pública.</td></tr>"#);
        }
        b.push_str("</tbody></table></section>");
    }
    let _ = write!(
        b,
        r#"<p><a href="/instituicao/{tid}">Voltar à instituição</a> · <a href="/instituicao/{tid}/sessoes">Sessões remotas</a></p>"#
    );
    Ok(Page::new(&eq.name, Some(&user)).body(b).into_response())
}

/// The route's "Encerrar" button: deletes it (open requests are cut) and shows the
/// equipment again.
async fn end_route(
    State(api): St,
    headers: HeaderMap,
    P((tid, eid, id)): P<(i32, i32, i32)>,
    user: BoundUser,
) -> PageResult {
    if let Err(r) = same_origin(&headers) {
        return Ok(r);
    }
    let BoundUser(user) = user;
    delete_route(State(Arc::clone(&api)), user, P((tid, eid, id))).await?;
    Ok(Redirect::to(&format!("/instituicao/{tid}/equipamento/{eid}")).into_response())
}

async fn remote(
    State(api): St,
    headers: HeaderMap,
    P((tid, eid)): P<(i32, i32)>,
    user: BoundUser,
) -> PageResult {
    if let Err(r) = same_origin(&headers) {
        return Ok(r);
    }
    let BoundUser(user) = user;
    let (_, Json(created)) = create_session(State(Arc::clone(&api)), user, P((tid, eid))).await?;
    // 303: the browser GETs the one-time launch link, which sets the grant cookie on the
    // gateway's origin and lands in the device's UI.
    Ok(Redirect::to(&created.url).into_response())
}

async fn sessions_page(State(api): St, user: ConsoleUser, P(tid): P<i32>) -> PageResult {
    let ConsoleUser(user) = user;
    let ins = tenant(&api, &user, tid).await?;
    let Json(rows) = list_sessions(State(Arc::clone(&api)), user.clone(), P(tid)).await?;
    let mut b = format!(
        r#"<h1>Sessões Remotas</h1><p class="sub">{name} · auditoria de acesso remoto</p>
<section class="card"><table id="sessoes"><thead><tr><th>Início</th><th>Usuário</th><th>Equipamento</th><th>Status</th><th>Fim / expira</th><th>Requisições</th><th>Dados</th><th></th></tr></thead><tbody>"#,
        name = esc(&ins.name)
    );
    for s in &rows {
        let (class, status) = match s.status {
            SessionStatus::ATIVA => ("online", "ATIVA"),
            SessionStatus::EXPIRADA => ("offline", "EXPIRADA"),
            SessionStatus::ENCERRADA => ("offline", "ENCERRADA"),
        };
        let end = s
            .ended_at
            .as_deref()
            .or(Some(s.expires_at.as_str()))
            .and_then(parse_ts)
            .map(local)
            .unwrap_or_default();
        let action = match s.status {
            SessionStatus::ATIVA => format!(
                r#"<form method="post" action="/instituicao/{tid}/equipamento/{eid}/sessoes/{sid}/encerrar"><button class="small">Encerrar</button></form>"#,
                eid = s.equipment_id,
                sid = esc(&s.session_id),
            ),
            _ => String::new(),
        };
        let _ = write!(
            b,
            r#"<tr data-session="{sid}"><td>{start}</td><td>{user}</td><td>{eq}</td><td><span class="badge {class}">{status}</span></td><td>{end}</td><td>{req}</td><td>{bytes}</td><td>{action}</td></tr>"#,
            sid = esc(&s.session_id),
            start = esc(&parse_ts(&s.created_at).map(local).unwrap_or_default()),
            user = esc(&s.user_name),
            eq = esc(&s.equipment_name),
            end = esc(&end),
            req = s.requests,
            bytes = esc(&size(s.bytes)),
        );
    }
    if rows.is_empty() {
        b.push_str(r#"<tr><td colspan="8">Nenhuma sessão remota.</td></tr>"#);
    }
    let _ = write!(
        b,
        r#"</tbody></table></section><p><a href="/instituicao/{tid}">Voltar à instituição</a></p>"#
    );
    Ok(Page::new("Sessões Remotas", Some(&user))
        .body(b)
        .into_response())
}

async fn end(
    State(api): St,
    headers: HeaderMap,
    P((tid, eid, sid)): P<(i32, i32, String)>,
    user: BoundUser,
) -> PageResult {
    if let Err(r) = same_origin(&headers) {
        return Ok(r);
    }
    let BoundUser(user) = user;
    end_session(State(Arc::clone(&api)), user, P((tid, eid, sid))).await?;
    Ok(Redirect::to(&format!("/instituicao/{tid}/sessoes")).into_response())
}

// ---- layout and formatting ----

/// An API error shown as a console page, with the API's status.
struct PageError(ApiError);

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        PageError(e)
    }
}

impl From<crate::store::StoreError> for PageError {
    fn from(e: crate::store::StoreError) -> Self {
        PageError(e.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        Page::error(self.0)
    }
}

type PageResult = Result<Response, PageError>;

/// A console page: the layout around `body`, with headers that keep it from being
/// framed, cached or reached by other origins' scripts and styles.
struct Page {
    title: String,
    user: Option<String>,
    body: String,
    status: StatusCode,
}

impl Page {
    fn new(title: &str, user: Option<&User>) -> Self {
        Page {
            title: title.to_owned(),
            user: user.map(|u| {
                u.name
                    .clone()
                    .unwrap_or_else(|| format!("Usuário {}", u.id))
            }),
            body: String::new(),
            status: StatusCode::OK,
        }
    }

    fn body(mut self, body: impl Into<String>) -> Self {
        self.body = body.into();
        self
    }

    /// An API error as a page: same status, the message in the user's words.
    fn error(e: ApiError) -> Response {
        if e.status == StatusCode::UNAUTHORIZED {
            return to_sign_in();
        }
        let what = match e.code {
            "FORBIDDEN" => "Você não tem acesso a esta instituição.",
            "CONNECTOR_OFFLINE" => "O connector da instituição não está ONLINE.",
            "ADDON_DISABLED" => "Este equipamento não usa o addon de acesso remoto.",
            "CONNECTOR_NOT_PAIRED" | "CONNECTOR_NOT_FOUND" => {
                "A instituição não tem connector pareado."
            }
            "CROSS_ORIGIN" => "Formulário recusado: envie-o pelas páginas do console.",
            _ => "Não foi possível concluir a operação.",
        };
        let body = format!(
            r#"<section class="card narrow"><h1>Erro</h1><p id="erro">{what}</p><p class="muted">{code}: {msg}</p><p><a href="/">Início</a></p></section>"#,
            code = esc(e.code),
            msg = esc(&e.message),
        );
        let mut page = Page::new("Erro", None).body(body);
        page.status = e.status;
        page.into_response()
    }
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        let who = match &self.user {
            Some(name) => format!(
                r#"<span id="usuario">{}</span><form method="post" action="/sair"><button class="quiet small">Sair</button></form>"#,
                esc(name)
            ),
            None => String::new(),
        };
        let html = format!(
            r#"<!doctype html>
<html lang="pt-BR"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · Ponte</title><link rel="stylesheet" href="/console.css"><script src="/console.js"></script></head>
<body><nav><a href="/" class="brand">Ponte</a><div class="who">{who}</div></nav>
<main>{body}</main></body></html>"#,
            title = esc(&self.title),
            body = self.body,
        );
        let mut resp = (self.status, html).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        // Pairing codes and tokens appear once; nothing here is cached. The launch
        // redirect goes to the gateway's origin, so forms may target any http(s) origin.
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self' http: https:; frame-ancestors 'none'; base-uri 'none'",
            ),
        );
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        );
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        resp
    }
}

/// HTML-escapes text for element content and quoted attributes.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn parse_ts(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// `dd/mm/aaaa hh:mm:ss` (UTC; the SaaS shows its users' zone, the console keeps UTC).
fn local(t: DateTime<Utc>) -> String {
    t.format("%d/%m/%Y %H:%M:%S UTC").to_string()
}

/// "há 15s", "há 3 min", "há 2 h", "há 4 dias", as the product says it.
fn ago(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let s = (now - t).num_seconds();
    match s {
        ..=0 => "agora".into(),
        1..=59 => format!("há {s}s"),
        60..=3599 => format!("há {} min", s / 60),
        3600..=86_399 => format!("há {} h", s / 3600),
        86_400..=172_799 => "há 1 dia".into(),
        _ => format!("há {} dias", s / 86_400),
    }
}

fn size(bytes: i64) -> String {
    if bytes < 1024 {
        format!("{bytes} B")
    } else if bytes < 1_048_576 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", bytes as f64 / 1_048_576.0)
    }
}

/// The console's script, loaded first in every page's `<head>` (before any form exists):
/// - deletes console cookies a script can see (ours are HttpOnly: a visible one was
///   planted, by a device page on the gateway say) along every path of this page, and
///   loads the page again once;
/// - after sign-in keeps the login key (`#login[data-key]`) and goes on;
/// - adds the login key to every POST form as it is submitted;
/// - submits a sign-in link's confirmation form marked `data-auto`.
const JS: &str = r#"(function () {
  var NAMES = ["ponte_console", "__Host-ponte_console"], KEY = "ponte-console-login";
  var planted = document.cookie.split(/;\s*/).some(function (c) {
    return NAMES.indexOf(c.split("=")[0]) >= 0;
  });
  if (planted) {
    var parts = location.pathname.split("/"), paths = ["/"];
    for (var i = 1; i < parts.length; i++) {
      var p = parts.slice(0, i + 1).join("/");
      if (p) { paths.push(p); paths.push(p + "/"); }
    }
    NAMES.forEach(function (n) {
      paths.forEach(function (p) {
        document.cookie = n + "=; path=" + p + "; max-age=0";
        document.cookie = n + "=; path=" + p + "; max-age=0; secure";
      });
    });
  }
  document.addEventListener("submit", function (e) {
    var f = e.target;
    if (!f || String(f.method).toLowerCase() !== "post") return;
    var k = localStorage.getItem(KEY) || "";
    var input = f.querySelector("input[name=_login]");
    if (!input) {
      input = document.createElement("input");
      input.type = "hidden";
      input.name = "_login";
      f.appendChild(input);
    }
    input.value = k;
  }, true);
  document.addEventListener("DOMContentLoaded", function () {
    var login = document.getElementById("login");
    if (login && login.getAttribute("data-key")) {
      localStorage.setItem(KEY, login.getAttribute("data-key"));
      location.replace(login.getAttribute("data-next") || "/");
      return;
    }
    // This page may have been made for the planted cookie: load it again without it
    // (once; a GET, never a form sent again).
    if (planted && !sessionStorage.getItem("ponte-console-purged")) {
      sessionStorage.setItem("ponte-console-purged", "1");
      location.replace(location.href);
      return;
    }
    if (!planted) sessionStorage.removeItem("ponte-console-purged");
    var auto = document.querySelector("form[data-auto]");
    if (auto) auto.submit();
  });
})();
"#;

const CSS: &str = r#"
*{box-sizing:border-box}body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:#f4f6f8;color:#1d2733}
nav{display:flex;justify-content:space-between;align-items:center;padding:.6rem 1.5rem;background:#14324f;color:#fff}
nav a.brand{color:#fff;font-weight:700;text-decoration:none;font-size:1.1rem}nav .who{display:flex;gap:.8rem;align-items:center}
nav form{margin:0}main{max-width:980px;margin:1.5rem auto;padding:0 1rem}h1{font-size:1.5rem;margin:.2rem 0}h2{font-size:1.15rem;margin-top:0}
.sub{color:#5b6b7b;margin-top:0}.card{background:#fff;border:1px solid #dde3e9;border-radius:8px;padding:1.2rem 1.4rem;margin:1rem 0}
.narrow{max-width:560px}dl{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1.2rem}dt{color:#5b6b7b}dd{margin:0}
.badge{display:inline-block;padding:.05rem .55rem;border-radius:99px;font-size:.8rem;font-weight:700;letter-spacing:.03em}
.badge.online{background:#d7f5df;color:#11692c}.badge.offline{background:#eceff2;color:#55616d}.badge.pairing{background:#fff1c9;color:#7a5700}
.actions{display:flex;flex-wrap:wrap;gap:.5rem;margin-top:1rem}.actions form{margin:0}
button,.button{display:inline-block;border:0;border-radius:6px;padding:.45rem .9rem;background:#1f6feb;color:#fff;font:inherit;cursor:pointer;text-decoration:none}
.danger{background:#c62828}.quiet{background:#e6ebf0;color:#1d2733}.small{padding:.2rem .6rem;font-size:.85rem}
table{width:100%;border-collapse:collapse}th,td{text-align:left;padding:.4rem .5rem;border-bottom:1px solid #edf0f3}td form{margin:0}
.page-header{display:flex;justify-content:space-between;align-items:center;gap:1rem}.code{font:700 2rem ui-monospace,monospace;letter-spacing:.1em}
pre{background:#0f1b27;color:#e6edf3;padding:.8rem;border-radius:6px;overflow-x:auto}pre.wrap{white-space:pre-wrap;word-break:break-all}
textarea{width:100%;font:13px ui-monospace,monospace}.error{color:#c62828}.muted{color:#5b6b7b}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_ages_read_as_the_product_says() {
        let now = Utc::now();
        for (secs, want) in [
            (0, "agora"),
            (15, "há 15s"),
            (59, "há 59s"),
            (60, "há 1 min"),
            (3599, "há 59 min"),
            (7200, "há 2 h"),
            (86_400, "há 1 dia"),
            (3 * 86_400, "há 3 dias"),
        ] {
            let t = now - chrono::TimeDelta::seconds(secs);
            assert_eq!(ago(t, now), want, "{secs}");
        }
    }

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            esc(r#"<script>"x" & 'y'</script>"#),
            "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/script&gt;"
        );
    }

    #[test]
    fn only_this_origin_may_post() {
        let h = |pairs: &[(&str, &str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(
                    header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            m
        };
        let host = ("host", "127.0.0.1:8000");
        assert!(same_origin(&h(&[host, ("origin", "http://127.0.0.1:8000")])).is_ok());
        // The gateway on another port of the same host is another origin.
        assert!(same_origin(&h(&[host, ("origin", "http://127.0.0.1:8002")])).is_err());
        assert!(same_origin(&h(&[host, ("origin", "null")])).is_err());
        assert!(same_origin(&h(&[host])).is_err());
        assert!(same_origin(&h(&[host, ("sec-fetch-site", "same-origin")])).is_ok());
        assert!(same_origin(&h(&[host, ("sec-fetch-site", "same-site")])).is_err());
    }
}
