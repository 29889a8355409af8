//! Streaming HTML rewriting with lol_html: URL attributes, `srcset`, `style=` and
//! `<style>`, `<meta http-equiv=refresh>`, and the injected script at the top of `<head>`.
//!
//! The page is never held whole: lol_html buffers at most a tag that spans chunks (capped
//! by [`HtmlRewriter::new`]'s `max_memory`; past it the response fails rather than grow),
//! and output is handed back after every chunk. Bytes keep the page's charset.

use super::entities::attribute_value;
use super::{CssRewriter, Scope};
use lol_html::html_content::{ContentType, Element};
use lol_html::send::{HtmlRewriter as Inner, Settings};
use lol_html::{element, text, AsciiCompatibleEncoding, MemorySettings, OutputSink};
use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

const SCRIPT: &str = include_str!("inject.js");

#[derive(Debug, thiserror::Error)]
#[error("HTML rewriting failed: {0}")]
pub struct HtmlRewriteError(String);

/// The `<script>` element injected at the top of `<head>` for `scope`.
pub fn inject_script(scope: &Scope) -> String {
    format!("<script>{}</script>", shim_script(scope))
}

/// The script itself, also prepended to the scripts of workers and service workers.
pub fn shim_script(scope: &Scope) -> String {
    // JSON, with `<` escaped so no value can close the script element.
    let device = serde_json::to_string(scope.authorities())
        .unwrap_or_else(|_| "[]".into())
        .replace('<', "\\u003c");
    let prefix = scope.prefix().replace(['"', '\\', '<'], "");
    SCRIPT
        .replace("__PONTE_PREFIX__", &prefix)
        .replace("__PONTE_DEVICE__", &device)
        .replace("__PONTE_COOKIE__", super::DEVICE_COOKIE_PREFIX)
}

thread_local! {
    /// What the rewriter running on this thread has output and not yet handed back.
    ///
    /// lol_html calls its sink a dozen times for each tag it re-serialises; behind a
    /// `Mutex` every call paid an atomic lock and unlock, an eighth of the time of a
    /// link-dense page. The sink only runs inside [`HtmlRewriter::write`] and
    /// [`HtmlRewriter::end`], synchronously on their thread, and they take back all that
    /// was added before returning (see [`Taken`]), so nothing is left here between calls
    /// and a rewriter may move between threads freely.
    static OUT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

struct Sink;

impl OutputSink for Sink {
    fn handle_chunk(&mut self, chunk: &[u8]) {
        OUT.with_borrow_mut(|out| out.extend_from_slice(chunk));
    }
}

/// The part of [`OUT`] added during one `write` or `end`. Dropped without
/// [`Taken::take`] (an error or a panic), it discards that part.
struct Taken(usize);

impl Taken {
    fn start() -> Self {
        Self(OUT.with_borrow(Vec::len))
    }

    fn take(self) -> Vec<u8> {
        OUT.with_borrow_mut(|out| {
            if self.0 == 0 {
                std::mem::take(out)
            } else {
                out.split_off(self.0)
            }
        })
    }
}

impl Drop for Taken {
    fn drop(&mut self) {
        // Nothing to do after `take`; `try_with`: the thread may be exiting.
        let _ = OUT.try_with(|out| out.borrow_mut().truncate(self.0));
    }
}

/// Rewrites one HTML document fed in chunks.
///
/// UTF-8 pages start on the fast path ([`super::html_fast`]), which tokenizes the page
/// itself and gives the bytes lol_html would give; at the first construct it does not
/// handle (`<svg>`, `<math>`, `<plaintext>`, a `<meta>` that could change the charset
/// or carries `http-equiv`, a tag longer than it holds) it hands the rest of the page,
/// from the start of that tag, to lol_html. Other charsets use lol_html throughout.
pub struct HtmlRewriter {
    mode: Mode,
    /// A UTF-8 page: what lol_html is given has no 0xFE / 0xFF byte (see [`no_bom`]).
    utf8: bool,
}

enum Mode {
    Fast(Box<super::html_fast::Fast>),
    Lol(Box<Inner<'static, Sink>>),
    /// Only while switching from `Fast` to `Lol`.
    Switching,
}

impl std::fmt::Debug for HtmlRewriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HtmlRewriter")
    }
}

