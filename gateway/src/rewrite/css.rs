//! Streaming CSS rewriting: `url(…)` and `@import "…"` that point at the device.
//!
//! A tokenizer after CSS Syntax Level 3, reduced to what finds URLs as a browser finds
//! them: comments and strings are skipped (a `url(` inside one is no URL, and a quote
//! inside a comment opens no string), names are read with their escapes decoded
//! (`u\72l(` is `url(`, `@\69mport` is `@import`), and so are URLs (`url(\2f x)` is
//! `/x`). Works on bytes, so any ASCII-compatible charset passes through untouched.
//!
//! Only a URL is carried from chunk to chunk (`url(/x` | `)`); comments, strings and
//! names of any length stream through with the tokenizer's state. The carry is capped at
//! [`MAX_CARRY`]: a longer URL (a large `data:` URL, say) is passed on as it is when the
//! gateway would leave it alone anyway (another scheme, a relative path), and otherwise
//! dropped (`url()`), never passed on unrewritten.

use super::css_url::{decode, is_newline, rewrite_url, url_end};
use super::Scope;

/// Longest URL kept between chunks. A device URL is far shorter; what is longer is a
/// `data:` URL or garbage.
pub const MAX_CARRY: usize = 8 * 1024;

/// Rewrites one stylesheet (or one `<style>` element) fed in chunks.
#[derive(Debug)]
pub struct CssRewriter {
    carry: Vec<u8>,
    mode: Mode,
    /// The last token other than whitespace and comments was `@import`: a string now is
    /// a URL.
    import: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Between tokens.
    Top,
    /// After `/`: a comment if `*` follows.
    Slash,
    /// Inside `/* … */`; `star`: the last byte was `*`.
    Comment { star: bool },
    /// After `<`, `<!`, `<!-` (`n` bytes of `<!--`, the CDO token, which ends no name).
    Cdo(u8),
    /// A string that is no URL (or a URL passed on as it is, or not at all: `drop`, see
    /// [`MAX_CARRY`]), up to its `quote`; `esc`: the escape it is in (`\2\r` goes on).
    Str { quote: u8, esc: Esc, drop: bool },
    /// A name (identifier, at-keyword, hash, or a number's unit).
    Word(Word),
    /// After `url(`: whitespace, then a quoted URL or an unquoted one.
    UrlOpen,
    /// A URL to be read whole (carried from its first byte): `quote` 0 for `url(x)`.
    Url { quote: u8 },
    /// The rest of an unquoted URL passed on as it is (too long, see [`MAX_CARRY`]):
    /// `drop` when it is not passed on at all; `escape`: after a `\`.
    Rest { quote: u8, drop: bool, escape: bool },
}

