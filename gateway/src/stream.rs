//! What every proxied stream shares, remote sessions and published routes alike: device
//! WebSockets pumped both ways within their budgets, the bytes counted as they go, and
//! streams cut when their session or route ends.

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::StreamExt;
use http::{header, HeaderMap};
use ponte_core::published::RouteAuthority;
use ponte_core::session::SessionAuthority;
use ponte_core::{WsChannel, WsFrame};
use std::sync::Arc;
use tracing::{debug, warn};

/// A response body that the session's end cuts even while nothing polls it. hyper polls a
/// body only when the browser's socket takes more, so a browser that stopped reading would
/// otherwise keep the device's answer (and its tunnel stream) open until the write gave
/// up. A watcher task drops the device stream when the session ends, and the browser then
/// sees the body end; the watcher ends with the response (a drop guard), so nothing is
/// left behind per request.
pub(crate) fn cut_on_end<T: Send + 'static>(
    body: futures_util::stream::BoxStream<'static, T>,
    ended: tokio_util::sync::CancellationToken,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    let slot = Arc::new(std::sync::Mutex::new(Some(body)));
    let done = tokio_util::sync::CancellationToken::new();
    let (watched, finished) = (slot.clone(), done.clone());
    tokio::spawn(async move {
        tokio::select! {
            () = ended.cancelled() => drop(watched.lock().unwrap_or_else(|e| e.into_inner()).take()),
            () = finished.cancelled() => {}
        }
    });
    let guard = done.drop_guard();
    futures_util::stream::poll_fn(move |cx| {
        let _response_alive = &guard;
        match slot.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            Some(body) => body.poll_next_unpin(cx),
            None => std::task::Poll::Ready(None),
        }
    })
}

/// Largest WebSocket message carried either way: what one tunnel frame holds (the
/// connector's limit). A bigger one from the browser closes its socket with 1009.
pub(crate) const MAX_WS_MESSAGE: usize = ponte_protocol::limits::MAX_WS_MESSAGE;

/// A device WebSocket reports its traffic to the session (bytes, idle expiry) at most
/// this often, so a busy socket costs no store work per message.
pub(crate) const WS_ACTIVITY_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The subprotocols a browser's WebSocket handshake offers, in order.
pub(crate) fn ws_protocols(incoming: &HeaderMap) -> Vec<String> {
    incoming
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

/// Live traffic of one device WebSocket, handed to the session at most every
/// [`WS_ACTIVITY_EVERY`]: counts its bytes and slides the idle expiry, so a page that
/// only talks over its WebSocket is not cut off. What is left at the end goes with the
/// stream's [`Usage`].
pub(crate) struct WsActivity {
    pub(crate) pending: u64,
    pub(crate) last: tokio::time::Instant,
}

impl WsActivity {
    fn new() -> Self {
        Self {
            pending: 0,
            last: tokio::time::Instant::now(),
        }
    }

    fn add(&mut self, usage: &mut Usage, bytes: u64) {
        self.pending += bytes;
        if self.last.elapsed() >= WS_ACTIVITY_EVERY {
            usage.meter.activity(self.pending);
            self.pending = 0;
            self.last = tokio::time::Instant::now();
        }
    }

    /// Bytes not yet handed over, for the stream's final [`Usage`].
    fn finish(self, usage: &mut Usage) {
        usage.bytes += self.pending;
    }
}

/// A read error from the browser's socket: a message over [`MAX_WS_MESSAGE`] closes with
/// 1009 (message too big), any other protocol fault with 1002; `None` when the socket
/// itself failed and no close can be sent.
pub(crate) fn browser_error_close(e: axum::Error) -> Option<(u16, &'static str)> {
    use tungstenite::Error as E;
    match e.into_inner().downcast::<E>().map(|e| *e) {
        Ok(E::Capacity(_)) => Some((1009, "message too big")),
        Ok(E::Protocol(_) | E::Utf8(_)) => Some((1002, "protocol error")),
        _ => None,
    }
}

/// Copies messages both ways until either side closes or the session ends. One message
/// is in hand at a time: a browser that reads slowly stops this loop from taking more
/// from the tunnel (the relay then ends the stream once its per-stream queue is full,
/// rather than buffer), and a congested tunnel stops it reading from the browser.
/// Every wait also watches the session's end.
pub(crate) async fn pump_ws(
    mut browser: WebSocket,
    mut device: WsChannel,
    ended: tokio_util::sync::CancellationToken,
    mut usage: Usage,
    write_timeout: std::time::Duration,
) {
    let mut activity = WsActivity::new();
    let (code, reason) = loop {
        tokio::select! {
            () = ended.cancelled() => break (Some(1008), "remote session ended".to_owned()),
            msg = browser.recv() => {
                let frame = match msg {
                    Some(Ok(Message::Text(t))) => WsFrame::Text(t.as_str().to_owned()),
                    Some(Ok(Message::Binary(b))) => WsFrame::Binary(b),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(c))) => {
                        let (code, reason) =
                            c.map_or((None, None), |c| (Some(c.code), Some(c.reason.to_string())));
                        let _ = tokio::select! {
                            r = device.send(WsFrame::Close { code, reason }) => r,
                            () = ended.cancelled() => Ok(()),
                        };
                        // Reading on lets the library send the reply, so the page sees a
                        // clean close.
                        let _ = tokio::time::timeout(CLOSE_GRACE, async {
                            while browser.recv().await.is_some() {}
                        })
                        .await;
                        activity.finish(&mut usage);
                        return;
                    }
                    Some(Err(e)) => {
                        let close = browser_error_close(e);
                        let _ = tokio::select! {
                            r = device.send(WsFrame::Close { code: Some(1001), reason: None }) => r,
                            () = ended.cancelled() => Ok(()),
                        };
                        if let Some((code, reason)) = close {
                            debug!(stream = %usage.meter.name(), code, "browser WebSocket closed: {reason}");
                            let _ = tokio::time::timeout(
                                CLOSE_GRACE,
                                browser.send(close_message(Some(code), reason)),
                            )
                            .await;
                        }
                        activity.finish(&mut usage);
                        return;
                    }
                    None => {
                        let _ = tokio::select! {
                            r = device.send(WsFrame::Close { code: Some(1001), reason: None }) => r,
                            () = ended.cancelled() => Ok(()),
                        };
                        activity.finish(&mut usage);
                        return;
                    }
                };
                activity.add(&mut usage, ws_len(&frame));
                let sent = tokio::select! {
                    r = device.send(frame) => r,
                    () = ended.cancelled() => break (Some(1008), "remote session ended".to_owned()),
                };
                if let Err(e) = sent {
                    break (Some(1011), e.to_string());
                }
            }
            frame = device.recv() => {
                let msg = match frame {
                    Some(WsFrame::Text(t)) => {
                        activity.add(&mut usage, t.len() as u64);
                        Message::Text(t.into())
                    }
                    Some(WsFrame::Binary(b)) => {
                        activity.add(&mut usage, b.len() as u64);
                        Message::Binary(b)
                    }
                    Some(WsFrame::Close { code, reason }) => break (code, reason.unwrap_or_default()),
                    None => break (Some(1011), "device connection lost".to_owned()),
                };
                // A browser that stops reading does not hold this message (and the
                // relay's queue behind it) for ever: past the deadline the stream closes.
                let sent = tokio::select! {
                    r = tokio::time::timeout(write_timeout, browser.send(msg)) => r,
                    () = ended.cancelled() => break (Some(1008), "remote session ended".to_owned()),
                };
                let Ok(sent) = sent else {
                    warn!(
                        stream = %usage.meter.name(),
                        timeout_s = write_timeout.as_secs_f64(),
                        "browser stopped reading a device WebSocket; closing it"
                    );
                    break (Some(1008), "browser stopped reading".to_owned());
                };
                if sent.is_err() {
                    let _ = tokio::select! {
                        r = device.send(WsFrame::Close { code: Some(1001), reason: None }) => r,
                        () = ended.cancelled() => Ok(()),
                    };
                    activity.finish(&mut usage);
                    return;
                }
            }
        }
    };
    activity.finish(&mut usage);
    // The device's side goes first (dropping the channel closes it), so a browser slow to
    // finish the close handshake holds nothing open on the device.
    drop(device);
    // Tell the browser why, within a bound: one that stopped reading is left.
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        if browser.send(close_message(code, &reason)).await.is_ok() {
            while browser.recv().await.is_some() {}
        }
    })
    .await;
}

