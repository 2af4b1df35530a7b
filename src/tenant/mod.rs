//! A tenant's handles: [`Tenant`], one process's view of the manager, and the [`File`],
//! [`TcpListener`], [`TcpStream`] and [`UdpSocket`] it opens, as `std::fs` and `tokio::net`
//! shape them: `async` methods, `io::Result` throughout, owned buffers handed back beside the
//! result, descriptors closed on drop, and the standard async I/O traits.
//!
//! Underneath, every call is an operation of the SPEC's enum API on the tenant's ring, with the
//! same sandbox, limits, fairness and delivery rules; hosts that batch by hand keep using it.
//!
//! ```
//! use ai_os_kernel::sandbox::Policy;
//! use ai_os_kernel::syscalls::IoUringManager;
//! use ai_os_kernel::tenant::OpenOptions;
//!
//! # fn main() -> std::io::Result<()> {
//! let dir = tempfile::tempdir()?;
//! let manager = IoUringManager::new();
//! manager.set_policy(7, Policy::rooted(dir.path()).read_write())?;
//! let tenant = manager.tenant(7);
//! futures::executor::block_on(async {
//!     tenant.write("/notes.txt", b"hello").await?;
//!     let file = tenant.open("/notes.txt", OpenOptions::new().read(true)).await?;
//!     let (read, buf) = file.read_at(Vec::with_capacity(64), 0).await;
//!     assert_eq!((read?, &buf[..]), (5, &b"hello"[..]));
//!     tenant.rename("/notes.txt", "/kept.txt").await?;
//!     assert_eq!(tenant.read("/kept.txt").await?, b"hello");
//!     std::io::Result::Ok(())
//! })
//! # }
//! ```

mod file;
mod net;
mod stream;

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

pub use file::{File, OpenOptions};
pub use net::{Chunks, Incoming, TcpListener, TcpStream, UdpSocket};

use crate::op::{
    DirEntry, FileStat, FixedBuf, FixedBuffers, IoUringError, LentBuf, OpResult, Pid, SyscallOpType as Op,
};
use crate::syscalls::{CompletionFuture, IoUringManager, SyscallCompletionRing};

/// One process (`pid`) of a manager, as a handle: its paths, files and sockets. Cheap to
/// clone; every clone is the same process.
#[derive(Clone, Debug)]
pub struct Tenant {
    manager: IoUringManager,
    pid: Pid,
}

impl IoUringManager {
    /// The handle of process `pid` (made on its first operation, as any submission makes it).
    pub fn tenant(&self, pid: Pid) -> Tenant {
        Tenant { manager: self.clone(), pid }
    }
}

/// A path as the operations hold it (`String`); `InvalidInput` for one that is not UTF-8,
/// rather than another name.
fn path_of(path: impl AsRef<Path>) -> io::Result<String> {
    let path = path.as_ref();
    path.to_str()
        .map(str::to_owned)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{path:?} is not UTF-8")))
}

impl Tenant {
    /// The process.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// The manager.
    pub fn manager(&self) -> &IoUringManager {
        &self.manager
    }

    /// Runs one operation of the SPEC's API and waits for it: its result, or its errno.
    pub async fn run(&self, op: Op) -> io::Result<OpResult> {
        self.manager.submit_async(self.pid, op)?.await.into_result()
    }

    /// Runs an operation that carries the caller's buffer (`ReadInto`, `WriteFrom`) and waits
    /// for it: the count it moved or its error, and the buffer back, whatever the outcome
    /// (see [`SyscallCompletionEntry::into_buf`](crate::op::SyscallCompletionEntry::into_buf)),
    /// a refusal by the ring itself (full, destroyed) included.
    pub(crate) async fn run_lending(&self, op: Op) -> (io::Result<usize>, Vec<u8>) {
        match self.run_lent(op).await {
            (moved, Some(LentBuf::Vec(buf))) => (moved, buf),
            (moved, _) => (moved, Vec::new()),
        }
    }

