//! Every workload on every backend compiled in, and on the anchors, in one run:
//! `cargo bench --bench anchors [-- --quick] [-- --json] [-- --plot FILE.svg] [-- --only PREFIX]
//! [-- --file-mib N]` (`--all-features` for tokio and smol).
//!
//! Workloads: `nop-b1`, `nop-b32`, `read4k-qd1`, `read4k-qd64`, `write4k`, `echo-c1`, `echo-c16`,
//! `echo-srv-c1` and `echo-srv-c16` (the server pattern: each connection's server side loops on
//! a task of its own with its receive posted before the data comes, the clients' round trips
//! awaited together; the same tokio code over our tenants' `TcpStream`s and over tokio's own,
//! on one current-thread runtime), `fanout`, `copy` (the whole read file to a new one, in copies a second: `CopyRange` against
//! `std::fs::copy` and `tokio::fs::copy`), `copy-tenant` (the same through the handles:
//! `tenant.copy(from, to)`), `stat` (a `Stat` of the read file, one at a time,
//! against `std::fs::metadata`), and `noisy` (`benches/noisy.rs`: noisy neighbours, rate limits, weights; printed on
//! its own). Implementations: this crate's backends (`uring`, `tokio`, `smol`, `blocking`) and the
//! anchors (`raw-io-uring`, `std`, `tokio-fs`, `tokio-epoll`). Ratios are to the best anchor of
//! the same workload in the same run; latencies are per operation where an operation is waited
//! for alone (`-b1`, `-qd1`, `-c1`).

use std::io::IsTerminal;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ai_os_kernel::backend::{self, Backend};
use ai_os_kernel::sandbox::{IpNet, Policy};
use ai_os_kernel::syscalls::open_flags::*;
use ai_os_kernel::syscalls::{IoUringManager, OpResult, SyscallOpType as Op, SyscallSubmissionEntry as Entry};

/// The read and write workloads' file size: 64 MiB unless `-- --file-mib N` says otherwise.
fn file_size() -> u64 {
    static SIZE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SIZE.get_or_init(|| arg("--file-mib").and_then(|n| n.parse::<u64>().ok()).filter(|&n| n > 0).unwrap_or(64) << 20)
}

/// The value after `flag` on the command line.
fn arg(flag: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned()
}
const ANCHORS: [&str; 4] = ["raw-io-uring", "std", "tokio-fs", "tokio-epoll"];
const WORKLOADS: [&str; 13] = [
    "nop-b1",
    "nop-b32",
    "read4k-qd1",
    "read4k-qd64",
    "write4k",
    "echo-c1",
    "echo-c16",
    "echo-srv-c1",
    "echo-srv-c16",
    "fanout",
    "copy",
    "copy-tenant",
    "stat",
];

#[path = "noisy.rs"]
mod noisy;

struct Cell {
    workload: &'static str,
    imp: String,
    ops: u64,
    secs: f64,
    lat_ns: Vec<u64>,
    note: Option<String>,
}

impl Cell {
    fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.secs
    }
    fn pct(&self, p: f64) -> Option<u64> {
        if self.lat_ns.is_empty() {
            return None;
        }
        let mut v = self.lat_ns.clone();
        v.sort_unstable();
        Some(v[((v.len() - 1) as f64 * p) as usize])
    }
}

/// Runs `iter` (which returns the operations it did) until `budget` is spent.
fn timed(workload: &'static str, imp: &str, budget: Duration, latency: bool, mut iter: impl FnMut() -> u64) -> Cell {
    if only().is_some_and(|prefix| !workload.starts_with(prefix)) {
        return Cell { workload, imp: imp.to_owned(), ops: 0, secs: 0.0, lat_ns: Vec::new(), note: None };
    }
    for _ in 0..3 {
        iter(); // warm up
    }
    let (mut ops, mut lat_ns) = (0, Vec::new());
    let start = Instant::now();
    while start.elapsed() < budget {
        let t = Instant::now();
        ops += iter();
        if latency {
            lat_ns.push(t.elapsed().as_nanos() as u64);
        }
    }
    Cell { workload, imp: imp.to_owned(), ops, secs: start.elapsed().as_secs_f64(), lat_ns, note: None }
}

fn entry(pid: u32, op: Op) -> Entry {
    Entry::new(pid, op, 0)
}

/// `-- --only PREFIX`: run only the workloads whose names start with it.
fn only() -> Option<&'static str> {
    static ONLY: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    ONLY.get_or_init(|| arg("--only")).as_deref()
}

/// Takes a batch's completions as the polling API intends: `reap_completions` takes every one
/// that is ready under one lock, and `wait_completion` blocks only when none is.
fn wait_all(m: &IoUringManager, pid: u32, seqs: &[u64]) {
    let first = seqs[0];
    let mut left = vec![true; seqs.len()];
    let mut remaining = seqs.len();
    let take = |seq: u64, ok: bool, left: &mut [bool], remaining: &mut usize| {
        assert!(ok, "seq {seq} failed");
        assert!(std::mem::replace(&mut left[(seq - first) as usize], false), "seq {seq} taken twice");
        *remaining -= 1;
    };
    let mut oldest = 0;
    while remaining > 0 {
        let ready = m.reap_completions(pid, None).expect("reap");
        if ready.is_empty() {
            // Nothing ready: block on the oldest operation not yet taken.
            while !left[oldest] {
                oldest += 1;
            }
            let done = m.wait_completion(pid, seqs[oldest]).expect("completion");
            take(done.seq, done.status.is_success(), &mut left, &mut remaining);
        }
        for done in ready {
            take(done.seq, done.status.is_success(), &mut left, &mut remaining);
        }
    }
}

