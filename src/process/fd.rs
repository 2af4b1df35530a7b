//! A process's descriptor table: virtual numbers from 3 up, each naming a kernel descriptor the
//! caller never sees.

use std::any::Any;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};

use rustix::fs::FileType;

use crate::op::{OpError, errno};

/// What a descriptor refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DescriptorKind {
    /// A file or directory.
    File,
    /// A socket.
    Socket,
}

/// An open kernel descriptor behind a virtual fd. Operations hold an `Arc` of it while they run,
/// so a concurrent `Close` removes the number at once but the kernel descriptor closes only when
/// the last running operation is done with it: the number can never be reused under it.
pub struct Descriptor {
    /// A backend's readiness registration (a reactor's handle on the socket), made on first
    /// use. Declared before `fd` so it is dropped, and deregistered, before the descriptor
    /// closes.
    registration: OnceLock<Result<Box<dyn Any + Send + Sync>, OpError>>,
    fd: Arc<OwnedFd>,
    kind: DescriptorKind,
    /// The kernel object's file type, found with one `fstat` the first time it is asked for (a
    /// descriptor never changes what it refers to).
    file_type: OnceLock<FileType>,
    /// Whether the kernel descriptor is non-blocking, found the first time it matters.
    nonblocking: OnceLock<bool>,
    /// Whether the socket was seen bound to a local port (which it stays): its implicit-bind
    /// check is then skipped.
    bound: AtomicBool,
    /// Whether a read of it may be answered from the page cache on the thread that starts it
    /// ([`cached_reads`](Self::cached_reads)), as a [`CachedReads`].
    cached_reads: AtomicU8,
}

/// Whether a read of a descriptor may be answered from the page cache without waiting, on the
/// thread that starts it (`preadv2` with `RWF_NOWAIT`, which answers from the page cache or
/// refuses): never for what could make it wait on anything but the page cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CachedReads {
    /// Not known yet: learned by a read on a pool thread ([`Descriptor::learn_cached_reads`]).
    Unknown,
    /// Never: not a regular file of a local file system that offers `RWF_NOWAIT` (a network or
    /// FUSE file system may wait on its server for what the page cache holds), opened with
    /// `O_DIRECT` (a direct read waits for the device however asked), or on a mount that
    /// updates the access time at every read (a read's access time update may wait for the
    /// file system's journal).
    Never,
    /// Always: no read updates its access time (a `noatime` or read-only mount, or `O_NOATIME`).
    Always,
    /// When the read leaves the access time as it is: on a `relatime` mount, a read updates it
    /// only if it is not later than the last change or is a day old.
    IfAtimeFresh,
}

impl CachedReads {
    const ALL: [CachedReads; 4] =
        [CachedReads::Unknown, CachedReads::Never, CachedReads::Always, CachedReads::IfAtimeFresh];
}

impl std::fmt::Debug for Descriptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Descriptor").field("fd", &self.fd).field("kind", &self.kind).finish()
    }
}

impl Descriptor {
    /// Wraps a kernel descriptor.
    pub fn new(fd: OwnedFd, kind: DescriptorKind) -> Self {
        Descriptor {
            registration: OnceLock::new(),
            fd: Arc::new(fd),
            kind,
            file_type: OnceLock::new(),
            nonblocking: OnceLock::new(),
            bound: AtomicBool::new(false),
            cached_reads: AtomicU8::new(CachedReads::Unknown as u8),
        }
    }

    /// Wraps a kernel descriptor of a file whose type is already known (an open classifies
    /// what it opened), sparing the `fstat` [`file_type`](Self::file_type) would make.
    pub fn of_file(fd: OwnedFd, file_type: FileType) -> Self {
        let d = Self::new(fd, DescriptorKind::File);
        d.file_type.get_or_init(|| file_type);
        // An open leaves FIFOs and character devices non-blocking (`file_ops::opened`).
        d.nonblocking.get_or_init(|| matches!(file_type, FileType::Fifo | FileType::CharacterDevice));
        d
    }

    /// What it refers to.
    pub fn kind(&self) -> DescriptorKind {
        self.kind
    }

