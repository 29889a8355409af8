//! The `bin` capability end to end: body chunks as binary WebSocket frames between peers
//! that both named it, JSON for everyone else, and garbage binary frames failing only
//! the stream they name.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use ponte_core::{ProxyRequest, RequestBody, RouteError, Router};
use ponte_protocol::{binary, limits, CloudMsg, ConnectorMsg};
use ponte_relay::FrameCounts;
use ponte_tests::legacy::LegacyPeer;
use ponte_tests::*;
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

type Peer = WebSocketStream<tokio::io::DuplexStream>;

fn text(v: Value) -> Message {
    Message::text(v.to_string())
}

/// The real connector's session against a fake relay the test drives frame by frame.
async fn fake_relay() -> (
    Peer,
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<String>,
) {
    connector_session(connector_shared(None), 1 << 20).await
}

/// Stops the connector's session and waits (at most 5 s) for it to end.
async fn stop(
    shutdown: tokio_util::sync::CancellationToken,
    session: tokio::task::JoinHandle<String>,
) {
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), session)
        .await
        .unwrap()
        .unwrap();
}

/// Says HELLO with `caps` and returns the capabilities the relay's answer names.
async fn hello(peer: &mut Peer, caps: &[&str]) -> Vec<String> {
    peer.send(text(
        json!({"type":"HELLO","version":"t","capabilities":caps}),
    ))
    .await
    .unwrap();
    let answer = next_json(peer).await;
    assert_eq!(answer["type"], "HELLO", "{answer}");
    serde_json::from_value(answer["capabilities"].clone()).unwrap()
}

fn streamed(n: u64, seed: u64) -> RequestBody {
    RequestBody::Stream {
        length: Some(n),
        stream: futures_util::stream::iter(pattern_chunks(n, seed).map(Ok::<_, std::io::Error>))
            .boxed(),
    }
}

