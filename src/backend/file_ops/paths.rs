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
            // procfs' magic links (`/proc/self/fd/*`, `cwd`, `exe`) name the host's files: a
            // rooted process whose root holds a procfs never reads them.
            if rights.policy().root().is_some() && on_procfs(&at) {
                return Err(OpError::new(errno::EACCES, format!("readlink {path:?}: a procfs link")));
            }
            let target = call(name, path, || rustix::fs::readlinkat(at.dir(), at.name(), Vec::new()))?;
            Ok(OpResult::Path(OsString::from_vec(target.into_bytes()).into()))
        }
        SyscallOpType::ReadDir { path, cursor, max } => read_dir(rights, path, *cursor, *max),
        other => Err(OpError::new(errno::EINVAL, format!("{} is not a path operation", other.name()))),
    }
}

/// Whether what `at` names is on a procfs (`PROC_SUPER_MAGIC`). One `fstatfs` of its directory.
// `f_type`'s width differs between architectures.
#[allow(clippy::unnecessary_cast)]
fn on_procfs(at: &At) -> bool {
    const PROC_SUPER_MAGIC: i64 = 0x9fa0;
    rustix::fs::fstatfs(at.dir()).is_ok_and(|st| st.f_type as i64 == PROC_SUPER_MAGIC)
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

/// A `Stat` answered on the calling thread where nothing can make it wait, as io_uring tries
/// an open inside its enter: a rooted process's path whose every component is in the kernel's
/// lookup cache, on the root's own mount, a local file system whose `statx` reads what it holds
/// in memory ([`Sandbox::lookup_cached`]). Nothing here asks the file system anything. `None`
/// when it must run on a pool thread. Its cost on this thread (which may be another tenant's)
/// is three system calls: `openat2`, `statx`, `close`.
#[cfg(target_os = "linux")]
pub(crate) fn stat_now(op: &SyscallOpType, rights: &Sandbox) -> Option<OpOutcome> {
    let SyscallOpType::Stat { path, follow } = op else { return None };
    let file = match rights.lookup_cached("stat", path, *follow)? {
        Ok(file) => file,
        // Refused or not there, as the cache says: the answer a pool thread would give.
        Err(e) => return Some(Err(e)),
    };
    let st = call("stat", path, || rustix::fs::statx(&file, c"", AtFlags::EMPTY_PATH, STATX_MASK));
    Some(st.map(|st| OpResult::Stat(file_stat(&st))))
}

/// Elsewhere every `Stat` runs on a pool thread.
#[cfg(not(target_os = "linux"))]
pub(crate) fn stat_now(_op: &SyscallOpType, _rights: &Sandbox) -> Option<OpOutcome> {
    None
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
    // Exactly what the page may hold (and reserved against the buffer budget), never more.
    let mut entries = Vec::new();
    entries.try_reserve_exact(max).map_err(|_| failed(Errno::NOMEM))?;
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
        entries.push(DirEntry { name: OsString::from_vec(name.to_vec()), kind, ino: entry.ino() });
        after_last = entry.next_entry_cookie();
    }
    entries.shrink_to_fit();
    Ok(OpResult::Dir(DirPage { entries, next: None }))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use crate::sandbox::Policy;

    fn rights_local(rights: &Sandbox) -> bool {
        rights.lookup_cached("stat", "/", true).is_some()
    }

    fn stat_op(path: &str) -> SyscallOpType {
        SyscallOpType::Stat { path: path.into(), follow: true }
    }

    /// A `Stat` whose path the kernel has cached, on a local file system, is answered in place,
    /// refusals included; one beyond the cache is left to the pool or answered as the cache
    /// says; one on a file system outside the list (procfs) is left to the pool.
    #[test]
    fn a_cached_stat_is_answered_in_place() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/f"), b"12345").unwrap();
        let rights = Sandbox::new(Policy::rooted(dir.path())).unwrap();
        if !crate::sandbox::is_local(rustix::fs::open(dir.path(), OFlags::RDONLY, Mode::empty()).unwrap()) {
            eprintln!("the temp dir is not on a listed local file system: nothing to check");
            return;
        }
        std::fs::metadata(dir.path().join("d/f")).unwrap();
        match stat_now(&stat_op("d/f"), &rights) {
            Some(Ok(OpResult::Stat(st))) => assert_eq!(st.size, 5),
            other => panic!("a cached stat: {other:?}"),
        }
        // An escape is refused here, or left to the pool (which refuses it).
        for escape in ["d/../..", "/../x"] {
            if let Some(refused) = stat_now(&stat_op(escape), &rights) {
                assert_eq!(refused.unwrap_err().errno(), errno::EACCES, "{escape}");
            }
        }
        let _ = std::fs::metadata(dir.path().join("d/missing"));
        match stat_now(&stat_op("d/missing"), &rights) {
            None => {}
            Some(Err(e)) => assert_eq!(e.errno(), libc::ENOENT),
            Some(Ok(st)) => panic!("a missing file: {st:?}"),
        }
        assert!(stat_now(&SyscallOpType::Nop, &rights).is_none());
        let proc_rights = Sandbox::new(Policy::rooted("/proc")).unwrap();
        assert!(stat_now(&stat_op("self"), &proc_rights).is_none(), "procfs: the pool's");
        let anywhere = Sandbox::new(Policy::unrestricted()).unwrap();
        let whole = dir.path().join("d/f");
        assert!(stat_now(&stat_op(whole.to_str().unwrap()), &anywhere).is_none(), "unrestricted: the pool's");
        // Another mount beneath the root: the pool's.
        let root_rights = Sandbox::new(Policy::rooted("/")).unwrap();
        if rights_local(&root_rights) {
            assert!(stat_now(&stat_op("proc/self"), &root_rights).is_none(), "procfs beneath /: the pool's");
        }
    }
}
