//! URLs in CSS as the browser reads them: where one ends, its escapes decoded, and written
//! back rewritten so that the browser decodes it to the new URL, in a string or not, in a
//! `style` attribute or a `<style>` element.

use super::Scope;

pub(super) struct UrlEnd {
    /// The URL's length.
    pub(super) url: usize,
    /// A URL the browser fetches (not a bad string or bad URL).
    pub(super) valid: bool,
    /// A quoted URL's closing quote follows.
    pub(super) closed: bool,
}

/// Where the URL at the start of `s` ends (`quote` 0: unquoted, after `url(` and its
/// whitespace); `None` when `s` ends first and more may come.
pub(super) fn url_end(s: &[u8], quote: u8, last: bool) -> Option<UrlEnd> {
    let mut j = 0;
    let mut valid = true;
    let mut url = None;
    while j < s.len() {
        let b = s[j];
        if quote != 0 {
            if b == quote {
                return Some(UrlEnd {
                    url: j,
                    valid: true,
                    closed: true,
                });
            }
            if is_newline(b) {
                // A bad string: the browser drops it.
                return Some(UrlEnd {
                    url: j,
                    valid: false,
                    closed: false,
                });
            }
            // An escape (`\2f `, `\"`), or `\` and a newline: a continuation.
            j += if b == b'\\' { escape_len(&s[j..]) } else { 1 };
            continue;
        }
        match b {
            b')' => {
                return Some(UrlEnd {
                    url: url.unwrap_or(j),
                    valid,
                    closed: true,
                })
            }
            b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' => {
                url.get_or_insert(j);
                j += 1;
            }
            b'\\' if s.get(j + 1).is_some_and(|&n| is_newline(n)) => {
                valid = false;
                j += 1;
            }
            b'\\' => {
                if url.is_some() {
                    valid = false;
                }
                j += escape_len(&s[j..]);
            }
            // Non-printable, but not NUL: the browser reads it as U+FFFD.
            b'"' | b'\'' | b'(' | 1..=8 | 0x0b | 0x0e..=0x1f | 0x7f => {
                valid = false;
                j += 1;
            }
            _ => {
                if url.is_some() {
                    valid = false;
                }
                j += 1;
            }
        }
    }
    last.then(|| UrlEnd {
        url: url.unwrap_or(s.len()).min(s.len()),
        valid,
        closed: false,
    })
}

/// Appends the URL `raw` (a URL token's or string's bytes) to `out`, rewritten if it
/// points at the device.
pub(super) fn rewrite_url(scope: &Scope, raw: &[u8], out: &mut Vec<u8>) {
    if !raw.contains(&b'\\') {
        // Nothing to decode: bytes as Latin-1 characters, so that any charset goes
        // through (`url_into` adds and drops ASCII only).
        let text: String = raw.iter().map(|&b| char::from(b)).collect();
        let mut new = String::new();
        if scope.url_into(&text, &mut new) {
            out.extend(new.chars().map(|c| c as u8));
        } else {
            out.extend_from_slice(raw);
        }
        return;
    }
    let url = decode(raw);
    let Some(new) = scope.url(&url) else {
        out.extend_from_slice(raw);
        return;
    };
    // Written back so that the browser decodes it to `new`, in a string or not, in a
    // `style` attribute or a `<style>` element: other ASCII punctuation as `\"`, and as
    // hex (`\3c `) what a `<style>` element (`<`, `>`) or an attribute (`&`) would read
    // before CSS does, controls and all outside ASCII.
    for c in new.chars() {
        if c.is_ascii_alphanumeric() || "/.-_~?#=%:@!$+,;*[]".contains(c) {
            out.push(c as u8);
        } else if c.is_ascii_graphic() && !"<>&".contains(c) || c == ' ' {
            out.extend_from_slice(&[b'\\', c as u8]);
        } else {
            out.extend_from_slice(format!("\\{:x} ", u32::from(c)).as_bytes());
        }
    }
}

/// A URL token's or string's bytes with CSS escapes decoded (bytes outside ASCII read as
/// UTF-8).
pub(super) fn decode(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut j = 0;
    while j < raw.len() {
        let b = raw[j];
        j += 1;
        if b != b'\\' {
            out.push(b);
            continue;
        }
        let Some(&n) = raw.get(j) else {
            break;
        };
        if is_newline(n) {
            // A continuation (in a string).
            j += if n == b'\r' && raw.get(j + 1) == Some(&b'\n') {
                2
            } else {
                1
            };
            continue;
        }
        let digits = raw[j..]
            .iter()
            .take(6)
            .take_while(|b| b.is_ascii_hexdigit())
            .count();
        if digits == 0 {
            // The escaped byte itself (a UTF-8 lead byte's followers come next).
            out.push(n);
            j += 1;
            continue;
        }
        let value = raw[j..j + digits]
            .iter()
            .fold(0u32, |v, &b| v * 16 + (b as char).to_digit(16).unwrap_or(0));
        j += digits;
        match raw.get(j) {
            Some(b'\r') if raw.get(j + 1) == Some(&b'\n') => j += 2,
            Some(b' ' | b'\t' | b'\n' | b'\r' | b'\x0c') => j += 1,
            _ => {}
        }
        let c = char::from_u32(value)
            .filter(|_| value != 0)
            .unwrap_or('\u{fffd}');
        let mut utf8 = [0; 4];
        out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The length of the escape at the start of `s` (`\\` and a byte, or `\\`, up to 6 hex
/// digits and one whitespace, CR LF counting as one).
fn escape_len(s: &[u8]) -> usize {
    let digits = s[1..]
        .iter()
        .take(6)
        .take_while(|b| b.is_ascii_hexdigit())
        .count();
    if digits == 0 {
        return if s[1..].starts_with(b"\r\n") { 3 } else { 2 };
    }
    let j = 1 + digits;
    match s.get(j) {
        Some(b'\r') if s.get(j + 1) == Some(&b'\n') => j + 2,
        Some(b' ' | b'\t' | b'\n' | b'\r' | b'\x0c') => j + 1,
        _ => j,
    }
}

pub(super) fn is_newline(b: u8) -> bool {
    matches!(b, b'\n' | b'\r' | b'\x0c')
}