/// Reads a streamed upload as the connector would, counting how its chunks travelled.
/// Returns (sha256, binary chunk frames, JSON chunk frames).
async fn read_upload(peer: &mut Peer, rid: &str) -> (String, usize, usize) {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    let (mut bin, mut json, mut next) = (0, 0, 0u64);
    loop {
        let chunk = match peer.next().await.unwrap().unwrap() {
            Message::Binary(b) => {
                bin += 1;
                match binary::decode_cloud(&b).unwrap() {
                    CloudMsg::HttpRequestChunk(c) => c,
                    other => panic!("unexpected binary frame {other:?}"),
                }
            }
            Message::Text(t) => match ponte_protocol::decode_cloud(t.as_str()).unwrap() {
                CloudMsg::HttpRequestChunk(c) => {
                    json += 1;
                    c
                }
                CloudMsg::HttpRequestEnd(e) => {
                    assert_eq!(e.request_id, rid);
                    return (hex(&h.finalize()), bin, json);
                }
                CloudMsg::Ping(_) => continue,
                other => panic!("unexpected frame {other:?}"),
            },
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!((chunk.request_id.as_str(), chunk.index), (rid, next));
        assert!(chunk.data.len() <= limits::MAX_CHUNK_LEN);
        next += 1;
        h.update(&chunk.data);
    }
}

fn bin_chunk(rid: &str, index: u64, data: Bytes) -> Message {
    let msg = ConnectorMsg::HttpResponseChunk(ponte_protocol::Chunk {
        request_id: rid.into(),
        data,
        index,
    });
    Message::Binary(binary::encode_connector(&msg).unwrap())
}

/// The real connector and relay, both speaking `bin`: 12 MB each way, byte-exact, and
/// the chunks really went as binary frames.
#[tokio::test]
async fn a_bin_connector_moves_12_mb_each_way_byte_exact_in_binary_frames() {
    const N: u64 = 12 * 1024 * 1024;
    let chunks = N / limits::MAX_CHUNK_LEN as u64;
    let s = Stack::start().await;

    let mut req = s.get("/upload");
    req.method = "POST".into();
    req.body = streamed(N, 11);
    let resp = s.relay.relay.send(CID, req).await.unwrap();
    let v: Value = serde_json::from_slice(&resp.body.collect(1 << 20).await.unwrap()).unwrap();
    assert_eq!(v["len"], N);
    assert_eq!(v["sha256"], sha256_hex(pattern_chunks(N, 11)));
    let sent = s.relay.relay.frame_counts(CID).unwrap().binary_sent;
    assert!(
        sent >= chunks,
        "upload chunks as binary frames: {sent} < {chunks}"
    );

    let resp = s
        .relay
        .relay
        .send(CID, s.get(&format!("/bytes/{N}?seed=12")))
        .await
        .unwrap();
    let body = resp.body.collect(N as usize).await.unwrap();
    assert_eq!(sha256_hex([body]), sha256_hex(pattern_chunks(N, 12)));
    let received = s.relay.relay.frame_counts(CID).unwrap().binary_received;
    assert!(
        received >= chunks,
        "download chunks as binary frames: {received} < {chunks}"
    );

    // WebSocket messages ride binary frames too.
    let before = s.relay.relay.frame_counts(CID).unwrap();
    let mut ws = s
        .relay
        .relay
        .open_ws(CID, ponte_core::WsRequest::new(s.origin.base_url(), "/ws"))
        .await
        .unwrap();
    // 300 KB: its base64 alone would be 400 KB of JSON.
    let payload = Bytes::from(vec![0xab; 300_000]);
    ws.send(ponte_core::WsFrame::Binary(payload.clone()))
        .await
        .unwrap();
    assert_eq!(ws.recv().await, Some(ponte_core::WsFrame::Binary(payload)));
    ws.send(ponte_core::WsFrame::Text("olá".into()))
        .await
        .unwrap();
    assert_eq!(
        ws.recv().await,
        Some(ponte_core::WsFrame::Text("echo:olá".into()))
    );
    let after = s.relay.relay.frame_counts(CID).unwrap();
    assert!(
        after.binary_sent > before.binary_sent && after.binary_received > before.binary_received
    );
}

/// A raw peer that names `bin` gets the relay's upload chunks as binary frames, and
/// may answer with binary chunks, mixed with JSON ones, in one stream.
#[tokio::test]
async fn a_bin_peer_gets_binary_upload_chunks_and_may_answer_in_binary() {
    const N: u64 = 10 * 1024 * 1024 + 123;
    let relay = TestRelay::spawn().await;
    let (mut peer, _served) = relay.raw_peer("bp").await;
    assert_eq!(
        hello(&mut peer, &["req-stream", "bin", "zzz"]).await,
        ["req-stream", "bin"]
    );

    let r = relay.relay.clone();
    let call = tokio::spawn(async move {
        let mut req = ProxyRequest::new("http://127.0.0.1:9", "POST", "/up");
        req.body = streamed(N, 21);
        let resp = r.send("bp", req).await?;
        resp.body.collect(N as usize).await
    });
    let req = next_json(&mut peer).await;
    assert_eq!(
        (req["type"].as_str(), req["bodyStream"].as_bool()),
        (Some("HTTP_REQUEST"), Some(true))
    );
    let rid = req["requestId"].as_str().unwrap().to_owned();
    let (sha, bin, json_chunks) = read_upload(&mut peer, &rid).await;
    assert_eq!(sha, sha256_hex(pattern_chunks(N, 21)));
    assert_eq!(json_chunks, 0, "no JSON chunk to a bin peer");
    assert!(bin as u64 >= N / limits::MAX_CHUNK_LEN as u64, "{bin}");

    peer.send(text(
        json!({"type":"HTTP_RESPONSE_START","requestId":rid,"statusCode":200,"headers":{}}),
    ))
    .await
    .unwrap();
    for (i, c) in pattern_chunks(N, 22).enumerate() {
        // The first chunk as JSON: accepted from everyone, and the index runs across both.
        let frame = if i == 0 {
            let data = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &c);
            text(json!({"type":"HTTP_RESPONSE_CHUNK","requestId":rid,"data":data,"index":0}))
        } else {
            bin_chunk(&rid, i as u64, c)
        };
        peer.send(frame).await.unwrap();
    }
    peer.send(text(json!({"type":"HTTP_RESPONSE_END","requestId":rid})))
        .await
        .unwrap();
    let body = call.await.unwrap().expect("download completes");
    assert_eq!(sha256_hex([body]), sha256_hex(pattern_chunks(N, 22)));
    let counts = relay.relay.frame_counts("bp").unwrap();
    assert_eq!(counts.binary_sent, bin as u64);
    assert!(counts.binary_received >= N / limits::MAX_CHUNK_LEN as u64);
}

