//! Per-stream flow-control accounting (`flow` capability), sans-IO.
//!
//! The sender may have at most `window` unacknowledged body bytes in flight per stream;
//! the receiver hands credit back with WINDOW_UPDATE as its consumer drains the data.
//! This keeps a slow reader from growing memory anywhere on the path and keeps one busy
//! stream from starving the others on the shared connection.

use crate::limits::{INITIAL_WINDOW, MAX_TUNED_WINDOW, WINDOW_UPDATE_THRESHOLD};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// A stream whose consumer takes a whole window's worth at least this fast (bytes per
/// second) gets its window doubled (see [`RecvWindow::on_consumed_tuned`]). A consumer
/// this fast is held back by the window: at 256 KiB and a loopback round trip of a few
/// hundred microseconds the window caps a stream near 1 GB/s, at 64 MiB/s it does not.
pub const FAST_CONSUMER: u64 = 64 * 1024 * 1024;

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
///
/// Invariant: `remaining + buffered + unacked == window` (data on the wire still counts
/// as `remaining` until it arrives).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvWindow {
    /// Bytes the peer may send before it must wait for credit.
    remaining: u64,
    /// Bytes consumed locally whose credit has not been returned yet.
    unacked: u64,
    /// Bytes arrived and not consumed yet.
    buffered: u64,
    /// The window granted in all: [`INITIAL_WINDOW`], grown by
    /// [`on_consumed_tuned`](Self::on_consumed_tuned) up to [`MAX_TUNED_WINDOW`].
    window: u64,
    /// Since when, and how much, the consumer has taken toward its next window's worth.
    epoch: Option<(Instant, u64)>,
    /// Credit still to withhold to shrink a grown window whose consumer slowed down.
    shrink: u64,
}

impl Default for RecvWindow {
    fn default() -> Self {
        Self {
            remaining: INITIAL_WINDOW as u64,
            unacked: 0,
            buffered: 0,
            window: INITIAL_WINDOW as u64,
            epoch: None,
            shrink: 0,
        }
    }
}

/// The window growth one connection's streams may hold together, in bytes. A stream grows
/// its window only from here and gives the growth back when it ends
/// ([`RecvWindow::grown`]), so a connection holds at most its streams' initial windows
/// plus this, however its callers behave (one that reads fast, then stops, holds a grown
/// window until its stream ends). When empty, windows stay as they are: slower, bounded.
#[derive(Debug)]
pub struct WindowBudget {
    left: AtomicU64,
}

impl WindowBudget {
    pub fn new(bytes: u64) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self {
            left: AtomicU64::new(bytes),
        })
    }

    /// Takes `n` bytes if that many are left.
    fn take(&self, n: u64) -> bool {
        self.left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                left.checked_sub(n)
            })
            .is_ok()
    }

    /// Gives back what a stream's window grew by, once the stream has ended.
    pub fn give_back(&self, n: u64) {
        self.left.fetch_add(n, Ordering::AcqRel);
    }

    /// Bytes of growth left.
    pub fn left(&self) -> u64 {
        self.left.load(Ordering::Acquire)
    }
}

/// What an ended stream's window grew by, held until the data it let in has been read:
/// given back to the budget when dropped. (A stream that has left its table may still
/// have a whole grown window of data queued toward a caller that stopped reading; its
/// growth must count until then, or streams that end unread could hold more than the
/// budget.)
#[derive(Debug)]
#[must_use = "dropping it gives the growth back at once"]
pub struct Growth {
    budget: std::sync::Arc<WindowBudget>,
    bytes: u64,
}

impl Growth {
    pub fn new(budget: std::sync::Arc<WindowBudget>, bytes: u64) -> Self {
        Self { budget, bytes }
    }
}

impl Drop for Growth {
    fn drop(&mut self) {
        self.budget.give_back(self.bytes);
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
        self.buffered += n;
        Ok(())
    }

    /// The local consumer took `n` bytes. Returns the credit to send now, if it is
    /// worth a frame (at least [`WINDOW_UPDATE_THRESHOLD`], or the peer is fully stalled).
    /// The window stays as it is.
    pub fn on_consumed(&mut self, n: usize) -> Option<u32> {
        self.buffered = self.buffered.saturating_sub(n as u64);
        self.unacked += n as u64;
        self.credit(0)
    }

