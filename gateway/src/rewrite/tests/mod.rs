//! Table-driven tests for the rewriters: input, expected output, one line each.

use super::*;
use std::sync::Arc;

mod bodies;
mod headers;
mod html;
mod html_oracles;
mod scope;
mod stylesheets;

const SID: &str = "3f2b8c1e-0000-4000-8000-00000000abcd";

fn scope() -> Scope {
    Scope::new(SID, "http://192.168.1.50")
}

/// `P` stands for the prefix in the tables.
fn p(s: &str) -> String {
    s.replace("P/", &format!("/remote/s/{SID}/"))
}

fn html_all(input: &[u8], chunk: usize, charset: Option<&str>) -> Vec<u8> {
    let mut r = HtmlRewriter::new(Arc::new(scope()), charset, 1 << 20);
    let mut out = Vec::new();
    for c in input.chunks(chunk.max(1)) {
        out.extend(r.write(c).unwrap());
    }
    out.extend(r.end().unwrap());
    out
}

fn html(input: &str) -> String {
    let full = html_all(input.as_bytes(), input.len(), None);
    // Same result whatever the chunking: 1 byte splits every tag and every `url(`.
    for chunk in [1, 2, 3, 7, 64] {
        assert_eq!(
            html_all(input.as_bytes(), chunk, None),
            full,
            "chunk size {chunk}: {input}"
        );
    }
    String::from_utf8(full).unwrap()
}

fn html_chunked(input: &[u8], chunk: usize, fast: bool) -> Vec<u8> {
    let mut r = HtmlRewriter::with_fast_path(Arc::new(scope()), None, 1 << 20, fast);
    let mut out = Vec::new();
    for c in input.chunks(chunk.max(1)) {
        out.extend(r.write(c).unwrap());
    }
    out.extend(r.end().unwrap());
    out
}
