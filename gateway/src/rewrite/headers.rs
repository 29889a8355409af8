//! Response headers that carry device URLs or device-scoped cookies.
//! (`Location` and `Content-Location` are plain URLs: [`Scope::url`].)

use super::Scope;

/// `Refresh: 5; url=/x` (also `<meta http-equiv=refresh content=…>`): rewrites the URL
/// part; `None` when nothing changes.
pub fn refresh(scope: &Scope, value: &str) -> Option<String> {
    let lower = value.to_ascii_lowercase();
    let at = lower.find("url")?;
    let after = value[at + 3..].trim_start();
    let after = after.strip_prefix('=')?.trim_start();
    let (quote, url) = match after.chars().next() {
        Some(q @ ('"' | '\'')) => (Some(q), &after[1..]),
        _ => (None, after),
    };
    let url = match quote {
        Some(q) => url.split(q).next().unwrap_or_default(),
        None => url.trim_end(),
    };
    let new = scope.url(url)?;
    let start = value.len() - after.len() + usize::from(quote.is_some());
    Some(format!(
        "{}{}{}",
        &value[..start],
        new,
        &value[start + url.len()..]
    ))
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
