//! What the relay learns of a connector's dialect, sans-IO (DESIGN "Extensions"): HELLO
//! names the connector's capabilities and the relay answers with the intersection; a
//! connector that sends anything else first, or nothing within the grace, speaks the
//! base protocol (the original Node connector). HELLO still wins after that: a connector
//! on a slow link is upgraded late. Capabilities are agreed once per connection: a
//! repeated HELLO is not answered again.
//!
//! The connector's side is simpler: it sends HELLO first and uses what the relay's first
//! answer names of what it offered ([`Peer::answered`]).

use crate::Capabilities;
use std::time::{Duration, Instant};

/// What a connector speaks: the base protocol only (no HELLO), or what HELLO agreed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub hello: bool,
    pub caps: Capabilities,
}

impl Peer {
    /// The base protocol: no HELLO, no extension.
    pub const LEGACY: Peer = Peer {
        hello: false,
        caps: Capabilities::NONE,
    };

    /// The relay as the connector sees it once the relay answered HELLO: what both
    /// named. A relay that names more than was offered gets only what was offered.
    pub fn answered(offered: Capabilities, answer: Capabilities) -> Peer {
        Peer {
            hello: true,
            caps: offered.intersect(answer),
        }
    }
}

/// What a HELLO read means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard {
    /// Agreed: answer with `answer` (what both sides speak). `late`: the connector was
    /// taken for a legacy one first; streams already open keep that mode.
    Agreed { answer: Capabilities, late: bool },
    /// Capabilities were agreed already: ignore it (no answer, nothing changes).
    Repeat,
}

/// The relay's side of one connection's handshake.
#[derive(Debug, Clone)]
pub struct Handshake {
    peer: Option<Peer>,
    grace_until: Instant,
}

impl Handshake {
    /// A connection accepted at `now`, whose connector has `grace` to say HELLO.
    pub fn new(now: Instant, grace: Duration) -> Self {
        Self {
            peer: None,
            grace_until: now + grace,
        }
    }

    /// HELLO offering `offered`; the answer is what the relay supports of it.
    pub fn on_hello(&mut self, offered: Capabilities) -> Heard {
        if matches!(self.peer, Some(Peer { hello: true, .. })) {
            return Heard::Repeat;
        }
        let answer = offered.intersect(Capabilities::all());
        let late = self.peer.is_some();
        self.peer = Some(Peer {
            hello: true,
            caps: answer,
        });
        Heard::Agreed { answer, late }
    }

    /// A frame other than HELLO was read (any frame, even one that does not decode):
    /// true when this settles the connector as legacy.
    pub fn on_other_frame(&mut self) -> bool {
        self.settle_legacy()
    }

    /// True when the grace has run out at `now` without a word: the connector is
    /// legacy from now on.
    pub fn poll(&mut self, now: Instant) -> bool {
        now >= self.grace_until && self.settle_legacy()
    }

    /// When [`poll`](Self::poll) may settle the handshake; `None` once it is settled.
    pub fn deadline(&self) -> Option<Instant> {
        self.peer.is_none().then_some(self.grace_until)
    }

    /// The grace ends `by` later (the connection was set up before it began to be read).
    pub fn delay(&mut self, by: Duration) {
        self.grace_until += by;
    }

    /// What the connector speaks, once known.
    pub fn peer(&self) -> Option<Peer> {
        self.peer
    }

    fn settle_legacy(&mut self) -> bool {
        if self.peer.is_some() {
            return false;
        }
        self.peer = Some(Peer::LEGACY);
        true
    }
}

#[cfg(test)]
mod tests;
