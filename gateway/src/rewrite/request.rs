//! A browser request's headers as the device should see them.

use super::{device_cookies, Scope};
use http::header::{self, HeaderMap, HeaderValue};

/// Codings [`super::rewrite_body`] can decode; the device is offered only these, so a
/// page never arrives in one the gateway cannot rewrite (browsers also offer `zstd`).
pub const ACCEPT_ENCODING: &str = "gzip, deflate, br";

/// Headers that are the gateway's business, or the SaaS's, never the device's; and
/// those that describe one hop (RFC 9110 §7.6.1). `Proxy-*` and what `Connection`
/// names go too.
const DROPPED: &[&str] = &[
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
];

/// Removes [`DROPPED`], what `Connection` names, and `Proxy-*` (the session gateway's
/// requests and the published routes' requests and responses alike).
pub(crate) fn drop_hop_by_hop(headers: &mut HeaderMap) {
    // The names are read once and only those present are removed: a remove by name
    // parses and hashes it, and most requests carry two or three of the twelve.
    let mut gone: Vec<header::HeaderName> = headers
        .keys()
        .filter(|n| {
            let n = n.as_str();
            DROPPED.contains(&n) || n.starts_with("proxy-")
        })
        .cloned()
        .collect();
    gone.extend(
        headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|n| header::HeaderName::from_bytes(n.trim().as_bytes()).ok()),
    );
    for name in gone {
        headers.remove(name);
    }
}

/// Filters and maps `incoming` for the device:
/// - `Cookie`: only device cookies, under their own names ([`device_cookies`]); the
///   session grant `__ponte_rs` and any other cookie of the gateway's host stay behind.
/// - `Host` is the device's, as on the LAN (a connector that passes headers as given,
///   like the original Node one, would otherwise show the device the gateway's host,
///   and it would build absolute links to it). Hop-by-hop headers are dropped, and
///   `Connection` with what it names; `Upgrade: websocket` stays (with `Connection:
///   upgrade`) for a WebSocket handshake.
/// - `Authorization` (Bearer, Basic, Digest) is the device's own: its pages set it. The
///   SaaS's token never travels to the gateway's origin, and Ponte's own credentials are
///   cookies, which are filtered.
/// - `Referer` and `Origin` name the device (`http://<device>/x`), as on the LAN: devices
///   that check them against CSRF keep working, and the session URL is not revealed. A
///   Referer from another host is dropped; cross-origin unsafe requests never get here.
/// - `Accept-Encoding` is limited to [`ACCEPT_ENCODING`]; `Range` / `If-Range` are
///   dropped for documents and stylesheets (`Sec-Fetch-Dest`), whose bodies are
///   rewritten and so cannot be served by byte range.
///
/// `Expect` is removed by the connector.
pub fn device_request_headers(scope: &Scope, incoming: &HeaderMap) -> HeaderMap {
    let mut out = incoming.clone();
    drop_hop_by_hop(&mut out);
    let websocket = incoming
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"));
    if websocket {
        out.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        out.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    let authority = scope
        .device_origin()
        .split_once("://")
        .map_or("", |(_, a)| a);
    if let Ok(v) = HeaderValue::from_str(authority) {
        if !authority.is_empty() {
            out.insert(header::HOST, v);
        }
    }
    out.remove(header::COOKIE);
    let cookies: Vec<&str> = incoming
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if let Some(kept) = device_cookies(&cookies.join("; ")) {
        if let Ok(v) = HeaderValue::from_str(&kept) {
            out.insert(header::COOKIE, v);
        }
    }
    let host = incoming.get(header::HOST).and_then(|v| v.to_str().ok());
    let referer = out
        .get(header::REFERER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let rest = v.split_once("://")?.1;
            let slash = rest.find('/')?;
            // Only the session's own pages map to the device's (another host's path
            // means nothing to it).
            if host.is_some_and(|h| !rest[..slash].eq_ignore_ascii_case(h)) {
                return None;
            }
            let path = &rest[slash..];
            let path = scope.device_path(path)?;
            HeaderValue::from_str(&format!("{}{path}", scope.device_origin())).ok()
        });
    match referer {
        Some(v) => {
            out.insert(header::REFERER, v);
        }
        None => {
            out.remove(header::REFERER);
        }
    }
    if out.contains_key(header::ORIGIN) {
        match HeaderValue::from_str(scope.device_origin()) {
            Ok(v) => {
                out.insert(header::ORIGIN, v);
            }
            Err(_) => {
                out.remove(header::ORIGIN);
            }
        }
    }
    if out.contains_key(header::ACCEPT_ENCODING) {
        out.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static(ACCEPT_ENCODING),
        );
    }
    let rewritable = out
        .get("sec-fetch-dest")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|d| matches!(d, "document" | "iframe" | "frame" | "style"));
    if rewritable {
        out.remove(header::RANGE);
        out.remove(header::IF_RANGE);
    }
    out
}
