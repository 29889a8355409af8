//! Ponte wire protocol, version 1, between the cloud relay and the on-prem connector.
//!
//! Sans-IO: message types, the JSON text-frame codec, the named limits and the bounded
//! outbound queue. Nothing here opens a socket or needs a runtime, so the decoder can be
//! fuzzed and unit-tested alone.
//!
//! Every frame is one WebSocket text frame carrying one JSON object whose `type` field
//! discriminates, except body chunks between peers that both named `bin`: those may be
//! binary frames ([`binary`] documents the layout). [`CloudMsg`] flows cloud → connector, [`ConnectorMsg`] connector → cloud.
//! The base set (HTTP_REQUEST, HTTP_RESPONSE_START/CHUNK/END, HTTP_RESPONSE_ERROR,
//! PING/PONG) is what the original Node connector speaks; everything else is an extension
//! the relay only uses once the connector announced the matching [`Capability`] in HELLO.
#![forbid(unsafe_code)]

pub mod binary;
mod codec;
pub mod connection;
mod flow;
mod handshake;
mod headers;
pub mod limits;
mod liveness;
mod message;
pub mod queue;
pub mod stream;

pub use codec::{decode_cloud, decode_connector, encode, Blame, DecodeError, Frame};
pub use flow::{
    Growth, OverBudget, RecvWindow, SendWindow, WindowBudget, WindowViolation, WsBudget,
    WsStreamBudget, MAX_WINDOW,
};
pub use handshake::{Handshake, Heard, Peer};
pub use headers::{HeaderValue, Headers};
pub use liveness::{Due, Liveness};
pub use message::*;
