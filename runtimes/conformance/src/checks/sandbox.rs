//! The sandbox: default deny, rooted resolution, escapes, read-only, limits.

use std::os::fd::AsRawFd;
use std::os::unix::fs::symlink;
use std::time::Duration;

use ai_os_kernel::sandbox::Policy;
use ai_os_kernel::syscalls::open_flags::*;
use ai_os_kernel::syscalls::{IoUringError, OpResult, SyscallCompletionStatus, SyscallOpType as Op, errno};

use super::{entry, held, manager, rooted};

const V4: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
const V6: std::net::IpAddr = std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST);
use crate::support::{MakeBackend, run_op};

fn denied(done: &ai_os_kernel::syscalls::SyscallCompletionEntry) -> bool {
    done.errno() == Some(errno::EACCES) && matches!(done.status, SyscallCompletionStatus::Error(_))
}

/// Without a policy a process may touch nothing.
pub fn default_policy_denies(make: MakeBackend) {
    let m = manager(make);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    std::fs::write(&path, b"secret").unwrap();
    let done = run_op(&m, 1, Op::open(path.to_str().unwrap(), O_RDONLY));
    assert!(denied(&done), "{:?}", done.status);
    let made = dir.path().join("new");
    assert!(denied(&run_op(&m, 1, Op::open(made.to_str().unwrap(), O_WRONLY | O_CREAT))));
    assert!(!made.exists());
    assert!(denied(&run_op(&m, 1, Op::Socket { domain: libc::AF_INET, ty: libc::SOCK_STREAM, protocol: 0 })));
    assert!(run_op(&m, 1, Op::Nop).status.is_success(), "Nop needs no permission");
}

/// `/x` and `x` both name `root/x`; `..` inside the root is fine.
pub fn rooted_paths_resolve_beneath(make: MakeBackend) {
    let m = manager(make);
    let dir = rooted(&m, 1);
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("a.txt"), b"A").unwrap();
    symlink("a.txt", dir.path().join("link")).unwrap();
    for path in ["/a.txt", "a.txt", "sub/../a.txt", "/sub/../a.txt", "./a.txt", "link", "//a.txt"] {
        let done = run_op(&m, 1, Op::open(path, O_RDONLY));
        let OpResult::Fd(fd) = done.result else { panic!("open {path}: {:?}", done.status) };
        assert_eq!(run_op(&m, 1, Op::Read { fd, size: 8 }).result, OpResult::Bytes(b"A".to_vec()), "{path}");
        run_op(&m, 1, Op::Close { fd });
    }
    // The root itself is a directory: reading it is the kernel's EISDIR.
    let done = run_op(&m, 1, Op::open("/", O_RDONLY | O_DIRECTORY));
    let OpResult::Fd(fd) = done.result else { panic!("open /: {:?}", done.status) };
    assert_eq!(run_op(&m, 1, Op::Read { fd, size: 8 }).errno(), Some(libc::EISDIR));
}

/// `..`, absolute and relative symlinks out of the root, and magic links are refused.
pub fn rooted_escapes_refused(make: MakeBackend) {
    let m = manager(make);
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), b"S").unwrap();
    let dir = rooted(&m, 1);
    let root = dir.path();
    symlink(outside.path().join("secret"), root.join("abs")).unwrap();
    symlink(outside.path(), root.join("absdir")).unwrap();
    let depth = root.components().count();
    let up = "../".repeat(depth);
    let rel_target = format!("{up}{}", outside.path().join("secret").to_str().unwrap().trim_start_matches('/'));
    symlink(&rel_target, root.join("rel")).unwrap();
    for path in [
        "..".to_string(),
        "../secret".into(),
        "/../secret".into(),
        format!("{up}etc/passwd"),
        "abs".into(),
        "absdir/secret".into(),
        "rel".into(),
        "/proc/self/root/etc/passwd".into(),
    ] {
        let done = run_op(&m, 1, Op::open(path.as_str(), O_RDONLY));
        assert!(
            denied(&done) || done.errno() == Some(libc::ENOENT) && path.starts_with("/proc"),
            "open {path:?}: {:?}",
            done.status
        );
    }
    // Writes through an escaping link create nothing outside.
    let done = run_op(&m, 1, Op::open("absdir/created", O_WRONLY | O_CREAT));
    assert!(denied(&done), "{:?}", done.status);
    assert!(!outside.path().join("created").exists());
    // A root containing /proc: magic links are refused even there.
    m.set_policy(2, Policy::rooted("/proc")).unwrap();
    for path in ["self/root/etc/passwd", "self/cwd", "self/exe", "self/fd/0"] {
        let done = run_op(&m, 2, Op::open(path, O_RDONLY));
        assert!(done.status.is_error(), "open /proc/{path} succeeded");
        assert!(
            matches!(done.errno(), Some(e) if e == libc::ELOOP || e == errno::EACCES || e == libc::ENOENT),
            "open /proc/{path}: {:?}",
            done.status
        );
    }
    // NUL bytes and over-long paths are the kernel's errors, not panics.
    assert_eq!(run_op(&m, 1, Op::open("a\0b", O_RDONLY)).errno(), Some(errno::EINVAL));
    let long = "x/".repeat(3000);
    assert_eq!(run_op(&m, 1, Op::open(long.as_str(), O_RDONLY)).errno(), Some(libc::ENAMETOOLONG));
    assert_eq!(run_op(&m, 1, Op::open("", O_RDONLY)).errno(), Some(libc::ENOENT));
}

