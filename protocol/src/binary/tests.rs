use super::*;

fn chunk_msg(id: &str, data: &'static [u8], index: u64) -> Chunk {
    Chunk {
        request_id: id.into(),
        data: Bytes::from_static(data),
        index,
    }
}

fn ws(id: &str, text: Option<&str>, data: Option<&'static [u8]>) -> WsMessage {
    WsMessage {
        stream_id: id.into(),
        text: text.map(str::to_owned),
        data: data.map(Bytes::from_static),
    }
}

#[test]
fn layout_is_exactly_as_documented() {
    let frame =
        encode_connector(&ConnectorMsg::HttpResponseChunk(chunk_msg("r-1", b"hi", 0))).unwrap();
    assert_eq!(
        &frame[..],
        [1, 3, b'r', b'-', b'1', 0, 0, 0, 0, 0, 0, 0, 0, b'h', b'i']
    );
    let frame = encode_cloud(&CloudMsg::HttpRequestChunk(chunk_msg(
        "q",
        b"",
        0x0102030405060708,
    )))
    .unwrap();
    assert_eq!(&frame[..], [2, 1, b'q', 1, 2, 3, 4, 5, 6, 7, 8]);
    let frame = encode_cloud(&CloudMsg::WsMessage(ws("w", Some("é"), None))).unwrap();
    assert_eq!(&frame[..], [3, 1, b'w', 0xc3, 0xa9]);
    let frame = encode_connector(&ConnectorMsg::WsMessage(ws("w", None, Some(&[0, 255])))).unwrap();
    assert_eq!(&frame[..], [4, 1, b'w', 0, 255]);
}

#[test]
fn round_trip_both_directions() {
    let long_id = "i".repeat(MAX_ID_LEN);
    let big: &'static [u8] = Box::leak(vec![0xa5u8; MAX_CHUNK_LEN].into_boxed_slice());
    let connector = [
        ConnectorMsg::HttpResponseChunk(chunk_msg("r-1", b"hello", 7)),
        ConnectorMsg::HttpResponseChunk(chunk_msg(&long_id, big, u64::MAX)),
        ConnectorMsg::HttpResponseChunk(chunk_msg("é", b"", 0)),
        ConnectorMsg::WsMessage(ws("s", Some(""), None)),
        ConnectorMsg::WsMessage(ws("s", None, Some(b"\0\x01"))),
    ];
    for m in connector {
        let frame = encode_connector(&m).unwrap();
        assert_eq!(decode_connector(&frame).unwrap(), m);
    }
    let cloud = [
        CloudMsg::HttpRequestChunk(chunk_msg("r-2", b"body", 1)),
        CloudMsg::WsMessage(ws("s", Some("text ✓"), None)),
        CloudMsg::WsMessage(ws("s", None, Some(b""))),
    ];
    for m in cloud {
        let frame = encode_cloud(&m).unwrap();
        assert_eq!(decode_cloud(&frame).unwrap(), m);
    }
}

#[test]
fn messages_without_a_binary_form_stay_json() {
    let hb = crate::Heartbeat { ts: 1 };
    assert_eq!(encode_connector(&ConnectorMsg::Ping(hb)), None);
    assert_eq!(encode_cloud(&CloudMsg::Pong(hb)), None);
    assert_eq!(
        encode_connector(&ConnectorMsg::WsMessage(ws("s", Some("a"), Some(b"b")))),
        None
    );
    assert_eq!(
        encode_cloud(&CloudMsg::WsMessage(ws("s", None, None))),
        None
    );
    let too_long = "x".repeat(MAX_ID_LEN + 1);
    assert_eq!(
        encode_cloud(&CloudMsg::HttpRequestChunk(chunk_msg(&too_long, b"a", 0))),
        None
    );
    assert_eq!(
        encode_cloud(&CloudMsg::HttpRequestChunk(chunk_msg("", b"a", 0))),
        None
    );
}

