//! What must not break: legacy peers, malformed frames, duplicate connections, relay
//! restarts, silent peers (paused time).

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use ponte_core::{ProxyRequest, RequestBody, RouteError, Router};
use ponte_tests::legacy::LegacyPeer;
use ponte_tests::*;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

#[tokio::test]
async fn a_connector_speaking_only_the_original_protocol_works() {
    let relay = TestRelay::spawn().await;
    let origin = origin::Origin::spawn().await;
    let token = relay.token_for("legacy");
    let peer = LegacyPeer::connect(&relay.ws_url(), &token, true).await;
    relay.wait_online("legacy").await;
    let r = &relay.relay;

    // The first request waits for a HELLO that never comes at most HELLO_GRACE (it used
    // to be 2 s, the grace Ponte's own connector still gets).
    let first = std::time::Instant::now();
    let resp = r
        .send(
            "legacy",
            ProxyRequest::new(origin.base_url(), "GET", "/cookies"),
        )
        .await
        .unwrap();
    let waited = first.elapsed();
    assert!(
        waited < ponte_protocol::limits::HELLO_GRACE_PONTE / 2,
        "the first request to a legacy connector waited {waited:?}"
    );
    assert_eq!(resp.headers.get_all("set-cookie").count(), 2);
    assert_eq!(
        resp.body.collect(1024).await.unwrap(),
        Bytes::from_static(b"cookies")
    );

    // More than one flow window: the relay must not wait for credit a legacy peer never sends.
    let n = 3 * 1024 * 1024;
    let resp = r
        .send(
            "legacy",
            ProxyRequest::new(origin.base_url(), "GET", format!("/bytes/{n}?seed=5")),
        )
        .await
        .unwrap();
    let body = resp.body.collect(n as usize).await.unwrap();
    assert_eq!(sha256_hex([body]), sha256_hex(pattern_chunks(n, 5)));
    assert_eq!(
        peer.window_updates.load(Ordering::SeqCst),
        0,
        "no WINDOW_UPDATE to a peer that did not announce flow"
    );

    // Its error shape {requestId, error}.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let err = r
        .send(
            "legacy",
            ProxyRequest::new(format!("http://{closed}"), "GET", "/"),
        )
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&err, RouteError::Connector(m) if !m.is_empty()),
        "{err:?}"
    );
    assert_eq!(err.status(), 502);

    // Text bodies travel inline; binary ones cannot reach a legacy peer.
    let mut post = ProxyRequest::new(origin.base_url(), "POST", "/echo");
    post.body = RequestBody::Full(Bytes::from_static(b"{\"a\":1}"));
    let v: serde_json::Value = serde_json::from_slice(
        &r.send("legacy", post)
            .await
            .unwrap()
            .body
            .collect(1 << 16)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(v["body"], "{\"a\":1}");
    let mut bin = ProxyRequest::new(origin.base_url(), "POST", "/echo");
    bin.body = RequestBody::Full(Bytes::from_static(&[0xff, 0xfe, 0x00]));
    let err = r.send("legacy", bin).await.err().unwrap();
    // Under the inline-size limit but 6x that once JSON-escaped: refused with 413
    // instead of a frame that would cost the connection.
    let mut escapes = ProxyRequest::new(origin.base_url(), "POST", "/echo");
    escapes.body = RequestBody::Full(Bytes::from(vec![1u8; 400 * 1024]));
    let too_big = r.send("legacy", escapes).await.err().unwrap();
    assert_eq!(too_big.status(), 413, "{too_big:?}");
    assert_eq!(
        r.send(
            "legacy",
            ProxyRequest::new(origin.base_url(), "GET", "/hello")
        )
        .await
        .unwrap()
        .status,
        200
    );
    assert_eq!(
        (err.status(), err.to_string()),
        (502, "connector cannot carry binary bodies".into())
    );
}

#[tokio::test]
async fn a_second_connection_with_the_same_identity_replaces_the_first() {
    let relay = TestRelay::spawn().await;
    let origin = origin::Origin::spawn().await;
    let token = relay.token_for("dup");
    let first = LegacyPeer::connect(&relay.ws_url(), &token, true).await;
    relay.wait_online("dup").await;
    let _second = LegacyPeer::connect(&relay.ws_url(), &token, true).await;
    // Close 4001: replaced by a newer connection (README, Heartbeat).
    assert_eq!(first.wait_closed(Duration::from_secs(5)).await, Some(4001));
    let resp = relay
        .relay
        .send("dup", ProxyRequest::new(origin.base_url(), "GET", "/hello"))
        .await
        .unwrap();
    assert_eq!(
        resp.body.collect(64).await.unwrap(),
        Bytes::from_static(b"hello")
    );
    assert_eq!(relay.relay.online_count(), 1);
}

