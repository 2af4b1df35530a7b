//! Operations that carry the caller's buffer (`ReadInto`, `WriteFrom`): read into it and
//! written from it where it lies, and given back with every completion, however the operation
//! ends.

use std::time::Duration;

use ai_os_kernel::sandbox::Policy;
use ai_os_kernel::syscalls::open_flags::*;
use ai_os_kernel::syscalls::{OpResult, SyscallCompletionEntry, SyscallOpType as Op, SyscallSubmissionEntry, errno};
use futures::executor::block_on;

use super::net::{V4, connect_pairs, loopback_policy, recv_exact, send_all};
use super::{entry, held, manager, mkfifo, open, rooted};
use crate::support::{MakeBackend, eventually, run_op};

const T: Duration = Duration::from_secs(30);

/// The buffer a completion gives back, with its count; panics if it gives none.
fn given_back(done: SyscallCompletionEntry) -> (usize, Vec<u8>) {
    match done.result {
        OpResult::Buf { count, buf } => (count, buf),
        other => panic!("no buffer given back: {other:?} ({:?})", done.status),
    }
}

/// A buffer holding `prefix`, with room for `room` bytes more.
fn buffer(prefix: &[u8], room: usize) -> Vec<u8> {
    let mut buf = Vec::with_capacity(prefix.len() + room);
    buf.extend_from_slice(prefix);
    buf
}

