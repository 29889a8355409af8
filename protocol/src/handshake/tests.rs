use super::*;
use crate::limits::{HELLO_GRACE, HELLO_GRACE_PONTE};
use crate::Capability;

fn caps(names: &[&str]) -> Capabilities {
    names.iter().filter_map(|n| Capability::parse(n)).collect()
}

#[test]
fn hello_is_answered_with_the_intersection() {
    let t0 = Instant::now();
    let mut h = Handshake::new(t0, HELLO_GRACE);
    let offered = caps(&["flow", "cancel", "teleport"]);
    let Heard::Agreed { answer, late } = h.on_hello(offered) else {
        panic!("the first HELLO is agreed");
    };
    assert!(!late);
    assert!(answer.has(Capability::Flow) && answer.has(Capability::Cancel));
    assert!(!answer.has(Capability::Bin), "only what was offered");
    assert_eq!(answer.names(), ["cancel", "flow"], "and nothing unknown");
    assert_eq!(
        h.peer(),
        Some(Peer {
            hello: true,
            caps: answer
        })
    );
    assert_eq!(h.deadline(), None, "settled: no more deadline");
}

#[test]
fn silence_through_the_grace_is_legacy() {
    for grace in [HELLO_GRACE, HELLO_GRACE_PONTE] {
        let t0 = Instant::now();
        let mut h = Handshake::new(t0, grace);
        assert_eq!(h.deadline(), Some(t0 + grace));
        assert!(!h.poll(t0 + grace - Duration::from_millis(1)));
        assert_eq!(h.peer(), None, "not known before the grace ends");
        assert!(h.poll(t0 + grace));
        assert_eq!(h.peer(), Some(Peer::LEGACY));
        assert!(!h.poll(t0 + grace * 2), "settled once");
    }
}

#[test]
fn any_other_first_frame_is_legacy() {
    let t0 = Instant::now();
    let mut h = Handshake::new(t0, HELLO_GRACE);
    assert!(h.on_other_frame());
    assert_eq!(h.peer(), Some(Peer::LEGACY));
    assert!(!h.on_other_frame(), "settled once");
}

#[test]
fn a_late_hello_upgrades_a_connector_taken_for_legacy() {
    let t0 = Instant::now();
    let mut h = Handshake::new(t0, HELLO_GRACE);
    assert!(h.poll(t0 + HELLO_GRACE));
    let heard = h.on_hello(caps(&["flow"]));
    assert_eq!(
        heard,
        Heard::Agreed {
            answer: caps(&["flow"]),
            late: true
        }
    );
    assert!(!h.on_other_frame(), "frames after it change nothing");
    assert_eq!(h.peer().map(|p| p.hello), Some(true));
}

#[test]
fn a_repeated_hello_is_ignored() {
    let t0 = Instant::now();
    let mut h = Handshake::new(t0, HELLO_GRACE);
    h.on_hello(caps(&["flow"]));
    assert_eq!(h.on_hello(caps(&["flow", "bin"])), Heard::Repeat);
    assert_eq!(
        h.peer().map(|p| p.caps),
        Some(caps(&["flow"])),
        "the first one holds"
    );
}
