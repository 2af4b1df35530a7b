//! [`File`]: a tenant's open file, and [`OpenOptions`], how to open one.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::stream::{Stream, read_write_traits};
use super::{Tenant, path_of};
use crate::op::open_flags::*;
use crate::op::{FileStat, FixedBuf, OpResult, SyscallOpType as Op};

/// How to open a file, as `std::fs::OpenOptions` says it: read, write, append, truncate,
/// create, create new, and the mode of a file created (`0o644` by default, less the policy's
/// umask).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenOptions {
    read: bool,
    write: bool,
    append: bool,
    truncate: bool,
    create: bool,
    create_new: bool,
    mode: u32,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions::new()
    }
}

impl OpenOptions {
    /// Nothing set: set at least `read`, `write` or `append`.
    pub fn new() -> Self {
        OpenOptions {
            read: false,
            write: false,
            append: false,
            truncate: false,
            create: false,
            create_new: false,
            mode: 0o644,
        }
    }

    /// Open for reading.
    pub fn read(&mut self, on: bool) -> &mut Self {
        self.read = on;
        self
    }

    /// Open for writing.
    pub fn write(&mut self, on: bool) -> &mut Self {
        self.write = on;
        self
    }

    /// Every write appends (implies writing).
    pub fn append(&mut self, on: bool) -> &mut Self {
        self.append = on;
        self
    }

    /// Cut the file to nothing when opened (with writing).
    pub fn truncate(&mut self, on: bool) -> &mut Self {
        self.truncate = on;
        self
    }

    /// Create the file if it is not there (with writing).
    pub fn create(&mut self, on: bool) -> &mut Self {
        self.create = on;
        self
    }

    /// Create the file, failing (`AlreadyExists`) if it is there.
    pub fn create_new(&mut self, on: bool) -> &mut Self {
        self.create_new = on;
        self
    }

    /// The permission bits of a file created (`0o644` by default).
    pub fn mode(&mut self, mode: u32) -> &mut Self {
        self.mode = mode;
        self
    }

    /// The `open(2)` flags these options stand for; `InvalidInput` for a combination std
    /// refuses too (nothing to open for, or creating or truncating without writing).
    fn flags(&self) -> io::Result<u32> {
        let writes = self.write || self.append;
        let access = match (self.read, writes) {
            (true, false) => O_RDONLY,
            (false, true) => O_WRONLY,
            (true, true) => O_RDWR,
            (false, false) => return Err(invalid("open: neither read, write nor append is set")),
        };
        if !writes && (self.truncate || self.create || self.create_new) {
            return Err(invalid("open: create and truncate need write or append"));
        }
        if self.append && self.truncate {
            return Err(invalid("open: append and truncate together"));
        }
        let mut flags = access;
        if self.append {
            flags |= O_APPEND;
        }
        if self.truncate {
            flags |= O_TRUNC;
        }
        if self.create_new {
            flags |= O_CREAT | O_EXCL;
        } else if self.create {
            flags |= O_CREAT;
        }
        Ok(flags)
    }
}

fn invalid(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, why)
}

/// A tenant's open file. Reads and writes at an offset take `&self`, so one file serves many
/// at once; [`futures_io::AsyncRead`], `AsyncWrite` and `AsyncSeek` (and tokio's, with the
/// `tokio` feature) use the file's position: a write is taken whole and runs in the
/// background, its failure answered by the next write, flush or close, as with
/// `tokio::fs::File`. Every transfer asks for at most the policy's `max_io_bytes`. Dropping it closes it
/// (submitted, not waited for); [`close`](Self::close) waits and reports.
///
/// The buffer-taking methods hand the buffer back beside the result, so one buffer serves a
/// whole loop. (Today a read's bytes are copied into it once from the result the ring returns,
/// and a write's are copied once into the operation.)
#[derive(Debug)]
pub struct File {
    stream: Stream,
}

