use super::*;
use crate::flow::WindowBudget;
use crate::limits::{INITIAL_WINDOW, MAX_TUNED_WINDOW, WINDOW_GROWTH_BUDGET};
use crate::{binary, codec, CloudMsg, ConnectorMsg};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

const KIB: usize = 1024;

/// A frame on the in-memory link, as the WebSocket would carry it.
#[derive(Clone)]
enum Wire {
    Text(String),
    Binary(Bytes),
}

/// One response body crossing a link between the two ends: the connector's [`BodyTx`],
/// the relay's [`BodyRx`] and its consumer. Every frame goes through the real codec
/// (JSON, or binary when `binary`), both ways, and time is the test's to move.
struct Link {
    tx: BodyTx,
    rx: BodyRx,
    budget: Arc<WindowBudget>,
    now: Instant,
    binary: bool,
    /// Chunks sent and not yet read by the relay, and their bytes.
    wire: VecDeque<Wire>,
    wire_bytes: u64,
    /// WINDOW_UPDATEs sent and not yet read by the connector, and their credit.
    credit: VecDeque<String>,
    credit_bytes: u64,
    /// Delivered to the consumer and not yet taken by it.
    buffered: VecDeque<Bytes>,
    sent: u64,
    taken: u64,
}

impl Link {
    fn new(binary: bool) -> Self {
        let mut rx = BodyRx::response(true);
        rx.on_start(200, &Headers::new()).expect("a plain START");
        Self {
            tx: BodyTx::new(true),
            rx,
            budget: WindowBudget::new(WINDOW_GROWTH_BUDGET),
            now: Instant::now(),
            binary,
            wire: VecDeque::new(),
            wire_bytes: 0,
            credit: VecDeque::new(),
            credit_bytes: 0,
            buffered: VecDeque::new(),
            sent: 0,
            taken: 0,
        }
    }

    /// The connector sends the next chunk of up to `want` bytes; how many went, `None`
    /// while its window is shut.
    fn send(&mut self, want: usize) -> Option<usize> {
        let piece = self.tx.take(want)?;
        self.put_chunk(piece.index, piece.len);
        Some(piece.len)
    }

    /// A chunk on the wire, whatever the window says (a sender that ignores it).
    fn put_chunk(&mut self, index: u64, len: usize) {
        let msg = ConnectorMsg::HttpResponseChunk(crate::Chunk {
            request_id: "r-1".into(),
            data: Bytes::from(vec![b'x'; len]),
            index,
        });
        let frame = match self.binary {
            true => {
                Wire::Binary(binary::encode_connector(&msg).expect("a chunk has a binary form"))
            }
            false => Wire::Text(codec::encode(&msg)),
        };
        self.wire.push_back(frame);
        self.wire_bytes += len as u64;
        self.sent += len as u64;
    }

    /// The relay reads the oldest frame on the wire: `Ok(false)` when there is none.
    fn deliver(&mut self) -> Result<bool, Violation> {
        let Some(frame) = self.wire.pop_front() else {
            return Ok(false);
        };
        let msg = match frame {
            Wire::Text(t) => codec::decode_connector(&t),
            Wire::Binary(b) => binary::decode_connector(&b),
        };
        let Ok(ConnectorMsg::HttpResponseChunk(chunk)) = msg else {
            panic!("a chunk crosses the codec as a chunk");
        };
        self.wire_bytes -= chunk.data.len() as u64;
        self.rx.on_chunk(chunk.index, chunk.data.len())?;
        self.buffered.push_back(chunk.data);
        Ok(true)
    }

    /// `after` passes, then the consumer takes the oldest delivered chunk; the credit it
    /// earns goes on the wire back.
    fn consume(&mut self, after: Duration) -> bool {
        self.now += after;
        let Some(data) = self.buffered.pop_front() else {
            return false;
        };
        self.taken += data.len() as u64;
        let (now, budget) = (self.now, Arc::clone(&self.budget));
        if let Some(bytes) = self.rx.window().on_consumed_tuned(data.len(), now, &budget) {
            let wu = CloudMsg::WindowUpdate(crate::WindowUpdate {
                request_id: "r-1".into(),
                bytes,
            });
            self.credit.push_back(codec::encode(&wu));
            self.credit_bytes += bytes as u64;
        }
        true
    }

