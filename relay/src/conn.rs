//! One connector connection: a reader loop (this task) and a writer task joined by a
//! bounded channel, the table of open streams, heartbeat and flow control.
//!
//! Must never: block the reader on one slow stream of a `flow` connector (that would
//! stall every other stream on the connection), or hold more than one window of body
//! data per stream.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use ponte_core::connector::{ConnectorDirectory, ConnectorEvent};
use ponte_core::router::{RouteError, WsFrame};
use ponte_protocol::{
    self as proto, limits,
    queue::{self, TrySendError},
    Capabilities, Capability, CloudMsg, ConnectorMsg, DecodeError, RecvWindow, SendWindow,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Frames queued for the writer, and at most [`queue::OUTBOUND_BYTES`] of them. When
/// full, senders wait: request senders and upload pumps slow down instead of buffering;
/// the reader never waits on it (it uses `try_send`, or `send_detached` for the few
/// control frames it must not drop).
const OUTBOUND_QUEUE: usize = 64;

/// Events queued per HTTP stream between the reader and the consumer. Bytes are bounded
/// by the flow window; this bounds the count. A `flow` connector that overflows it (many
/// tiny chunks) has its stream failed; a legacy connector makes the reader wait (the
/// only backpressure a legacy peer understands is TCP's).
const STREAM_QUEUE: usize = 256;

/// Events queued per HTTP stream of a legacy connector. Its chunks may be up to ~768 KiB
/// each and there is no window, so the queue is short: a slow caller holds at most this
/// many chunks before the reader waits (TCP backpressure on that connector).
const LEGACY_STREAM_QUEUE: usize = 8;

/// Messages queued per WebSocket stream toward the caller. Their bytes are bounded by the
/// stream's share of the connection's [`WsBudget`] (`limits::WS_STREAM_BUDGET`, charged
/// until the caller has written a message on); this bounds their number (many tiny
/// messages). Either one full closes the stream with 1008 and the reader goes on: a
/// device flooding a browser that does not read is not buffered. One slot is kept for
/// that close.
const WS_QUEUE: usize = 256;

/// Tunables, defaults from the protocol limits; tests shrink them.
#[derive(Debug, Clone)]
pub struct ConnConfig {
    pub ping_interval: Duration,
    pub peer_timeout: Duration,
    pub hello_grace: Duration,
}

impl Default for ConnConfig {
    fn default() -> Self {
        Self {
            ping_interval: limits::PING_INTERVAL,
            peer_timeout: limits::PEER_TIMEOUT,
            hello_grace: limits::HELLO_GRACE,
        }
    }
}

pub(crate) enum StreamEvent {
    Start {
        status: u16,
        headers: proto::Headers,
    },
    Data(Bytes),
    End,
    /// No data: tells a consumer waiting on an empty channel to look at the overflow.
    Wake,
    Error(RouteError),
}

/// An open HTTP stream as the connection's table holds it. The event sender lives only
/// here: removing the entry closes the consumer's channel, which is how a failed or
/// disconnected stream wakes its consumer.
#[derive(Clone)]
pub(crate) struct Slot {
    pub stream: Arc<HttpStream>,
    pub events: mpsc::Sender<StreamEvent>,
}

impl std::ops::Deref for Slot {
    type Target = HttpStream;
    fn deref(&self) -> &HttpStream {
        &self.stream
    }
}

/// Shared between the reader (producer) and the consumer of one HTTP stream.
pub(crate) struct HttpStream {
    /// Whether the connector spoke `flow` when the stream began: decides how the reader
    /// hands over data (never wait vs. TCP backpressure) and whether the window is enforced.
    pub flow: bool,
    pub state: Mutex<StreamState>,
    /// Woken when the connector grants upload credit or the stream ends.
    pub upload_credit: Notify,
    /// The connection's budget for grown response windows; this stream's growth goes
    /// back to it when the stream is dropped.
    pub window_budget: Arc<proto::WindowBudget>,
}

impl Drop for HttpStream {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = &state.recv {
            self.window_budget.give_back(w.grown());
        }
    }
}