/// Table: bad frame → error kind and whom it blames (request id, stream id).
#[test]
fn every_rejection_is_classified() {
    let mut over = vec![1u8, 1, b'r', 0, 0, 0, 0, 0, 0, 0, 0];
    over.extend(std::iter::repeat_n(0, MAX_CHUNK_LEN + 1));
    let mut id200 = vec![1u8, 200];
    id200.extend(std::iter::repeat_n(b'a', 200));
    id200.extend([0; 8]);
    type Case = (
        &'static str,
        Vec<u8>,
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
    );
    let cases: Vec<Case> = vec![
        ("empty", vec![], "Malformed", None, None),
        (
            "unknown kind",
            vec![0x7f, 1, b'r'],
            "UnknownType",
            None,
            None,
        ),
        ("kind zero", vec![0, 1, b'r'], "UnknownType", None, None),
        ("no id length", vec![1], "Malformed", None, None),
        (
            "zero-length id",
            vec![1, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            "Malformed",
            None,
            None,
        ),
        ("id over the limit", id200, "Malformed", None, None),
        (
            "id cut short",
            vec![1, 5, b'a', b'b'],
            "Malformed",
            None,
            None,
        ),
        (
            "id not UTF-8",
            vec![1, 2, 0xff, 0xfe, 0, 0, 0, 0, 0, 0, 0, 0],
            "Malformed",
            None,
            None,
        ),
        (
            "index cut short",
            vec![1, 1, b'r', 0, 0, 0],
            "Malformed",
            Some("r"),
            None,
        ),
        (
            "no index at all",
            vec![1, 1, b'r'],
            "Malformed",
            Some("r"),
            None,
        ),
        ("chunk over the limit", over, "Malformed", Some("r"), None),
        (
            "wrong direction",
            vec![2, 1, b'q', 0, 0, 0, 0, 0, 0, 0, 0],
            "Malformed",
            Some("q"),
            None,
        ),
        (
            "ws text not UTF-8",
            vec![3, 1, b's', 0xc3],
            "Malformed",
            None,
            Some("s"),
        ),
    ];
    for (name, frame, kind, rid, sid) in cases {
        let err = decode_connector(&Bytes::from(frame)).unwrap_err();
        let got = match err {
            DecodeError::Malformed { .. } => "Malformed",
            DecodeError::UnknownType { .. } => "UnknownType",
            DecodeError::TooLarge { .. } => "TooLarge",
        };
        assert_eq!(got, kind, "{name}: {err}");
        assert_eq!(err.request_id(), rid, "{name}");
        assert_eq!(err.stream_id(), sid, "{name}");
    }
    // The cloud's decoder: a response chunk is the wrong direction there.
    let err = decode_cloud(&Bytes::from_static(&[1, 1, b'r', 0, 0, 0, 0, 0, 0, 0, 0])).unwrap_err();
    assert_eq!(err.request_id(), Some("r"));
    // A WebSocket message has no index, and may be as large as the frame allows.
    let mut ws_big = vec![4u8, 1, b's'];
    ws_big.extend(std::iter::repeat_n(1, MAX_FRAME_LEN - 3));
    assert!(decode_cloud(&Bytes::from(ws_big.clone())).is_ok());
    ws_big.push(1);
    assert!(matches!(
        decode_cloud(&Bytes::from(ws_big)),
        Err(DecodeError::TooLarge { .. })
    ));
}

fn head(id: &str, status: u16, headers: &[(&str, &str)]) -> ConnectorMsg {
    ConnectorMsg::HttpResponseStart(ResponseStart {
        request_id: id.into(),
        status_code: status,
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
    })
}

/// `bin-head`: a response's head and end, as documented, in both directions of the
/// codec; order and spelling of repeated headers kept.
#[test]
fn response_heads_and_ends_have_the_documented_layout() {
    let frame = encode_connector(&head("r", 200, &[("a", "b")])).unwrap();
    assert_eq!(
        &frame[..],
        [5, 1, b'r', 0, 200, 0, 1, b'a', 0, 0, 0, 1, b'b']
    );
    let end = ConnectorMsg::HttpResponseEnd(StreamRef {
        request_id: "r-1".into(),
    });
    let frame = encode_connector(&end).unwrap();
    assert_eq!(&frame[..], [6, 3, b'r', b'-', b'1']);
    assert_eq!(decode_connector(&frame).unwrap(), end);
    for m in [
        head("r", 404, &[]),
        head(
            "r-2",
            u16::MAX,
            &[
                ("Set-Cookie", "a=1"),
                ("x", ""),
                ("set-cookie", "é=✓"),
                ("", ""),
            ],
        ),
    ] {
        let frame = encode_connector(&m).unwrap();
        assert_eq!(decode_connector(&frame).unwrap(), m);
        assert!(is_head(&m));
    }
    assert!(!is_head(&ConnectorMsg::HttpResponseChunk(chunk_msg(
        "r", b"", 0
    ))));
}

#[test]
fn a_bad_head_fails_its_own_request_only() {
    let mut empties = vec![5u8, 1, b'r', 0, 200];
    // Empty headers cost six bytes each on the wire, 64 once decoded: refused once
    // they would decode to more than a frame holds.
    for _ in 0..(MAX_FRAME_LEN / HEADER_ENTRY_COST + 1) {
        empties.extend([0, 0, 0, 0, 0, 0]);
    }
    assert!(empties.len() < MAX_FRAME_LEN);
    for (name, frame) in [
        ("no status", vec![5, 1, b'r', 0]),
        ("name cut short", vec![5, 1, b'r', 0, 200, 0, 5, b'a']),
        (
            "value length cut short",
            vec![5, 1, b'r', 0, 200, 0, 1, b'a', 0, 0],
        ),
        (
            "value cut short",
            vec![5, 1, b'r', 0, 200, 0, 0, 0, 0, 0, 9, b'v'],
        ),
        (
            "name not UTF-8",
            vec![5, 1, b'r', 0, 200, 0, 1, 0xff, 0, 0, 0, 0],
        ),
        ("end with bytes after the id", vec![6, 1, b'r', 0]),
        ("headers past a frame", empties),
    ] {
        let err = decode_connector(&Bytes::from(frame)).unwrap_err();
        assert!(
            matches!(err, DecodeError::Malformed { .. }),
            "{name}: {err}"
        );
        assert_eq!(err.request_id(), Some("r"), "{name}");
    }
    // Heads go connector → cloud only.
    let err = decode_cloud(&Bytes::from_static(&[6, 1, b'r'])).unwrap_err();
    assert_eq!(err.request_id(), Some("r"));
}

/// The payload is a view of the frame, not a copy.
#[test]
fn payload_shares_the_frame_buffer() {
    let frame = encode_connector(&ConnectorMsg::HttpResponseChunk(chunk_msg(
        "r", b"abcdef", 3,
    )))
    .unwrap();
    let ConnectorMsg::HttpResponseChunk(c) = decode_connector(&frame).unwrap() else {
        panic!()
    };
    assert_eq!(c.data.as_ptr(), frame[frame.len() - 6..].as_ptr());
}

/// Which frames go binary is one rule for both ends: body chunks and WebSocket messages
/// once the peer named `bin`, a response's head and end only with `bin-head` as well,
/// and never a control frame.
#[test]
fn binary_frames_go_only_where_the_peer_agreed() {
    use crate::{Capabilities, Capability as C, ResponseStart, StreamRef, WindowUpdate};
    let caps = |cs: &[C]| cs.iter().copied().collect::<Capabilities>();
    let chunk = Chunk {
        request_id: "r-1".into(),
        data: Bytes::from_static(b"x"),
        index: 0,
    };
    let body = ConnectorMsg::HttpResponseChunk(chunk.clone());
    let head = ConnectorMsg::HttpResponseStart(ResponseStart {
        request_id: "r-1".into(),
        status_code: 200,
        headers: Default::default(),
    });
    let end = ConnectorMsg::HttpResponseEnd(StreamRef {
        request_id: "r-1".into(),
    });
    let credit = ConnectorMsg::WindowUpdate(WindowUpdate {
        request_id: "r-1".into(),
        bytes: 1,
    });
    let upload = CloudMsg::HttpRequestChunk(chunk);
    let binary = |c: &Capabilities, m: &ConnectorMsg| encode_connector_for(*c, m).is_some();
    for (agreed, bodies, heads) in [
        (caps(&[]), false, false),
        (caps(&[C::BinHead]), false, false),
        (caps(&[C::Bin]), true, false),
        (caps(&[C::Bin, C::BinHead]), true, true),
    ] {
        assert_eq!(binary(&agreed, &body), bodies, "{agreed:?}");
        assert_eq!(binary(&agreed, &head), heads, "{agreed:?}");
        assert_eq!(binary(&agreed, &end), heads, "{agreed:?}");
        assert!(!binary(&agreed, &credit), "control frames stay JSON");
        assert_eq!(encode_cloud_for(agreed, &upload).is_some(), bodies);
    }
}

/// The connector uses what both named: a relay answering with more than was offered
/// gets only what was offered.
#[test]
fn the_connector_keeps_what_both_named() {
    use crate::{Capabilities, Capability as C, Peer};
    let offered: Capabilities = [C::Flow, C::Bin].into_iter().collect();
    let answer: Capabilities = [C::Flow, C::BinHead, C::Ws].into_iter().collect();
    let peer = Peer::answered(offered, answer);
    assert!(peer.hello);
    assert_eq!(peer.caps.names(), ["flow"]);
    assert_eq!(Capabilities::ALL, Capabilities::all());
    assert_eq!(Capabilities::ALL.names().len(), C::ALL.len());
    assert_eq!(Capabilities::from_bits(peer.caps.bits()), peer.caps);
    assert_eq!(Capabilities::from_bits(u16::MAX), Capabilities::ALL);
}
