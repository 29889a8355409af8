//! The connection's table of open streams, HTTP and WebSocket: which ids are open, each
//! HTTP stream's rules ([`BodyRx`], [`BodyTx`]), and the driver's handle for each stream
//! (its channel toward the stream's task, its waker). Every message for a stream goes
//! through [`Connection::route`] (relay) or [`Connection::route`] (connector), which
//! applies the stream's rules and says what the driver must do, already decided: hand
//! data on, end, fail the one stream. So the table and its rules are written once, for
//! both ends, and stepped in tests without a socket.
//!
//! A stream leaves the table when its end is known (END, ERROR, a cancel, a broken
//! rule, its caller gone): its handle is then given back to the driver in the verdict,
//! and frames that still arrive for it are [`Unknown`](AtRelay::Unknown), ignored.
//! Must never: hand the driver a frame for a stream that is not open, or let a stream
//! open past [`crate::limits::MAX_STREAMS_PER_CONNECTOR`] (HTTP and WebSocket counted
//! together, at both ends).

use super::{Connection, Side};
use crate::flow::{Growth, WindowBudget};
use crate::stream::{self, BodyRx, BodyTx, Refusal, WsPayload, WsRefusal};
use crate::{Blame, CloudMsg, ConnectorMsg, DecodeError, Headers, Heartbeat, HttpRequest};
use crate::{Reconnect, ResponseError, TokenRotate, WsClose, WsMessage, WsOpen};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// One open HTTP stream: its rules and the driver's handle.
#[derive(Debug)]
pub struct HttpStream<H> {
    /// The body this end receives: the response at the relay; at the connector the
    /// streamed upload, or `None` for a request sent whole (a chunk for it breaks it).
    pub rx: Option<BodyRx>,
    /// The body this end sends: the upload at the relay, the response at the connector.
    pub tx: BodyTx,
    pub handle: H,
}

impl<H> HttpStream<H> {
    pub fn new(rx: Option<BodyRx>, tx: BodyTx, handle: H) -> Self {
        Self { rx, tx, handle }
    }
}

/// A stream that broke a rule, out of the table: its id, handle, why, and growth.
type Broke<H> = (String, H, String, Growth);

/// The streams of one connection.
#[derive(Debug)]
pub(super) struct Streams<H, W> {
    http: HashMap<String, HttpStream<H>>,
    ws: HashMap<String, W>,
    /// Growth of receive windows over all of this connection's streams: a stream's goes
    /// back when it leaves the table.
    budget: Arc<WindowBudget>,
}

impl<H, W> Streams<H, W> {
    pub(super) fn new(budget: Arc<WindowBudget>) -> Self {
        Self {
            http: HashMap::new(),
            ws: HashMap::new(),
            budget,
        }
    }

    fn admits(&self, id: &str, ws: bool) -> Result<(), Refusal> {
        let duplicate = match ws {
            true => self.ws.contains_key(id),
            false => self.http.contains_key(id),
        };
        stream::admit(self.http.len() + self.ws.len(), duplicate)
    }

    /// The stream leaves the table, with what its window grew by (counted until the
    /// [`Growth`] is dropped).
    fn remove_http(&mut self, id: &str) -> Option<(H, Growth)> {
        let s = self.http.remove(id)?;
        let grown = s.rx.as_ref().map_or(0, BodyRx::grown);
        Some((s.handle, Growth::new(Arc::clone(&self.budget), grown)))
    }
}