/// How a lol_html rewriter starts: from the top of the page, or where the fast path
/// handed over.
pub(super) struct LolStart {
    pub(super) scope: Arc<Scope>,
    pub(super) encoding: AsciiCompatibleEncoding,
    pub(super) max_memory: usize,
    /// Shared with the fast path: the script goes in once.
    pub(super) injected: Arc<AtomicBool>,
    /// False once a `<meta>` has set the charset (HTML allows it once).
    pub(super) adjust_charset: bool,
}

fn lol(start: LolStart) -> Inner<'static, Sink> {
    let LolStart {
        scope,
        encoding,
        max_memory,
        injected,
        adjust_charset,
    } = start;
    let mut handlers = Vec::new();
    let mut elements = ElementRewriter::new(scope.clone());
    handlers.push(element!("*", move |el| {
        elements.rewrite(el);
        Ok(())
    }));
    let script = inject_script(&scope);
    for selector in ["head", "body"] {
        let (injected, script) = (injected.clone(), script.clone());
        handlers.push(element!(selector, move |el| {
            if !injected.swap(true, Ordering::Relaxed) {
                el.prepend(&script, ContentType::Html);
            }
            Ok(())
        }));
    }
    // An element inside a `<style>` exists only in SVG or MathML, where lol_html lexes
    // markup; but the browser may be back in HTML there (after `<a><svg></a>`, which
    // lol_html does not follow), where all of it is raw-text CSS: `<b>…</b>url(/x)` would
    // be CSS whose URL the CSS rewriter never saw. Such an element goes, with its
    // content; the text around it is rewritten as CSS either way.
    handlers.push(element!("style *", |el| {
        el.remove();
        Ok(())
    }));
    // `<style>` text arrives in chunks that may split a `url(`.
    let css = Arc::new(Mutex::new(CssRewriter::new()));
    // What a data-text chunk ended with that may be the start of a character reference.
    let held = Arc::new(Mutex::new(String::new()));
    let s = scope.clone();
    handlers.push(text!("style", move |chunk| {
        let mut css = css.lock().unwrap_or_else(|e| e.into_inner());
        let last = chunk.last_in_text_node();
        // In SVG and MathML a `<style>` is data text: the browser decodes its character
        // references before CSS reads it (`url(&#47;x)` is `url(/x)`). Such text is
        // decoded, rewritten and written back escaped; in HTML it is raw text, as it came.
        let data = chunk.text_type() == lol_html::html_content::TextType::Data;
        let text: Cow<'_, str> = match data {
            false => chunk.as_str().into(),
            true => {
                let mut held = held.lock().unwrap_or_else(|e| e.into_inner());
                let mut text = std::mem::take(&mut *held);
                text.push_str(chunk.as_str());
                if !last {
                    *held = text.split_off(reference_start(&text));
                }
                attribute_value(&text).into_owned().into()
            }
        };
        let mut out = Vec::new();
        css.push(&s, text.as_bytes(), &mut out);
        if last {
            css.finish(&s, &mut out);
        }
        if data {
            out = escape_text(&out);
        }
        // Splits fall on ASCII bytes only, so each piece is still UTF-8.
        let out = String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        if data || out != chunk.as_str() {
            chunk.replace(&out, ContentType::Html);
        }
        Ok(())
    }));
    let settings = Settings {
        element_content_handlers: handlers,
        encoding,
        memory_settings: MemorySettings {
            max_allowed_memory_usage: max_memory,
            ..MemorySettings::new()
        },
        strict: false,
        adjust_charset_on_meta_tag: adjust_charset,
        ..Settings::new_send()
    };
    Inner::new(settings, Sink)
}

