//! File operations, executed for real on temp files.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use ai_os_kernel::syscalls::open_flags::*;
use ai_os_kernel::syscalls::{IoUringManager, OpResult, SyscallOpType as Op, errno};

use super::{entry, manager, rooted};
use crate::support::{Gate, Held, MakeBackend, Panicky, eventually, kernel_fds_to, run_op};

const T: Duration = Duration::from_secs(30);

fn fd_of(r: OpResult) -> i32 {
    match r {
        OpResult::Fd(fd) => fd,
        other => panic!("expected a descriptor, got {other:?}"),
    }
}

fn open(m: &IoUringManager, pid: u32, path: &str, flags: u32) -> i32 {
    let done = run_op(m, pid, Op::open(path, flags));
    assert!(done.status.is_success(), "open {path}: {:?}", done.status);
    fd_of(done.result)
}

/// Open, write, seek, read, pread, pwrite, fsync and close, checked against the disk.
pub fn file_ops_roundtrip(make: MakeBackend) {
    let m = manager(make);
    let dir = rooted(&m, 1);
    let fd = open(&m, 1, "/data.bin", O_RDWR | O_CREAT | O_TRUNC);
    assert_eq!(fd, 3, "virtual descriptors start at 3");
    assert_eq!(run_op(&m, 1, Op::Write { fd, data: b"hello world".to_vec() }).result, OpResult::Count(11));
    assert_eq!(run_op(&m, 1, Op::Lseek { fd, offset: 0, whence: 0 }).result, OpResult::Offset(0));
    assert_eq!(run_op(&m, 1, Op::Read { fd, size: 5 }).result, OpResult::Bytes(b"hello".to_vec()));
    assert_eq!(run_op(&m, 1, Op::Read { fd, size: 100 }).result, OpResult::Bytes(b" world".to_vec()));
    assert_eq!(run_op(&m, 1, Op::WriteAt { fd, offset: 6, data: b"WORLD".to_vec() }).result, OpResult::Count(5));
    assert_eq!(run_op(&m, 1, Op::ReadAt { fd, offset: 4, size: 4 }).result, OpResult::Bytes(b"o WO".to_vec()));
    assert!(run_op(&m, 1, Op::Fsync { fd }).status.is_success());
    assert_eq!(std::fs::read(dir.path().join("data.bin")).unwrap(), b"hello WORLD");
    assert!(run_op(&m, 1, Op::Close { fd }).status.is_success());
    let again = run_op(&m, 1, Op::Read { fd, size: 1 });
    assert_eq!(again.errno(), Some(errno::EBADF), "closed descriptor: {:?}", again.status);
    let twice = run_op(&m, 1, Op::Close { fd });
    assert_eq!(twice.errno(), Some(errno::EBADF), "closed twice: {:?}", twice.status);
    let nothing = run_op(&m, 1, Op::Fsync { fd: 77 });
    assert_eq!(nothing.errno(), Some(errno::EBADF));
    // The pwrite past the end extends the file, with a hole.
    let fd = open(&m, 1, "data.bin", O_RDWR);
    assert_eq!(run_op(&m, 1, Op::WriteAt { fd, offset: 100, data: vec![7] }).result, OpResult::Count(1));
    assert_eq!(std::fs::metadata(dir.path().join("data.bin")).unwrap().len(), 101);
}