/// A name being read: up to 7 of its characters (escapes decoded, lower case) and the
/// state of an escape it is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Word {
    kind: WordKind,
    name: [u8; 7],
    len: u8,
    esc: Esc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WordKind {
    /// May be `url` (then `(` opens a URL).
    Ident,
    /// After `@`: may be `import`.
    At,
    /// A hash (`#url(` is no URL).
    Hash,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Esc {
    None,
    /// After `\`.
    Backslash,
    /// After `\` and `n` hex digits worth `value`.
    Hex {
        n: u8,
        value: u32,
    },
    /// After an escape's hex digits and a CR (CR LF is one whitespace).
    Cr,
}

impl Word {
    fn new(kind: WordKind) -> Self {
        Self {
            kind,
            name: [0; 7],
            len: 0,
            esc: Esc::None,
        }
    }

    fn push(&mut self, c: u32) {
        if (self.len as usize) < self.name.len() {
            // Only ASCII letters matter (`url`, `import`); anything else spoils the name.
            self.name[self.len as usize] = match char::from_u32(c) {
                Some(c) if c.is_ascii() => c.to_ascii_lowercase() as u8,
                _ => 0,
            };
        }
        self.len = self.len.saturating_add(1);
    }

    fn is(&self, name: &str) -> bool {
        self.esc == Esc::None && &self.name[..usize::from(self.len).min(7)] == name.as_bytes()
    }

    /// Takes `b`; false when `b` is not part of the name (the name ended before it).
    fn step(&mut self, b: u8) -> bool {
        match self.esc {
            Esc::None => {
                if b == b'\\' {
                    self.esc = Esc::Backslash;
                } else if is_name(b) {
                    self.push(u32::from(b));
                } else {
                    return false;
                }
            }
            Esc::Backslash => {
                if is_newline(b) {
                    // `\` before a newline escapes nothing: the name ended before it.
                    self.esc = Esc::None;
                    self.len = self.len.saturating_add(1);
                    return false;
                }
                match (b as char).to_digit(16) {
                    Some(d) => self.esc = Esc::Hex { n: 1, value: d },
                    None => {
                        self.esc = Esc::None;
                        // A UTF-8 lead byte: the rest follow as name bytes.
                        self.push(u32::from(b));
                    }
                }
            }
            Esc::Hex { n, value } => match (b as char).to_digit(16) {
                Some(d) if n < 6 => {
                    self.esc = Esc::Hex {
                        n: n + 1,
                        value: value * 16 + d,
                    }
                }
                _ => {
                    self.esc = Esc::None;
                    self.push(value);
                    match b {
                        b'\r' => self.esc = Esc::Cr,
                        b' ' | b'\t' | b'\n' | b'\x0c' => {}
                        _ => return self.step(b),
                    }
                }
            },
            Esc::Cr => {
                self.esc = Esc::None;
                if b != b'\n' {
                    return self.step(b);
                }
            }
        }
        true
    }
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
            mode: Mode::Top,
            import: false,
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
        *self = Self::new();
    }

    /// Emits `buf` rewritten up to the returned index; the rest (a URL) must be carried.
    fn scan(&mut self, scope: &Scope, buf: &[u8], last: bool, out: &mut Vec<u8>) -> usize {
        // `buf[emitted..i]` is decided but not yet copied to `out`.
        let mut emitted = 0;
        let mut i = 0;
        while i < buf.len() {
            let b = buf[i];
            match self.mode {
                Mode::Top => {
                    i += 1;
                    match b {
                        b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' => continue,
                        b'/' => self.mode = Mode::Slash,
                        b'<' => self.mode = Mode::Cdo(1),
                        b'"' | b'\'' if self.import => self.mode = Mode::Url { quote: b },
                        b'"' | b'\'' => {
                            self.mode = Mode::Str {
                                quote: b,
                                esc: Esc::None,
                                drop: false,
                            }
                        }
                        b'@' => self.mode = Mode::Word(Word::new(WordKind::At)),
                        b'#' => self.mode = Mode::Word(Word::new(WordKind::Hash)),
                        b if b == b'\\' || is_name(b) => {
                            let mut w = Word::new(WordKind::Ident);
                            w.step(b);
                            self.mode = Mode::Word(w);
                        }
                        _ => {}
                    }
                    if !matches!(self.mode, Mode::Url { .. } | Mode::Slash | Mode::Cdo(_)) {
                        self.import = false;
                    }
                    if let Mode::Url { .. } = self.mode {
                        self.import = false;
                        out.extend_from_slice(&buf[emitted..i]);
                        emitted = i;
                    }
                }
                Mode::Slash => {
                    if b == b'*' {
                        i += 1;
                        self.mode = Mode::Comment { star: false };
                    } else {
                        self.import = false;
                        self.mode = Mode::Top;
                    }
                }
                Mode::Comment { star } => {
                    i += 1;
                    self.mode = if star && b == b'/' {
                        Mode::Top
                    } else {
                        Mode::Comment { star: b == b'*' }
                    };
                }
                Mode::Cdo(n) => {
                    if b == b"<!--"[usize::from(n)] {
                        i += 1;
                        self.mode = if n == 3 { Mode::Top } else { Mode::Cdo(n + 1) };
                    } else {
                        // `<`, `!` and `-` were delimiters, and the `-` no name's start:
                        // `<!-url(` is `-url(`, but as `<` `!` then a name.
                        self.import = false;
                        self.mode = if n == 3 {
                            Mode::Word(Word {
                                len: 1,
                                ..Word::new(WordKind::Ident)
                            })
                        } else {
                            Mode::Top
                        };
                    }
                }
                Mode::Str { quote, esc, drop } => match str_step(quote, esc, b) {
                    Some(esc) => {
                        i += 1;
                        if drop {
                            emitted = i;
                        }
                        self.mode = Mode::Str { quote, esc, drop };
                    }
                    None => {
                        // The end, or a bad string (a newline ends it too).
                        if drop {
                            emitted = i;
                        }
                        i += 1;
                        self.mode = Mode::Top;
                    }
                },
                Mode::Word(mut w) => {
                    if w.step(b) {
                        i += 1;
                        self.mode = Mode::Word(w);
                        continue;
                    }
                    self.mode = Mode::Top;
                    match w.kind {
                        WordKind::Ident if b == b'(' && w.is("url") => {
                            i += 1;
                            self.mode = Mode::UrlOpen;
                        }
                        WordKind::At => self.import = w.is("import"),
                        _ => {}
                    }
                }
                Mode::UrlOpen => match b {
                    b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' => i += 1,
                    b'"' | b'\'' => {
                        i += 1;
                        self.mode = Mode::Url { quote: b };
                        out.extend_from_slice(&buf[emitted..i]);
                        emitted = i;
                    }
                    _ => {
                        self.mode = Mode::Url { quote: 0 };
                        out.extend_from_slice(&buf[emitted..i]);
                        emitted = i;
                    }
                },
                Mode::Url { quote } => {
                    // `i == emitted`: the URL's first byte.
                    match url_end(&buf[i..], quote, last) {
                        Some(end) => {
                            let raw = &buf[i..i + end.url];
                            // A bad URL (unquoted): the browser drops it. Written as `(`
                            // (still a bad URL, never longer) with the rest of it left
                            // out, so no escape is left inside it: tokenizers disagree on
                            // where `url(/ \\)` ends (cssparser, as in Firefox, reads
                            // past that `)`), and what follows must not be a URL to one
                            // of them and a string to another.
                            let bad = !end.valid && quote == 0;
                            if end.valid {
                                rewrite_url(scope, raw, out);
                            } else if bad {
                                out.push(b'(');
                            } else {
                                out.extend_from_slice(raw);
                            }
                            i += end.url;
                            emitted = i;
                            self.mode = if quote == 0 {
                                Mode::Rest {
                                    quote,
                                    drop: bad,
                                    escape: false,
                                }
                            } else {
                                Mode::Top
                            };
                            if quote != 0 && end.closed {
                                // The closing quote.
                                i += 1;
                            }
                        }
                        None if buf.len() - i <= MAX_CARRY => {
                            out.extend_from_slice(&buf[emitted..i]);
                            return i;
                        }
                        None => {
                            // Too long to hold: its head decides.
                            let head = String::from_utf8_lossy(&buf[i..]);
                            let drop = scope.may_rewrite(&decode(head.as_bytes()));
                            self.mode = if quote == 0 {
                                Mode::Rest {
                                    quote,
                                    drop,
                                    escape: false,
                                }
                            } else {
                                Mode::Str {
                                    quote,
                                    esc: Esc::None,
                                    drop,
                                }
                            };
                            out.extend_from_slice(&buf[emitted..i]);
                            emitted = i;
                        }
                    }
                }
                Mode::Rest {
                    quote,
                    drop,
                    escape,
                } => {
                    let end = if escape {
                        false
                    } else if quote == 0 {
                        b == b')'
                    } else {
                        b == quote || is_newline(b)
                    };
                    if end {
                        if drop {
                            emitted = i;
                        }
                        self.mode = Mode::Top;
                        if quote != 0 && b == quote {
                            i += 1;
                        }
                        continue;
                    }
                    i += 1;
                    if drop {
                        emitted = i;
                    }
                    self.mode = Mode::Rest {
                        quote,
                        drop,
                        escape: !escape && b == b'\\',
                    };
                }
            }
        }
        out.extend_from_slice(&buf[emitted..]);
        buf.len()
    }
}