/// Two installs with one token: once the identity flaps, a newcomer is refused (409) and
/// the established connection is probed. One that answers nothing (half-open: it reads
/// nothing, so it answers no WebSocket ping) is closed with 4002 within the probe's 5 s:
/// it cannot lock the real install out until the 90 s heartbeat deadline.
#[tokio::test]
async fn a_half_open_connection_is_closed_when_its_identity_is_contested() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let relay = TestRelay::spawn().await;
    let token = relay.token_for("half");
    let connect = || {
        let mut req = relay.ws_url().into_client_request().unwrap();
        let bearer = format!("Bearer {token}").parse().unwrap();
        req.headers_mut().insert("authorization", bearer);
        tokio_tungstenite::connect_async(req)
    };
    let first = LegacyPeer::connect(&relay.ws_url(), &token, true).await;
    relay.wait_online("half").await;
    let second = LegacyPeer::connect(&relay.ws_url(), &token, true).await;
    assert_eq!(first.wait_closed(Duration::from_secs(5)).await, Some(4001));
    // The third is never read from here on.
    let (mut third, _) = connect().await.expect("the third connects");
    assert_eq!(second.wait_closed(Duration::from_secs(5)).await, Some(4001));
    // Two replacements within a minute: the identity flaps, the newcomer is refused.
    let refused = connect().await;
    assert!(
        matches!(&refused, Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 409),
        "{refused:?}"
    );
    let asked = std::time::Instant::now();
    relay.wait_offline("half").await;
    assert!(
        asked.elapsed() < Duration::from_secs(9),
        "closed by the probe (5 s), not by the heartbeat (90 s): {:?}",
        asked.elapsed()
    );
    let close = loop {
        match third.next().await {
            Some(Ok(Message::Close(f))) => break f.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            other => panic!("no close frame: {other:?}"),
        }
    };
    assert_eq!(close, Some(4002));
}

/// A WebSocket that opens on the device after its caller has left (the relay forgot the
/// stream, and its WS_CLOSE crossed the WS_OPENED or was dropped) is closed at the
/// connector, so the device socket does not hold a stream slot until the device hangs up.
#[tokio::test]
async fn a_websocket_opened_after_its_caller_left_is_closed() {
    let relay = TestRelay::spawn().await;
    let token = relay.token_for("wsgone");
    let mut peer = LegacyPeer::hostile(&relay.ws_url(), &token, &["ws"]).await;
    relay.wait_online("wsgone").await;
    peer.send_json(json!({"type":"WS_OPENED","streamId":"w-gone-1"}))
        .await;
    let close = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let v = peer.requests.recv().await.expect("connection open");
            if v["type"] == "WS_CLOSE" {
                break v;
            }
        }
    })
    .await
    .expect("the relay closes the stream it does not know");
    assert_eq!(close["streamId"], "w-gone-1");
    assert_eq!(close["code"], 1001);
}

/// A token revoked after the upgrade's check but before the connection is registered
/// (renew or unpair racing the handshake) is caught by the check made once registered.
#[tokio::test]
async fn a_token_revoked_during_the_handshake_does_not_stay_connected() {
    let relay = TestRelay::spawn().await;
    relay.directory.set_current("race", "renewed");
    let (a, b) = tokio::io::duplex(1 << 16);
    let server = WebSocketStream::from_raw_socket(a, Role::Server, None).await;
    let mut peer = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
    let served = relay
        .relay
        .serve_connection(server, claims("race", "before-renewal", 3600));
    tokio::time::timeout(Duration::from_secs(5), served)
        .await
        .expect("the connection is refused at once, not served");
    assert!(!relay.relay.is_online("race"));
    assert!(matches!(peer.next().await, None | Some(Err(_))));
    assert!(!relay
        .directory
        .events()
        .iter()
        .any(|e| matches!(e, ponte_core::connector::ConnectorEvent::Connected { .. })));
}