impl HtmlRewriter {
    /// `charset` is the `Content-Type` charset label, if any (a `<meta charset>` in the
    /// page is honoured too); `max_memory` caps the buffering of a tag that spans chunks.
    pub fn new(scope: Arc<Scope>, charset: Option<&str>, max_memory: usize) -> Self {
        Self::with_fast_path(scope, charset, max_memory, true)
    }

    /// [`HtmlRewriter::new`], with lol_html for the whole page when `fast` is false: the
    /// fast path's oracle in tests and its baseline in `benches/rewrite.rs`.
    #[doc(hidden)]
    pub fn with_fast_path(
        scope: Arc<Scope>,
        charset: Option<&str>,
        max_memory: usize,
        fast: bool,
    ) -> Self {
        let encoding = charset
            .and_then(|l| encoding_rs::Encoding::for_label_no_replacement(l.trim().as_bytes()))
            .and_then(AsciiCompatibleEncoding::new)
            .unwrap_or_else(AsciiCompatibleEncoding::utf_8);
        let start = LolStart {
            scope,
            encoding,
            max_memory,
            injected: Arc::new(AtomicBool::new(false)),
            adjust_charset: true,
        };
        let utf8 = encoding == AsciiCompatibleEncoding::utf_8();
        let mode = if fast && utf8 {
            Mode::Fast(Box::new(super::html_fast::Fast::new(start)))
        } else {
            Mode::Lol(Box::new(lol(start)))
        };
        Self { mode, utf8 }
    }

    /// Feeds a chunk; returns the output ready so far (possibly empty).
    pub fn write(&mut self, chunk: &[u8]) -> Result<Vec<u8>, HtmlRewriteError> {
        self.feed(chunk, false)
    }

    /// The document ended; returns the rest of the output.
    pub fn end(mut self) -> Result<Vec<u8>, HtmlRewriteError> {
        self.feed(&[], true)
    }

    fn feed(&mut self, chunk: &[u8], end: bool) -> Result<Vec<u8>, HtmlRewriteError> {
        let mut out = Vec::new();
        if let Mode::Fast(fast) = &mut self.mode {
            let Some((start, rest)) = fast.feed(chunk, end, &mut out) else {
                return Ok(out);
            };
            // Handed over: lol_html takes the rest from the start of a tag, in the data
            // state, as if the page began there.
            self.mode = Mode::Switching;
            let mut inner = lol(start);
            let taken = Taken::start();
            inner
                .write(&no_bom(&rest, self.utf8))
                .map_err(|e| HtmlRewriteError(e.to_string()))?;
            out.extend(taken.take());
            self.mode = Mode::Lol(Box::new(inner));
            if !end {
                return Ok(out);
            }
        }
        let taken = Taken::start();
        let done = if end {
            match std::mem::replace(&mut self.mode, Mode::Switching) {
                Mode::Lol(inner) => inner.end(),
                _ => return Err(HtmlRewriteError("the rewriter failed earlier".into())),
            }
        } else {
            match &mut self.mode {
                Mode::Lol(inner) => inner.write(&no_bom(chunk, self.utf8)),
                _ => return Err(HtmlRewriteError("the rewriter failed earlier".into())),
            }
        };
        done.map_err(|e| HtmlRewriteError(e.to_string()))?;
        if out.is_empty() {
            return Ok(taken.take());
        }
        out.extend(taken.take());
        Ok(out)
    }
}

/// A UTF-8 page's bytes 0xFE and 0xFF (never UTF-8: the browser reads each as U+FFFD)
/// written as U+FFFD. lol_html decodes an attribute value with BOM sniffing
/// (`Encoding::decode`), so a value starting `FE FF` or `FF FE` reached the rewriter as
/// UTF-16 garbage while the browser read `\u{fffd}\u{fffd}url(/x)`: its URLs went out
/// unrewritten (found by the `rewrite_html` fuzz target). The browser reads the same text
/// either way.
fn no_bom(bytes: &[u8], utf8: bool) -> Cow<'_, [u8]> {
    if !utf8 || !bytes.iter().any(|&b| b >= 0xfe) {
        return Cow::Borrowed(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len() + 16);
    for &b in bytes {
        if b >= 0xfe {
            out.extend_from_slice("\u{fffd}".as_bytes());
        } else {
            out.push(b);
        }
    }
    Cow::Owned(out)
}

