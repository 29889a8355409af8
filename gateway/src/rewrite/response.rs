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
    for name in [header::LOCATION, header::CONTENT_LOCATION] {
        if let Some(new) = headers
            .get(&name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| scope.url(v))
        {
            set(headers, name, &new);
        }
    }
    let refresh_name = HeaderName::from_static("refresh");
    if let Some(new) = headers
        .get(&refresh_name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| refresh(scope, v))
    {
        set(headers, refresh_name, &new);
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

fn set(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    match HeaderValue::from_str(value) {
        Ok(v) => {
            headers.insert(name, v);
        }
        // Cannot happen for values built from a valid header plus the ASCII prefix.
        Err(_) => {
            headers.remove(name);
        }
    }
}
