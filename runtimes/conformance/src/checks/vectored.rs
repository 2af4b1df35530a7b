//! Vectored reads and writes and in-kernel copies, on real files.

use ai_os_kernel::sandbox::Policy;
use ai_os_kernel::syscalls::open_flags::*;
use ai_os_kernel::syscalls::{MAX_IOV, OpResult, SyscallOpType as Op, errno};

use super::{manager, mkfifo, open, rooted};
use crate::support::{MakeBackend, run_op};

fn bufs(parts: &[&[u8]]) -> Vec<Vec<u8>> {
    parts.iter().map(|p| p.to_vec()).collect()
}

/// `Writev`/`WritevAt` write their buffers in order as one write; `Readv`/`ReadvAt` fill
/// theirs in order, later ones empty past what was read; the positioned forms leave the
/// position alone, the others move it. More than `MAX_IOV` buffers, an offset past `i64::MAX`,
/// a FIFO or a descriptor not open are refused; the byte limits count all the buffers.
pub fn vectored_reads_and_writes(make: MakeBackend) {
    let m = manager(make);
    let dir = rooted(&m, 1);
    let path = dir.path().join("v.bin");
    let fd = open(&m, 1, "v.bin", O_RDWR | O_CREAT | O_TRUNC);
    let wrote = run_op(&m, 1, Op::Writev { fd, bufs: bufs(&[b"hello ", b"", b"world"]) });
    assert_eq!(wrote.result, OpResult::Count(11), "{:?}", wrote.status);
    assert_eq!(std::fs::read(&path).unwrap(), b"hello world");
    let wrote = run_op(&m, 1, Op::WritevAt { fd, offset: 6, bufs: bufs(&[b"W", b"ORLD"]) });
    assert_eq!(wrote.result, OpResult::Count(5));
    assert_eq!(run_op(&m, 1, Op::Lseek { fd, offset: 0, whence: 1 }).result, OpResult::Offset(11), "pwritev kept it");
    let read = run_op(&m, 1, Op::ReadvAt { fd, offset: 0, sizes: vec![5, 0, 3, 100] });
    assert_eq!(read.result, OpResult::Buffers(bufs(&[b"hello", b"", b" WO", b"RLD"])), "{:?}", read.status);
    assert_eq!(run_op(&m, 1, Op::Lseek { fd, offset: 0, whence: 0 }).result, OpResult::Offset(0));
    assert_eq!(run_op(&m, 1, Op::Readv { fd, sizes: vec![2, 2] }).result, OpResult::Buffers(bufs(&[b"he", b"ll"])));
    assert_eq!(run_op(&m, 1, Op::Read { fd, size: 3 }).result, OpResult::Bytes(b"o W".to_vec()), "readv moved it");
    let past = run_op(&m, 1, Op::ReadvAt { fd, offset: 1000, sizes: vec![4, 4] });
    assert_eq!(past.result, OpResult::Buffers(vec![Vec::new(), Vec::new()]));
    assert_eq!(run_op(&m, 1, Op::ReadvAt { fd, offset: 0, sizes: Vec::new() }).result, OpResult::Buffers(Vec::new()));
    // A large vectored write and read back across many buffers.
    let big: Vec<Vec<u8>> = (0..MAX_IOV).map(|i| vec![(i % 251) as u8; 100 + i % 7]).collect();
    let total: usize = big.iter().map(Vec::len).sum();
    assert_eq!(run_op(&m, 1, Op::WritevAt { fd, offset: 0, bufs: big.clone() }).result, OpResult::Count(total));
    let sizes: Vec<usize> = big.iter().map(Vec::len).collect();
    assert_eq!(run_op(&m, 1, Op::ReadvAt { fd, offset: 0, sizes }).result, OpResult::Buffers(big));
    // Refusals, before the kernel, leaving the file as it was.
    let before = std::fs::read(&path).unwrap();
    let err = |op: Op| run_op(&m, 1, op).errno();
    assert_eq!(err(Op::WritevAt { fd, offset: 0, bufs: vec![vec![1]; MAX_IOV + 1] }), Some(errno::EINVAL));
    assert_eq!(err(Op::ReadvAt { fd, offset: 0, sizes: vec![1; MAX_IOV + 1] }), Some(errno::EINVAL));
    assert_eq!(err(Op::WritevAt { fd, offset: u64::MAX, bufs: bufs(&[b"x"]) }), Some(errno::EINVAL));
    assert_eq!(err(Op::ReadvAt { fd, offset: i64::MAX as u64 + 1, sizes: vec![1] }), Some(errno::EINVAL));
    assert_eq!(err(Op::Writev { fd: 77, bufs: bufs(&[b"x"]) }), Some(errno::EBADF));
    let read_only = open(&m, 1, "v.bin", O_RDONLY);
    assert_eq!(err(Op::Writev { fd: read_only, bufs: bufs(&[b"x"]) }), Some(errno::EBADF));
    mkfifo(&dir.path().join("fifo"));
    let fifo = open(&m, 1, "fifo", O_RDWR);
    assert_eq!(err(Op::Writev { fd: fifo, bufs: bufs(&[b"x"]) }), Some(errno::EINVAL));
    assert_eq!(err(Op::Readv { fd: fifo, sizes: vec![1] }), Some(errno::EINVAL));
    m.set_policy(1, Policy::rooted(dir.path()).read_write().max_io_bytes(1000)).unwrap();
    assert_eq!(err(Op::WritevAt { fd, offset: 0, bufs: vec![vec![7; 600]; 2] }), Some(errno::EACCES));
    assert_eq!(err(Op::ReadvAt { fd, offset: 0, sizes: vec![600, 600] }), Some(errno::EACCES));
    assert_eq!(std::fs::read(&path).unwrap(), before, "refusals left no trace");
}