/// A cheap, repeatable stream of 4 KiB-aligned offsets in a file of `size` bytes.
struct Offsets {
    state: u64,
    pages: u64,
}

impl Offsets {
    fn over(size: u64) -> Self {
        Offsets { state: 0x9e3779b97f4a7c15, pages: size / 4096 }
    }

    fn next(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        (self.state % self.pages) * 4096
    }
}

fn nop(m: &IoUringManager, batch: usize) -> impl FnMut() -> u64 + '_ {
    move || {
        let seqs = m.submit_batch(1, (0..batch).map(|_| entry(1, Op::Nop)).collect()).unwrap();
        wait_all(m, 1, &seqs);
        batch as u64
    }
}

/// 4 KiB reads at random offsets of a file of `size` bytes, `qd` at a time.
fn read4k<'a>(m: &'a IoUringManager, fd: i32, qd: usize, size: u64) -> impl FnMut() -> u64 + 'a {
    let mut off = Offsets::over(size);
    move || {
        let batch = (0..qd).map(|_| entry(2, Op::ReadAt { fd, offset: off.next(), size: 4096 })).collect();
        wait_all(m, 2, &m.submit_batch(2, batch).unwrap());
        qd as u64
    }
}

fn write4k<'a>(m: &'a IoUringManager, fd: i32) -> impl FnMut() -> u64 + 'a {
    let mut pos = 0u64;
    move || {
        let batch = (0..32)
            .map(|i| entry(3, Op::WriteAt { fd, offset: (pos + i) * 4096 % file_size(), data: vec![7; 4096] }))
            .collect();
        pos += 32;
        wait_all(m, 3, &m.submit_batch(3, batch).unwrap());
        32
    }
}

/// Runs `op` as `pid` and takes its result, which must be a success.
fn run(m: &IoUringManager, pid: u32, op: Op) -> OpResult {
    let s = m.submit(pid, entry(pid, op)).unwrap();
    let done = m.wait_completion(pid, s).unwrap();
    assert!(done.status.is_success(), "{:?}", done.status);
    done.result
}

/// The read file copied whole to `copy` beside it, as a tenant would: open both, `CopyRange`
/// until all is copied (in steps of the policy's largest transfer), close both. One copy an
/// iteration.
fn copy<'a>(m: &'a IoUringManager, file: &'a std::path::Path) -> impl FnMut() -> u64 + 'a {
    let name = file.file_name().unwrap().to_str().unwrap();
    move || {
        let OpResult::Fd(src) = run(m, 3, Op::open(name, O_RDONLY)) else { panic!() };
        let OpResult::Fd(dst) = run(m, 3, Op::open("copy", O_WRONLY | O_CREAT | O_TRUNC)) else { panic!() };
        let mut at = 0u64;
        while at < file_size() {
            let len = (file_size() - at).min(64 << 20) as usize;
            let copied = run(m, 3, Op::CopyRange { fd_in: src, offset_in: at, fd_out: dst, offset_out: at, len });
            let OpResult::Count(n) = copied else { panic!() };
            assert!(n > 0);
            at += n as u64;
        }
        run(m, 3, Op::Close { fd: src });
        run(m, 3, Op::Close { fd: dst });
        1
    }
}

/// A `Stat` of the read file, one at a time.
fn stat<'a>(m: &'a IoUringManager, file: &'a std::path::Path) -> impl FnMut() -> u64 + 'a {
    let name = file.file_name().unwrap().to_str().unwrap().to_owned();
    move || {
        let OpResult::Stat(st) = run(m, 2, Op::Stat { path: name.clone(), follow: true }) else { panic!() };
        assert_eq!(st.size, file_size());
        1
    }
}

/// Loopback echo through the manager: `conns` connections, one 64-byte round trip on each per
/// iteration, all awaited together.
fn echo_setup(m: &IoUringManager, conns: usize) -> Vec<(i32, i32)> {
    let net: IpNet = "127.0.0.0/8".parse().unwrap();
    m.set_policy(4, Policy::default().allow_bind(net, ..).allow_listen().allow_connect(net, ..)).unwrap();
    let run = |op: Op| {
        let s = m.submit(4, entry(4, op)).unwrap();
        m.wait_completion(4, s).unwrap().result
    };
    let socket = || match run(Op::Socket { domain: 2, ty: 1, protocol: 0 }) {
        OpResult::Fd(fd) => fd,
        other => panic!("{other:?}"),
    };
    let l = socket();
    run(Op::Bind { sockfd: l, addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0) });
    run(Op::Listen { sockfd: l, backlog: 128 });
    let OpResult::Addr(addr) = run(Op::LocalAddr { sockfd: l }) else { panic!() };
    (0..conns)
        .map(|_| {
            let c = socket();
            let accept = m.submit(4, entry(4, Op::Accept { sockfd: l })).unwrap();
            run(Op::Connect { sockfd: c, addr });
            let OpResult::Accepted { fd: s, .. } = m.wait_completion(4, accept).unwrap().result else { panic!() };
            (s, c)
        })
        .collect()
}