type El<'r, 't> = Element<'r, 't, lol_html::send::SendHandlerTypes>;

/// What [`ElementRewriter`] needs of a start tag: lol_html's [`Element`], or the tag the
/// fast path ([`super::html_fast`]) parsed itself. Attribute names come in any case.
pub(super) trait Tag {
    fn attr_count(&self) -> usize;
    fn attr_name(&self, i: usize) -> Cow<'_, [u8]>;
    fn attr_value(&self, i: usize) -> Cow<'_, str>;
    /// Lower case.
    fn tag_name(&self) -> Cow<'_, str>;
    fn get_attribute(&self, name: &str) -> Option<String>;
    /// Changes the first attribute of that name, or adds one.
    fn set_attribute(&mut self, name: &'static str, value: &str);
    /// Changes attribute `i`, the first of its name; false if it cannot.
    fn set_value(&mut self, i: usize, value: &str) -> bool;
    /// Removes every attribute of that name.
    fn remove_attribute(&mut self, name: &str);
    /// Removes the element.
    fn remove(&mut self);
}

impl Tag for El<'_, '_> {
    fn attr_count(&self) -> usize {
        self.attributes().len()
    }
    fn attr_name(&self, i: usize) -> Cow<'_, [u8]> {
        Cow::Owned(self.attributes()[i].name().into_bytes())
    }
    fn attr_value(&self, i: usize) -> Cow<'_, str> {
        Cow::Owned(self.attributes()[i].value())
    }
    fn tag_name(&self) -> Cow<'_, str> {
        Cow::Owned(Element::tag_name(self))
    }
    fn get_attribute(&self, name: &str) -> Option<String> {
        Element::get_attribute(self, name)
    }
    fn set_attribute(&mut self, name: &'static str, value: &str) {
        // Only names we chose are set, so this cannot fail.
        let _ = Element::set_attribute(self, name, value);
    }
    fn set_value(&mut self, i: usize, value: &str) -> bool {
        let name = self.attributes()[i].name();
        // A name that does not survive decoding (a byte that is no UTF-8) would be added
        // as a new attribute instead.
        Element::has_attribute(self, &name) && Element::set_attribute(self, &name, value).is_ok()
    }
    fn remove_attribute(&mut self, name: &str) {
        Element::remove_attribute(self, name);
    }
    fn remove(&mut self) {
        Element::remove(self);
    }
}

/// The attributes the rewriter reads, by lower-case name.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Name {
    /// One URL.
    Url(&'static str),
    /// `srcset`, and `imagesrcset` (`<link rel=preload as=image>`, as Next.js's
    /// `next/image` writes it).
    Srcset(&'static str),
    Style,
    /// `object[data]`: a URL on `<object>` only.
    Data,
    /// `meta[http-equiv]`: refresh or CSP.
    HttpEquiv,
    /// `link[integrity]`, `script[integrity]`: dropped.
    Integrity,
    /// `meta[name]`: a referrer policy is pinned.
    MetaNamed,
}

impl Name {
    /// `name` in any case.
    fn of(name: &[u8]) -> Option<Self> {
        let mut lower = [0u8; 11];
        let lower = lower.get_mut(..name.len())?;
        for (l, b) in lower.iter_mut().zip(name) {
            *l = b.to_ascii_lowercase();
        }
        Some(match &*lower {
            b"href" => Self::Url("href"),
            b"src" => Self::Url("src"),
            b"action" => Self::Url("action"),
            b"formaction" => Self::Url("formaction"),
            b"poster" => Self::Url("poster"),
            b"background" => Self::Url("background"),
            b"srcset" => Self::Srcset("srcset"),
            b"imagesrcset" => Self::Srcset("imagesrcset"),
            b"style" => Self::Style,
            b"data" => Self::Data,
            b"http-equiv" => Self::HttpEquiv,
            b"integrity" => Self::Integrity,
            b"name" => Self::MetaNamed,
            _ => return None,
        })
    }

    fn attr(self) -> &'static str {
        match self {
            Self::Url(name) => name,
            Self::Srcset(name) => name,
            Self::Style => "style",
            Self::Data => "data",
            Self::HttpEquiv => "http-equiv",
            Self::Integrity => "integrity",
            Self::MetaNamed => "name",
        }
    }
}

