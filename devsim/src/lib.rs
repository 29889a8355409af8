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
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use base64::Engine;
use bytes::Bytes;
use futures_util::stream;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
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

mod pos;

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

async fn user_image(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !sim.authorized(&headers, &q) {
        return invalid_session();
    }
    ([(header::CONTENT_TYPE, "image/jpeg")], USER_JPEG).into_response()
}

async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css")],
        "body { font-family: sans-serif; background: #fff url(/img/bg.png) repeat; }\n\
         header .logo { background-image: url(\"/img/bg.png\"); width: 1px; height: 1px; }\n",
    )
        .into_response()
}

async fn background() -> Response {
    ([(header::CONTENT_TYPE, "image/png")], BG_PNG).into_response()
}

async fn dashboard(
    State(sim): State<Arc<Sim>>,
    Path(lang): Path<String>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !sim.authorized(&headers, &q) {
        return (StatusCode::FOUND, [(header::LOCATION, "/")]).into_response();
    }
    let host = host(&headers);
    let lang = if lang == "pt_BR" || lang == "en_US" {
        lang
    } else {
        "pt_BR".into()
    };
    chunked_html(format!(
        r#"<!DOCTYPE html>
<html lang="pt-BR"><head><meta charset="utf-8"><title>Painel — {name}</title>
<link rel="stylesheet" href="/css/style.css"></head>
<body><header><h1 id="device">{name}</h1><span class="logo"></span></header>
<p>Situação: <span id="status">conectando…</span> · Leituras: <span id="sequence">0</span>
 · Último acesso: <span id="last">—</span></p>
<p>Eventos ao vivo: <span id="events">0</span> (<span id="ws-state">fechado</span>)</p>
<img id="photo" alt="Foto do usuário">
<nav><a id="config" href="/{lang}/html/config.html">Configurações</a>
<a id="about" href="http://{host}/{lang}/html/about.html">Sobre</a>
<a id="status-page" href="/{lang}/html/status.html">Status</a>
<a id="refresh" href="/{lang}/html/refresh.html">Recarregar</a></nav>
<form id="logout" action="/logout.fcgi" method="post"><button id="sair" type="submit">Sair</button></form>
<script>
(function () {{
  var m = /(?:^|;\s*)session=([^;]*)/.exec(document.cookie);
  var session = m ? m[1] : "";
  document.getElementById("photo").src =
    "/user_get_image.fcgi?user_id=1&session=" + encodeURIComponent(session);
  function poll() {{
    var x = new XMLHttpRequest();
    x.open("POST", "/load_objects.fcgi?session=" + encodeURIComponent(session));
    x.setRequestHeader("Content-Type", "application/json");
    x.onload = function () {{
      if (x.status !== 200) {{
        document.getElementById("status").textContent = "erro " + x.status;
        return;
      }}
      var j = JSON.parse(x.responseText);
      document.getElementById("status").textContent = "online";
      document.getElementById("sequence").textContent = String(j.sequence);
      document.getElementById("last").textContent = j.access_logs[0].time;
    }};
    x.send(JSON.stringify({{object: "access_logs"}}));
  }}
  poll();
  setInterval(poll, 1000);
  var ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/events");
  ws.onopen = function () {{ document.getElementById("ws-state").textContent = "aberto"; ws.send("olá"); }};
  ws.onclose = function () {{ document.getElementById("ws-state").textContent = "fechado"; }};
  ws.onmessage = function (e) {{
    var j = JSON.parse(e.data);
    if (j.echo) document.getElementById("ws-state").textContent = "eco: " + j.echo;
    else document.getElementById("events").textContent = String(j.n);
  }};
}})();
</script></body></html>
"#,
        name = sim.name
    ))
}

async fn config_latin1(State(sim): State<Arc<Sim>>, Path(lang): Path<String>) -> Response {
    let page = format!(
        "<!DOCTYPE html><html lang=\"pt-BR\"><head><title>Configurações</title>\
         <link rel=\"stylesheet\" href=\"/css/style.css\"></head><body>\
         <h1 id=\"title\">Configurações do equipamento</h1><p id=\"device\">{}</p>\
         <p>Função: liberação de acesso, catraca bidirecional, horário de verão.</p>\
         <a id=\"back\" href=\"/{lang}/html/index.html\">Voltar</a></body></html>",
        sim.name
    );
    let (bytes, _, _) = encoding_rs::WINDOWS_1252.encode(&page);
    (
        [(header::CONTENT_TYPE, "text/html; charset=ISO-8859-1")],
        bytes.into_owned(),
    )
        .into_response()
}

