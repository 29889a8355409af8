//! The one normalisation of a published route's request path, and the route's globs.
//!
//! A request path is decoded once and cleaned once; the allowlist is matched against the
//! result, and the device receives exactly that result (re-encoded). So no spelling of a
//! path (`%61dmin`, `/approve/../admin`, `/approve%2f..%2fadmin`, `\`, `//`) can match a
//! glob as one path and reach the device as another.
//!
//! Must never: pass a path whose decoded form still holds a `%` (double encoding: a
//! device that decodes again would see another path), a control byte, bytes that are not
//! UTF-8 (overlong `%c0%ae` is `.` to some servers), or a segment a server could read as
//! a dot segment (`..;`, `.. `, `...`, full-width dots).

use std::fmt;

/// Why a request path is refused (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadPath {
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// A `%` left after decoding: the path was encoded twice.
    DoubleEncoded,
    /// A control byte (NUL, CR, LF, …), raw or encoded.
    Control,
    /// A segment of dots with something a server may strip (`..;x`, `.. `, `...`).
    DotSegment,
    /// Not UTF-8 once decoded (overlong forms of `.` and `/` among them), or holding a
    /// character some servers fold into a dot (U+FF0E, U+2024, U+FE52).
    NotText,
    /// Longer than [`MAX_PATH`].
    TooLong,
}

impl fmt::Display for BadPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BadPath::BadEscape => "a % in the path is not followed by two hex digits",
            BadPath::DoubleEncoded => "the path is percent-encoded twice",
            BadPath::Control => "the path holds a control character",
            BadPath::DotSegment => "the path holds a disguised dot segment",
            BadPath::NotText => "the path is not plain UTF-8 text",
            BadPath::TooLong => "the path is too long",
        })
    }
}

/// Longest request path taken, in bytes as received and as sent to the device.
pub const MAX_PATH: usize = 8 * 1024;

