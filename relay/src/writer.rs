//! The writer task of one connector connection: sends what the bounded channel holds
//! (batched into one flush), the heartbeat's PING when the reader says it is due
//! (beside the queue, so a full queue does not starve it), and ends with the
//! connection's close frame.
//!
//! Must never: let a write to a peer that stopped reading keep the connection alive, or
//! back up every sender on it (each write must make progress within the peer timeout).

use crate::conn::Conn;
use futures_util::SinkExt;
use ponte_protocol::{self as proto, queue, CloudMsg};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use tracing::debug;

pub(crate) async fn write_loop<S>(
    mut sink: futures_util::stream::SplitSink<WebSocketStream<S>, Message>,
    mut rx: queue::Receiver<Message>,
    cancel: CancellationToken,
    write_timeout: Duration,
    conn: Arc<Conn>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Cancellation wraps the whole loop: a write blocked on a peer that stopped reading
    // must not keep a replaced or revoked connection alive.
    // Each write must make progress within `write_timeout`; a peer that stops reading
    // is disconnected rather than left to back up every sender on this connection.
    let pump = async {
        loop {
            let queued = tokio::select! {
                queued = rx.recv() => queued,
                () = conn.ping.notified() => {
                    let ping = CloudMsg::Ping(proto::Heartbeat { ts: unix_ms() });
                    timed(write_timeout, sink.send(Message::text(proto::encode(&ping)))).await?;
                    continue;
                }
            };
            let Some(queued) = queued else { return Ok(()) };
            timed(write_timeout, sink.feed(queued.frame)).await?;
            // Batch what is already queued into one flush.
            for _ in 0..32 {
                match rx.try_recv() {
                    Some(queued) => timed(write_timeout, sink.feed(queued.frame)).await?,
                    None => break,
                }
            }
            timed(write_timeout, sink.flush()).await?;
        }
    };
    let result: Result<(), String> = tokio::select! {
        _ = cancel.cancelled() => Ok(()),
        r = pump => r,
    };
    if let Err(err) = result {
        debug!(%err, "writer stopped");
    }
    cancel.cancel();
    let frame = conn.close.lock().unwrap().take();
    let close = frame.unwrap_or(CloseFrame {
        code: CloseCode::Away,
        reason: "relay closing".into(),
    });
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = sink.send(Message::Close(Some(close))).await;
        let _ = sink.close().await;
    })
    .await;
}

/// One socket write that must finish within `limit`.
pub(crate) async fn timed<F>(limit: Duration, write: F) -> Result<(), String>
where
    F: std::future::Future<Output = Result<(), tokio_tungstenite::tungstenite::Error>>,
{
    match tokio::time::timeout(limit, write).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err("peer stopped reading (write timed out)".to_owned()),
    }
}

pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