/// One byte of a string in escape state `esc`: the state after it, `None` when the string
/// ended (its quote, or a newline: a bad string).
fn str_step(quote: u8, esc: Esc, b: u8) -> Option<Esc> {
    let hex = (b as char).to_digit(16);
    match esc {
        Esc::None if b == b'\\' => Some(Esc::Backslash),
        Esc::None if b == quote || is_newline(b) => None,
        Esc::None => Some(Esc::None),
        // `\` and CR LF: one continuation.
        Esc::Backslash if b == b'\r' => Some(Esc::Cr),
        Esc::Backslash => Some(match hex {
            Some(d) => Esc::Hex { n: 1, value: d },
            None => Esc::None,
        }),
        Esc::Hex { n, value } if n < 6 && hex.is_some() => Some(Esc::Hex { n: n + 1, value }),
        Esc::Hex { .. } if b == b'\r' => Some(Esc::Cr),
        Esc::Hex { .. } if matches!(b, b' ' | b'\t' | b'\n' | b'\x0c') => Some(Esc::None),
        Esc::Cr if b == b'\n' => Some(Esc::None),
        Esc::Hex { .. } | Esc::Cr => str_step(quote, Esc::None, b),
    }
}

/// A byte of a name: ASCII letters, digits, `-`, `_`, anything outside ASCII, and NUL
/// (which the browser reads as U+FFFD).
fn is_name(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b >= 0x80 || b == 0
}
