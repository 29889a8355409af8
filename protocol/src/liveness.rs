//! The heartbeat rule both ends follow (DESIGN "Heartbeat"), sans-IO: each side sends
//! PING every [`PING_INTERVAL`](crate::limits::PING_INTERVAL); any frame read, WebSocket
//! control frames included, proves the peer alive; a peer silent for
//! [`PEER_TIMEOUT`](crate::limits::PEER_TIMEOUT) is lost. Time comes in as an
//! [`Instant`] the driver passes, so the rule is stepped with fake time in tests.
//!
//! Besides the heartbeat, a probe ([`Liveness::probe`]): the relay asks a connection it
//! doubts (another install claims its identity) for a sign of life within seconds rather
//! than the whole peer timeout.

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
    /// Nothing was read within a probe's time: the connection is taken for half-open.
    ProbeUnanswered,
}

/// One connection's heartbeat: when to ping, and when the peer counts as gone.
#[derive(Debug, Clone)]
pub struct Liveness {
    ping_interval: Duration,
    peer_timeout: Duration,
    next_ping: Instant,
    last_read: Instant,
    /// A probe's deadline, until any frame is read.
    probe: Option<Instant>,
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
            probe: None,
        }
    }

    /// A frame of any kind was read at `now`: it answers a probe too.
    pub fn on_read(&mut self, now: Instant) {
        self.last_read = self.last_read.max(now);
        self.probe = None;
    }

    /// The driver has sent the peer something every peer answers (a WebSocket ping) at
    /// `now`: a frame must arrive `within`, or [`poll`](Self::poll) says
    /// [`Due::ProbeUnanswered`]. A probe already running keeps its earlier deadline.
    pub fn probe(&mut self, now: Instant, within: Duration) {
        self.probe.get_or_insert(now + within);
    }

    /// A probe is running: the driver need not send another ping.
    pub fn probing(&self) -> bool {
        self.probe.is_some()
    }

    /// What is due at `now`. A silent peer comes first: a connection that is lost needs
    /// no PING. A PING due is answered once, however late the call (a stalled driver
    /// does not send a burst), and the next is one interval from the one due, or from
    /// `now` when more than an interval was missed.
    pub fn poll(&mut self, now: Instant) -> Due {
        if now >= self.last_read + self.peer_timeout {
            return Due::PeerSilent;
        }
        if self.probe.is_some_and(|at| now >= at) {
            self.probe = None;
            return Due::ProbeUnanswered;
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

    /// When [`poll`](Self::poll) has something to say next: the next PING, the peer's
    /// deadline or a probe's, whichever is first.
    pub fn deadline(&self) -> Instant {
        let heartbeat = self.next_ping.min(self.last_read + self.peer_timeout);
        self.probe.map_or(heartbeat, |at| heartbeat.min(at))
    }

    /// How long the peer may stay silent.
    pub fn peer_timeout(&self) -> Duration {
        self.peer_timeout
    }

    /// The clocks start again at `now`, as for a connection opened then.
    pub fn restart(&mut self, now: Instant) {
        *self = Self::new(now, self.ping_interval, self.peer_timeout);
    }
}

#[cfg(test)]
mod tests;