/// Each kind of malformed frame fails at most its own stream; the connection keeps
/// serving. An oversized frame closes the connection (it is refused before parsing).
#[tokio::test]
async fn malformed_frames_fail_only_their_stream() {
    let relay = TestRelay::spawn().await;
    let token = relay.token_for("m");
    let mut peer = LegacyPeer::connect(&relay.ws_url(), &token, false).await;
    relay.wait_online("m").await;
    let call = |path: &str| {
        let r = relay.relay.clone();
        let path = path.to_owned();
        tokio::spawn(async move {
            let resp = r
                .send("m", ProxyRequest::new("http://127.0.0.1:9", "GET", path))
                .await?;
            resp.body.collect(1 << 20).await
        })
    };
    let paths = ["/a", "/b", "/c", "/d", "/f", "/g"];
    let tasks: Vec<_> = paths.iter().map(|p| call(p)).collect();
    let mut ids = std::collections::HashMap::new();
    for _ in 0..paths.len() {
        let v = peer.requests.recv().await.unwrap();
        ids.insert(
            v["target"]["path"].as_str().unwrap().to_owned(),
            v["requestId"].as_str().unwrap().to_owned(),
        );
    }
    let (a, b, c, d) = (&ids["/a"], &ids["/b"], &ids["/c"], &ids["/d"]);
    let (f, g) = (&ids["/f"], &ids["/g"]);
    let start = |id: &str| json!({"type":"HTTP_RESPONSE_START","requestId":id,"statusCode":200,"headers":{}});
    let chunk = |id: &str, data: &str, index: u64| json!({"type":"HTTP_RESPONSE_CHUNK","requestId":id,"data":data,"index":index});
    peer.send_raw("{this is not json").await;
    peer.send_json(json!({"type":"SOMETHING_NEW","requestId":a}))
        .await;
    for id in [a, b, c] {
        peer.send_json(start(id)).await;
    }
    peer.send_json(chunk(a, "!!not base64!!", 0)).await;
    peer.send_json(chunk(b, "aGk=", 0)).await;
    peer.send_json(chunk(b, "aGk=", 2)).await; // gap
    peer.send_json(chunk("r-unknown", "aGk=", 0)).await;
    peer.send_json(json!({"type":"HTTP_RESPONSE_START","requestId":d,"statusCode":"x"}))
        .await;
    // END before START; a JSON chunk past the chunk size from a peer without `flow`
    // (the original Node connector sends ~768 KiB ones) is accepted.
    peer.send_json(json!({"type":"HTTP_RESPONSE_END","requestId":f}))
        .await;
    peer.send_json(start(g)).await;
    use base64::Engine as _;
    let large = base64::engine::general_purpose::STANDARD.encode(vec![b'z'; 3 << 16]);
    peer.send_json(chunk(g, &large, 0)).await;
    peer.send_json(json!({"type":"HTTP_RESPONSE_END","requestId":g}))
        .await;
    peer.send_json(chunk(c, "aGk=", 0)).await;
    peer.send_json(json!({"type":"HTTP_RESPONSE_END","requestId":c}))
        .await;

    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    assert!(
        matches!(&results[0], Err(RouteError::Protocol(m)) if m.contains("base64")),
        "{:?}",
        results[0]
    );
    assert!(
        matches!(&results[1], Err(RouteError::Protocol(m)) if m.contains("index")),
        "{:?}",
        results[1]
    );
    assert_eq!(
        results[2],
        Ok(Bytes::from_static(b"hi")),
        "the healthy stream is untouched"
    );
    assert!(
        matches!(&results[3], Err(RouteError::Protocol(_))),
        "{:?}",
        results[3]
    );
    assert!(
        matches!(&results[4], Err(RouteError::Protocol(m)) if m.contains("END before")),
        "{:?}",
        results[4]
    );
    assert_eq!(results[5].as_ref().map(Bytes::len), Ok(3 << 16));

    // The connection still serves new requests.
    let e = call("/e");
    let v = peer.requests.recv().await.unwrap();
    let id = v["requestId"].as_str().unwrap();
    peer.send_json(start(id)).await;
    peer.send_json(chunk(id, "b2s=", 0)).await;
    peer.send_json(json!({"type":"HTTP_RESPONSE_END","requestId":id}))
        .await;
    assert_eq!(e.await.unwrap(), Ok(Bytes::from_static(b"ok")));
    assert!(relay.relay.is_online("m"));

    // Oversized frame: the connection is closed.
    let big = format!(
        r#"{{"type":"PONG","ts":1,"pad":"{}"}}"#,
        "x".repeat(ponte_protocol::limits::MAX_FRAME_LEN)
    );
    peer.send_raw(big).await;
    // Close 1009 (message too big): the README's "Bad frames".
    assert_eq!(peer.wait_closed(Duration::from_secs(5)).await, Some(1009));
    relay.wait_offline("m").await;
}

/// `Relay::disconnect` (token renewed, unpaired) closes the connector's socket with 4003,
/// not with the 4001 of a replacement or the 1001 of a relay going away.
#[tokio::test]
async fn disconnect_closes_the_connection_with_4003() {
    let relay = TestRelay::spawn().await;
    let token = relay.token_for("revoked");
    let peer = LegacyPeer::connect(&relay.ws_url(), &token, true).await;
    relay.wait_online("revoked").await;
    assert!(relay.relay.disconnect("revoked", "token renewed"));
    assert_eq!(peer.wait_closed(Duration::from_secs(5)).await, Some(4003));
    relay.wait_offline("revoked").await;
}

