//! What an operation produced.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::SystemTime;

use super::FixedBuf;

#[cfg(doc)]
use super::SyscallOpType;

/// What a successful operation produced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[allow(missing_docs)] // each variant's docs describe its fields
pub enum OpResult {
    /// Nothing: `Close`, `Fsync`, `Fdatasync`, `Ftruncate`, `Bind`, `Listen`, `Connect`,
    /// `Shutdown`, `Nop`,
    /// and every failed or cancelled operation.
    #[default]
    None,
    /// A new virtual descriptor: `Open`, `Socket`.
    Fd(i32),
    /// Bytes read: `Read`, `ReadAt`, `Recv`. Empty at end of file or when the peer closed.
    Bytes(Vec<u8>),
    /// Bytes written: `Write`, `WriteAt`, `Writev`, `WritevAt`, `Send`, `SendTo`, or copied:
    /// `CopyRange`. May be less than asked (short write).
    Count(usize),
    /// The new position: `Lseek`.
    Offset(u64),
    /// A new connection: `Accept`.
    Accepted { fd: i32, peer: SocketAddr },
    /// One datagram and its sender: `RecvFrom`.
    Datagram { data: Vec<u8>, from: SocketAddr },
    /// A socket address: `LocalAddr`, `PeerAddr`.
    Addr(SocketAddr),
    /// A file's metadata: `Fstat`, `Stat`.
    Stat(FileStat),
    /// A symbolic link's target: `ReadLink`.
    Path(PathBuf),
    /// One page of a directory's entries: `ReadDir`.
    Dir(DirPage),
    /// Bytes read into several buffers, one per size asked, in order: `Readv`, `ReadvAt`.
    Buffers(Vec<Vec<u8>>),
    /// The caller's buffer given back, with the bytes the operation moved: `ReadInto` (`buf`
    /// with the `count` bytes read appended) and `WriteFrom` (`count` bytes of its range
    /// written, `buf` as it was). It comes back however the operation ends: a failed or
    /// cancelled one (refused at submission, cancelled while queued, stopped in the kernel)
    /// has it in its completion's result with `count` 0, as it was submitted. Only a backend
    /// that lost the operation itself (its pool shut down or panicked, `EIO`) or a ring
    /// destroyed while the operation ran cannot give it back; and a submission the ring refuses
    /// outright (`submit` returns an error: full, destroyed) has no completion, its entry
    /// dropped with the error, unless it was submitted with
    /// [`submit_from`](crate::syscalls::IoUringManager::submit_from), which leaves it with the
    /// caller (as a [`Tenant`](crate::tenant::Tenant)'s handles do).
    Buf { count: usize, buf: Vec<u8> },
    /// A buffer of the process's registered pool given back, with the bytes the operation
    /// moved: `ReadFixed` (`buf` with the `count` bytes read appended) and `WriteFixed` (`count`
    /// bytes of its range written). It comes back however the operation ends, as
    /// [`Buf`](Self::Buf) does; one that does not (a lost operation) goes back to its pool.
    Fixed { count: usize, buf: FixedBuf },
}

/// One page of a directory, as [`SyscallOpType::ReadDir`] returns it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct DirPage {
    /// The entries, in the directory's own order (not sorted), without `.` and `..`.
    pub entries: Vec<DirEntry>,
    /// The cursor of the next page, or `None` when this page ends the directory. An entry
    /// added or removed between two pages may be listed or not, as with `readdir(3)`.
    pub next: Option<u64>,
}

/// One entry of a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DirEntry {
    /// Its name in the directory (no `/`).
    pub name: OsString,
    /// What it is, as the directory records it ([`EntryKind::Unknown`] on file systems that do
    /// not: then a `Stat` tells).
    pub kind: EntryKind,
    /// Its inode number.
    pub ino: u64,
}

/// What a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A named pipe.
    Fifo,
    /// A socket.
    Socket,
    /// A character device (a terminal, `/dev/null`).
    CharDevice,
    /// A block device.
    BlockDevice,
    /// None of these, or not reported.
    Unknown,
}

/// A file's metadata (`statx`), as [`SyscallOpType::Fstat`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FileStat {
    /// Its length in bytes.
    pub size: u64,
    /// What it is.
    pub kind: EntryKind,
    /// Its permission bits, with the set-user-id, set-group-id and sticky bits (`0o7777` at
    /// most).
    pub mode: u32,
    /// How many names it has.
    pub links: u64,
    /// When its data was last read (as the file system's access-time policy records it).
    pub accessed: SystemTime,
    /// When its data was last changed.
    pub modified: SystemTime,
    /// When its metadata (or data) was last changed.
    pub changed: SystemTime,
    /// When it was created, where the file system records it.
    pub created: Option<SystemTime>,
}

impl OpResult {
    /// The new descriptor this result hands to its owner, if any (closed for it when the result is
    /// discarded, so a dropped future leaks nothing).
    pub(crate) fn new_fd(&self) -> Option<i32> {
        match *self {
            OpResult::Fd(fd) | OpResult::Accepted { fd, .. } => Some(fd),
            _ => None,
        }
    }

    /// The memory its data holds: the buffer's capacity, which may exceed the bytes read by
    /// a little (results are shrunk only when that would save more than a few KiB). What it
    /// counts against its process's buffer budget until taken.
    pub(crate) fn held_bytes(&self) -> usize {
        match self {
            OpResult::Bytes(data) | OpResult::Datagram { data, .. } | OpResult::Buf { buf: data, .. } => {
                data.capacity()
            }
            OpResult::Path(path) => path.capacity(),
            OpResult::Buffers(bufs) => {
                bufs.capacity() * std::mem::size_of::<Vec<u8>>() + bufs.iter().map(Vec::capacity).sum::<usize>()
            }
            OpResult::Dir(page) => {
                page.entries.capacity() * std::mem::size_of::<DirEntry>()
                    + page.entries.iter().map(|e| e.name.capacity()).sum::<usize>()
            }
            _ => 0,
        }
    }
}