/// Files: a `ReadInto` appends to the caller's buffer in place (the same allocation, when it has
/// room), at an offset or at the position (which it moves); one asking more than the room grows
/// the buffer; a `WriteFrom` writes its range of the buffer and gives it back untouched, so a
/// short write can go on from where it stopped. Errors (a bad descriptor, an offset on a FIFO,
/// an offset past `i64::MAX`, a range outside the buffer) give the buffer back as it was.
pub fn owned_buffers_on_files(make: MakeBackend) {
    let m = manager(make);
    let dir = rooted(&m, 1);
    let path = dir.path().join("b.bin");
    let fd = open(&m, 1, "b.bin", O_RDWR | O_CREAT | O_TRUNC);

    let data = b"0123456789abcdef".to_vec();
    let at = data.as_ptr();
    let done = run_op(&m, 1, Op::WriteFrom { fd, offset: Some(0), buf: data, range: 4..10 });
    assert!(done.status.is_success(), "{:?}", done.status);
    let (count, data) = given_back(done);
    assert_eq!((count, data.as_ptr()), (6, at), "the same buffer back");
    assert_eq!(data, b"0123456789abcdef", "untouched");
    assert_eq!(std::fs::read(&path).unwrap(), b"456789");
    // At the position, which moves; the whole buffer with `write_from`.
    let (count, _) = given_back(run_op(&m, 1, Op::write_from(fd, None, b"xyz".to_vec())));
    assert_eq!(count, 3);
    assert_eq!(std::fs::read(&path).unwrap(), b"xyz789");
    assert_eq!(run_op(&m, 1, Op::Lseek { fd, offset: 0, whence: 1 }).result, OpResult::Offset(3));

    let buf = buffer(b">>", 64);
    let at = buf.as_ptr();
    let (count, buf) = given_back(run_op(&m, 1, Op::read_into(fd, Some(1), buf)));
    assert_eq!((count, buf.as_slice(), buf.as_ptr()), (5, &b">>yz789"[..], at), "appended in place");
    // At the position (3), which moves to the end.
    let (count, buf) = given_back(run_op(&m, 1, Op::read_into(fd, None, buf)));
    assert_eq!((count, buf.as_slice()), (3, &b">>yz789789"[..]));
    assert_eq!(run_op(&m, 1, Op::Lseek { fd, offset: 0, whence: 1 }).result, OpResult::Offset(6));
    // More than the room: the buffer grows; at the end of the file, nothing is read.
    let (count, buf) = given_back(run_op(&m, 1, Op::ReadInto { fd, offset: Some(0), buf: Vec::new(), size: 100 }));
    assert_eq!((count, buf.as_slice()), (6, &b"xyz789"[..]));
    let (count, buf) = given_back(run_op(&m, 1, Op::ReadInto { fd, offset: Some(6), buf, size: 10 }));
    assert_eq!((count, buf.as_slice()), (0, &b"xyz789"[..]));
    // A `size` below the room reads no more than it.
    let (count, buf) = given_back(run_op(&m, 1, Op::ReadInto { fd, offset: Some(0), buf: buffer(b"", 64), size: 2 }));
    assert_eq!((count, buf.as_slice()), (2, &b"xy"[..]));

    // Failures give the buffer back as it was.
    let failed = |op: Op, errno: i32| {
        let done = run_op(&m, 1, op);
        assert_eq!(done.errno(), Some(errno), "{:?}", done.status);
        given_back(done)
    };
    let (count, buf) = failed(Op::read_into(77, Some(0), buffer(b"kept", 8)), errno::EBADF);
    assert_eq!((count, buf.as_slice()), (0, &b"kept"[..]));
    let (_, buf) = failed(Op::write_from(77, None, b"kept".to_vec()), errno::EBADF);
    assert_eq!(buf, b"kept");
    let (_, buf) = failed(Op::WriteFrom { fd, offset: None, buf: b"abc".to_vec(), range: 2..9 }, errno::EINVAL);
    assert_eq!(buf, b"abc");
    let (_, buf) = failed(Op::read_into(fd, Some(i64::MAX as u64 + 1), buffer(b"k", 4)), errno::EINVAL);
    assert_eq!(buf, b"k");
    let read_only = open(&m, 1, "b.bin", O_RDONLY);
    let (_, buf) = failed(Op::write_from(read_only, Some(0), b"no".to_vec()), errno::EBADF);
    assert_eq!(buf, b"no");
    assert_eq!(std::fs::read(&path).unwrap(), b"xyz789", "no failed write wrote");
    mkfifo(&dir.path().join("fifo"));
    let fifo = open(&m, 1, "fifo", O_RDWR);
    let (_, buf) = failed(Op::read_into(fifo, Some(0), buffer(b"p", 4)), libc::ESPIPE);
    assert_eq!(buf, b"p");
    // A FIFO at its position is read and written as a stream.
    let (count, _) = given_back(run_op(&m, 1, Op::write_from(fifo, None, b"pipe".to_vec())));
    assert_eq!(count, 4);
    let (count, buf) = given_back(run_op(&m, 1, Op::read_into(fifo, None, buffer(b"<", 16))));
    assert_eq!((count, buf.as_slice()), (4, &b"<pipe"[..]));
    // A short write ends its linked chain, as a `Write`'s does: more than a pipe holds.
    let big = vec![1u8; 200 << 10];
    let seqs = m.submit_linked(1, vec![entry(1, Op::write_from(fifo, None, big), 0), entry(1, Op::Fsync { fd }, 1)]);
    let done: Vec<_> = seqs.unwrap().iter().map(|&s| m.wait_completion_timeout(1, s, T).unwrap()).collect();
    let (count, buf) = given_back(done[0].clone());
    assert!(count > 0 && count < buf.len(), "a short write: {count} of {}", buf.len());
    assert!(done[1].status.is_cancelled(), "the chain ended: {:?}", done[1].status);
    assert_eq!(m.stats().pending, 0);

    // The buffer budget counts what the crate allocates, not the caller's own memory: a read
    // into a large buffer of the caller's fits a small budget; one that must grow the buffer
    // past it is refused (`ENOMEM`), with the buffer back.
    m.set_policy(1, Policy::rooted(dir.path()).read_write().max_buffered_bytes(1024)).unwrap();
    let (count, buf) = given_back(run_op(&m, 1, Op::read_into(fd, Some(0), Vec::with_capacity(64 << 10))));
    assert_eq!((count, buf.as_slice()), (6, &b"xyz789"[..]));
    let done = run_op(&m, 1, Op::ReadInto { fd, offset: Some(0), buf: b"g".to_vec(), size: 2048 });
    assert_eq!(done.errno(), Some(libc::ENOMEM), "{:?}", done.status);
    assert_eq!(given_back(done), (0, b"g".to_vec()));
}

