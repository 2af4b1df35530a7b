//! Path operations (`Stat`, `Mkdir`, `Rmdir`, `Unlink`, `Rename`, `Symlink`, `Link`,
//! `ReadLink`, `ReadDir`), checked against the disk, with their errors and the sandbox's rules.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use ai_os_kernel::sandbox::Policy;
use ai_os_kernel::syscalls::open_flags::*;
use ai_os_kernel::syscalls::{
    EntryKind, FileStat, IoUringManager, MAX_DIR_PAGE, OpResult, SyscallCompletionEntry, SyscallOpType as Op, errno,
};

use super::sandbox::HostileWorld;
use super::{manager, rooted};
use crate::support::{MakeBackend, run_op};

fn ok(done: SyscallCompletionEntry, what: &str) -> OpResult {
    assert!(done.status.is_success(), "{what}: {:?}", done.status);
    done.result
}

fn stat(m: &IoUringManager, pid: u32, path: &str, follow: bool) -> FileStat {
    match ok(run_op(m, pid, Op::Stat { path: path.into(), follow }), path) {
        OpResult::Stat(st) => st,
        other => panic!("stat {path}: {other:?}"),
    }
}

fn errno_of(m: &IoUringManager, pid: u32, op: Op) -> Option<i32> {
    run_op(m, pid, op).errno()
}

fn mkdir(path: &str) -> Op {
    Op::Mkdir { path: path.into(), mode: 0o755 }
}

fn rename(from: &str, to: &str, flags: u32) -> Op {
    Op::Rename { from: from.into(), to: to.into(), flags }
}

/// Every page of the directory at `path`, `max` entries at a time: names to kinds.
fn list(m: &IoUringManager, pid: u32, path: &str, max: u32) -> BTreeMap<OsString, EntryKind> {
    let mut all = BTreeMap::new();
    let mut cursor = 0;
    for _ in 0..100_000 {
        let OpResult::Dir(page) = ok(run_op(m, pid, Op::ReadDir { path: path.into(), cursor, max }), path) else {
            panic!("readdir {path}: not a page")
        };
        assert!(page.entries.len() <= max as usize, "a page of {} for max {max}", page.entries.len());
        for e in page.entries {
            assert!(all.insert(e.name.clone(), e.kind).is_none(), "{:?} listed twice", e.name);
        }
        match page.next {
            Some(next) => cursor = next,
            None => return all,
        }
    }
    panic!("readdir {path}: no end")
}

