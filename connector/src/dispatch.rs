//! The reader's side of a connection: every message from the relay (decoded by the
//! connection, `ponte_protocol::connection`) handed to its stream, or answered, for one
//! this connector cannot take.

use crate::exec::ExecError;
use crate::request::start_request;
use crate::session::{Session, StreamCtl, WsToDevice};
use crate::wsproxy::{close_ws, start_ws};
use ponte_protocol::stream::WsPayload;
use ponte_protocol::{self as proto, CloudMsg, ConnectorMsg, ErrorCode};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tracing::{debug, warn};

/// A frame that did not decode (text or `bin`, accepted whether or not the relay named
/// `bin`): the stream it names, if any, fails.
pub(crate) fn bad_frame(sess: &Arc<Session>, e: proto::DecodeError) {
    warn!(%e, "bad frame from relay");
    match e.blame() {
        proto::Blame::Http(rid) => {
            let ctl = sess.streams.lock().unwrap().remove(rid);
            if let Some(ctl) = ctl {
                ctl.cancel.cancel();
                sess.error(rid, &ExecError::new(ErrorCode::BadRequest, e.to_string()));
            }
        }
        proto::Blame::Ws(sid) => close_ws(sess, sid, 1002, "malformed frame"),
        proto::Blame::Ignored | proto::Blame::Dropped => {}
    }
}

/// A frame's message, decoded by the connection ([`proto::connection::Connection::read`]),
/// handed to its stream.
pub(crate) fn dispatch(sess: &Arc<Session>, msg: CloudMsg) {
    match msg {
        // The connection's own (`Connection::read`); never passed here.
        CloudMsg::Hello(_) => {}
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
                    Some(b) => match b.rx.on_chunk(c.index, c.data.len()) {
                        Err(v) => Err(v.to_string()),
                        Ok(()) => match b.tx.as_ref().map(|tx| tx.try_send(c.data)) {
                            Some(Err(mpsc::error::TrySendError::Full(_))) => {
                                Err("too many body chunks queued".into())
                            }
                            // The device's end of the body is gone (it answered early);
                            // the request's own task reports that.
                            _ => Ok(()),
                        },
                    },
                }
            };
            if let Err(reason) = verdict {
                fail_request(sess, &c.request_id, &ctl, reason);
            }
        }
        CloudMsg::HttpRequestEnd(r) => {
            let ctl = sess.streams.lock().unwrap().get(&r.request_id).cloned();
            let Some(ctl) = ctl else { return };
            // A request sent whole has no body to end: nothing to do.
            let ended = ctl.body.lock().unwrap().as_mut().map(|b| {
                b.tx = None; // the device sees the end of the body
                b.rx.on_end()
            });
            if let Some(Err(v)) = ended {
                fail_request(sess, &r.request_id, &ctl, v.to_string());
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
            // A stream begun before the relay named `flow` ignores it (`BodyTx::grant`).
            if let Some(ctl) = ctl {
                let granted = ctl.body_tx.lock().unwrap().grant(w.bytes);
                match granted {
                    Err(v) => fail_request(sess, &w.request_id, &ctl, v.to_string()),
                    Ok(()) => ctl.credit.notify_waiters(),
                }
            }
        }
        CloudMsg::WsOpen(o) => start_ws(sess, o),
        CloudMsg::WsMessage(m) => {
            let ws = sess.ws.lock().unwrap().get(&m.stream_id).cloned();
            let Some(ws) = ws else { return };
            let msg = match proto::stream::ws_payload(m.text, m.data) {
                Ok(WsPayload::Text(t)) => Message::text(t),
                Ok(WsPayload::Binary(d)) => Message::binary(d),
                Err(no) => {
                    warn!(stream_id = %m.stream_id, code = no.code, "closing a WebSocket: {}", no.reason);
                    return close_ws(sess, &m.stream_id, no.code, no.reason);
                }
            };
            let len = msg.len();
            // Never wait: the budget bounds what a device that does not read can hold.
            if let Err(over) = ws.budget.charge(len) {
                let Some(no) = over.close() else { return };
                warn!(stream_id = %m.stream_id, held = ws.budget.held(), connection_held = sess.ws_budget.used(), code = no.code, "device not keeping up; closing its WebSocket: {over}");
                return close_ws(sess, &m.stream_id, no.code, no.reason);
            }
            // The last slot stays free for the close frame.
            let sent = match ws.tx.capacity() > 1 {
                true => ws.tx.try_send(WsToDevice::Msg(msg)).map_err(|_| ()),
                false => Err(()),
            };
            if sent.is_err() {
                ws.budget.release(len);
                close_ws(sess, &m.stream_id, 1008, "receiver too slow");
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

/// Fails one request for a frame that broke its rules: its device request is cancelled
/// and the relay told why.
fn fail_request(sess: &Session, request_id: &str, ctl: &StreamCtl, reason: String) {
    warn!(request_id, %reason, "failing request");
    sess.streams.lock().unwrap().remove(request_id);
    ctl.cancel.cancel();
    sess.error(request_id, &ExecError::new(ErrorCode::BadRequest, reason));
}
