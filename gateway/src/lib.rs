//! Ponte remote-UI gateway: shows a device's own web UI as a top-level page under
//! `/remote/s/{sessionId}/…`, rewriting what belongs to the device so that UI works there.
//!
//! Must never: hold a whole body in memory, let one session's requests or cookies reach
//! another session's device, or let the SaaS's credentials reach a device.
#![forbid(unsafe_code)]

mod answer;
pub mod published;
mod remote;
pub mod rewrite;
mod server;
mod state;
mod stream;

pub use server::app;
pub use state::{Gateway, GatewayConfig, PublicConfig};
