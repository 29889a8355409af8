//! Ponte relay: holds connector WebSocket connections at `/ws/connectors` and multiplexes
//! HTTP and WebSocket streams over them. Implements `ponte_core::Router` in-process.
//!
//! Must never: let one connector's or one stream's misbehaviour harm another, or hold
//! an unbounded amount of data for a slow caller.
#![forbid(unsafe_code)]

pub mod auth;
mod conn;
mod contest;
mod http_body;
mod readahead;
mod reader;
mod relay;
mod server;
mod writer;
mod ws_channel;

pub use auth::{StaticDirectory, TokenVerifier};
pub use conn::{ConnConfig, FrameCounts};
pub use relay::{Relay, RelayConfig};
pub use server::{app, nodelay, serve, serve_with, ws_config};
