//! Opening paths: anywhere for an unrestricted policy, beneath the root for a rooted one.

use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{Mode, OFlags};

use crate::syscalls::iouring::error::OpError;

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

pub(crate) fn open_anywhere(path: &str, flags: u32, mode: u32) -> Result<OwnedFd, OpError> {
    let (flags, mode) = kernel_flags(flags, mode);
    rustix::fs::open(path, flags, mode).map_err(|e| with_path(path, e))
}

/// Flags as the kernel gets them: always close-on-exec, never a controlling terminal. The mode
/// only when a file may be created: `openat2` rejects any other with `EINVAL`.
pub(crate) fn kernel_flags(flags: u32, mode: u32) -> (OFlags, Mode) {
    let flags = OFlags::from_bits_retain(flags) | OFlags::CLOEXEC | OFlags::NOCTTY;
    let creates = flags.contains(OFlags::CREATE) || flags.contains(OFlags::TMPFILE);
    (flags, if creates { Mode::from_bits_truncate(mode & 0o7777) } else { Mode::empty() })
}

pub(crate) fn with_path(path: &str, e: rustix::io::Errno) -> OpError {
    OpError::new(e.raw_os_error(), format!("open {path:?}"))
}
