//! The bodies of the fuzz targets (`fuzz/`), kept here so that the main crate's tests replay
//! them on a fixed set of inputs (`tests/fuzz_replay.rs`) on every build, while `cargo fuzz`
//! explores further.
//!
//! - [`path_case`]: one `Open` of a hostile path with hostile flags against a rooted, read-write
//!   policy, or a path operation on it. Whatever happens, a descriptor it yields points beneath
//!   the root, and nothing outside the root changes.
//! - [`op_sequence_case`]: a sequence of manager calls (rings of any size, submits, batches,
//!   futures polled, dropped or detached, cancels, reaps, waits, destroys, policies, linked
//!   chains, deadlines and timeouts) with bad
//!   descriptors, offsets, whences and sizes among the operations. No call panics or hangs, and
//!   once every ring is destroyed, every accepted operation was completed exactly once and no
//!   descriptor is left open.

use futures::stream::{FusedStream as _, Stream as _};
use std::future::Future as _;
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use ai_os_kernel::backend::Backend;
use ai_os_kernel::sandbox::Policy;
use ai_os_kernel::syscalls::open_flags::*;
use ai_os_kernel::syscalls::{
    CompletionFuture, FixedBuffers, IoUringManager, Multishot, OpResult, SyscallCompletionEntry, SyscallOpType,
    SyscallOpType as Op, SyscallSubmissionEntry,
};

/// How long one completion may take before the case counts as a hang.
const LIMIT: Duration = Duration::from_secs(10);

/// Fragments that fuzz bytes at or above `0xE0` stand for, so that short inputs reach the
/// interesting paths: escapes, magic links, loops, long and odd names.
const TOKENS: &[&str] = &[
    "../",
    "/",
    "up/",
    "abs/",
    "/proc/self/root/",
    "/proc/self/fd/",
    "/proc/self/cwd/",
    "loop/",
    "..",
    "secret",
    "inside",
    "\0",
    "sub/",
    "//",
    "./",
    "dirlink/",
    "chain/",
    "dangling",
    ".",
    "inside/",
    "/dev/null",
    "sub/../../",
];

/// The root a path case runs beneath, and the outside it must not touch.
struct PathWorld {
    _outer: tempfile::TempDir,
    outer: PathBuf,
    root: PathBuf,
    outside_before: Vec<(String, Vec<u8>)>,
    m: IoUringManager,
}

fn listing(outer: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(outer)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name() != "root")
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let content = std::fs::read(e.path()).unwrap_or_default();
            (name, content)
        })
        .collect();
    out.sort();
    out
}

fn path_world() -> &'static PathWorld {
    static WORLD: OnceLock<PathWorld> = OnceLock::new();
    WORLD.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let outer = std::fs::canonicalize(tmp.path()).unwrap();
        let root = outer.join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(outer.join("secret"), b"outside").unwrap();
        std::fs::write(root.join("inside"), b"inside").unwrap();
        let link = |target: &Path, name: &str| std::os::unix::fs::symlink(target, root.join(name)).unwrap();
        link(Path::new("../"), "up");
        link(&outer, "abs");
        link(Path::new("loop"), "loop");
        link(Path::new("sub"), "dirlink");
        link(Path::new("up/secret"), "chain");
        link(Path::new("nowhere"), "dangling");
        let m = IoUringManager::new();
        m.set_policy(1, Policy::rooted(&root).read_write()).unwrap();
        let outside_before = listing(&outer);
        PathWorld { _outer: tmp, outer, root, outside_before, m }
    })
}

/// Splits fuzz bytes into flags and a path (see [`TOKENS`]).
fn decode_path(data: &[u8]) -> (u32, String) {
    const FLAGS: &[u32] = &[
        O_RDONLY,
        O_WRONLY | O_CREAT,
        O_RDWR | O_CREAT | O_TRUNC,
        O_WRONLY | O_APPEND,
        libc::O_PATH as u32,
        O_RDONLY | O_DIRECTORY,
        O_WRONLY | O_CREAT | O_EXCL,
        O_RDWR | O_NOFOLLOW,
    ];
    let Some((&pick, rest)) = data.split_first() else { return (O_RDONLY, String::new()) };
    let (flags, rest) = match FLAGS.get(usize::from(pick) % (FLAGS.len() + 1)) {
        Some(&f) => (f, rest),
        None if rest.len() >= 4 => (u32::from_le_bytes(rest[..4].try_into().unwrap()), &rest[4..]),
        None => (O_RDONLY, rest),
    };
    let mut path = String::new();
    for &b in rest {
        match b {
            0xE0.. => path.push_str(TOKENS[usize::from(b - 0xE0) % TOKENS.len()]),
            0xC0.. => path.push_str(&"x".repeat(usize::from(b - 0xC0) * 16)),
            _ => path.push(char::from(b)),
        }
    }
    (flags, path)
}

