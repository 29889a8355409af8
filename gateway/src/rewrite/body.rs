//! A device response body, decoded and rewritten as it streams.
//!
//! Memory per response is bounded whatever the body's size or compression ratio: the
//! decoder is pulled [`READ_CHUNK`] bytes at a time only as fast as the client takes the
//! output, the CSS carry is capped ([`super::css::MAX_CARRY`]) and lol_html's buffering is
//! capped by `max_html_memory` (a page that needs more fails, it does not grow).

use super::{BodyPlan, Coding, CssRewriter, HtmlRewriter, Scope};
use async_compression::tokio::bufread::{BrotliDecoder, GzipDecoder, ZlibDecoder};
use bytes::Bytes;
use futures_util::stream::{self, BoxStream, Stream, StreamExt};
use std::io;
use std::sync::Arc;
use tokio::io::AsyncRead;
use tokio_util::io::{ReaderStream, StreamReader};

/// Decoded bytes are read in pieces of this size.
pub const READ_CHUNK: usize = 16 * 1024;

/// The body as `plan` says: passed through, or decoded and rewritten. Errors from the
/// source, the decoder (a corrupt gzip) or the HTML rewriter (memory cap) end the stream
/// with an error; the caller aborts the response.
pub fn rewrite_body<S>(
    plan: BodyPlan,
    scope: Arc<Scope>,
    max_html_memory: usize,
    body: S,
) -> BoxStream<'static, io::Result<Bytes>>
where
    S: Stream<Item = io::Result<Bytes>> + Send + 'static,
{
    let (decode, stage) = match plan {
        BodyPlan::Pass => return body.boxed(),
        BodyPlan::Css { decode } => (decode, Stage::Css(CssRewriter::new())),
        BodyPlan::Html { decode, charset } => (
            decode,
            Stage::Html(Box::new(HtmlRewriter::new(
                scope.clone(),
                charset.as_deref(),
                max_html_memory,
            ))),
        ),
    };
    let decoded: BoxStream<'static, io::Result<Bytes>> = match decode {
        None => body.boxed(),
        Some(coding) => {
            let reader = StreamReader::new(body.boxed());
            let reader: Box<dyn AsyncRead + Send + Unpin> = match coding {
                Coding::Gzip => Box::new(GzipDecoder::new(reader)),
                Coding::Deflate => Box::new(ZlibDecoder::new(reader)),
                Coding::Brotli => Box::new(BrotliDecoder::new(reader)),
            };
            ReaderStream::with_capacity(reader, READ_CHUNK).boxed()
        }
    };
    stream::unfold(
        (decoded, Some(stage), scope),
        |(mut input, stage, scope)| async move {
            let mut stage = stage?;
            loop {
                let out = match input.next().await {
                    Some(Ok(chunk)) => match stage.push(&scope, &chunk) {
                        Ok(out) => out,
                        Err(e) => return Some((Err(e), (input, None, scope))),
                    },
                    Some(Err(e)) => return Some((Err(e), (input, None, scope))),
                    None => {
                        return match stage.finish(&scope) {
                            Ok(rest) if rest.is_empty() => None,
                            end => Some((end.map(Bytes::from), (input, None, scope))),
                        };
                    }
                };
                // Nothing decided yet (a tag or `url(` split across chunks): read on.
                if !out.is_empty() {
                    return Some((Ok(Bytes::from(out)), (input, Some(stage), scope)));
                }
            }
        },
    )
    .boxed()
}

enum Stage {
    Html(Box<HtmlRewriter>),
    Css(CssRewriter),
}

impl Stage {
    fn push(&mut self, scope: &Scope, chunk: &[u8]) -> io::Result<Vec<u8>> {
        match self {
            Stage::Html(h) => h.write(chunk).map_err(io::Error::other),
            Stage::Css(c) => {
                let mut out = Vec::with_capacity(chunk.len() + 64);
                c.push(scope, chunk, &mut out);
                Ok(out)
            }
        }
    }

    fn finish(self, scope: &Scope) -> io::Result<Vec<u8>> {
        match self {
            Stage::Html(h) => h.end().map_err(io::Error::other),
            Stage::Css(mut c) => {
                let mut out = Vec::new();
                c.finish(scope, &mut out);
                Ok(out)
            }
        }
    }
}