    /// [`on_consumed`](Self::on_consumed) at `now`, and the window doubles (up to
    /// [`MAX_TUNED_WINDOW`], taken from `budget`) each time the consumer has taken a
    /// whole window's worth at [`FAST_CONSUMER`] or faster: a stream that fast needs more
    /// than the window to fill the round trip. A slower consumer keeps its window, so a
    /// slow reader holds no more than before. A grown window whose consumer has slowed
    /// below a quarter of that rate halves (credit withheld, the bytes given back to
    /// `budget`), down to [`INITIAL_WINDOW`]; one that stops reading holds its grown
    /// window, bounded by `budget`, until its stream ends.
    pub fn on_consumed_tuned(
        &mut self,
        n: usize,
        now: Instant,
        budget: &WindowBudget,
    ) -> Option<u32> {
        self.buffered = self.buffered.saturating_sub(n as u64);
        self.unacked += n as u64;
        let (since, taken) = self.epoch.get_or_insert((now, 0));
        *taken += n as u64;
        let micros = now.saturating_duration_since(*since).as_micros() as u64;
        let rate_at_least = |r: u64| self.window * 1_000_000 >= r.saturating_mul(micros);
        let (fast, slow) = (
            rate_at_least(FAST_CONSUMER),
            !rate_at_least(FAST_CONSUMER / 4),
        );
        let mut grow = 0;
        // Judged once a window's worth is taken, or as soon as the time spent proves the
        // reader slow (a trickling stream need not take a whole grown window first).
        if *taken >= self.window || slow {
            if fast && self.window < MAX_TUNED_WINDOW as u64 && self.shrink == 0 {
                let by = self.window.min(MAX_TUNED_WINDOW as u64 - self.window);
                if budget.take(by) {
                    grow = by;
                }
            } else if slow && self.shrink == 0 {
                self.shrink = (self.window / 2).min(self.grown());
            }
            self.epoch = Some((now, 0));
        }
        // Shrinking: consumed bytes pay off the shrink first; their credit is not returned.
        let paid = self.unacked.min(self.shrink);
        if paid > 0 {
            self.shrink -= paid;
            self.unacked -= paid;
            self.window -= paid;
            budget.give_back(paid);
        }
        self.window += grow;
        self.credit(grow)
    }

    /// Bytes the peer may still send before it must wait for credit.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Bytes the window has grown by (to give back to its [`WindowBudget`] at the end).
    pub fn grown(&self) -> u64 {
        self.window - INITIAL_WINDOW as u64
    }

