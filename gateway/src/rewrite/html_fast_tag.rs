//! The fast path's tags: a complete tag read as lol_html's lexer reads it, its attributes
//! by offsets into it; a start tag as the element rewriter sees it ([`Tag`]); and a
//! modified one written again as lol_html writes it.

use super::html_element::Tag;
use std::borrow::Cow;

/// An attribute of a scanned tag, by offsets into the tag.
#[derive(Clone, Copy, Debug)]
pub(super) struct Attr {
    /// The name in the tag, or one the rewriter added.
    added: Option<&'static str>,
    name_at: (u32, u32),
    pub(super) value: (u32, u32),
    /// The end of the attribute as written (after a closing quote).
    raw_end: u32,
    /// A new value, in [`Fast::values`](super::html_fast::Fast::values).
    new: Option<(u32, u32)>,
}

impl Attr {
    pub(super) fn name<'a>(&self, src: &'a [u8]) -> &'a [u8] {
        match self.added {
            Some(name) => name.as_bytes(),
            None => &src[self.name_at.0 as usize..self.name_at.1 as usize],
        }
    }
}

/// A complete tag as lol_html's lexer reads it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Scanned {
    /// After the closing `>`.
    pub(super) end: usize,
    pub(super) name_end: usize,
    pub(super) self_closing: bool,
    /// Ended by `>` right after `name=`: lol_html then goes to the data state.
    pub(super) bare_gt: bool,
}

/// Byte classes of the tag states: whitespace, `/`, `>`, `=`.
const WS: u8 = 1;
const SLASH: u8 = 2;
const GT: u8 = 4;
const EQ: u8 = 8;
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    t[b' ' as usize] = WS;
    t[b'\n' as usize] = WS;
    t[b'\r' as usize] = WS;
    t[b'\t' as usize] = WS;
    t[0x0C] = WS;
    t[b'/' as usize] = SLASH;
    t[b'>' as usize] = GT;
    t[b'=' as usize] = EQ;
    t
};

/// Reads a tag from `<` (`tag[0]`), its name starting at `name_start`; `None` if the tag
/// is not complete in `tag`. The states are lol_html's (`parser/state_machine/syntax/tag`),
/// each run as a loop of its own; where one reconsumes a byte in the before-attribute-name
/// state, this goes back to the top of the outer loop without moving.
pub(super) fn scan_tag(tag: &[u8], name_start: usize, attrs: &mut Vec<Attr>) -> Option<Scanned> {
    let len = tag.len();
    // The class of `tag[i]`; out of input: the tag is not complete.
    macro_rules! class {
        ($i:expr) => {{
            let i = $i;
            if i >= len {
                return None;
            }
            CLASS[tag[i] as usize]
        }};
    }
    attrs.clear();
    let mut i = name_start;
    while class!(i) & (WS | SLASH | GT) == 0 {
        i += 1;
    }
    let name_end = i;
    let done = |end: usize, self_closing: bool, bare_gt: bool| Scanned {
        end,
        name_end,
        self_closing,
        bare_gt,
    };
    loop {
        // Before attribute name.
        while class!(i) == WS {
            i += 1;
        }
        match tag[i] {
            b'>' => return Some(done(i + 1, false, false)),
            b'/' => {
                // Self-closing start tag: anything but `>` is read again from the top.
                i += 1;
                if *tag.get(i)? == b'>' {
                    return Some(done(i + 1, true, false));
                }
                continue;
            }
            _ => {}
        }
        // Attribute name: its first byte whatever it is (`=` included).
        let start = i;
        i += 1;
        while class!(i) == 0 {
            i += 1;
        }
        let mut attr = Attr {
            added: None,
            name_at: (start as u32, i as u32),
            value: (0, 0),
            raw_end: i as u32,
            new: None,
        };
        // After attribute name.
        while class!(i) == WS {
            i += 1;
        }
        if tag[i] != b'=' {
            // `/`, `>` or the next attribute: read again from the top.
            attrs.push(attr);
            continue;
        }
        // Before attribute value.
        i += 1;
        while class!(i) == WS {
            i += 1;
        }
        match tag[i] {
            q @ (b'"' | b'\'') => {
                let close = memchr::memchr(q, &tag[i + 1..])? + i + 1;
                attr.value = (i as u32 + 1, close as u32);
                attr.raw_end = close as u32 + 1;
                i = close + 1;
            }
            b'>' => {
                attrs.push(attr);
                return Some(done(i + 1, false, true));
            }
            _ => {
                let start = i;
                while class!(i) & (WS | GT) == 0 {
                    i += 1;
                }
                attr.value = (start as u32, i as u32);
                attr.raw_end = i as u32;
            }
        }
        attrs.push(attr);
    }
}