async fn op(m: &IoUringManager, o: Op) -> OpResult {
    m.submit_async(4, entry(4, o)).unwrap().await.result
}

async fn recv_exact(m: &IoUringManager, fd: i32, n: usize) {
    let mut got = 0;
    while got < n {
        let OpResult::Bytes(b) = op(m, Op::Recv { sockfd: fd, size: n - got, flags: 0 }).await else { panic!() };
        assert!(!b.is_empty());
        got += b.len();
    }
}

fn echo<'a>(m: &'a IoUringManager, pairs: &'a [(i32, i32)]) -> impl FnMut() -> u64 + 'a {
    move || {
        futures::executor::block_on(futures::future::join_all(pairs.iter().map(|&(s, c)| async move {
            op(m, Op::Send { sockfd: c, data: vec![1; 64], flags: 0 }).await;
            recv_exact(m, s, 64).await;
            op(m, Op::Send { sockfd: s, data: vec![2; 64], flags: 0 }).await;
            recv_exact(m, c, 64).await;
        })));
        pairs.len() as u64
    }
}

/// 1,000 processes, 64 NOPs each, submitted together; returns the run and the slowest process's
/// finish time over the median one's.
fn fanout(m: &IoUringManager, imp: &str, budget: Duration) -> Cell {
    const PROCS: u32 = 1000;
    let rings: Vec<_> = (100..100 + PROCS).map(|pid| m.create_ring(pid, Some(64), Some(64)).unwrap()).collect();
    let mut ratio = 0.0;
    let mut cell = timed("fanout", imp, budget, false, || {
        let start = Instant::now();
        for pid in 100..100 + PROCS {
            m.submit_batch(pid, (0..64).map(|_| entry(pid, Op::Nop)).collect()).unwrap();
        }
        let mut finish = vec![None; PROCS as usize];
        let mut left = PROCS as usize;
        while left > 0 {
            for (i, ring) in rings.iter().enumerate() {
                if finish[i].is_none() && ring.ready() == 64 {
                    finish[i] = Some(start.elapsed());
                    left -= 1;
                }
            }
        }
        for pid in 100..100 + PROCS {
            assert_eq!(m.reap_completions(pid, None).unwrap().len(), 64);
        }
        let mut f: Vec<Duration> = finish.into_iter().map(Option::unwrap).collect();
        f.sort();
        ratio = f[f.len() - 1].as_secs_f64() / f[f.len() / 2].as_secs_f64();
        u64::from(PROCS) * 64
    });
    let st = m.stats_for(100).unwrap();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    cell.note = Some(format!(
        "slowest_over_median={ratio:.2}  pid 100 p50/p99 us: queued {:.0}/{:.0} running {:.0}/{:.0} waiting {:.0}/{:.0}",
        us(st.queued.p50),
        us(st.queued.p99),
        us(st.running.p50),
        us(st.running.p99),
        us(st.waiting.p50),
        us(st.waiting.p99)
    ));
    cell
}

/// A manager on `b` with rings for pids 1 to 4: pid 2 may read the directory of `file` (and has
/// `file` open: the descriptor returned), pid 3 may also write there.
fn manager(b: Arc<dyn Backend>, file: &std::path::Path) -> (IoUringManager, i32) {
    let m = IoUringManager::with_backend(b);
    for pid in 1..=4 {
        m.create_ring(pid, Some(256), Some(512)).unwrap();
    }
    let dir = file.parent().unwrap();
    m.set_policy(2, Policy::rooted(dir)).unwrap();
    m.set_policy(3, Policy::rooted(dir).read_write()).unwrap();
    let s = m.submit(2, entry(2, Op::open(file.file_name().unwrap().to_str().unwrap(), O_RDONLY))).unwrap();
    let OpResult::Fd(rfd) = m.wait_completion(2, s).unwrap().result else { panic!("open {file:?}") };
    (m, rfd)
}