/// A read-only policy refuses every flag that writes, and nothing changes on disk.
pub fn read_only_refuses_writes(make: MakeBackend) {
    let m = manager(make);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), b"keep").unwrap();
    m.set_policy(1, Policy::rooted(dir.path())).unwrap();
    for flags in
        [O_WRONLY, O_RDWR, O_RDONLY | O_CREAT, O_RDONLY | O_TRUNC, O_RDONLY | O_APPEND, O_WRONLY | O_CREAT | O_TRUNC]
    {
        let done = run_op(&m, 1, Op::open("f", flags));
        assert!(denied(&done), "flags {flags:#x}: {:?}", done.status);
        let done = run_op(&m, 1, Op::open("new", flags));
        assert!(denied(&done), "flags {flags:#x}: {:?}", done.status);
    }
    assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"keep");
    assert!(!dir.path().join("new").exists());
    assert!(run_op(&m, 1, Op::open("f", O_RDONLY)).status.is_success());
    // Flags that are no access mode at all, or unknown bits, are EINVAL.
    assert_eq!(run_op(&m, 1, Op::open("f", 3)).errno(), Some(errno::EINVAL));
    assert_eq!(run_op(&m, 1, Op::open("f", 0x4000_0000)).errno(), Some(errno::EINVAL));
    assert_eq!(run_op(&m, 1, Op::open("f", libc::O_PATH as u32)).errno(), Some(errno::EINVAL));
    // Unknown bits are refused by the policy itself, also where the kernel would ignore them
    // (an unrestricted policy opens with open(2), not openat2).
    m.set_policy(2, Policy::unrestricted()).unwrap();
    let path = dir.path().join("f").display().to_string();
    for flags in [0x4000_0000, 0x0100_0000 | O_RDONLY] {
        assert_eq!(run_op(&m, 2, Op::open(path.clone(), flags)).errno(), Some(errno::EINVAL), "{flags:#x}");
    }
    assert!(run_op(&m, 2, Op::open(path, O_RDONLY)).status.is_success());
}