/// How long a closing socket is given to finish its close handshake.
pub(crate) const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

pub(crate) fn ws_len(frame: &WsFrame) -> u64 {
    match frame {
        WsFrame::Text(t) => t.len() as u64,
        WsFrame::Binary(b) => b.len() as u64,
        WsFrame::Close { .. } => 0,
    }
}

/// A close frame for the browser. Codes an endpoint may send pass (1000–1003,
/// 1007–1014, 3000–4999); 1005/1006/1015 (which only describe a close) mean no code;
/// anything else becomes 1011.
pub(crate) fn close_message(code: Option<u16>, reason: &str) -> Message {
    let frame = code.filter(|c| !matches!(c, 1005 | 1006 | 1015)).map(|c| {
        let code = match c {
            1000..=1003 | 1007..=1014 | 3000..=4999 => c,
            _ => 1011,
        };
        CloseFrame {
            code,
            // A close reason is at most 123 bytes; cut on a char boundary.
            reason: truncate(reason, 123).into(),
        }
    });
    Message::Close(frame)
}

pub(crate) fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Where a stream's traffic is counted: its remote session, or its published route.
pub(crate) enum Meter {
    Session(Arc<dyn SessionAuthority>, String),
    Route(Arc<dyn RouteAuthority>, i32, String),
}

impl Meter {
    /// One request and the bytes it delivered.
    fn record(&self, bytes: u64) {
        match self {
            Meter::Session(s, sid) => s.record(sid, bytes),
            Meter::Route(r, id, _) => r.record(*id, bytes),
        }
    }

    /// Traffic of a stream that outlives its request (about once a second at most).
    fn activity(&self, bytes: u64) {
        match self {
            Meter::Session(s, sid) => s.activity(sid, bytes),
            Meter::Route(r, id, _) => r.activity(*id, bytes),
        }
    }

    /// What the stream belongs to, for logs: the session id or the route's slug.
    fn name(&self) -> &str {
        match self {
            Meter::Session(_, sid) => sid,
            Meter::Route(_, _, slug) => slug,
        }
    }
}

/// Counts what one response delivered; recorded once, when the body is done or dropped.
pub(crate) struct Usage {
    pub(crate) meter: Meter,
    pub(crate) bytes: u64,
}

impl Usage {
    pub(crate) fn new(meter: Meter) -> Self {
        Self { meter, bytes: 0 }
    }
}

impl Drop for Usage {
    fn drop(&mut self) {
        self.meter.record(self.bytes);
    }
}

pub(crate) fn is_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}
