//! Opening and resolving paths: anywhere for an unrestricted policy, beneath the root for a
//! rooted one.

use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{Mode, OFlags};

use crate::op::OpError;

#[cfg(target_os = "linux")]
#[path = "beneath_linux.rs"]
mod beneath;
#[cfg(not(target_os = "linux"))]
#[path = "beneath_other.rs"]
mod beneath;

#[cfg(all(target_os = "linux", feature = "uring"))]
pub(crate) use beneath::{RESOLVE, escape_error, relative};
pub(crate) use beneath::{open_beneath, parent_beneath, path_beneath, path_cached};

pub(crate) fn open_root(dir: &Path) -> std::io::Result<OwnedFd> {
    Ok(rustix::fs::open(dir, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?)
}

pub(crate) fn open_anywhere(path: &str, flags: u32, mode: u32, umask: u32) -> Result<OwnedFd, OpError> {
    let (flags, mode) = kernel_flags(flags, mode, umask);
    rustix::fs::open(path, flags, mode).map_err(|e| with_path(path, e))
}

/// Flags as the kernel gets them: always close-on-exec, never a controlling terminal, always
/// non-blocking, so that no open waits (for a FIFO's other end, or a lease's break): an open of
/// a FIFO for reading completes at once, one for writing with no reader is `ENXIO`, and
/// `file_ops::opened` then makes anything but a FIFO or a character device blocking again. The mode
/// only when a file may be created (`openat2` rejects any other with `EINVAL`), and then only
/// permission bits, less the policy's `umask`: a tenant never creates a set-uid, set-gid or
/// sticky file (the host's own umask still applies on top, in the kernel).
pub(crate) fn kernel_flags(flags: u32, mode: u32, umask: u32) -> (OFlags, Mode) {
    let flags = OFlags::from_bits_retain(flags) | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK;
    let creates = flags.contains(OFlags::CREATE) || flags.contains(OFlags::TMPFILE);
    (flags, if creates { Mode::from_bits_truncate(mode & 0o777 & !umask) } else { Mode::empty() })
}

pub(crate) fn with_path(path: &str, e: rustix::io::Errno) -> OpError {
    OpError::new(e.raw_os_error(), format!("open {path:?}"))
}

/// Where a path operation acts: a directory and a path in it, for the `*at` system calls. The
/// directory is the working directory for an unrestricted policy (the path then is the whole
/// path), or a directory the path was resolved to beneath the root, kept open by this value.
#[derive(Debug)]
pub(crate) struct At {
    dir: Option<OwnedFd>,
    name: CString,
}

impl At {
    /// The whole `path`, from the working directory.
    pub(crate) fn cwd(op: &str, path: &str) -> Result<At, OpError> {
        Ok(At { dir: None, name: c_path(op, path)? })
    }

    /// `name` in `dir`.
    pub(crate) fn beneath(op: &str, dir: OwnedFd, name: &str) -> Result<At, OpError> {
        Ok(At { dir: Some(dir), name: c_path(op, name)? })
    }

    /// The directory to resolve [`name`](Self::name) from.
    pub(crate) fn dir(&self) -> BorrowedFd<'_> {
        self.dir.as_ref().map_or(rustix::fs::CWD, |dir| dir.as_fd())
    }

    /// The path in [`dir`](Self::dir): empty when the directory is itself what the operation
    /// names (pass `AT_EMPTY_PATH`).
    pub(crate) fn name(&self) -> &std::ffi::CStr {
        &self.name
    }
}

/// `path` for the kernel: `EINVAL` if it holds a NUL byte.
fn c_path(op: &str, path: &str) -> Result<CString, OpError> {
    CString::new(path).map_err(|_| OpError::new(crate::op::errno::EINVAL, format!("{op} {path:?}: a NUL byte")))
}

/// Whether `fd`'s file is on a local file system that answers from memory what it holds there,
/// and offers `RWF_NOWAIT` reads: ext2/3/4, xfs, btrfs, tmpfs. (A network or FUSE file system
/// may ask its server even for what it has cached.) One `fstatfs`, which itself asks the file
/// system: call it where waiting is allowed.
#[cfg(target_os = "linux")]
// `f_type`'s width differs between architectures.
#[allow(clippy::unnecessary_cast)]
pub(crate) fn is_local(fd: impl AsFd) -> bool {
    const LOCAL: [i64; 4] = [0xEF53, 0x5846_5342, 0x9123_683E, 0x0102_1994];
    rustix::fs::fstatfs(fd).is_ok_and(|st| LOCAL.contains(&(st.f_type as i64)))
}

/// Elsewhere no file system is known to be.
#[cfg(not(target_os = "linux"))]
pub(crate) fn is_local(_fd: impl AsFd) -> bool {
    false
}
