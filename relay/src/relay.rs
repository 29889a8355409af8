//! The in-process relay: registry of live connections and the [`Router`] implementation.

use crate::auth::TokenVerifier;
use crate::conn::{self, Conn, ConnConfig, StreamEvent};
use crate::contest::{Contest, CONFLICT_SHOWN, FLAP_REPLACEMENTS, MAX_CONTESTS};
use crate::http_body::{encode_inline, plan_body, pump_upload, RelayBody};
use crate::reader;
use crate::ws_channel::RelayWs;
use futures_util::future::BoxFuture;
use ponte_core::connector::{ConnectorClaims, ConnectorDirectory, ConnectorEvent};
use ponte_core::router::*;
use ponte_protocol::{self as proto, limits, Capability, CloudMsg};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use tracing::{info, info_span, warn, Instrument};

/// Relay settings.
#[derive(Clone)]
pub struct RelayConfig {
    pub verifier: TokenVerifier,
    pub directory: Arc<dyn ConnectorDirectory>,
    pub conn: ConnConfig,
    /// WebSocket read buffer per connection. Small: it is paid once per idle connector.
    pub read_buffer: usize,
}

/// Handle to the relay; cheap to clone.
#[derive(Clone)]
pub struct Relay {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: RelayConfig,
    conns: Mutex<HashMap<String, Arc<Conn>>>,
    /// Identities whose connection was replaced recently (see [`FLAP_REPLACEMENTS`]).
    contests: Mutex<HashMap<String, Contest>>,
    next_id: AtomicU64,
    id_prefix: String,
    shutdown: CancellationToken,
    /// The node is stopping ([`Relay::move_connectors`]): new connector connections are
    /// refused, so connectors take another node.
    drain: Arc<conn::Drain>,
}

impl Relay {
    pub fn new(cfg: RelayConfig, shutdown: CancellationToken) -> Self {
        Self {
            inner: Arc::new(Inner {
                cfg,
                conns: Mutex::default(),
                contests: Mutex::default(),
                next_id: AtomicU64::new(1),
                // Ids stay unique across relay restarts, so a late frame from a previous
                // life can never match a new stream.
                id_prefix: format!("{:x}", fastrand::u32(..)),
                shutdown,
                drain: Arc::default(),
            }),
        }
    }

    pub fn config(&self) -> &RelayConfig {
        &self.inner.cfg
    }

    /// Number of connectors with a live connection on this node.
    pub fn online_count(&self) -> usize {
        self.inner.conns.lock().unwrap().len()
    }

    /// HTTP and WebSocket streams open on this node, over every connector.
    pub fn streams_in_flight(&self) -> usize {
        let conns: Vec<_> = self.inner.conns.lock().unwrap().values().cloned().collect();
        conns.iter().map(|c| c.open_streams()).sum()
    }

    /// The node is stopping: from now on new connector connections are refused (503),
    /// and every connector that named `reconnect` is told to connect again elsewhere
    /// within `within` (RECONNECT; each picks a moment at random in it). Their
    /// connections stay open for the requests in flight, which finish on them. A
    /// connector that does not speak `reconnect` reconnects when the node closes it.
    /// Returns how many were told.
    pub fn move_connectors(&self, within: Duration) -> usize {
        // First the flag, then the look at each connection's HELLO: a HELLO read
        // meanwhile is either seen here or sees the flag (the reader tells it then).
        self.inner.drain.start(within);
        let conns: Vec<_> = self.inner.conns.lock().unwrap().values().cloned().collect();
        let told = conns.iter().filter(|c| self.inner.drain.tell(c)).count();
        info!(
            told,
            connectors = conns.len(),
            within_ms = within.as_millis() as u64,
            "draining: connectors asked to move"
        );
        told
    }

    /// Whether the node is stopping ([`Relay::move_connectors`]).
    pub fn is_draining(&self) -> bool {
        self.inner.drain.within().is_some()
    }

