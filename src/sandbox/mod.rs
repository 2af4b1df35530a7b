//! The per-process sandbox: which paths and addresses a process may touch, and its limits.
//!
//! A [`Policy`] is plain data set with [`IoUringManager::set_policy`]; the manager compiles it
//! into a [`Sandbox`] (opening the root directory once) that every backend consults. Every
//! refusal completes the operation with `EACCES`, never a panic.
//!
//! [`IoUringManager::set_policy`]: crate::syscalls::IoUringManager::set_policy

mod net;
mod path;
mod rate;

use std::fmt;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

pub use ipnet::IpNet;
pub use net::{Network, PortRange};
pub use rate::RateLimit;

use crate::op::{Family, SyscallOpType};
use crate::op::{OpError, errno};
use net::NetRule;

/// The largest read or write the crate will attempt, whatever the policy: Linux's own limit for
/// one `read(2)` (`MAX_RW_COUNT`). Larger sizes are `EINVAL`, so no allocation is tried.
pub const MAX_IO_SIZE: usize = 0x7fff_f000;

/// What a virtual process may do.
///
/// `Policy::default()` denies all file and network access. Build from one of the constructors
/// and refine with the builder methods:
///
/// ```
/// use ai_os_kernel::sandbox::Policy;
/// use std::net::Ipv4Addr;
///
/// let p = Policy::rooted("/tmp")            // files beneath /tmp, read-only
///     .read_write()                         // ... and writable
///     .allow_connect(Ipv4Addr::LOCALHOST, 8000..9000)
///     .max_open_fds(64)
///     .max_io_bytes(1 << 20);
/// assert!(p.is_writable());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Policy {
    files: FileAccess,
    writable: bool,
    connect: Vec<NetRule>,
    bind: Vec<NetRule>,
    listen: bool,
    max_open_fds: usize,
    max_outstanding: usize,
    max_io_bytes: usize,
    max_buffered_bytes: usize,
    umask: u32,
    weight: u32,
    max_in_flight: Option<usize>,
    ops_rate: Option<RateLimit>,
    bytes_rate: Option<RateLimit>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum FileAccess {
    Denied,
    Anywhere,
    Beneath(PathBuf),
}

/// The `Rename` flags allowed: `RENAME_NOREPLACE`, `RENAME_EXCHANGE` (one at a time).
const RENAME_FLAGS: u32 = crate::op::open_flags::RENAME_NOREPLACE | crate::op::open_flags::RENAME_EXCHANGE;

/// Default for [`Policy::max_open_fds`].
pub const DEFAULT_MAX_OPEN_FDS: usize = 1024;
/// Default for [`Policy::max_io_bytes`]: 64 MiB per read or write.
pub const DEFAULT_MAX_IO_BYTES: usize = 64 << 20;
/// Default for [`Policy::max_buffered_bytes`]: 256 MiB of reads outstanding.
pub const DEFAULT_MAX_BUFFERED_BYTES: usize = 256 << 20;
/// Default for [`Policy::umask`]: group and others may not write what a tenant creates.
pub const DEFAULT_UMASK: u32 = 0o022;
/// The largest [`Policy::weight`].
pub const MAX_WEIGHT: u32 = 1000;

impl Default for Policy {
    /// Denies every file and network operation (`EACCES`).
    fn default() -> Self {
        Policy {
            files: FileAccess::Denied,
            writable: false,
            connect: Vec::new(),
            bind: Vec::new(),
            listen: false,
            max_open_fds: DEFAULT_MAX_OPEN_FDS,
            max_outstanding: usize::MAX,
            max_io_bytes: DEFAULT_MAX_IO_BYTES,
            max_buffered_bytes: DEFAULT_MAX_BUFFERED_BYTES,
            umask: DEFAULT_UMASK,
            weight: 1,
            max_in_flight: None,
            ops_rate: None,
            bytes_rate: None,
        }
    }
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("files", &self.files)
            .field("writable", &self.writable)
            .field("connect", &self.connect)
            .field("bind", &self.bind)
            .field("listen", &self.listen)
            .field("max_open_fds", &self.max_open_fds)
            .field("max_outstanding", &self.max_outstanding)
            .field("max_io_bytes", &self.max_io_bytes)
            .field("max_buffered_bytes", &self.max_buffered_bytes)
            .field("umask", &format_args!("{:#o}", self.umask))
            .field("weight", &self.weight)
            .field("max_in_flight", &self.max_in_flight)
            .field("ops_rate", &self.ops_rate)
            .field("bytes_rate", &self.bytes_rate)
            .finish()
    }
}

