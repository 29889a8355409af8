//! A device response's headers, rewritten for the session, and the plan for its body.

use super::{refresh, set_cookie, Scope};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// What the body needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyPlan {
    /// Bytes pass through untouched.
    Pass,
    /// Rewritten as HTML or CSS, after decoding `decode` (if any). `charset` is the
    /// `Content-Type` charset label.
    Html {
        decode: Option<Coding>,
        charset: Option<String>,
    },
    Css {
        decode: Option<Coding>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Gzip,
    Deflate,
    Brotli,
}

/// Headers a device must not set on the gateway's origin: they would outlive the session
/// or reach other sessions (`Strict-Transport-Security` pins the whole gateway host,
/// `Clear-Site-Data` wipes every session's cookies, `Alt-Svc` moves the origin).
/// `Service-Worker-Allowed` would let a worker control URLs outside the session: the
/// gateway sets its own on worker scripts ([`super::service_worker_allowed`]).
const DROPPED: &[&str] = &[
    "service-worker-allowed",
    "strict-transport-security",
    "clear-site-data",
    "alt-svc",
    "content-security-policy",
    "content-security-policy-report-only",
    "public-key-pins",
];

/// Rewrites `headers` in place for `scope` and says what to do with the body.
///
/// `Location` / `Content-Location` / `Refresh` and `Set-Cookie` are mapped under the
/// prefix; CSP is dropped (it would block the injected script); a rewritten body loses
/// `Content-Length`, `ETag`, `Content-MD5`, `Accept-Ranges` and its `Content-Encoding`
/// (decoded here, sent identity). `Referrer-Policy` is pinned to `same-origin`: the
/// session URL never leaks to other sites, and the gateway still gets the full Referer
/// it needs to catch navigations that lost the prefix.
pub fn rewrite_response_headers(scope: &Scope, headers: &mut HeaderMap) -> BodyPlan {
    // Every value: a second `Location` (or `Refresh`) header is no less a URL.
    let refresh_name = HeaderName::from_static("refresh");
    for name in [header::LOCATION, header::CONTENT_LOCATION, refresh_name] {
        let values: Vec<HeaderValue> = headers.get_all(&name).iter().cloned().collect();
        let mut changed = false;
        let mapped: Vec<HeaderValue> = values
            .into_iter()
            .filter_map(|v| {
                let new = v.to_str().ok().and_then(|s| match name.as_str() {
                    "refresh" => refresh(scope, s),
                    _ => scope.url(s),
                });
                match new {
                    // Not valid as a header (cannot happen for a valid value plus the
                    // ASCII prefix): dropped, never passed on unrewritten.
                    Some(n) => {
                        changed = true;
                        HeaderValue::from_str(&n).ok()
                    }
                    None => Some(v),
                }
            })
            .collect();
        if changed {
            headers.remove(&name);
            for v in mapped {
                headers.append(name.clone(), v);
            }
        }
    }
    let cookies: Vec<HeaderValue> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| set_cookie(scope, v))
        .filter_map(|v| HeaderValue::from_str(&v).ok())
        .collect();
    headers.remove(header::SET_COOKIE);
    for c in cookies {
        headers.append(header::SET_COOKIE, c);
    }
    for name in DROPPED {
        headers.remove(*name);
    }
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );

    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    let is_html = essence == "text/html" || essence == "application/xhtml+xml";
    let is_css = essence == "text/css";
    if !is_html && !is_css {
        return BodyPlan::Pass;
    }
    let decode = match headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("") | Some("identity") => None,
        Some("gzip") | Some("x-gzip") => Some(Coding::Gzip),
        Some("deflate") => Some(Coding::Deflate),
        Some("br") => Some(Coding::Brotli),
        // Stacked or unknown codings: the body cannot be read, so it passes as it is.
        Some(_) => return BodyPlan::Pass,
    };
    for name in [
        header::CONTENT_LENGTH,
        header::CONTENT_ENCODING,
        header::ETAG,
        header::ACCEPT_RANGES,
    ] {
        headers.remove(name);
    }
    headers.remove("content-md5");
    if is_css {
        return BodyPlan::Css { decode };
    }
    let charset = content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        (k.trim() == "charset").then(|| v.trim().trim_matches('"').to_owned())
    });
    BodyPlan::Html { decode, charset }
}