/// `CopyRange` copies in the kernel between two of the process's files, at the offsets given,
/// moving neither position; short at the end of the source, 0 past it; between file systems
/// the kernel will not copy across, through memory instead. Both must be regular files, the
/// target open for writing; the byte limits count the length.
pub fn copy_range_copies(make: MakeBackend) {
    let m = manager(make);
    let dir = rooted(&m, 1);
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 256) as u8).collect();
    std::fs::write(dir.path().join("src"), &data).unwrap();
    let src = open(&m, 1, "src", O_RDONLY);
    let dst = open(&m, 1, "dst", O_RDWR | O_CREAT | O_TRUNC);
    let copy = |fd_in, offset_in, fd_out, offset_out, len| {
        run_op(&m, 1, Op::CopyRange { fd_in, offset_in, fd_out, offset_out, len })
    };
    let mut at = 0u64;
    while at < data.len() as u64 {
        let done = copy(src, at, dst, at, 1 << 20);
        let OpResult::Count(n) = done.result else { panic!("copy at {at}: {:?}", done.status) };
        assert!(n > 0, "no progress at {at}");
        at += n as u64;
    }
    assert_eq!(std::fs::read(dir.path().join("dst")).unwrap(), data);
    assert_eq!(copy(src, data.len() as u64, dst, 0, 10).result, OpResult::Count(0), "at the end");
    assert_eq!(copy(src, 299_990, dst, 5, 100).result, OpResult::Count(10), "short at the end");
    assert_eq!(std::fs::read(dir.path().join("dst")).unwrap()[5..15], data[299_990..]);
    assert_eq!(run_op(&m, 1, Op::Lseek { fd: dst, offset: 0, whence: 1 }).result, OpResult::Offset(0));
    let err = |op: Op| run_op(&m, 1, op).errno();
    let copy_op = |fd_in, fd_out, len| Op::CopyRange { fd_in, offset_in: 0, fd_out, offset_out: 0, len };
    assert_eq!(err(copy_op(src, src, 10)), Some(errno::EBADF), "the target is read-only");
    assert_eq!(err(copy_op(77, dst, 10)), Some(errno::EBADF));
    let d = open(&m, 1, "/", O_RDONLY | O_DIRECTORY);
    assert_eq!(err(copy_op(d, dst, 10)), Some(errno::EINVAL));
    let over = Op::CopyRange { fd_in: src, offset_in: u64::MAX, fd_out: dst, offset_out: 0, len: 1 };
    assert_eq!(err(over), Some(errno::EINVAL));
    m.set_policy(1, Policy::rooted(dir.path()).read_write().max_io_bytes(1000)).unwrap();
    assert_eq!(err(copy_op(src, dst, 1001)), Some(errno::EACCES));
    assert!(copy(src, 0, dst, 0, 1000).status.is_success());
    // Between the temp dir's file system and /dev/shm's (tmpfs), where they differ.
    let Ok(shm) = tempfile::tempdir_in("/dev/shm") else { return };
    m.set_policy(2, Policy::unrestricted()).unwrap();
    let path = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let src = open(&m, 2, &path(&dir.path().join("src")), O_RDONLY);
    let dst = open(&m, 2, &path(&shm.path().join("dst")), O_RDWR | O_CREAT);
    let done = run_op(&m, 2, Op::CopyRange { fd_in: src, offset_in: 100, fd_out: dst, offset_out: 0, len: 200_000 });
    let OpResult::Count(n) = done.result else { panic!("copy across: {:?}", done.status) };
    assert!(n > 0 && n <= 200_000);
    assert_eq!(std::fs::read(shm.path().join("dst")).unwrap(), data[100..100 + n]);
}
