//! Time and order: `Timeout` operations, deadlines (`ETIMEDOUT`) and linked chains
//! (`submit_linked`), with exactly one completion each.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use ai_os_kernel::syscalls::open_flags::*;
use ai_os_kernel::syscalls::{IoUringManager, OpResult, SyscallCompletionEntry, SyscallOpType as Op, errno};

use super::net::{connect_pairs, listener, loopback_policy};
use super::{entry, manager, rooted};
use crate::support::{MakeBackend, run_op};

const T: Duration = Duration::from_secs(30);
const HOUR: Duration = Duration::from_secs(3600);
const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn wait(m: &IoUringManager, pid: u32, seq: u64) -> SyscallCompletionEntry {
    m.wait_completion_timeout(pid, seq, T).expect("completion")
}

fn timed_out(done: &SyscallCompletionEntry) -> bool {
    done.status.is_error() && done.errno() == Some(errno::ETIMEDOUT)
}

/// No completion other than those taken is left for `pid`, a while later: each operation
/// completed once.
fn nothing_more(m: &IoUringManager, pid: u32) {
    std::thread::sleep(Duration::from_millis(30));
    let extra = m.reap_completions(pid, None).unwrap();
    assert!(extra.is_empty(), "completions after the last: {extra:?}");
    assert_eq!(m.ring(pid).unwrap().outstanding(), 0);
}

/// A `Timeout` completes once its time has passed, not before; cancelled, at once; many
/// pending hold no thread and no place in the window: a file operation still runs.
pub fn timeouts_complete_in_time(make: MakeBackend) {
    let m = manager(make);
    let dir = rooted(&m, 1);
    std::fs::write(dir.path().join("f"), b"data").unwrap();
    let started = Instant::now();
    let seq = m.submit(1, entry(1, Op::Timeout { duration: Duration::from_millis(60) }, 0)).unwrap();
    let done = wait(&m, 1, seq);
    assert!(done.status.is_success(), "{:?}", done.status);
    assert!(started.elapsed() >= Duration::from_millis(60), "early: {:?}", started.elapsed());
    // A zero timeout completes at once.
    assert!(run_op(&m, 1, Op::Timeout { duration: Duration::ZERO }).status.is_success());
    // Many long ones: no thread, no window place.
    let long: Vec<u64> = (0..300).map(|_| m.submit(1, entry(1, Op::Timeout { duration: HOUR }, 0)).unwrap()).collect();
    let fd = match run_op(&m, 1, Op::open("f", O_RDONLY)).result {
        OpResult::Fd(fd) => fd,
        other => panic!("open: {other:?}"),
    };
    assert_eq!(run_op(&m, 1, Op::ReadAt { fd, offset: 0, size: 4 }).result, OpResult::Bytes(b"data".to_vec()));
    assert!(m.reap_completions(1, None).unwrap().is_empty(), "an hour's timeout completed");
    let cancelled_at = Instant::now();
    for &seq in &long {
        m.cancel(1, seq).unwrap();
    }
    for &seq in &long {
        assert!(wait(&m, 1, seq).status.is_cancelled());
    }
    assert!(cancelled_at.elapsed() < T);
    // A duration past the clock's end is refused.
    assert_eq!(run_op(&m, 1, Op::Timeout { duration: Duration::MAX }).errno(), Some(errno::EINVAL));
    run_op(&m, 1, Op::Close { fd });
    nothing_more(&m, 1);
    // Destroying the ring ends those still waiting.
    for _ in 0..10 {
        m.submit(1, entry(1, Op::Timeout { duration: HOUR }, 0)).unwrap();
    }
    m.destroy_ring(1).unwrap();
}

