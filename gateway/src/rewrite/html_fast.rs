//! The HTML rewriter's fast path for UTF-8 pages: a tokenizer of its own that finds the
//! start tags, the `<style>` text and every place where lol_html's tokenizer changes state
//! (comments, raw text, RCDATA, script data and its escapes), rewrites those tags with the
//! same [`ElementRewriter`] and copies everything else through untouched.
//!
//! It must give exactly the bytes lol_html gives: `tests/html_oracles.rs` compares the two
//! on a corpus and on generated pages in many chunkings. What it does not handle (foreign
//! content, `<plaintext>`, a `<meta>` that could change the charset or carries
//! `http-equiv`, a tag longer than it holds, a tag it would remove) it hands to lol_html,
//! always at the start of a tag in the data state, where a fresh lol_html rewriter is in
//! the same state as one that had read the page from the top. Memory: at most one
//! unfinished tag is held, and never more than [`MAX_HOLD`] (or a quarter of the
//! rewriter's cap) before handing over.

use super::html::{inject_script, LolStart};
use super::html_element::ElementRewriter;
use super::html_fast_state::{is_delim, is_end_tag, Comment, Script, State, SCRIPT_LOOKAHEAD};
use super::html_fast_tag::{scan_tag, serialize, Attr, FastTag, Scanned};
use super::CssRewriter;
use std::sync::atomic::Ordering;

/// The longest unfinished tag held before lol_html takes over (it buffers under its own cap).
const MAX_HOLD: usize = 64 * 1024;

pub(super) struct Fast {
    start: LolStart,
    elements: ElementRewriter,
    css: CssRewriter,
    state: State,
    /// Input not consumed yet: an unfinished tag, or a `<` waiting for lookahead.
    pending: Vec<u8>,
    /// The start of a character split between two pieces of `<style>` text.
    split: Vec<u8>,
    attrs: Vec<Attr>,
    values: String,
    script: String,
    hold: usize,
}

/// What one pass over the input did.
enum Run {
    /// Everything before this offset is done; the rest waits for more input.
    Consumed(usize),
    /// lol_html takes over at this offset (the start of a tag, in the data state).
    HandOver(usize),
}

impl Fast {
    pub(super) fn new(start: LolStart) -> Self {
        let hold = MAX_HOLD.min(start.max_memory / 4);
        Self {
            elements: ElementRewriter::new(start.scope.clone()),
            script: inject_script(&start.scope),
            start,
            css: CssRewriter::new(),
            state: State::Data,
            pending: Vec::new(),
            split: Vec::new(),
            attrs: Vec::new(),
            values: String::new(),
            hold,
        }
    }

    /// Rewrites `chunk` into `out`; at a hand-over, returns how lol_html starts and the
    /// input it takes from there (this chunk included).
    pub(super) fn feed(
        &mut self,
        chunk: &[u8],
        end: bool,
        out: &mut Vec<u8>,
    ) -> Option<(LolStart, Vec<u8>)> {
        let mut buf = std::mem::take(&mut self.pending);
        let input: &[u8] = if buf.is_empty() {
            chunk
        } else {
            buf.extend_from_slice(chunk);
            &buf
        };
        // Rewritten URLs grow a link-dense page about twofold.
        out.reserve(input.len() * 2);
        let at = match self.run(input, end, out) {
            // Only an unfinished tag grows; lookahead in other states is a few bytes.
            Run::Consumed(n) if input.len() - n <= self.hold || self.state != State::Data => {
                debug_assert!(!end || n == input.len());
                if !buf.is_empty() {
                    buf.drain(..n);
                    self.pending = buf;
                } else {
                    self.pending = chunk[n..].to_vec();
                }
                return None;
            }
            Run::Consumed(n) | Run::HandOver(n) => n,
        };
        let start = LolStart {
            scope: self.start.scope.clone(),
            encoding: self.start.encoding,
            max_memory: self.start.max_memory,
            injected: self.start.injected.clone(),
            adjust_charset: self.start.adjust_charset,
        };
        Some((start, input[at..].to_vec()))
    }

    /// Copies `input[from..to]` out: through the CSS rewriter inside `<style>`.
    fn pass(&mut self, input: &[u8], from: usize, to: usize, out: &mut Vec<u8>) {
        if from >= to {
            return;
        }
        let bytes = &input[from..to];
        if let State::Raw { style: true, .. } = self.state {
            self.style_text(bytes, out);
        } else {
            out.extend_from_slice(bytes);
        }
    }