#[tokio::test]
async fn after_a_relay_restart_inflight_requests_fail_and_the_connector_reconnects() {
    let s = Stack::start().await;
    let resp = s
        .relay
        .relay
        .send(CID, s.get("/bytes/209715200"))
        .await
        .unwrap();
    let mut body = resp.body;
    body.chunk().await.unwrap().unwrap();
    let Stack {
        relay,
        origin,
        connector: _connector,
    } = s;
    let relay = relay.restart().await;
    // In-flight: fails cleanly (an error, not a hang or a truncated success).
    let err = loop {
        match tokio::time::timeout(Duration::from_secs(10), body.chunk())
            .await
            .expect("no hang")
        {
            Some(Ok(_)) => continue,
            Some(Err(e)) => break e,
            None => panic!("a cut-off download must not look complete"),
        }
    };
    assert_eq!(err, RouteError::Disconnected);
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

/// SIGTERM (`systemctl restart`): the request in flight finishes, a new one is refused
/// with BUSY before it reaches the device (safe to retry), and the connector leaves as
/// soon as nothing is in flight, long before its grace.
#[tokio::test]
async fn a_stopping_connector_finishes_requests_in_flight_and_refuses_new_ones() {
    let s = Stack::start().await;
    let started = tokio::time::Instant::now();
    let relay = s.relay.relay.clone();
    let held = tokio::spawn({
        let req = s.get("/hold");
        let relay = relay.clone();
        async move {
            let resp = relay.send(CID, req).await?;
            resp.body.collect(1024).await
        }
    });
    let stats = s.origin.stats.clone();
    wait_until(Duration::from_secs(10), move || {
        stats.inflight.load(Ordering::SeqCst) == 1
    })
    .await;
    s.connector.shutdown.cancel();
    // Refused by the connector itself (BUSY), not lost with the connection: poll until the
    // drain has begun (the cancel is seen by the session's own task).
    let refused = loop {
        match relay.send(CID, s.get("/hello")).await {
            Ok(r) => {
                assert_eq!(
                    r.body.collect(64).await.unwrap(),
                    Bytes::from_static(b"hello")
                );
            }
            Err(e) => break e,
        }
        assert!(started.elapsed() < Duration::from_secs(10), "never refused");
    };
    assert_eq!(refused.status(), 429, "{refused:?}");
    assert!(refused.to_string().contains("stopping"), "{refused}");
    assert_eq!(
        s.origin.stats.inflight.load(Ordering::SeqCst),
        1,
        "the refused request never reached the device"
    );
    assert!(
        relay.is_online(CID),
        "still connected while a request is in flight"
    );
    s.origin.stats.gate.add_permits(1);
    let body = tokio::time::timeout(Duration::from_secs(10), held)
        .await
        .unwrap()
        .unwrap()
        .expect("the request in flight finished whole");
    assert_eq!(body, Bytes::from_static(b"released"));
    let id = CID.to_owned();
    wait_until(Duration::from_secs(5), move || !relay.is_online(&id)).await;
    // The default grace is 10 s: leaving at once means it left because it was idle.
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "left after {:?}",
        started.elapsed()
    );
}

/// A request that outlasts the grace is cut when it ends, and the connector says goodbye
/// (close 1001) after answering what it had; a device WebSocket is closed at once (1001).
#[tokio::test]
async fn the_shutdown_grace_cuts_what_outlasts_it() {
    let origin = origin::Origin::spawn().await;
    let mut cfg = connector_config("ws://127.0.0.1:9/ws/connectors", "t", None);
    cfg.shutdown_grace = Duration::from_millis(300);
    let shared =
        ponte_connector::Shared::new(cfg, Default::default(), Default::default(), None).unwrap();
    let (mut relay, stop, session) = connector_session(shared, 1 << 20).await;
    assert_eq!(next_json(&mut relay).await["type"], "HELLO");
    relay
        .send(Message::text(
            json!({"type":"HELLO","version":"t","capabilities":["ws","cancel"]}).to_string(),
        ))
        .await
        .unwrap();
    relay
        .send(Message::text(
            json!({"type":"WS_OPEN","streamId":"w-1","target":{"baseUrl":origin.base_url(),
                "path":"/ws","headers":{}}})
            .to_string(),
        ))
        .await
        .unwrap();
    assert_eq!(next_json(&mut relay).await["type"], "WS_OPENED");
    relay
        .send(Message::text(
            json!({"type":"HTTP_REQUEST","requestId":"r-1","target":{"baseUrl":origin.base_url(),
                "method":"GET","path":"/hold","headers":{}}})
            .to_string(),
        ))
        .await
        .unwrap();
    let stats = origin.stats.clone();
    wait_until(Duration::from_secs(10), move || {
        stats.inflight.load(Ordering::SeqCst) == 1
    })
    .await;
    let t0 = tokio::time::Instant::now();
    stop.cancel();
    let closed = next_json(&mut relay).await;
    assert_eq!(closed["type"], "WS_CLOSE", "{closed}");
    assert_eq!(
        (closed["streamId"].as_str(), closed["code"].as_u64()),
        (Some("w-1"), Some(1001))
    );
    // A new request while stopping: refused, BUSY.
    relay
        .send(Message::text(
            json!({"type":"HTTP_REQUEST","requestId":"r-2","target":{"baseUrl":origin.base_url(),
                "method":"GET","path":"/hello","headers":{}}})
            .to_string(),
        ))
        .await
        .unwrap();
    let refused = next_json(&mut relay).await;
    assert_eq!(
        (
            refused["type"].as_str(),
            refused["requestId"].as_str(),
            refused["code"].as_str()
        ),
        (Some("HTTP_RESPONSE_ERROR"), Some("r-2"), Some("BUSY")),
        "{refused}"
    );
    // The held request outlasts the grace: the goodbye comes when the grace ends.
    let goodbye = loop {
        match tokio::time::timeout(Duration::from_secs(10), relay.next())
            .await
            .expect("a goodbye within the grace and its 2 s")
        {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(Message::Text(t))) if t.as_str().contains("PING") => continue,
            other => panic!("expected the close frame, got {other:?}"),
        }
    };
    let waited = t0.elapsed();
    assert_eq!(goodbye.map(|f| u16::from(f.code)), Some(1001));
    assert!(
        waited >= Duration::from_millis(300),
        "left after {waited:?}, before the grace"
    );
    let reason = tokio::time::timeout(Duration::from_secs(5), session)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reason, "shutting down");
}