    /// Closes the connector's connection (token renewed, unpaired). In-flight requests
    /// fail with `Disconnected`.
    pub fn disconnect(&self, connector_id: &str, reason: &str) -> bool {
        let conn = self.inner.conns.lock().unwrap().get(connector_id).cloned();
        match conn {
            Some(c) => {
                info!(connector_id, reason, "disconnecting connector");
                c.close(4003, reason);
                true
            }
            None => false,
        }
    }

    /// Whether the connector is connected here and announced `token-rotate`.
    pub fn can_rotate(&self, connector_id: &str) -> bool {
        let conn = self.inner.conns.lock().unwrap().get(connector_id).cloned();
        conn.is_some_and(|c| c.has(Capability::TokenRotate))
    }

    /// Sends TOKEN_ROTATE to a connector that announced `token-rotate`.
    pub fn rotate_token(
        &self,
        connector_id: &str,
        token: String,
        expires_at: Option<String>,
    ) -> bool {
        let conn = self.inner.conns.lock().unwrap().get(connector_id).cloned();
        match conn {
            Some(c) if c.has(Capability::TokenRotate) => {
                c.send_control(&CloudMsg::TokenRotate(proto::TokenRotate {
                    token,
                    expires_at,
                }))
            }
            _ => false,
        }
    }

    /// Whether a new connection for `connector_id` may replace the live one. The newest
    /// connection wins (a connector that moved networks must not wait for its old socket
    /// to time out) unless the identity is flapping: then the established connection is
    /// kept, the newcomer is refused (`Err`), and the established one is probed so a
    /// half-open socket cannot lock the real install out for longer than [`crate::contest::PROBE_TIMEOUT`].
    pub fn admit(&self, connector_id: &str) -> Result<(), Conflict> {
        let live = self.inner.conns.lock().unwrap().get(connector_id).cloned();
        let Some(live) = live else { return Ok(()) };
        let now = std::time::Instant::now();
        let mut contests = self.inner.contests.lock().unwrap();
        let Some(contest) = contests.get_mut(connector_id) else {
            return Ok(());
        };
        if !contest.flapping(now) {
            return Ok(());
        }
        contest.refused += 1;
        let wall = std::time::SystemTime::now();
        contest.last_refused = Some((now, wall));
        let conflict = Conflict {
            refused: contest.refused,
            last_refused: wall,
        };
        drop(contests);
        if conflict.refused.is_power_of_two() {
            warn!(
                connector_id,
                refused = conflict.refused,
                "two connectors share one token: the established connection is kept and the \
                 newer one refused (stop the duplicate install, or renew the token)"
            );
        }
        live.probe();
        Err(conflict)
    }

    /// The identity's contest, while it is shown (see [`CONFLICT_SHOWN`]).
    pub fn conflict(&self, connector_id: &str) -> Option<Conflict> {
        let now = std::time::Instant::now();
        let contests = self.inner.contests.lock().unwrap();
        let c = contests.get(connector_id)?;
        let (at, wall) = c.last_refused?;
        (now.duration_since(at) < CONFLICT_SHOWN).then_some(Conflict {
            refused: c.refused,
            last_refused: wall,
        })
    }

    fn note_replaced(&self, connector_id: &str) {
        let now = std::time::Instant::now();
        let mut contests = self.inner.contests.lock().unwrap();
        if contests.len() >= MAX_CONTESTS && !contests.contains_key(connector_id) {
            contests.retain(|_, c| !c.stale(now));
            if contests.len() >= MAX_CONTESTS {
                // Still full of live contests: forget one (it only loses its history).
                if let Some(k) = contests.keys().next().cloned() {
                    contests.remove(&k);
                }
            }
        }
        let c = contests.entry(connector_id.to_owned()).or_default();
        c.replaced.push_back(now);
        while c.replaced.len() > FLAP_REPLACEMENTS {
            c.replaced.pop_front();
        }
    }