/// A HELLO without `bin` is answered without it, and the upload travels as JSON.
#[tokio::test]
async fn a_hello_without_bin_gets_json_chunks() {
    const N: u64 = 300 * 1024;
    let relay = TestRelay::spawn().await;
    let (mut peer, _served) = relay.raw_peer("nb").await;
    assert_eq!(
        hello(&mut peer, &["req-stream", "error"]).await,
        ["error", "req-stream"]
    );
    let r = relay.relay.clone();
    let call = tokio::spawn(async move {
        let mut req = ProxyRequest::new("http://127.0.0.1:9", "POST", "/up");
        req.body = streamed(N, 31);
        r.send("nb", req).await.map(|_| ())
    });
    let req = next_json(&mut peer).await;
    let rid = req["requestId"].as_str().unwrap().to_owned();
    let (sha, bin, json_chunks) = read_upload(&mut peer, &rid).await;
    assert_eq!(sha, sha256_hex(pattern_chunks(N, 31)));
    assert_eq!(bin, 0, "no binary frame to a peer that did not name bin");
    assert!(json_chunks >= 5, "{json_chunks}");
    peer.send(text(
        json!({"type":"HTTP_RESPONSE_START","requestId":rid,"statusCode":204,"headers":{}}),
    ))
    .await
    .unwrap();
    peer.send(text(json!({"type":"HTTP_RESPONSE_END","requestId":rid})))
        .await
        .unwrap();
    call.await.unwrap().unwrap();
    assert_eq!(
        relay.relay.frame_counts("nb").unwrap(),
        FrameCounts::default()
    );
}

/// The original Node connector (no HELLO) gets no HELLO answer and no binary frame.
#[tokio::test]
async fn a_legacy_peer_still_works_with_json_only() {
    let relay = TestRelay::spawn().await;
    let origin = origin::Origin::spawn().await;
    let token = relay.token_for("old");
    let _peer = LegacyPeer::connect(&relay.ws_url(), &token, true).await;
    relay.wait_online("old").await;
    let n = 1024 * 1024;
    let resp = relay
        .relay
        .send(
            "old",
            ProxyRequest::new(origin.base_url(), "GET", format!("/bytes/{n}?seed=4")),
        )
        .await
        .unwrap();
    let body = resp.body.collect(n as usize).await.unwrap();
    assert_eq!(sha256_hex([body]), sha256_hex(pattern_chunks(n, 4)));
    assert_eq!(
        relay.relay.frame_counts("old").unwrap(),
        FrameCounts::default()
    );
}

