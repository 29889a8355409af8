//! The metrics every cloud role records, named in one place. Recording goes through the
//! `metrics` facade: with no recorder installed (a library user, a unit test) each call
//! is a no-op; `ponte serve` installs the Prometheus recorder and serves `/metrics`.
//!
//! Gauges that are a count of live things (connectors online, streams in flight) are
//! not kept here: the relay knows them exactly, and they are read when scraped.

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, histogram, Unit};

/// Connectors with a live connection on this node (gauge, read at scrape).
pub const CONNECTORS_ONLINE: &str = "ponte_connectors_online";
/// HTTP and WebSocket streams open through the tunnel (gauge, read at scrape).
pub const STREAMS_IN_FLIGHT: &str = "ponte_streams_in_flight";
/// Body bytes carried by the tunnel, label `direction` = `to_device` | `from_device`.
pub const TUNNEL_BYTES: &str = "ponte_tunnel_bytes_total";
/// Time from a request's arrival to its response head, labels `role` = `api` |
/// `gateway` and `status` = `2xx` … `5xx`.
pub const REQUEST_DURATION: &str = "ponte_request_duration_seconds";
/// Error responses, labels `role`, `code` (the JSON error code, e.g. `CONNECTOR_OFFLINE`)
/// and `source` (`upstream` | `downstream` | `internal`, [`crate::ErrorSource`]).
pub const ERRORS: &str = "ponte_errors_total";
/// Connectors disconnected for silence (no frame for the peer timeout, 90 s).
pub const HEARTBEATS_MISSED: &str = "ponte_heartbeats_missed_total";

/// Paired connectors whose token expires within the rotation horizon (7 days) and that
/// cannot be handed a new one over the tunnel (a legacy connector without
/// `token-rotate`, or one that is not connected): they will be locked out at expiry.
pub const TOKENS_EXPIRING: &str = "ponte_connector_tokens_expiring";

/// Histogram buckets for [`REQUEST_DURATION`], in seconds: a LAN device answers in
/// milliseconds, a page through a slow tunnel in seconds, a timeout at 60 s.
pub const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Registers help texts; call once after installing a recorder.
pub fn describe() {
    describe_gauge!(
        CONNECTORS_ONLINE,
        "Connectors with a live connection to this node"
    );
    describe_gauge!(
        STREAMS_IN_FLIGHT,
        "HTTP and WebSocket streams open through the tunnel"
    );
    describe_counter!(
        TUNNEL_BYTES,
        Unit::Bytes,
        "Body bytes carried through the tunnel, by direction"
    );
    describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "Time from request arrival to response head, by role and status class"
    );
    describe_counter!(
        ERRORS,
        "Error responses, by role (api, gateway, relay), error code and source (upstream, downstream, internal)"
    );
    describe_counter!(
        HEARTBEATS_MISSED,
        "Connectors disconnected because they went silent"
    );
    describe_gauge!(
        TOKENS_EXPIRING,
        "Connectors whose token expires within 7 days and cannot be rotated over the tunnel"
    );
    metrics::gauge!(TOKENS_EXPIRING).set(0.0);
    // Counters that exist before their first event, so a dashboard sees 0, not nothing.
    bytes_to_device(0);
    bytes_from_device(0);
    counter!(HEARTBEATS_MISSED).increment(0);
}

pub fn bytes_to_device(n: usize) {
    counter!(TUNNEL_BYTES, "direction" => "to_device").increment(n as u64);
}

pub fn bytes_from_device(n: usize) {
    counter!(TUNNEL_BYTES, "direction" => "from_device").increment(n as u64);
}

pub fn tokens_expiring(n: usize) {
    metrics::gauge!(TOKENS_EXPIRING).set(n as f64);
}

pub fn heartbeat_missed() {
    counter!(HEARTBEATS_MISSED).increment(1);
}

/// An error answered by `role` with JSON error `code`, on `source`. Codes are
/// compile-time constants, so the label's values stay a small, fixed set.
pub fn error(role: &'static str, code: &'static str, source: crate::ErrorSource) {
    counter!(ERRORS, "role" => role, "code" => code, "source" => source.label()).increment(1);
}

/// A response head sent by `role` after `seconds`.
pub fn request_done(role: &'static str, status: u16, seconds: f64) {
    let class = match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    histogram!(REQUEST_DURATION, "role" => role, "status" => class).record(seconds);
}

/// Axum middleware recording [`REQUEST_DURATION`] for `role` (time to the response
/// head: a streamed download counts its first byte, not its last).
pub async fn track(
    role: &'static str,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let start = std::time::Instant::now();
    let resp = next.run(req).await;
    request_done(role, resp.status().as_u16(), start.elapsed().as_secs_f64());
    resp
}
