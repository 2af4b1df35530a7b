//! What the async I/O traits of a [`File`](super::File) and a [`TcpStream`](super::TcpStream)
//! share. Reads and writes at the descriptor's position are `ReadInto` and `WriteFrom`, which on
//! a socket wait as `Recv` and `Send` do.
//!
//! - A read keeps its operation between polls, so a poll after `Pending` gets the outcome of
//!   the read it started, and bytes beyond the caller's buffer are kept for the next read.
//! - A read reads into the stream's own buffer (`ReadInto`), kept from one read to the next.
//! - A write is taken whole at once: `poll_write` copies the bytes into the buffer of an
//!   operation (`WriteFrom`) it runs in the background and answers their length, as
//!   `tokio::fs::File` does; the buffer comes back for the next write. The background write
//!   resumes itself after a short count; its failure is what the next write, flush or close
//!   answers. So a write never reports another buffer's count.
//! - On a file, reads, writes and seeks share the position: each waits for the others'
//!   operation first. A socket's two directions are independent (one half may wait for data
//!   while the other writes).
//! - Each transfer asks for at most the policy's per-operation limit (`max_io_bytes`), so a
//!   large buffer makes short reads and several writes, never a refusal.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use super::{Discarding, Owned, Tenant};
use crate::op::{OpResult, SyscallOpType as Op, net_flags};
use crate::syscalls::CompletionFuture;

/// A write running in the background: `future` writes bytes `from..end` of the buffer it
/// carries (the buffer comes back with its completion, to write the rest after a short count
/// without another copy, then to take the next write's bytes). Dropped (with its handle), the
/// write goes on: its completion is discarded, not cancelled, so what `poll_write` took is
/// written (all but what a short count would have left).
#[derive(Debug)]
struct Write {
    future: Discarding,
    from: usize,
    end: usize,
}

/// The largest buffer a stream keeps between transfers, for its next read or write: a read or
/// write of more allocates its own, and lets it go after.
const KEEP_AT_MOST: usize = 64 << 10;

#[derive(Debug)]
pub(super) struct Stream {
    read: Option<CompletionFuture>,
    /// What a read brought beyond the buffer of the poll that took it, from `taken` on; once
    /// all taken, the buffer the next read reads into.
    leftover: Vec<u8>,
    taken: usize,
    write: Option<Write>,
    /// The buffer of the last write, back from it, for the next.
    spare: Vec<u8>,
    seek: Option<(CompletionFuture, io::SeekFrom)>,
    /// A seek asked for by tokio's `start_seek`, not yet polled.
    #[cfg(feature = "tokio")]
    seek_asked: Option<io::SeekFrom>,
    shutdown: Option<CompletionFuture>,
    /// Whether reads, writes and seeks share a position (a file's).
    ordered: bool,
    /// Last, so that it is dropped last: operations in flight are given up before the close is
    /// submitted behind them.
    owned: Owned,
}

impl Stream {
    /// A file's (`ordered`) or a socket's stream over `owned`.
    pub(super) fn new(owned: Owned, ordered: bool) -> Self {
        Stream {
            read: None,
            leftover: Vec::new(),
            taken: 0,
            write: None,
            spare: Vec::new(),
            seek: None,
            #[cfg(feature = "tokio")]
            seek_asked: None,
            shutdown: None,
            ordered,
            owned,
        }
    }

    pub(super) fn fd(&self) -> i32 {
        self.owned.fd
    }

    pub(super) fn tenant(&self) -> &Tenant {
        &self.owned.tenant
    }

    /// The ring its operations go to (its process's, from when it was made).
    pub(super) fn ring(&self) -> &std::sync::Arc<crate::syscalls::SyscallCompletionRing> {
        &self.owned.ring
    }

    fn submit(&self, op: Op) -> io::Result<CompletionFuture> {
        let tenant = &self.owned.tenant;
        Ok(tenant.manager.submit_async(tenant.pid, op)?)
    }

    /// Finishes the background write, then closes the descriptor and waits for it (a read,
    /// seek or shutdown in flight is given up first); the write's failure if it failed, else
    /// the close's.
    pub(super) async fn close(mut self) -> io::Result<()> {
        let written = std::future::poll_fn(|cx| self.poll_written(cx)).await;
        let Stream { read, seek, shutdown, owned, .. } = self;
        drop((read, seek, shutdown));
        let closed = owned.close().await;
        written.and(closed)
    }