    /// `<style>` text to the CSS rewriter as lol_html hands it over: decoded (invalid
    /// UTF-8 replaced), a character split between chunks joined first.
    fn style_text(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        let scope = &*self.start.scope;
        let joined;
        let bytes = if self.split.is_empty() {
            bytes
        } else {
            self.split.extend_from_slice(bytes);
            joined = std::mem::take(&mut self.split);
            &joined[..]
        };
        match std::str::from_utf8(bytes) {
            Ok(_) => self.css.push(scope, bytes, out),
            Err(e) if e.error_len().is_none() && bytes.len() - e.valid_up_to() < 4 => {
                let (text, rest) = bytes.split_at(e.valid_up_to());
                self.css.push(scope, text, out);
                self.split.extend_from_slice(rest);
            }
            Err(_) => {
                let text = String::from_utf8_lossy(bytes);
                self.css.push(scope, text.as_bytes(), out);
            }
        }
    }

    /// The end of a `<style>` text.
    fn style_end(&mut self, out: &mut Vec<u8>) {
        if !self.split.is_empty() {
            let rest = std::mem::take(&mut self.split);
            let text = String::from_utf8_lossy(&rest);
            self.css.push(&self.start.scope, text.as_bytes(), out);
        }
        self.css.finish(&self.start.scope, out);
    }

    /// Moves to `state` at `at`, first passing out what was read before it.
    fn switch(
        &mut self,
        input: &[u8],
        done: &mut usize,
        at: usize,
        state: State,
        out: &mut Vec<u8>,
    ) {
        self.pass(input, *done, at, out);
        *done = at;
        if let State::Raw { style: true, .. } = self.state {
            self.style_end(out);
        }
        self.state = state;
    }

    fn run(&mut self, input: &[u8], eof: bool, out: &mut Vec<u8>) -> Run {
        let len = input.len();
        // `input[done..i]` is read and still to be passed out.
        let mut done = 0;
        let mut i = 0;
        // Stops at `at` to wait for more input (at the end of the page: reads on).
        macro_rules! wait {
            ($at:expr) => {{
                let at = $at;
                self.pass(input, done, at, out);
                return Run::Consumed(at);
            }};
        }
        while i < len {
            match self.state {
                State::Data => {
                    let Some(k) = memchr::memchr(b'<', &input[i..]) else {
                        break;
                    };
                    let lt = i + k;
                    let rest = &input[lt..];
                    let Some(&next) = rest.get(1) else {
                        if eof {
                            break;
                        }
                        wait!(lt);
                    };
                    if next.is_ascii_alphabetic() {
                        let Some(tag) = scan_tag(rest, 1, &mut self.attrs) else {
                            self.pass(input, done, lt, out);
                            return if eof {
                                Run::HandOver(lt)
                            } else {
                                Run::Consumed(lt)
                            };
                        };
                        match self.start_tag(input, &mut done, lt, tag, out) {
                            Some(end) => i = end,
                            None => {
                                self.pass(input, done, lt, out);
                                return Run::HandOver(lt);
                            }
                        }
                    } else if next == b'/' {
                        let Some(&next) = rest.get(2) else {
                            if eof {
                                break;
                            }
                            wait!(lt);
                        };
                        if next.is_ascii_alphabetic() {
                            match scan_tag(rest, 2, &mut self.attrs) {
                                Some(tag) => i = lt + tag.end,
                                None if eof => i = len,
                                None => wait!(lt),
                            }
                        } else if next == b'>' {
                            i = lt + 3;
                        } else {
                            self.state = State::Bogus;
                            i = lt + 2;
                        }
                    } else if next == b'!' {
                        let decl = &rest[2..];
                        if decl.starts_with(b"--") {
                            self.state = State::Comment(Comment::Start);
                            i = lt + 4;
                        } else if decl.len() < 2 && b"--".starts_with(decl) && !eof {
                            wait!(lt);
                        } else {
                            // A DOCTYPE, CDATA outside foreign content and other bogus
                            // comments all end at the first `>`.
                            self.state = State::Bogus;
                            i = lt + 2;
                        }
                    } else if next == b'?' {
                        self.state = State::Bogus;
                        i = lt + 2;
                    } else {
                        i = lt + 1;
                    }
                }
                State::Raw { name, .. } => {
                    let Some(k) = memchr::memchr(b'<', &input[i..]) else {
                        break;
                    };
                    let lt = i + k;
                    let rest = &input[lt..];
                    if rest.len() < name.len() + 3 && !eof {
                        wait!(lt);
                    }
                    if is_end_tag(rest, name) {
                        self.switch(input, &mut done, lt, State::Data, out);
                        i = lt;
                    } else {
                        i = lt + 1;
                    }
                }
                State::Script(s) => {
                    i = self.script(input, i, s, eof);
                    if let State::Script(_) = self.state {
                        if i < len {
                            // Waiting at a `<` for lookahead.
                            wait!(i);
                        }
                    } else {
                        // At `</script`: the end tag is read in the data state.
                        let at = i;
                        self.switch(input, &mut done, at, State::Data, out);
                    }
                }
                State::Comment(c) => {
                    let b = input[i];
                    let (next, consume) = match c {
                        Comment::Start | Comment::StartDash if b == b'>' => (State::Data, true),
                        Comment::Start if b == b'-' => (State::Comment(Comment::StartDash), true),
                        Comment::StartDash if b == b'-' => (State::Comment(Comment::End), true),
                        Comment::Text => match memchr::memchr(b'-', &input[i..]) {
                            Some(k) => {
                                i += k;
                                (State::Comment(Comment::EndDash), true)
                            }
                            None => {
                                break;
                            }
                        },
                        Comment::EndDash if b == b'-' => (State::Comment(Comment::End), true),
                        Comment::End if b == b'>' => (State::Data, true),
                        Comment::End if b == b'!' => (State::Comment(Comment::Bang), true),
                        Comment::End if b == b'-' => (State::Comment(Comment::End), true),
                        Comment::Bang if b == b'-' => (State::Comment(Comment::EndDash), true),
                        Comment::Bang if b == b'>' => (State::Data, true),
                        _ => (State::Comment(Comment::Text), false),
                    };
                    self.state = next;
                    if consume {
                        i += 1;
                    }
                }
                State::Bogus => match memchr::memchr(b'>', &input[i..]) {
                    Some(k) => {
                        self.state = State::Data;
                        i += k + 1;
                    }
                    None => {
                        break;
                    }
                },
            }
        }
        self.pass(input, done, len, out);
        if eof {
            if let State::Raw { style: true, .. } = self.state {
                self.style_end(out);
            }
        }
        Run::Consumed(len)
    }

