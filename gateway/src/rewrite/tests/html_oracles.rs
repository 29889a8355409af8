//! The HTML rewriter against its oracles: the old one-handler-per-selector rewriter
//! (`html_reference`), on odd pages and on the benchmark's pinned by hash; and the fast
//! path against lol_html alone, on odd and generated pages in every chunking.

use super::*;

/// Pages that reach every branch of the HTML rewriter, including the odd ones (case,
/// duplicates, foreign content, raw text, charsets, a tag cut by the end).
const ODD_PAGES: &[&[u8]] = &[
    b"<A HREF=\"/x\" SRC='/y' Style=\"b:URL( '/z' )\">",
    b"<a href=\"/x\" href=\"/y\"><img srcset=\"/a 1x\" SRCSET=\"/b 2x\" src=/c src=/d>",
    b"<img  src = \"/a\"\n\talt=x ><img src=\"/a\"/><img src=/a /><a/href=/x>",
    b"<a href=\"/x\" data=\"/d\"><object data=\"/o\" type=x><OBJECT DATA=/o data=/p>",
    b"<meta http-equiv=refresh content=\"5;URL='/x'\"><meta content=\"0;url=/y\" HTTP-EQUIV=\"Refresh\">",
    b"<meta http-equiv=\"content-security-policy\" content=\"x\" href=\"/x\"><meta data=/m><meta http-equiv=x-ua content=\"url=/q\">",
    b"<link href=/s.css integrity=abc rel=x integrity=def><script src=\"/j.js\" integrity=\"sha\"></script><div integrity=x href=/h>",
    b"<div style=\"color:red\"><td style='a:url(\"/q\\\"x\")' background=/bg.png><p style=\"@import '/i.css'\">",
    b"<svg><a href=\"/s\"><image href=\"/i\"/></a><style>x{y:url(/z)}</style></svg><math><mi href=/m>",
    b"<textarea><a href=\"/no\"></textarea><script>\"<a href='/x'>\"</script><!-- <a href=\"/c\"> -->",
    b"<title><a href=/t></title><noscript><a href=/n></noscript><xmp><a href=/xm></xmp><iframe><a href=/if></iframe>",
    b"<html><body><head><HEAD><p>x</p><body>",
    b"<!DOCTYPE html><html lang=pt><HEAD><meta charset=utf-8><title>t</title></head><BODY>",
    b"<a href=\"/\xff\xfe\">bad utf-8</a><a href=\"/ok\xc3\xa9\">",
    b"<meta charset=\"windows-1251\"><a href=\"/\xe0\xe1\">\xe0</a>",
    b"<a href='/x\"y'><a href=\"/x?a=1&amp;b=2&quot;\"><a href><a href=\"\"><a href=\" /x \">",
    b"<base href=\"/\"><img src=\"http://192.168.1.50/x\"><img src=\"//192.168.1.50/y\"><img src=\"https://cdn.example/z\">",
    b"<form action=/f><button formaction=/b><video poster=/p src=/v><input src=/i formaction=rel>",
    b"<img srcset=\"/a.jpg 1x, /b.jpg 2x\" src=\"/c.jpg\" style=\"background:url(/d)\">",
    b"<style>a{b:url(/x)}</style><style>@import \"/y.css\"; c{d:url(</style><style></style>",
    b"<p>text only, no tags with urls</p><br><hr/><input type=checkbox checked>",
    b"<a href=\"/remote/s/3f2b8c1e-0000-4000-8000-00000000abcd/x\"><a href=\"javascript:go('/x')\">",
    b"<plaintext><a href=/p>",
    b"<a href=\"/x",
];

/// The rewriter gives the bytes the old one-handler-per-selector rewriter gave.
#[test]
fn html_matches_the_old_rewriter() {
    let s = Arc::new(scope());
    for page in ODD_PAGES {
        for charset in [None, Some("iso-8859-1"), Some("shift_jis")] {
            for chunk in [1, 2, 3, 7, 64, page.len()] {
                let want = html_reference::rewrite(s.clone(), page, chunk, charset);
                assert_eq!(
                    html_all(page, chunk, charset),
                    want,
                    "{charset:?} / {chunk}: {}",
                    String::from_utf8_lossy(page)
                );
            }
        }
    }
}

/// FNV-1a, to pin outputs to the bytes the old rewriter produced.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The benchmark's pages (`benches/rewrite.rs`), 64 KiB of each in 16 KiB pieces: same
/// output as before, pinned by hash (computed with the old rewriter) and compared with it.
#[test]
fn bench_pages_are_rewritten_as_before() {
    let rows: [(&str, u64); 2] = [
        (
            "<tr><td><a href=\"/user?id=1\">Jos\u{e9}</a></td><td><img src=\"/img/u.jpg\" \
             srcset=\"/img/u.jpg 1x, /img/u2.jpg 2x\"></td><td style=\"color:red\">texto comum \
             sem urls, s\u{f3} conte\u{fa}do</td></tr>\n",
            10982173536122711621,
        ),
        (
            "<p>Par\u{e1}grafo de texto sem nenhuma URL, apenas conte\u{fa}do.</p>\n",
            1322446037589657528,
        ),
    ];
    for (row, hash) in rows {
        let page = row.repeat(64 * 1024 / row.len()).into_bytes();
        let out = html_all(&page, 16 * 1024, None);
        assert_eq!(
            out,
            html_reference::rewrite(Arc::new(scope()), &page, 16 * 1024, None)
        );
        assert_eq!(fnv(&out), hash, "{} bytes out", out.len());
    }
}

