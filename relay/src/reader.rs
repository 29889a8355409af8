//! The reader loop of one connector connection (the connection's own task): reads every
//! frame, decodes it, hands it to its HTTP or WebSocket stream, and tells the directory
//! of HELLO and heartbeats.
//!
//! Must never: wait on the writer, or on one slow stream of a `flow` connector (that
//! would stall every other stream on the connection).

use crate::conn::{close_ws, ws_len, Conn, ConnConfig, Peer, Slot, StreamEvent, WS_QUEUE};
use crate::contest::PROBE_TIMEOUT;
use crate::writer::write_loop;
use bytes::Bytes;
use futures_util::StreamExt;
use ponte_core::connector::{ConnectorDirectory, ConnectorEvent};
use ponte_core::router::{RouteError, WsFrame};
use ponte_protocol::connection::{Connection, Event, Lost, Relay, Wire};
use ponte_protocol::{
    self as proto, limits, queue, stream::WsPayload, Blame, CloudMsg, ConnectorMsg, DecodeError,
};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tracing::{debug, info, warn};

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
        cfg.peer_timeout,
        Arc::clone(&conn),
    ));

    // The connection's own rules (handshake, heartbeat, probe): this loop feeds it
    // frames and time and acts on what it says.
    let mut link = Connection::relay(
        Instant::now().into_std(),
        cfg.ping_interval,
        cfg.peer_timeout,
        conn.hello_grace,
    );
    let timer = tokio::time::sleep_until(Instant::from_std(link.poll_timeout()));
    tokio::pin!(timer);
    let grace_deadline = link
        .grace_deadline()
        .expect("a new connection has its grace");
    let grace = tokio::time::sleep_until(Instant::from_std(grace_deadline));
    tokio::pin!(grace);

    loop {
        let read = tokio::select! {
            biased;
            _ = conn.cancel.cancelled() => break,
            // Before the frames: a peer that always has one ready must not starve it.
            _ = &mut timer => {
                link.handle_timeout(Instant::now().into_std());
                timer.as_mut().reset(Instant::from_std(link.poll_timeout()));
                None
            }
            () = conn.probe.notified() => {
                // A backed-up writer means a peer reading slowly, not one gone: no probe
                // then (the heartbeat deadline still applies). One probe at a time.
                if !link.probing() && conn.out.try_send(Message::Ping(Default::default())).is_ok() {
                    link.probe(Instant::now().into_std(), PROBE_TIMEOUT);
                    timer.as_mut().reset(Instant::from_std(link.poll_timeout()));
                }
                None
            }
            frame = stream.next() => {
                let now = Instant::now().into_std();
                match frame {
                    Some(Ok(Message::Text(text))) => link.read(now, Wire::Text(text.as_str())),
                    Some(Ok(Message::Binary(data))) => {
                        // Accepted from any peer: the decoder bounds it like a text frame.
                        conn.binary_received.fetch_add(1, Ordering::Relaxed);
                        link.read(now, Wire::Binary(&data))
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {
                        link.read(now, Wire::Control)
                    }
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
            // After the frames: a HELLO read with the grace's end is not late.
            _ = &mut grace, if link.grace_deadline().is_some() => {
                link.handle_grace(Instant::now().into_std());
                None
            }
        };
        // What the connection settled goes first (the HELLO answer, the peer's dialect),
        // then the frame's message.
        if !act(&conn, &mut link, directory.as_ref()) {
            break;
        }
        match read {
            Some(Ok(msg)) => handle_stream_msg(&conn, directory.as_ref(), msg).await,
            Some(Err(err)) => handle_decode_error(&conn, err),
            None => {}
        }
    }
    conn.cancel.cancel();
    conn.fail_all();
    let _ = writer.await;
}

/// Does what the connection says is due; false when it is lost (and being closed).
fn act(conn: &Conn, link: &mut Connection<Relay>, directory: &dyn ConnectorDirectory) -> bool {
    while let Some(event) = link.poll_event() {
        match event {
            Event::Hello { hello, peer, late } => {
                // The answer (DESIGN: the intersection) goes before the peer is marked,
                // so frames using an extension normally queue behind it; a connector
                // that named `bin` accepts binary frames even before it has read it.
                conn.send_control(&CloudMsg::Hello(proto::Hello {
                    version: env!("CARGO_PKG_VERSION").into(),
                    capabilities: peer.caps.names(),
                    metadata: None,
                }));
                // HELLO wins even after the grace marked the peer legacy: a connector on
                // a slow link still gets the extensions (its in-flight streams keep
                // their mode; credit starts flowing for them as they are read).
                conn.publish_peer(peer);
                if late {
                    info!("late HELLO: upgrading a connector first treated as legacy");
                }
                info!(version = %hello.version, capabilities = ?peer.caps.names(), "connector said HELLO");
                directory.on_event(ConnectorEvent::Hello {
                    connector_id: conn.connector_id.clone(),
                    hello,
                });
            }
            Event::Legacy => {
                conn.publish_peer(Peer::LEGACY);
                debug!("no HELLO: treating connector as protocol v1 base");
            }
            Event::RepeatHello => debug!("a second HELLO on one connection ignored"),
            Event::Ping => conn.ping.notify_one(),
            Event::Lost(Lost::PeerSilent(timeout)) => {
                warn!(
                    timeout_s = timeout.as_secs(),
                    "connector silent; disconnecting"
                );
                ponte_core::metrics::heartbeat_missed();
                conn.close(4002, "heartbeat timeout");
                return false;
            }
            Event::Lost(Lost::ProbeUnanswered) => {
                warn!("no answer to a liveness probe while another connection claimed this identity; closing");
                conn.close(4002, "no answer to a liveness probe");
                return false;
            }
        }
    }
    true
}

/// Every frame but HELLO.
async fn handle_stream_msg(
    conn: &Arc<Conn>,
    directory: &dyn ConnectorDirectory,
    msg: ConnectorMsg,
) {
    match msg {
        // The connection's own ([`Connection::read`]); never passed here.
        ConnectorMsg::Hello(_) => {}
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
            let verdict =
                (stream.state.lock().unwrap().rx).on_start(start.status_code, &start.headers);
            if let Err(v) = verdict {
                return conn.fail_stream(&start.request_id, RouteError::Protocol(v.to_string()));
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
            let verdict = (stream.state.lock().unwrap().rx).on_chunk(chunk.index, chunk.data.len());
            if let Err(v) = verdict {
                return conn.fail_stream(&chunk.request_id, RouteError::Protocol(v.to_string()));
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
            // Bound first: `fail_stream` takes the state's lock again.
            let ended = stream.state.lock().unwrap().rx.on_end();
            if let Err(v) = ended {
                return conn.fail_stream(&end.request_id, RouteError::Protocol(v.to_string()));
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
            let granted = stream.state.lock().unwrap().upload.grant(wu.bytes);
            match granted {
                Err(v) => conn.fail_stream(&wu.request_id, RouteError::Protocol(v.to_string())),
                Ok(()) => stream.upload_credit.notify_waiters(),
            }
        }
        ConnectorMsg::WsOpened(o) => {
            let ws = conn.ws.lock().unwrap().get(&o.stream_id).cloned();
            let Some(ws) = ws else {
                // Its caller left before it opened (and the close sent then crossed this,
                // or was dropped): close the device's side too, or its socket would hold a
                // stream slot on the connector until the device hangs up.
                debug!(stream_id = %o.stream_id, "WS_OPENED for unknown stream; closing it");
                conn.send_control(&CloudMsg::WsClose(proto::WsClose {
                    stream_id: o.stream_id,
                    code: Some(1001),
                    reason: Some("the caller has gone".into()),
                    error: None,
                }));
                return;
            };
            let opened = ws.opened.lock().unwrap().take();
            if let Some(tx) = opened {
                let _ = tx.send(Ok(o.protocol));
            }
        }
        ConnectorMsg::WsMessage(m) => {
            let Some(ws) = conn.ws.lock().unwrap().get(&m.stream_id).cloned() else {
                return debug!(stream_id = %m.stream_id, "WS_MESSAGE for unknown stream");
            };
            let carried =
                m.text.as_ref().map_or(0, String::len) + m.data.as_ref().map_or(0, Bytes::len);
            ponte_core::metrics::bytes_from_device(carried);
            let frame = match proto::stream::ws_payload(m.text, m.data) {
                Ok(WsPayload::Text(t)) => WsFrame::Text(t),
                Ok(WsPayload::Binary(d)) => WsFrame::Binary(d),
                Err(no) => {
                    warn!(connector_id = %conn.connector_id, stream_id = %m.stream_id, code = no.code, "closing a WebSocket: {}", no.reason);
                    return close_ws(conn, &m.stream_id, no.code, no.reason);
                }
            };
            let len = ws_len(&frame);
            // Never wait: the budget bounds what a caller that does not keep up can hold,
            // and the stream over it is closed (the rest of the connection goes on).
            if let Err(over) = ws.budget.charge(len) {
                let Some(no) = over.close() else { return };
                warn!(
                    connector_id = %conn.connector_id,
                    stream_id = %m.stream_id,
                    held = ws.budget.held(),
                    connection_held = conn.ws_budget.used(),
                    code = no.code,
                    "WebSocket receiver not keeping up; closing stream: {over}"
                );
                return close_ws(conn, &m.stream_id, no.code, no.reason);
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

fn handle_decode_error(conn: &Conn, err: DecodeError) {
    match err.blame() {
        Blame::Ignored => warn!(%err, "unknown message type ignored"),
        Blame::Http(rid) if conn.streams.lock().unwrap().contains_key(rid) => {
            conn.fail_stream(rid, RouteError::Protocol(err.to_string()));
        }
        Blame::Ws(sid) => {
            warn!(stream_id = sid, %err, "malformed WebSocket frame");
            close_ws(conn, sid, 1002, "malformed frame");
        }
        Blame::Http(_) | Blame::Dropped => warn!(%err, "malformed frame dropped"),
    }
}