    /// The credit to return now: what was consumed and not yet acknowledged, plus any
    /// growth of the window.
    fn credit(&mut self, grow: u64) -> Option<u32> {
        if self.unacked >= WINDOW_UPDATE_THRESHOLD as u64 || self.remaining == 0 || grow > 0 {
            let credit = (self.unacked + grow).min(u32::MAX as u64) as u32;
            self.unacked -= credit as u64 - grow;
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

    use std::time::Duration;

    const CHUNK: usize = 64 * 1024;

    /// A sender and a receiver stepped in memory with fake time.
    struct Pair {
        tx: SendWindow,
        rx: RecvWindow,
        now: Instant,
        queued: usize,
    }

    impl Pair {
        fn new() -> Self {
            Self {
                tx: SendWindow::default(),
                rx: RecvWindow::default(),
                now: Instant::now(),
                queued: 0,
            }
        }

        /// Each round the sender sends what its window allows (in chunks; they arrive at
        /// once) and the consumer takes every chunk queued, `per_chunk` apart. Checks the
        /// invariant and that both ends agree on the credit after each round.
        fn rounds(&mut self, rounds: usize, per_chunk: Duration, budget: &WindowBudget) {
            for _ in 0..rounds {
                while self.tx.available() >= CHUNK as u64 {
                    self.tx.consume(CHUNK);
                    self.rx.on_data(CHUNK).unwrap();
                    self.queued += 1;
                }
                while self.queued > 0 {
                    self.queued -= 1;
                    self.now += per_chunk;
                    if let Some(credit) = self.rx.on_consumed_tuned(CHUNK, self.now, budget) {
                        self.tx.grant(credit).unwrap();
                    }
                }
                let rx = &self.rx;
                assert_eq!(rx.remaining + rx.buffered + rx.unacked, rx.window);
                assert_eq!(
                    self.tx.available(),
                    rx.remaining,
                    "both ends agree on the credit"
                );
            }
        }
    }

    /// The receiver's window after `rounds` of [`Pair::rounds`] from the start.
    fn run(rounds: usize, per_chunk: Duration, budget: &WindowBudget) -> RecvWindow {
        let mut pair = Pair::new();
        pair.rounds(rounds, per_chunk, budget);
        pair.rx
    }

    #[test]
    fn a_window_that_holds_a_fast_consumer_back_grows_to_its_limit() {
        let budget = WindowBudget::new(u64::MAX / 2);
        // 64 KiB every 100 µs: 640 MB/s.
        let rx = run(20, Duration::from_micros(100), &budget);
        assert_eq!(rx.window, MAX_TUNED_WINDOW as u64);
        assert_eq!(rx.grown(), (MAX_TUNED_WINDOW - INITIAL_WINDOW) as u64);
        assert_eq!(budget.left(), u64::MAX / 2 - rx.grown());
    }

    #[test]
    fn a_slow_consumer_keeps_the_initial_window() {
        let budget = WindowBudget::new(u64::MAX / 2);
        // 64 KiB every 4 ms: 16 MB/s, as the slow-reader memory tests read.
        let rx = run(200, Duration::from_millis(4), &budget);
        assert_eq!(rx.window, INITIAL_WINDOW as u64);
        assert_eq!(budget.left(), u64::MAX / 2);
    }

    #[test]
    fn a_grown_window_whose_consumer_slows_down_shrinks_back() {
        let budget = WindowBudget::new(u64::MAX / 2);
        let mut pair = Pair::new();
        // 64 KiB every 100 µs, then every 40 ms (1.6 MB/s).
        pair.rounds(20, Duration::from_micros(100), &budget);
        assert_eq!(pair.rx.window, MAX_TUNED_WINDOW as u64, "grew while fast");
        pair.rounds(60, Duration::from_millis(40), &budget);
        assert_eq!(
            pair.rx.window, INITIAL_WINDOW as u64,
            "shrank back once slow"
        );
        assert_eq!(budget.left(), u64::MAX / 2, "and gave every byte back");
    }

    #[test]
    fn a_trickling_reader_starts_shrinking_before_taking_a_whole_window() {
        let budget = WindowBudget::new(u64::MAX / 2);
        let mut rx = run(20, Duration::from_micros(100), &budget);
        assert_eq!(rx.window, MAX_TUNED_WINDOW as u64);
        // 1 KiB a second from here on (data already waiting): the first read that comes
        // after the window could have gone at 16 MiB/s starts the shrink.
        let mut now = Instant::now() + Duration::from_secs(1);
        rx.on_data(4096).unwrap();
        for _ in 0..4 {
            now += Duration::from_secs(1);
            assert_eq!(
                rx.on_consumed_tuned(1024, now, &budget),
                None,
                "no credit while shrinking"
            );
        }
        assert!(
            rx.shrink > 0,
            "the shrink began after 4 KiB, not a 2 MiB window"
        );
        assert_eq!(rx.window, MAX_TUNED_WINDOW as u64 - 4096);
        assert_eq!(budget.left(), u64::MAX / 2 - rx.grown());
    }

    #[test]
    fn windows_grow_only_from_the_connection_budget() {
        // Room for one doubling, not two.
        let budget = WindowBudget::new(INITIAL_WINDOW as u64 + 1);
        let fast = Duration::from_micros(100);
        let rx = run(20, fast, &budget);
        assert_eq!(rx.window, 2 * INITIAL_WINDOW as u64);
        assert_eq!(budget.left(), 1);
        let empty = WindowBudget::new(0);
        assert_eq!(run(20, fast, &empty).window, INITIAL_WINDOW as u64);
        budget.give_back(rx.grown());
        assert_eq!(budget.left(), INITIAL_WINDOW as u64 + 1);
    }
}

/// Why a WebSocket message could not be queued (see [`WsBudget`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OverBudget {
    /// The stream already holds its budget: its receiver stopped keeping up (close 1008).
    #[error("the WebSocket's receiver is not keeping up")]
    Stream,
    /// All streams of the connection together hold theirs (close 1013).
    #[error("the connection's WebSocket budget is used up")]
    Connection,
    /// The stream has ended; nothing more is queued for it.
    #[error("the WebSocket has ended")]
    Closed,
}

/// WebSocket bytes one connection holds for receivers that have not written them on yet,
/// bounded per stream and for the connection. WebSockets have no window, so this is what
/// keeps a device (or a hostile connector) flooding a browser that does not read, or a
/// browser flooding a device, from growing memory: the message over a budget is refused
/// and the caller closes that stream. Shared by the connection's streams (`Arc`).
#[derive(Debug)]
pub struct WsBudget {
    used: std::sync::atomic::AtomicUsize,
    limit: usize,
    stream_limit: usize,
}

impl WsBudget {
    pub fn new(stream_limit: usize, limit: usize) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self {
            used: Default::default(),
            limit,
            stream_limit,
        })
    }

    /// Bytes held by all streams now.
    pub fn used(&self) -> usize {
        self.used.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The budget of one new stream.
    pub fn stream(self: &std::sync::Arc<Self>) -> WsStreamBudget {
        WsStreamBudget {
            conn: std::sync::Arc::clone(self),
            held: std::sync::Mutex::new(Some(0)),
        }
    }
}

