//! Isolation: rights taken at submission, refusals without trace, one lifecycle per pid.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use ai_os_kernel::Pid;
use ai_os_kernel::sandbox::{IpNet, Policy};
use ai_os_kernel::syscalls::open_flags::*;
use ai_os_kernel::syscalls::{IoUringError, OpResult, SyscallCompletionEntry, SyscallOpType as Op, errno};

use super::{entry, held, manager, nop};
use crate::support::{MakeBackend, eventually, kernel_fds_to, run_op};

/// Expands to one `#[test]` per check of this module (called by `conformance_tests!`).
#[doc(hidden)]
#[macro_export]
macro_rules! __isolation_checks {
    ($make:expr, $block_on:expr) => {
        $crate::__sync_checks!($make;
            refused_open_leaves_no_trace, refused_accept_leaves_the_connection_queued,
            rights_are_taken_at_submission, stale_seqs_name_nothing_of_a_later_ring,
            destroy_races_never_bind_a_ring_to_a_dead_process, destroy_without_ring_ends_the_policy,
            listen_without_bind_passes_the_bind_rules, sendto_without_bind_passes_the_bind_rules,
            v6_wildcard_bind_needs_the_v4_rules_too, the_unspecified_address_is_loopback_to_connect_rules,
            read_only_opens_directories,
            created_files_are_never_set_uid, batch_beyond_the_outstanding_limit_is_too_large,
            finished_futures_after_destroy_hand_out_no_descriptor, future_polled_after_ready_panics,
            reads_beyond_the_buffer_budget_are_enomem, kept_results_count_their_whole_buffers,
        );
    };
}

fn errno_of(done: &SyscallCompletionEntry) -> Option<i32> {
    done.errno()
}

fn fd_of(done: SyscallCompletionEntry) -> i32 {
    match done.result {
        OpResult::Fd(fd) => fd,
        other => panic!("expected a descriptor: {other:?} ({:?})", done.status),
    }
}

fn loopback() -> IpNet {
    "127.0.0.0/8".parse().unwrap()
}

/// At the descriptor limit, an `Open` that would truncate or create is refused before the kernel
/// acts: the file keeps its bytes, no file appears. `Socket` is refused the same way.
pub fn refused_open_leaves_no_trace(make: MakeBackend) {
    let m = manager(make);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("keep"), b"precious").unwrap();
    let policy = Policy::rooted(dir.path()).read_write().max_open_fds(1).allow_connect(loopback(), ..);
    m.set_policy(1, policy).unwrap();
    let first = fd_of(run_op(&m, 1, Op::open("first", O_RDWR | O_CREAT)));
    for flags in [O_WRONLY | O_TRUNC, O_RDWR | O_TRUNC, O_WRONLY | O_CREAT | O_TRUNC] {
        let done = run_op(&m, 1, Op::open("keep", flags));
        assert_eq!(errno_of(&done), Some(errno::EMFILE), "flags {flags:#o}: {:?}", done.status);
    }
    assert_eq!(std::fs::read(dir.path().join("keep")).unwrap(), b"precious", "a refused open truncated");
    let done = run_op(&m, 1, Op::open("made", O_WRONLY | O_CREAT | O_EXCL));
    assert_eq!(errno_of(&done), Some(errno::EMFILE));
    assert!(!dir.path().join("made").exists(), "a refused open created its file");
    let done = run_op(&m, 1, Op::Socket { domain: libc::AF_INET, ty: libc::SOCK_STREAM, protocol: 0 });
    assert_eq!(errno_of(&done), Some(errno::EMFILE));
    // The place freed, the same opens succeed.
    assert!(run_op(&m, 1, Op::Close { fd: first }).status.is_success());
    let made = fd_of(run_op(&m, 1, Op::open("made", O_WRONLY | O_CREAT | O_EXCL)));
    assert!(dir.path().join("made").exists());
    assert!(run_op(&m, 1, Op::Close { fd: made }).status.is_success());
    assert_eq!(m.processes().get(1).unwrap().open_descriptors(), 0);
}