/// The handler for every element: reads each attribute once and sets the changed ones.
/// Its buffers are kept from element to element.
pub(super) struct ElementRewriter {
    scope: Arc<Scope>,
    /// Names met on this element, each counted once: like `get_attribute`, only the first
    /// of a name is read, and `set_attribute` changes that one in place.
    seen: Vec<Name>,
    /// New values, one after the other in `values`.
    changes: Vec<(&'static str, std::ops::Range<usize>)>,
    values: String,
}

impl ElementRewriter {
    pub(super) fn new(scope: Arc<Scope>) -> Self {
        Self {
            scope,
            seen: Vec::new(),
            changes: Vec::new(),
            values: String::new(),
        }
    }

    pub(super) fn rewrite(&mut self, el: &mut impl Tag) {
        let count = el.attr_count();
        if count == 0 {
            return;
        }
        let mut el = Tracked {
            el,
            modified: false,
        };
        // Last, once every attribute the rewriter changes or removes is settled (a removal
        // puts two attributes side by side), and only if the tag is to be written again:
        // one written as it came cannot merge anything.
        if self.rewrite_attributes(&mut el, count) && el.modified {
            keep_attributes_apart(el.el);
        }
    }

    /// Rewrites the element's attributes; whether one of them has a name starting with
    /// `=` (see [`keep_attributes_apart`]).
    fn rewrite_attributes(&mut self, el: &mut impl Tag, count: usize) -> bool {
        let scope = &*self.scope;
        self.seen.clear();
        self.changes.clear();
        self.values.clear();
        let mut equals_named = false;
        for i in 0..count {
            let attr_name = el.attr_name(i);
            equals_named |= attr_name.first() == Some(&b'=');
            let Some(name) = Name::of(&attr_name) else {
                continue;
            };
            if self.seen.contains(&name) {
                continue;
            }
            self.seen.push(name);
            let start = self.values.len();
            // What the browser reads: lol_html hands on the value as written.
            let raw = el.attr_value(i);
            let value = attribute_value(&raw);
            let changed = match name {
                Name::Url(_) => scope.url_into(&value, &mut self.values),
                Name::Srcset(_) => srcset_into(scope, &value, &mut self.values),
                Name::Style => match css_str(scope, &value) {
                    Some(new) => {
                        self.values.push_str(&new);
                        true
                    }
                    None => false,
                },
                Name::Data | Name::HttpEquiv | Name::Integrity | Name::MetaNamed => false,
            };
            if changed {
                if matches!(value, Cow::Owned(_)) {
                    escape_amp(&mut self.values, start);
                }
                self.changes.push((name.attr(), start..self.values.len()));
            } else {
                self.values.truncate(start);
            }
        }
        for (name, range) in &self.changes {
            el.set_attribute(name, &self.values[range.clone()]);
        }
        let special = |n| self.seen.contains(&n);
        if !(special(Name::Data)
            || special(Name::HttpEquiv)
            || special(Name::Integrity)
            || special(Name::MetaNamed))
        {
            return equals_named;
        }
        let tag = el.tag_name().into_owned();
        // `<meta name=referrer>` would override the gateway's `Referrer-Policy`: with
        // `no-referrer` a same-origin POST carries `Origin: null` and a request that lost
        // the prefix has no Referer to be sent back by. `same-origin` still leaks nothing
        // to other sites.
        if tag == "meta"
            && special(Name::MetaNamed)
            && el
                .get_attribute("name")
                .is_some_and(|n| n.trim().eq_ignore_ascii_case("referrer"))
        {
            el.set_attribute("content", "same-origin");
        }
        match tag.as_str() {
            "object" if special(Name::Data) => set(el, "data", |v| scope.url(v)),
            "meta" if special(Name::HttpEquiv) => {
                // As the browser reads it: `&#82;efresh` is `Refresh`.
                let raw = el.get_attribute("http-equiv").unwrap_or_default();
                let equiv = attribute_value(&raw);
                let equiv = equiv.trim_matches(|c: char| c.is_ascii_whitespace());
                if equiv.eq_ignore_ascii_case("refresh") {
                    set(el, "content", |v| super::refresh(scope, v));
                } else if equiv.eq_ignore_ascii_case("content-security-policy") {
                    // It would block the injected script (the header is dropped likewise).
                    el.remove();
                }
            }
            // Rewritten stylesheets and scripts no longer match their hashes.
            "link" | "script" if special(Name::Integrity) => el.remove_attribute("integrity"),
            _ => {}
        }
        equals_named
    }
}

/// Where a trailing character reference may start that the next chunk completes: the
/// last `&` if nothing after it ends one (the longest reference name is 32 bytes), else the
/// end of `text`.
fn reference_start(text: &str) -> usize {
    match text.rfind('&') {
        Some(i)
            if text.len() - i <= 40
                && text[i + 1..]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'#') =>
        {
            i
        }
        _ => text.len(),
    }
}

