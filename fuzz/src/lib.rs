//! Oracles shared by the rewriter fuzz targets: what a browser makes of the rewriters'
//! output, read with parsers that share no code with the rewriters (the WHATWG URL parser
//! of the `url` crate, html5ever's tree builder, cssparser's tokenizer).
//!
//! The property (issue 15, item 9): every URL the output holds stays under the session
//! prefix or is off-device. Classified as the design (../shared/DESIGN.md, "Rewriting")
//! has it:
//! - names a host of its own (`scheme://host`, `//host`, as the browser parses it): off
//!   the gateway. The device's own host here is a [`Gap`] (the rewriter should have mapped
//!   it), never an escape: the browser then talks to the LAN address, not the gateway.
//!   Another host — the gateway's public name included, which the rewriter cannot know —
//!   is left alone by design.
//! - path-relative (`x.html`, `../x`, `?q`): kept by design ("relative kept").
//! - anything else resolves on the gateway's origin from the page (`/x`, `\x`, `https:/x`,
//!   `&#47;x`, `/../x`, `url(\2f x)`…): its path must stay under `/remote/s/{sid}/`.
//!   Outside it, the page reaches the gateway's root or another session: an [`Escape`].
//! - other schemes (`javascript:`, `data:`, `mailto:`, `blob:`): off-device.
//!
//! An escape panics (libFuzzer reports a crash); gaps are counted and, with
//! `PONTE_FUZZ_GAPS=1`, printed.

use std::sync::atomic::{AtomicU64, Ordering};
use url::Url;

pub use ponte_gateway::rewrite;

/// The session the targets rewrite for.
pub const SID: &str = "3f2b8c1e-0000-4000-8000-00000000abcd";
/// The device, as its equipment's `localBaseUrl`.
pub const DEVICE_BASE: &str = "http://192.168.1.50";
const DEVICE_HOST: &str = "192.168.1.50";
/// The page being rewritten, as the browser sees it on the gateway, and the same page on
/// a gateway of another name (a URL that resolves to the same host from both named its
/// host itself). Over `https:` and over plain `http:` (a gateway behind no TLS): the
/// rewriter cannot know which, and `http:/x` is `/x` from the second.
const DOCS: [(&str, &str); 2] = [
    (
        "https://gw.test/remote/s/3f2b8c1e-0000-4000-8000-00000000abcd/pt_BR/index.html",
        "https://elsewhere.test/remote/s/3f2b8c1e-0000-4000-8000-00000000abcd/pt_BR/index.html",
    ),
    (
        "http://gw.test/remote/s/3f2b8c1e-0000-4000-8000-00000000abcd/pt_BR/index.html",
        "http://elsewhere.test/remote/s/3f2b8c1e-0000-4000-8000-00000000abcd/pt_BR/index.html",
    ),
];

pub fn prefix() -> String {
    format!("/remote/s/{SID}/")
}

pub fn scope() -> rewrite::Scope {
    rewrite::Scope::new(SID, DEVICE_BASE)
}

/// What a URL in the output is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Under the session prefix.
    Prefixed,
    /// Path-relative: kept by design.
    Relative,
    /// Another host, another scheme, or not a URL at all (the browser fails it).
    OffDevice,
    /// Names the device's host: the browser goes to the LAN address.
    Gap(&'static str),
    /// On the gateway's origin, outside the prefix.
    Escape(String),
}

/// The verdict from the `https:` page, unless the `http:` one sees an escape.
pub fn classify(raw: &str) -> Verdict {
    let [https, http] = bases();
    match classify_from(http, raw) {
        escape @ Verdict::Escape(_) => escape,
        _ => classify_from(https, raw),
    }
}

fn classify_from((doc, elsewhere): &(Url, Url), raw: &str) -> Verdict {
    let Ok(here) = doc.join(raw) else {
        return Verdict::OffDevice;
    };
    if !matches!(here.scheme(), "http" | "https" | "ws" | "wss") {
        return Verdict::OffDevice;
    }
    let named_host = elsewhere
        .join(raw)
        .is_ok_and(|there| there.host_str() == here.host_str());
    if named_host {
        let device =
            here.host_str() == Some(DEVICE_HOST) && here.port_or_known_default() == Some(80);
        return if device {
            Verdict::Gap("device URL left as it is")
        } else {
            Verdict::OffDevice
        };
    }
    if is_path_relative(raw, doc.scheme()) {
        return Verdict::Relative;
    }
    let path = here.path();
    let prefix = prefix();
    if path.starts_with(&prefix) || path == &prefix[..prefix.len() - 1] {
        Verdict::Prefixed
    } else {
        Verdict::Escape(format!("{raw:?} resolves to {here}"))
    }
}