    /// The connector reads the oldest WINDOW_UPDATE.
    fn credit(&mut self) -> bool {
        let Some(frame) = self.credit.pop_front() else {
            return false;
        };
        let Ok(CloudMsg::WindowUpdate(wu)) = codec::decode_cloud(&frame) else {
            panic!("credit crosses the codec as credit");
        };
        self.credit_bytes -= wu.bytes as u64;
        self.tx.grant(wu.bytes).expect("credit within the maximum");
        true
    }

    /// The flow invariant: what the relay still lets the connector send is what the
    /// connector may send, plus the data and the credit still on the wire.
    fn assert_agreed(&mut self) {
        let remaining = self.rx.window().remaining();
        assert_eq!(
            remaining,
            self.tx.available() + self.wire_bytes + self.credit_bytes,
            "receiver's remaining window against sender's available + data and credit in flight"
        );
    }

    /// Everything in flight is read and consumed, `pace` apart.
    fn settle(&mut self, pace: Duration) {
        loop {
            let moved =
                self.deliver().expect("an honest sender") | self.consume(pace) | self.credit();
            if !moved {
                return;
            }
        }
    }

    /// `total` bytes sent as fast as the window allows, the consumer taking each chunk
    /// `pace` after the last.
    fn stream(&mut self, total: usize, pace: Duration) {
        let mut left = total;
        while left > 0 {
            match self.send(left) {
                Some(n) => left -= n,
                None => self.settle(pace),
            }
            self.assert_agreed();
        }
        self.settle(pace);
    }
}

#[test]
fn a_body_crosses_whole_and_both_windows_agree() {
    for binary in [false, true] {
        let mut link = Link::new(binary);
        link.stream(3 * 1024 * KIB + 17, Duration::from_millis(50));
        assert_eq!(link.taken, link.sent);
        assert_eq!(link.sent, 3 * 1024 * KIB as u64 + 17);
        link.assert_agreed();
        assert_eq!(
            link.rx.grown(),
            0,
            "a slow consumer keeps the initial window"
        );
        assert!(link.tx.available() <= INITIAL_WINDOW as u64);
        link.rx.on_end().expect("END after the chunks");
    }
}

#[test]
fn a_fast_consumer_grows_the_window_within_the_budget() {
    let mut link = Link::new(true);
    link.stream(32 * 1024 * KIB, Duration::from_micros(1));
    assert_eq!(link.rx.grown(), (MAX_TUNED_WINDOW - INITIAL_WINDOW) as u64);
    assert_eq!(
        link.budget.left(),
        WINDOW_GROWTH_BUDGET - link.rx.grown(),
        "the growth came from the connection's budget"
    );
    link.assert_agreed();
    assert!(link.tx.available() > INITIAL_WINDOW as u64);
}

#[test]
fn a_lost_chunk_fails_the_stream_at_the_next_one() {
    for binary in [false, true] {
        let mut link = Link::new(binary);
        for _ in 0..3 {
            link.send(MAX_CHUNK_LEN).unwrap();
        }
        assert_eq!(link.deliver(), Ok(true));
        link.wire.remove(0);
        assert_eq!(link.deliver(), Err(Violation::Gap { got: 2, want: 1 }));
    }
}

#[test]
fn a_repeated_chunk_fails_the_stream() {
    let mut link = Link::new(false);
    link.send(10).unwrap();
    let again = link.wire[0].clone();
    link.wire.push_back(again);
    link.wire_bytes += 10;
    assert_eq!(link.deliver(), Ok(true));
    assert_eq!(link.deliver(), Err(Violation::Gap { got: 0, want: 1 }));
}