/// What a connector's frame means for the relay's streams.
#[derive(Debug)]
pub enum AtRelay<H, W> {
    /// A PING (answer it with a PONG) or, without one, a PONG: the connector is alive.
    Heartbeat(Option<Heartbeat>),
    /// The response's head, checked (status, size, first).
    Start {
        stream: H,
        status: u16,
        headers: Headers,
    },
    /// A piece of the response body, in order and within the window; never empty.
    Data { id: String, stream: H, data: Bytes },
    /// The response is whole; the stream has left the table. Hold `growth` until the
    /// caller has read what is queued (drop it with the caller's end of the stream).
    End { stream: H, growth: Growth },
    /// The connector's error for it; the stream has left the table (`growth` as for
    /// `End`).
    Error {
        stream: H,
        error: ResponseError,
        growth: Growth,
    },
    /// Credit for the stream's upload ([`BodyTx::grant`]): wake its sender.
    Credit { stream: H },
    /// The frame broke the stream's rules; the stream has left the table: fail its
    /// caller and cancel it on the connector (`growth` as for `End`).
    Broken {
        id: String,
        stream: H,
        reason: String,
        growth: Growth,
    },
    /// The device WebSocket is open.
    WsOpened { ws: W, protocol: Option<String> },
    /// A WebSocket opened after its caller left (not in the table): close it, or it
    /// would hold a stream on the connector until the device hangs up.
    WsOrphan { id: String },
    /// A WebSocket's message or close (the connector's close may refuse to open it).
    Ws(AtWs<W>),
    /// A frame for a stream not open (ended or cancelled while the frame was on its
    /// way, or a peer's bug): ignored.
    Unknown { id: String },
}

/// What the relay's frame means for the connector's streams.
#[derive(Debug)]
pub enum AtConnector<H, W> {
    /// A PING (answer it with a PONG) or, without one, a PONG: the relay is alive.
    Heartbeat(Option<Heartbeat>),
    /// A new request: the driver checks what is its own (policy, draining) and opens it
    /// ([`Connection::open_http`]) or refuses it.
    Request(HttpRequest),
    /// A piece of the streamed upload, in order and within the window; never empty.
    Chunk {
        id: String,
        stream: H,
        data: Bytes,
    },
    /// The upload is whole (the stream stays open: its response is still to send).
    UploadEnd {
        stream: H,
    },
    /// The relay cancelled the request; it has left the table.
    Cancel {
        id: String,
        stream: H,
    },
    /// Credit for the response body ([`BodyTx::grant`]): wake its sender.
    Credit {
        stream: H,
    },
    /// The frame broke the request's rules; it has left the table: stop it on the
    /// device and answer BAD_REQUEST.
    Broken {
        id: String,
        stream: H,
        reason: String,
    },
    /// Open a WebSocket to a device ([`Connection::open_ws`]).
    WsOpen(WsOpen),
    /// A WebSocket's message or close.
    Ws(AtWs<W>),
    TokenRotate(TokenRotate),
    /// The relay node is stopping: connect again within `after_ms` and let the requests
    /// in flight on this connection finish.
    Reconnect(Reconnect),
    /// A frame for a stream not open: ignored.
    Unknown {
        id: String,
    },
}

/// Who a frame that did not decode is on, taken out of the table.
#[derive(Debug)]
pub enum Blamed<H, W> {
    /// This HTTP stream fails (the relay: its caller gets the error and the connector a
    /// cancel; the connector: the device request stops and the relay gets BAD_REQUEST).
    /// `growth` as for [`AtRelay::End`].
    Http {
        id: String,
        stream: H,
        growth: Growth,
    },
    /// This WebSocket closes with 1002 at both ends.
    Ws { id: String, ws: W },
    /// A message type this version does not define: ignored.
    Ignored,
    /// It names no open stream: dropped.
    Dropped,
}

/// What a peer's WebSocket message or close means for an open WebSocket, alike at both
/// ends.
#[derive(Debug)]
pub enum AtWs<W> {
    /// A message with exactly one payload.
    Message {
        id: String,
        ws: W,
        payload: WsPayload,
    },
    /// A message that breaks the WebSocket's rules; it has left the table: close it
    /// with `refusal` at both ends.
    Broken {
        id: String,
        ws: W,
        refusal: WsRefusal,
    },
    /// The peer closed it; it has left the table.
    Closed { ws: W, close: WsClose },
    /// For a WebSocket not open: ignored.
    Unknown { id: String },
}

impl<S: Side, H: Clone, W: Clone> Connection<S, H, W> {
    /// Whether a stream `id` may open now: not a duplicate of one of its kind, and
    /// under the limit of open streams, HTTP and WebSocket counted together.
    pub fn admits(&self, id: &str, ws: bool) -> Result<(), Refusal> {
        self.streams.admits(id, ws)
    }

