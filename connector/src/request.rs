//! One HTTP request through the tunnel: run it against the device, stream the response
//! back within its window, feed a streamed upload to the device.

use crate::exec::{self, ExecError, Executor};
use crate::session::{gone, loggable, wait_window, Session, StreamCtl};
use bytes::Bytes;
use futures_util::{FutureExt as _, StreamExt};
use ponte_protocol::connection::HttpStream;
use ponte_protocol::stream::{self, BodyRx, BodyTx, Refusal};
use ponte_protocol::{self as proto, limits, ConnectorMsg, ErrorCode};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use tracing::{debug, debug_span, info, Instrument};

/// Request-body chunks queued per stream toward the device; bytes are bounded by the
/// window we grant (at most [`limits::MAX_TUNED_WINDOW`]). One slot per KiB of the
/// largest window, so a window's worth of chunks averaging 1 KiB (a slow client's
/// small reads, forwarded as they come) fits. Overflow (a relay ignoring the window,
/// or sending chunks smaller than that) fails that stream only. Slots are allocated as
/// they are used.
const BODY_QUEUE: usize = limits::MAX_TUNED_WINDOW as usize / 1024;

pub(crate) fn start_request(sess: &Arc<Session>, req: proto::HttpRequest) {
    let rid = req.request_id.clone();
    // Requests and WebSockets count together, as the relay counts them (and as a
    // WS_OPEN is checked). Only this reader opens streams, so nothing opens between the
    // check and the insert below.
    let admitted = sess.link.lock().unwrap().admits(&rid, false);
    let refusal = match admitted {
        Err(Refusal::Duplicate) => Some((ErrorCode::BadRequest, "duplicate requestId")),
        // The relay checks before it sends; a relay that does not is refused alike.
        _ if stream::check_headers(&req.target.headers).is_err() => {
            Some((ErrorCode::BadRequest, "request headers too large"))
        }
        _ if sess.draining.load(Ordering::SeqCst) => {
            Some((ErrorCode::Busy, "connector is stopping; retry shortly"))
        }
        Err(Refusal::Busy) => Some((ErrorCode::Busy, "connector has too many streams in flight")),
        Ok(()) => None,
    };
    if let Some((code, why)) = refusal {
        return sess.error(&rid, &ExecError::new(code, why));
    }
    let (upload, body_rx) = match req.body_stream {
        true => {
            let (tx, rx) = mpsc::channel(BODY_QUEUE);
            (Some(tx), Some(rx))
        }
        false => (None, None),
    };
    let ctl = Arc::new(StreamCtl {
        cancel: sess.cancel.child_token(),
        credit: Notify::new(),
        upload: Mutex::new(upload),
    });
    let entry = HttpStream::new(
        req.body_stream.then(BodyRx::upload),
        BodyTx::new(sess.relay_caps().has(proto::Capability::Flow)),
        Arc::clone(&ctl),
    );
    // Admitted above: cannot be refused.
    let _ = sess.link.lock().unwrap().open_http(rid.clone(), entry);
    let sess = Arc::clone(sess);
    let path = loggable(&req.target.path).to_owned();
    let method = req.target.method.clone();
    // A span only at debug level: at info, formatting its fields for every request
    // cost more than the rest of the connector's logging together (the failure below
    // names them itself).
    let span = debug_span!("request", request_id = %rid, %method, %path);
    tokio::spawn(
        async move {
            let res = tokio::select! {
                _ = ctl.cancel.cancelled() => None,
                r = serve_request(&sess, &ctl, req, body_rx) => Some(r),
            };
            match res {
                None => debug!("request cancelled"),
                Some(Ok(())) => debug!("request complete"),
                Some(Err(e)) => {
                    info!(request_id = %rid, %method, %path, code = e.code.as_str(),
                        message = %e.message, "request failed");
                    // Queued before the stream leaves the table, so a draining session
                    // sends it ahead of its goodbye.
                    let err = proto::ResponseError::new(&rid, e.code, &e.message);
                    let _ = sess.send(&ConnectorMsg::HttpResponseError(err)).await;
                }
            }
            sess.link.lock().unwrap().close_http(&rid);
            sess.ended.notify_one();
        }
        .instrument(span),
    );
}

