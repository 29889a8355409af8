//! End-to-end behaviour of the tunnel: relay + real connector + local origin.

use bytes::Bytes;
use ponte_core::{ProxyRequest, RequestBody, RouteError, Router, WsFrame, WsRequest};
use ponte_tests::*;
use std::time::{Duration, Instant};

fn ws_handshake_status(err: tokio_tungstenite::tungstenite::Error) -> (u16, String) {
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => (
            resp.status().as_u16(),
            String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).into_owned(),
        ),
        e => panic!("expected an HTTP refusal, got {e}"),
    }
}

async fn try_connect(url: &str, auth: Option<&str>) -> Result<(), (u16, String)> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = url.into_client_request().unwrap();
    if let Some(a) = auth {
        req.headers_mut()
            .insert("authorization", a.parse().unwrap());
    }
    tokio_tungstenite::connect_async(req)
        .await
        .map(|_| ())
        .map_err(ws_handshake_status)
}

#[tokio::test]
async fn handshake_refuses_bad_tokens_with_401() {
    let relay = TestRelay::spawn().await;
    let url = relay.ws_url();
    let good = relay.token_for("c1");
    let wrong_key = sign(&claims("c1", "x", 3600), OTHER_KEY);
    relay.directory.set_current("c2", "current");
    let expired = sign(&claims("c2", "current", -3600), CONNECTOR_KEY);
    let stale_jti = sign(&claims("c2", "old", 3600), CONNECTOR_KEY);
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("missing header", None, "missing"),
        ("not bearer", Some("Basic abc".into()), "missing"),
        ("garbage", Some("Bearer not.a.jwt".into()), "invalid"),
        ("wrong key", Some(format!("Bearer {wrong_key}")), "invalid"),
        ("expired", Some(format!("Bearer {expired}")), "expired"),
        (
            "revoked jti",
            Some(format!("Bearer {stale_jti}")),
            "revoked",
        ),
    ];
    for (name, auth, reason) in cases {
        let (status, body) = try_connect(&url, auth.as_deref()).await.expect_err(name);
        assert_eq!(status, 401, "{name}");
        assert!(body.contains(reason), "{name}: {body}");
        assert!(body.contains(r#""code":"UNAUTHORIZED""#), "{name}: {body}");
    }
    try_connect(&url, Some(&format!("Bearer {good}")))
        .await
        .expect("valid token connects");
    assert!(!relay.relay.is_online("c2"));
}

#[tokio::test]
async fn repeated_headers_and_status_pass_through() {
    let s = Stack::start().await;
    let resp = s.relay.relay.send(CID, s.get("/cookies")).await.unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.headers.get_all("set-cookie").collect::<Vec<_>>(),
        ["a=1; Path=/", "b=2; HttpOnly"]
    );
    assert_eq!(
        resp.body.collect(1024).await.unwrap(),
        Bytes::from_static(b"cookies")
    );
    let resp = s.relay.relay.send(CID, s.get("/status/418")).await.unwrap();
    assert_eq!(resp.status, 418);
}

#[tokio::test]
async fn request_headers_reach_the_device_without_hop_by_hop_or_expect() {
    let s = Stack::start().await;
    let mut req = s.get("/echo");
    req.method = "POST".into();
    req.headers.append("X-Custom", "1");
    req.headers.append("X-Custom", "2");
    req.headers.append("Connection", "x-secret-hop");
    req.headers.append("X-Secret-Hop", "no");
    req.headers.append("Expect", "100-continue");
    req.headers.append("Host", "evil.example");
    req.body = RequestBody::Full(Bytes::from_static("olá".as_bytes()));
    let resp = s.relay.relay.send(CID, req).await.unwrap();
    let v: serde_json::Value =
        serde_json::from_slice(&resp.body.collect(1 << 20).await.unwrap()).unwrap();
    let h = s.origin.stats.last_headers.lock().unwrap().clone().unwrap();
    assert_eq!(h.get_all("x-custom").iter().collect::<Vec<_>>(), ["1", "2"]);
    assert!(h.get("expect").is_none() && h.get("x-secret-hop").is_none());
    assert_eq!(h.get("host").unwrap(), &s.origin.addr.to_string());
    assert_eq!(v["body"], "olá");
}