    /// The kernel object's file type (regular file, FIFO, socket, ...): one `fstat` the first
    /// time, a load after. A socket's is known without asking; one whose `fstat` fails is
    /// [`FileType::Unknown`].
    pub fn file_type(&self) -> FileType {
        *self.file_type.get_or_init(|| match self.kind {
            DescriptorKind::Socket => FileType::Socket,
            DescriptorKind::File => {
                rustix::fs::fstat(&*self.fd).map_or(FileType::Unknown, |st| FileType::from_raw_mode(st.st_mode))
            }
        })
    }

    /// Whether the descriptor has no file position (a socket, a pipe or FIFO): `ReadAt` and
    /// `WriteAt` of it are `ESPIPE`.
    pub fn is_stream(&self) -> bool {
        matches!(self.file_type(), FileType::Socket | FileType::Fifo)
    }

    /// Whether a `Read` or `Write` of it may wait on a peer for as long as the peer likes, and
    /// waits for readiness the way socket calls do (holding no thread and no place in the
    /// executor's window, stopped by a cancellation): a socket, or a non-blocking FIFO or
    /// character device (a terminal, say), as every one a tenant opens is. A file or a block
    /// device ends its reads and writes on its own; a blocking FIFO or terminal the host
    /// installed ([`Process::install`](super::Process::install)) is read and written on a
    /// pool thread, blocking, as the host made it (one `fcntl` the first time it is asked).
    pub fn waits_on_peer(&self) -> bool {
        self.kind == DescriptorKind::Socket
            || matches!(self.file_type(), FileType::Fifo | FileType::CharacterDevice)
                && *self.nonblocking.get_or_init(|| {
                    rustix::fs::fcntl_getfl(&*self.fd).is_ok_and(|f| f.contains(rustix::fs::OFlags::NONBLOCK))
                })
    }

    /// Whether a read of it may be answered from the page cache on the thread that starts it.
    pub fn cached_reads(&self) -> CachedReads {
        CachedReads::ALL[usize::from(self.cached_reads.load(Ordering::Relaxed)).min(3)]
    }

    /// Finds out [`cached_reads`](Self::cached_reads) if it is not known: to be called on a
    /// thread that may wait for the file system (a pool thread that just read it), as it asks
    /// the file system (`fcntl`, `fstatfs`, `fstatvfs`) once.
    #[cfg(target_os = "linux")]
    pub fn learn_cached_reads(&self) {
        use rustix::fs::{OFlags, StatVfsMountFlags};
        if self.cached_reads() != CachedReads::Unknown {
            return;
        }
        let learned = (|| {
            if self.file_type() != FileType::RegularFile {
                return CachedReads::Never;
            }
            let Ok(flags) = rustix::fs::fcntl_getfl(&*self.fd) else { return CachedReads::Never };
            let local = crate::sandbox::is_local(&*self.fd);
            let Ok(mount) = rustix::fs::fstatvfs(&*self.fd) else { return CachedReads::Never };
            if flags.contains(OFlags::DIRECT) || !local {
                CachedReads::Never
            } else if flags.contains(OFlags::NOATIME)
                || mount.f_flag.intersects(StatVfsMountFlags::NOATIME | StatVfsMountFlags::RDONLY)
            {
                CachedReads::Always
            } else if mount.f_flag.contains(StatVfsMountFlags::RELATIME) {
                CachedReads::IfAtimeFresh
            } else {
                CachedReads::Never
            }
        })();
        self.cached_reads.store(learned as u8, Ordering::Relaxed);
    }

    /// Records that its file system refused a read without waiting (`EOPNOTSUPP`): never again.
    pub fn reads_wait(&self) {
        self.cached_reads.store(CachedReads::Never as u8, Ordering::Relaxed);
    }

    /// Whether the socket was seen bound to a local port ([`seen_bound`](Self::seen_bound)).
    pub fn known_bound(&self) -> bool {
        self.bound.load(Ordering::Relaxed)
    }

    /// Records that the socket is bound to a local port: a socket never becomes unbound.
    pub fn seen_bound(&self) {
        self.bound.store(true, Ordering::Relaxed);
    }

    /// The backend's readiness registration of this descriptor, made by `register` (given a
    /// shared handle on the kernel descriptor) the first time any operation needs it. Only one
    /// registration is ever made, however many operations race to make it.
    pub fn registration<R: Any + Send + Sync>(
        &self,
        register: impl FnOnce(Arc<OwnedFd>) -> std::io::Result<R>,
    ) -> Result<&R, OpError> {
        let made = self.registration.get_or_init(|| {
            register(self.fd.clone()).map(|r| Box::new(r) as Box<dyn Any + Send + Sync>).map_err(OpError::from)
        });
        match made {
            Ok(r) => r.downcast_ref::<R>().ok_or_else(|| {
                OpError::new(errno::EINVAL, "the descriptor is registered with another backend's reactor")
            }),
            Err(e) => Err(e.clone()),
        }
    }
}

