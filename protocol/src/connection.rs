//! One connection's own rules, sans-IO, for both ends: what the peer speaks (HELLO, the
//! relay's grace and late HELLO, [`Handshake`]), the heartbeat and the probe
//! ([`Liveness`]), and the reading of every frame into a message for the streams or a
//! decode error to blame; and its table of open streams ([`streams`]), through which
//! every message for a stream goes, checked by that stream's rules ([`crate::stream`]).
//!
//! The drivers (the relay's reader, the connector's session loop) hand it each frame
//! read with the time, act on what [`route`](Connection::route) says of the message for
//! a stream (hand data to its task, end it, fail it), sleep until
//! [`Connection::poll_timeout`], and act on its [`Event`]s (answer HELLO, send a PING,
//! close a lost connection). It never waits and holds no socket, so its tests step a
//! relay's and a connector's `Connection` against each other with a clock they move.
//!
//! What the drivers keep is theirs by nature: the socket and its write deadline, the
//! bounded queue toward the writer ([`crate::queue`]), each stream's channel toward the
//! task that serves it (the handles `H` and `W`), and the callers' own clocks: the wait
//! for a response's head and between its chunks is the waiting caller's (a caller that
//! has stopped reading holds its window as long as it likes, and no frame comes
//! meanwhile, so the connection cannot tell a slow device from a paused reader).

use crate::handshake::{Handshake, Heard, Peer};
use crate::liveness::{Due, Liveness};
use crate::{binary, codec, limits, Capabilities, CloudMsg, ConnectorMsg, DecodeError, Hello};
use bytes::Bytes;
use std::collections::VecDeque;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

/// A frame as read from the WebSocket.
#[derive(Debug, Clone, Copy)]
pub enum Wire<'a> {
    Text(&'a str),
    Binary(&'a Bytes),
    /// A WebSocket ping, pong or raw frame: proof of life, nothing more.
    Control,
}

/// What the driver must do, in the order it became due.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The peer said HELLO (the connector: the relay answered it), and `peer` is what
    /// both speak. At the relay: answer with `peer.caps`; `late` when the connector was
    /// taken for a legacy one first (its open streams keep that mode). The connector
    /// applies every answer (a relay answers once).
    Hello {
        hello: Hello,
        peer: Peer,
        late: bool,
    },
    /// Relay: the connector speaks the base protocol (its first frame was not HELLO, or
    /// the grace ran out without one).
    Legacy,
    /// Relay: a HELLO after the first, ignored (not answered, nothing changes).
    RepeatHello,
    /// Send a PING now.
    Ping,
    /// The connection is lost: close it (the relay with 4002).
    Lost(Lost),
}

/// Why a connection is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lost {
    /// Nothing read for this long (the peer timeout).
    PeerSilent(Duration),
    /// Nothing read within a probe's time ([`Connection::probe`]).
    ProbeUnanswered,
}

mod sealed {
    pub trait Sealed {}
}

/// Which end a [`Connection`] is: what it reads, and how.
pub trait Side: sealed::Sealed {
    /// The messages this end reads.
    type Recv;
    fn decode_text(frame: &str) -> Result<Self::Recv, DecodeError>;
    fn decode_binary(frame: &Bytes) -> Result<Self::Recv, DecodeError>;
    /// The HELLO, or the message back.
    fn hello(msg: Self::Recv) -> Result<Hello, Self::Recv>;
}

/// The cloud relay: reads what connectors send.
#[derive(Debug)]
pub enum Relay {}
/// The on-prem connector: reads what the relay sends.
#[derive(Debug)]
pub enum Connector {}

impl sealed::Sealed for Relay {}
impl sealed::Sealed for Connector {}

impl Side for Relay {
    type Recv = ConnectorMsg;
    fn decode_text(frame: &str) -> Result<ConnectorMsg, DecodeError> {
        codec::decode_connector(frame)
    }
    fn decode_binary(frame: &Bytes) -> Result<ConnectorMsg, DecodeError> {
        binary::decode_connector(frame)
    }
    fn hello(msg: ConnectorMsg) -> Result<Hello, ConnectorMsg> {
        match msg {
            ConnectorMsg::Hello(h) => Ok(h),
            other => Err(other),
        }
    }
}

