//! The boundaries of [`Policy::check`]: sizes, offsets and `lseek`'s `whence`, each exactly at
//! its limit and one past it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{DEFAULT_MAX_IO_BYTES, MAX_IO_SIZE, Policy};
use crate::op::SyscallOpType as Op;
use crate::op::errno;

/// The errno `check` refused `op` with, `None` if it passed.
fn refused(p: &Policy, op: &Op) -> Option<i32> {
    p.check(op).err().map(|e| e.errno())
}

/// Every op that moves bytes, moving `n` of them. The writes carry real buffers, so `n` stays
/// small enough to allocate.
fn transfers(n: usize) -> Vec<Op> {
    let to: SocketAddr = (Ipv4Addr::LOCALHOST, 9).into();
    vec![
        Op::Read { fd: 3, size: n },
        Op::ReadAt { fd: 3, offset: 0, size: n },
        Op::Recv { sockfd: 3, size: n, flags: 0 },
        Op::RecvFrom { sockfd: 3, size: n, flags: 0 },
        Op::Write { fd: 3, data: vec![0; n] },
        Op::WriteAt { fd: 3, offset: 0, data: vec![0; n] },
        Op::Send { sockfd: 3, data: vec![0; n], flags: 0 },
        Op::SendTo { sockfd: 3, data: vec![0; n], addr: to, flags: 0 },
    ]
}

#[test]
fn io_bytes_exactly_at_the_limit_pass_one_more_is_eacces() {
    let p = Policy::unrestricted().max_io_bytes(16);
    for op in transfers(16) {
        assert_eq!(refused(&p, &op), None, "{op:?} at the limit");
    }
    for op in transfers(17) {
        assert_eq!(refused(&p, &op), Some(errno::EACCES), "{} one byte over the limit", op.name());
    }
    // A limit of zero still allows empty transfers.
    let zero = Policy::unrestricted().max_io_bytes(0);
    for op in transfers(0) {
        assert_eq!(refused(&zero, &op), None, "{op:?} with a zero limit");
    }
    for op in transfers(1) {
        assert_eq!(refused(&zero, &op), Some(errno::EACCES), "{}: one byte with a zero limit", op.name());
    }
    // The default limit, at and past its edge (reads only: no 64 MiB buffer is needed).
    let d = Policy::unrestricted();
    assert_eq!(d.io_byte_limit(), DEFAULT_MAX_IO_BYTES);
    assert_eq!(refused(&d, &Op::Read { fd: 3, size: DEFAULT_MAX_IO_BYTES }), None);
    assert_eq!(refused(&d, &Op::Read { fd: 3, size: DEFAULT_MAX_IO_BYTES + 1 }), Some(errno::EACCES));
}

#[test]
fn io_size_past_the_largest_transfer_is_einval_whatever_the_policy() {
    let p = Policy::unrestricted().max_io_bytes(usize::MAX);
    for size in [MAX_IO_SIZE + 1, usize::MAX] {
        for op in [
            Op::Read { fd: 3, size },
            Op::ReadAt { fd: 3, offset: 0, size },
            Op::Recv { sockfd: 3, size, flags: 0 },
            Op::RecvFrom { sockfd: 3, size, flags: 0 },
        ] {
            assert_eq!(refused(&p, &op), Some(errno::EINVAL), "{op:?}");
        }
    }
    assert_eq!(refused(&p, &Op::Read { fd: 3, size: MAX_IO_SIZE }), None, "exactly the largest transfer");
    // EINVAL comes before the policy's EACCES: the size is absurd, not just too large.
    let small = Policy::unrestricted().max_io_bytes(16);
    assert_eq!(refused(&small, &Op::Read { fd: 3, size: MAX_IO_SIZE }), Some(errno::EACCES));
    assert_eq!(refused(&small, &Op::Read { fd: 3, size: MAX_IO_SIZE + 1 }), Some(errno::EINVAL));
}

#[test]
fn offsets_up_to_i64_max_pass_one_more_is_einval() {
    let p = Policy::unrestricted();
    let max = i64::MAX as u64;
    for offset in [0, 1, max - 1, max] {
        assert_eq!(refused(&p, &Op::ReadAt { fd: 3, offset, size: 1 }), None, "pread at {offset}");
        assert_eq!(refused(&p, &Op::WriteAt { fd: 3, offset, data: vec![1] }), None, "pwrite at {offset}");
    }
    for offset in [max + 1, max + 2, u64::MAX] {
        let r = p.check(&Op::ReadAt { fd: 3, offset, size: 1 }).unwrap_err();
        assert_eq!(r.errno(), errno::EINVAL, "pread at {offset}");
        assert!(r.message().contains(&offset.to_string()), "the message names the offset: {}", r.message());
        let w = p.check(&Op::WriteAt { fd: 3, offset, data: vec![1] }).unwrap_err();
        assert_eq!(w.errno(), errno::EINVAL, "pwrite at {offset}");
    }
}

