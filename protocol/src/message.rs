//! Wire messages: one enum per direction, one variant per message.

use crate::headers::Headers;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Cloud → connector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CloudMsg {
    /// The relay's answer to HELLO: the capabilities it will use, the intersection of
    /// both sides' (sent only to a connector that said HELLO).
    Hello(Hello),
    /// Execute an HTTP request against a device (base protocol).
    HttpRequest(HttpRequest),
    /// A piece of a streamed request body (`req-stream`).
    HttpRequestChunk(Chunk),
    /// End of a streamed request body (`req-stream`).
    HttpRequestEnd(StreamRef),
    /// The caller went away: stop the request and drop the device connection (`cancel`).
    HttpCancel(StreamRef),
    /// Credit for the response body of `requestId` (`flow`).
    WindowUpdate(WindowUpdate),
    /// Open a WebSocket to a device (`ws`).
    WsOpen(WsOpen),
    /// A message for an open device WebSocket (`ws`).
    WsMessage(WsMessage),
    /// Close a device WebSocket (`ws`).
    WsClose(WsClose),
    /// A fresh connector token; persist it and use it for the next connection (`token-rotate`).
    TokenRotate(TokenRotate),
    /// This relay node is stopping: connect again (elsewhere) within `afterMs`, and let
    /// the requests in flight here finish (`reconnect`).
    Reconnect(Reconnect),
    /// Heartbeat (base protocol).
    Ping(Heartbeat),
    /// Answer to the connector's PING.
    Pong(Heartbeat),
}

/// Connector → cloud.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConnectorMsg {
    /// First message of an extended connector: version, capabilities, host metadata.
    Hello(Hello),
    /// Status line and headers of a device response (base protocol).
    HttpResponseStart(ResponseStart),
    /// A piece of the response body, `index` counting from 0 (base protocol).
    HttpResponseChunk(Chunk),
    /// The response body is complete (base protocol).
    HttpResponseEnd(StreamRef),
    /// The request failed; accepted in both field shapes seen in the wild.
    HttpResponseError(ResponseError),
    /// Credit for the streamed request body of `requestId` (`flow` + `req-stream`).
    WindowUpdate(WindowUpdate),
    /// The device WebSocket is open (`ws`).
    WsOpened(WsOpened),
    /// A message from a device WebSocket (`ws`).
    WsMessage(WsMessage),
    /// The device WebSocket closed or could not be opened (`ws`).
    WsClose(WsClose),
    /// Heartbeat sent by the connector.
    Ping(Heartbeat),
    /// Answer to the relay's PING (base protocol).
    Pong(Heartbeat),
}

/// Optional protocol features a connector announces in HELLO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Capability {
    Error,
    Cancel,
    ReqStream,
    Flow,
    Ws,
    TokenRotate,
    Bin,
    /// With `bin`: a response's head and end as binary frames too.
    BinHead,
    /// RECONNECT: a draining relay node moves its connectors before it stops.
    Reconnect,
}

