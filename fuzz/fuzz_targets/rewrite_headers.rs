//! Fuzzes the header rewriters. Input: lines `name: value`, used as a device response's
//! headers and as a browser request's (to which the gateway's and the console's own
//! cookies are added). Properties: never panics, and
//! - response: `Location` / `Content-Location` / `Refresh` (as a browser parses it) stay
//!   under the prefix or off-device; every `Set-Cookie` passed on is named `__pd_…`,
//!   has no `Domain` and a `Path` (the last one, as browsers take it) under the prefix or
//!   none (then the browser scopes it to the request's directory, under the prefix);
//!   the dropped headers are gone;
//! - request: only device cookies reach the device (each one an input `__pd_` cookie with
//!   its name restored): never the session grant nor the console's, whatever the other
//!   headers say; the device's own `Authorization` as sent, no proxy headers; `Referer` and `Origin`
//!   name the device; the credentials appear in no header that did not carry them in.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use ponte_fuzz::rewrite::{device_request_headers, rewrite_response_headers, set_cookie};
use ponte_fuzz::{check, prefix, refresh_url, scope, DEVICE_BASE};

const GRANT: &str = "G7rAnt-5ecret-q1w2e3";
const CONSOLE: &str = "C0nsole-5ecret-z9x8c7";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut headers = HeaderMap::new();
    for line in text.split('\n') {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value.trim_start()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    let scope = scope();
    let prefix = prefix();

    // The response.
    let mut response = headers.clone();
    let _ = rewrite_response_headers(&scope, &mut response);
    for name in ["location", "content-location"] {
        for v in response.get_all(name) {
            if let Ok(v) = v.to_str() {
                check(name, v);
            }
        }
    }
    for v in response.get_all("refresh") {
        if let Some(u) = v.to_str().ok().and_then(refresh_url) {
            check("refresh", u);
        }
    }
    for v in response.get_all("set-cookie") {
        let v = v.to_str().expect("a Set-Cookie the gateway built is text");
        check_set_cookie(&prefix, v);
    }
    for v in headers.get_all("set-cookie") {
        if let Some(v) = v.to_str().ok().and_then(|v| set_cookie(&scope, v)) {
            check_set_cookie(&prefix, &v);
        }
    }
    for name in ["strict-transport-security", "clear-site-data", "alt-svc"] {
        assert!(!response.contains_key(name), "{name} passed on");
    }

    // The request.
    let mut request = headers.clone();
    request.insert("host", HeaderValue::from_static("gw.test"));
    for c in [
        format!("__ponte_rs={GRANT}"),
        format!("ponte_console={CONSOLE}; __Host-ponte_console={CONSOLE}"),
    ] {
        request.append("cookie", HeaderValue::from_str(&c).unwrap());
    }
    let out = device_request_headers(&scope, &request);
    let sent: Vec<String> = request
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix("__pd_"))
        // `__pd_ x=1` reaches the device as `x=1`: the whitespace around a cookie pair
        // is no part of it (RFC 6265 §5.4 joins pairs with "; "; servers trim them), so
        // the comparison ignores it.
        .map(|c| c.trim().to_owned())
        .collect();
    for v in out.get_all("cookie") {
        let v = v.to_str().expect("a Cookie the gateway built is text");
        for c in v.split(';') {
            let c = c.trim();
            assert!(
                sent.iter().any(|s| s == c),
                "cookie {c:?} reaches the device but no __pd_ cookie carried it"
            );
        }
    }
    for (name, v) in &out {
        let bytes = v.as_bytes();
        for secret in [GRANT, CONSOLE] {
            if contains(bytes, secret.as_bytes()) {
                let carried = headers
                    .get_all(name)
                    .iter()
                    .any(|i| contains(i.as_bytes(), secret.as_bytes()));
                assert!(carried, "{secret} reaches the device in {name}");
            }
        }
    }
    // The device's own `Authorization` reaches it as sent, every value (issue 14): the
    // SaaS's token never travels to the gateway's origin.
    let sent_auth: Vec<_> = request.get_all("authorization").iter().collect();
    let got_auth: Vec<_> = out.get_all("authorization").iter().collect();
    assert_eq!(got_auth, sent_auth, "Authorization reaches the device as sent");
    for name in [
        "proxy-authorization",
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-real-ip",
    ] {
        assert!(!out.contains_key(name), "{name} reaches the device");
    }
    for v in out.get_all("referer") {
        let v = v.to_str().expect("a Referer the gateway built is text");
        assert!(
            v.starts_with(&format!("{DEVICE_BASE}/")),
            "Referer {v:?} does not name the device"
        );
    }
    for v in out.get_all("origin") {
        assert_eq!(v, DEVICE_BASE, "Origin");
    }
});

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// A `Set-Cookie` as a browser reads it (RFC 6265 §5.2).
fn check_set_cookie(prefix: &str, v: &str) {
    let mut parts = v.split(';');
    let pair = parts.next().unwrap_or_default();
    let name = pair.split_once('=').map_or("", |(n, _)| n).trim();
    assert!(
        name.starts_with("__pd_"),
        "cookie {name:?} without the device prefix: {v:?}"
    );
    let mut path = None;
    for attr in parts {
        let (k, val) = attr.split_once('=').unwrap_or((attr, ""));
        let (k, val) = (k.trim(), val.trim());
        assert!(!k.eq_ignore_ascii_case("domain"), "Domain passed on: {v:?}");
        if k.eq_ignore_ascii_case("path") {
            path = Some(val);
        }
    }
    if let Some(p) = path.filter(|p| p.starts_with('/')) {
        assert!(
            p.starts_with(prefix) || p == &prefix[..prefix.len() - 1],
            "cookie Path {p:?} outside the prefix: {v:?}"
        );
    }
}