    /// [`run_lending`](Self::run_lending) of a `ReadFixed` or `WriteFixed`. Only a lost
    /// operation (its buffer went back to its pool) gives an empty buffer of no pool.
    pub(crate) async fn run_fixed(&self, op: Op) -> (io::Result<usize>, FixedBuf) {
        match self.run_lent(op).await {
            (moved, Some(LentBuf::Fixed(buf))) => (moved, buf),
            (moved, _) => (moved, FixedBuf::empty()),
        }
    }

    /// Submits an operation that carries a buffer and waits for it: the count it moved or its
    /// error, and the buffer, which a ring that refuses the submission leaves in the entry.
    async fn run_lent(&self, op: Op) -> (io::Result<usize>, Option<LentBuf>) {
        let mut slot = Some(crate::op::SyscallSubmissionEntry::new(self.pid, op, 0));
        match self.manager.submit_async_from(self.pid, &mut slot) {
            Ok(future) => future.await.into_lent(),
            Err(e) => (Err(e.into()), slot.and_then(|mut entry| entry.op.take_buffer())),
        }
    }

    /// A pool of `count` registered buffers of `size` bytes for this tenant
    /// ([`IoUringManager::register_buffers`]): what [`File::read_fixed_at`] and
    /// [`File::write_fixed_at`] read into and write from.
    pub fn register_buffers(&self, count: usize, size: usize) -> io::Result<FixedBuffers> {
        self.manager.register_buffers(self.pid, count, size)
    }

    /// Writes all of `bytes` to `fd`, at `pos` and on (at the descriptor's position when
    /// `None`, as a socket's sends are), in chunks of at most `step` bytes: each is copied once
    /// into the one buffer the writes carry (`WriteFrom`), and what a short write left of it is
    /// written from where it stopped, without another copy. An interrupted write is tried
    /// again, as `write_all` does.
    async fn write_all(&self, fd: i32, pos: Option<u64>, bytes: &[u8], step: usize) -> io::Result<()> {
        let (mut done, mut chunk) = (0, Vec::new());
        while done < bytes.len() {
            chunk.clear();
            chunk.extend_from_slice(&bytes[done..(done + step).min(bytes.len())]);
            let mut from = 0;
            while from < chunk.len() {
                let offset = pos.map(|pos| pos + (done + from) as u64);
                let range = from..chunk.len();
                let op = Op::WriteFrom { fd, offset, buf: chunk, range };
                let (wrote, back) = self.run_lending(op).await;
                chunk = back;
                match wrote {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => from += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted && !chunk.is_empty() => {}
                    Err(e) => return Err(e),
                }
            }
            done += from;
        }
        Ok(())
    }

    /// Runs an operation that makes a descriptor (`Open`, `Socket`, `Accept`): its result,
    /// with the descriptor owned by a handle of the ring it was made on.
    async fn run_owning(&self, op: Op) -> io::Result<(Owned, OpResult)> {
        let future = self.manager.submit_async(self.pid, op)?;
        let ring = future.ring().clone();
        let result = future.await.into_result()?;
        let fd = result.new_fd().ok_or_else(|| {
            io::Error::from(crate::op::UnexpectedResult { expected: "a descriptor", got: result.clone() })
        })?;
        Ok((Owned { tenant: self.clone(), ring, fd }, result))
    }

    /// Opens `path` as `options` say.
    pub async fn open(&self, path: impl AsRef<Path>, options: &OpenOptions) -> io::Result<File> {
        File::open_with(self, path, options).await
    }

    /// Creates `path` (or truncates it) for writing, as `std::fs::File::create`.
    pub async fn create(&self, path: impl AsRef<Path>) -> io::Result<File> {
        self.open(path, OpenOptions::new().write(true).create(true).truncate(true)).await
    }

    /// The whole contents of `path`.
    pub async fn read(&self, path: impl AsRef<Path>) -> io::Result<Vec<u8>> {
        self.open(path, OpenOptions::new().read(true)).await?.read_all_at(0).await
    }

