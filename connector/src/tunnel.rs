//! The connection to the relay: connect with the token, say HELLO, serve requests and
//! device WebSockets, heartbeat, reconnect with jittered exponential backoff.
//!
//! Must never: let one slow device or one slow stream stall the others (each stream
//! waits on its own flow-control window, never on the reader), or buffer more than one
//! window per stream.

use crate::exec::{self, ExecError, Executor};
use crate::Shared;
use bytes::Bytes;
use futures_util::{FutureExt as _, SinkExt, StreamExt};
use ponte_protocol::{
    self as proto, limits, queue, CloudMsg, ConnectorMsg, ErrorCode, RecvWindow, SendWindow,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tracing::{debug, debug_span, error, info, info_span, warn, Instrument};

/// Frames queued for the writer, and at most [`queue::OUTBOUND_BYTES`] of them. Full:
/// request tasks wait (each is also bounded by its window), the reader never does
/// (control frames go through `send_detached`, a PONG is dropped).
const OUTBOUND_QUEUE: usize = 32;

/// Control frames (errors, refusals, WebSocket closes) waiting for room in a full queue,
/// each in a task of its own. Past this the relay is not reading; more are dropped.
const MAX_DETACHED: usize = 1024;

/// Request-body chunks queued per stream toward the device; bytes are bounded by the
/// window we grant. Overflow (a relay ignoring the window) fails that stream only.
const BODY_QUEUE: usize = 256;

/// Messages queued per tunnelled WebSocket toward the device. Their bytes are bounded by
/// the stream's share of the connection's [`proto::WsBudget`] (charged until the message
/// is written to the device); this bounds their number. Either one full closes that
/// stream (1008; 1013 when the connection's budget is used up) and the reader goes on:
/// a browser flooding a device that does not read is not buffered. One slot is kept for
/// the close.
const WS_QUEUE: usize = 256;

/// A connection that stayed up this long resets the backoff (tests shrink it through
/// [`crate::Timing::stable_after`]).
pub const STABLE_AFTER: Duration = Duration::from_secs(60);

/// Full-jitter exponential backoff: a random delay in [0, min(max, initial·2ⁿ)].
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            attempt: 0,
        }
    }

    pub fn next_delay(&mut self, rng: &mut fastrand::Rng) -> Duration {
        let cap = self
            .initial
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        // Never zero: a relay restart must not see every connector at the same instant.
        let lo = cap.as_millis() as u64 / 4;
        Duration::from_millis(rng.u64(lo..=cap.as_millis() as u64))
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// Runs until `shutdown`: connect, serve, reconnect.
pub async fn run_forever(shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut backoff = Backoff::new(shared.cfg.backoff_initial, shared.cfg.backoff_max);
    let mut rng = fastrand::Rng::new();
    let urls = shared.cfg.relay_urls.clone();
    let mut idx = 0usize;
    while !shutdown.is_cancelled() {
        let url = &urls[idx % urls.len()];
        let span = info_span!("relay", url = %url);
        let connected = tokio::select! {
            c = connect(&shared, url).instrument(span.clone()) => c,
            _ = shutdown.cancelled() => break,
        };
        match connected {
            Ok(ws) => {
                let started = Instant::now();
                shared.status.set_connected(Some(url));
                span.in_scope(|| info!("connected to relay"));
                let end = session(Arc::clone(&shared), ws, shutdown.clone())
                    .instrument(span.clone())
                    .await;
                shared.status.set_connected(None);
                span.in_scope(|| {
                    if shutdown.is_cancelled() {
                        info!(reason = %end, "disconnected from relay")
                    } else {
                        warn!(reason = %end, "disconnected from relay")
                    }
                });
                if started.elapsed() >= shared.timing.stable_after {
                    backoff.reset();
                }
            }
            Err(e) => {
                span.in_scope(|| match &e {
                    ConnectError::Unauthorized(m) => {
                        error!(reason = %m, "relay refused the token; re-pair or renew it")
                    }
                    ConnectError::Conflict(m) => error!(
                        reason = %m,
                        "the relay keeps another connection with this token; is this install a \
                         copy of another? Retrying with backoff"
                    ),
                    ConnectError::Other(m) => warn!(reason = %m, "could not connect to relay"),
                });
                idx += 1; // fail over to the next relay URL
            }
        }
        let delay = backoff.next_delay(&mut rng);
        debug!(
            delay_ms = delay.as_millis() as u64,
            "reconnecting after delay"
        );
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// 409: another connection with this connector's identity is live and kept.
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("{0}")]
    Other(String),
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The WebSocket read buffer (see [`ws_config`]).
const READ_BUFFER: usize = 8 * 1024;

pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        // tungstenite zeroes up to this much of its buffer before every read, including
        // the reads that find nothing: at the default 128 KiB that memset was half of the
        // connector's instructions per small request. What the relay sends is mostly
        // small (requests, credits); an upload's 64 KiB chunk takes a few more reads.
        .read_buffer_size(READ_BUFFER)
        .max_message_size(Some(limits::MAX_FRAME_LEN))
        .max_frame_size(Some(limits::MAX_FRAME_LEN))
        .max_write_buffer_size(4 * limits::MAX_FRAME_LEN)
}

/// Opens the WebSocket to the relay with the connector token.
pub async fn connect(shared: &Shared, url: &str) -> Result<Ws, ConnectError> {
    use tokio_tungstenite::tungstenite::Error as WsError;
    let mut req = url
        .into_client_request()
        .map_err(|e| ConnectError::Other(e.to_string()))?;
    let token = shared.token.lock().unwrap().clone();
    let auth = format!("Bearer {}", token.expose()).parse().map_err(|_| {
        ConnectError::Other("token contains characters not allowed in a header".into())
    })?;
    req.headers_mut().insert("authorization", auth);
    req.headers_mut().insert(
        "user-agent",
        concat!("ponte-connector/", env!("CARGO_PKG_VERSION"))
            .parse()
            .expect("static header"),
    );
    let connector = tokio_tungstenite::Connector::Rustls(Arc::clone(&shared.relay_tls));
    let fut = tokio_tungstenite::connect_async_tls_with_config(
        req,
        Some(ws_config()),
        true,
        Some(connector),
    );
    match tokio::time::timeout(Duration::from_secs(15), fut).await {
        Err(_) => Err(ConnectError::Other("timed out connecting".into())),
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(WsError::Http(resp))) if matches!(resp.status().as_u16(), 401 | 409) => {
            let body = resp
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            // The relay's JSON error names the reason; keep it short in the log.
            let body: String = body.chars().take(300).collect();
            Err(if resp.status() == 401 {
                ConnectError::Unauthorized(body)
            } else {
                ConnectError::Conflict(body)
            })
        }
        // The usual cause is a relay on a private PKI: say where its CA goes.
        Ok(Err(e)) if is_certificate_error(&e) => Err(ConnectError::Other(format!(
            "{e} (the relay's certificate is not signed by a CA this connector trusts: \
                 a private CA's certificate goes in relay_ca_file)"
        ))),
        Ok(Err(e)) => Err(ConnectError::Other(e.to_string())),
    }
}

