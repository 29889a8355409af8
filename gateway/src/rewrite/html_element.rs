//! The element rewriter both HTML paths share: each start tag's URL attributes, `srcset`,
//! `style=`, `<meta http-equiv>`, `<meta name=referrer>` and `integrity`, read once and set
//! where they change, on lol_html's elements and the fast path's tags alike ([`Tag`]).

use super::entities::attribute_value;
use super::{CssRewriter, Scope};
use lol_html::html_content::Element;
use std::borrow::Cow;
use std::sync::Arc;

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
