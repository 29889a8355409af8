//! devsim: a simulated ControlID-style turnstile web UI (iDBlock / iDFace), faithful in
//! the ways that make a device UI hard to show under a path prefix:
//!
//! - `GET /` is the login page; the pages live under `/pt_BR/html/…`.
//! - Login is a *synchronous* XMLHttpRequest POST to root-relative `/login.fcgi`
//!   (form-urlencoded or JSON) answering `{"session":"…"}` with a token holding `/` and
//!   `+`. The page's script then sets `document.cookie = "session=…; path=/"` (the device
//!   never sends Set-Cookie for it), runs `localStorage.clear()` and navigates with
//!   `window.location.replace("/" + lang + "/html/index.html")`.
//! - The dashboard polls `POST /load_objects.fcgi?session=…` (JSON) every second, loads
//!   `/user_get_image.fcgi` (JPEG), a stylesheet with `url(/img/…)`, has a form to
//!   `/logout.fcgi`, root-relative links, a link to the device's own absolute address, a
//!   meta-refresh page, a gzip page, a Latin-1 page, a WebSocket feed at `/events`.
//! - Logout redirects with an absolute `Location: http://<device-host>/`; the login page
//!   sets `lang` with `Path=/; Domain=<device-host>`.
//! - The session is accepted from the cookie or `?session=`; a bad one gets
//!   401 `{"error":"Invalid session"}`. Pages are sent chunked.
//! - [`Devsim::spawn_pos`] runs a POS-like host instead (see [`pos`]): quotes approved
//!   from public links under `/approve/`, an admin area that must stay private.
//! - For tests: `/echo` answers with the request it received; `/download?bytes=N` and
//!   `/big.html?bytes=N` stream large bodies; [`Devsim::seen`] lists what was asked.

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use base64::Engine;
use bytes::Bytes;
use futures_util::stream;
use pages::{
    about, background, config_latin1, dashboard, events, refresh, status_gzip, stylesheet,
    user_image,
};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use testing::{big_html, download, echo};
use tokio::net::TcpListener;

const USER_JPEG: &[u8] = include_bytes!("../assets/user.jpg");
const BG_PNG: &[u8] = include_bytes!("../assets/bg.png");

/// The one account the device knows, as on a factory-reset ControlID.
pub const LOGIN: &str = "admin";
pub const PASSWORD: &str = "admin";

/// Requests remembered for [`Devsim::seen`]; older ones are forgotten first.
const SEEN_CAP: usize = 10_000;
/// Largest body `/download` and `/big.html` will make (a test asks for 500 MB at most).
const MAX_GENERATED: u64 = 4 << 30;

/// One request as the device received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query, as received.
    pub target: String,
    pub status: u16,
    pub cookie: Option<String>,
    pub authorization: Option<String>,
}

mod pages;
mod pos;
mod testing;

struct Sim {
    name: String,
    /// Quotes approved (POS mode), oldest first; at most [`SEEN_CAP`].
    approved: Mutex<Vec<String>>,
    sessions: Mutex<HashSet<String>>,
    sequence: AtomicU64,
    seen: Mutex<VecDeque<Seen>>,
}

