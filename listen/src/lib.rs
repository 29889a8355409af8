//! The accept loop every HTTP listener of Ponte runs on: the API, the relay, the gateway
//! and the connector's health port. It is `axum::serve` plus what that lacks:
//!
//! - a **header-read timeout**: a request head must arrive whole within
//!   [`Limits::header_read_timeout`] (hyper's own timer), counted from the accept for a
//!   new connection and from its first byte for a later request on a kept-alive one;
//! - a **keep-alive idle timeout**: between requests a connection may sit silent for
//!   [`Limits::keepalive_idle_timeout`], then it is closed;
//! - **connection caps**, per listener and per client address (IPv4 address, IPv6 /64):
//!   past either, the connection gets a short `503` with a JSON reason and
//!   `Connection: close`, and is closed, instead of waiting in a backlog that starves
//!   everyone else (or taking a file descriptor the process needs for its other
//!   listeners and its database);
//! - `TCP_NODELAY` on every accepted socket, and `ConnectInfo<SocketAddr>` on every
//!   request, as axum's `into_make_service_with_connect_info` gives it.
//!
//! Graceful shutdown is axum's: on `shutdown` the listener stops accepting, idle
//! connections close, requests in flight finish, and [`serve`] returns once they have.
//! Upgraded connections (WebSockets) are handed to their handler and not waited for;
//! they still count against the caps until they close.
//!
//! Must never: block the accept loop on one client, or hold more sockets than the caps
//! plus [`REFUSING_MAX`] per listener.

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::rt::{Sleep, Timer};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;
use tracing::{debug, warn};

/// The longest header-read timeout a listener accepts: a longer one lets a few
/// thousand trickling clients hold every socket for minutes.
pub const MAX_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Refusals (the 503 and its lingering close) a listener runs at once; past them a
/// connection over the caps is closed without an answer. Bounds the sockets refusing
/// costs: each lives at most [`REFUSE_LINGER`].
pub const REFUSING_MAX: usize = 64;

/// How long a refused connection may take to read its 503 and close.
pub const REFUSE_LINGER: Duration = Duration::from_secs(1);

/// What a refused connection's request is read and dropped up to, so that closing it
/// does not send a reset that could destroy the 503 before the client reads it.
const REFUSE_DRAIN: usize = 16 * 1024;

/// Open connections (gauge, by `listener`).
pub const CONNECTIONS_OPEN: &str = "ponte_connections_open";
/// Connections refused at a cap (counter, by `listener` and `reason`: `max_connections`,
/// `max_connections_per_address`, or `refusing` when even the 503s are at their limit).
pub const CONNECTIONS_REFUSED: &str = "ponte_connections_refused_total";

/// Registers the metrics' descriptions with the installed recorder.
pub fn describe() {
    metrics::describe_gauge!(CONNECTIONS_OPEN, "open HTTP connections, by listener");
    metrics::describe_counter!(
        CONNECTIONS_REFUSED,
        "connections refused with 503 at a connection cap, by listener and reason"
    );
}

/// A listener's timeouts and caps. `0` in a cap: no limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// A request head must arrive whole within this (at most [`MAX_HEADER_READ_TIMEOUT`]).
    pub header_read_timeout: Duration,
    /// A kept-alive connection is closed after this long without a request.
    pub keepalive_idle_timeout: Duration,
    /// Open connections on this listener.
    pub max_connections: usize,
    /// Open connections from one client address (IPv4 address, IPv6 /64).
    pub max_connections_per_address: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            keepalive_idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            max_connections_per_address: 256,
        }
    }
}

/// What a per-address cap counts: the IPv4 address, or the IPv6 /64 (one host usually
/// holds a whole /64, so per-address counting would give it billions of slots).
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut o = v6.octets();
                o[8..].fill(0);
                IpAddr::V6(o.into())
            }
        },
        v4 => v4,
    }
}

