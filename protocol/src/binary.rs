//! Binary body frames (`bin` capability), sans-IO: encode/decode over bytes.
//!
//! Once both sides have named `bin` in HELLO, the body chunks of HTTP streams and the
//! messages of tunnelled WebSockets may travel as binary WebSocket frames instead of JSON
//! text frames: no base64 (+33% bytes) and no JSON parse per 64 KiB. Control messages
//! stay JSON, and JSON chunks stay valid from every peer; a decoded binary frame is the
//! same [`ConnectorMsg`] / [`CloudMsg`] the JSON one would be, so index rules and flow
//! windows apply to both alike (one stream may even mix the two).
//!
//! # Layout
//!
//! One binary WebSocket frame, integers big-endian, no padding:
//!
//! | offset      | size | field |
//! |-------------|------|-------|
//! | 0           | 1    | kind: [`KIND_HTTP_RESPONSE_CHUNK`] `0x01` (connector → cloud), [`KIND_HTTP_REQUEST_CHUNK`] `0x02` (cloud → connector), [`KIND_WS_TEXT`] `0x03`, [`KIND_WS_BINARY`] `0x04` (WebSocket messages, both directions) |
//! | 1           | 1    | `L`, length of the id in bytes, `1..=`[`MAX_ID_LEN`] |
//! | 2           | `L`  | the id, UTF-8: `requestId` for kinds 1 and 2, `streamId` for kinds 3 and 4 |
//! | 2+L         | 8    | `index`, u64 — kinds 1 and 2 only: the same per-request counter as the JSON chunk's `index` |
//! | 2+L (+8)    | rest | payload: raw body bytes (kind 3: UTF-8 text); may be empty |
//!
//! An HTTP chunk's payload is at most [`MAX_CHUNK_LEN`]; a WebSocket message's is bounded
//! only by the frame ([`MAX_FRAME_LEN`] in all). Example: response chunk `"hi"` of request
//! `r-1`, index 0 = `01 03 72 2d 31 00 00 00 00 00 00 00 00 68 69`.
//!
//! Must never: panic on any input, or name a stream in an error that the frame does not
//! name itself (a frame whose id cannot be read blames nobody and is dropped).

use crate::codec::DecodeError;
use crate::limits::{MAX_CHUNK_LEN, MAX_FRAME_LEN, MAX_ID_LEN};
use crate::message::{Chunk, CloudMsg, ConnectorMsg, WsMessage};
use bytes::{BufMut, Bytes, BytesMut};

/// `HTTP_RESPONSE_CHUNK`, connector → cloud.
pub const KIND_HTTP_RESPONSE_CHUNK: u8 = 0x01;
/// `HTTP_REQUEST_CHUNK`, cloud → connector.
pub const KIND_HTTP_REQUEST_CHUNK: u8 = 0x02;
/// `WS_MESSAGE` with `text`, either direction.
pub const KIND_WS_TEXT: u8 = 0x03;
/// `WS_MESSAGE` with `data`, either direction.
pub const KIND_WS_BINARY: u8 = 0x04;

/// Bytes of the kind and id-length fields.
const PREFIX_LEN: usize = 2;
/// Bytes of the index field of an HTTP chunk.
const INDEX_LEN: usize = 8;

/// The frame's parts once its header is read; the payload shares the frame's buffer.
struct Parts {
    kind: u8,
    id: String,
    index: u64,
    payload: Bytes,
}

/// Encodes a connector message as a binary frame, or `None` when it has no binary form
/// (control messages, a WS_MESSAGE without exactly one of text/data, an invalid id):
/// the caller then sends the JSON text frame.
pub fn encode_connector(msg: &ConnectorMsg) -> Option<Bytes> {
    match msg {
        ConnectorMsg::HttpResponseChunk(c) => encode_chunk(KIND_HTTP_RESPONSE_CHUNK, c),
        ConnectorMsg::WsMessage(m) => encode_ws(m),
        _ => None,
    }
}

/// Encodes a cloud message as a binary frame; `None` as for [`encode_connector`].
pub fn encode_cloud(msg: &CloudMsg) -> Option<Bytes> {
    match msg {
        CloudMsg::HttpRequestChunk(c) => encode_chunk(KIND_HTTP_REQUEST_CHUNK, c),
        CloudMsg::WsMessage(m) => encode_ws(m),
        _ => None,
    }
}

/// Decodes a binary frame sent by a connector.
pub fn decode_connector(frame: &Bytes) -> Result<ConnectorMsg, DecodeError> {
    let p = parse(frame)?;
    match p.kind {
        KIND_HTTP_RESPONSE_CHUNK => Ok(ConnectorMsg::HttpResponseChunk(chunk(p))),
        KIND_WS_TEXT | KIND_WS_BINARY => ws_message(p).map(ConnectorMsg::WsMessage),
        _ => Err(wrong_direction(p)),
    }
}

/// Decodes a binary frame sent by the cloud.
pub fn decode_cloud(frame: &Bytes) -> Result<CloudMsg, DecodeError> {
    let p = parse(frame)?;
    match p.kind {
        KIND_HTTP_REQUEST_CHUNK => Ok(CloudMsg::HttpRequestChunk(chunk(p))),
        KIND_WS_TEXT | KIND_WS_BINARY => ws_message(p).map(CloudMsg::WsMessage),
        _ => Err(wrong_direction(p)),
    }
}

fn encode_chunk(kind: u8, c: &Chunk) -> Option<Bytes> {
    let mut out = header(kind, &c.request_id, c.data.len() + INDEX_LEN)?;
    out.put_u64(c.index);
    out.extend_from_slice(&c.data);
    Some(out.freeze())
}

