//! Hostile requests: no signal, no aborting allocation, sockets that wait on every backend.

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

use ai_os_kernel::Pid;
use ai_os_kernel::syscalls::open_flags::*;
use ai_os_kernel::syscalls::{IoUringManager, OpResult, SyscallCompletionEntry, SyscallOpType as Op};

use super::net::{bound, connect_pairs, loopback_policy, recv_exact};
use super::{entry, manager, rooted};
use crate::support::{MakeBackend, eventually, run_op};

/// Expands to one `#[test]` per check of this module (called by `conformance_tests!`).
#[doc(hidden)]
#[macro_export]
macro_rules! __hostile_checks {
    ($make:expr, $block_on:expr) => {
        $crate::__sync_checks!($make;
            hostile_write_to_a_closed_peer_is_epipe_not_sigpipe, hostile_write_to_a_readerless_fifo_is_epipe_not_sigpipe,
            hostile_write_cut_short_by_a_closing_fifo_reader_is_no_sigpipe,
            hostile_huge_file_reads_allocate_what_the_file_holds, hostile_huge_receives_allocate_what_arrived,
            hostile_socket_read_waits_like_recv, hostile_socket_write_waits_like_send, hostile_socket_read_is_cancellable,
            hostile_parked_socket_reads_hold_no_window, hostile_parked_receives_never_surface_eagain,
            hostile_dontwait_receives_wait_too, hostile_receive_flags_that_would_spin_are_refused,
        );
    };
}

const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const T: Duration = Duration::from_secs(30);
/// How long an operation that must wait is watched not completing.
const WAITING: Duration = Duration::from_millis(100);
/// A read far larger than what there is to read.
const HUGE: usize = 64 << 20;
/// The most a 5-byte result may keep allocated.
const SMALL: usize = 64 << 10;

/// Gives SIGPIPE its default action (death) in this test process, as in a host that does not
/// ignore it (Rust binaries ignore it from `main` on, which would hide the signal): from then on
/// a SIGPIPE raised by the crate kills the test binary, which is the failure these checks detect.
fn sigpipe_kills() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // SAFETY: setting a signal's disposition to its default installs no handler.
    ONCE.call_once(|| assert_ne!(unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) }, libc::SIG_ERR));
}

/// One connected TCP pair of `pid` on loopback: (server end, client end).
fn tcp_pair(m: &IoUringManager, pid: Pid) -> (i32, i32) {
    connect_pairs(m, pid, pid, V4, 1)[0]
}

/// Sends all of `data` on `fd` in one `Send` (a few bytes, which always fit).
fn send_small(m: &IoUringManager, pid: Pid, fd: i32, data: &[u8]) {
    let done = run_op(m, pid, Op::Send { sockfd: fd, data: data.to_vec(), flags: 0 });
    assert_eq!(done.result, OpResult::Count(data.len()), "{:?}", done.status);
}

fn bytes(done: SyscallCompletionEntry, what: &str) -> Vec<u8> {
    match done.result {
        OpResult::Bytes(b) => b,
        other => panic!("{what}: {other:?} ({:?})", done.status),
    }
}

/// Writes to `fd` until one fails, and returns its errno (every write before must succeed).
fn write_until_error(m: &IoUringManager, pid: Pid, op: impl Fn() -> Op) -> i32 {
    // The peer's close has been processed when `Close` completed (loopback runs the handshake in
    // the closing call): the first write draws the peer's reset, the second sees it.
    for _ in 0..8 {
        let done = run_op(m, pid, op());
        match done.errno() {
            None => assert!(
                matches!(done.result, OpResult::Count(n) | OpResult::Buf { count: n, .. } if n > 0),
                "{:?}",
                done.result
            ),
            Some(e) => return e,
        }
    }
    panic!("8 writes to a closed peer all succeeded");
}

