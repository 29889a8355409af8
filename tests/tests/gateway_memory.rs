//! Memory through the gateway: a 500 MB download and a 50 MB HTML page (rewritten as it
//! streams) keep the process's RSS growth within 4x what was measured. One test in its own binary, so
//! no other test's allocations are counted. The process holds the whole path: gateway,
//! API, relay, connector, the device and the client.

use futures_util::StreamExt;
use ponte_devsim::Devsim;
use ponte_tests::cloud::{Backend, TestCloud};
use ponte_tests::{rss_bytes, RssSampler};
use std::time::Instant;

const MB: u64 = 1_000_000;
const MIB: u64 = 1024 * 1024;
/// Peak RSS growth measured on the 2-core machine (debug build, three runs, other builds
/// running): the download 0.7 to 1.6 MiB, the page 0.4 to 2.4 MiB, rounded up. Each bound
/// is four times its figure.
const DOWNLOAD_MEASURED: u64 = 2 * MIB;
const PAGE_MEASURED: u64 = 3 * MIB;

/// Reads a response to the end without keeping it: (bytes, times `needle` was seen in
/// the first 1 MB).
async fn drain(resp: reqwest::Response, needle: &[u8]) -> (u64, usize) {
    let mut total = 0u64;
    let mut head = Vec::new();
    let mut body = resp.bytes_stream();
    while let Some(c) = body.next().await {
        let c = c.unwrap();
        if head.len() < 1 << 20 {
            head.extend_from_slice(&c[..c.len().min((1 << 20) - head.len())]);
        }
        total += c.len() as u64;
    }
    let hits = match needle.len() {
        0 => 0,
        n => head.windows(n).filter(|w| *w == needle).count(),
    };
    (total, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_downloads_and_pages_through_the_gateway_keep_memory_flat() {
    let cloud = TestCloud::start(Backend::Sqlite).await;
    let sim = Devsim::spawn("Catraca Entrada").await.unwrap();
    cloud.add_equipment(2, 100, &sim.base_url(), true).await;
    let _paired = cloud.pair_connector(2).await;
    let (sid, url) = cloud.remote_session(7, 2, 100).await;
    let grant = cloud.launch(&url).await;
    let prefix = format!("/remote/s/{sid}/");
    let http = reqwest::Client::new();
    let get = |path: String| {
        http.get(format!("http://{}{prefix}{path}", cloud.gateway_addr))
            .header("cookie", grant.clone())
            .send()
    };
    // Warm up every part of the path once (pools, buffers, lol_html) before measuring.
    for path in ["download?bytes=4000000", "big.html?bytes=4000000"] {
        let resp = get(path.into()).await.unwrap();
        assert_eq!(resp.status(), 200);
        drain(resp, b"").await;
    }

    let before = rss_bytes();
    let sampler = RssSampler::start();
    let t0 = Instant::now();
    let resp = get(format!("download?bytes={}", 500 * MB)).await.unwrap();
    assert_eq!(resp.status(), 200);
    let (got, _) = drain(resp, b"").await;
    assert_eq!(got, 500 * MB);
    let bin_growth = sampler.peak().saturating_sub(before);
    let bin_secs = t0.elapsed().as_secs_f64();

    let before = rss_bytes();
    let sampler = RssSampler::start();
    let t0 = Instant::now();
    let resp = get(format!("big.html?bytes={}", 50 * MB)).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("content-length").is_none());
    let link = format!("href=\"{prefix}pt_BR/html/about.html\"");
    let (got, links) = drain(resp, link.as_bytes()).await;
    // Every link was rewritten: the page grew by the prefix each time.
    assert!(links > 4000, "{links} rewritten links in the first MB");
    assert!(got > 50 * MB, "{got}");
    let html_growth = sampler.peak().saturating_sub(before);
    let html_secs = t0.elapsed().as_secs_f64();

    println!(
        "500 MB download: {:.1} s, peak RSS growth {:.1} MiB; 50 MB HTML (rewritten to {:.1} MB): {:.1} s, peak RSS growth {:.1} MiB",
        bin_secs,
        bin_growth as f64 / 1048576.0,
        got as f64 / 1e6,
        html_secs,
        html_growth as f64 / 1048576.0,
    );
    assert!(
        bin_growth < 4 * DOWNLOAD_MEASURED,
        "download grew RSS by {bin_growth} bytes"
    );
    assert!(
        html_growth < 4 * PAGE_MEASURED,
        "HTML page grew RSS by {html_growth} bytes"
    );
}