/// `Ftruncate` cuts a file and extends it with zeros; `Fdatasync` flushes it. A descriptor not
/// open refuses both (`EBADF`); a truncate of a descriptor not open for writing is `EINVAL`, as
/// is a length past `i64::MAX` (refused before the kernel).
pub fn truncate_and_datasync(make: MakeBackend) {
    let m = manager(make);
    let dir = rooted(&m, 1);
    let path = dir.path().join("t.bin");
    let fd = open(&m, 1, "t.bin", O_RDWR | O_CREAT | O_TRUNC);
    assert_eq!(run_op(&m, 1, Op::Write { fd, data: b"0123456789".to_vec() }).result, OpResult::Count(10));
    assert!(run_op(&m, 1, Op::Ftruncate { fd, len: 4 }).status.is_success());
    assert_eq!(std::fs::read(&path).unwrap(), b"0123", "cut");
    assert!(run_op(&m, 1, Op::Fdatasync { fd }).status.is_success());
    assert!(run_op(&m, 1, Op::Ftruncate { fd, len: 8192 }).status.is_success());
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 8192, "extended");
    assert_eq!(run_op(&m, 1, Op::ReadAt { fd, offset: 0, size: 6 }).result, OpResult::Bytes(b"0123\0\0".to_vec()));
    assert_eq!(run_op(&m, 1, Op::ReadAt { fd, offset: 8190, size: 10 }).result, OpResult::Bytes(vec![0, 0]));
    assert!(run_op(&m, 1, Op::Ftruncate { fd, len: 0 }).status.is_success());
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    let read_only = open(&m, 1, "t.bin", O_RDONLY);
    assert!(run_op(&m, 1, Op::Fdatasync { fd: read_only }).status.is_success(), "a read-only descriptor flushes");
    let refused = run_op(&m, 1, Op::Ftruncate { fd: read_only, len: 1 });
    assert_eq!(refused.errno(), Some(errno::EINVAL), "not open for writing: {:?}", refused.status);
    let huge = run_op(&m, 1, Op::Ftruncate { fd, len: u64::MAX });
    assert_eq!(huge.errno(), Some(errno::EINVAL), "{:?}", huge.status);
    assert_eq!(run_op(&m, 1, Op::Ftruncate { fd: 77, len: 1 }).errno(), Some(errno::EBADF));
    assert_eq!(run_op(&m, 1, Op::Fdatasync { fd: 77 }).errno(), Some(errno::EBADF));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "refused truncates left no trace");
}

/// `Fallocate` allocates (extending the file, or not with `KEEP_SIZE`) and punches holes; an
/// allocation counts against the policy's per-operation limit as a write would, a hole does
/// not. Unknown mode bits, offsets or lengths past `i64::MAX` are `EINVAL`; a descriptor not
/// open for writing is `EBADF`.
pub fn fallocate_allocates_and_punches(make: MakeBackend) {
    use std::os::unix::fs::MetadataExt;
    let m = manager(make);
    let dir = rooted(&m, 1);
    let path = dir.path().join("a.bin");
    let fd = open(&m, 1, "a.bin", O_RDWR | O_CREAT | O_TRUNC);
    let fallocate = |fd, mode, offset, len| run_op(&m, 1, Op::Fallocate { fd, mode, offset, len });
    assert!(fallocate(fd, 0, 0, 8192).status.is_success());
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.len(), 8192, "extended");
    assert!(meta.blocks() * 512 >= 8192, "allocated: {} blocks", meta.blocks());
    assert!(fallocate(fd, 1, 8192, 8192).status.is_success());
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 8192, "KEEP_SIZE keeps it");
    assert_eq!(run_op(&m, 1, Op::WriteAt { fd, offset: 0, data: vec![9; 8192] }).result, OpResult::Count(8192));
    assert!(fallocate(fd, 3, 0, 4096).status.is_success(), "PUNCH_HOLE | KEEP_SIZE");
    assert_eq!(run_op(&m, 1, Op::ReadAt { fd, offset: 4094, size: 4 }).result, OpResult::Bytes(vec![0, 0, 9, 9]));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 8192);
    for (mode, offset, len) in [(0x80, 0, 1), (0, u64::MAX, 1), (0, 0, u64::MAX)] {
        let refused = fallocate(fd, mode, offset, len);
        assert_eq!(refused.errno(), Some(errno::EINVAL), "{mode:#x} {offset} {len}: {:?}", refused.status);
    }
    let read_only = open(&m, 1, "a.bin", O_RDONLY);
    assert_eq!(fallocate(read_only, 0, 0, 16384).errno(), Some(errno::EBADF));
    assert_eq!(fallocate(77, 0, 0, 1).errno(), Some(errno::EBADF));
    m.set_policy(1, ai_os_kernel::sandbox::Policy::rooted(dir.path()).read_write().max_io_bytes(4096)).unwrap();
    assert_eq!(fallocate(fd, 0, 0, 65536).errno(), Some(errno::EACCES), "past the per-operation limit");
    assert!(fallocate(fd, 3, 0, 8192).status.is_success(), "a hole frees space: not limited");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 8192, "refusals left no trace");
}