/// Decoded data text written back so the browser decodes it to itself.
fn escape_text(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for &b in text {
        match b {
            b'&' => out.extend_from_slice(b"&amp;"),
            b'<' => out.extend_from_slice(b"&lt;"),
            b => out.push(b),
        }
    }
    out
}

/// A tag with a name starting with `=` and more attributes than this is removed (with
/// its content) when it is changed: no page writes one, and the check stays bounded.
const MAX_ATTRS_WITH_EQUALS_NAMED: usize = 128;

/// A [`Tag`] that notes whether it was changed.
struct Tracked<'a, T> {
    el: &'a mut T,
    modified: bool,
}

impl<T: Tag> Tag for Tracked<'_, T> {
    fn attr_count(&self) -> usize {
        self.el.attr_count()
    }
    fn attr_name(&self, i: usize) -> Cow<'_, [u8]> {
        self.el.attr_name(i)
    }
    fn attr_value(&self, i: usize) -> Cow<'_, str> {
        self.el.attr_value(i)
    }
    fn tag_name(&self) -> Cow<'_, str> {
        self.el.tag_name()
    }
    fn get_attribute(&self, name: &str) -> Option<String> {
        self.el.get_attribute(name)
    }
    fn set_attribute(&mut self, name: &'static str, value: &str) {
        self.modified = true;
        self.el.set_attribute(name, value);
    }
    fn set_value(&mut self, i: usize, value: &str) -> bool {
        self.modified = true;
        self.el.set_value(i, value)
    }
    fn remove_attribute(&mut self, name: &str) {
        self.modified = true;
        self.el.remove_attribute(name);
    }
    fn remove(&mut self) {
        self.el.remove();
    }
}

