//! A minimal peer that speaks only the original protocol (HTTP_REQUEST,
//! HTTP_RESPONSE_START/CHUNK/END, PING/PONG, `HTTP_RESPONSE_ERROR {requestId, error}`),
//! written with raw tokio-tungstenite + serde_json, not the connector crate. No HELLO;
//! WINDOW_UPDATE and anything else unknown is ignored, as the Node connector does.
//!
//! `auto` peers execute requests against the origin; manual peers hand requests to the
//! test, which answers with raw frames (including malformed ones).

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

pub struct LegacyPeer {
    /// Raw text frames to send to the relay.
    pub tx: mpsc::Sender<Message>,
    /// Requests received (manual mode).
    pub requests: mpsc::Receiver<Value>,
    /// WINDOW_UPDATE frames received (and ignored).
    pub window_updates: Arc<AtomicUsize>,
    /// Binary frames received (and otherwise ignored): (frames, bytes).
    pub binary: Arc<(AtomicUsize, AtomicUsize)>,
    /// While `true` the reader stops reading the socket, as a connector that hangs does:
    /// the relay's writes back up. [`LegacyPeer::pause_reading`] / `resume_reading`.
    paused: tokio::sync::watch::Sender<bool>,
    /// Becomes `Some` when the relay closed the connection: the code of its close frame
    /// (`None` inside when the socket ended without one).
    closed: tokio::sync::watch::Receiver<Option<Option<u16>>>,
}

impl LegacyPeer {
    pub async fn connect(relay_ws_url: &str, token: &str, auto: bool) -> Self {
        Self::start(relay_ws_url, token, auto, None).await
    }

    /// A hostile connector: says HELLO naming `capabilities` (so the relay uses those
    /// extensions with it, e.g. `ws`) and hands every JSON frame but PING and
    /// WINDOW_UPDATE to the test through `requests` (HTTP_REQUEST, WS_OPEN, WS_CLOSE, …).
    /// It answers nothing itself: the test sends what it likes, as fast as it likes.
    pub async fn hostile(relay_ws_url: &str, token: &str, capabilities: &[&str]) -> Self {
        Self::start(relay_ws_url, token, false, Some(capabilities)).await
    }

    async fn start(relay_ws_url: &str, token: &str, auto: bool, hello: Option<&[&str]>) -> Self {
        let mut req = relay_ws_url.into_client_request().unwrap();
        req.headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        let (ws, _) = tokio_tungstenite::connect_async(req)
            .await
            .expect("legacy peer connects");
        let (mut sink, mut stream) = ws.split();
        if let Some(caps) = hello {
            let hello = json!({"type": "HELLO", "version": "hostile", "capabilities": caps});
            sink.send(Message::text(hello.to_string())).await.unwrap();
        }
        let forward_all = hello.is_some();
        let (tx, mut rx) = mpsc::channel::<Message>(64);
        // Room for every frame a test provokes (WS_OPEN and WS_CLOSE of its streams):
        // a test that does not read them holds up this reader, not the relay.
        let (req_tx, requests) = mpsc::channel(1024);
        let window_updates = Arc::new(AtomicUsize::new(0));
        let binary = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
        let (closed_tx, closed) = tokio::sync::watch::channel(None);
        let (paused, mut pause) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                if sink.send(m).await.is_err() {
                    break;
                }
            }
        });
        let (wu, bin, out) = (window_updates.clone(), binary.clone(), tx.clone());
        tokio::spawn(async move {
            let mut code = None;
            loop {
                if pause.wait_for(|p| !p).await.is_err() {
                    break;
                }
                let Some(Ok(msg)) = stream.next().await else {
                    break;
                };
                if let Message::Close(frame) = &msg {
                    code = frame.as_ref().map(|f| u16::from(f.code));
                }
                if let Message::Binary(b) = &msg {
                    bin.0.fetch_add(1, Ordering::SeqCst);
                    bin.1.fetch_add(b.len(), Ordering::SeqCst);
                }
                let Message::Text(text) = msg else { continue };
                let v: Value = serde_json::from_str(text.as_str()).unwrap();
                match v["type"].as_str().unwrap_or_default() {
                    "PING" => {
                        let _ = out
                            .send(Message::text(
                                json!({"type":"PONG","ts":v["ts"]}).to_string(),
                            ))
                            .await;
                    }
                    "WINDOW_UPDATE" => {
                        wu.fetch_add(1, Ordering::SeqCst);
                    }
                    "HTTP_REQUEST" if auto => {
                        tokio::spawn(execute(v, out.clone()));
                    }
                    "HTTP_REQUEST" => {
                        let _ = req_tx.send(v).await;
                    }
                    "HELLO" => {}
                    _ if forward_all => {
                        let _ = req_tx.send(v).await;
                    }
                    _ => {}
                }
            }
            let _ = closed_tx.send(Some(code));
        });
        Self {
            tx,
            requests,
            window_updates,
            binary,
            paused,
            closed,
        }
    }

    /// Stops reading the socket after the frame being read now (see `paused`).
    pub fn pause_reading(&self) {
        self.paused.send_replace(true);
    }

    /// Reads the socket again.
    pub fn resume_reading(&self) {
        self.paused.send_replace(false);
    }

    /// Waits until the relay has closed this connection; panics after `limit`. Returns
    /// the close frame's code (`None`: the socket ended without a close frame).
    pub async fn wait_closed(&self, limit: std::time::Duration) -> Option<u16> {
        let mut rx = self.closed.clone();
        let closed = tokio::time::timeout(limit, rx.wait_for(|c| c.is_some()))
            .await
            .expect("connection closed in time")
            .expect("reader task alive");
        closed.expect("closed")
    }

    pub async fn send_raw(&self, frame: impl Into<String>) {
        self.tx.send(Message::text(frame.into())).await.unwrap();
    }

    pub async fn send_json(&self, v: Value) {
        self.send_raw(v.to_string()).await;
    }
}