/// Descriptor, size and outstanding-operation limits.
pub fn policy_limits(make: MakeBackend) {
    let m = manager(make);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), vec![1u8; 64]).unwrap();
    m.set_policy(1, Policy::rooted(dir.path()).max_open_fds(2).max_io_bytes(16)).unwrap();
    let a = run_op(&m, 1, Op::open("f", O_RDONLY));
    let b = run_op(&m, 1, Op::open("f", O_RDONLY));
    let c = run_op(&m, 1, Op::open("f", O_RDONLY));
    assert!(a.status.is_success() && b.status.is_success());
    assert_eq!(c.errno(), Some(errno::EMFILE), "{:?}", c.status);
    assert_eq!(m.processes().get(1).unwrap().open_descriptors(), 2);
    let OpResult::Fd(fd) = a.result else { unreachable!() };
    assert_eq!(run_op(&m, 1, Op::Read { fd, size: 16 }).result, OpResult::Bytes(vec![1; 16]));
    assert!(denied(&run_op(&m, 1, Op::Read { fd, size: 17 })));
    assert!(denied(&run_op(&m, 1, Op::WriteAt { fd, offset: 0, data: vec![0; 17] })));
    // Absurd sizes and offsets are refused before any allocation.
    assert_eq!(run_op(&m, 1, Op::Read { fd, size: usize::MAX }).errno(), Some(errno::EINVAL));
    assert_eq!(run_op(&m, 1, Op::ReadAt { fd, offset: u64::MAX, size: 1 }).errno(), Some(errno::EINVAL));
    assert_eq!(run_op(&m, 1, Op::WriteAt { fd, offset: 1 << 63, data: vec![1] }).errno(), Some(errno::EINVAL));
    let just_too_big = run_op(&m, 1, Op::Read { fd, size: ai_os_kernel::sandbox::MAX_IO_SIZE + 1 });
    assert_eq!(just_too_big.errno(), Some(errno::EINVAL), "{:?}", just_too_big.status);
    let edge = i64::MAX as u64;
    for offset in [edge + 1, u64::MAX] {
        let done = run_op(&m, 1, Op::ReadAt { fd, offset, size: 0 });
        assert_eq!(done.errno(), Some(errno::EINVAL), "pread of nothing at {offset}: {:?}", done.status);
    }

    // Exactly at the limits the operation reaches the kernel, and its answer is the kernel's.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("g"), vec![2u8; 64]).unwrap();
    m.set_policy(2, Policy::rooted(dir.path()).read_write().max_io_bytes(16)).unwrap();
    let OpResult::Fd(fd) = run_op(&m, 2, Op::open("g", O_RDWR)).result else { panic!("open g") };
    assert_eq!(run_op(&m, 2, Op::Write { fd, data: vec![3; 16] }).result, OpResult::Count(16));
    assert_eq!(run_op(&m, 2, Op::WriteAt { fd, offset: 32, data: vec![4; 16] }).result, OpResult::Count(16));
    assert_eq!(
        run_op(&m, 2, Op::ReadAt { fd, offset: 24, size: 16 }).result,
        OpResult::Bytes([[2; 8], [4; 8]].concat())
    );
    let host = std::fs::OpenOptions::new().read(true).write(true).open(dir.path().join("g")).unwrap();
    // What the kernel itself says, asked directly: a count or an errno.
    let answer = |n: isize| if n < 0 { Err(std::io::Error::last_os_error().raw_os_error()) } else { Ok(n as usize) };
    let crate_answer = |done: ai_os_kernel::syscalls::SyscallCompletionEntry| match &done.result {
        _ if done.status.is_error() => Err(done.errno()),
        OpResult::Bytes(b) => Ok(b.len()),
        OpResult::Count(c) => Ok(*c),
        other => panic!("{other:?}"),
    };
    for size in [0usize, 1] {
        let mut buf = [0u8; 1];
        // SAFETY: `buf` holds `size` <= 1 bytes; `host` is open.
        let expect = answer(unsafe { libc::pread(host.as_raw_fd(), buf.as_mut_ptr().cast(), size, i64::MAX) });
        let got = crate_answer(run_op(&m, 2, Op::ReadAt { fd, offset: edge, size }));
        assert_eq!(got, expect, "pread of {size} at i64::MAX");
        // SAFETY: as above, reading `size` bytes of `buf`.
        let expect = answer(unsafe { libc::pwrite(host.as_raw_fd(), buf.as_ptr().cast(), size, i64::MAX) });
        let got = crate_answer(run_op(&m, 2, Op::WriteAt { fd, offset: edge, data: vec![0; size] }));
        assert_eq!(got, expect, "pwrite of {size} at i64::MAX");
    }
    assert_eq!(std::fs::metadata(dir.path().join("g")).unwrap().len(), 64, "nothing written at the edge");

    let (m, gate) = held(make, 1);
    m.set_policy(5, Policy::default().max_outstanding(2)).unwrap();
    m.submit(5, entry(5, Op::Nop, 0)).unwrap();
    m.submit(5, entry(5, Op::Nop, 0)).unwrap();
    assert_eq!(
        m.submit(5, entry(5, Op::Nop, 0)).unwrap_err(),
        IoUringError::CompletionQueueFull { pid: 5, capacity: 2 }
    );
    gate.open();
    let mut n = 0;
    crate::support::eventually(Duration::from_secs(30), "two completions", || {
        n += m.reap_completions(5, None).unwrap().len();
        n == 2
    });
}