impl AsFd for Descriptor {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The first virtual descriptor number (0, 1 and 2 are never handed out).
pub const FIRST_FD: i32 = 3;

#[derive(Debug, Default)]
pub(crate) struct FdTable {
    slots: Vec<Option<Arc<Descriptor>>>,
    open: usize,
    /// Places taken by operations that are about to create a descriptor (an open, a socket, an
    /// accept): counted against the limit with the open ones, so the limit is checked before the
    /// kernel acts.
    reserved: usize,
    /// Lowest slot that may be free.
    hint: usize,
    closed: bool,
}

impl FdTable {
    pub(crate) fn get(&self, fd: i32) -> Result<Arc<Descriptor>, OpError> {
        slot_of(fd).and_then(|i| self.slots.get(i)).and_then(|s| s.clone()).ok_or_else(|| bad_fd(fd))
    }

    /// Installs at the lowest free number, as POSIX does.
    pub(crate) fn insert(&mut self, d: Descriptor, limit: usize) -> Result<i32, OpError> {
        self.reserve(limit)?;
        self.insert_reserved(d)
    }

    /// Takes a place for a descriptor about to be created: `EMFILE` if the open descriptors and
    /// the places already taken reach `limit`, `EBADF` once the table is closed.
    pub(crate) fn reserve(&mut self, limit: usize) -> Result<(), OpError> {
        if self.closed {
            return Err(closed());
        }
        if self.open + self.reserved >= limit {
            return Err(OpError::new(errno::EMFILE, format!("the policy allows at most {limit} open descriptors")));
        }
        self.reserved += 1;
        Ok(())
    }

    /// Gives back a place taken with [`reserve`](Self::reserve) and not used.
    pub(crate) fn unreserve(&mut self) {
        self.reserved -= 1;
    }

    /// Installs `d` in a place taken with [`reserve`](Self::reserve), at the lowest free number;
    /// `EBADF` (and `d` closed) if the table was closed since.
    pub(crate) fn insert_reserved(&mut self, d: Descriptor) -> Result<i32, OpError> {
        self.reserved -= 1;
        if self.closed {
            return Err(closed());
        }
        let i = (self.hint..self.slots.len()).find(|&i| self.slots[i].is_none()).unwrap_or(self.slots.len());
        if i == self.slots.len() {
            self.slots.push(None);
        }
        self.slots[i] = Some(Arc::new(d));
        self.open += 1;
        self.hint = i + 1;
        Ok(i as i32 + FIRST_FD)
    }

    pub(crate) fn remove(&mut self, fd: i32) -> Result<Arc<Descriptor>, OpError> {
        let i = slot_of(fd).filter(|&i| i < self.slots.len()).ok_or_else(|| bad_fd(fd))?;
        let d = self.slots[i].take().ok_or_else(|| bad_fd(fd))?;
        self.open -= 1;
        self.hint = self.hint.min(i);
        while matches!(self.slots.last(), Some(None)) {
            self.slots.pop();
        }
        Ok(d)
    }

    /// Closes everything and refuses new descriptors.
    pub(crate) fn close_all(&mut self) -> usize {
        self.closed = true;
        let n = self.open;
        self.slots = Vec::new();
        self.open = 0;
        n
    }

    pub(crate) fn len(&self) -> usize {
        self.open
    }

    /// How many more places [`reserve`](Self::reserve) would give under `limit`.
    #[cfg(all(feature = "uring", target_os = "linux"))]
    pub(crate) fn room(&self, limit: usize) -> usize {
        if self.closed { 0 } else { limit.saturating_sub(self.open + self.reserved) }
    }
}

fn slot_of(fd: i32) -> Option<usize> {
    fd.checked_sub(FIRST_FD).and_then(|i| usize::try_from(i).ok())
}

fn closed() -> OpError {
    OpError::new(errno::EBADF, "the process's descriptor table is closed (its process was destroyed)")
}

fn bad_fd(fd: i32) -> OpError {
    OpError::new(errno::EBADF, format!("descriptor {fd} is not open in this process"))
}
