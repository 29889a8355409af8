//! The reader loop of one connector connection (the connection's own task): reads every
//! frame, decodes it, hands it to its HTTP or WebSocket stream, and tells the directory
//! of HELLO and heartbeats.
//!
//! Must never: wait on the writer, or on one slow stream of a `flow` connector (that
//! would stall every other stream on the connection).

use crate::conn::{
    close_ws, closed_ws, ws_len, Conn, ConnConfig, Link, Peer, Slot, StreamEvent, WS_QUEUE,
};
use crate::contest::PROBE_TIMEOUT;
use crate::writer::write_loop;
use futures_util::StreamExt;
use ponte_core::connector::{ConnectorDirectory, ConnectorEvent};
use ponte_core::router::{RouteError, WsFrame};
use ponte_protocol::connection::{AtRelay, AtWs, Blamed, Event, Lost, Wire};
use ponte_protocol::{
    self as proto, limits, queue, stream::WsPayload, CloudMsg, ConnectorMsg, DecodeError,
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

    // The connection's own rules (handshake, heartbeat, probe) and its streams' tables:
    // this loop feeds it frames and time and acts on what it says.
    let (deadline, grace_deadline) = {
        let mut link = conn.link.lock().unwrap();
        link.begin(Instant::now().into_std());
        let grace = link
            .grace_deadline()
            .expect("a new connection has its grace");
        (link.poll_timeout(), grace)
    };
    let timer = tokio::time::sleep_until(Instant::from_std(deadline));
    tokio::pin!(timer);
    let grace = tokio::time::sleep_until(Instant::from_std(grace_deadline));
    tokio::pin!(grace);
    let mut in_grace = true;

    loop {
        let read = tokio::select! {
            biased;
            _ = conn.cancel.cancelled() => break,
            // Before the frames: a peer that always has one ready must not starve it.
            _ = &mut timer => {
                let next = {
                    let mut link = conn.link.lock().unwrap();
                    link.handle_timeout(Instant::now().into_std());
                    link.poll_timeout()
                };
                timer.as_mut().reset(Instant::from_std(next));
                None
            }
            () = conn.probe.notified() => {
                // A backed-up writer means a peer reading slowly, not one gone: no probe
                // then (the heartbeat deadline still applies). One probe at a time.
                let probing = conn.link.lock().unwrap().probing();
                if !probing && conn.out.try_send(Message::Ping(Default::default())).is_ok() {
                    let next = {
                        let mut link = conn.link.lock().unwrap();
                        link.probe(Instant::now().into_std(), PROBE_TIMEOUT);
                        link.poll_timeout()
                    };
                    timer.as_mut().reset(Instant::from_std(next));
                }
                None
            }
            frame = stream.next() => {
                // Decoded outside the lock: a chunk's base64 is the bulk of the work.
                let decoded = match frame {
                    Some(Ok(Message::Text(text))) => Link::decode(Wire::Text(text.as_str())),
                    Some(Ok(Message::Binary(data))) => {
                        // Accepted from any peer: the decoder bounds it like a text frame.
                        conn.binary_received.fetch_add(1, Ordering::Relaxed);
                        Link::decode(Wire::Binary(&data))
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => None,
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
                };
                let now = Instant::now().into_std();
                conn.link.lock().unwrap().on_read(now, decoded)
            }
            _ = &mut grace, if in_grace => {
                let mut link = conn.link.lock().unwrap();
                link.handle_grace(Instant::now().into_std());
                in_grace = link.grace_deadline().is_some();
                None
            }
        };
        // What the connection settled goes first (the HELLO answer, the peer's dialect),
        // then the frame's message.
        if !act(&conn, directory.as_ref()) {
            break;
        }
        if in_grace {
            in_grace = conn.link.lock().unwrap().grace_deadline().is_some();
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
fn act(conn: &Conn, directory: &dyn ConnectorDirectory) -> bool {
    loop {
        // Bound apart from the match: the lock is not held while acting.
        let event = conn.link.lock().unwrap().poll_event();
        let Some(event) = event else { break };
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
                // After the peer is marked (see `Relay::move_connectors`): a connector
                // that arrives while the node drains is moved on at once.
                conn.drain.tell(conn);
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

/// Every frame but HELLO, through the rules of the stream it names
/// ([`Link::route`]).
async fn handle_stream_msg(
    conn: &Arc<Conn>,
    directory: &dyn ConnectorDirectory,
    msg: ConnectorMsg,
) {
    let routed = conn.link.lock().unwrap().route(msg);
    let Some(routed) = routed else { return };
    match routed {
        AtRelay::Heartbeat(ping) => {
            if let Some(hb) = ping {
                // Liveness is any frame, so a PONG is a courtesy: dropped when the writer
                // is backed up. (Queueing it would let a PING flood grow memory.)
                let _ = conn
                    .out
                    .try_send(Message::text(proto::encode(&CloudMsg::Pong(hb))));
            }
            directory.on_event(ConnectorEvent::Heartbeat {
                connector_id: conn.connector_id.clone(),
            });
        }
        AtRelay::Start {
            stream,
            status,
            headers,
        } => {
            // The queue is empty before START: this cannot be full.
            let _ = stream
                .events
                .try_send(StreamEvent::Start { status, headers });
        }
        AtRelay::Data { id, stream, data } => {
            ponte_core::metrics::bytes_from_device(data.len());
            deliver(conn, &id, &stream, StreamEvent::Data(data)).await;
        }
        AtRelay::End { stream, growth } => {
            Conn::hold(&stream, growth);
            stream.upload_credit.notify_waiters();
            // Behind the data still queued; out of the table already.
            deliver(conn, "", &stream, StreamEvent::End).await;
        }
        AtRelay::Error {
            stream,
            error,
            growth,
        } => {
            Conn::hold(&stream, growth);
            let route_err = RouteError::from_wire(&error);
            debug!(request_id = %error.request_id, %route_err, "connector reported error");
            stream.state.lock().unwrap().failed = Some(route_err.clone());
            stream.upload_credit.notify_waiters();
            let _ = stream.events.try_send(StreamEvent::Error(route_err));
        }
        AtRelay::Credit { stream } => stream.upload_credit.notify_waiters(),
        AtRelay::Broken {
            id,
            stream,
            reason,
            growth,
        } => {
            Conn::hold(&stream, growth);
            conn.failed(&id, &stream, RouteError::Protocol(reason));
        }
        AtRelay::WsOpened { ws, protocol } => {
            let opened = ws.opened.lock().unwrap().take();
            if let Some(tx) = opened {
                let _ = tx.send(Ok(protocol));
            }
        }
        AtRelay::WsOrphan { id } => {
            // Its caller left before it opened (and the close sent then crossed this,
            // or was dropped): close the device's side too, or its socket would hold a
            // stream slot on the connector until the device hangs up.
            debug!(stream_id = %id, "WS_OPENED for unknown stream; closing it");
            conn.send_control(&CloudMsg::WsClose(proto::WsClose {
                stream_id: id,
                code: Some(1001),
                reason: Some("the caller has gone".into()),
                error: None,
            }));
        }
        AtRelay::Ws(AtWs::Broken {
            id,
            ws,
            refusal: no,
        }) => {
            warn!(connector_id = %conn.connector_id, stream_id = %id, code = no.code, "closing a WebSocket: {}", no.reason);
            closed_ws(conn, &id, &ws, no.code, no.reason);
        }
        AtRelay::Ws(AtWs::Message { id, ws, payload }) => {
            ponte_core::metrics::bytes_from_device(payload.len());
            let frame = match payload {
                WsPayload::Text(t) => WsFrame::Text(t),
                WsPayload::Binary(d) => WsFrame::Binary(d),
            };
            let len = ws_len(&frame);
            // Never wait: the budget bounds what a caller that does not keep up can hold,
            // and the stream over it is closed (the rest of the connection goes on).
            if let Err(over) = ws.budget.charge(len) {
                let Some(no) = over.close() else { return };
                warn!(
                    connector_id = %conn.connector_id,
                    stream_id = %id,
                    held = ws.budget.held(),
                    connection_held = conn.ws_budget.used(),
                    code = no.code,
                    "WebSocket receiver not keeping up; closing stream: {over}"
                );
                return close_ws(conn, &id, no.code, no.reason);
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
                        stream_id = %id,
                        "WebSocket receiver not keeping up ({WS_QUEUE} messages queued); closing stream"
                    );
                }
                close_ws(conn, &id, 1008, "receiver too slow");
            }
        }
        AtRelay::Ws(AtWs::Closed { ws, close: c }) => {
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
        // Normal right after a cancel or timeout (frames in flight); otherwise a peer bug.
        AtRelay::Unknown { id } | AtRelay::Ws(AtWs::Unknown { id }) => {
            debug!(id, "frame for unknown or finished stream ignored")
        }
    }
}

/// Hands a body's data or end to its consumer. (`request_id` is for a cancel: none is
/// needed once the end is read.)
async fn deliver(conn: &Conn, request_id: &str, stream: &Slot, ev: StreamEvent) {
    if stream.flow {
        // Never wait here. The window bounds the bytes; a device sending many small
        // pieces to a slow reader can still fill the channel's slots, and then the rest
        // spills (merged) into the stream's overflow instead of failing a healthy stream.
        {
            let mut st = stream.state.lock().unwrap();
            let ev = match st.overflow.is_empty() {
                false => ev,
                true => match stream.events.try_send(ev) {
                    Ok(()) => return,
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        drop(st);
                        return conn.cancel_stream(request_id);
                    }
                    Err(mpsc::error::TrySendError::Full(ev)) => ev,
                },
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
            Err(_) => {
                stream.state.lock().unwrap().failed = Some(RouteError::Timeout);
                conn.cancel_stream(request_id);
            }
        }
    }
}

fn handle_decode_error(conn: &Conn, err: DecodeError) {
    let blamed = conn.link.lock().unwrap().blame(&err);
    match blamed {
        Blamed::Ignored => warn!(%err, "unknown message type ignored"),
        Blamed::Http { id, stream, growth } => {
            Conn::hold(&stream, growth);
            conn.failed(&id, &stream, RouteError::Protocol(err.to_string()));
        }
        Blamed::Ws { id, ws } => {
            warn!(stream_id = %id, %err, "malformed WebSocket frame");
            closed_ws(conn, &id, &ws, 1002, "malformed frame");
        }
        Blamed::Dropped => warn!(%err, "malformed frame dropped"),
    }
}