/// A normalised path: `decoded` is matched against the globs; `encoded` is what the
/// device receives (the same path, percent-encoded where a URL needs it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized {
    pub decoded: Vec<u8>,
    pub encoded: String,
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `raw` (a request path, without query) once, reads `\` as `/`, drops empty and
/// `.` segments, resolves `..` (never above the root), and keeps a trailing slash.
pub fn normalize(raw: &str) -> Result<Normalized, BadPath> {
    if raw.len() > MAX_PATH {
        return Err(BadPath::TooLong);
    }
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = match bytes[i] {
            b'%' => {
                let (Some(h), Some(l)) = (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err(BadPath::BadEscape);
                };
                i += 2;
                let b = h << 4 | l;
                if b == b'%' {
                    return Err(BadPath::DoubleEncoded);
                }
                b
            }
            b => b,
        };
        if b < 0x20 || b == 0x7f {
            return Err(BadPath::Control);
        }
        decoded.push(if b == b'\\' { b'/' } else { b });
        i += 1;
    }
    match std::str::from_utf8(&decoded) {
        Ok(text) if !text.contains(['\u{ff0e}', '\u{2024}', '\u{fe52}']) => {}
        _ => return Err(BadPath::NotText),
    }
    let mut segments: Vec<&[u8]> = Vec::new();
    let mut trailing = false;
    for seg in decoded.split(|&b| b == b'/') {
        trailing = false;
        match seg {
            b"" => trailing = true,
            b"." => trailing = true,
            b".." => {
                segments.pop();
                trailing = true;
            }
            s if disguised_dots(s) => return Err(BadPath::DotSegment),
            s => segments.push(s),
        }
    }
    let mut out = Vec::with_capacity(decoded.len() + 1);
    for s in &segments {
        out.push(b'/');
        out.extend_from_slice(s);
    }
    if segments.is_empty() || trailing {
        out.push(b'/');
    }
    let encoded = encode(&out);
    // Encoding can triple a path: what the device receives is held to the limit too (and
    // so a normalised path is always accepted again).
    if encoded.len() > MAX_PATH {
        return Err(BadPath::TooLong);
    }
    Ok(Normalized {
        decoded: out,
        encoded,
    })
}

/// A segment some server reads as `.` or `..` though it is neither: dots followed by
/// `;` (Tomcat's path parameters), or dots and spaces only (Windows trims them).
fn disguised_dots(seg: &[u8]) -> bool {
    let head = seg.split(|&b| b == b';').next().unwrap_or_default();
    let only_dots = |s: &[u8]| !s.is_empty() && s.iter().all(|&b| b == b'.' || b == b' ');
    (head != seg && only_dots(head))
        || (only_dots(seg) && seg.contains(&b'.') && seg != b"." && seg != b"..")
}

/// Percent-encodes what a path may not hold as is: everything but RFC 3986's unreserved
/// characters, sub-delimiters, `:`, `@` and `/`.
fn encode(path: &[u8]) -> String {
    const KEEP: &[u8] = b"-._~!$&'()*+,;=:@/";
    let mut out = String::with_capacity(path.len());
    for &b in path {
        if b.is_ascii_alphanumeric() || KEEP.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Whether `glob` is one a route may be published with: a clean absolute path, `*` only
/// as a whole last segment (`/approve/*`), at most 256 bytes.
pub fn valid_glob(glob: &str) -> bool {
    const KEEP: &[u8] = b"-._~!$&'()+,;=:@";
    let Some(body) = glob.strip_prefix('/') else {
        return false;
    };
    if glob.len() > 256 {
        return false;
    }
    let body = body.strip_suffix('*').unwrap_or(body);
    if glob.ends_with('*') && !glob.ends_with("/*") {
        return false;
    }
    let mut segments = body.split('/').peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        if seg.is_empty() && !last {
            return false;
        }
        if seg == "." || seg == ".." || disguised_dots(seg.as_bytes()) {
            return false;
        }
        if !seg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || KEEP.contains(&b))
        {
            return false;
        }
    }
    true
}

/// Whether the normalised path `path` is one `glob` allows: `/x/*` allows every path
/// under `/x/` (`/x/` itself included, `/x` not); any other glob only itself.
pub fn matches(glob: &str, path: &[u8]) -> bool {
    match glob.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix.as_bytes()),
        None => path == glob.as_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(p: &str) -> Result<String, BadPath> {
        normalize(p).map(|n| n.encoded)
    }

    #[test]
    fn every_spelling_of_a_path_normalises_to_one() {
        for (raw, want) in [
            ("/", "/"),
            ("", "/"),
            ("/approve/abc", "/approve/abc"),
            ("/approve/abc/", "/approve/abc/"),
            ("/approve/../admin", "/admin"),
            ("/approve/./x", "/approve/x"),
            ("/approve/x/.", "/approve/x/"),
            ("/approve/x/..", "/approve/"),
            ("/%61dmin", "/admin"),
            ("/approve%2f..%2fadmin", "/admin"),
            ("/approve%2F..%2Fadmin", "/admin"),
            ("/approve/%2e%2e/admin", "/admin"),
            ("/approve/.%2E/admin", "/admin"),
            ("//admin", "/admin"),
            ("/approve//x", "/approve/x"),
            ("/approve\\..\\admin", "/admin"),
            ("/approve%5c..%5cadmin", "/admin"),
            ("/../../../admin", "/admin"),
            ("/a b", "/a%20b"),
            ("/a%20b", "/a%20b"),
            ("/q%3Fx", "/q%3Fx"),
            ("/h%23x", "/h%23x"),
            ("/caf%C3%A9", "/caf%C3%A9"),
            ("/a;b=c", "/a;b=c"),
        ] {
            assert_eq!(norm(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        for (raw, why) in [
            ("/approve/%252e%252e/admin", BadPath::DoubleEncoded),
            ("/approve/%25", BadPath::DoubleEncoded),
            ("/approve/%2", BadPath::BadEscape),
            ("/approve/%zz", BadPath::BadEscape),
            ("/approve/%00", BadPath::Control),
            ("/approve/%0d%0aX: y", BadPath::Control),
            ("/approve/x\u{7f}", BadPath::Control),
            ("/approve/..;/admin", BadPath::DotSegment),
            ("/approve/.;x/admin", BadPath::DotSegment),
            ("/approve/.. /admin", BadPath::DotSegment),
            ("/approve/.../admin", BadPath::DotSegment),
            ("/approve/%2e%2e%3b/admin", BadPath::DotSegment),
            ("/approve/%c0%ae%c0%ae/admin", BadPath::NotText),
            ("/approve/%ef%bc%8e%ef%bc%8e/admin", BadPath::NotText),
            ("/approve/\u{2024}\u{2024}/admin", BadPath::NotText),
            ("/%ff", BadPath::NotText),
        ] {
            assert_eq!(norm(raw), Err(why), "{raw}");
        }
        assert_eq!(norm(&"/a".repeat(MAX_PATH)), Err(BadPath::TooLong));
        // Short enough as received, too long once encoded for the device.
        assert_eq!(norm(&"/é".repeat(MAX_PATH / 6)), Err(BadPath::TooLong));
        // Dots inside a name are names.
        assert_eq!(norm("/approve/a..b/.x").as_deref(), Ok("/approve/a..b/.x"));
    }

    #[test]
    fn normalising_twice_changes_nothing() {
        for raw in ["/approve/../admin", "/a b/%C3%A9", "/x/./y//z/", "/%3F%23"] {
            let once = norm(raw).unwrap();
            assert_eq!(norm(&once).unwrap(), once, "{raw}");
        }
    }

    #[test]
    fn globs_allow_what_they_name_and_nothing_else() {
        let m = |g: &str, p: &str| matches(g, &normalize(p).unwrap().decoded);
        assert!(m("/approve/*", "/approve/abc"));
        assert!(m("/approve/*", "/approve/a/b"));
        assert!(m("/approve/*", "/approve/"));
        assert!(!m("/approve/*", "/approve"));
        assert!(!m("/approve/*", "/approvex"));
        assert!(!m("/approve/*", "/approve/../admin"));
        assert!(!m("/approve/*", "/approve%2f..%2fadmin"));
        assert!(!m("/approve/*", "/%61dmin"));
        assert!(m("/approve/*", "/%61pprove/x"));
        assert!(m("/status", "/status"));
        assert!(!m("/status", "/status/"));
        assert!(!m("/status", "/status/x"));
        assert!(m("/*", "/anything/at/all"));
    }

    #[test]
    fn only_clean_globs_can_be_published() {
        for ok in [
            "/",
            "/*",
            "/approve/*",
            "/status",
            "/a/b/c",
            "/api/v1/quote:approve",
        ] {
            assert!(valid_glob(ok), "{ok}");
        }
        for bad in [
            "",
            "approve/*",
            "/approve*",
            "/ap*ve",
            "/*/x",
            "/approve/../admin",
            "/./x",
            "//x",
            "/a//b",
            "/%61",
            "/a b",
            "/a\\b",
            "/a?x",
            "/a#x",
            "/..;/x",
        ] {
            assert!(!valid_glob(bad), "{bad}");
        }
        assert!(!valid_glob(&format!("/{}", "a".repeat(256))));
    }
}