pub(crate) struct StreamState {
    next_index: u64,
    started: bool,
    /// Response-body window, when the connector speaks `flow`.
    pub recv: Option<RecvWindow>,
    /// Upload window, when the connector speaks `flow`.
    pub upload: Option<SendWindow>,
    /// Why the stream failed, for the consumer that finds its channel closed.
    pub failed: Option<RouteError>,
    /// Events that did not fit the channel (`flow` streams only), newer than anything
    /// in it. Bounded: data bytes by the window, entries by merging small chunks.
    pub overflow: std::collections::VecDeque<StreamEvent>,
}

impl StreamState {
    fn spill(&mut self, ev: StreamEvent) {
        if let (StreamEvent::Data(new), Some(StreamEvent::Data(last))) =
            (&ev, self.overflow.back_mut())
        {
            if last.len() + new.len() <= limits::MAX_CHUNK_LEN {
                let mut merged = bytes::BytesMut::with_capacity(last.len() + new.len());
                merged.extend_from_slice(last);
                merged.extend_from_slice(new);
                *last = merged.freeze();
                return;
            }
        }
        self.overflow.push_back(ev);
    }
}

/// The negotiated subprotocol, or why the device WebSocket could not be opened.
pub(crate) type WsOpenResult = Result<Option<String>, RouteError>;

pub(crate) struct WsState {
    pub tx: mpsc::Sender<WsFrame>,
    pub opened: Mutex<Option<oneshot::Sender<WsOpenResult>>>,
    /// Bytes queued toward the caller and not yet written on by it.
    pub budget: proto::WsStreamBudget,
}

/// What a connector speaks: the base protocol only (no HELLO), or what HELLO announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Peer {
    pub hello: bool,
    pub caps: Capabilities,
}

impl Peer {
    pub const LEGACY: Peer = Peer {
        hello: false,
        caps: Capabilities::NONE,
    };
}

/// Binary (`bin`) frames one connection has carried, for tests and diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameCounts {
    /// Binary frames received from the connector.
    pub binary_received: u64,
    /// Binary frames sent to the connector.
    pub binary_sent: u64,
}

/// Everything the relay knows about one live connection.
pub(crate) struct Conn {
    pub connector_id: String,
    pub out: queue::Sender<Message>,
    peer: watch::Sender<Option<Peer>>,
    binary_received: AtomicU64,
    binary_sent: AtomicU64,
    pub streams: Mutex<HashMap<String, Slot>>,
    pub ws: Mutex<HashMap<String, Arc<WsState>>>,
    /// WebSocket bytes queued toward callers, over all of this connection's streams.
    pub ws_budget: Arc<proto::WsBudget>,
    /// Growth of response windows, over all of this connection's streams.
    pub window_budget: Arc<proto::WindowBudget>,
    pub cancel: CancellationToken,
    close: Mutex<Option<CloseFrame>>,
    /// When the connection began, and milliseconds since then of the last frame read.
    born: Instant,
    last_frame_ms: AtomicU64,
    /// How long requests wait for HELLO on this connection (see [`limits::HELLO_GRACE`]).
    pub hello_grace: Duration,
}

impl Conn {
    pub fn new(
        connector_id: String,
        cancel: CancellationToken,
        hello_grace: Duration,
    ) -> (Arc<Self>, queue::Receiver<Message>) {
        let (out, rx) = queue::channel(OUTBOUND_QUEUE, queue::OUTBOUND_BYTES, Message::len);
        let conn = Arc::new(Self {
            connector_id,
            out,
            peer: watch::channel(None).0,
            binary_received: AtomicU64::new(0),
            binary_sent: AtomicU64::new(0),
            streams: Mutex::default(),
            ws: Mutex::default(),
            ws_budget: proto::WsBudget::new(limits::WS_STREAM_BUDGET, limits::WS_CONNECTION_BUDGET),
            window_budget: proto::WindowBudget::new(limits::WINDOW_GROWTH_BUDGET),
            cancel,
            close: Mutex::new(None),
            born: Instant::now(),
            last_frame_ms: AtomicU64::new(0),
            hello_grace,
        });
        (conn, rx)
    }

    /// What the peer speaks, once HELLO arrived or the connector showed it is legacy
    /// (first other frame, or `hello_grace` elapsed). Waits at most `grace`.
    pub async fn peer(&self, grace: Duration) -> Peer {
        let mut rx = self.peer.subscribe();
        let waited = tokio::time::timeout(grace, rx.wait_for(Option::is_some)).await;
        match waited {
            Ok(Ok(peer)) => peer.unwrap_or(Peer::LEGACY),
            _ => Peer::LEGACY,
        }
    }