fn is_ping(m: &Message) -> bool {
    matches!(m, Message::Text(t) if t.as_str().contains(r#""type":"PING""#))
}

#[tokio::test(start_paused = true)]
async fn relay_pings_every_30s_and_drops_a_peer_silent_for_90s() {
    let relay = TestRelay::spawn().await;
    let t0 = tokio::time::Instant::now();
    let (mut peer, served) = relay.raw_peer("hb").await;
    let mut pings = Vec::new();
    let close = loop {
        match peer.next().await {
            Some(Ok(m)) if is_ping(&m) => pings.push(t0.elapsed().as_secs()),
            Some(Ok(Message::Close(f))) => break f,
            other => panic!("unexpected {other:?}"),
        }
    };
    served.await.unwrap();
    let elapsed = t0.elapsed();
    assert_eq!(&pings[..2], [30, 60]);
    assert!(
        elapsed >= Duration::from_secs(90) && elapsed < Duration::from_secs(91),
        "{elapsed:?}"
    );
    assert_eq!(u16::from(close.unwrap().code), 4002);
    assert!(!relay.relay.is_online("hb"));
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_keeps_talking_is_not_dropped() {
    let relay = TestRelay::spawn().await;
    let (mut peer, _served) = relay.raw_peer("alive").await;
    // Answer every PING for 5 minutes of virtual time.
    let t0 = tokio::time::Instant::now();
    while t0.elapsed() < Duration::from_secs(300) {
        let m = peer.next().await.unwrap().unwrap();
        assert!(is_ping(&m), "{m:?}");
        peer.send(Message::text(r#"{"type":"PONG","ts":1}"#))
            .await
            .unwrap();
    }
    assert!(relay.relay.is_online("alive"));
}

#[tokio::test(start_paused = true)]
async fn connector_pings_every_30s_and_leaves_a_relay_silent_for_90s() {
    let cfg = connector_config("ws://127.0.0.1:9/ws/connectors", "t", None);
    let shared = std::sync::Arc::new(
        ponte_connector::Shared::new(cfg, Default::default(), Default::default(), None).unwrap(),
    );
    let (a, b) = tokio::io::duplex(64 * 1024);
    let mut fake_relay = WebSocketStream::from_raw_socket(a, Role::Server, None).await;
    let client = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
    let t0 = tokio::time::Instant::now();
    let session = tokio::spawn(ponte_connector::tunnel::session(
        shared,
        client,
        Default::default(),
    ));
    let hello = fake_relay.next().await.unwrap().unwrap();
    assert!(hello.to_text().unwrap().contains(r#""type":"HELLO""#));
    let mut pings = Vec::new();
    while let Some(Ok(m)) = fake_relay.next().await {
        if is_ping(&m) {
            pings.push(t0.elapsed().as_secs());
        }
    }
    let reason = session.await.unwrap();
    assert_eq!(&pings[..2], [30, 60]);
    assert!(reason.contains("silent"), "{reason}");
    let elapsed = t0.elapsed();
    assert!(
        elapsed >= Duration::from_secs(90) && elapsed < Duration::from_secs(91),
        "{elapsed:?}"
    );
}

/// A connector whose HELLO arrives after the 2 s grace (slow link) is upgraded: its
/// window-respecting download past 256 KiB still completes, because credit flows.
#[tokio::test(start_paused = true)]
async fn a_late_hello_still_gets_flow_control_credit() {
    const CHUNK: usize = 64 * 1024;
    const TOTAL_CHUNKS: u64 = 8; // 512 KiB: twice the initial window
    let relay = TestRelay::spawn().await;
    let (mut fake, _served) = relay.raw_peer("late").await;
    let r = relay.relay.clone();
    let consumer = tokio::spawn(async move {
        let resp = r
            .send(
                "late",
                ProxyRequest::new("http://127.0.0.1:9", "GET", "/big"),
            )
            .await?;
        resp.body.collect(1 << 20).await
    });

    let text = |v: serde_json::Value| Message::text(v.to_string());
    let next_json =
        |m: Message| serde_json::from_str::<serde_json::Value>(m.to_text().unwrap()).unwrap();
    let req = loop {
        let v = next_json(fake.next().await.unwrap().unwrap());
        if v["type"] == "HTTP_REQUEST" {
            break v;
        }
    };
    let rid = req["requestId"].as_str().unwrap().to_owned();
    fake.send(text(
        json!({"type":"HELLO","version":"late","capabilities":["flow","error","cancel"]}),
    ))
    .await
    .unwrap();
    fake.send(text(
        json!({"type":"HTTP_RESPONSE_START","requestId":rid,"statusCode":200,"headers":{}}),
    ))
    .await
    .unwrap();
    let data = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, vec![7u8; CHUNK]);
    let mut window = 256 * 1024usize;
    let mut sent = 0u64;
    while sent < TOTAL_CHUNKS {
        if window >= CHUNK {
            fake.send(text(
                json!({"type":"HTTP_RESPONSE_CHUNK","requestId":rid,"data":data,"index":sent}),
            ))
            .await
            .unwrap();
            window -= CHUNK;
            sent += 1;
            continue;
        }
        // Out of window: wait for credit, as a flow connector must.
        let v = next_json(fake.next().await.expect("relay sends credit").unwrap());
        if v["type"] == "WINDOW_UPDATE" {
            window += v["bytes"].as_u64().unwrap() as usize;
        }
    }
    fake.send(text(json!({"type":"HTTP_RESPONSE_END","requestId":rid})))
        .await
        .unwrap();
    let body = consumer.await.unwrap().expect("download completes");
    assert_eq!(body.len(), CHUNK * TOTAL_CHUNKS as usize);
}

/// Capabilities are agreed once per connection: a HELLO repeated (by a connector that
/// floods them and reads nothing, to fill the relay with answers) is not answered again.
#[tokio::test(start_paused = true)]
async fn a_repeated_hello_is_answered_once() {
    let relay = TestRelay::spawn().await;
    let (mut fake, _served) = relay.raw_peer("hello-again").await;
    let hello = json!({"type":"HELLO","version":"x","capabilities":["flow","error"]});
    for _ in 0..5 {
        fake.send(Message::text(hello.to_string())).await.unwrap();
    }
    fake.send(Message::text(json!({"type":"PING","ts":7}).to_string()))
        .await
        .unwrap();
    let mut hellos = 0;
    loop {
        let m = fake.next().await.expect("the relay answers").unwrap();
        let v: serde_json::Value = serde_json::from_str(m.to_text().unwrap()).unwrap();
        match v["type"].as_str() {
            Some("HELLO") => hellos += 1,
            Some("PONG") => break,
            _ => {}
        }
    }
    assert_eq!(hellos, 1, "one answer for five HELLOs");
}

/// A device that streams many tiny pieces to a caller that reads later (an event feed
/// behind a busy browser) stays within the window, so the stream must survive even
/// though it is more pieces than the relay's per-stream queue has slots.
#[tokio::test(start_paused = true)]
async fn many_tiny_chunks_to_a_slow_reader_do_not_fail_the_stream() {
    use futures_util::SinkExt;
    const PIECES: u64 = 2000;
    let relay = TestRelay::spawn().await;
    let (mut fake, _served) = relay.raw_peer("tiny").await;
    let text = |v: serde_json::Value| Message::text(v.to_string());
    fake.send(text(
        json!({"type":"HELLO","version":"t","capabilities":["flow","error","cancel"]}),
    ))
    .await
    .unwrap();
    let r = relay.relay.clone();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let consumer = tokio::spawn(async move {
        let resp = r
            .send(
                "tiny",
                ProxyRequest::new("http://127.0.0.1:9", "GET", "/events"),
            )
            .await?;
        let _ = started_tx.send(());
        let _ = go_rx.await; // read nothing until the device has sent everything
        resp.body.collect(1 << 20).await
    });
    let rid = loop {
        let v: serde_json::Value =
            serde_json::from_str(fake.next().await.unwrap().unwrap().to_text().unwrap()).unwrap();
        if v["type"] == "HTTP_REQUEST" {
            break v["requestId"].as_str().unwrap().to_owned();
        }
    };
    fake.send(text(
        json!({"type":"HTTP_RESPONSE_START","requestId":rid,"statusCode":200,"headers":{}}),
    ))
    .await
    .unwrap();
    started_rx.await.unwrap();
    for i in 0..PIECES {
        // 16 bytes each: 32 000 bytes in all, well inside the 256 KiB window.
        fake.send(text(json!({"type":"HTTP_RESPONSE_CHUNK","requestId":rid,"data":"AAAAAAAAAAAAAAAAAAAAAA==","index":i}))).await.unwrap();
    }
    fake.send(text(json!({"type":"HTTP_RESPONSE_END","requestId":rid})))
        .await
        .unwrap();
    // Let the relay's reader take every frame before the caller starts reading: a PING
    // from the fake connector is answered only after everything before it was handled.
    fake.send(text(json!({"type":"PING","ts":1})))
        .await
        .unwrap();
    loop {
        let v: serde_json::Value =
            serde_json::from_str(fake.next().await.unwrap().unwrap().to_text().unwrap()).unwrap();
        if v["type"] == "PONG" {
            break;
        }
    }
    go_tx.send(()).unwrap();
    let body = consumer.await.unwrap().expect("stream survives");
    assert_eq!(body.len() as u64, PIECES * 16);
    assert!(body.iter().all(|b| *b == 0));
}

/// The tunnel is the connector's job; its health port is a convenience. A port another
/// program holds used to stop the connector from starting at all.
#[tokio::test]
async fn a_connector_whose_health_port_is_taken_keeps_its_tunnel_up() {
    let relay = TestRelay::spawn().await;
    let origin = origin::Origin::spawn().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut cfg = connector_config(&relay.ws_url(), &relay.token_for("busy-port"), None);
    cfg.health_listen = Some(taken.local_addr().unwrap());
    let connector = spawn_connector(cfg).await;
    assert_eq!(connector.handle.health_addr, None);
    relay.wait_online("busy-port").await;
    let resp = relay
        .relay
        .send(
            "busy-port",
            ProxyRequest::new(origin.base_url(), "GET", "/hello"),
        )
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
    // Whatever holds the port is never a target (it might be an earlier connector).
    let port = taken.local_addr().unwrap().port();
    let Err(err) = relay
        .relay
        .send(
            "busy-port",
            ProxyRequest::new(format!("http://127.0.0.1:{port}"), "GET", "/health"),
        )
        .await
    else {
        panic!("the configured health port was reachable as a target");
    };
    assert_eq!(err.status(), 403, "{err}");
}

/// `relay_url` lists relays to fail over between, in order: a URL that fails moves the
/// connector to the next one, and a relay that goes away sends it on to the next.
#[tokio::test]
async fn the_connector_fails_over_between_relay_urls_in_order() {
    // Accepts TCP and hangs up at once: the WebSocket handshake fails.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_url = format!("ws://{}/ws/connectors", dead.local_addr().unwrap());
    let tried = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = tried.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = dead.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            drop(tcp);
        }
    });
    let (a, b) = (TestRelay::spawn().await, TestRelay::spawn().await);
    let id = "failover";
    for r in [&a, &b] {
        r.directory.set_current(id, "jti-failover");
    }
    let token = sign(&claims(id, "jti-failover", 3600), CONNECTOR_KEY);
    let mut cfg = connector_config(&dead_url, &token, None);
    cfg.relay_urls = vec![dead_url.clone(), a.ws_url(), b.ws_url()];
    let _c = spawn_connector(cfg).await;
    a.wait_online(id).await;
    assert_eq!(
        tried.load(Ordering::SeqCst),
        1,
        "the first URL was tried once, first"
    );
    assert!(!b.relay.is_online(id));

    // The relay it is on goes away: it reconnects there first, fails, moves on.
    a.stop().await;
    b.wait_online(id).await;
    assert!(!a.relay.is_online(id));
    assert_eq!(
        tried.load(Ordering::SeqCst),
        1,
        "the dead URL comes after the others"
    );
}

/// Reconnect backoff: while connections stay short the delay grows (full jitter in
/// [cap/4, cap], the cap doubling per reconnect), and a connection that stayed up for
/// the stable period resets it. Bounds from the backoff itself: initial 100 ms, so the
/// reconnect after the 5th short connection waits at least 1600/4 = 400 ms, and one
/// after the 6th would wait at least 800 ms without the reset, at most 100 ms with it.
#[tokio::test]
async fn backoff_grows_while_connections_are_short_and_resets_after_a_stable_one() {
    let relay = TestRelay::spawn().await;
    let id = "backoff";
    let mut cfg = connector_config(&relay.ws_url(), &relay.token_for(id), None);
    cfg.backoff_initial = Duration::from_millis(100);
    cfg.backoff_max = Duration::from_secs(60);
    let stable = Duration::from_secs(1);
    let timing = ponte_connector::Timing {
        stable_after: stable,
        ..Default::default()
    };
    let _c = spawn_connector_timed(cfg, timing).await;
    relay.wait_online(id).await;
    let reconnect = || async {
        let t0 = tokio::time::Instant::now();
        assert!(relay.relay.disconnect(id, "test"));
        relay.wait_offline(id).await;
        wait_until(Duration::from_secs(20), || relay.relay.is_online(id)).await;
        t0.elapsed()
    };
    let mut last = Duration::ZERO;
    for _ in 0..5 {
        last = reconnect().await;
    }
    assert!(
        last >= Duration::from_millis(400),
        "the 5th short connection's reconnect waited only {last:?}: the backoff did not grow"
    );
    // Connected for longer than the stable period (the connector's clock started
    // before the relay reported it online).
    tokio::time::sleep(stable).await;
    let after_stable = reconnect().await;
    assert!(
        after_stable < Duration::from_millis(800),
        "after a stable connection the reconnect waited {after_stable:?}: backoff not reset"
    );
}

/// The write deadline, relay side: a connector that keeps sending (so it is never
/// silent) but stops reading is disconnected once a write has made no progress for
/// 90 s (`PEER_TIMEOUT`), and the requests on it fail; nothing waits on it forever.
#[tokio::test(start_paused = true)]
async fn a_connector_that_stops_reading_is_disconnected_at_the_write_deadline() {
    use futures_util::SinkExt;
    let relay = TestRelay::spawn().await;
    let (peer, served) = relay.raw_peer("deaf").await;
    // The peer's reading half is never polled.
    let (mut tx, _unread) = peer.split();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(10)).await;
            let pong = Message::text(r#"{"type":"PONG","ts":1}"#);
            if tx.send(pong).await.is_err() {
                break;
            }
        }
    });
    let t0 = tokio::time::Instant::now();
    // 1.6 MB of requests: more than the pipe (1 MiB) and the WebSocket's write buffer.
    let sends: Vec<_> = (0..4)
        .map(|_| {
            let r = relay.relay.clone();
            tokio::spawn(async move {
                let mut req = ProxyRequest::new("http://127.0.0.1:1", "POST", "/");
                req.body = RequestBody::Full(Bytes::from(vec![b'x'; 400 << 10]));
                req.timeout = Duration::from_secs(600);
                r.send("deaf", req).await.err()
            })
        })
        .collect();
    let mut failed_at = Vec::new();
    for s in sends {
        let err = tokio::time::timeout(Duration::from_secs(600), s)
            .await
            .expect("the requests on a connector that does not read end")
            .unwrap();
        failed_at.push(t0.elapsed());
        assert_eq!(err, Some(RouteError::Disconnected));
    }
    // The first write waits the HELLO grace (250 ms) for a peer that never says HELLO.
    let at = failed_at[0];
    assert!(
        at >= Duration::from_secs(90) && at < Duration::from_secs(91),
        "disconnected after {at:?}"
    );
    tokio::time::timeout(Duration::from_secs(10), served)
        .await
        .expect("the connection's task ends")
        .unwrap();
    assert!(!relay.relay.is_online("deaf"));
}

