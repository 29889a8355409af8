//! One connector connection as the relay holds it: its [`Connection`] (the wire's rules
//! and the table of open streams, each stream's handle here a [`Slot`] or a [`WsState`]:
//! the channel toward its caller), shared by its reader loop (`reader.rs`), its writer
//! task (`writer.rs`, joined by a bounded queue) and the streams' callers.
//!
//! Must never: block the reader on one slow stream of a `flow` connector (that would
//! stall every other stream on the connection), or hold more than one window of body
//! data per stream.

use bytes::Bytes;
use ponte_core::router::{RouteError, WsFrame};
use ponte_protocol::connection::{Connection, HttpStream as Entry, Relay};
use ponte_protocol::stream::{BodyRx, BodyTx};
use ponte_protocol::{
    self as proto, limits,
    queue::{self, TrySendError},
    Capability, CloudMsg,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// Frames queued for the writer, and at most [`queue::OUTBOUND_BYTES`] of them. When
/// full, senders wait: request senders and upload pumps slow down instead of buffering;
/// the reader never waits on it (it uses `try_send`, or `send_control` for the few
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
pub(crate) const WS_QUEUE: usize = 256;

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

/// An open HTTP stream's handle in the connection's table. The event sender lives only
/// there (and in the reader while it hands an event on): removing the entry closes the
/// consumer's channel, which is how a failed or disconnected stream wakes its consumer.
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
}

/// What the stream's caller finds besides its channel. (Its rules, the response's
/// [`proto::stream::BodyRx`] and the upload's [`proto::stream::BodyTx`], are in the
/// connection's table.)
pub(crate) struct StreamState {
    /// Why the stream failed, for the consumer that finds its channel closed.
    pub failed: Option<RouteError>,
    /// What the window grew by, once the stream has left the table at its end: given
    /// back to the connection's budget when the caller's end is dropped too.
    pub growth: Option<proto::Growth>,
    /// Events that did not fit the channel (`flow` streams only), newer than anything
    /// in it. Bounded: data bytes by the window, entries by merging small chunks.
    pub overflow: std::collections::VecDeque<StreamEvent>,
}

impl StreamState {
    pub(crate) fn spill(&mut self, ev: StreamEvent) {
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

pub(crate) use ponte_protocol::Peer;

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
    pub(crate) binary_received: AtomicU64,
    binary_sent: AtomicU64,
    /// The reader's heartbeat says a PING is due; the writer sends it beside the queue.
    pub(crate) ping: tokio::sync::Notify,
    /// The wire's rules and the open streams. Locked for a table lookup or a rule's
    /// step, never across an await or another lock.
    pub(crate) link: Mutex<Link>,
    /// WebSocket bytes queued toward callers, over all of this connection's streams.
    pub ws_budget: Arc<proto::WsBudget>,
    pub cancel: CancellationToken,
    pub(crate) close: Mutex<Option<CloseFrame>>,
    /// Another connection claimed this identity: the reader probes this one
    /// ([`ponte_protocol::connection::Connection::probe`]).
    pub(crate) probe: Notify,
    /// How long requests wait for HELLO on this connection (see [`limits::HELLO_GRACE`]).
    pub hello_grace: Duration,
    /// The node's drain, for a HELLO read after it began.
    pub(crate) drain: Arc<Drain>,
}

/// Whether the node is draining, and the time its connectors get to move (RECONNECT):
/// shared by the relay and every connection, so a connector whose HELLO is read after
/// the drain began is told as well.
#[derive(Debug, Default)]
pub(crate) struct Drain {
    /// 0: not draining; else the time to move in milliseconds, plus one.
    within_ms: AtomicU64,
}

impl Drain {
    pub(crate) fn start(&self, within: Duration) {
        let ms = u64::try_from(within.as_millis()).unwrap_or(u64::MAX);
        self.within_ms.store(ms.saturating_add(1), Ordering::SeqCst);
    }

    /// The time to move, once the node is draining.
    pub(crate) fn within(&self) -> Option<Duration> {
        match self.within_ms.load(Ordering::SeqCst) {
            0 => None,
            n => Some(Duration::from_millis(n - 1)),
        }
    }