/// Garbage binary frames: each one that names a stream fails that stream only; the rest
/// are dropped; a concurrent healthy stream completes and the connection stays up.
#[tokio::test]
async fn a_garbage_binary_frame_fails_only_its_stream() {
    let relay = TestRelay::spawn().await;
    let (mut peer, _served) = relay.raw_peer("g").await;
    assert_eq!(hello(&mut peer, &["bin"]).await, ["bin"]);
    let call = |path: &str| {
        let r = relay.relay.clone();
        let path = path.to_owned();
        tokio::spawn(async move {
            let resp = r
                .send("g", ProxyRequest::new("http://127.0.0.1:9", "GET", path))
                .await?;
            resp.body.collect(1 << 20).await
        })
    };
    let paths = ["/truncated", "/gap", "/healthy", "/oversized"];
    let tasks: Vec<_> = paths.iter().map(|p| call(p)).collect();
    let mut ids = std::collections::HashMap::new();
    for _ in 0..paths.len() {
        let v = next_json(&mut peer).await;
        ids.insert(
            v["target"]["path"].as_str().unwrap().to_owned(),
            v["requestId"].as_str().unwrap().to_owned(),
        );
    }
    for id in ids.values() {
        peer.send(text(
            json!({"type":"HTTP_RESPONSE_START","requestId":id,"statusCode":200,"headers":{}}),
        ))
        .await
        .unwrap();
    }
    let id = |p: &str| ids[p].as_bytes().to_vec();
    let raw = |parts: &[&[u8]]| Message::Binary(Bytes::from(parts.concat()));
    let len = |p: &str| [ids[p].len() as u8];
    // Nameless garbage: dropped, nothing fails.
    for junk in [
        vec![],
        vec![0x7f, 1, b'x'],
        vec![1],
        vec![1, 0, 0, 0],
        vec![1, 200, b'a', b'b'],
        vec![1, 2, 0xff, 0xfe, 0, 0, 0, 0, 0, 0, 0, 0],
        vec![3, 1, b'w', 0xc3], // bad text for a WebSocket stream that does not exist
    ] {
        peer.send(Message::Binary(Bytes::from(junk))).await.unwrap();
    }
    peer.send(bin_chunk(&ids["/healthy"], 0, Bytes::from_static(b"hi")))
        .await
        .unwrap();
    // Index cut short.
    peer.send(raw(&[
        &[1],
        &len("/truncated"),
        &id("/truncated"),
        &[0, 0, 0],
    ]))
    .await
    .unwrap();
    // Index 0, then a gap.
    peer.send(bin_chunk(&ids["/gap"], 0, Bytes::from_static(b"a")))
        .await
        .unwrap();
    peer.send(bin_chunk(&ids["/gap"], 2, Bytes::from_static(b"b")))
        .await
        .unwrap();
    // A payload over the chunk limit.
    let big = vec![0u8; limits::MAX_CHUNK_LEN + 1];
    peer.send(raw(&[
        &[1],
        &len("/oversized"),
        &id("/oversized"),
        &[0; 8],
        &big,
    ]))
    .await
    .unwrap();
    peer.send(text(
        json!({"type":"HTTP_RESPONSE_CHUNK","requestId":ids["/healthy"],"data":"b2s=","index":1}),
    ))
    .await
    .unwrap();
    peer.send(text(
        json!({"type":"HTTP_RESPONSE_END","requestId":ids["/healthy"]}),
    ))
    .await
    .unwrap();

    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    let protocol_error = |r: &Result<Bytes, RouteError>, what: &str| {
        assert!(
            matches!(r, Err(RouteError::Protocol(m)) if m.contains(what)),
            "{what}: {r:?}"
        );
    };
    protocol_error(&results[0], "index cut short");
    protocol_error(&results[1], "index 2 where 1");
    assert_eq!(
        results[2],
        Ok(Bytes::from_static(b"hiok")),
        "the healthy stream is untouched"
    );
    protocol_error(&results[3], "exceeds");
    assert!(relay.relay.is_online("g"));

    // The failed streams were cancelled at the connector; the connection still serves.
    let e = call("/after");
    let v = loop {
        let v = next_json(&mut peer).await;
        if v["type"] == "HTTP_REQUEST" {
            break v;
        }
        assert_eq!(v["type"], "HTTP_CANCEL", "{v}");
    };
    let rid = v["requestId"].as_str().unwrap();
    peer.send(text(
        json!({"type":"HTTP_RESPONSE_START","requestId":rid,"statusCode":200,"headers":{}}),
    ))
    .await
    .unwrap();
    peer.send(bin_chunk(rid, 0, Bytes::from_static(b"fine")))
        .await
        .unwrap();
    peer.send(text(json!({"type":"HTTP_RESPONSE_END","requestId":rid})))
        .await
        .unwrap();
    assert_eq!(e.await.unwrap(), Ok(Bytes::from_static(b"fine")));
}

