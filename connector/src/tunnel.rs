//! The connection to the relay: connect with the token, say HELLO, serve requests and
//! device WebSockets, heartbeat, reconnect with jittered exponential backoff.
//!
//! Must never: let one slow device or one slow stream stall the others (each stream
//! waits on its own flow-control window, never on the reader), or buffer more than one
//! window per stream.

use crate::dispatch::{bad_frame, dispatch};
use crate::session::{hostname, timed, unix_ms, Link, Session, OFFERED};
use crate::wsproxy::close_ws;
use crate::Shared;
use futures_util::{SinkExt, StreamExt};
use ponte_protocol::connection::{Connection, Event, Lost, Wire};
use ponte_protocol::{self as proto, limits, queue, ConnectorMsg};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, info_span, warn, Instrument};

/// Frames queued for the writer, and at most [`queue::OUTBOUND_BYTES`] of them. Full:
/// request tasks wait (each is also bounded by its window), the reader never does
/// (control frames go through `send_control`, a PONG is dropped).
const OUTBOUND_QUEUE: usize = 32;

/// RECONNECT's time to connect again is taken within these bounds.
const MIN_MOVE_DELAY: Duration = Duration::from_millis(10);
const MAX_MOVE_DELAY: Duration = Duration::from_secs(60);

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
    // Sessions a relay node asked to move, finishing their requests in flight: waited
    // for before this returns. Each lives at most its shutdown grace (and its goodbye),
    // and one is added per move, at most one per `MIN_MOVE_DELAY`.
    let moving = tokio_util::task::TaskTracker::new();
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
                let (moved, asked) = oneshot::channel();
                let serve = session_moving(Arc::clone(&shared), ws, shutdown.clone(), moved);
                let mut serving = tokio::spawn(serve.instrument(span.clone()));
                let within = tokio::select! {
                    end = &mut serving => {
                        let end = end.unwrap_or_else(|e| format!("session task failed: {e}"));
                        shared.status.set_connected(None);
                        span.in_scope(|| {
                            if shutdown.is_cancelled() {
                                info!(reason = %end, "disconnected from relay")
                            } else {
                                warn!(reason = %end, "disconnected from relay")
                            }
                        });
                        None
                    }
                    Ok(within) = asked => Some(within),
                };
                if let Some(within) = within {
                    // The relay node is stopping: the requests in flight finish on the old
                    // connection, in the background, while this connects again (to the
                    // next URL) at a moment picked at random within what the relay said,
                    // so a node's connectors do not all arrive at the next one at once.
                    shared.status.set_connected(None);
                    let old = span.clone();
                    moving.spawn(async move {
                        let end = serving.await.unwrap_or_else(|e| e.to_string());
                        old.in_scope(
                            || info!(reason = %end, "the previous relay connection has ended"),
                        );
                    });
                    idx += 1;
                    backoff.reset();
                    // Bounded both ways: a relay's mistake (seconds taken for ms, or 0 on
                    // every connection) neither strands the connector nor makes it spin.
                    let within = within.clamp(MIN_MOVE_DELAY, MAX_MOVE_DELAY);
                    let delay = Duration::from_millis(
                        rng.u64(MIN_MOVE_DELAY.as_millis() as u64..=within.as_millis() as u64),
                    );
                    span.in_scope(|| {
                        info!(
                            delay_ms = delay.as_millis() as u64,
                            "relay node stopping: connecting again, to the next relay URL"
                        )
                    });
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    continue;
                }
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
                    ConnectError::Draining => {
                        info!("relay node stopping; trying the next relay URL after a delay")
                    }
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
    // Those still finishing their requests get their grace, as the last session did.
    moving.close();
    moving.wait().await;
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// 409: another connection with this connector's identity is live and kept.
    #[error("conflict: {0}")]
    Conflict(String),
    /// 503 DRAINING: the relay node is stopping; another will take the connector.
    #[error("the relay node is stopping")]
    Draining,
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
        Ok(Err(WsError::Http(resp))) if resp.status() == 503 => {
            let body = resp.body().as_deref().unwrap_or_default();
            match String::from_utf8_lossy(body).contains("DRAINING") {
                true => Err(ConnectError::Draining),
                false => Err(ConnectError::Other(format!(
                    "HTTP error: {}",
                    resp.status()
                ))),
            }
        }
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
    session_moving(shared, ws, shutdown, oneshot::channel().0).await
}

