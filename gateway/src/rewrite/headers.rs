//! Response headers that carry device URLs or device-scoped cookies.
//! (`Location` and `Content-Location` are plain URLs: [`Scope::url`].)

use super::Scope;

/// `Refresh: 5; url=/x` (also `<meta http-equiv=refresh content=…>`): rewrites the URL
/// part, found as browsers find it (HTML's "parse a refresh value": `0;/x` and `0, '/x'`
/// name a URL too); `None` when nothing changes.
pub fn refresh(scope: &Scope, value: &str) -> Option<String> {
    let (start, end) = refresh_url(value)?;
    let new = scope.url(&value[start..end])?;
    Some(format!("{}{}{}", &value[..start], new, &value[end..]))
}

/// Where the URL of a refresh value lies.
fn refresh_url(value: &str) -> Option<(usize, usize)> {
    let ws = |c: char| matches!(c, '\t' | '\n' | '\x0c' | '\r' | ' ');
    let at = |rest: &str| value.len() - rest.len();
    let s = value.trim_start_matches(ws);
    let digits = s.len() - s.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 && !s.starts_with('.') {
        return None;
    }
    let s = s.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.');
    if !s.starts_with(|c: char| c == ';' || c == ',' || ws(c)) {
        return None;
    }
    let s = s.trim_start_matches(ws);
    let s = s
        .strip_prefix([';', ','])
        .unwrap_or(s)
        .trim_start_matches(ws);
    if s.is_empty() {
        return None;
    }
    let whole = (at(s), value.len());
    let mut url = s;
    if let Some(r) = s.strip_prefix(['u', 'U']) {
        let Some(r) = r
            .strip_prefix(['r', 'R'])
            .and_then(|r| r.strip_prefix(['l', 'L']))
        else {
            return Some(whole);
        };
        let Some(r) = r.trim_start_matches(ws).strip_prefix('=') else {
            return Some(whole);
        };
        url = r.trim_start_matches(ws);
    }
    match url.chars().next() {
        Some(q @ ('"' | '\'')) => {
            let url = &url[1..];
            let len = url.find(q).unwrap_or(url.len());
            Some((at(url), at(url) + len))
        }
        _ => Some((at(url), value.len())),
    }
}

/// Device cookies carry this prefix in the browser, so that the gateway forwards only
/// them: other cookies of the gateway's host (the SaaS's, when it shares the host name,
/// since cookies ignore ports) and `__ponte_rs` never reach a device.
pub const DEVICE_COOKIE_PREFIX: &str = "__pd_";

/// `Set-Cookie`: the cookie is scoped to the session prefix (`Path=/x` → `/remote/s/{sid}/x`,
/// no or relative `Path` → the prefix), its `Domain` is dropped, so it never reaches
/// another session or the gateway's own paths, and its name gets
/// [`DEVICE_COOKIE_PREFIX`]. `None` for a header that does not parse: a cookie the
/// gateway cannot scope is not passed on.
pub fn set_cookie(scope: &Scope, value: &str) -> Option<String> {
    let mut cookie = cookie::Cookie::parse(value).ok()?;
    if reserved_cookie(cookie.name()) {
        return None;
    }
    let name = format!("{DEVICE_COOKIE_PREFIX}{}", cookie.name());
    cookie.set_name(name);
    let path = match cookie.path() {
        Some(p) if p.starts_with('/') && scope.is_prefixed(p) => p.to_owned(),
        Some(p) if p.starts_with('/') => format!("{}{}", scope.prefix(), &p[1..]),
        _ => scope.prefix().to_owned(),
    };
    cookie.set_path(path);
    cookie.unset_domain();
    Some(cookie.to_string())
}

/// The browser's `Cookie` header as the device should see it: only device cookies, with
/// their names restored. `None` when none is left.
pub fn device_cookies(header: &str) -> Option<String> {
    let kept: Vec<&str> = header
        .split(';')
        .filter_map(|c| c.trim().strip_prefix(DEVICE_COOKIE_PREFIX))
        .filter(|c| !c.is_empty())
        .collect();
    (!kept.is_empty()).then(|| kept.join("; "))
}

/// Names of Ponte's own cookies (the session grant, the console's sign-in), which a
/// device may not set even under its prefix: a device cookie with such a name is dropped,
/// and the injected script refuses to write one. (The console does not rely on this: a
/// hostile page can write any cookie of its host from script; see the console's cookie.)
pub fn reserved_cookie(name: &str) -> bool {
    let n = name.trim().to_ascii_lowercase();
    let n = n
        .strip_prefix("__host-")
        .or_else(|| n.strip_prefix("__secure-"))
        .unwrap_or(&n);
    n.starts_with("ponte_") || n.starts_with("__ponte")
}

/// A device's `Service-Worker-Allowed` (the widest scope its worker script may
/// register) mapped for the session: `/` and device URLs go under the prefix, a relative
/// value resolves against `script_path` (the script's gateway path). `None` when the
/// value would leave the prefix: another host, dot segments (the browser would resolve
/// them, possibly out of the prefix), backslashes. The result is a clean path under the
/// prefix, without query or fragment.
pub fn service_worker_allowed(scope: &Scope, value: &str, script_path: &str) -> Option<String> {
    // The browser drops tabs and newlines from a URL before resolving it (`.\t./` is
    // `../`): the checks below must see what it will see.
    let v: String = value
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect();
    let v = v.trim();
    let path = if let Some(mapped) = scope.url(v) {
        mapped
    } else if v.starts_with('/') && !v.starts_with("//") {
        // Already prefixed (`url` leaves those alone).
        v.to_owned()
    } else if !v.contains(':') && !v.starts_with("//") {
        let dir = &script_path[..script_path.rfind('/')? + 1];
        format!("{dir}{}", v.strip_prefix("./").unwrap_or(v))
    } else {
        return None;
    };
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let lower = path.to_ascii_lowercase();
    let dotted = lower
        .split('/')
        .any(|seg| matches!(seg.replace("%2e", ".").as_str(), "." | ".."));
    if path.contains('\\') || dotted || !path.starts_with(scope.prefix()) {
        return None;
    }
    Some(path.to_owned())
}