fn backend_cells(
    name: &str,
    b: Arc<dyn Backend>,
    file: &std::path::Path,
    budget: Duration,
    cells: &mut Vec<Cell>,
    bar: &indicatif::ProgressBar,
) {
    let (m, rfd) = manager(b, file);
    let s = m.submit(3, entry(3, Op::open("scratch", O_WRONLY | O_CREAT | O_TRUNC))).unwrap();
    let OpResult::Fd(wfd) = m.wait_completion(3, s).unwrap().result else { panic!("open scratch") };
    let mut push = |c: Cell| {
        bar.inc(1);
        cells.push(c);
    };
    push(timed("nop-b1", name, budget, true, nop(&m, 1)));
    push(timed("nop-b32", name, budget, false, nop(&m, 32)));
    push(timed("read4k-qd1", name, budget, true, read4k(&m, rfd, 1, file_size())));
    push(timed("read4k-qd64", name, budget, false, read4k(&m, rfd, 64, file_size())));
    let mut w = timed("write4k", name, budget, false, write4k(&m, wfd));
    let t = Instant::now();
    let s = m.submit(3, entry(3, Op::Fsync { fd: wfd })).unwrap();
    m.wait_completion(3, s).unwrap();
    w.secs += t.elapsed().as_secs_f64();
    push(w);
    let pairs = echo_setup(&m, 16);
    push(timed("echo-c1", name, budget, true, echo(&m, &pairs[..1])));
    push(timed("echo-c16", name, budget, false, echo(&m, &pairs)));
    #[cfg(feature = "tokio")]
    if only().is_none_or(|p| "echo-srv".starts_with(p) || p.starts_with("echo-srv")) {
        echo_server_cells(&m, name, budget).into_iter().for_each(&mut push);
    }
    push(fanout(&m, name, budget));
    push(timed("copy", name, budget, true, copy(&m, file)));
    // The same copy through the handles: one line.
    let (tenant, data) = (m.tenant(3), file.file_name().unwrap().to_owned());
    push(timed("copy-tenant", name, budget, true, || {
        assert_eq!(futures::executor::block_on(tenant.copy(&data, "copy-tenant")).unwrap(), file_size());
        1
    }));
    push(timed("stat", name, budget, true, stat(&m, file)));
}

/// NOPs in batches of `batch` on the raw io-uring crate.
fn raw_nop(ring: &mut io_uring::IoUring, batch: usize) -> impl FnMut() -> u64 + '_ {
    move || {
        for _ in 0..batch {
            // SAFETY: a NOP points to no memory.
            unsafe { ring.submission().push(&io_uring::opcode::Nop::new().build()).unwrap() };
        }
        ring.submit_and_wait(batch).unwrap();
        ring.completion().count() as u64
    }
}

/// 4 KiB reads at random offsets of `file`, `qd` at a time, on the raw io-uring crate (into the
/// same warm buffers each time).
fn raw_read<'a>(ring: &'a mut io_uring::IoUring, file: &std::fs::File, qd: usize) -> impl FnMut() -> u64 + 'a {
    use std::os::fd::AsRawFd;
    let mut bufs = vec![vec![0u8; 4096]; qd];
    let fd = io_uring::types::Fd(file.as_raw_fd());
    let mut off = Offsets::over(file.metadata().unwrap().len());
    move || {
        for buf in bufs.iter_mut() {
            let sqe = io_uring::opcode::Read::new(fd, buf.as_mut_ptr(), 4096).offset(off.next()).build();
            // SAFETY: the buffers outlive the submit_and_wait below, which waits for all.
            unsafe { ring.submission().push(&sqe).unwrap() };
        }
        ring.submit_and_wait(qd).unwrap();
        ring.completion().inspect(|c| assert_eq!(c.result(), 4096)).count() as u64
    }
}

fn raw_uring_cells(file: &std::fs::File, budget: Duration, cells: &mut Vec<Cell>) {
    let Ok(mut ring) = io_uring::IoUring::new(256) else { return };
    for batch in [1usize, 32] {
        let name = if batch == 1 { "nop-b1" } else { "nop-b32" };
        cells.push(timed(name, "raw-io-uring", budget, batch == 1, raw_nop(&mut ring, batch)));
    }
    for qd in [1usize, 64] {
        let name = if qd == 1 { "read4k-qd1" } else { "read4k-qd64" };
        cells.push(timed(name, "raw-io-uring", budget, qd == 1, raw_read(&mut ring, file, qd)));
    }
}

/// One of the io_uring issue's throughput targets: ours over an anchor, at least `goal`.
struct Target {
    /// The workload, and for reads the size of the file read.
    workload: String,
    ours: &'static str,
    anchor: &'static str,
    goal: f64,
    /// Operations per second of ours and of the anchor, per round.
    rounds: Vec<(f64, f64)>,
}

impl Target {
    /// Ours over the anchor, per round.
    fn ratios(&self) -> Vec<f64> {
        self.rounds.iter().map(|(ours, anchor)| ours / anchor).collect()
    }

    fn median(&self) -> f64 {
        median(self.ratios())
    }

    /// Lowest and highest ratio of the rounds.
    fn range(&self) -> (f64, f64) {
        self.ratios().iter().fold((f64::MAX, 0.0f64), |(lo, hi), &r| (lo.min(r), hi.max(r)))
    }