/// An operation not done by its deadline completes `ETIMEDOUT`, once, and what it waited on is
/// left usable; one done in time completes as it ran; the deadline of a waiting receive, accept
/// or timeout stops it.
pub fn deadlines_time_out(make: MakeBackend) {
    let m = manager(make);
    m.set_policy(1, loopback_policy()).unwrap();
    let pairs = connect_pairs(&m, 1, 1, V4, 1);
    let (server, client) = pairs[0];
    let within = Duration::from_millis(80);
    let started = Instant::now();
    let recv = m.submit(1, entry(1, Op::Recv { sockfd: server, size: 16, flags: 0 }, 7).with_deadline(within)).unwrap();
    let done = wait(&m, 1, recv);
    assert!(timed_out(&done), "{:?}", done.status);
    assert_eq!(done.user_data, 7);
    assert!(started.elapsed() >= within);
    // Nothing was lost: the next receive gets what is sent.
    assert!(run_op(&m, 1, Op::Send { sockfd: client, data: b"late".to_vec(), flags: 0 }).status.is_success());
    assert_eq!(
        run_op(&m, 1, Op::Recv { sockfd: server, size: 16, flags: 0 }).result,
        OpResult::Bytes(b"late".to_vec())
    );
    // In time: as it ran.
    assert!(run_op(&m, 1, Op::Send { sockfd: client, data: b"now".to_vec(), flags: 0 }).status.is_success());
    let recv = m.submit(1, entry(1, Op::Recv { sockfd: server, size: 16, flags: 0 }, 0).with_deadline(T)).unwrap();
    assert_eq!(wait(&m, 1, recv).result, OpResult::Bytes(b"now".to_vec()));
    // An accept nobody connects to, then one somebody does.
    let (lfd, addr) = listener(&m, 1, V4);
    let accept = m.submit(1, entry(1, Op::Accept { sockfd: lfd }, 0).with_deadline(within)).unwrap();
    assert!(timed_out(&wait(&m, 1, accept)));
    let accept = m.submit(1, entry(1, Op::Accept { sockfd: lfd }, 0)).unwrap();
    let c = match run_op(&m, 1, Op::Socket { domain: libc::AF_INET, ty: libc::SOCK_STREAM, protocol: 0 }).result {
        OpResult::Fd(fd) => fd,
        other => panic!("socket: {other:?}"),
    };
    assert!(run_op(&m, 1, Op::Connect { sockfd: c, addr }).status.is_success());
    assert!(matches!(wait(&m, 1, accept).result, OpResult::Accepted { .. }));
    // A timeout longer than its deadline; a future's deadline.
    let seq = m.submit(1, entry(1, Op::Timeout { duration: HOUR }, 0).with_deadline(within)).unwrap();
    assert!(timed_out(&wait(&m, 1, seq)));
    let future = m.submit_async(1, entry(1, Op::Timeout { duration: HOUR }, 0).with_deadline(within)).unwrap();
    assert!(timed_out(&futures_lite_block_on(future)));
    // A batch in which each has its own.
    let batch = vec![
        entry(1, Op::Timeout { duration: Duration::from_millis(10) }, 1).with_deadline(T),
        entry(1, Op::Timeout { duration: HOUR }, 2).with_deadline(within),
        entry(1, Op::Nop, 3).with_deadline(within),
    ];
    let seqs = m.submit_batch(1, batch).unwrap();
    let done: Vec<_> = seqs.iter().map(|&s| wait(&m, 1, s)).collect();
    assert!(done[0].status.is_success() && timed_out(&done[1]) && done[2].status.is_success(), "{done:?}");
    nothing_more(&m, 1);
}

/// Drives a future to its end on this thread.
fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
    futures::executor::block_on(f)
}