    /// Opens an HTTP stream, if [`admits`](Self::admits) says it may.
    pub fn open_http(&mut self, id: String, stream: HttpStream<H>) -> Result<(), Refusal> {
        self.streams.admits(&id, false)?;
        self.streams.http.insert(id, stream);
        Ok(())
    }

    /// Opens a WebSocket stream, if [`admits`](Self::admits) says it may.
    pub fn open_ws(&mut self, id: String, ws: W) -> Result<(), Refusal> {
        self.streams.admits(&id, true)?;
        self.streams.ws.insert(id, ws);
        Ok(())
    }

    /// An open HTTP stream, for its rules (take a piece of window, count what its
    /// consumer read).
    pub fn http(&mut self, id: &str) -> Option<&mut HttpStream<H>> {
        self.streams.http.get_mut(id)
    }

    pub fn is_open(&self, id: &str) -> bool {
        self.streams.http.contains_key(id)
    }

    /// An open WebSocket's handle.
    pub fn ws(&self, id: &str) -> Option<&W> {
        self.streams.ws.get(id)
    }

    /// The HTTP stream leaves the table (its end is known, and nothing it let in is
    /// still to read: its caller has gone or read it all); its growth goes back to the
    /// connection's budget. `None` if it had already left.
    pub fn close_http(&mut self, id: &str) -> Option<H> {
        self.streams.remove_http(id).map(|(h, _growth)| h)
    }

    pub fn close_ws(&mut self, id: &str) -> Option<W> {
        self.streams.ws.remove(id)
    }

    /// Every stream leaves the table (the connection is gone).
    pub fn close_all(&mut self) -> (Vec<H>, Vec<W>) {
        let ids: Vec<String> = self.streams.http.keys().cloned().collect();
        // The connection is gone, and its budget with it: growth need not be held.
        let http = ids.iter().filter_map(|id| self.close_http(id)).collect();
        let ws = self.streams.ws.drain().map(|(_, w)| w).collect();
        (http, ws)
    }

    /// HTTP streams and WebSockets open.
    pub fn open_streams(&self) -> usize {
        self.streams.http.len() + self.streams.ws.len()
    }

    pub fn http_streams(&self) -> usize {
        self.streams.http.len()
    }

    pub fn ws_ids(&self) -> Vec<String> {
        self.streams.ws.keys().cloned().collect()
    }

    /// The driver's consumer has taken `n` bytes, at `now`, of the body this end receives
    /// on stream `id`: the credit to send (WINDOW_UPDATE), when one is due. The window
    /// grows for a consumer that keeps up, within the connection's budget
    /// ([`crate::RecvWindow::on_consumed_tuned`]).
    pub fn consumed(&mut self, id: &str, n: usize, now: Instant) -> Option<u32> {
        let s = self.streams.http.get_mut(id)?;
        (s.rx.as_mut()?.window()).on_consumed_tuned(n, now, &self.streams.budget)
    }

    /// The connection's budget for grown receive windows
    /// ([`crate::RecvWindow::on_consumed_tuned`]).
    pub fn window_budget(&self) -> &Arc<WindowBudget> {
        &self.streams.budget
    }

    /// A frame that did not decode: the stream it names leaves the table.
    pub fn blame(&mut self, err: &DecodeError) -> Blamed<H, W> {
        match err.blame() {
            Blame::Ignored => Blamed::Ignored,
            Blame::Http(id) => match self.streams.remove_http(id) {
                Some((stream, growth)) => Blamed::Http {
                    id: id.to_owned(),
                    stream,
                    growth,
                },
                None => Blamed::Dropped,
            },
            Blame::Ws(id) => match self.streams.ws.remove(id) {
                Some(ws) => Blamed::Ws {
                    id: id.to_owned(),
                    ws,
                },
                None => Blamed::Dropped,
            },
            Blame::Dropped => Blamed::Dropped,
        }
    }

