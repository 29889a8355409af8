//! The in-process relay: registry of live connections and the [`Router`] implementation.

use crate::auth::TokenVerifier;
use crate::conn::{self, Conn, ConnConfig, HttpStream, Peer, StreamEvent};
use base64::Engine as _;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use ponte_core::connector::{ConnectorClaims, ConnectorDirectory, ConnectorEvent};
use ponte_core::router::*;
use ponte_protocol::{self as proto, limits, BodyEncoding, Capability, CloudMsg};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use tracing::{info, info_span, warn, Instrument};

/// Bodies up to this size travel inline in HTTP_REQUEST even to `req-stream` connectors:
/// one frame instead of three.
const INLINE_THRESHOLD: usize = 64 * 1024;

/// Two installs sharing one token replace each other on every reconnect and neither
/// serves. A connector identity replaced this many times within [`FLAP_WINDOW`] is
/// contested: the established connection is kept and newcomers are refused.
const FLAP_REPLACEMENTS: usize = 2;
const FLAP_WINDOW: Duration = Duration::from_secs(60);

/// A contest stays visible in status this long after its last refusal.
const CONFLICT_SHOWN: Duration = Duration::from_secs(600);

/// A refused newcomer may be the live install and the established socket half-open: the
/// established one is probed and closed if it shows no sign of life within this.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Contest records kept at most (one per connector identity replaced recently; every
/// entry needs a valid token). Past it, stale entries are pruned, then the oldest.
const MAX_CONTESTS: usize = 4096;

#[derive(Default)]
struct Contest {
    /// When the identity's live connection was last replaced (newest last, at most
    /// [`FLAP_REPLACEMENTS`] kept).
    replaced: std::collections::VecDeque<std::time::Instant>,
    refused: u64,
    last_refused: Option<(std::time::Instant, std::time::SystemTime)>,
}

impl Contest {
    fn flapping(&self, now: std::time::Instant) -> bool {
        let recent = self
            .replaced
            .iter()
            .filter(|t| now.duration_since(**t) < FLAP_WINDOW)
            .count();
        let refusing = self
            .last_refused
            .is_some_and(|(t, _)| now.duration_since(t) < FLAP_WINDOW);
        recent >= FLAP_REPLACEMENTS || refusing
    }