/// A linked chain runs in order, each only after the one before succeeded; a failure, a
/// cancellation or a deadline ends the rest `Cancelled`; a refusal at submission runs none.
pub fn linked_chains(make: MakeBackend) {
    let m = manager(make);
    let dir = rooted(&m, 1);
    let root = dir.path();
    std::fs::write(root.join("config"), b"old").unwrap();
    let fd = match run_op(&m, 1, Op::open("config.tmp", O_WRONLY | O_CREAT | O_TRUNC)).result {
        OpResult::Fd(fd) => fd,
        other => panic!("open: {other:?}"),
    };
    let chain = |ops: Vec<Op>| -> Vec<SyscallCompletionEntry> {
        let entries = ops.into_iter().enumerate().map(|(i, op)| entry(1, op, i as u64)).collect();
        let seqs = m.submit_linked(1, entries).unwrap();
        seqs.iter().map(|&s| wait(&m, 1, s)).collect()
    };
    // Write, flush, rename over the target.
    let done = chain(vec![
        Op::WriteAt { fd, offset: 0, data: b"new".to_vec() },
        Op::Fsync { fd },
        Op::Rename { from: "config.tmp".into(), to: "config".into(), flags: 0 },
    ]);
    assert!(done.iter().all(|d| d.status.is_success()), "{done:?}");
    assert_eq!(std::fs::read(root.join("config")).unwrap(), b"new");
    assert!(!root.join("config.tmp").exists());
    // In order: appends of a chain land as chained.
    let log = match run_op(&m, 1, Op::open("log", O_WRONLY | O_CREAT | O_APPEND)).result {
        OpResult::Fd(fd) => fd,
        other => panic!("open: {other:?}"),
    };
    let done = chain((0..60).map(|i| Op::Write { fd: log, data: format!("{i},").into_bytes() }).collect());
    assert!(done.iter().all(|d| d.status.is_success()));
    let expect: String = (0..60).map(|i| format!("{i},")).collect();
    assert_eq!(std::fs::read_to_string(root.join("log")).unwrap(), expect);
    // A failure ends the rest, which never run.
    let done = chain(vec![
        Op::Mkdir { path: "a".into(), mode: 0o755 },
        Op::ReadAt { fd: 77, offset: 0, size: 1 },
        Op::Mkdir { path: "b".into(), mode: 0o755 },
        Op::Mkdir { path: "c".into(), mode: 0o755 },
    ]);
    assert!(done[0].status.is_success());
    assert_eq!(done[1].errno(), Some(errno::EBADF));
    assert!(done[2].status.is_cancelled() && done[3].status.is_cancelled(), "{done:?}");
    assert!(root.join("a").exists() && !root.join("b").exists() && !root.join("c").exists());
    // A refusal at submission: none runs.
    let done = chain(vec![
        Op::Mkdir { path: "d".into(), mode: 0o755 },
        Op::ReadDir { path: "/".into(), cursor: 0, max: 0 },
        Op::Mkdir { path: "e".into(), mode: 0o755 },
    ]);
    assert!(done[0].status.is_cancelled(), "{:?}", done[0].status);
    assert_eq!(done[1].errno(), Some(errno::EINVAL));
    assert!(done[2].status.is_cancelled());
    assert!(!root.join("d").exists() && !root.join("e").exists());
    // A cancelled link ends itself and the rest; the head runs on until cancelled too.
    let seqs = m
        .submit_linked(
            1,
            vec![
                entry(1, Op::Timeout { duration: HOUR }, 0),
                entry(1, Op::Mkdir { path: "f".into(), mode: 0o755 }, 1),
                entry(1, Op::Mkdir { path: "g".into(), mode: 0o755 }, 2),
            ],
        )
        .unwrap();
    m.cancel(1, seqs[1]).unwrap();
    assert!(wait(&m, 1, seqs[1]).status.is_cancelled() && wait(&m, 1, seqs[2]).status.is_cancelled());
    assert!(m.reap_completions(1, None).unwrap().is_empty(), "the head still waits");
    m.cancel(1, seqs[0]).unwrap();
    assert!(wait(&m, 1, seqs[0]).status.is_cancelled());
    // A head cancelled, and one timed out: the rest are cancelled.
    for deadline in [None, Some(Duration::from_millis(50))] {
        let mut head = entry(1, Op::Timeout { duration: HOUR }, 0);
        head.deadline = deadline;
        let seqs = m.submit_linked(1, vec![head, entry(1, Op::Mkdir { path: "h".into(), mode: 0o755 }, 1)]).unwrap();
        if deadline.is_none() {
            m.cancel(1, seqs[0]).unwrap();
        }
        let head = wait(&m, 1, seqs[0]);
        assert!(if deadline.is_some() { timed_out(&head) } else { head.status.is_cancelled() }, "{head:?}");
        assert!(wait(&m, 1, seqs[1]).status.is_cancelled());
    }
    assert!(!root.join("f").exists() && !root.join("g").exists() && !root.join("h").exists());
    // A link's own deadline, counted from submission, passes while it is held.
    let mut second = entry(1, Op::Mkdir { path: "i".into(), mode: 0o755 }, 1);
    second.deadline = Some(Duration::from_millis(30));
    let seqs =
        m.submit_linked(1, vec![entry(1, Op::Timeout { duration: Duration::from_millis(300) }, 0), second]).unwrap();
    assert!(timed_out(&wait(&m, 1, seqs[1])));
    assert!(wait(&m, 1, seqs[0]).status.is_success(), "the head runs on");
    assert!(!root.join("i").exists());
    // One chain alone, and chains of two processes at once.
    assert_eq!(chain(vec![Op::Nop]).len(), 1);
    assert!(m.submit_linked(1, Vec::new()).unwrap().is_empty());
    nothing_more(&m, 1);
    let dir2 = rooted(&m, 2);
    let threads: Vec<_> = [1u32, 2]
        .into_iter()
        .map(|pid| {
            let m = m.clone();
            std::thread::spawn(move || {
                for round in 0..20 {
                    let ops = (0..5).map(|i| entry(pid, Op::Mkdir { path: format!("r{round}-{i}"), mode: 0o700 }, i));
                    let seqs = m.submit_linked(pid, ops.collect()).unwrap();
                    for s in seqs {
                        assert!(wait(&m, pid, s).status.is_success());
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(std::fs::read_dir(dir2.path()).unwrap().count(), 100);
}