    /// A message for a WebSocket: exactly one payload, within the size; else it leaves
    /// the table with the close to send.
    fn ws_message(&mut self, m: WsMessage) -> AtWs<W> {
        let Some(ws) = self.streams.ws.get(&m.stream_id).cloned() else {
            return AtWs::Unknown { id: m.stream_id };
        };
        match stream::ws_payload(m.text, m.data) {
            Ok(payload) => AtWs::Message {
                id: m.stream_id,
                ws,
                payload,
            },
            Err(refusal) => {
                self.streams.ws.remove(&m.stream_id);
                AtWs::Broken {
                    id: m.stream_id,
                    ws,
                    refusal,
                }
            }
        }
    }

    /// The peer's WS_CLOSE: the WebSocket leaves the table.
    fn ws_close(&mut self, close: WsClose) -> AtWs<W> {
        match self.streams.ws.remove(&close.stream_id) {
            Some(ws) => AtWs::Closed { ws, close },
            None => AtWs::Unknown {
                id: close.stream_id,
            },
        }
    }

    /// A rule broken: the stream leaves the table, with why.
    fn broken(&mut self, id: String, reason: impl ToString) -> Option<Broke<H>> {
        let (stream, growth) = self.streams.remove_http(&id)?;
        Some((id, stream, reason.to_string(), growth))
    }
}

impl<H: Clone, W: Clone> Connection<super::Relay, H, W> {
    /// A connector's message (not HELLO: [`Connection::read`] keeps that), through the
    /// rules of the stream it names. `None`: nothing to do (an empty chunk).
    pub fn route(&mut self, msg: ConnectorMsg) -> Option<AtRelay<H, W>> {
        use AtRelay as At;
        let broken = |(id, stream, reason, growth)| At::Broken {
            id,
            stream,
            reason,
            growth,
        };
        Some(match msg {
            ConnectorMsg::Hello(_) => return None,
            ConnectorMsg::Ping(hb) => At::Heartbeat(Some(hb)),
            ConnectorMsg::Pong(_) => At::Heartbeat(None),
            ConnectorMsg::HttpResponseStart(start) => {
                let id = start.request_id;
                let Some(s) = self.streams.http.get_mut(&id) else {
                    return Some(At::Unknown { id });
                };
                let verdict =
                    s.rx.as_mut()
                        .map(|rx| rx.on_start(start.status_code, &start.headers));
                match verdict {
                    Some(Err(v)) => return self.broken(id, v).map(broken),
                    _ => At::Start {
                        stream: s.handle.clone(),
                        status: start.status_code,
                        headers: start.headers,
                    },
                }
            }
            ConnectorMsg::HttpResponseChunk(chunk) => {
                let id = chunk.request_id;
                let Some(s) = self.streams.http.get_mut(&id) else {
                    return Some(At::Unknown { id });
                };
                let verdict =
                    s.rx.as_mut()
                        .map(|rx| rx.on_chunk(chunk.index, chunk.data.len()));
                match verdict {
                    Some(Err(v)) => return self.broken(id, v).map(broken),
                    _ if chunk.data.is_empty() => return None,
                    _ => At::Data {
                        stream: s.handle.clone(),
                        id,
                        data: chunk.data,
                    },
                }
            }
            ConnectorMsg::HttpResponseEnd(end) => {
                let id = end.request_id;
                let Some(s) = self.streams.http.get_mut(&id) else {
                    return Some(At::Unknown { id });
                };
                if let Some(Err(v)) = s.rx.as_mut().map(BodyRx::on_end) {
                    return self.broken(id, v).map(broken);
                }
                let (stream, growth) = self.streams.remove_http(&id)?;
                At::End { stream, growth }
            }
            ConnectorMsg::HttpResponseError(error) => {
                match self.streams.remove_http(&error.request_id) {
                    Some((stream, growth)) => At::Error {
                        stream,
                        error,
                        growth,
                    },
                    None => At::Unknown {
                        id: error.request_id,
                    },
                }
            }
            ConnectorMsg::WindowUpdate(wu) => {
                let id = wu.request_id;
                let Some(s) = self.streams.http.get_mut(&id) else {
                    return Some(At::Unknown { id });
                };
                match s.tx.grant(wu.bytes) {
                    Err(v) => return self.broken(id, v).map(broken),
                    Ok(()) => At::Credit {
                        stream: s.handle.clone(),
                    },
                }
            }
            ConnectorMsg::WsOpened(o) => match self.streams.ws.get(&o.stream_id) {
                Some(ws) => At::WsOpened {
                    ws: ws.clone(),
                    protocol: o.protocol,
                },
                None => At::WsOrphan { id: o.stream_id },
            },
            ConnectorMsg::WsMessage(m) => At::Ws(self.ws_message(m)),
            ConnectorMsg::WsClose(close) => At::Ws(self.ws_close(close)),
        })
    }
}

