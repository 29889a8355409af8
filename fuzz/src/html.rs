//! The HTML oracle: the rewritten page parsed as a browser parses it (html5ever's tree
//! builder: entities decoded, raw-text elements, foreign content, `<template>`,
//! duplicate attributes dropped), then every URL it holds checked with
//! [`crate::check`].

use html5ever::tendril::{StrTendril, TendrilSink};
use html5ever::tree_builder::{ElemName, ElementFlags, NodeOrText, QuirksMode, TreeSink};
use html5ever::{parse_document, Attribute, LocalName, Namespace, QualName};
use std::borrow::Cow;
use std::cell::{Cell, RefCell};

/// Elements by handle (`handle / 2`; odd handles are template contents and other nodes).
#[derive(Default)]
struct Sink {
    next: Cell<usize>,
    elements: RefCell<Vec<Element>>,
}

struct Element {
    name: QualName,
    attrs: Vec<Attribute>,
    text: String,
}

/// An element's name, owned (atoms are reference counted): the elements live in a
/// `RefCell`, so no borrow of them can be handed out.
#[derive(Debug)]
struct Name(QualName);

impl ElemName for Name {
    fn ns(&self) -> &Namespace {
        &self.0.ns
    }
    fn local_name(&self) -> &LocalName {
        &self.0.local
    }
}

const DOCUMENT: usize = usize::MAX;

impl Sink {
    fn node(&self) -> usize {
        let id = self.next.get();
        self.next.set(id + 2);
        id | 1
    }

    fn text_into(&self, parent: &usize, child: NodeOrText<usize>) {
        if let NodeOrText::AppendText(t) = child {
            if parent & 1 == 0 && *parent != DOCUMENT {
                let mut els = self.elements.borrow_mut();
                let el = &mut els[parent / 2];
                if el.text.len() < 1 << 20 {
                    el.text.push_str(&t);
                }
            }
        }
    }
}

impl TreeSink for Sink {
    type Handle = usize;
    type Output = Vec<Element>;
    type ElemName<'a> = Name;

    fn finish(self) -> Vec<Element> {
        self.elements.into_inner()
    }
    fn parse_error(&self, _msg: Cow<'static, str>) {}
    fn get_document(&self) -> usize {
        DOCUMENT
    }
    fn elem_name<'a>(&'a self, target: &'a usize) -> Name {
        Name(self.elements.borrow()[target / 2].name.clone())
    }
    fn create_element(&self, name: QualName, attrs: Vec<Attribute>, _: ElementFlags) -> usize {
        let mut els = self.elements.borrow_mut();
        els.push(Element {
            name,
            attrs,
            text: String::new(),
        });
        (els.len() - 1) * 2
    }
    fn create_comment(&self, _text: StrTendril) -> usize {
        self.node()
    }
    fn create_pi(&self, _target: StrTendril, _data: StrTendril) -> usize {
        self.node()
    }
    fn append(&self, parent: &usize, child: NodeOrText<usize>) {
        self.text_into(parent, child);
    }
    fn append_based_on_parent_node(
        &self,
        element: &usize,
        _prev: &usize,
        child: NodeOrText<usize>,
    ) {
        self.text_into(element, child);
    }
    fn append_doctype_to_document(&self, _: StrTendril, _: StrTendril, _: StrTendril) {}
    fn get_template_contents(&self, target: &usize) -> usize {
        target | 1
    }
    fn same_node(&self, x: &usize, y: &usize) -> bool {
        x == y
    }
    fn set_quirks_mode(&self, _mode: QuirksMode) {}
    fn append_before_sibling(&self, _sibling: &usize, _new: NodeOrText<usize>) {}
    fn add_attrs_if_missing(&self, target: &usize, attrs: Vec<Attribute>) {
        // A second `<html>` or `<body>` tag lends the first its new attributes.
        let mut els = self.elements.borrow_mut();
        let el = &mut els[target / 2];
        for a in attrs {
            if !el.attrs.iter().any(|b| b.name == a.name) {
                el.attrs.push(a);
            }
        }
    }
    fn remove_from_parent(&self, _target: &usize) {}
    fn reparent_children(&self, _node: &usize, _new_parent: &usize) {}
}

/// Parses `html` as a browser would and checks every URL in it: panics on an escape.
pub fn check_document(html: &str) {
    let elements = parse_document(Sink::default(), Default::default()).one(html);
    for el in &elements {
        check_element(el);
    }
}

fn check_element(el: &Element) {
    let local = &*el.name.local;
    let attr = |name: &str| {
        el.attrs
            .iter()
            .find(|a| a.name.ns.is_empty() && &*a.name.local == name)
            .map(|a| &*a.value)
    };
    for a in &el.attrs {
        let name = &*a.name.local;
        let value = &*a.value;
        if !a.name.ns.is_empty() {
            if name == "href" {
                crate::gap("xlink:href", "not rewritten", value);
            }
            continue;
        }
        match name {
            "href" | "src" | "action" | "formaction" | "poster" | "background" => {
                crate::check(name, value)
            }
            "data" if local == "object" => crate::check("object data", value),
            "srcset" => {
                for u in crate::srcset_urls(value) {
                    crate::check("srcset", u);
                }
            }
            "style" => crate::check_css("style attribute", value),
            "imagesrcset" | "ping" => {
                for u in value.split([' ', ',', '\t', '\n']) {
                    if let crate::Verdict::Escape(d) = crate::classify(u) {
                        crate::gap(name, "not rewritten", &d);
                    }
                }
            }
            _ => {}
        }
    }
    if local == "meta"
        && attr("http-equiv").is_some_and(|e| e.trim().eq_ignore_ascii_case("refresh"))
    {
        if let Some(u) = attr("content").and_then(crate::refresh_url) {
            crate::check("meta refresh", u);
        }
    }
    if local == "style" {
        crate::check_css("<style>", &el.text);
    }
}