#[tokio::test]
async fn hundred_concurrent_requests_on_one_connector_all_complete() {
    let s = Stack::start().await;
    let router = s.relay.relay.clone();
    let base = s.origin.base_url();
    let tasks = (0..100u64).map(|i| {
        let router = router.clone();
        let base = base.clone();
        tokio::spawn(async move {
            let req =
                ProxyRequest::new(base, "GET", format!("/bytes/{}?seed={i}", 20_000 + i * 100));
            let resp = router.send(CID, req).await.unwrap();
            let body = resp.body.collect(1 << 20).await.unwrap();
            assert_eq!(
                sha256_hex([body]),
                sha256_hex(pattern_chunks(20_000 + i * 100, i)),
                "request {i}"
            );
        })
    });
    for t in futures_util::future::join_all(tasks).await {
        t.unwrap();
    }
}

/// A download read as fast as it comes grows its window (the 256 KiB window would cap it
/// at ~0.65x of nginx on loopback) out of the connection's growth budget, and gives the
/// growth back once it has ended and been read (or dropped), so the budget bounds what
/// fast streams that stop reading hold, ended or not.
#[tokio::test]
async fn a_fast_download_grows_its_window_and_gives_the_growth_back() {
    const N: usize = 32 * 1024 * 1024;
    let s = Stack::start().await;
    assert_eq!(s.relay.relay.window_growth(CID), Some(0));
    let resp = s
        .relay
        .relay
        .send(CID, s.get(&format!("/bytes/{N}?seed=5")))
        .await
        .unwrap();
    let mut body = resp.body;
    let (mut got, mut grown) = (Vec::with_capacity(N), 0);
    // Read all but the last 128 KiB: that fits in the window, so the connector sends it
    // and the END without more credit, and the stream leaves the relay's table.
    let tail = 128 * 1024;
    while got.len() < N - tail {
        let c = body.chunk().await.expect("the body ends after its tail");
        got.extend_from_slice(&c.unwrap());
        grown = grown.max(s.relay.relay.window_growth(CID).unwrap());
    }
    let relay = s.relay.relay.clone();
    wait_until(Duration::from_secs(5), move || {
        relay.streams_in_flight() == 0
    })
    .await;
    assert!(
        s.relay.relay.window_growth(CID).unwrap() > 0,
        "an ended stream whose data is still unread gave its growth back: streams that \
         end unread could then hold more than the budget"
    );
    while let Some(c) = body.chunk().await {
        got.extend_from_slice(&c.unwrap());
    }
    assert_eq!(
        sha256_hex([Bytes::from(got)]),
        sha256_hex(pattern_chunks(N as u64, 5))
    );
    assert!(
        grown > 0,
        "the window of a download read at full speed never grew"
    );
    let limit =
        (ponte_protocol::limits::MAX_TUNED_WINDOW - ponte_protocol::limits::INITIAL_WINDOW) as u64;
    assert!(
        grown <= limit,
        "one stream grew {grown} bytes, past its {limit}"
    );
    drop(body);
    let relay = s.relay.relay.clone();
    wait_until(Duration::from_secs(5), move || {
        relay.window_growth(CID) == Some(0)
    })
    .await;
}