/// Runs the operation on a path fuzz bytes describe, beneath the root: mostly an `Open` (see
/// `decode_path`), else a path operation, a change undone when it succeeded. Checks that a
/// descriptor it gets points beneath the root and that nothing outside changed.
pub fn path_case(data: &[u8]) {
    let w = path_world();
    let (flags, path) = decode_path(data);
    let run = |op: Op| {
        let what = format!("{op:?}");
        let seq = w.m.submit(1, SyscallSubmissionEntry::new(1, op, 0));
        let seq = seq.unwrap_or_else(|e| panic!("{what}: submit refused: {e}"));
        let done = w.m.wait_completion_timeout(1, seq, LIMIT).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(done.status.is_success() || done.errno().is_some_and(|e| e > 0), "{what}: {done:?}");
        done
    };
    let pick = data.first().copied().unwrap_or(0);
    let moved = "sub/fuzz-moved";
    match pick / 16 {
        0..=8 => {
            let done = run(Op::Open { path: path.clone(), flags, mode: 0o600 });
            if let OpResult::Fd(fd) = done.result {
                let process = w.m.processes().get(1).unwrap();
                let raw = process.descriptor(fd).unwrap().as_fd().as_raw_fd();
                let real = std::fs::read_link(format!("/proc/self/fd/{raw}")).unwrap();
                assert!(real.starts_with(&w.root), "{path:?} (flags {flags:#o}) opened {real:?}, outside the root");
                assert!(run(Op::Close { fd }).status.is_success());
            }
        }
        9 => drop(run(Op::Stat { path: path.clone(), follow: pick % 2 == 0 })),
        10 => drop(run(Op::ReadDir { path: path.clone(), cursor: u64::from(pick % 4), max: 3 })),
        11 => drop(run(Op::ReadLink { path: path.clone() })),
        12 => {
            if run(Op::Mkdir { path: path.clone(), mode: 0o700 }).status.is_success() {
                assert!(run(Op::Rmdir { path: path.clone() }).status.is_success(), "rmdir {path:?}");
            }
        }
        13 => {
            if run(Op::Symlink { target: path.clone(), link: moved.into() }).status.is_success() {
                run(Op::Stat { path: moved.into(), follow: true });
                run(Op::open(moved, O_RDONLY));
                assert!(run(Op::Unlink { path: moved.into() }).status.is_success());
            }
        }
        14 => {
            if run(Op::Link { from: path.clone(), to: moved.into() }).status.is_success() {
                assert!(run(Op::Unlink { path: moved.into() }).status.is_success());
            }
        }
        _ => {
            if run(Op::Rename { from: path.clone(), to: moved.into(), flags: u32::from(pick % 2) }).status.is_success()
            {
                let back = run(Op::Rename { from: moved.into(), to: path.clone(), flags: 0 });
                assert!(back.status.is_success(), "rename back to {path:?}: {back:?}");
            }
        }
    }
    assert_eq!(listing(&w.outer), w.outside_before, "{path:?} (pick {pick}) changed something outside the root");
}

/// The backend op sequences run on (the one `IoUringManager::new()` picks, so
/// `AI_OS_KERNEL_BACKEND` chooses), shared by every case: a pool per case would be slow.
fn shared_backend() -> Arc<dyn Backend> {
    static BACKEND: OnceLock<Arc<dyn Backend>> = OnceLock::new();
    BACKEND.get_or_init(|| ai_os_kernel::backend::from_env().expect("AI_OS_KERNEL_BACKEND")).clone()
}

fn files_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), vec![7u8; 8192]).unwrap();
        dir
    })
    .path()
}

