//! The rules of one stream, as both ends of a connection keep them, sans-IO.
//!
//! The relay receives response bodies and sends uploads; the connector receives uploads
//! and sends response bodies. Each end holds a [`BodyRx`] for a body it receives (the
//! head first, chunks in order, within the window and the chunk size, the end once) and a
//! [`BodyTx`] for one it sends (chunk indexes, pieces no larger than a chunk or the
//! window). [`admit`] is the rule for a new stream of either kind, and [`ws_payload`]
//! and [`OverBudget::close`] the rules for an incoming WebSocket message. So each rule
//! is written once, and both ends break the same way on the same frame.
//!
//! Nothing here waits, allocates or reads a clock: callers pass what happened and act on
//! the verdict (fail the one stream, answer, or go on).

use crate::flow::{OverBudget, RecvWindow, SendWindow, WindowViolation};
use crate::limits::{MAX_CHUNK_LEN, MAX_HEADER_BYTES, MAX_STREAMS_PER_CONNECTOR, MAX_WS_MESSAGE};
use crate::Headers;
use bytes::Bytes;

/// A frame that breaks a stream's rules: that stream fails, the connection goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error("chunk before HTTP_RESPONSE_START")]
    ChunkBeforeStart,
    #[error("END before HTTP_RESPONSE_START")]
    EndBeforeStart,
    #[error("second HTTP_RESPONSE_START")]
    SecondStart,
    #[error("chunk index {got} where {want} was expected")]
    Gap { got: u64, want: u64 },
    #[error("chunk after the body's END")]
    AfterEnd,
    #[error("second END of one body")]
    SecondEnd,
    #[error("chunk of {0} bytes, over the {MAX_CHUNK_LEN}-byte limit")]
    ChunkTooLarge(usize),
    #[error("headers over {MAX_HEADER_BYTES} bytes")]
    HeadersTooLarge,
    #[error("invalid status {0}")]
    InvalidStatus(u16),
    /// A 1xx is never a final answer, and a 101 would hand the caller's socket to
    /// whatever the connector sends next: WebSockets go through WS_OPEN only.
    #[error("the connector answered a plain request with {0}")]
    Informational(u16),
    #[error(transparent)]
    Window(#[from] WindowViolation),
}

/// The receiving end of one HTTP body: a response at the relay, an upload at the
/// connector.
#[derive(Debug)]
pub struct BodyRx {
    next_index: u64,
    started: bool,
    ended: bool,
    window: RecvWindow,
    /// The window (and the chunk size) bind the sender: it named `flow` when the stream
    /// began. Otherwise the window is only counted, so credit can start flowing if a
    /// late HELLO announces `flow`, and chunks may be as large as a frame allows (the
    /// original Node connector sends ~768 KiB ones).
    enforced: bool,
}

impl BodyRx {
    /// A response body: HTTP_RESPONSE_START comes first.
    pub fn response(enforced: bool) -> Self {
        Self {
            next_index: 0,
            started: false,
            ended: false,
            window: RecvWindow::default(),
            enforced,
        }
    }

    /// A streamed upload (`req-stream`): its head was the HTTP_REQUEST, and only a peer
    /// that named `flow` streams one, so its window binds.
    pub fn upload() -> Self {
        Self {
            started: true,
            ..Self::response(true)
        }
    }

    /// HTTP_RESPONSE_START with this status and these headers.
    pub fn on_start(&mut self, status: u16, headers: &Headers) -> Result<(), Violation> {
        check_headers(headers)?;
        if !(100..=999).contains(&status) {
            return Err(Violation::InvalidStatus(status));
        }
        if status < 200 {
            return Err(Violation::Informational(status));
        }
        if std::mem::replace(&mut self.started, true) {
            return Err(Violation::SecondStart);
        }
        Ok(())
    }

    /// A chunk of `len` bytes with this `index`: deliver it when `Ok`.
    pub fn on_chunk(&mut self, index: u64, len: usize) -> Result<(), Violation> {
        if !self.started {
            return Err(Violation::ChunkBeforeStart);
        }
        if self.ended {
            return Err(Violation::AfterEnd);
        }
        if index != self.next_index {
            return Err(Violation::Gap {
                got: index,
                want: self.next_index,
            });
        }
        if self.enforced && len > MAX_CHUNK_LEN {
            return Err(Violation::ChunkTooLarge(len));
        }
        match self.window.on_data(len) {
            Err(v) if self.enforced => return Err(v.into()),
            _ => {}
        }
        self.next_index += 1;
        Ok(())
    }

    /// The body's END: it is whole.
    pub fn on_end(&mut self) -> Result<(), Violation> {
        if !self.started {
            return Err(Violation::EndBeforeStart);
        }
        if std::mem::replace(&mut self.ended, true) {
            return Err(Violation::SecondEnd);
        }
        Ok(())
    }

    pub fn is_started(&self) -> bool {
        self.started
    }

    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// The window, for the consumer's credit ([`RecvWindow::on_consumed_tuned`]).
    pub fn window(&mut self) -> &mut RecvWindow {
        &mut self.window
    }

