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

/// `Set-Cookie`: the cookie is scoped to the session prefix (`Path=/x` → `/remote/s/{sid}/x`,
/// no or relative `Path` → the prefix) and its `Domain` is dropped, so it never reaches
/// another session or the gateway's own paths. `None` for a header that does not parse:
/// a cookie the gateway cannot scope is not passed on.
pub fn set_cookie(scope: &Scope, value: &str) -> Option<String> {
    let mut cookie = cookie::Cookie::parse(value).ok()?;
    let path = match cookie.path() {
        Some(p) if p.starts_with('/') && scope.is_prefixed(p) => p.to_owned(),
        Some(p) if p.starts_with('/') => format!("{}{}", scope.prefix(), &p[1..]),
        _ => scope.prefix().to_owned(),
    };
    cookie.set_path(path);
    cookie.unset_domain();
    Some(cookie.to_string())
}