    /// Serves an authenticated, upgraded connection until it ends. A previous connection
    /// with the same connector identity is closed: the newest one wins (see [`Self::admit`]
    /// for the exception).
    pub async fn serve_connection<S>(&self, ws: WebSocketStream<S>, claims: ConnectorClaims)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        self.serve_peer(ws, claims, None).await
    }

    /// [`Self::serve_connection`] for a peer that sent `user_agent`: Ponte's connector
    /// always says HELLO first, so it gets the longer grace ([`limits::HELLO_GRACE_PONTE`]);
    /// anything else (the Node connector) is taken for legacy after [`ConnConfig`]'s.
    pub async fn serve_peer<S>(
        &self,
        ws: WebSocketStream<S>,
        claims: ConnectorClaims,
        user_agent: Option<&str>,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let grace = match user_agent {
            Some(ua) if ua.starts_with("ponte-connector/") => {
                limits::HELLO_GRACE_PONTE.max(self.inner.cfg.conn.hello_grace)
            }
            _ => self.inner.cfg.conn.hello_grace,
        };
        let id = claims.sub.clone();
        let span = info_span!("connector", connector_id = %id);
        let (conn, out_rx) = Conn::new(
            id.clone(),
            self.inner.shutdown.child_token(),
            &self.inner.cfg.conn,
            grace,
            Arc::clone(&self.inner.drain),
        );
        let previous = self
            .inner
            .conns
            .lock()
            .unwrap()
            .insert(id.clone(), Arc::clone(&conn));
        if let Some(old) = previous {
            span.in_scope(|| info!("a newer connection replaces the previous one"));
            old.close(4001, "replaced by a newer connection");
            self.note_replaced(&id);
        }
        let directory = Arc::clone(&self.inner.cfg.directory);
        // Renew and unpair change the stored token first, then close what is registered.
        // A handshake between the check before the upgrade and the insert above would
        // miss both; now that this connection is visible to `disconnect`, check again.
        if let Ok(false) = directory.token_is_current(&claims).await {
            span.in_scope(|| warn!("token revoked during the handshake; closing"));
            let mut conns = self.inner.conns.lock().unwrap();
            if conns.get(&id).is_some_and(|c| Arc::ptr_eq(c, &conn)) {
                conns.remove(&id);
            }
            return;
        }
        directory.on_event(ConnectorEvent::Connected { claims });
        span.in_scope(|| info!("connector connected"));
        reader::run(
            Arc::clone(&conn),
            out_rx,
            ws,
            Arc::clone(&directory),
            self.inner.cfg.conn.clone(),
        )
        .instrument(span.clone())
        .await;
        let removed = {
            let mut conns = self.inner.conns.lock().unwrap();
            match conns.get(&id) {
                Some(c) if Arc::ptr_eq(c, &conn) => conns.remove(&id).is_some(),
                _ => false,
            }
        };
        span.in_scope(|| info!(replaced = !removed, "connector disconnected"));
        if removed {
            directory.on_event(ConnectorEvent::Disconnected { connector_id: id });
        }
    }

    fn conn(&self, connector: &str) -> Result<Arc<Conn>, RouteError> {
        self.inner
            .conns
            .lock()
            .unwrap()
            .get(connector)
            .cloned()
            .ok_or(RouteError::Offline)
    }

    fn next_id(&self, kind: char) -> String {
        let n = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        format!("{kind}-{}-{n:x}", self.inner.id_prefix)
    }

    async fn do_send(
        self,
        connector: String,
        req: ProxyRequest,
    ) -> Result<ProxyResponse, RouteError> {
        let conn = self.conn(&connector)?;
        let peer = conn.peer(conn.hello_grace).await;
        if proto::stream::admit(conn.open_streams(), false).is_err() {
            return Err(RouteError::Busy(format!(
                "connector has {} requests in flight",
                limits::MAX_STREAMS_PER_CONNECTOR
            )));
        }
        if proto::stream::check_headers(&req.headers).is_err() {
            return Err(RouteError::BadRequest("request headers too large".into()));
        }
        let request_id = self.next_id('r');
        let timeout = req.timeout.min(limits::MAX_TIMEOUT);
        let mut headers = req.headers;
        let (inline, upload) = plan_body(req.body, peer, &mut headers).await?;
        let (body, body_encoding) = match inline {
            Some(b) => {
                let n = b.len();
                let encoded = encode_inline(b, peer)?;
                ponte_core::metrics::bytes_to_device(n);
                encoded
            }
            None => (None, None),
        };
        let flow = peer.caps.has(Capability::Flow);
        let (entry, rx) = conn::new_stream(flow);
        let stream = Arc::clone(&entry.handle.stream);
        let msg = CloudMsg::HttpRequest(proto::HttpRequest {
            request_id: request_id.clone(),
            tenant_id: req.tenant_id,
            equip_id: req.equip_id,
            target: proto::Target {
                base_url: req.base_url,
                method: req.method,
                path: req.path,
                headers,
                body,
                body_encoding,
                tls_insecure: req.tls_insecure,
            },
            timeout_ms: Some(timeout.as_millis() as u64),
            body_stream: upload.is_some(),
        });
        let opened = conn
            .link
            .lock()
            .unwrap()
            .open_http(request_id.clone(), entry);
        if opened.is_err() {
            // Others opened theirs since the check above.
            return Err(RouteError::Busy(format!(
                "connector has {} requests in flight",
                limits::MAX_STREAMS_PER_CONNECTOR
            )));
        }
        if conn.cancel.is_cancelled() {
            // The connection died between lookup and insert; `fail_all` may already
            // have run, so nobody else would fail this stream.
            conn.link.lock().unwrap().close_http(&request_id);
            return Err(RouteError::Disconnected);
        }
        let mut body = RelayBody {
            conn: Arc::clone(&conn),
            stream: Arc::clone(&stream),
            request_id: request_id.clone(),
            rx,
            idle: req.idle_timeout,
            done: false,
            pump: None,
        };
        let frame = proto::encode(&msg);
        if frame.len() > limits::MAX_FRAME_LEN {
            // JSON escaping can inflate an inline text body up to 6x; a frame over the
            // limit would make the connector drop the whole connection.
            body.done = true;
            return Err(RouteError::BodyTooLarge(limits::MAX_INLINE_BODY));
        }
        let frame = Message::text(frame);
        match tokio::time::timeout(timeout, conn.out.send(frame)).await {
            Err(_) => return Err(RouteError::Timeout), // `body` drops: cancel sent
            Ok(Err(_)) => return Err(RouteError::Disconnected),
            Ok(Ok(())) => {}
        }
        // `timeoutMs` bounds the wait for the response head once the request has been
        // sent: an upload is bounded by its idle timeout (no progress), not its length.
        let uploaded = upload.map(|upload| {
            let (done, uploaded) = oneshot::channel::<()>();
            let pump = pump_upload(
                Arc::clone(&conn),
                Arc::clone(&stream),
                request_id.clone(),
                upload,
                req.idle_timeout,
            );
            body.pump = Some(tokio::spawn(async move {
                pump.await;
                let _ = done.send(());
            }));
            uploaded
        });
        let response_clock = async move {
            if let Some(uploaded) = uploaded {
                let _ = uploaded.await;
            }
            tokio::time::sleep(timeout).await;
        };
        let waited = tokio::select! {
            ev = body.rx.recv() => Ok(ev),
            () = response_clock => Err(RouteError::Timeout), // `body` drops: cancel sent
        };
        match waited {
            Err(e) => Err(e),
            Ok(None) => Err(body.failure()),
            Ok(Some(StreamEvent::Start { status, headers })) => Ok(ProxyResponse {
                status,
                headers,
                body: ResponseBody::new(Box::new(body)),
            }),
            Ok(Some(StreamEvent::Error(e))) => {
                body.done = true;
                Err(e)
            }
            Ok(Some(_)) => Err(RouteError::Protocol(
                "body before HTTP_RESPONSE_START".into(),
            )),
        }
    }

    async fn do_open_ws(self, connector: String, req: WsRequest) -> Result<WsChannel, RouteError> {
        let conn = self.conn(&connector)?;
        let peer = conn.peer(conn.hello_grace).await;
        if !peer.caps.has(Capability::Ws) {
            return Err(RouteError::Connector(
                "connector cannot carry WebSockets".into(),
            ));
        }
        let stream_id = self.next_id('w');
        let (state, rx, opened) = conn::new_ws(&conn);
        let admitted = (conn.link.lock().unwrap()).open_ws(stream_id.clone(), Arc::clone(&state));
        if admitted.is_err() {
            return Err(RouteError::Busy(
                "too many streams on this connector".into(),
            ));
        }
        let mut chan = RelayWs {
            conn: Arc::clone(&conn),
            state,
            stream_id: stream_id.clone(),
            rx,
            held: 0,
            closed: false,
        };
        let msg = CloudMsg::WsOpen(proto::WsOpen {
            stream_id,
            target: proto::WsTarget {
                base_url: req.base_url,
                path: req.path,
                headers: req.headers,
                protocols: req.protocols,
                tls_insecure: req.tls_insecure,
            },
        });
        let res = tokio::time::timeout(req.timeout, async {
            conn.out
                .send(Message::text(proto::encode(&msg)))
                .await
                .map_err(|_| RouteError::Disconnected)?;
            opened.await.unwrap_or(Err(RouteError::Disconnected))
        })
        .await;
        match res {
            Ok(Ok(protocol)) => Ok(WsChannel::new(protocol, Box::new(chan))),
            Ok(Err(e)) => {
                chan.closed = true;
                Err(e)
            }
            Err(_) => Err(RouteError::Timeout),
        }
    }
}