/// An unrestricted policy opens any path the host can, and uses the network on both families.
pub fn unrestricted_policy(make: MakeBackend) {
    let m = manager(make);
    m.set_policy(1, Policy::unrestricted()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("host-file");
    let done = run_op(&m, 1, Op::open(path.to_str().unwrap(), O_WRONLY | O_CREAT));
    let OpResult::Fd(fd) = done.result else { panic!("{:?}", done.status) };
    assert_eq!(run_op(&m, 1, Op::Write { fd, data: b"hi".to_vec() }).result, OpResult::Count(2));
    assert_eq!(std::fs::read(&path).unwrap(), b"hi");
    // And it may bind, listen, connect and send datagrams, on IPv4 and IPv6 loopback alike.
    let v6 = std::net::TcpListener::bind("[::1]:0").is_ok();
    if !v6 {
        crate::support::report_skipped("IPv6 part of unrestricted_policy", "no ::1 on this machine");
    }
    let ips: &[std::net::IpAddr] = if v6 { &[V4, V6] } else { &[V4] };
    for &ip in ips {
        let (lfd, addr) = super::net::listener(&m, 1, ip);
        let c = super::net::socket(&m, 1, ip, libc::SOCK_STREAM);
        let connected = run_op(&m, 1, Op::Connect { sockfd: c, addr });
        assert!(connected.status.is_success(), "unrestricted connect to {addr}: {:?}", connected.status);
        let OpResult::Accepted { fd: s, .. } = run_op(&m, 1, Op::Accept { sockfd: lfd }).result else {
            panic!("accept on {addr}")
        };
        assert_eq!(run_op(&m, 1, Op::Send { sockfd: c, data: b"u".to_vec(), flags: 0 }).result, OpResult::Count(1));
        assert_eq!(super::net::recv_exact(&m, 1, s, 1), b"u");
        let (u, _) = super::net::bound(&m, 1, ip, libc::SOCK_DGRAM);
        let (v, v_addr) = super::net::bound(&m, 1, ip, libc::SOCK_DGRAM);
        let sent = run_op(&m, 1, Op::SendTo { sockfd: u, data: vec![7], addr: v_addr, flags: 0 });
        assert_eq!(sent.result, OpResult::Count(1), "unrestricted sendto {v_addr}: {:?}", sent.status);
        let got = run_op(&m, 1, Op::RecvFrom { sockfd: v, size: 8, flags: 0 }).result;
        assert!(matches!(got, OpResult::Datagram { ref data, .. } if data == &[7]), "{got:?}");
    }
    // Policies change for operations submitted afterwards.
    m.set_policy(1, Policy::default()).unwrap();
    assert!(denied(&run_op(&m, 1, Op::open(path.to_str().unwrap(), O_RDONLY))));
    let done = run_op(&m, 1, Op::Socket { domain: libc::AF_INET, ty: libc::SOCK_STREAM, protocol: 0 });
    assert!(denied(&done), "{:?}", done.status);
}

/// A rooted policy whose root cannot be opened is refused with a clear error.
pub fn bad_policy_root_refused(make: MakeBackend) {
    let m = manager(make);
    let err = m.set_policy(1, Policy::rooted("/definitely/not/here")).unwrap_err();
    assert!(matches!(&err, IoUringError::InvalidConfig(msg) if msg.contains("/definitely/not/here")), "{err}");
    let file = tempfile::NamedTempFile::new().unwrap();
    let err = m.set_policy(1, Policy::rooted(file.path())).unwrap_err();
    let name = file.path().to_str().unwrap();
    assert!(matches!(&err, IoUringError::InvalidConfig(msg) if msg.contains(name)), "a file is no root: {err}");
}

/// A rooted process's world of hostile links, shared by the hostile tables: a directory
/// outside (`secret`, an empty `sub`) and, in the root, a file `f`, a read-only test file `ro`,
/// `d/e`, and links out of it by every route (absolute, relative, through `/`, `/proc`, `..`),
/// loops and chains.
pub(super) struct HostileWorld {
    pub(super) outside: tempfile::TempDir,
    pub(super) secret: std::path::PathBuf,
    pub(super) dir: tempfile::TempDir,
    /// Enough `../` to climb from the root to `/`.
    pub(super) up: String,
}

impl HostileWorld {
    pub(super) fn new(m: &ai_os_kernel::syscalls::IoUringManager, pid: u32) -> Self {
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("secret");
        std::fs::write(&secret, b"S").unwrap();
        std::fs::create_dir(outside.path().join("sub")).unwrap();
        let dir = rooted(m, pid);
        let root = dir.path();
        std::fs::create_dir_all(root.join("d/e")).unwrap();
        std::fs::write(root.join("f"), b"F").unwrap();
        std::fs::write(root.join("ro"), b"R").unwrap();
        let up = "../".repeat(root.components().count() + 2);
        let outside_rel = outside.path().to_str().unwrap().trim_start_matches('/');
        let links: [(String, &str); 14] = [
            (secret.to_str().unwrap().into(), "abs"),
            (outside.path().to_str().unwrap().into(), "absdir"),
            ("/".into(), "slash"),
            ("/proc/self/root".into(), "procroot"),
            ("/proc/self/cwd".into(), "proccwd"),
            (format!("{up}{outside_rel}/secret"), "rel"),
            (format!("{up}{outside_rel}"), "reldir"),
            ("../..".into(), "d/up2"),
            ("loop2".into(), "loop1"),
            ("loop1".into(), "loop2"),
            ("self".into(), "self"),
            ("abs".into(), "chain"),
            ("d/e/../../abs".into(), "chain2"),
            ("nowhere".into(), "dangling"),
        ];
        for (target, name) in links {
            symlink(target, root.join(name)).unwrap();
        }
        HostileWorld { outside, secret, dir, up }
    }

    /// Asserts that nothing outside changed: `secret` as it was, `sub` empty, nothing else.
    pub(super) fn outside_unchanged(outside: &std::path::Path) {
        assert_eq!(std::fs::read(outside.join("secret")).unwrap(), b"S");
        let mut now: Vec<_> = std::fs::read_dir(outside).unwrap().map(|e| e.unwrap().file_name()).collect();
        now.sort();
        assert_eq!(now, ["secret", "sub"]);
        assert!(std::fs::read_dir(outside.join("sub")).unwrap().next().is_none());
    }
}

/// At least 50 hostile paths and tricks against a rooted policy, each ending in a clear errno,
/// with nothing outside the root read, created or changed (checked on disk).
pub fn hostile_paths_table(make: MakeBackend) {
    let m = manager(make);
    let HostileWorld { outside, secret, dir, up } = HostileWorld::new(&m, 1);
    let root = dir.path();

    const A: i32 = errno::EACCES;
    const L: i32 = libc::ELOOP;
    const I: i32 = errno::EINVAL;
    const N: i32 = libc::ENOENT;
    const E: i32 = libc::EISDIR;
    let long_name = "n".repeat(300);
    let long_path = "a/".repeat(2100);
    let mut cases: Vec<(String, u32, &[i32])> = vec![
        ("..".into(), O_RDONLY, &[A]),
        ("../".into(), O_RDONLY, &[A]),
        ("/..".into(), O_RDONLY, &[A]),
        ("./..".into(), O_RDONLY, &[A]),
        ("d/../..".into(), O_RDONLY, &[A]),
        ("d/e/../../..".into(), O_RDONLY, &[A]),
        ("d/./e/./../../../f".into(), O_RDONLY, &[A]),
        (format!("{up}etc/passwd"), O_RDONLY, &[A]),
        (format!("/{up}etc/shadow"), O_RDONLY, &[A]),
        (format!("d/{up}tmp"), O_RDONLY | O_DIRECTORY, &[A]),
        ("abs".into(), O_RDONLY, &[A]),
        ("/abs".into(), O_RDONLY, &[A]),
        ("absdir/secret".into(), O_RDONLY, &[A]),
        ("absdir/new".into(), O_WRONLY | O_CREAT, &[A]),
        ("absdir".into(), O_RDONLY | O_DIRECTORY, &[A]),
        ("slash/etc/passwd".into(), O_RDONLY, &[A]),
        ("slash".into(), O_RDONLY | O_DIRECTORY, &[A]),
        ("rel".into(), O_RDONLY, &[A]),
        ("rel".into(), O_WRONLY | O_TRUNC, &[A]),
        ("d/up2/secret".into(), O_RDONLY, &[A]),
        ("d/up2".into(), O_RDONLY | O_DIRECTORY, &[A]),
        ("chain".into(), O_RDONLY, &[A]),
        ("chain2".into(), O_RDONLY, &[A]),
        ("procroot/etc/passwd".into(), O_RDONLY, &[A, L]),
        ("proccwd".into(), O_RDONLY | O_DIRECTORY, &[A, L]),
        ("/proc/self/root/etc/passwd".into(), O_RDONLY, &[N]),
        ("/proc/self/fd/0".into(), O_RDONLY, &[N]),
        ("loop1".into(), O_RDONLY, &[L]),
        ("loop2/x".into(), O_RDONLY, &[L]),
        ("self".into(), O_RDONLY, &[L]),
        ("abs".into(), O_RDONLY | O_NOFOLLOW, &[L, A]),
        ("f\0../../etc/passwd".into(), O_RDONLY, &[I]),
        ("\0".into(), O_RDONLY, &[I]),
        (long_name.clone(), O_RDONLY, &[libc::ENAMETOOLONG]),
        (format!("d/{long_name}"), O_WRONLY | O_CREAT, &[libc::ENAMETOOLONG]),
        (long_path, O_RDONLY, &[libc::ENAMETOOLONG]),
        ("d".into(), O_WRONLY, &[E]),
        ("d".into(), O_RDWR, &[E]),
        ("/".into(), O_WRONLY, &[E]),
        ("d/e".into(), O_RDWR | O_TRUNC, &[E]),
        ("f".into(), O_RDONLY | O_DIRECTORY, &[libc::ENOTDIR]),
        ("f/x".into(), O_RDONLY, &[libc::ENOTDIR]),
        ("f".into(), libc::O_PATH as u32, &[I]),
        ("f".into(), O_RDONLY | libc::O_PATH as u32, &[I]),
        ("f".into(), 3, &[I]),
        ("f".into(), 0x8000_0000, &[I]),
        ("missing".into(), O_RDONLY, &[N]),
        ("".into(), O_RDONLY, &[N]),
        ("d/e/missing/deeper".into(), O_RDONLY, &[N]),
        ("f".into(), O_WRONLY | O_CREAT | O_EXCL, &[libc::EEXIST]),
    ];
    // Read-only pid 2 on the same root: every writing flag is refused, even on harmless paths.
    m.set_policy(2, Policy::rooted(root)).unwrap();
    let ro: Vec<(String, u32)> = vec![
        ("ro".into(), O_WRONLY),
        ("ro".into(), O_RDWR),
        ("ro".into(), O_RDONLY | O_TRUNC),
        ("ro".into(), O_WRONLY | O_CREAT | O_TRUNC),
        ("ro".into(), O_RDONLY | O_APPEND),
        ("ro-new".into(), O_RDONLY | O_CREAT),
        ("d/ro-new".into(), O_WRONLY | O_CREAT | O_EXCL),
        ("/".into(), O_RDONLY | libc::O_TMPFILE as u32),
    ];
    let mut tried = 0;
    for (path, flags, expect) in cases.drain(..) {
        let done = run_op(&m, 1, Op::open(path.as_str(), flags));
        let got = done.errno();
        assert!(
            got.is_some_and(|g| expect.contains(&g)),
            "open {path:?} flags {flags:#x}: expected one of {expect:?}, got {:?}",
            done.status
        );
        tried += 1;
    }
    for (path, flags) in ro {
        let done = run_op(&m, 2, Op::open(path.as_str(), flags));
        assert!(denied(&done), "read-only open {path:?} flags {flags:#x}: {:?}", done.status);
        tried += 1;
    }
    // A symlink swapped between two opens: the second open sees the new target and refuses.
    symlink("f", root.join("swap")).unwrap();
    assert!(run_op(&m, 1, Op::open("swap", O_RDONLY)).status.is_success());
    std::fs::remove_file(root.join("swap")).unwrap();
    symlink(&secret, root.join("swap")).unwrap();
    assert!(denied(&run_op(&m, 1, Op::open("swap", O_RDONLY))));
    tried += 2;
    assert!(tried >= 50, "{tried} hostile paths");
    // Nothing outside changed; nothing was made where it should not be.
    assert_eq!(std::fs::read(&secret).unwrap(), b"S");
    HostileWorld::outside_unchanged(outside.path());
    assert_eq!(std::fs::read(root.join("ro")).unwrap(), b"R");
    assert!(!root.join("ro-new").exists() && !root.join("d/ro-new").exists());
}