/// A running simulated turnstile. Dropping it stops the server.
pub struct Devsim {
    pub addr: SocketAddr,
    sim: Arc<Sim>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Devsim {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Devsim {
    /// A turnstile called `name` on 127.0.0.1, any free port.
    pub async fn spawn(name: &str) -> std::io::Result<Self> {
        Self::serve(TcpListener::bind("127.0.0.1:0").await?, name)
    }

    /// A turnstile called `name` answering on `listener`.
    pub fn serve(listener: TcpListener, name: &str) -> std::io::Result<Self> {
        Self::serve_app(listener, name, app)
    }

    /// A POS-like host called `name` on 127.0.0.1, any free port ([`pos`]).
    pub async fn spawn_pos(name: &str) -> std::io::Result<Self> {
        Self::serve_pos(TcpListener::bind("127.0.0.1:0").await?, name)
    }

    /// A POS-like host answering on `listener`.
    pub fn serve_pos(listener: TcpListener, name: &str) -> std::io::Result<Self> {
        Self::serve_app(listener, name, pos::app)
    }

    fn serve_app(
        listener: TcpListener,
        name: &str,
        app: fn(Arc<Sim>) -> axum::Router,
    ) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let sim = Arc::new(Sim {
            approved: Mutex::new(Vec::new()),
            name: name.to_owned(),
            sessions: Mutex::new(HashSet::new()),
            sequence: AtomicU64::new(0),
            seen: Mutex::new(VecDeque::new()),
        });
        let app = app(sim.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(%e, "devsim stopped");
            }
        });
        Ok(Self { addr, sim, task })
    }

    /// `http://127.0.0.1:port`: the address to give Ponte as the equipment's base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn name(&self) -> &str {
        &self.sim.name
    }

    /// What the device has been asked, oldest first (the last 10,000 requests).
    pub fn seen(&self) -> Vec<Seen> {
        self.sim.seen.lock().unwrap().iter().cloned().collect()
    }

    /// Quotes approved (POS mode), oldest first.
    pub fn approved(&self) -> Vec<String> {
        self.sim.approved.lock().unwrap().clone()
    }

    /// The session tokens the device has issued and not logged out.
    pub fn sessions(&self) -> Vec<String> {
        self.sim.sessions.lock().unwrap().iter().cloned().collect()
    }

    /// Waits until the server task ends (it runs until dropped).
    pub async fn wait(mut self) {
        let _ = (&mut self.task).await;
    }
}

fn app(sim: Arc<Sim>) -> axum::Router {
    axum::Router::new()
        .route("/", get(login_page))
        .route("/login.fcgi", post(login))
        .route("/logout.fcgi", any(logout))
        .route("/load_objects.fcgi", post(load_objects))
        .route("/user_get_image.fcgi", get(user_image))
        .route("/css/style.css", get(stylesheet))
        .route("/img/bg.png", get(background))
        .route("/favicon.ico", get(background))
        .route("/{lang}/html/index.html", get(dashboard))
        .route("/{lang}/html/config.html", get(config_latin1))
        .route("/{lang}/html/status.html", get(status_gzip))
        .route("/{lang}/html/refresh.html", get(refresh))
        .route("/{lang}/html/about.html", get(about))
        .route("/events", get(events))
        .route("/echo", any(echo))
        .route("/download", get(download))
        .route("/big.html", get(big_html))
        .layer(middleware::from_fn_with_state(sim.clone(), record))
        .with_state(sim)
}

async fn record(State(sim): State<Arc<Sim>>, req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let target = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let text = |h: &HeaderMap, n: header::HeaderName| {
        h.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned)
    };
    let cookie = text(req.headers(), header::COOKIE);
    let authorization = text(req.headers(), header::AUTHORIZATION);
    let resp = next.run(req).await;
    let mut seen = sim.seen.lock().unwrap();
    if seen.len() == SEEN_CAP {
        seen.pop_front();
    }
    seen.push_back(Seen {
        method,
        target,
        status: resp.status().as_u16(),
        cookie,
        authorization,
    });
    resp
}