impl Capability {
    pub const ALL: [Capability; 9] = [
        Capability::Error,
        Capability::Cancel,
        Capability::ReqStream,
        Capability::Flow,
        Capability::Ws,
        Capability::TokenRotate,
        Capability::Bin,
        Capability::BinHead,
        Capability::Reconnect,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Error => "error",
            Capability::Cancel => "cancel",
            Capability::ReqStream => "req-stream",
            Capability::Flow => "flow",
            Capability::Ws => "ws",
            Capability::TokenRotate => "token-rotate",
            Capability::Bin => "bin",
            Capability::BinHead => "bin-head",
            Capability::Reconnect => "reconnect",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

// A capability's bit is its position in `Capability::ALL` (`Capabilities::ALL` and
// `FromIterator` rely on it).
const _: () = {
    let mut i = 0;
    while i < Capability::ALL.len() {
        assert!(Capability::ALL[i] as usize == i);
        i += 1;
    }
};

/// Set of capabilities a connector announced; unknown names are ignored. A bit per
/// capability: room for sixteen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities(u16);

impl Capabilities {
    pub const NONE: Capabilities = Capabilities(0);

    /// Every capability this version speaks.
    pub const ALL: Capabilities = Capabilities((1 << Capability::ALL.len()) - 1);

    pub fn all() -> Self {
        Self::ALL
    }

    pub fn has(self, c: Capability) -> bool {
        self.0 & (1 << c as u8) != 0
    }

    /// The set as bits, to keep in an atomic ([`Capabilities::from_bits`] reads it back).
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// The set from [`Capabilities::bits`]; bits no capability has are dropped.
    pub const fn from_bits(bits: u16) -> Self {
        Capabilities(bits & Self::ALL.0)
    }

    /// What both sets name: what two peers may use.
    pub fn intersect(self, other: Capabilities) -> Capabilities {
        Capabilities(self.0 & other.0)
    }

    pub fn names(self) -> Vec<String> {
        Capability::ALL
            .into_iter()
            .filter(|c| self.has(*c))
            .map(|c| c.as_str().to_owned())
            .collect()
    }
}

impl FromIterator<Capability> for Capabilities {
    fn from_iter<T: IntoIterator<Item = Capability>>(iter: T) -> Self {
        Capabilities(iter.into_iter().fold(0, |acc, c| acc | (1 << c as u8)))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRequest {
    pub request_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equip_id: Option<i64>,
    pub target: Target,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// The body follows as HTTP_REQUEST_CHUNK … HTTP_REQUEST_END (`req-stream`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub body_stream: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    pub base_url: String,
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub headers: Headers,
    /// Inline body: sent to the device as-is (UTF-8), or base64 when `body_encoding` says so.
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_encoding: Option<BodyEncoding>,
    /// Accept a self-signed device certificate (per-equipment `tlsInsecure`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub tls_insecure: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BodyEncoding {
    Utf8,
    Base64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponseStart {
    pub request_id: String,
    pub status_code: u16,
    #[serde(default)]
    pub headers: Headers,
}

/// A body chunk of either direction; `data` is base64 on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Chunk {
    pub request_id: String,
    #[serde(with = "b64")]
    pub data: Bytes,
    pub index: u64,
}

/// A message that only names its stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamRef {
    pub request_id: String,
}

/// `{requestId, code, message}` (extended) or `{requestId, error}` (original Node connector).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponseError {
    pub request_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ResponseError {
    pub fn new(request_id: impl Into<String>, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            request_id: request_id.into(),
            code: Some(code.as_str().to_owned()),
            message: Some(message.into()),
            error: None,
        }
    }

    /// The code, or `INTERNAL` for the legacy shape and for codes this version does not know.
    pub fn error_code(&self) -> ErrorCode {
        self.code
            .as_deref()
            .and_then(ErrorCode::parse)
            .unwrap_or(ErrorCode::Internal)
    }

    /// Human-readable reason from whichever shape the connector used.
    pub fn reason(&self) -> &str {
        self.message
            .as_deref()
            .or(self.error.as_deref())
            .unwrap_or("connector reported an error")
    }
}

/// Error codes of HTTP_RESPONSE_ERROR (`error` capability).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    Timeout,
    ConnectFailed,
    TargetForbidden,
    Busy,
    BadRequest,
    Cancelled,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Timeout => "TIMEOUT",
            ErrorCode::ConnectFailed => "CONNECT_FAILED",
            ErrorCode::TargetForbidden => "TARGET_FORBIDDEN",
            ErrorCode::Busy => "BUSY",
            ErrorCode::BadRequest => "BAD_REQUEST",
            ErrorCode::Cancelled => "CANCELLED",
            ErrorCode::Internal => "INTERNAL",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "TIMEOUT" => ErrorCode::Timeout,
            "CONNECT_FAILED" => ErrorCode::ConnectFailed,
            "TARGET_FORBIDDEN" => ErrorCode::TargetForbidden,
            "BUSY" => ErrorCode::Busy,
            "BAD_REQUEST" => ErrorCode::BadRequest,
            "CANCELLED" => ErrorCode::Cancelled,
            "INTERNAL" => ErrorCode::Internal,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hello {
    pub version: String,
    #[serde(default)]
    pub capabilities: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
}

impl Hello {
    pub fn capability_set(&self) -> Capabilities {
        self.capabilities
            .iter()
            .filter_map(|c| Capability::parse(c))
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WindowUpdate {
    pub request_id: String,
    pub bytes: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WsOpen {
    pub stream_id: String,
    pub target: WsTarget,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WsTarget {
    /// `http(s)://host[:port]`; the connector dials `ws(s)://` to the same authority.
    pub base_url: String,
    pub path: String,
    #[serde(default)]
    pub headers: Headers,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protocols: Vec<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub tls_insecure: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WsOpened {
    pub stream_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

/// Exactly one of `text` / `data` (base64 binary) is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WsMessage {
    pub stream_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "b64_opt")]
    pub data: Option<Bytes>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WsClose {
    pub stream_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Why a connector refused a WS_OPEN, as an [`ErrorCode`] (`TARGET_FORBIDDEN`,
    /// `CONNECT_FAILED`, `TIMEOUT`, …), so the browser gets the status an HTTP request
    /// would (403, 502, 504). Absent from older connectors: the refusal is then a 502.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// RECONNECT: when to be connected elsewhere by. A connector picks a moment at random
/// within it, so a node's connectors do not all arrive at the next one at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reconnect {
    pub after_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRotate {
    pub token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub ts: u64,
}

fn is_false(b: &bool) -> bool {
    !*b
}

mod b64 {
    use base64::Engine as _;
    use bytes::Bytes;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(data: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(data))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map(Bytes::from)
            .map_err(|e| D::Error::custom(format_args!("bad base64 in data: {e}")))
    }
}

mod b64_opt {
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(data: &Option<Bytes>, s: S) -> Result<S::Ok, S::Error> {
        match data {
            Some(d) => super::b64::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Bytes>, D::Error> {
        #[derive(Deserialize)]
        struct W(#[serde(with = "super::b64")] Bytes);
        Ok(Option::<W>::deserialize(d)?.map(|w| w.0))
    }
}