/// `Write` and `Send` to a TCP peer that closed complete with `EPIPE` instead of raising SIGPIPE
/// in the host (which would kill this test binary).
pub fn hostile_write_to_a_closed_peer_is_epipe_not_sigpipe(make: MakeBackend) {
    sigpipe_kills();
    let m = manager(make);
    m.set_policy(1, loopback_policy()).unwrap();
    for via in ["write", "send", "write_from"] {
        let (server, client) = tcp_pair(&m, 1);
        // Closed with nothing unread: a FIN, so the reset the next write draws is `EPIPE`
        // (the peer closed for writing and for good), not `ECONNRESET`.
        assert!(run_op(&m, 1, Op::Close { fd: server }).status.is_success());
        let e = write_until_error(&m, 1, || {
            let data = b"into the void".to_vec();
            match via {
                "send" => Op::Send { sockfd: client, data, flags: 0 },
                "write" => Op::Write { fd: client, data },
                _ => Op::write_from(client, None, data),
            }
        });
        assert_eq!(e, libc::EPIPE, "{via}");
    }
}

/// A FIFO in pid 1's new read-write root, a host-side reader of it (non-blocking, so that the
/// tenant's write-only open need not wait for one), and the tenant's write-only descriptor.
fn fifo_opened_for_writing(m: &ai_os_kernel::syscalls::IoUringManager) -> (tempfile::TempDir, std::fs::File, i32) {
    let dir = rooted(m, 1);
    let path = dir.path().join("fifo");
    super::mkfifo(&path);
    let reader = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(&path).unwrap();
    let OpResult::Fd(fd) = run_op(m, 1, Op::open("fifo", O_WRONLY)).result else { panic!("open fifo") };
    (dir, reader, fd)
}

/// `Write` to a FIFO whose reader went away completes with `EPIPE` instead of raising SIGPIPE.
pub fn hostile_write_to_a_readerless_fifo_is_epipe_not_sigpipe(make: MakeBackend) {
    sigpipe_kills();
    let m = manager(make);
    let (_dir, reader, fd) = fifo_opened_for_writing(&m);
    let done = run_op(&m, 1, Op::Write { fd, data: b"heard".to_vec() });
    assert_eq!(done.result, OpResult::Count(5), "{:?}", done.status);
    drop(reader);
    for _ in 0..3 {
        let done = run_op(&m, 1, Op::Write { fd, data: b"unheard".to_vec() });
        assert_eq!(done.errno(), Some(libc::EPIPE), "{:?}", done.result);
    }
    // A pipe has no offsets.
    let done = run_op(&m, 1, Op::WriteAt { fd, offset: 0, data: b"x".to_vec() });
    assert_eq!(done.errno(), Some(libc::ESPIPE), "{:?}", done.result);
}

/// A `Write` to a FIFO whose reader goes away while the pipe is full (a write that has started
/// and is cut short: the kernel raises SIGPIPE with a short count, not with `EPIPE`) completes
/// with what it wrote or `EPIPE`, and raises nothing in the host.
pub fn hostile_write_cut_short_by_a_closing_fifo_reader_is_no_sigpipe(make: MakeBackend) {
    use std::os::fd::AsRawFd;
    sigpipe_kills();
    let m = manager(make);
    let (_dir, reader, fd) = fifo_opened_for_writing(&m);
    const BIG: usize = 1 << 20;
    let seq = m.submit(1, entry(1, Op::Write { fd, data: vec![7; BIG] }, 0)).unwrap();
    // SAFETY: F_GETPIPE_SZ and FIONREAD on a descriptor this function owns; FIONREAD writes one
    // int into `queued`.
    let capacity = unsafe { libc::fcntl(reader.as_raw_fd(), libc::F_GETPIPE_SZ) };
    assert!(capacity > 0);
    eventually(T, "the write filled the pipe", || {
        let mut queued: libc::c_int = 0;
        // SAFETY: as above.
        unsafe { libc::ioctl(reader.as_raw_fd(), libc::FIONREAD, &mut queued) };
        queued >= capacity
    });
    drop(reader);
    let done = m.wait_completion_timeout(1, seq, T).unwrap();
    match (done.errno(), &done.result) {
        (None, OpResult::Count(n)) => assert!((1..BIG).contains(n), "wrote {n}"),
        (Some(e), _) => assert_eq!(e, libc::EPIPE, "{:?}", done.status),
        other => panic!("{other:?}"),
    }
    let done = run_op(&m, 1, Op::Write { fd, data: b"unheard".to_vec() });
    assert_eq!(done.errno(), Some(libc::EPIPE), "{:?}", done.result);
}