/// A changed tag is written again with one space before each attribute (lol_html and
/// the fast path alike), so `srcset/="/a 1x"` (an empty `srcset`, then an attribute named
/// `="/a`) would come out as `srcset ="/a 1x"`: a srcset the rewriter never read; and
/// `= ="` (an attribute named `=`, one named `="`) as an attribute whose quoted value
/// swallows the markup after it. Only a name starting with `=` merges with the attribute
/// before it, and only with one that has no value. So such a one gets its empty value
/// spelt out (`srcset=""`, read as it was); where that cannot be done (it is named `=…`
/// itself, a later one of its name, or its name does not survive decoding), or the tag
/// has over [`MAX_ATTRS_WITH_EQUALS_NAMED`] attributes, the element is removed: no page
/// but a hostile one writes such a tag. lol_html refuses to remove an attribute named
/// `=…`, or that would do.
fn keep_attributes_apart(el: &mut impl Tag) {
    let count = el.attr_count();
    if count > MAX_ATTRS_WITH_EQUALS_NAMED {
        el.remove();
        return;
    }
    let names: Vec<Vec<u8>> = (0..count)
        .map(|i| el.attr_name(i).to_ascii_lowercase())
        .collect();
    for i in 1..count {
        if names[i].first() != Some(&b'=') || !el.attr_value(i - 1).is_empty() {
            continue;
        }
        let prev = &names[i - 1];
        let settable = prev.first() != Some(&b'=') && !names[..i - 1].contains(prev);
        if !(settable && el.set_value(i - 1, "")) {
            el.remove();
            return;
        }
    }
}

/// Rewrites `attr` as the browser reads it (references decoded) with `f`.
fn set(el: &mut impl Tag, attr: &'static str, f: impl FnOnce(&str) -> Option<String>) {
    let Some(raw) = el.get_attribute(attr) else {
        return;
    };
    let value = attribute_value(&raw);
    if let Some(mut new) = f(&value) {
        if matches!(value, Cow::Owned(_)) {
            escape_amp(&mut new, 0);
        }
        el.set_attribute(attr, &new);
    }
}

/// A new attribute value (`s[start..]`) made from a decoded one, written so that the
/// browser decodes it back to itself: each `&` as `&amp;` (lol_html escapes `"` itself
/// and nothing else). A value without references needs none: it has no `&`.
fn escape_amp(s: &mut String, start: usize) {
    if s[start..].contains('&') {
        let escaped = s[start..].replace('&', "&amp;");
        s.truncate(start);
        s.push_str(&escaped);
    }
}

/// `srcset="/a.jpg 1x, /b.jpg 2x"`: rewrites each candidate's URL, keeps descriptors,
/// appending to `out`; false (and `out` as it was) when nothing changes.
fn srcset_into(scope: &Scope, value: &str, out: &mut String) -> bool {
    let start = out.len();
    let mut changed = false;
    let mut rest = value;
    while !rest.is_empty() {
        let skip = rest
            .find(|c: char| !(c.is_ascii_whitespace() || c == ','))
            .unwrap_or(rest.len());
        out.push_str(&rest[..skip]);
        rest = &rest[skip..];
        if rest.is_empty() {
            break;
        }
        let end = rest
            .find(|c: char| c.is_ascii_whitespace())
            .unwrap_or(rest.len());
        // A URL may end in commas that separate it from the next candidate.
        let url = rest[..end].trim_end_matches(',');
        if scope.url_into(url, out) {
            changed = true;
        } else {
            out.push_str(url);
        }
        rest = &rest[url.len()..];
        if end > url.len() {
            continue;
        }
        // Descriptors, up to the next comma outside parentheses.
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
        out.push_str(&rest[..end]);
        rest = &rest[end..];
    }
    if !changed {
        out.truncate(start);
    }
    changed
}

/// CSS in a string (`style=` attributes).
pub(crate) fn css_str(scope: &Scope, value: &str) -> Option<String> {
    // Only `url(` and `@import` are rewritten; most `style=` have neither letter.
    if !value.bytes().any(|b| matches!(b, b'u' | b'U' | b'@')) {
        return None;
    }
    let mut css = CssRewriter::new();
    let mut out = Vec::with_capacity(value.len() + 32);
    css.push(scope, value.as_bytes(), &mut out);
    css.finish(scope, &mut out);
    let out = String::from_utf8(out).ok()?;
    (out != value).then_some(out)
}