impl Policy {
    /// For trusted callers: any path (relative paths resolve against the host's working
    /// directory), read-write, any address, listening allowed. The size and descriptor limits
    /// keep their defaults.
    pub fn unrestricted() -> Self {
        Policy {
            files: FileAccess::Anywhere,
            writable: true,
            connect: NetRule::any().to_vec(),
            bind: NetRule::any().to_vec(),
            listen: true,
            ..Policy::default()
        }
    }

    /// Files beneath `dir` only, read-only; no network. `/x` and `x` both name `dir/x`; `..`,
    /// absolute symlinks and `/proc` magic links cannot leave `dir`.
    pub fn rooted(dir: impl Into<PathBuf>) -> Self {
        Policy { files: FileAccess::Beneath(dir.into()), ..Policy::default() }
    }

    /// Allows writing: `O_WRONLY`, `O_RDWR`, `O_CREAT`, `O_TRUNC`, `O_APPEND`.
    pub fn read_write(mut self) -> Self {
        self.writable = true;
        self
    }

    /// Allows connecting (and sending datagrams) to addresses in `net` on `ports`. The
    /// unspecified addresses `0.0.0.0` and `::`, which the kernel sends to the host itself, are
    /// checked as the loopback address they reach.
    pub fn allow_connect(mut self, net: impl Network, ports: impl Into<PortRange>) -> Self {
        self.connect.push(NetRule { net: net.into_net(), ports: ports.into() });
        self
    }

    /// Allows binding to addresses in `net` on `ports` (include port 0 for an ephemeral port).
    /// IPv6 sockets are dual-stack: binding the IPv6 wildcard `[::]` also takes the port on
    /// every IPv4 address, so it is allowed only where the IPv4 wildcard `0.0.0.0` is too.
    pub fn allow_bind(mut self, net: impl Network, ports: impl Into<PortRange>) -> Self {
        self.bind.push(NetRule { net: net.into_net(), ports: ports.into() });
        self
    }

    /// Allows `Listen` (and so `Accept`) on sockets the process was allowed to bind.
    pub fn allow_listen(mut self) -> Self {
        self.listen = true;
        self
    }

    /// At most `n` descriptors open at once; one more `Open`, `Socket` or `Accept` fails with
    /// `EMFILE`, before the kernel acts (nothing is created or truncated, no connection is taken
    /// off its queue). An operation takes its place when it starts: an `Accept` waiting for a
    /// connection holds one.
    pub fn max_open_fds(mut self, n: usize) -> Self {
        self.max_open_fds = n;
        self
    }

    /// At most `n` operations outstanding at once, below the ring's own capacity; beyond it
    /// `submit` fails with `CompletionQueueFull`, as for a full ring.
    pub fn max_outstanding(mut self, n: usize) -> Self {
        self.max_outstanding = n;
        self
    }

    /// At most `n` bytes per read or write; more is refused with `EACCES`.
    pub fn max_io_bytes(mut self, n: usize) -> Self {
        self.max_io_bytes = n;
        self
    }

    /// At most `n` bytes held for the process's reads at once (default
    /// [`DEFAULT_MAX_BUFFERED_BYTES`]): the sizes asked by its reads not yet completed, plus the
    /// buffers (their whole capacity) of its read results not yet taken. A read that would pass
    /// it completes with `ENOMEM` at once, so no tenant can make the host hold more than this for
    /// it, however many reads it queues (the ring's capacity times
    /// [`max_io_bytes`](Self::max_io_bytes) is far more). Raise it together with `max_io_bytes`
    /// when single reads should be larger than it.
    pub fn max_buffered_bytes(mut self, n: usize) -> Self {
        self.max_buffered_bytes = n;
        self
    }

    /// The limit on bytes held for the process's reads.
    pub fn buffered_byte_limit(&self) -> usize {
        self.max_buffered_bytes
    }

    /// Permission bits cleared from the mode of every file the process creates (default
    /// [`DEFAULT_UMASK`]), as `umask(2)` would; the host's own umask applies on top. Whatever the
    /// umask, a created file never has its set-uid, set-gid or sticky bit: only the permission
    /// bits `0o777` of an `Open`'s `mode` are ever passed to the kernel.
    pub fn umask(mut self, mask: u32) -> Self {
        self.umask = mask & 0o777;
        self
    }

    /// The umask applied to created files.
    pub fn file_umask(&self) -> u32 {
        self.umask
    }