/// An operation from two fuzz bytes, bad arguments included.
fn decode_op(k: u8, arg: u8) -> Op {
    let fd = i32::from(arg % 8) - 1; // -1 ..= 6: unknown, negative, and the ones opens return
    match k % 16 {
        0 => Op::Nop,
        1 => Op::open("f", O_RDONLY),
        2 => Op::open("f", O_RDWR),
        3 => Op::ReadAt { fd, offset: u64::from(arg) * 512, size: 4096 },
        4 => Op::ReadAt { fd, offset: u64::MAX - u64::from(arg), size: 1 },
        // The caller's buffer: at an offset or the position, sizes from none to absurd, with
        // room or without.
        5 if arg.is_multiple_of(3) => Op::ReadInto {
            fd,
            offset: (arg > 100).then(|| u64::from(arg) * 512),
            buf: Vec::with_capacity(usize::from(arg) * 16),
            size: if arg > 200 { usize::MAX - usize::from(arg) } else { usize::from(arg) * 32 },
        },
        5 => Op::Read { fd, size: if arg.is_multiple_of(2) { 0 } else { usize::MAX } },
        6 if arg % 3 == 1 => {
            // A range that may lie outside the buffer.
            let range = usize::from(arg % 80)..usize::from(arg % 100);
            Op::WriteFrom { fd, offset: (arg > 128).then(|| u64::from(arg)), buf: vec![arg; 64], range }
        }
        6 if arg.is_multiple_of(2) => Op::WriteAt { fd, offset: u64::from(arg), data: vec![arg; 64] },
        6 => Op::Fallocate { fd, mode: u32::from(arg) % 0x90, offset: u64::from(arg) * 512, len: 4096 },
        7 if arg.is_multiple_of(2) => Op::Write { fd, data: Vec::new() },
        7 if arg.is_multiple_of(3) => {
            Op::ReadvAt { fd, offset: u64::from(arg) * 100, sizes: vec![usize::from(arg); 3] }
        }
        7 if arg.is_multiple_of(5) => Op::Writev { fd, bufs: vec![vec![arg; 10]; usize::from(arg % 4)] },
        7 if arg.is_multiple_of(7) => {
            Op::CopyRange { fd_in: fd, offset_in: 0, fd_out: fd + 1, offset_out: 0, len: 8192 }
        }
        7 => Op::Fstat { fd },
        8 => Op::Lseek { fd, offset: i64::from(arg as i8) * 1000, whence: i32::from(arg % 7) - 1 },
        9 => Op::Lseek { fd, offset: i64::MIN, whence: 1 },
        10 => Op::Close { fd },
        11 => match arg % 3 {
            0 => Op::Fsync { fd },
            1 => Op::Fdatasync { fd },
            _ => Op::Ftruncate { fd, len: if arg > 200 { u64::MAX - u64::from(arg) } else { u64::from(arg) * 1000 } },
        },
        12 => match arg % 5 {
            0 => Op::open("../f", O_RDONLY),
            1 => Op::Stat { path: "f".into(), follow: arg > 128 },
            2 => Op::ReadDir { path: "/".into(), cursor: u64::from(arg), max: u32::from(arg % 3) },
            3 => Op::Rename { from: "f".into(), to: "f".into(), flags: u32::from(arg % 4) },
            _ => Op::Mkdir { path: "d".into(), mode: u32::from(arg) },
        },
        13 if arg % 4 == 1 => Op::RecvMulti { sockfd: fd, size: usize::from(arg / 4 % 16) * 64 },
        13 if arg.is_multiple_of(2) => Op::Recv { sockfd: fd, size: 16, flags: 0 },
        13 => Op::Shutdown { sockfd: fd, how: i32::from(arg % 5) - 1 },
        14 if arg % 6 == 1 => Op::AcceptMulti { sockfd: fd },
        14 if arg.is_multiple_of(2) => Op::Connect { sockfd: fd, addr: ([127, 0, 0, 1], u16::from(arg)).into() },
        14 => Op::PeerAddr { sockfd: fd },
        _ => Op::Socket { domain: i32::from(arg), ty: i32::from(arg >> 4), protocol: 0 },
    }
}