/// A 64 MiB `ReadAt` or `Read` of a 5-byte file returns its 5 bytes without keeping (or
/// allocating) 64 MiB.
pub fn hostile_huge_file_reads_allocate_what_the_file_holds(make: MakeBackend) {
    let m = manager(make);
    let dir = rooted(&m, 1);
    std::fs::File::create(dir.path().join("small")).unwrap().write_all(b"small").unwrap();
    let OpResult::Fd(fd) = run_op(&m, 1, Op::open("small", O_RDONLY)).result else { panic!("open") };
    for (op, what) in [
        (Op::ReadAt { fd, offset: 0, size: HUGE }, "pread at 0"),
        (Op::ReadAt { fd, offset: 2, size: HUGE }, "pread at 2"),
        (Op::ReadAt { fd, offset: 1 << 40, size: HUGE }, "pread past the end"),
        (Op::Read { fd, size: HUGE }, "read"),
        (Op::Read { fd, size: HUGE }, "read at the end"),
    ] {
        let got = bytes(run_op(&m, 1, op), what);
        let expect: &[u8] = match what {
            "pread at 0" | "read" => b"small",
            "pread at 2" => b"all",
            _ => b"",
        };
        assert_eq!(got, expect, "{what}");
        assert!(got.capacity() < SMALL, "{what}: {} bytes kept for {}", got.capacity(), got.len());
    }
    // The same into the caller's empty buffer: it grows by what the file can fill, and what
    // the read did not fill is given back.
    for (offset, expect) in [(Some(0), &b"small"[..]), (Some(2), b"all"), (None, b"")] {
        let done = run_op(&m, 1, Op::ReadInto { fd, offset, buf: Vec::new(), size: HUGE });
        assert!(done.status.is_success(), "read_into at {offset:?}: {:?}", done.status);
        let OpResult::Buf { buf, .. } = done.result else { panic!("read_into: no buffer back") };
        assert_eq!(buf, expect, "read_into at {offset:?} (the position is at the end)");
        assert!(buf.capacity() < SMALL, "read_into: {} bytes kept for {}", buf.capacity(), buf.len());
    }
}

/// A 64 MiB `Recv` with 5 bytes queued, and a 64 MiB `RecvFrom` of a 5-byte datagram, return
/// them without keeping 64 MiB.
pub fn hostile_huge_receives_allocate_what_arrived(make: MakeBackend) {
    let m = manager(make);
    m.set_policy(1, loopback_policy()).unwrap();
    let (server, client) = tcp_pair(&m, 1);
    send_small(&m, 1, client, b"small");
    let got = bytes(run_op(&m, 1, Op::Recv { sockfd: server, size: HUGE, flags: 0 }), "recv");
    assert_eq!(got, b"small");
    assert!(got.capacity() < SMALL, "recv: {} bytes kept for {}", got.capacity(), got.len());
    // The same through `Read` of the socket.
    send_small(&m, 1, client, b"again");
    let got = bytes(run_op(&m, 1, Op::Read { fd: server, size: HUGE }), "read");
    assert_eq!(got, b"again");
    assert!(got.capacity() < SMALL, "read: {} bytes kept for {}", got.capacity(), got.len());
    // And into the caller's empty buffer.
    send_small(&m, 1, client, b"third");
    let done = run_op(&m, 1, Op::ReadInto { fd: server, offset: None, buf: Vec::new(), size: HUGE });
    let OpResult::Buf { buf, .. } = done.result else { panic!("read_into: {:?}", done.status) };
    assert_eq!(buf, b"third");
    assert!(buf.capacity() < SMALL, "read_into: {} bytes kept for {}", buf.capacity(), buf.len());
    // Cancelled while it waits: the buffer comes back without the room made for the wait.
    let parked = Op::ReadInto { fd: server, offset: None, buf: Vec::new(), size: HUGE };
    let seq = m.submit(1, entry(1, parked, 0)).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    m.cancel(1, seq).unwrap();
    let done = m.wait_completion_timeout(1, seq, T).unwrap();
    assert!(done.status.is_cancelled(), "{:?}", done.status);
    let OpResult::Buf { buf, .. } = done.result else { panic!("a cancelled read_into gave no buffer back") };
    assert!(buf.capacity() < SMALL, "cancelled read_into: {} bytes kept", buf.capacity());

    let (a, _) = bound(&m, 1, V4, libc::SOCK_DGRAM);
    let (b, b_addr) = bound(&m, 1, V4, libc::SOCK_DGRAM);
    let sent = run_op(&m, 1, Op::SendTo { sockfd: a, data: b"gram".to_vec(), addr: b_addr, flags: 0 });
    assert_eq!(sent.result, OpResult::Count(4), "{:?}", sent.status);
    let done = run_op(&m, 1, Op::RecvFrom { sockfd: b, size: HUGE, flags: 0 });
    let OpResult::Datagram { data, .. } = done.result else { panic!("recvfrom: {:?}", done.status) };
    assert_eq!(data, b"gram");
    assert!(data.capacity() < SMALL, "recvfrom: {} bytes kept for {}", data.capacity(), data.len());
}