    /// The process's share of the executor when processes contend for it (default 1, at most
    /// [`MAX_WEIGHT`]; `0` is taken as `1`): while several processes have operations queued, each
    /// is handed operations in proportion to its weight (deficit round robin, 32 operations per
    /// turn per unit of weight), so weights 1 and 3 get a quarter and three quarters of the
    /// operations started. The weight also scales the process's share of the window (see
    /// [`max_in_flight`](Self::max_in_flight)), which holds whether others contend or not.
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight.clamp(1, MAX_WEIGHT);
        self
    }

    /// The process's weight.
    pub fn scheduling_weight(&self) -> u32 {
        self.weight
    }

    /// At most `n` of the process's operations in the backend at once (at least 1), of those
    /// that hold a place in the executor's window (not the waits on a peer); the rest wait in its
    /// SQ. By default a quarter of the window per unit of [`weight`](Self::weight) (with weight
    /// 1: 64 on io_uring, tokio and smol, half the threads of the blocking pool), so that
    /// operations that never end (reads of a hung network file system) hold at most that much of
    /// the window and of the pool, the rest staying for the other processes, and so that
    /// weights share the backend even while the window is not full. Never more than the window.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = Some(n.max(1));
        self
    }

    /// The process's share of the executor's window, if set ([`max_in_flight`](Self::max_in_flight)).
    pub fn in_flight_limit(&self) -> Option<usize> {
        self.max_in_flight
    }

    /// At most `limit` operations a second, of every kind (see [`RateLimit`]).
    pub fn ops_rate(mut self, limit: RateLimit) -> Self {
        self.ops_rate = Some(limit);
        self
    }

    /// At most `limit` bytes a second read, written, sent and received, counted as asked when
    /// each operation starts (see [`RateLimit`]).
    pub fn bytes_rate(mut self, limit: RateLimit) -> Self {
        self.bytes_rate = Some(limit);
        self
    }

    /// The operation rate limit, if any.
    pub fn ops_rate_limit(&self) -> Option<RateLimit> {
        self.ops_rate
    }

    /// The byte rate limit, if any.
    pub fn bytes_rate_limit(&self) -> Option<RateLimit> {
        self.bytes_rate
    }

    /// The root directory, for a rooted policy.
    pub fn root(&self) -> Option<&Path> {
        match &self.files {
            FileAccess::Beneath(dir) => Some(dir),
            _ => None,
        }
    }

    /// Whether writes are allowed.
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// The descriptor limit.
    pub fn open_fd_limit(&self) -> usize {
        self.max_open_fds
    }

    /// The outstanding-operation limit.
    pub fn outstanding_limit(&self) -> usize {
        self.max_outstanding
    }

    /// The per-operation byte limit.
    pub fn io_byte_limit(&self) -> usize {
        self.max_io_bytes
    }

    /// Checks everything about `op` that does not need the file system: sizes, offsets, open
    /// flags, addresses. Path resolution happens when the file is opened, beneath the root.
    pub(crate) fn check(&self, op: &SyscallOpType) -> Result<(), OpError> {
        let len = op.io_len();
        if len > MAX_IO_SIZE {
            return Err(OpError::new(
                errno::EINVAL,
                format!("{}: size {len} exceeds the largest single transfer ({MAX_IO_SIZE} bytes)", op.name()),
            ));
        }
        if len > self.max_io_bytes {
            return Err(OpError::new(
                errno::EACCES,
                format!("{}: size {len} exceeds the policy's limit of {} bytes", op.name(), self.max_io_bytes),
            ));
        }
        match op.traits().family {
            Family::Files => self.check_file(op),
            Family::Sockets => self.check_socket(op),
            Family::Time => Ok(()),
        }
    }

    /// The files family's rules: offsets, `whence`, open flags (the path is resolved when it is
    /// opened).
    fn check_file(&self, op: &SyscallOpType) -> Result<(), OpError> {
        match op {
            SyscallOpType::ReadAt { offset, .. }
            | SyscallOpType::WriteAt { offset, .. }
            | SyscallOpType::ReadvAt { offset, .. }
            | SyscallOpType::WritevAt { offset, .. }
                if *offset > i64::MAX as u64 =>
            {
                Err(OpError::new(errno::EINVAL, format!("{}: offset {offset} is past i64::MAX", op.name())))
            }
            SyscallOpType::ReadInto { offset: Some(offset), .. }
            | SyscallOpType::WriteFrom { offset: Some(offset), .. }
            | SyscallOpType::ReadFixed { offset: Some(offset), .. }
            | SyscallOpType::WriteFixed { offset: Some(offset), .. }
                if *offset > i64::MAX as u64 =>
            {
                Err(OpError::new(errno::EINVAL, format!("{}: offset {offset} is past i64::MAX", op.name())))
            }
            SyscallOpType::WriteFrom { buf, range, .. } if range.start > range.end || range.end > buf.len() => {
                Err(OpError::new(
                    errno::EINVAL,
                    format!("write_from: range {range:?} is not within the buffer's {} bytes", buf.len()),
                ))
            }
            SyscallOpType::WriteFixed { buf, range, .. } if range.start > range.end || range.end > buf.len() => {
                Err(OpError::new(
                    errno::EINVAL,
                    format!("write_fixed: range {range:?} is not within the buffer's {} bytes", buf.len()),
                ))
            }
            // A registered buffer never grows: it is read into where it lies.
            SyscallOpType::ReadFixed { buf, size, .. } if *size > buf.spare() => Err(OpError::new(
                errno::EINVAL,
                format!("read_fixed: {size} bytes do not fit the buffer's {} bytes of spare capacity", buf.spare()),
            )),
            SyscallOpType::Readv { sizes, .. } | SyscallOpType::ReadvAt { sizes, .. }
                if sizes.len() > crate::op::MAX_IOV =>
            {
                Err(too_many_buffers(op.name(), sizes.len()))
            }
            SyscallOpType::Writev { bufs, .. } | SyscallOpType::WritevAt { bufs, .. }
                if bufs.len() > crate::op::MAX_IOV =>
            {
                Err(too_many_buffers(op.name(), bufs.len()))
            }
            SyscallOpType::CopyRange { offset_in, offset_out, .. }
                if *offset_in > i64::MAX as u64 || *offset_out > i64::MAX as u64 =>
            {
                Err(OpError::new(errno::EINVAL, "copy_file_range: an offset is past i64::MAX"))
            }
            SyscallOpType::Fallocate { mode, .. } if mode & !crate::op::FALLOC_MODES != 0 => Err(OpError::new(
                errno::EINVAL,
                format!("fallocate: mode bits {:#x} are not supported", mode & !crate::op::FALLOC_MODES),
            )),
            SyscallOpType::Fallocate { offset, len, .. } if *offset > i64::MAX as u64 || *len > i64::MAX as u64 => {
                Err(OpError::new(errno::EINVAL, format!("fallocate: offset {offset} or length {len} is past i64::MAX")))
            }
            SyscallOpType::Ftruncate { len, .. } if *len > i64::MAX as u64 => {
                Err(OpError::new(errno::EINVAL, format!("ftruncate: length {len} is past i64::MAX")))
            }
            SyscallOpType::Lseek { whence, .. } if !(0..=4).contains(whence) => Err(OpError::new(
                errno::EINVAL,
                format!("lseek: whence {whence} is not SEEK_SET, SEEK_CUR, SEEK_END, SEEK_DATA or SEEK_HOLE"),
            )),
            SyscallOpType::Open { path, flags, .. } => self.check_open(path, *flags),
            SyscallOpType::Rename { flags, .. } if flags & !RENAME_FLAGS != 0 || *flags == RENAME_FLAGS => {
                Err(OpError::new(errno::EINVAL, format!("rename: flags {flags:#x} are not NOREPLACE or EXCHANGE")))
            }
            SyscallOpType::ReadDir { max, .. } if !(1..=crate::op::MAX_DIR_PAGE).contains(max) => Err(OpError::new(
                errno::EINVAL,
                format!("readdir: {max} entries a page is not 1 to {}", crate::op::MAX_DIR_PAGE),
            )),
            _ => self.check_paths(op),
        }
    }

    /// What every path operation must pass: the policy allows files, and changes if it
    /// [`mutates_path`](SyscallOpType::mutates_path); no path is empty (`ENOENT`).
    fn check_paths(&self, op: &SyscallOpType) -> Result<(), OpError> {
        for path in op.paths().into_iter().flatten() {
            if matches!(self.files, FileAccess::Denied) {
                return Err(no_file_access(op.name(), path));
            }
            if op.mutates_path() && !self.writable {
                return Err(OpError::new(errno::EACCES, format!("{} {path:?}: the policy is read-only", op.name())));
            }
            if path.is_empty() {
                return Err(OpError::new(
                    rustix::io::Errno::NOENT.raw_os_error(),
                    format!("{}: empty path", op.name()),
                ));
            }
        }
        Ok(())
    }

    fn check_open(&self, path: &str, flags: u32) -> Result<(), OpError> {
        use rustix::fs::OFlags;
        if matches!(self.files, FileAccess::Denied) {
            return Err(no_file_access("open", path));
        }
        // rustix's `OFlags::from_bits` takes every bit: the open flags this crate knows are
        // listed here, and any other bit is refused before the kernel, which ignores unknown
        // bits in open(2) (openat2 refuses them, but only rooted policies use it).
        let known = OFlags::RWMODE
            | OFlags::CREATE
            | OFlags::EXCL
            | OFlags::NOCTTY
            | OFlags::TRUNC
            | OFlags::APPEND
            | OFlags::NONBLOCK
            | OFlags::DSYNC
            | OFlags::SYNC
            | OFlags::RSYNC
            | OFlags::DIRECTORY
            | OFlags::NOFOLLOW
            | OFlags::CLOEXEC
            | OFlags::DIRECT
            | OFlags::LARGEFILE
            | OFlags::NOATIME
            | OFlags::TMPFILE
            | OFlags::PATH
            | OFlags::ASYNC;
        let oflags = OFlags::from_bits_retain(flags);
        if !known.contains(oflags) {
            return Err(OpError::new(errno::EINVAL, format!("open {path:?}: unknown flag bits {flags:#x}")));
        }
        if oflags.contains(OFlags::PATH) {
            return Err(OpError::new(errno::EINVAL, format!("open {path:?}: O_PATH descriptors are not supported")));
        }
        let access = oflags & OFlags::RWMODE;
        if access == OFlags::RWMODE {
            return Err(OpError::new(
                errno::EINVAL,
                format!("open {path:?}: access mode 3 is not O_RDONLY, O_WRONLY or O_RDWR"),
            ));
        }
        // `O_TMPFILE` includes the bits of `O_DIRECTORY`: only all of its bits mean a temp file.
        let writes = !access.is_empty()
            || oflags.intersects(OFlags::CREATE | OFlags::TRUNC | OFlags::APPEND)
            || oflags.contains(OFlags::TMPFILE);
        if writes && !self.writable {
            return Err(OpError::new(errno::EACCES, format!("open {path:?}: the policy is read-only")));
        }
        if path.is_empty() {
            return Err(OpError::new(rustix::io::Errno::NOENT.raw_os_error(), "open: empty path"));
        }
        Ok(())
    }
}