    /// Bytes the window has grown by, to give back to the connection's budget.
    pub fn grown(&self) -> u64 {
        self.window.grown()
    }
}

/// The sending end of one HTTP body: an upload at the relay, a response at the
/// connector.
#[derive(Debug)]
pub struct BodyTx {
    next_index: u64,
    /// `None` when the peer had not named `flow` when the stream began: then no credit
    /// comes (the original Node relay sends none), and only the socket paces the body.
    window: Option<SendWindow>,
}

/// One chunk the sender may send now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    pub index: u64,
    pub len: usize,
}

impl BodyTx {
    pub fn new(flow: bool) -> Self {
        Self {
            next_index: 0,
            window: flow.then(SendWindow::default),
        }
    }

    /// The next chunk of up to `want` bytes, at most a chunk and what the window allows:
    /// `None` while the window is shut (wait for credit, then ask again), and for
    /// `want == 0` (an empty chunk is never sent, so it takes no index).
    pub fn take(&mut self, want: usize) -> Option<Piece> {
        let mut len = want.min(MAX_CHUNK_LEN);
        if let Some(w) = &mut self.window {
            len = len.min(w.available().min(usize::MAX as u64) as usize);
            w.consume(len);
        }
        if len == 0 {
            return None;
        }
        let index = self.next_index;
        self.next_index += 1;
        Some(Piece { index, len })
    }

    /// All of `len` bytes as one chunk, if a chunk holds them and the window has them
    /// now; nothing is taken otherwise.
    pub fn take_whole(&mut self, len: usize) -> Option<Piece> {
        if len > MAX_CHUNK_LEN || self.window.is_some_and(|w| w.available() < len as u64) {
            return None;
        }
        self.take(len)
    }

    /// A WINDOW_UPDATE from the receiver. Ignored for a stream begun without `flow`:
    /// its credit would only add up to an overflow.
    pub fn grant(&mut self, bytes: u32) -> Result<(), WindowViolation> {
        match &mut self.window {
            Some(w) => w.grant(bytes),
            None => Ok(()),
        }
    }

    /// Bytes the window allows now (`u64::MAX` without one).
    pub fn available(&self) -> u64 {
        self.window.map_or(u64::MAX, |w| w.available())
    }
}

/// A request's or response's headers, names and values together, are at most
/// [`MAX_HEADER_BYTES`]: checked by the end that sends them and by the end that reads
/// them.
pub fn check_headers(headers: &Headers) -> Result<(), Violation> {
    match headers.byte_len() > MAX_HEADER_BYTES {
        true => Err(Violation::HeadersTooLarge),
        false => Ok(()),
    }
}

/// Why a new stream is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The id is already open. The stream already open goes on; the new one is refused.
    #[error("duplicate stream id")]
    Duplicate,
    /// [`MAX_STREAMS_PER_CONNECTOR`] are open: the caller gets BUSY and may retry.
    #[error("too many streams in flight")]
    Busy,
}

/// Whether a new stream may open beside `open` others, HTTP requests and WebSockets
/// counted together (each end counts both alike).
pub fn admit(open: usize, duplicate: bool) -> Result<(), Refusal> {
    if duplicate {
        Err(Refusal::Duplicate)
    } else if open >= MAX_STREAMS_PER_CONNECTOR {
        Err(Refusal::Busy)
    } else {
        Ok(())
    }
}

/// A WebSocket message's payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsPayload {
    Text(String),
    Binary(Bytes),
}

impl WsPayload {
    pub fn len(&self) -> usize {
        match self {
            WsPayload::Text(t) => t.len(),
            WsPayload::Binary(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why an incoming WebSocket message closes its stream: the code and reason of the
/// close frame sent both ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsRefusal {
    pub code: u16,
    pub reason: &'static str,
}

/// The payload of a WS_MESSAGE (exactly one of `text` and `data`, at most
/// [`MAX_WS_MESSAGE`] bytes), or the close its stream gets.
pub fn ws_payload(text: Option<String>, data: Option<Bytes>) -> Result<WsPayload, WsRefusal> {
    let payload = match (text, data) {
        (Some(t), None) => WsPayload::Text(t),
        (None, Some(d)) => WsPayload::Binary(d),
        _ => {
            return Err(WsRefusal {
                code: 1002,
                reason: "WS_MESSAGE needs exactly one of text/data",
            })
        }
    };
    if payload.len() > MAX_WS_MESSAGE {
        return Err(WsRefusal {
            code: 1009,
            reason: "message too big",
        });
    }
    Ok(payload)
}

impl OverBudget {
    /// The close a message over the budget gets its stream: `None` when the stream is
    /// already closed.
    pub fn close(self) -> Option<WsRefusal> {
        match self {
            OverBudget::Closed => None,
            OverBudget::Stream => Some(WsRefusal {
                code: 1008,
                reason: "receiver too slow",
            }),
            OverBudget::Connection => Some(WsRefusal {
                code: 1013,
                reason: "connector WebSocket budget used up",
            }),
        }
    }
}

#[cfg(test)]
mod tests;
