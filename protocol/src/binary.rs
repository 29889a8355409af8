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
//! With `bin-head` named by both sides as well, a response's head and end may travel as
//! binary frames too (connector → cloud), the same kind, id length and id first:
//!
//! | kind | after the id |
//! |------|--------------|
//! | [`KIND_HTTP_RESPONSE_START`] `0x05` | `statusCode`, u16; then each header in order to the frame's end: name length u16, name (UTF-8), value length u32, value (UTF-8) |
//! | [`KIND_HTTP_RESPONSE_END`] `0x06` | nothing |
//!
//! Headers keep their order and spelling (JSON merges repeated names into an array).
//! Example: `HTTP_RESPONSE_START` of `r`, 200, `a: b` = `05 01 72 00 c8 00 01 61 00 00 00 01 62`.
//!
//! An HTTP chunk's payload is at most [`MAX_CHUNK_LEN`]; a WebSocket message's is bounded
//! only by the frame ([`MAX_FRAME_LEN`] in all). Example: response chunk `"hi"` of request
//! `r-1`, index 0 = `01 03 72 2d 31 00 00 00 00 00 00 00 00 68 69`.
//!
//! Must never: panic on any input, or name a stream in an error that the frame does not
//! name itself (a frame whose id cannot be read blames nobody and is dropped).

use crate::codec::DecodeError;
use crate::headers::Headers;
use crate::limits::{MAX_CHUNK_LEN, MAX_FRAME_LEN, MAX_ID_LEN};
use crate::message::{
    Capabilities, Capability, Chunk, CloudMsg, ConnectorMsg, ResponseStart, StreamRef, WsMessage,
};
use bytes::{BufMut, Bytes, BytesMut};

/// `HTTP_RESPONSE_CHUNK`, connector → cloud.
pub const KIND_HTTP_RESPONSE_CHUNK: u8 = 0x01;
/// `HTTP_REQUEST_CHUNK`, cloud → connector.
pub const KIND_HTTP_REQUEST_CHUNK: u8 = 0x02;
/// `WS_MESSAGE` with `text`, either direction.
pub const KIND_WS_TEXT: u8 = 0x03;
/// `WS_MESSAGE` with `data`, either direction.
pub const KIND_WS_BINARY: u8 = 0x04;
/// `HTTP_RESPONSE_START`, connector → cloud (`bin-head`).
pub const KIND_HTTP_RESPONSE_START: u8 = 0x05;
/// `HTTP_RESPONSE_END`, connector → cloud (`bin-head`).
pub const KIND_HTTP_RESPONSE_END: u8 = 0x06;

/// What one decoded header costs beyond its bytes (the entry and its two allocations),
/// charged like the JSON decoder's against what a frame holds: a frame of empty headers
/// cannot decode to many times its size.
const HEADER_ENTRY_COST: usize = 64;

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
/// the caller then sends the JSON text frame. A response's head and end have one (see
/// [`is_head`]): send it only to a relay that named `bin-head`.
pub fn encode_connector(msg: &ConnectorMsg) -> Option<Bytes> {
    match msg {
        ConnectorMsg::HttpResponseChunk(c) => encode_chunk(KIND_HTTP_RESPONSE_CHUNK, c),
        ConnectorMsg::WsMessage(m) => encode_ws(m),
        ConnectorMsg::HttpResponseStart(r) => encode_start(r),
        ConnectorMsg::HttpResponseEnd(e) => {
            header(KIND_HTTP_RESPONSE_END, &e.request_id, 0).map(BytesMut::freeze)
        }
        _ => None,
    }
}

/// True for the messages whose binary form needs `bin-head` (not only `bin`).
pub fn is_head(msg: &ConnectorMsg) -> bool {
    matches!(
        msg,
        ConnectorMsg::HttpResponseStart(_) | ConnectorMsg::HttpResponseEnd(_)
    )
}