/// A [`Policy`] made ready for use: its root directory is open, so later renames of the root's
/// path cannot redirect the process.
#[derive(Debug)]
pub struct Sandbox {
    policy: Policy,
    root: Option<OwnedFd>,
    /// Whether the root is on a local file system ([`is_local`]).
    root_local: bool,
}

impl Sandbox {
    /// Compiles `policy`, opening its root directory. Fails if the root cannot be opened.
    pub fn new(policy: Policy) -> Result<Self, std::io::Error> {
        let root = match &policy.files {
            FileAccess::Beneath(dir) => Some(path::open_root(dir)?),
            _ => None,
        };
        let root_local = root.as_ref().is_some_and(path::is_local);
        Ok(Sandbox { policy, root, root_local })
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Opens `path` as the policy allows (flags already checked by the manager). The kernel
    /// descriptor is always close-on-exec, and opened non-blocking, so that the open never waits
    /// for a FIFO's other end: the backend then makes anything but a FIFO or a character device
    /// blocking again.
    pub fn open(&self, path: &str, flags: u32, mode: u32) -> Result<OwnedFd, OpError> {
        match (&self.policy.files, &self.root) {
            (FileAccess::Anywhere, _) => path::open_anywhere(path, flags, mode, self.policy.umask),
            (FileAccess::Beneath(_), Some(root)) => path::open_beneath(root, path, flags, mode, self.policy.umask),
            _ => Err(no_file_access("open", path)),
        }
    }

    /// Where path operation `op` acts on `path`: the directory holding its last component
    /// (resolved beneath the root, as [`open`](Self::open) resolves) and that component, which the
    /// operation's `*at` call must not follow. `op` names the operation in errors.
    pub(crate) fn at(&self, op: &str, path: &str) -> Result<At, OpError> {
        match (&self.policy.files, &self.root) {
            (FileAccess::Anywhere, _) => At::cwd(op, path),
            (FileAccess::Beneath(_), Some(root)) => {
                let (dir, name) = path::parent_beneath(root, op, path)?;
                At::beneath(op, dir, name)
            }
            _ => Err(no_file_access(op, path)),
        }
    }

    /// Where `op` finds the file at `path` itself, following a symbolic link in the last
    /// component only when `follow`: the whole path from the working directory (pass
    /// `AT_SYMLINK_NOFOLLOW` unless `follow`), or, beneath the root, the file opened as
    /// `O_PATH` with an empty name (pass `AT_EMPTY_PATH`).
    pub(crate) fn lookup(&self, op: &str, path: &str, follow: bool) -> Result<At, OpError> {
        match (&self.policy.files, &self.root) {
            (FileAccess::Anywhere, _) => At::cwd(op, path),
            (FileAccess::Beneath(_), Some(root)) => At::beneath(op, path::path_beneath(root, op, path, follow)?, ""),
            _ => Err(no_file_access(op, path)),
        }
    }

    /// The file at `path` itself as an `O_PATH` descriptor (following a symbolic link in the
    /// last component only when `follow`), resolved beneath the root as [`lookup`](Self::lookup)
    /// resolves, from the kernel's lookup cache only and on the root's own mount, when that mount
    /// is a local file system ([`is_local`], learned when the policy was set): then the file's
    /// metadata is in memory too. `None` otherwise, and for an unrestricted policy (whose paths
    /// may reach any mount). For what may be answered on the thread that submits it.
    pub(crate) fn lookup_cached(&self, op: &str, path: &str, follow: bool) -> Option<Result<OwnedFd, OpError>> {
        match (&self.policy.files, &self.root) {
            (FileAccess::Beneath(_), Some(root)) if self.root_local => path::path_cached(root, op, path, follow),
            (FileAccess::Denied, _) => Some(Err(no_file_access(op, path))),
            _ => None,
        }
    }

    /// For backends that open through the kernel themselves (io_uring's `OPENAT2`): the
    /// directory descriptor paths resolve against, if the policy is rooted.
    pub fn root_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        self.root.as_ref().map(|fd| fd.as_fd())
    }