/// `Read` of a connected socket with nothing queued waits (as `Recv`, and as read(2) of a
/// blocking socket) until the peer sends; `ReadAt` of a socket is `ESPIPE`.
pub fn hostile_socket_read_waits_like_recv(make: MakeBackend) {
    let m = manager(make);
    m.set_policy(1, loopback_policy()).unwrap();
    let (server, client) = tcp_pair(&m, 1);
    let seq = m.submit(1, entry(1, Op::Read { fd: server, size: 64 }, 0)).unwrap();
    let early = m.wait_completion_timeout(1, seq, WAITING);
    assert!(early.is_err(), "a read of an empty socket completed at once: {early:?}");
    send_small(&m, 1, client, b"late");
    let done = m.wait_completion_timeout(1, seq, T).unwrap();
    assert_eq!(done.result, OpResult::Bytes(b"late".to_vec()), "{:?}", done.status);
    let done = run_op(&m, 1, Op::ReadAt { fd: server, offset: 0, size: 64 });
    assert_eq!(done.errno(), Some(libc::ESPIPE), "{:?}", done.result);
}

/// `Write` of a socket whose send buffer is full waits (as `Send`) until the peer reads, instead
/// of failing with `EAGAIN`; `WriteAt` of a socket is `ESPIPE`.
pub fn hostile_socket_write_waits_like_send(make: MakeBackend) {
    const BIG: usize = 16 << 20;
    let m = manager(make);
    m.set_policy(1, loopback_policy().max_io_bytes(BIG)).unwrap();
    let (server, client) = tcp_pair(&m, 1);
    let data: Vec<u8> = (0..BIG).map(|i| (i % 251) as u8).collect();
    let count = |done: SyscallCompletionEntry| match done.result {
        OpResult::Count(n) if n > 0 => n,
        other => panic!("write: {other:?} ({:?})", done.status),
    };
    // Nobody reads yet: writes fill the buffers (each may be short, none may fail with EAGAIN)
    // until one finds no room and must wait.
    let mut sent = 0;
    let mut waiting = None;
    for _ in 0..64 {
        if sent == BIG {
            break;
        }
        let seq = m.submit(1, entry(1, Op::Write { fd: client, data: data[sent..].to_vec() }, 0)).unwrap();
        match m.wait_completion_timeout(1, seq, WAITING) {
            Ok(done) => sent += count(done),
            Err(_) => {
                waiting = Some(seq);
                break;
            }
        }
    }
    let reader = {
        let m = m.clone();
        std::thread::spawn(move || recv_exact(&m, 1, server, BIG))
    };
    if let Some(seq) = waiting {
        sent += count(m.wait_completion_timeout(1, seq, T).unwrap());
    }
    while sent < BIG {
        sent += count(run_op(&m, 1, Op::Write { fd: client, data: data[sent..].to_vec() }));
    }
    let received = reader.join().unwrap();
    assert!(received == data, "16 MiB arrived intact");
    let done = run_op(&m, 1, Op::WriteAt { fd: client, offset: 0, data: b"x".to_vec() });
    assert_eq!(done.errno(), Some(libc::ESPIPE), "{:?}", done.result);
}

