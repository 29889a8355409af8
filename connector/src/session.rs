//! One connection's state, shared by its reader, its writer and its streams' tasks: its
//! [`Connection`] (the wire's rules and the table of open streams, each stream's handle
//! here a [`StreamCtl`] or a [`WsIn`]), the relay's capabilities, the outbound queue.

use crate::exec::ExecError;
use crate::Shared;
use bytes::Bytes;

use ponte_protocol::connection::{Connection, Connector};
use ponte_protocol::stream::Piece;
use ponte_protocol::{self as proto, queue, ConnectorMsg, ErrorCode};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// One request's handle in the connection's table, shared by the reader and the
/// request's task. (Its rules, the upload's [`proto::stream::BodyRx`] and the response's
/// [`proto::stream::BodyTx`], are in the table.)
pub(crate) struct StreamCtl {
    pub(crate) cancel: CancellationToken,
    /// Woken when the relay grants credit for the response.
    pub(crate) credit: Notify,
    /// A streamed upload's chunks toward the device; dropped at HTTP_REQUEST_END, so the
    /// device sees the end of the body.
    pub(crate) upload: Mutex<Option<mpsc::Sender<Bytes>>>,
}

/// This end's [`Connection`], with the connector's handles for its streams.
pub(crate) type Link = Connection<Connector, Arc<StreamCtl>, Arc<WsIn>>;

/// What this connector names in its HELLO: everything it speaks.
pub(crate) const OFFERED: proto::Capabilities = proto::Capabilities::ALL;

pub(crate) struct Session {
    pub(crate) shared: Arc<Shared>,
    pub(crate) out: queue::Sender<Message>,
    /// The wire's rules and the open streams. Locked for a table lookup or a rule's
    /// step, never across an await or another lock. Its budget for grown upload
    /// windows is the relay's for responses: a device that takes an upload fast gets a
    /// window that covers the round trip, and what all uploads hold stays bounded.
    pub(crate) link: Mutex<Link>,
    /// WebSocket bytes queued toward devices, over all streams of this connection.
    pub(crate) ws_budget: Arc<proto::WsBudget>,
    pub(crate) cancel: CancellationToken,
    /// What the relay's answer to HELLO agreed ([`proto::Capabilities::bits`]): one
    /// value, so a frame never sees half of an answer. Until then (and for ever with a
    /// relay that does not answer, like the original Node relay) the base protocol: JSON
    /// frames only, no window. Streams begun after it honour the window (`flow`).
    pub(crate) relay_agreed: AtomicU16,
    /// Stopping (SIGTERM), or moving (RECONNECT): requests in flight finish, new ones
    /// are refused with BUSY.
    pub(crate) draining: AtomicBool,
    /// The relay asked to move (RECONNECT) within this many milliseconds; the session
    /// loop is woken by `move_asked`.
    pub(crate) move_within_ms: AtomicU64,
    pub(crate) move_asked: Notify,
    /// A request's task has ended (its stream is out of the table): a draining session
    /// looks whether it is idle now.
    pub(crate) ended: Arc<Notify>,
}

pub(crate) enum WsToDevice {
    Msg(Message),
    Close(Option<u16>, Option<String>),
}

/// The reader's end of one tunnelled WebSocket toward its device.
pub(crate) struct WsIn {
    pub(crate) tx: mpsc::Sender<WsToDevice>,
    /// Bytes queued and not yet written to the device.
    pub(crate) budget: proto::WsStreamBudget,
}

impl Session {
    /// No request in flight. (Control frames already queued go out before a drained
    /// session's goodbye, which queues after them.)
    pub(crate) fn idle(&self) -> bool {
        self.link.lock().unwrap().http_streams() == 0
    }

    /// Queues a control frame (an error, a refusal, a WebSocket close) without waiting:
    /// past a full count, in a slot kept for control frames ([`queue::Sender::send_control`]).
    /// A relay that floods requests while not reading fills those too, and then the frame
    /// is dropped (its streams end by the relay's own timeouts).
    pub(crate) fn send_control(&self, msg: &ConnectorMsg) {
        let frame = Message::text(proto::encode(msg));
        if let Err(queue::TrySendError::Full(_)) = self.out.send_control(frame) {
            warn!("relay not reading: a control frame dropped");
        }
    }

    pub(crate) async fn send(&self, msg: &ConnectorMsg) -> Result<(), ()> {
        self.send_frame(self.frame(msg)).await
    }

    /// What the relay agreed to ([`Session::relay_agreed`]): nothing until it answered
    /// HELLO.
    pub(crate) fn relay_caps(&self) -> proto::Capabilities {
        proto::Capabilities::from_bits(self.relay_agreed.load(Ordering::Relaxed))
    }

    /// The frame for `msg`: binary where the relay's answer allows it and the message
    /// has a binary form ([`proto::binary::encode_connector_for`]), JSON otherwise.
    pub(crate) fn frame(&self, msg: &ConnectorMsg) -> Message {
        match proto::binary::encode_connector_for(self.relay_caps(), msg) {
            Some(bin) => Message::Binary(bin),
            None => Message::text(proto::encode(msg)),
        }
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

    pub(crate) fn error(&self, request_id: &str, e: &ExecError) {
        self.send_control(&ConnectorMsg::HttpResponseError(proto::ResponseError::new(
            request_id, e.code, &e.message,
        )));
    }
}

pub(crate) fn gone() -> ExecError {
    ExecError::new(ErrorCode::Cancelled, "relay connection closed")
}

/// Waits for send window and takes the next chunk of up to `want` bytes of the response
/// to `request_id`; `None` once the stream has left the table (cancelled). Without a
/// window the relay's TCP backpressure (the writer queue) paces the stream.
///
/// No deadline, on purpose: the window is shut while the response's reader (a browser
/// that paused a video or a download) does not read, for as long as it likes, and holds
/// one window meanwhile. The relay ends the stream (HTTP_CANCEL, or the connection)
/// when its caller goes away.
pub(crate) async fn wait_window(
    sess: &Session,
    request_id: &str,
    ctl: &StreamCtl,
    want: usize,
) -> Option<Piece> {
    loop {
        let notified = ctl.credit.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let taken = (sess.link.lock().unwrap().http(request_id)).map(|s| s.tx.take(want));
        match taken? {
            Some(piece) => return Some(piece),
            None => notified.await,
        }
    }
}

/// One socket write that must finish within `limit` (a relay that stops reading is
/// left, not waited on forever).
pub(crate) async fn timed<F>(limit: Duration, write: F) -> Result<(), String>
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
pub(crate) fn loggable(path: &str) -> &str {
    path.split('?').next().unwrap_or_default()
}

pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}