/// The binary frame for `msg` to a relay that answered with `caps`: one that named `bin`
/// takes body chunks and WebSocket messages binary, and a response's head and end only
/// if it named `bin-head` too. `None`: send the JSON text frame.
pub fn encode_connector_for(caps: Capabilities, msg: &ConnectorMsg) -> Option<Bytes> {
    let allowed = caps.has(Capability::Bin) && (!is_head(msg) || caps.has(Capability::BinHead));
    allowed.then(|| encode_connector(msg)).flatten()
}

/// The binary frame for `msg` to a connector whose HELLO agreed `caps` (it named `bin`);
/// `None`: send the JSON text frame.
pub fn encode_cloud_for(caps: Capabilities, msg: &CloudMsg) -> Option<Bytes> {
    caps.has(Capability::Bin)
        .then(|| encode_cloud(msg))
        .flatten()
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
        KIND_HTTP_RESPONSE_START => start(p).map(ConnectorMsg::HttpResponseStart),
        KIND_HTTP_RESPONSE_END if p.payload.is_empty() => {
            Ok(ConnectorMsg::HttpResponseEnd(StreamRef {
                request_id: p.id,
            }))
        }
        KIND_HTTP_RESPONSE_END => Err(malformed(p.kind, "bytes after the id", Some(&p.id))),
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

fn encode_start(r: &ResponseStart) -> Option<Bytes> {
    let rest = 2 + r
        .headers
        .iter()
        .map(|(n, v)| 6 + n.len() + v.len())
        .sum::<usize>();
    let mut out = header(KIND_HTTP_RESPONSE_START, &r.request_id, rest)?;
    out.put_u16(r.status_code);
    for (n, v) in r.headers.iter() {
        out.put_u16(u16::try_from(n.len()).ok()?);
        out.extend_from_slice(n.as_bytes());
        out.put_u32(u32::try_from(v.len()).ok()?);
        out.extend_from_slice(v.as_bytes());
    }
    Some(out.freeze())
}

/// A response head's status and headers, read to the frame's end.
fn start(p: Parts) -> Result<ResponseStart, DecodeError> {
    let bad = |reason: &str| malformed(p.kind, reason, Some(&p.id));
    let b = &p.payload[..];
    let Some(status) = b.get(..2) else {
        return Err(bad("truncated head: no status"));
    };
    let status_code = u16::from_be_bytes([status[0], status[1]]);
    let mut headers = Headers::new();
    let mut budget = MAX_FRAME_LEN;
    let mut at = 2;
    while at < b.len() {
        let name = field(b, &mut at, 2).ok_or_else(|| bad("truncated header name"))?;
        let value = field(b, &mut at, 4).ok_or_else(|| bad("truncated header value"))?;
        let (Ok(name), Ok(value)) = (std::str::from_utf8(name), std::str::from_utf8(value)) else {
            return Err(bad("header is not UTF-8"));
        };
        budget = budget
            .checked_sub(name.len() + value.len() + HEADER_ENTRY_COST)
            .ok_or_else(|| bad("headers decode to more than a frame holds"))?;
        headers.append(name, value);
    }
    Ok(ResponseStart {
        request_id: p.id,
        status_code,
        headers,
    })
}

/// A length-prefixed field at `*at` (the length `width` bytes, big-endian), moving `at`
/// past it; `None` when the frame ends first.
fn field<'a>(b: &'a [u8], at: &mut usize, width: usize) -> Option<&'a [u8]> {
    let raw = b.get(*at..*at + width)?;
    let len = raw.iter().fold(0usize, |n, &x| (n << 8) | x as usize);
    let start = *at + width;
    let out = b.get(start..start.checked_add(len)?)?;
    *at = start + len;
    Some(out)
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
        KIND_HTTP_RESPONSE_START => "HTTP_RESPONSE_START",
        KIND_HTTP_RESPONSE_END => "HTTP_RESPONSE_END",
        _ => return None,
    })
}

/// Kinds that name a request (the others a WebSocket stream).
fn is_http(kind: u8) -> bool {
    !matches!(kind, KIND_WS_TEXT | KIND_WS_BINARY)
}

/// Kinds with an index after the id.
fn is_chunk(kind: u8) -> bool {
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
    if is_chunk(kind) {
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
mod tests;