/// Whether the TLS handshake refused the relay's certificate (rustls reports it through
/// the I/O error of the handshake).
fn is_certificate_error(e: &tokio_tungstenite::tungstenite::Error) -> bool {
    use tokio_tungstenite::tungstenite::Error as WsError;
    let rustls_err = match e {
        WsError::Io(io) => io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()),
        _ => None,
    };
    matches!(rustls_err, Some(rustls::Error::InvalidCertificate(_)))
}

/// Per-stream state shared by the reader and the stream's task.
struct StreamCtl {
    cancel: CancellationToken,
    /// The relay had named `flow` when the stream began: the response waits for its
    /// window. A relay that never answers HELLO (the original Node relay) sends no
    /// WINDOW_UPDATE, so waiting on it would stall every response at 256 KiB.
    flow: bool,
    window: Mutex<SendWindow>,
    credit: Notify,
    body: Mutex<Option<BodyIn>>,
}

struct BodyIn {
    tx: Option<mpsc::Sender<Bytes>>,
    next_index: u64,
    recv: RecvWindow,
    /// HTTP_REQUEST_END arrived: the body is whole. Without it, the end of the chunk
    /// queue is a cut upload, which the device must see as an aborted request.
    complete: bool,
}

/// [`Session::relay_bin`]: JSON only; body chunks and WebSocket messages binary; heads
/// and ends of responses binary too.
const BIN_NONE: u8 = 0;
const BIN_BODIES: u8 = 1;
const BIN_HEADS: u8 = 2;

pub(crate) struct Session {
    pub(crate) shared: Arc<Shared>,
    out: queue::Sender<Message>,
    streams: Mutex<HashMap<String, Arc<StreamCtl>>>,
    ws: Mutex<HashMap<String, Arc<WsIn>>>,
    /// WebSocket bytes queued toward devices, over all streams of this connection.
    ws_budget: Arc<proto::WsBudget>,
    cancel: CancellationToken,
    /// What the relay's HELLO allows in binary frames: [`BIN_NONE`], [`BIN_BODIES`] (it
    /// named `bin`) or [`BIN_HEADS`] (`bin` and `bin-head`). One value, so a frame never
    /// sees half of a HELLO. A relay that does not answer HELLO only ever gets JSON.
    relay_bin: AtomicU8,
    /// The relay's HELLO named `flow`: streams begun from now on honour the window.
    relay_flow: AtomicBool,
    /// Stopping (SIGTERM): requests in flight finish, new ones are refused with BUSY.
    draining: AtomicBool,
    /// A request's task has ended (its stream is out of the table), or a detached frame
    /// was queued at last: a draining session looks whether it is idle now.
    ended: Arc<Notify>,
    /// Detached frames (errors, refusals, WebSocket closes) still waiting for room in
    /// the queue: a drained session says goodbye only after them.
    detached: Arc<AtomicUsize>,
}

pub(crate) enum WsToDevice {
    Msg(Message),
    Close(Option<u16>, Option<String>),
}

/// The reader's end of one tunnelled WebSocket toward its device.
pub(crate) struct WsIn {
    tx: mpsc::Sender<WsToDevice>,
    /// Bytes queued and not yet written to the device.
    pub(crate) budget: proto::WsStreamBudget,
}

impl Session {
    /// Nothing in flight: no request, no detached frame waiting for the queue.
    fn idle(&self) -> bool {
        self.streams.lock().unwrap().is_empty() && self.detached.load(Ordering::SeqCst) == 0
    }