/// An `Accept` refused at the descriptor limit takes nothing off the queue: the peer sees no
/// EOF, and the connection is accepted whole once a place is free.
pub fn refused_accept_leaves_the_connection_queued(make: MakeBackend) {
    let m = manager(make);
    let policy = Policy::default().allow_bind(loopback(), ..).allow_listen().max_open_fds(2);
    m.set_policy(1, policy).unwrap();
    let listener = fd_of(run_op(&m, 1, Op::Socket { domain: libc::AF_INET, ty: libc::SOCK_STREAM, protocol: 0 }));
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    assert!(run_op(&m, 1, Op::Bind { sockfd: listener, addr: any }).status.is_success());
    assert!(run_op(&m, 1, Op::Listen { sockfd: listener, backlog: 8 }).status.is_success());
    let OpResult::Addr(addr) = run_op(&m, 1, Op::LocalAddr { sockfd: listener }).result else { panic!("no address") };
    let filler = fd_of(run_op(&m, 1, Op::Socket { domain: libc::AF_INET, ty: libc::SOCK_STREAM, protocol: 0 }));
    let mut peer = TcpStream::connect(addr).unwrap();
    peer.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let done = run_op(&m, 1, Op::Accept { sockfd: listener });
    assert_eq!(errno_of(&done), Some(errno::EMFILE), "{:?}", done.status);
    // Not accepted and closed: the peer reads no EOF.
    let mut byte = [0u8; 1];
    match peer.read(&mut byte) {
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
        other => panic!("the refused accept touched the connection: the peer read {other:?}"),
    }
    assert!(run_op(&m, 1, Op::Close { fd: filler }).status.is_success());
    let done = run_op(&m, 1, Op::Accept { sockfd: listener });
    let OpResult::Accepted { fd: conn, peer: from } = done.result else { panic!("{:?}", done.status) };
    assert_eq!(from, peer.local_addr().unwrap());
    peer.write_all(b"ping").unwrap();
    assert_eq!(run_op(&m, 1, Op::Recv { sockfd: conn, size: 4, flags: 0 }).result, OpResult::Bytes(b"ping".to_vec()));
}

/// An operation waiting behind a full window keeps the rights it was submitted with: a policy
/// set meanwhile changes neither its root nor whether it may write.
pub fn rights_are_taken_at_submission(make: MakeBackend) {
    let (m, gate) = held(make, 1);
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    m.set_policy(1, Policy::rooted(a.path()).read_write()).unwrap();
    let holder = m.submit(1, nop(1)).unwrap();
    let create = m.submit(1, entry(1, Op::open("file", O_WRONLY | O_CREAT), 0)).unwrap();
    // And one submitted read-only, then made writable: still refused.
    m.set_policy(1, Policy::rooted(b.path())).unwrap();
    let refused = m.submit(1, entry(1, Op::open("other", O_WRONLY | O_CREAT), 0)).unwrap();
    m.set_policy(1, Policy::rooted(b.path()).read_write()).unwrap();
    gate.open();
    let wait = |seq| m.wait_completion_timeout(1, seq, Duration::from_secs(30)).unwrap();
    assert!(wait(holder).status.is_success());
    let done = wait(create);
    assert!(done.status.is_success(), "{:?}", done.status);
    assert!(a.path().join("file").exists(), "created beneath the root it was submitted under");
    assert!(!b.path().join("file").exists(), "created beneath a root set after submission");
    assert_eq!(errno_of(&wait(refused)), Some(errno::EACCES));
    assert!(!b.path().join("other").exists());
}