#[tokio::test]
async fn dropping_the_body_stops_the_device_download_within_a_second() {
    let s = Stack::start().await;
    let resp = s
        .relay
        .relay
        .send(CID, s.get("/bytes/209715200"))
        .await
        .unwrap();
    let mut body = resp.body;
    let first = body.chunk().await.unwrap().unwrap();
    assert!(!first.is_empty());
    let stats = s.origin.stats.clone();
    let aborted = stats.body_event.notified();
    tokio::pin!(aborted);
    aborted.as_mut().enable();
    let t0 = Instant::now();
    drop(body);
    tokio::time::timeout(Duration::from_secs(1), aborted)
        .await
        .expect("origin saw its connection closed within 1 s");
    println!(
        "origin connection closed {:?} after the caller dropped the body",
        t0.elapsed()
    );
    assert_eq!(
        stats
            .aborted_bodies
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    assert_eq!(
        stats
            .finished_bodies
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

#[tokio::test]
async fn silent_origin_times_out_with_504() {
    let s = Stack::start().await;
    let mut req = s.get("/silent");
    req.timeout = Duration::from_millis(300);
    let t0 = Instant::now();
    let err = s.relay.relay.send(CID, req).await.err().unwrap();
    assert_eq!(err, RouteError::Timeout);
    assert_eq!(err.status(), 504);
    assert!(
        t0.elapsed() >= Duration::from_millis(300) && t0.elapsed() < Duration::from_secs(3),
        "{:?}",
        t0.elapsed()
    );
}

/// Once the head has come, the body is bounded by the idle timeout between chunks: a
/// device that sends part of its body and then stalls ends the stream with 504 after
/// `idle_timeout` of silence, long before `timeout` (the head's bound) would, and the
/// relay lets the stream go.
#[tokio::test]
async fn a_body_that_stalls_between_chunks_ends_after_the_idle_timeout() {
    const IDLE: Duration = Duration::from_millis(300);
    const HEAD: Duration = Duration::from_secs(10);
    const SENT: usize = 16 * 1024;
    let s = Stack::start().await;
    let mut req = s.get(&format!("/bytes-then-hold/{SENT}"));
    req.timeout = HEAD;
    req.idle_timeout = IDLE;
    let resp = s.relay.relay.send(CID, req).await.unwrap();
    assert_eq!(resp.status, 200);
    let mut body = resp.body;
    let mut got = 0;
    let mut last = Instant::now();
    let ended = tokio::time::timeout(HEAD, async {
        loop {
            match body.chunk().await {
                Some(Ok(c)) => {
                    got += c.len();
                    last = Instant::now();
                }
                Some(Err(e)) => break e,
                None => panic!("a stalled body must not look complete"),
            }
        }
    })
    .await;
    let err = ended.expect("the idle timeout, not the head's, ends a stalled body");
    let silent = last.elapsed();
    assert_eq!((err.clone(), err.status()), (RouteError::Timeout, 504));
    assert_eq!(got, SENT);
    assert!(silent >= IDLE, "ended after {silent:?} of silence");
    wait_until(Duration::from_secs(5), || {
        s.relay.relay.streams_in_flight() == 0
    })
    .await;
    s.origin.stats.gate.add_permits(1);
}

#[tokio::test]
async fn refused_connection_is_502_connect_failed() {
    let s = Stack::start().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let req = ProxyRequest::new(format!("http://{closed}"), "GET", "/");
    let err = s.relay.relay.send(CID, req).await.err().unwrap();
    assert!(matches!(err, RouteError::ConnectFailed(_)), "{err:?}");
    assert_eq!((err.status(), err.code()), (502, "CONNECT_FAILED"));
}

#[tokio::test]
async fn targets_outside_the_allowlist_are_refused_before_connecting() {
    let relay = TestRelay::spawn().await;
    let allowed = origin::Origin::spawn().await;
    let other = origin::Origin::spawn().await;
    let token = relay.token_for(CID);
    let c = spawn_connector(connector_config(
        &relay.ws_url(),
        &token,
        Some(vec![allowed.addr.to_string()]),
    ))
    .await;
    relay.wait_online(CID).await;
    let ok = relay
        .relay
        .send(CID, ProxyRequest::new(allowed.base_url(), "GET", "/hello"))
        .await
        .unwrap();
    assert_eq!(ok.status, 200);

    let health = c.handle.health_addr.unwrap();
    for base in [
        other.base_url(),
        format!("http://{health}"),
        "http://169.254.169.254".into(),
        format!("http://localhost:{}", other.addr.port()),
    ] {
        let err = relay
            .relay
            .send(CID, ProxyRequest::new(base.clone(), "GET", "/"))
            .await
            .err()
            .unwrap();
        assert!(
            matches!(err, RouteError::TargetForbidden(_)),
            "{base}: {err:?}"
        );
        assert_eq!(err.status(), 403);
    }
    assert_eq!(
        other
            .stats
            .accepted
            .load(std::sync::atomic::Ordering::SeqCst),
        0,
        "no connection was attempted"
    );
}

#[tokio::test]
async fn the_health_port_is_forbidden_even_under_the_default_policy() {
    let s = Stack::start().await;
    let health = s.connector.handle.health_addr.unwrap();
    let err = s
        .relay
        .relay
        .send(
            CID,
            ProxyRequest::new(format!("http://{health}"), "GET", "/health"),
        )
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&err, RouteError::TargetForbidden(m) if m.contains("health")),
        "{err:?}"
    );
    // And it answers locally.
    let v: serde_json::Value = reqwest::get(format!("http://{health}/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["connected"], true);
    assert_eq!(v["relayUrl"], s.relay.ws_url());
}

#[tokio::test]
async fn absent_connector_fails_at_once() {
    let relay = TestRelay::spawn().await;
    let t0 = Instant::now();
    let err = relay
        .relay
        .send(
            "nobody",
            ProxyRequest::new("http://127.0.0.1:1", "GET", "/"),
        )
        .await
        .err()
        .unwrap();
    assert_eq!(err, RouteError::Offline);
    assert_eq!(err.status(), 502);
    assert!(t0.elapsed() < Duration::from_millis(100));
}

#[tokio::test]
async fn websocket_passthrough_echoes_text_and_binary() {
    let s = Stack::start().await;
    let req = WsRequest::new(s.origin.base_url(), "/ws");
    let mut ws = s.relay.relay.open_ws(CID, req).await.unwrap();
    ws.send(WsFrame::Text("olá".into())).await.unwrap();
    assert_eq!(ws.recv().await, Some(WsFrame::Text("echo:olá".into())));
    ws.send(WsFrame::Binary(Bytes::from_static(&[0, 1, 255])))
        .await
        .unwrap();
    assert_eq!(
        ws.recv().await,
        Some(WsFrame::Binary(Bytes::from_static(&[0, 1, 255])))
    );
    ws.send(WsFrame::Close {
        code: Some(1000),
        reason: None,
    })
    .await
    .unwrap();

    // A WebSocket to a port with nothing listening fails cleanly.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let bad = WsRequest::new(format!("http://{closed}"), "/ws");
    assert!(s.relay.relay.open_ws(CID, bad).await.is_err());
    // The connection still serves HTTP.
    assert_eq!(
        s.relay
            .relay
            .send(CID, s.get("/hello"))
            .await
            .unwrap()
            .status,
        200
    );
}

#[tokio::test]
async fn token_rotation_reaches_the_connector() {
    let s = Stack::start().await;
    let new = s.relay.token_for(CID);
    assert!(s.relay.relay.rotate_token(CID, new.clone(), None));
    let shared = s.connector.handle.shared.clone();
    wait_until(Duration::from_secs(5), || {
        shared.token.lock().unwrap().expose() == new
    })
    .await;
}

#[tokio::test]
async fn disconnect_closes_the_socket_and_the_connector_comes_back() {
    let s = Stack::start().await;
    assert!(s.relay.relay.disconnect(CID, "token renewed"));
    // The connector reconnects with the same (still current) token: watch the events,
    // a poll of is_online could miss the short offline moment.
    let dir = s.relay.directory.clone();
    let count = move |disconnected: bool| {
        dir.events()
            .iter()
            .filter(|e| match e {
                ponte_core::connector::ConnectorEvent::Disconnected { .. } => disconnected,
                ponte_core::connector::ConnectorEvent::Connected { .. } => !disconnected,
                _ => false,
            })
            .count()
    };
    // A second Connected means the connector saw its socket closed and came back; the
    // one socket closed is one Disconnected (it may be recorded after the new Connected).
    wait_until(Duration::from_secs(5), || {
        count(false) == 2 && count(true) == 1
    })
    .await;
    s.relay.wait_online(CID).await;
    let relay = &s.relay.relay;
    assert_eq!(relay.send(CID, s.get("/hello")).await.unwrap().status, 200);
    assert_eq!(
        (count(false), count(true)),
        (2, 1),
        "one disconnect, one reconnect"
    );
}

#[tokio::test]
async fn https_devices_with_self_signed_certificates_need_tls_insecure() {
    let relay = TestRelay::spawn().await;
    let device = origin::Origin::spawn_tls().await;
    let token = relay.token_for(CID);
    let _c = spawn_connector(connector_config(&relay.ws_url(), &token, None)).await;
    relay.wait_online(CID).await;
    let base = format!("https://{}", device.addr);
    let err = relay
        .relay
        .send(CID, ProxyRequest::new(base.clone(), "GET", "/hello"))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&err, RouteError::ConnectFailed(m) if m.contains("certificate")),
        "{err:?}"
    );
    let mut req = ProxyRequest::new(base, "GET", "/hello");
    req.tls_insecure = true;
    let resp = relay.relay.send(CID, req).await.unwrap();
    assert_eq!(
        resp.body.collect(64).await.unwrap(),
        Bytes::from_static(b"hello")
    );
}

/// A device that accepts TCP and never answers the TLS hello (a stuck embedded stack,
/// plain HTTP on 443) fails at the connector's 10 s connect timeout, DNS to handshake,
/// not at the request's far later deadline.
#[tokio::test]
async fn a_device_that_never_finishes_the_tls_handshake_times_out_at_connect() {
    let relay = TestRelay::spawn().await;
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((tcp, _)) = silent.accept().await {
            open.push(tcp); // held open, never a byte written
        }
    });
    let token = relay.token_for(CID);
    let _c = spawn_connector(connector_config(&relay.ws_url(), &token, None)).await;
    relay.wait_online(CID).await;
    let mut req = ProxyRequest::new(format!("https://{addr}"), "GET", "/hello");
    req.tls_insecure = true;
    req.timeout = Duration::from_secs(120);
    let started = Instant::now();
    let err = relay.relay.send(CID, req).await.err().unwrap();
    let took = started.elapsed();
    assert_eq!(err.code(), "TIMEOUT", "{err:?}");
    assert!(took < Duration::from_secs(30), "took {took:?}");
    held.abort();
}

