//! Text-frame codec. Decoding classifies every failure so the caller can fail exactly
//! the stream at fault (and nothing else), or drop a frame nobody can be blamed for.

use crate::limits::{MAX_FRAME_LEN, MAX_ID_LEN};
use crate::message::{CloudMsg, ConnectorMsg};
use serde::{de::DeserializeOwned, Serialize};

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The frame is over [`MAX_FRAME_LEN`].
    #[error("frame of {len} bytes exceeds the {MAX_FRAME_LEN}-byte limit")]
    TooLarge { len: usize },
    /// A `type` this protocol version does not define. Ignored for forward compatibility.
    #[error("unknown message type {msg_type:?}")]
    UnknownType { msg_type: String },
    /// Not a JSON object with a `type`, or a known type with bad fields. `request_id` /
    /// `stream_id` name the stream to fail, when the frame says which one it is.
    #[error("malformed {msg_type} frame: {reason}")]
    Malformed {
        msg_type: String,
        reason: String,
        request_id: Option<String>,
        stream_id: Option<String>,
    },
}

impl DecodeError {
    /// The HTTP request stream this error belongs to, if any.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            DecodeError::Malformed { request_id, .. } => request_id.as_deref(),
            _ => None,
        }
    }

    /// The WebSocket stream this error belongs to, if any.
    pub fn stream_id(&self) -> Option<&str> {
        match self {
            DecodeError::Malformed { stream_id, .. } => stream_id.as_deref(),
            _ => None,
        }
    }

    /// What a frame that did not decode costs, the same at both ends: never the
    /// connection. A type this version does not know is ignored (a newer peer's
    /// extension); a malformed frame that names its stream fails that stream only (an
    /// HTTP stream with an error, a WebSocket with close 1002); one that names none is
    /// dropped.
    pub fn blame(&self) -> Blame<'_> {
        match self {
            DecodeError::UnknownType { .. } => Blame::Ignored,
            DecodeError::Malformed {
                request_id: Some(rid),
                ..
            } => Blame::Http(rid),
            DecodeError::Malformed {
                stream_id: Some(sid),
                ..
            } => Blame::Ws(sid),
            _ => Blame::Dropped,
        }
    }
}

