use super::*;
use crate::limits::{HELLO_GRACE, PEER_TIMEOUT, PING_INTERVAL};
use crate::{Blame, Capability, Heartbeat};

const MS: Duration = Duration::from_millis(1);

fn caps(cs: &[Capability]) -> Capabilities {
    cs.iter().copied().collect()
}

fn hello(caps: Capabilities) -> Hello {
    Hello {
        version: "t".into(),
        capabilities: caps.names(),
        metadata: None,
    }
}

/// A relay's and a connector's `Connection` joined by an in-memory link that the test
/// may cut, each driven as its driver drives it: frames encoded and decoded by the real
/// codec, PING answered with PONG, the relay's HELLO answered, time moved to the next
/// deadline of either end.
struct Pair {
    t0: Instant,
    now: Instant,
    relay: Connection<Relay>,
    connector: Connection<Connector>,
    to_relay: VecDeque<String>,
    to_connector: VecDeque<String>,
    /// Frames sent from now on are lost.
    cut: bool,
    /// (milliseconds since t0, "relay" or "connector", what happened there).
    seen: Vec<(u128, &'static str, Event)>,
}

impl Pair {
    /// The connector has just connected and sent its HELLO naming `offered`, or nothing
    /// (`None`: a legacy connector).
    fn new(offered: Option<Capabilities>) -> Self {
        let t0 = Instant::now();
        let mut pair = Self {
            t0,
            now: t0,
            relay: Connection::relay(t0, PING_INTERVAL, PEER_TIMEOUT, HELLO_GRACE),
            connector: Connection::connector(
                t0,
                PING_INTERVAL,
                PEER_TIMEOUT,
                offered.unwrap_or(Capabilities::ALL),
            ),
            to_relay: VecDeque::new(),
            to_connector: VecDeque::new(),
            cut: false,
            seen: Vec::new(),
        };
        if let Some(offered) = offered {
            pair.connector_sends(&ConnectorMsg::Hello(hello(offered)));
        }
        pair
    }

    fn connector_sends(&mut self, msg: &ConnectorMsg) {
        if !self.cut {
            self.to_relay.push_back(codec::encode(msg));
        }
    }

    fn relay_sends(&mut self, msg: &CloudMsg) {
        if !self.cut {
            self.to_connector.push_back(codec::encode(msg));
        }
    }

    /// Delivers what is in flight both ways and lets each end act, until quiet.
    fn settle(&mut self) {
        loop {
            self.drain_events();
            let (to_relay, to_connector) =
                (self.to_relay.pop_front(), self.to_connector.pop_front());
            if to_relay.is_none() && to_connector.is_none() {
                return;
            }
            if let Some(f) = to_relay {
                let read = self.relay.read(self.now, Wire::Text(&f));
                if let Some(Ok(ConnectorMsg::Ping(hb))) = read {
                    self.relay_sends(&CloudMsg::Pong(hb));
                }
            }
            if let Some(f) = to_connector {
                let read = self.connector.read(self.now, Wire::Text(&f));
                if let Some(Ok(CloudMsg::Ping(hb))) = read {
                    self.connector_sends(&ConnectorMsg::Pong(hb));
                }
            }
        }
    }

    fn drain_events(&mut self) {
        let at = (self.now - self.t0).as_millis();
        while let Some(ev) = self.relay.poll_event() {
            match &ev {
                Event::Hello { peer, .. } => {
                    let answer = CloudMsg::Hello(hello(peer.caps));
                    self.relay_sends(&answer);
                }
                Event::Ping => self.relay_sends(&CloudMsg::Ping(Heartbeat { ts: 1 })),
                Event::Legacy | Event::RepeatHello | Event::Lost(_) => {}
            }
            self.seen.push((at, "relay", ev));
        }
        while let Some(ev) = self.connector.poll_event() {
            if ev == Event::Ping {
                self.connector_sends(&ConnectorMsg::Ping(Heartbeat { ts: 1 }));
            }
            self.seen.push((at, "connector", ev));
        }
    }

    /// Runs both ends to `until` after t0, waking at their deadlines, as their drivers
    /// do: the heartbeat's and, at the relay, the grace's (after the frames). An end that
    /// lost the connection is driven no more.
    fn run_until(&mut self, until: Duration) {
        self.settle();
        loop {
            let relay_live = self.lost("relay").is_none();
            let connector_live = self.lost("connector").is_none();
            let wakes = [
                relay_live.then(|| self.relay.poll_timeout()),
                relay_live.then(|| self.relay.grace_deadline()).flatten(),
                connector_live.then(|| self.connector.poll_timeout()),
            ];
            let Some(next) = wakes.into_iter().flatten().min() else {
                return;
            };
            if next > self.t0 + until {
                self.now = self.t0 + until;
                return;
            }
            self.now = self.now.max(next);
            if relay_live {
                self.relay.handle_timeout(self.now);
                self.settle();
                self.relay.handle_grace(self.now);
            }
            if connector_live {
                self.connector.handle_timeout(self.now);
            }
            self.settle();
        }
    }