/// Make, stat, link, rename and remove, on disk, with the kernel's errors.
pub fn path_ops_roundtrip(make: MakeBackend) {
    let m = manager(make);
    let dir = rooted(&m, 1);
    let root = dir.path();
    assert!(ok(run_op(&m, 1, mkdir("/d")), "mkdir") == OpResult::None);
    let meta = std::fs::metadata(root.join("d")).unwrap();
    assert!(meta.is_dir());
    assert_eq!(meta.permissions().mode() & 0o022, 0, "the policy's umask applies");
    assert_eq!(errno_of(&m, 1, mkdir("d")), Some(libc::EEXIST));
    assert_eq!(errno_of(&m, 1, mkdir("missing/d")), Some(libc::ENOENT));
    std::fs::write(root.join("d/f"), b"hello").unwrap();
    assert_eq!(errno_of(&m, 1, mkdir("d/f/x")), Some(libc::ENOTDIR));
    // Stat, of the file and of the directory, as std sees them.
    let st = stat(&m, 1, "d/f", true);
    let std_meta = std::fs::metadata(root.join("d/f")).unwrap();
    assert_eq!((st.size, st.kind, st.links), (5, EntryKind::File, 1));
    assert_eq!(st.mode, std_meta.mode() & 0o7777);
    assert_eq!(st.modified, std_meta.modified().unwrap());
    assert_eq!(stat(&m, 1, "/d/", true).kind, EntryKind::Dir);
    assert_eq!(stat(&m, 1, "/", true).kind, EntryKind::Dir);
    assert_eq!(errno_of(&m, 1, Op::Stat { path: "d/nothing".into(), follow: true }), Some(libc::ENOENT));
    assert_eq!(errno_of(&m, 1, Op::Stat { path: "d/f/x".into(), follow: false }), Some(libc::ENOTDIR));
    // A symbolic link: stored as given, followed or not.
    assert_eq!(ok(run_op(&m, 1, Op::Symlink { target: "d/f".into(), link: "lnk".into() }), "symlink"), OpResult::None);
    assert_eq!(std::fs::read_link(root.join("lnk")).unwrap(), PathBuf::from("d/f"));
    assert_eq!(stat(&m, 1, "lnk", false).kind, EntryKind::Symlink);
    assert_eq!(stat(&m, 1, "lnk", true).size, 5);
    assert_eq!(ok(run_op(&m, 1, Op::ReadLink { path: "lnk".into() }), "readlink"), OpResult::Path("d/f".into()));
    assert_eq!(errno_of(&m, 1, Op::ReadLink { path: "d/f".into() }), Some(libc::EINVAL));
    assert_eq!(errno_of(&m, 1, Op::ReadLink { path: "gone".into() }), Some(libc::ENOENT));
    assert_eq!(errno_of(&m, 1, Op::Symlink { target: "x".into(), link: "lnk".into() }), Some(libc::EEXIST));
    // A dangling link is made, and is ENOENT when followed.
    ok(run_op(&m, 1, Op::Symlink { target: "nowhere".into(), link: "dangling".into() }), "symlink");
    assert_eq!(errno_of(&m, 1, Op::Stat { path: "dangling".into(), follow: true }), Some(libc::ENOENT));
    // A hard link: one file, two names.
    ok(run_op(&m, 1, Op::Link { from: "d/f".into(), to: "hard".into() }), "link");
    assert_eq!(stat(&m, 1, "hard", true).links, 2);
    assert_eq!(std::fs::read(root.join("hard")).unwrap(), b"hello");
    assert_eq!(errno_of(&m, 1, Op::Link { from: "d/f".into(), to: "hard".into() }), Some(libc::EEXIST));
    assert_eq!(errno_of(&m, 1, Op::Link { from: "d".into(), to: "dirlink".into() }), Some(libc::EPERM));
    assert_eq!(errno_of(&m, 1, Op::Link { from: "gone".into(), to: "x".into() }), Some(libc::ENOENT));
    // Rename: over a target, not over one (NOREPLACE), and swapped (EXCHANGE).
    std::fs::write(root.join("d/g"), b"G").unwrap();
    ok(run_op(&m, 1, rename("hard", "d/h", 0)), "rename");
    assert!(!root.join("hard").exists() && root.join("d/h").exists());
    assert_eq!(errno_of(&m, 1, rename("d/h", "d/g", RENAME_NOREPLACE)), Some(libc::EEXIST));
    assert_eq!(std::fs::read(root.join("d/g")).unwrap(), b"G", "NOREPLACE left the target");
    ok(run_op(&m, 1, rename("d/g", "d/f", RENAME_EXCHANGE)), "exchange");
    assert_eq!(std::fs::read(root.join("d/f")).unwrap(), b"G");
    assert_eq!(std::fs::read(root.join("d/g")).unwrap(), b"hello");
    assert_eq!(errno_of(&m, 1, rename("d/g", "d/none", RENAME_EXCHANGE)), Some(libc::ENOENT));
    assert_eq!(errno_of(&m, 1, rename("d/g", "d/x", RENAME_EXCHANGE | RENAME_NOREPLACE)), Some(errno::EINVAL));
    assert_eq!(errno_of(&m, 1, rename("d/g", "d/x", 4)), Some(errno::EINVAL), "WHITEOUT is refused");
    assert_eq!(errno_of(&m, 1, rename("gone", "x", 0)), Some(libc::ENOENT));
    ok(run_op(&m, 1, rename("d/f", "d/g", 0)), "rename over");
    assert_eq!(std::fs::read(root.join("d/g")).unwrap(), b"G");
    std::fs::create_dir(root.join("full")).unwrap();
    std::fs::write(root.join("full/x"), b"").unwrap();
    assert_eq!(errno_of(&m, 1, rename("d/g", "full", 0)), Some(libc::EISDIR));
    // Removal: a directory is not unlinked, nor a file rmdir'd, nor a full directory removed.
    assert_eq!(errno_of(&m, 1, Op::Unlink { path: "d".into() }), Some(libc::EISDIR));
    assert_eq!(errno_of(&m, 1, Op::Rmdir { path: "d/g".into() }), Some(libc::ENOTDIR));
    assert_eq!(errno_of(&m, 1, Op::Rmdir { path: "d".into() }), Some(libc::ENOTEMPTY));
    assert_eq!(errno_of(&m, 1, Op::Unlink { path: "d/none".into() }), Some(libc::ENOENT));
    ok(run_op(&m, 1, Op::Unlink { path: "lnk".into() }), "unlink a link");
    assert!(root.join("d/g").exists(), "unlinking a link leaves its target");
    for path in ["d/g", "d/h"] {
        ok(run_op(&m, 1, Op::Unlink { path: path.into() }), path);
    }
    // A trailing slash asks for a directory, as the kernel's own paths do.
    assert_eq!(errno_of(&m, 1, Op::Unlink { path: "full/x/".into() }), Some(libc::ENOTDIR));
    assert_eq!(errno_of(&m, 1, rename("full/x/", "y", 0)), Some(libc::ENOTDIR));
    assert!(root.join("full/x").exists());
    ok(run_op(&m, 1, mkdir("made/")), "mkdir with a trailing slash");
    ok(run_op(&m, 1, Op::Rmdir { path: "made//".into() }), "rmdir with trailing slashes");
    ok(run_op(&m, 1, Op::Rmdir { path: "d/".into() }), "rmdir");
    assert!(!root.join("d").exists());
    // What a link's target or a directory's page holds is no transfer: a small byte limit
    // leaves both alone.
    m.set_policy(1, Policy::rooted(root).read_write().max_io_bytes(16)).unwrap();
    ok(run_op(&m, 1, Op::Symlink { target: "a-target-longer-than-16".into(), link: "long".into() }), "symlink");
    let target = ok(run_op(&m, 1, Op::ReadLink { path: "long".into() }), "readlink");
    assert_eq!(target, OpResult::Path("a-target-longer-than-16".into()));
    assert!(list(&m, 1, "/", MAX_DIR_PAGE).len() >= 2);
    // Empty paths are ENOENT before the kernel; a NUL byte is EINVAL.
    assert_eq!(errno_of(&m, 1, mkdir("")), Some(libc::ENOENT));
    assert_eq!(errno_of(&m, 1, rename("full", "", 0)), Some(libc::ENOENT));
    assert_eq!(errno_of(&m, 1, mkdir("a\0b")), Some(errno::EINVAL));
    assert!(!root.join("a").exists());
}