    /// Drives the background write to its end: resubmits what a short count left, and answers
    /// its failure once.
    fn poll_written(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(write) = &mut self.write {
            let done = ready!(Pin::new(&mut write.future).poll(cx));
            let (from, end) = (write.from, write.end);
            self.write = None;
            let (wrote, buf) = done.into_buf();
            let n = match wrote {
                Ok(0) => return Poll::Ready(Err(io::Error::from(io::ErrorKind::WriteZero))),
                Ok(n) => n,
                Err(e) => return Poll::Ready(Err(e)),
            };
            let from = from + n;
            if from >= end {
                self.keep_for_writes(buf);
                break;
            }
            let future = self.submit(Op::WriteFrom { fd: self.owned.fd, offset: None, buf, range: from..end })?;
            self.write = Some(Write { future: Discarding(Some(future)), from, end });
        }
        Poll::Ready(Ok(()))
    }

    /// Keeps a write's buffer, back from it, for the next write (unless it is large).
    fn keep_for_writes(&mut self, buf: Vec<u8>) {
        if buf.capacity() <= KEEP_AT_MOST {
            self.spare = buf;
        }
    }

    /// The buffer the next read reads into: the last read's, all taken (unless it is large).
    fn read_buffer(&mut self) -> Vec<u8> {
        let mut buf = std::mem::take(&mut self.leftover);
        self.taken = 0;
        if buf.capacity() > KEEP_AT_MOST {
            return Vec::new();
        }
        buf.clear();
        buf
    }