#[tokio::test]
async fn per_device_concurrency_is_capped_and_connections_are_pooled() {
    let relay = TestRelay::spawn().await;
    let device = origin::Origin::spawn().await;
    let token = relay.token_for(CID);
    let mut cfg = connector_config(&relay.ws_url(), &token, None);
    cfg.per_target_concurrency = 2;
    let _c = spawn_connector(cfg).await;
    relay.wait_online(CID).await;
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let r = relay.relay.clone();
            let req = ProxyRequest::new(device.base_url(), "GET", "/hold");
            tokio::spawn(async move {
                r.send(CID, req)
                    .await
                    .unwrap()
                    .body
                    .collect(64)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let stats = device.stats.clone();
    wait_until(Duration::from_secs(5), || {
        stats.inflight.load(std::sync::atomic::Ordering::SeqCst) == 2
    })
    .await;
    stats.gate.add_permits(6);
    for c in calls {
        assert_eq!(c.await.unwrap(), Bytes::from_static(b"released"));
    }
    assert_eq!(
        stats.max_inflight.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "never more than the cap at the device"
    );
    for _ in 0..10 {
        let r = relay
            .relay
            .send(CID, ProxyRequest::new(device.base_url(), "GET", "/hello"))
            .await
            .unwrap();
        r.body.collect(64).await.unwrap();
    }
    assert_eq!(
        stats.accepted.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "sequential requests reuse pooled connections"
    );
}

fn http_request(rid: &str, base_url: &str, path: &str) -> tokio_tungstenite::tungstenite::Message {
    let v = serde_json::json!({"type":"HTTP_REQUEST","requestId":rid,"timeoutMs":600_000,
        "target":{"baseUrl":base_url,"method":"GET","path":path,"headers":{},"body":null}});
    tokio_tungstenite::tungstenite::Message::text(v.to_string())
}

/// Requests and WebSockets share the connector's cap, as the relay counts them: with a
/// device WebSocket open, the request that would make `MAX_STREAMS_PER_CONNECTOR + 1`
/// streams is refused with BUSY. (The connector used to count only requests there.)
#[tokio::test]
async fn an_open_websocket_takes_a_slot_from_requests() {
    use futures_util::SinkExt;
    use ponte_protocol::limits::MAX_STREAMS_PER_CONNECTOR as MAX;
    let device = origin::Origin::spawn().await;
    let (mut relay, _stop, _session) = connector_session(connector_shared(None), 1 << 20).await;
    assert_eq!(next_json(&mut relay).await["type"], "HELLO");
    let ws = serde_json::json!({"type":"WS_OPEN","streamId":"ws-1",
        "target":{"baseUrl":device.base_url(),"path":"/ws","headers":{}}});
    relay
        .send(tokio_tungstenite::tungstenite::Message::text(
            ws.to_string(),
        ))
        .await
        .unwrap();
    let opened = next_json(&mut relay).await;
    assert_eq!(opened["type"], "WS_OPENED", "{opened}");
    for i in 0..MAX - 1 {
        relay
            .feed(http_request(&format!("r-{i}"), &device.base_url(), "/hold"))
            .await
            .unwrap();
    }
    relay
        .send(http_request("one-too-many", &device.base_url(), "/hold"))
        .await
        .unwrap();
    let busy = tokio::time::timeout(Duration::from_secs(10), next_json(&mut relay))
        .await
        .expect("the request past the cap is answered at once");
    assert_eq!(
        (busy["requestId"].as_str(), busy["code"].as_str()),
        (Some("one-too-many"), Some("BUSY")),
        "{busy}"
    );
}

/// DNS rebinding: a name that passes the pre-check (it resolves to 127.0.0.1, allowed)
/// and then resolves to 127.0.0.2 (denied) when the HTTP client connects. The client's
/// resolver filters again, so the request fails with TARGET_FORBIDDEN and nothing
/// reaches the device listening on 127.0.0.2. The lookups are a stand-in (never the
/// system's DNS); everything is loopback.
#[tokio::test]
async fn dns_rebinding_to_a_denied_address_is_refused_by_the_device_resolver() {
    use futures_util::SinkExt;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let denied = origin::Origin::serve(tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap());
    let port = denied.addr.port();
    let lookups = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&lookups);
    let rebinding: ponte_connector::exec::Lookup = Arc::new(move |host: String| {
        let n = seen.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            assert_eq!(host, "localhost", "only the test's name is looked up");
            // First answer (the pre-check): allowed; every later one: denied.
            let ip: std::net::IpAddr = if n == 0 {
                [127, 0, 0, 1]
            } else {
                [127, 0, 0, 2]
            }
            .into();
            Ok(vec![ip])
        })
    });
    let mut shared = connector_shared(Some(vec!["127.0.0.1".into()]));
    shared.exec = shared.exec.with_lookup(rebinding);
    let (mut relay, _stop, _session) = connector_session(shared, 1 << 20).await;
    assert_eq!(next_json(&mut relay).await["type"], "HELLO");

    // The control: the device on 127.0.0.2 is reachable when the policy allows it,
    // so a request that got through would be seen.
    let mut shared = connector_shared(Some(vec!["127.0.0.0/8".into()]));
    shared.exec = shared.exec.with_lookup(Arc::new(|_| {
        let ip: std::net::IpAddr = [127, 0, 0, 2].into();
        Box::pin(async move { Ok(vec![ip]) })
    }));
    let (mut allowed, _stop2, _session2) = connector_session(shared, 1 << 20).await;
    assert_eq!(next_json(&mut allowed).await["type"], "HELLO");
    let url = format!("http://localhost:{port}");
    allowed
        .send(http_request("ok", &url, "/hello"))
        .await
        .unwrap();
    let start = next_json(&mut allowed).await;
    assert_eq!(
        (start["type"].as_str(), start["statusCode"].as_u64()),
        (Some("HTTP_RESPONSE_START"), Some(200)),
        "{start}"
    );
    assert_eq!(denied.stats.accepted.load(Ordering::SeqCst), 1);

    relay
        .send(http_request("r-1", &url, "/hello"))
        .await
        .unwrap();
    let err = next_json(&mut relay).await;
    assert_eq!(err["type"], "HTTP_RESPONSE_ERROR", "{err}");
    assert_eq!(err["requestId"], "r-1");
    assert_eq!(err["code"], "TARGET_FORBIDDEN", "{err}");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("forbidden by allowed_targets"),
        "{err}"
    );
    assert_eq!(
        lookups.load(Ordering::SeqCst),
        2,
        "looked up by the pre-check and by the client's resolver"
    );
    assert_eq!(
        denied.stats.accepted.load(Ordering::SeqCst),
        1,
        "nothing more reached the denied address"
    );
}

