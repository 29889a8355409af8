//! A connector that stops reading its socket while a browser sends on a device WebSocket:
//! the frames waiting for it in the cloud are bounded in bytes (4 MiB per connection), not
//! only in number (64 frames of up to 1 MiB each: 64 MiB), so the browser is slowed down
//! (TCP backpressure) instead of buffered. When the connector reads again, every message
//! arrives. One test in a binary of its own, so the RSS is this test's alone (cloud, the
//! hostile connector and the browser all live in this process).

use futures_util::SinkExt;
use ponte_tests::cloud::{Backend, TestCloud};
use ponte_tests::{rss_bytes, RssSampler};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

const MIB: u64 = 1024 * 1024;
/// Messages the browser sends, 500 KiB each (100 MB in all): more than every socket
/// buffer and queue on the way can hold, so the sender must stall.
const MESSAGES: usize = 200;
const MESSAGE: usize = 500 * 1024;
/// Peak RSS growth while the connector does not read, measured on the 2-core machine
/// (debug build): 5.3 MiB, the browser stalled after 45 messages. With the queue bounded
/// by count alone (64 frames) it measured 31.3 MiB, stalled after 95, and failed.
const BOUND: u64 = 16 * MIB;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_that_stops_reading_slows_the_browser_down_instead_of_filling_memory() {
    let cloud = TestCloud::start(Backend::Sqlite).await;
    cloud
        .add_equipment(2, 100, "http://127.0.0.1:9", true)
        .await;
    let mut peer = cloud.hostile_connector(2, &["ws", "bin"]).await;
    let (sid, url) = cloud.remote_session(7, 2, 100).await;
    let grant = cloud.launch(&url).await;

    let (mut browser, _) = cloud.device_websocket(&mut peer, &sid, &grant).await;

    // Warm up the allocator and the path with a few messages read at once.
    for _ in 0..4 {
        browser
            .send(Message::binary(vec![0u8; MESSAGE]))
            .await
            .unwrap();
    }
    let binary = peer.binary.clone();
    ponte_tests::wait_until(Duration::from_secs(10), || {
        binary.0.load(Ordering::SeqCst) == 4
    })
    .await;

    peer.pause_reading();
    let before = rss_bytes();
    let sampler = RssSampler::start();
    let sent = Arc::new(AtomicUsize::new(0));
    let sender = tokio::spawn({
        let sent = sent.clone();
        async move {
            for i in 0..MESSAGES {
                browser
                    .send(Message::binary(vec![i as u8; MESSAGE]))
                    .await
                    .unwrap();
                sent.fetch_add(1, Ordering::SeqCst);
            }
            browser
        }
    });
    // Backed up: the browser's sends make no progress for a second (the socket buffers
    // and the cloud's queue are full).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = (usize::MAX, Instant::now());
    loop {
        let n = sent.load(Ordering::SeqCst);
        if n != last.0 {
            last = (n, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(1) {
            break;
        }
        assert!(Instant::now() < deadline, "the sender never stalled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stalled_at = sent.load(Ordering::SeqCst);
    let growth = sampler.peak().saturating_sub(before);
    println!(
        "connector not reading: browser stalled after {stalled_at} of {MESSAGES} messages, \
         peak RSS growth {:.2} MiB (bound {:.2})",
        growth as f64 / MIB as f64,
        BOUND as f64 / MIB as f64,
    );
    assert!(
        stalled_at < MESSAGES,
        "the browser was never slowed down: everything was buffered"
    );
    assert!(growth < BOUND, "RSS grew {growth} bytes");

    // Nothing lost: once the connector reads again, every message arrives, whole.
    peer.resume_reading();
    let browser = tokio::time::timeout(Duration::from_secs(60), sender)
        .await
        .expect("the browser's sends finish once the connector reads")
        .unwrap();
    ponte_tests::wait_until(Duration::from_secs(30), || {
        binary.0.load(Ordering::SeqCst) == 4 + MESSAGES
    })
    .await;
    // Each binary WS_MESSAGE frame is the message plus a small header.
    let bytes = binary.1.load(Ordering::SeqCst);
    let payload = (4 + MESSAGES) * MESSAGE;
    assert!(
        bytes >= payload && bytes < payload + (4 + MESSAGES) * 256,
        "{bytes} bytes in binary frames for {payload} bytes of messages"
    );
    drop(browser);
}