    fn set_peer_once(&self, peer: Peer) {
        self.peer.send_if_modified(|p| {
            if p.is_none() {
                *p = Some(peer);
                true
            } else {
                false
            }
        });
    }

    /// HELLO always wins, even after the grace timer marked the peer legacy: a
    /// connector on a slow link still gets the extensions (its in-flight streams keep
    /// their mode; credit starts flowing for them as they are read).
    fn set_hello(&self, peer: Peer) {
        self.peer.send_if_modified(|p| {
            if matches!(p, Some(Peer { hello: true, .. })) {
                false
            } else {
                if p.is_some() {
                    info!("late HELLO: upgrading a connector first treated as legacy");
                }
                *p = Some(peer);
                true
            }
        });
    }

    pub fn has(&self, cap: Capability) -> bool {
        matches!(*self.peer.borrow(), Some(p) if p.caps.has(cap))
    }

    /// The frame for `msg`: binary when the connector named `bin` and the message has a
    /// binary form (body chunks, WebSocket messages), the JSON text frame otherwise.
    pub fn frame(&self, msg: &CloudMsg) -> Message {
        if self.has(Capability::Bin) {
            if let Some(bin) = proto::binary::encode_cloud(msg) {
                self.binary_sent.fetch_add(1, Ordering::Relaxed);
                return Message::Binary(bin);
            }
        }
        Message::text(proto::encode(msg))
    }

    pub fn frame_counts(&self) -> FrameCounts {
        FrameCounts {
            binary_received: self.binary_received.load(Ordering::Relaxed),
            binary_sent: self.binary_sent.load(Ordering::Relaxed),
        }
    }

    pub fn open_streams(&self) -> usize {
        self.streams.lock().unwrap().len() + self.ws.lock().unwrap().len()
    }

    /// Closes the connection with a WebSocket close code and reason.
    fn saw_frame(&self) {
        let ms = self.born.elapsed().as_millis() as u64;
        self.last_frame_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// Sends a WebSocket ping (every peer answers it, the Node connector included) and
    /// closes the connection if no frame at all arrives within `timeout`.
    pub fn probe(self: &Arc<Self>, timeout: Duration) {
        let sent = self.born.elapsed().as_millis() as u64;
        if self
            .out
            .try_send(Message::Ping(Default::default()))
            .is_err()
        {
            // The writer is backed up: the peer is reading slowly, not gone. The
            // heartbeat deadline still applies.
            return;
        }
        let conn = Arc::clone(self);
        tokio::spawn(async move {
            tokio::select! {
                _ = conn.cancel.cancelled() => {}
                _ = tokio::time::sleep(timeout) => {
                    if conn.last_frame_ms.load(Ordering::Relaxed) < sent {
                        warn!("no answer to a liveness probe while another connection claimed this identity; closing");
                        conn.close(4002, "no answer to a liveness probe");
                    }
                }
            }
        });
    }

    pub fn close(&self, code: u16, reason: &str) {
        *self.close.lock().unwrap() = Some(CloseFrame {
            code: CloseCode::from(code),
            reason: reason.to_owned().into(),
        });
        self.cancel.cancel();
    }

    /// Queues a control frame without waiting. Used from `Drop` and from the reader,
    /// which must never wait on the writer. If the queue is full the frame is handed to
    /// a short task that waits for room, so it is not lost.
    pub fn send_detached(&self, msg: &CloudMsg) {
        let frame = Message::text(proto::encode(msg));
        match self.out.try_send(frame) {
            Ok(()) => {}
            Err(TrySendError::Full(frame)) => {
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    let out = self.out.clone();
                    rt.spawn(async move {
                        let _ = out.send(frame).await;
                    });
                }
            }
            Err(TrySendError::Closed) => {}
        }
    }

    /// Forgets a stream; if it was still open, tells the connector to stop it.
    pub fn cancel_stream(&self, request_id: &str) {
        let removed = self.streams.lock().unwrap().remove(request_id);
        if let Some(stream) = removed {
            stream.upload_credit.notify_waiters();
            if self.has(Capability::Cancel) {
                self.send_detached(&CloudMsg::HttpCancel(proto::StreamRef {
                    request_id: request_id.to_owned(),
                }));
            }
        }
    }