/// The connector holds at most `MAX_STREAMS_PER_CONNECTOR` streams: from a relay that
/// sends more (the relay caps too, so a fake one here), the one past the cap is refused
/// with BUSY at once, an HTTP request and a WebSocket alike, and the others all complete;
/// once they have, the slots are free again.
#[tokio::test]
async fn the_connector_refuses_the_stream_past_its_cap_with_busy() {
    use futures_util::SinkExt;
    use ponte_protocol::limits::MAX_STREAMS_PER_CONNECTOR as MAX;
    let device = origin::Origin::spawn().await;
    let (mut relay, _stop, _session) = connector_session(connector_shared(None), 1 << 20).await;
    assert_eq!(next_json(&mut relay).await["type"], "HELLO");
    for i in 0..MAX {
        relay
            .feed(http_request(&format!("r-{i}"), &device.base_url(), "/hold"))
            .await
            .unwrap();
    }
    relay
        .feed(http_request("one-too-many", &device.base_url(), "/hold"))
        .await
        .unwrap();
    let ws = serde_json::json!({"type":"WS_OPEN","streamId":"ws-too-many",
        "target":{"baseUrl":device.base_url(),"path":"/ws","headers":{}}});
    relay
        .send(tokio_tungstenite::tungstenite::Message::text(
            ws.to_string(),
        ))
        .await
        .unwrap();
    let limit = Duration::from_secs(10);
    let busy = tokio::time::timeout(limit, next_json(&mut relay))
        .await
        .expect("the request past the cap is answered at once");
    assert_eq!(
        (
            busy["type"].as_str(),
            busy["requestId"].as_str(),
            busy["code"].as_str()
        ),
        (
            Some("HTTP_RESPONSE_ERROR"),
            Some("one-too-many"),
            Some("BUSY")
        ),
        "{busy}"
    );
    let closed = tokio::time::timeout(limit, next_json(&mut relay))
        .await
        .expect("the WebSocket past the cap is answered at once");
    assert_eq!(
        (
            closed["type"].as_str(),
            closed["streamId"].as_str(),
            closed["code"].as_u64(),
            closed["error"].as_str()
        ),
        (
            Some("WS_CLOSE"),
            Some("ws-too-many"),
            Some(1013),
            Some("BUSY")
        ),
        "{closed}"
    );

    device.stats.gate.add_permits(MAX);
    let mut ended = std::collections::HashSet::new();
    while ended.len() < MAX {
        let v = next_json(&mut relay).await;
        match v["type"].as_str() {
            Some("HTTP_RESPONSE_START" | "HTTP_RESPONSE_CHUNK") => {}
            Some("HTTP_RESPONSE_END") => assert!(ended.insert(v["requestId"].to_string())),
            _ => panic!("only the held requests' answers, got {v}"),
        }
    }
    relay
        .send(http_request("after", &device.base_url(), "/hello"))
        .await
        .unwrap();
    let start = next_json(&mut relay).await;
    assert_eq!(
        (start["type"].as_str(), start["requestId"].as_str()),
        (Some("HTTP_RESPONSE_START"), Some("after")),
        "{start}"
    );
}

