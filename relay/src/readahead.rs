//! A read-ahead buffer under a connector's WebSocket that exists only while data flows.
//!
//! tungstenite reads at most its `read_buffer_size` per call, and that buffer is allocated
//! per connection for its whole life, so it is kept small (4 KiB: tens of thousands of
//! idle connectors). A 64 KiB body chunk then took 16 `recv` calls. Under it, this reads
//! up to [`READ_AHEAD`] per call into a buffer that is given back by the first read that
//! finds nothing (the socket would block, or ended), so an idle connection holds none of
//! it and a busy one at most [`READ_AHEAD`]. Given-back buffers wait in a small pool for
//! the next connection that reads: allocating and freeing 64 KiB per burst cost more
//! than the reads saved (glibc consolidates its free lists on every free that large).
//!
//! Must never: hold more than [`READ_AHEAD`] bytes, or keep its buffer across a read that
//! found nothing; nor the pool more than [`POOLED`] buffers.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most one read takes from the socket.
pub const READ_AHEAD: usize = 64 * 1024;

/// Buffers the pool keeps (1 MiB in all); one given back to a full pool is freed.
pub const POOLED: usize = 16;

static POOL: std::sync::Mutex<Vec<Box<[u8]>>> = std::sync::Mutex::new(Vec::new());

fn take_buffer() -> Box<[u8]> {
    let pooled = POOL.lock().unwrap_or_else(|e| e.into_inner()).pop();
    pooled.unwrap_or_else(|| vec![0; READ_AHEAD].into_boxed_slice())
}

fn give_back(buf: Box<[u8]>) {
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    if pool.len() < POOLED {
        pool.push(buf);
    }
}

/// `inner`, read ahead by up to [`READ_AHEAD`] bytes; writes pass through.
pub struct ReadAhead<S> {
    inner: S,
    /// `READ_AHEAD` bytes while data flows, none while idle.
    buf: Option<Box<[u8]>>,
    /// `buf[pos..end]` is read and not yet handed on.
    pos: usize,
    end: usize,
}

impl<S> ReadAhead<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            buf: None,
            pos: 0,
            end: 0,
        }
    }

    /// Bytes held now (for tests).
    #[cfg(test)]
    fn buffered(&self) -> usize {
        self.end - self.pos
    }

    fn release(&mut self) {
        if let Some(buf) = self.buf.take() {
            give_back(buf);
        }
        (self.pos, self.end) = (0, 0);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos == this.end {
            // A caller that asks for as much as a read-ahead would take reads directly.
            if out.remaining() >= READ_AHEAD {
                this.release();
                return Pin::new(&mut this.inner).poll_read(cx, out);
            }
            let buf = this.buf.get_or_insert_with(take_buffer);
            let mut rb = ReadBuf::new(buf);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) if !rb.filled().is_empty() => {
                    (this.pos, this.end) = (0, rb.filled().len());
                }
                other => {
                    // Nothing read (would block, ended, failed): give the buffer back
                    // while the connection is quiet.
                    this.release();
                    return other;
                }
            }
        }
        // Bytes from the buffer count against the task's tokio budget as a socket read
        // would: a connector that floods cannot keep its reader from yielding to others.
        let coop = std::task::ready!(tokio::task::coop::poll_proceed(cx));
        coop.made_progress();
        let n = (this.end - this.pos).min(out.remaining());
        let buf = this.buf.as_deref().unwrap_or_default();
        out.put_slice(&buf[this.pos..this.pos + n]);
        // Drained, the buffer stays for the next read while data flows.
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadAhead<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn small_reads_get_everything_in_order_and_nothing_is_held_when_drained() {
        let (mut tx, rx) = tokio::io::duplex(1 << 20);
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        tx.write_all(&data).await.unwrap();
        drop(tx);
        let mut r = ReadAhead::new(rx);
        let mut got = Vec::new();
        let mut piece = [0u8; 4096];
        loop {
            let n = r.read(&mut piece).await.unwrap();
            if n == 0 {
                break;
            }
            assert!(r.buffered() <= READ_AHEAD - n, "held {}", r.buffered());
            got.extend_from_slice(&piece[..n]);
        }
        assert_eq!(got, data);
        assert_eq!(r.buffered(), 0);
        assert!(r.buf.is_none(), "a drained read-ahead keeps no buffer");
    }

    #[tokio::test]
    async fn one_socket_read_serves_many_small_reads() {
        // A counting reader: how many reads reach the socket for 64 KiB read 4 KiB at a time.
        struct Counting<R>(R, usize);
        impl<R: AsyncRead + Unpin> AsyncRead for Counting<R> {
            fn poll_read(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                self.1 += 1;
                Pin::new(&mut self.0).poll_read(cx, buf)
            }
        }
        let (mut tx, rx) = tokio::io::duplex(1 << 20);
        tx.write_all(&vec![7u8; READ_AHEAD]).await.unwrap();
        let mut r = ReadAhead::new(Counting(rx, 0));
        let mut piece = [0u8; 4096];
        for _ in 0..READ_AHEAD / 4096 {
            r.read_exact(&mut piece).await.unwrap();
        }
        assert_eq!(r.inner.1, 1, "16 reads of 4 KiB are one read of the socket");
        assert!(r.buf.is_some(), "kept while data flows");
        // The next read finds nothing: the buffer goes back, the connection is idle.
        use futures_util::FutureExt as _;
        assert!(r.read(&mut piece).now_or_never().is_none());
        assert!(r.buf.is_none(), "an idle connection holds no read-ahead");
    }

    #[test]
    fn the_pool_of_given_back_buffers_is_bounded() {
        for _ in 0..2 * POOLED {
            give_back(vec![0; READ_AHEAD].into_boxed_slice());
        }
        // (Other tests may take one meanwhile; none can add past the bound.)
        assert!(POOL.lock().unwrap().len() <= POOLED);
        let taken: Vec<_> = (0..POOLED + 1).map(|_| take_buffer()).collect();
        assert!(taken.iter().all(|b| b.len() == READ_AHEAD));
    }
}
