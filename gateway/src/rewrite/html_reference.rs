//! The rewriter as it was before the single-handler rewrite (one lol_html handler per
//! selector, a `String` per attribute), kept verbatim as a test oracle: the fast
//! [`super::HtmlRewriter`] must give the same bytes for every input. Test-only; never used
//! to serve a page.

use super::{inject_script, CssRewriter, Scope};
use lol_html::html_content::{ContentType, Element};
use lol_html::send::{HtmlRewriter as Inner, Settings};
use lol_html::{element, text, AsciiCompatibleEncoding, MemorySettings};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

const URL_ATTRS: &[(&str, &str)] = &[
    ("[href]", "href"),
    ("[src]", "src"),
    ("[action]", "action"),
    ("[formaction]", "formaction"),
    ("[poster]", "poster"),
    ("[background]", "background"),
    ("object[data]", "data"),
];

/// The whole of `input`, fed in `chunk`-byte pieces, rewritten the old way.
pub(crate) fn rewrite(
    scope: Arc<Scope>,
    input: &[u8],
    chunk: usize,
    charset: Option<&str>,
) -> Vec<u8> {
    let encoding = charset
        .and_then(|l| encoding_rs::Encoding::for_label_no_replacement(l.trim().as_bytes()))
        .and_then(AsciiCompatibleEncoding::new)
        .unwrap_or_else(AsciiCompatibleEncoding::utf_8);
    let mut handlers = Vec::new();
    for &(selector, attr) in URL_ATTRS {
        let scope = scope.clone();
        handlers.push(element!(selector, move |el| {
            set(el, attr, |v| url(&scope, v));
            Ok(())
        }));
    }
    let s = scope.clone();
    handlers.push(element!("[srcset]", move |el| {
        set(el, "srcset", |v| srcset(&s, v));
        Ok(())
    }));
    let s = scope.clone();
    handlers.push(element!("[imagesrcset]", move |el| {
        set(el, "imagesrcset", |v| srcset(&s, v));
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
    let settings = Settings {
        element_content_handlers: handlers,
        encoding,
        memory_settings: MemorySettings {
            max_allowed_memory_usage: 1 << 20,
            ..MemorySettings::new()
        },
        strict: false,
        adjust_charset_on_meta_tag: true,
        ..Settings::new_send()
    };
    let mut out = Vec::new();
    let mut r = Inner::new(settings, |c: &[u8]| out.extend_from_slice(c));
    for piece in input.chunks(chunk.max(1)) {
        r.write(piece).unwrap();
    }
    r.end().unwrap();
    out
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
fn srcset(scope: &Scope, value: &str) -> Option<String> {
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
        match self::url(scope, url) {
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
fn css_str(scope: &Scope, value: &str) -> Option<String> {
    let mut css = CssRewriter::new();
    let mut out = Vec::with_capacity(value.len() + 32);
    css.push(scope, value.as_bytes(), &mut out);
    css.finish(scope, &mut out);
    let out = String::from_utf8(out).ok()?;
    (out != value).then_some(out)
}

/// `Scope::url` as it was: allocating, `&str`-based.
pub(crate) fn url(scope: &Scope, raw: &str) -> Option<String> {
    let s = raw.trim_matches(|c: char| c.is_ascii_whitespace());
    if let Some(rest) = s.strip_prefix("//") {
        let (authority, tail) = split_authority(rest);
        return is_device(scope, authority).then(|| join(scope, tail));
    }
    if s.starts_with('/') {
        if is_prefixed(scope, s) {
            return None;
        }
        return Some(join(scope, s));
    }
    let (scheme, rest) = s.split_once("://")?;
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return None;
    }
    let (authority, tail) = split_authority(rest);
    is_device(scope, authority).then(|| join(scope, tail))
}

fn is_device(scope: &Scope, authority: &str) -> bool {
    let authority = authority.rsplit('@').next().unwrap_or_default();
    scope
        .authorities()
        .iter()
        .any(|a| a.eq_ignore_ascii_case(authority))
}

fn is_prefixed(scope: &Scope, path: &str) -> bool {
    let prefix = scope.prefix();
    let bare = &prefix[..prefix.len() - 1];
    path.starts_with(prefix)
        || path == bare
        || path
            .strip_prefix(bare)
            .is_some_and(|rest| rest.starts_with(['?', '#']))
}

fn join(scope: &Scope, tail: &str) -> String {
    let tail = tail.strip_prefix('/').unwrap_or(tail);
    let mut out = String::with_capacity(scope.prefix().len() + tail.len());
    out.push_str(scope.prefix());
    out.push_str(tail);
    out
}

fn split_authority(s: &str) -> (&str, &str) {
    let end = s.find(['/', '?', '#', '\\']).unwrap_or(s.len());
    s.split_at(end)
}
