//! The CSS rewriter: `url(…)` and `@import` in every chunking, byte at a time and in
//! Latin-1, through escapes, comments and strings, and the carry's cap.

use super::*;

fn css_all(input: &str, cuts: &[usize]) -> String {
    let s = scope();
    let mut css = CssRewriter::new();
    let mut out = Vec::new();
    let mut at = 0;
    for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
        css.push(&s, &input.as_bytes()[at..cut], &mut out);
        at = cut;
    }
    css.finish(&s, &mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn css() {
    for (input, want) in [
        (
            "a{background:url(/img/a.png)}",
            "a{background:url(P/img/a.png)}",
        ),
        (
            "a{background:URL( '/img/a.png' )}",
            "a{background:URL( 'P/img/a.png' )}",
        ),
        (
            "a{background:url(\"http://192.168.1.50/a.png\")}",
            "a{background:url(\"P/a.png\")}",
        ),
        ("@import \"/css/base.css\";", "@import \"P/css/base.css\";"),
        (
            "@import '/css/base.css' screen;",
            "@import 'P/css/base.css' screen;",
        ),
        (
            "@import url(/css/base.css);",
            "@import url(P/css/base.css);",
        ),
        ("a{b:url(img/rel.png)}", "a{b:url(img/rel.png)}"),
        ("a{b:url(#frag)}", "a{b:url(#frag)}"),
        (
            "a{b:url(data:image/png;base64,AAAA)}",
            "a{b:url(data:image/png;base64,AAAA)}",
        ),
        (
            "a{b:url(//cdn.example/x.png)}",
            "a{b:url(//cdn.example/x.png)}",
        ),
        ("a{b:myurl(/x)}", "a{b:myurl(/x)}"),
        ("a{b:url(P/x)}", "a{b:url(P/x)}"),
        // At the end of the stylesheet a URL is complete: the browser fetches it.
        ("a{b:url(/unterminated", "a{b:url(P/unterminated"),
        // A comment holds no URL.
        ("/* url(/c) */", "/* url(/c) */"),
        (
            "p{content:'\u{e7}\u{e3}o'} a{b:url(/\u{e7}.png)}",
            "p{content:'\u{e7}\u{e3}o'} a{b:url(P/\u{e7}.png)}",
        ),
    ] {
        let (input, want) = (p(input), p(want));
        assert_eq!(css_all(&input, &[]), want, "{input}");
        // Every split point, including inside `url(` and inside the URL.
        for cut in 1..input.len() {
            if input.is_char_boundary(cut) {
                assert_eq!(css_all(&input, &[cut]), want, "{input} cut at {cut}");
            }
        }
    }
}

#[test]
fn css_byte_at_a_time_and_latin1() {
    let input = b"a{b:url(/x.png)} p{content:'\xe7\xe3o'} @import '/y.css';";
    let s = scope();
    let mut css = CssRewriter::new();
    let mut out = Vec::new();
    for b in input.iter() {
        css.push(&s, std::slice::from_ref(b), &mut out);
    }
    css.finish(&s, &mut out);
    let mut want = p("a{b:url(P/x.png)} p{content:'").into_bytes();
    want.extend_from_slice(b"\xe7\xe3o'} ");
    want.extend_from_slice(p("@import 'P/y.css';").as_bytes());
    assert_eq!(out, want);
}

#[test]
fn css_carry_is_bounded() {
    // A URL longer than the carry cap is not held: one the gateway leaves alone (a
    // `data:` URL) passes through, one it would rewrite is dropped, never passed on
    // unrewritten.
    let s = scope();
    let filler = vec![b'x'; css::MAX_CARRY * 2];
    for (start, passed) in [(&b"a{b:url(data:"[..], true), (b"a{b:url(/", false)] {
        let mut css = CssRewriter::new();
        let mut out = Vec::new();
        css.push(&s, start, &mut out);
        css.push(&s, &filler, &mut out);
        assert_eq!(
            out.len() > css::MAX_CARRY,
            passed,
            "held {} bytes",
            out.len()
        );
        css.push(&s, b") c{d:url(/y)}", &mut out);
        css.finish(&s, &mut out);
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.ends_with(&p(") c{d:url(P/y)}")),
            "{}",
            &out[out.len() - 40..]
        );
        if !passed {
            assert_eq!(out, p("a{b:url() c{d:url(P/y)}"));
        }
    }
}

/// Found by `fuzz/fuzz_targets/rewrite_css.rs`: `url(` and `@import` spelt with CSS
/// escapes, URLs spelt with escapes, and quotes in comments or strings that hid a real
/// `url(` from the scanner, all led to the gateway's root.
#[test]
fn css_urls_are_found_through_escapes_comments_and_strings() {
    for (input, want) in [
        ("a{b:u\\72l(/x)}", "a{b:u\\72l(P/x)}"),
        ("a{b:\\75 \\52 L(/x)}", "a{b:\\75 \\52 L(P/x)}"),
        ("a{b:url(\\2f x)}", "a{b:url(P/x)}"),
        (
            "a{b:url( '\\2f \\2f 192.168.1.50/x' )}",
            "a{b:url( 'P/x' )}",
        ),
        ("a{b:url(/x\\29 y)}", "a{b:url(P/x\\)y)}"),
        ("a{b:url(/\\3c/style\\3e)}", "a{b:url(P/\\3c /style\\3e )}"),
        ("@\\69mport \"/i.css\";", "@\\69mport \"P/i.css\";"),
        ("@import /**/'\\2fi.css';", "@import /**/'P/i.css';"),
        (
            "/* url(\" */ a{b:url(/x)} /* \" */",
            "/* url(\" */ a{b:url(P/x)} /* \" */",
        ),
        (
            "a{content:\"url('\"; b:url(/y); c:\"'\"}",
            "a{content:\"url('\"; b:url(P/y); c:\"'\"}",
        ),
        ("a{b:x\\0url(a url(/y))}", "a{b:x\\0url(a url(P/y))}"),
        (
            "a{b:#url(/x) 1url(/x) -url(/x)}",
            "a{b:#url(/x) 1url(/x) -url(/x)}",
        ),
        ("<!--url(/x)", "<!--url(P/x)"),
        // A bad URL is dropped by the browser: written as `(`, its escapes left out, so
        // tokenizers that disagree on where a bad URL's escapes end (cssparser reads
        // `url(/ \\)` on past the `)`) agree on what follows: here two strings.
        ("a{b:url(/x\ny)}", "a{b:url(()}"),
        ("a{b:url(/ x) c:url(/y)}", "a{b:url(() c:url(P/y)}"),
        (
            "a{b:URL(/ \\\\)\")\"\"url(/x)}",
            "a{b:URL(()\")\"\"url(/x)}",
        ),
        // `\\` is a backslash (then a slash to the browser); NUL is U+FFFD, no bad URL.
        (
            "a{b:url('\\\\192.168.1.50/l')}",
            "a{b:url('P/192.168.1.50/l')}",
        ),
        ("a{b:url(/\0x)}", "a{b:url(P/\0x)}"),
        // An escape's hex digits take the whitespace after them, CR too: no bad string.
        (
            "a{b:\"\\2\r' x\" c:url(/y) d:'}",
            "a{b:\"\\2\r' x\" c:url(P/y) d:'}",
        ),
        ("@import \"/i\\2\rx\";", "@import \"P/i\\2 x\";"),
    ] {
        let (input, want) = (p(input), p(want));
        assert_eq!(css_all(&input, &[]), want, "{input}");
        for cut in 1..input.len() {
            assert_eq!(css_all(&input, &[cut]), want, "{input} cut at {cut}");
        }
    }
}