    fn send_detached(&self, msg: &ConnectorMsg) {
        let frame = Message::text(proto::encode(msg));
        if let Err(queue::TrySendError::Full(frame)) = self.out.try_send(frame) {
            // Each waits in a task of its own; a relay that floods requests while not
            // reading gets no more than this many answers queued, the rest are dropped
            // (its streams then end by its own timeouts).
            if self.detached.load(Ordering::SeqCst) >= MAX_DETACHED {
                warn!("relay not reading: a control frame dropped");
                return;
            }
            let (out, detached, ended) =
                (self.out.clone(), self.detached.clone(), self.ended.clone());
            detached.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let _ = out.send(frame).await;
                detached.fetch_sub(1, Ordering::SeqCst);
                ended.notify_one();
            });
        }
    }

    pub(crate) async fn send(&self, msg: &ConnectorMsg) -> Result<(), ()> {
        self.send_frame(self.frame(msg)).await
    }

    /// The frame for `msg`: binary once the relay named `bin` and the message has a
    /// binary form (body chunks, WebSocket messages; a response's head and end only if
    /// the relay named `bin-head` as well), the JSON text frame otherwise.
    pub(crate) fn frame(&self, msg: &ConnectorMsg) -> Message {
        let needs = match proto::binary::is_head(msg) {
            true => BIN_HEADS,
            false => BIN_BODIES,
        };
        if self.relay_bin.load(Ordering::Relaxed) >= needs {
            if let Some(bin) = proto::binary::encode_connector(msg) {
                return Message::Binary(bin);
            }
        }
        Message::text(proto::encode(msg))
    }

    /// Queues `msgs` back to back (room for all is reserved first), so the writer takes
    /// them in one flush.
    pub(crate) async fn send_all(&self, msgs: &[ConnectorMsg]) -> Result<(), ()> {
        let frames = msgs.iter().map(|m| self.frame(m)).collect();
        self.out.send_all(frames).await.map_err(|_| ())
    }

    pub(crate) async fn send_frame(&self, frame: Message) -> Result<(), ()> {
        self.out.send(frame).await.map_err(|_| ())
    }

    fn error(&self, request_id: &str, e: &ExecError) {
        self.send_detached(&ConnectorMsg::HttpResponseError(proto::ResponseError::new(
            request_id, e.code, &e.message,
        )));
    }
}

/// Serves one connection until it drops, goes silent, or `shutdown` (after draining the
/// requests in flight, within `shutdown_grace`). Returns why it ended.
pub async fn session<S>(
    shared: Arc<Shared>,
    ws: tokio_tungstenite::WebSocketStream<S>,
    shutdown: CancellationToken,
) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut stream) = ws.split();
    let (out, mut out_rx) = queue::channel(OUTBOUND_QUEUE, queue::OUTBOUND_BYTES, Message::len);
    // Not a child of `shutdown`: on shutdown the session drains first (see below), and
    // only then cancels what is left.
    let cancel = CancellationToken::new();
    let sess = Arc::new(Session {
        shared: Arc::clone(&shared),
        out,
        streams: Mutex::default(),
        ws: Mutex::default(),
        ws_budget: proto::WsBudget::new(limits::WS_STREAM_BUDGET, limits::WS_CONNECTION_BUDGET),
        cancel: cancel.clone(),
        relay_bin: AtomicU8::new(BIN_NONE),
        relay_flow: AtomicBool::new(false),
        draining: AtomicBool::new(false),
        ended: Arc::new(Notify::new()),
        detached: Arc::new(AtomicUsize::new(0)),
    });

    let hello = ConnectorMsg::Hello(proto::Hello {
        version: env!("CARGO_PKG_VERSION").into(),
        capabilities: proto::Capabilities::all().names(),
        metadata: Some(serde_json::json!({
            "os": std::env::consts::OS,
            "arch": std::env::consts::ARCH,
            "hostname": hostname(),
            "name": shared.cfg.name,
        })),
    });
    let _ = sess.send(&hello).await;

    let ping_every = shared.timing.ping_interval;
    let peer_timeout = shared.timing.peer_timeout;
    let writer_cancel = cancel.clone();
    let writer = tokio::spawn(async move {
        let mut ping = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
        // Cancellation wraps the whole loop so a write stuck on a dead peer cannot hang it.
        let pump = async {
            loop {
                tokio::select! {
                    m = out_rx.recv() => {
                        let Some(m) = m else { return Ok(()) };
                        // A close frame (a drained session's last) ends the writer once
                        // everything queued before it is written.
                        let mut last = m.frame.is_close();
                        timed(peer_timeout, sink.feed(m.frame)).await?;
                        for _ in 0..32 {
                            if last { break }
                            match out_rx.try_recv() {
                                Some(m) => {
                                    last = m.frame.is_close();
                                    timed(peer_timeout, sink.feed(m.frame)).await?
                                }
                                None => break,
                            }
                        }
                        timed(peer_timeout, sink.flush()).await?;
                        if last { return Ok(()) }
                    }
                    _ = ping.tick() => {
                        let ping = ConnectorMsg::Ping(proto::Heartbeat { ts: unix_ms() });
                        timed(peer_timeout, sink.send(Message::text(proto::encode(&ping)))).await?;
                    }
                }
            }
        };
        let res: Result<(), String> = tokio::select! {
            _ = writer_cancel.cancelled() => Ok(()),
            r = pump => r,
        };
        writer_cancel.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(2), sink.close()).await;
        res
    });

    let mut last_seen = Instant::now();
    let silence = tokio::time::sleep(peer_timeout);
    tokio::pin!(silence);
    // Stopping: requests in flight get `shutdown_grace` to finish while new ones are
    // refused (BUSY, nothing done on the device: safe to retry), device WebSockets are
    // closed at once (1001: a page reconnects), and the session ends as soon as no
    // request is left, or at the end of the grace, cutting what is still running.
    let mut draining = false;
    let grace = tokio::time::sleep(Duration::MAX);
    tokio::pin!(grace);
    let reason = loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break "writer failed".to_owned(),
            _ = shutdown.cancelled(), if !draining => {
                draining = true;
                sess.draining.store(true, Ordering::SeqCst);
                let sockets: Vec<String> = sess.ws.lock().unwrap().keys().cloned().collect();
                for sid in sockets {
                    close_ws(&sess, &sid, 1001, "connector stopping");
                }
                let open = sess.streams.lock().unwrap().len();
                if sess.idle() {
                    break "shutting down".to_owned();
                }
                let limit = shared.cfg.shutdown_grace;
                info!(requests = open, grace_ms = limit.as_millis() as u64,
                    "stopping: finishing the requests in flight, refusing new ones");
                grace.as_mut().reset(Instant::now() + limit);
            }
            _ = sess.ended.notified(), if draining => {
                if sess.idle() {
                    info!("stopping: every request in flight finished");
                    break "shutting down".to_owned();
                }
            }
            _ = &mut grace, if draining => {
                let open = sess.streams.lock().unwrap().len();
                warn!(requests = open, "stopping: shutdown grace over, cutting the requests still in flight");
                break "shutting down".to_owned();
            }
            frame = stream.next() => {
                last_seen = Instant::now();
                match frame {
                    Some(Ok(Message::Text(t))) => handle(&sess, t.as_str()),
                    Some(Ok(Message::Binary(b))) => handle_binary(&sess, &b),
                    Some(Ok(Message::Close(f))) => break format!("relay closed the connection: {}", f.map(|f| format!("{} {}", f.code, f.reason)).unwrap_or_default()),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => break format!("connection error: {e}"),
                    None => break "connection closed".to_owned(),
                }
            }
            _ = &mut silence => {
                let deadline = last_seen + peer_timeout;
                if Instant::now() >= deadline {
                    break format!("relay silent for {}s", peer_timeout.as_secs());
                }
                silence.as_mut().reset(deadline);
            }
        }
    };
    let mut writer = writer;
    let mut writer_done = false;
    if draining {
        // Goodbye after the last answers: the writer sends what is queued, then this.
        let close = Message::Close(Some(CloseFrame {
            code: CloseCode::Away,
            reason: "connector stopping".into(),
        }));
        // Both bounded: a relay that stopped reading gets no goodbye.
        let queued = tokio::time::timeout(Duration::from_secs(2), sess.out.send(close)).await;
        if matches!(queued, Ok(Ok(()))) {
            writer_done = tokio::time::timeout(Duration::from_secs(2), &mut writer)
                .await
                .is_ok();
        }
    }
    cancel.cancel();
    for (_, s) in sess.streams.lock().unwrap().drain() {
        s.cancel.cancel();
    }
    sess.ws.lock().unwrap().clear();
    if !writer_done {
        let _ = writer.await;
    }
    reason
}

