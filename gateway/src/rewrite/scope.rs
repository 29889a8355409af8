//! Which URLs belong to the device, and how they map under the session prefix.

/// A session's rewriting scope: its prefix (`/remote/s/{sid}/`) and the authorities
/// (`host` or `host:port`, lower case) under which the device knows itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    prefix: String,
    authorities: Vec<String>,
    /// `scheme://authority` of the device, without a trailing slash.
    origin: String,
}

impl Scope {
    /// `session_id` must be URL-safe (the API makes UUIDs); `device_base` is the
    /// equipment's `localBaseUrl` (`http://192.168.1.50`, `https://catraca.lan:8443/`).
    pub fn new(session_id: &str, device_base: &str) -> Self {
        Self::with_prefix(format!("/remote/s/{session_id}/"), device_base)
    }

    /// Host mode: the session has an origin of its own (`s-{sid}.<remote domain>`), so
    /// its prefix is `/`. Root-relative URLs stay as they are; the device's absolute ones
    /// still become root-relative.
    pub fn host(device_base: &str) -> Self {
        Self::with_prefix("/".to_owned(), device_base)
    }

    fn with_prefix(prefix: String, device_base: &str) -> Self {
        let mut authorities = Vec::new();
        let mut origin = String::new();
        if let Some((scheme, rest)) = device_base.split_once("://") {
            let authority = rest
                .split(['/', '?', '#'])
                .next()
                .unwrap_or_default()
                .rsplit('@')
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            origin = format!("{}://{authority}", scheme.to_ascii_lowercase());
            let default_port = if scheme.eq_ignore_ascii_case("https") {
                "443"
            } else {
                "80"
            };
            match split_port(&authority) {
                (host, Some(port)) if port == default_port => {
                    authorities.push(host.to_owned());
                    authorities.push(authority.clone());
                }
                (host, None) => {
                    authorities.push(host.to_owned());
                    authorities.push(format!("{host}:{default_port}"));
                }
                _ => authorities.push(authority.clone()),
            }
        }
        authorities.retain(|a| !a.is_empty());
        Self {
            prefix,
            authorities,
            origin,
        }
    }

    /// `/remote/s/{sid}/` (`/` in host mode), with its trailing slash.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `scheme://host[:port]` of the device.
    pub fn device_origin(&self) -> &str {
        &self.origin
    }

    /// A gateway path back to the device's: `/remote/s/{sid}/x?y` → `/x?y`; `None` when
    /// the path is not under this session's prefix.
    pub fn device_path<'a>(&self, path: &'a str) -> Option<std::borrow::Cow<'a, str>> {
        let bare = &self.prefix[..self.prefix.len() - 1];
        let rest = path.strip_prefix(bare)?;
        match rest.chars().next() {
            None => Some("/".into()),
            Some('/') => Some(rest.into()),
            Some('?' | '#') => Some(format!("/{rest}").into()),
            Some(_) => None,
        }
    }

    /// The authorities that name the device (for the injected script).
    pub fn authorities(&self) -> &[String] {
        &self.authorities
    }

    /// True when `authority` (`host[:port]`, any case, userinfo allowed) is the device.
    pub fn is_device(&self, authority: &str) -> bool {
        let authority = authority.rsplit('@').next().unwrap_or_default();
        self.authorities
            .iter()
            .any(|a| a.eq_ignore_ascii_case(authority))
    }

    /// True when a path already carries this session's prefix.
    pub fn is_prefixed(&self, path: &str) -> bool {
        let bare = &self.prefix[..self.prefix.len() - 1];
        path.starts_with(&self.prefix)
            || path == bare
            || path
                .strip_prefix(bare)
                .is_some_and(|rest| rest.starts_with(['?', '#']))
    }

    /// Rewrites one URL as found in a header or attribute; `None` when it stays as it is
    /// (relative, fragment, another host, `javascript:`, `data:`, already prefixed).
    /// Surrounding whitespace (legal in HTML attributes) is dropped from a rewritten URL.
    pub fn url(&self, raw: &str) -> Option<String> {
        let mut out = String::new();
        self.url_into(raw, &mut out).then_some(out)
    }

    /// [`Scope::url`], appending the new URL to `out`; false (`out` untouched) when the
    /// URL stays as it is.
    pub(crate) fn url_into(&self, raw: &str, out: &mut String) -> bool {
        let s = raw.trim_matches(|c: char| c.is_ascii_whitespace());
        let tail = if let Some(rest) = s.strip_prefix("//") {
            let (authority, tail) = split_authority(rest);
            if !self.is_device(authority) {
                return false;
            }
            tail
        } else if s.starts_with('/') {
            if self.is_prefixed(s) {
                // Already ours, unless dot segments climb out of the prefix
                // (`P/../other/x`): then it is what the browser would ask for.
                match without_dots(s) {
                    Some(clean) if !self.is_prefixed(&clean) => {
                        out.push_str(&self.prefix);
                        out.push_str(&clean[1..]);
                        return true;
                    }
                    _ => return false,
                }
            }
            s
        } else {
            // `split_once("://")` builds a substring searcher per call; a scheme has no
            // `:`, so the first one decides.
            let Some((scheme, rest)) = s.split_once(':') else {
                return false;
            };
            let Some(rest) = rest.strip_prefix("//") else {
                return false;
            };
            if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
                return false;
            }
            let (authority, tail) = split_authority(rest);
            if !self.is_device(authority) {
                return false;
            }
            tail
        };
        // `tail` is empty or starts with `/`, `?` or `#`. Its dot segments are resolved
        // as the device would (never above its root): under the prefix the browser would
        // resolve `/../x` to outside it.
        out.push_str(&self.prefix);
        match without_dots(tail) {
            Some(clean) => out.push_str(&clean[1..]),
            None => out.push_str(tail.strip_prefix('/').unwrap_or(tail)),
        }
        true
    }
}

