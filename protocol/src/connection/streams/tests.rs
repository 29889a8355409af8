//! The stream table of both ends, stepped without a socket: what each frame does to the
//! stream it names, and that a request and its response cross two `Connection`s through
//! the real codec.

use super::super::{Connection, Connector, Relay, Wire};
use super::*;
use crate::limits::{
    HELLO_GRACE, INITIAL_WINDOW, MAX_CHUNK_LEN, MAX_STREAMS_PER_CONNECTOR, PEER_TIMEOUT,
    PING_INTERVAL, WINDOW_GROWTH_BUDGET,
};
use crate::{codec, BodyEncoding, Chunk, StreamRef, Target, WindowUpdate, WsMessage, WsOpened};
use std::time::{Duration, Instant};

/// Handles are numbers here: the driver's would be channels.
type RelayLink = Connection<Relay, u32, u32>;
type ConnectorLink = Connection<Connector, u32, u32>;

fn relay() -> RelayLink {
    Connection::relay(Instant::now(), PING_INTERVAL, PEER_TIMEOUT, HELLO_GRACE)
}

fn connector() -> ConnectorLink {
    let caps = crate::Capabilities::ALL;
    Connection::connector(Instant::now(), PING_INTERVAL, PEER_TIMEOUT, caps)
}

/// A response stream as the relay opens one (`flow`: the window binds).
fn response(handle: u32) -> HttpStream<u32> {
    HttpStream::new(Some(BodyRx::response(true)), BodyTx::new(true), handle)
}

fn start(id: &str) -> ConnectorMsg {
    ConnectorMsg::HttpResponseStart(crate::ResponseStart {
        request_id: id.into(),
        status_code: 200,
        headers: Headers::new(),
    })
}

fn chunk(id: &str, index: u64, len: usize) -> Chunk {
    Chunk {
        request_id: id.into(),
        data: Bytes::from(vec![b'x'; len]),
        index,
    }
}

fn end(id: &str) -> StreamRef {
    StreamRef {
        request_id: id.into(),
    }
}

#[test]
fn http_and_websocket_streams_count_together_and_duplicates_are_refused() {
    let mut link = relay();
    for n in 0..MAX_STREAMS_PER_CONNECTOR as u32 {
        let opened = match n % 2 {
            0 => link.open_http(format!("r-{n}"), response(n)),
            _ => link.open_ws(format!("w-{n}"), n),
        };
        assert_eq!(opened, Ok(()), "stream {n}");
    }
    assert_eq!(link.open_streams(), MAX_STREAMS_PER_CONNECTOR);
    assert_eq!(link.open_ws("w-new".into(), 0), Err(Refusal::Busy));
    assert_eq!(
        link.open_http("r-new".into(), response(0)),
        Err(Refusal::Busy)
    );
    // A duplicate is refused as such even when full, and the one open keeps its handle.
    assert_eq!(
        link.open_http("r-0".into(), response(99)),
        Err(Refusal::Duplicate)
    );
    assert_eq!(link.http("r-0").map(|s| s.handle), Some(0));
    assert_eq!(link.admits("w-1", true), Err(Refusal::Duplicate));
    // Kinds are tables apart: an HTTP id does not collide with a WebSocket id.
    assert_eq!(link.close_http("r-2"), Some(2));
    assert_eq!(link.open_ws("r-0".into(), 7), Ok(()));
    let (http, ws) = link.close_all();
    assert_eq!((http.len(), ws.len()), (127, 129));
    assert_eq!(link.open_streams(), 0);
}