impl File {
    /// Opens `path` for reading, as `std::fs::File::open`.
    pub async fn open(tenant: &Tenant, path: impl AsRef<Path>) -> io::Result<File> {
        File::open_with(tenant, path, OpenOptions::new().read(true)).await
    }

    /// Creates `path` (or truncates it) for writing, as `std::fs::File::create`.
    pub async fn create(tenant: &Tenant, path: impl AsRef<Path>) -> io::Result<File> {
        tenant.create(path).await
    }

    pub(super) async fn open_with(tenant: &Tenant, path: impl AsRef<Path>, options: &OpenOptions) -> io::Result<File> {
        let op = Op::Open { path: path_of(path)?, flags: options.flags()?, mode: options.mode };
        let (owned, _) = tenant.run_owning(op).await?;
        Ok(File { stream: Stream::new(owned, true) })
    }

    /// The file's descriptor in its process (virtual: not the kernel's).
    pub fn fd(&self) -> i32 {
        self.stream.fd()
    }

    fn tenant(&self) -> &Tenant {
        self.stream.tenant()
    }

    async fn run(&self, op: Op) -> io::Result<OpResult> {
        self.tenant().run(op).await
    }

    /// Reads at `pos` into `buf`'s spare capacity (after its length), without moving the
    /// position: the bytes read (0 at the end of the file, or when `buf` has no spare room),
    /// and `buf` with them appended.
    pub async fn read_at(&self, buf: Vec<u8>, pos: u64) -> (io::Result<usize>, Vec<u8>) {
        let size = (buf.capacity() - buf.len()).min(self.stream.cap());
        if size == 0 {
            return (Ok(0), buf);
        }
        // Read into `buf` where it lies: no other buffer, no copy.
        self.tenant().run_lending(Op::ReadInto { fd: self.fd(), offset: Some(pos), buf, size }).await
    }

    /// Reads at `pos` into a registered buffer's spare capacity (after its length), without
    /// moving the position: the bytes read, and `buf` with them appended (`ReadFixed`; on
    /// io_uring a `READ_FIXED` once the kernel ring has the pool registered, see
    /// [`Tenant::register_buffers`]).
    pub async fn read_fixed_at(&self, buf: FixedBuf, pos: u64) -> (io::Result<usize>, FixedBuf) {
        let size = buf.spare().min(self.stream.cap());
        if size == 0 {
            return (Ok(0), buf);
        }
        self.tenant().run_fixed(Op::ReadFixed { fd: self.fd(), offset: Some(pos), buf, size }).await
    }

    /// Writes a registered buffer's bytes at `pos` without moving the position (`WriteFixed`):
    /// the bytes written (perhaps fewer), and `buf` as it was.
    pub async fn write_fixed_at(&self, buf: FixedBuf, pos: u64) -> (io::Result<usize>, FixedBuf) {
        let range = 0..buf.len().min(self.stream.cap());
        self.tenant().run_fixed(Op::WriteFixed { fd: self.fd(), offset: Some(pos), buf, range }).await
    }

    /// Reads at `pos` until `buf`'s spare capacity is full; `UnexpectedEof` if the file ends
    /// first (`buf` then holds what was read).
    pub async fn read_exact_at(&self, mut buf: Vec<u8>, mut pos: u64) -> (io::Result<()>, Vec<u8>) {
        while buf.len() < buf.capacity() {
            let (read, back) = self.read_at(buf, pos).await;
            buf = back;
            match read {
                Ok(0) => return (Err(io::ErrorKind::UnexpectedEof.into()), buf),
                Ok(n) => pos += n as u64,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (Err(e), buf),
            }
        }
        (Ok(()), buf)
    }

    /// Writes `buf` at `pos` without moving the position: the bytes written (perhaps fewer),
    /// and `buf`.
    pub async fn write_at<B: AsRef<[u8]>>(&self, buf: B, pos: u64) -> (io::Result<usize>, B) {
        let most = buf.as_ref().len().min(self.stream.cap());
        let op = Op::WriteAt { fd: self.fd(), offset: pos, data: buf.as_ref()[..most].to_vec() };
        (self.run(op).await.and_then(count), buf)
    }