    /// RECONNECT for a connector that speaks it, while draining.
    pub(crate) fn tell(&self, conn: &Conn) -> bool {
        match self.within() {
            Some(within) if conn.has(Capability::Reconnect) => {
                conn.send_control(&CloudMsg::Reconnect(proto::Reconnect {
                    after_ms: within.as_millis() as u64,
                }))
            }
            _ => false,
        }
    }
}

/// This end's [`Connection`], with the relay's handles for its streams.
pub(crate) type Link = Connection<Relay, Slot, Arc<WsState>>;

impl Conn {
    pub fn new(
        connector_id: String,
        cancel: CancellationToken,
        cfg: &ConnConfig,
        hello_grace: Duration,
        drain: Arc<Drain>,
    ) -> (Arc<Self>, queue::Receiver<Message>) {
        let link = Connection::relay(
            std::time::Instant::now(),
            cfg.ping_interval,
            cfg.peer_timeout,
            hello_grace,
        );
        let (out, rx) = queue::channel(OUTBOUND_QUEUE, queue::OUTBOUND_BYTES, Message::len);
        let conn = Arc::new(Self {
            connector_id,
            out,
            peer: watch::channel(None).0,
            binary_received: AtomicU64::new(0),
            binary_sent: AtomicU64::new(0),
            ping: tokio::sync::Notify::new(),
            link: Mutex::new(link),
            ws_budget: proto::WsBudget::new(limits::WS_STREAM_BUDGET, limits::WS_CONNECTION_BUDGET),
            cancel,
            close: Mutex::new(None),
            probe: Notify::new(),
            hello_grace,
            drain,
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

    /// What the reader's handshake settled ([`ponte_protocol::Handshake`]): requests
    /// waiting in [`Conn::peer`] go on.
    pub(crate) fn publish_peer(&self, peer: Peer) {
        self.peer.send_replace(Some(peer));
    }

    pub fn has(&self, cap: Capability) -> bool {
        self.caps().has(cap)
    }

    /// What HELLO agreed; nothing until then, or for a legacy connector.
    fn caps(&self) -> proto::Capabilities {
        self.peer
            .borrow()
            .map_or(proto::Capabilities::NONE, |p| p.caps)
    }

    /// The frame for `msg`: binary where the connector's HELLO allows it and the message
    /// has a binary form ([`proto::binary::encode_cloud_for`]), JSON otherwise.
    pub fn frame(&self, msg: &CloudMsg) -> Message {
        match proto::binary::encode_cloud_for(self.caps(), msg) {
            Some(bin) => {
                self.binary_sent.fetch_add(1, Ordering::Relaxed);
                Message::Binary(bin)
            }
            None => Message::text(proto::encode(msg)),
        }
    }

    pub fn frame_counts(&self) -> FrameCounts {
        FrameCounts {
            binary_received: self.binary_received.load(Ordering::Relaxed),
            binary_sent: self.binary_sent.load(Ordering::Relaxed),
        }
    }

    pub fn open_streams(&self) -> usize {
        self.link.lock().unwrap().open_streams()
    }

    /// Asks the reader to probe the connection: a WebSocket ping (every peer answers it,
    /// the Node connector included), and the connection is closed (4002) if no frame at
    /// all arrives within [`crate::contest::PROBE_TIMEOUT`]. Skipped while the outbound
    /// queue is full (a peer reading slowly is not gone): then the write deadline, or
    /// the next newcomer's probe, settles it.
    pub fn probe(&self) {
        self.probe.notify_one();
    }

    /// Closes the connection with a WebSocket close code and reason.
    pub fn close(&self, code: u16, reason: &str) {
        *self.close.lock().unwrap() = Some(CloseFrame {
            code: CloseCode::from(code),
            reason: reason.to_owned().into(),
        });
        self.cancel.cancel();
    }

    /// Queues a control frame (HTTP_CANCEL, WS_CLOSE, the HELLO answer, TOKEN_ROTATE)
    /// without waiting. Used from `Drop` and from the reader, which must never wait on
    /// the writer. Past a full count it takes a slot kept for control frames
    /// ([`queue::Sender::send_control`]); when those are full as well the connector has
    /// stopped reading, and the frame is dropped (the streams it was about end by their
    /// own timeouts, or with the connection: the write deadline cuts a connector that
    /// does not read). False when the frame was dropped.
    pub fn send_control(&self, msg: &CloudMsg) -> bool {
        match self.out.send_control(Message::text(proto::encode(msg))) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                warn!("connector not reading: a control frame dropped");
                false
            }
            Err(TrySendError::Closed) => false,
        }
    }

    /// Forgets a stream; if it was still open, tells the connector to stop it.
    pub fn cancel_stream(&self, request_id: &str) {
        let removed = self.link.lock().unwrap().close_http(request_id);
        if let Some(stream) = removed {
            self.stopped(request_id, &stream);
        }
    }

    /// A stream that has left the table before its end: its upload stops, and the
    /// connector is told to stop it.
    pub(crate) fn stopped(&self, request_id: &str, stream: &Slot) {
        stream.upload_credit.notify_waiters();
        if self.has(Capability::Cancel) {
            self.send_control(&CloudMsg::HttpCancel(proto::StreamRef {
                request_id: request_id.to_owned(),
            }));
        }
    }

    /// A stream that has left the table with data its caller may still read: its
    /// window's growth counts until the caller has gone.
    pub(crate) fn hold(stream: &Slot, growth: proto::Growth) {
        stream.state.lock().unwrap().growth = Some(growth);
    }

    /// A stream that has left the table failed, leaving the connection and other
    /// streams alone: its caller learns why, the connector is told to stop it.
    pub(crate) fn failed(&self, request_id: &str, stream: &Slot, err: RouteError) {
        warn!(request_id, %err, "failing stream");
        stream.state.lock().unwrap().failed = Some(err);
        self.stopped(request_id, stream);
    }

    pub(crate) fn fail_all(&self) {
        let (http, ws) = self.link.lock().unwrap().close_all();
        for s in http {
            s.state
                .lock()
                .unwrap()
                .failed
                .get_or_insert(RouteError::Disconnected);
            s.upload_credit.notify_waiters();
        }
        for w in ws {
            if let Some(tx) = w.opened.lock().unwrap().take() {
                let _ = tx.send(Err(RouteError::Disconnected));
            }
        }
    }
}

/// Closes one WebSocket from the relay's side: toward its caller and the connector.
pub(crate) fn close_ws(conn: &Conn, stream_id: &str, code: u16, reason: &str) {
    let removed = conn.link.lock().unwrap().close_ws(stream_id);
    if let Some(ws) = removed {
        closed_ws(conn, stream_id, &ws, code, reason);
    }
}

/// The same for a WebSocket that has left the table.
pub(crate) fn closed_ws(conn: &Conn, stream_id: &str, ws: &WsState, code: u16, reason: &str) {
    if let Some(tx) = ws.opened.lock().unwrap().take() {
        let _ = tx.send(Err(RouteError::Protocol(reason.to_owned())));
    }
    let _ = ws.tx.try_send(WsFrame::Close {
        code: Some(code),
        reason: Some(reason.to_owned()),
    });
    conn.send_control(&CloudMsg::WsClose(proto::WsClose {
        stream_id: stream_id.to_owned(),
        code: Some(code),
        reason: Some(reason.to_owned()),
        error: None,
    }));
}

/// A new HTTP stream: its entry for the connection's table, and its caller's channel.
pub(crate) fn new_stream(flow: bool) -> (Entry<Slot>, mpsc::Receiver<StreamEvent>) {
    let (tx, rx) = mpsc::channel(if flow {
        STREAM_QUEUE
    } else {
        LEGACY_STREAM_QUEUE
    });
    let stream = Arc::new(HttpStream {
        flow,
        state: Mutex::new(StreamState {
            failed: None,
            growth: None,
            overflow: Default::default(),
        }),
        upload_credit: Notify::new(),
    });
    let slot = Slot { stream, events: tx };
    let entry = Entry::new(Some(BodyRx::response(flow)), BodyTx::new(flow), slot);
    (entry, rx)
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
