//! The heartbeat rule both ends follow (DESIGN "Heartbeat"), sans-IO: each side sends
//! PING every [`PING_INTERVAL`](crate::limits::PING_INTERVAL); any frame read, WebSocket
//! control frames included, proves the peer alive; a peer silent for
//! [`PEER_TIMEOUT`](crate::limits::PEER_TIMEOUT) is lost. Time comes in as an
//! [`Instant`] the driver passes, so the rule is stepped with fake time in tests.
//!
//! The first rule of the connection state machine that both the relay and the connector
//! drive (protocol/CONNECTION-PLAN.md); the stream table follows.

use std::time::{Duration, Instant};

/// What [`Liveness::poll`] says is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Nothing before [`Liveness::deadline`].
    Nothing,
    /// Send a PING now (the next one is scheduled).
    Ping,
    /// The peer has sent nothing for the peer timeout: the connection is lost.
    PeerSilent,
}

/// One connection's heartbeat: when to ping, and when the peer counts as gone.
#[derive(Debug, Clone)]
pub struct Liveness {
    ping_interval: Duration,
    peer_timeout: Duration,
    next_ping: Instant,
    last_read: Instant,
}

impl Liveness {
    /// A connection opened at `now`: its first PING is due one interval later, and the
    /// peer has a whole timeout to say anything.
    pub fn new(now: Instant, ping_interval: Duration, peer_timeout: Duration) -> Self {
        Self {
            ping_interval,
            peer_timeout,
            next_ping: now + ping_interval,
            last_read: now,
        }
    }

    /// A frame of any kind was read at `now`.
    pub fn on_read(&mut self, now: Instant) {
        self.last_read = self.last_read.max(now);
    }

    /// What is due at `now`. A silent peer comes first: a connection that is lost needs
    /// no PING. A PING due is answered once, however late the call (a stalled driver
    /// does not send a burst), and the next is one interval from the one due, or from
    /// `now` when more than an interval was missed.
    pub fn poll(&mut self, now: Instant) -> Due {
        if now >= self.last_read + self.peer_timeout {
            return Due::PeerSilent;
        }
        if now < self.next_ping {
            return Due::Nothing;
        }
        self.next_ping += self.ping_interval;
        if self.next_ping <= now {
            self.next_ping = now + self.ping_interval;
        }
        Due::Ping
    }

    /// When [`poll`](Self::poll) has something to say next: the next PING or the
    /// peer's deadline, whichever is first.
    pub fn deadline(&self) -> Instant {
        self.next_ping.min(self.last_read + self.peer_timeout)
    }

    /// How long the peer may stay silent.
    pub fn peer_timeout(&self) -> Duration {
        self.peer_timeout
    }
}

#[cfg(test)]
mod tests;
