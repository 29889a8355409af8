//! Device WebSockets through the tunnel (`ws` capability): WS_OPEN → connect to the
//! device (policy-checked address, no DNS of its own), then copy messages both ways.

use crate::exec::{ExecError, Executor};
use crate::session::{loggable, Session, WsIn, WsToDevice};
use futures_util::{SinkExt, StreamExt};
use ponte_protocol::stream::Refusal;
use ponte_protocol::{self as proto, limits, ConnectorMsg, ErrorCode};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tracing::{info, info_span, warn, Instrument};

/// Largest device WebSocket message carried: its base64 must fit in one frame.
const MAX_WS_MESSAGE: usize = limits::MAX_WS_MESSAGE;

/// Longest one message may take to be written to the device. A device that stops
/// reading for longer has its WebSocket closed, so what is queued for it is given back.
const DEVICE_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Messages queued per tunnelled WebSocket toward the device. Their bytes are bounded by
/// the stream's share of the connection's [`proto::WsBudget`] (charged until the message
/// is written to the device); this bounds their number. Either one full closes that
/// stream (1008; 1013 when the connection's budget is used up) and the reader goes on:
/// a browser flooding a device that does not read is not buffered. One slot is kept for
/// the close.
const WS_QUEUE: usize = 256;

/// Headers the WebSocket handshake owns; never copied from the caller.
const HANDSHAKE_HEADERS: &[&str] = &[
    "host",
    "connection",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
    "sec-websocket-accept",
    "sec-websocket-protocol",
    "content-length",
    "transfer-encoding",
];

/// Opens the device WebSocket and relays until either side closes. Returns the close
/// code and reason to report when the device side ended it.
pub(crate) async fn proxy(
    sess: &Arc<Session>,
    stream_id: &str,
    target: proto::WsTarget,
    mut from_relay: mpsc::Receiver<WsToDevice>,
    budget: &proto::WsStreamBudget,
) -> Result<(u16, String), ExecError> {
    let exec = &sess.shared.exec;
    let url = Executor::target_url(&target.base_url, &target.path, true)?;
    // Connect to exactly the address the policy approved: no second DNS lookup.
    let addr = exec.check_target(&url).await?;
    let tcp = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::TcpStream::connect(addr),
    )
    .await
    .map_err(|_| {
        ExecError::new(
            ErrorCode::Timeout,
            format!("connecting to {addr} timed out"),
        )
    })?
    .map_err(|e| ExecError::new(ErrorCode::ConnectFailed, format!("{addr}: {e}")))?;
    let _ = tcp.set_nodelay(true);

    let mut req = url
        .as_str()
        .into_client_request()
        .map_err(|e| ExecError::new(ErrorCode::BadRequest, e.to_string()))?;
    for (n, v) in target.headers.iter() {
        if HANDSHAKE_HEADERS.contains(&n.to_ascii_lowercase().as_str()) {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(n.as_bytes()),
            http::HeaderValue::from_str(v),
        ) {
            req.headers_mut().append(n, v);
        }
    }
    if !target.protocols.is_empty() {
        let p = http::HeaderValue::from_str(&target.protocols.join(", "))
            .map_err(|_| ExecError::new(ErrorCode::BadRequest, "invalid subprotocol"))?;
        req.headers_mut().insert("sec-websocket-protocol", p);
    }
    let connector = if url.scheme() == "wss" {
        Some(tokio_tungstenite::Connector::Rustls(
            crate::tls::device_config(target.tls_insecure),
        ))
    } else {
        None
    };
    let cfg = WebSocketConfig::default()
        .max_message_size(Some(MAX_WS_MESSAGE))
        .max_frame_size(Some(MAX_WS_MESSAGE));
    let (device, resp) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::client_async_tls_with_config(req, tcp, Some(cfg), connector),
    )
    .await
    .map_err(|_| ExecError::new(ErrorCode::Timeout, "device WebSocket handshake timed out"))?
    .map_err(|e| {
        ExecError::new(
            ErrorCode::ConnectFailed,
            format!("device WebSocket handshake failed: {e}"),
        )
    })?;
    let protocol = resp
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    sess.send(&ConnectorMsg::WsOpened(proto::WsOpened {
        stream_id: stream_id.to_owned(),
        protocol,
    }))
    .await
    .map_err(|_| ExecError::new(ErrorCode::Cancelled, "relay connection closed"))?;

    let (mut dev_tx, mut dev_rx) = device.split();
    loop {
        tokio::select! {
            m = dev_rx.next() => {
                let msg = match m {
                    Some(Ok(Message::Text(t))) => ConnectorMsg::WsMessage(proto::WsMessage { stream_id: stream_id.to_owned(), text: Some(t.as_str().to_owned()), data: None }),
                    Some(Ok(Message::Binary(b))) => ConnectorMsg::WsMessage(proto::WsMessage { stream_id: stream_id.to_owned(), text: None, data: Some(b) }),
                    Some(Ok(Message::Close(f))) => {
                        return Ok(f.map(|f| (u16::from(f.code), f.reason.as_str().to_owned())).unwrap_or((1005, String::new())));
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(tokio_tungstenite::tungstenite::Error::Capacity(e))) => {
                        let frame = CloseFrame { code: CloseCode::Size, reason: "message too big".into() };
                        let _ = tokio::time::timeout(Duration::from_secs(2), dev_tx.send(Message::Close(Some(frame)))).await;
                        return Ok((1009, format!("device sent a message over the limit: {e}")));
                    }
                    Some(Err(e)) => return Err(ExecError::new(ErrorCode::Internal, format!("device WebSocket error: {e}"))),
                    None => return Ok((1006, "device connection closed".into())),
                };
                // Waiting here is the backpressure: a slow relay link slows reading the device.
                // JSON escaping can inflate text past the frame limit; such a frame would
                // cost the whole relay connection, so only this stream is closed.
                let frame = sess.frame(&msg);
                if frame.len() > limits::MAX_FRAME_LEN {
                    let _ = dev_tx.send(Message::Close(None)).await;
                    return Ok((1009, "message too big for the tunnel".into()));
                }
                sess.send_frame(frame).await.map_err(|_| ExecError::new(ErrorCode::Cancelled, "relay connection closed"))?;
            }
            m = from_relay.recv() => match m {
                Some(WsToDevice::Msg(msg)) => {
                    let len = msg.len();
                    match tokio::time::timeout(DEVICE_WRITE_TIMEOUT, dev_tx.send(msg)).await {
                        Ok(r) => r.map_err(|e| ExecError::new(ErrorCode::Internal, format!("writing to device WebSocket: {e}")))?,
                        Err(_) => {
                            tracing::warn!("device stopped reading its WebSocket; closing it");
                            return Ok((1008, "device stopped reading".into()));
                        }
                    }
                    budget.release(len);
                }
                Some(WsToDevice::Close(code, reason)) => {
                    let frame = CloseFrame { code: CloseCode::from(code.unwrap_or(1000)), reason: reason.unwrap_or_default().into() };
                    let _ = dev_tx.send(Message::Close(Some(frame))).await;
                    return Ok((code.unwrap_or(1000), String::new()));
                }
                None => {
                    let _ = dev_tx.send(Message::Close(None)).await;
                    return Ok((1001, "relay side went away".into()));
                }
            }
        }
    }
}

