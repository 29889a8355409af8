//! Memory under a WebSocket flood: 20 device WebSockets through the gateway that the
//! browser never reads, flooded with 512 KiB messages for 10 s by a hostile connector
//! (binary WS_MESSAGE frames as fast as the socket takes them). The cloud closes each
//! stream (1008/1013) once its byte budget is held instead of queueing, RSS growth stays
//! under 64 MiB, and another tenant's proxy-http latency is not hurt. One test in its own
//! binary, so its RSS is the cloud's plus the test's own small clients.

use futures_util::StreamExt;
use ponte_protocol::{ConnectorMsg, WsMessage};
use ponte_tests::cloud::{Backend, TestCloud};
use ponte_tests::origin::Origin;
use ponte_tests::{rss_bytes, RssSampler};
use serde_json::json;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

const MIB: f64 = 1024.0 * 1024.0;
const LIMIT: u64 = 64 * 1024 * 1024;
const STREAMS: usize = 20;
const FLOOD: Duration = Duration::from_secs(10);

/// Median of proxy-http round trips to tenant 3's device, sampled until `until` (and at
/// least `min` times): (p50, samples).
async fn p50(cloud: &TestCloud, token: &str, min: usize, until: Instant) -> (Duration, usize) {
    let mut took = Vec::new();
    while took.len() < min || Instant::now() < until {
        let t0 = Instant::now();
        let (s, _, b) = cloud
            .call(
                "POST",
                "/api/instituicao/3/equipamento/300/proxy-http",
                Some(token),
                Some(json!({"method": "GET", "path": "/hello"})),
            )
            .await;
        took.push(t0.elapsed());
        assert_eq!(s, 200, "{b}");
    }
    took.sort();
    (took[took.len() / 2], took.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_websockets_flooded_by_a_connector_are_closed_and_memory_stays_bounded() {
    // The probe calls back to back: no rate limit of its connector in the way.
    let cloud = TestCloud::start_with(Backend::Sqlite, |o| {
        o.api.rate_limits.connector = ponte_api::ratelimit::Rate::UNLIMITED;
    })
    .await;
    // Another tenant, on its own connector and device: the latency probe.
    let origin = Origin::spawn().await;
    cloud.add_equipment(3, 300, &origin.base_url(), true).await;
    let _other = cloud.pair_connector(3).await;
    let other = cloud.user_token(9, &[3], false);
    // The attacker's tenant: a hostile connector behind equipment 100.
    cloud
        .add_equipment(2, 100, "http://127.0.0.1:9", true)
        .await;
    let mut peer = cloud.hostile_connector(2, &["ws"]).await;
    let (sid, url) = cloud.remote_session(7, 2, 100).await;
    let grant = cloud.launch(&url).await;

    // 20 WebSockets the browser never reads.
    let mut clients = Vec::new();
    let mut streams = Vec::new();
    for _ in 0..STREAMS {
        let (ws, stream_id) = cloud.device_websocket(&mut peer, &sid, &grant).await;
        clients.push(ws);
        streams.push(stream_id);
    }
    // One 512 KiB message per stream, encoded once (binary frames, no base64).
    let payload = bytes::Bytes::from(vec![0x5a; 512 * 1024]);
    let frames: Vec<bytes::Bytes> = streams
        .iter()
        .map(|id| {
            ponte_protocol::binary::encode_connector(&ConnectorMsg::WsMessage(WsMessage {
                stream_id: id.clone(),
                text: None,
                data: Some(payload.clone()),
            }))
            .unwrap()
        })
        .collect();

    // Idle latency of the other tenant, after a warm-up.
    p50(&cloud, &other, 20, Instant::now()).await;
    let (idle, idle_n) = p50(&cloud, &other, 200, Instant::now()).await;

    let before = rss_bytes();
    let sampler = RssSampler::start();
    let flood = {
        let tx = peer.tx.clone();
        tokio::spawn(async move {
            let end = Instant::now() + FLOOD;
            let mut sent = 0u64;
            // 10 MiB per round, 10 rounds a second: 1 GiB over the flood, 64x the
            // connection's budget and more than the old per-message queues held (640 MiB).
            // Paced so that the hostile connector, which shares this machine's two cores
            // with the cloud, does not turn the latency check into a CPU contest.
            let mut pace = tokio::time::interval(Duration::from_millis(100));
            'flood: while Instant::now() < end {
                pace.tick().await;
                for f in &frames {
                    if tx.send(Message::Binary(f.clone())).await.is_err() {
                        break 'flood;
                    }
                    sent += 1;
                }
            }
            sent
        })
    };
    let (busy, busy_n) = p50(&cloud, &other, 200, Instant::now() + FLOOD).await;
    let sent = flood.await.unwrap();
    let peak = sampler.peak();
    let growth = peak.saturating_sub(before);
    let after = rss_bytes();

    // Every stream was closed by the cloud for not keeping up, and the connector told.
    let mut closed = std::collections::HashMap::new();
    while closed.len() < STREAMS {
        let m = tokio::time::timeout(Duration::from_secs(10), peer.requests.recv())
            .await
            .expect("a WS_CLOSE for every stream")
            .unwrap();
        if m["type"] == "WS_CLOSE" {
            closed.insert(
                m["streamId"].as_str().unwrap().to_owned(),
                m["code"].as_u64().unwrap(),
            );
        }
    }
    // The browser, reading at last, gets what was held for it and then the close.
    let mut codes = Vec::new();
    let mut delivered = 0u64;
    for mut ws in clients {
        let code = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Close(c))) => break c.map(|c| u16::from(c.code)),
                    Some(Ok(m)) => delivered += m.len() as u64,
                    other => panic!("expected a close frame, got {other:?}"),
                }
            }
        })
        .await
        .expect("the close reaches the browser");
        codes.push(code);
    }

    eprintln!(
        "ws flood: {STREAMS} unread streams, {sent} messages of 512 KiB sent ({:.0} MiB) in {} s; \
         RSS before {:.1} MiB, peak {:.1} MiB (growth {:.1} MiB), after {:.1} MiB; \
         {:.1} MiB reached the browsers; closes to the connector {:?}, to the browsers {:?}; \
         other tenant's proxy-http p50 idle {:.2} ms ({idle_n} calls), during the flood {:.2} ms ({busy_n} calls)",
        sent as f64 * 0.5,
        FLOOD.as_secs(),
        before as f64 / MIB,
        peak as f64 / MIB,
        growth as f64 / MIB,
        after as f64 / MIB,
        delivered as f64 / MIB,
        closed.values().collect::<std::collections::BTreeSet<_>>(),
        codes.iter().collect::<std::collections::BTreeSet<_>>(),
        idle.as_secs_f64() * 1e3,
        busy.as_secs_f64() * 1e3,
    );
    assert!(
        sent > 4 * STREAMS as u64 * 2,
        "the flood was real: {sent} messages"
    );
    assert!(growth < LIMIT, "the flood grew RSS by {growth} bytes");
    assert!(
        closed.values().all(|c| *c == 1008 || *c == 1013),
        "{closed:?}"
    );
    assert!(
        codes.iter().all(|c| matches!(c, Some(1008 | 1013))),
        "{codes:?}"
    );
    assert!(
        busy <= idle * 2,
        "the other tenant's p50 went from {idle:?} to {busy:?}"
    );
}
