//! Resolution beneath a root with `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`: the
//! kernel itself refuses `..` past the root, absolute symlinks and `/proc` magic links, so no
//! check-then-open race exists.

use std::os::fd::OwnedFd;

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use super::kernel_flags;
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

/// `path` itself beneath `root`, as an `O_PATH` descriptor (which opens nothing: no FIFO
/// waits, no device acts), following a symbolic link in the last component only when `follow`
/// (and then beneath the root too).
pub(crate) fn path_beneath(root: &OwnedFd, op: &str, path: &str, follow: bool) -> Result<OwnedFd, OpError> {
    let flags = OFlags::PATH | OFlags::CLOEXEC | if follow { OFlags::empty() } else { OFlags::NOFOLLOW };
    rustix::fs::openat2(root, relative(path), flags, Mode::empty(), RESOLVE).map_err(|e| resolve_error(op, path, e))
}

/// [`path_beneath`] from what the kernel's lookup cache holds only (`RESOLVE_CACHED`, Linux
/// 5.12), without leaving the root's mount (`RESOLVE_NO_XDEV`): `None` if any component is not
/// cached (resolving would have to ask the file system: read a directory from the disk,
/// revalidate with a server), if the path crosses into another mount (or would leave the root:
/// the pool refuses that), or if the kernel cannot say.
pub(crate) fn path_cached(root: &OwnedFd, op: &str, path: &str, follow: bool) -> Option<Result<OwnedFd, OpError>> {
    let flags = OFlags::PATH | OFlags::CLOEXEC | if follow { OFlags::empty() } else { OFlags::NOFOLLOW };
    let how = RESOLVE | ResolveFlags::CACHED | ResolveFlags::NO_XDEV;
    match rustix::fs::openat2(root, relative(path), flags, Mode::empty(), how) {
        // Not all cached, another mount or out of the root; an older kernel refuses the flags
        // (EINVAL) or the call (ENOSYS).
        Err(Errno::AGAIN | Errno::XDEV | Errno::INVAL | Errno::NOSYS) => None,
        Err(e) => Some(Err(resolve_error(op, path, e))),
        Ok(fd) => Some(Ok(fd)),
    }
}

/// The directory holding `path`'s last component, beneath `root` (an `O_PATH` descriptor), and
/// that component: a name without `/`, which the `*at` call that takes it never follows (`.`
/// and `..` included: the kernel refuses to make, remove or rename them before it looks them
/// up, and a hard link of either is a directory's, refused too). Trailing slashes are not
/// passed on (the kernel would follow a symbolic link for them): a path with one must name a
/// directory, or nothing yet, as the kernel would ask (`ENOTDIR` otherwise, symbolic links
/// included).
pub(crate) fn parent_beneath<'p>(root: &OwnedFd, op: &str, path: &'p str) -> Result<(OwnedFd, &'p str), OpError> {
    let rel = relative(path);
    let trimmed = rel.trim_end_matches('/');
    let (parent, name) = match trimmed.rsplit_once('/') {
        Some((parent, name)) => (relative(parent), name),
        None => (".", relative(trimmed)),
    };
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let dir =
        rustix::fs::openat2(root, parent, flags, Mode::empty(), RESOLVE).map_err(|e| resolve_error(op, path, e))?;
    if trimmed.len() < rel.len() && !matches!(name, "." | "..") {
        match rustix::fs::statat(&dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::Directory => {
                return Err(resolve_error(op, path, Errno::NOTDIR));
            }
            _ => {}
        }
    }
    Ok((dir, name))
}

/// `EXDEV` is how `openat2` says "this would leave the root": report it as the policy refusal it
/// is. A kernel without `openat2` gets a refusal too, never an unsafe fallback.
pub(crate) fn escape_error(path: &str, e: Errno) -> OpError {
    resolve_error("open", path, e)
}

/// [`escape_error`] for operation `op`.
pub(crate) fn resolve_error(op: &str, path: &str, e: Errno) -> OpError {
    match e {
        Errno::XDEV => OpError::new(errno::EACCES, format!("{op} {path:?}: the path leaves the sandbox root")),
        Errno::NOSYS => OpError::new(
            errno::EACCES,
            format!("{op} {path:?}: this kernel lacks openat2, and rooted paths are never resolved without it"),
        ),
        e => OpError::new(e.raw_os_error(), format!("{op} {path:?}")),
    }
}