    fn stale(&self, now: std::time::Instant) -> bool {
        let last = self.replaced.back().copied().into_iter();
        let last = last.chain(self.last_refused.map(|(t, _)| t)).max();
        last.is_none_or(|t| now.duration_since(t) >= CONFLICT_SHOWN)
    }
}

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
                c.send_detached(&CloudMsg::TokenRotate(proto::TokenRotate {
                    token,
                    expires_at,
                }));
                true
            }
            _ => false,
        }
    }

    /// Whether a new connection for `connector_id` may replace the live one. The newest
    /// connection wins (a connector that moved networks must not wait for its old socket
    /// to time out) unless the identity is flapping: then the established connection is
    /// kept, the newcomer is refused (`Err`), and the established one is probed so a
    /// half-open socket cannot lock the real install out for longer than [`PROBE_TIMEOUT`].
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
        live.probe(PROBE_TIMEOUT);
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
        let (conn, out_rx) = Conn::new(id.clone(), self.inner.shutdown.child_token(), grace);
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
        conn::run(
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
        if conn.open_streams() >= limits::MAX_STREAMS_PER_CONNECTOR {
            return Err(RouteError::Busy(format!(
                "connector has {} requests in flight",
                limits::MAX_STREAMS_PER_CONNECTOR
            )));
        }
        if req.headers.byte_len() > limits::MAX_HEADER_BYTES {
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
        let (slot, rx) = conn::new_stream(flow, Arc::clone(&conn.window_budget));
        let stream = Arc::clone(&slot.stream);
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
        conn.streams
            .lock()
            .unwrap()
            .insert(request_id.clone(), slot);
        if conn.cancel.is_cancelled() {
            // The connection died between lookup and insert; `fail_all` may already
            // have run, so nobody else would fail this stream.
            conn.streams.lock().unwrap().remove(&request_id);
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
                flow,
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
        if conn.open_streams() >= limits::MAX_STREAMS_PER_CONNECTOR {
            return Err(RouteError::Busy(
                "too many streams on this connector".into(),
            ));
        }
        let stream_id = self.next_id('w');
        let (state, rx, opened) = conn::new_ws(&conn);
        conn.ws
            .lock()
            .unwrap()
            .insert(stream_id.clone(), Arc::clone(&state));
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

type Upload = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// Decides how the body travels: inline in HTTP_REQUEST, or streamed (`req-stream`).
async fn plan_body(
    body: RequestBody,
    peer: Peer,
    headers: &mut proto::Headers,
) -> Result<(Option<Bytes>, Option<Upload>), RouteError> {
    let streams = peer.caps.has(Capability::ReqStream);
    match body {
        RequestBody::Empty => Ok((None, None)),
        RequestBody::Full(b)
            if b.len() <= INLINE_THRESHOLD || (!streams && b.len() <= limits::MAX_INLINE_BODY) =>
        {
            Ok((Some(b), None))
        }
        RequestBody::Full(b) if streams => {
            headers.insert("content-length", b.len().to_string());
            Ok((
                None,
                Some(futures_util::stream::once(async move { Ok(b) }).boxed()),
            ))
        }
        RequestBody::Full(_) => Err(RouteError::BodyTooLarge(limits::MAX_INLINE_BODY)),
        RequestBody::Stream { length, stream } if streams => {
            headers.remove("transfer-encoding");
            match length {
                Some(n) => headers.insert("content-length", n.to_string()),
                None => headers.remove("content-length"),
            }
            Ok((None, Some(stream)))
        }
        RequestBody::Stream { mut stream, .. } => {
            // Legacy connector: the body must fit in one frame.
            let mut buf = Vec::new();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| RouteError::BodyRead(e.to_string()))?;
                if buf.len() + chunk.len() > limits::MAX_INLINE_BODY {
                    return Err(RouteError::BodyTooLarge(limits::MAX_INLINE_BODY));
                }
                buf.extend_from_slice(&chunk);
            }
            Ok((Some(buf.into()), None))
        }
    }
}

fn encode_inline(
    b: Bytes,
    peer: Peer,
) -> Result<(Option<String>, Option<BodyEncoding>), RouteError> {
    match String::from_utf8(b.to_vec()) {
        Ok(s) => Ok((Some(s), None)),
        Err(_) if peer.hello => Ok((
            Some(base64::engine::general_purpose::STANDARD.encode(&b)),
            Some(BodyEncoding::Base64),
        )),
        Err(_) => Err(RouteError::BinaryUnsupported),
    }
}

/// Sends a streamed request body as HTTP_REQUEST_CHUNK frames within the connector's
/// window, then HTTP_REQUEST_END. Holds at most one piece of the body at a time.
/// Sends an upload to the connector as its window allows. Fails the stream (and so
/// cancels it on the connector, which aborts the device connection: a cut upload never
/// reaches the device as a complete body) when the caller's body fails or sends
/// nothing for `idle`, or when the connector grants no window for `idle`.
async fn pump_upload(
    conn: Arc<Conn>,
    stream: Arc<HttpStream>,
    request_id: String,
    mut body: Upload,
    flow: bool,
    idle: Duration,
) {
    let fail = |err: RouteError| {
        stream.state.lock().unwrap().failed = Some(err);
        conn.cancel_stream(&request_id);
    };
    let mut index = 0u64;
    loop {
        let item = match tokio::time::timeout(idle, body.next()).await {
            Ok(Some(item)) => item,
            Ok(None) => break,
            Err(_) => {
                return fail(RouteError::BodyRead(format!(
                    "the upload sent nothing for {} s",
                    idle.as_secs()
                )))
            }
        };
        let mut bytes = match item {
            Ok(b) => b,
            Err(e) => return fail(RouteError::BodyRead(e.to_string())),
        };
        while !bytes.is_empty() {
            let mut n = bytes.len().min(limits::MAX_CHUNK_LEN);
            if flow {
                loop {
                    let notified = stream.upload_credit.notified();
                    tokio::pin!(notified);
                    notified.as_mut().enable();
                    {
                        let mut st = stream.state.lock().unwrap();
                        if st.failed.is_some() || conn.cancel.is_cancelled() {
                            return;
                        }
                        let w = st
                            .upload
                            .as_mut()
                            .expect("flow stream has an upload window");
                        if w.available() > 0 {
                            n = n.min(w.available() as usize);
                            w.consume(n);
                            break;
                        }
                    }
                    if !conn.streams.lock().unwrap().contains_key(&request_id) {
                        return;
                    }
                    if tokio::time::timeout(idle, notified).await.is_err() {
                        // The device stopped reading the upload.
                        return fail(RouteError::Timeout);
                    }
                }
            }
            let piece = bytes.split_to(n);
            ponte_core::metrics::bytes_to_device(piece.len());
            let msg = CloudMsg::HttpRequestChunk(proto::Chunk {
                request_id: request_id.clone(),
                data: piece,
                index,
            });
            index += 1;
            if conn.out.send(conn.frame(&msg)).await.is_err() {
                return;
            }
        }
    }
    let end = CloudMsg::HttpRequestEnd(proto::StreamRef { request_id });
    let _ = conn.out.send(Message::text(proto::encode(&end))).await;
}

/// Consumer end of an HTTP stream.
struct RelayBody {
    conn: Arc<Conn>,
    stream: Arc<HttpStream>,
    request_id: String,
    rx: mpsc::Receiver<StreamEvent>,
    idle: Duration,
    done: bool,
    pump: Option<JoinHandle<()>>,
}

impl RelayBody {
    fn failure(&mut self) -> RouteError {
        self.done = true;
        self.stream
            .state
            .lock()
            .unwrap()
            .failed
            .clone()
            .unwrap_or(RouteError::Disconnected)
    }

    async fn next(&mut self) -> Option<Result<Bytes, RouteError>> {
        if self.done {
            return None;
        }
        let ev = loop {
            // The channel holds older events than the overflow: drain it first.
            let ev = match self.rx.try_recv() {
                Ok(ev) => Some(ev),
                Err(_) => self.stream.state.lock().unwrap().overflow.pop_front(),
            };
            let ev = match ev {
                Some(ev) => ev,
                None => match tokio::time::timeout(self.idle, self.rx.recv()).await {
                    Err(_) => {
                        self.done = true;
                        self.conn.cancel_stream(&self.request_id);
                        return Some(Err(RouteError::Timeout));
                    }
                    Ok(Some(ev)) => ev,
                    // Closed: whatever was spilled before the end still comes first.
                    Ok(None) => {
                        let spilled = self.stream.state.lock().unwrap().overflow.pop_front();
                        match spilled {
                            Some(ev) => ev,
                            None => return Some(Err(self.failure())),
                        }
                    }
                },
            };
            if !matches!(ev, StreamEvent::Wake) {
                break ev;
            }
        };
        match ev {
            StreamEvent::Data(b) => {
                // Checked live: a connector whose HELLO came late gets credit too.
                if self.conn.has(Capability::Flow) {
                    let credit = self
                        .stream
                        .state
                        .lock()
                        .unwrap()
                        .recv
                        .as_mut()
                        .and_then(|w| {
                            let budget = &self.stream.window_budget;
                            w.on_consumed_tuned(b.len(), std::time::Instant::now(), budget)
                        });
                    if let Some(bytes) = credit {
                        let wu = CloudMsg::WindowUpdate(proto::WindowUpdate {
                            request_id: self.request_id.clone(),
                            bytes,
                        });
                        let _ = self.conn.out.send(Message::text(proto::encode(&wu))).await;
                    }
                }
                Some(Ok(b))
            }
            StreamEvent::End => {
                self.done = true;
                None
            }
            StreamEvent::Error(e) => {
                self.done = true;
                Some(Err(e))
            }
            StreamEvent::Wake => unreachable!("the loop above skips wake-ups"),
            StreamEvent::Start { .. } => {
                self.done = true;
                self.conn.cancel_stream(&self.request_id);
                Some(Err(RouteError::Protocol(
                    "second HTTP_RESPONSE_START".into(),
                )))
            }
        }
    }
}

impl BodySource for RelayBody {
    fn next_chunk(&mut self) -> BoxFuture<'_, Option<Result<Bytes, RouteError>>> {
        Box::pin(self.next())
    }
}

