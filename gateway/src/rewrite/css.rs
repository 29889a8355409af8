//! Streaming CSS rewriting: `url(…)` and `@import "…"` that point at the device.
//!
//! Works on bytes, so any ASCII-compatible charset passes through untouched. A token
//! split across chunks (`ur` | `l(/x)`) is carried to the next chunk; the carry is capped
//! at [`MAX_CARRY`]: a longer token (a megabyte `data:` URL, say) is passed through
//! unrewritten rather than buffered.

use super::Scope;

/// Longest unfinished token kept between chunks. A device URL is far shorter; what is
/// longer is a `data:` URL or garbage, neither of which is rewritten.
pub const MAX_CARRY: usize = 8 * 1024;

/// Rewrites one stylesheet (or one `<style>` element) fed in chunks.
#[derive(Debug)]
pub struct CssRewriter {
    carry: Vec<u8>,
    /// The byte before `carry` (or before the next chunk), to tell `url(` from `myurl(`.
    prev: u8,
}

impl Default for CssRewriter {
    fn default() -> Self {
        Self::new()
    }
}

impl CssRewriter {
    pub fn new() -> Self {
        Self {
            carry: Vec::new(),
            prev: b' ',
        }
    }

    /// Rewrites `input`, appending to `out` all that can be decided now.
    pub fn push(&mut self, scope: &Scope, input: &[u8], out: &mut Vec<u8>) {
        if self.carry.is_empty() {
            let keep = self.scan(scope, input, false, out);
            self.carry.extend_from_slice(&input[keep..]);
        } else {
            let mut buf = std::mem::take(&mut self.carry);
            buf.extend_from_slice(input);
            let keep = self.scan(scope, &buf, false, out);
            buf.drain(..keep);
            self.carry = buf;
        }
    }

    /// The stylesheet ended: flushes what was carried.
    pub fn finish(&mut self, scope: &Scope, out: &mut Vec<u8>) {
        let buf = std::mem::take(&mut self.carry);
        self.scan(scope, &buf, true, out);
        self.prev = b' ';
    }

    /// Emits `buf` rewritten up to the returned index; the rest must be carried.
    fn scan(&mut self, scope: &Scope, buf: &[u8], last: bool, out: &mut Vec<u8>) -> usize {
        let mut emitted = 0;
        let mut i = 0;
        while i < buf.len() {
            let b = buf[i];
            if !matches!(b, b'u' | b'U' | b'@') {
                i += 1;
                continue;
            }
            let prev = if i == 0 { self.prev } else { buf[i - 1] };
            let token: &[u8] = if b == b'@' { b"@import" } else { b"url(" };
            let rest = &buf[i..];
            let n = rest.len().min(token.len());
            if !rest[..n].eq_ignore_ascii_case(&token[..n]) || (b != b'@' && is_ident(prev)) {
                i += 1;
                continue;
            }
            if n < token.len() {
                // A token cut by the chunk's end.
                if last {
                    break;
                }
                return self.keep(buf, i, emitted, out);
            }
            match parse_target(&buf[i + token.len()..], b == b'@') {
                Target::Url { start, end } => {
                    let (start, end) = (i + token.len() + start, i + token.len() + end);
                    let new = std::str::from_utf8(&buf[start..end])
                        .ok()
                        .and_then(|u| scope.url(u));
                    if let Some(new) = new {
                        out.extend_from_slice(&buf[emitted..start]);
                        out.extend_from_slice(new.as_bytes());
                        emitted = end;
                    }
                    i = end;
                }
                Target::Incomplete if !last && buf.len() - i <= MAX_CARRY => {
                    return self.keep(buf, i, emitted, out);
                }
                // `@import url(…)`: the `url(` is handled on its own.
                Target::Incomplete | Target::None => i += token.len(),
            }
        }
        out.extend_from_slice(&buf[emitted..]);
        if let Some(&b) = buf.last() {
            self.prev = b;
        }
        buf.len()
    }

    fn keep(&mut self, buf: &[u8], at: usize, emitted: usize, out: &mut Vec<u8>) -> usize {
        out.extend_from_slice(&buf[emitted..at]);
        if at > 0 {
            self.prev = buf[at - 1];
        }
        at
    }
}

enum Target {
    /// The URL's bytes, relative to the slice given to [`parse_target`].
    Url { start: usize, end: usize },
    /// Runs past the end of the input.
    Incomplete,
    /// Not a URL after all (`@import` followed by `url(`, or garbage).
    None,
}

/// After `url(` or `@import`: optional whitespace, then a quoted string, or (for `url(`)
/// an unquoted URL up to `)`.
fn parse_target(s: &[u8], import: bool) -> Target {
    let ws = s.iter().take_while(|b| b.is_ascii_whitespace()).count();
    let Some(&q) = s.get(ws) else {
        return Target::Incomplete;
    };
    if q == b'"' || q == b'\'' {
        let start = ws + 1;
        let mut j = start;
        while j < s.len() {
            match s[j] {
                b'\\' => j += 2,
                c if c == q => return Target::Url { start, end: j },
                b'\n' => return Target::None,
                _ => j += 1,
            }
        }
        return Target::Incomplete;
    }
    if import {
        return Target::None;
    }
    let start = ws;
    match s[start..]
        .iter()
        .position(|&b| b == b')' || b.is_ascii_whitespace())
    {
        Some(len) => Target::Url {
            start,
            end: start + len,
        },
        None => Target::Incomplete,
    }
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b >= 0x80
}
