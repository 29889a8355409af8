//! Rewriter throughput: `cargo bench -p ponte-gateway --bench rewrite`.
//! HTML (lol_html + the URL scope), CSS, and gzip-decoded HTML through `rewrite_body`,
//! each over 32 MiB fed in 16 KiB pieces; best of 3.

use bytes::Bytes;
use futures_util::{stream, StreamExt};
use ponte_gateway::rewrite::{rewrite_body, BodyPlan, Coding, CssRewriter, HtmlRewriter, Scope};
use std::sync::Arc;
use std::time::Instant;

const SIZE: usize = 32 * 1024 * 1024;
const PIECE: usize = 16 * 1024;

fn scope() -> Arc<Scope> {
    Arc::new(Scope::new(
        "3f2b8c1e-0000-4000-8000-00000000abcd",
        "http://192.168.1.50",
    ))
}

fn repeat(row: &str) -> Vec<u8> {
    row.repeat(SIZE / row.len()).into_bytes()
}

fn best_of_3(name: &str, bytes: usize, mut run: impl FnMut() -> usize) {
    let mut best = f64::MAX;
    let mut out = 0;
    for _ in 0..3 {
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

fn main() {
    let html = repeat(
        "<tr><td><a href=\"/user?id=1\">Jos\u{e9}</a></td><td><img src=\"/img/u.jpg\" \
         srcset=\"/img/u.jpg 1x, /img/u2.jpg 2x\"></td><td style=\"color:red\">texto comum \
         sem urls, s\u{f3} conte\u{fa}do</td></tr>\n",
    );
    best_of_3("html, links every ~200 bytes", html.len(), || {
        let mut r = HtmlRewriter::new(scope(), None, 1 << 20);
        let mut n = 0;
        for piece in html.chunks(PIECE) {
            n += r.write(piece).unwrap().len();
        }
        n + r.end().unwrap().len()
    });
    let plain = repeat("<p>Par\u{e1}grafo de texto sem nenhuma URL, apenas conte\u{fa}do.</p>\n");
    best_of_3("html, text only", plain.len(), || {
        let mut r = HtmlRewriter::new(scope(), None, 1 << 20);
        let mut n = 0;
        for piece in plain.chunks(PIECE) {
            n += r.write(piece).unwrap().len();
        }
        n + r.end().unwrap().len()
    });
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
