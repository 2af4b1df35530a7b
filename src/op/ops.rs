//! The operations a process can submit, and what they produce.

use std::net::SocketAddr;
use std::time::Duration;

use super::{FixedBuf, LentBuf};

#[cfg(doc)]
use super::OpResult;

/// How many buffers of its `size` a [`RecvMulti`](SyscallOpType::RecvMulti) receives into at
/// once (on io_uring, its ring of provided buffers).
pub const RECV_BUFFERS: usize = 4;

/// What a [`RecvMulti`](SyscallOpType::RecvMulti) counts against its process's buffer budget
/// while it runs, in `size`s: its [`RECV_BUFFERS`] buffers, results waiting for its stream until
/// they reach as many bytes (where it is told to stop: at most one more), and the results the
/// kernel fills with the buffers it still had as it stops (one fewer).
pub const RECV_SHARES: usize = 3 * RECV_BUFFERS;

/// One syscall-like operation, as a process submits it.
///
/// File descriptors (`fd`, `sockfd`) are the *virtual* descriptors of the submitting process:
/// they start at 3, are private to that process, and never equal the kernel's own numbers.
/// Flags and modes use the Linux values (see [`open_flags`](super::open_flags)).
///
/// Operations that are in flight at the same time run concurrently, as in io_uring without
/// `IOSQE_IO_LINK`: to order two operations on one descriptor (a `Write` then a `Lseek`, say),
/// wait for the first to complete before submitting the second.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)] // each variant's docs describe its fields
#[non_exhaustive]
pub enum SyscallOpType {
    /// Reads up to `size` bytes at the descriptor's current position. Result: [`OpResult::Bytes`]
    /// (empty at end of file). On a socket it is a [`Recv`](Self::Recv) without flags: it waits
    /// for data, on every backend.
    Read { fd: i32, size: usize },
    /// Writes `data` at the descriptor's current position. Result: [`OpResult::Count`], which may
    /// be short. On a socket it is a [`Send`](Self::Send) without flags: it waits for room, on
    /// every backend. A write to a socket or pipe whose reader is gone completes `EPIPE`; no
    /// write ever raises a signal in the host.
    Write { fd: i32, data: Vec<u8> },
    /// Opens `path` (resolved by the process's [`Policy`](crate::sandbox::Policy)) with Linux
    /// `O_*` `flags`; `mode` applies when a file is created. Result: [`OpResult::Fd`].
    Open { path: String, flags: u32, mode: u32 },
    /// Closes a descriptor. Result: [`OpResult::None`].
    Close { fd: i32 },
    /// Flushes a file's data and metadata to its device. Result: [`OpResult::None`].
    Fsync { fd: i32 },
    /// Flushes a file's data to its device, with only the metadata needed to read it back (its
    /// length, not its times): `fdatasync`. Result: [`OpResult::None`].
    Fdatasync { fd: i32 },
    /// Sets a file's length to `len`: cut, or extended with zeros (`ftruncate`). The descriptor
    /// must be open for writing (`EINVAL` otherwise); a length past the host's file size limit
    /// is `EFBIG`, with no signal. Result: [`OpResult::None`].
    Ftruncate { fd: i32, len: u64 },
    /// Allocates or frees a file's space (`fallocate`): with `mode` 0 it allocates
    /// `offset..offset + len`, extending the file past its end; `mode` may combine the Linux
    /// `FALLOC_FL_*` flags `KEEP_SIZE` (1), `PUNCH_HOLE` (2, with `KEEP_SIZE`), `COLLAPSE_RANGE`
    /// (8), `ZERO_RANGE` (0x10), `INSERT_RANGE` (0x20) and `UNSHARE_RANGE` (0x40); any other bit
    /// is `EINVAL`. An allocation counts `len` bytes against the policy's per-operation and rate
    /// limits (and the largest single transfer, 2 GiB less a page), as a write of as many zeros
    /// would. Past the host's file size limit it is
    /// `EFBIG`, with no signal. Result: [`OpResult::None`].
    Fallocate { fd: i32, mode: u32, offset: u64, len: u64 },
    /// A descriptor's file's metadata: size, kind, permissions, times (`statx`). Result:
    /// [`OpResult::Stat`].
    Fstat { fd: i32 },
    /// The metadata of the file at `path`, or of the symbolic link itself when `follow` is
    /// false and `path` names one (`statx`, `lstat`). Result: [`OpResult::Stat`].
    Stat { path: String, follow: bool },
    /// Makes a directory at `path`, with the permission bits `mode & 0o777` less the policy's
    /// umask. Result: [`OpResult::None`].
    Mkdir { path: String, mode: u32 },
    /// Removes the empty directory at `path` (`ENOTEMPTY` otherwise). Result: [`OpResult::None`].
    Rmdir { path: String },
    /// Removes the name `path` (a file, a symbolic link itself, never a directory: `EISDIR`).
    /// Result: [`OpResult::None`].
    Unlink { path: String },
    /// Renames `from` to `to` (`renameat2`), replacing `to` unless `flags` has
    /// [`RENAME_NOREPLACE`](super::open_flags::RENAME_NOREPLACE) (then `EEXIST`);
    /// [`RENAME_EXCHANGE`](super::open_flags::RENAME_EXCHANGE) swaps the two. Across file systems
    /// it is `EXDEV`. Result: [`OpResult::None`].
    Rename { from: String, to: String, flags: u32 },
    /// Makes a symbolic link at `link` holding `target` as given: a rooted process's links
    /// resolve beneath its root whatever they hold. Result: [`OpResult::None`].
    Symlink { target: String, link: String },
    /// Makes `to` another name of the file at `from` (a hard link; a symbolic link at `from` is
    /// linked itself, not followed). Result: [`OpResult::None`].
    Link { from: String, to: String },
    /// What the symbolic link at `path` holds (`EINVAL` if it is none). Result:
    /// [`OpResult::Path`].
    ReadLink { path: String },
    /// One page of the directory at `path`: at most `max` entries (1 to
    /// [`MAX_DIR_PAGE`](super::MAX_DIR_PAGE)), from `cursor` (0 for the first page, then the
    /// page's [`next`](super::DirPage::next)). `.` and `..` are left out. Result:
    /// [`OpResult::Dir`].
    ReadDir { path: String, cursor: u64, max: u32 },
    /// Moves the descriptor's position; `whence` is `SEEK_SET` (0), `SEEK_CUR` (1), `SEEK_END`
    /// (2), `SEEK_DATA` (3) or `SEEK_HOLE` (4). Result: [`OpResult::Offset`].
    Lseek { fd: i32, offset: i64, whence: i32 },
    /// Reads up to `size` bytes at `offset` without moving the position (`pread`).
    /// Result: [`OpResult::Bytes`].
    ReadAt { fd: i32, offset: u64, size: usize },
    /// Writes `data` at `offset` without moving the position (`pwrite`).
    /// Result: [`OpResult::Count`].
    WriteAt { fd: i32, offset: u64, data: Vec<u8> },
    /// Reads into buffers of `sizes` bytes, in order, at the descriptor's position (`readv`): a
    /// later buffer gets bytes only once the ones before it are full. At most
    /// [`MAX_IOV`](super::MAX_IOV) buffers, of a file or a block device (a socket, FIFO or
    /// terminal is `EINVAL`: use `Recv` or `Read`). Result: [`OpResult::Buffers`], one per
    /// size, short or empty past what was read.
    Readv { fd: i32, sizes: Vec<usize> },
    /// [`Readv`](Self::Readv) at `offset`, without moving the position (`preadv`).
    ReadvAt { fd: i32, offset: u64, sizes: Vec<usize> },
    /// Writes `bufs`, in order, at the descriptor's position (`writev`): one write of all of
    /// them, which may be short. At most [`MAX_IOV`](super::MAX_IOV) buffers, to a file or a
    /// block device (a socket, FIFO or terminal is `EINVAL`: use `Send` or `Write`). Result:
    /// [`OpResult::Count`].
    Writev { fd: i32, bufs: Vec<Vec<u8>> },
    /// [`Writev`](Self::Writev) at `offset`, without moving the position (`pwritev`).
    WritevAt { fd: i32, offset: u64, bufs: Vec<Vec<u8>> },
    /// Reads up to `size` bytes into the caller's `buf`, after the bytes it holds: at `offset`
    /// without moving the position (`pread`), or at the position when `offset` is `None`. A
    /// buffer with `size` bytes of spare capacity is read into as it is, with no allocation
    /// (one with less is grown first: `ENOMEM` if it cannot be). On a socket (`offset` `None`) it
    /// is a receive without flags, as [`Read`](Self::Read) is. Result: [`OpResult::Buf`], `buf`
    /// with the bytes read appended; the buffer comes back in the completion's result however
    /// the operation ends (see [`OpResult::Buf`]). [`read_into`](Self::read_into) fills the
    /// spare capacity.
    ReadInto { fd: i32, offset: Option<u64>, buf: Vec<u8>, size: usize },
    /// Writes the caller's `buf[range]`: at `offset` without moving the position (`pwrite`), or
    /// at the position when `offset` is `None` (on a socket, a send without flags, as
    /// [`Write`](Self::Write) is). Nothing is copied: the kernel, or the pool thread, writes from
    /// `buf` itself. Result: [`OpResult::Buf`], the count written (which may be short) and `buf`
    /// as it was, to submit again from `range.start + count` for the rest; the buffer comes back
    /// however the operation ends. A range outside `buf` is `EINVAL`.
    /// [`write_from`](Self::write_from) writes all of it.
    WriteFrom { fd: i32, offset: Option<u64>, buf: Vec<u8>, range: std::ops::Range<usize> },
    /// [`ReadInto`](Self::ReadInto) a buffer of the process's registered pool
    /// ([`FixedBuf`], see [`IoUringManager::register_buffers`](crate::syscalls::IoUringManager::register_buffers)):
    /// up to `size` bytes after its bytes, at most its spare capacity (it never grows: `EINVAL`
    /// past it). On io_uring a file is read with `READ_FIXED` where the kernel ring has the pool
    /// registered; elsewhere, and for a socket, FIFO or terminal, it is a plain read of the same
    /// memory. A buffer of another process's pool is `EINVAL`. Result: [`OpResult::Fixed`], the
    /// buffer back however the operation ends. [`read_fixed`](Self::read_fixed) fills the spare
    /// capacity.
    ReadFixed { fd: i32, offset: Option<u64>, buf: FixedBuf, size: usize },
    /// [`WriteFrom`](Self::WriteFrom) a buffer of the process's registered pool: writes
    /// `buf[range]` (`WRITE_FIXED` on io_uring where the kernel ring has the pool registered).
    /// Result: [`OpResult::Fixed`], the count written and the buffer as it was.
    WriteFixed { fd: i32, offset: Option<u64>, buf: FixedBuf, range: std::ops::Range<usize> },
    /// Copies up to `len` bytes from `fd_in` at `offset_in` to `fd_out` at `offset_out`, in the
    /// kernel (`copy_file_range`: no copy through memory, and a reflink where the file system
    /// shares blocks), moving neither position. Both are the process's regular files; across
    /// file systems the kernel copies too. Result: [`OpResult::Count`], which may be short (0
    /// at the end of `fd_in`). Counts `len` against the byte limits as a write would.
    CopyRange { fd_in: i32, offset_in: u64, fd_out: i32, offset_out: u64, len: usize },
    /// Creates a socket (`AF_INET`/`AF_INET6`, `SOCK_STREAM`/`SOCK_DGRAM`). Result:
    /// [`OpResult::Fd`].
    Socket { domain: i32, ty: i32, protocol: i32 },
    /// Binds a socket to a local address. Result: [`OpResult::None`].
    Bind { sockfd: i32, addr: SocketAddr },
    /// Marks a bound stream socket as accepting connections. Result: [`OpResult::None`].
    Listen { sockfd: i32, backlog: i32 },
    /// Waits for and accepts one connection. Result: [`OpResult::Accepted`].
    Accept { sockfd: i32 },
    /// Accepts connections as they come, each a result of its own, until stopped: a multishot
    /// accept (`IORING_ACCEPT_MULTISHOT` on io_uring). Submitted only with
    /// [`IoUringManager::submit_multishot`](crate::syscalls::IoUringManager::submit_multishot),
    /// whose stream yields each connection as [`OpResult::Accepted`], then the operation's own
    /// completion: [`OpResult::None`] when it stopped because its results waited untaken (or
    /// the kernel ended it): submit it again for more; an error (`EMFILE` at the descriptor
    /// limit); or cancelled. A place in the descriptor table is taken before each accept, so at
    /// the limit the next connection stays queued. On io_uring the kernel's multishot accept,
    /// which takes whatever the listener has queued at once, is used only while the process has
    /// room for all of it (its backlog); nearer the limit the operation stops with `None` and,
    /// submitted again, accepts one connection at a time. A connection the kernel accepted
    /// that its client had already reset is closed and skipped.
    AcceptMulti { sockfd: i32 },
    /// Connects a socket to `addr`. Result: [`OpResult::None`].
    Connect { sockfd: i32, addr: SocketAddr },
    /// Sends `data` on a connected socket. Result: [`OpResult::Count`], which may be short.
    Send { sockfd: i32, data: Vec<u8>, flags: u32 },
    /// Receives up to `size` bytes. Result: [`OpResult::Bytes`] (empty when the peer closed).
    Recv { sockfd: i32, size: usize, flags: u32 },
    /// Receives data from a stream socket as it comes (`EINVAL` for any other), each result up
    /// to `size` bytes of it, until stopped: a multishot receive (`IORING_RECV_MULTISHOT` with a ring of provided buffers on io_uring).
    /// Submitted only with
    /// [`IoUringManager::submit_multishot`](crate::syscalls::IoUringManager::submit_multishot),
    /// whose stream yields each as [`OpResult::Bytes`], in order, then the operation's own
    /// completion: an empty [`OpResult::Bytes`] when the peer closed; [`OpResult::None`] when
    /// it stopped because its results waited untaken (or the kernel ended it): submit it again
    /// for more; an error; or cancelled. It counts [`RECV_SHARES`] times `size` against the
    /// buffer budget while it runs (its buffers, the results waiting, those on their way), and
    /// the results waiting after it ended until they are taken.
    RecvMulti { sockfd: i32, size: usize },
    /// Sends one datagram to `addr`. Result: [`OpResult::Count`].
    SendTo { sockfd: i32, data: Vec<u8>, addr: SocketAddr, flags: u32 },
    /// Receives one datagram of up to `size` bytes. Result: [`OpResult::Datagram`].
    RecvFrom { sockfd: i32, size: usize, flags: u32 },
    /// The local address of a socket (`getsockname`). Result: [`OpResult::Addr`].
    LocalAddr { sockfd: i32 },
    /// The address of a connected socket's peer (`getpeername`; `ENOTCONN` if none). Result:
    /// [`OpResult::Addr`].
    PeerAddr { sockfd: i32 },
    /// Shuts down part of a full-duplex connection: `how` is `SHUT_RD` (0), `SHUT_WR` (1, the
    /// peer then reads end of file) or `SHUT_RDWR` (2). Result: [`OpResult::None`].
    Shutdown { sockfd: i32, how: i32 },
    /// Completes after `duration`, with [`OpResult::None`] (`Cancelled` if cancelled first). It
    /// waits on a timer: no thread, no place in the executor's window. A duration past what the
    /// clock can count is `EINVAL`.
    Timeout { duration: Duration },
    /// Does nothing; completes with [`OpResult::None`]. Measures the ring itself.
    Nop,
}

