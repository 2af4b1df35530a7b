//! Path operations on a pool thread: `Stat`, `Mkdir`, `Rmdir`, `Unlink`, `Rename`, `Symlink`,
//! `Link`, `ReadLink` and `ReadDir`, each one `*at` system call on what the sandbox resolved.
//!
//! The sandbox resolves every path with the rights the operation was submitted with
//! ([`Sandbox::at`], [`Sandbox::lookup`]): beneath a root, all but the last component is
//! resolved by `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`, and the last is either given
//! to a call that never follows it (make, remove, rename, link, `lstat`, `readlink`) or
//! resolved beneath the root too (`Stat` that follows, `ReadDir`). So no path of a rooted
//! process, nor a symbolic link it made, reaches outside its root. io_uring runs these on its
//! fallback pool: its `*AT` requests resolve without `RESOLVE_BENEATH`.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags};
use rustix::io::Errno;

use super::{STATX_MASK, entry_kind, file_stat};
use crate::backend::OpOutcome;
use crate::op::{DirEntry, DirPage, OpError, OpResult, SyscallOpType, errno};
use crate::sandbox::{At, Sandbox};

/// Runs path operation `op` with `rights` (any other operation is `EINVAL`).
pub(super) fn execute(op: &SyscallOpType, rights: &Sandbox) -> OpOutcome {
    let name = op.name();
    let none = |()| OpResult::None;
    match op {
        SyscallOpType::Stat { path, follow } => stat(rights, path, *follow),
        SyscallOpType::Mkdir { path, mode } => {
            let at = rights.at(name, path)?;
            let mode = Mode::from_bits_truncate(mode & 0o777 & !rights.policy().file_umask());
            call(name, path, || rustix::fs::mkdirat(at.dir(), at.name(), mode)).map(none)
        }
        SyscallOpType::Rmdir { path } => {
            let at = rights.at(name, path)?;
            call(name, path, || rustix::fs::unlinkat(at.dir(), at.name(), AtFlags::REMOVEDIR)).map(none)
        }
        SyscallOpType::Unlink { path } => {
            let at = rights.at(name, path)?;
            call(name, path, || rustix::fs::unlinkat(at.dir(), at.name(), AtFlags::empty())).map(none)
        }
        SyscallOpType::Rename { from, to, flags } => {
            let (old, new) = (rights.at(name, from)?, rights.at(name, to)?);
            let flags = RenameFlags::from_bits_retain(*flags);
            call(name, from, || rustix::fs::renameat_with(old.dir(), old.name(), new.dir(), new.name(), flags))
                .map(none)
        }
        SyscallOpType::Symlink { target, link } => {
            let at = rights.at(name, link)?;
            call(name, link, || rustix::fs::symlinkat(target.as_str(), at.dir(), at.name())).map(none)
        }
        SyscallOpType::Link { from, to } => {
            let (old, new) = (rights.at(name, from)?, rights.at(name, to)?);
            call(name, from, || rustix::fs::linkat(old.dir(), old.name(), new.dir(), new.name(), AtFlags::empty()))
                .map(none)
        }
        SyscallOpType::ReadLink { path } => {
            let at = rights.at(name, path)?;
            // Always a directory, and beneath a root perhaps the root's parent: never looked up.
            if matches!(at.name().to_bytes(), b"." | b"..") {
                return Err(OpError::new(errno::EINVAL, format!("readlink {path:?}: not a symbolic link")));
            }
            let target = call(name, path, || rustix::fs::readlinkat(at.dir(), at.name(), Vec::new()))?;
            Ok(OpResult::Path(OsString::from_vec(target.into_bytes()).into()))
        }
        SyscallOpType::ReadDir { path, cursor, max } => read_dir(rights, path, *cursor, *max),
        other => Err(OpError::new(errno::EINVAL, format!("{} is not a path operation", other.name()))),
    }
}

/// One system call of operation `op` on `path`, again while interrupted; its error names both.
fn call<T>(op: &str, path: &str, mut f: impl FnMut() -> Result<T, Errno>) -> Result<T, OpError> {
    loop {
        match f() {
            Err(Errno::INTR) => continue,
            other => return other.map_err(|e| OpError::new(e.raw_os_error(), format!("{op} {path:?}"))),
        }
    }
}

/// `Stat`: one `statx` of what [`Sandbox::lookup`] found.
fn stat(rights: &Sandbox, path: &str, follow: bool) -> OpOutcome {
    let at = rights.lookup("stat", path, follow)?;
    let flags = lookup_flags(&at, follow);
    let st = call("stat", path, || rustix::fs::statx(at.dir(), at.name(), flags, STATX_MASK))?;
    Ok(OpResult::Stat(file_stat(&st)))
}

/// The `AT_*` flags of a call on what [`Sandbox::lookup`] found.
fn lookup_flags(at: &At, follow: bool) -> AtFlags {
    if at.name().is_empty() {
        AtFlags::EMPTY_PATH
    } else if follow {
        AtFlags::empty()
    } else {
        AtFlags::SYMLINK_NOFOLLOW
    }
}

/// How many bytes of entries one `getdents64` call asks for.
const DIR_CHUNK: usize = 32 << 10;

/// `ReadDir`: at most `max` entries from `cursor` (a seek cookie of the directory, 0 for its
/// start), with the cursor of the entry after the last, if there is one. The directory is
/// opened for the call only: nothing is held between pages.
fn read_dir(rights: &Sandbox, path: &str, cursor: u64, max: u32) -> OpOutcome {
    let failed = |e: Errno| OpError::new(e.raw_os_error(), format!("readdir {path:?}"));
    let dir = rights.open(path, (OFlags::RDONLY | OFlags::DIRECTORY).bits(), 0)?;
    if cursor != 0 {
        rustix::fs::seek(&dir, rustix::fs::SeekFrom::Start(cursor)).map_err(failed)?;
    }
    let max = max as usize;
    let mut entries = Vec::new();
    entries.try_reserve(max.min(256)).map_err(|_| failed(Errno::NOMEM))?;
    let mut chunk = Vec::new();
    chunk.try_reserve_exact(DIR_CHUNK).map_err(|_| failed(Errno::NOMEM))?;
    let mut after_last = cursor;
    let mut dir_entries = rustix::fs::RawDir::new(&dir, chunk.spare_capacity_mut());
    while let Some(entry) = dir_entries.next() {
        let entry = entry.map_err(failed)?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            after_last = entry.next_entry_cookie();
            continue;
        }
        if entries.len() == max {
            // One more is there: the next page starts at it.
            return Ok(OpResult::Dir(DirPage { entries, next: Some(after_last) }));
        }
        let kind = match entry.file_type() {
            FileType::Unknown => crate::op::EntryKind::Unknown,
            known => entry_kind(known),
        };
        entries.try_reserve(1).map_err(|_| failed(Errno::NOMEM))?;
        entries.push(DirEntry { name: OsString::from_vec(name.to_vec()), kind, ino: entry.ino() });
        after_last = entry.next_entry_cookie();
    }
    Ok(OpResult::Dir(DirPage { entries, next: None }))
}
