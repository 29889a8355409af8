//! A browser request's headers as the device should see them.

use super::{device_cookies, Scope};
use http::header::{self, HeaderMap, HeaderValue};

/// Codings [`super::rewrite_body`] can decode; the device is offered only these, so a
/// page never arrives in one the gateway cannot rewrite (browsers also offer `zstd`).
pub const ACCEPT_ENCODING: &str = "gzip, deflate, br";

/// Headers that are the gateway's business, or the SaaS's, never the device's.
const DROPPED: &[&str] = &[
    "proxy-authorization",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
];

/// Filters and maps `incoming` for the device:
/// - `Cookie`: only device cookies, under their own names ([`device_cookies`]); the
///   session grant `__ponte_rs` and any other cookie of the gateway's host stay behind.
/// - `Authorization: Bearer …` (a SaaS token) is dropped; Basic/Digest, which a device
///   asks for itself, pass.
/// - `Referer` and `Origin` name the device (`http://<device>/x`), as on the LAN: devices
///   that check them against CSRF keep working, and the session URL is not revealed. A
///   Referer from another host is dropped; cross-origin unsafe requests never get here.
/// - `Accept-Encoding` is limited to [`ACCEPT_ENCODING`]; `Range` / `If-Range` are
///   dropped for documents and stylesheets (`Sec-Fetch-Dest`), whose bodies are
///   rewritten and so cannot be served by byte range.
///
/// Hop-by-hop headers, `Host` and `Expect` are removed by the connector.
pub fn device_request_headers(scope: &Scope, incoming: &HeaderMap) -> HeaderMap {
    let mut out = incoming.clone();
    for name in DROPPED {
        out.remove(*name);
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
    // Every value counts (a second `Authorization` header, `Bearer<TAB>…`): one that is
    // a Bearer token takes the header with it.
    let bearer = out.get_all(header::AUTHORIZATION).iter().any(|v| {
        String::from_utf8_lossy(v.as_bytes())
            .split_ascii_whitespace()
            .next()
            .is_some_and(|s| s.eq_ignore_ascii_case("bearer"))
    });
    if bearer {
        out.remove(header::AUTHORIZATION);
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