#[test]
fn a_broken_rule_fails_one_stream_and_the_others_go_on() {
    let mut link = relay();
    link.open_http("a".into(), response(1)).unwrap();
    link.open_http("b".into(), response(2)).unwrap();
    assert!(matches!(
        link.route(start("a")),
        Some(AtRelay::Start {
            stream: 1,
            status: 200,
            ..
        })
    ));
    assert!(matches!(
        link.route(start("b")),
        Some(AtRelay::Start { stream: 2, .. })
    ));
    let data = |link: &mut RelayLink, id: &str, index| {
        link.route(ConnectorMsg::HttpResponseChunk(chunk(id, index, 10)))
    };
    assert!(matches!(
        data(&mut link, "a", 0),
        Some(AtRelay::Data { stream: 1, .. })
    ));
    // Chunk 1 lost: a gap.
    match data(&mut link, "a", 2) {
        Some(AtRelay::Broken {
            id, stream, reason, ..
        }) => {
            assert_eq!((id.as_str(), stream), ("a", 1));
            assert!(reason.contains("index 2 where 1"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!link.is_open("a"));
    // What was in flight for it is ignored; the other stream goes on to its end.
    assert!(matches!(
        data(&mut link, "a", 1),
        Some(AtRelay::Unknown { .. })
    ));
    assert!(matches!(
        data(&mut link, "b", 0),
        Some(AtRelay::Data { stream: 2, .. })
    ));
    assert!(matches!(
        link.route(ConnectorMsg::HttpResponseEnd(end("b"))),
        Some(AtRelay::End { stream: 2, .. })
    ));
    assert_eq!(link.open_streams(), 0);
    assert!(matches!(
        link.route(ConnectorMsg::HttpResponseEnd(end("b"))),
        Some(AtRelay::Unknown { .. })
    ));
}

#[test]
fn the_relay_checks_each_response_frame_against_its_stream() {
    let broken = |msgs: Vec<ConnectorMsg>| -> String {
        let mut link = relay();
        link.open_http("r".into(), response(1)).unwrap();
        for msg in msgs {
            if let Some(AtRelay::Broken { reason, .. }) = link.route(msg) {
                assert!(!link.is_open("r"), "a broken stream leaves the table");
                return reason;
            }
        }
        panic!("no frame broke the stream");
    };
    let chunk_msg = |index, len| ConnectorMsg::HttpResponseChunk(chunk("r", index, len));
    assert!(broken(vec![chunk_msg(0, 1)]).contains("before HTTP_RESPONSE_START"));
    assert!(broken(vec![ConnectorMsg::HttpResponseEnd(end("r"))]).contains("END before"));
    assert!(broken(vec![start("r"), start("r")]).contains("second HTTP_RESPONSE_START"));
    let over = MAX_CHUNK_LEN + 1;
    assert!(broken(vec![start("r"), chunk_msg(0, over)]).contains("over the"));
    // The window: 256 KiB sent without credit, then one byte more.
    let mut msgs = vec![start("r")];
    let chunks = INITIAL_WINDOW as usize / MAX_CHUNK_LEN;
    msgs.extend((0..chunks as u64).map(|i| chunk_msg(i, MAX_CHUNK_LEN)));
    msgs.push(chunk_msg(chunks as u64, 1));
    assert!(
        broken(msgs).contains("window"),
        "an overrun breaks the stream"
    );
    // An upload's credit past the largest window.
    let credit = |bytes| {
        ConnectorMsg::WindowUpdate(WindowUpdate {
            request_id: "r".into(),
            bytes,
        })
    };
    assert!(!broken(vec![credit(u32::MAX)]).is_empty());
    // An error ends it without a rule broken.
    let mut link = relay();
    link.open_http("r".into(), response(1)).unwrap();
    let err = crate::ResponseError::new("r", crate::ErrorCode::Timeout, "slow");
    assert!(matches!(
        link.route(ConnectorMsg::HttpResponseError(err)),
        Some(AtRelay::Error { stream: 1, .. })
    ));
    assert!(!link.is_open("r"));
}

#[test]
fn credit_follows_the_consumer_and_growth_goes_back_when_the_stream_leaves() {
    let mut link = relay();
    link.open_http("r".into(), response(1)).unwrap();
    link.route(start("r"));
    let t0 = Instant::now();
    // A consumer that takes each window's worth at once: the window grows.
    let mut index = 0;
    let mut granted = 0u64;
    for round in 0..4u32 {
        let window = INITIAL_WINDOW as u64 + granted;
        let mut sent = 0;
        while sent + MAX_CHUNK_LEN as u64 <= window {
            let msg = ConnectorMsg::HttpResponseChunk(chunk("r", index, MAX_CHUNK_LEN));
            assert!(
                matches!(link.route(msg), Some(AtRelay::Data { .. })),
                "round {round}"
            );
            index += 1;
            sent += MAX_CHUNK_LEN as u64;
        }
        let now = t0 + Duration::from_micros(u64::from(round) + 1);
        let mut credit = 0u64;
        for _ in 0..sent / MAX_CHUNK_LEN as u64 {
            credit += u64::from(link.consumed("r", MAX_CHUNK_LEN, now).unwrap_or(0));
        }
        assert!(credit >= sent, "all that was read is credited");
        granted += credit - sent;
    }
    let held = WINDOW_GROWTH_BUDGET - link.window_budget().left();
    assert!(held > 0, "a fast consumer's window grows");
    assert_eq!(held, granted, "the budget holds what the window grew by");
    // Its end takes it out of the table, and its growth counts until what the window
    // let in has been read (the caller drops the lease with its end of the stream).
    let Some(AtRelay::End { growth, .. }) = link.route(ConnectorMsg::HttpResponseEnd(end("r")))
    else {
        panic!("the end");
    };
    assert!(!link.is_open("r"));
    assert_eq!(WINDOW_GROWTH_BUDGET - link.window_budget().left(), held);
    drop(growth);
    assert_eq!(link.window_budget().left(), WINDOW_GROWTH_BUDGET);
    assert_eq!(
        link.consumed("r", 1, t0),
        None,
        "no credit for a stream gone"
    );
}

#[test]
fn the_connector_checks_each_upload_frame_against_its_request() {
    let mut link = connector();
    let whole = HttpStream::new(None, BodyTx::new(true), 1);
    let streamed = HttpStream::new(Some(BodyRx::upload()), BodyTx::new(true), 2);
    link.open_http("whole".into(), whole).unwrap();
    link.open_http("up".into(), streamed).unwrap();
    let up_chunk = |id: &str, index| CloudMsg::HttpRequestChunk(chunk(id, index, 5));
    // The END of a request sent whole: nothing to do, it stays open for its response.
    assert!(link.route(CloudMsg::HttpRequestEnd(end("whole"))).is_none());
    assert!(link.is_open("whole"));
    match link.route(up_chunk("whole", 0)) {
        Some(AtConnector::Broken {
            stream: 1, reason, ..
        }) => {
            assert!(reason.contains("without bodyStream"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        link.route(up_chunk("up", 0)),
        Some(AtConnector::Chunk { stream: 2, .. })
    ));
    assert!(matches!(
        link.route(CloudMsg::HttpRequestEnd(end("up"))),
        Some(AtConnector::UploadEnd { stream: 2 })
    ));
    assert!(link.is_open("up"), "its response is still to send");
    assert!(link
        .http("up")
        .and_then(|s| s.rx.as_ref())
        .is_some_and(BodyRx::is_ended));
    assert!(matches!(
        link.route(up_chunk("up", 1)),
        Some(AtConnector::Broken { stream: 2, .. })
    ));
    // A cancel takes it out; what follows is ignored.
    link.open_http("c".into(), HttpStream::new(None, BodyTx::new(true), 3))
        .unwrap();
    assert!(matches!(
        link.route(CloudMsg::HttpCancel(end("c"))),
        Some(AtConnector::Cancel { stream: 3, .. })
    ));
    assert!(matches!(
        link.route(CloudMsg::HttpCancel(end("c"))),
        Some(AtConnector::Unknown { .. })
    ));
    assert_eq!(link.open_streams(), 0);
}

#[test]
fn credit_opens_the_response_window_at_the_connector() {
    let mut link = connector();
    link.open_http("r".into(), HttpStream::new(None, BodyTx::new(true), 1))
        .unwrap();
    let tx = |link: &mut ConnectorLink, want| link.http("r").and_then(|s| s.tx.take(want));
    let mut sent = 0;
    while let Some(piece) = tx(&mut link, MAX_CHUNK_LEN) {
        sent += piece.len;
    }
    assert_eq!(
        sent, INITIAL_WINDOW as usize,
        "the window is shut after 256 KiB"
    );
    let credit = CloudMsg::WindowUpdate(WindowUpdate {
        request_id: "r".into(),
        bytes: 1000,
    });
    assert!(matches!(
        link.route(credit),
        Some(AtConnector::Credit { stream: 1 })
    ));
    assert_eq!(tx(&mut link, MAX_CHUNK_LEN).map(|p| p.len), Some(1000));
}

#[test]
fn websocket_frames_follow_their_stream() {
    let mut link = relay();
    link.open_ws("w".into(), 1).unwrap();
    let opened = |id: &str| {
        ConnectorMsg::WsOpened(WsOpened {
            stream_id: id.into(),
            protocol: Some("chat".into()),
        })
    };
    assert!(matches!(
        link.route(opened("w")),
        Some(AtRelay::WsOpened { ws: 1, .. })
    ));
    assert!(matches!(
        link.route(opened("gone")),
        Some(AtRelay::WsOrphan { .. })
    ));
    let message = |text: Option<&str>, data: Option<&[u8]>| {
        ConnectorMsg::WsMessage(WsMessage {
            stream_id: "w".into(),
            text: text.map(Into::into),
            data: data.map(Bytes::copy_from_slice),
        })
    };
    match link.route(message(Some("hi"), None)) {
        Some(AtRelay::Ws(AtWs::Message {
            ws: 1,
            payload: WsPayload::Text(t),
            ..
        })) => assert_eq!(t, "hi"),
        other => panic!("{other:?}"),
    }
    // Both payloads: a protocol error (1002), and the stream leaves the table.
    match link.route(message(Some("a"), Some(b"b"))) {
        Some(AtRelay::Ws(AtWs::Broken { ws: 1, refusal, .. })) => assert_eq!(refusal.code, 1002),
        other => panic!("{other:?}"),
    }
    assert!(link.ws("w").is_none());
    assert!(matches!(
        link.route(message(Some("late"), None)),
        Some(AtRelay::Ws(AtWs::Unknown { .. }))
    ));
    link.open_ws("v".into(), 2).unwrap();
    let close = ConnectorMsg::WsClose(crate::WsClose {
        stream_id: "v".into(),
        code: Some(1000),
        reason: None,
        error: None,
    });
    assert!(matches!(
        link.route(close),
        Some(AtRelay::Ws(AtWs::Closed { ws: 2, .. }))
    ));
    assert_eq!(link.open_streams(), 0);
}

#[test]
fn a_frame_that_does_not_decode_fails_the_open_stream_it_names_only() {
    let mut link = relay();
    link.open_http("r-1".into(), response(1)).unwrap();
    link.open_ws("w-1".into(), 2).unwrap();
    let bad = |frame: &str| codec::decode_connector(frame).unwrap_err();
    let e = bad(r#"{"type":"HTTP_RESPONSE_START","requestId":"r-1","statusCode":"x"}"#);
    assert!(matches!(link.blame(&e), Blamed::Http { stream: 1, .. }));
    assert!(!link.is_open("r-1"));
    assert!(
        matches!(link.blame(&e), Blamed::Dropped),
        "it is gone already"
    );
    let e = bad(r#"{"type":"WS_MESSAGE","streamId":"w-1","text":5}"#);
    assert!(matches!(link.blame(&e), Blamed::Ws { ws: 2, .. }));
    let e = bad(r#"{"type":"NOT_YET_DEFINED","requestId":"r-2"}"#);
    assert!(matches!(link.blame(&e), Blamed::Ignored));
}

/// A request and its streamed response cross a relay's and a connector's `Connection`
/// through the real codec, each end's table holding its side of the stream.
#[test]
fn a_request_and_its_response_cross_two_connections() {
    let (mut relay, mut connector) = (relay(), connector());
    let now = Instant::now();
    relay.open_http("r-1".into(), response(10)).unwrap();
    let request = CloudMsg::HttpRequest(HttpRequest {
        request_id: "r-1".into(),
        tenant_id: None,
        equip_id: None,
        target: Target {
            base_url: "http://127.0.0.1:1".into(),
            method: "GET".into(),
            path: "/".into(),
            headers: Headers::new(),
            body: None,
            body_encoding: None::<BodyEncoding>,
            tls_insecure: false,
        },
        timeout_ms: None,
        body_stream: false,
    });
    let frame = codec::encode(&request);
    let read = connector.read(now, Wire::Text(&frame)).unwrap().unwrap();
    let Some(AtConnector::Request(req)) = connector.route(read) else {
        panic!("a request");
    };
    let whole = HttpStream::new(None, BodyTx::new(true), 20);
    connector.open_http(req.request_id.clone(), whole).unwrap();
    // The connector sends the head and 300 KiB within the relay's window, the relay's
    // consumer reads and returns credit, until the end.
    let to_relay = |relay: &mut RelayLink, msg: &ConnectorMsg| {
        let frame = codec::encode(msg);
        let read = relay.read(now, Wire::Text(&frame)).unwrap().unwrap();
        relay.route(read)
    };
    assert!(matches!(
        to_relay(&mut relay, &start("r-1")),
        Some(AtRelay::Start { stream: 10, .. })
    ));
    let (mut left, mut received) = (300 * 1024usize, 0usize);
    while left > 0 {
        let piece = connector.http("r-1").and_then(|s| s.tx.take(left));
        let Some(piece) = piece else {
            panic!("the window stays open while the relay credits what it reads");
        };
        left -= piece.len;
        let msg = ConnectorMsg::HttpResponseChunk(chunk("r-1", piece.index, piece.len));
        let Some(AtRelay::Data { data, .. }) = to_relay(&mut relay, &msg) else {
            panic!("data");
        };
        received += data.len();
        if let Some(bytes) = relay.consumed("r-1", data.len(), now) {
            let credit = codec::encode(&CloudMsg::WindowUpdate(WindowUpdate {
                request_id: "r-1".into(),
                bytes,
            }));
            let read = connector.read(now, Wire::Text(&credit)).unwrap().unwrap();
            assert!(matches!(
                connector.route(read),
                Some(AtConnector::Credit { stream: 20 })
            ));
        }
    }
    assert_eq!(received, 300 * 1024);
    let end_msg = ConnectorMsg::HttpResponseEnd(end("r-1"));
    assert!(matches!(
        to_relay(&mut relay, &end_msg),
        Some(AtRelay::End { stream: 10, .. })
    ));
    assert_eq!(connector.close_http("r-1"), Some(20));
    assert_eq!((relay.open_streams(), connector.open_streams()), (0, 0));
}