impl SyscallOpType {
    /// `Open` with the default creation mode `0o644`. A path that is not UTF-8 (the operations
    /// hold `String`s) has its invalid bytes replaced by U+FFFD, as
    /// [`Path::to_string_lossy`](std::path::Path::to_string_lossy) does.
    pub fn open(path: impl AsRef<std::path::Path>, flags: u32) -> Self {
        SyscallOpType::Open { path: path.as_ref().to_string_lossy().into_owned(), flags, mode: 0o644 }
    }

    /// A [`ReadInto`](Self::ReadInto) of as many bytes as `buf` has spare capacity for: no
    /// allocation.
    pub fn read_into(fd: i32, offset: Option<u64>, buf: Vec<u8>) -> Self {
        let size = buf.capacity() - buf.len();
        SyscallOpType::ReadInto { fd, offset, buf, size }
    }

    /// A [`WriteFrom`](Self::WriteFrom) of all of `buf`.
    pub fn write_from(fd: i32, offset: Option<u64>, buf: Vec<u8>) -> Self {
        let range = 0..buf.len();
        SyscallOpType::WriteFrom { fd, offset, buf, range }
    }

    /// A [`ReadFixed`](Self::ReadFixed) of as many bytes as `buf` has spare capacity for.
    pub fn read_fixed(fd: i32, offset: Option<u64>, buf: FixedBuf) -> Self {
        let size = buf.spare();
        SyscallOpType::ReadFixed { fd, offset, buf, size }
    }

