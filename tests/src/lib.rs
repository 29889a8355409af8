//! The one harness every integration test uses: spawn a relay, a connector and a device
//! (origin) on 127.0.0.1 port 0, mint tokens, wait for conditions with deadlines, read RSS.
//! Only loopback addresses are ever used.

pub mod apps;
pub mod browser;
pub mod cloud;
pub mod legacy;
pub mod origin;
pub mod tls;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ponte_connector::config::{Config, FileConfig, RelayUrls, Secret};
use ponte_core::connector::ConnectorClaims;
use ponte_relay::{ConnConfig, Relay, RelayConfig, StaticDirectory, TokenVerifier};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const CONNECTOR_KEY: &[u8] = include_bytes!("../fixtures/connector-key.pem");
pub const CONNECTOR_PUB: &[u8] = include_bytes!("../fixtures/connector-key.pub.pem");
pub const OTHER_KEY: &[u8] = include_bytes!("../fixtures/other-key.pem");

/// Logs to the test's captured output when `PONTE_LOG` is set.
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PONTE_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Records that the running test really used `what` (`postgres`, `chromium`): one file per
/// test under `$PONTE_TEST_MARKS/{what}/`, named after the test thread. `tools/test` counts
/// them, so a test that stops touching PostgreSQL or the browser (or a gate that counts
/// names) cannot pass for one that does. Nothing happens when the variable is unset.
pub fn mark_uses(what: &str) {
    let Some(root) = std::env::var_os("PONTE_TEST_MARKS") else {
        return;
    };
    let dir = std::path::Path::new(&root).join(what);
    let _ = std::fs::create_dir_all(&dir);
    // libtest runs each test on a thread named after it; anything else gets a unique name
    // (counted once per call, which only ever overcounts helpers, never hides a test).
    let name = match std::thread::current().name() {
        Some(n) if n != "main" && !n.starts_with("tokio-") => n.replace("::", "."),
        _ => cloud::unique("unnamed"),
    };
    let _ = std::fs::write(dir.join(name), b"");
}

pub fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Signs connector claims with `key` (PEM).
pub fn sign(claims: &ConnectorClaims, key: &[u8]) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        claims,
        &EncodingKey::from_rsa_pem(key).unwrap(),
    )
    .unwrap()
}

pub fn claims(sub: &str, jti: &str, ttl_s: i64) -> ConnectorClaims {
    ConnectorClaims {
        sub: sub.into(),
        cli: Some(1),
        tid: Some(2),
        jti: jti.into(),
        exp: (now_s() as i64 + ttl_s) as u64,
    }
}

/// A relay listening on 127.0.0.1.
pub struct TestRelay {
    pub relay: Relay,
    pub addr: SocketAddr,
    pub directory: Arc<StaticDirectory>,
    pub shutdown: CancellationToken,
}

impl TestRelay {
    pub async fn spawn() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::spawn_with(listener, ConnConfig::default(), StaticDirectory::new()).await
    }

    pub async fn spawn_with(
        listener: TcpListener,
        conn: ConnConfig,
        directory: Arc<StaticDirectory>,
    ) -> Self {
        init_logging();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let relay = Relay::new(
            RelayConfig {
                verifier: TokenVerifier::from_rsa_pems(&[CONNECTOR_PUB]).unwrap(),
                directory: directory.clone(),
                conn,
                read_buffer: 4096,
            },
            shutdown.clone(),
        );
        tokio::spawn(ponte_relay::serve(
            listener,
            relay.clone(),
            shutdown.clone(),
        ));
        Self {
            relay,
            addr,
            directory,
            shutdown,
        }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws/connectors", self.addr)
    }

    /// Registers `id` with a fresh current token and returns it.
    pub fn token_for(&self, id: &str) -> String {
        let jti = format!("jti-{}", fastrand::u64(..));
        self.directory.set_current(id, &jti);
        sign(&claims(id, &jti, 3600), CONNECTOR_KEY)
    }

    /// Waits until `id` holds a connection.
    pub async fn wait_online(&self, id: &str) {
        use ponte_core::Router;
        wait_until(Duration::from_secs(10), || self.relay.is_online(id)).await;
    }

    /// A raw peer for connector `id`, on an in-memory socket (so paused time works):
    /// the relay side is served as an authenticated connection. Returns the peer end
    /// and the task serving the relay end.
    pub async fn raw_peer(
        &self,
        id: &str,
    ) -> (
        tokio_tungstenite::WebSocketStream<tokio::io::DuplexStream>,
        tokio::task::JoinHandle<()>,
    ) {
        use tokio_tungstenite::tungstenite::protocol::Role;
        use tokio_tungstenite::WebSocketStream;
        let (a, b) = tokio::io::duplex(1 << 20);
        let server = WebSocketStream::from_raw_socket(a, Role::Server, None).await;
        let peer = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
        let relay = self.relay.clone();
        // Current in the directory too: the relay checks again once the peer is registered.
        self.directory.set_current(id, "raw");
        let claims = claims(id, "raw", 3600);
        let served = tokio::spawn(async move { relay.serve_connection(server, claims).await });
        (peer, served)
    }

    /// Waits until `id` has no connection.
    pub async fn wait_offline(&self, id: &str) {
        use ponte_core::Router;
        wait_until(Duration::from_secs(10), || !self.relay.is_online(id)).await;
    }

    pub async fn stop(&self) {
        self.shutdown.cancel();
    }

    /// Stops this relay and starts a new one on the same address with the same tokens.
    pub async fn restart(self) -> TestRelay {
        self.shutdown.cancel();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) => {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "rebinding {}: {e}",
                        self.addr
                    );
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        };
        TestRelay::spawn_with(listener, ConnConfig::default(), self.directory.clone()).await
    }
}