/// `ReadDir` lists a large directory in bounded pages, every entry once, with its kind.
pub fn read_dir_pages(make: MakeBackend) {
    let m = manager(make);
    let dir = rooted(&m, 1);
    let root = dir.path();
    std::fs::create_dir(root.join("big")).unwrap();
    let mut expect = BTreeMap::new();
    for i in 0..700 {
        let name = format!("file-{i:04}-{}", "x".repeat(i % 200));
        std::fs::write(root.join("big").join(&name), b"").unwrap();
        expect.insert(OsString::from(name), EntryKind::File);
    }
    std::fs::create_dir(root.join("big/sub")).unwrap();
    expect.insert("sub".into(), EntryKind::Dir);
    symlink("sub", root.join("big/link")).unwrap();
    expect.insert("link".into(), EntryKind::Symlink);
    for max in [1, 7, 64, MAX_DIR_PAGE] {
        let listed = list(&m, 1, "big", max);
        // Some file systems do not record kinds: a listed kind is the right one or Unknown.
        assert_eq!(listed.len(), expect.len(), "max {max}");
        for (name, kind) in &listed {
            assert!(*kind == expect[name] || *kind == EntryKind::Unknown, "{name:?}: {kind:?}");
        }
    }
    assert!(list(&m, 1, "big/sub", 10).is_empty(), "an empty directory: one empty page");
    let root_listing = list(&m, 1, "/", 16);
    assert_eq!(root_listing.keys().collect::<Vec<_>>(), vec![&OsString::from("big")]);
    // The entry's inode is the file's.
    let OpResult::Dir(page) = ok(run_op(&m, 1, Op::ReadDir { path: "big/..".into(), cursor: 0, max: 1 }), "readdir")
    else {
        panic!("not a page")
    };
    assert_eq!(page.entries[0].ino, std::fs::metadata(root.join("big")).unwrap().ino());
    assert_eq!(page.next, None);
    let err = |path: &str, max| errno_of(&m, 1, Op::ReadDir { path: path.into(), cursor: 0, max });
    assert_eq!(err("big", 0), Some(errno::EINVAL));
    assert_eq!(err("big", MAX_DIR_PAGE + 1), Some(errno::EINVAL));
    assert_eq!(err("big/file-0000-", 4), Some(libc::ENOTDIR));
    assert_eq!(err("none", 4), Some(libc::ENOENT));
}