/// Sequence numbers are never reused across ring lifetimes: one kept from a destroyed ring is
/// unknown to the pid's next ring, never another tenant's completion.
pub fn stale_seqs_name_nothing_of_a_later_ring(make: MakeBackend) {
    let m = manager(make);
    let old: Vec<u64> = (0..4).map(|_| m.submit(7, nop(7)).unwrap()).collect();
    let kept = old[2];
    m.wait_completion(7, old[0]).unwrap();
    m.destroy_ring(7).unwrap();
    for _ in 0..3 {
        let new: Vec<u64> = (0..8).map(|_| m.submit(7, nop(7)).unwrap()).collect();
        assert!(new.iter().all(|s| !old.contains(s)), "a later ring reissued {old:?}: {new:?}");
        eventually(Duration::from_secs(10), "the new ring's NOPs complete", || m.ring(7).unwrap().ready() == 8);
        for &seq in &old {
            assert_eq!(m.wait_completion(7, seq), Err(IoUringError::UnknownSeq { pid: 7, seq }));
            assert_eq!(m.cancel(7, seq), Err(IoUringError::UnknownSeq { pid: 7, seq }));
        }
        assert_eq!(m.reap_completions(7, None).unwrap().len(), 8);
        m.destroy_ring(7).unwrap();
    }
    assert_eq!(m.wait_completion(7, kept), Err(IoUringError::NoRing { pid: 7 }));
}

/// A ring created while `destroy_ring` runs binds to a new process, never to the one being torn
/// down: after the race, the next policy is the one in force. (A stream's waker that takes its
/// time keeps the destroy running while another thread creates the ring again.)
pub fn destroy_races_never_bind_a_ring_to_a_dead_process(make: MakeBackend) {
    use futures::Stream;
    struct SlowWake;
    impl std::task::Wake for SlowWake {
        fn wake(self: std::sync::Arc<Self>) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let m = manager(make);
    let (old_root, new_root) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let waker = std::task::Waker::from(std::sync::Arc::new(SlowWake));
    for round in 0..5 {
        m.set_policy(3, Policy::rooted(old_root.path()).read_write()).unwrap();
        let mut stream = m.completions(3).or_else(|_| m.create_ring(3, None, None).map(|r| r.completions())).unwrap();
        let polled = std::pin::Pin::new(&mut stream).poll_next(&mut std::task::Context::from_waker(&waker));
        assert!(polled.is_pending());
        let creator = {
            let m = m.clone();
            std::thread::spawn(move || {
                // Again as soon as the old ring is gone.
                while let Err(IoUringError::InvalidConfig(_)) = m.create_ring(3, None, None) {
                    std::thread::yield_now();
                }
            })
        };
        m.destroy_ring(3).unwrap();
        creator.join().unwrap();
        m.set_policy(3, Policy::rooted(new_root.path()).read_write()).unwrap();
        let name = format!("f{round}");
        let done = run_op(&m, 3, Op::open(name.as_str(), O_WRONLY | O_CREAT));
        assert!(done.status.is_success(), "round {round}: {:?}", done.status);
        assert!(new_root.path().join(&name).exists(), "round {round}: not under the new root");
        assert!(!old_root.path().join(&name).exists(), "round {round}: created under the old policy");
        // The stale stream ended with its ring.
        assert!(futures::executor::block_on(futures::StreamExt::next(&mut stream)).is_none());
        m.destroy_ring(3).unwrap();
    }
}

/// `destroy_ring` of a pid with a policy and no ring ends that process too: its root is closed
/// and the pid's next user starts deny-all.
pub fn destroy_without_ring_ends_the_policy(make: MakeBackend) {
    let m = manager(make);
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("secret"), b"tenant A").unwrap();
    let pids: Vec<Pid> = (100..150).collect();
    for &pid in &pids {
        m.set_policy(pid, Policy::rooted(root.path())).unwrap();
    }
    assert_eq!(kernel_fds_to(root.path()), pids.len(), "one root descriptor per policy");
    for &pid in &pids {
        m.destroy_ring(pid).unwrap();
    }
    assert_eq!(kernel_fds_to(root.path()), 0, "destroyed processes keep their roots open");
    let done = run_op(&m, 100, Op::open("secret", O_RDONLY));
    assert_eq!(errno_of(&done), Some(errno::EACCES), "the pid's next user read the last one's file");
    m.destroy_ring(100).unwrap();
    assert_eq!(m.destroy_ring(100), Err(IoUringError::NoRing { pid: 100 }), "nothing left to destroy");
}

