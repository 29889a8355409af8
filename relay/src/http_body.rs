//! The bodies of a relayed HTTP request: how the request body travels (inline in
//! HTTP_REQUEST, or streamed within the connector's window) and the consumer end of the
//! response body.
//!
//! Must never: hold more than one piece of an upload at a time.

use crate::conn::{Conn, HttpStream, Peer, StreamEvent};
use base64::Engine as _;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use ponte_core::router::{BodySource, RequestBody, RouteError};
use ponte_protocol::{self as proto, limits, BodyEncoding, Capability, CloudMsg};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

/// Bodies up to this size travel inline in HTTP_REQUEST even to `req-stream` connectors:
/// one frame instead of three.
const INLINE_THRESHOLD: usize = 64 * 1024;

type Upload = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// Decides how the body travels: inline in HTTP_REQUEST, or streamed (`req-stream`).
pub(crate) async fn plan_body(
    body: RequestBody,
    peer: Peer,
    headers: &mut proto::Headers,
) -> Result<(Option<Bytes>, Option<Upload>), RouteError> {
    let streams = peer.caps.has(Capability::ReqStream);
    match body {
        RequestBody::Empty => Ok((None, None)),
        RequestBody::Full(b)
            if b.len() <= INLINE_THRESHOLD || (!streams && b.len() <= limits::MAX_INLINE_BODY) =>
        {
            Ok((Some(b), None))
        }
        RequestBody::Full(b) if streams => {
            headers.insert("content-length", b.len().to_string());
            Ok((
                None,
                Some(futures_util::stream::once(async move { Ok(b) }).boxed()),
            ))
        }
        RequestBody::Full(_) => Err(RouteError::BodyTooLarge(limits::MAX_INLINE_BODY)),
        RequestBody::Stream { length, stream } if streams => {
            headers.remove("transfer-encoding");
            match length {
                Some(n) => headers.insert("content-length", n.to_string()),
                None => headers.remove("content-length"),
            }
            Ok((None, Some(stream)))
        }
        RequestBody::Stream { mut stream, .. } => {
            // Legacy connector: the body must fit in one frame.
            let mut buf = Vec::new();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| RouteError::BodyRead(e.to_string()))?;
                if buf.len() + chunk.len() > limits::MAX_INLINE_BODY {
                    return Err(RouteError::BodyTooLarge(limits::MAX_INLINE_BODY));
                }
                buf.extend_from_slice(&chunk);
            }
            Ok((Some(buf.into()), None))
        }
    }
}

pub(crate) fn encode_inline(
    b: Bytes,
    peer: Peer,
) -> Result<(Option<String>, Option<BodyEncoding>), RouteError> {
    match String::from_utf8(b.to_vec()) {
        Ok(s) => Ok((Some(s), None)),
        Err(_) if peer.hello => Ok((
            Some(base64::engine::general_purpose::STANDARD.encode(&b)),
            Some(BodyEncoding::Base64),
        )),
        Err(_) => Err(RouteError::BinaryUnsupported),
    }
}

/// Sends a streamed request body as HTTP_REQUEST_CHUNK frames within the connector's
/// window, then HTTP_REQUEST_END. Holds at most one piece of the body at a time.
/// Sends an upload to the connector as its window allows. Fails the stream (and so
/// cancels it on the connector, which aborts the device connection: a cut upload never
/// reaches the device as a complete body) when the caller's body fails or sends
/// nothing for `idle`, or when the connector grants no window for `idle`.
pub(crate) async fn pump_upload(
    conn: Arc<Conn>,
    stream: Arc<HttpStream>,
    request_id: String,
    mut body: Upload,
    idle: Duration,
) {
    let fail = |err: RouteError| {
        stream.state.lock().unwrap().failed = Some(err);
        conn.cancel_stream(&request_id);
    };
    loop {
        let item = match tokio::time::timeout(idle, body.next()).await {
            Ok(Some(item)) => item,
            Ok(None) => break,
            Err(_) => {
                return fail(RouteError::BodyRead(format!(
                    "the upload sent nothing for {} s",
                    idle.as_secs()
                )))
            }
        };
        let mut bytes = match item {
            Ok(b) => b,
            Err(e) => return fail(RouteError::BodyRead(e.to_string())),
        };
        while !bytes.is_empty() {
            let piece = loop {
                let notified = stream.upload_credit.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if stream.state.lock().unwrap().failed.is_some() || conn.cancel.is_cancelled() {
                    return;
                }
                let taken =
                    (conn.link.lock().unwrap().http(&request_id)).map(|s| s.tx.take(bytes.len()));
                match taken {
                    // The stream has ended.
                    None => return,
                    Some(Some(piece)) => break piece,
                    Some(None) => {}
                }
                if tokio::time::timeout(idle, notified).await.is_err() {
                    // The device stopped reading the upload.
                    return fail(RouteError::Timeout);
                }
            };
            let data = bytes.split_to(piece.len);
            ponte_core::metrics::bytes_to_device(data.len());
            let msg = CloudMsg::HttpRequestChunk(proto::Chunk {
                request_id: request_id.clone(),
                data,
                index: piece.index,
            });
            if conn.out.send(conn.frame(&msg)).await.is_err() {
                return;
            }
        }
    }
    let end = CloudMsg::HttpRequestEnd(proto::StreamRef { request_id });
    let _ = conn.out.send(Message::text(proto::encode(&end))).await;
}

