//! Endpoints for tests, not on a real turnstile: `/echo` answers with the request it got,
//! `/download` and `/big.html` stream large bodies, `/size` and `/repeated` shape them.

use crate::{json, MAX_GENERATED};
use axum::body::Body;
use axum::extract::{Query, Request};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::stream;
use std::collections::{BTreeMap, HashMap};

/// The request as received: method, path and query, and every header.
pub(crate) async fn echo(req: Request) -> Response {
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (n, v) in req.headers() {
        headers
            .entry(n.as_str().to_owned())
            .or_default()
            .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
    }
    json(
        StatusCode::OK,
        serde_json::json!({
            "method": req.method().as_str(),
            "target": req.uri().path_and_query().map_or("/", |p| p.as_str()),
            "headers": headers,
        }),
    )
}

/// `?bytes=N`, up to [`MAX_GENERATED`]; `None` when missing or out of range.
pub(crate) fn size(q: &HashMap<String, String>) -> Option<u64> {
    q.get("bytes")
        .and_then(|b| b.parse::<u64>().ok())
        .filter(|n| *n <= MAX_GENERATED)
}

pub(crate) fn bad_size() -> Response {
    json(
        StatusCode::BAD_REQUEST,
        serde_json::json!({"error": "bytes must be a number up to 4 GiB"}),
    )
}

/// `n` bytes as a stream of `piece` repeated (the last one cut).
pub(crate) fn repeated(piece: Bytes, n: u64) -> Body {
    let len = piece.len() as u64;
    Body::from_stream(stream::unfold(0u64, move |sent| {
        let piece = piece.clone();
        async move {
            (sent < n).then(|| {
                let take = len.min(n - sent);
                (
                    Ok::<_, std::io::Error>(piece.slice(..take as usize)),
                    sent + take,
                )
            })
        }
    }))
}

pub(crate) async fn download(Query(q): Query<HashMap<String, String>>) -> Response {
    let Some(n) = size(&q) else {
        return bad_size();
    };
    let piece: Bytes = (0..64 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
    (
        [(header::CONTENT_TYPE, "application/octet-stream")],
        repeated(piece, n),
    )
        .into_response()
}

pub(crate) async fn big_html(Query(q): Query<HashMap<String, String>>) -> Response {
    let Some(n) = size(&q) else {
        return bad_size();
    };
    let line = "<p><a href=\"/pt_BR/html/about.html\">Relatório de acessos</a> \
                <img src=\"/img/bg.png\" alt=\"\"> liberação às 08:00</p>\n";
    let piece = Bytes::from(line.repeat(64 * 1024 / line.len()));
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        repeated(piece, n),
    )
        .into_response()
}