pub(crate) fn start_ws(sess: &Arc<Session>, o: proto::WsOpen) {
    let sid = o.stream_id.clone();
    // Requests and WebSockets count together, as for a request. Only this reader opens
    // streams, so nothing opens between the check and the insert below.
    let admitted = sess.link.lock().unwrap().admits(&sid, true);
    let refusal = match admitted {
        Err(Refusal::Duplicate) => {
            // The relay has lost track of the one open under this id: both ends drop it.
            warn!(stream_id = %sid, "duplicate WS_OPEN: closing the stream of that id");
            return close_ws(sess, &sid, 1002, "duplicate stream id");
        }
        _ if sess.draining.load(Ordering::SeqCst) => Some((1001, "connector stopping")),
        Err(Refusal::Busy) => Some((1013, "connector busy")),
        Ok(()) => None,
    };
    if let Some((code, reason)) = refusal {
        return sess.send_control(&ConnectorMsg::WsClose(proto::WsClose {
            stream_id: sid,
            code: Some(code),
            reason: Some(reason.into()),
            error: Some(ErrorCode::Busy.as_str().into()),
        }));
    }
    let (tx, rx) = mpsc::channel(WS_QUEUE + 1);
    let ws_in = Arc::new(WsIn {
        tx,
        budget: sess.ws_budget.stream(),
    });
    // Admitted above: cannot be refused.
    let _ = (sess.link.lock().unwrap()).open_ws(sid.clone(), Arc::clone(&ws_in));
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
            let removed = sess.link.lock().unwrap().close_ws(&sid);
            if removed.is_some() {
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

/// Closes one tunnelled WebSocket from the connector's side: its device end, and the
/// relay's with the same code.
pub(crate) fn close_ws(sess: &Session, stream_id: &str, code: u16, reason: &str) {
    let removed = sess.link.lock().unwrap().close_ws(stream_id);
    if let Some(ws) = removed {
        closed_ws(sess, stream_id, &ws, code, reason);
    }
}

/// The same for a WebSocket that has left the table.
pub(crate) fn closed_ws(sess: &Session, stream_id: &str, ws: &WsIn, code: u16, reason: &str) {
    let _ = ws
        .tx
        .try_send(WsToDevice::Close(Some(code), Some(reason.to_owned())));
    sess.send_control(&ConnectorMsg::WsClose(proto::WsClose {
        stream_id: stream_id.to_owned(),
        code: Some(code),
        reason: Some(reason.to_owned()),
        error: None,
    }));
}