pub(crate) async fn serve_request(
    sess: &Arc<Session>,
    ctl: &Arc<StreamCtl>,
    req: proto::HttpRequest,
    body_rx: Option<mpsc::Receiver<Bytes>>,
) -> Result<(), ExecError> {
    let exec: &Executor = &sess.shared.exec;
    let rid = req.request_id;
    let t = req.target;
    let target = exec.http_target(&t.base_url, &t.path)?;
    let url = &target.origin.url;
    exec.check_target(url).await?;
    let host_port = format!(
        "{}:{}",
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or(80)
    );
    sess.shared.status.record_target(host_port);
    let timeout = req
        .timeout_ms
        .map(Duration::from_millis)
        .unwrap_or(limits::DEFAULT_TIMEOUT)
        .min(limits::MAX_TIMEOUT);
    let deadline = Instant::now() + timeout;
    let method = http::Method::from_bytes(t.method.as_bytes()).map_err(|_| {
        ExecError::new(
            ErrorCode::BadRequest,
            format!("invalid method {:?}", t.method),
        )
    })?;
    let headers = exec::request_headers(&t.headers, body_rx.is_some())?;
    let client = exec.client(url, t.tls_insecure)?;

    // Set once a streamed upload has been read whole: the response clock starts then.
    let uploaded = Arc::new(Notify::new());
    let streaming = body_rx.is_some();
    let body = match (body_rx, t.body, t.body_encoding) {
        (Some(rx), _, _) => streamed_body(
            Arc::clone(sess),
            Arc::clone(ctl),
            rid.clone(),
            rx,
            // A backstop only: the relay bounds an upload's silence itself (and
            // cancels), with the caller's idle timeout, which can exceed `timeoutMs`.
            timeout.max(limits::DEFAULT_TIMEOUT),
            Arc::clone(&uploaded),
        ),
        (None, Some(b), Some(proto::BodyEncoding::Base64)) => {
            use base64::Engine as _;
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b.as_bytes())
                .map_err(|e| {
                    ExecError::new(
                        ErrorCode::BadRequest,
                        format!("body is not valid base64: {e}"),
                    )
                })?;
            exec::whole_body(raw)
        }
        (None, Some(b), _) => exec::whole_body(b),
        (None, None, _) => exec::whole_body(Bytes::new()),
    };

    let _permit = tokio::time::timeout_at(deadline, exec.permit(url))
        .await
        .map_err(|_| {
            ExecError::new(
                ErrorCode::Busy,
                format!("device {} stayed at its concurrency limit", url.authority()),
            )
        })?;
    let mut request = http::Request::new(body);
    *request.method_mut() = method;
    *request.uri_mut() = target.uri;
    *request.headers_mut() = headers;
    // `timeoutMs` bounds the wait for the response head after the request is sent: an
    // upload is bounded by its idle timeout (in `streamed_body`), not by its length.
    let response_clock = async {
        if streaming {
            uploaded.notified().await;
            tokio::time::sleep(timeout).await;
        } else {
            tokio::time::sleep_until(deadline).await;
        }
    };
    let executed = tokio::select! {
        r = client.request(request) => Ok(r),
        () = response_clock => Err(()),
    };
    let resp = match executed {
        Err(_) => {
            return Err(ExecError::new(
                ErrorCode::Timeout,
                format!(
                    "no response from the device within {} ms",
                    timeout.as_millis()
                ),
            ))
        }
        Ok(Err(e)) => return Err(exec::classify(&e, url.authority())),
        Ok(Ok(r)) => r,
    };
    let (parts, mut body) = resp.into_parts();
    let headers = exec::response_headers(&parts.headers);
    if headers.byte_len() > limits::MAX_HEADER_BYTES {
        return Err(ExecError::new(
            ErrorCode::Internal,
            format!(
                "device response headers exceed {} bytes",
                limits::MAX_HEADER_BYTES
            ),
        ));
    }
    let start = ConnectorMsg::HttpResponseStart(proto::ResponseStart {
        request_id: rid.clone(),
        status_code: parts.status.as_u16(),
        headers,
    });
    // What the device has already sent, up to one chunk, taken without waiting (hyper
    // gives a body frame it holds, or `Pending`, which consumes nothing). A small answer
    // that is complete here (the usual API reply) goes out as one batch: START, its chunk
    // and END reach the writer together and share one write to the relay, and the relay
    // one read, instead of three of each.
    let mut ready = Vec::new();
    let (mut ready_len, mut ended, mut failed) = (0, false, None);
    while ready_len < limits::MAX_CHUNK_LEN {
        match exec::next_chunk(&mut body).now_or_never() {
            None => break,
            Some(Ok(None)) => {
                ended = true;
                break;
            }
            Some(Ok(Some(c))) => {
                ready_len += c.len();
                ready.push(c);
            }
            Some(Err(e)) => {
                failed = Some(e);
                break;
            }
        }
    }
    let whole = match (ended, ready_len) {
        (false, _) => None,
        (true, 0) => Some(None),
        (true, n) => {
            let link = &mut sess.link.lock().unwrap();
            let taken = link.http(&rid).map(|s| s.tx.take_whole(n));
            taken.ok_or_else(gone)?.map(Some)
        }
    };
    if let Some(piece) = whole {
        let mut batch = vec![start];
        if let Some(piece) = piece {
            let data = match ready.len() {
                1 => ready.pop().unwrap_or_default(),
                _ => ready.concat().into(),
            };
            batch.push(ConnectorMsg::HttpResponseChunk(proto::Chunk {
                request_id: rid.clone(),
                data,
                index: piece.index,
            }));
        }
        batch.push(ConnectorMsg::HttpResponseEnd(proto::StreamRef {
            request_id: rid,
        }));
        return sess.send_all(&batch).await.map_err(|_| gone());
    }
    sess.send(&start).await.map_err(|_| gone())?;

    let mut ready = ready.into_iter();
    loop {
        let chunk = if let Some(c) = ready.next() {
            c
        } else if let Some(e) = failed.take() {
            return Err(exec::body_failed(&e));
        } else if ended {
            break;
        } else {
            match tokio::time::timeout(timeout, exec::next_chunk(&mut body)).await {
                Err(_) => {
                    return Err(ExecError::new(
                        ErrorCode::Timeout,
                        "device stopped sending the body",
                    ))
                }
                Ok(Err(e)) => return Err(exec::body_failed(&e)),
                Ok(Ok(None)) => break,
                Ok(Ok(Some(c))) => c,
            }
        };
        let mut chunk = chunk;
        while !chunk.is_empty() {
            let piece = wait_window(sess, &rid, ctl, chunk.len()).await;
            let piece = piece.ok_or_else(gone)?;
            let data = chunk.split_to(piece.len);
            let msg = ConnectorMsg::HttpResponseChunk(proto::Chunk {
                request_id: rid.clone(),
                data,
                index: piece.index,
            });
            sess.send(&msg).await.map_err(|_| gone())?;
        }
    }
    sess.send(&ConnectorMsg::HttpResponseEnd(proto::StreamRef {
        request_id: rid,
    }))
    .await
    .map_err(|_| gone())
}

