//! Ponte relay: holds connector WebSocket connections at `/ws/connectors` and multiplexes
//! HTTP and WebSocket streams over them. Implements [`Router`] in-process.
//!
//! Must never: let one connector's or one stream's misbehaviour harm another, or hold
//! an unbounded amount of data for a slow caller.
#![forbid(unsafe_code)]

pub mod auth;
mod conn;
pub mod metrics;
mod readahead;
mod relay;
pub mod router;
mod server;

pub use auth::{
    ConnectorClaims, ConnectorDirectory, ConnectorEvent, StaticDirectory, TokenVerifier,
};
pub use conn::{ConnConfig, FrameCounts};
pub use relay::{Conflict, Relay, RelayConfig};
pub use router::*;
pub use server::{app, nodelay, serve, serve_with, ws_config};