/// TLS to the relay as deployed (`wss://`, TLS terminated in front of the relay): a relay
/// certificate from a private CA is trusted through `relay_ca_file`; without it, or with
/// another CA's file, the handshake is refused and the error says it is the certificate.
#[tokio::test]
async fn wss_to_the_relay_trusts_relay_ca_file_and_refuses_another_ca() {
    let relay = TestRelay::spawn().await;
    let origin = origin::Origin::spawn().await;
    let pki = tls::Pki::generate();
    let front = tls::tls_front(&pki, relay.addr).await;
    let url = format!("wss://127.0.0.1:{}/ws/connectors", front.port());
    let token = relay.token_for(CID);

    for (ca, what) in [
        (None, "web PKI roots only"),
        (Some(&pki.other_ca), "another CA"),
    ] {
        let mut cfg = connector_config(&url, &token, None);
        cfg.relay_ca_file = ca.cloned();
        let shared =
            ponte_connector::Shared::new(cfg, Default::default(), Default::default(), None)
                .unwrap();
        let err = ponte_connector::tunnel::connect(&shared, &url)
            .await
            .err()
            .unwrap_or_else(|| panic!("{what}: connected"))
            .to_string();
        assert!(
            err.contains("invalid peer certificate") && err.contains("relay_ca_file"),
            "{what}: {err}"
        );
    }
    assert!(!relay.relay.is_online(CID));

    let mut cfg = connector_config(&url, &token, None);
    cfg.relay_ca_file = Some(pki.ca.clone());
    let _c = spawn_connector(cfg).await;
    relay.wait_online(CID).await;
    let resp = relay
        .relay
        .send(CID, ProxyRequest::new(origin.base_url(), "GET", "/hello"))
        .await
        .unwrap();
    assert_eq!(
        resp.body.collect(64).await.unwrap(),
        Bytes::from_static(b"hello")
    );
}