    /// What ours spends per operation beyond what the anchor spends, in nanoseconds (median of
    /// the rounds): the io_uring issue budgets the whole ring path at about 400 ns per operation.
    fn extra_ns(&self) -> f64 {
        median(self.rounds.iter().map(|(ours, anchor)| 1e9 / ours - 1e9 / anchor).collect())
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Rounds per target ratio.
const ROUNDS: usize = 7;

/// Ours and the anchor of a target, timed in alternating rounds of `slice` each: on a shared
/// machine whose speed drifts between cells measured a minute apart, each round compares the two
/// under the same conditions, and the median of the rounds is the figure.
fn paired(
    workload: &'static str,
    slice: Duration,
    mut ours: impl FnMut() -> u64,
    mut anchor: impl FnMut() -> u64,
) -> Vec<(f64, f64)> {
    (0..ROUNDS)
        .map(|_| {
            let a = timed(workload, "ours", slice, false, &mut ours).ops_per_sec();
            let b = timed(workload, "anchor", slice, false, &mut anchor).ops_per_sec();
            (a, b)
        })
        .collect()
}

/// The io_uring issue's targets: `UringBackend` against the raw io-uring crate on NOP batches and
/// 4 KiB reads, and against the tokio backend on the reads.
///
/// The reads are measured twice. Once on the 64 MiB file of the other cells, which may fit in
/// the CPU's last-level cache (260 MiB on the Xeon of BENCHMARKS.md, where the raw crate then
/// reads 2 M/s); once on a file far larger than that cache, so that each read copies from memory
/// as the issue's own figure assumes (the raw crate "about 0.6 M/s here").
fn uring_targets(dir: &std::path::Path, path: &std::path::Path, budget: Duration) -> Vec<Target> {
    let mut out = Vec::new();
    let (Ok(uring), Ok(mut ring)) = (backend::by_name("uring"), io_uring::IoUring::new(256)) else { return out };
    let slice = (budget / 4).max(Duration::from_millis(50));
    let mut target = |workload: String, anchor, goal, rounds| {
        out.push(Target { workload, ours: "uring", anchor, goal, rounds });
    };
    if only().is_none_or(|p| "nop-b32".starts_with(p)) {
        let (m, _) = manager(uring.clone(), path);
        target("nop-b32".into(), "raw-io-uring", 0.3, paired("nop-b32", slice, nop(&m, 32), raw_nop(&mut ring, 32)));
    }
    if only().is_none_or(|p| "read4k-qd64".starts_with(p)) {
        let big = beyond_cache_size().and_then(|size| {
            let big = dir.join("beyond-cache");
            match write_file(&big, size) {
                Ok(()) => Some(big),
                Err(e) => {
                    eprintln!("no read targets on a {} MiB file: {e}", size >> 20);
                    std::fs::remove_file(&big).ok();
                    None
                }
            }
        });
        for file in std::iter::once(path.to_path_buf()).chain(big) {
            let size = std::fs::metadata(&file).unwrap().len();
            let workload = format!("read4k-qd64 ({} MiB file)", size >> 20);
            let (m, rfd) = manager(uring.clone(), &file);
            let opened = std::fs::File::open(&file).unwrap();
            let raw = raw_read(&mut ring, &opened, 64);
            target(workload.clone(), "raw-io-uring", 0.8, paired("read4k-qd64", slice, read4k(&m, rfd, 64, size), raw));
            if let Ok(tokio) = backend::by_name("tokio") {
                let (t, tfd) = manager(tokio, &file);
                let rounds = paired("read4k-qd64", slice, read4k(&m, rfd, 64, size), read4k(&t, tfd, 64, size));
                target(workload, "tokio", 4.0, rounds);
            }
        }
    }
    out
}

/// A file size far beyond the CPU's caches: 16 times its largest (1 to 8 GiB); none if the
/// page cache could not hold such a file with room to spare, or `-- --file-mib` chose the size.
fn beyond_cache_size() -> Option<u64> {
    if arg("--file-mib").is_some() {
        return None;
    }
    let bytes = |s: &str| {
        let (n, unit) = s.trim().split_at(s.trim().find(|c: char| !c.is_ascii_digit())?);
        let shift = match unit {
            "K" => 10,
            "M" => 20,
            "G" => 30,
            _ => return None,
        };
        Some(n.parse::<u64>().ok()? << shift)
    };
    let largest = (0..8)
        .filter_map(|i| std::fs::read_to_string(format!("/sys/devices/system/cpu/cpu0/cache/index{i}/size")).ok())
        .filter_map(|s| bytes(&s))
        .max()
        .unwrap_or(256 << 20);
    let size = (16 * largest).clamp(1 << 30, 8 << 30) / (1 << 20) * (1 << 20);
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let available_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    (available_kib << 10 > 3 * size).then_some(size)
}

/// Writes a file of `size` bytes (a repeating pattern) through to the disk; it stays in the page
/// cache.
fn write_file(path: &std::path::Path, size: u64) -> std::io::Result<()> {
    use std::io::Write;
    let chunk: Vec<u8> = (0..8u64 << 20).map(|i| (i * 31 % 251) as u8).collect();
    let mut f = std::fs::File::create(path)?;
    let mut left = size as usize;
    while left > 0 {
        let n = left.min(chunk.len());
        f.write_all(&chunk[..n])?;
        left -= n;
    }
    // Written back now, so that the write-back does not run under the timed reads.
    f.sync_all()
}

fn std_cells(file: &std::fs::File, dir: &std::path::Path, budget: Duration, cells: &mut Vec<Cell>) {
    let mut buf = vec![0u8; 4096];
    for (name, qd) in [("read4k-qd1", 1u64), ("read4k-qd64", 64)] {
        let mut off = Offsets::over(file_size());
        cells.push(timed(name, "std", budget, qd == 1, || {
            for _ in 0..qd {
                assert_eq!(file.read_at(&mut buf, off.next()).unwrap(), 4096);
            }
            qd
        }));
    }
    let out = std::fs::File::create(dir.join("std-scratch")).unwrap();
    let mut pos = 0u64;
    let mut c = timed("write4k", "std", budget, false, || {
        for _ in 0..32 {
            out.write_all_at(&[7; 4096], pos * 4096 % file_size()).unwrap();
            pos += 1;
        }
        32
    });
    let t = Instant::now();
    out.sync_all().unwrap();
    c.secs += t.elapsed().as_secs_f64();
    cells.push(c);
    let data = dir.join("data");
    for workload in ["copy", "copy-tenant"] {
        cells.push(timed(workload, "std", budget, true, || {
            assert_eq!(std::fs::copy(&data, dir.join("std-copy")).unwrap(), file_size());
            1
        }));
    }
    cells.push(timed("stat", "std", budget, true, || {
        assert_eq!(std::fs::metadata(&data).unwrap().len(), file_size());
        1
    }));
}

fn tokio_cells(file: &std::path::Path, budget: Duration, cells: &mut Vec<Cell>) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let data = file.to_path_buf();
    let file = Arc::new(std::fs::File::open(file).unwrap());
    for (name, qd) in [("read4k-qd1", 1usize), ("read4k-qd64", 64)] {
        let mut off = Offsets::over(file_size());
        cells.push(timed(name, "tokio-fs", budget, qd == 1, || {
            let reads = (0..qd).map(|_| {
                let (f, o) = (file.clone(), off.next());
                rt.spawn_blocking(move || {
                    let mut buf = vec![0u8; 4096];
                    f.read_at(&mut buf, o).unwrap()
                })
            });
            rt.block_on(futures::future::join_all(reads)).len() as u64
        }));
    }
    let copy_to = data.with_file_name("tokio-copy");
    for workload in ["copy", "copy-tenant"] {
        cells.push(timed(workload, "tokio-fs", budget, true, || {
            assert_eq!(rt.block_on(tokio::fs::copy(&data, &copy_to)).unwrap(), file_size());
            1
        }));
    }
    cells.push(timed("stat", "tokio-fs", budget, true, || {
        assert_eq!(rt.block_on(tokio::fs::metadata(&data)).unwrap().len(), file_size());
        1
    }));
    // The server pattern over tokio's own sockets, on one thread as ours.
    if only().is_none_or(|p| "echo-srv".starts_with(p) || p.starts_with("echo-srv")) {
        let one = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        for (workload, n) in [("echo-srv-c1", 1usize), ("echo-srv-c16", 16)] {
            let local = tokio::task::LocalSet::new();
            cells.push(echo_server_pattern(workload, "tokio-epoll", budget, &one, &local, tokio_pairs(&one, n)));
        }
    }
    // Plain tokio echo over epoll.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let pairs: Vec<_> = tokio_pairs(&rt, 16).into_iter().map(|p| Arc::new(tokio::sync::Mutex::new(p))).collect();
    for (name, n) in [("echo-c1", 1usize), ("echo-c16", 16)] {
        cells.push(timed(name, "tokio-epoll", budget, n == 1, || {
            let trips = pairs[..n].iter().cloned().map(|p| {
                rt.spawn(async move {
                    let mut p = p.lock().await;
                    let (s, c) = &mut *p;
                    let mut buf = [0u8; 64];
                    c.write_all(&[1; 64]).await.unwrap();
                    s.read_exact(&mut buf).await.unwrap();
                    s.write_all(&buf).await.unwrap();
                    c.read_exact(&mut buf).await.unwrap();
                })
            });
            rt.block_on(futures::future::join_all(trips)).len() as u64
        }));
    }
}

/// The server pattern over streams of type `S`, on `rt`: each server side echoes 64-byte
/// messages on a task of its own, forever, its read posted before the data comes; an iteration
/// is one round trip from each of the first `n` clients, awaited together.
fn echo_server_pattern<S>(
    workload: &'static str,
    imp: &str,
    budget: Duration,
    rt: &tokio::runtime::Runtime,
    local: &tokio::task::LocalSet,
    pairs: Vec<(S, S)>,
) -> Cell
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let n = pairs.len();
    let mut clients = Vec::new();
    let mut servers = Vec::new();
    for (mut server, client) in pairs {
        servers.push(rt.spawn(async move {
            let mut buf = [0u8; 64];
            while server.read_exact(&mut buf).await.is_ok() {
                if server.write_all(&buf).await.is_err() {
                    break;
                }
            }
        }));
        clients.push(Arc::new(tokio::sync::Mutex::new(client)));
    }
    let cell = timed(workload, imp, budget, n == 1, || {
        let trips = clients.iter().cloned().map(|c| async move {
            let mut c = c.lock().await;
            let mut buf = [0u8; 64];
            c.write_all(&[1; 64]).await.unwrap();
            c.read_exact(&mut buf).await.unwrap();
        });
        local.block_on(rt, futures::future::join_all(trips)).len() as u64
    });
    drop(clients);
    for server in servers {
        server.abort();
    }
    cell
}