    /// Fails one stream with a reason, leaving the connection and other streams alone.
    fn fail_stream(&self, request_id: &str, err: RouteError) {
        let stream = self.streams.lock().unwrap().get(request_id).cloned();
        if let Some(stream) = stream {
            warn!(request_id, %err, "failing stream");
            stream.state.lock().unwrap().failed = Some(err);
            self.cancel_stream(request_id);
        }
    }

    fn fail_all(&self) {
        let streams: Vec<_> = self.streams.lock().unwrap().drain().collect();
        for (_, s) in streams {
            s.state
                .lock()
                .unwrap()
                .failed
                .get_or_insert(RouteError::Disconnected);
            s.upload_credit.notify_waiters();
        }
        let ws: Vec<_> = self.ws.lock().unwrap().drain().collect();
        for (_, w) in ws {
            if let Some(tx) = w.opened.lock().unwrap().take() {
                let _ = tx.send(Err(RouteError::Disconnected));
            }
        }
    }
}

/// Drives one authenticated connection until it ends. Returns when the socket is closed,
/// the peer went silent, or `conn.cancel` fired (replaced, revoked, shutdown).
pub(crate) async fn run<S>(
    conn: Arc<Conn>,
    out_rx: queue::Receiver<Message>,
    ws: WebSocketStream<S>,
    directory: Arc<dyn ConnectorDirectory>,
    cfg: ConnConfig,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sink, mut stream) = ws.split();
    let writer = tokio::spawn(write_loop(
        sink,
        out_rx,
        conn.cancel.clone(),
        cfg.ping_interval,
        cfg.peer_timeout,
        Arc::clone(&conn),
    ));

    let mut last_seen = Instant::now();
    let silence = tokio::time::sleep(cfg.peer_timeout);
    tokio::pin!(silence);
    let hello_deadline = tokio::time::sleep(conn.hello_grace);
    tokio::pin!(hello_deadline);
    let mut hello_pending = true;

    loop {
        tokio::select! {
            biased;
            _ = conn.cancel.cancelled() => break,
            frame = stream.next() => {
                last_seen = Instant::now();
                conn.saw_frame();
                match frame {
                    Some(Ok(Message::Text(text))) => {
                        hello_pending = false;
                        handle_text(&conn, directory.as_ref(), text.as_str()).await;
                        // Any first frame but HELLO (even a malformed one) means legacy.
                        conn.set_peer_once(Peer::LEGACY);
                    }
                    Some(Ok(Message::Binary(data))) => {
                        hello_pending = false;
                        // Accepted from any peer: the decoder bounds it like a text frame.
                        conn.binary_received.fetch_add(1, Ordering::Relaxed);
                        handle_binary(&conn, directory.as_ref(), &data).await;
                        conn.set_peer_once(Peer::LEGACY);
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                    Some(Ok(Message::Close(frame))) => {
                        debug!(?frame, "connector closed the connection");
                        break;
                    }
                    Some(Err(err)) => {
                        warn!(%err, "connection error; closing");
                        if matches!(err, tokio_tungstenite::tungstenite::Error::Capacity(_)) {
                            // A frame over the limit, refused unread: 1009 (message too big).
                            conn.close(1009, "frame too big");
                        }
                        break;
                    }
                    None => break,
                }
            }
            _ = &mut silence => {
                let deadline = last_seen + cfg.peer_timeout;
                if Instant::now() >= deadline {
                    warn!(timeout_s = cfg.peer_timeout.as_secs(), "connector silent; disconnecting");
                    ponte_core::metrics::heartbeat_missed();
                    conn.close(4002, "heartbeat timeout");
                    break;
                }
                silence.as_mut().reset(deadline);
            }
            _ = &mut hello_deadline, if hello_pending => {
                hello_pending = false;
                conn.set_peer_once(Peer::LEGACY);
                debug!("no HELLO: treating connector as protocol v1 base");
            }
        }
    }
    conn.cancel.cancel();
    conn.fail_all();
    let _ = writer.await;
}