/// Two relay nodes sharing one directory, a connector given both URLs and connected to
/// the first, `n` bytes of a download from it under way (the first chunk read), and the
/// first node draining: it has told the connector to move, and the connector is on the
/// second. Returns the nodes, the origin, the connector (stopped by its token), the
/// download's rest and what was read of it.
async fn moved_mid_download(
    n: usize,
) -> (
    TestRelay,
    TestRelay,
    origin::Origin,
    (ponte_connector::Handle, tokio_util::sync::CancellationToken),
    ponte_core::ResponseBody,
    Vec<u8>,
) {
    let a = TestRelay::spawn().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b = TestRelay::spawn_with(listener, Default::default(), a.directory.clone()).await;
    let origin = origin::Origin::spawn().await;
    let token = a.token_for(CID);
    let mut cfg = connector_config(&a.ws_url(), &token, None);
    cfg.relay_urls = vec![a.ws_url(), b.ws_url()];
    let stop = tokio_util::sync::CancellationToken::new();
    let handle = ponte_connector::start(cfg, Default::default(), stop.clone())
        .await
        .unwrap();
    a.wait_online(CID).await;
    let get = ProxyRequest::new(origin.base_url(), "GET", format!("/bytes/{n}?seed=9"));
    let mut body = a.relay.send(CID, get).await.unwrap().body;
    let first = body.chunk().await.unwrap().unwrap().to_vec();
    // The download is held by its reader, mid-way, while the node drains.
    assert_eq!(a.relay.move_connectors(Duration::from_millis(300)), 1);
    let auth = format!("Bearer {token}");
    let refused = try_connect(&a.ws_url(), Some(&auth)).await.unwrap_err();
    assert_eq!(refused.0, 503, "{}", refused.1);
    assert!(refused.1.contains("DRAINING"), "{}", refused.1);
    b.wait_online(CID).await;
    assert!(
        a.relay.is_online(CID),
        "the old connection stays for the download"
    );
    (a, b, origin, (handle, stop), body, first)
}