#[test]
fn a_sender_past_its_window_fails_the_stream() {
    let mut link = Link::new(true);
    let chunks = INITIAL_WINDOW as usize / MAX_CHUNK_LEN;
    for index in 0..=chunks as u64 {
        link.put_chunk(index, MAX_CHUNK_LEN);
    }
    for _ in 0..chunks {
        assert_eq!(link.deliver(), Ok(true), "within the window");
    }
    assert_eq!(
        link.deliver(),
        Err(Violation::Window(WindowViolation::Overrun {
            sent: MAX_CHUNK_LEN as u64,
            available: 0
        }))
    );
}

#[test]
fn a_json_chunk_over_the_chunk_size_fails_a_flow_stream_only() {
    let mut link = Link::new(false);
    link.put_chunk(0, MAX_CHUNK_LEN + 1);
    assert_eq!(
        link.deliver(),
        Err(Violation::ChunkTooLarge(MAX_CHUNK_LEN + 1))
    );
    // The original Node connector names no `flow` and sends chunks of ~768 KiB.
    let mut legacy = BodyRx::response(false);
    legacy.on_start(200, &Headers::new()).unwrap();
    assert_eq!(legacy.on_chunk(0, 768 * KIB), Ok(()));
    assert_eq!(legacy.on_chunk(1, 768 * KIB), Ok(()), "no window binds it");
}

/// Random interleavings of sending, reading, consuming (fast or slow) and crediting:
/// after every step the two windows agree, nothing is lost, and the sender never has
/// more in flight than the largest window.
#[test]
fn random_interleavings_keep_the_windows_agreed() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..40 {
        let mut link = Link::new(round % 2 == 0);
        for _ in 0..2_000 {
            let r = next();
            match r % 4 {
                0 => {
                    link.send((r >> 8) as usize % (2 * MAX_CHUNK_LEN) + 1);
                }
                1 => {
                    link.deliver().expect("an honest sender is never refused");
                }
                2 => {
                    let pace = match r >> 8 & 1 {
                        0 => Duration::from_micros(1),
                        _ => Duration::from_millis(200),
                    };
                    link.consume(pace);
                }
                _ => {
                    link.credit();
                }
            }
            link.assert_agreed();
            assert!(
                link.sent - link.taken <= MAX_TUNED_WINDOW as u64,
                "the receiver never holds more than the largest window"
            );
        }
        link.settle(Duration::from_micros(1));
        assert_eq!(link.taken, link.sent, "every byte sent was taken");
        link.assert_agreed();
    }
}

#[test]
fn the_head_comes_first_and_once() {
    let h = Headers::new();
    let mut rx = BodyRx::response(true);
    assert_eq!(rx.on_chunk(0, 1), Err(Violation::ChunkBeforeStart));
    assert_eq!(rx.on_end(), Err(Violation::EndBeforeStart));
    for bad in [0, 99, 1000] {
        assert_eq!(rx.on_start(bad, &h), Err(Violation::InvalidStatus(bad)));
    }
    for early in [100, 101, 103] {
        assert_eq!(rx.on_start(early, &h), Err(Violation::Informational(early)));
    }
    let mut big = Headers::new();
    big.insert("x-big", "v".repeat(MAX_HEADER_BYTES));
    assert_eq!(rx.on_start(200, &big), Err(Violation::HeadersTooLarge));
    assert_eq!(check_headers(&big), Err(Violation::HeadersTooLarge));
    let mut at_limit = Headers::new();
    at_limit.insert("x", "v".repeat(MAX_HEADER_BYTES - 1));
    assert_eq!(
        check_headers(&at_limit),
        Ok(()),
        "{} bytes",
        at_limit.byte_len()
    );
    assert!(!rx.is_started(), "a refused head starts nothing");
    assert_eq!(rx.on_start(204, &h), Ok(()));
    assert_eq!(rx.on_start(200, &h), Err(Violation::SecondStart));
}

