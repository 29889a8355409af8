//! The reader's side of a connection: every message from the relay (decoded by the
//! connection, `ponte_protocol::connection`) handed to its stream, or answered, for one
//! this connector cannot take.

use crate::exec::ExecError;
use crate::request::start_request;
use crate::session::{Session, StreamCtl, WsToDevice};
use crate::wsproxy::{close_ws, closed_ws, start_ws};
use ponte_protocol::connection::{AtConnector, AtWs, Blamed};
use ponte_protocol::stream::WsPayload;
use ponte_protocol::{self as proto, CloudMsg, ConnectorMsg, ErrorCode};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tracing::{debug, warn};

/// A frame that did not decode (text or `bin`, accepted whether or not the relay named
/// `bin`): the stream it names, if any, fails.
pub(crate) fn bad_frame(sess: &Arc<Session>, e: proto::DecodeError) {
    warn!(%e, "bad frame from relay");
    let blamed = sess.link.lock().unwrap().blame(&e);
    match blamed {
        Blamed::Http { id, stream, .. } => {
            stream.cancel.cancel();
            sess.error(&id, &ExecError::new(ErrorCode::BadRequest, e.to_string()));
        }
        Blamed::Ws { id, ws } => closed_ws(sess, &id, &ws, 1002, "malformed frame"),
        Blamed::Ignored | Blamed::Dropped => {}
    }
}

/// A frame's message, decoded by the connection ([`proto::connection::Connection::read`]),
/// through the rules of the stream it names ([`crate::session::Link::route`]) to its stream.
pub(crate) fn dispatch(sess: &Arc<Session>, msg: CloudMsg) {
    let routed = sess.link.lock().unwrap().route(msg);
    let Some(routed) = routed else { return };
    match routed {
        AtConnector::Heartbeat(ping) => {
            sess.shared.status.heartbeat();
            if let Some(hb) = ping {
                // A PONG is a courtesy (any frame proves liveness): dropped when the
                // writer is backed up, so a PING flood cannot queue work.
                let pong = Message::text(proto::encode(&ConnectorMsg::Pong(hb)));
                let _ = sess.out.try_send(pong);
            }
        }
        AtConnector::Request(req) => start_request(sess, req),
        AtConnector::Chunk { id, stream, data } => {
            let queued = match stream.upload.lock().unwrap().as_ref() {
                Some(tx) => tx.try_send(data),
                // Not before its END (the table says so): nothing to feed.
                None => Ok(()),
            };
            match queued {
                Err(mpsc::error::TrySendError::Full(_)) => {
                    fail_request(sess, &id, "too many body chunks queued".into());
                }
                // The device's end of the body is gone (it answered early); the
                // request's own task reports that.
                Err(mpsc::error::TrySendError::Closed(_)) | Ok(()) => {}
            }
        }
        // The device sees the end of the body.
        AtConnector::UploadEnd { stream } => drop(stream.upload.lock().unwrap().take()),
        AtConnector::Cancel { id, stream } => {
            debug!(request_id = %id, "cancelled by relay");
            stream.cancel.cancel();
        }
        AtConnector::Credit { stream } => stream.credit.notify_waiters(),
        AtConnector::Broken { id, stream, reason } => failed(sess, &id, &stream, reason),
        AtConnector::WsOpen(o) => start_ws(sess, o),
        AtConnector::Ws(AtWs::Broken {
            id,
            ws,
            refusal: no,
        }) => {
            warn!(stream_id = %id, code = no.code, "closing a WebSocket: {}", no.reason);
            closed_ws(sess, &id, &ws, no.code, no.reason);
        }
        AtConnector::Ws(AtWs::Message { id, ws, payload }) => {
            let msg = match payload {
                WsPayload::Text(t) => Message::text(t),
                WsPayload::Binary(d) => Message::binary(d),
            };
            let len = msg.len();
            // Never wait: the budget bounds what a device that does not read can hold.
            if let Err(over) = ws.budget.charge(len) {
                let Some(no) = over.close() else { return };
                warn!(stream_id = %id, held = ws.budget.held(), connection_held = sess.ws_budget.used(), code = no.code, "device not keeping up; closing its WebSocket: {over}");
                return close_ws(sess, &id, no.code, no.reason);
            }
            // The last slot stays free for the close frame.
            let sent = match ws.tx.capacity() > 1 {
                true => ws.tx.try_send(WsToDevice::Msg(msg)).map_err(|_| ()),
                false => Err(()),
            };
            if sent.is_err() {
                ws.budget.release(len);
                close_ws(sess, &id, 1008, "receiver too slow");
            }
        }
        AtConnector::Ws(AtWs::Closed { ws, close: c }) => {
            let _ = ws.tx.try_send(WsToDevice::Close(c.code, c.reason));
        }
        AtConnector::TokenRotate(t) => {
            // File I/O off the reader task.
            let shared = Arc::clone(&sess.shared);
            tokio::task::spawn_blocking(move || crate::rotate_token(&shared, t.token));
        }
        AtConnector::Reconnect(r) => {
            sess.move_within_ms.store(r.after_ms, Ordering::Relaxed);
            sess.move_asked.notify_one();
        }
        AtConnector::Unknown { .. } | AtConnector::Ws(AtWs::Unknown { .. }) => {}
    }
}

/// Fails one request for a frame that broke its rules: it leaves the table, its device
/// request is cancelled and the relay told why.
fn fail_request(sess: &Session, request_id: &str, reason: String) {
    let removed = sess.link.lock().unwrap().close_http(request_id);
    if let Some(stream) = removed {
        failed(sess, request_id, &stream, reason);
    }
}

/// The same for a request that has left the table.
fn failed(sess: &Session, request_id: &str, stream: &StreamCtl, reason: String) {
    warn!(request_id, %reason, "failing request");
    stream.cancel.cancel();
    sess.error(request_id, &ExecError::new(ErrorCode::BadRequest, reason));
}