#[test]
fn lseek_whence_0_to_4_pass_the_rest_is_einval() {
    let p = Policy::unrestricted();
    for whence in 0..=4 {
        assert_eq!(refused(&p, &Op::Lseek { fd: 3, offset: 0, whence }), None, "whence {whence}");
    }
    for whence in [5, 6, -1, i32::MIN, i32::MAX] {
        assert_eq!(refused(&p, &Op::Lseek { fd: 3, offset: 0, whence }), Some(errno::EINVAL), "whence {whence}");
    }
    // Negative offsets are the kernel's to judge (SEEK_CUR and SEEK_END take them).
    assert_eq!(refused(&p, &Op::Lseek { fd: 3, offset: -1, whence: 2 }), None);
}

#[test]
fn unrestricted_allows_every_network_right_on_both_families() {
    let p = Policy::unrestricted();
    let addrs: [SocketAddr; 4] = [
        (Ipv4Addr::LOCALHOST, 0).into(),
        (Ipv4Addr::LOCALHOST, 65535).into(),
        (Ipv6Addr::LOCALHOST, 0).into(),
        (Ipv6Addr::LOCALHOST, 8080).into(),
    ];
    for addr in addrs {
        assert_eq!(refused(&p, &Op::Connect { sockfd: 3, addr }), None, "connect {addr}");
        assert_eq!(refused(&p, &Op::Bind { sockfd: 3, addr }), None, "bind {addr}");
        assert_eq!(refused(&p, &Op::SendTo { sockfd: 3, data: vec![1], addr, flags: 0 }), None, "sendto {addr}");
    }
    assert_eq!(refused(&p, &Op::Listen { sockfd: 3, backlog: 1 }), None);
    for domain in [2, 10] {
        assert_eq!(refused(&p, &Op::Socket { domain, ty: 1, protocol: 0 }), None);
    }
    // The same operations under the default policy: each refused, so the above is not vacuous.
    let d = Policy::default();
    let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
    assert_eq!(refused(&d, &Op::Connect { sockfd: 3, addr: (v6, 1).into() }), Some(errno::EACCES));
    assert_eq!(refused(&d, &Op::Bind { sockfd: 3, addr: (v6, 0).into() }), Some(errno::EACCES));
    assert_eq!(refused(&d, &Op::Listen { sockfd: 3, backlog: 1 }), Some(errno::EACCES));
    assert_eq!(refused(&d, &Op::Socket { domain: 2, ty: 1, protocol: 0 }), Some(errno::EACCES));
}

/// Set in the child process of the test below: the open flags it tries.
const NOCTTY_CHILD: &str = "AI_OS_KERNEL_TEST_NOCTTY_CHILD";
/// How the child says it ran, on a line of its own.
const NOCTTY_REPORT: &str = "no controlling terminal after opening ";

/// A terminal opened for a process never becomes the host's controlling terminal, with or without
/// the caller's `O_NOCTTY`, whether the policy opens anywhere or beneath a root. Checked in a
/// child process that makes itself a session leader without a terminal (where opening a terminal
/// without `O_NOCTTY` would make it the controlling one), so the test process is left alone.
#[test]
fn opening_a_terminal_never_makes_it_the_controlling_terminal() {
    use crate::op::open_flags::O_RDWR;
    const O_NOCTTY: u32 = libc::O_NOCTTY as u32;
    if let Ok(flags) = std::env::var(NOCTTY_CHILD) {
        return noctty_child(flags.parse().unwrap());
    }
    for flags in [O_RDWR, O_RDWR | O_NOCTTY] {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "sandbox::tests::opening_a_terminal_never_makes_it_the_controlling_terminal"])
            .args(["--test-threads", "1", "--nocapture"])
            .env(NOCTTY_CHILD, flags.to_string())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed") && stdout.contains(NOCTTY_REPORT),
            "flags {flags:#x}:\n{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn noctty_child(flags: u32) {
    use std::ffi::CStr;
    // SAFETY: plain libc calls on descriptors and buffers owned here.
    unsafe {
        assert_ne!(libc::setsid(), -1, "setsid: {}", std::io::Error::last_os_error());
        let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
        assert!(master >= 0, "posix_openpt: {}", std::io::Error::last_os_error());
        assert_eq!(libc::grantpt(master), 0);
        assert_eq!(libc::unlockpt(master), 0);
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(libc::ptsname_r(master, name.as_mut_ptr(), name.len()), 0);
        let slave = CStr::from_ptr(name.as_ptr()).to_str().unwrap().to_owned();
        let no_ctty = || {
            let tty = libc::open(c"/dev/tty".as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
            let e = std::io::Error::last_os_error().raw_os_error();
            if tty >= 0 {
                libc::close(tty);
            }
            tty < 0 && e == Some(libc::ENXIO)
        };
        assert!(no_ctty(), "the child starts without a controlling terminal");
        let anywhere = super::Sandbox::new(super::Policy::unrestricted().read_write()).unwrap();
        let _a = anywhere.open(&slave, flags, 0).unwrap();
        assert!(no_ctty(), "opened anywhere with flags {flags:#x}, {slave} became the controlling terminal");
        let (dir, file) = slave.rsplit_once('/').unwrap();
        let beneath = super::Sandbox::new(super::Policy::rooted(dir).read_write()).unwrap();
        let _b = beneath.open(file, flags, 0).unwrap();
        assert!(no_ctty(), "opened beneath {dir} with flags {flags:#x}, {slave} became the controlling terminal");
        libc::close(master);
    }
    println!("{NOCTTY_REPORT}{flags:#x}");
}

