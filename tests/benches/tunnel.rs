//! End-to-end benchmark: `cargo bench -p ponte-tests --bench tunnel`.
//!
//! Prints, side by side with the same work done directly against the origin:
//! throughput of a 100 MB body, small-request latency p50/p99 at concurrency 1 and 64,
//! and the relay's RSS per idle connector with 10,000 connectors connected (the relay
//! runs in a child process so its RSS is its own). Also the codec's raw speed.
//! All traffic is on 127.0.0.1. `PONTE_BENCH_IDLE=N` changes the idle count.

use bytes::Bytes;
use futures_util::SinkExt;
use ponte_core::{ProxyRequest, Router};
use ponte_tests::*;
use std::io::{BufRead, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MB: f64 = 1024.0 * 1024.0;

fn main() {
    if std::env::var("PONTE_BENCH_ROLE").as_deref() == Ok("relay") {
        return relay_child();
    }
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` compatibility
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        codec();
        let s = Stack::start().await;
        let direct = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()
            .unwrap();
        println!(
            "\n{:<44} {:>14} {:>14}",
            "end to end (127.0.0.1)", "direct", "via tunnel"
        );
        throughput(&s, &direct).await;
        for conc in [1usize, 64] {
            latency(&s, &direct, conc).await;
        }
        drop(s);
        idle_connectors().await;
    });
}

fn codec() {
    use ponte_protocol::*;
    let data = Bytes::from(vec![7u8; ponte_protocol::limits::MAX_CHUNK_LEN]);
    let msg = ConnectorMsg::HttpResponseChunk(Chunk {
        request_id: "r-1".into(),
        data,
        index: 1,
    });
    let frame = encode(&msg);
    let n = 2000;
    let t0 = Instant::now();
    for _ in 0..n {
        std::hint::black_box(encode(&msg));
    }
    let enc = t0.elapsed();
    let t0 = Instant::now();
    for _ in 0..n {
        std::hint::black_box(decode_connector(&frame).unwrap());
    }
    let dec = t0.elapsed();
    let mbs = |d: Duration| n as f64 * limits::MAX_CHUNK_LEN as f64 / MB / d.as_secs_f64();
    println!(
        "{:<44} {:>14}",
        "codec: encode 64 KiB chunk frame",
        format!("{:.0} MB/s", mbs(enc))
    );
    println!(
        "{:<44} {:>14}",
        "codec: decode 64 KiB chunk frame",
        format!("{:.0} MB/s", mbs(dec))
    );
}

async fn throughput(s: &Stack, direct: &reqwest::Client) {
    let n: u64 = 100 * 1024 * 1024;
    let path = format!("/bytes/{n}");
    let mut best_direct = f64::MAX;
    let mut best_tunnel = f64::MAX;
    for _ in 0..3 {
        let t0 = Instant::now();
        let mut r = direct
            .get(format!("{}{path}", s.origin.base_url()))
            .send()
            .await
            .unwrap();
        let mut got = 0u64;
        while let Some(c) = r.chunk().await.unwrap() {
            got += c.len() as u64;
        }
        assert_eq!(got, n);
        best_direct = best_direct.min(t0.elapsed().as_secs_f64());

        let t0 = Instant::now();
        let mut req = s.get(&path);
        req.timeout = Duration::from_secs(60);
        let resp = s.relay.relay.send(CID, req).await.unwrap();
        let mut body = resp.body;
        let mut got = 0u64;
        while let Some(c) = body.chunk().await {
            got += c.unwrap().len() as u64;
        }
        assert_eq!(got, n);
        best_tunnel = best_tunnel.min(t0.elapsed().as_secs_f64());
    }
    let mbs = |t: f64| format!("{:.0} MB/s", n as f64 / MB / t);
    println!(
        "{:<44} {:>14} {:>14}",
        "100 MB body, best of 3",
        mbs(best_direct),
        mbs(best_tunnel)
    );
}

async fn latency(s: &Stack, direct: &reqwest::Client, conc: usize) {
    let total = if conc == 1 { 2000 } else { 20_000 };
    let url = format!("{}/hello", s.origin.base_url());
    let run_direct = {
        let (direct, url) = (direct.clone(), url.clone());
        move || {
            let (direct, url) = (direct.clone(), url.clone());
            async move {
                let r = direct.get(&url).send().await.unwrap();
                assert_eq!(r.bytes().await.unwrap(), "hello");
            }
        }
    };
    let router = s.relay.relay.clone();
    let base = s.origin.base_url();
    let run_tunnel = move || {
        let (router, base) = (router.clone(), base.clone());
        async move {
            let r = router
                .send(CID, ProxyRequest::new(base, "GET", "/hello"))
                .await
                .unwrap();
            assert_eq!(
                r.body.collect(64).await.unwrap(),
                Bytes::from_static(b"hello")
            );
        }
    };
    let d = measure(total, conc, run_direct).await;
    let t = measure(total, conc, run_tunnel).await;
    let f = |l: &(Duration, Duration, f64)| {
        format!(
            "{:.2}/{:.2} ms",
            l.0.as_secs_f64() * 1e3,
            l.1.as_secs_f64() * 1e3
        )
    };
    println!(
        "{:<44} {:>14} {:>14}",
        format!("small GET p50/p99, concurrency {conc}"),
        f(&d),
        f(&t)
    );
    println!(
        "{:<44} {:>14} {:>14}",
        format!("small GET rate, concurrency {conc}"),
        format!("{:.0}/s", d.2),
        format!("{:.0}/s", t.2)
    );
}

async fn measure<F, Fut>(total: usize, conc: usize, f: F) -> (Duration, Duration, f64)
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let f = Arc::new(f);
    for _ in 0..50 {
        f().await; // warm-up
    }
    let t0 = Instant::now();
    let per = total / conc;
    let workers = (0..conc).map(|_| {
        let f = f.clone();
        tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per);
            for _ in 0..per {
                let t = Instant::now();
                f().await;
                lat.push(t.elapsed());
            }
            lat
        })
    });
    let mut all: Vec<Duration> = Vec::with_capacity(total);
    for w in futures_util::future::join_all(workers).await {
        all.extend(w.unwrap());
    }
    let rate = all.len() as f64 / t0.elapsed().as_secs_f64();
    all.sort();
    (all[all.len() / 2], all[all.len() * 99 / 100], rate)
}

/// Child process: a relay that accepts any correctly signed token, prints its port,
/// and runs until stdin closes.
fn relay_child() {
    struct AcceptAll;
    impl ponte_core::connector::ConnectorDirectory for AcceptAll {
        fn token_is_current(
            &self,
            _: &ponte_core::connector::ConnectorClaims,
        ) -> futures_util::future::BoxFuture<'_, Result<bool, String>> {
            Box::pin(async { Ok(true) })
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay = ponte_relay::Relay::new(
            ponte_relay::RelayConfig {
                verifier: ponte_relay::TokenVerifier::from_rsa_pems(&[CONNECTOR_PUB]).unwrap(),
                directory: Arc::new(AcceptAll),
                conn: Default::default(),
                read_buffer: 4096,
            },
            Default::default(),
        );
        println!("{}", listener.local_addr().unwrap().port());
        std::io::stdout().flush().unwrap();
        // Every idle connector comes from 127.0.0.1: no per-address or total cap (as
        // `ponte serve --max-connections 0 --max-connections-per-address 0`).
        let limits = ponte_listen::Limits {
            max_connections: 0,
            max_connections_per_address: 0,
            ..Default::default()
        };
        tokio::spawn(ponte_relay::serve_with(
            listener,
            relay,
            limits,
            Default::default(),
        ));
        tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            let _ = std::io::stdin().lock().read_line(&mut line);
        })
        .await
        .unwrap();
    });
}

fn rss_of(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

async fn idle_connectors() {
    let n: usize = std::env::var("PONTE_BENCH_IDLE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .env("PONTE_BENCH_ROLE", "relay")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut port = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut port)
        .unwrap();
    let url = format!("ws://127.0.0.1:{}/ws/connectors", port.trim());
    let pid = child.id();

    // Tokens are signed up front (RSA signing is the slow part, and not the relay's).
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(CONNECTOR_KEY).unwrap();
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    let tokens: Vec<String> = (0..n)
        .map(|i| {
            jsonwebtoken::encode(&header, &claims(&format!("idle-{i}"), "j", 3600), &key).unwrap()
        })
        .collect();
    let base = rss_of(pid);
    let hello = r#"{"type":"HELLO","version":"bench","capabilities":["error","cancel","req-stream","flow","ws","token-rotate"]}"#;
    let t0 = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(256));
    let conns = futures_util::future::join_all(tokens.into_iter().map(|tok| {
        let (url, sem) = (url.clone(), sem.clone());
        async move {
            use tokio_tungstenite::tungstenite::client::IntoClientRequest;
            let _p = sem.acquire().await.unwrap();
            let mut req = url.into_client_request().unwrap();
            req.headers_mut()
                .insert("authorization", format!("Bearer {tok}").parse().unwrap());
            let (mut ws, _) = tokio_tungstenite::connect_async(req)
                .await
                .expect("idle connector connects");
            ws.send(tokio_tungstenite::tungstenite::Message::text(hello))
                .await
                .unwrap();
            ws
        }
    }))
    .await;
    let connect_time = t0.elapsed();
    // Let the relay process the HELLOs, then read its RSS (poll until it stops rising).
    let mut last = 0;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = rss_of(pid);
        if now == last {
            break;
        }
        last = now;
    }
    let grown = rss_of(pid).saturating_sub(base);
    println!(
        "\n{:<44} {:>14}",
        format!("relay RSS per idle connector ({n} connected)"),
        format!("{:.1} KiB", grown as f64 / n as f64 / 1024.0)
    );
    println!(
        "{:<44} {:>14}",
        "relay RSS, total with them",
        format!("{:.1} MiB", rss_of(pid) as f64 / MB)
    );
    println!(
        "{:<44} {:>14}",
        format!("time to connect {n} connectors"),
        format!("{:.1} s", connect_time.as_secs_f64())
    );
    drop(conns);
    drop(child.stdin.take());
    let _ = child.wait();
}