fn handle(sess: &Arc<Session>, text: &str) {
    match proto::decode_cloud(text) {
        Ok(m) => dispatch(sess, m),
        Err(e) => bad_frame(sess, e),
    }
}

fn bad_frame(sess: &Arc<Session>, e: proto::DecodeError) {
    warn!(%e, "bad frame from relay");
    if let Some(rid) = e.request_id() {
        let ctl = sess.streams.lock().unwrap().remove(rid);
        if let Some(ctl) = ctl {
            ctl.cancel.cancel();
            sess.error(rid, &ExecError::new(ErrorCode::BadRequest, e.to_string()));
        }
    } else if let Some(sid) = e.stream_id() {
        close_ws(sess, sid, 1002, "malformed frame");
    }
}

/// A `bin` frame (accepted whether or not the relay named `bin`): the same message as
/// its JSON twin, handled by the same code.
fn handle_binary(sess: &Arc<Session>, data: &Bytes) {
    match proto::binary::decode_cloud(data) {
        Ok(m) => dispatch(sess, m),
        Err(e) => bad_frame(sess, e),
    }
}

fn dispatch(sess: &Arc<Session>, msg: CloudMsg) {
    match msg {
        CloudMsg::Hello(h) => {
            let caps = h.capability_set();
            info!(capabilities = ?caps.names(), "relay answered HELLO");
            let bin = match (
                caps.has(proto::Capability::Bin),
                caps.has(proto::Capability::BinHead),
            ) {
                (true, true) => BIN_HEADS,
                (true, false) => BIN_BODIES,
                (false, _) => BIN_NONE,
            };
            sess.relay_bin.store(bin, Ordering::Relaxed);
            sess.relay_flow
                .store(caps.has(proto::Capability::Flow), Ordering::Relaxed);
        }
        CloudMsg::Ping(hb) => {
            sess.shared.status.heartbeat();
            // A PONG is a courtesy (any frame proves liveness): dropped when the writer is
            // backed up, so a PING flood cannot queue work.
            let pong = Message::text(proto::encode(&ConnectorMsg::Pong(hb)));
            let _ = sess.out.try_send(pong);
        }
        CloudMsg::Pong(_) => sess.shared.status.heartbeat(),
        CloudMsg::HttpRequest(req) => start_request(sess, req),
        CloudMsg::HttpRequestChunk(c) => {
            let Some(ctl) = sess.streams.lock().unwrap().get(&c.request_id).cloned() else {
                return;
            };
            let verdict = {
                let mut body = ctl.body.lock().unwrap();
                match body.as_mut() {
                    None => Err("chunk for a request without bodyStream".to_owned()),
                    Some(b) if c.index != b.next_index => Err(format!(
                        "chunk index {} where {} was expected",
                        c.index, b.next_index
                    )),
                    Some(b) => match b.recv.on_data(c.data.len()) {
                        Err(v) => Err(v.to_string()),
                        Ok(()) => {
                            b.next_index += 1;
                            match b.tx.as_ref().map(|tx| tx.try_send(c.data)) {
                                Some(Err(mpsc::error::TrySendError::Full(_))) => {
                                    Err("too many body chunks queued".into())
                                }
                                None => Err("chunk after HTTP_REQUEST_END".into()),
                                _ => Ok(()),
                            }
                        }
                    },
                }
            };
            if let Err(reason) = verdict {
                warn!(request_id = %c.request_id, %reason, "failing request");
                sess.streams.lock().unwrap().remove(&c.request_id);
                ctl.cancel.cancel();
                sess.error(
                    &c.request_id,
                    &ExecError::new(ErrorCode::BadRequest, reason),
                );
            }
        }
        CloudMsg::HttpRequestEnd(r) => {
            let ctl = sess.streams.lock().unwrap().get(&r.request_id).cloned();
            if let Some(ctl) = ctl {
                if let Some(b) = ctl.body.lock().unwrap().as_mut() {
                    b.complete = true;
                    b.tx = None; // body complete: the device sees the end of the stream
                }
            }
        }
        CloudMsg::HttpCancel(r) => {
            let ctl = sess.streams.lock().unwrap().remove(&r.request_id);
            if let Some(ctl) = ctl {
                debug!(request_id = %r.request_id, "cancelled by relay");
                ctl.cancel.cancel();
            }
        }
        CloudMsg::WindowUpdate(w) => {
            let ctl = sess.streams.lock().unwrap().get(&w.request_id).cloned();
            // A stream begun before the relay named `flow` sends without a window: its
            // credit is not counted (it would only add up to an overflow).
            if let Some(ctl) = ctl.filter(|c| c.flow) {
                let granted = ctl.window.lock().unwrap().grant(w.bytes);
                if let Err(v) = granted {
                    warn!(request_id = %w.request_id, %v, "bad WINDOW_UPDATE");
                    sess.streams.lock().unwrap().remove(&w.request_id);
                    ctl.cancel.cancel();
                    sess.error(
                        &w.request_id,
                        &ExecError::new(ErrorCode::BadRequest, v.to_string()),
                    );
                } else {
                    ctl.credit.notify_waiters();
                }
            }
        }
        CloudMsg::WsOpen(o) => start_ws(sess, o),
        CloudMsg::WsMessage(m) => {
            let ws = sess.ws.lock().unwrap().get(&m.stream_id).cloned();
            let Some(ws) = ws else { return };
            let msg = match (m.text, m.data) {
                (Some(t), None) => Message::text(t),
                (None, Some(d)) => Message::binary(d),
                _ => {
                    return close_ws(
                        sess,
                        &m.stream_id,
                        1002,
                        "WS_MESSAGE needs exactly one of text/data",
                    )
                }
            };
            let len = msg.len();
            if len > limits::MAX_WS_MESSAGE {
                warn!(stream_id = %m.stream_id, len, "WebSocket message over the limit; closing stream");
                return close_ws(sess, &m.stream_id, 1009, "message too big");
            }
            // Never wait: the budget bounds what a device that does not read can hold.
            if let Err(over) = ws.budget.charge(len) {
                let (code, reason) = match over {
                    proto::OverBudget::Closed => return,
                    proto::OverBudget::Stream => (1008, "device WebSocket too slow"),
                    proto::OverBudget::Connection => (1013, "connector WebSocket budget used up"),
                };
                warn!(stream_id = %m.stream_id, held = ws.budget.held(), connection_held = sess.ws_budget.used(), code, "device not keeping up; closing its WebSocket: {over}");
                return close_ws(sess, &m.stream_id, code, reason);
            }
            // The last slot stays free for the close frame.
            let sent = match ws.tx.capacity() > 1 {
                true => ws.tx.try_send(WsToDevice::Msg(msg)).map_err(|_| ()),
                false => Err(()),
            };
            if sent.is_err() {
                ws.budget.release(len);
                close_ws(sess, &m.stream_id, 1008, "device WebSocket too slow");
            }
        }
        CloudMsg::WsClose(c) => {
            let ws = sess.ws.lock().unwrap().remove(&c.stream_id);
            if let Some(ws) = ws {
                let _ = ws.tx.try_send(WsToDevice::Close(c.code, c.reason));
            }
        }
        CloudMsg::TokenRotate(t) => {
            // File I/O off the reader task.
            let shared = Arc::clone(&sess.shared);
            tokio::task::spawn_blocking(move || crate::rotate_token(&shared, t.token));
        }
    }
}