/// A `ReadFixed` (`read`) or `WriteFixed` of `pid` with a buffer of a pool: its own (registered
/// on first use, and again once its ring was destroyed) or, now and then, another pid's (which
/// is refused); at an offset or the position, sizes within and past its room, ranges within and
/// outside it. `Nop` when no buffer is free.
fn fixed_op(
    m: &IoUringManager,
    pools: &std::cell::RefCell<[Option<FixedBuffers>; 4]>,
    read: bool,
    pid: u32,
    arg: u8,
) -> Op {
    let owner = if arg % 32 == 31 { pid % 3 + 1 } else { pid };
    let mut pools = pools.borrow_mut();
    let slot = &mut pools[owner as usize];
    let buf = match slot.as_ref().and_then(FixedBuffers::take) {
        Some(buf) => buf,
        None => {
            if let Ok(pool) = m.register_buffers(owner, 4, 256) {
                *slot = Some(pool);
            }
            match slot.as_ref().and_then(FixedBuffers::take) {
                Some(buf) => buf,
                None => return Op::Nop,
            }
        }
    };
    let fd = i32::from(arg / 8 % 8) - 1;
    let offset = (arg > 128).then(|| u64::from(arg) * 512);
    if read {
        let size = if arg % 16 == 15 { 300 } else { usize::from(arg) };
        Op::ReadFixed { fd, offset, buf, size }
    } else {
        let mut buf = buf;
        buf.extend_from_slice(&[arg; 200]);
        let range = usize::from(arg % 64)..usize::from(arg % 250);
        Op::WriteFixed { fd, offset, buf, range }
    }
}

/// The bits of a `user_data` above the fuzz byte: whether the operation carries the caller's
/// buffer, its pid, and how often that pid's ring had been destroyed when it was submitted.
fn lent(lends: bool, pid: u32, generation: u8) -> u64 {
    u64::from(lends) << 32 | u64::from(pid) << 40 | u64::from(generation) << 48
}

/// Checks that a completion of an operation that carried the caller's buffer gives it back: all
/// but one cancelled because its ring was destroyed while it ran (the ring's generation moved
/// on since its submission), which cannot.
fn gave_back(done: &SyscallCompletionEntry, destroyed: &[u8; 4]) {
    if done.user_data >> 32 & 1 == 0 {
        return;
    }
    let (pid, generation) = ((done.user_data >> 40 & 0xff) as usize, (done.user_data >> 48) as u8);
    let ring_gone = done.status.is_cancelled() && destroyed[pid] != generation;
    assert!(
        matches!(done.result, OpResult::Buf { .. } | OpResult::Fixed { .. }) || ring_gone,
        "no buffer back: {:?} {:?}",
        done.status,
        done.result
    );
}