/// `Fstat` reports what `std::fs::metadata` does of the same file: size, kind, permissions,
/// link count and times; a directory is a directory; a descriptor not open is `EBADF`.
pub fn fstat_reports_metadata(make: MakeBackend) {
    use ai_os_kernel::syscalls::{EntryKind, FileStat};
    use std::os::unix::fs::MetadataExt;
    let m = manager(make);
    let dir = rooted(&m, 1);
    let path = dir.path().join("s.bin");
    std::fs::write(&path, vec![1u8; 12_345]).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let fd = open(&m, 1, "s.bin", O_RDONLY);
    let stat = |fd| match run_op(&m, 1, Op::Fstat { fd }).result {
        OpResult::Stat(st) => st,
        other => panic!("fstat: {other:?}"),
    };
    let st: FileStat = stat(fd);
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!((st.size, st.kind, st.mode, st.links), (12_345, EntryKind::File, 0o640, 1));
    assert_eq!(st.modified, meta.modified().unwrap());
    assert_eq!(st.accessed, meta.accessed().unwrap());
    let changed = std::time::UNIX_EPOCH + Duration::new(meta.ctime() as u64, meta.ctime_nsec() as u32);
    assert_eq!(st.changed, changed);
    if let Ok(created) = meta.created() {
        assert_eq!(st.created, Some(created));
    }
    // A change shows at the next call.
    let w = open(&m, 1, "s.bin", O_WRONLY);
    assert!(run_op(&m, 1, Op::Ftruncate { fd: w, len: 10 }).status.is_success());
    assert_eq!(stat(fd).size, 10);
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let sub = open(&m, 1, "sub", O_RDONLY | O_DIRECTORY);
    assert_eq!(stat(sub).kind, EntryKind::Dir);
    assert_eq!(run_op(&m, 1, Op::Fstat { fd: 77 }).errno(), Some(errno::EBADF));
}

/// Short reads report what they got; at end of file the result is empty.
pub fn short_read_and_eof(make: MakeBackend) {
    let m = manager(make);
    let dir = rooted(&m, 1);
    std::fs::write(dir.path().join("ten"), b"0123456789").unwrap();
    let fd = open(&m, 1, "ten", O_RDONLY);
    assert_eq!(run_op(&m, 1, Op::Read { fd, size: 4096 }).result, OpResult::Bytes(b"0123456789".to_vec()));
    assert_eq!(run_op(&m, 1, Op::Read { fd, size: 4096 }).result, OpResult::Bytes(Vec::new()));
    assert_eq!(run_op(&m, 1, Op::ReadAt { fd, offset: 8, size: 10 }).result, OpResult::Bytes(b"89".to_vec()));
    assert_eq!(run_op(&m, 1, Op::ReadAt { fd, offset: 50, size: 10 }).result, OpResult::Bytes(Vec::new()));
    assert_eq!(run_op(&m, 1, Op::Read { fd, size: 0 }).result, OpResult::Bytes(Vec::new()));
    // A write to a read-only descriptor fails with the kernel's EBADF.
    assert_eq!(run_op(&m, 1, Op::Write { fd, data: b"x".to_vec() }).errno(), Some(errno::EBADF));
}

