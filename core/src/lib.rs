//! Ponte's ports: what the cloud roles ask of each other, and nothing that does it.
//!
//! - [`router`]: send a request to a connector and get its response stream; control a
//!   connector's connection. The relay implements it in-process (cluster mode: over NATS);
//!   the gateway and the API call it.
//! - [`session`]: the remote-session checks the gateway asks of the API.
//! - [`published`]: the published routes the gateway asks of the API, and their rules.
//! - [`connector`]: connector token claims, and the directory the relay asks of the API.
//! - [`error`]: who a failure is on, and the one JSON error body.
//! - [`metrics`]: every metric's name, and the helpers that record them.
//!
//! Dependency rule (checked by `tests/tests/architecture.rs`): protocol ← core ←
//! {relay, gateway, api} ← ponte; the connector depends on the protocol only; the relay,
//! the gateway and the API never depend on each other.
//!
//! Must never: hold state, open sockets or read a store.
#![forbid(unsafe_code)]

pub mod connector;
pub mod error;
pub mod metrics;
pub mod published;
pub mod router;
pub mod session;

pub use error::{error_answer, error_body, error_response, report, ErrorSource};
pub use router::*;
