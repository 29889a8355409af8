//! Fuzzes the HTML rewriter as the gateway drives it: the page streamed through
//! `HtmlRewriter` in chunks cut anywhere (the first 4 bytes seed the cuts). Properties:
//! never panics; output ≤ input + the injected script + what each added prefix, each
//! quoted attribute, each escaped quote or ampersand and each CSS escape can add (see the
//! bound; nothing else grows); and every URL
//! in the output, read as a browser reads it (html5ever: entities decoded, raw text,
//! foreign content), stays under the session prefix or is off-device
//! (`ponte_fuzz::classify`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ponte_fuzz::rewrite::{inject_script, HtmlRewriter};
use ponte_fuzz::{count, prefix, scope, Cuts};
use std::sync::Arc;

/// lol_html's buffering cap, as `GatewayConfig::max_html_memory` (4 MiB) scaled to the
/// fuzzer's inputs: past it the page fails, which is allowed.
const MAX_MEMORY: usize = 256 * 1024;

fuzz_target!(|data: &[u8]| {
    let Some((seed, input)) = data.split_first_chunk::<4>() else {
        return;
    };
    let mut cuts = Cuts::new(u32::from_le_bytes(*seed));
    let scope = Arc::new(scope());
    let mut rewriter = HtmlRewriter::new(scope.clone(), None, MAX_MEMORY);
    let mut out = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let (chunk, r) = rest.split_at(cuts.next(rest.len()));
        rest = r;
        match rewriter.write(chunk) {
            Ok(o) => out.extend_from_slice(&o),
            Err(_) => return,
        }
    }
    match rewriter.end() {
        Ok(o) => out.extend_from_slice(&o),
        Err(_) => return,
    }

    let prefix = prefix();
    let script = inject_script(&scope);
    let prefixes = count(&out, prefix.as_bytes());
    assert!(
        prefixes
            <= count(input, prefix.as_bytes())
                + count(script.as_bytes(), prefix.as_bytes())
                + input.len(),
        "more prefixes than input bytes"
    );
    // What a rewritten attribute can grow by, each time marked in the output: its new
    // prefix and the quotes lol_html puts around it; a `"` written as `&quot;` (+5, from a
    // `"` in a single-quoted value); an `&` written as `&amp;` (+4, from a bare `&` in a
    // value that also held a reference: the rewriter decodes references and writes the
    // new value back escaped; the same for an SVG `<style>`'s text, where a bare `<` also
    // comes back as `&lt;`, +3); a character of a `style=` URL that CSS escapes spelt,
    // escaped again (`\27 `, at most +5 per `\`); and a named reference whose decoded
    // UTF-8 is longer than itself (`&nLt;`: 5 bytes, 6 decoded; at most input / 5);
    // a byte that is no UTF-8 (or a NUL) in a rewritten value, which lol_html (the
    // browser likewise) reads as U+FFFD and writes back as such (+2).
    // The injected script comes once.
    let bound = input.len()
        + input.len() / 5
        + script.len()
        + prefixes * (prefix.len() + 2)
        + count(&out, b"&quot;") * 5
        + count(&out, b"&amp;") * 4
        + count(&out, b"&lt;") * 3
        + count(&out, b"\\") * 5
        + count(&out, "\u{fffd}".as_bytes()) * 2
        + 64;
    assert!(
        out.len() <= bound,
        "output {} bytes > bound {bound} for {} input bytes",
        out.len(),
        input.len()
    );
    assert!(
        count(&out, b"<script>") <= count(input, b"<script>") + 1,
        "script injected more than once"
    );

    ponte_fuzz::html::check_document(&String::from_utf8_lossy(&out));
});