/// A `Listen` on an unbound socket binds the wildcard address: it passes the bind rules like a
/// `Bind` would, and is refused where they only allow loopback.
pub fn listen_without_bind_passes_the_bind_rules(make: MakeBackend) {
    let m = manager(make);
    let only_loopback = Policy::default().allow_bind("127.0.0.1/32".parse::<IpNet>().unwrap(), ..).allow_listen();
    m.set_policy(1, only_loopback).unwrap();
    for (domain, bound) in [(libc::AF_INET, "127.0.0.1:0"), (libc::AF_INET6, "")] {
        let fd = fd_of(run_op(&m, 1, Op::Socket { domain, ty: libc::SOCK_STREAM, protocol: 0 }));
        let done = run_op(&m, 1, Op::Listen { sockfd: fd, backlog: 4 });
        assert_eq!(errno_of(&done), Some(errno::EACCES), "domain {domain}: {:?}", done.status);
        // Nothing listens: the socket is still unbound.
        let OpResult::Addr(local) = run_op(&m, 1, Op::LocalAddr { sockfd: fd }).result else { panic!() };
        assert_eq!(local.port(), 0, "the refused listen bound {local}");
        if !bound.is_empty() {
            assert!(run_op(&m, 1, Op::Bind { sockfd: fd, addr: bound.parse().unwrap() }).status.is_success());
            assert!(run_op(&m, 1, Op::Listen { sockfd: fd, backlog: 4 }).status.is_success(), "bound, it may");
        }
    }
    // A policy that allows binding the wildcard allows the implicit bind too.
    m.set_policy(2, Policy::unrestricted()).unwrap();
    let fd = fd_of(run_op(&m, 2, Op::Socket { domain: libc::AF_INET, ty: libc::SOCK_STREAM, protocol: 0 }));
    assert!(run_op(&m, 2, Op::Listen { sockfd: fd, backlog: 4 }).status.is_success());
}

/// A `SendTo` of an unbound datagram socket binds it to the wildcard address (where it then
/// receives from anyone): that bind passes the bind rules too.
pub fn sendto_without_bind_passes_the_bind_rules(make: MakeBackend) {
    let m = manager(make);
    let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let to = peer.local_addr().unwrap();
    let policy =
        Policy::default().allow_connect(loopback(), ..).allow_bind("127.0.0.1/32".parse::<IpNet>().unwrap(), ..);
    m.set_policy(1, policy).unwrap();
    let udp = Op::Socket { domain: libc::AF_INET, ty: libc::SOCK_DGRAM, protocol: 0 };
    let fd = fd_of(run_op(&m, 1, udp.clone()));
    let send = || Op::SendTo { sockfd: fd, data: b"hi".to_vec(), addr: to, flags: 0 };
    let done = run_op(&m, 1, send());
    assert_eq!(errno_of(&done), Some(errno::EACCES), "{:?}", done.status);
    let OpResult::Addr(local) = run_op(&m, 1, Op::LocalAddr { sockfd: fd }).result else { panic!() };
    assert_eq!(local.port(), 0, "the refused send bound {local}");
    assert!(run_op(&m, 1, Op::Bind { sockfd: fd, addr: "127.0.0.1:0".parse().unwrap() }).status.is_success());
    for _ in 0..2 {
        assert_eq!(run_op(&m, 1, send()).result, OpResult::Count(2));
        let mut buf = [0u8; 8];
        assert_eq!(peer.recv(&mut buf).unwrap(), 2);
    }
    // Where the wildcard may be bound, the implicit bind is fine.
    m.set_policy(
        2,
        Policy::default().allow_connect(loopback(), ..).allow_bind("0.0.0.0/0".parse::<IpNet>().unwrap(), ..),
    )
    .unwrap();
    let fd = fd_of(run_op(&m, 2, udp));
    let done = run_op(&m, 2, Op::SendTo { sockfd: fd, data: b"hi".to_vec(), addr: to, flags: 0 });
    assert_eq!(done.result, OpResult::Count(2), "{:?}", done.status);
}

