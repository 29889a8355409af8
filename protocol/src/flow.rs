//! Per-stream flow-control accounting (`flow` capability), sans-IO.
//!
//! The sender may have at most `window` unacknowledged body bytes in flight per stream;
//! the receiver hands credit back with WINDOW_UPDATE as its consumer drains the data.
//! This keeps a slow reader from growing memory anywhere on the path and keeps one busy
//! stream from starving the others on the shared connection.

use crate::limits::{INITIAL_WINDOW, WINDOW_UPDATE_THRESHOLD};

/// Largest window a peer may grant in total (same bound as HTTP/2).
pub const MAX_WINDOW: u64 = (1 << 31) - 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WindowViolation {
    #[error("peer sent {sent} bytes with only {available} bytes of window")]
    Overrun { sent: u64, available: u64 },
    #[error("peer granted credit beyond the {MAX_WINDOW}-byte maximum")]
    Overflow,
}

/// Sender's view: how much it may still send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendWindow {
    available: u64,
}

impl Default for SendWindow {
    fn default() -> Self {
        Self {
            available: INITIAL_WINDOW as u64,
        }
    }
}

impl SendWindow {
    pub fn available(&self) -> u64 {
        self.available
    }

    /// Records that `n` bytes were sent; the caller sends at most `available()`.
    pub fn consume(&mut self, n: usize) {
        debug_assert!(n as u64 <= self.available, "sender overran its own window");
        self.available = self.available.saturating_sub(n as u64);
    }

    /// Applies a WINDOW_UPDATE from the receiver.
    pub fn grant(&mut self, n: u32) -> Result<(), WindowViolation> {
        let next = self.available + n as u64;
        if next > MAX_WINDOW {
            return Err(WindowViolation::Overflow);
        }
        self.available = next;
        Ok(())
    }
}

/// Receiver's view: what the peer may still send, and the credit not yet returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvWindow {
    /// Bytes the peer may send before it must wait for credit.
    remaining: u64,
    /// Bytes consumed locally whose credit has not been returned yet.
    unacked: u64,
}

impl Default for RecvWindow {
    fn default() -> Self {
        Self {
            remaining: INITIAL_WINDOW as u64,
            unacked: 0,
        }
    }
}

impl RecvWindow {
    /// Data arrived from the peer.
    pub fn on_data(&mut self, n: usize) -> Result<(), WindowViolation> {
        let n = n as u64;
        if n > self.remaining {
            return Err(WindowViolation::Overrun {
                sent: n,
                available: self.remaining,
            });
        }
        self.remaining -= n;
        Ok(())
    }

    /// The local consumer took `n` bytes. Returns the credit to send now, if it is
    /// worth a frame (at least [`WINDOW_UPDATE_THRESHOLD`], or the peer is fully stalled).
    pub fn on_consumed(&mut self, n: usize) -> Option<u32> {
        self.unacked += n as u64;
        if self.unacked >= WINDOW_UPDATE_THRESHOLD as u64 || self.remaining == 0 {
            let credit = self.unacked.min(u32::MAX as u64) as u32;
            self.unacked -= credit as u64;
            self.remaining += credit as u64;
            Some(credit).filter(|c| *c > 0)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sender_and_receiver_agree() {
        let mut tx = SendWindow::default();
        let mut rx = RecvWindow::default();
        let total = INITIAL_WINDOW as usize;
        tx.consume(total);
        assert_eq!(tx.available(), 0);
        rx.on_data(total).unwrap();
        assert!(rx.on_data(1).is_err(), "overrun must be caught");
        // Small consumption is batched until the threshold.
        assert_eq!(
            rx.on_consumed(10),
            Some(10),
            "a stalled peer gets credit at once"
        );
        rx.on_data(10).unwrap();
        assert_eq!(rx.on_consumed(100), Some(100));
        let mut rx = RecvWindow::default();
        rx.on_data(1000).unwrap();
        assert_eq!(rx.on_consumed(1000), None);
        assert_eq!(
            rx.on_consumed(WINDOW_UPDATE_THRESHOLD as usize),
            Some(WINDOW_UPDATE_THRESHOLD + 1000)
        );
        tx.grant(10).unwrap();
        assert_eq!(tx.available(), 10);
        assert_eq!(tx.grant(u32::MAX), Err(WindowViolation::Overflow));
    }
}