fn close_ws(sess: &Session, stream_id: &str, code: u16, reason: &str) {
    let ws = sess.ws.lock().unwrap().remove(stream_id);
    if let Some(ws) = ws {
        let _ = ws
            .tx
            .try_send(WsToDevice::Close(Some(code), Some(reason.to_owned())));
        sess.send_detached(&ConnectorMsg::WsClose(proto::WsClose {
            stream_id: stream_id.to_owned(),
            code: Some(code),
            reason: Some(reason.to_owned()),
            error: None,
        }));
    }
}

fn start_request(sess: &Arc<Session>, req: proto::HttpRequest) {
    let rid = req.request_id.clone();
    {
        let streams = sess.streams.lock().unwrap();
        if streams.contains_key(&rid) {
            drop(streams);
            return sess.error(
                &rid,
                &ExecError::new(ErrorCode::BadRequest, "duplicate requestId"),
            );
        }
        if sess.draining.load(Ordering::SeqCst) {
            drop(streams);
            return sess.error(
                &rid,
                &ExecError::new(ErrorCode::Busy, "connector is stopping; retry shortly"),
            );
        }
        if streams.len() >= limits::MAX_STREAMS_PER_CONNECTOR {
            drop(streams);
            return sess.error(
                &rid,
                &ExecError::new(ErrorCode::Busy, "connector has too many requests in flight"),
            );
        }
    }
    let (body_rx, body_in) = if req.body_stream {
        let (tx, rx) = mpsc::channel(BODY_QUEUE);
        (
            Some(rx),
            Some(BodyIn {
                tx: Some(tx),
                next_index: 0,
                recv: RecvWindow::default(),
                complete: false,
            }),
        )
    } else {
        (None, None)
    };
    let ctl = Arc::new(StreamCtl {
        cancel: sess.cancel.child_token(),
        flow: sess.relay_flow.load(Ordering::Relaxed),
        window: Mutex::new(SendWindow::default()),
        credit: Notify::new(),
        body: Mutex::new(body_in),
    });
    sess.streams
        .lock()
        .unwrap()
        .insert(rid.clone(), Arc::clone(&ctl));
    let sess = Arc::clone(sess);
    let path = loggable(&req.target.path).to_owned();
    let method = req.target.method.clone();
    // A span only at debug level: at info, formatting its fields for every request
    // cost more than the rest of the connector's logging together (the failure below
    // names them itself).
    let span = debug_span!("request", request_id = %rid, %method, %path);
    tokio::spawn(
        async move {
            let res = tokio::select! {
                _ = ctl.cancel.cancelled() => None,
                r = serve_request(&sess, &ctl, req, body_rx) => Some(r),
            };
            match res {
                None => debug!("request cancelled"),
                Some(Ok(())) => debug!("request complete"),
                Some(Err(e)) => {
                    info!(request_id = %rid, %method, %path, code = e.code.as_str(),
                        message = %e.message, "request failed");
                    // Queued before the stream leaves the table, so a draining session
                    // sends it ahead of its goodbye.
                    let err = proto::ResponseError::new(&rid, e.code, &e.message);
                    let _ = sess.send(&ConnectorMsg::HttpResponseError(err)).await;
                }
            }
            sess.streams.lock().unwrap().remove(&rid);
            sess.ended.notify_one();
        }
        .instrument(span),
    );
}