/// `n` connected pairs (server side, client side) of a tenant's sockets on loopback.
#[cfg(feature = "tokio")]
fn tenant_pairs(m: &IoUringManager, rt: &tokio::runtime::Runtime, n: usize) -> Vec<(TenantStream, TenantStream)> {
    rt.block_on(tenant_pairs_async(m, n))
}

/// [`tenant_pairs`], as a future.
#[cfg(feature = "tokio")]
async fn tenant_pairs_async(m: &IoUringManager, n: usize) -> Vec<(TenantStream, TenantStream)> {
    let tenant = m.tenant(4);
    let listener = tenant.tcp_listen((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let mut pairs = Vec::new();
    for _ in 0..n {
        let (client, accepted) = futures::join!(tenant.tcp_connect(listener.local_addr()), listener.accept());
        pairs.push((accepted.unwrap().0, client.unwrap()));
    }
    pairs
}

/// Our tenants' TCP stream.
#[cfg(feature = "tokio")]
type TenantStream = ai_os_kernel::tenant::TcpStream;

/// The server-pattern echo on our backend (`m`), one connection and sixteen (our streams have
/// tokio's traits with the `tokio` feature only).
#[cfg(feature = "tokio")]
fn echo_server_cells(m: &IoUringManager, name: &str, budget: Duration) -> Vec<Cell> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut cells = Vec::new();
    for (workload, n) in [("echo-srv-c1", 1), ("echo-srv-c16", 16)] {
        let local = tokio::task::LocalSet::new();
        cells.push(echo_server_pattern(workload, name, budget, &rt, &local, tenant_pairs(m, &rt, n)));
        // With the manager's drive task on the runtime's thread, where it has one.
        if name == "uring" {
            let local = tokio::task::LocalSet::new();
            local.spawn_local(m.drive());
            let pairs = local.block_on(&rt, async { tenant_pairs_async(m, n).await });
            cells.push(echo_server_pattern(workload, "uring-drive", budget, &rt, &local, pairs));
        }
    }
    cells
}

/// `n` connected pairs (server side, client side) of tokio's sockets on loopback, made on
/// `rt`, without Nagle's delay.
fn tokio_pairs(rt: &tokio::runtime::Runtime, n: usize) -> Vec<(tokio::net::TcpStream, tokio::net::TcpStream)> {
    rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let mut pairs = Vec::new();
        for _ in 0..n {
            let c = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (s, _) = l.accept().await.unwrap();
            c.set_nodelay(true).unwrap();
            s.set_nodelay(true).unwrap();
            pairs.push((s, c));
        }
        pairs
    })
}