/// Pieces of markup that move lol_html's tokenizer between states, for generated pages.
const PIECES: &[&str] = &[
    "<a href=\"/x\">",
    "<a HREF='/y' >",
    "<img src=/i.png srcset=\"/a 1x, /b 2x\">",
    "<link rel=stylesheet href=/s.css integrity=x>",
    "<script src=/j.js>",
    "</script>",
    "<script>",
    "<style>",
    "</style>",
    "a{b:url(/u)}",
    "@import '/i.css';",
    "<div style=\"background:url(/bg)\">",
    "<img src=/i srcset/=\"/a 1x\" x/=/b>",
    "<meta http-equiv=refresh content/=\"0;url=/y\">",
    "<!--",
    "-->",
    "--!>",
    "<!-->",
    "<!",
    "<!-",
    "<!DOCTYPE html>",
    "<?x>",
    "</",
    "<",
    ">",
    "-",
    "--",
    "/",
    "=",
    "\"",
    "'",
    " ",
    "\n",
    "x",
    "\u{e9}",
    "<textarea>",
    "</textarea>",
    "<title>",
    "</TITLE >",
    "<noscript>",
    "</noscript>",
    "<iframe src=/f>",
    "</iframe>",
    "<head>",
    "<body class=b>",
    "<HEAD/>",
    "<head style=\"background:url(/h)\"/>",
    "<meta charset=utf-8>",
    "<meta charset=\"windows-1252\">",
    "<meta http-equiv=refresh content=\"0;url=/r\">",
    "<meta charset=bogus>",
    "<svg>",
    "</svg>",
    "<math>",
    "<plaintext>",
    "<object data=/o>",
    "<form action=/f>",
    "<a href=",
    "<p a=>",
    "</style a=>",
    "<br/>",
    "<img/src=/z>",
    "<a href=\"http://192.168.1.50/p\">",
    "<!--<script>",
    "</script >",
    "<script/>",
    "<p =x>",
    "<a b c=d e='f' g=\"h\">",
    "&quot;",
    "\"/q\"",
    "<x href=/y/>",
    "<a href=/q style=x/>",
    "<scRipt>",
    "</scRIPT>",
    "<xmp>",
    "</xmp>",
    "<![CDATA[",
    "]]>",
    "\0",
    "\r",
    "\x0c",
    "<a\thref=/t\x0c>",
    "<a href = \"/sp\" >",
    "<a href=\"/q\"x=\"y\">",
    "<img src=\"/a\" src=\"/b\">",
    "<a href='/x\"y'>",
    "</a b=\">\">",
    "<a b=\">\" href=/g>",
    "<script><!--",
    "<script><!--<script>",
    "</scripts>",
    "<SCRIPT >",
    "</style/>",
];

/// The fast path gives lol_html's bytes: on the odd pages and on generated ones, in
/// every chunking (each compared with lol_html fed the same chunks). Not generated: a
/// raw-text element's start tag ending in `=>` (`<style a=>`), after which lol_html's
/// output depends on the elements left open before it; the fast path hands such a page
/// to a fresh lol_html at that tag (see `html_fast`).
#[test]
fn html_fast_path_matches_lol_html() {
    let mut pages: Vec<Vec<u8>> = ODD_PAGES.iter().map(|p| p.to_vec()).collect();
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    // The benchmark's link-dense page (`benches/rewrite.rs`), 40 rows of it.
    let head = "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Equipamento</title>\
        <link rel=\"stylesheet\" href=\"/css/main.css\"><link rel=icon href=/favicon.ico>\
        <script src=\"/js/app.js\"></script><style>body{background:url(/img/bg.png)} \
        .logo{background-image:url('/img/logo.svg')}</style></head><body>\n";
    let row = "<tr><td><a href=\"/user?id=1\" class=\"link\">Jos\u{e9}</a></td><td><img \
        src=\"/img/u.jpg\" srcset=\"/img/u.jpg 1x, /img/u2.jpg 2x\" alt=\"\"></td>\
        <td style=\"color:red\">texto comum</td><td style=\"background:url(/img/c.png)\">\
        <a href=\"http://192.168.1.50/cfg\">cfg</a> <a href=\"#top\">topo</a></td>\
        <td><link rel=prefetch href=/next.html><script src=\"/js/row.js\"></script></td></tr>\n";
    pages.push(format!("{head}{}", row.repeat(40)).into_bytes());
    for _ in 0..3000 {
        let n = 1 + next() % 40;
        let page: String = (0..n)
            .map(|_| PIECES[(next() % PIECES.len() as u64) as usize])
            .collect();
        pages.push(page.into_bytes());
    }
    let script = inject_script(&scope());
    let show = |b: Vec<u8>| String::from_utf8_lossy(&b).replace(&script, "<SCRIPT>");
    for page in &pages {
        for chunk in [1, 3, 7, page.len()] {
            assert_eq!(
                show(html_chunked(page, chunk, true)),
                show(html_chunked(page, chunk, false)),
                "chunk {chunk}: {:?}",
                String::from_utf8_lossy(page)
            );
        }
    }
}
