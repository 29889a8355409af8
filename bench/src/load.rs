//! The load generator: bare HTTP/1.1 keep-alive connections (hyper's client `conn`), one
//! per concurrent worker, the same code for every path, so the paths differ only in what
//! answers. Bodies are counted frame by frame, never collected (a 100 MB download costs
//! no memory). Must never send to anything but the 127.0.0.1 addresses it is given.

use anyhow::{bail, Context as _};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One request, as every worker sends it again and again.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub method: http::Method,
    pub path: String,
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    pub body: Bytes,
    /// Bytes the answer must at least carry (a truncated download is an error).
    pub min_len: u64,
    /// A text the answer must contain (proxy-http: the device's status inside the JSON).
    pub must_contain: Option<&'static str>,
}

/// A keep-alive connection to the target's address.
pub struct Conn {
    tx: SendRequest<Full<Bytes>>,
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> anyhow::Result<Self> {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        // Small requests must not wait for Nagle; every client here does the same.
        tcp.set_nodelay(true)?;
        let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self { tx })
    }

    /// Sends the target's request; `Ok(None)` for a complete 2xx answer, `Ok(Some(status))`
    /// for any other (status 0: a 2xx that was short or lacked the check text); `Err` when
    /// the connection broke (the worker reconnects).
    pub async fn send(&mut self, t: &Target) -> anyhow::Result<Option<u16>> {
        self.tx.ready().await?;
        let mut req = http::Request::builder()
            .method(t.method.clone())
            .uri(&t.path)
            .header(http::header::HOST, t.addr.to_string());
        for (k, v) in &t.headers {
            req = req.header(k, v);
        }
        let resp = self
            .tx
            .send_request(req.body(Full::new(t.body.clone()))?)
            .await?;
        let status = resp.status();
        let mut body = resp.into_body();
        let mut n = 0u64;
        // Only the check text needs the bytes kept; it is looked for in a small body.
        let mut kept = Vec::new();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                n += data.len() as u64;
                if t.must_contain.is_some() && kept.len() < 4096 {
                    kept.extend_from_slice(&data[..data.len().min(4096 - kept.len())]);
                }
            }
        }
        let contains = t
            .must_contain
            .is_none_or(|s| kept.windows(s.len()).any(|w| w == s.as_bytes()));
        Ok(match (status.is_success(), n >= t.min_len && contains) {
            (true, true) => None,
            (true, false) => Some(0),
            (false, _) => Some(status.as_u16()),
        })
    }
}

/// Outcome of a batch of requests.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    pub ok: u64,
    pub errors: u64,
    /// The failures by status (0: short or unchecked 2xx, 1: connection broke).
    pub failed: std::collections::BTreeMap<u16, u64>,
    /// Latency of every successful request, sorted.
    pub latencies: Vec<Duration>,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    /// Counts one request: `Ok(None)` a success taking `took`, otherwise a failure.
    fn count(&mut self, r: anyhow::Result<Option<u16>>, took: Option<Duration>) {
        match r {
            Ok(None) => {
                self.ok += 1;
                if let Some(d) = took {
                    self.latencies.push(d);
                }
            }
            Ok(Some(status)) => self.fail(status),
            Err(_) => self.fail(1),
        }
    }

    fn fail(&mut self, status: u16) {
        self.errors += 1;
        *self.failed.entry(status).or_default() += 1;
    }

    fn merge(&mut self, o: Outcome) {
        self.ok += o.ok;
        self.errors += o.errors;
        self.latencies.extend(o.latencies);
        for (k, v) in o.failed {
            *self.failed.entry(k).or_default() += v;
        }
    }
}

async fn one(conn: &mut Option<Conn>, t: &Target) -> anyhow::Result<Option<u16>> {
    if conn.is_none() {
        *conn = Some(Conn::open(t.addr).await?);
    }
    match conn.as_mut().expect("opened above").send(t).await {
        Ok(ok) => Ok(ok),
        Err(e) => {
            // A broken connection counts as an error; the next request opens a new one.
            *conn = None;
            Err(e)
        }
    }
}

/// `n` requests one after another on one connection, after `warmup` unmeasured ones.
pub async fn sequential(t: &Target, warmup: usize, n: usize) -> anyhow::Result<Outcome> {
    let mut conn = Some(Conn::open(t.addr).await?);
    for _ in 0..warmup {
        let _ = one(&mut conn, t).await;
    }
    let mut out = Outcome::default();
    let t0 = Instant::now();
    for _ in 0..n {
        let s = Instant::now();
        let r = one(&mut conn, t).await;
        out.count(r, Some(s.elapsed()));
    }
    out.elapsed = t0.elapsed();
    out.latencies.sort();
    Ok(out)
}

/// `workers` connections, each sending requests back to back until `duration` is over.
pub async fn saturate(t: &Target, workers: usize, duration: Duration) -> anyhow::Result<Outcome> {
    let conns = open_all(t.addr, workers).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|c| {
            let (t, stop) = (t.clone(), stop.clone());
            tokio::spawn(async move {
                let mut conn = Some(c);
                let mut out = Outcome::default();
                while !stop.load(Ordering::Relaxed) {
                    let s = Instant::now();
                    let r = one(&mut conn, &t).await;
                    out.count(r, Some(s.elapsed()));
                }
                out
            })
        })
        .collect();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Outcome::default();
    for task in tasks {
        all.merge(task.await?);
    }
    // Requests in flight at the stop finish after it; they are counted, so is their time.
    all.elapsed = t0.elapsed();
    all.latencies.sort();
    Ok(all)
}

/// `workers` connections, each sending the request `each` times; the clock runs from the
/// first send to the last byte.
pub async fn parallel(t: &Target, workers: usize, each: usize) -> anyhow::Result<Outcome> {
    let conns = open_all(t.addr, workers).await?;
    let t0 = Instant::now();
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|c| {
            let t = t.clone();
            tokio::spawn(async move {
                let mut conn = Some(c);
                let mut out = Outcome::default();
                for _ in 0..each {
                    let r = one(&mut conn, &t).await;
                    out.count(r, None);
                }
                out
            })
        })
        .collect();
    let mut all = Outcome::default();
    for task in tasks {
        all.merge(task.await?);
    }
    all.elapsed = t0.elapsed();
    Ok(all)
}

async fn open_all(addr: SocketAddr, n: usize) -> anyhow::Result<Vec<Conn>> {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        conns.push(Conn::open(addr).await?);
    }
    Ok(conns)
}

/// One request, checked: used to prove each path answers before it is measured.
pub async fn probe(t: &Target) -> anyhow::Result<()> {
    let mut c = Conn::open(t.addr).await?;
    if let Some(status) = c.send(t).await? {
        bail!(
            "{} {} on {} did not answer a complete 2xx (status {status})",
            t.method,
            t.path,
            t.addr
        );
    }
    Ok(())
}