    /// Drives a read in flight to its end, keeping its bytes for the next read.
    fn poll_read_kept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(read) = &mut self.read {
            let done = ready!(Pin::new(read).poll(cx));
            self.read = None;
            // A read starts only once the last one's bytes were all taken: what it brings is
            // all that is left to take.
            let (read, buf) = done.into_buf();
            (self.leftover, self.taken) = (buf, 0);
            read?;
        }
        Poll::Ready(Ok(()))
    }

    /// Drives a seek in flight to its end (its outcome is its poller's; this only waits).
    fn poll_seeked(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some((seek, _)) = &mut self.seek {
            let done = ready!(Pin::new(seek).poll(cx));
            self.seek = None;
            done.into_result()?;
            (self.leftover, self.taken) = (Vec::new(), 0);
        }
        Poll::Ready(Ok(()))
    }

    /// The most bytes one transfer may ask for: the policy's per-operation limit, read from the
    /// process the descriptor belongs to (no lookup).
    pub(super) fn cap(&self) -> usize {
        self.owned.ring.process().io_limit()
    }

    /// Reads up to `want` bytes, handing them to `put`; 0 at the end of the file (or when the
    /// peer shut its side).
    fn poll_read_with(
        &mut self,
        cx: &mut Context<'_>,
        want: usize,
        put: impl FnOnce(&[u8]),
    ) -> Poll<io::Result<usize>> {
        if self.ordered && self.read.is_none() {
            ready!(self.poll_written(cx))?;
            ready!(self.poll_seeked(cx))?;
        }
        if self.taken < self.leftover.len() {
            let n = want.min(self.leftover.len() - self.taken);
            put(&self.leftover[self.taken..self.taken + n]);
            self.taken += n;
            return Poll::Ready(Ok(n));
        }
        if want == 0 {
            return Poll::Ready(Ok(0));
        }
        if self.read.is_none() {
            let size = want.min(self.cap()).max(1);
            let buf = self.read_buffer();
            self.read = Some(self.submit(Op::ReadInto { fd: self.owned.fd, offset: None, buf, size })?);
        }
        ready!(self.poll_read_kept(cx))?;
        let n = want.min(self.leftover.len());
        put(&self.leftover[..n]);
        self.taken = n;
        Poll::Ready(Ok(n))
    }

    pub(super) fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let want = buf.len();
        self.poll_read_with(cx, want, |data| buf[..data.len()].copy_from_slice(data))
    }

    #[cfg(feature = "tokio")]
    pub(super) fn poll_read_buf(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let want = buf.remaining();
        ready!(self.poll_read_with(cx, want, |data| buf.put_slice(data)))?;
        Poll::Ready(Ok(()))
    }

    pub(super) fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        ready!(self.poll_written(cx))?;
        if self.ordered {
            ready!(self.poll_read_kept(cx))?;
            ready!(self.poll_seeked(cx))?;
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        // The one copy a write takes: into the buffer the operation carries (the last write's).
        let n = buf.len().min(self.cap());
        let mut data = std::mem::take(&mut self.spare);
        data.clear();
        data.extend_from_slice(&buf[..n]);
        let future = self.submit(Op::write_from(self.owned.fd, None, data))?;
        self.write = Some(Write { future: Discarding(Some(future)), from: 0, end: n });
        Poll::Ready(Ok(n))
    }

    /// Waits for the background write; its failure is the answer.
    pub(super) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_written(cx)
    }

    /// Moves the position (a file's), after the operations in flight. Bytes read ahead and
    /// not yet taken are given back first: the position is where the caller is.
    pub(super) fn poll_seek(&mut self, cx: &mut Context<'_>, pos: io::SeekFrom) -> Poll<io::Result<u64>> {
        ready!(self.poll_written(cx))?;
        ready!(self.poll_read_kept(cx))?;
        if self.seek.as_ref().is_some_and(|(_, asked)| *asked != pos) {
            ready!(self.poll_seeked(cx))?;
        }
        if self.seek.is_none() {
            let ahead = i64::try_from(self.leftover.len() - self.taken).unwrap_or(i64::MAX);
            let invalid = || io::Error::from(io::ErrorKind::InvalidInput);
            let (offset, whence) = match pos {
                io::SeekFrom::Start(at) => (i64::try_from(at).map_err(|_| invalid())?, 0),
                io::SeekFrom::Current(by) => (by.checked_sub(ahead).ok_or_else(invalid)?, 1),
                io::SeekFrom::End(by) => (by, 2),
            };
            let future = self.submit(Op::Lseek { fd: self.owned.fd, offset, whence })?;
            self.seek = Some((future, pos));
        }
        let (seek, _) = self.seek.as_mut().expect("a seek in flight");
        let done = ready!(Pin::new(seek).poll(cx));
        self.seek = None;
        let at: u64 = done.into_result()?.try_into()?;
        (self.leftover, self.taken) = (Vec::new(), 0);
        Poll::Ready(Ok(at))
    }

    /// tokio's `start_seek`: remembers where to, for [`poll_sought`](Self::poll_sought).
    #[cfg(feature = "tokio")]
    pub(super) fn start_seek(&mut self, pos: io::SeekFrom) -> io::Result<()> {
        if self.seek_asked.is_some() || self.seek.is_some() {
            return Err(io::Error::other("a seek is already in flight"));
        }
        self.seek_asked = Some(pos);
        Ok(())
    }

    /// tokio's `poll_complete`: the seek asked for, or where the position is.
    #[cfg(feature = "tokio")]
    pub(super) fn poll_sought(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        let pos = self.seek.as_ref().map(|(_, pos)| *pos).or(self.seek_asked).unwrap_or(io::SeekFrom::Current(0));
        let at = ready!(self.poll_seek(cx, pos));
        self.seek_asked = None;
        Poll::Ready(at)
    }

    /// Shuts the socket down for writing once the background write is done: the peer reads
    /// end of file.
    pub(super) fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_written(cx))?;
        if self.shutdown.is_none() {
            let how = net_flags::SHUT_WR;
            self.shutdown = Some(self.submit(Op::Shutdown { sockfd: self.owned.fd, how })?);
        }
        let shutdown = self.shutdown.as_mut().expect("a shutdown in flight");
        let done = ready!(Pin::new(shutdown).poll(cx));
        self.shutdown = None;
        Poll::Ready(done.into_result().map(|_: OpResult| ()))
    }
}

/// The async read and write traits (`futures_io`'s, and tokio's with the `tokio` feature) of a
/// handle with a `stream` field, its close (futures' `poll_close`, tokio's `poll_shutdown`)
/// being `$close` of the [`Stream`]: a flush for a file, a shutdown for writing for a socket.
macro_rules! read_write_traits {
    ($handle:ty, $close:ident) => {
        impl futures_io::AsyncRead for $handle {
            fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
                self.get_mut().stream.poll_read(cx, buf)
            }
        }

        impl futures_io::AsyncWrite for $handle {
            fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
                self.get_mut().stream.poll_write(cx, buf)
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                self.get_mut().stream.poll_flush(cx)
            }

            fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                self.get_mut().stream.$close(cx)
            }
        }

        #[cfg(feature = "tokio")]
        impl tokio::io::AsyncRead for $handle {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                self.get_mut().stream.poll_read_buf(cx, buf)
            }
        }

        #[cfg(feature = "tokio")]
        impl tokio::io::AsyncWrite for $handle {
            fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
                self.get_mut().stream.poll_write(cx, buf)
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                self.get_mut().stream.poll_flush(cx)
            }

            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                self.get_mut().stream.$close(cx)
            }
        }
    };
}

pub(super) use read_write_traits;