    /// When (ms after t0) `end` lost the connection, and why.
    fn lost(&self, end: &str) -> Option<(u128, Lost)> {
        self.seen.iter().find_map(|(at, who, ev)| match ev {
            Event::Lost(l) if *who == end => Some((*at, *l)),
            _ => None,
        })
    }

    fn events(&self, end: &str) -> Vec<&Event> {
        self.seen
            .iter()
            .filter(|(_, who, _)| *who == end)
            .map(|(_, _, ev)| ev)
            .collect()
    }
}

#[test]
fn hello_settles_both_ends_on_what_both_named() {
    let offered = caps(&[Capability::Flow, Capability::Bin, Capability::Ws]);
    let mut pair = Pair::new(Some(offered));
    pair.run_until(10 * HELLO_GRACE);
    let agreed = Peer {
        hello: true,
        caps: offered,
    };
    assert_eq!(pair.relay.peer(), Some(agreed));
    let relay_saw = pair.events("relay");
    assert!(
        matches!(relay_saw[..], [Event::Hello { peer, late: false, .. }] if *peer == agreed),
        "{relay_saw:?}"
    );
    let connector_saw = pair.events("connector");
    assert!(
        matches!(connector_saw[..], [Event::Hello { peer, .. }] if *peer == agreed),
        "{connector_saw:?}"
    );
    // A relay answering with more than the connector offered gets only what it offered.
    let t0 = Instant::now();
    let mut connector: Connection<Connector> =
        Connection::connector(t0, PING_INTERVAL, PEER_TIMEOUT, offered);
    let answer = codec::encode(&CloudMsg::Hello(hello(Capabilities::ALL)));
    assert!(connector.read(t0, Wire::Text(&answer)).is_none());
    assert!(matches!(
        connector.poll_event(),
        Some(Event::Hello { peer, .. }) if peer == agreed
    ));
}

#[test]
fn a_hello_read_with_the_end_of_the_grace_is_not_late() {
    let t0 = Instant::now();
    let mut relay: Connection<Relay> =
        Connection::relay(t0, PING_INTERVAL, PEER_TIMEOUT, HELLO_GRACE);
    assert_eq!(relay.grace_deadline(), Some(t0 + HELLO_GRACE));
    let end = t0 + HELLO_GRACE;
    let frame = codec::encode(&ConnectorMsg::Hello(hello(Capabilities::ALL)));
    // The driver reads the frames waiting, then looks at the grace.
    relay.read(end, Wire::Text(&frame));
    relay.handle_grace(end);
    assert!(matches!(
        relay.poll_event(),
        Some(Event::Hello { late: false, .. })
    ));
    assert_eq!(relay.poll_event(), None, "no legacy");
    assert_eq!(relay.grace_deadline(), None);
}

#[test]
fn a_late_hello_upgrades_a_connector_first_taken_for_legacy() {
    let mut pair = Pair::new(None);
    pair.run_until(HELLO_GRACE - MS);
    assert_eq!(pair.relay.peer(), None, "not known within the grace");
    pair.run_until(HELLO_GRACE);
    assert_eq!(pair.relay.peer(), Some(Peer::LEGACY));
    assert_eq!(pair.events("relay"), [&Event::Legacy]);
    // HELLO after all, on a slow link: the relay upgrades it and answers.
    pair.connector_sends(&ConnectorMsg::Hello(hello(caps(&[Capability::Flow]))));
    pair.settle();
    assert!(pair
        .relay
        .peer()
        .is_some_and(|p| p.hello && p.caps.has(Capability::Flow)));
    assert!(matches!(
        pair.events("relay")[..],
        [Event::Legacy, Event::Hello { late: true, .. }]
    ));
    assert_eq!(
        pair.events("connector").len(),
        1,
        "the connector got its answer"
    );
}

#[test]
fn the_first_other_frame_settles_legacy_even_one_that_does_not_decode() {
    let t0 = Instant::now();
    let mut relay: Connection<Relay> =
        Connection::relay(t0, PING_INTERVAL, PEER_TIMEOUT, HELLO_GRACE);
    assert!(relay.read(t0, Wire::Control).is_none());
    assert_eq!(relay.poll_event(), None, "a WebSocket ping settles nothing");
    assert!(matches!(
        relay.read(t0, Wire::Text("{not json")),
        Some(Err(_))
    ));
    assert_eq!(relay.poll_event(), Some(Event::Legacy));
    assert_eq!(relay.peer(), Some(Peer::LEGACY));
    assert!(
        relay.poll_timeout() >= t0 + PING_INTERVAL,
        "the grace is over: only the heartbeat is due"
    );
}

#[test]
fn a_repeated_hello_is_answered_once() {
    let mut pair = Pair::new(Some(caps(&[Capability::Flow])));
    pair.connector_sends(&ConnectorMsg::Hello(hello(caps(&[Capability::Bin]))));
    pair.settle();
    assert!(
        matches!(
            pair.events("relay")[..],
            [Event::Hello { .. }, Event::RepeatHello]
        ),
        "{:?}",
        pair.events("relay")
    );
    assert_eq!(pair.events("connector").len(), 1, "answered once");
    assert!(pair
        .relay
        .peer()
        .is_some_and(|p| !p.caps.has(Capability::Bin)));
}

#[test]
fn both_ends_ping_every_interval_and_lose_a_cut_link_at_the_peer_timeout() {
    let mut pair = Pair::new(Some(Capabilities::ALL));
    pair.run_until(Duration::from_secs(100));
    assert_eq!(pair.lost("relay"), None);
    assert_eq!(pair.lost("connector"), None);
    let pings = |end| {
        pair.seen
            .iter()
            .filter(|(_, who, ev)| *who == end && *ev == Event::Ping)
            .map(|(at, ..)| at / 1000)
            .collect::<Vec<_>>()
    };
    assert_eq!(pings("relay"), [30, 60, 90]);
    assert_eq!(pings("connector"), [30, 60, 90]);
    // The link is cut after the PINGs and PONGs of 90 s: each end last read at 90 s.
    pair.cut = true;
    pair.run_until(Duration::from_secs(1000));
    let lost = Some((180_000, Lost::PeerSilent(PEER_TIMEOUT)));
    assert_eq!(pair.lost("relay"), lost);
    assert_eq!(pair.lost("connector"), lost);
}

#[test]
fn a_bad_frame_is_blamed_on_the_stream_it_names() {
    let t0 = Instant::now();
    let mut relay: Connection<Relay> =
        Connection::relay(t0, PING_INTERVAL, PEER_TIMEOUT, HELLO_GRACE);
    let bad = r#"{"type":"HTTP_RESPONSE_CHUNK","requestId":"r-1","data":"!!","index":0}"#;
    let err = relay.read(t0, Wire::Text(bad)).unwrap().unwrap_err();
    assert_eq!(err.blame(), Blame::Http("r-1"));
    let good = r#"{"type":"HTTP_RESPONSE_CHUNK","requestId":"r-2","data":"aGk=","index":0}"#;
    assert!(matches!(
        relay.read(t0, Wire::Text(good)),
        Some(Ok(ConnectorMsg::HttpResponseChunk(c))) if c.request_id == "r-2"
    ));
    let mut connector: Connection<Connector> =
        Connection::connector(t0, PING_INTERVAL, PEER_TIMEOUT, Capabilities::ALL);
    let bad = r#"{"type":"WS_MESSAGE","streamId":"w-1","data":"!!"}"#;
    let err = connector.read(t0, Wire::Text(bad)).unwrap().unwrap_err();
    assert_eq!(err.blame(), Blame::Ws("w-1"));
    let garbage = Bytes::from_static(b"\xff\x00");
    let err = connector
        .read(t0, Wire::Binary(&garbage))
        .unwrap()
        .unwrap_err();
    assert_eq!(
        err.blame(),
        Blame::Ignored,
        "an unknown binary kind, as an unknown type"
    );
    assert!(matches!(
        connector.read(t0, Wire::Text(r#"{"type":"PING","ts":1}"#)),
        Some(Ok(CloudMsg::Ping(_)))
    ));
}

#[test]
fn a_probe_unanswered_loses_the_connection_and_any_frame_answers_it() {
    let t0 = Instant::now();
    let mut relay: Connection<Relay> =
        Connection::relay(t0, PING_INTERVAL, PEER_TIMEOUT, HELLO_GRACE);
    relay.read(t0, Wire::Text(r#"{"type":"PING","ts":1}"#));
    assert_eq!(relay.poll_event(), Some(Event::Legacy));
    assert!(!relay.probing());
    relay.probe(t0 + MS, 5000 * MS);
    assert!(relay.probing());
    assert_eq!(
        relay.poll_timeout(),
        t0 + 5001 * MS,
        "earlier than the heartbeat"
    );
    relay.read(t0 + 2 * MS, Wire::Control);
    assert!(!relay.probing(), "a pong answers it");
    relay.probe(t0 + 10 * MS, 5000 * MS);
    relay.handle_timeout(t0 + 5010 * MS);
    assert_eq!(relay.poll_event(), Some(Event::Lost(Lost::ProbeUnanswered)));
    assert_eq!(relay.poll_event(), None);
}

/// The relay builds a connection's `Connection` before it reads it (it checks the token
/// again in between): the clocks start when reading begins, so that wait costs the
/// connector neither its HELLO grace nor its heartbeat.
#[test]
fn the_clocks_start_when_reading_begins() {
    let t0 = Instant::now();
    let mut relay: Connection<Relay> =
        Connection::relay(t0, PING_INTERVAL, PEER_TIMEOUT, HELLO_GRACE);
    let begun = t0 + PEER_TIMEOUT + Duration::from_secs(1);
    relay.begin(begun);
    assert_eq!(relay.grace_deadline(), Some(begun + HELLO_GRACE));
    assert_eq!(relay.poll_timeout(), begun + PING_INTERVAL);
    relay.handle_timeout(begun);
    relay.handle_grace(begun);
    assert_eq!(
        relay.poll_event(),
        None,
        "nothing is due yet: not lost, not legacy"
    );
}
