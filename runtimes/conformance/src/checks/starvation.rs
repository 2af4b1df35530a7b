//! Starvation: what may wait without bound (FIFOs, their opens, character devices) holds no
//! shared capacity, and stops when its tenant goes.

use std::io::{Read as _, Write as _};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use ai_os_kernel::Pid;
use ai_os_kernel::sandbox::Policy;
use ai_os_kernel::syscalls::open_flags::*;
use ai_os_kernel::syscalls::{IoUringError, IoUringManager, OpResult, SyscallOpType as Op};

use super::{entry, manager, mkfifo, nop, rooted};
use crate::support::{MakeBackend, eventually, run_op};

/// Expands to one `#[test]` per check of this module (called by `conformance_tests!`).
#[doc(hidden)]
#[macro_export]
macro_rules! __starvation_checks {
    ($make:expr, $block_on:expr) => {
        $crate::__sync_checks!($make;
            starve_fifo_reads_beyond_the_window_leave_others_served, starve_fifo_opens_never_wait,
            starve_fifo_read_waits_for_a_writer_then_sees_its_end, starve_destroy_stops_parked_fifo_reads,
            starve_cancel_stops_a_fifo_read, starve_character_devices_read_and_write,
        );
    };
}

const T: Duration = Duration::from_secs(20);
/// How long an operation that must wait is watched not completing.
const WAITING: Duration = Duration::from_millis(100);
/// More reads than any backend's in-flight window (io_uring's, tokio's and smol's are 256; the
/// blocking pool's is twice its threads), and than its pool has threads.
const PARKED: usize = 300;

/// A FIFO `name` in `dir`, and its path.
fn fifo(dir: &Path, name: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    mkfifo(&path);
    path
}

fn fd_of(m: &IoUringManager, pid: Pid, op: Op) -> i32 {
    let done = run_op(m, pid, op);
    let OpResult::Fd(fd) = done.result else { panic!("expected a descriptor: {:?} {:?}", done.status, done.result) };
    fd
}

/// Whether operation `seq` of `pid` is still waiting after [`WAITING`] (its completion, if it
/// came, is taken).
fn still_waiting(m: &IoUringManager, pid: Pid, seq: u64) -> bool {
    matches!(m.wait_completion_timeout(pid, seq, WAITING), Err(IoUringError::Timeout { .. }))
}

/// Another tenant's `Nop`, and its open and read of a file of its own, complete promptly.
fn others_are_served(m: &IoUringManager, pid: Pid) {
    let dir = rooted(m, pid);
    std::fs::write(dir.path().join("own"), b"mine").unwrap();
    let seq = m.submit(pid, nop(pid)).unwrap();
    let done = m.wait_completion_timeout(pid, seq, T).expect("another tenant's Nop completes");
    assert!(done.status.is_success(), "{:?}", done.status);
    let seq = m.submit(pid, entry(pid, Op::open("own", O_RDONLY), 0)).unwrap();
    let OpResult::Fd(fd) = m.wait_completion_timeout(pid, seq, T).expect("another tenant's open completes").result
    else {
        panic!("open")
    };
    let seq = m.submit(pid, entry(pid, Op::ReadAt { fd, offset: 0, size: 16 }, 0)).unwrap();
    let done = m.wait_completion_timeout(pid, seq, T).expect("another tenant's read completes");
    assert_eq!(done.result, OpResult::Bytes(b"mine".to_vec()));
}

/// Submits `n` one-byte reads of `fd` for `pid`, in batches; returns their sequence numbers.
fn park_reads(m: &IoUringManager, pid: Pid, fd: i32, n: usize) -> Vec<u64> {
    let mut seqs = Vec::with_capacity(n);
    while seqs.len() < n {
        let batch = (0..(n - seqs.len()).min(100)).map(|_| entry(pid, Op::Read { fd, size: 1 }, 0)).collect();
        seqs.extend(m.submit_batch(pid, batch).unwrap());
    }
    seqs
}