async fn serve_request(
    sess: &Arc<Session>,
    ctl: &Arc<StreamCtl>,
    req: proto::HttpRequest,
    body_rx: Option<mpsc::Receiver<Bytes>>,
) -> Result<(), ExecError> {
    let exec: &Executor = &sess.shared.exec;
    let rid = req.request_id;
    let t = req.target;
    let target = exec.http_target(&t.base_url, &t.path)?;
    let url = &target.origin.url;
    exec.check_target(url).await?;
    let host_port = format!(
        "{}:{}",
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or(80)
    );
    sess.shared.status.record_target(host_port);
    let timeout = req
        .timeout_ms
        .map(Duration::from_millis)
        .unwrap_or(limits::DEFAULT_TIMEOUT)
        .min(limits::MAX_TIMEOUT);
    let deadline = Instant::now() + timeout;
    let method = http::Method::from_bytes(t.method.as_bytes()).map_err(|_| {
        ExecError::new(
            ErrorCode::BadRequest,
            format!("invalid method {:?}", t.method),
        )
    })?;
    let headers = exec::request_headers(&t.headers, body_rx.is_some())?;
    let client = exec.client(url, t.tls_insecure)?;

    // Set once a streamed upload has been read whole: the response clock starts then.
    let uploaded = Arc::new(Notify::new());
    let streaming = body_rx.is_some();
    let body = match (body_rx, t.body, t.body_encoding) {
        (Some(rx), _, _) => streamed_body(
            Arc::clone(sess),
            Arc::clone(ctl),
            rid.clone(),
            rx,
            // A backstop only: the relay bounds an upload's silence itself (and
            // cancels), with the caller's idle timeout, which can exceed `timeoutMs`.
            timeout.max(limits::DEFAULT_TIMEOUT),
            Arc::clone(&uploaded),
        ),
        (None, Some(b), Some(proto::BodyEncoding::Base64)) => {
            use base64::Engine as _;
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b.as_bytes())
                .map_err(|e| {
                    ExecError::new(
                        ErrorCode::BadRequest,
                        format!("body is not valid base64: {e}"),
                    )
                })?;
            exec::whole_body(raw)
        }
        (None, Some(b), _) => exec::whole_body(b),
        (None, None, _) => exec::whole_body(Bytes::new()),
    };

    let _permit = tokio::time::timeout_at(deadline, exec.permit(url))
        .await
        .map_err(|_| {
            ExecError::new(
                ErrorCode::Busy,
                format!("device {} stayed at its concurrency limit", url.authority()),
            )
        })?;
    let mut request = http::Request::new(body);
    *request.method_mut() = method;
    *request.uri_mut() = target.uri;
    *request.headers_mut() = headers;
    // `timeoutMs` bounds the wait for the response head after the request is sent: an
    // upload is bounded by its idle timeout (in `streamed_body`), not by its length.
    let response_clock = async {
        if streaming {
            uploaded.notified().await;
            tokio::time::sleep(timeout).await;
        } else {
            tokio::time::sleep_until(deadline).await;
        }
    };
    let executed = tokio::select! {
        r = client.request(request) => Ok(r),
        () = response_clock => Err(()),
    };
    let resp = match executed {
        Err(_) => {
            return Err(ExecError::new(
                ErrorCode::Timeout,
                format!(
                    "no response from the device within {} ms",
                    timeout.as_millis()
                ),
            ))
        }
        Ok(Err(e)) => return Err(exec::classify(&e, url.authority())),
        Ok(Ok(r)) => r,
    };
    let (parts, mut body) = resp.into_parts();
    let headers = exec::response_headers(&parts.headers);
    if headers.byte_len() > limits::MAX_HEADER_BYTES {
        return Err(ExecError::new(
            ErrorCode::Internal,
            format!(
                "device response headers exceed {} bytes",
                limits::MAX_HEADER_BYTES
            ),
        ));
    }
    let start = ConnectorMsg::HttpResponseStart(proto::ResponseStart {
        request_id: rid.clone(),
        status_code: parts.status.as_u16(),
        headers,
    });
    // What the device has already sent, up to one chunk, taken without waiting (hyper
    // gives a body frame it holds, or `Pending`, which consumes nothing). A small answer
    // that is complete here (the usual API reply) goes out as one batch: START, its chunk
    // and END reach the writer together and share one write to the relay, and the relay
    // one read, instead of three of each.
    let mut ready = Vec::new();
    let (mut ready_len, mut ended, mut failed) = (0, false, None);
    while ready_len < limits::MAX_CHUNK_LEN {
        match exec::next_chunk(&mut body).now_or_never() {
            None => break,
            Some(Ok(None)) => {
                ended = true;
                break;
            }
            Some(Ok(Some(c))) => {
                ready_len += c.len();
                ready.push(c);
            }
            Some(Err(e)) => {
                failed = Some(e);
                break;
            }
        }
    }
    if ended && ready_len <= limits::MAX_CHUNK_LEN && take_window_now(ctl, ready_len) {
        let mut batch = vec![start];
        if ready_len > 0 {
            let data = match ready.len() {
                1 => ready.pop().unwrap_or_default(),
                _ => ready.concat().into(),
            };
            batch.push(ConnectorMsg::HttpResponseChunk(proto::Chunk {
                request_id: rid.clone(),
                data,
                index: 0,
            }));
        }
        batch.push(ConnectorMsg::HttpResponseEnd(proto::StreamRef {
            request_id: rid,
        }));
        return sess.send_all(&batch).await.map_err(|_| gone());
    }
    sess.send(&start).await.map_err(|_| gone())?;

    let mut ready = ready.into_iter();
    let mut index = 0u64;
    loop {
        let chunk = if let Some(c) = ready.next() {
            c
        } else if let Some(e) = failed.take() {
            return Err(exec::body_failed(&e));
        } else if ended {
            break;
        } else {
            match tokio::time::timeout(timeout, exec::next_chunk(&mut body)).await {
                Err(_) => {
                    return Err(ExecError::new(
                        ErrorCode::Timeout,
                        "device stopped sending the body",
                    ))
                }
                Ok(Err(e)) => return Err(exec::body_failed(&e)),
                Ok(Ok(None)) => break,
                Ok(Ok(Some(c))) => c,
            }
        };
        let mut chunk = chunk;
        while !chunk.is_empty() {
            let n = wait_window(ctl, chunk.len().min(limits::MAX_CHUNK_LEN)).await;
            let data = chunk.split_to(n);
            let msg = ConnectorMsg::HttpResponseChunk(proto::Chunk {
                request_id: rid.clone(),
                data,
                index,
            });
            index += 1;
            sess.send(&msg).await.map_err(|_| gone())?;
        }
    }
    sess.send(&ConnectorMsg::HttpResponseEnd(proto::StreamRef {
        request_id: rid,
    }))
    .await
    .map_err(|_| gone())
}

