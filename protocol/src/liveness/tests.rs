use super::*;
use crate::limits::{PEER_TIMEOUT, PING_INTERVAL};

const S: Duration = Duration::from_secs(1);

fn at(t0: Instant, secs: u64) -> Instant {
    t0 + S * secs as u32
}

/// Steps one side's liveness through `until` seconds, waking only at its deadlines, as a
/// driver does; returns the seconds at which it pinged and when (if) it lost the peer.
fn run(l: &mut Liveness, t0: Instant, until: u64, reads: &[u64]) -> (Vec<u64>, Option<u64>) {
    let mut pings = Vec::new();
    let mut reads = reads.iter().copied().peekable();
    let mut now = t0;
    loop {
        let next_read = reads.peek().map(|&r| at(t0, r));
        let wake = match next_read {
            Some(r) if r <= l.deadline() => r,
            _ => l.deadline(),
        };
        if wake > at(t0, until) {
            return (pings, None);
        }
        now = now.max(wake);
        if next_read == Some(wake) {
            reads.next();
            l.on_read(now);
        }
        match l.poll(now) {
            Due::Ping => pings.push((now - t0).as_secs()),
            Due::PeerSilent => return (pings, Some((now - t0).as_secs())),
            Due::ProbeUnanswered => panic!("no probe was asked for"),
            Due::Nothing => {}
        }
    }
}

#[test]
fn each_side_pings_every_interval_and_loses_a_silent_peer_at_the_timeout() {
    let t0 = Instant::now();
    let mut l = Liveness::new(t0, PING_INTERVAL, PEER_TIMEOUT);
    let (pings, lost) = run(&mut l, t0, 1000, &[]);
    assert_eq!(pings, [30, 60], "a lost connection pings no more");
    assert_eq!(lost, Some(90));
}

#[test]
fn any_frame_read_moves_the_peer_deadline() {
    let t0 = Instant::now();
    let mut l = Liveness::new(t0, PING_INTERVAL, PEER_TIMEOUT);
    // A peer that says something every 80 s is never lost; the pings keep their beat.
    let reads: Vec<u64> = (1..=10).map(|i| i * 80).collect();
    let (pings, lost) = run(&mut l, t0, 850, &reads);
    assert_eq!(lost, None);
    assert_eq!(pings, (1..=28).map(|i| i * 30).collect::<Vec<_>>());
    // Once it stops (last word at 800 s), it is lost 90 s later.
    let (_, lost) = run(&mut l, t0, 2000, &[]);
    assert_eq!(lost, Some(890));
}

#[test]
fn a_late_driver_pings_once_not_a_burst() {
    let t0 = Instant::now();
    let mut l = Liveness::new(t0, PING_INTERVAL, PEER_TIMEOUT);
    l.on_read(at(t0, 100));
    // Woken at 170 s instead of 30 s: one PING, the next an interval from now.
    assert_eq!(l.poll(at(t0, 170)), Due::Ping);
    assert_eq!(l.poll(at(t0, 170)), Due::Nothing);
    assert_eq!(
        l.deadline(),
        at(t0, 190),
        "the peer's deadline (100 + 90) comes first"
    );
    l.on_read(at(t0, 180));
    assert_eq!(l.deadline(), at(t0, 200));
    assert_eq!(l.poll(at(t0, 200)), Due::Ping);
}

#[test]
fn a_read_stamped_in_the_past_does_not_move_the_deadline_back() {
    let t0 = Instant::now();
    let mut l = Liveness::new(t0, PING_INTERVAL, PEER_TIMEOUT);
    l.on_read(at(t0, 50));
    l.on_read(at(t0, 10));
    assert_eq!(l.poll(at(t0, 139)), Due::Ping);
    assert_eq!(l.poll(at(t0, 140)), Due::PeerSilent);
}

#[test]
fn silence_wins_over_a_ping_due_at_the_same_time() {
    let t0 = Instant::now();
    let mut l = Liveness::new(t0, Duration::from_secs(45), Duration::from_secs(90));
    assert_eq!(l.poll(at(t0, 45)), Due::Ping);
    assert_eq!(l.poll(at(t0, 90)), Due::PeerSilent);
}

#[test]
fn an_unanswered_probe_is_reported_once_at_its_deadline() {
    let t0 = Instant::now();
    let mut l = Liveness::new(t0, PING_INTERVAL, PEER_TIMEOUT);
    l.probe(at(t0, 10), 5 * S);
    assert_eq!(l.deadline(), at(t0, 15), "before the first PING at 30 s");
    assert_eq!(l.poll(at(t0, 14)), Due::Nothing);
    // A second probe while one runs keeps the earlier deadline.
    assert!(l.probing());
    l.probe(at(t0, 14), 5 * S);
    assert_eq!(l.deadline(), at(t0, 15));
    assert_eq!(l.poll(at(t0, 15)), Due::ProbeUnanswered);
    assert_eq!(l.poll(at(t0, 15)), Due::Nothing, "reported once");
    assert!(!l.probing());
    assert_eq!(l.deadline(), at(t0, 30), "back to the heartbeat");
}

#[test]
fn any_frame_read_answers_a_probe() {
    let t0 = Instant::now();
    let mut l = Liveness::new(t0, PING_INTERVAL, PEER_TIMEOUT);
    l.probe(at(t0, 10), 5 * S);
    l.on_read(at(t0, 12));
    assert_eq!(l.deadline(), at(t0, 30));
    assert_eq!(l.poll(at(t0, 16)), Due::Nothing);
    // A silent peer is still lost at the timeout, probe or not.
    l.probe(at(t0, 100), 5 * S);
    assert_eq!(l.poll(at(t0, 102)), Due::PeerSilent, "12 + 90 comes first");
}