    /// Script data from `i` in sub-state `s`: returns where it stopped, with the state
    /// left in `self.state` (the data state at `</script`; otherwise, if short of the
    /// input's end, waiting at a `<` for lookahead).
    fn script(&mut self, input: &[u8], mut i: usize, mut s: Script, eof: bool) -> usize {
        use Script::*;
        let len = input.len();
        while i < len {
            let b = input[i];
            let lt = match s {
                Data => match memchr::memchr(b'<', &input[i..]) {
                    Some(k) => i + k,
                    None => {
                        break;
                    }
                },
                Escaped | Double => match memchr::memchr2(b'-', b'<', &input[i..]) {
                    Some(k) if input[i + k] == b'-' => {
                        s = if s == Escaped {
                            EscapedDash
                        } else {
                            DoubleDash
                        };
                        i += k + 1;
                        continue;
                    }
                    Some(k) => i + k,
                    None => {
                        break;
                    }
                },
                EscapedDash | DoubleDash if b == b'-' => {
                    s = if s == EscapedDash {
                        EscapedDashDash
                    } else {
                        DoubleDashDash
                    };
                    i += 1;
                    continue;
                }
                EscapedDash | DoubleDash if b != b'<' => {
                    s = if s == EscapedDash { Escaped } else { Double };
                    continue;
                }
                EscapedDashDash | DoubleDashDash if b == b'-' => {
                    i += 1;
                    continue;
                }
                EscapedDashDash | DoubleDashDash if b == b'>' => {
                    s = Data;
                    i += 1;
                    continue;
                }
                EscapedDashDash | DoubleDashDash if b != b'<' => {
                    s = if s == EscapedDashDash {
                        Escaped
                    } else {
                        Double
                    };
                    i += 1;
                    continue;
                }
                _ => i,
            };
            // At a `<`.
            let rest = &input[lt..];
            if rest.len() < SCRIPT_LOOKAHEAD && !eof {
                self.state = State::Script(s);
                return lt;
            }
            match s {
                Data if is_end_tag(rest, b"script") => {
                    self.state = State::Data;
                    return lt;
                }
                Data if rest.starts_with(b"<!--") => {
                    s = EscapedDashDash;
                    i = lt + 4;
                }
                Data => i = lt + 1,
                Escaped | EscapedDash | EscapedDashDash => {
                    if is_end_tag(rest, b"script") {
                        self.state = State::Data;
                        return lt;
                    }
                    if rest.len() > 7
                        && rest[1..7].eq_ignore_ascii_case(b"script")
                        && is_delim(rest[7])
                    {
                        s = Double;
                        i = lt + 8;
                    } else {
                        s = Escaped;
                        i = lt + 1;
                    }
                }
                Double | DoubleDash | DoubleDashDash => {
                    if is_end_tag(rest, b"script") {
                        s = Escaped;
                        i = lt + 9;
                    } else {
                        s = Double;
                        i = lt + 1;
                    }
                }
            }
        }
        self.state = State::Script(s);
        len
    }