async fn write_loop<S>(
    mut sink: futures_util::stream::SplitSink<WebSocketStream<S>, Message>,
    mut rx: queue::Receiver<Message>,
    cancel: CancellationToken,
    ping_interval: Duration,
    write_timeout: Duration,
    conn: Arc<Conn>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut ping = tokio::time::interval_at(Instant::now() + ping_interval, ping_interval);
    // Cancellation wraps the whole loop: a write blocked on a peer that stopped reading
    // must not keep a replaced or revoked connection alive.
    // Each write must make progress within `write_timeout`; a peer that stops reading
    // is disconnected rather than left to back up every sender on this connection.
    let pump = async {
        loop {
            tokio::select! {
                msg = rx.recv() => {
                    let Some(queued) = msg else { return Ok(()) };
                    timed(write_timeout, sink.feed(queued.frame)).await?;
                    // Batch what is already queued into one flush.
                    for _ in 0..32 {
                        match rx.try_recv() {
                            Some(queued) => timed(write_timeout, sink.feed(queued.frame)).await?,
                            None => break,
                        }
                    }
                    timed(write_timeout, sink.flush()).await?;
                }
                _ = ping.tick() => {
                    let ping = CloudMsg::Ping(proto::Heartbeat { ts: unix_ms() });
                    timed(write_timeout, sink.send(Message::text(proto::encode(&ping)))).await?;
                }
            }
        }
    };
    let result: Result<(), String> = tokio::select! {
        _ = cancel.cancelled() => Ok(()),
        r = pump => r,
    };
    if let Err(err) = result {
        debug!(%err, "writer stopped");
    }
    cancel.cancel();
    let frame = conn.close.lock().unwrap().take();
    let close = frame.unwrap_or(CloseFrame {
        code: CloseCode::Away,
        reason: "relay closing".into(),
    });
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = sink.send(Message::Close(Some(close))).await;
        let _ = sink.close().await;
    })
    .await;
}

/// One socket write that must finish within `limit`.
pub(crate) async fn timed<F>(limit: Duration, write: F) -> Result<(), String>
where
    F: std::future::Future<Output = Result<(), tokio_tungstenite::tungstenite::Error>>,
{
    match tokio::time::timeout(limit, write).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err("peer stopped reading (write timed out)".to_owned()),
    }
}

async fn handle_text(conn: &Arc<Conn>, directory: &dyn ConnectorDirectory, text: &str) {
    match proto::decode_connector(text) {
        Ok(msg) => handle_msg(conn, directory, msg).await,
        Err(err) => handle_decode_error(conn, err),
    }
}

/// A `bin` frame: decodes to the same message as its JSON twin and takes the same path,
/// so index rules, windows and per-stream failure apply alike.
async fn handle_binary(conn: &Arc<Conn>, directory: &dyn ConnectorDirectory, data: &Bytes) {
    match proto::binary::decode_connector(data) {
        Ok(msg) => handle_msg(conn, directory, msg).await,
        Err(err) => handle_decode_error(conn, err),
    }
}

