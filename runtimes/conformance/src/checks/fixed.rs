//! Operations on a process's pool of registered buffers (`ReadFixed`, `WriteFixed`): read into
//! and written from where the buffer lies, given back with every completion however it ends,
//! home to the pool when dropped, and the pool within the process's buffer budget.

use std::time::Duration;

use ai_os_kernel::sandbox::Policy;
use ai_os_kernel::syscalls::open_flags::*;
use ai_os_kernel::syscalls::{
    FixedBuf, MAX_FIXED_BUFFERS, MAX_FIXED_SIZE, OpResult, SyscallCompletionEntry, SyscallOpType as Op, errno,
};
use futures::executor::block_on;

use super::net::{V4, connect_pairs, loopback_policy};
use super::{entry, manager, open, rooted};
use crate::support::{MakeBackend, eventually, run_op};

const T: Duration = Duration::from_secs(30);

/// The registered buffer a completion gives back, with its count; panics if it gives none.
fn fixed_back(done: SyscallCompletionEntry) -> (usize, FixedBuf) {
    match done.result {
        OpResult::Fixed { count, buf } => (count, buf),
        other => panic!("no registered buffer given back: {other:?} ({:?})", done.status),
    }
}

/// Files and sockets: a `WriteFixed` writes its range of the buffer, which comes back as it
/// was; a `ReadFixed` appends to it in place, at an offset or at the position, and never past
/// its capacity. Many rounds through the same few buffers (io_uring registers the pool once
/// per kernel ring) keep the bytes right. On a connected socket they are a send and a receive.
pub fn fixed_buffers_read_and_write_in_place(make: MakeBackend) {
    let m = manager(make);
    let dir = rooted(&m, 1);
    let path = dir.path().join("f.bin");
    let fd = open(&m, 1, "f.bin", O_RDWR | O_CREAT | O_TRUNC);
    let pool = m.register_buffers(1, 2, 4096).unwrap();
    assert_eq!((pool.count(), pool.size(), pool.available(), pool.pid()), (2, 4096, 2, 1));

    let mut buf = pool.take().unwrap();
    let at = buf.as_ptr();
    assert_eq!(buf.extend_from_slice(b"0123456789"), 10);
    let (count, buf) = fixed_back(run_op(&m, 1, Op::WriteFixed { fd, offset: Some(0), buf, range: 2..8 }));
    assert_eq!((count, &buf[..], buf.as_ptr()), (6, &b"0123456789"[..], at), "the same buffer back, untouched");
    assert_eq!(std::fs::read(&path).unwrap(), b"234567");
    // At the position, which moves.
    let (count, mut buf) = fixed_back(run_op(&m, 1, Op::write_fixed(fd, None, buf)));
    assert_eq!(count, 10);
    assert_eq!(std::fs::read(&path).unwrap(), b"0123456789");
    buf.clear();
    buf.extend_from_slice(b">>");
    let (count, buf) = fixed_back(run_op(&m, 1, Op::read_fixed(fd, Some(4), buf)));
    assert_eq!((count, &buf[..], buf.as_ptr()), (6, &b">>456789"[..], at), "appended in place");
    // A size below the room reads no more; at the end of the file nothing is read.
    let (count, mut buf) = fixed_back(run_op(&m, 1, Op::ReadFixed { fd, offset: Some(0), buf, size: 3 }));
    assert_eq!((count, &buf[..]), (3, &b">>456789012"[..]));
    buf.clear();
    let (count, buf) = fixed_back(run_op(&m, 1, Op::read_fixed(fd, Some(100), buf)));
    assert_eq!((count, buf.len()), (0, 0));
    // A file larger than one buffer, read back through both buffers, many times over.
    let big: Vec<u8> = (0..64 * 1024).map(|i| (i % 253) as u8).collect();
    std::fs::write(&path, &big).unwrap();
    let mut bufs = vec![buf, pool.take().unwrap()];
    assert!(pool.take().is_none(), "both taken");
    for round in 0..4 {
        let mut read = Vec::new();
        for (i, chunk) in big.chunks(4096).enumerate() {
            let mut buf = bufs.pop().unwrap();
            buf.clear();
            let (count, buf) = fixed_back(run_op(&m, 1, Op::read_fixed(fd, Some(i as u64 * 4096), buf)));
            assert_eq!(count, chunk.len(), "round {round}, chunk {i}");
            read.extend_from_slice(&buf);
            bufs.insert(0, buf);
        }
        assert!(read == big, "round {round}: the file read back through the pool differs");
    }
    drop(bufs);
    assert_eq!(pool.available(), 2, "dropped buffers go home");

    // Sockets.
    m.set_policy(2, loopback_policy()).unwrap();
    let pairs = connect_pairs(&m, 2, 2, V4, 1);
    let (s, c) = pairs[0];
    let spool = m.register_buffers(2, 2, 64).unwrap();
    let parked = m.submit_async(2, Op::read_fixed(s, None, spool.take().unwrap())).unwrap();
    let mut out = spool.take().unwrap();
    out.extend_from_slice(b"--hello--");
    let (count, out) = fixed_back(run_op(&m, 2, Op::WriteFixed { fd: c, offset: None, buf: out, range: 2..7 }));
    assert_eq!((count, &out[..]), (5, &b"--hello--"[..]));
    let (count, got) = fixed_back(block_on(parked));
    assert_eq!((count, &got[..]), (5, &b"hello"[..]));
    eventually(T, "every operation retired", || m.stats().pending == 0);
}