/// Who a frame that did not decode is on ([`DecodeError::blame`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame<'a> {
    /// A message type this version does not define: ignored, for forward compatibility.
    Ignored,
    /// The HTTP stream with this request id fails (if it is open).
    Http(&'a str),
    /// The WebSocket stream with this id is closed with 1002 (if it is open).
    Ws(&'a str),
    /// Names no stream: dropped, logged.
    Dropped,
}

/// A message of either direction; lets [`encode`] take the fast path for body chunks.
pub trait Frame: Serialize {
    /// `(type, chunk)` when this is a body chunk.
    fn as_chunk(&self) -> Option<(&'static str, &crate::Chunk)>;
}

impl Frame for ConnectorMsg {
    fn as_chunk(&self) -> Option<(&'static str, &crate::Chunk)> {
        match self {
            ConnectorMsg::HttpResponseChunk(c) => Some(("HTTP_RESPONSE_CHUNK", c)),
            _ => None,
        }
    }
}

impl Frame for CloudMsg {
    fn as_chunk(&self) -> Option<(&'static str, &crate::Chunk)> {
        match self {
            CloudMsg::HttpRequestChunk(c) => Some(("HTTP_REQUEST_CHUNK", c)),
            _ => None,
        }
    }
}

/// Encodes a message as the JSON text of one frame.
pub fn encode<M: Frame>(msg: &M) -> String {
    match msg.as_chunk() {
        Some((ty, chunk)) => encode_chunk(ty, chunk),
        // Our message types hold only strings, numbers, maps and bytes we base64
        // ourselves: serialisation cannot fail.
        None => serde_json::to_string(msg).expect("protocol messages always serialise"),
    }
}

/// Body chunks are nearly all the bytes on the wire. serde would scan the base64 text
/// for characters to escape (there are none); writing it straight into the frame
/// doubles encode throughput. The output is identical to serde's (tested).
fn encode_chunk(ty: &str, c: &crate::Chunk) -> String {
    use base64::Engine as _;
    use std::fmt::Write as _;
    let id = serde_json::to_string(&c.request_id).expect("a string serialises");
    let mut out = String::with_capacity(64 + id.len() + c.data.len().div_ceil(3) * 4);
    out.push_str(r#"{"type":""#);
    out.push_str(ty);
    out.push_str(r#"","requestId":"#);
    out.push_str(&id);
    out.push_str(r#","data":""#);
    base64::engine::general_purpose::STANDARD.encode_string(&c.data, &mut out);
    let _ = write!(out, r#"","index":{}}}"#, c.index);
    out
}

/// Decodes a frame sent by a connector.
pub fn decode_connector(frame: &str) -> Result<ConnectorMsg, DecodeError> {
    let msg: ConnectorMsg = decode(frame, connector_by_type)?;
    let (rid, sid) = connector_ids(&msg);
    check_ids(frame, rid, sid)?;
    Ok(msg)
}

/// Decodes a frame sent by the cloud.
pub fn decode_cloud(frame: &str) -> Result<CloudMsg, DecodeError> {
    let msg: CloudMsg = decode(frame, cloud_by_type)?;
    let (rid, sid) = cloud_ids(&msg);
    check_ids(frame, rid, sid)?;
    Ok(msg)
}

/// The frame's message of type `ty`, read straight into its struct (the `type` key is
/// ignored there like any unknown one); `None` for a type this side does not know.
type ByType<M> = fn(&str, &str) -> Option<serde_json::Result<M>>;

fn connector_by_type(ty: &str, frame: &str) -> Option<serde_json::Result<ConnectorMsg>> {
    use serde_json::from_str as de;
    use ConnectorMsg as M;
    Some(match ty {
        "HELLO" => de(frame).map(M::Hello),
        "HTTP_RESPONSE_START" => de(frame).map(M::HttpResponseStart),
        "HTTP_RESPONSE_CHUNK" => de(frame).map(M::HttpResponseChunk),
        "HTTP_RESPONSE_END" => de(frame).map(M::HttpResponseEnd),
        "HTTP_RESPONSE_ERROR" => de(frame).map(M::HttpResponseError),
        "WINDOW_UPDATE" => de(frame).map(M::WindowUpdate),
        "WS_OPENED" => de(frame).map(M::WsOpened),
        "WS_MESSAGE" => de(frame).map(M::WsMessage),
        "WS_CLOSE" => de(frame).map(M::WsClose),
        "PING" => de(frame).map(M::Ping),
        "PONG" => de(frame).map(M::Pong),
        _ => return None,
    })
}

fn cloud_by_type(ty: &str, frame: &str) -> Option<serde_json::Result<CloudMsg>> {
    use serde_json::from_str as de;
    use CloudMsg as M;
    Some(match ty {
        "HELLO" => de(frame).map(M::Hello),
        "HTTP_REQUEST" => de(frame).map(M::HttpRequest),
        "HTTP_REQUEST_CHUNK" => de(frame).map(M::HttpRequestChunk),
        "HTTP_REQUEST_END" => de(frame).map(M::HttpRequestEnd),
        "HTTP_CANCEL" => de(frame).map(M::HttpCancel),
        "WINDOW_UPDATE" => de(frame).map(M::WindowUpdate),
        "WS_OPEN" => de(frame).map(M::WsOpen),
        "WS_MESSAGE" => de(frame).map(M::WsMessage),
        "WS_CLOSE" => de(frame).map(M::WsClose),
        "TOKEN_ROTATE" => de(frame).map(M::TokenRotate),
        "RECONNECT" => de(frame).map(M::Reconnect),
        "PING" => de(frame).map(M::Ping),
        "PONG" => de(frame).map(M::Pong),
        _ => return None,
    })
}

/// The frame's `type`. Our encoders write it first, so it is read off the front without
/// a parse; anyone else's frame costs one pass that skips every other value.
fn frame_type(frame: &str) -> Option<std::borrow::Cow<'_, str>> {
    const FRONT: &str = r#"{"type":""#;
    if let Some(rest) = frame.strip_prefix(FRONT) {
        let end = rest.find(['"', '\\'])?;
        if rest.as_bytes()[end] == b'"' {
            return Some(rest[..end].into());
        }
    }
    #[derive(serde::Deserialize)]
    struct Tag<'a> {
        #[serde(borrow, rename = "type")]
        ty: std::borrow::Cow<'a, str>,
    }
    serde_json::from_str::<Tag>(frame).ok().map(|t| t.ty)
}

/// serde's own decoding of an internally tagged enum buffers the whole frame as
/// `Content` first (an allocation per key and value, the body's base64 copied once
/// more); reading the `type`, then the one struct it names, does neither. The enum's
/// decoder stays the reference: what it refuses, this refuses too (tested).
fn decode<M: DeserializeOwned>(frame: &str, by_type: ByType<M>) -> Result<M, DecodeError> {
    if frame.len() > MAX_FRAME_LEN {
        return Err(DecodeError::TooLarge { len: frame.len() });
    }
    // serde refuses a second `type` key; the struct would ignore it. One `"type"` in
    // the text and no `\u` escape (which could spell another) rule a second one out.
    // (memchr's searchers: `str::matches` and `contains` set up a two-way searcher on
    // every call, a sixth of a small frame's decoding.)
    let mut tags = memchr::memmem::find_iter(frame.as_bytes(), br#""type""#);
    let one_tag = tags.next().is_some()
        && tags.next().is_none()
        && memchr::memmem::find(frame.as_bytes(), br"\u").is_none();
    let direct = one_tag
        .then(|| frame_type(frame))
        .flatten()
        .and_then(|ty| by_type(&ty, frame));
    match direct {
        Some(Ok(msg)) => Ok(msg),
        // Anything else, a bad frame included, takes serde's way, which says what is wrong.
        _ => serde_json::from_str(frame).map_err(|err| classify(frame, by_type, &err.to_string())),
    }
}

/// Slow path, only on failure: re-read the frame loosely to find whom to blame.
fn classify<M>(frame: &str, by_type: ByType<M>, reason: &str) -> DecodeError {
    // A type is known when it names a struct (the empty text then fails to be one).
    let known = |t: &str| by_type(t, "").is_some();
    let value: Option<serde_json::Value> = serde_json::from_str(frame).ok();
    let field = |name: &str| {
        value
            .as_ref()
            .and_then(|v| v.get(name))
            .and_then(|v| v.as_str())
            .map(|s| s.chars().take(MAX_ID_LEN).collect::<String>())
    };
    let msg_type = field("type");
    match msg_type {
        Some(t) if !known(&t) => DecodeError::UnknownType { msg_type: t },
        t => DecodeError::Malformed {
            msg_type: t.unwrap_or_else(|| "untyped".to_owned()),
            reason: if value.is_none() {
                format!("invalid JSON: {reason}")
            } else {
                reason.to_owned()
            },
            request_id: field("requestId"),
            stream_id: field("streamId"),
        },
    }
}

fn check_ids(frame: &str, rid: Option<&str>, sid: Option<&str>) -> Result<(), DecodeError> {
    for id in [rid, sid].into_iter().flatten() {
        if id.is_empty() || id.len() > MAX_ID_LEN {
            return Err(DecodeError::Malformed {
                msg_type: classify_type(frame),
                reason: format!("id must be 1..={MAX_ID_LEN} bytes"),
                request_id: None,
                stream_id: None,
            });
        }
    }
    Ok(())
}

fn classify_type(frame: &str) -> String {
    serde_json::from_str::<serde_json::Value>(frame)
        .ok()
        .and_then(|v| v.get("type")?.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn connector_ids(m: &ConnectorMsg) -> (Option<&str>, Option<&str>) {
    use ConnectorMsg::*;
    match m {
        HttpResponseStart(x) => (Some(&x.request_id), None),
        HttpResponseChunk(x) => (Some(&x.request_id), None),
        HttpResponseEnd(x) => (Some(&x.request_id), None),
        HttpResponseError(x) => (Some(&x.request_id), None),
        WindowUpdate(x) => (Some(&x.request_id), None),
        WsOpened(x) => (None, Some(&x.stream_id)),
        WsMessage(x) => (None, Some(&x.stream_id)),
        WsClose(x) => (None, Some(&x.stream_id)),
        Hello(_) | Ping(_) | Pong(_) => (None, None),
    }
}

fn cloud_ids(m: &CloudMsg) -> (Option<&str>, Option<&str>) {
    use CloudMsg::*;
    match m {
        HttpRequest(x) => (Some(&x.request_id), None),
        HttpRequestChunk(x) => (Some(&x.request_id), None),
        HttpRequestEnd(x) | HttpCancel(x) => (Some(&x.request_id), None),
        WindowUpdate(x) => (Some(&x.request_id), None),
        WsOpen(x) => (None, Some(&x.stream_id)),
        WsMessage(x) => (None, Some(&x.stream_id)),
        WsClose(x) => (None, Some(&x.stream_id)),
        Hello(_) | TokenRotate(_) | Reconnect(_) | Ping(_) | Pong(_) => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::*;
    use crate::Headers;
    use bytes::Bytes;

    /// The exact frames DESIGN.md shows must decode, and re-encode to the same meaning.
    #[test]
    fn design_examples_decode() {
        let req = r#"{"type":"HTTP_REQUEST","requestId":"r-9f1a","tenantId":2,"equipId":100,
 "target":{"baseUrl":"http://192.168.1.50","method":"GET","path":"/",
           "headers":{"Accept":"text/html"},"body":null},
 "timeoutMs":60000}"#;
        let CloudMsg::HttpRequest(r) = decode_cloud(req).unwrap() else {
            panic!()
        };
        assert_eq!(r.request_id, "r-9f1a");
        assert_eq!(
            (r.tenant_id, r.equip_id, r.timeout_ms),
            (Some(2), Some(100), Some(60000))
        );
        assert_eq!(r.target.headers.get("accept"), Some("text/html"));
        assert_eq!(r.target.body, None);
        assert!(!r.body_stream);

        let start = r#"{"type":"HTTP_RESPONSE_START","requestId":"r-9f1a","statusCode":200,
 "headers":{"content-type":"text/html","set-cookie":["a=1; Path=/","b=2"]}}"#;
        let ConnectorMsg::HttpResponseStart(s) = decode_connector(start).unwrap() else {
            panic!()
        };
        assert_eq!(s.headers.get_all("set-cookie").count(), 2);

        let chunk =
            r#"{"type":"HTTP_RESPONSE_CHUNK","requestId":"r-9f1a","data":"aGk=","index":0}"#;
        assert_eq!(
            decode_connector(chunk).unwrap(),
            ConnectorMsg::HttpResponseChunk(Chunk {
                request_id: "r-9f1a".into(),
                data: Bytes::from_static(b"hi"),
                index: 0
            })
        );
        assert!(matches!(
            decode_connector(r#"{"type":"PONG","ts":1739823120000}"#),
            Ok(ConnectorMsg::Pong(Heartbeat { ts: 1739823120000 }))
        ));
        assert!(matches!(
            decode_cloud(r#"{"type":"PING","ts":1739823120000}"#),
            Ok(CloudMsg::Ping(_))
        ));
    }

    /// The decoder reads the `type`, then that one struct; serde's enum decoding is the
    /// reference, frames that could read differently included.
    #[test]
    fn decoding_by_type_agrees_with_serde() {
        let frames = [
            r#"{"type":"PING","ts":1}"#,
            r#"{"ts":1,"type":"PING"}"#,
            // A second `type`: serde refuses it; so must we, whichever comes first.
            r#"{"type":"PING","ts":1,"type":"PONG"}"#,
            r#"{"type":"PING","ts":1,"typ\u0065":"PONG"}"#,
            r#"{"typ\u0065":"PING","ts":1}"#,
            r#"{"type":"P\u0049NG","ts":1}"#,
            // A header named `type` is not a tag.
            r#"{"type":"HTTP_RESPONSE_START","requestId":"r","statusCode":200,"headers":{"type":"x"}}"#,
            r#"{"type":"HTTP_RESPONSE_START","requestId":"r","statusCode":"200","headers":{}}"#,
            r#"{"type":"HTTP_RESPONSE_CHUNK","requestId":"r","data":"aGk=","index":0}"#,
            r#"{"type":"HTTP_RESPONSE_CHUNK","requestId":"r","data":"a\/k=","index":0}"#,
            r#"{"type":"HTTP_RESPONSE_END","requestId":"r"}"#,
            r#"{"type":"NOPE","requestId":"r"}"#,
            r#"{"type":1}"#,
            r#"{"type":"PING""#,
            r#"["PING"]"#,
        ];
        for f in frames {
            let ours = decode_connector(f).ok();
            let serde = serde_json::from_str::<ConnectorMsg>(f).ok();
            assert_eq!(ours, serde, "{f}");
            let ours = decode_cloud(f).ok();
            let serde = serde_json::from_str::<CloudMsg>(f).ok();
            assert_eq!(ours, serde, "{f}");
        }
        assert!(decode_connector(frames[2]).is_err() && decode_connector(frames[3]).is_err());
        let e = decode_connector(r#"{"type":"HTTP_RESPONSE_END","requestId":7}"#).unwrap_err();
        assert_eq!(
            e.to_string().split(':').next(),
            Some("malformed HTTP_RESPONSE_END frame")
        );
    }

    #[test]
    fn chunk_fast_path_matches_serde_exactly() {
        for (id, len, index) in [
            ("r-1", 0usize, 0u64),
            ("r\"é\n", 1, 7),
            ("x", 65536, u64::MAX),
            ("y", 2, 3),
        ] {
            let data = Bytes::from((0..len).map(|i| (i * 7) as u8).collect::<Vec<_>>());
            let c = Chunk {
                request_id: id.into(),
                data,
                index,
            };
            let a = ConnectorMsg::HttpResponseChunk(c.clone());
            assert_eq!(encode(&a), serde_json::to_string(&a).unwrap());
            assert_eq!(decode_connector(&encode(&a)).unwrap(), a);
            let b = CloudMsg::HttpRequestChunk(c);
            assert_eq!(encode(&b), serde_json::to_string(&b).unwrap());
        }
    }

    #[test]
    fn both_error_shapes_decode() {
        let ConnectorMsg::HttpResponseError(e) = decode_connector(
            r#"{"type":"HTTP_RESPONSE_ERROR","requestId":"a","code":"TIMEOUT","message":"slow"}"#,
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!((e.error_code(), e.reason()), (ErrorCode::Timeout, "slow"));
        let ConnectorMsg::HttpResponseError(e) = decode_connector(
            r#"{"type":"HTTP_RESPONSE_ERROR","requestId":"a","error":"ECONNREFUSED"}"#,
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(
            (e.error_code(), e.reason()),
            (ErrorCode::Internal, "ECONNREFUSED")
        );
    }

    #[test]
    fn round_trip_every_extension() {
        let mut h = Headers::new();
        h.append("x", "1");
        let msgs = vec![
            ConnectorMsg::Hello(Hello {
                version: "1.2.0".into(),
                capabilities: vec!["flow".into(), "nonsense".into()],
                metadata: Some(serde_json::json!({"os":"linux"})),
            }),
            ConnectorMsg::WindowUpdate(WindowUpdate {
                request_id: "r".into(),
                bytes: 5,
            }),
            ConnectorMsg::WsOpened(WsOpened {
                stream_id: "s".into(),
                protocol: None,
            }),
            ConnectorMsg::WsMessage(WsMessage {
                stream_id: "s".into(),
                text: None,
                data: Some(Bytes::from_static(&[0, 255])),
            }),
            ConnectorMsg::WsClose(WsClose {
                stream_id: "s".into(),
                code: Some(1000),
                reason: None,
                error: None,
            }),
            ConnectorMsg::WsClose(WsClose {
                stream_id: "s".into(),
                code: Some(1011),
                reason: Some("denied".into()),
                error: Some("TARGET_FORBIDDEN".into()),
            }),
        ];
        for m in msgs {
            assert_eq!(decode_connector(&encode(&m)).unwrap(), m);
        }
        let hello = r#"{"type":"HELLO","version":"1","capabilities":["flow","ws","zzz"]}"#;
        let ConnectorMsg::Hello(h) = decode_connector(hello).unwrap() else {
            panic!()
        };
        let caps = h.capability_set();
        assert!(caps.has(Capability::Flow) && caps.has(Capability::Ws));
        assert!(!caps.has(Capability::Cancel));

        // The relay's answer names the intersection.
        let ours: Capabilities = [Capability::Bin, Capability::Flow].into_iter().collect();
        let agreed = caps.intersect(ours);
        assert!(agreed.has(Capability::Flow) && !agreed.has(Capability::Bin));
        let answer = CloudMsg::Hello(Hello {
            version: "1".into(),
            capabilities: Capabilities::all().names(),
            metadata: None,
        });
        let CloudMsg::Hello(h) = decode_cloud(&encode(&answer)).unwrap() else {
            panic!()
        };
        assert!(h.capability_set().has(Capability::Bin));
        assert_eq!(Capabilities::all().names().len(), Capability::ALL.len());
    }

    /// Table: bad frame → what the receiver learns about whom to blame.
    #[test]
    fn malformed_frames_are_classified() {
        let cases: &[(&str, Option<&str>, &str)] = &[
            ("{not json", None, "Malformed"),
            ("[1,2]", None, "Malformed"),
            (r#"{"type":"NOPE","requestId":"r1"}"#, None, "UnknownType"),
            (
                r#"{"type":"HTTP_RESPONSE_CHUNK","requestId":"r1","data":"!!","index":0}"#,
                Some("r1"),
                "Malformed",
            ),
            (
                r#"{"type":"HTTP_RESPONSE_CHUNK","requestId":"r1","data":"aGk=","index":-1}"#,
                Some("r1"),
                "Malformed",
            ),
            (
                r#"{"type":"HTTP_RESPONSE_START","requestId":"r2","statusCode":"x"}"#,
                Some("r2"),
                "Malformed",
            ),
            (r#"{"type":"HTTP_RESPONSE_END"}"#, None, "Malformed"),
            (
                r#"{"type":"HTTP_RESPONSE_END","requestId":""}"#,
                None,
                "Malformed",
            ),
        ];
        for (frame, rid, kind) in cases {
            let err = decode_connector(frame).unwrap_err();
            assert_eq!(err.request_id(), *rid, "{frame}");
            let got = match err {
                DecodeError::Malformed { .. } => "Malformed",
                DecodeError::UnknownType { .. } => "UnknownType",
                DecodeError::TooLarge { .. } => "TooLarge",
            };
            assert_eq!(got, *kind, "{frame}");
        }
        let huge = format!(
            r#"{{"type":"PING","ts":1,"pad":"{}"}}"#,
            "a".repeat(MAX_FRAME_LEN)
        );
        assert!(matches!(
            decode_connector(&huge),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    /// The bad-frame policy both ends apply: a stream named is the one that pays, an
    /// unknown type costs nothing, and nothing costs the connection.
    #[test]
    fn a_bad_frame_is_blamed_on_the_stream_it_names() {
        let blame = |frame: &str| match decode_connector(frame).unwrap_err().blame() {
            Blame::Ignored => "ignored".to_owned(),
            Blame::Http(r) => format!("http {r}"),
            Blame::Ws(s) => format!("ws {s}"),
            Blame::Dropped => "dropped".to_owned(),
        };
        let cases = [
            (r#"{"type":"NOPE","requestId":"r1"}"#, "ignored"),
            (
                r#"{"type":"HTTP_RESPONSE_CHUNK","requestId":"r1","data":"!!","index":0}"#,
                "http r1",
            ),
            (r#"{"type":"WS_MESSAGE","streamId":"w1","text":1}"#, "ws w1"),
            (r#"{"type":"HTTP_RESPONSE_END"}"#, "dropped"),
            ("{not json", "dropped"),
        ];
        for (frame, want) in cases {
            assert_eq!(blame(frame), want, "{frame}");
        }
        let huge = format!(r#"{{"type":"PING","pad":"{}"}}"#, "a".repeat(MAX_FRAME_LEN));
        assert_eq!(blame(&huge), "dropped");
    }
}