impl Side for Connector {
    type Recv = CloudMsg;
    fn decode_text(frame: &str) -> Result<CloudMsg, DecodeError> {
        codec::decode_cloud(frame)
    }
    fn decode_binary(frame: &Bytes) -> Result<CloudMsg, DecodeError> {
        binary::decode_cloud(frame)
    }
    fn hello(msg: CloudMsg) -> Result<Hello, CloudMsg> {
        match msg {
            CloudMsg::Hello(h) => Ok(h),
            other => Err(other),
        }
    }
}

mod streams;
pub use streams::{AtConnector, AtRelay, AtWs, Blamed, HttpStream};

/// One connection's state at one end. `H` and `W` are the driver's handles for an HTTP
/// stream and a WebSocket (what wakes the task that serves it).
#[derive(Debug)]
pub struct Connection<S: Side, H = (), W = ()> {
    live: Liveness,
    /// The relay's handshake; the connector has none (it says HELLO first, and what it
    /// speaks is what the answer names of `offered`).
    handshake: Option<Handshake>,
    offered: Capabilities,
    /// At most two per call (a frame settles the peer; a timeout is a PING or a loss,
    /// and the end of the grace): the driver drains them after each call.
    events: VecDeque<Event>,
    streams: streams::Streams<H, W>,
    /// When it was built ([`begin`](Self::begin)).
    opened: Instant,
    side: PhantomData<S>,
}

impl<H, W> Connection<Relay, H, W> {
    /// A connection accepted at `now`, whose connector has `hello_grace` to say HELLO.
    pub fn relay(
        now: Instant,
        ping_interval: Duration,
        peer_timeout: Duration,
        hello_grace: Duration,
    ) -> Self {
        Self::new(
            now,
            Liveness::new(now, ping_interval, peer_timeout),
            Some(Handshake::new(now, hello_grace)),
            Capabilities::ALL,
        )
    }

    /// What the connector speaks, once known.
    pub fn peer(&self) -> Option<Peer> {
        self.handshake.as_ref().and_then(Handshake::peer)
    }
}

impl<H, W> Connection<Connector, H, W> {
    /// A connection opened at `now`; its HELLO (sent by the driver) names `offered`.
    pub fn connector(
        now: Instant,
        ping_interval: Duration,
        peer_timeout: Duration,
        offered: Capabilities,
    ) -> Self {
        Self::new(
            now,
            Liveness::new(now, ping_interval, peer_timeout),
            None,
            offered,
        )
    }
}

impl<S: Side, H, W> Connection<S, H, W> {
    fn new(
        now: Instant,
        live: Liveness,
        handshake: Option<Handshake>,
        offered: Capabilities,
    ) -> Self {
        Self {
            opened: now,
            live,
            handshake,
            offered,
            events: VecDeque::with_capacity(2),
            streams: streams::Streams::new(crate::WindowBudget::new(limits::WINDOW_GROWTH_BUDGET)),
            side: PhantomData,
        }
    }

    /// A frame read at `now`. Returns the message for the driver's streams
    /// ([`route`](Connection::route) it), or the decode error for it to blame
    /// ([`blame`](Self::blame)); `None` for what is the connection's own (HELLO, a
    /// WebSocket control frame). The same as [`on_read`](Self::on_read) of
    /// [`decode`](Self::decode).
    pub fn read(&mut self, now: Instant, frame: Wire<'_>) -> Option<Result<S::Recv, DecodeError>> {
        self.on_read(now, Self::decode(frame))
    }

    /// A frame decoded, without the connection: a driver that shares its `Connection`
    /// behind a lock decodes outside it.
    pub fn decode(frame: Wire<'_>) -> Option<Result<S::Recv, DecodeError>> {
        match frame {
            Wire::Text(t) => Some(S::decode_text(t)),
            Wire::Binary(b) => Some(S::decode_binary(b)),
            Wire::Control => None,
        }
    }