fn bases() -> &'static [(Url, Url); 2] {
    use std::sync::OnceLock;
    static BASES: OnceLock<[(Url, Url); 2]> = OnceLock::new();
    BASES.get_or_init(|| DOCS.map(|(a, b)| (Url::parse(a).unwrap(), Url::parse(b).unwrap())))
}

/// Path-relative as the WHATWG parser reads it from a page of `scheme`: after trimming
/// C0 controls and spaces and dropping tabs and newlines, neither a scheme other than the
/// page's, nor a leading `/` or `\` (after the page's own scheme, if named).
fn is_path_relative(raw: &str, scheme: &str) -> bool {
    let s: String = raw
        .trim_matches(|c: char| c <= ' ')
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect();
    let rest = match scheme_end(&s) {
        Some(i) if s[..i].eq_ignore_ascii_case(scheme) => &s[i + 1..],
        Some(_) => return false,
        None => &s,
    };
    !rest.starts_with(['/', '\\'])
}

/// The index of the `:` ending a URL scheme, if `s` starts with one.
fn scheme_end(s: &str) -> Option<usize> {
    let mut chars = s.char_indices();
    if !chars.next()?.1.is_ascii_alphabetic() {
        return None;
    }
    for (i, c) in chars {
        match c {
            ':' => return Some(i),
            c if c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.') => {}
            _ => return None,
        }
    }
    None
}

static GAPS: AtomicU64 = AtomicU64::new(0);

/// Panics on an escape; counts (and with `PONTE_FUZZ_GAPS=1` prints) gaps.
pub fn check(what: &str, raw: &str) {
    match classify(raw) {
        Verdict::Escape(detail) => panic!("{what}: URL escapes the session prefix: {detail}"),
        Verdict::Gap(kind) => gap(what, kind, raw),
        _ => {}
    }
}

/// Records a gap: something the design says is rewritten that was not, harmless to the
/// gateway (see [`Verdict::Gap`]).
pub fn gap(what: &str, kind: &str, raw: &str) {
    let n = GAPS.fetch_add(1, Ordering::Relaxed);
    if std::env::var_os("PONTE_FUZZ_GAPS").is_some() && n < 1000 {
        eprintln!("gap: {what}: {kind}: {raw:?}");
    }
}

/// The URLs of a `srcset` (HTML's "parse a srcset attribute").
pub fn srcset_urls(value: &str) -> Vec<&str> {
    let ws = |c: char| matches!(c, '\t' | '\n' | '\x0c' | '\r' | ' ');
    let mut urls = Vec::new();
    let mut rest = value;
    loop {
        rest = rest.trim_start_matches(|c: char| ws(c) || c == ',');
        if rest.is_empty() {
            return urls;
        }
        let end = rest.find(ws).unwrap_or(rest.len());
        let url = &rest[..end];
        rest = &rest[end..];
        let trimmed = url.trim_end_matches(',');
        urls.push(trimmed);
        if trimmed.len() < url.len() {
            continue;
        }
        // Descriptors, up to a comma outside parentheses.
        let mut depth = 0u32;
        let end = rest
            .char_indices()
            .find(|&(_, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth = depth.saturating_sub(1),
                    ',' if depth == 0 => return true,
                    _ => {}
                }
                false
            })
            .map_or(rest.len(), |(i, _)| i);
        rest = &rest[end..];
    }
}

/// The URL of a `Refresh` value or `<meta http-equiv=refresh content>` (HTML's "parse a
/// refresh value"); `None` when there is none or the value fails.
pub fn refresh_url(input: &str) -> Option<&str> {
    let ws = |c: char| matches!(c, '\t' | '\n' | '\x0c' | '\r' | ' ');
    let s = input.trim_start_matches(ws);
    let digits = s.len() - s.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 && !s[digits..].starts_with('.') {
        return None;
    }
    let s = s.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.');
    if s.is_empty() {
        return None;
    }
    if !s.starts_with(|c: char| c == ';' || c == ',' || ws(c)) {
        return None;
    }
    let s = s.trim_start_matches(ws);
    let s = s.strip_prefix([';', ',']).unwrap_or(s);
    let s = s.trim_start_matches(ws);
    if s.is_empty() {
        return None;
    }
    let url_string = s;
    let mut p = s;
    if let Some(r) = p.strip_prefix(['u', 'U']) {
        p = r;
    } else {
        return Some(skip_quotes(p));
    }
    let Some(r) = p.strip_prefix(['r', 'R']) else {
        return Some(url_string);
    };
    let Some(r) = r.strip_prefix(['l', 'L']) else {
        return Some(url_string);
    };
    let r = r.trim_start_matches(ws);
    let Some(r) = r.strip_prefix('=') else {
        return Some(url_string);
    };
    Some(skip_quotes(r.trim_start_matches(ws)))
}