/// Serves `app` on `listener` until `shutdown`, then waits for the requests in flight.
/// `name` labels the logs and metrics (`api`, `relay`, `gateway`, `health`).
pub async fn serve(
    name: &'static str,
    listener: TcpListener,
    app: axum::Router,
    limits: Limits,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let counts = Arc::new(Counts {
        name,
        limits: limits.clone(),
        open: Mutex::default(),
    });
    let refusing = Arc::new(tokio::sync::Semaphore::new(REFUSING_MAX));
    let conns = TaskTracker::new();
    // Warnings about refusals and accept errors: at most one per WARN_EVERY.
    let mut warned: Option<Instant> = None;
    loop {
        let (tcp, peer) = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(accepted) => accepted,
                Err(err) => {
                    accept_error(name, err, &mut warned).await;
                    continue;
                }
            },
        };
        // Without it, a response written in two pieces (head, then body; a WebSocket
        // frame after another) waits for the peer's delayed ACK: ~20-40 ms a request.
        if let Err(err) = tcp.set_nodelay(true) {
            debug!(%err, "TCP_NODELAY not set");
        }
        match counts.admit(peer.ip()) {
            Ok(slot) => {
                conns.spawn(connection(
                    tcp,
                    peer,
                    slot,
                    app.clone(),
                    (limits.header_read_timeout, limits.keepalive_idle_timeout),
                    shutdown.clone(),
                ));
            }
            Err(refusal) => {
                let permit = Arc::clone(&refusing).try_acquire_owned().ok();
                let reason = match permit {
                    Some(_) => refusal.setting(),
                    None => "refusing",
                };
                metrics::counter!(CONNECTIONS_REFUSED, "listener" => name, "reason" => reason)
                    .increment(1);
                if warned.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                    warned = Some(Instant::now());
                    warn!(
                        listener = name,
                        %peer,
                        cap = refusal.setting(),
                        "connection cap reached: answering 503 and closing (logged once per \
                         10 s; see {CONNECTIONS_REFUSED})"
                    );
                }
                // Past REFUSING_MAX the socket is just closed.
                if let Some(permit) = permit {
                    tokio::spawn(async move {
                        refuse(tcp, refusal).await;
                        drop(permit);
                    });
                }
            }
        }
    }
    drop(listener);
    conns.close();
    conns.wait().await;
    Ok(())
}

const WARN_EVERY: Duration = Duration::from_secs(10);

/// An accept that failed: a connection reset before it was accepted is the client's
/// business; anything else (out of file descriptors) is ours, and retrying at once
/// would spin, so wait a little.
async fn accept_error(name: &'static str, err: io::Error, warned: &mut Option<Instant>) {
    use io::ErrorKind::*;
    if matches!(
        err.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    if warned.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
        *warned = Some(Instant::now());
        warn!(listener = name, %err, "accept failed; retrying (logged once per 10 s)");
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// One admitted connection, served until it closes (or `shutdown`, gracefully).
async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    slot: Slot,
    app: axum::Router,
    (header, idle): (Duration, Duration),
    shutdown: CancellationToken,
) {
    let state = Arc::new(ConnState::default());
    let io = TokioIo::new(Tracked {
        tcp,
        state: Arc::clone(&state),
        slot: Some(slot),
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(HeadTimer {
        conn: state,
        header,
        idle,
    })
    .header_read_timeout(header);
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        app.clone().oneshot(req)
    });
    let conn = http.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(err) = result {
        // Timeouts, resets and malformed requests: the client's doing.
        debug!(%peer, %err, "connection ended");
    }
}

#[derive(Debug, Clone, Copy)]
enum Refusal {
    Full,
    PerAddress,
}

impl Refusal {
    /// The setting that refused.
    fn setting(self) -> &'static str {
        match self {
            Refusal::Full => "max_connections",
            Refusal::PerAddress => "max_connections_per_address",
        }
    }

    fn response(self) -> String {
        let (code, message) = match self {
            Refusal::Full => (
                "BUSY",
                "the server is at its connection limit; retry shortly",
            ),
            Refusal::PerAddress => (
                "TOO_MANY_CONNECTIONS",
                "too many connections from this address; close some and retry",
            ),
        };
        let body = format!(r#"{{"error":{{"code":"{code}","message":"{message}"}}}}"#);
        format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    }
}

/// Answers 503 without reading the request, then closes: the answer, our FIN, then what
/// the client sent is read and dropped (bounded) until it closes too — closing with its
/// bytes unread would send a reset, which can destroy the answer in flight. All within
/// [`REFUSE_LINGER`].
async fn refuse(mut tcp: TcpStream, refusal: Refusal) {
    let linger = async {
        tcp.write_all(refusal.response().as_bytes()).await?;
        tcp.shutdown().await?;
        let mut buf = [0u8; 2048];
        let mut left = REFUSE_DRAIN;
        while left > 0 {
            match tcp.read(&mut buf).await? {
                0 => break,
                n => left = left.saturating_sub(n),
            }
        }
        Ok::<_, io::Error>(())
    };
    let _ = tokio::time::timeout(REFUSE_LINGER, linger).await;
}

/// Open connections of one listener, in total and per address key.
struct Counts {
    name: &'static str,
    limits: Limits,
    /// (total, per address key). The map holds only keys with connections open, so it
    /// is bounded by the connections.
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

impl Counts {
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refusal> {
        let key = address_key(ip);
        let mut open = self.open.lock().unwrap();
        let (total, per) = &mut *open;
        let mine = per.get(&key).copied().unwrap_or(0);
        let cap = |c: usize| if c == 0 { usize::MAX } else { c };
        if mine >= cap(self.limits.max_connections_per_address) {
            return Err(Refusal::PerAddress);
        }
        if *total >= cap(self.limits.max_connections) {
            return Err(Refusal::Full);
        }
        *total += 1;
        per.insert(key, mine + 1);
        metrics::gauge!(CONNECTIONS_OPEN, "listener" => self.name).increment(1.0);
        Ok(Slot {
            counts: Arc::clone(self),
            key,
        })
    }
}

/// A connection's place in [`Counts`], given back when the socket closes (which, for an
/// upgraded connection, is when its handler drops it).
struct Slot {
    counts: Arc<Counts>,
    key: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.counts.open.lock().unwrap();
        let (total, per) = &mut *open;
        *total -= 1;
        if let Some(n) = per.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                per.remove(&self.key);
            }
        }
        metrics::gauge!(CONNECTIONS_OPEN, "listener" => self.counts.name).decrement(1.0);
    }
}

