//! A local HTTP origin standing in for a device, with the endpoints the tests need and
//! counters for what it saw.

use axum::body::Body;
use axum::extract::ws::{Message as AxMsg, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use futures_util::StreamExt;
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

pub struct OriginStats {
    /// `/hold` handlers running now, and the most seen at once.
    pub inflight: AtomicUsize,
    pub max_inflight: AtomicUsize,
    /// `/hold` handlers wait here for a permit the test hands out.
    pub gate: tokio::sync::Semaphore,
    /// TCP connections accepted.
    pub accepted: AtomicUsize,
    /// Streamed bodies (`/bytes`) dropped before they finished: the client went away.
    pub aborted_bodies: AtomicUsize,
    /// Streamed bodies that reached their end.
    pub finished_bodies: AtomicUsize,
    pub body_event: Notify,
    /// `/upload` bodies read to their end, and those that failed on the way (the
    /// sender aborted the request): a cut upload must land in the second.
    pub uploads_finished: AtomicUsize,
    pub uploads_failed: AtomicUsize,
    /// Headers of the last `/echo` request.
    pub last_headers: Mutex<Option<HeaderMap>>,
    /// Bytes of `/bytes` bodies handed to the server so far (all requests).
    pub bytes_served: std::sync::atomic::AtomicU64,
    /// `/ws` echo sockets that ended (the peer closed or went away); `body_event` fires.
    pub ws_ended: AtomicUsize,
}

impl Default for OriginStats {
    fn default() -> Self {
        Self {
            inflight: AtomicUsize::new(0),
            max_inflight: AtomicUsize::new(0),
            gate: tokio::sync::Semaphore::new(0),
            accepted: AtomicUsize::new(0),
            aborted_bodies: AtomicUsize::new(0),
            finished_bodies: AtomicUsize::new(0),
            body_event: Notify::new(),
            uploads_finished: AtomicUsize::new(0),
            uploads_failed: AtomicUsize::new(0),
            last_headers: Mutex::new(None),
            ws_ended: AtomicUsize::new(0),
            bytes_served: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

pub struct Origin {
    pub addr: SocketAddr,
    pub stats: Arc<OriginStats>,
}

#[derive(Deserialize)]
struct BytesQuery {
    #[serde(default)]
    seed: u64,
}

impl Origin {
    pub async fn spawn() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener)
    }

    pub fn serve(listener: tokio::net::TcpListener) -> Self {
        use axum::serve::ListenerExt;
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(OriginStats::default());
        let app = Self::app(stats.clone());
        let s = stats.clone();
        let listener = listener.tap_io(move |_| {
            s.accepted.fetch_add(1, Ordering::SeqCst);
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, stats }
    }

    /// The same origin over HTTPS with a self-signed certificate (like an embedded device).
    pub async fn spawn_tls() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(OriginStats::default());
        let app = Self::app(stats.clone());
        let acceptor = tls_acceptor();
        let listener = TlsListener {
            inner: listener,
            acceptor,
            stats: stats.clone(),
        };
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, stats }
    }

    fn app(stats: Arc<OriginStats>) -> axum::Router {
        axum::Router::new()
            .route("/hello", get(|| async { "hello" }))
            .route("/bytes/{n}", get(bytes))
            .route("/cookies", get(cookies))
            .route("/page", get(page))
            .route("/inner", get(inner))
            .route("/page/{coding}", get(compressed_page))
            .route(
                "/go",
                get(|| async { (StatusCode::FOUND, [("location", "/page")]) }),
            )
            .route("/echo", any(echo))
            .route("/upload", post(upload))
            .route("/silent", get(silent))
            .route("/drip", get(drip))
            .route(
                "/status/{code}",
                get(|Path(c): Path<u16>| async move { StatusCode::from_u16(c).unwrap() }),
            )
            .route("/ws", get(ws_echo))
            .route("/ws/big/{n}", get(ws_big))
            .route("/ws/flood", get(ws_flood))
            .route("/sw.js", get(worker_script))
            .route("/sw/page", get(worker_page))
            .route("/toss", get(toss))
            .route("/hold", get(hold))
            .route("/bytes-then-hold/{n}", get(bytes_then_hold))
            .with_state(stats)
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

fn tls_acceptor() -> tokio_rustls::TlsAcceptor {
    crate::tls::acceptor(
        include_bytes!("../fixtures/device-tls.crt"),
        include_bytes!("../fixtures/device-tls.key"),
    )
}

/// Accepts TCP and completes the TLS handshake; failed handshakes are skipped.
struct TlsListener {
    inner: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    stats: Arc<OriginStats>,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.inner.accept().await else {
                continue;
            };
            self.stats.accepted.fetch_add(1, Ordering::SeqCst);
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// Holds until the test adds a permit to `gate`; counts concurrent holders.
async fn hold(State(stats): State<Arc<OriginStats>>) -> &'static str {
    let now = stats.inflight.fetch_add(1, Ordering::SeqCst) + 1;
    stats.max_inflight.fetch_max(now, Ordering::SeqCst);
    stats.gate.acquire().await.unwrap().forget();
    stats.inflight.fetch_sub(1, Ordering::SeqCst);
    "released"
}

/// `n` bytes at once, then the body stays open until the test adds a permit to `gate`
/// (a device in the middle of a large answer).
async fn bytes_then_hold(State(stats): State<Arc<OriginStats>>, Path(n): Path<u64>) -> Response {
    let head = futures_util::stream::iter(crate::pattern_chunks(n, 0).map(Ok::<_, std::io::Error>));
    let tail = futures_util::stream::once(async move {
        stats.gate.acquire().await.unwrap().forget();
        Ok(bytes::Bytes::new())
    });
    Body::from_stream(head.chain(tail)).into_response()
}

struct BodyGuard {
    stats: Arc<OriginStats>,
    done: bool,
}

impl Drop for BodyGuard {
    fn drop(&mut self) {
        let c = if self.done {
            &self.stats.finished_bodies
        } else {
            &self.stats.aborted_bodies
        };
        c.fetch_add(1, Ordering::SeqCst);
        self.stats.body_event.notify_waiters();
    }
}

async fn bytes(
    State(stats): State<Arc<OriginStats>>,
    Path(n): Path<u64>,
    Query(q): Query<BytesQuery>,
) -> Response {
    let guard = BodyGuard { stats, done: false };
    let chunks = crate::pattern_chunks(n, q.seed);
    // The guard lives in the stream state: hyper dropping the body (client gone) drops it.
    let stream =
        futures_util::stream::unfold((chunks, guard), |(mut chunks, mut guard)| async move {
            match chunks.next() {
                Some(c) => {
                    let n = c.len() as u64;
                    guard.stats.bytes_served.fetch_add(n, Ordering::SeqCst);
                    Some((Ok::<_, std::io::Error>(c), (chunks, guard)))
                }
                None => {
                    guard.done = true;
                    drop(guard); // counts as finished
                    None
                }
            }
        });
    let mut resp = Body::from_stream(stream).into_response();
    resp.headers_mut()
        .insert("content-type", "application/octet-stream".parse().unwrap());
    resp.headers_mut()
        .insert("content-length", n.to_string().parse().unwrap());
    resp
}

/// A device page: root-relative and device-absolute URLs, as remote UIs have them.
async fn page(headers: HeaderMap) -> Response {
    (
        [("content-type", "text/html; charset=utf-8")],
        page_html(&headers),
    )
        .into_response()
}

fn page_html(headers: &HeaderMap) -> String {
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("device");
    format!(
        "<html><head><link rel=stylesheet href=\"/s.css\"></head><body>\
         <a href=\"/echo\">echo</a><img src=\"http://{host}/hello\"><a href=\"rel.html\">r</a>\
         </body></html>"
    )
}

/// `/inner`: a page that inserts HTML from script (`innerHTML`, `insertAdjacentHTML`,
/// `outerHTML`) with root-relative images and links, as SPAs of every vintage do; `#done`
/// appears once every image was fetched (they are `/bytes/N`, no pictures: `onerror`).
async fn inner() -> Response {
    const PAGE: &str = r#"<html><head><link rel="icon" href="data:,"></head><body><div id="a"></div><div id="b"></div><p id="c">c</p><script>
document.getElementById("a").innerHTML = '<img id="i1" src="/bytes/10"><a id="l1" href="/echo">e</a>';
document.getElementById("b").insertAdjacentHTML("beforeend", '<img id="i2" srcset="/bytes/11 1x, /bytes/12 2x">');
document.getElementById("c").outerHTML = '<img id="i3" src="/bytes/13">';
var imgs = document.images, left = imgs.length, failed = [];
function one(e) { if (e.type === "error") failed.push(e.target.id); if (--left === 0) {
  var d = document.createElement("p"); d.id = "done"; d.dataset.failed = failed.join(","); document.body.appendChild(d); } }
for (var i = 0; i < imgs.length; i++) { imgs[i].onload = one; imgs[i].onerror = one; }
</script></body></html>"#;
    ([("content-type", "text/html; charset=utf-8")], PAGE).into_response()
}

/// `/page/gzip`, `/page/deflate`, `/page/br`: the `/page` page compressed with that
/// `Content-Encoding` (`deflate` is zlib-wrapped, RFC 9110 §8.4.1.2), as devices serve
/// them whatever the request's `Accept-Encoding`.
async fn compressed_page(Path(coding): Path<String>, headers: HeaderMap) -> Response {
    use async_compression::tokio::bufread::{BrotliEncoder, GzipEncoder, ZlibEncoder};
    use tokio::io::AsyncReadExt;
    let html = page_html(&headers);
    let plain = html.as_bytes();
    let mut packed = Vec::new();
    let read = match coding.as_str() {
        "gzip" => GzipEncoder::new(plain).read_to_end(&mut packed).await,
        "deflate" => ZlibEncoder::new(plain).read_to_end(&mut packed).await,
        "br" => BrotliEncoder::new(plain).read_to_end(&mut packed).await,
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    read.unwrap();
    (
        [
            ("content-type", "text/html; charset=utf-8".to_owned()),
            ("content-encoding", coding),
        ],
        packed,
    )
        .into_response()
}

async fn cookies() -> Response {
    let mut r = "cookies".into_response();
    r.headers_mut()
        .append("set-cookie", "a=1; Path=/".parse().unwrap());
    r.headers_mut()
        .append("set-cookie", "b=2; HttpOnly".parse().unwrap());
    r
}

async fn echo(
    State(stats): State<Arc<OriginStats>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let map: serde_json::Map<String, serde_json::Value> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
        .collect();
    *stats.last_headers.lock().unwrap() = Some(headers);
    axum::Json(serde_json::json!({"headers": map, "body_len": body.len(), "body": String::from_utf8_lossy(&body)})).into_response()
}

#[derive(Deserialize)]
struct UploadQuery {
    /// Read the body at this many bytes a second (a slow device); as fast as it comes
    /// without.
    rate: Option<u64>,
}

async fn upload(
    State(stats): State<Arc<OriginStats>>,
    Query(q): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    let mut len = 0u64;
    let mut s = body.into_data_stream();
    let mut pace = q.rate.map(crate::Pace::new);
    while let Some(c) = s.next().await {
        let c = match c {
            Ok(c) => c,
            Err(e) => {
                stats.uploads_failed.fetch_add(1, Ordering::SeqCst);
                stats.body_event.notify_waiters();
                return (StatusCode::BAD_REQUEST, e.to_string()).into_response();
            }
        };
        len += c.len() as u64;
        h.update(&c);
        if let Some(pace) = &mut pace {
            pace.took(c.len()).await;
        }
    }
    stats.uploads_finished.fetch_add(1, Ordering::SeqCst);
    stats.body_event.notify_waiters();
    axum::Json(serde_json::json!({
        "len": len,
        "sha256": crate::hex(&h.finalize()),
        "chunked": headers.get("transfer-encoding").is_some(),
        "content_length": headers.get("content-length").and_then(|v| v.to_str().ok()),
    }))
    .into_response()
}

/// The head at once, then one byte every 100 ms for a long while: a device that never
/// quite finishes.
async fn drip() -> Response {
    let s = futures_util::stream::unfold(0u32, |n| async move {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        (n < 1000).then(|| {
            (
                Ok::<_, std::io::Error>(bytes::Bytes::from_static(b".")),
                n + 1,
            )
        })
    });
    Body::from_stream(s).into_response()
}

async fn silent() -> Response {
    std::future::pending::<()>().await;
    unreachable!()
}

/// Sends one binary message of `n` bytes, then echoes like `/ws`. Accepts messages of
/// any size itself, so the tunnel's limit is what is tested.
async fn ws_big(Path(n): Path<usize>, ws: WebSocketUpgrade) -> Response {
    ws.max_message_size(usize::MAX)
        .max_frame_size(usize::MAX)
        .on_upgrade(move |mut socket| async move {
            if socket
                .send(AxMsg::Binary(vec![7u8; n].into()))
                .await
                .is_err()
            {
                return;
            }
            while let Some(Ok(msg)) = socket.recv().await {
                if matches!(msg, AxMsg::Close(_)) {
                    break;
                }
            }
        })
}

/// Sends 64 KiB binary messages as fast as the socket takes them, until it fails.
async fn ws_flood(ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(|mut socket| async move {
        let piece = bytes::Bytes::from(vec![1u8; 64 * 1024]);
        while socket.send(AxMsg::Binary(piece.clone())).await.is_ok() {}
    })
}

async fn ws_echo(State(stats): State<Arc<OriginStats>>, ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(|mut socket| async move {
        let _ended = WsGuard(stats);
        while let Some(Ok(msg)) = socket.recv().await {
            let reply = match msg {
                AxMsg::Text(t) => AxMsg::Text(format!("echo:{}", t.as_str()).into()),
                AxMsg::Binary(b) => AxMsg::Binary(b),
                AxMsg::Close(_) => break,
                _ => continue,
            };
            if socket.send(reply).await.is_err() {
                break;
            }
        }
    })
}

/// Counts an echo socket as ended when its task finishes, however it finishes.
struct WsGuard(Arc<OriginStats>);

impl Drop for WsGuard {
    fn drop(&mut self) {
        self.0.ws_ended.fetch_add(1, Ordering::SeqCst);
        self.0.body_event.notify_waiters();
    }
}

#[derive(Deserialize)]
struct WorkerQuery {
    allowed: Option<String>,
}

/// A hostile service worker: it claims every page it may, answers their navigations
/// itself (a page showing `#hijacked` and the URL), and fetches what it is asked by
/// message, answering the statuses. Served with `Service-Worker-Allowed: /` (or
/// `?allowed=`), asking for the whole origin.
async fn worker_script(Query(q): Query<WorkerQuery>) -> Response {
    const JS: &str = r#"
self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (e) => e.waitUntil(self.clients.claim()));
self.addEventListener("fetch", (e) => {
  if (e.request.mode !== "navigate") return;
  e.respondWith(new Response("<!doctype html><title>hijacked</title><p id=hijacked>" + e.request.url,
    { headers: { "content-type": "text/html" } }));
});
self.addEventListener("message", (e) => {
  const port = e.ports[0];
  Promise.all(e.data.map((r) => fetch(r.url, { credentials: r.credentials }).then((x) => x.status, () => 0)))
    .then((s) => port.postMessage(s));
});
"#;
    let allowed = q.allowed.unwrap_or_else(|| "/".into());
    (
        [
            ("content-type", "text/javascript".to_owned()),
            ("service-worker-allowed", allowed),
        ],
        JS,
    )
        .into_response()
}

/// A plain device page for scripts the tests run in it (registering workers).
async fn worker_page() -> Response {
    (
        [("content-type", "text/html; charset=utf-8")],
        "<!doctype html><html><head><title>sw</title></head><body><p id=ready>ready</p></body></html>",
    )
        .into_response()
}

#[derive(Deserialize)]
struct TossQuery {
    c: String,
}

/// Cookie tossing: a device page that plants `ponte_console=<c>` for the console's paths
/// on the gateway's host, every way a page can: its response's `Set-Cookie`, the page's
/// `document.cookie` (the gateway's injected setter), a pristine `document.cookie` setter
/// from another realm (round the injected one) and `cookieStore`. `#done` says when.
async fn toss(Query(q): Query<TossQuery>) -> Response {
    let page = r#"<!doctype html><html><head><title>toss</title></head><body><p id=done></p>
<script>
(async function () {
  var c = new URLSearchParams(location.search).get("c");
  document.cookie = "ponte_console=" + c + "; path=/instituicao";
  var f = document.createElement("iframe");
  document.body.appendChild(f);
  var set = Object.getOwnPropertyDescriptor(f.contentWindow.Document.prototype, "cookie").set;
  set.call(document, "ponte_console=" + c + "; path=/instituicao");
  set.call(document, "ponte_console=" + c + "; path=/");
  if (window.cookieStore) {
    try { await cookieStore.set({ name: "ponte_console", value: c, path: "/instituicao/" }); } catch (e) {}
  }
  document.getElementById("done").textContent = "done";
})();
</script></body></html>"#;
    let mut r = ([("content-type", "text/html; charset=utf-8")], page).into_response();
    for c in [
        format!("ponte_console={}; Path=/instituicao", q.c),
        format!("ponte_console={}; Path=/", q.c),
        format!("__ponte_rs={}; Path=/", q.c),
    ] {
        if let Ok(v) = c.parse() {
            r.headers_mut().append("set-cookie", v);
        }
    }
    r
}