/// `path[?query][#fragment]` (starting with `/`) with its dot segments resolved as a
/// browser resolves them for `http:` URLs (`\` separates like `/`, `%2e` is a dot, tabs
/// and newlines are ignored), never above the root; `None` when it has none.
fn without_dots(s: &str) -> Option<String> {
    // One pass up to the query or fragment, nothing allocated: most URLs have no dot
    // segment, and this runs on every URL rewritten.
    let b = s.as_bytes();
    if !matches!(b.first(), Some(b'/' | b'\\')) {
        return None;
    }
    let mut start = 1;
    let mut found = false;
    let mut end = b.len();
    for (i, &c) in b.iter().enumerate().skip(1) {
        if matches!(c, b'/' | b'\\' | b'?' | b'#') {
            found = found || maybe_dot(s, start, i);
            if matches!(c, b'?' | b'#') {
                end = i;
                break;
            }
            start = i + 1;
        }
    }
    if end == b.len() {
        found = found || maybe_dot(s, start, end);
    }
    if !found {
        return None;
    }
    let (path, rest) = s.split_at(end);
    let segments: Vec<&str> = path.split(['/', '\\']).skip(1).collect();
    let mut kept: Vec<&str> = Vec::new();
    let last = segments.len() - 1;
    for (i, seg) in segments.iter().enumerate() {
        match dot(seg) {
            Some(n) => {
                if n == 2 {
                    kept.pop();
                }
                // `/a/..` is `/`: a directory, so the trailing slash stays.
                if i == last {
                    kept.push("");
                }
            }
            None => kept.push(seg),
        }
    }
    let mut clean = String::with_capacity(s.len());
    for seg in &kept {
        clean.push('/');
        clean.push_str(seg);
    }
    if clean.is_empty() {
        clean.push('/');
    }
    clean.push_str(rest);
    Some(clean)
}

/// `s[start..end]` is a dot segment (only one starting with a dot, `%` or a tab can be).
fn maybe_dot(s: &str, start: usize, end: usize) -> bool {
    s.as_bytes()
        .get(start)
        .is_some_and(|c| matches!(c, b'.' | b'%' | b'\t' | b'\n' | b'\r'))
        && start < end
        && dot(&s[start..end]).is_some()
}

/// `Some(1)` for a `.` segment, `Some(2)` for `..`, as a browser reads them: tabs and
/// newlines ignored, `%2e` (any case) a dot. Allocates nothing: this runs on every URL.
fn dot(seg: &str) -> Option<u8> {
    // The longest dot segment is `%2e%2e`.
    let mut buf = [0u8; 6];
    let mut n = 0;
    for b in seg.bytes() {
        if matches!(b, b'\t' | b'\n' | b'\r') {
            continue;
        }
        *buf.get_mut(n)? = b.to_ascii_lowercase();
        n += 1;
    }
    match &buf[..n] {
        b"." | b"%2e" => Some(1),
        b".." | b".%2e" | b"%2e." | b"%2e%2e" => Some(2),
        _ => None,
    }
}

/// `host:port/x?y` → (`host:port`, `/x?y`).
fn split_authority(s: &str) -> (&str, &str) {
    let end = s.find(['/', '?', '#', '\\']).unwrap_or(s.len());
    s.split_at(end)
}

/// `host:80` → (`host`, Some("80")); `[::1]:80` → (`[::1]`, Some("80")); `host` → (host, None).
fn split_port(authority: &str) -> (&str, Option<&str>) {
    match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => (&authority[..i], Some(&authority[i + 1..])),
        _ => (authority, None),
    }
}

#[cfg(test)]
mod tests {
    /// [`super::dot`] reads segments as the allocating version it replaced did.
    #[test]
    fn dot_segments_as_before() {
        let before = |seg: &str| {
            let seg: String = seg
                .chars()
                .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
                .collect::<String>()
                .to_ascii_lowercase()
                .replace("%2e", ".");
            match seg.as_str() {
                "." => Some(1),
                ".." => Some(2),
                _ => None,
            }
        };
        let alphabet = [
            ".", "%", "2", "e", "E", "%2e", "%2E", "\t", "\n", "a", "\u{e9}",
        ];
        let mut segs = vec![String::new()];
        for _ in 0..4 {
            let longer: Vec<String> = segs
                .iter()
                .flat_map(|s| alphabet.iter().map(move |a| format!("{s}{a}")))
                .collect();
            segs.extend(longer);
            segs.dedup();
        }
        for seg in &segs {
            assert_eq!(super::dot(seg), before(seg), "{seg:?}");
            for path in [
                format!("/{seg}"),
                format!("/a/{seg}/b"),
                format!("\\x\\{seg}"),
                format!("/{seg}?/../x"),
                format!("/{seg}#q"),
            ] {
                let p = &path[..path.find(['?', '#']).unwrap_or(path.len())];
                let any = p.split(['/', '\\']).skip(1).any(|s| before(s).is_some());
                assert_eq!(super::without_dots(&path).is_some(), any, "{path:?}");
            }
        }
    }
}