/// Sockets: a `ReadInto` at the position of a connected socket waits for data as a receive,
/// and appends it; a `WriteFrom` sends its range. A parked receive cancelled, or stopped by its
/// deadline, gives its buffer back with `Cancelled` or `ETIMEDOUT`; so does a receive whose
/// future is dropped (nothing is left over: the next receive gets the next bytes).
pub fn owned_buffers_on_sockets(make: MakeBackend) {
    let m = manager(make);
    m.set_policy(1, loopback_policy()).unwrap();
    let pairs = connect_pairs(&m, 1, 1, V4, 1);
    let (s, c) = pairs[0];

    let parked = m.submit_async(1, Op::read_into(s, None, buffer(b"[", 32))).unwrap();
    let (count, _) =
        given_back(run_op(&m, 1, Op::WriteFrom { fd: c, offset: None, buf: b"--hello--".to_vec(), range: 2..7 }));
    assert_eq!(count, 5);
    let done = block_on(parked);
    assert!(done.status.is_success(), "{:?}", done.status);
    let (count, buf) = given_back(done);
    assert_eq!((count, buf.as_slice()), (5, &b"[hello"[..]));

    // Cancelled while it waits.
    let seq = m.submit(1, entry(1, Op::read_into(s, None, buffer(b"c", 8)), 5)).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    m.cancel(1, seq).unwrap();
    let done = m.wait_completion_timeout(1, seq, T).unwrap();
    assert!(done.status.is_cancelled(), "{:?}", done.status);
    assert_eq!(given_back(done), (0, b"c".to_vec()));
    // Stopped by its deadline.
    let late = SyscallSubmissionEntry::new(1, Op::read_into(s, None, buffer(b"d", 8)), 6)
        .with_deadline(Duration::from_millis(30));
    let seq = m.submit(1, late).unwrap();
    let done = m.wait_completion_timeout(1, seq, T).unwrap();
    assert_eq!(done.errno(), Some(libc::ETIMEDOUT), "{:?}", done.status);
    assert_eq!(given_back(done), (0, b"d".to_vec()));
    // A dropped future's receive, once it has stopped, took nothing: the next one gets the
    // bytes. (Stopping is best effort: bytes that come while the receive is being stopped may
    // be taken by it and discarded, as io_uring's cancellation may lose to a completion.)
    drop(m.submit_async(1, Op::read_into(s, None, buffer(b"", 8))).unwrap());
    eventually(T, "the dropped receive stopped", || m.stats().pending == 0);
    send_all(&m, 1, c, b"after");
    assert_eq!(recv_exact(&m, 1, s, 5), b"after");
    // A large send from the middle of a buffer arrives whole, in as many sends as it takes.
    let big: Vec<u8> = (0..(1 << 20)).map(|i| (i % 251) as u8).collect();
    let reader = {
        let m = m.clone();
        std::thread::spawn(move || recv_exact(&m, 1, s, (1 << 20) - 100))
    };
    let mut from = 100;
    let mut buf = big;
    while from < buf.len() {
        let (n, back) = given_back(run_op(&m, 1, Op::WriteFrom { fd: c, offset: None, range: from..buf.len(), buf }));
        assert!(n > 0);
        (from, buf) = (from + n, back);
    }
    assert_eq!(reader.join().unwrap(), buf[100..]);
    eventually(T, "every operation retired", || m.stats().pending == 0);
}