async fn read_rest(mut body: ponte_core::ResponseBody, mut got: Vec<u8>) -> String {
    while let Some(c) = body.chunk().await {
        got.extend_from_slice(&c.unwrap());
    }
    sha256_hex([Bytes::from(got)])
}

/// A relay node that is stopping moves its connectors: it refuses new connector
/// connections (503 DRAINING, and its /health says so) and sends RECONNECT; the
/// connector connects to its next relay URL within the time given, while the download
/// in flight on the old node finishes there, whole; then the old connection ends and
/// new requests go through the new node.
#[tokio::test]
async fn a_draining_relay_moves_its_connectors_and_lets_their_downloads_finish() {
    const N: usize = 8 * 1024 * 1024;
    let (a, b, origin, (_handle, stop), body, first) = moved_mid_download(N).await;
    let _stop = stop.drop_guard();
    let (status, health) = raw_http(
        a.addr,
        "GET /health HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 503, "{health}");
    assert!(health.contains(r#""status":"draining""#), "{health}");
    assert_eq!(
        read_rest(body, first).await,
        sha256_hex(pattern_chunks(N as u64, 9)),
        "the download in flight finished whole on the draining node"
    );
    a.wait_offline(CID).await;
    let hello = ProxyRequest::new(origin.base_url(), "GET", "/hello");
    let resp = b.relay.send(CID, hello).await.unwrap();
    assert_eq!(resp.body.collect(100).await.unwrap(), "hello");
    assert!(
        b.relay.is_online(CID),
        "the old connection's end is not the new one's"
    );
}

/// A connector stopped (SIGTERM) right after a move still lets the download on the old
/// node finish within its grace: it stops only once the old connection has ended too.
#[tokio::test]
async fn a_connector_stopped_after_a_move_waits_for_the_old_connections_downloads() {
    const N: usize = 8 * 1024 * 1024;
    let (a, b, _origin, (handle, stop), body, first) = moved_mid_download(N).await;
    stop.cancel();
    let mut stopped = tokio::spawn(handle.stopped());
    // The new connection, idle, ends at once; the old one holds the download, whose
    // reader has not read on: the connector must not have stopped (a stopped process
    // exits, and cuts it). Waiting a little proves a negative; it synchronises nothing.
    b.wait_offline(CID).await;
    let early = tokio::time::timeout(Duration::from_millis(300), &mut stopped).await;
    assert!(
        early.is_err(),
        "stopped with a download in flight on the old node"
    );
    assert_eq!(
        read_rest(body, first).await,
        sha256_hex(pattern_chunks(N as u64, 9)),
        "the stop cut the download on the old node"
    );
    tokio::time::timeout(Duration::from_secs(10), stopped)
        .await
        .expect("the connector stops once the old connection's requests are done")
        .unwrap();
    a.wait_offline(CID).await;
}

/// RECONNECT goes only to a connector that named `reconnect` (also one whose HELLO comes
/// after the drain began): one that did not (the original Node connector, say) is left
/// to reconnect when the node closes it.
#[tokio::test]
async fn reconnect_is_sent_only_to_connectors_that_named_it() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let relay = TestRelay::spawn().await;
    let (mut named, _a) = relay.raw_peer("named").await;
    let (mut plain, _b) = relay.raw_peer("plain").await;
    for (peer, caps) in [(&mut named, vec!["reconnect"]), (&mut plain, vec!["flow"])] {
        let hello = serde_json::json!({"type":"HELLO","version":"t","capabilities":caps});
        peer.send(Message::text(hello.to_string())).await.unwrap();
        assert_eq!(next_json(peer).await["type"], "HELLO");
    }
    assert_eq!(relay.relay.move_connectors(Duration::from_millis(1234)), 1);
    let moved = next_json(&mut named).await;
    assert_eq!(
        moved,
        serde_json::json!({"type":"RECONNECT","afterMs":1234})
    );
    // The plain one's next frame is the answer to its PING: no RECONNECT came before it.
    let ping = serde_json::json!({"type":"PING","ts":1});
    plain.send(Message::text(ping.to_string())).await.unwrap();
    assert_eq!(next_json(&mut plain).await["type"], "PONG");
    // One whose HELLO is read after the drain began is told at once, after the answer.
    let (mut late, _c) = relay.raw_peer("late").await;
    let hello = serde_json::json!({"type":"HELLO","version":"t","capabilities":["reconnect"]});
    late.send(Message::text(hello.to_string())).await.unwrap();
    assert_eq!(next_json(&mut late).await["type"], "HELLO");
    let told = tokio::time::timeout(Duration::from_secs(10), next_json(&mut late)).await;
    assert_eq!(told.expect("RECONNECT after the HELLO answer"), moved);
}