#[test]
fn builders_and_accessors_report_the_policy() {
    let d = Policy::default();
    assert!(!d.is_writable() && d.root().is_none());
    assert_eq!((d.open_fd_limit(), d.outstanding_limit()), (super::DEFAULT_MAX_OPEN_FDS, usize::MAX));
    assert!(Policy::unrestricted().is_writable(), "unrestricted writes");
    assert!(Policy::unrestricted().root().is_none());
    let r = Policy::rooted("/srv/data");
    assert!(!r.is_writable(), "rooted is read-only until read_write");
    assert_eq!(r.root(), Some(std::path::Path::new("/srv/data")));
    let rw = r.clone().read_write().max_open_fds(5).max_outstanding(6).max_io_bytes(7);
    assert!(rw.is_writable());
    assert_eq!((rw.open_fd_limit(), rw.outstanding_limit(), rw.io_byte_limit()), (5, 6, 7));
    assert_eq!(rw.root(), r.root());
    assert_ne!(rw, r);
    // Debug shows every rule, so a log of a refused operation names the policy behind it.
    let shown = format!("{rw:?}");
    for part in ["Policy", "Beneath(\"/srv/data\")", "writable: true", "max_open_fds: 5", "max_io_bytes: 7"] {
        assert!(shown.contains(part), "{part} missing from {shown}");
    }
}

#[test]
fn root_fd_is_the_opened_root_directory() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let rooted = super::Sandbox::new(Policy::rooted(dir.path())).unwrap();
    let root = rooted.root_fd().expect("a rooted sandbox has its root open");
    let st = rustix::fs::fstat(root).unwrap();
    let want = std::fs::metadata(dir.path()).unwrap();
    assert_eq!((st.st_dev, st.st_ino), (want.dev(), want.ino()), "the descriptor is the root directory");
    // Renaming the root's path does not move the sandbox: it holds the directory itself.
    let moved = dir.path().with_extension("moved");
    std::fs::rename(dir.path(), &moved).unwrap();
    assert_eq!(rustix::fs::fstat(rooted.root_fd().unwrap()).unwrap().st_ino, want.ino());
    std::fs::rename(&moved, dir.path()).unwrap();
    assert!(super::Sandbox::new(Policy::unrestricted()).unwrap().root_fd().is_none());
    assert!(super::Sandbox::new(Policy::default()).unwrap().root_fd().is_none());
}

/// A policy takes one address as a network of it alone, and a half-open port range as it says.
#[test]
fn addresses_and_half_open_port_ranges_make_rules() {
    let p = Policy::default().allow_connect(Ipv4Addr::LOCALHOST, 8000..9000).allow_connect(Ipv6Addr::LOCALHOST, 1024..);
    let at = |ip: IpAddr, port| Op::Connect { sockfd: 3, addr: SocketAddr::new(ip, port) };
    let v4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
    assert_eq!(refused(&p, &at(v4, 8000)), None);
    assert_eq!(refused(&p, &at(v4, 8999)), None);
    assert_eq!(refused(&p, &at(v4, 9000)), Some(errno::EACCES), "the end is not in the range");
    assert_eq!(refused(&p, &at(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), 8000)), Some(errno::EACCES));
    assert_eq!(refused(&p, &at(IpAddr::V6(Ipv6Addr::LOCALHOST), 65535)), None);
    assert_eq!(refused(&p, &at(IpAddr::V6(Ipv6Addr::LOCALHOST), 1023)), Some(errno::EACCES));
    let none = Policy::default().allow_connect(Ipv4Addr::LOCALHOST, 5..5);
    assert_eq!(refused(&none, &at(v4, 5)), Some(errno::EACCES), "an empty range allows nothing");
}