    /// A [`WriteFixed`](Self::WriteFixed) of all of `buf`.
    pub fn write_fixed(fd: i32, offset: Option<u64>, buf: FixedBuf) -> Self {
        let range = 0..buf.len();
        SyscallOpType::WriteFixed { fd, offset, buf, range }
    }

    /// The operation's name, as used in error messages (`"read"`, `"open"`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            SyscallOpType::Read { .. } => "read",
            SyscallOpType::Write { .. } => "write",
            SyscallOpType::Open { .. } => "open",
            SyscallOpType::Close { .. } => "close",
            SyscallOpType::Fsync { .. } => "fsync",
            SyscallOpType::Fdatasync { .. } => "fdatasync",
            SyscallOpType::Ftruncate { .. } => "ftruncate",
            SyscallOpType::Fstat { .. } => "fstat",
            SyscallOpType::Fallocate { .. } => "fallocate",
            SyscallOpType::Lseek { .. } => "lseek",
            SyscallOpType::Stat { .. } => "stat",
            SyscallOpType::Mkdir { .. } => "mkdir",
            SyscallOpType::Rmdir { .. } => "rmdir",
            SyscallOpType::Unlink { .. } => "unlink",
            SyscallOpType::Rename { .. } => "rename",
            SyscallOpType::Symlink { .. } => "symlink",
            SyscallOpType::Link { .. } => "link",
            SyscallOpType::ReadLink { .. } => "readlink",
            SyscallOpType::ReadDir { .. } => "readdir",
            SyscallOpType::ReadAt { .. } => "pread",
            SyscallOpType::WriteAt { .. } => "pwrite",
            SyscallOpType::Readv { .. } => "readv",
            SyscallOpType::ReadvAt { .. } => "preadv",
            SyscallOpType::Writev { .. } => "writev",
            SyscallOpType::WritevAt { .. } => "pwritev",
            SyscallOpType::ReadInto { .. } => "read_into",
            SyscallOpType::WriteFrom { .. } => "write_from",
            SyscallOpType::ReadFixed { .. } => "read_fixed",
            SyscallOpType::WriteFixed { .. } => "write_fixed",
            SyscallOpType::CopyRange { .. } => "copy_file_range",
            SyscallOpType::Socket { .. } => "socket",
            SyscallOpType::Bind { .. } => "bind",
            SyscallOpType::Listen { .. } => "listen",
            SyscallOpType::Accept { .. } => "accept",
            SyscallOpType::AcceptMulti { .. } => "accept_multishot",
            SyscallOpType::Connect { .. } => "connect",
            SyscallOpType::Send { .. } => "send",
            SyscallOpType::Recv { .. } => "recv",
            SyscallOpType::RecvMulti { .. } => "recv_multishot",
            SyscallOpType::SendTo { .. } => "sendto",
            SyscallOpType::RecvFrom { .. } => "recvfrom",
            SyscallOpType::LocalAddr { .. } => "getsockname",
            SyscallOpType::PeerAddr { .. } => "getpeername",
            SyscallOpType::Shutdown { .. } => "shutdown",
            SyscallOpType::Timeout { .. } => "timeout",
            SyscallOpType::Nop => "nop",
        }
    }

    /// The descriptor the operation acts on, if any.
    pub fn fd(&self) -> Option<i32> {
        match *self {
            SyscallOpType::Read { fd, .. }
            | SyscallOpType::Write { fd, .. }
            | SyscallOpType::Close { fd }
            | SyscallOpType::Fsync { fd }
            | SyscallOpType::Fdatasync { fd }
            | SyscallOpType::Ftruncate { fd, .. }
            | SyscallOpType::Fstat { fd }
            | SyscallOpType::Fallocate { fd, .. }
            | SyscallOpType::Lseek { fd, .. }
            | SyscallOpType::ReadAt { fd, .. }
            | SyscallOpType::WriteAt { fd, .. }
            | SyscallOpType::Readv { fd, .. }
            | SyscallOpType::ReadvAt { fd, .. }
            | SyscallOpType::Writev { fd, .. }
            | SyscallOpType::WritevAt { fd, .. }
            | SyscallOpType::ReadInto { fd, .. }
            | SyscallOpType::WriteFrom { fd, .. }
            | SyscallOpType::ReadFixed { fd, .. }
            | SyscallOpType::WriteFixed { fd, .. } => Some(fd),
            // The descriptor written to (the one read from is `fd_in`).
            SyscallOpType::CopyRange { fd_out, .. } => Some(fd_out),
            SyscallOpType::Bind { sockfd, .. }
            | SyscallOpType::Listen { sockfd, .. }
            | SyscallOpType::Accept { sockfd }
            | SyscallOpType::AcceptMulti { sockfd }
            | SyscallOpType::Connect { sockfd, .. }
            | SyscallOpType::Send { sockfd, .. }
            | SyscallOpType::Recv { sockfd, .. }
            | SyscallOpType::RecvMulti { sockfd, .. }
            | SyscallOpType::SendTo { sockfd, .. }
            | SyscallOpType::RecvFrom { sockfd, .. }
            | SyscallOpType::LocalAddr { sockfd }
            | SyscallOpType::PeerAddr { sockfd }
            | SyscallOpType::Shutdown { sockfd, .. } => Some(sockfd),
            // Paths, `Socket`, `Timeout`, `Nop`.
            _ => None,
        }
    }

    /// What the crate knows of the operation before it runs: its family, its class and whether
    /// it acts with its process's rights. One row per operation: adding one is adding its row
    /// here and its arms in its family's files.
    #[inline]
    pub(crate) fn traits(&self) -> Traits {
        use Class::{Ends, Inline, Waits};
        use Family::{Files, Sockets, Time};
        let (family, class, rights) = match self {
            SyscallOpType::Nop => (Files, Ends, false),
            SyscallOpType::Timeout { .. } => (Time, Waits, false),
            SyscallOpType::Read { .. } => (Files, Ends, false),
            SyscallOpType::Write { .. } => (Files, Ends, false),
            SyscallOpType::ReadAt { .. } => (Files, Ends, false),
            SyscallOpType::WriteAt { .. } => (Files, Ends, false),
            SyscallOpType::Readv { .. } | SyscallOpType::ReadvAt { .. } => (Files, Ends, false),
            SyscallOpType::Writev { .. } | SyscallOpType::WritevAt { .. } => (Files, Ends, false),
            SyscallOpType::ReadInto { .. } | SyscallOpType::WriteFrom { .. } => (Files, Ends, false),
            SyscallOpType::ReadFixed { .. } | SyscallOpType::WriteFixed { .. } => (Files, Ends, false),
            SyscallOpType::CopyRange { .. } => (Files, Ends, false),
            SyscallOpType::Fsync { .. } => (Files, Ends, false),
            SyscallOpType::Fdatasync { .. } => (Files, Ends, false),
            SyscallOpType::Ftruncate { .. } => (Files, Ends, false),
            SyscallOpType::Fstat { .. } => (Files, Ends, false),
            SyscallOpType::Fallocate { .. } => (Files, Ends, false),
            SyscallOpType::Open { .. } => (Files, Ends, true),
            // Paths resolve under the rights they were submitted with.
            SyscallOpType::Stat { .. }
            | SyscallOpType::Mkdir { .. }
            | SyscallOpType::Rmdir { .. }
            | SyscallOpType::Unlink { .. }
            | SyscallOpType::Rename { .. }
            | SyscallOpType::Symlink { .. }
            | SyscallOpType::Link { .. }
            | SyscallOpType::ReadLink { .. }
            | SyscallOpType::ReadDir { .. } => (Files, Ends, true),
            // Both may reach the file system (`SEEK_END` revalidates an NFS file, `SEEK_DATA` asks
            // a FUSE daemon, a close flushes): never on a thread that starts other tenants' work.
            SyscallOpType::Lseek { .. } => (Files, Ends, false),
            SyscallOpType::Close { .. } => (Files, Ends, false),
            SyscallOpType::Socket { .. } => (Sockets, Inline, true),
            SyscallOpType::Bind { .. } => (Sockets, Inline, false),
            // `Listen` and `SendTo` bind an unbound socket themselves.
            SyscallOpType::Listen { .. } => (Sockets, Inline, true),
            SyscallOpType::LocalAddr { .. } => (Sockets, Inline, false),
            SyscallOpType::PeerAddr { .. } => (Sockets, Inline, false),
            // It may send a FIN, which never waits.
            SyscallOpType::Shutdown { .. } => (Sockets, Inline, false),
            SyscallOpType::Accept { .. } | SyscallOpType::AcceptMulti { .. } => (Sockets, Waits, true),
            SyscallOpType::Connect { .. } => (Sockets, Waits, false),
            SyscallOpType::Send { .. } => (Sockets, Waits, false),
            SyscallOpType::Recv { .. } | SyscallOpType::RecvMulti { .. } => (Sockets, Waits, false),
            SyscallOpType::SendTo { .. } => (Sockets, Waits, true),
            SyscallOpType::RecvFrom { .. } => (Sockets, Waits, false),
        };
        Traits { family, class, rights }
    }

    /// Whether the operation acts on sockets (run on a reactor rather than a blocking pool).
    pub fn is_network(&self) -> bool {
        self.traits().family == Family::Sockets
    }

    /// Whether the operation may wait on a peer for an unbounded time (accept, connect, send,
    /// receive). Such operations do not occupy the executor's in-flight window, so a listener
    /// nobody connects to cannot starve file I/O. (A `Read` or `Write` waits so too when its
    /// descriptor is a socket, a FIFO or a character device, which only its run can tell.)
    #[inline]
    pub fn may_wait_on_peer(&self) -> bool {
        self.traits().class == Class::Waits
    }

    /// Whether the operation gives many results (`AcceptMulti`): it is submitted only with
    /// [`IoUringManager::submit_multishot`](crate::syscalls::IoUringManager::submit_multishot),
    /// whose stream takes them.
    #[inline]
    pub fn is_multishot(&self) -> bool {
        matches!(self, SyscallOpType::AcceptMulti { .. } | SyscallOpType::RecvMulti { .. })
    }

    /// Whether executing the operation needs its process's rights (the sandbox it was submitted
    /// under): it opens a path, creates a descriptor, or may bind a socket. The ring keeps those
    /// rights from submission for it, so a later `set_policy` does not change what it may do.
    #[inline]
    pub(crate) fn acts_with_rights(&self) -> bool {
        self.traits().rights
    }

    /// The most memory the operation may allocate for its result: what a read (`Read`,
    /// `ReadAt`, `Readv`, `ReadvAt`, `Recv`, `RecvFrom`, `ReadLink`, `ReadDir`) may bring back,
    /// or what a `ReadInto` may grow the caller's buffer by (the caller's own memory is not
    /// the crate's to count; a `ReadFixed`'s pool is counted while registered); 0 for any other
    /// operation. What it counts against its process's
    /// buffer budget until it completes (and its result, until taken).
    pub(crate) fn held_len(&self) -> usize {
        match self {
            SyscallOpType::ReadInto { buf, size, .. } => buf.len().saturating_add(*size).saturating_sub(buf.capacity()),
            SyscallOpType::Read { size, .. }
            | SyscallOpType::ReadAt { size, .. }
            | SyscallOpType::Recv { size, .. }
            | SyscallOpType::RecvFrom { size, .. } => *size,
            SyscallOpType::RecvMulti { size, .. } => size.saturating_mul(RECV_SHARES),
            // The buffers' headers too: a thousand empty buffers hold memory.
            SyscallOpType::Readv { sizes, .. } | SyscallOpType::ReadvAt { sizes, .. } => {
                sizes.iter().fold(sizes.len().saturating_mul(std::mem::size_of::<Vec<u8>>()), |sum: usize, size| {
                    sum.saturating_add(*size)
                })
            }
            // What its result may hold: a link's target, a page of names.
            SyscallOpType::ReadLink { .. } => LINK_TARGET_MAX,
            SyscallOpType::ReadDir { max, .. } => (*max as usize).min(MAX_DIR_PAGE as usize) * DIR_ENTRY_MAX,
            _ => 0,
        }
    }

    /// Whether the operation changes the file system by its path (makes, removes or renames a
    /// name): what a read-only policy refuses.
    pub(crate) fn mutates_path(&self) -> bool {
        matches!(
            self,
            SyscallOpType::Mkdir { .. }
                | SyscallOpType::Rmdir { .. }
                | SyscallOpType::Unlink { .. }
                | SyscallOpType::Rename { .. }
                | SyscallOpType::Symlink { .. }
                | SyscallOpType::Link { .. }
        )
    }

    /// The paths the operation names (one, two for `Rename` and `Link`; a symbolic link's
    /// target is data, not a path it resolves).
    pub(crate) fn paths(&self) -> [Option<&str>; 2] {
        match self {
            SyscallOpType::Open { path, .. }
            | SyscallOpType::Stat { path, .. }
            | SyscallOpType::Mkdir { path, .. }
            | SyscallOpType::Rmdir { path }
            | SyscallOpType::Unlink { path }
            | SyscallOpType::ReadLink { path }
            | SyscallOpType::ReadDir { path, .. } => [Some(path), None],
            SyscallOpType::Symlink { link, .. } => [Some(link), None],
            SyscallOpType::Rename { from, to, .. } | SyscallOpType::Link { from, to } => [Some(from), Some(to)],
            _ => [None, None],
        }
    }

    /// For a write (`Write`, `WriteAt`, `Writev`, `WritevAt`, `WriteFrom`, `Send`, `SendTo`), the bytes it
    /// asks to write; `None` for any other operation.
    pub(crate) fn write_len(&self) -> Option<usize> {
        match self {
            SyscallOpType::Write { data, .. }
            | SyscallOpType::WriteAt { data, .. }
            | SyscallOpType::Send { data, .. }
            | SyscallOpType::SendTo { data, .. } => Some(data.len()),
            SyscallOpType::Writev { bufs, .. } | SyscallOpType::WritevAt { bufs, .. } => {
                Some(bufs.iter().fold(0, |sum: usize, buf| sum.saturating_add(buf.len())))
            }
            // A range outside the buffer is refused at submission; until then it asks for none.
            SyscallOpType::WriteFrom { buf, range, .. } => Some(if range.end <= buf.len() { range.len() } else { 0 }),
            SyscallOpType::WriteFixed { buf, range, .. } => Some(if range.end <= buf.len() { range.len() } else { 0 }),
            _ => None,
        }
    }

    /// The number of bytes the operation asks to move, for the size limits.
    pub(crate) fn io_len(&self) -> usize {
        if let Some(len) = self.write_len() {
            return len;
        }
        match self {
            SyscallOpType::CopyRange { len, .. } => *len,
            // An allocation takes space as a write of as many zeros would; freeing some
            // (`PUNCH_HOLE`, `COLLAPSE_RANGE`) does not count.
            SyscallOpType::Fallocate { mode, len, .. } if mode & (FALLOC_PUNCH_HOLE | FALLOC_COLLAPSE_RANGE) == 0 => {
                usize::try_from(*len).unwrap_or(usize::MAX)
            }
            SyscallOpType::Read { size, .. }
            | SyscallOpType::ReadAt { size, .. }
            | SyscallOpType::ReadInto { size, .. }
            | SyscallOpType::ReadFixed { size, .. }
            | SyscallOpType::Recv { size, .. }
            | SyscallOpType::RecvMulti { size, .. }
            | SyscallOpType::RecvFrom { size, .. } => *size,
            SyscallOpType::Readv { sizes, .. } | SyscallOpType::ReadvAt { sizes, .. } => {
                sizes.iter().fold(0, |sum: usize, size| sum.saturating_add(*size))
            }
            // A link's target or a directory's page is no transfer: only the buffer budget
            // counts what it holds (`held_len`).
            _ => 0,
        }
    }
}