fn gone() -> ExecError {
    ExecError::new(ErrorCode::Cancelled, "relay connection closed")
}

/// Takes `n` bytes of credit if the window has them now (always, without flow control).
fn take_window_now(ctl: &StreamCtl, n: usize) -> bool {
    if !ctl.flow || n == 0 {
        return true;
    }
    let mut w = ctl.window.lock().unwrap();
    let enough = w.available() >= n as u64;
    if enough {
        w.consume(n);
    }
    enough
}

/// Waits for send window and takes up to `want` bytes of it.
async fn wait_window(ctl: &StreamCtl, want: usize) -> usize {
    if !ctl.flow {
        // No window: the relay's TCP backpressure (the writer queue) paces the stream.
        return want;
    }
    loop {
        let notified = ctl.credit.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let mut w = ctl.window.lock().unwrap();
            if w.available() > 0 {
                let n = want.min(w.available() as usize);
                w.consume(n);
                return n;
            }
        }
        notified.await;
    }
}

/// The device-facing request body of a `req-stream` request: returns credit to the
/// relay as the device consumes it.
///
/// Ends only after HTTP_REQUEST_END. A queue that closes without it (the stream was
/// failed or cancelled) or that stays empty for `idle` yields an error instead, so
/// hyper aborts the device connection rather than finishing the request: a cut
/// upload never looks complete to the device. `uploaded` is notified at the end.
fn streamed_body(
    sess: Arc<Session>,
    ctl: Arc<StreamCtl>,
    rid: String,
    rx: mpsc::Receiver<Bytes>,
    idle: Duration,
    uploaded: Arc<Notify>,
) -> exec::DeviceBody {
    let s =
        futures_util::stream::unfold((Some(rx), sess, ctl, rid), move |(rx, sess, ctl, rid)| {
            let uploaded = Arc::clone(&uploaded);
            async move {
                let mut rx = rx?;
                let data = match tokio::time::timeout(idle, rx.recv()).await {
                    Ok(Some(data)) => data,
                    Ok(None) => {
                        let complete = ctl
                            .body
                            .lock()
                            .unwrap()
                            .as_ref()
                            .is_some_and(|b| b.complete);
                        if complete {
                            uploaded.notify_one();
                            return None;
                        }
                        let cut = std::io::Error::other("the upload was cut before its end");
                        return Some((Err(cut), (None, sess, ctl, rid)));
                    }
                    Err(_) => {
                        let stalled = std::io::Error::other(format!(
                            "the upload sent nothing for {} s",
                            idle.as_secs()
                        ));
                        return Some((Err(stalled), (None, sess, ctl, rid)));
                    }
                };
                let credit = ctl
                    .body
                    .lock()
                    .unwrap()
                    .as_mut()
                    .and_then(|b| b.recv.on_consumed(data.len()));
                if let Some(bytes) = credit {
                    let wu = ConnectorMsg::WindowUpdate(proto::WindowUpdate {
                        request_id: rid.clone(),
                        bytes,
                    });
                    let _ = sess.send(&wu).await;
                }
                Some((Ok::<_, std::io::Error>(data), (Some(rx), sess, ctl, rid)))
            }
        });
    http_body_util::BodyExt::boxed_unsync(http_body_util::StreamBody::new(
        s.map(|r| r.map(hyper::body::Frame::data)),
    ))
}

