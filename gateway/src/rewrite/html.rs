//! Streaming HTML rewriting with lol_html: URL attributes, `srcset`, `style=` and
//! `<style>`, `<meta http-equiv=refresh>`, and the injected script at the top of `<head>`.
//!
//! The page is never held whole: lol_html buffers at most a tag that spans chunks (capped
//! by [`HtmlRewriter::new`]'s `max_memory`; past it the response fails rather than grow),
//! and output is handed back after every chunk. Bytes keep the page's charset.

use super::entities::attribute_value;
use super::html_element::ElementRewriter;
use super::{CssRewriter, Scope};
use lol_html::html_content::ContentType;
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