/// [`session`], and when the relay asks to move (RECONNECT), `moved` gets the time
/// within which to connect again, while this session finishes the requests in flight
/// (new ones are refused with BUSY, device WebSockets closed with 1001) within the
/// shutdown grace, and ends.
pub async fn session_moving<S>(
    shared: Arc<Shared>,
    ws: tokio_tungstenite::WebSocketStream<S>,
    shutdown: CancellationToken,
    moved: oneshot::Sender<Duration>,
) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut moved = Some(moved);
    let (mut sink, mut stream) = ws.split();
    let (out, mut out_rx) = queue::channel(OUTBOUND_QUEUE, queue::OUTBOUND_BYTES, Message::len);
    // Not a child of `shutdown`: on shutdown the session drains first (see below), and
    // only then cancels what is left.
    let cancel = CancellationToken::new();
    let sess = Arc::new(Session {
        shared: Arc::clone(&shared),
        out,
        // The connection's own rules (heartbeat, the relay's HELLO answer) and its
        // streams' table: the loop below feeds it frames and time and acts on what it
        // says.
        link: Mutex::new(Connection::connector(
            Instant::now().into_std(),
            shared.timing.ping_interval,
            shared.timing.peer_timeout,
            OFFERED,
        )),
        ws_budget: proto::WsBudget::new(limits::WS_STREAM_BUDGET, limits::WS_CONNECTION_BUDGET),
        cancel: cancel.clone(),
        relay_agreed: AtomicU16::new(proto::Capabilities::NONE.bits()),
        draining: AtomicBool::new(false),
        move_within_ms: AtomicU64::new(0),
        move_asked: Notify::new(),
        ended: Arc::new(Notify::new()),
    });

    let hello = ConnectorMsg::Hello(proto::Hello {
        version: env!("CARGO_PKG_VERSION").into(),
        capabilities: OFFERED.names(),
        metadata: Some(serde_json::json!({
            "os": std::env::consts::OS,
            "arch": std::env::consts::ARCH,
            "hostname": hostname(),
            "name": shared.cfg.name,
        })),
    });
    let _ = sess.send(&hello).await;

    let peer_timeout = shared.timing.peer_timeout;
    let writer_cancel = cancel.clone();
    // The heartbeat's PING, which the loop below says is due: written beside the queue,
    // so a queue kept full by a long upload does not starve it (the relay's "last
    // heartbeat" and a legacy relay's timer see PINGs only).
    let ping = Arc::new(Notify::new());
    let ping_due = Arc::clone(&ping);
    let writer = tokio::spawn(async move {
        // Cancellation wraps the whole loop so a write stuck on a dead peer cannot hang it.
        let pump = async {
            loop {
                let m = tokio::select! {
                    m = out_rx.recv() => m,
                    () = ping_due.notified() => {
                        let ping = ConnectorMsg::Ping(proto::Heartbeat { ts: unix_ms() });
                        timed(peer_timeout, sink.send(Message::text(proto::encode(&ping)))).await?;
                        continue;
                    }
                };
                let Some(m) = m else { return Ok(()) };
                // A close frame (a drained session's last) ends the writer once
                // everything queued before it is written.
                let mut last = m.frame.is_close();
                timed(peer_timeout, sink.feed(m.frame)).await?;
                for _ in 0..32 {
                    if last {
                        break;
                    }
                    match out_rx.try_recv() {
                        Some(m) => {
                            last = m.frame.is_close();
                            timed(peer_timeout, sink.feed(m.frame)).await?
                        }
                        None => break,
                    }
                }
                timed(peer_timeout, sink.flush()).await?;
                if last {
                    return Ok(());
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

    let deadline = sess.link.lock().unwrap().poll_timeout();
    let heartbeat = tokio::time::sleep_until(Instant::from_std(deadline));
    tokio::pin!(heartbeat);
    // Stopping or moving: requests in flight get `shutdown_grace` to finish while new ones are
    // refused (BUSY, nothing done on the device: safe to retry), device WebSockets are
    // closed at once (1001: a page reconnects), and the session ends as soon as no
    // request is left, or at the end of the grace, cutting what is still running.
    let mut draining = false;
    // Why the session ends once drained.
    let mut drained = "shutting down";
    let grace = tokio::time::sleep(Duration::MAX);
    tokio::pin!(grace);
    let reason = 'session: loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break "writer failed".to_owned(),
            _ = shutdown.cancelled(), if !draining => {
                draining = true;
                if drain(&sess, grace.as_mut(), "stopping") {
                    break drained.to_owned();
                }
            }
            () = sess.move_asked.notified(), if !draining => {
                draining = true;
                drained = "moved to another relay node";
                let within = Duration::from_millis(sess.move_within_ms.load(Ordering::Relaxed));
                if let Some(tx) = moved.take() {
                    let _ = tx.send(within);
                }
                if drain(&sess, grace.as_mut(), "the relay node is stopping") {
                    break drained.to_owned();
                }
            }
            _ = sess.ended.notified(), if draining => {
                if sess.idle() {
                    info!("every request in flight finished");
                    break drained.to_owned();
                }
            }
            _ = &mut grace, if draining => {
                let open = sess.link.lock().unwrap().http_streams();
                warn!(requests = open, "drain grace over, cutting the requests still in flight");
                break drained.to_owned();
            }
            // Before the frames: a relay that always has one ready must not starve it.
            _ = &mut heartbeat => {
                let next = {
                    let mut link = sess.link.lock().unwrap();
                    link.handle_timeout(Instant::now().into_std());
                    link.poll_timeout()
                };
                heartbeat.as_mut().reset(Instant::from_std(next));
            }
            frame = stream.next() => {
                // Decoded outside the lock: a chunk's base64 is the bulk of the work.
                let decoded = match frame {
                    Some(Ok(Message::Text(t))) => Link::decode(Wire::Text(t.as_str())),
                    Some(Ok(Message::Binary(b))) => Link::decode(Wire::Binary(&b)),
                    Some(Ok(Message::Close(f))) => break format!("relay closed the connection: {}", f.map(|f| format!("{} {}", f.code, f.reason)).unwrap_or_default()),
                    Some(Ok(_)) => None,
                    Some(Err(e)) => break format!("connection error: {e}"),
                    None => break "connection closed".to_owned(),
                };
                let now = Instant::now().into_std();
                let read = sess.link.lock().unwrap().on_read(now, decoded);
                match read {
                    Some(Ok(msg)) => dispatch(&sess, msg),
                    Some(Err(e)) => bad_frame(&sess, e),
                    None => {}
                }
            }
        }
        loop {
            // Bound apart from the match: the lock is not held while acting.
            let event = sess.link.lock().unwrap().poll_event();
            let Some(event) = event else { break };
            match event {
                Event::Hello { peer, .. } => {
                    info!(capabilities = ?peer.caps.names(), "relay answered HELLO");
                    // A later answer replaces it (our relay answers once); frames already
                    // queued keep the encoding they were made with, and both ends read both.
                    sess.relay_agreed.store(peer.caps.bits(), Ordering::Relaxed);
                }
                Event::Ping => ping.notify_one(),
                Event::Lost(Lost::PeerSilent(t)) => {
                    break 'session format!("relay silent for {}s", t.as_secs())
                }
                Event::Lost(Lost::ProbeUnanswered) => {
                    break 'session "relay did not answer a probe".to_owned()
                }
                // The relay's: a connector waits for no HELLO and is answered once.
                Event::Legacy | Event::RepeatHello => {}
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
        if writer_done {
            // Until the relay has read the goodbye and closed, what it still sends
            // (credit, a PING) is read and dropped: a socket closed with data unread is
            // reset, and a reset makes the relay's end discard what it has not read yet,
            // such as the end of the last answers. Bounded, like the rest of the goodbye.
            let linger = async {
                while let Some(Ok(m)) = stream.next().await {
                    if m.is_close() {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(2), linger).await;
        }
    }
    cancel.cancel();
    let (requests, sockets) = sess.link.lock().unwrap().close_all();
    for s in requests {
        s.cancel.cancel();
    }
    // Their channels close: each device WebSocket's task closes its device end.
    drop(sockets);
    if !writer_done {
        let _ = writer.await;
    }
    reason
}

/// A session begins to drain (`why`: stopping, or the relay node is): device WebSockets
/// are closed at once (1001: a page reconnects), requests in flight get the shutdown
/// grace (`grace` is armed), new ones are refused with BUSY. True when nothing is in
/// flight: the session may end now.
fn drain(sess: &Session, grace: std::pin::Pin<&mut tokio::time::Sleep>, why: &str) -> bool {
    sess.draining.store(true, Ordering::SeqCst);
    let sockets = sess.link.lock().unwrap().ws_ids();
    for sid in sockets {
        close_ws(sess, &sid, 1001, "connector stopping");
    }
    if sess.idle() {
        return true;
    }
    let open = sess.link.lock().unwrap().http_streams();
    let limit = sess.shared.cfg.shutdown_grace;
    info!(
        requests = open,
        grace_ms = limit.as_millis() as u64,
        "{why}: finishing the requests in flight, refusing new ones"
    );
    grace.reset(Instant::now() + limit);
    false
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