/// A registered buffer comes back with every completion, however the operation ends: a bad
/// descriptor, an offset on a FIFO-less stream, a size past its spare capacity, a range outside
/// it, another process's buffer (all refused, the buffer as it was), a receive cancelled while
/// it waits, a ring destroyed with the read queued. One whose completion is never taken (its
/// future dropped) goes back to its pool.
pub fn fixed_buffers_come_back_however_they_end(make: MakeBackend) {
    let m = manager(make);
    m.set_policy(1, loopback_policy()).unwrap();
    let pool = m.register_buffers(1, 4, 16).unwrap();
    let mut buf = pool.take().unwrap();
    buf.extend_from_slice(b"kept");
    let done = run_op(&m, 1, Op::read_fixed(77, Some(0), buf));
    assert_eq!(done.errno(), Some(errno::EBADF), "{:?}", done.status);
    let (count, buf) = fixed_back(done);
    assert_eq!((count, &buf[..]), (0, &b"kept"[..]));
    let done = run_op(&m, 1, Op::ReadFixed { fd: 77, offset: Some(0), buf, size: 13 });
    assert_eq!(done.errno(), Some(errno::EINVAL), "past the spare capacity: {:?}", done.status);
    let buf = fixed_back(done).1;
    let done = run_op(&m, 1, Op::WriteFixed { fd: 77, offset: Some(0), buf, range: 2..5 });
    assert_eq!(done.errno(), Some(errno::EINVAL), "a range outside: {:?}", done.status);
    let buf = fixed_back(done).1;
    let done = run_op(&m, 1, Op::ReadFixed { fd: 77, offset: Some(u64::MAX), buf, size: 1 });
    assert_eq!(done.errno(), Some(errno::EINVAL), "an offset past i64::MAX: {:?}", done.status);
    let buf = fixed_back(done).1;
    // Another process may not use it; the buffer comes back to the caller.
    let done = run_op(&m, 2, Op::write_fixed(3, Some(0), buf));
    assert_eq!(done.errno(), Some(errno::EINVAL), "another process's buffer: {:?}", done.status);
    let (_, buf) = fixed_back(done);
    assert_eq!((&buf[..], buf.pid()), (&b"kept"[..], Some(1)));

    // Cancelled while it waits for data.
    let pairs = connect_pairs(&m, 1, 1, V4, 1);
    let (s, _c) = pairs[0];
    let seq = m.submit(1, entry(1, Op::read_fixed(s, None, buf), 5)).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    m.cancel(1, seq).unwrap();
    let done = m.wait_completion_timeout(1, seq, T).unwrap();
    assert!(done.status.is_cancelled(), "{:?}", done.status);
    let (count, buf) = fixed_back(done);
    assert_eq!((count, &buf[..]), (0, &b"kept"[..]));
    // A dropped future's buffer goes home once its receive stopped.
    assert_eq!(pool.available(), 3);
    drop(m.submit_async(1, Op::read_fixed(s, None, pool.take().unwrap())).unwrap());
    eventually(T, "the dropped receive's buffer went home", || m.stats().pending == 0 && pool.available() == 3);
    drop(buf);
    assert_eq!(pool.available(), 4);

    // Destroyed while a receive waits: its future resolves `Cancelled` at once, and its buffer,
    // which the run had, goes home once the run stopped. The pool is unregistered (no buffer is
    // taken from it again); the buffers out stay usable memory.
    let parked = m.submit_async(1, Op::read_fixed(s, None, pool.take().unwrap())).unwrap();
    let kept = pool.take().unwrap();
    m.destroy_ring(1).unwrap();
    let done = block_on(parked);
    assert!(done.status.is_cancelled(), "{:?}", done.status);
    if let OpResult::Fixed { buf, .. } = done.result {
        assert_eq!(buf.pid(), Some(1));
    }
    assert!(pool.take().is_none(), "an unregistered pool gives no buffer");
    eventually(T, "late completions retired", || m.stats().pending == 0 && pool.available() == 3);
    drop(kept);
    assert_eq!(pool.available(), 4);
}