/// A rename across file systems is `EXDEV` (an unrestricted policy, between the temp dir and
/// `/dev/shm` when they are two file systems).
pub fn rename_across_file_systems(make: MakeBackend) {
    let shm = Path::new("/dev/shm");
    let Ok(other) = tempfile::tempdir_in(shm) else { return };
    let here = tempfile::tempdir().unwrap();
    if std::fs::metadata(here.path()).unwrap().dev() == std::fs::metadata(other.path()).unwrap().dev() {
        return;
    }
    let m = manager(make);
    m.set_policy(1, Policy::unrestricted()).unwrap();
    let from = here.path().join("f");
    std::fs::write(&from, b"F").unwrap();
    let to = other.path().join("f");
    let (from, to) = (from.to_str().unwrap(), to.to_str().unwrap());
    assert_eq!(errno_of(&m, 1, rename(from, to, 0)), Some(libc::EXDEV));
    assert_eq!(errno_of(&m, 1, Op::Link { from: from.into(), to: to.into() }), Some(libc::EXDEV));
    // The unrestricted policy resolves absolute paths as they are.
    assert_eq!(stat(&m, 1, from, true).size, 1);
}

/// Under a read-only policy every operation that changes a name is refused (`EACCES`) and
/// changes nothing, while stat, readlink and readdir work; a policy without files refuses all.
pub fn read_only_refuses_path_changes(make: MakeBackend) {
    let m = manager(make);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir(root.join("d")).unwrap();
    std::fs::write(root.join("f"), b"F").unwrap();
    symlink("f", root.join("lnk")).unwrap();
    m.set_policy(1, Policy::rooted(root)).unwrap();
    let changes = [
        mkdir("new"),
        Op::Rmdir { path: "d".into() },
        Op::Unlink { path: "f".into() },
        rename("f", "g", 0),
        rename("f", "d", RENAME_EXCHANGE),
        Op::Symlink { target: "f".into(), link: "l2".into() },
        Op::Link { from: "f".into(), to: "h".into() },
    ];
    for op in changes {
        assert_eq!(errno_of(&m, 1, op.clone()), Some(errno::EACCES), "{op:?}");
        assert_eq!(errno_of(&m, 2, op.clone()), Some(errno::EACCES), "no policy: {op:?}");
    }
    let mut now: Vec<_> = std::fs::read_dir(root).unwrap().map(|e| e.unwrap().file_name()).collect();
    now.sort();
    assert_eq!(now, ["d", "f", "lnk"]);
    assert_eq!(stat(&m, 1, "lnk", true).size, 1);
    assert_eq!(ok(run_op(&m, 1, Op::ReadLink { path: "lnk".into() }), "readlink"), OpResult::Path("f".into()));
    assert_eq!(list(&m, 1, "/", 2).len(), 3);
    for op in [
        Op::Stat { path: "f".into(), follow: true },
        Op::ReadLink { path: "lnk".into() },
        Op::ReadDir { path: "/".into(), cursor: 0, max: 4 },
    ] {
        assert_eq!(errno_of(&m, 2, op.clone()), Some(errno::EACCES), "no policy: {op:?}");
    }
}