impl Drop for RelayBody {
    fn drop(&mut self) {
        if let Some(p) = self.pump.take() {
            p.abort();
        }
        if !self.done {
            // Caller went away mid-stream: stop the device download.
            self.conn.cancel_stream(&self.request_id);
        } else {
            self.conn.streams.lock().unwrap().remove(&self.request_id);
        }
    }
}

/// Caller end of a tunnelled WebSocket.
struct RelayWs {
    conn: Arc<Conn>,
    state: Arc<conn::WsState>,
    stream_id: String,
    rx: mpsc::Receiver<WsFrame>,
    /// Bytes of the message `recv` last returned: still charged to the stream's budget
    /// until the caller asks for the next one (it has written this one on by then), so
    /// the budget also covers the message a caller holds while its browser is slow.
    held: usize,
    closed: bool,
}

impl WsSource for RelayWs {
    fn recv(&mut self) -> BoxFuture<'_, Option<WsFrame>> {
        Box::pin(async move {
            self.state.budget.release(std::mem::take(&mut self.held));
            if self.closed {
                return None;
            }
            let f = self.rx.recv().await;
            if let Some(f) = &f {
                self.held = conn::ws_len(f);
            }
            if matches!(f, None | Some(WsFrame::Close { .. })) {
                self.closed = true;
                self.conn.ws.lock().unwrap().remove(&self.stream_id);
            }
            f
        })
    }

    fn send(&mut self, frame: WsFrame) -> BoxFuture<'_, Result<(), RouteError>> {
        Box::pin(async move {
            if self.closed {
                return Err(RouteError::Disconnected);
            }
            if let WsFrame::Text(t) = &frame {
                ponte_core::metrics::bytes_to_device(t.len());
            } else if let WsFrame::Binary(d) = &frame {
                ponte_core::metrics::bytes_to_device(d.len());
            }
            let msg = match frame {
                WsFrame::Text(t) => CloudMsg::WsMessage(proto::WsMessage {
                    stream_id: self.stream_id.clone(),
                    text: Some(t),
                    data: None,
                }),
                WsFrame::Binary(d) => CloudMsg::WsMessage(proto::WsMessage {
                    stream_id: self.stream_id.clone(),
                    text: None,
                    data: Some(d),
                }),
                WsFrame::Close { code, reason } => {
                    self.closed = true;
                    self.conn.ws.lock().unwrap().remove(&self.stream_id);
                    CloudMsg::WsClose(proto::WsClose {
                        stream_id: self.stream_id.clone(),
                        code,
                        reason,
                        error: None,
                    })
                }
            };
            let frame = self.conn.frame(&msg);
            if frame.len() > limits::MAX_FRAME_LEN {
                return Err(RouteError::BodyTooLarge(limits::MAX_FRAME_LEN));
            }
            self.conn
                .out
                .send(frame)
                .await
                .map_err(|_| RouteError::Disconnected)
        })
    }
}

impl Drop for RelayWs {
    fn drop(&mut self) {
        if !self.closed {
            conn::close_ws(&self.conn, &self.stream_id, 1001, "caller went away");
        }
        // What is still queued is freed with the channel: its bytes go back too.
        self.state.budget.close();
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
        conn.map(|c| limits::WINDOW_GROWTH_BUDGET - c.window_budget.left())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two installs sharing a token: the README's numbers, by value (the behaviour is
    /// `tests/tests/api.rs` `two_connectors_sharing_a_token_settle_on_one_and_status_says_so`).
    #[test]
    fn a_contest_is_decided_by_the_documented_numbers() {
        assert_eq!(
            (FLAP_REPLACEMENTS, FLAP_WINDOW),
            (2, Duration::from_secs(60))
        );
        assert_eq!(PROBE_TIMEOUT, Duration::from_secs(5));
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