async fn handle_msg(conn: &Arc<Conn>, directory: &dyn ConnectorDirectory, msg: ConnectorMsg) {
    if !matches!(msg, ConnectorMsg::Hello(_)) {
        conn.set_peer_once(Peer::LEGACY);
    }
    match msg {
        ConnectorMsg::Hello(hello) => {
            let caps = hello.capability_set().intersect(Capabilities::all());
            // The answer (DESIGN: the intersection) goes before the peer is marked, so
            // frames using an extension normally queue behind it; a connector that named
            // `bin` accepts binary frames even before it has read the answer.
            conn.send_detached(&CloudMsg::Hello(proto::Hello {
                version: env!("CARGO_PKG_VERSION").into(),
                capabilities: caps.names(),
                metadata: None,
            }));
            conn.set_hello(Peer { hello: true, caps });
            info!(version = %hello.version, capabilities = ?caps.names(), "connector said HELLO");
            directory.on_event(ConnectorEvent::Hello {
                connector_id: conn.connector_id.clone(),
                hello,
            });
        }
        ConnectorMsg::Ping(hb) => {
            // Liveness is any frame, so a PONG is a courtesy: dropped when the writer is
            // backed up. (Queueing it would let a PING flood grow memory.)
            let _ = conn
                .out
                .try_send(Message::text(proto::encode(&CloudMsg::Pong(hb))));
            directory.on_event(ConnectorEvent::Heartbeat {
                connector_id: conn.connector_id.clone(),
            });
        }
        ConnectorMsg::Pong(_) => {
            directory.on_event(ConnectorEvent::Heartbeat {
                connector_id: conn.connector_id.clone(),
            });
        }
        ConnectorMsg::HttpResponseStart(start) => {
            let Some(stream) = lookup(conn, &start.request_id) else {
                return;
            };
            if start.headers.byte_len() > limits::MAX_HEADER_BYTES {
                return conn.fail_stream(
                    &start.request_id,
                    RouteError::Protocol("response headers too large".into()),
                );
            }
            if !(100..=999).contains(&start.status_code) {
                return conn.fail_stream(
                    &start.request_id,
                    RouteError::Protocol(format!("invalid status {}", start.status_code)),
                );
            }
            // A 1xx is never a final answer, and a 101 would hand the caller's socket to
            // whatever the connector sends next: WebSockets go through WS_OPEN only.
            if start.status_code < 200 {
                return conn.fail_stream(
                    &start.request_id,
                    RouteError::Protocol(format!(
                        "the connector answered a plain request with {}",
                        start.status_code
                    )),
                );
            }
            let dup = std::mem::replace(&mut stream.state.lock().unwrap().started, true);
            if dup {
                return conn.fail_stream(
                    &start.request_id,
                    RouteError::Protocol("second HTTP_RESPONSE_START".into()),
                );
            }
            // The queue is empty before START: this cannot be full.
            let _ = stream.events.try_send(StreamEvent::Start {
                status: start.status_code,
                headers: start.headers,
            });
        }
        ConnectorMsg::HttpResponseChunk(chunk) => {
            let Some(stream) = lookup(conn, &chunk.request_id) else {
                return;
            };
            let verdict = {
                let mut st = stream.state.lock().unwrap();
                if !st.started {
                    Err("chunk before HTTP_RESPONSE_START".to_owned())
                } else if chunk.index != st.next_index {
                    Err(format!(
                        "chunk index {} where {} was expected",
                        chunk.index, st.next_index
                    ))
                } else if let (true, Some(Err(v))) = (
                    stream.flow,
                    st.recv.as_mut().map(|w| w.on_data(chunk.data.len())),
                ) {
                    Err(v.to_string())
                } else {
                    st.next_index += 1;
                    Ok(())
                }
            };
            if let Err(reason) = verdict {
                return conn.fail_stream(&chunk.request_id, RouteError::Protocol(reason));
            }
            if chunk.data.is_empty() {
                return;
            }
            ponte_core::metrics::bytes_from_device(chunk.data.len());
            deliver(
                conn,
                &chunk.request_id,
                &stream,
                StreamEvent::Data(chunk.data),
            )
            .await;
        }
        ConnectorMsg::HttpResponseEnd(end) => {
            let Some(stream) = lookup(conn, &end.request_id) else {
                return;
            };
            if !stream.state.lock().unwrap().started {
                return conn.fail_stream(
                    &end.request_id,
                    RouteError::Protocol("END before START".into()),
                );
            }
            deliver(conn, &end.request_id, &stream, StreamEvent::End).await;
            finish(conn, &end.request_id);
        }
        ConnectorMsg::HttpResponseError(err) => {
            let Some(stream) = lookup(conn, &err.request_id) else {
                return;
            };
            let route_err = RouteError::from_wire(&err);
            debug!(request_id = %err.request_id, %route_err, "connector reported error");
            stream.state.lock().unwrap().failed = Some(route_err.clone());
            let _ = stream.events.try_send(StreamEvent::Error(route_err));
            finish(conn, &err.request_id);
        }
        ConnectorMsg::WindowUpdate(wu) => {
            let Some(stream) = lookup(conn, &wu.request_id) else {
                return;
            };
            let res = stream
                .state
                .lock()
                .unwrap()
                .upload
                .as_mut()
                .map(|w| w.grant(wu.bytes));
            match res {
                Some(Err(v)) => {
                    conn.fail_stream(&wu.request_id, RouteError::Protocol(v.to_string()))
                }
                _ => stream.upload_credit.notify_waiters(),
            }
        }
        ConnectorMsg::WsOpened(o) => {
            let ws = conn.ws.lock().unwrap().get(&o.stream_id).cloned();
            match ws.and_then(|w| w.opened.lock().unwrap().take()) {
                Some(tx) => {
                    let _ = tx.send(Ok(o.protocol));
                }
                None => debug!(stream_id = %o.stream_id, "WS_OPENED for unknown stream"),
            }
        }
        ConnectorMsg::WsMessage(m) => {
            let Some(ws) = conn.ws.lock().unwrap().get(&m.stream_id).cloned() else {
                return debug!(stream_id = %m.stream_id, "WS_MESSAGE for unknown stream");
            };
            let frame = match (m.text, m.data) {
                (Some(t), None) => WsFrame::Text(t),
                (None, Some(d)) => WsFrame::Binary(d),
                _ => {
                    warn!(stream_id = %m.stream_id, "WS_MESSAGE needs exactly one of text/data");
                    return close_ws(conn, &m.stream_id, 1002, "malformed WS_MESSAGE");
                }
            };
            let len = ws_len(&frame);
            ponte_core::metrics::bytes_from_device(len);
            if len > limits::MAX_WS_MESSAGE {
                warn!(connector_id = %conn.connector_id, stream_id = %m.stream_id, len, "WebSocket message over the limit; closing stream");
                return close_ws(conn, &m.stream_id, 1009, "message too big");
            }
            // Never wait: the budget bounds what a caller that does not keep up can hold,
            // and the stream over it is closed (the rest of the connection goes on).
            if let Err(over) = ws.budget.charge(len) {
                let (code, reason) = match over {
                    proto::OverBudget::Closed => return,
                    proto::OverBudget::Stream => (1008, "receiver too slow"),
                    proto::OverBudget::Connection => (1013, "connector WebSocket budget used up"),
                };
                warn!(
                    connector_id = %conn.connector_id,
                    stream_id = %m.stream_id,
                    held = ws.budget.held(),
                    connection_held = conn.ws_budget.used(),
                    code,
                    "WebSocket receiver not keeping up; closing stream: {over}"
                );
                return close_ws(conn, &m.stream_id, code, reason);
            }
            // The last slot stays free for the close frame.
            let sent = match ws.tx.capacity() > 1 {
                true => ws.tx.try_send(frame).map_err(|_| ()),
                false => Err(()),
            };
            if sent.is_err() {
                ws.budget.release(len);
                if !ws.tx.is_closed() {
                    warn!(
                        connector_id = %conn.connector_id,
                        stream_id = %m.stream_id,
                        "WebSocket receiver not keeping up ({WS_QUEUE} messages queued); closing stream"
                    );
                }
                close_ws(conn, &m.stream_id, 1008, "receiver too slow");
            }
        }
        ConnectorMsg::WsClose(c) => {
            let Some(ws) = conn.ws.lock().unwrap().remove(&c.stream_id) else {
                return;
            };
            let reason = c
                .reason
                .clone()
                .unwrap_or_else(|| "device closed the WebSocket".into());
            let pending = ws.opened.lock().unwrap().take();
            match pending {
                Some(tx) => {
                    // A refusal says why (`error`), like HTTP_RESPONSE_ERROR: the page
                    // gets 403 for the connector's policy, 504 for a timeout.
                    let err = match c.error.as_deref().and_then(proto::ErrorCode::parse) {
                        Some(code) => RouteError::from_wire(&proto::ResponseError::new(
                            &c.stream_id,
                            code,
                            &reason,
                        )),
                        None => RouteError::ConnectFailed(reason),
                    };
                    let _ = tx.send(Err(err));
                }
                None => {
                    let _ = ws.tx.try_send(WsFrame::Close {
                        code: c.code,
                        reason: c.reason,
                    });
                }
            }
        }
    }
}