/// The hostile-path table for path operations: no path leaves the root, by `..`, absolute or
/// relative symbolic links, or magic links, at either end of a rename or a link; a symbolic
/// link a tenant makes to anywhere is stored but never followed out; nothing outside changes.
pub fn hostile_path_ops_table(make: MakeBackend) {
    let m = manager(make);
    let HostileWorld { outside, secret, dir, up } = HostileWorld::new(&m, 1);
    let root = dir.path();
    let outside_rel = outside.path().to_str().unwrap().trim_start_matches('/');

    const A: i32 = errno::EACCES;
    const L: i32 = libc::ELOOP;
    // Paths that lead outside: as a whole (a lookup) and as the directory of a last component.
    let escaping_dirs =
        ["..", "/..", "d/../..", "d/up2", "absdir", "slash/tmp", "reldir", "procroot/tmp", "absdir/sub"];
    let escaping_files = ["abs", "absdir/secret", "reldir/secret", "d/up2/secret", "../secret"];
    let mut tried = 0;
    let mut refused = |op: Op, also: &[i32]| {
        let what = format!("{op:?}");
        let done = run_op(&m, 1, op);
        let got = done.errno();
        assert!(got == Some(A) || got.is_some_and(|g| also.contains(&g)), "{what}: {:?}", done.status);
        tried += 1;
    };
    for d in escaping_dirs {
        let child = format!("{d}/x");
        refused(mkdir(&child), &[L]);
        refused(Op::Symlink { target: "/etc/passwd".into(), link: child.clone() }, &[L]);
        refused(Op::Link { from: "f".into(), to: child.clone() }, &[L]);
        refused(rename("f", &child, 0), &[L]);
        refused(Op::Stat { path: child.clone(), follow: false }, &[L]);
        refused(Op::ReadDir { path: d.into(), cursor: 0, max: 8 }, &[L]);
        refused(Op::Stat { path: d.into(), follow: true }, &[L]);
        let secret_there = format!("{d}/secret");
        refused(Op::Unlink { path: secret_there.clone() }, &[L]);
        refused(Op::Rmdir { path: format!("{d}/sub") }, &[L]);
        refused(rename(&secret_there, "stolen", 0), &[L]);
        refused(rename("f", &secret_there, RENAME_EXCHANGE), &[L]);
        refused(Op::Link { from: secret_there.clone(), to: "stolen".into() }, &[L]);
        refused(Op::ReadLink { path: format!("{d}/lnk") }, &[L]);
    }
    for f in escaping_files {
        refused(Op::Stat { path: f.into(), follow: true }, &[L]);
    }
    // Removing or renaming `..` itself: the kernel refuses a last component of `.` or `..`
    // before it looks it up.
    for path in ["..", "/..", "d/e/../..", "."] {
        for op in [Op::Rmdir { path: path.into() }, Op::Unlink { path: path.into() }, rename(path, "moved", 0)] {
            refused(op, &[libc::ENOTEMPTY, libc::EBUSY, libc::EINVAL, libc::EISDIR]);
        }
        refused(mkdir(path), &[libc::EEXIST]);
        refused(Op::Link { from: path.into(), to: "dotlink".into() }, &[libc::EPERM]);
    }
    refused(Op::Stat { path: "loop1".into(), follow: true }, &[L]);
    // A link the tenant makes to anywhere: stored as given, never followed out.
    for (target, link) in [
        (secret.to_str().unwrap().to_string(), "mine"),
        (format!("{up}{outside_rel}/secret"), "mine2"),
        ("/proc/self/root/etc/passwd".into(), "mine3"),
    ] {
        assert!(run_op(&m, 1, Op::Symlink { target: target.clone(), link: link.into() }).status.is_success());
        assert_eq!(ok(run_op(&m, 1, Op::ReadLink { path: link.into() }), link), OpResult::Path(PathBuf::from(&target)));
        assert_eq!(stat(&m, 1, link, false).kind, EntryKind::Symlink, "the link itself is the tenant's");
        refused(Op::Stat { path: link.into(), follow: true }, &[L, libc::ENOENT]);
        refused(Op::open(link, O_RDONLY), &[L, libc::ENOENT]);
        refused(Op::ReadDir { path: format!("{link}/.."), cursor: 0, max: 8 }, &[L, libc::ENOTDIR, libc::ENOENT]);
        // A hard link of the symbolic link is one more name of the link, not of its target.
        let hard = format!("{link}-hard");
        assert!(run_op(&m, 1, Op::Link { from: link.into(), to: hard.clone() }).status.is_success());
        refused(Op::Stat { path: hard, follow: true }, &[L, libc::ENOENT]);
    }
    // A directory swapped for an escaping link between two operations: the second refuses.
    std::fs::create_dir(root.join("swap")).unwrap();
    assert!(run_op(&m, 1, mkdir("swap/a")).status.is_success());
    std::fs::remove_dir_all(root.join("swap")).unwrap();
    symlink(outside.path(), root.join("swap")).unwrap();
    refused(mkdir("swap/a"), &[]);
    refused(Op::Unlink { path: "swap/secret".into() }, &[]);
    assert!(tried >= 150, "{tried} hostile path operations");
    // A root holding a procfs: its magic links name the host's files, and are never read.
    m.set_policy(3, Policy::rooted("/proc")).unwrap();
    for path in ["self/fd/0", "self/cwd", "self/exe", "self/root", "self"] {
        let done = run_op(&m, 3, Op::ReadLink { path: path.into() });
        assert_eq!(done.errno(), Some(A), "readlink /proc/{path}: {:?}", done.status);
    }
    // Nothing outside changed.
    HostileWorld::outside_unchanged(outside.path());
    assert!(!root.join("stolen").exists() && !root.join("dotlink").exists() && !root.join("moved").exists());
    assert_eq!(std::fs::read(root.join("f")).unwrap(), b"F");
}
