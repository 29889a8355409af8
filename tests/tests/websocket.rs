//! Device WebSockets through the gateway at their edges: the 512 KiB message limit closes
//! with 1009 either way, a WebSocket the connector's policy refuses is a 403, a
//! connector's `101` to a plain GET is refused, a browser that stops reading is let go
//! at the write deadline, and WebSocket traffic keeps its session alive and counted.

use futures_util::{SinkExt, StreamExt};
use ponte_tests::close_frame;
use ponte_tests::cloud::{launched_session, Backend, TestCloud};
use ponte_tests::origin::Origin;
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

type Client = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// Opens `path` of session `sid` as a WebSocket from the session's own origin; returns the
/// client and its local address (for [`ponte_tests::tcp_state`]).
async fn open(
    cloud: &TestCloud,
    sid: &str,
    grant: &str,
    path: &str,
) -> Result<(Client, std::net::SocketAddr), WsError> {
    let gw = cloud.gateway_addr;
    let mut req = format!("ws://{gw}/remote/s/{sid}/{path}")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("cookie", grant.parse().unwrap());
    let tcp = tokio::net::TcpStream::connect(gw).await.unwrap();
    let local = tcp.local_addr().unwrap();
    let (ws, _) = tokio_tungstenite::client_async(req, tcp).await?;
    Ok((ws, local))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_message_over_the_limit_closes_with_1009_either_way() {
    let origin = Origin::spawn().await;
    let (cloud, _c, sid, grant) = launched_session(&origin.base_url(), |_| {}).await;

    // From the browser: one byte over 512 KiB.
    let (mut ws, _) = open(&cloud, &sid, &grant, "ws").await.unwrap();
    ws.send(Message::text("small")).await.unwrap();
    let echo = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echo.to_text().unwrap(), "echo:small");
    // The gateway refuses the message from its header and closes while the rest is still
    // being written: the write may fail (EPIPE), so it runs beside the read of the close.
    let (mut sink, mut stream) = ws.split();
    let write = tokio::spawn(async move {
        let _ = sink.send(Message::binary(vec![0u8; 512 * 1024 + 1])).await;
    });
    let close = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.next().await {
                Some(Ok(Message::Close(c))) => break c,
                Some(Ok(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    })
    .await
    .expect("the gateway closes the socket")
    .expect("a close code");
    assert_eq!(u16::from(close.code), 1009, "{close:?}");
    write.await.unwrap();

    // From the device: the connector refuses it for the tunnel and the page is told why.
    let (mut ws, _) = open(&cloud, &sid, &grant, &format!("ws/big/{}", 600 * 1024))
        .await
        .unwrap();
    let close = close_frame(&mut ws).await.expect("a close code");
    assert_eq!(u16::from(close.code), 1009, "{close:?}");

    // At the limit itself both ways work.
    let (mut ws, _) = open(&cloud, &sid, &grant, &format!("ws/big/{}", 512 * 1024))
        .await
        .unwrap();
    let big = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(big.len(), 512 * 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_the_connector_policy_refuses_is_403_with_a_json_error() {
    // A metadata address: never an allowed target, whatever the connector's policy.
    let (cloud, _c, sid, grant) = launched_session("http://169.254.169.254", |_| {}).await;
    match open(&cloud, &sid, &grant, "ws").await {
        Err(WsError::Http(resp)) => {
            assert_eq!(resp.status(), 403);
            let body: Value = serde_json::from_slice(resp.body().as_deref().unwrap()).unwrap();
            assert_eq!(body["error"]["code"], "TARGET_FORBIDDEN", "{body}");
        }
        other => panic!("expected a 403, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connectors_101_to_a_plain_get_is_refused_with_502() {
    let cloud = TestCloud::start(Backend::Sqlite).await;
    cloud
        .add_equipment(2, 100, "http://127.0.0.1:9", true)
        .await;
    let mut peer = cloud.hostile_connector(2, &["ws"]).await;
    let (sid, url) = cloud.remote_session(7, 2, 100).await;
    let grant = cloud.launch(&url).await;
    let get = {
        let url = format!("http://{}/remote/s/{sid}/page", cloud.gateway_addr);
        tokio::spawn(
            reqwest::Client::new()
                .get(url)
                .header("cookie", grant)
                .send(),
        )
    };
    let req = tokio::time::timeout(Duration::from_secs(10), peer.requests.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(req["type"], "HTTP_REQUEST", "{req}");
    let rid = req["requestId"].as_str().unwrap();
    peer.send_json(json!({
        "type": "HTTP_RESPONSE_START", "requestId": rid, "statusCode": 101,
        "headers": {"upgrade": "websocket", "connection": "upgrade"}
    }))
    .await;
    peer.send_json(
        json!({"type": "HTTP_RESPONSE_CHUNK", "requestId": rid, "data": "aGk=", "index": 0}),
    )
    .await;
    let resp = get.await.unwrap().unwrap();
    assert_eq!(resp.status(), 502);
    assert!(resp.headers().get("upgrade").is_none());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "PROTOCOL_ERROR", "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("101"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_that_stops_reading_is_let_go_at_the_write_deadline() {
    let origin = Origin::spawn().await;
    let (cloud, _c, sid, grant) = launched_session(&origin.base_url(), |o| {
        o.api.remote_ws_write_timeout = Duration::from_secs(1);
    })
    .await;
    // The device floods; this client never reads. Once the socket buffers are full the
    // gateway's write to it cannot finish, and the deadline closes the connection.
    // (The gateway's end is watched: its FIN waits behind the data this client never reads.)
    let (ws, local) = open(&cloud, &sid, &grant, "ws/flood").await.unwrap();
    let gw = cloud.gateway_addr;
    assert_eq!(
        ponte_tests::tcp_state(gw, local),
        Some(ponte_tests::TCP_ESTABLISHED)
    );
    ponte_tests::wait_until(Duration::from_secs(20), || {
        ponte_tests::tcp_state(gw, local) != Some(ponte_tests::TCP_ESTABLISHED)
    })
    .await;
    drop(ws);
    // The session and its other sockets are unaffected.
    let (mut ws, _) = open(&cloud, &sid, &grant, "ws").await.unwrap();
    ws.send(Message::text("still here")).await.unwrap();
    let echo = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echo.to_text().unwrap(), "echo:still here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_traffic_keeps_its_session_alive_and_counts_its_bytes() {
    let idle = Duration::from_secs(2);
    let origin = Origin::spawn().await;
    let (cloud, _c, sid, grant) = launched_session(&origin.base_url(), |o| {
        o.api.sessions.idle = idle;
        o.api.maintenance_every = Duration::from_millis(100);
    })
    .await;
    let (mut ws, _) = open(&cloud, &sid, &grant, "ws").await.unwrap();
    // Only WebSocket traffic, for well over two idle TTLs.
    let started = tokio::time::Instant::now();
    let mut sent = 0u64;
    let mut echoed = 0u64;
    let msg = "x".repeat(1000);
    while started.elapsed() < idle * 3 {
        ws.send(Message::text(msg.clone())).await.unwrap();
        sent += msg.len() as u64;
        let echo = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("the echo comes back")
            .expect("the socket stays open")
            .unwrap();
        match echo {
            Message::Text(t) => echoed += t.len() as u64,
            other => panic!("the session ended under its WebSocket: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The session is still valid for a plain request.
    let page = reqwest::Client::new()
        .get(format!(
            "http://{}/remote/s/{sid}/hello",
            cloud.gateway_addr
        ))
        .header("cookie", grant.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    // Its usage counts the WebSocket's bytes, both ways, while the socket is still open.
    let token = cloud.user_token(7, &[2], false);
    let want = sent + echoed;
    ponte_tests::wait_for(
        Duration::from_secs(10),
        "the session's usage to count the WebSocket",
        || async {
            let (_, _, list) = cloud
                .call(
                    "GET",
                    "/api/instituicao/2/remoto/sessoes",
                    Some(&token),
                    None,
                )
                .await;
            let s = list
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["sessionId"] == sid.as_str())
                .cloned()
                .unwrap();
            assert_eq!(s["status"], "ATIVA", "{s}");
            // All but the last second's traffic (handed over once a second).
            s["bytes"].as_u64().unwrap() + 2 * 20 * 1000 >= want
        },
    )
    .await;
    ws.send(Message::text("still open")).await.unwrap();
    let echo = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echo.to_text().unwrap(), "echo:still open");
}
