//! Opening paths: anywhere for an unrestricted policy, beneath the root for a rooted one.

use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{Mode, OFlags};

use crate::op::OpError;

#[cfg(target_os = "linux")]
#[path = "beneath_linux.rs"]
mod beneath;
#[cfg(not(target_os = "linux"))]
#[path = "beneath_other.rs"]
mod beneath;

pub(crate) use beneath::open_beneath;
#[cfg(all(target_os = "linux", feature = "uring"))]
pub(crate) use beneath::{RESOLVE, escape_error, relative};

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