/// Consumer end of an HTTP stream.
pub(crate) struct RelayBody {
    pub(crate) conn: Arc<Conn>,
    pub(crate) stream: Arc<HttpStream>,
    pub(crate) request_id: String,
    pub(crate) rx: mpsc::Receiver<StreamEvent>,
    pub(crate) idle: Duration,
    pub(crate) done: bool,
    pub(crate) pump: Option<JoinHandle<()>>,
}

impl RelayBody {
    pub(crate) fn failure(&mut self) -> RouteError {
        self.done = true;
        self.stream
            .state
            .lock()
            .unwrap()
            .failed
            .clone()
            .unwrap_or(RouteError::Disconnected)
    }

    async fn next(&mut self) -> Option<Result<Bytes, RouteError>> {
        if self.done {
            return None;
        }
        let ev = loop {
            // The channel holds older events than the overflow: drain it first.
            let ev = match self.rx.try_recv() {
                Ok(ev) => Some(ev),
                Err(_) => self.stream.state.lock().unwrap().overflow.pop_front(),
            };
            let ev = match ev {
                Some(ev) => ev,
                None => match tokio::time::timeout(self.idle, self.rx.recv()).await {
                    Err(_) => {
                        self.done = true;
                        self.conn.cancel_stream(&self.request_id);
                        return Some(Err(RouteError::Timeout));
                    }
                    Ok(Some(ev)) => ev,
                    // Closed: whatever was spilled before the end still comes first.
                    Ok(None) => {
                        let spilled = self.stream.state.lock().unwrap().overflow.pop_front();
                        match spilled {
                            Some(ev) => ev,
                            None => return Some(Err(self.failure())),
                        }
                    }
                },
            };
            if !matches!(ev, StreamEvent::Wake) {
                break ev;
            }
        };
        match ev {
            StreamEvent::Data(b) => {
                // Checked live: a connector whose HELLO came late gets credit too.
                if self.conn.has(Capability::Flow) {
                    let now = std::time::Instant::now();
                    let credit =
                        (self.conn.link.lock().unwrap()).consumed(&self.request_id, b.len(), now);
                    if let Some(bytes) = credit {
                        let wu = CloudMsg::WindowUpdate(proto::WindowUpdate {
                            request_id: self.request_id.clone(),
                            bytes,
                        });
                        let _ = self.conn.out.send(Message::text(proto::encode(&wu))).await;
                    }
                }
                Some(Ok(b))
            }
            StreamEvent::End => {
                self.done = true;
                None
            }
            StreamEvent::Error(e) => {
                self.done = true;
                Some(Err(e))
            }
            StreamEvent::Wake => unreachable!("the loop above skips wake-ups"),
            StreamEvent::Start { .. } => {
                self.done = true;
                self.conn.cancel_stream(&self.request_id);
                Some(Err(RouteError::Protocol(
                    "second HTTP_RESPONSE_START".into(),
                )))
            }
        }
    }
}

impl BodySource for RelayBody {
    fn next_chunk(&mut self) -> BoxFuture<'_, Option<Result<Bytes, RouteError>>> {
        Box::pin(self.next())
    }
}

impl Drop for RelayBody {
    fn drop(&mut self) {
        if let Some(p) = self.pump.take() {
            p.abort();
        }
        if !self.done {
            // Caller went away mid-stream: stop the device download.
            self.conn.cancel_stream(&self.request_id);
        } else {
            self.conn.link.lock().unwrap().close_http(&self.request_id);
        }
    }
}
