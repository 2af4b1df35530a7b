//! Resolution beneath a root with `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`: the
//! kernel itself refuses `..` past the root, absolute symlinks and `/proc` magic links, so no
//! check-then-open race exists.

use std::os::fd::OwnedFd;

use rustix::fs::ResolveFlags;
use rustix::io::Errno;

use super::{kernel_flags, with_path};
use crate::op::{OpError, errno};

/// How every rooted open resolves, also for backends that submit `OPENAT2` themselves.
pub(crate) const RESOLVE: ResolveFlags = ResolveFlags::BENEATH.union(ResolveFlags::NO_MAGICLINKS);

/// The path relative to the root: `/x` and `x` name the same file, `/` the root itself.
pub(crate) fn relative(path: &str) -> &str {
    let rel = path.trim_start_matches('/');
    if rel.is_empty() { "." } else { rel }
}

pub(crate) fn open_beneath(root: &OwnedFd, path: &str, flags: u32, mode: u32, umask: u32) -> Result<OwnedFd, OpError> {
    let (oflags, mode) = kernel_flags(flags, mode, umask);
    rustix::fs::openat2(root, relative(path), oflags, mode, RESOLVE).map_err(|e| escape_error(path, e))
}

/// `EXDEV` is how `openat2` says "this would leave the root": report it as the policy refusal it
/// is. A kernel without `openat2` gets a refusal too, never an unsafe fallback.
pub(crate) fn escape_error(path: &str, e: Errno) -> OpError {
    match e {
        Errno::XDEV => OpError::new(errno::EACCES, format!("open {path:?}: the path leaves the sandbox root")),
        Errno::NOSYS => OpError::new(
            errno::EACCES,
            format!("open {path:?}: this kernel lacks openat2, and rooted paths are never resolved without it"),
        ),
        e => with_path(path, e),
    }
}