/// A start tag the fast path read, as the element rewriter sees it.
pub(super) struct FastTag<'a> {
    pub(super) src: &'a [u8],
    pub(super) name_end: usize,
    pub(super) attrs: &'a mut Vec<Attr>,
    pub(super) values: &'a mut String,
    pub(super) modified: bool,
    pub(super) removed: bool,
}

fn text(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

impl FastTag<'_> {
    fn value(&self, a: &Attr) -> Cow<'_, str> {
        match a.new {
            Some((s, e)) => Cow::Borrowed(&self.values[s as usize..e as usize]),
            None => text(&self.src[a.value.0 as usize..a.value.1 as usize]),
        }
    }

    fn find(&self, name: &str) -> Option<usize> {
        self.attrs
            .iter()
            .position(|a| a.name(self.src).eq_ignore_ascii_case(name.as_bytes()))
    }
}

impl Tag for FastTag<'_> {
    fn attr_count(&self) -> usize {
        self.attrs.len()
    }
    fn attr_name(&self, i: usize) -> Cow<'_, [u8]> {
        Cow::Borrowed(self.attrs[i].name(self.src))
    }
    fn attr_value(&self, i: usize) -> Cow<'_, str> {
        self.value(&self.attrs[i])
    }
    fn tag_name(&self) -> Cow<'_, str> {
        Cow::Owned(text(&self.src[1..self.name_end]).to_ascii_lowercase())
    }
    fn get_attribute(&self, name: &str) -> Option<String> {
        let i = self.find(name)?;
        Some(self.value(&self.attrs[i]).into_owned())
    }
    fn set_attribute(&mut self, name: &'static str, value: &str) {
        let start = self.values.len() as u32;
        self.values.push_str(value);
        let new = Some((start, self.values.len() as u32));
        match self.find(name) {
            Some(i) => self.attrs[i].new = new,
            None => self.attrs.push(Attr {
                added: Some(name),
                name_at: (0, 0),
                value: (0, 0),
                raw_end: 0,
                new,
            }),
        }
        self.modified = true;
    }
    fn set_value(&mut self, i: usize, value: &str) -> bool {
        // As lol_html: a name that is no UTF-8 does not survive its decoding.
        if std::str::from_utf8(self.attrs[i].name(self.src)).is_err() {
            return false;
        }
        let start = self.values.len() as u32;
        self.values.push_str(value);
        self.attrs[i].new = Some((start, self.values.len() as u32));
        self.modified = true;
        true
    }
    fn remove_attribute(&mut self, name: &str) {
        let before = self.attrs.len();
        let src = self.src;
        self.attrs
            .retain(|a| !a.name(src).eq_ignore_ascii_case(name.as_bytes()));
        self.modified |= self.attrs.len() != before;
    }
    fn remove(&mut self) {
        self.removed = true;
    }
}

/// A modified start tag as lol_html writes it (`StartTag::serialize_self`).
pub(super) fn serialize(
    src: &[u8],
    name_end: usize,
    attrs: &[Attr],
    values: &str,
    self_closing: bool,
    out: &mut Vec<u8>,
) {
    out.push(b'<');
    out.extend_from_slice(&src[1..name_end]);
    for a in attrs {
        out.push(b' ');
        match a.new {
            None => out.extend_from_slice(&src[a.name_at.0 as usize..a.raw_end as usize]),
            Some((s, e)) => {
                out.extend_from_slice(a.name(src));
                out.extend_from_slice(b"=\"");
                let mut rest = &values.as_bytes()[s as usize..e as usize];
                while let Some(q) = memchr::memchr(b'"', rest) {
                    out.extend_from_slice(&rest[..q]);
                    out.extend_from_slice(b"&quot;");
                    rest = &rest[q + 1..];
                }
                out.extend_from_slice(rest);
                out.push(b'"');
            }
        }
    }
    if self_closing {
        if !attrs.is_empty() {
            out.push(b' ');
        }
        out.extend_from_slice(b"/>");
    } else {
        out.push(b'>');
    }
}