/// Runs the manager calls fuzz bytes describe, three bytes a call, then checks that everything
/// accepted was completed exactly once and nothing is left open; that every completion of an
/// operation that carried the caller's buffer gives it back.
pub fn op_sequence_case(data: &[u8]) {
    let m = IoUringManager::with_backend(shared_backend());
    let policy = |pick: u8| match pick % 3 {
        0 => Policy::rooted(files_dir()).read_write(),
        1 => Policy::rooted(files_dir()).max_outstanding(3).max_open_fds(2).max_io_bytes(100),
        _ => Policy::default(),
    };
    let mut futures: Vec<CompletionFuture> = Vec::new();
    let mut shots: Vec<Multishot> = Vec::new();
    let pools = std::cell::RefCell::new([None, None, None, None]);
    let mut last_seq = [0u64; 4];
    // How often each pid's ring was destroyed: an operation that carried a buffer and ran while
    // its ring was destroyed is the one that may end without it.
    let mut destroyed = [0u8; 4];
    let waker = futures::task::noop_waker();
    for call in data.chunks(3) {
        let [what, a, b] = [call[0], *call.get(1).unwrap_or(&0), *call.get(2).unwrap_or(&0)];
        let pid = u32::from(a % 3) + 1;
        let generation = destroyed[pid as usize];
        let entry = |k: u8, arg: u8| {
            let op = match (k % 16, arg % 8) {
                // A buffer of a pool: this pid's, or another's (refused), at an offset or the
                // position, sizes within and past its room, ranges within and outside.
                (5, 7) | (6, 7) => fixed_op(&m, &pools, k % 16 == 5, pid, arg),
                _ => decode_op(k, arg),
            };
            let lends = op.lends_buffer();
            SyscallSubmissionEntry::new(pid, op, u64::from(arg) | lent(lends, pid, generation))
        };
        let gave_back = |done: &SyscallCompletionEntry| gave_back(done, &destroyed);
        match what % 15 {
            0 => drop(m.create_ring(pid, Some(usize::from(b % 9)), Some(usize::from(b / 9 % 17)))),
            1 => drop(m.set_policy(pid, policy(b))),
            2 => {
                if let Ok(seq) = m.submit(pid, entry(b, a)) {
                    last_seq[pid as usize] = seq;
                }
            }
            3 => {
                let n = usize::from(b % 6);
                if let Ok(seqs) = m.submit_batch(pid, (0..n).map(|i| entry(b.wrapping_add(i as u8), a)).collect()) {
                    assert_eq!(seqs.len(), n, "a batch is accepted whole");
                    last_seq[pid as usize] = seqs.last().copied().unwrap_or(last_seq[pid as usize]);
                }
            }
            4 if a % 4 == 3 => shots.extend(m.submit_multishot(pid, entry(b, a)).ok()),
            4 => futures.extend(m.submit_async(pid, entry(b, a)).ok()),
            5 if !shots.is_empty() && a % 2 == 1 => {
                let i = usize::from(b) % shots.len();
                match std::pin::Pin::new(&mut shots[i]).poll_next(&mut Context::from_waker(&waker)) {
                    Poll::Ready(Some(done)) => {
                        assert_eq!(done.seq, shots[i].seq());
                        gave_back(&done);
                        if shots[i].is_terminated() {
                            drop(shots.swap_remove(i));
                        }
                    }
                    Poll::Ready(None) => panic!("a multishot stream ended before its completion"),
                    Poll::Pending => {}
                }
            }
            6 if !shots.is_empty() && a % 2 == 1 => drop(shots.swap_remove(usize::from(b) % shots.len())),
            5 if !futures.is_empty() => {
                let i = usize::from(b) % futures.len();
                if let Poll::Ready(done) = std::pin::Pin::new(&mut futures[i]).poll(&mut Context::from_waker(&waker)) {
                    assert_eq!(done.seq, futures[i].seq());
                    gave_back(&done);
                    drop(futures.swap_remove(i));
                }
            }
            6 if !futures.is_empty() => drop(futures.swap_remove(usize::from(b) % futures.len())),
            7 if !futures.is_empty() => drop(futures.swap_remove(usize::from(b) % futures.len()).detach()),
            8 => drop(m.cancel(pid, last_seq[pid as usize].wrapping_sub(u64::from(b % 4)))),
            9 => m.reap_completions(pid, Some(usize::from(b % 5))).iter().flatten().for_each(gave_back),
            10 => {
                let seq = last_seq[pid as usize].wrapping_sub(u64::from(b % 4));
                m.wait_completion_timeout(pid, seq, Duration::from_millis(u64::from(b % 20)))
                    .iter()
                    .for_each(gave_back);
            }
            11 => {
                if m.destroy_ring(pid).is_ok() {
                    destroyed[pid as usize] += 1;
                }
            }
            12 => {
                // A linked chain, each with a deadline of 0 to 3 ms or none.
                let n = usize::from(b % 5);
                let chain = (0..n).map(|i| {
                    let e = entry(b.wrapping_add(i as u8 * 3), a);
                    match (a ^ i as u8) % 5 {
                        4 => e,
                        ms => e.with_deadline(Duration::from_millis(u64::from(ms))),
                    }
                });
                if let Ok(seqs) = m.submit_linked(pid, chain.collect()) {
                    assert_eq!(seqs.len(), n, "a chain is accepted whole");
                    last_seq[pid as usize] = seqs.last().copied().unwrap_or(last_seq[pid as usize]);
                }
            }
            13 => {
                let timeout = SyscallOpType::Timeout { duration: Duration::from_millis(u64::from(b % 8)) };
                let e = SyscallSubmissionEntry::new(pid, timeout, 0);
                let e = if a % 2 == 0 { e.with_deadline(Duration::from_millis(u64::from(a % 6))) } else { e };
                if let Ok(seq) = m.submit(pid, e) {
                    last_seq[pid as usize] = seq;
                }
            }
            _ => drop(m.stats_for(pid)),
        }
    }
    drop(futures);
    drop(shots);
    for pid in 1..=3 {
        let _ = m.destroy_ring(pid);
    }
    // An operation still running when its ring was destroyed may finish a moment later; a
    // descriptor it opened is closed then.
    let open = |pid| m.processes().get(pid).map_or(0, |p| p.open_descriptors());
    let state = || (m.stats().pending, m.executor().in_flight(), [open(1), open(2), open(3)]);
    let end = std::time::Instant::now() + LIMIT;
    while state() != (0, 0, [0; 3]) {
        assert!(std::time::Instant::now() < end, "left behind (pending, in flight, open fds): {:?}", state());
        std::thread::sleep(Duration::from_millis(1));
    }
    let stats = m.stats();
    assert_eq!(stats.total_submissions, stats.total_completions, "{stats:?}");
}