/// A connector (the real crate) started in-process.
pub struct TestConnector {
    pub handle: ponte_connector::Handle,
    pub shutdown: CancellationToken,
}

impl Drop for TestConnector {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Connector settings for tests: health on port 0, fast reconnects.
pub fn connector_config(relay_url: &str, token: &str, allowed: Option<Vec<String>>) -> Config {
    let f = FileConfig {
        relay_url: Some(RelayUrls::One(relay_url.into())),
        token: Some(Secret::new(token)),
        name: Some("test-connector".into()),
        allowed_targets: allowed,
        health_listen: Some("127.0.0.1:0".into()),
        backoff_initial_ms: Some(20),
        backoff_max_ms: Some(200),
        ..Default::default()
    };
    Config::from_file_config(f, None).unwrap()
}

pub async fn spawn_connector(cfg: Config) -> TestConnector {
    spawn_connector_timed(cfg, Default::default()).await
}

pub async fn spawn_connector_timed(cfg: Config, timing: ponte_connector::Timing) -> TestConnector {
    init_logging();
    let shutdown = CancellationToken::new();
    let handle = ponte_connector::start(cfg, timing, shutdown.clone())
        .await
        .unwrap();
    TestConnector { handle, shutdown }
}

/// Connector state with the test settings of [`connector_config`] and `allowed` targets,
/// for [`connector_session`] (it never dials the relay URL it names).
pub fn connector_shared(allowed: Option<Vec<String>>) -> ponte_connector::Shared {
    let cfg = connector_config("ws://127.0.0.1:9/ws/connectors", "t", allowed);
    ponte_connector::Shared::new(cfg, Default::default(), Default::default(), None).unwrap()
}

/// A fake relay's end of the pipe to a real connector session.
pub type FakeRelay = tokio_tungstenite::WebSocketStream<tokio::io::DuplexStream>;

/// The real connector's session (`tunnel::session`) against a fake relay the test drives
/// frame by frame, over an in-memory pipe of `buffer` bytes each way (so paused time
/// works): the relay's end, the session's shutdown, and its task (which returns why the
/// session ended).
pub async fn connector_session(
    shared: ponte_connector::Shared,
    buffer: usize,
) -> (
    FakeRelay,
    CancellationToken,
    tokio::task::JoinHandle<String>,
) {
    use tokio_tungstenite::tungstenite::protocol::Role;
    use tokio_tungstenite::WebSocketStream;
    init_logging();
    let (a, b) = tokio::io::duplex(buffer);
    let relay = WebSocketStream::from_raw_socket(a, Role::Server, None).await;
    let client = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
    let shutdown = CancellationToken::new();
    let session = tokio::spawn(ponte_connector::tunnel::session(
        Arc::new(shared),
        client,
        shutdown.clone(),
    ));
    (relay, shutdown, session)
}

/// The next text frame from a connector as JSON, skipping its PINGs.
pub async fn next_json(peer: &mut FakeRelay) -> serde_json::Value {
    use futures_util::StreamExt as _;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        match peer.next().await.expect("peer open").expect("frame") {
            Message::Text(t) => {
                let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
                if v["type"] != "PING" {
                    return v;
                }
            }
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// The usual setup: relay + origin + connector `c1` (default policy: loopback allowed),
/// connected.
pub struct Stack {
    pub relay: TestRelay,
    pub origin: origin::Origin,
    pub connector: TestConnector,
}

pub const CID: &str = "c1";

impl Stack {
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    pub async fn start_with(allowed: Option<Vec<String>>) -> Self {
        let relay = TestRelay::spawn().await;
        let origin = origin::Origin::spawn().await;
        let token = relay.token_for(CID);
        let connector = spawn_connector(connector_config(&relay.ws_url(), &token, allowed)).await;
        relay.wait_online(CID).await;
        Self {
            relay,
            origin,
            connector,
        }
    }

    /// A GET to the origin through the tunnel.
    pub fn get(&self, path: &str) -> ponte_core::ProxyRequest {
        ponte_core::ProxyRequest::new(self.origin.base_url(), "GET", path)
    }
}

/// Polls `cond` until it holds; panics after `limit`. For conditions with no event to
/// await (another task's state); never a fixed sleep.
pub async fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Resident set size of this process, in bytes.
pub fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = s
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb * 1024
}

/// Samples RSS in the background; `peak()` is the largest value seen.
pub struct RssSampler {
    peak: Arc<std::sync::atomic::AtomicU64>,
    stop: CancellationToken,
}

impl RssSampler {
    pub fn start() -> Self {
        let peak = Arc::new(std::sync::atomic::AtomicU64::new(rss_bytes()));
        let stop = CancellationToken::new();
        let (p, s) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.is_cancelled() {
                p.fetch_max(rss_bytes(), std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Self { peak, stop }
    }

    pub fn peak(&self) -> u64 {
        self.peak
            .fetch_max(rss_bytes(), std::sync::atomic::Ordering::Relaxed)
            .max(rss_bytes())
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Paces a reader to `bytes_per_s`: after each chunk, [`Pace::took`] waits until the bytes
/// read so far are due. A slow client by construction (a timer, not a synchronisation).
pub struct Pace {
    rate: f64,
    start: tokio::time::Instant,
    read: u64,
}

impl Pace {
    pub fn new(bytes_per_s: u64) -> Self {
        Self {
            rate: bytes_per_s as f64,
            start: tokio::time::Instant::now(),
            read: 0,
        }
    }

    pub async fn took(&mut self, n: usize) {
        self.read += n as u64;
        let due = self.start + Duration::from_secs_f64(self.read as f64 / self.rate);
        tokio::time::sleep_until(due).await;
    }
}

/// The deterministic pseudo-random bytes the origin's `/bytes/{n}?seed=s` serves.
pub fn pattern_chunks(n: u64, seed: u64) -> impl Iterator<Item = bytes::Bytes> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut left = n;
    std::iter::from_fn(move || {
        if left == 0 {
            return None;
        }
        let len = left.min(64 * 1024) as usize;
        left -= len as u64;
        let mut buf = vec![0u8; len];
        rng.fill(&mut buf);
        Some(bytes::Bytes::from(buf))
    })
}

pub fn sha256_hex(chunks: impl IntoIterator<Item = bytes::Bytes>) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for c in chunks {
        h.update(&c);
    }
    hex(&h.finalize())
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Polls an async condition until it holds; panics after `limit` with `what`.
pub async fn wait_for<F, Fut>(limit: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn proc_net_addr(a: SocketAddr) -> String {
    let ip = match a.ip() {
        std::net::IpAddr::V4(ip) => format!("{:08X}", u32::from_le_bytes(ip.octets())),
        std::net::IpAddr::V6(ip) => ip
            .octets()
            .chunks(4)
            .map(|w| format!("{:08X}", u32::from_le_bytes([w[0], w[1], w[2], w[3]])))
            .collect(),
    };
    format!("{ip}:{:04X}", a.port())
}

/// The kernel's state of the TCP connection from `local` to `remote` (from
/// `/proc/net/tcp{,6}`), e.g. [`TCP_ESTABLISHED`]; `None` once it is gone. Lets a test see
/// that a server let go of a connection whose client never reads (the server's end then
/// sits in FIN_WAIT1 behind the unread data, or disappears).
pub fn tcp_state(local: SocketAddr, remote: SocketAddr) -> Option<u8> {
    let file = match local {
        SocketAddr::V4(_) => "/proc/net/tcp",
        SocketAddr::V6(_) => "/proc/net/tcp6",
    };
    let (l, r) = (proc_net_addr(local), proc_net_addr(remote));
    let table = std::fs::read_to_string(file).ok()?;
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.get(1) == Some(&l.as_str()) && f.get(2) == Some(&r.as_str()))
            .then(|| u8::from_str_radix(f.get(3)?, 16).ok())
            .flatten()
    })
}

/// [`tcp_state`]: connected.
pub const TCP_ESTABLISHED: u8 = 0x01;

/// Reads a WebSocket until its close frame; panics on anything but a close within 10 s.
pub async fn close_frame<S>(
    ws: &mut tokio_tungstenite::WebSocketStream<S>,
) -> Option<tokio_tungstenite::tungstenite::protocol::CloseFrame>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::StreamExt as _;
    use tokio_tungstenite::tungstenite::Message;
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(c))) => break c,
                Some(Ok(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    })
    .await
    .expect("the peer closes the socket")
}

/// One HTTP/1.1 exchange with the request exactly as written (no client-side path
/// normalisation, any `Host`); `request` ends with its empty line. The server is asked
/// to close (`Connection: close` must be in `request`), and the whole answer is read.
/// Returns the status and the answer as text.
pub async fn raw_http(addr: std::net::SocketAddr, request: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut out))
        .await
        .expect("the server answers and closes within 30 s")
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}