/// A `Read` waiting on a silent socket is cancelled like a `Recv`, and the connection still
/// works after it.
pub fn hostile_socket_read_is_cancellable(make: MakeBackend) {
    let m = manager(make);
    m.set_policy(1, loopback_policy()).unwrap();
    let (server, client) = tcp_pair(&m, 1);
    let seq = m.submit(1, entry(1, Op::Read { fd: server, size: 64 }, 0)).unwrap();
    assert!(m.wait_completion_timeout(1, seq, WAITING).is_err(), "a read of an empty socket completed");
    m.cancel(1, seq).unwrap();
    let done = m.wait_completion_timeout(1, seq, T).unwrap();
    assert!(done.status.is_cancelled(), "{:?} {:?}", done.status, done.result);
    assert_eq!(run_op(&m, 1, Op::Write { fd: client, data: b"after".to_vec() }).result, OpResult::Count(5));
    assert_eq!(bytes(run_op(&m, 1, Op::Read { fd: server, size: 64 }), "read"), b"after");
}

/// `Read`s parked on a silent socket, more than any backend's in-flight window, hold no place
/// in it (as `Recv`s do): another process's file I/O goes on; cancelled, they end `Cancelled`.
pub fn hostile_parked_socket_reads_hold_no_window(make: MakeBackend) {
    let m = manager(make);
    m.set_policy(1, loopback_policy()).unwrap();
    let dir = rooted(&m, 3);
    let (server, _client) = tcp_pair(&m, 1);
    let parked: Vec<u64> =
        (0..300).map(|_| m.submit(1, entry(1, Op::Read { fd: server, size: 16 }, 0)).unwrap()).collect();
    let OpResult::Fd(fd) = run_op(&m, 3, Op::open("f", O_RDWR | O_CREAT)).result else { panic!("open") };
    for i in 0..64u64 {
        let done = run_op(&m, 3, Op::WriteAt { fd, offset: i * 4, data: vec![i as u8; 4] });
        assert_eq!(done.result, OpResult::Count(4), "{:?}", done.status);
    }
    assert!(dir.path().join("f").exists());
    assert_eq!(m.ring(1).unwrap().ready(), 0, "nothing parked completed");
    for &seq in &parked {
        m.cancel(1, seq).unwrap();
    }
    for &seq in &parked {
        let done = m.wait_completion_timeout(1, seq, T).unwrap();
        assert!(done.status.is_cancelled(), "{:?}", done.status);
    }
}

/// Many receives parked on one datagram socket, woken again and again by datagrams that only a
/// few of them get: none ever completes `EAGAIN` (a parked receive waits, however often it is
/// woken), each datagram is received once, and the rest end `Cancelled` with their ring.
pub fn hostile_parked_receives_never_surface_eagain(make: MakeBackend) {
    const PARKED: usize = 1000;
    const SENT: usize = 300;
    let m = manager(make);
    m.create_ring(1, Some(1024), Some(1024)).unwrap();
    m.set_policy(
        1,
        ai_os_kernel::sandbox::Policy::default()
            .allow_bind("127.0.0.1/32".parse::<ai_os_kernel::sandbox::IpNet>().unwrap(), ..),
    )
    .unwrap();
    let OpResult::Fd(fd) =
        run_op(&m, 1, Op::Socket { domain: libc::AF_INET, ty: libc::SOCK_DGRAM, protocol: 0 }).result
    else {
        panic!("socket")
    };
    assert!(run_op(&m, 1, Op::Bind { sockfd: fd, addr: "127.0.0.1:0".parse().unwrap() }).status.is_success());
    let OpResult::Addr(to) = run_op(&m, 1, Op::LocalAddr { sockfd: fd }).result else { panic!("address") };
    let mut seqs = Vec::new();
    for _ in 0..PARKED / 100 {
        let batch = (0..100).map(|_| entry(1, Op::RecvFrom { sockfd: fd, size: 16, flags: 0 }, 0)).collect();
        seqs.extend(m.submit_batch(1, batch).unwrap());
    }
    let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut received = 0;
    for i in 0..SENT {
        peer.send_to(format!("d{i}").as_bytes(), to).unwrap();
        // One at a time, so that every datagram wakes every waiter.
        let done = m.completions(1).map(|mut s| futures::executor::block_on(futures::StreamExt::next(&mut s))).unwrap();
        let done = done.expect("a completion");
        assert!(matches!(done.result, OpResult::Datagram { .. }), "datagram {i}: {:?} {:?}", done.status, done.result);
        received += 1;
    }
    assert_eq!(received, SENT);
    // Nothing else completes: the others still wait (a bound: they must not end on their own).
    std::thread::sleep(std::time::Duration::from_millis(50));
    let early = m.reap_completions(1, None).unwrap();
    assert!(
        early.is_empty(),
        "{} parked receives ended on their own: {:?}",
        early.len(),
        early.first().map(|e| &e.status)
    );
    m.destroy_ring(1).unwrap();
    for seq in seqs {
        assert_eq!(m.wait_completion(1, seq), Err(ai_os_kernel::syscalls::IoUringError::NoRing { pid: 1 }));
    }
}

