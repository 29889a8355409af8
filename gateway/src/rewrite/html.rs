//! Streaming HTML rewriting with lol_html: URL attributes, `srcset`, `style=` and
//! `<style>`, `<meta http-equiv=refresh>`, and the injected script at the top of `<head>`.
//!
//! The page is never held whole: lol_html buffers at most a tag that spans chunks (capped
//! by [`HtmlRewriter::new`]'s `max_memory`; past it the response fails rather than grow),
//! and output is handed back after every chunk. Bytes keep the page's charset.

use super::{CssRewriter, Scope};
use lol_html::html_content::{ContentType, Element};
use lol_html::send::{HtmlRewriter as Inner, Settings};
use lol_html::{element, text, AsciiCompatibleEncoding, MemorySettings, OutputSink};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

const SCRIPT: &str = include_str!("inject.js");

/// Attributes that hold one URL, with the elements that have them.
const URL_ATTRS: &[(&str, &str)] = &[
    ("[href]", "href"),
    ("[src]", "src"),
    ("[action]", "action"),
    ("[formaction]", "formaction"),
    ("[poster]", "poster"),
    ("[background]", "background"),
    ("object[data]", "data"),
];

#[derive(Debug, thiserror::Error)]
#[error("HTML rewriting failed: {0}")]
pub struct HtmlRewriteError(String);

/// The `<script>` element injected at the top of `<head>` for `scope`.
pub fn inject_script(scope: &Scope) -> String {
    // JSON, with `<` escaped so no value can close the script element.
    let device = serde_json::to_string(scope.authorities())
        .unwrap_or_else(|_| "[]".into())
        .replace('<', "\\u003c");
    let prefix = scope.prefix().replace(['"', '\\', '<'], "");
    format!(
        "<script>{}</script>",
        SCRIPT
            .replace("__PONTE_PREFIX__", &prefix)
            .replace("__PONTE_DEVICE__", &device)
            .replace("__PONTE_COOKIE__", super::DEVICE_COOKIE_PREFIX)
    )
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl OutputSink for Sink {
    fn handle_chunk(&mut self, chunk: &[u8]) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(chunk);
    }
}

/// Rewrites one HTML document fed in chunks.
pub struct HtmlRewriter {
    inner: Inner<'static, Sink>,
    out: Arc<Mutex<Vec<u8>>>,
}

impl std::fmt::Debug for HtmlRewriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HtmlRewriter")
    }
}

impl HtmlRewriter {
    /// `charset` is the `Content-Type` charset label, if any (a `<meta charset>` in the
    /// page is honoured too); `max_memory` caps lol_html's own buffering.
    pub fn new(scope: Arc<Scope>, charset: Option<&str>, max_memory: usize) -> Self {
        let encoding = charset
            .and_then(|l| encoding_rs::Encoding::for_label_no_replacement(l.trim().as_bytes()))
            .and_then(AsciiCompatibleEncoding::new)
            .unwrap_or_else(AsciiCompatibleEncoding::utf_8);
        let mut handlers = Vec::new();
        for &(selector, attr) in URL_ATTRS {
            let scope = scope.clone();
            handlers.push(element!(selector, move |el| {
                set(el, attr, |v| scope.url(v));
                Ok(())
            }));
        }
        let s = scope.clone();
        handlers.push(element!("[srcset]", move |el| {
            set(el, "srcset", |v| srcset(&s, v));
            Ok(())
        }));
        let s = scope.clone();
        handlers.push(element!("[style]", move |el| {
            set(el, "style", |v| css_str(&s, v));
            Ok(())
        }));
        let s = scope.clone();
        handlers.push(element!("meta[http-equiv]", move |el| {
            let equiv = el.get_attribute("http-equiv").unwrap_or_default();
            if equiv.eq_ignore_ascii_case("refresh") {
                set(el, "content", |v| super::refresh(&s, v));
            } else if equiv.eq_ignore_ascii_case("content-security-policy") {
                // It would block the injected script (the header is dropped likewise).
                el.remove();
            }
            Ok(())
        }));
        // Rewritten stylesheets and scripts no longer match their hashes.
        handlers.push(element!("link[integrity], script[integrity]", |el| {
            el.remove_attribute("integrity");
            Ok(())
        }));
        let injected = Arc::new(AtomicBool::new(false));
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
        // `<style>` text arrives in chunks that may split a `url(`.
        let css = Arc::new(Mutex::new(CssRewriter::new()));
        let s = scope.clone();
        handlers.push(text!("style", move |chunk| {
            let mut css = css.lock().unwrap_or_else(|e| e.into_inner());
            let mut out = Vec::new();
            css.push(&s, chunk.as_str().as_bytes(), &mut out);
            if chunk.last_in_text_node() {
                css.finish(&s, &mut out);
            }
            // Splits fall on ASCII bytes only, so each piece is still UTF-8.
            let out = String::from_utf8(out)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
            if out != chunk.as_str() {
                chunk.replace(&out, ContentType::Html);
            }
            Ok(())
        }));
        let out = Arc::new(Mutex::new(Vec::new()));
        let settings = Settings {
            element_content_handlers: handlers,
            encoding,
            memory_settings: MemorySettings {
                max_allowed_memory_usage: max_memory,
                ..MemorySettings::new()
            },
            strict: false,
            adjust_charset_on_meta_tag: true,
            ..Settings::new_send()
        };
        Self {
            inner: Inner::new(settings, Sink(out.clone())),
            out,
        }
    }

    /// Feeds a chunk; returns the output ready so far (possibly empty).
    pub fn write(&mut self, chunk: &[u8]) -> Result<Vec<u8>, HtmlRewriteError> {
        self.inner
            .write(chunk)
            .map_err(|e| HtmlRewriteError(e.to_string()))?;
        Ok(self.take())
    }

    /// The document ended; returns the rest of the output.
    pub fn end(self) -> Result<Vec<u8>, HtmlRewriteError> {
        let out = self.out.clone();
        self.inner
            .end()
            .map_err(|e| HtmlRewriteError(e.to_string()))?;
        let rest = std::mem::take(&mut *out.lock().unwrap_or_else(|e| e.into_inner()));
        Ok(rest)
    }

    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.out.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

fn set(
    el: &mut Element<'_, '_, lol_html::send::SendHandlerTypes>,
    attr: &str,
    f: impl FnOnce(&str) -> Option<String>,
) {
    if let Some(new) = el.get_attribute(attr).and_then(|v| f(&v)) {
        // Only names we chose are set, so this cannot fail.
        let _ = el.set_attribute(attr, &new);
    }
}

/// `srcset="/a.jpg 1x, /b.jpg 2x"`: rewrites each candidate's URL, keeps descriptors.
pub(crate) fn srcset(scope: &Scope, value: &str) -> Option<String> {
    let mut out = String::with_capacity(value.len() + 64);
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
        match scope.url(url) {
            Some(new) => {
                out.push_str(&new);
                changed = true;
            }
            None => out.push_str(url),
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
    changed.then_some(out)
}

/// CSS in a string (`style=` attributes).
pub(crate) fn css_str(scope: &Scope, value: &str) -> Option<String> {
    let mut css = CssRewriter::new();
    let mut out = Vec::with_capacity(value.len() + 32);
    css.push(scope, value.as_bytes(), &mut out);
    css.finish(scope, &mut out);
    let out = String::from_utf8(out).ok()?;
    (out != value).then_some(out)
}