impl<H: Clone, W: Clone> Connection<super::Connector, H, W> {
    /// A relay's message (not HELLO: [`Connection::read`] keeps that), through the
    /// rules of the stream it names. `None`: nothing to do (an empty chunk, the END of
    /// a request sent whole).
    pub fn route(&mut self, msg: CloudMsg) -> Option<AtConnector<H, W>> {
        use AtConnector as At;
        // An upload's data is the device's to read, and its request is stopped with it.
        let broken = |(id, stream, reason, _growth)| At::Broken { id, stream, reason };
        Some(match msg {
            CloudMsg::Hello(_) => return None,
            CloudMsg::Ping(hb) => At::Heartbeat(Some(hb)),
            CloudMsg::Pong(_) => At::Heartbeat(None),
            CloudMsg::HttpRequest(req) => At::Request(req),
            CloudMsg::HttpRequestChunk(c) => {
                let id = c.request_id;
                let Some(s) = self.streams.http.get_mut(&id) else {
                    return Some(At::Unknown { id });
                };
                let verdict = match s.rx.as_mut() {
                    None => Err("chunk for a request without bodyStream".to_owned()),
                    Some(rx) => rx
                        .on_chunk(c.index, c.data.len())
                        .map_err(|v| v.to_string()),
                };
                match verdict {
                    Err(v) => return self.broken(id, v).map(broken),
                    Ok(()) if c.data.is_empty() => return None,
                    Ok(()) => At::Chunk {
                        stream: s.handle.clone(),
                        id,
                        data: c.data,
                    },
                }
            }
            CloudMsg::HttpRequestEnd(r) => {
                let id = r.request_id;
                let Some(s) = self.streams.http.get_mut(&id) else {
                    return Some(At::Unknown { id });
                };
                // A request sent whole has no body to end: nothing to do.
                match s.rx.as_mut().map(BodyRx::on_end) {
                    None => return None,
                    Some(Err(v)) => return self.broken(id, v).map(broken),
                    Some(Ok(())) => At::UploadEnd {
                        stream: s.handle.clone(),
                    },
                }
            }
            CloudMsg::HttpCancel(r) => match self.streams.remove_http(&r.request_id) {
                Some((stream, _growth)) => At::Cancel {
                    id: r.request_id,
                    stream,
                },
                None => At::Unknown { id: r.request_id },
            },
            CloudMsg::WindowUpdate(w) => {
                let id = w.request_id;
                let Some(s) = self.streams.http.get_mut(&id) else {
                    return Some(At::Unknown { id });
                };
                // A stream begun before the relay named `flow` ignores it (`BodyTx::grant`).
                match s.tx.grant(w.bytes) {
                    Err(v) => return self.broken(id, v).map(broken),
                    Ok(()) => At::Credit {
                        stream: s.handle.clone(),
                    },
                }
            }
            CloudMsg::WsOpen(o) => At::WsOpen(o),
            CloudMsg::WsMessage(m) => At::Ws(self.ws_message(m)),
            CloudMsg::WsClose(close) => At::Ws(self.ws_close(close)),
            CloudMsg::TokenRotate(t) => At::TokenRotate(t),
            CloudMsg::Reconnect(r) => At::Reconnect(r),
        })
    }
}

#[cfg(test)]
mod tests;
