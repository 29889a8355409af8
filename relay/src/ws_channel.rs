//! The caller end of a WebSocket tunnelled over a connector connection.

use crate::conn::{self, Conn};
use futures_util::future::BoxFuture;
use ponte_core::router::{RouteError, WsFrame, WsSource};
use ponte_protocol::{self as proto, limits, CloudMsg};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Caller end of a tunnelled WebSocket.
pub(crate) struct RelayWs {
    pub(crate) conn: Arc<Conn>,
    pub(crate) state: Arc<conn::WsState>,
    pub(crate) stream_id: String,
    pub(crate) rx: mpsc::Receiver<WsFrame>,
    /// Bytes of the message `recv` last returned: still charged to the stream's budget
    /// until the caller asks for the next one (it has written this one on by then), so
    /// the budget also covers the message a caller holds while its browser is slow.
    pub(crate) held: usize,
    pub(crate) closed: bool,
}

impl WsSource for RelayWs {
    fn recv(&mut self) -> BoxFuture<'_, Option<WsFrame>> {
        Box::pin(async move {
            self.state.budget.release(std::mem::take(&mut self.held));
            if self.closed {
                return None;
            }
            let f = self.rx.recv().await;
            if let Some(f) = &f {
                self.held = conn::ws_len(f);
            }
            if matches!(f, None | Some(WsFrame::Close { .. })) {
                self.closed = true;
                self.conn.link.lock().unwrap().close_ws(&self.stream_id);
            }
            f
        })
    }

    fn send(&mut self, frame: WsFrame) -> BoxFuture<'_, Result<(), RouteError>> {
        Box::pin(async move {
            if self.closed {
                return Err(RouteError::Disconnected);
            }
            if let WsFrame::Text(t) = &frame {
                ponte_core::metrics::bytes_to_device(t.len());
            } else if let WsFrame::Binary(d) = &frame {
                ponte_core::metrics::bytes_to_device(d.len());
            }
            let msg = match frame {
                WsFrame::Text(t) => CloudMsg::WsMessage(proto::WsMessage {
                    stream_id: self.stream_id.clone(),
                    text: Some(t),
                    data: None,
                }),
                WsFrame::Binary(d) => CloudMsg::WsMessage(proto::WsMessage {
                    stream_id: self.stream_id.clone(),
                    text: None,
                    data: Some(d),
                }),
                WsFrame::Close { code, reason } => {
                    self.closed = true;
                    self.conn.link.lock().unwrap().close_ws(&self.stream_id);
                    CloudMsg::WsClose(proto::WsClose {
                        stream_id: self.stream_id.clone(),
                        code,
                        reason,
                        error: None,
                    })
                }
            };
            let frame = self.conn.frame(&msg);
            if frame.len() > limits::MAX_FRAME_LEN {
                return Err(RouteError::BodyTooLarge(limits::MAX_FRAME_LEN));
            }
            self.conn
                .out
                .send(frame)
                .await
                .map_err(|_| RouteError::Disconnected)
        })
    }
}

impl Drop for RelayWs {
    fn drop(&mut self) {
        if !self.closed {
            conn::close_ws(&self.conn, &self.stream_id, 1001, "caller went away");
        }
        // What is still queued is freed with the channel: its bytes go back too.
        self.state.budget.close();
    }
}
