//! Whole bodies through [`rewrite_body`]: compressed HTML and CSS decoded and rewritten,
//! a corrupt one ending in an error, and a large page streaming through in small pieces.

use super::*;
use async_compression::tokio::bufread::{BrotliEncoder, GzipEncoder, ZlibEncoder};
use bytes::Bytes;
use futures_util::{stream, StreamExt};
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::AsyncReadExt;

async fn compress(coding: Coding, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match coding {
        Coding::Gzip => GzipEncoder::new(data).read_to_end(&mut out).await,
        Coding::Brotli => BrotliEncoder::new(data).read_to_end(&mut out).await,
        // HTTP's `deflate` is the zlib format (RFC 9110 §8.4.1.2).
        Coding::Deflate => ZlibEncoder::new(data).read_to_end(&mut out).await,
    }
    .unwrap();
    out
}

/// `data` cut into `chunk`-byte pieces, as a connector would deliver it.
fn source(data: Vec<u8>, chunk: usize) -> impl futures_util::Stream<Item = io::Result<Bytes>> {
    let pieces: Vec<io::Result<Bytes>> = data
        .chunks(chunk)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    stream::iter(pieces)
}

async fn collect(plan: BodyPlan, data: Vec<u8>, chunk: usize) -> io::Result<Vec<u8>> {
    let mut body = rewrite_body(plan, Arc::new(scope()), 1 << 20, source(data, chunk));
    let mut out = Vec::new();
    while let Some(c) = body.next().await {
        out.extend_from_slice(&c?);
    }
    Ok(out)
}

const PAGE: &str = "<html><head><link href=\"/s.css\" rel=stylesheet></head><body><a href=\"/x\">Sa\u{ed}da</a><style>a{b:url(/i.png)}</style></body></html>";

#[tokio::test]
async fn compressed_html_and_css_are_decoded_and_rewritten() {
    let plain = html(PAGE);
    for coding in [Coding::Gzip, Coding::Deflate, Coding::Brotli] {
        let packed = compress(coding, PAGE.as_bytes()).await;
        for chunk in [1, 7, packed.len()] {
            let plan = BodyPlan::Html {
                decode: Some(coding),
                charset: None,
            };
            let out = collect(plan, packed.clone(), chunk).await.unwrap();
            assert_eq!(
                String::from_utf8(out).unwrap(),
                plain,
                "{coding:?} / {chunk}"
            );
        }
    }
    let css = "a{b:url(/i.png)} @import '/y.css';";
    for coding in [Coding::Gzip, Coding::Deflate] {
        let packed = compress(coding, css.as_bytes()).await;
        let out = collect(
            BodyPlan::Css {
                decode: Some(coding),
            },
            packed,
            3,
        )
        .await
        .unwrap();
        assert_eq!(
            out,
            p("a{b:url(P/i.png)} @import 'P/y.css';").into_bytes(),
            "{coding:?}"
        );
    }
    // Pass: the bytes, untouched, whatever they are.
    let bytes = compress(Coding::Gzip, b"<a href=/x>").await;
    assert_eq!(
        collect(BodyPlan::Pass, bytes.clone(), 5).await.unwrap(),
        bytes
    );
}

#[tokio::test]
async fn a_corrupt_body_ends_in_an_error() {
    let mut packed = compress(Coding::Gzip, PAGE.as_bytes()).await;
    packed.truncate(packed.len() / 2);
    packed.extend_from_slice(b"garbage garbage garbage");
    let plan = BodyPlan::Html {
        decode: Some(Coding::Gzip),
        charset: None,
    };
    assert!(collect(plan, packed, 16).await.is_err());
}

#[tokio::test]
async fn a_large_page_streams_through_in_small_pieces() {
    // 32 MiB of links, gzip-compressed (a few hundred KiB on the wire), produced lazily:
    // output must start long before the input ends, and no piece may be large.
    let row = "<p><a href=\"/item\">item</a> <img src=\"/i.png\"></p>\n";
    let rows = 32 * 1024 * 1024 / row.len();
    let mut page = String::from("<html><head></head><body>");
    page.push_str(&row.repeat(rows));
    page.push_str("</body></html>");
    let packed = compress(Coding::Gzip, page.as_bytes()).await;
    let fed = Arc::new(AtomicUsize::new(0));
    let counter = fed.clone();
    let src = source(packed.clone(), 4096).inspect(move |c| {
        if let Ok(c) = c {
            counter.fetch_add(c.len(), Ordering::Relaxed);
        }
    });
    let plan = BodyPlan::Html {
        decode: Some(Coding::Gzip),
        charset: None,
    };
    let mut body = rewrite_body(plan, Arc::new(scope()), 1 << 20, src);
    let (mut total, mut largest, mut links) = (0usize, 0usize, 0usize);
    let mut fed_at_first = None;
    let needle = p("href=\"P/item\"");
    while let Some(c) = body.next().await {
        let c = c.unwrap();
        fed_at_first.get_or_insert(fed.load(Ordering::Relaxed));
        total += c.len();
        largest = largest.max(c.len());
        links += c
            .windows(needle.len())
            .filter(|w| *w == needle.as_bytes())
            .count();
    }
    let fed_at_first = fed_at_first.unwrap();
    assert!(
        fed_at_first < packed.len() / 4,
        "first output after {fed_at_first} of {} bytes",
        packed.len()
    );
    assert!(largest <= 256 * 1024, "largest piece {largest} bytes");
    assert!(total > page.len(), "{total}");
    // A row split across pieces may hide a link from the count; nearly all are seen.
    assert!(
        links >= rows * 99 / 100,
        "{links} of {rows} links rewritten"
    );
}