    pub(crate) fn check(&self, op: &SyscallOpType) -> Result<(), OpError> {
        self.policy.check(op)
    }

    /// Whether the policy allows binding `addr`: for a bind the kernel makes on its own (a
    /// `Listen` or `SendTo` of an unbound socket binds the wildcard address and an ephemeral
    /// port, checked as port 0), which must pass the same rules as a `Bind`.
    pub(crate) fn may_bind(&self, addr: &std::net::SocketAddr) -> bool {
        net::admits_bind(&self.policy.bind, addr)
    }

    /// `open` flags and creation mode as the kernel gets them under this policy (close-on-exec,
    /// permission bits only, less the umask): for backends that open through the kernel themselves.
    #[cfg(all(target_os = "linux", feature = "uring"))]
    pub(crate) fn kernel_flags(&self, flags: u32, mode: u32) -> (rustix::fs::OFlags, rustix::fs::Mode) {
        path::kernel_flags(flags, mode, self.policy.umask)
    }

    /// Where a backend that opens through the kernel itself starts resolving `path`: the
    /// directory descriptor (`AT_FDCWD` when unrestricted), the path to give it, and the
    /// `RESOLVE_*` bits of `openat2`.
    #[cfg(all(target_os = "linux", feature = "uring"))]
    pub(crate) fn open_at<'p>(&self, path: &'p str) -> Result<(i32, &'p str, u64), OpError> {
        use std::os::fd::AsRawFd;
        match (&self.policy.files, &self.root) {
            (FileAccess::Anywhere, _) => Ok((rustix::fs::CWD.as_raw_fd(), path, 0)),
            (FileAccess::Beneath(_), Some(root)) => Ok((root.as_raw_fd(), path::relative(path), path::RESOLVE.bits())),
            _ => Err(no_file_access("open", path)),
        }
    }
}

#[cfg(all(target_os = "linux", feature = "uring"))]
pub(crate) use path::escape_error;
pub(crate) use path::{At, is_local};

fn too_many_buffers(op: &str, n: usize) -> OpError {
    OpError::new(errno::EINVAL, format!("{op}: {n} buffers, more than {}", crate::op::MAX_IOV))
}

fn no_file_access(op: &str, path: &str) -> OpError {
    OpError::new(errno::EACCES, format!("{op} {path:?}: the policy allows no file access"))
}

#[cfg(test)]
mod tests;