/// `O_CREAT` uses the op's mode, `0o644` by default (less the umask).
pub fn open_create_mode(make: MakeBackend) {
    let m = manager(make);
    let dir = rooted(&m, 1);
    open(&m, 1, "default", O_WRONLY | O_CREAT);
    let mode = std::fs::metadata(dir.path().join("default")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode & !0o022, 0o644 & !0o022, "default mode was {mode:o}");
    let done = run_op(&m, 1, Op::Open { path: "private".into(), flags: O_WRONLY | O_CREAT, mode: 0o600 });
    assert!(done.status.is_success());
    let mode = std::fs::metadata(dir.path().join("private")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let excl = run_op(&m, 1, Op::open("private", O_WRONLY | O_CREAT | O_EXCL));
    assert_eq!(excl.errno(), Some(libc::EEXIST));
    let missing = run_op(&m, 1, Op::open("missing", O_RDONLY));
    assert_eq!(missing.errno(), Some(libc::ENOENT));
    assert!(
        matches!(&missing.status, ai_os_kernel::syscalls::SyscallCompletionStatus::Error(msg) if msg.contains("missing"))
    );
}

/// Descriptors are per process: pid 7's fd 3 is not pid 8's.
pub fn fds_are_per_process(make: MakeBackend) {
    let m = manager(make);
    let dir = rooted(&m, 7);
    m.set_policy(8, ai_os_kernel::sandbox::Policy::rooted(dir.path())).unwrap();
    std::fs::write(dir.path().join("seven"), b"7").unwrap();
    std::fs::write(dir.path().join("eight"), b"8").unwrap();
    let fd7 = open(&m, 7, "seven", O_RDONLY);
    let other = run_op(&m, 8, Op::Read { fd: fd7, size: 1 });
    assert_eq!(other.errno(), Some(errno::EBADF), "pid 8 used pid 7's descriptor");
    let fd8 = open(&m, 8, "eight", O_RDONLY);
    assert_eq!((fd7, fd8), (3, 3));
    assert_eq!(run_op(&m, 7, Op::Read { fd: 3, size: 1 }).result, OpResult::Bytes(b"7".to_vec()));
    assert_eq!(run_op(&m, 8, Op::Read { fd: 3, size: 1 }).result, OpResult::Bytes(b"8".to_vec()));
    // Lowest free number first, as POSIX does.
    let fd4 = open(&m, 7, "seven", O_RDONLY);
    assert_eq!(fd4, 4);
    run_op(&m, 7, Op::Close { fd: 3 });
    assert_eq!(open(&m, 7, "eight", O_RDONLY), 3);
    for bad in [-1, 0, 1, 2, i32::MAX, i32::MIN] {
        assert_eq!(run_op(&m, 7, Op::Read { fd: bad, size: 1 }).errno(), Some(errno::EBADF), "fd {bad}");
    }
}

/// `lseek` with each `whence`, and the bad ones.
pub fn lseek_whence(make: MakeBackend) {
    let m = manager(make);
    let dir = rooted(&m, 1);
    std::fs::write(dir.path().join("f"), b"abcdefghij").unwrap();
    let fd = open(&m, 1, "f", O_RDONLY);
    let seek = |offset, whence| run_op(&m, 1, Op::Lseek { fd, offset, whence });
    assert_eq!(seek(3, 0).result, OpResult::Offset(3));
    assert_eq!(seek(2, 1).result, OpResult::Offset(5));
    assert_eq!(seek(-1, 2).result, OpResult::Offset(9));
    assert_eq!(run_op(&m, 1, Op::Read { fd, size: 5 }).result, OpResult::Bytes(b"j".to_vec()));
    assert_eq!(seek(0, 3).result, OpResult::Offset(0), "SEEK_DATA");
    assert_eq!(seek(0, 4).result, OpResult::Offset(10), "SEEK_HOLE: a file without holes ends in one");
    for (offset, whence) in [(0, 5), (0, -1), (-1, 0), (-100, 1)] {
        assert_eq!(seek(offset, whence).errno(), Some(errno::EINVAL), "lseek({offset}, {whence})");
    }
}

/// Many preads in flight at once, each with the right bytes.
pub fn concurrent_read_at(make: MakeBackend) {
    let m = manager(make);
    let dir = rooted(&m, 1);
    let data: Vec<u8> = (0..1 << 20).map(|i: u32| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
    std::fs::write(dir.path().join("big"), &data).unwrap();
    let fd = open(&m, 1, "big", O_RDONLY);
    let offsets: Vec<u64> = (0..256u64).map(|i| (i * 7919 * 4096) % (1 << 20)).collect();
    let batch = offsets.iter().map(|&offset| entry(1, Op::ReadAt { fd, offset, size: 4096 }, offset)).collect();
    let seqs = m.submit_batch(1, batch).unwrap();
    for s in seqs {
        let done = m.wait_completion_timeout(1, s, T).unwrap();
        let off = done.user_data as usize;
        let end = (off + 4096).min(data.len());
        assert_eq!(done.result, OpResult::Bytes(data[off..end].to_vec()), "pread at {off}");
    }
}

/// Dropped futures of `Open`: stopped while waiting, or finishing anyway, they never leak a
/// descriptor.
pub fn dropped_open_closes_fd(make: MakeBackend) {
    for uninterruptible in [false, true] {
        let gate = Arc::new(Gate::default());
        let backend = if uninterruptible {
            Held::uninterruptible(make(), gate.clone(), 4)
        } else {
            Held::new(make(), gate.clone(), 4)
        };
        let m = IoUringManager::with_backend(backend);
        let dir = rooted(&m, 1);
        // The whole window of 4 for pid 1 (its default share is a quarter).
        m.set_policy(1, ai_os_kernel::sandbox::Policy::rooted(dir.path()).read_write().max_in_flight(4)).unwrap();
        std::fs::write(dir.path().join("f"), b"x").unwrap();
        let futs: Vec<_> = (0..4).map(|_| m.submit_async(1, entry(1, Op::open("f", O_RDONLY), 0)).unwrap()).collect();
        eventually(T, "opens at the gate", || gate.arrived.load(std::sync::atomic::Ordering::SeqCst) == 4);
        drop(futs);
        gate.open();
        eventually(T, "opens retired", || m.stats().pending == 0);
        let process = m.processes().get(1).unwrap();
        assert_eq!(process.open_descriptors(), 0, "a discarded open leaked its descriptor");
        assert_eq!(m.stats().discarded, 4);
        // The process still works.
        assert_eq!(open(&m, 1, "f", O_RDONLY), 3);
    }
}

/// A panic inside an operation completes it with `EIO`; the backend keeps serving.
pub fn panic_in_op_is_eio(make: MakeBackend) {
    let m = IoUringManager::with_backend(Arc::new(Panicky { inner: make() }));
    let dir = rooted(&m, 1);
    std::fs::write(dir.path().join("f"), b"abc").unwrap();
    let fd = open(&m, 1, "f", O_RDONLY);
    for _ in 0..3 {
        let done = run_op(&m, 1, Op::Read { fd, size: 13 });
        assert_eq!(done.errno(), Some(errno::EIO), "{:?}", done.status);
        assert_eq!(run_op(&m, 1, Op::ReadAt { fd, offset: 0, size: 3 }).result, OpResult::Bytes(b"abc".to_vec()));
    }
    eventually(T, "retired", || m.stats().pending == 0);
}

/// Thousands of futures dropped mid-flight: every buffer and descriptor is given back, nothing
/// stays pending, the kernel holds no descriptor of ours.
pub fn drop_storm(make: MakeBackend) {
    let m = manager(make);
    let dir = rooted(&m, 1);
    let name = "drop-storm-unique-file";
    std::fs::write(dir.path().join(name), vec![5u8; 1 << 20]).unwrap();
    let fd = open(&m, 1, name, O_RDONLY);
    let process = m.processes().get(1).unwrap();
    let baseline = (process.open_descriptors(), kernel_fds_to(&dir.path().join(name)));
    let mut dropped = 0u64;
    for round in 0..20u64 {
        let futs: Vec<_> = (0..250u64)
            .map(|i| {
                let op = if i % 3 == 0 {
                    Op::open(name, O_RDONLY)
                } else {
                    Op::ReadAt { fd, offset: ((round * 250 + i) * 4096) % (1 << 20), size: 4096 }
                };
                m.submit_async(1, entry(1, op, i)).unwrap()
            })
            .collect();
        // Some finish before the drop, most are dropped in flight.
        if round % 2 == 0 {
            std::thread::yield_now();
        }
        dropped += futs.len() as u64;
        drop(futs);
    }
    eventually(T, "storm retired", || m.stats().pending == 0);
    assert_eq!(m.stats().discarded, dropped);
    assert_eq!((process.open_descriptors(), kernel_fds_to(&dir.path().join(name))), baseline, "descriptors leaked");
    // Still serving.
    assert_eq!(run_op(&m, 1, Op::ReadAt { fd, offset: 0, size: 2 }).result, OpResult::Bytes(vec![5, 5]));
}

/// Every file the crate opens for a process is close-on-exec in the kernel, whatever flags the
/// caller gave and however the policy resolves paths: a host that starts programs must not hand
/// them a tenant's files.
pub fn opened_files_are_close_on_exec(make: MakeBackend) {
    let m = manager(make);
    let dir = rooted(&m, 1);
    m.set_policy(2, ai_os_kernel::sandbox::Policy::unrestricted()).unwrap();
    let name = "close-on-exec-unique-file";
    let path = dir.path().join(name);
    let absolute = path.to_str().unwrap();
    let mut fds = Vec::new();
    // Rooted (resolved beneath the root), then unrestricted (any path).
    for flags in [O_RDWR | O_CREAT, O_RDONLY, O_WRONLY | O_APPEND, O_RDONLY | O_CLOEXEC] {
        fds.push((1, open(&m, 1, name, flags)));
    }
    for flags in [O_RDONLY, O_RDWR | O_TRUNC] {
        fds.push((2, open(&m, 2, absolute, flags)));
    }
    let kernel = crate::support::kernel_fd_numbers_to(&path);
    assert_eq!(kernel.len(), fds.len(), "one kernel descriptor per open: {kernel:?}");
    for fd in &kernel {
        assert!(crate::support::is_close_on_exec(*fd), "kernel descriptor {fd} of {path:?} is not close-on-exec");
    }
    for (pid, fd) in fds {
        assert!(run_op(&m, pid, Op::Close { fd }).status.is_success());
    }
    assert_eq!(kernel_fds_to(&path), 0, "closed through the manager");
}