/// The device-facing request body of a `req-stream` request: returns credit to the
/// relay as the device consumes it.
///
/// Ends only after HTTP_REQUEST_END. A queue that closes without it (the stream was
/// failed or cancelled) or that stays empty for `idle` yields an error instead, so
/// hyper aborts the device connection rather than finishing the request: a cut
/// upload never looks complete to the device. `uploaded` is notified at the end.
pub(crate) fn streamed_body(
    sess: Arc<Session>,
    ctl: Arc<StreamCtl>,
    rid: String,
    rx: mpsc::Receiver<Bytes>,
    idle: Duration,
    uploaded: Arc<Notify>,
) -> exec::DeviceBody {
    let s =
        futures_util::stream::unfold((Some(rx), sess, ctl, rid), move |(rx, sess, ctl, rid)| {
            let uploaded = Arc::clone(&uploaded);
            async move {
                let mut rx = rx?;
                let data = match tokio::time::timeout(idle, rx.recv()).await {
                    Ok(Some(data)) => data,
                    Ok(None) => {
                        // Closed at HTTP_REQUEST_END, or the stream left the table.
                        let complete = (sess.link.lock().unwrap().http(&rid))
                            .and_then(|s| s.rx.as_ref())
                            .is_some_and(BodyRx::is_ended);
                        if complete {
                            uploaded.notify_one();
                            return None;
                        }
                        let cut = std::io::Error::other("the upload was cut before its end");
                        return Some((Err(cut), (None, sess, ctl, rid)));
                    }
                    Err(_) => {
                        let stalled = std::io::Error::other(format!(
                            "the upload sent nothing for {} s",
                            idle.as_secs()
                        ));
                        return Some((Err(stalled), (None, sess, ctl, rid)));
                    }
                };
                let now = std::time::Instant::now();
                let credit = sess.link.lock().unwrap().consumed(&rid, data.len(), now);
                if let Some(bytes) = credit {
                    let wu = ConnectorMsg::WindowUpdate(proto::WindowUpdate {
                        request_id: rid.clone(),
                        bytes,
                    });
                    let _ = sess.send(&wu).await;
                }
                Some((Ok::<_, std::io::Error>(data), (Some(rx), sess, ctl, rid)))
            }
        });
    http_body_util::BodyExt::boxed_unsync(http_body_util::StreamBody::new(
        s.map(|r| r.map(hyper::body::Frame::data)),
    ))
}