/// The `Host` the request named: the device's own address, as a LAN browser sees it.
fn host(headers: &HeaderMap) -> String {
    headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost")
        .to_owned()
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

impl Sim {
    /// The session from `?session=` or the `session` cookie, if the device issued it.
    fn authorized(&self, headers: &HeaderMap, query: &HashMap<String, String>) -> bool {
        let token = query
            .get("session")
            .map(String::as_str)
            .or_else(|| cookie(headers, "session"));
        token.is_some_and(|t| self.sessions.lock().unwrap().contains(t))
    }
}

fn invalid_session() -> Response {
    json(
        StatusCode::UNAUTHORIZED,
        serde_json::json!({"error": "Invalid session"}),
    )
}

fn json(status: StatusCode, v: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

/// An HTML page sent chunked, in a few pieces, as the device's embedded server does.
fn chunked_html(page: String) -> Response {
    let bytes = Bytes::from(page);
    let step = bytes.len().div_ceil(3).max(1);
    let pieces: Vec<Result<Bytes, std::io::Error>> = (0..bytes.len())
        .step_by(step)
        .map(|i| Ok(bytes.slice(i..(i + step).min(bytes.len()))))
        .collect();
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        Body::from_stream(stream::iter(pieces)),
    )
        .into_response()
}

async fn login_page(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> Response {
    let host = host(&headers);
    let domain = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
    let page = format!(
        r#"<!DOCTYPE html>
<html lang="pt-BR"><head><meta charset="utf-8"><title>Login — {name}</title>
<link rel="stylesheet" href="/css/style.css"></head>
<body><h1>{name}</h1><p>Controle de Acesso — faça login para continuar.</p>
<form id="login-form" onsubmit="return fazerLogin();">
<label>Usuário <input id="login" name="login" autocomplete="username"></label>
<label>Senha <input id="password" name="password" type="password"></label>
<button id="entrar" type="submit">Entrar</button></form>
<p id="erro"></p>
<script>
var lang = "pt_BR";
function fazerLogin() {{
  var x = new XMLHttpRequest();
  x.open("POST", "/login.fcgi", false);
  x.setRequestHeader("Content-Type", "application/x-www-form-urlencoded");
  x.send("login=" + encodeURIComponent(document.getElementById("login").value) +
         "&password=" + encodeURIComponent(document.getElementById("password").value));
  if (x.status !== 200) {{
    document.getElementById("erro").textContent = "Usuário ou senha inválidos.";
    return false;
  }}
  var session = JSON.parse(x.responseText).session;
  document.cookie = "session=" + session + "; path=/";
  localStorage.clear();
  window.location.replace("/" + lang + "/html/index.html");
  return false;
}}
</script></body></html>
"#,
        name = sim.name
    );
    let mut resp = chunked_html(page);
    if let Ok(v) = HeaderValue::from_str(&format!("lang=pt_BR; Path=/; Domain={domain}")) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

#[derive(serde::Deserialize)]
struct Credentials {
    login: String,
    password: String,
}

async fn login(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let creds: Option<Credentials> = if is_json {
        serde_json::from_slice(&body).ok()
    } else {
        serde_urlencoded::from_bytes(&body).ok()
    };
    match creds {
        Some(c) if c.login == LOGIN && c.password == PASSWORD => {
            let token = session_token();
            sim.sessions.lock().unwrap().insert(token.clone());
            tracing::info!(device = %sim.name, "login");
            json(StatusCode::OK, serde_json::json!({ "session": token }))
        }
        Some(_) => json(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"error": "Invalid login or password"}),
        ),
        None => json(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"error": "Expected login and password"}),
        ),
    }
}

/// A token like the device's: base64 pieces, always with `+` and `/` in it.
fn session_token() -> String {
    let b64 = |n: usize| {
        let bytes: Vec<u8> = (0..n).map(|_| fastrand::u8(..)).collect();
        base64::engine::general_purpose::STANDARD.encode(bytes)
    };
    format!("{}+{}/{}", b64(6), b64(6), b64(6))
}

async fn logout(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let token = q
        .get("session")
        .map(String::as_str)
        .or_else(|| cookie(&headers, "session"));
    if let Some(t) = token {
        sim.sessions.lock().unwrap().remove(t);
    }
    // The device names itself absolutely in redirects.
    let location = format!("http://{}/", host(&headers));
    match HeaderValue::from_str(&location) {
        Ok(v) => (StatusCode::FOUND, [(header::LOCATION, v)]).into_response(),
        Err(_) => StatusCode::BAD_REQUEST.into_response(),
    }
}

async fn load_objects(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    if !sim.authorized(&headers, &q) {
        return invalid_session();
    }
    let object = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("object").and_then(|o| o.as_str()).map(str::to_owned));
    let Some(object) = object else {
        return json(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"error": "Expected {\"object\": …}"}),
        );
    };
    let n = sim.sequence.fetch_add(1, Ordering::Relaxed) + 1;
    let rows = serde_json::json!([{"id": n, "user_id": 1, "event": 7, "portal_id": 1,
                                   "time": format!("{:02}:{:02}", (n / 60) % 24, n % 60)}]);
    let mut out = serde_json::Map::new();
    out.insert("sequence".into(), n.into());
    out.insert(object, rows);
    json(StatusCode::OK, out.into())
}