fn start_ws(sess: &Arc<Session>, o: proto::WsOpen) {
    let sid = o.stream_id.clone();
    if sess.draining.load(Ordering::SeqCst) {
        return sess.send_detached(&ConnectorMsg::WsClose(proto::WsClose {
            stream_id: sid,
            code: Some(1001),
            reason: Some("connector stopping".into()),
            error: Some(ErrorCode::Busy.as_str().into()),
        }));
    }
    if sess.ws.lock().unwrap().len() + sess.streams.lock().unwrap().len()
        >= limits::MAX_STREAMS_PER_CONNECTOR
    {
        return sess.send_detached(&ConnectorMsg::WsClose(proto::WsClose {
            stream_id: sid,
            code: Some(1013),
            reason: Some("connector busy".into()),
            error: Some(ErrorCode::Busy.as_str().into()),
        }));
    }
    let (tx, rx) = mpsc::channel(WS_QUEUE + 1);
    let ws_in = Arc::new(WsIn {
        tx,
        budget: sess.ws_budget.stream(),
    });
    {
        let mut ws = sess.ws.lock().unwrap();
        if ws.contains_key(&sid) {
            drop(ws);
            warn!(stream_id = %sid, "duplicate WS_OPEN ignored");
            return;
        }
        ws.insert(sid.clone(), Arc::clone(&ws_in));
    }
    let sess = Arc::clone(sess);
    let path = loggable(&o.target.path).to_owned();
    let span = info_span!("ws", stream_id = %sid, %path);
    tokio::spawn(
        async move {
            let cancel = sess.cancel.clone();
            let res = tokio::select! {
                _ = cancel.cancelled() => return,
                r = crate::wsproxy::proxy(&sess, &sid, o.target, rx, &ws_in.budget) => r,
            };
            // What was still queued is gone with the channel.
            ws_in.budget.close();
            // Still in the table: the device side ended it, so tell the relay. Removed:
            // the relay closed it and needs no answer.
            if sess.ws.lock().unwrap().remove(&sid).is_some() {
                let (code, reason, error) = match res {
                    Ok((code, reason)) => (code, reason, None),
                    Err(e) => {
                        info!(%e, "device WebSocket failed");
                        (1011, e.to_string(), Some(e.code.as_str().to_owned()))
                    }
                };
                let _ = sess
                    .send(&ConnectorMsg::WsClose(proto::WsClose {
                        stream_id: sid,
                        code: Some(code),
                        reason: Some(reason),
                        error,
                    }))
                    .await;
            }
        }
        .instrument(span),
    );
}

/// One socket write that must finish within `limit` (a relay that stops reading is
/// left, not waited on forever).
async fn timed<F>(limit: Duration, write: F) -> Result<(), String>
where
    F: std::future::Future<Output = Result<(), tokio_tungstenite::tungstenite::Error>>,
{
    match tokio::time::timeout(limit, write).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err("relay stopped reading (write timed out)".to_owned()),
    }
}

/// A path as it may appear in logs: without its query, where device UIs put session
/// tokens.
fn loggable(path: &str) -> &str {
    path.split('?').next().unwrap_or_default()
}

pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut rng = fastrand::Rng::with_seed(7);
        let delays: Vec<u64> = (0..8)
            .map(|_| b.next_delay(&mut rng).as_millis() as u64)
            .collect();
        let caps = [100, 200, 400, 800, 1600, 3200, 5000, 5000];
        for (d, cap) in delays.iter().zip(caps) {
            assert!(
                *d >= cap / 4 && *d <= cap,
                "{d} not in [{}, {cap}]",
                cap / 4
            );
        }
        let mut other = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut rng2 = fastrand::Rng::with_seed(8);
        let delays2: Vec<u64> = (0..8)
            .map(|_| other.next_delay(&mut rng2).as_millis() as u64)
            .collect();
        assert_ne!(delays, delays2, "jitter spreads reconnects");
        b.reset();
        assert!(b.next_delay(&mut rng).as_millis() <= 100);
    }
}