/// The connector's side of the negotiation, against a fake relay: JSON chunks until the
/// relay's HELLO names `bin` (a relay that never answers, like the original Node one,
/// never gets a binary frame), binary after (heads and ends only once it names
/// `bin-head` too); binary request chunks are accepted.
#[tokio::test]
async fn the_connector_sends_binary_only_after_the_relay_named_bin() {
    const N: u64 = 200_000; // within one flow window: the fake relay grants no credit
    let origin = origin::Origin::spawn().await;
    let (mut relay, shutdown, session) = fake_relay().await;
    let hello = next_json(&mut relay).await;
    assert_eq!(hello["type"], "HELLO");
    assert!(hello["capabilities"]
        .as_array()
        .unwrap()
        .contains(&json!("bin")));

    let download = |rid: &str, seed: u64| {
        json!({"type":"HTTP_REQUEST","requestId":rid,"target":{"baseUrl":origin.base_url(),
            "method":"GET","path":format!("/bytes/{N}?seed={seed}"),"headers":{}}})
    };
    /// Reads one response: (sha256 of the body, binary chunk frames, JSON chunk frames,
    /// binary head and end frames).
    async fn read_response(relay: &mut Peer, rid: &str) -> (String, usize, usize, usize) {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        let (mut bin, mut chunks, mut heads) = (0, 0, 0);
        loop {
            let msg = match relay.next().await.unwrap().unwrap() {
                Message::Binary(b) => {
                    let msg = binary::decode_connector(&b).unwrap();
                    match binary::is_head(&msg) {
                        true => heads += 1,
                        false => bin += 1, // otherwise only body chunks here
                    }
                    msg
                }
                Message::Text(t) => ponte_protocol::decode_connector(t.as_str()).unwrap(),
                other => panic!("unexpected {other:?}"),
            };
            match msg {
                ConnectorMsg::HttpResponseStart(s) => assert_eq!(s.status_code, 200),
                ConnectorMsg::HttpResponseChunk(c) => {
                    assert_eq!(c.request_id, rid);
                    h.update(&c.data);
                    chunks += 1;
                }
                ConnectorMsg::HttpResponseEnd(e) => {
                    assert_eq!(e.request_id, rid);
                    return (hex(&h.finalize()), bin, chunks - bin, heads);
                }
                ConnectorMsg::WindowUpdate(_) | ConnectorMsg::Ping(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    relay.send(text(download("r-1", 1))).await.unwrap();
    let (sha, bin, json_chunks, heads) = read_response(&mut relay, "r-1").await;
    assert_eq!(sha, sha256_hex(pattern_chunks(N, 1)));
    assert_eq!(bin + heads, 0, "no binary frame before the relay named bin");
    assert!(json_chunks > 0);

    relay
        .send(text(
            json!({"type":"HELLO","version":"t","capabilities":["bin"]}),
        ))
        .await
        .unwrap();
    relay.send(text(download("r-2", 2))).await.unwrap();
    let (sha, bin, json_chunks, heads) = read_response(&mut relay, "r-2").await;
    assert_eq!(sha, sha256_hex(pattern_chunks(N, 2)));
    assert_eq!(json_chunks, 0, "every chunk binary once both named bin");
    assert!(bin >= 3, "{bin}");
    assert_eq!(
        heads, 0,
        "head and end stay JSON until the relay names bin-head"
    );

    // `bin-head` alone is nothing (it extends `bin`); with `bin`, head and end go binary.
    for (caps, want) in [(json!(["bin-head"]), 0), (json!(["bin", "bin-head"]), 2)] {
        relay
            .send(text(
                json!({"type":"HELLO","version":"t","capabilities":caps}),
            ))
            .await
            .unwrap();
        relay.send(text(download("r-h", 4))).await.unwrap();
        let (sha, _, _, heads) = read_response(&mut relay, "r-h").await;
        assert_eq!(sha, sha256_hex(pattern_chunks(N, 4)));
        assert_eq!(heads, want, "{caps}");
    }

    // An upload in binary request chunks reaches the device intact.
    relay
        .send(text(
            json!({"type":"HTTP_REQUEST","requestId":"r-3","bodyStream":true,
            "target":{"baseUrl":origin.base_url(),"method":"POST","path":"/upload",
            "headers":{"content-length":N.to_string()}}}),
        ))
        .await
        .unwrap();
    for (i, c) in pattern_chunks(N, 3).enumerate() {
        send_chunk(&mut relay, "r-3", i as u64, c).await;
    }
    relay
        .send(text(json!({"type":"HTTP_REQUEST_END","requestId":"r-3"})))
        .await
        .unwrap();
    let v = upload_answer(&mut relay).await;
    assert_eq!(v["len"], N);
    assert_eq!(v["sha256"], sha256_hex(pattern_chunks(N, 3)));
    stop(shutdown, session).await;
}

/// A relay that never answers HELLO (the original Node relay) grants no window: the
/// connector must not wait for one. It used to stall every response at 256 KiB.
#[tokio::test]
async fn a_relay_that_never_answers_hello_gets_responses_longer_than_one_window() {
    const N: u64 = 8 * limits::INITIAL_WINDOW as u64;
    let origin = origin::Origin::spawn().await;
    let (mut relay, shutdown, session) = fake_relay().await;
    assert_eq!(next_json(&mut relay).await["type"], "HELLO");
    relay
        .send(text(json!({"type":"HTTP_REQUEST","requestId":"r-1",
            "target":{"baseUrl":origin.base_url(),"method":"GET",
            "path":format!("/bytes/{N}?seed=7"),"headers":{}}})))
        .await
        .unwrap();
    let mut body = Vec::new();
    let read = read_json_body(&mut relay, &mut body, u64::MAX);
    let ended = tokio::time::timeout(Duration::from_secs(30), read).await;
    assert!(ended == Ok(true), "stalled after {} bytes", body.len());
    assert_eq!(
        sha256_hex([Bytes::from(body)]),
        sha256_hex(pattern_chunks(N, 7))
    );
    stop(shutdown, session).await;
}

/// An upload that the device takes fast gets its window grown, as a download does: the
/// connector grants more than the initial 256 KiB, so a long round trip does not cap an
/// upload at 256 KiB per trip. (Before, uploads were credited only what was consumed.)
#[tokio::test]
async fn a_fast_upload_is_granted_more_than_the_initial_window() {
    const N: u64 = 32 << 20;
    let origin = origin::Origin::spawn().await;
    let (mut relay, shutdown, session) = fake_relay().await;
    assert_eq!(next_json(&mut relay).await["type"], "HELLO");
    hello_caps(
        &mut relay,
        &["flow", "req-stream", "error", "cancel", "bin"],
    )
    .await;
    relay
        .send(text(
            json!({"type":"HTTP_REQUEST","requestId":"r-u","bodyStream":true,
            "target":{"baseUrl":origin.base_url(),"method":"POST","path":"/upload",
            "headers":{"content-length":N.to_string()}}}),
        ))
        .await
        .unwrap();
    // Sends as the relay does: no more than the window the connector has granted.
    let mut window = u64::from(limits::INITIAL_WINDOW);
    let mut peak = window;
    for (i, c) in pattern_chunks(N, 9).enumerate() {
        while window < c.len() as u64 {
            match relay.next().await.unwrap().unwrap() {
                Message::Text(t) => match ponte_protocol::decode_connector(t.as_str()).unwrap() {
                    ConnectorMsg::WindowUpdate(w) => window += u64::from(w.bytes),
                    ConnectorMsg::HttpResponseError(e) => panic!("upload failed: {e:?}"),
                    _ => {}
                },
                // The device answers once it has the whole upload.
                Message::Binary(b) => panic!("unexpected {:?}", binary::decode_connector(&b)),
                _ => {}
            }
            peak = peak.max(window);
        }
        window -= c.len() as u64;
        send_chunk(&mut relay, "r-u", i as u64, c).await;
    }
    relay
        .send(text(json!({"type":"HTTP_REQUEST_END","requestId":"r-u"})))
        .await
        .unwrap();
    let v = upload_answer(&mut relay).await;
    assert_eq!(v["len"], N);
    assert_eq!(v["sha256"], sha256_hex(pattern_chunks(N, 9)));
    assert!(
        peak > u64::from(limits::INITIAL_WINDOW),
        "the window never grew past {peak} bytes"
    );
    stop(shutdown, session).await;
}

/// Says HELLO with `caps` to the connector (whose own HELLO was read already).
async fn hello_caps(relay: &mut Peer, caps: &[&str]) {
    relay
        .send(text(
            json!({"type":"HELLO","version":"t","capabilities":caps}),
        ))
        .await
        .unwrap();
}

/// Sends one request-body chunk as a binary frame.
async fn send_chunk(relay: &mut Peer, rid: &str, index: u64, data: Bytes) {
    let msg = CloudMsg::HttpRequestChunk(ponte_protocol::Chunk {
        request_id: rid.into(),
        data,
        index,
    });
    relay
        .send(Message::Binary(binary::encode_cloud(&msg).unwrap()))
        .await
        .unwrap();
}

/// The device's JSON answer to an upload (`/upload`: its length and SHA-256), read to the
/// end of the response.
async fn upload_answer(relay: &mut Peer) -> Value {
    let mut body = Vec::new();
    loop {
        let msg = match relay.next().await.unwrap().unwrap() {
            Message::Binary(b) => binary::decode_connector(&b).unwrap(),
            Message::Text(t) => ponte_protocol::decode_connector(t.as_str()).unwrap(),
            other => panic!("unexpected {other:?}"),
        };
        match msg {
            ConnectorMsg::HttpResponseChunk(c) => body.extend_from_slice(&c.data),
            ConnectorMsg::HttpResponseEnd(_) => break,
            ConnectorMsg::HttpResponseError(e) => panic!("upload failed: {e:?}"),
            _ => {}
        }
    }
    serde_json::from_slice(&body).unwrap()
}

/// A download whose reader pauses (a browser that paused a video) for longer than the
/// request's timeout is not cut: the connector waits for the window as long as the relay
/// keeps the stream, holding one window meanwhile, and goes on when credit comes.
#[tokio::test]
async fn a_download_whose_reader_pauses_past_the_timeout_is_not_cut() {
    const N: u64 = 2 * limits::INITIAL_WINDOW as u64;
    let origin = origin::Origin::spawn().await;
    let (mut relay, shutdown, session) = fake_relay().await;
    assert_eq!(next_json(&mut relay).await["type"], "HELLO");
    hello_caps(&mut relay, &["flow", "error"]).await;
    relay
        .send(text(
            json!({"type":"HTTP_REQUEST","requestId":"r-w","timeoutMs":300,
            "target":{"baseUrl":origin.base_url(),"method":"GET",
            "path":format!("/bytes/{N}?seed=3"),"headers":{}}}),
        ))
        .await
        .unwrap();
    let mut body = Vec::new();
    let window = u64::from(limits::INITIAL_WINDOW);
    assert!(!read_json_body(&mut relay, &mut body, window).await);
    // The reader pauses, three times the request's timeout, granting nothing.
    tokio::time::sleep(Duration::from_millis(900)).await;
    relay
        .send(text(json!({"type":"WINDOW_UPDATE","requestId":"r-w",
            "bytes":limits::INITIAL_WINDOW})))
        .await
        .unwrap();
    let rest = read_json_body(&mut relay, &mut body, N + 1);
    let ended = tokio::time::timeout(Duration::from_secs(10), rest)
        .await
        .expect("the rest of the body after the credit");
    assert!(ended, "the body ends, not an error");
    assert_eq!(body.len() as u64, N);
    assert_eq!(
        sha256_hex([Bytes::from(body)]),
        sha256_hex(pattern_chunks(N, 3))
    );
    stop(shutdown, session).await;
}

/// Reads a JSON response into `body` until it holds `want` bytes (false) or the response
/// ends (true).
async fn read_json_body(relay: &mut Peer, body: &mut Vec<u8>, want: u64) -> bool {
    loop {
        let v = next_json(relay).await;
        match v["type"].as_str().unwrap() {
            "HTTP_RESPONSE_START" => assert_eq!(v["statusCode"], 200),
            "HTTP_RESPONSE_CHUNK" => body.extend(
                base64::Engine::decode(
                    &base64::engine::general_purpose::STANDARD,
                    v["data"].as_str().unwrap(),
                )
                .unwrap(),
            ),
            "HTTP_RESPONSE_END" => return true,
            other => panic!("unexpected {other}: {v}"),
        }
        if body.len() as u64 >= want {
            return false;
        }
    }
}

/// A JSON upload chunk over the 64 KiB chunk size fails its request at the connector,
/// as the binary decoder refuses a binary one: a peer that named `flow` keeps to it.
#[tokio::test]
async fn an_upload_chunk_over_the_chunk_size_fails_its_request() {
    let origin = origin::Origin::spawn().await;
    let (mut relay, shutdown, session) = fake_relay().await;
    assert_eq!(next_json(&mut relay).await["type"], "HELLO");
    hello_caps(&mut relay, &["flow", "req-stream", "error"]).await;
    relay
        .send(text(
            json!({"type":"HTTP_REQUEST","requestId":"r-big","bodyStream":true,
            "target":{"baseUrl":origin.base_url(),"method":"POST","path":"/upload",
            "headers":{}}}),
        ))
        .await
        .unwrap();
    let data = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        vec![b'u'; limits::MAX_CHUNK_LEN + 1],
    );
    relay
        .send(text(
            json!({"type":"HTTP_REQUEST_CHUNK","requestId":"r-big",
            "data":data,"index":0}),
        ))
        .await
        .unwrap();
    let v = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let v = next_json(&mut relay).await;
            if v["type"] == "HTTP_RESPONSE_ERROR" {
                break v;
            }
        }
    })
    .await
    .expect("the oversized chunk fails the request");
    assert_eq!(v["requestId"], "r-big");
    assert_eq!(v["code"], "BAD_REQUEST", "{v}");
    assert!(v["message"].as_str().unwrap().contains("65536"), "{v}");
    stop(shutdown, session).await;
}

/// Request headers over 64 KiB are refused by the connector too, not only by the relay
/// that sends them: BAD_REQUEST, and nothing reaches the device.
#[tokio::test]
async fn request_headers_over_the_limit_are_refused_by_the_connector() {
    let origin = origin::Origin::spawn().await;
    let (mut relay, shutdown, session) = fake_relay().await;
    assert_eq!(next_json(&mut relay).await["type"], "HELLO");
    let big = "v".repeat(limits::MAX_HEADER_BYTES);
    relay
        .send(text(json!({"type":"HTTP_REQUEST","requestId":"r-h",
            "target":{"baseUrl":origin.base_url(),"method":"GET","path":"/hello",
            "headers":{"x-big":big}}})))
        .await
        .unwrap();
    let v = tokio::time::timeout(Duration::from_secs(10), next_json(&mut relay))
        .await
        .expect("an answer");
    assert_eq!(v["type"], "HTTP_RESPONSE_ERROR", "{v}");
    assert_eq!(v["requestId"], "r-h");
    assert_eq!(v["code"], "BAD_REQUEST", "{v}");
    let accepted = origin
        .stats
        .accepted
        .load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(accepted, 0, "nothing reached the device");
    stop(shutdown, session).await;
}