/// Pid 1 with [`PARKED`] one-byte reads waiting on an empty FIFO of its root, which it opened
/// read-write (it is its own writer, so the reads wait for ever).
struct Parked {
    m: IoUringManager,
    dir: tempfile::TempDir,
    path: std::path::PathBuf,
    fd: i32,
    seqs: Vec<u64>,
}

fn parked_on_a_fifo(make: MakeBackend) -> Parked {
    let m = manager(make);
    m.create_ring(1, Some(512), Some(512)).unwrap();
    let dir = rooted(&m, 1);
    let path = fifo(dir.path(), "fifo");
    let fd = fd_of(&m, 1, Op::open("fifo", O_RDWR));
    let seqs = park_reads(&m, 1, fd, PARKED);
    std::thread::sleep(WAITING);
    Parked { m, dir, path, fd, seqs }
}

/// A tenant parks more one-byte reads of an empty FIFO (opened read-write: it is its own writer,
/// so the reads wait for ever) than the executor's window and the pool's threads hold: another
/// tenant's operations are served meanwhile. The reads then get the bytes written, one each.
pub fn starve_fifo_reads_beyond_the_window_leave_others_served(make: MakeBackend) {
    let Parked { m, dir: _dir, path, seqs, .. } = parked_on_a_fifo(make);
    others_are_served(&m, 2);
    let mut writer = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    writer.write_all(&[7; PARKED]).unwrap();
    for seq in seqs {
        let done = m.wait_completion_timeout(1, seq, T).unwrap();
        assert_eq!(done.result, OpResult::Bytes(vec![7]), "{:?}", done.status);
    }
}

/// Opens of FIFOs never wait for the other end: many opens for reading with no writer complete
/// at once (and hold nothing while their reads wait); an open for writing with no reader is
/// `ENXIO`, as with `O_NONBLOCK`. Another tenant is served meanwhile.
pub fn starve_fifo_opens_never_wait(make: MakeBackend) {
    const OPENS: usize = 64;
    let m = manager(make);
    m.create_ring(1, Some(256), Some(256)).unwrap();
    let dir = rooted(&m, 1);
    for i in 0..OPENS {
        fifo(dir.path(), &format!("fifo{i}"));
    }
    let opens = (0..OPENS).map(|i| entry(1, Op::open(format!("fifo{i}"), O_RDONLY), 0)).collect();
    let seqs = m.submit_batch(1, opens).unwrap();
    let mut fds = Vec::new();
    for seq in seqs {
        let done = m.wait_completion_timeout(1, seq, T).expect("an open of a FIFO without a writer completes");
        let OpResult::Fd(fd) = done.result else { panic!("open for reading: {:?} {:?}", done.status, done.result) };
        fds.push(fd);
    }
    let reads: Vec<u64> = fds.iter().flat_map(|&fd| park_reads(&m, 1, fd, 1)).collect();
    fifo(dir.path(), "lonely");
    let done = run_op(&m, 1, Op::open("lonely", O_WRONLY));
    assert_eq!(done.errno(), Some(libc::ENXIO), "open for writing, no reader: {:?}", done.result);
    others_are_served(&m, 2);
    assert!(still_waiting(&m, 1, reads[0]), "a read of a FIFO no writer opened waits");
    m.destroy_ring(1).unwrap();
}

/// A FIFO opened for reading before any writer came: a read waits for the writer's data (not
/// end of file, which a non-blocking read would report), then for more while the writer stays,
/// and reads end of file once it is gone.
pub fn starve_fifo_read_waits_for_a_writer_then_sees_its_end(make: MakeBackend) {
    let m = manager(make);
    let dir = rooted(&m, 1);
    let path = fifo(dir.path(), "fifo");
    let fd = fd_of(&m, 1, Op::open("fifo", O_RDONLY));
    let read = || m.submit(1, entry(1, Op::Read { fd, size: 16 }, 0)).unwrap();
    let waits = |seq, what| assert!(still_waiting(&m, 1, seq), "{what}");
    let first = read();
    waits(first, "a read before any writer waits for one");
    let mut writer = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    waits(first, "a read waits for data while the writer stays silent");
    writer.write_all(b"hello").unwrap();
    assert_eq!(m.wait_completion_timeout(1, first, T).unwrap().result, OpResult::Bytes(b"hello".to_vec()));
    let second = read();
    waits(second, "a read waits for more while the writer stays");
    drop(writer);
    assert_eq!(m.wait_completion_timeout(1, second, T).unwrap().result, OpResult::Bytes(Vec::new()), "end of file");
    assert_eq!(run_op(&m, 1, Op::Read { fd, size: 16 }).result, OpResult::Bytes(Vec::new()), "still end of file");
}