/// A read-only policy opens directories (`O_DIRECTORY` shares its bit with `O_TMPFILE`) and
/// still refuses `O_TMPFILE`.
pub fn read_only_opens_directories(make: MakeBackend) {
    let m = manager(make);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    m.set_policy(1, Policy::rooted(dir.path())).unwrap();
    for path in ["sub", "/", "."] {
        let done = run_op(&m, 1, Op::open(path, O_RDONLY | O_DIRECTORY));
        assert!(done.status.is_success(), "{path}: {:?}", done.status);
    }
    let done = run_op(&m, 1, Op::open("a", O_RDONLY | O_DIRECTORY));
    assert_eq!(errno_of(&done), Some(libc::ENOENT));
    const O_TMPFILE: u32 = libc::O_TMPFILE as u32;
    let done = run_op(&m, 1, Op::open("sub", O_TMPFILE | O_WRONLY));
    assert_eq!(errno_of(&done), Some(errno::EACCES), "{:?}", done.status);
}

/// A created file never has its set-uid, set-gid or sticky bit, and the policy's umask applies.
pub fn created_files_are_never_set_uid(make: MakeBackend) {
    let m = manager(make);
    let dir = tempfile::tempdir().unwrap();
    let mode = |name: &str| std::fs::metadata(dir.path().join(name)).unwrap().permissions().mode() & 0o7777;
    m.set_policy(1, Policy::rooted(dir.path()).read_write()).unwrap();
    let done = run_op(&m, 1, Op::Open { path: "suid".into(), flags: O_WRONLY | O_CREAT, mode: 0o7777 });
    assert!(done.status.is_success(), "{:?}", done.status);
    assert_eq!(mode("suid") & 0o7000, 0, "special bits: {:o}", mode("suid"));
    assert_eq!(mode("suid") & 0o022, 0, "the default umask: {:o}", mode("suid"));
    m.set_policy(1, Policy::rooted(dir.path()).read_write().umask(0o077)).unwrap();
    let done = run_op(&m, 1, Op::Open { path: "private".into(), flags: O_WRONLY | O_CREAT, mode: 0o6755 });
    assert!(done.status.is_success(), "{:?}", done.status);
    assert_eq!(mode("private") & 0o7077, 0, "umask 077: {:o}", mode("private"));
}

/// A batch larger than the policy's outstanding limit can never fit: `BatchTooLarge`, not a
/// "full" its caller would retry forever.
pub fn batch_beyond_the_outstanding_limit_is_too_large(make: MakeBackend) {
    let m = manager(make);
    m.set_policy(1, Policy::default().max_outstanding(4)).unwrap();
    let five = (0..5).map(|_| nop(1)).collect();
    assert_eq!(m.submit_batch(1, five), Err(IoUringError::BatchTooLarge { pid: 1, len: 5, capacity: 4 }));
    let four = m.submit_batch(1, (0..4).map(|_| nop(1)).collect()).unwrap();
    // While those four are outstanding, one more is "full": taking completions makes room.
    assert_eq!(m.submit(1, nop(1)), Err(IoUringError::CompletionQueueFull { pid: 1, capacity: 4 }));
    for seq in four {
        m.wait_completion(1, seq).unwrap();
    }
    assert!(m.submit(1, nop(1)).is_ok());
}

/// After `destroy_ring`, a future whose `Open` had finished resolves `Cancelled` (its descriptor
/// was closed with the process), while a finished write keeps its outcome.
pub fn finished_futures_after_destroy_hand_out_no_descriptor(make: MakeBackend) {
    let m = manager(make);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), b"").unwrap();
    m.set_policy(1, Policy::rooted(dir.path()).read_write()).unwrap();
    let fd = fd_of(run_op(&m, 1, Op::open("f", O_RDWR)));
    let open = m.submit_async(1, entry(1, Op::open("f", O_RDONLY), 0)).unwrap();
    let write = m.submit_async(1, entry(1, Op::WriteAt { fd, offset: 0, data: b"kept".to_vec() }, 0)).unwrap();
    eventually(Duration::from_secs(10), "both finished", || m.stats_for(1).unwrap().completed == 3);
    m.destroy_ring(1).unwrap();
    let opened = futures::executor::block_on(open);
    assert!(opened.status.is_cancelled(), "{:?}", opened);
    assert_eq!(opened.result, OpResult::None);
    let wrote = futures::executor::block_on(write);
    assert_eq!(wrote.result, OpResult::Count(4));
    assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"kept");
}

