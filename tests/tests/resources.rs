//! Big bodies and head-of-line blocking. The memory bounds are in the `memory_*` test
//! binaries, one test each, so no other test's allocations are counted.

use bytes::Bytes;
use ponte_core::Router;
use ponte_tests::*;
use sha2::Digest;
use std::time::{Duration, Instant};

const MB: u64 = 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mb_body_arrives_byte_for_byte() {
    let s = Stack::start().await;
    let n = 200 * MB;
    let mut req = s.get(&format!("/bytes/{n}?seed=9"));
    req.timeout = Duration::from_secs(30);
    let resp = s.relay.relay.send(CID, req).await.unwrap();
    assert_eq!(
        resp.headers.get("content-length"),
        Some(n.to_string().as_str())
    );
    let mut body = resp.body;
    let mut h = sha2::Sha256::new();
    let mut len = 0u64;
    let t0 = Instant::now();
    while let Some(c) = body.chunk().await {
        let c = c.unwrap();
        len += c.len() as u64;
        h.update(&c);
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "200 MB through the tunnel in {secs:.2} s ({:.0} MB/s)",
        n as f64 / 1e6 / secs
    );
    assert_eq!(len, n);
    assert_eq!(hex(&h.finalize()), sha256_hex(pattern_chunks(n, 9)));
}

/// While a 200 MB download streams on a connector, small requests on the same connector
/// are not queued behind it — neither when its reader is fast nor when it stalls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_requests_are_not_held_behind_a_big_download() {
    let s = Stack::start().await;
    let router = s.relay.relay.clone();
    let big = router
        .send(CID, s.get(&format!("/bytes/{}", 200 * MB)))
        .await
        .unwrap();
    let mut big_body = big.body;
    // Fast reader in the background.
    let reader = tokio::spawn(async move {
        let mut n = 0u64;
        while let Some(c) = big_body.chunk().await {
            n += c.unwrap().len() as u64;
        }
        n
    });
    let mut lat = Vec::new();
    for _ in 0..50 {
        let t0 = Instant::now();
        let r = router.send(CID, s.get("/hello")).await.unwrap();
        assert_eq!(
            r.body.collect(64).await.unwrap(),
            Bytes::from_static(b"hello")
        );
        lat.push(t0.elapsed());
    }
    let big_still_running = !reader.is_finished();
    lat.sort();
    let (p50, p99) = (lat[lat.len() / 2], lat[lat.len() * 99 / 100]);
    println!("small request during a 200 MB download: p50 {p50:?}, max {p99:?} (download still running: {big_still_running})");
    assert!(
        p99 < Duration::from_millis(500),
        "small requests waited behind the download: {p99:?}"
    );
    assert_eq!(reader.await.unwrap(), 200 * MB);

    // Stalled reader: its window fills and it stops; others still flow.
    let stalled = router
        .send(CID, s.get(&format!("/bytes/{}", 200 * MB)))
        .await
        .unwrap();
    for _ in 0..10 {
        let t0 = Instant::now();
        let r = router.send(CID, s.get("/hello")).await.unwrap();
        assert_eq!(
            r.body.collect(64).await.unwrap(),
            Bytes::from_static(b"hello")
        );
        assert!(t0.elapsed() < Duration::from_millis(500));
    }
    drop(stalled);
}