/// Executes one request the way the original Node connector did.
async fn execute(v: Value, out: mpsc::Sender<Message>) {
    let rid = v["requestId"].as_str().unwrap().to_owned();
    let t = &v["target"];
    let url = format!(
        "{}{}",
        t["baseUrl"].as_str().unwrap(),
        t["path"].as_str().unwrap()
    );
    let method = reqwest::Method::from_bytes(t["method"].as_str().unwrap().as_bytes()).unwrap();
    let mut rb = reqwest::Client::new().request(method, &url);
    // Headers as given (`Host` included, which then wins over the URL's), as Node's
    // `http.request({headers})` sends them: what the cloud puts there is what the device sees.
    if let Some(headers) = t["headers"].as_object() {
        for (name, value) in headers {
            let values = match value {
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                v => v.as_str().into_iter().collect::<Vec<_>>(),
            };
            for v in values {
                rb = rb.header(name.as_str(), v);
            }
        }
    }
    if let Some(b) = t["body"].as_str() {
        rb = rb.body(b.to_owned());
    }
    let send = |v: Value| {
        let out = out.clone();
        async move {
            let _ = out.send(Message::text(v.to_string())).await;
        }
    };
    let mut resp = match rb.send().await {
        Ok(r) => r,
        Err(e) => {
            return send(
                json!({"type":"HTTP_RESPONSE_ERROR","requestId":rid,"error":e.to_string()}),
            )
            .await
        }
    };
    let mut headers = serde_json::Map::new();
    for (k, val) in resp.headers() {
        let val = Value::String(val.to_str().unwrap_or_default().to_owned());
        match headers.get_mut(k.as_str()) {
            Some(Value::Array(a)) => a.push(val),
            Some(prev) => *prev = Value::Array(vec![prev.clone(), val]),
            None => {
                headers.insert(k.to_string(), val);
            }
        }
    }
    send(json!({"type":"HTTP_RESPONSE_START","requestId":rid,"statusCode":resp.status().as_u16(),"headers":headers})).await;
    let mut index = 0;
    while let Ok(Some(chunk)) = resp.chunk().await {
        for piece in chunk.chunks(16 * 1024) {
            let data = base64::engine::general_purpose::STANDARD.encode(piece);
            send(json!({"type":"HTTP_RESPONSE_CHUNK","requestId":rid,"data":data,"index":index}))
                .await;
            index += 1;
        }
    }
    send(json!({"type":"HTTP_RESPONSE_END","requestId":rid})).await;
}
