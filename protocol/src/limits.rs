//! Named protocol limits, in one place. Both sides enforce them.

use std::time::Duration;

/// Largest text frame either side accepts. A frame over this closes the connection: the
/// WebSocket layer rejects it before we see any JSON, so there is no stream to blame and
/// the peer is either broken or hostile.
pub const MAX_FRAME_LEN: usize = 1024 * 1024;

/// Largest payload (decoded bytes) of one HTTP_RESPONSE_CHUNK / HTTP_REQUEST_CHUNK /
/// binary WS_MESSAGE that our side sends. Base64 makes the frame ~4/3 of this.
pub const MAX_CHUNK_LEN: usize = 64 * 1024;

/// Largest WebSocket message carried either way through the tunnel (text bytes or
/// binary payload). A bigger one ends its stream with close code 1009 (message too big)
/// wherever it is first seen: the gateway (from the browser), the connector (from the
/// device) or the relay (from a connector that ignores the limit).
pub const MAX_WS_MESSAGE: usize = 512 * 1024;

/// WebSocket bytes one stream may hold queued toward a receiver that has not written them
/// on yet (the relay toward the browser, the connector toward the device). WebSockets have
/// no window, and the reader of a connection must never wait on one stream, so a stream
/// over this is closed with 1008: its receiver stopped keeping up. Two maximal messages.
pub const WS_STREAM_BUDGET: usize = 2 * MAX_WS_MESSAGE;

/// WebSocket bytes all streams of one connection may hold queued together. The message
/// that would go over it closes its stream with 1013 (try again later), so one tenant's
/// 256 streams cannot hold 256 stream budgets.
pub const WS_CONNECTION_BUDGET: usize = 16 * 1024 * 1024;

/// Largest total size of a request's or response's header names and values.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Largest inline (non-streamed) request body carried inside HTTP_REQUEST.
pub const MAX_INLINE_BODY: usize = 512 * 1024;

/// Most request/WebSocket streams open at once on one connector. One more is refused with
/// BUSY rather than queued: the caller gets 429 and can retry.
pub const MAX_STREAMS_PER_CONNECTOR: usize = 256;

/// Initial per-stream flow-control window (`flow` capability), both directions.
pub const INITIAL_WINDOW: u32 = 256 * 1024;

/// Largest window a receiver grows one stream's to when the window, not the consumer,
/// holds the stream back (`RecvWindow::on_consumed_tuned`): 256 KiB held a 100 MB
/// download to ~0.65x of nginx's speed on loopback, 1 MiB reached it.
pub const MAX_TUNED_WINDOW: u32 = 8 * INITIAL_WINDOW;

/// Window growth one connection's streams may hold together (`WindowBudget`): eight
/// streams at the largest window. Past it, windows stay as they are.
pub const WINDOW_GROWTH_BUDGET: u64 = 8 * (MAX_TUNED_WINDOW - INITIAL_WINDOW) as u64;

/// The receiver returns credit once it has consumed at least this much, so a stream
/// does not cost one WINDOW_UPDATE per chunk.
pub const WINDOW_UPDATE_THRESHOLD: u32 = INITIAL_WINDOW / 4;

/// Each side sends PING this often.
pub const PING_INTERVAL: Duration = Duration::from_secs(30);

/// A peer silent (no frame of any kind) for this long is disconnected.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(90);

/// The connector must send HELLO (or any first frame) within this after the upgrade;
/// legacy connectors that never send HELLO are detected by their first other frame, or
/// by this running out: the first request to a legacy connector waits at most this.
pub const HELLO_GRACE: Duration = Duration::from_millis(250);

/// The grace for a peer whose `User-Agent` says it is Ponte's connector, which always
/// sends HELLO first: on a loaded host it may take longer than [`HELLO_GRACE`], and
/// treating it as legacy would cost its first requests the extensions.
pub const HELLO_GRACE_PONTE: Duration = Duration::from_secs(2);

/// Default wait for HTTP_RESPONSE_START when the caller gives no `timeoutMs`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Upper bound on a caller-chosen `timeoutMs`.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(600);

/// Longest `requestId` / `streamId` accepted.
pub const MAX_ID_LEN: usize = 128;

/// Protocol version spoken by this crate (semver of the wire, not of the binary).
pub const PROTOCOL_VERSION: u32 = 1;

#[cfg(test)]
mod tests {
    use super::*;

    /// The numbers DESIGN.md and the README state, by value: a change to one fails here
    /// until the documents (and older peers' expectations) say the same.
    #[test]
    fn limits_are_the_documented_ones() {
        const KIB: usize = 1024;
        assert_eq!(MAX_FRAME_LEN, 1024 * KIB);
        assert_eq!(MAX_CHUNK_LEN, 64 * KIB);
        assert_eq!(MAX_WS_MESSAGE, 512 * KIB);
        assert_eq!(WS_STREAM_BUDGET, 1024 * KIB);
        assert_eq!(WS_CONNECTION_BUDGET, 16 * 1024 * KIB);
        assert_eq!(MAX_HEADER_BYTES, 64 * KIB);
        assert_eq!(MAX_INLINE_BODY, 512 * KIB);
        assert_eq!(MAX_STREAMS_PER_CONNECTOR, 256);
        assert_eq!(
            (INITIAL_WINDOW, WINDOW_UPDATE_THRESHOLD),
            (256 << 10, 64 << 10)
        );
        assert_eq!(
            (MAX_TUNED_WINDOW, WINDOW_GROWTH_BUDGET),
            (2 << 20, 14 << 20)
        );
        assert_eq!(crate::queue::OUTBOUND_BYTES, 4 * 1024 * KIB);
        assert_eq!(crate::flow::FAST_CONSUMER, 64 << 20);
        assert_eq!(PING_INTERVAL, Duration::from_secs(30));
        assert_eq!(PEER_TIMEOUT, Duration::from_secs(90));
        assert_eq!(HELLO_GRACE, Duration::from_millis(250));
        assert_eq!(HELLO_GRACE_PONTE, Duration::from_secs(2));
        assert_eq!(DEFAULT_TIMEOUT, Duration::from_secs(60));
        assert_eq!(MAX_TIMEOUT, Duration::from_secs(600));
    }
}
