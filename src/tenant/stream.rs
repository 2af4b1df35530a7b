//! What the async I/O traits of a [`File`](super::File) and a [`TcpStream`](super::TcpStream)
//! share: one operation in flight per direction, kept between polls, so a caller that polls
//! again after `Pending` gets the outcome of the operation it started rather than a second one.
//! Reads and writes at the descriptor's position are `Read` and `Write`, which on a socket wait
//! as `Recv` and `Send` do.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use super::{Owned, Tenant};
use crate::op::{OpResult, SyscallOpType as Op, net_flags};
use crate::syscalls::CompletionFuture;

#[derive(Debug)]
pub(super) struct Stream {
    owned: Owned,
    read: Option<CompletionFuture>,
    /// What a read brought beyond the buffer of the poll that took it, from `taken` on.
    leftover: Vec<u8>,
    taken: usize,
    write: Option<CompletionFuture>,
    /// The outcome of a write a flush waited for, for the `poll_write` that started it.
    written: Option<io::Result<usize>>,
    seek: Option<CompletionFuture>,
    shutdown: Option<CompletionFuture>,
}

/// Polls the operation in `slot`, started with `start` if none is; takes it out when done.
fn poll_op(
    slot: &mut Option<CompletionFuture>,
    cx: &mut Context<'_>,
    start: impl FnOnce() -> io::Result<CompletionFuture>,
) -> Poll<io::Result<OpResult>> {
    let future = match slot {
        Some(future) => future,
        None => slot.insert(start()?),
    };
    let done = ready!(Pin::new(future).poll(cx));
    *slot = None;
    Poll::Ready(done.into_result())
}

impl Stream {
    pub(super) fn new(owned: Owned) -> Self {
        Stream {
            owned,
            read: None,
            leftover: Vec::new(),
            taken: 0,
            write: None,
            written: None,
            seek: None,
            shutdown: None,
        }
    }

    pub(super) fn fd(&self) -> i32 {
        self.owned.fd
    }

    pub(super) fn tenant(&self) -> &Tenant {
        &self.owned.tenant
    }

    fn submit(tenant: &Tenant, op: Op) -> io::Result<CompletionFuture> {
        Ok(tenant.manager.submit_async(tenant.pid, op)?)
    }

    /// Closes the descriptor and waits for it; operations in flight are cancelled first.
    pub(super) async fn close(self) -> io::Result<()> {
        let Stream { owned, .. } = self;
        owned.close().await
    }

    pub(super) fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        if self.taken < self.leftover.len() {
            let n = buf.len().min(self.leftover.len() - self.taken);
            buf[..n].copy_from_slice(&self.leftover[self.taken..self.taken + n]);
            self.taken += n;
            return Poll::Ready(Ok(n));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let (tenant, fd, size) = (&self.owned.tenant, self.owned.fd, buf.len());
        let data: Vec<u8> =
            ready!(poll_op(&mut self.read, cx, || Self::submit(tenant, Op::Read { fd, size })))?.try_into()?;
        let n = buf.len().min(data.len());
        buf[..n].copy_from_slice(&data[..n]);
        if n < data.len() {
            (self.leftover, self.taken) = (data, n);
        }
        Poll::Ready(Ok(n))
    }

    #[cfg(feature = "tokio")]
    pub(super) fn poll_read_buf(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = ready!(self.poll_read(cx, buf.initialize_unfilled()))?;
        buf.advance(n);
        Poll::Ready(Ok(()))
    }

    pub(super) fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if let Some(written) = self.written.take() {
            return Poll::Ready(written);
        }
        if buf.is_empty() && self.write.is_none() {
            return Poll::Ready(Ok(0));
        }
        let (tenant, fd) = (&self.owned.tenant, self.owned.fd);
        let done = ready!(poll_op(&mut self.write, cx, || Self::submit(tenant, Op::Write { fd, data: buf.to_vec() })));
        Poll::Ready(done.and_then(|r| Ok(r.try_into()?)))
    }

    /// Waits for a write in flight (its outcome kept for its `poll_write`); nothing is
    /// buffered here beyond it.
    pub(super) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(write) = &mut self.write {
            let done = ready!(Pin::new(write).poll(cx));
            self.write = None;
            self.written = Some(done.into_result().and_then(|r| Ok(r.try_into()?)));
        }
        Poll::Ready(Ok(()))
    }

    /// Moves the position. Bytes read ahead and not yet taken are given back first: the
    /// position is where the caller is.
    pub(super) fn poll_seek(&mut self, cx: &mut Context<'_>, pos: io::SeekFrom) -> Poll<io::Result<u64>> {
        let ahead = (self.leftover.len() - self.taken) as i64;
        let (offset, whence) = match pos {
            io::SeekFrom::Start(at) => {
                (i64::try_from(at).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?, 0)
            }
            io::SeekFrom::Current(by) => (by - ahead, 1),
            io::SeekFrom::End(by) => (by, 2),
        };
        let (tenant, fd) = (&self.owned.tenant, self.owned.fd);
        let at: u64 = ready!(poll_op(&mut self.seek, cx, || Self::submit(tenant, Op::Lseek { fd, offset, whence })))?
            .try_into()?;
        (self.leftover, self.taken) = (Vec::new(), 0);
        Poll::Ready(Ok(at))
    }

    /// Shuts the socket down for writing once a write in flight is done: the peer reads end
    /// of file.
    pub(super) fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_flush(cx))?;
        let (tenant, sockfd) = (&self.owned.tenant, self.owned.fd);
        let how = net_flags::SHUT_WR;
        ready!(poll_op(&mut self.shutdown, cx, || Self::submit(tenant, Op::Shutdown { sockfd, how })))?;
        Poll::Ready(Ok(()))
    }
}