/// Polling a `CompletionFuture` again after it resolved panics (the `Future` convention) rather
/// than inventing a completion, and it reports itself terminated.
pub fn future_polled_after_ready_panics(make: MakeBackend) {
    use futures::future::FusedFuture;
    let m = manager(make);
    let mut fut = m.submit_async(1, nop(1)).unwrap();
    assert!(!fut.is_terminated());
    assert!(futures::executor::block_on(&mut fut).status.is_success());
    assert!(fut.is_terminated());
    let again = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| futures::executor::block_on(&mut fut)));
    assert!(again.is_err(), "a second poll made up {again:?}");
    assert_eq!(m.stats().pending, 0);
}

/// The bytes one tenant's reads may hold at once are bounded: a read that would pass the
/// policy's budget completes `ENOMEM` at once, and taking results gives their bytes back.
pub fn reads_beyond_the_buffer_budget_are_enomem(make: MakeBackend) {
    let m = manager(make);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("small"), b"hello").unwrap();
    m.set_policy(1, Policy::rooted(dir.path()).max_buffered_bytes(100_000)).unwrap();
    let fd = fd_of(run_op(&m, 1, Op::open("small", O_RDONLY)));
    let read = || entry(1, Op::ReadAt { fd, offset: 0, size: 60_000 }, 0);
    // One batch: the second is refused whatever the first has done by then.
    let seqs = m.submit_batch(1, vec![read(), read()]).unwrap();
    let wait = |seq| m.wait_completion_timeout(1, seq, Duration::from_secs(30)).unwrap();
    let second = wait(seqs[1]);
    assert_eq!(errno_of(&second), Some(libc::ENOMEM), "{:?}", second.status);
    assert_eq!(wait(seqs[0]).result, OpResult::Bytes(b"hello".to_vec()));
    // Taken, the first holds nothing: the same batch's first read fits again, and a completed
    // but untaken 5-byte result leaves room for another large read.
    let again = m.submit_batch(1, vec![read()]).unwrap()[0];
    eventually(Duration::from_secs(10), "the read completes", || m.ring(1).unwrap().ready() == 1);
    let more = m.submit(1, read()).unwrap();
    assert_eq!(wait(more).result, OpResult::Bytes(b"hello".to_vec()));
    assert_eq!(wait(again).result, OpResult::Bytes(b"hello".to_vec()));
}

/// IPv6 sockets are dual-stack: binding `[::]` also takes the port on every IPv4 address, so a
/// policy that allows only IPv6 may not bind (or listen unbound on) the IPv6 wildcard.
pub fn v6_wildcard_bind_needs_the_v4_rules_too(make: MakeBackend) {
    let m = manager(make);
    let v6_only = Policy::default().allow_bind("::/0".parse::<IpNet>().unwrap(), ..).allow_listen();
    m.set_policy(1, v6_only).unwrap();
    let v6 = Op::Socket { domain: libc::AF_INET6, ty: libc::SOCK_STREAM, protocol: 0 };
    let fd = fd_of(run_op(&m, 1, v6.clone()));
    let done = run_op(&m, 1, Op::Bind { sockfd: fd, addr: "[::]:0".parse().unwrap() });
    assert_eq!(errno_of(&done), Some(errno::EACCES), "[::] would listen on IPv4 too: {:?}", done.status);
    let done = run_op(&m, 1, Op::Listen { sockfd: fd, backlog: 4 });
    assert_eq!(errno_of(&done), Some(errno::EACCES), "listening unbound binds [::]: {:?}", done.status);
    if std::net::TcpListener::bind("[::1]:0").is_ok() {
        assert!(run_op(&m, 1, Op::Bind { sockfd: fd, addr: "[::1]:0".parse().unwrap() }).status.is_success());
        assert!(run_op(&m, 1, Op::Listen { sockfd: fd, backlog: 4 }).status.is_success());
    }
    // Both wildcards allowed: [::] binds.
    let both = Policy::default()
        .allow_bind("::/0".parse::<IpNet>().unwrap(), ..)
        .allow_bind("0.0.0.0/0".parse::<IpNet>().unwrap(), ..);
    m.set_policy(2, both).unwrap();
    let fd = fd_of(run_op(&m, 2, v6));
    let done = run_op(&m, 2, Op::Bind { sockfd: fd, addr: "[::]:0".parse().unwrap() });
    assert!(done.status.is_success(), "{:?}", done.status);
}