fn skip_quotes(p: &str) -> &str {
    match p.chars().next() {
        Some(q @ ('\'' | '"')) => {
            let p = &p[1..];
            p.split(q).next().unwrap_or(p)
        }
        _ => p,
    }
}

/// The URLs a browser fetches from CSS text (a stylesheet or a `style=` value):
/// `url(…)` in any spelling (escapes decoded), `@import "…"`, and the strings of
/// `image-set()` (reported apart: the second list).
pub fn css_urls(css: &str) -> (Vec<String>, Vec<String>) {
    STOP.set(false);
    let mut parser = cssparser::Parser::new(css);
    let mut urls = (Vec::new(), Vec::new());
    walk_css(&mut parser, &mut urls, 0);
    urls
}

thread_local! {
    /// Set when cssparser's reading of a stylesheet parts from a browser's (see
    /// [`walk_css`]); reset for each stylesheet.
    static STOP: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn walk_css(p: &mut cssparser::Parser<'_>, urls: &mut (Vec<String>, Vec<String>), depth: u32) {
    use cssparser::{ParseError, Token};
    let mut import = false;
    while let Ok(token) = p.next_including_whitespace_and_comments() {
        if STOP.get() {
            return;
        }
        let token = token.clone();
        match &token {
            Token::WhiteSpace(_) | Token::Comment(_) => continue,
            // cssparser ends `url(a \)…` at that `)`: after whitespace it takes the `\`
            // alone, where CSS Syntax (and Chromium) read `\)` as an escape and go on to
            // the next `)`. Past it the two disagree on every token, so the check stops
            // there rather than judge the rewriter by cssparser's reading.
            Token::BadUrl(b) if (b.len() - b.trim_end_matches('\\').len()) % 2 == 1 => {
                gap(
                    "stylesheet",
                    "cssparser reads `url(x \\)` unlike browsers",
                    b,
                );
                STOP.set(true);
                return;
            }
            Token::UnquotedUrl(u) => urls.0.push(u.to_string()),
            Token::QuotedString(s) if import => urls.0.push(s.to_string()),
            Token::Function(_)
            | Token::ParenthesisBlock
            | Token::SquareBracketBlock
            | Token::CurlyBracketBlock
                if depth < 64 =>
            {
                let name = match &token {
                    Token::Function(n) => n.to_ascii_lowercase(),
                    _ => String::new(),
                };
                let _ = p.parse_nested_block(|p| {
                    if name == "url" {
                        // `url("x")`: its first token only. A browser fetches nothing for
                        // `url("" "/x")` (CSS Values: `url( <string> <url-modifier>* )`,
                        // modifiers are no strings), so a second string is no URL.
                        if let Ok(Token::QuotedString(s)) = p.next() {
                            urls.0.push(s.to_string());
                        }
                    } else if name == "image-set" || name == "-webkit-image-set" {
                        while let Ok(t) = p.next() {
                            if let Token::QuotedString(s) = t {
                                urls.1.push(s.to_string());
                            }
                        }
                    } else {
                        walk_css(p, urls, depth + 1);
                    }
                    Ok::<(), ParseError<()>>(())
                });
            }
            _ => {}
        }
        import = matches!(&token, Token::AtKeyword(k) if k.eq_ignore_ascii_case("import"));
    }
}

/// Checks every URL in CSS text.
pub fn check_css(what: &str, css: &str) {
    let (urls, image_set) = css_urls(css);
    for u in &urls {
        check(what, u);
    }
    for u in &image_set {
        if let Verdict::Escape(detail) = classify(u) {
            gap(what, "image-set() string not rewritten", &detail);
        }
    }
}

/// A deterministic sequence of chunk lengths (1..=max) from `seed`: the gateway feeds
/// bodies as they arrive, cut anywhere.
pub struct Cuts(u32);

impl Cuts {
    pub fn new(seed: u32) -> Self {
        Self(seed | 1)
    }

    pub fn next(&mut self, max: usize) -> usize {
        // xorshift32
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        // Mostly small cuts (they split tokens), sometimes large ones.
        let max = max.max(1);
        let n = if x & 7 == 0 { x >> 3 } else { (x >> 3) % 16 } as usize;
        1 + n % max
    }
}

/// How many times `needle` occurs in `hay`.
pub fn count(hay: &[u8], needle: &[u8]) -> usize {
    if needle.is_empty() || hay.len() < needle.len() {
        return 0;
    }
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

pub mod html;