    /// A start tag at `lt`: rewritten, passed through, or `None` to hand over here.
    /// Returns where the text after it starts.
    fn start_tag(
        &mut self,
        input: &[u8],
        done: &mut usize,
        lt: usize,
        tag: Scanned,
        out: &mut Vec<u8>,
    ) -> Option<usize> {
        let src = &input[lt..lt + tag.end];
        let name = &src[1..tag.name_end];
        let mut lower = [0u8; 10];
        let lower = match lower.get_mut(..name.len()) {
            Some(l) => {
                for (l, b) in l.iter_mut().zip(name) {
                    *l = b.to_ascii_lowercase();
                }
                &*l
            }
            None => &[][..],
        };
        let text: Option<State> = match lower {
            b"svg" | b"math" | b"plaintext" => return None,
            b"meta" => {
                self.meta(src)?;
                None
            }
            b"textarea" => Some(State::Raw {
                name: b"textarea",
                style: false,
            }),
            b"title" => Some(State::Raw {
                name: b"title",
                style: false,
            }),
            b"style" => Some(State::Raw {
                name: b"style",
                style: true,
            }),
            b"iframe" => Some(State::Raw {
                name: b"iframe",
                style: false,
            }),
            b"xmp" => Some(State::Raw {
                name: b"xmp",
                style: false,
            }),
            b"noembed" => Some(State::Raw {
                name: b"noembed",
                style: false,
            }),
            b"noframes" => Some(State::Raw {
                name: b"noframes",
                style: false,
            }),
            b"noscript" => Some(State::Raw {
                name: b"noscript",
                style: false,
            }),
            b"script" => Some(State::Script(Script::Data)),
            _ => None,
        };
        // lol_html goes to the data state after `<style a=>`, whatever the element.
        if text.is_some() && tag.bare_gt {
            return None;
        }
        self.values.clear();
        let mut el = FastTag {
            src,
            name_end: tag.name_end,
            attrs: &mut self.attrs,
            values: &mut self.values,
            modified: false,
            removed: false,
        };
        self.elements.rewrite(&mut el);
        let (modified, removed) = (el.modified, el.removed);
        if removed {
            return None;
        }
        let inject = matches!(lower, b"head" | b"body")
            && !self.start.injected.swap(true, Ordering::Relaxed);
        let end = lt + tag.end;
        if modified || inject {
            self.pass(input, *done, lt, out);
            if modified {
                // lol_html drops the `/` of an element it prepends to.
                let self_closing = tag.self_closing && !inject;
                serialize(
                    src,
                    tag.name_end,
                    &self.attrs,
                    &self.values,
                    self_closing,
                    out,
                );
            } else {
                out.extend_from_slice(src);
            }
            if inject {
                out.extend_from_slice(self.script.as_bytes());
            }
            *done = end;
        }
        if let Some(state) = text {
            self.switch(input, done, end, state, out);
        }
        Some(end)
    }

    /// `<meta>`: `None` to hand over (it may set the charset, or carries `http-equiv`,
    /// which the element rewriter may act on by removing it).
    fn meta(&mut self, src: &[u8]) -> Option<()> {
        let attr = |name: &str| {
            self.attrs
                .iter()
                .find(|a| a.name(src).eq_ignore_ascii_case(name.as_bytes()))
        };
        if attr("http-equiv").is_some() {
            return None;
        }
        if !self.start.adjust_charset {
            return Some(());
        }
        let Some(charset) = attr("charset") else {
            return Some(());
        };
        let value =
            String::from_utf8_lossy(&src[charset.value.0 as usize..charset.value.1 as usize]);
        let encoding = encoding_rs::Encoding::for_label_no_replacement(value.as_bytes())
            .and_then(lol_html::AsciiCompatibleEncoding::new);
        match encoding {
            // HTML honours one charset `<meta>`; this one keeps the page's UTF-8.
            Some(e) if e == lol_html::AsciiCompatibleEncoding::utf_8() => {
                self.start.adjust_charset = false;
                Some(())
            }
            Some(_) => None,
            None => Some(()),
        }
    }
}