async fn status_gzip(Path(lang): Path<String>) -> Response {
    use tokio::io::AsyncReadExt;
    let page = format!(
        "<!DOCTYPE html><html lang=\"pt-BR\"><head><meta charset=\"utf-8\"><title>Status</title></head>\
         <body><h1 id=\"title\">Status: operação normal</h1>\
         <a id=\"back\" href=\"/{lang}/html/index.html\">Voltar</a></body></html>"
    );
    let mut gz = Vec::new();
    let mut enc = async_compression::tokio::bufread::GzipEncoder::new(page.as_bytes());
    if enc.read_to_end(&mut gz).await.is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_ENCODING, "gzip"),
        ],
        gz,
    )
        .into_response()
}

async fn refresh(Path(lang): Path<String>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        format!(
            "<!DOCTYPE html><html><head><meta charset=\"utf-8\">\
             <meta http-equiv=\"refresh\" content=\"0; url=/{lang}/html/index.html\">\
             <title>Recarregando…</title></head><body>Recarregando…</body></html>"
        ),
    )
        .into_response()
}

async fn about(State(sim): State<Arc<Sim>>) -> Response {
    chunked_html(format!(
        "<!DOCTYPE html><html lang=\"pt-BR\"><head><meta charset=\"utf-8\"><title>Sobre</title></head>\
         <body><h1 id=\"title\">Sobre o equipamento</h1><p id=\"device\">{}</p>\
         <p>Versão do firmware: 4.13.2</p></body></html>",
        sim.name
    ))
}

async fn events(State(sim): State<Arc<Sim>>, headers: HeaderMap, ws: WebSocketUpgrade) -> Response {
    if !sim.authorized(&headers, &HashMap::new()) {
        return invalid_session();
    }
    ws.on_upgrade(live_events)
}

/// One event every 500 ms, and every text message echoed back.
async fn live_events(mut socket: WebSocket) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                n += 1;
                let ev = serde_json::json!({"event": "catraca", "n": n}).to_string();
                if socket.send(Message::Text(ev.into())).await.is_err() {
                    return;
                }
            }
            msg = socket.recv() => match msg {
                Some(Ok(Message::Text(t))) => {
                    let echo = serde_json::json!({"echo": t.as_str()}).to_string();
                    if socket.send(Message::Text(echo.into())).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// The request as received: method, path and query, and every header.
async fn echo(req: Request) -> Response {
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (n, v) in req.headers() {
        headers
            .entry(n.as_str().to_owned())
            .or_default()
            .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
    }
    json(
        StatusCode::OK,
        serde_json::json!({
            "method": req.method().as_str(),
            "target": req.uri().path_and_query().map_or("/", |p| p.as_str()),
            "headers": headers,
        }),
    )
}

/// `?bytes=N`, up to [`MAX_GENERATED`]; `None` when missing or out of range.
fn size(q: &HashMap<String, String>) -> Option<u64> {
    q.get("bytes")
        .and_then(|b| b.parse::<u64>().ok())
        .filter(|n| *n <= MAX_GENERATED)
}

fn bad_size() -> Response {
    json(
        StatusCode::BAD_REQUEST,
        serde_json::json!({"error": "bytes must be a number up to 4 GiB"}),
    )
}

/// `n` bytes as a stream of `piece` repeated (the last one cut).
fn repeated(piece: Bytes, n: u64) -> Body {
    let len = piece.len() as u64;
    Body::from_stream(stream::unfold(0u64, move |sent| {
        let piece = piece.clone();
        async move {
            (sent < n).then(|| {
                let take = len.min(n - sent);
                (
                    Ok::<_, std::io::Error>(piece.slice(..take as usize)),
                    sent + take,
                )
            })
        }
    }))
}

async fn download(Query(q): Query<HashMap<String, String>>) -> Response {
    let Some(n) = size(&q) else {
        return bad_size();
    };
    let piece: Bytes = (0..64 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
    (
        [(header::CONTENT_TYPE, "application/octet-stream")],
        repeated(piece, n),
    )
        .into_response()
}

async fn big_html(Query(q): Query<HashMap<String, String>>) -> Response {
    let Some(n) = size(&q) else {
        return bad_size();
    };
    let line = "<p><a href=\"/pt_BR/html/about.html\">Relatório de acessos</a> \
                <img src=\"/img/bg.png\" alt=\"\"> liberação às 08:00</p>\n";
    let piece = Bytes::from(line.repeat(64 * 1024 / line.len()));
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        repeated(piece, n),
    )
        .into_response()
}