impl SyscallOpType {
    /// The caller's buffer a `ReadInto`, `WriteFrom`, `ReadFixed` or `WriteFixed` carries, taken
    /// out of it (an empty buffer of no pool is left behind), to be given back with the
    /// operation's completion; `None` for any other operation.
    pub(crate) fn take_buffer(&mut self) -> Option<LentBuf> {
        match self {
            SyscallOpType::ReadInto { buf, .. } | SyscallOpType::WriteFrom { buf, .. } => {
                Some(LentBuf::Vec(std::mem::take(buf)))
            }
            SyscallOpType::ReadFixed { buf, .. } | SyscallOpType::WriteFixed { buf, .. } => {
                Some(LentBuf::Fixed(std::mem::replace(buf, FixedBuf::empty())))
            }
            _ => None,
        }
    }

    /// Whether it carries the caller's buffer (`ReadInto`, `WriteFrom`, `ReadFixed`,
    /// `WriteFixed`), given back with its completion however it ends.
    pub fn lends_buffer(&self) -> bool {
        matches!(
            self,
            SyscallOpType::ReadInto { .. }
                | SyscallOpType::WriteFrom { .. }
                | SyscallOpType::ReadFixed { .. }
                | SyscallOpType::WriteFixed { .. }
        )
    }

    /// The process whose pool the buffer of a `ReadFixed` or `WriteFixed` came from (`None`
    /// for a copy of no pool, or another operation): it must be the submitter's.
    pub(crate) fn fixed_owner(&self) -> Option<super::Pid> {
        match self {
            SyscallOpType::ReadFixed { buf, .. } | SyscallOpType::WriteFixed { buf, .. } => buf.pid(),
            _ => None,
        }
    }
}