/// `MSG_DONTWAIT` does not make a receive complete `EAGAIN` on any backend: receives wait.
pub fn hostile_dontwait_receives_wait_too(make: MakeBackend) {
    let m = manager(make);
    let lo = "127.0.0.1/32".parse::<ai_os_kernel::sandbox::IpNet>().unwrap();
    m.set_policy(1, ai_os_kernel::sandbox::Policy::default().allow_bind(lo, ..)).unwrap();
    let udp = Op::Socket { domain: libc::AF_INET, ty: libc::SOCK_DGRAM, protocol: 0 };
    let OpResult::Fd(fd) = run_op(&m, 1, udp).result else { panic!("socket") };
    assert!(run_op(&m, 1, Op::Bind { sockfd: fd, addr: "127.0.0.1:0".parse().unwrap() }).status.is_success());
    let OpResult::Addr(to) = run_op(&m, 1, Op::LocalAddr { sockfd: fd }).result else { panic!("address") };
    let recv = Op::RecvFrom { sockfd: fd, size: 16, flags: libc::MSG_DONTWAIT as u32 };
    let seq = m.submit(1, entry(1, recv, 0)).unwrap();
    // A bound: it must still be waiting.
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert!(m.reap_completions(1, None).unwrap().is_empty(), "the receive did not wait");
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().send_to(b"late", to).unwrap();
    let done = m.wait_completion_timeout(1, seq, Duration::from_secs(10)).unwrap();
    assert!(matches!(&done.result, OpResult::Datagram { data, .. } if data == b"late"), "{:?}", done);
}

/// A receive for the error queue (`MSG_ERRQUEUE`) on a socket readable for ordinary data would be
/// woken at once, fail `EAGAIN` and wait again for ever, burning a thread: flags other than
/// `MSG_PEEK`, `MSG_WAITALL` (and the dropped `MSG_TRUNC`, `MSG_DONTWAIT`) are refused at once.
pub fn hostile_receive_flags_that_would_spin_are_refused(make: MakeBackend) {
    let m = manager(make);
    m.set_policy(1, loopback_policy()).unwrap();
    let (server, client) = connect_pairs(&m, 1, 1, IpAddr::V4(Ipv4Addr::LOCALHOST), 1)[0];
    assert_eq!(run_op(&m, 1, Op::Send { sockfd: client, data: b"data".to_vec(), flags: 0 }).result, OpResult::Count(4));
    for flags in [libc::MSG_ERRQUEUE, libc::MSG_OOB, libc::MSG_ERRQUEUE | libc::MSG_PEEK] {
        let done = run_op(&m, 1, Op::Recv { sockfd: server, size: 16, flags: flags as u32 });
        assert_eq!(done.errno(), Some(libc::EINVAL), "flags {flags:#x}: {:?}", done.status);
        let done = run_op(&m, 1, Op::RecvFrom { sockfd: server, size: 16, flags: flags as u32 });
        assert_eq!(done.errno(), Some(libc::EINVAL), "flags {flags:#x}: {:?}", done.status);
    }
    // The data is still there for a receive with supported flags.
    let peek = run_op(&m, 1, Op::Recv { sockfd: server, size: 4, flags: (libc::MSG_PEEK | libc::MSG_WAITALL) as u32 });
    assert_eq!(peek.result, OpResult::Bytes(b"data".to_vec()));
    assert_eq!(recv_exact(&m, 1, server, 4), b"data");
}