fn lookup(conn: &Conn, request_id: &str) -> Option<Slot> {
    let found = conn.streams.lock().unwrap().get(request_id).cloned();
    if found.is_none() {
        // Normal right after a cancel or timeout (frames in flight); otherwise a peer bug.
        debug!(request_id, "frame for unknown or finished stream ignored");
    }
    found
}

/// Hands an event to the stream's consumer.
async fn deliver(conn: &Conn, request_id: &str, stream: &Slot, ev: StreamEvent) {
    if stream.flow {
        // Never wait here. The window bounds the bytes; a device sending many small
        // pieces to a slow reader can still fill the channel's slots, and then the rest
        // spills (merged) into the stream's overflow instead of failing a healthy stream.
        {
            let mut st = stream.state.lock().unwrap();
            let ev = if st.overflow.is_empty() {
                match stream.events.try_send(ev) {
                    Ok(()) => return,
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        drop(st);
                        return conn.cancel_stream(request_id);
                    }
                    Err(mpsc::error::TrySendError::Full(ev)) => ev,
                }
            } else {
                ev
            };
            st.spill(ev);
        }
        // A consumer may be waiting on the now-empty channel; if the channel is full it
        // will reach the overflow on its own.
        let _ = stream.events.try_send(StreamEvent::Wake);
    } else {
        // Legacy peer: no window, so wait for the consumer (TCP backpressure), but not
        // forever: a consumer stuck this long fails only its own stream.
        match tokio::time::timeout(limits::DEFAULT_TIMEOUT, stream.events.send(ev)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => conn.cancel_stream(request_id),
            Err(_) => conn.fail_stream(request_id, RouteError::Timeout),
        }
    }
}