/// Resident memory of this process, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// What an idle ring of default sizes costs: 10,000 of them, measured by resident memory.
fn idle_rings() -> f64 {
    // Any backend: a ring's memory is the core's; the backend's own is made before `before`.
    let m = IoUringManager::with_backend(backend::by_name(backend::available()[0]).unwrap());
    let before = rss();
    let rings: Vec<_> = (0..10_000).map(|pid| m.create_ring(pid, None, None).unwrap()).collect();
    let per_ring = rss().saturating_sub(before) as f64 / rings.len() as f64;
    drop(rings);
    per_ring
}

/// What `stats_for`'s latency tracking costs on `nop-b32`: on and off alternated five times,
/// medians compared.
fn tracking_cost(name: &str, budget: Duration) -> Option<f64> {
    let m = IoUringManager::with_backend(backend::by_name(name).ok()?);
    m.create_ring(1, Some(256), Some(512)).unwrap();
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        for (tracking, out) in [(true, &mut on), (false, &mut off)] {
            m.set_latency_tracking(tracking);
            out.push(timed("nop-b32", name, budget / 2, false, nop(&m, 32)).ops_per_sec());
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Some(median(&mut off) / median(&mut on) - 1.0)
}

/// Throughput per workload and implementation as horizontal bars on a log scale, one group per
/// workload, anchors in grey.
fn plot(cells: &[Cell], path: &str) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    let row = 18;
    let height = 40 + cells.len() as u32 * row as u32 + 20 * 8;
    let root = SVGBackend::new(path, (900, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let text = ("sans-serif", 13).into_font();
    root.draw(&Text::new("ops/s (log scale) per workload and implementation, one run", (10, 10), text.clone()))?;
    let max = cells.iter().map(Cell::ops_per_sec).fold(1.0, f64::max).log10().ceil();
    let (x0, x1) = (260i32, 880i32);
    let mut y = 40i32;
    let mut last = "";
    for c in cells {
        if c.workload != last {
            y += 10;
            root.draw(&Text::new(c.workload.to_string(), (10, y), text.clone()))?;
            last = c.workload;
        }
        let anchor = ANCHORS.contains(&c.imp.as_str());
        let len = (c.ops_per_sec().max(1.0).log10() / max * f64::from(x1 - x0)) as i32;
        let color = if anchor { RGBColor(160, 160, 160) } else { RGBColor(40, 110, 200) };
        root.draw(&Rectangle::new([(x0, y), (x0 + len, y + row - 4)], color.filled()))?;
        root.draw(&Text::new(c.imp.clone(), (130, y), text.clone()))?;
        let label = format!("{:.0}", c.ops_per_sec());
        root.draw(&Text::new(label, (x0 + len.min(x1 - x0 - 80) + 4, y), text.clone()))?;
        y += row;
    }
    root.present()?;
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let json = args.iter().any(|a| a == "--json");
    let plot_to = arg("--plot");
    // `--only` naming `noisy` and no other workload: only that.
    if only().is_some_and(|p| "noisy".starts_with(p) && !WORKLOADS.iter().any(|w| w.starts_with(p))) {
        noisy::run(quick, json);
        return;
    }
    let budget = if quick { Duration::from_millis(200) } else { Duration::from_secs(1) };
    // First, before anything else has warmed the allocator.
    let idle = idle_rings();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    write_file(&path, file_size()).unwrap();
    let file = std::fs::File::open(&path).unwrap(); // page-cached: just written

    let backends: Vec<&str> = backend::available().to_vec();
    let total = backends.len() as u64 * 13 + 10;
    let bar = if std::io::stderr().is_terminal() && !json {
        indicatif::ProgressBar::new(total)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut cells = Vec::new();
    raw_uring_cells(&file, budget, &mut cells);
    std_cells(&file, dir.path(), budget, &mut cells);
    tokio_cells(&path, budget, &mut cells);
    bar.inc(10);
    for name in backends {
        match backend::by_name(name) {
            Ok(b) => backend_cells(name, b, &path, budget, &mut cells, &bar),
            Err(e) => eprintln!("{name}: skipped ({e})"),
        }
    }
    bar.finish_and_clear();
    let targets = uring_targets(dir.path(), &path, budget);
    if only().is_none_or(|p| "noisy".starts_with(p)) {
        noisy::run(quick, json);
    }

    cells.retain(|c| c.ops > 0);
    cells.sort_by_key(|c| (WORKLOADS.iter().position(|w| *w == c.workload), ANCHORS.contains(&c.imp.as_str())));
    if let Some(path) = &plot_to {
        match plot(&cells, path) {
            Ok(()) => eprintln!("plot written to {path}"),
            Err(e) => eprintln!("plot not written: {e}"),
        }
    }
    if json {
        for c in &cells {
            let p = |v: Option<u64>| v.map_or("null".to_owned(), |n| n.to_string());
            let note = c.note.as_ref().map_or(String::new(), |n| {
                let (k, rest) = n.split_once('=').unwrap();
                let v = rest.split_whitespace().next().unwrap();
                format!(",\"{k}\":{v}")
            });
            println!(
                "{{\"workload\":\"{}\",\"impl\":\"{}\",\"ops\":{},\"secs\":{:.6},\"ops_per_sec\":{:.1},\"p50_ns\":{},\"p99_ns\":{}{note}}}",
                c.workload,
                c.imp,
                c.ops,
                c.secs,
                c.ops_per_sec(),
                p(c.pct(0.5)),
                p(c.pct(0.99))
            );
        }
        for t in &targets {
            let (min, max) = t.range();
            println!(
                "{{\"target\":\"{} {}/{}\",\"median\":{:.3},\"min\":{min:.3},\"max\":{max:.3},\"goal\":{},\"met\":{},\"extra_ns_per_op\":{:.0}}}",
                t.workload,
                t.ours,
                t.anchor,
                t.median(),
                t.goal,
                t.median() >= t.goal,
                t.extra_ns()
            );
        }
        return;
    }
    println!("idle rings: {idle:.0} bytes of resident memory per ring of default sizes (10,000 rings)");
    if let Some(name) = backend::available().first()
        && only().is_none_or(|prefix| "nop-b32".starts_with(prefix))
        && let Some(cost) = tracking_cost(name, budget)
    {
        println!("latency tracking on nop-b32 ({name}): {:+.1}% time per operation with it on", cost * 100.0);
    }
    println!(
        "{:<12} {:<13} {:>12} {:>10} {:>10} {:>16}  note",
        "workload", "impl", "ops/s", "p50", "p99", "vs best anchor"
    );
    for c in &cells {
        let best = cells
            .iter()
            .filter(|a| a.workload == c.workload && ANCHORS.contains(&a.imp.as_str()))
            .map(Cell::ops_per_sec)
            .fold(0.0, f64::max);
        let ratio = if best > 0.0 { format!("{:.2}x", c.ops_per_sec() / best) } else { "-".into() };
        let us = |v: Option<u64>| v.map_or("-".to_owned(), |n| format!("{:.1}us", n as f64 / 1000.0));
        println!(
            "{:<12} {:<13} {:>12.0} {:>10} {:>10} {:>16}  {}",
            c.workload,
            c.imp,
            c.ops_per_sec(),
            us(c.pct(0.5)),
            us(c.pct(0.99)),
            ratio,
            c.note.as_deref().unwrap_or("")
        );
    }
    if !targets.is_empty() {
        println!(
            "io_uring targets, ours over the anchor in {ROUNDS} alternating rounds (median, range), and what ours \
             spends per operation beyond the anchor (median):"
        );
    }
    for t in &targets {
        let (min, max) = t.range();
        let verdict = if t.median() >= t.goal { "met" } else { "not met" };
        println!(
            "  {:<28} {:>5} / {:<13} {:>6.2}x  ({min:.2}x..{max:.2}x)  goal {:.1}x: {verdict:<7}  ours {:+.0} ns/op",
            t.workload,
            t.ours,
            t.anchor,
            t.median(),
            t.goal,
            t.extra_ns()
        );
    }
}