/// The most buffers one vectored read or write takes (Linux's `IOV_MAX`).
pub const MAX_IOV: usize = 1024;

/// The most entries one [`SyscallOpType::ReadDir`] returns.
pub const MAX_DIR_PAGE: u32 = 4096;
/// The memory a `ReadDir` reserves per entry asked: the longest name (255 bytes) and the
/// entry's own size.
pub(crate) const DIR_ENTRY_MAX: usize = 256 + std::mem::size_of::<super::DirEntry>();
/// The longest symbolic link target (`PATH_MAX`).
pub(crate) const LINK_TARGET_MAX: usize = 4096;

/// `FALLOC_FL_PUNCH_HOLE`.
pub(crate) const FALLOC_PUNCH_HOLE: u32 = 0x02;
/// `FALLOC_FL_COLLAPSE_RANGE`.
pub(crate) const FALLOC_COLLAPSE_RANGE: u32 = 0x08;
/// The `fallocate` modes a `Fallocate` may use: `KEEP_SIZE`, `PUNCH_HOLE`, `COLLAPSE_RANGE`,
/// `ZERO_RANGE`, `INSERT_RANGE`, `UNSHARE_RANGE`.
pub(crate) const FALLOC_MODES: u32 = 0x01 | FALLOC_PUNCH_HOLE | FALLOC_COLLAPSE_RANGE | 0x10 | 0x20 | 0x40;