/// A stream ended normally (END or ERROR): forget it without sending a cancel.
fn finish(conn: &Conn, request_id: &str) {
    if let Some(s) = conn.streams.lock().unwrap().remove(request_id) {
        s.upload_credit.notify_waiters();
    }
}

pub(crate) fn close_ws(conn: &Conn, stream_id: &str, code: u16, reason: &str) {
    if let Some(ws) = conn.ws.lock().unwrap().remove(stream_id) {
        if let Some(tx) = ws.opened.lock().unwrap().take() {
            let _ = tx.send(Err(RouteError::Protocol(reason.to_owned())));
        }
        let _ = ws.tx.try_send(WsFrame::Close {
            code: Some(code),
            reason: Some(reason.to_owned()),
        });
        conn.send_detached(&CloudMsg::WsClose(proto::WsClose {
            stream_id: stream_id.to_owned(),
            code: Some(code),
            reason: Some(reason.to_owned()),
            error: None,
        }));
    }
}

fn handle_decode_error(conn: &Conn, err: DecodeError) {
    match (&err, err.request_id(), err.stream_id()) {
        (DecodeError::UnknownType { msg_type }, _, _) => {
            warn!(%msg_type, "unknown message type ignored");
        }
        (_, Some(rid), _) if conn.streams.lock().unwrap().contains_key(rid) => {
            conn.fail_stream(rid, RouteError::Protocol(err.to_string()));
        }
        (_, _, Some(sid)) => {
            warn!(stream_id = sid, %err, "malformed WebSocket frame");
            close_ws(conn, sid, 1002, "malformed frame");
        }
        _ => warn!(%err, "malformed frame dropped"),
    }
}

pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(crate) fn new_stream(
    caps_flow: bool,
    window_budget: Arc<proto::WindowBudget>,
) -> (Slot, mpsc::Receiver<StreamEvent>) {
    let (tx, rx) = mpsc::channel(if caps_flow {
        STREAM_QUEUE
    } else {
        LEGACY_STREAM_QUEUE
    });
    let stream = Arc::new(HttpStream {
        flow: caps_flow,
        state: Mutex::new(StreamState {
            next_index: 0,
            started: false,
            // Always counted, so credit can start if a late HELLO announces `flow`.
            recv: Some(RecvWindow::default()),
            upload: caps_flow.then(SendWindow::default),
            failed: None,
            overflow: Default::default(),
        }),
        upload_credit: Notify::new(),
        window_budget,
    });
    (Slot { stream, events: tx }, rx)
}

/// Bytes a WebSocket frame carries (what its budget is charged).
pub(crate) fn ws_len(frame: &WsFrame) -> usize {
    match frame {
        WsFrame::Text(t) => t.len(),
        WsFrame::Binary(b) => b.len(),
        WsFrame::Close { .. } => 0,
    }
}

pub(crate) fn new_ws(
    conn: &Conn,
) -> (
    Arc<WsState>,
    mpsc::Receiver<WsFrame>,
    oneshot::Receiver<WsOpenResult>,
) {
    let (tx, rx) = mpsc::channel(WS_QUEUE + 1);
    let (otx, orx) = oneshot::channel();
    (
        Arc::new(WsState {
            tx,
            opened: Mutex::new(Some(otx)),
            budget: conn.ws_budget.stream(),
        }),
        rx,
        orx,
    )
}