/// Operations that never run give their buffers back too: refused at submission (a transfer
/// past the policy's limit), cancelled in the queue, cut off when their chain fails, and ended
/// by `destroy_ring` (their futures resolve `Cancelled` with the buffer).
pub fn owned_buffers_come_back_unrun(make: MakeBackend) {
    let m = manager(make);
    m.set_policy(1, Policy::unrestricted().max_io_bytes(16)).unwrap();
    let done = run_op(&m, 1, Op::write_from(3, Some(0), vec![7; 17]));
    assert_eq!(done.errno(), Some(errno::EACCES), "{:?}", done.status);
    assert_eq!(given_back(done), (0, vec![7; 17]));
    let done = run_op(&m, 1, Op::ReadInto { fd: 3, offset: Some(0), buf: b"r".to_vec(), size: 17 });
    assert_eq!(done.errno(), Some(errno::EACCES));
    assert_eq!(given_back(done).1, b"r");
    // A chain whose first operation fails: the rest complete `Cancelled`, with their buffers.
    let chain = vec![
        entry(1, Op::read_into(77, Some(0), buffer(b"1", 4)), 1),
        entry(1, Op::read_into(77, Some(0), buffer(b"2", 4)), 2),
        entry(1, Op::write_from(77, Some(0), b"3".to_vec()), 3),
    ];
    let seqs = m.submit_linked(1, chain).unwrap();
    let ends: Vec<_> = seqs.iter().map(|&s| m.wait_completion_timeout(1, s, T).unwrap()).collect();
    assert_eq!(ends[0].errno(), Some(errno::EBADF));
    assert!(ends[1].status.is_cancelled() && ends[2].status.is_cancelled(), "{ends:?}");
    let bufs: Vec<Vec<u8>> = ends.into_iter().map(|e| given_back(e).1).collect();
    assert_eq!(bufs, [b"1".to_vec(), b"2".to_vec(), b"3".to_vec()]);

    // A submission the ring refuses outright has no completion: `submit_from` leaves the entry,
    // buffer and all, with the caller; one accepted takes it.
    m.create_ring(2, Some(1), Some(1)).unwrap();
    let busy = m.submit(2, Op::Timeout { duration: Duration::from_secs(60) }).unwrap();
    let mut slot = Some(entry(2, Op::write_from(3, Some(0), b"mine".to_vec()), 0));
    assert!(m.submit_async_from(2, &mut slot).is_err(), "a full ring");
    let Some(SyscallSubmissionEntry { op: Op::WriteFrom { buf, .. }, .. }) = &slot else { panic!("the entry left") };
    assert_eq!(buf, b"mine");
    m.cancel(2, busy).unwrap();
    assert!(m.wait_completion_timeout(2, busy, T).unwrap().status.is_cancelled());
    let seq = m.submit_from(2, &mut slot).unwrap();
    assert!(slot.is_none(), "accepted: the ring took it");
    assert_eq!(given_back(m.wait_completion_timeout(2, seq, T).unwrap()).1, b"mine");

    // Behind an operation that holds the only place: cancelled in the queue.
    let (m, gate) = held(make, 1);
    let running = m.submit(1, entry(1, Op::Nop, 0)).unwrap();
    eventually(T, "first op running", || gate.arrived.load(std::sync::atomic::Ordering::SeqCst) == 1);
    let queued = m.submit(1, entry(1, Op::read_into(77, Some(0), buffer(b"q", 4)), 0)).unwrap();
    m.cancel(1, queued).unwrap();
    let done = m.wait_completion_timeout(1, queued, T).unwrap();
    assert!(done.status.is_cancelled(), "{:?}", done.status);
    assert_eq!(given_back(done), (0, b"q".to_vec()));
    // Destroyed while queued: the future resolves `Cancelled` with its buffer.
    let fut = m.submit_async(1, Op::write_from(77, Some(0), b"w".to_vec())).unwrap();
    m.destroy_ring(1).unwrap();
    let done = block_on(fut);
    assert!(done.status.is_cancelled(), "{:?}", done.status);
    assert_eq!(given_back(done), (0, b"w".to_vec()));
    gate.open();
    let _ = m.wait_completion_timeout(1, running, Duration::from_millis(1));
    eventually(T, "late completions retired", || m.stats().pending == 0);

    // A backend outside the crate (a wrapper holding operations at a gate) that ends one
    // without running it gives the buffer back through the public API.
    let (m, gate) = held(make, 1);
    let running = m.submit(1, entry(1, Op::read_into(77, Some(0), buffer(b"g", 4)), 0)).unwrap();
    eventually(T, "the read waits at the gate", || gate.arrived.load(std::sync::atomic::Ordering::SeqCst) == 1);
    m.cancel(1, running).unwrap();
    let done = m.wait_completion_timeout(1, running, T).unwrap();
    assert!(done.status.is_cancelled(), "{:?}", done.status);
    assert_eq!(given_back(done), (0, b"g".to_vec()));
}