    /// Writes all of `buf` at `pos`, in as many writes as it takes.
    pub async fn write_all_at<B: AsRef<[u8]>>(&self, buf: B, pos: u64) -> (io::Result<()>, B) {
        let written = self.tenant().write_all(self.fd(), Some(pos), buf.as_ref(), self.stream.cap()).await;
        (written, buf)
    }

    /// Everything from `pos` to the end of the file, without moving the position (the
    /// trait's `read_to_end`, `futures::io::AsyncReadExt`, reads from the position), in reads
    /// of at most 8 MiB (each allocating what the file can fill).
    pub async fn read_all_at(&self, mut pos: u64) -> io::Result<Vec<u8>> {
        let (mut all, size) = (Vec::new(), READ_STEP.min(self.stream.cap()));
        loop {
            let data = bytes(self.run(Op::ReadAt { fd: self.fd(), offset: pos, size }).await?)?;
            if data.is_empty() {
                return Ok(all);
            }
            pos += data.len() as u64;
            if all.is_empty() {
                all = data;
            } else {
                all.extend_from_slice(&data);
            }
        }
    }

    /// Copies this file from its start to `to` (from its start) in the kernel; the bytes
    /// copied. Neither position moves.
    pub async fn copy_to(&self, to: &File) -> io::Result<u64> {
        let (mut at, len) = (0u64, COPY_STEP.min(self.stream.cap()));
        loop {
            let op = Op::CopyRange { fd_in: self.fd(), offset_in: at, fd_out: to.fd(), offset_out: at, len };
            match self.run(op).await.and_then(count)? {
                0 => return Ok(at),
                n => at += n as u64,
            }
        }
    }

    /// Flushes the file's data and metadata to its device (`fsync`).
    pub async fn sync_all(&self) -> io::Result<()> {
        self.run(Op::Fsync { fd: self.fd() }).await.map(drop)
    }

    /// Flushes the file's data to its device (`fdatasync`).
    pub async fn sync_data(&self) -> io::Result<()> {
        self.run(Op::Fdatasync { fd: self.fd() }).await.map(drop)
    }

    /// Cuts or extends the file to `len` bytes.
    pub async fn set_len(&self, len: u64) -> io::Result<()> {
        self.run(Op::Ftruncate { fd: self.fd(), len }).await.map(drop)
    }

    /// The file's metadata.
    pub async fn metadata(&self) -> io::Result<FileStat> {
        Ok(self.run(Op::Fstat { fd: self.fd() }).await?.try_into()?)
    }

    /// Closes the file and waits for the close (where a write-back error may show).
    pub async fn close(self) -> io::Result<()> {
        self.stream.close().await
    }
}

/// What one `ReadAt` of [`File::read_all_at`] asks for (less under a smaller `max_io_bytes`).
const READ_STEP: usize = 8 << 20;

/// What one `CopyRange` of [`File::copy_to`] asks for: 64 MiB, the policy's default largest
/// transfer (less under a smaller `max_io_bytes`).
const COPY_STEP: usize = 64 << 20;

fn bytes(result: OpResult) -> io::Result<Vec<u8>> {
    Ok(result.try_into()?)
}

fn count(result: OpResult) -> io::Result<usize> {
    Ok(result.try_into()?)
}

// A file's close (the traits') waits for the write in flight; the file closes when dropped.
read_write_traits!(File, poll_flush);

impl futures_io::AsyncSeek for File {
    fn poll_seek(self: Pin<&mut Self>, cx: &mut Context<'_>, pos: io::SeekFrom) -> Poll<io::Result<u64>> {
        self.get_mut().stream.poll_seek(cx, pos)
    }
}

#[cfg(feature = "tokio")]
impl tokio::io::AsyncSeek for File {
    fn start_seek(self: Pin<&mut Self>, position: io::SeekFrom) -> io::Result<()> {
        self.get_mut().stream.start_seek(position)
    }

    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        self.get_mut().stream.poll_sought(cx)
    }
}
