//! Fuzzes the CSS rewriter (stylesheets; `<style>` and `style=` use the same code)
//! streamed in chunks cut anywhere (the first 4 bytes seed the cuts). Properties: never
//! panics; output ≤ input + one prefix per rewritten URL + what escaping adds; cutting
//! never changes the
//! result; every URL a browser reads from the output (cssparser: escapes decoded,
//! `url()` in any spelling, `@import "…"`) stays under the session prefix or is
//! off-device.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ponte_fuzz::rewrite::CssRewriter;
use ponte_fuzz::{count, prefix, scope, Cuts};

/// `gateway/src/rewrite/css.rs`'s `MAX_CARRY` (not exported).
const MAX_CARRY: usize = 8 * 1024;

fuzz_target!(|data: &[u8]| {
    let Some((seed, input)) = data.split_first_chunk::<4>() else {
        return;
    };
    let scope = scope();
    let mut cuts = Cuts::new(u32::from_le_bytes(*seed));
    let mut css = CssRewriter::new();
    let mut out = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let (chunk, r) = rest.split_at(cuts.next(rest.len()));
        rest = r;
        css.push(&scope, chunk, &mut out);
    }
    css.finish(&scope, &mut out);

    let prefix = prefix();
    let added = count(&out, prefix.as_bytes()).saturating_sub(count(input, prefix.as_bytes()));
    // A URL read through escapes is written back with every character that is not plain
    // ASCII escaped (`\2f `, `\fffd `): at most 5 bytes more than the byte (or bytes) it
    // came from, each with its own `\`. A URL too long to hold may be dropped (shorter).
    let escapes = count(&out, b"\\");
    assert!(
        out.len() <= input.len() + added * prefix.len() + 5 * escapes,
        "output {} bytes for {} input bytes, {added} prefixes and {escapes} escapes",
        out.len(),
        input.len()
    );
    // Whole, the same stylesheet rewrites the same way (the carry is transparent) —
    // unless a token longer than the carry cap was cut, which passes unrewritten.
    if input.len() <= MAX_CARRY {
        let mut whole = Vec::new();
        let mut css = CssRewriter::new();
        css.push(&scope, input, &mut whole);
        css.finish(&scope, &mut whole);
        assert!(out == whole, "cut differently, rewritten differently");
    }

    ponte_fuzz::check_css("stylesheet", &String::from_utf8_lossy(&out));
});