impl Router for Relay {
    fn send(
        &self,
        connector: &str,
        request: ProxyRequest,
    ) -> BoxFuture<'static, Result<ProxyResponse, RouteError>> {
        Box::pin(self.clone().do_send(connector.to_owned(), request))
    }

    fn open_ws(
        &self,
        connector: &str,
        request: WsRequest,
    ) -> BoxFuture<'static, Result<WsChannel, RouteError>> {
        Box::pin(self.clone().do_open_ws(connector.to_owned(), request))
    }

    fn is_online(&self, connector: &str) -> bool {
        self.inner.conns.lock().unwrap().contains_key(connector)
    }

    fn disconnect(&self, connector: &str, reason: &str) -> bool {
        Relay::disconnect(self, connector, reason)
    }

    fn rotate_token(&self, connector: &str, token: String, expires_at: Option<String>) -> bool {
        Relay::rotate_token(self, connector, token, expires_at)
    }

    fn can_rotate(&self, connector: &str) -> bool {
        Relay::can_rotate(self, connector)
    }

    fn conflict(&self, connector: &str) -> Option<Conflict> {
        Relay::conflict(self, connector)
    }
}

impl Relay {
    /// Binary (`bin`) frames carried by the connector's live connection, if it has one.
    pub fn frame_counts(&self, connector_id: &str) -> Option<crate::FrameCounts> {
        let conn = self.inner.conns.lock().unwrap().get(connector_id).cloned();
        conn.map(|c| c.frame_counts())
    }