/// `destroy_ring` stops a tenant's reads parked on a FIFO, on every backend, within a bounded
/// time: their future resolves cancelled, and the FIFO's last reader closes (no operation holds
/// it), so a byte written after is never taken.
pub fn starve_destroy_stops_parked_fifo_reads(make: MakeBackend) {
    let Parked { m, dir: _dir, path, fd, .. } = parked_on_a_fifo(make);
    let future = m.submit_async(1, entry(1, Op::Read { fd, size: 1 }, 0)).unwrap();
    m.destroy_ring(1).unwrap();
    let done =
        crate::support::within(T, "a parked read's future after destroy", move || futures::executor::block_on(future));
    assert!(done.status.is_cancelled(), "{:?} {:?}", done.status, done.result);
    // Opening for writing without waiting fails with ENXIO only once no reader is left: every
    // read let go of the descriptor.
    eventually(T, "every read of the destroyed tenant let go of the FIFO", || {
        let open = std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(&path);
        matches!(open, Err(e) if e.raw_os_error() == Some(libc::ENXIO))
    });
    others_are_served(&m, 2);
}

/// A cancelled read of a FIFO stops and takes nothing: a byte written after it is still there.
pub fn starve_cancel_stops_a_fifo_read(make: MakeBackend) {
    let m = manager(make);
    let dir = rooted(&m, 1);
    let path = fifo(dir.path(), "fifo");
    let fd = fd_of(&m, 1, Op::open("fifo", O_RDONLY));
    // A reader of our own keeps the FIFO open once the tenant's read is gone.
    let mut reader = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(&path).unwrap();
    let seq = m.submit(1, entry(1, Op::Read { fd, size: 1 }, 0)).unwrap();
    std::thread::sleep(WAITING);
    m.cancel(1, seq).unwrap();
    let done = m.wait_completion_timeout(1, seq, T).unwrap();
    assert!(done.status.is_cancelled(), "{:?} {:?}", done.status, done.result);
    let mut writer = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    writer.write_all(b"x").unwrap();
    let mut got = [0u8; 1];
    eventually(T, "the byte written after the cancel is still there", || reader.read(&mut got).is_ok());
    assert_eq!(&got, b"x");
}

/// Character devices read and write through the same path: `/dev/zero` reads zeros (at most
/// 64 KiB a read), `/dev/null` takes what is written and reads as end of file.
pub fn starve_character_devices_read_and_write(make: MakeBackend) {
    let m = manager(make);
    m.set_policy(1, Policy::unrestricted()).unwrap();
    let zero = fd_of(&m, 1, Op::open("/dev/zero", O_RDONLY));
    assert_eq!(run_op(&m, 1, Op::Read { fd: zero, size: 4096 }).result, OpResult::Bytes(vec![0; 4096]));
    // A device that never runs dry gives at most 64 KiB a read (a short count, as read(2) may).
    assert_eq!(run_op(&m, 1, Op::Read { fd: zero, size: 1 << 20 }).result, OpResult::Bytes(vec![0; 64 << 10]));
    let null = fd_of(&m, 1, Op::open("/dev/null", O_RDWR));
    assert_eq!(run_op(&m, 1, Op::Write { fd: null, data: vec![1; 100] }).result, OpResult::Count(100));
    assert_eq!(run_op(&m, 1, Op::Read { fd: null, size: 16 }).result, OpResult::Bytes(Vec::new()));
}
