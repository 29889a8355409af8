//! The reader's side of a connection: every frame from the relay, decoded and handed to
//! its stream (or answered, for one this connector cannot take).

use crate::exec::ExecError;
use crate::request::start_request;
use crate::session::{Session, WsToDevice, BIN_BODIES, BIN_HEADS, BIN_NONE};
use crate::wsproxy::start_ws;
use bytes::Bytes;

use ponte_protocol::{self as proto, limits, CloudMsg, ConnectorMsg, ErrorCode};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tracing::{debug, info, warn};

pub(crate) fn handle(sess: &Arc<Session>, text: &str) {
    match proto::decode_cloud(text) {
        Ok(m) => dispatch(sess, m),
        Err(e) => bad_frame(sess, e),
    }
}

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

/// A `bin` frame (accepted whether or not the relay named `bin`): the same message as
/// its JSON twin, handled by the same code.
pub(crate) fn handle_binary(sess: &Arc<Session>, data: &Bytes) {
    match proto::binary::decode_cloud(data) {
        Ok(m) => dispatch(sess, m),
        Err(e) => bad_frame(sess, e),
    }
}

pub(crate) fn dispatch(sess: &Arc<Session>, msg: CloudMsg) {
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

pub(crate) fn close_ws(sess: &Session, stream_id: &str, code: u16, reason: &str) {
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