fn encode_ws(m: &WsMessage) -> Option<Bytes> {
    let (kind, payload): (u8, &[u8]) = match (&m.text, &m.data) {
        (Some(t), None) => (KIND_WS_TEXT, t.as_bytes()),
        (None, Some(d)) => (KIND_WS_BINARY, d),
        _ => return None,
    };
    let mut out = header(kind, &m.stream_id, payload.len())?;
    out.extend_from_slice(payload);
    Some(out.freeze())
}

/// Kind, id length and id, in a buffer with room for `rest` more bytes.
fn header(kind: u8, id: &str, rest: usize) -> Option<BytesMut> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return None;
    }
    let mut out = BytesMut::with_capacity(PREFIX_LEN + id.len() + rest);
    out.put_u8(kind);
    out.put_u8(id.len() as u8); // ≤ MAX_ID_LEN = 128: fits
    out.extend_from_slice(id.as_bytes());
    Some(out)
}

fn kind_name(kind: u8) -> Option<&'static str> {
    Some(match kind {
        KIND_HTTP_RESPONSE_CHUNK => "HTTP_RESPONSE_CHUNK",
        KIND_HTTP_REQUEST_CHUNK => "HTTP_REQUEST_CHUNK",
        KIND_WS_TEXT | KIND_WS_BINARY => "WS_MESSAGE",
        _ => return None,
    })
}

fn is_http(kind: u8) -> bool {
    matches!(kind, KIND_HTTP_RESPONSE_CHUNK | KIND_HTTP_REQUEST_CHUNK)
}

/// A malformed frame of `kind`, blaming `id` (as a request or stream id by kind) if set.
fn malformed(kind: u8, reason: impl Into<String>, id: Option<&str>) -> DecodeError {
    let id = id.map(str::to_owned);
    let http = is_http(kind);
    DecodeError::Malformed {
        msg_type: format!("binary {}", kind_name(kind).unwrap_or("frame")),
        reason: reason.into(),
        request_id: if http { id.clone() } else { None },
        stream_id: if http { None } else { id },
    }
}

fn parse(frame: &Bytes) -> Result<Parts, DecodeError> {
    if frame.len() > MAX_FRAME_LEN {
        return Err(DecodeError::TooLarge { len: frame.len() });
    }
    let Some(&kind) = frame.first() else {
        return Err(malformed(0, "empty binary frame", None));
    };
    if kind_name(kind).is_none() {
        // Forward compatibility: a later kind is logged and dropped, like an unknown type.
        return Err(DecodeError::UnknownType {
            msg_type: format!("binary kind 0x{kind:02x}"),
        });
    }
    let Some(&id_len) = frame.get(1) else {
        return Err(malformed(kind, "truncated header: no id length", None));
    };
    let id_len = id_len as usize;
    if id_len == 0 || id_len > MAX_ID_LEN {
        return Err(malformed(
            kind,
            format!("id must be 1..={MAX_ID_LEN} bytes, not {id_len}"),
            None,
        ));
    }
    let Some(id) = frame.get(PREFIX_LEN..PREFIX_LEN + id_len) else {
        return Err(malformed(kind, "truncated header: id cut short", None));
    };
    let Ok(id) = std::str::from_utf8(id) else {
        return Err(malformed(kind, "id is not UTF-8", None));
    };
    let mut at = PREFIX_LEN + id_len;
    let mut index = 0;
    if is_http(kind) {
        let Some(raw) = frame.get(at..at + INDEX_LEN) else {
            return Err(malformed(
                kind,
                "truncated header: index cut short",
                Some(id),
            ));
        };
        index = u64::from_be_bytes(raw.try_into().expect("slice of INDEX_LEN bytes"));
        at += INDEX_LEN;
        let len = frame.len() - at;
        if len > MAX_CHUNK_LEN {
            return Err(malformed(
                kind,
                format!("chunk of {len} bytes exceeds the {MAX_CHUNK_LEN}-byte limit"),
                Some(id),
            ));
        }
    }
    Ok(Parts {
        kind,
        id: id.to_owned(),
        index,
        payload: frame.slice(at..),
    })
}

fn chunk(p: Parts) -> Chunk {
    Chunk {
        request_id: p.id,
        data: p.payload,
        index: p.index,
    }
}

fn ws_message(p: Parts) -> Result<WsMessage, DecodeError> {
    let (text, data) = if p.kind == KIND_WS_TEXT {
        match String::from_utf8(p.payload.to_vec()) {
            Ok(t) => (Some(t), None),
            Err(_) => return Err(malformed(p.kind, "text is not UTF-8", Some(&p.id))),
        }
    } else {
        (None, Some(p.payload))
    };
    Ok(WsMessage {
        stream_id: p.id,
        text,
        data,
    })
}

/// A known kind sent the wrong way (a request chunk from a connector, say): the peer is
/// confused about that stream, so it is the one to fail.
fn wrong_direction(p: Parts) -> DecodeError {
    malformed(p.kind, "kind not valid in this direction", Some(&p.id))
}

#[cfg(test)]
mod tests {
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
        let frame =
            encode_connector(&ConnectorMsg::WsMessage(ws("w", None, Some(&[0, 255])))).unwrap();
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
        let err =
            decode_cloud(&Bytes::from_static(&[1, 1, b'r', 0, 0, 0, 0, 0, 0, 0, 0])).unwrap_err();
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
}