    /// Bytes by which the response windows of the connector's live connection have grown
    /// beyond their initial size, over all its streams (`RecvWindow::on_consumed_tuned`).
    pub fn window_growth(&self, connector_id: &str) -> Option<u64> {
        let conn = self.inner.conns.lock().unwrap().get(connector_id).cloned();
        conn.map(|c| limits::WINDOW_GROWTH_BUDGET - c.link.lock().unwrap().window_budget().left())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contest::FLAP_WINDOW;
    use std::time::Duration;

    /// Two installs sharing a token: the README's numbers, by value (the behaviour is
    /// `tests/tests/api.rs` `two_connectors_sharing_a_token_settle_on_one_and_status_says_so`).
    #[test]
    fn a_contest_is_decided_by_the_documented_numbers() {
        assert_eq!(
            (FLAP_REPLACEMENTS, FLAP_WINDOW),
            (2, Duration::from_secs(60))
        );
        assert_eq!(crate::contest::PROBE_TIMEOUT, Duration::from_secs(5));
        assert_eq!(CONFLICT_SHOWN, Duration::from_secs(10 * 60));
    }

    /// `ponte_request_duration_seconds` spans 1 ms … 60 s, as the README says.
    #[test]
    fn duration_buckets_span_1_ms_to_60_s() {
        let b = ponte_core::metrics::DURATION_BUCKETS;
        assert_eq!((b[0], b[b.len() - 1]), (0.001, 60.0));
        assert!(b.windows(2).all(|w| w[0] < w[1]), "{b:?}");
    }
}
