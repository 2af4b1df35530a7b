//! The boundaries of [`Policy::check`]: sizes, offsets and `lseek`'s `whence`, each exactly at
//! its limit and one past it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{DEFAULT_MAX_IO_BYTES, MAX_IO_SIZE, Policy};
use crate::syscalls::iouring::error::errno;
use crate::syscalls::iouring::op::SyscallOpType as Op;

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