/// The write deadline, connector side: a relay that keeps sending (PINGs, so it is
/// never silent) but stops reading is left once a write has made no progress for 90 s;
/// the session then reconnects rather than waiting on it forever.
#[tokio::test(start_paused = true)]
async fn a_relay_that_stops_reading_is_left_at_the_write_deadline() {
    use futures_util::SinkExt;
    // Every request is to a target the policy refuses: each answer is an error frame,
    // written without any device connection.
    let shared = connector_shared(Some(vec!["127.0.0.1:1".into()]));
    let (relay, _stop, session) = connector_session(shared, 64 * 1024).await;
    let (mut tx, _unread) = relay.split();
    let t0 = tokio::time::Instant::now();
    // ~1 MB of answers: more than the pipe and the WebSocket's write buffer.
    for i in 0..4000 {
        let rid = format!("{i:0>128}");
        let req = json!({"type":"HTTP_REQUEST","requestId":rid,
            "target":{"baseUrl":"http://127.0.0.2:1","method":"GET","path":"/","headers":{}}});
        tx.feed(Message::text(req.to_string())).await.unwrap();
    }
    tx.flush().await.unwrap();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(10)).await;
            let ping = Message::text(r#"{"type":"PING","ts":1}"#);
            if tx.send(ping).await.is_err() {
                break;
            }
        }
    });
    let reason = tokio::time::timeout(Duration::from_secs(600), session)
        .await
        .expect("the session with a relay that does not read ends")
        .unwrap();
    let elapsed = t0.elapsed();
    assert_eq!(reason, "writer failed");
    // 90 s without progress, then at most 2 s for the close the writer still tries.
    assert!(
        elapsed >= Duration::from_secs(90) && elapsed <= Duration::from_secs(92),
        "left after {elapsed:?}"
    );
}
