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
    ///
    /// The URL is read as a browser's WHATWG URL parser reads it from an `http:` or
    /// `https:` page: leading and trailing C0 controls and spaces dropped, tabs and
    /// newlines removed anywhere, `\` a slash, any run of two or more slashes starting an
    /// authority (`//h`, `\\h`, `https:///h`), and `https:/x` (one slash after the page's
    /// own scheme) the root-relative `/x`. What resolves on the gateway's origin outside
    /// the prefix is rewritten; a rewritten URL is written as the browser would read it.
    pub(crate) fn url_into(&self, raw: &str, out: &mut String) -> bool {
        let trimmed = raw.trim_matches(|c: char| c <= ' ');
        let owned;
        let s = if trimmed.contains(['\t', '\n', '\r']) {
            owned = trimmed.replace(['\t', '\n', '\r'], "");
            owned.as_str()
        } else {
            trimmed
        };
        let rest = match scheme_end(s) {
            Some(i) if is_http(&s[..i]) => &s[i + 1..],
            // `javascript:`, `data:`, `mailto:`, `ws:`…: not the gateway's.
            Some(_) => return false,
            None => s,
        };
        let path = rest.trim_start_matches(['/', '\\']);
        let tail = match rest.len() - path.len() {
            // `x`, `../x`, `?q`, `#f`: relative to the page, kept by design; `https:x` is
            // too from an `https:` page (and another host from an `http:` one).
            0 => return false,
            // Root-relative: on the gateway's origin. (From a page of the other scheme,
            // `https:/x` is the host `x`: rewritten, it lands in the session instead.)
            1 => {
                let clean = clean_path(rest);
                if self.is_prefixed(&clean) {
                    // Already ours, as the browser reads it (`P/a/../b` too). Dot
                    // segments that climb out (`P/../other/x`) do not get here.
                    return false;
                }
                out.push_str(&self.prefix);
                out.push_str(&clean[1..]);
                return true;
            }
            // An authority: the device's own URLs are mapped, others are left alone.
            _ => {
                let (authority, tail) = split_authority(path);
                if !self.is_device(authority) {
                    return false;
                }
                tail
            }
        };
        // `tail` is empty or starts with `/`, `\`, `?` or `#`. Its dot segments are
        // resolved as the device would (never above its root): under the prefix the
        // browser would resolve `/../x` to outside it.
        out.push_str(&self.prefix);
        if tail.starts_with(['/', '\\']) {
            out.push_str(&clean_path(tail)[1..]);
        } else {
            out.push_str(tail);
        }
        true
    }

    /// Whether a URL starting with `head` (its first part only) could be one
    /// [`Scope::url`] rewrites: false for another scheme (`data:`) or a relative path.
    pub(crate) fn may_rewrite(&self, head: &str) -> bool {
        let s: String = head
            .trim_start_matches(|c: char| c <= ' ')
            .chars()
            .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
            .take(16)
            .collect();
        match scheme_end(&s) {
            Some(i) => is_http(&s[..i]),
            None => s.starts_with(['/', '\\']),
        }
    }
}

/// `http` or `https`, in any case.
fn is_http(scheme: &str) -> bool {
    scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")
}

/// The index of the `:` ending a URL scheme (`ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`),
/// if `s` starts with one.
fn scheme_end(s: &str) -> Option<usize> {
    let mut bytes = s.bytes().enumerate();
    if !bytes.next()?.1.is_ascii_alphabetic() {
        return None;
    }
    for (i, b) in bytes {
        match b {
            b':' => return Some(i),
            b if b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.') => {}
            _ => return None,
        }
    }
    None
}

/// A path-absolute `path[?query][#fragment]` (starting with `/` or `\\`, without tabs or
/// newlines) as a browser requests it for an `http:` URL: `\\` in the path is `/`, and
/// dot segments are resolved, never above the root.
fn clean_path(s: &str) -> std::borrow::Cow<'_, str> {
    if let Some(clean) = without_dots(s) {
        return clean.into();
    }
    let end = s.find(['?', '#']).unwrap_or(s.len());
    if s[..end].contains('\\') {
        format!("{}{}", s[..end].replace('\\', "/"), &s[end..]).into()
    } else {
        s.into()
    }
}

/// `path[?query][#fragment]` (starting with `/`) with its dot segments resolved as a
/// browser resolves them for `http:` URLs (`\` separates like `/`, `%2e` is a dot, tabs
/// and newlines are ignored), never above the root; `None` when it has none.
fn without_dots(s: &str) -> Option<String> {
    let end = s.find(['?', '#']).unwrap_or(s.len());
    let (path, rest) = s.split_at(end);
    let dot = |seg: &str| {
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
    let segments: Vec<&str> = path.split(['/', '\\']).skip(1).collect();
    if !path.starts_with(['/', '\\']) || !segments.iter().any(|seg| dot(seg).is_some()) {
        return None;
    }
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