/// One stream's share of a [`WsBudget`]. Charged when a message is queued, released once
/// the receiver has written it on; what is still held goes back on [`close`](Self::close)
/// or drop.
#[derive(Debug)]
pub struct WsStreamBudget {
    conn: std::sync::Arc<WsBudget>,
    /// Bytes held; `None` once closed.
    held: std::sync::Mutex<Option<usize>>,
}

impl WsStreamBudget {
    /// Charges `n` bytes about to be queued, or refuses (charging nothing) when the stream
    /// or the connection would go over its budget. A stream holding nothing always takes
    /// one message within the stream budget, so a receiver that keeps up never fails.
    pub fn charge(&self, n: usize) -> Result<(), OverBudget> {
        use std::sync::atomic::Ordering::Relaxed;
        let mut held = self.held.lock().unwrap();
        let Some(h) = held.as_mut() else {
            return Err(OverBudget::Closed);
        };
        if *h + n > self.conn.stream_limit {
            return Err(OverBudget::Stream);
        }
        self.conn
            .used
            .fetch_update(Relaxed, Relaxed, |u| {
                (u + n <= self.conn.limit).then_some(u + n)
            })
            .map_err(|_| OverBudget::Connection)?;
        *h += n;
        Ok(())
    }

    /// The receiver has written `n` charged bytes on.
    pub fn release(&self, n: usize) {
        let mut held = self.held.lock().unwrap();
        if let Some(h) = held.as_mut() {
            let n = n.min(*h);
            *h -= n;
            self.conn
                .used
                .fetch_sub(n, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Bytes this stream holds now.
    pub fn held(&self) -> usize {
        self.held.lock().unwrap().unwrap_or(0)
    }

    /// The stream has ended: everything it held goes back, later charges are refused.
    pub fn close(&self) {
        if let Some(h) = self.held.lock().unwrap().take() {
            self.conn
                .used
                .fetch_sub(h, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

impl Drop for WsStreamBudget {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod ws_budget_tests {
    use super::*;

    #[test]
    fn streams_and_the_connection_are_bounded_and_released() {
        let conn = WsBudget::new(100, 150);
        let a = conn.stream();
        let b = conn.stream();
        assert_eq!(a.charge(60), Ok(()));
        assert_eq!(a.charge(40), Ok(()));
        assert_eq!(a.charge(1), Err(OverBudget::Stream));
        assert_eq!(b.charge(60), Err(OverBudget::Connection));
        assert_eq!(b.charge(50), Ok(()));
        assert_eq!(conn.used(), 150);
        a.release(60);
        assert_eq!((a.held(), conn.used()), (40, 90));
        assert_eq!(b.charge(50), Ok(()));
        drop(a);
        assert_eq!(conn.used(), 100);
        b.close();
        assert_eq!(conn.used(), 0);
        assert_eq!(b.charge(1), Err(OverBudget::Closed));
        b.release(5);
        assert_eq!(conn.used(), 0);
    }
}
