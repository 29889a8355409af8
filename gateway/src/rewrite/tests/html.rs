//! The HTML rewriter page by page: URL attributes, `srcset`, `style=`, `<meta>`, the
//! injected script, charsets, the memory cap, character references, and the odd tags the
//! fuzz targets found.

use super::*;

#[test]
fn html_attributes() {
    let script = inject_script(&scope());
    for (input, want) in [
        (r#"<a href="/x">"#, r#"<a href="P/x">"#),
        (r#"<a href='/x'>"#, r#"<a href="P/x">"#),
        (r#"<a href=/x>"#, r#"<a href="P/x">"#),
        (
            r#"<a href="http://192.168.1.50/cfg">"#,
            r#"<a href="P/cfg">"#,
        ),
        (r#"<a href="//192.168.1.50/cfg">"#, r#"<a href="P/cfg">"#),
        (r#"<a href="P/x">"#, r#"<a href="P/x">"#),
        (r#"<a href="rel.html">"#, r#"<a href="rel.html">"#),
        (r##"<a href="#frag">"##, r##"<a href="#frag">"##),
        (
            r#"<a href="javascript:go('/x')">"#,
            r#"<a href="javascript:go('/x')">"#,
        ),
        (
            r#"<img src="data:image/gif;base64,R0lGOD">"#,
            r#"<img src="data:image/gif;base64,R0lGOD">"#,
        ),
        (
            r#"<a href="https://example.com/">"#,
            r#"<a href="https://example.com/">"#,
        ),
        (
            r#"<form action="/logout.fcgi" method=post>"#,
            r#"<form action="P/logout.fcgi" method=post>"#,
        ),
        (
            r#"<button formaction="/x">"#,
            r#"<button formaction="P/x">"#,
        ),
        (
            r#"<video poster="/p.jpg" src="/v.mp4">"#,
            r#"<video poster="P/p.jpg" src="P/v.mp4">"#,
        ),
        (r#"<object data="/o.svg">"#, r#"<object data="P/o.svg">"#),
        (r#"<div data="/not-a-url">"#, r#"<div data="/not-a-url">"#),
        (
            r#"<img srcset="/a.jpg 1x, /b.jpg 2x">"#,
            r#"<img srcset="P/a.jpg 1x, P/b.jpg 2x">"#,
        ),
        (
            r#"<img srcset="/a.jpg 1x,/b.jpg 2x,rel.jpg 3x">"#,
            r#"<img srcset="P/a.jpg 1x,P/b.jpg 2x,rel.jpg 3x">"#,
        ),
        // Without whitespace a comma is part of the URL (HTML's srcset parsing).
        (
            r#"<img srcset="/a.jpg,/b.jpg">"#,
            r#"<img srcset="P/a.jpg,/b.jpg">"#,
        ),
        (
            r#"<img srcset="/a.jpg 480w, http://192.168.1.50/b.jpg 800w">"#,
            r#"<img srcset="P/a.jpg 480w, P/b.jpg 800w">"#,
        ),
        // next/image preloads its candidates (Next.js writes `imageSrcSet`).
        (
            r#"<link rel="preload" as="image" imageSrcSet="/_next/image?url=%2Fa.png&amp;w=64 1x, /b.png 2x">"#,
            r#"<link rel="preload" as="image" imageSrcSet="P/_next/image?url=%2Fa.png&amp;w=64 1x, P/b.png 2x">"#,
        ),
        (
            r#"<div style="background:url(/bg.png)">"#,
            r#"<div style="background:url(P/bg.png)">"#,
        ),
        (
            r#"<a href="/x?a=1&amp;b=2">"#,
            r#"<a href="P/x?a=1&amp;b=2">"#,
        ),
        (
            r#"<meta http-equiv="refresh" content="0; url=/pt_BR/html/index.html">"#,
            r#"<meta http-equiv="refresh" content="0; url=P/pt_BR/html/index.html">"#,
        ),
        (
            r#"<meta http-equiv="Content-Security-Policy" content="script-src 'self'"><p>"#,
            "<p>",
        ),
        // The Referer fallback needs a Referer; other sites still get none.
        (
            r#"<meta name="Referrer" content="no-referrer"><meta name=x content=y>"#,
            r#"<meta name="Referrer" content="same-origin"><meta name=x content=y>"#,
        ),
        (
            r#"<link rel=stylesheet href="/s.css" integrity="sha384-x">"#,
            r#"<link rel=stylesheet href="P/s.css">"#,
        ),
        (
            "<style>a{b:url(/x.png)} @import '/y.css';</style>",
            "<style>a{b:url(P/x.png)} @import 'P/y.css';</style>",
        ),
        (
            "<script>var u = '/x';</script>",
            "<script>var u = '/x';</script>",
        ),
        (
            "<head><title>t</title></head>",
            "<head>SCRIPT<title>t</title></head>",
        ),
        ("<body><p>x</p></body>", "<body>SCRIPT<p>x</p></body>"),
        (
            "<html><head></head><body></body></html>",
            "<html><head>SCRIPT</head><body></body></html>",
        ),
    ] {
        let (input, want) = (p(input), p(want).replace("SCRIPT", &script));
        assert_eq!(html(&input), want, "{input}");
    }
}

#[test]
fn html_keeps_the_pages_charset() {
    // ISO-8859-1 page: accents stay single Latin-1 bytes; the URL is still rewritten.
    let page = b"<html><head><title>Configura\xe7\xe3o</title></head><body><a href=\"/a\">Sa\xedda</a></body></html>";
    for chunk in [1, 5, page.len()] {
        let out = html_all(page, chunk, Some("iso-8859-1"));
        let text = encoding_rs::WINDOWS_1252.decode(&out).0.into_owned();
        assert!(text.contains("Configura\u{e7}\u{e3}o"), "{text}");
        assert!(
            text.contains(&p("<a href=\"P/a\">Sa\u{ed}da</a>")),
            "{text}"
        );
        assert!(out.windows(2).any(|w| w == b"\xe7\xe3"), "bytes re-encoded");
    }
    // UTF-8 page with a meta charset and no header charset.
    let page = "<meta charset=utf-8><p>Ol\u{e1}, catraca</p><a href=/x>";
    assert_eq!(
        String::from_utf8(html_all(page.as_bytes(), 3, None)).unwrap(),
        p("<meta charset=utf-8><p>Ol\u{e1}, catraca</p><a href=\"P/x\">")
    );
}

#[test]
fn injected_script_cannot_be_broken_out_of() {
    let s = Scope::new(SID, "http://</script><script>alert(1)//");
    let script = inject_script(&s);
    assert_eq!(script.matches("</script>").count(), 1, "{script}");
    assert!(script.contains(&format!("\"/remote/s/{SID}/\"")));
}

#[test]
fn html_memory_cap_fails_the_page_not_the_process() {
    // A tag that never ends is buffered by lol_html; past the cap the rewrite errors.
    let mut r = HtmlRewriter::new(Arc::new(scope()), None, 64 * 1024);
    let mut failed = false;
    r.write(b"<a href=\"").unwrap();
    for _ in 0..64 {
        if r.write(&[b'x'; 4096]).is_err() {
            failed = true;
            break;
        }
    }
    assert!(failed, "an unbounded tag must hit the memory cap");
}

/// Found by `fuzz/fuzz_targets/rewrite_html.rs`: lol_html hands on attribute values as
/// written, so `href="&#47;x"` (which the browser reads as `/x`) was left as it was. The
/// value is now decoded as the browser decodes it, and a rewritten one written back so
/// that it decodes to the new URL.
#[test]
fn entity_encoded_urls_in_attributes_are_rewritten_as_the_browser_decodes_them() {
    for (input, want) in [
        ("<a href=\"&#47;x\">", "<a href=\"P/x\">"),
        (
            "<a href=\"&sol;x?a=1&amp;b=2&c\">",
            "<a href=\"P/x?a=1&amp;b=2&amp;c\">",
        ),
        (
            "<img src=\"&#x2F;&#x2f;192.168.1.50/i\" srcset=\"&#47;a 1x\">",
            "<img src=\"P/i\" srcset=\"P/a 1x\">",
        ),
        ("<a href=\"&Tab;/x&lt;\">", "<a href=\"P/x<\">"),
        ("<a href=\"&#92;x\">", "<a href=\"P/x\">"),
        (
            "<meta http-equiv=\"refresh\" content=\"0;url=&#47;x\">",
            "<meta http-equiv=\"refresh\" content=\"0;url=P/x\">",
        ),
        (
            "<div style=\"b:url(&quot;&#47;x&quot;)\">",
            "<div style=\"b:url(&quot;P/x&quot;)\">",
        ),
        (
            "<meta http-equiv=\"&#82;efresh \" content=\"0;url=/x\">",
            "<meta http-equiv=\"&#82;efresh \" content=\"0;url=P/x\">",
        ),
        // A reference without its `;` before `=` or a letter is no reference.
        ("<a href=\"/x?a&ampb=1\">", "<a href=\"P/x?a&amp;ampb=1\">"),
        ("<a href=\"x&#47;y\">", "<a href=\"x&#47;y\">"),
        (
            "<a href=\"&#47;&#47;cdn.example/x\">",
            "<a href=\"&#47;&#47;cdn.example/x\">",
        ),
    ] {
        assert_eq!(html(&p(input)), p(want), "{input}");
    }
}

/// An attribute value that starts with the bytes of a UTF-16 BOM: the browser reads two
/// U+FFFD and then the URL, so the URL is rewritten (lol_html alone decoded it as UTF-16
/// and it went out unrewritten; the fast path hands a page with an `http-equiv` `<meta>`
/// to lol_html).
#[test]
fn a_bom_at_the_start_of_an_attribute_value_hides_no_url() {
    for bom in [&b"\xfe\xff"[..], b"\xff\xfe"] {
        for chunk in [1, 7, 4096] {
            let mut page = b"<meta http-equiv=x style=\"".to_vec();
            page.extend_from_slice(bom);
            page.extend_from_slice(b"a:url(/x)\"><img src=\"");
            page.extend_from_slice(bom);
            page.extend_from_slice(b"/y\">");
            let out = String::from_utf8(html_all(&page, chunk, None)).unwrap();
            assert!(
                out.contains("url(/remote/s/") && !out.contains("url(/x)"),
                "{out}"
            );
        }
    }
}

/// Found by the rewrite_html fuzz target in CI: `srcset/="&#x2f;a 1x"` is an empty
/// `srcset` and an attribute named `="&#x2f;a`; a changed tag is written again with a
/// space between its attributes, and `srcset ="&#x2f;a 1x"` is a srcset that was never
/// rewritten. The empty value is now spelt out, on both paths.
#[test]
fn an_attribute_named_with_equals_never_gives_its_neighbour_a_value() {
    let page = b"<img src=\"/i\" srcset/=\"&#x2f;a 1x\"><meta http-equiv=refresh \
        content/=\"0;url=/x\"><a href=/h title/=\"t\" x=\"t\"/=\"u\">\
        <script src integrity/=\"evil.js\"></script>\
        <link rel=stylesheet href integrity=\"x\"=\"a.css\">";
    for fast in [true, false] {
        for chunk in [1, 5, page.len()] {
            let out = String::from_utf8(html_chunked(page, chunk, fast)).unwrap();
            for want in [
                "src=\"/remote/s/",
                "srcset=\"\" =\"&#x2f;a",
                // Not changed, so written as it came.
                "content/=\"0;url=/x\"",
                "title=\"\" =\"t\"",
                "x=\"t\" =\"u\"",
                // Found in review: the removed `integrity` put `src` (`href`) next to
                // the `=`-named attribute.
                "<script src=\"\" =\"evil.js\">",
                "href=\"\" =\"a.css\"",
            ] {
                assert!(
                    out.contains(want),
                    "fast {fast}, chunk {chunk}: {want} in {out}"
                );
            }
        }
    }
}

/// Found by the rewrite_html fuzz target after the first fix: `<a t/=/=">` is `t`, an
/// attribute named `=` and one named `="`; written again as `t="" = ="`, the last `"`
/// opens a value that swallows the page after it. Such a pair cannot be spelt out (lol_html
/// takes no name `=`), so a changed tag with one goes; an unchanged one is left as written.
#[test]
fn equals_named_attributes_side_by_side_remove_a_changed_tag() {
    for fast in [true, false] {
        for chunk in [1, 4096] {
            let page = b"<p>a</p><a href=/h t/=/=\">link</a><p>b</p><i t/=/=\">i</i>";
            let out = String::from_utf8(html_chunked(page, chunk, fast)).unwrap();
            assert!(!out.contains("link") && !out.contains("href"), "{out}");
            assert!(
                out.contains("<p>a</p>") && out.contains("<p>b</p>"),
                "{out}"
            );
            assert!(out.contains("<i t/=/=\">i</i>"), "fast {fast}: {out}");
        }
    }
}

/// A tag with an attribute named `=…` and more attributes than a page ever writes is
/// removed with its content (the pairwise check stays bounded); one under the bound is
/// spelt out pair by pair.
#[test]
fn a_tag_of_many_equals_named_attributes_is_bounded() {
    let tag = |n: usize| {
        let attrs: String = (0..n).map(|i| format!(" b{i}/=\"x{i}\"")).collect();
        format!("<p>before</p><a href=/h{attrs}>inside</a><p>after</p>")
    };
    for fast in [true, false] {
        let out = String::from_utf8(html_chunked(tag(40).as_bytes(), 4096, fast)).unwrap();
        assert!(out.contains("b0=\"\" =\"x0\"") && out.contains("b39=\"\" =\"x39\""));
        let out = String::from_utf8(html_chunked(tag(200).as_bytes(), 4096, fast)).unwrap();
        assert!(
            !out.contains("<a") && !out.contains("inside"),
            "fast {fast}: {out}"
        );
        assert!(
            out.contains("before") && out.contains("after"),
            "fast {fast}: {out}"
        );
    }
}

/// Found by the rewrite_html fuzz target: after `<a><svg></a>` the browser is back in HTML,
/// where a `<style>` is raw-text CSS, but lol_html still lexes SVG markup in it, so the
/// CSS rewriter never saw what came inside a tag. Elements inside a `<style>` go. And CSS
/// in an SVG `<style>` is data text, whose references the browser decodes before CSS reads
/// it: `url(&#47;y)` was `url(/y)` unrewritten; it is decoded and rewritten now.
#[test]
fn markup_inside_a_style_is_removed() {
    for fast in [true, false] {
        for chunk in [1, 4096] {
            let page = b"<a><svg><g></a><style>b{c:url(/x)}<i>d{e:url(/y)}</i>f{g:url(/z)}\
                </style><p>after</p>";
            let out = String::from_utf8(html_chunked(page, chunk, fast)).unwrap();
            assert!(!out.contains("<i>") && !out.contains("url(/y)"), "{out}");
            assert!(
                !out.contains("url(/x)") && !out.contains("url(/z)"),
                "{out}"
            );
            assert!(out.contains("<p>after</p>"), "{out}");
            let page = b"<svg><style>.a{fill:url(/x)}.b{fill:url(&#47;y)}</style></svg><p>x</p>";
            let out = String::from_utf8(html_chunked(page, chunk, fast)).unwrap();
            assert!(out.contains(".a{fill:url(/remote/s/"), "fast {fast}: {out}");
            assert!(
                !out.contains("url(&#47;y)") && out.contains("<p>x</p>"),
                "{out}"
            );
        }
    }
}
