//! Ponte remote-UI gateway: shows a device's own web UI as a top-level page under
//! `/remote/s/{sessionId}/…`, rewriting what belongs to the device so that UI works there.
//!
//! Must never: hold a whole body in memory, let one session's requests or cookies reach
//! another session's device, or let the SaaS's credentials reach a device.
#![forbid(unsafe_code)]

pub mod published;
pub mod rewrite;
mod server;

pub use published::PublicConfig;
pub use server::{app, Gateway, GatewayConfig};