#[test]
fn the_end_comes_once_and_nothing_after_it() {
    let mut rx = BodyRx::upload();
    assert!(rx.is_started(), "an upload's head was its request");
    assert_eq!(rx.on_chunk(0, 5), Ok(()));
    assert_eq!(rx.on_end(), Ok(()));
    assert!(rx.is_ended());
    assert_eq!(rx.on_chunk(1, 5), Err(Violation::AfterEnd));
    assert_eq!(rx.on_end(), Err(Violation::SecondEnd));
}

#[test]
fn the_sender_cuts_at_the_chunk_size_and_the_window() {
    let mut tx = BodyTx::new(true);
    assert_eq!(
        tx.take(1_000_000),
        Some(Piece {
            index: 0,
            len: MAX_CHUNK_LEN
        })
    );
    for index in 1..4 {
        assert_eq!(tx.take(MAX_CHUNK_LEN).map(|p| p.index), Some(index));
    }
    assert_eq!(tx.available(), 0);
    assert_eq!(tx.take(1), None, "the window is shut");
    assert_eq!(tx.take_whole(1), None);
    tx.grant(100).unwrap();
    assert_eq!(tx.take_whole(101), None, "all or nothing");
    assert_eq!(tx.available(), 100, "a refused whole takes nothing");
    assert_eq!(tx.take(0), None, "an empty chunk takes no index");
    assert_eq!(tx.take(1_000), Some(Piece { index: 4, len: 100 }));
    assert_eq!(
        tx.grant(u32::MAX),
        Err(WindowViolation::Overflow),
        "credit past the maximum window"
    );
}

#[test]
fn a_sender_without_flow_ignores_credit_and_window() {
    let mut tx = BodyTx::new(false);
    for index in 0..10 {
        assert_eq!(
            tx.take(10 * MAX_CHUNK_LEN),
            Some(Piece {
                index,
                len: MAX_CHUNK_LEN
            })
        );
    }
    assert_eq!(
        tx.grant(u32::MAX),
        Ok(()),
        "credit for no window is ignored"
    );
    assert_eq!(tx.take_whole(MAX_CHUNK_LEN + 1), None, "more than a chunk");
    assert_eq!(tx.take_whole(0), None, "an empty chunk is never sent");
    assert_eq!(tx.take_whole(7), Some(Piece { index: 10, len: 7 }));
}

#[test]
fn a_new_stream_is_refused_at_the_cap_and_a_duplicate_first() {
    assert_eq!(admit(0, false), Ok(()));
    assert_eq!(admit(MAX_STREAMS_PER_CONNECTOR - 1, false), Ok(()));
    assert_eq!(admit(MAX_STREAMS_PER_CONNECTOR, false), Err(Refusal::Busy));
    assert_eq!(admit(0, true), Err(Refusal::Duplicate), "a duplicate first");
}

#[test]
fn a_websocket_message_has_one_payload_within_the_limit() {
    assert_eq!(
        ws_payload(Some("hi".into()), None),
        Ok(WsPayload::Text("hi".into()))
    );
    let data = Bytes::from_static(b"\x00\x01");
    assert_eq!(
        ws_payload(None, Some(data.clone())),
        Ok(WsPayload::Binary(data.clone()))
    );
    for (text, data) in [(None, None), (Some("a".to_owned()), Some(data))] {
        assert_eq!(ws_payload(text, data).unwrap_err().code, 1002);
    }
    let big = Bytes::from(vec![0; MAX_WS_MESSAGE + 1]);
    assert_eq!(ws_payload(None, Some(big)).unwrap_err().code, 1009);
    let at_limit = "a".repeat(MAX_WS_MESSAGE);
    assert!(ws_payload(Some(at_limit), None).is_ok());
    let codes = [
        OverBudget::Stream,
        OverBudget::Connection,
        OverBudget::Closed,
    ]
    .map(|o| o.close().map(|r| r.code));
    assert_eq!(codes, [Some(1008), Some(1013), None]);
}
