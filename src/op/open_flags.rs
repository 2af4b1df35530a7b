//! Linux `open(2)` flags, so callers need no `libc` to build an
//! [`SyscallOpType::Open`](super::SyscallOpType::Open), and `renameat2(2)`'s for a
//! [`SyscallOpType::Rename`](super::SyscallOpType::Rename).

use rustix::fs::OFlags;

/// Open for reading only.
pub const O_RDONLY: u32 = OFlags::RDONLY.bits();
/// Open for writing only.
pub const O_WRONLY: u32 = OFlags::WRONLY.bits();
/// Open for reading and writing.
pub const O_RDWR: u32 = OFlags::RDWR.bits();
/// Create the file if it does not exist (mode from the op, `0o644` by default).
pub const O_CREAT: u32 = OFlags::CREATE.bits();
/// With `O_CREAT`, fail with `EEXIST` if the file exists.
pub const O_EXCL: u32 = OFlags::EXCL.bits();
/// Truncate the file to zero length.
pub const O_TRUNC: u32 = OFlags::TRUNC.bits();
/// Every write appends.
pub const O_APPEND: u32 = OFlags::APPEND.bits();
/// Fail unless the path is a directory.
pub const O_DIRECTORY: u32 = OFlags::DIRECTORY.bits();
/// Do not follow a symlink in the last component.
pub const O_NOFOLLOW: u32 = OFlags::NOFOLLOW.bits();
/// Close the kernel descriptor on exec (always set by this crate anyway).
pub const O_CLOEXEC: u32 = OFlags::CLOEXEC.bits();
/// Synchronous writes.
pub const O_SYNC: u32 = OFlags::SYNC.bits();
/// Synchronous data writes.
pub const O_DSYNC: u32 = OFlags::DSYNC.bits();
/// Non-blocking mode.
pub const O_NONBLOCK: u32 = OFlags::NONBLOCK.bits();

/// `Rename`: fail with `EEXIST` rather than replace the target.
pub const RENAME_NOREPLACE: u32 = 1;
/// `Rename`: swap the two names, both of which must exist.
pub const RENAME_EXCHANGE: u32 = 2;