/// The budget counts the memory a kept result holds (its buffer), not only the bytes read: small
/// results of reads that asked for a few KiB more cannot hold many times the budget.
pub fn kept_results_count_their_whole_buffers(make: MakeBackend) {
    const SIZE: usize = 4097;
    let m = manager(make);
    m.create_ring(1, Some(128), Some(1024)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("one"), b"1").unwrap();
    m.set_policy(1, Policy::rooted(dir.path()).max_buffered_bytes(1 << 20)).unwrap();
    let fd = fd_of(run_op(&m, 1, Op::open("one", O_RDONLY)));
    for round in 1..=4 {
        let batch = (0..100).map(|_| entry(1, Op::ReadAt { fd, offset: 0, size: SIZE }, 0)).collect();
        m.submit_batch(1, batch).unwrap();
        eventually(Duration::from_secs(10), "the batch completes", || m.ring(1).unwrap().ready() == 100 * round);
    }
    let done = m.reap_completions(1, None).unwrap();
    let kept = done.iter().filter(|e| e.status.is_success()).count();
    let refused = done.iter().filter(|e| e.errno() == Some(libc::ENOMEM)).count();
    assert_eq!(
        kept + refused,
        400,
        "{:?}",
        done.iter().find(|e| !e.status.is_success() && e.errno() != Some(libc::ENOMEM))
    );
    assert!(kept <= (1 << 20) / SIZE, "{kept} kept results of {SIZE}-byte buffers passed a 1 MiB budget");
    assert!(refused > 0);
}

/// The kernel sends a connection or datagram for `0.0.0.0` (or `::`) to the host itself: connect
/// rules that exclude loopback refuse it too.
pub fn the_unspecified_address_is_loopback_to_connect_rules(make: MakeBackend) {
    let m = manager(make);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let no_loopback = "0.0.0.0/2".parse::<IpNet>().unwrap();
    let lo_bind = "127.0.0.1/32".parse::<IpNet>().unwrap();
    m.set_policy(1, Policy::default().allow_connect(no_loopback, ..).allow_bind(lo_bind, ..)).unwrap();
    let tcp = fd_of(run_op(&m, 1, Op::Socket { domain: libc::AF_INET, ty: libc::SOCK_STREAM, protocol: 0 }));
    for addr in [format!("127.0.0.1:{port}"), format!("0.0.0.0:{port}")] {
        let done = run_op(&m, 1, Op::Connect { sockfd: tcp, addr: addr.parse().unwrap() });
        assert_eq!(errno_of(&done), Some(errno::EACCES), "{addr}: {:?}", done.status);
    }
    let udp = fd_of(run_op(&m, 1, Op::Socket { domain: libc::AF_INET, ty: libc::SOCK_DGRAM, protocol: 0 }));
    // Bound, so that only the destination is in question.
    assert!(run_op(&m, 1, Op::Bind { sockfd: udp, addr: "127.0.0.1:0".parse().unwrap() }).status.is_success());
    let done = run_op(
        &m,
        1,
        Op::SendTo { sockfd: udp, data: b"hi".to_vec(), addr: format!("0.0.0.0:{port}").parse().unwrap(), flags: 0 },
    );
    assert_eq!(errno_of(&done), Some(errno::EACCES), "{:?}", done.status);
    // Allowed loopback, 0.0.0.0 reaches the listener.
    m.set_policy(2, Policy::default().allow_connect(loopback(), ..)).unwrap();
    let tcp = fd_of(run_op(&m, 2, Op::Socket { domain: libc::AF_INET, ty: libc::SOCK_STREAM, protocol: 0 }));
    let done = run_op(&m, 2, Op::Connect { sockfd: tcp, addr: format!("0.0.0.0:{port}").parse().unwrap() });
    assert!(done.status.is_success(), "{:?}", done.status);
    drop(listener);
}