/// What the head timer needs to know about its connection.
#[derive(Default)]
struct ConnState {
    /// Reads that returned bytes.
    reads: AtomicU64,
    /// Request heads hyper has started waiting for.
    heads: AtomicU64,
}

/// The socket, counting reads for the head timer and holding the connection's slot.
struct Tracked {
    tcp: TcpStream,
    state: Arc<ConnState>,
    /// Given back at our shutdown (just before the FIN goes out) or when the socket is
    /// dropped, whichever comes first: a client that saw us close can count on its
    /// slot being free.
    slot: Option<Slot>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.tcp).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.reads.fetch_add(1, Ordering::Relaxed);
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.slot.take();
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// hyper's header-read timer, told apart by phase. hyper starts it (`sleep_until(now +
/// header_read_timeout)`) whenever it begins waiting for a request head: at the accept,
/// and again as soon as a response is done. The first wait is the header timeout as is;
/// a later one is the keep-alive idle timeout until the first byte of the next request
/// arrives, and the header timeout from that byte on. (Bytes hyper had already read
/// before the wait began, a pipelined head, count as idle: bounded by the idle timeout.)
struct HeadTimer {
    conn: Arc<ConnState>,
    header: Duration,
    idle: Duration,
}

impl Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.sleep_until(self.now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        let first = self.conn.heads.fetch_add(1, Ordering::Relaxed) == 0;
        let phase = match first {
            true => Phase::Head,
            false => Phase::Idle {
                reads: self.conn.reads.load(Ordering::Relaxed),
            },
        };
        let until = match phase {
            Phase::Head => deadline,
            // hyper asked for now + header: the wait began at `deadline - header`.
            Phase::Idle { .. } => deadline.checked_sub(self.header).unwrap_or(deadline) + self.idle,
        };
        Box::pin(HeadSleep {
            conn: Arc::clone(&self.conn),
            header: self.header,
            phase,
            sleep: Box::pin(tokio::time::sleep_until(until.into())),
        })
    }

    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }
}

#[derive(Clone, Copy)]
enum Phase {
    /// No byte of the next request yet (`reads` when the wait began).
    Idle { reads: u64 },
    /// The head has begun (or this is the connection's first): the header timeout runs.
    Head,
}

struct HeadSleep {
    conn: Arc<ConnState>,
    header: Duration,
    phase: Phase,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Future for HeadSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // hyper polls this every time a read leaves the head incomplete, so a first byte
        // is seen as soon as it arrives.
        if let Phase::Idle { reads } = self.phase {
            if self.conn.reads.load(Ordering::Relaxed) != reads {
                self.phase = Phase::Head;
                let until = tokio::time::Instant::now() + self.header;
                self.sleep.as_mut().reset(until);
            }
        }
        self.sleep.as_mut().poll(cx)
    }
}

impl Sleep for HeadSleep {}

#[cfg(test)]
mod tests;