    /// Writes `contents` to `path`, created or truncated, as `std::fs::write`.
    pub async fn write(&self, path: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> io::Result<()> {
        let file = self.create(path).await?;
        let (written, _) = file.write_all_at(contents, 0).await;
        written?;
        file.close().await
    }

    /// Copies `from` to `to` (created or truncated) in the kernel, as `std::fs::copy`; the
    /// bytes copied.
    pub async fn copy(&self, from: impl AsRef<Path>, to: impl AsRef<Path>) -> io::Result<u64> {
        let src = self.open(from, OpenOptions::new().read(true)).await?;
        let dst = self.create(to).await?;
        let copied = src.copy_to(&dst).await?;
        dst.close().await?;
        Ok(copied)
    }

    /// The metadata of `path`, following a symbolic link.
    pub async fn metadata(&self, path: impl AsRef<Path>) -> io::Result<FileStat> {
        Ok(self.run(Op::Stat { path: path_of(path)?, follow: true }).await?.try_into()?)
    }

    /// The metadata of `path` itself, a symbolic link's own if it is one.
    pub async fn symlink_metadata(&self, path: impl AsRef<Path>) -> io::Result<FileStat> {
        Ok(self.run(Op::Stat { path: path_of(path)?, follow: false }).await?.try_into()?)
    }

    /// Makes the directory `path` (mode `0o777` less the policy's umask).
    pub async fn create_dir(&self, path: impl AsRef<Path>) -> io::Result<()> {
        self.run(Op::Mkdir { path: path_of(path)?, mode: 0o777 }).await.map(drop)
    }

    /// Removes the empty directory `path`.
    pub async fn remove_dir(&self, path: impl AsRef<Path>) -> io::Result<()> {
        self.run(Op::Rmdir { path: path_of(path)? }).await.map(drop)
    }

    /// Removes the file (or symbolic link) `path`.
    pub async fn remove_file(&self, path: impl AsRef<Path>) -> io::Result<()> {
        self.run(Op::Unlink { path: path_of(path)? }).await.map(drop)
    }

    /// Renames `from` to `to`, replacing `to`.
    pub async fn rename(&self, from: impl AsRef<Path>, to: impl AsRef<Path>) -> io::Result<()> {
        self.run(Op::Rename { from: path_of(from)?, to: path_of(to)?, flags: 0 }).await.map(drop)
    }

    /// Makes `to` another name of the file `from`.
    pub async fn hard_link(&self, from: impl AsRef<Path>, to: impl AsRef<Path>) -> io::Result<()> {
        self.run(Op::Link { from: path_of(from)?, to: path_of(to)? }).await.map(drop)
    }

    /// Makes a symbolic link at `link` holding `target`.
    pub async fn symlink(&self, target: impl AsRef<Path>, link: impl AsRef<Path>) -> io::Result<()> {
        self.run(Op::Symlink { target: path_of(target)?, link: path_of(link)? }).await.map(drop)
    }

    /// What the symbolic link `path` holds.
    pub async fn read_link(&self, path: impl AsRef<Path>) -> io::Result<PathBuf> {
        Ok(self.run(Op::ReadLink { path: path_of(path)? }).await?.try_into()?)
    }

    /// Every entry of the directory `path` (without `.` and `..`), read in pages of 1,024.
    pub async fn read_dir(&self, path: impl AsRef<Path>) -> io::Result<Vec<DirEntry>> {
        let path = path_of(path)?;
        let mut entries = Vec::new();
        let mut cursor = 0;
        loop {
            let page: crate::op::DirPage =
                self.run(Op::ReadDir { path: path.clone(), cursor, max: 1024 }).await?.try_into()?;
            entries.extend(page.entries);
            match page.next {
                Some(next) => cursor = next,
                None => return Ok(entries),
            }
        }
    }

    /// A TCP socket bound to `addr` and listening (backlog 1,024).
    pub async fn tcp_listen(&self, addr: impl ToSocketAddr) -> io::Result<TcpListener> {
        TcpListener::bind(self, addr.to_socket_addr()?).await
    }

    /// A TCP connection to `addr`.
    pub async fn tcp_connect(&self, addr: impl ToSocketAddr) -> io::Result<TcpStream> {
        TcpStream::connect(self, addr.to_socket_addr()?).await
    }

    /// A UDP socket bound to `addr`.
    pub async fn udp_bind(&self, addr: impl ToSocketAddr) -> io::Result<UdpSocket> {
        UdpSocket::bind(self, addr.to_socket_addr()?).await
    }
}

/// What a handle takes as a socket address, resolving no name (a name would block the calling
/// thread on DNS): a `SocketAddr`, an address and a port, or text such as `"127.0.0.1:8080"`
/// or `"[::1]:8080"` (`InvalidInput` if it is not one).
pub trait ToSocketAddr {
    /// The address.
    fn to_socket_addr(&self) -> io::Result<SocketAddr>;
}

impl ToSocketAddr for SocketAddr {
    fn to_socket_addr(&self) -> io::Result<SocketAddr> {
        Ok(*self)
    }
}

impl<I: Into<IpAddr> + Copy> ToSocketAddr for (I, u16) {
    fn to_socket_addr(&self) -> io::Result<SocketAddr> {
        Ok(SocketAddr::new(self.0.into(), self.1))
    }
}

impl ToSocketAddr for str {
    fn to_socket_addr(&self) -> io::Result<SocketAddr> {
        self.parse().map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{self:?}: {e}")))
    }
}

impl ToSocketAddr for &str {
    fn to_socket_addr(&self) -> io::Result<SocketAddr> {
        (**self).to_socket_addr()
    }
}

impl ToSocketAddr for String {
    fn to_socket_addr(&self) -> io::Result<SocketAddr> {
        self.as_str().to_socket_addr()
    }
}

/// A descriptor of a tenant's, closed when dropped: the close is submitted, not waited for
/// (its completion is discarded), so the dropping thread never blocks. It goes to the ring the
/// descriptor was made on, never to a later process of the same pid: a destroyed ring closed
/// it already. A ring too full to take it has a thread of the backend close it.
#[derive(Debug)]
struct Owned {
    tenant: Tenant,
    ring: Arc<SyscallCompletionRing>,
    fd: i32,
}

impl Owned {
    /// Closes now and reports how it went. Once the close is submitted the drop has nothing
    /// left to do; if this future is dropped before the close completes, the close still runs.
    async fn close(mut self) -> io::Result<()> {
        let future = self.tenant.manager.submit_async_to(&self.ring, Op::Close { fd: self.fd })?;
        self.fd = -1;
        Discarding(Some(future)).await.into_result().map(drop)
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        if self.fd < 0 || self.ring.is_destroyed() {
            return;
        }
        let close = Op::Close { fd: self.fd };
        if let Err(IoUringError::SubmissionQueueFull { .. } | IoUringError::CompletionQueueFull { .. }) =
            self.tenant.manager.submit_discarded(&self.ring, close)
        {
            let (process, fd) = (self.ring.process().clone(), self.fd);
            self.tenant.manager.executor().backend().spawn(Box::pin(async move {
                let _ = process.close(fd);
            }));
        }
    }
}

/// A completion future that, dropped before it completes, lets its operation run on with its
/// completion discarded rather than cancelling it.
#[derive(Debug)]
struct Discarding(Option<CompletionFuture>);

impl Future for Discarding {
    type Output = crate::op::SyscallCompletionEntry;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let future = self.0.as_mut().expect("polled after it completed");
        let done = std::task::ready!(Pin::new(future).poll(cx));
        self.0 = None;
        Poll::Ready(done)
    }
}

impl Drop for Discarding {
    fn drop(&mut self) {
        if let Some(future) = self.0.take() {
            future.discard();
        }
    }
}