/// The pool's limits: one per process (`EBUSY`), its size within the buffer budget (`ENOMEM`,
/// nothing allocated and nothing left counted) and within the pool's own limits (`EINVAL`); its
/// memory counts against the budget until it is unregistered, when reads may use it again; a
/// buffer used after its pool was unregistered is plain memory, read and written as before.
pub fn fixed_pools_keep_their_limits(make: MakeBackend) {
    let m = manager(make);
    let dir = tempfile::tempdir().unwrap();
    m.set_policy(1, Policy::rooted(dir.path()).read_write().max_buffered_bytes(64 * 1024)).unwrap();
    for (count, size) in [(0, 16), (MAX_FIXED_BUFFERS + 1, 16), (1, 0), (1, MAX_FIXED_SIZE + 1), (1, usize::MAX)] {
        let e = m.register_buffers(1, count, size).unwrap_err();
        assert!(
            [Some(errno::EINVAL), Some(libc::ENOMEM)].contains(&e.raw_os_error()),
            "{count} buffers of {size} bytes: {e}"
        );
    }
    let e = m.register_buffers(1, 2, 64 * 1024).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOMEM), "past the budget: {e}");
    let pool = m.register_buffers(1, 12, 4096).unwrap();
    assert_eq!(m.register_buffers(1, 1, 16).unwrap_err().raw_os_error(), Some(libc::EBUSY));
    // 48 KiB of 64 are the pool's: a read that asks 32 KiB is over the budget.
    let fd = open(&m, 1, "p.bin", O_RDWR | O_CREAT | O_TRUNC);
    let done = run_op(&m, 1, Op::ReadAt { fd, offset: 0, size: 32 * 1024 });
    assert_eq!(done.errno(), Some(libc::ENOMEM), "{:?}", done.status);
    let mut out = pool.take().unwrap();
    out.extend_from_slice(b"still memory");
    assert!(m.unregister_buffers(1));
    assert!(!m.unregister_buffers(1), "it had none left");
    assert!(pool.take().is_none());
    // Its memory stays counted while it lives (its handle, a buffer out): pools made and
    // unregistered in turn hold no more than the budget.
    let done = run_op(&m, 1, Op::ReadAt { fd, offset: 0, size: 32 * 1024 });
    assert_eq!(done.errno(), Some(libc::ENOMEM), "{:?}", done.status);
    let (count, mut out) = fixed_back(run_op(&m, 1, Op::write_fixed(fd, Some(0), out)));
    assert_eq!(count, 12);
    out.clear();
    let (count, out) = fixed_back(run_op(&m, 1, Op::read_fixed(fd, Some(0), out)));
    assert_eq!((count, &out[..]), (12, &b"still memory"[..]));
    drop((out, pool));
    // Freed: the budget is back (a kernel ring that held the pool let it go at its next
    // submission, the two above).
    let freed = || run_op(&m, 1, Op::ReadAt { fd, offset: 0, size: 32 * 1024 }).status.is_success();
    eventually(T, "the freed pool's memory back in the budget", freed);
    // A new pool may be registered, and works.
    let again = m.register_buffers(1, 1, 8).unwrap();
    let (count, back) = fixed_back(run_op(&m, 1, Op::read_fixed(fd, Some(6), again.take().unwrap())));
    assert_eq!((count, &back[..]), (6, &b"memory"[..]));
    drop(back);
    eventually(T, "every operation retired", || m.stats().pending == 0);
}