/// What the crate knows of an operation before it runs ([`SyscallOpType::traits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Traits {
    pub(crate) family: Family,
    pub(crate) class: Class,
    /// Whether it acts with its process's rights (see [`SyscallOpType::acts_with_rights`]).
    pub(crate) rights: bool,
}

/// Which family of operations runs an operation: each keeps in one place how a pool runs its
/// operations and how io_uring prepares them and reads their results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    /// Files and descriptors (`backend::file_ops`).
    Files,
    /// Sockets (`backend::net_ops`).
    Sockets,
    /// Timers (`backend::time_ops`).
    Time,
}

/// How an operation runs, on every backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// Never waits, and touches no file system: runs at once on the thread that starts it (the
    /// socket calls that only set a socket up).
    Inline,
    /// Ends on its own (file I/O, opens, `fsync`): in the kernel's io_uring or on a pool thread,
    /// holding a place in the executor's window until it ends.
    Ends,
    /// May wait on a peer (or a timer) for as long as it likes: waits for readiness, in the
    /// kernel, on a reactor or on the timer, holding no thread and no place in the window, and
    /// stops when cancelled.
    Waits,
}

impl SyscallOpType {
    /// Caps the bytes the operation moves at `max`: a write keeps only the first `max` bytes of
    /// its data (a `WriteFrom` writes only the first `max` of its range, its buffer untouched),
    /// a read or receive asks for at most `max`; other operations are unchanged.
    pub(crate) fn limit_transfer(&mut self, max: usize) {
        match self {
            SyscallOpType::WriteFrom { range, .. } | SyscallOpType::WriteFixed { range, .. } => {
                range.end = range.start.saturating_add(max).min(range.end)
            }
            SyscallOpType::ReadInto { size, .. } | SyscallOpType::ReadFixed { size, .. } => *size = (*size).min(max),
            SyscallOpType::Write { data, .. }
            | SyscallOpType::WriteAt { data, .. }
            | SyscallOpType::Send { data, .. }
            | SyscallOpType::SendTo { data, .. } => data.truncate(max),
            SyscallOpType::Read { size, .. }
            | SyscallOpType::ReadAt { size, .. }
            | SyscallOpType::Recv { size, .. }
            | SyscallOpType::RecvMulti { size, .. }
            | SyscallOpType::RecvFrom { size, .. } => *size = (*size).min(max),
            SyscallOpType::CopyRange { len, .. } => *len = (*len).min(max),
            SyscallOpType::Writev { bufs, .. } | SyscallOpType::WritevAt { bufs, .. } => {
                let mut left = max;
                for buf in bufs.iter_mut() {
                    buf.truncate(left);
                    left -= buf.len();
                }
            }
            SyscallOpType::Readv { sizes, .. } | SyscallOpType::ReadvAt { sizes, .. } => {
                let mut left = max;
                for size in sizes.iter_mut() {
                    *size = (*size).min(left);
                    left -= *size;
                }
            }
            _ => {}
        }
    }
}
