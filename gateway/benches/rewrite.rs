//! Rewriter throughput: `cargo bench -p ponte-gateway --bench rewrite` (`-- --only html,
//! link` for one row: the HTML pages run with the fast path and with lol_html alone).
//! HTML (lol_html + the URL scope), CSS, and gzip-decoded HTML through `rewrite_body`,
//! each over 32 MiB fed in 16 KiB pieces; best of 3.

use bytes::Bytes;
use futures_util::{stream, StreamExt};
use ponte_gateway::rewrite::{rewrite_body, BodyPlan, Coding, CssRewriter, HtmlRewriter, Scope};
use std::sync::Arc;
use std::time::Instant;

/// The input size: 32 MiB, or `PONTE_BENCH_MIB` (small, for callgrind).
fn size() -> usize {
    std::env::var("PONTE_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32)
        << 20
}

/// Runs of each row, the best kept: 3, or `PONTE_BENCH_RUNS` (1 under callgrind).
fn runs() -> usize {
    std::env::var("PONTE_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}
const PIECE: usize = 16 * 1024;

fn scope() -> Arc<Scope> {
    Arc::new(Scope::new(
        "3f2b8c1e-0000-4000-8000-00000000abcd",
        "http://192.168.1.50",
    ))
}

fn repeat(row: &str) -> Vec<u8> {
    row.repeat(size() / row.len()).into_bytes()
}

fn best_of_3(name: &str, bytes: usize, mut run: impl FnMut() -> usize) {
    let mut best = f64::MAX;
    let mut out = 0;
    for _ in 0..runs() {
        let t = Instant::now();
        out = run();
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!(
        "{name:<34} {:>8.1} MB/s   ({} MiB in, {} MiB out)",
        bytes as f64 / best / 1e6,
        bytes >> 20,
        out >> 20
    );
}

/// A link-dense page: a head with stylesheets, scripts and an inline `<style>`, then
/// rows of links, images with `srcset`, `style=` attributes and scripts.
fn link_dense() -> Vec<u8> {
    let head = "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Equipamento</title>\
        <link rel=\"stylesheet\" href=\"/css/main.css\"><link rel=icon href=/favicon.ico>\
        <script src=\"/js/app.js\"></script><style>body{background:url(/img/bg.png)} \
        .logo{background-image:url('/img/logo.svg')}</style></head><body>\n";
    let row = "<tr><td><a href=\"/user?id=1\" class=\"link\">Jos\u{e9}</a></td><td><img \
        src=\"/img/u.jpg\" srcset=\"/img/u.jpg 1x, /img/u2.jpg 2x\" alt=\"\"></td>\
        <td style=\"color:red\">texto comum</td><td style=\"background:url(/img/c.png)\">\
        <a href=\"http://192.168.1.50/cfg\">cfg</a> <a href=\"#top\">topo</a></td>\
        <td><link rel=prefetch href=/next.html><script src=\"/js/row.js\"></script></td></tr>\n";
    let mut page = head.as_bytes().to_vec();
    page.extend(repeat(row));
    page
}

fn rewrite_html(page: &[u8], fast: bool) -> usize {
    let mut r = HtmlRewriter::with_fast_path(scope(), None, 1 << 20, fast);
    let mut n = 0;
    for piece in page.chunks(PIECE) {
        n += r.write(piece).unwrap().len();
    }
    n + r.end().unwrap().len()
}

fn main() {
    // `--only NAME-PREFIX` runs the matching rows alone (for `valgrind --tool=callgrind`).
    let args: Vec<String> = std::env::args().collect();
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1).cloned());
    let run = |name: &str| only.as_deref().is_none_or(|o| name == o);
    let dense = link_dense();
    let html = repeat(
        "<tr><td><a href=\"/user?id=1\">Jos\u{e9}</a></td><td><img src=\"/img/u.jpg\" \
         srcset=\"/img/u.jpg 1x, /img/u2.jpg 2x\"></td><td style=\"color:red\">texto comum \
         sem urls, s\u{f3} conte\u{fa}do</td></tr>\n",
    );
    let plain = repeat("<p>Par\u{e1}grafo de texto sem nenhuma URL, apenas conte\u{fa}do.</p>\n");
    for (name, page) in [
        ("html, link-dense page", &dense),
        ("html, links every ~200 bytes", &html),
        ("html, text only", &plain),
    ] {
        for (how, fast) in [("", true), (" (lol_html)", false)] {
            let name = format!("{name}{how}");
            if run(&name) {
                best_of_3(&name, page.len(), || rewrite_html(page, fast));
            }
        }
    }
    if only.is_some() {
        return;
    }
    let css = repeat(".a{background:url(/img/a.png) no-repeat;color:#333;margin:0 auto}\n");
    best_of_3("css, url() every ~70 bytes", css.len(), || {
        let s = scope();
        let mut c = CssRewriter::new();
        let mut out = Vec::with_capacity(PIECE * 2);
        let mut n = 0;
        for piece in css.chunks(PIECE) {
            out.clear();
            c.push(&s, piece, &mut out);
            n += out.len();
        }
        out.clear();
        c.finish(&s, &mut out);
        n + out.len()
    });
    if only.is_some() {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let gz = rt.block_on(async {
        use tokio::io::AsyncReadExt;
        let mut out = Vec::new();
        async_compression::tokio::bufread::GzipEncoder::new(&html[..])
            .read_to_end(&mut out)
            .await
            .unwrap();
        out
    });
    best_of_3("gzip html via rewrite_body", html.len(), || {
        rt.block_on(async {
            let pieces: Vec<std::io::Result<Bytes>> = gz
                .chunks(PIECE)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            let plan = BodyPlan::Html {
                decode: Some(Coding::Gzip),
                charset: None,
            };
            let mut body = rewrite_body(plan, scope(), 1 << 20, stream::iter(pieces));
            let mut n = 0;
            while let Some(c) = body.next().await {
                n += c.unwrap().len();
            }
            n
        })
    });
}