    /// A frame read at `now`, as [`decode`](Self::decode) gave it: see [`read`](Self::read).
    pub fn on_read(
        &mut self,
        now: Instant,
        decoded: Option<Result<S::Recv, DecodeError>>,
    ) -> Option<Result<S::Recv, DecodeError>> {
        self.live.on_read(now);
        match decoded?.map(S::hello) {
            Ok(Ok(hello)) => {
                self.on_hello(hello);
                None
            }
            Ok(Err(msg)) => {
                self.other_frame();
                Some(Ok(msg))
            }
            Err(e) => {
                // Any first frame but HELLO means legacy, even one that does not decode.
                self.other_frame();
                Some(Err(e))
            }
        }
    }

    fn on_hello(&mut self, hello: Hello) {
        let caps = hello.capability_set();
        let (peer, late) = match &mut self.handshake {
            None => (Peer::answered(self.offered, caps), false),
            Some(hs) => match hs.on_hello(caps) {
                Heard::Agreed { answer, late } => (
                    Peer {
                        hello: true,
                        caps: answer,
                    },
                    late,
                ),
                // Answering each repeat would let a connector that sends HELLOs and
                // reads nothing fill the relay's memory with answers.
                Heard::Repeat => return self.events.push_back(Event::RepeatHello),
            },
        };
        self.events.push_back(Event::Hello { hello, peer, late });
    }

    fn other_frame(&mut self) {
        if self
            .handshake
            .as_mut()
            .is_some_and(Handshake::on_other_frame)
        {
            self.events.push_back(Event::Legacy);
        }
    }

    /// Time has come to `now` for the heartbeat and the probe (the driver woke at
    /// [`poll_timeout`](Self::poll_timeout), or later).
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.live.poll(now) {
            Due::PeerSilent => {
                let silent = self.live.peer_timeout();
                self.events.push_back(Event::Lost(Lost::PeerSilent(silent)));
            }
            Due::ProbeUnanswered => self.events.push_back(Event::Lost(Lost::ProbeUnanswered)),
            Due::Ping => self.events.push_back(Event::Ping),
            Due::Nothing => {}
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) has something to do next. Reading
    /// frames only ever moves it later, so a driver need not re-arm its timer per frame
    /// (waking early is harmless); [`probe`](Self::probe) can move it earlier.
    pub fn poll_timeout(&self) -> Instant {
        self.live.deadline()
    }

    /// Relay: when the connector's grace to say HELLO ends, while it has not said
    /// anything. A driver handles it after the frames already read ([`handle_grace`]):
    /// a HELLO that arrived with the grace's end is not late.
    ///
    /// [`handle_grace`]: Self::handle_grace
    pub fn grace_deadline(&self) -> Option<Instant> {
        self.handshake.as_ref().and_then(Handshake::deadline)
    }

    /// Relay: time has come to `now` for the grace: [`Event::Legacy`] if it is over
    /// without a word.
    pub fn handle_grace(&mut self, now: Instant) {
        if self.handshake.as_mut().is_some_and(|hs| hs.poll(now)) {
            self.events.push_back(Event::Legacy);
        }
    }

    /// The driver begins to read the connection at `now`, some time after it built this
    /// `Connection` (the relay checks the token again in between): the heartbeat's and
    /// the HELLO grace's clocks start now, so that wait costs the peer nothing.
    pub fn begin(&mut self, now: Instant) {
        let waited = now.saturating_duration_since(self.opened);
        self.live.restart(now);
        if let Some(hs) = &mut self.handshake {
            hs.delay(waited);
        }
    }

    /// The next thing the driver must do.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// A probe runs: the driver need not send another ping.
    pub fn probing(&self) -> bool {
        self.live.probing()
    }

    /// The driver has sent a WebSocket ping at `now` (every peer answers one) to see a
    /// sign of life within `within` (another install claims the identity): if nothing is
    /// read by then, [`Event::Lost`] with [`Lost::ProbeUnanswered`]. Re-arm the timer
    /// after it. A probe already running keeps its deadline.
    pub fn probe(&mut self, now: Instant, within: Duration) {
        self.live.probe(now, within);
    }

    /// How long the peer may stay silent.
    pub fn peer_timeout(&self) -> Duration {
        self.live.peer_timeout()
    }
}

#[cfg(test)]
mod tests;
