//! The `noisy` workload of the anchors bench (`-- --only noisy`): what noisy neighbours do to a
//! quiet tenant, how exactly rate limits hold, and how weights share the executor, on every
//! backend compiled in.
//!
//! The quiet tenant reads 4 KiB at random offsets of a page-cached file one at a time (submit,
//! wait, repeat): alone, then beside each of (a) a tenant keeping 64 reads of the same file
//! outstanding, (b) a tenant with 1,000 reads parked on 10 FIFOs, (c) a tenant flooding NOPs in
//! batches of 32 with 512 outstanding (more than any backend's window), (d) 1,000 idle tenants
//! each with an `Accept` parked on a listening loopback socket. Each case runs on a manager of
//! its own over the same backend. Targets: the quiet tenant's p99 at most twice its p99 alone,
//! its throughput at least 0.8 of its fair share (see [`FAIR_SHARE`]).
//!
//! Anchors for the quiet tenant, with no crate in the way: the raw io-uring crate (reads one at
//! a time, beside a thread doing batches of 64 reads or of 32 NOPs on a ring of its own) and
//! `std` (`pread` one at a time, beside a thread doing `pread` in a loop). They show what
//! sharing this machine's cores costs by itself.
//!
//! Then, per backend: a tenant keeping 256 NOPs outstanding under `ops_rate(20,000/s)`, and one
//! keeping 64 reads of 4 KiB outstanding under `bytes_rate(40 MiB/s)`, counted over a window after
//! a warm-up (target: within ±5 % of the rate); two tenants of weights 1 and 3 each keeping 512
//! reads outstanding (target: the weight-1 tenant completes 0.225 to 0.275 of the total).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use ai_os_kernel::Pid;
use ai_os_kernel::backend::{self, Backend};
use ai_os_kernel::sandbox::{IpNet, Policy, RateLimit};
use ai_os_kernel::syscalls::open_flags::*;
use ai_os_kernel::syscalls::{IoUringError, IoUringManager, OpResult, SyscallOpType as Op};

use super::{Offsets, entry, file_size, raw_nop, raw_read, write_file};

/// How fair share is defined, as printed and as BENCHMARKS.md states it.
pub const FAIR_SHARE: &str = "fair share: (a), (c): min(quiet alone, neighbour alone / 2), each in its own ops/s \
     (two tenants of weight 1 halve the capacity the neighbour shows alone, and the quiet tenant cannot use more \
     than it does alone); (b), (d): quiet alone (those neighbours hold no capacity)";

const QUIET: Pid = 1;
const READER: Pid = 2;
const PARKER: Pid = 3;
const FLOODER: Pid = 4;
const RATED: Pid = 5;
const LIGHT: Pid = 6;
const HEAVY: Pid = 7;
/// The idle tenants of case (d): pids `IDLE..IDLE + IDLE_TENANTS`.
const IDLE: Pid = 10_000;
const IDLE_TENANTS: u32 = 1000;
const FIFOS: usize = 10;
const PARKED_PER_FIFO: usize = 100;
const OPS_RATE: u64 = 20_000;
const BYTES_RATE: u64 = 40 << 20;

struct Budgets {
    /// The quiet tenant's measurement, and a neighbour's alone.
    window: Duration,
    /// A neighbour's run before the quiet tenant is measured beside it.
    warm: Duration,
    /// Rate limits and weights: the warm-up, then the window counted.
    rate_warm: Duration,
    rate_window: Duration,
}

/// The quiet tenant's run: its reads' latencies, how often its thread was preempted, and how
/// busy the cores were meanwhile.
struct Quiet {
    ops: u64,
    secs: f64,
    lat_ns: Vec<u64>,
    /// Involuntary context switches of the quiet tenant's thread during the run (preemptions),
    /// and voluntary ones (sleeps: waiting for a completion or a lock).
    preempted: u64,
    slept: u64,
    /// Cores kept busy by this process (all its threads, the backends' included) and by the
    /// whole host, on average over the run.
    bench_cores: f64,
    host_cores: f64,
}

impl Quiet {
    fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.secs
    }

    fn pct(&self, p: f64) -> u64 {
        let mut v = self.lat_ns.clone();
        v.sort_unstable();
        v[((v.len() - 1) as f64 * p) as usize]
    }
}

/// Involuntary and voluntary context switches of the calling thread so far.
fn switches() -> (u64, u64) {
    // SAFETY: getrusage writes the struct it is given, nothing else.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    (usage.ru_nivcsw as u64, usage.ru_nvcsw as u64)
}

/// CPU time of this process (all threads), in seconds.
fn process_cpu() -> f64 {
    // SAFETY: as above.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// The host's busy time, all cores, in seconds (`/proc/stat`: all but idle and iowait).
fn host_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> =
        stat.lines().next().unwrap_or("").split_whitespace().skip(1).filter_map(|t| t.parse().ok()).collect();
    let busy: u64 = ticks.iter().enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, t)| t).sum();
    // SAFETY: sysconf reads a constant.
    busy as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// The host's load average over the last minute.
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().next().unwrap_or("?").to_owned()
}

/// Runs `one` (one operation, waited for) until `budget` is spent, timing each.
fn sample(budget: Duration, mut one: impl FnMut()) -> Quiet {
    for _ in 0..100 {
        one(); // warm up
    }
    let mut lat_ns = Vec::with_capacity(1 << 20);
    let (switched, bench, host) = (switches(), process_cpu(), host_cpu());
    let start = Instant::now();
    while start.elapsed() < budget {
        let t = Instant::now();
        one();
        lat_ns.push(t.elapsed().as_nanos() as u64);
    }
    let secs = start.elapsed().as_secs_f64();
    Quiet {
        ops: lat_ns.len() as u64,
        secs,
        lat_ns,
        preempted: switches().0 - switched.0,
        slept: switches().1 - switched.1,
        bench_cores: (process_cpu() - bench) / secs,
        host_cores: (host_cpu() - host) / secs,
    }
}

/// Submits `op` for `pid` and waits for it; its result.
fn run_op(m: &IoUringManager, pid: Pid, op: Op) -> OpResult {
    let seq = m.submit(pid, entry(pid, op)).unwrap();
    let done = m.wait_completion(pid, seq).unwrap();
    assert!(done.status.is_success(), "pid {pid}: {:?} {:?}", done.status, done.result);
    done.result
}

fn fd_of(m: &IoUringManager, pid: Pid, op: Op) -> i32 {
    match run_op(m, pid, op) {
        OpResult::Fd(fd) => fd,
        other => panic!("pid {pid}: expected a descriptor, got {other:?}"),
    }
}

/// Gives `pid` a ring of `depth` entries (or the default) and `policy` (rooted where the data
/// file is), and opens the data file: its descriptor.
fn reader(m: &IoUringManager, pid: Pid, depth: Option<usize>, policy: Policy) -> i32 {
    m.set_policy(pid, policy).unwrap();
    m.create_ring(pid, depth, depth).unwrap();
    fd_of(m, pid, Op::open("data", O_RDONLY))
}

/// Random 4 KiB reads of the data file, each from its own stream of offsets.
fn reads(fd: i32, seed: u64) -> impl FnMut() -> Op {
    let mut off = Offsets { state: seed, pages: file_size() / 4096 };
    move || Op::ReadAt { fd, offset: off.next(), size: 4096 }
}

/// The quiet tenant's read: one at a time, submitted and waited for.
fn quiet_read(m: &IoUringManager, fd: i32) -> impl FnMut() + '_ {
    let mut op = reads(fd, 0x9e3779b97f4a7c15);
    move || {
        let seq = m.submit(QUIET, entry(QUIET, op())).unwrap();
        let done = m.wait_completion(QUIET, seq).unwrap();
        assert!(done.status.is_success(), "{:?}", done.status);
    }
}

/// Keeps `depth` operations of `pid` outstanding, submitted `batch` at a time, taking their
/// completions as they come (counted in `count`), until `stop`. What is still outstanding then
/// is left for `destroy_ring`.
fn saturate(
    m: &IoUringManager,
    pid: Pid,
    depth: usize,
    batch: usize,
    stop: &AtomicBool,
    count: &AtomicU64,
    mut op: impl FnMut() -> Op,
) {
    let mut outstanding = BTreeSet::new();
    while !stop.load(Relaxed) {
        while outstanding.len() + batch <= depth {
            outstanding.extend(m.submit_batch(pid, (0..batch).map(|_| entry(pid, op())).collect()).unwrap());
        }
        let mut ready = m.reap_completions(pid, None).unwrap();
        if ready.is_empty() {
            let oldest = *outstanding.first().unwrap();
            match m.wait_completion_timeout(pid, oldest, Duration::from_millis(50)) {
                Ok(done) => ready.push(done),
                Err(IoUringError::Timeout { .. }) => continue,
                Err(e) => panic!("pid {pid}: {e}"),
            }
        }
        for done in &ready {
            assert!(done.status.is_success(), "pid {pid}: {:?}", done.status);
            outstanding.remove(&done.seq);
        }
        count.fetch_add(ready.len() as u64, Relaxed);
    }
}

/// A neighbour's completions a second while it runs alone.
fn alone(b: &Budgets, neighbour: impl FnOnce(&AtomicBool, &AtomicU64) + Send) -> f64 {
    let (stop, count) = (AtomicBool::new(false), AtomicU64::new(0));
    std::thread::scope(|s| {
        s.spawn(|| neighbour(&stop, &count));
        std::thread::sleep(b.warm);
        let (before, start) = (count.load(Relaxed), Instant::now());
        std::thread::sleep(b.window);
        let rate = (count.load(Relaxed) - before) as f64 / start.elapsed().as_secs_f64();
        stop.store(true, Relaxed);
        rate
    })
}

/// The quiet tenant (`one`) measured while `neighbour` runs on a thread of its own; with the
/// neighbour's completions a second meanwhile.
fn beside(b: &Budgets, one: impl FnMut(), neighbour: impl FnOnce(&AtomicBool, &AtomicU64) + Send) -> (Quiet, f64) {
    let (stop, count) = (AtomicBool::new(false), AtomicU64::new(0));
    std::thread::scope(|s| {
        s.spawn(|| neighbour(&stop, &count));
        std::thread::sleep(b.warm);
        let before = count.load(Relaxed);
        let q = sample(b.window, one);
        // The quiet tenant's warm-up reads are few: the window is close enough to its own.
        let rate = (count.load(Relaxed) - before) as f64 / q.secs;
        stop.store(true, Relaxed);
        (q, rate)
    })
}

/// Neighbour (a): keeps 64 reads of the data file outstanding (submitted 64 at a time).
fn read_neighbour<'a>(m: &'a IoUringManager, dir: &Path) -> impl FnOnce(&AtomicBool, &AtomicU64) + Send + use<'a> {
    let fd = reader(m, READER, Some(1024), Policy::rooted(dir));
    move |stop, count| saturate(m, READER, 64, 64, stop, count, reads(fd, 0x2545f4914f6cdd1d))
}

/// Neighbour (c): keeps 512 NOPs outstanding, submitted 32 at a time.
fn flood(m: &IoUringManager) -> impl FnOnce(&AtomicBool, &AtomicU64) + Send + '_ {
    m.create_ring(FLOODER, Some(1024), Some(1024)).unwrap();
    move |stop, count| saturate(m, FLOODER, 512, 32, stop, count, || Op::Nop)
}

/// One row of the quiet tenant's table.
struct Row {
    imp: String,
    case: &'static str,
    quiet: Quiet,
    /// The quiet tenant's p99 alone, on the same implementation.
    alone_p99: u64,
    fair: f64,
    neighbour_ops: Option<f64>,
    /// The quiet tenant's time in its SQ and in the backend (`stats_for`), p99; none for an
    /// anchor.
    queued_p99: Option<Duration>,
    running_p99: Option<Duration>,
    anchor: bool,
}

impl Row {
    fn p99_over_alone(&self) -> f64 {
        self.quiet.pct(0.99) as f64 / self.alone_p99 as f64
    }
    fn over_fair(&self) -> f64 {
        self.quiet.ops_per_sec() / self.fair
    }
    fn p99_met(&self) -> bool {
        self.p99_over_alone() <= 2.0
    }
    fn share_met(&self) -> bool {
        self.over_fair() >= 0.8
    }
}

const CASES: [&str; 5] = ["alone", "(a) reads qd64", "(b) 1000 FIFO reads", "(c) NOP flood", "(d) 1000 accepts"];
const WORKLOADS: [&str; 5] = ["noisy-alone", "noisy-a-reads", "noisy-b-fifo", "noisy-c-nops", "noisy-d-accepts"];

/// A manager on `b` whose quiet tenant may read `dir`: the manager and the data file's descriptor.
fn quiet_manager(b: &Arc<dyn Backend>, dir: &Path) -> (IoUringManager, i32) {
    let m = IoUringManager::with_backend(b.clone());
    let fd = reader(&m, QUIET, None, Policy::rooted(dir));
    (m, fd)
}

/// The quiet tenant on backend `name`, alone and beside each neighbour.
fn quiet_rows(name: &str, b: &Arc<dyn Backend>, dir: &Path, fifos: &Path, budgets: &Budgets) -> Vec<Row> {
    let mut rows = Vec::new();
    let row = |case: usize, quiet: Quiet, m: &IoUringManager, fair: f64, alone_p99: u64, neighbour_ops| Row {
        imp: name.to_owned(),
        case: CASES[case],
        quiet,
        alone_p99,
        fair,
        neighbour_ops,
        queued_p99: Some(m.stats_for(QUIET).unwrap().queued.p99),
        running_p99: Some(m.stats_for(QUIET).unwrap().running.p99),
        anchor: false,
    };
    // Alone.
    let (m, fd) = quiet_manager(b, dir);
    let solo = sample(budgets.window, quiet_read(&m, fd));
    let (solo_ops, solo_p99) = (solo.ops_per_sec(), solo.pct(0.99));
    rows.push(row(0, solo, &m, solo_ops, solo_p99, None));
    drop(m);

    // (a) 64-deep reads of the same file.
    let m = IoUringManager::with_backend(b.clone());
    let reader_alone = alone(budgets, read_neighbour(&m, dir));
    drop(m);
    let (m, fd) = quiet_manager(b, dir);
    let (q, n) = beside(budgets, quiet_read(&m, fd), read_neighbour(&m, dir));
    rows.push(row(1, q, &m, solo_ops.min(reader_alone / 2.0), solo_p99, Some(n)));
    m.destroy_ring(READER).unwrap();
    drop(m);

    // (b) 1,000 reads parked on FIFOs.
    let (m, fd) = quiet_manager(b, dir);
    m.set_policy(PARKER, Policy::rooted(fifos).read_write()).unwrap();
    m.create_ring(PARKER, Some(1024), Some(1024)).unwrap();
    for i in 0..FIFOS {
        let fifo = fd_of(&m, PARKER, Op::open(format!("fifo{i}"), O_RDWR));
        let parked = (0..PARKED_PER_FIFO).map(|_| entry(PARKER, Op::Read { fd: fifo, size: 1 })).collect();
        m.submit_batch(PARKER, parked).unwrap();
    }
    std::thread::sleep(budgets.warm);
    let q = sample(budgets.window, quiet_read(&m, fd));
    let st = m.stats_for(PARKER).unwrap();
    assert_eq!(st.completed, FIFOS as u64, "only the opens completed; the reads are parked");
    rows.push(row(2, q, &m, solo_ops, solo_p99, None));
    m.destroy_ring(PARKER).unwrap();
    drop(m);

    // (c) NOPs in batches of 32, 512 outstanding.
    let m = IoUringManager::with_backend(b.clone());
    let flood_alone = alone(budgets, flood(&m));
    drop(m);
    let (m, fd) = quiet_manager(b, dir);
    let (q, n) = beside(budgets, quiet_read(&m, fd), flood(&m));
    rows.push(row(3, q, &m, solo_ops.min(flood_alone / 2.0), solo_p99, Some(n)));
    m.destroy_ring(FLOODER).unwrap();
    drop(m);

    // (d) 1,000 idle tenants, each with an accept parked.
    let (m, fd) = quiet_manager(b, dir);
    let net: IpNet = "127.0.0.0/8".parse().unwrap();
    for pid in IDLE..IDLE + IDLE_TENANTS {
        m.set_policy(pid, Policy::default().allow_bind(net, ..).allow_listen()).unwrap();
        m.create_ring(pid, Some(4), Some(4)).unwrap();
        let sockfd = fd_of(&m, pid, Op::Socket { domain: libc::AF_INET, ty: libc::SOCK_STREAM, protocol: 0 });
        run_op(&m, pid, Op::Bind { sockfd, addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0) });
        run_op(&m, pid, Op::Listen { sockfd, backlog: 16 });
        m.submit(pid, entry(pid, Op::Accept { sockfd })).unwrap();
    }
    std::thread::sleep(budgets.warm);
    let q = sample(budgets.window, quiet_read(&m, fd));
    rows.push(row(4, q, &m, solo_ops, solo_p99, None));
    for pid in IDLE..IDLE + IDLE_TENANTS {
        assert_eq!(m.stats_for(pid).unwrap().completed, 3, "pid {pid}: its accept is parked");
        m.destroy_ring(pid).unwrap();
    }
    rows
}

/// The anchors: the raw io-uring crate and `std`, alone and beside a neighbour on another thread.
fn anchor_rows(data: &Path, budgets: &Budgets) -> Vec<Row> {
    let mut rows = Vec::new();
    let file = std::fs::File::open(data).unwrap();
    let anchor = |imp: &str, case: usize, quiet: Quiet, fair: f64, alone_p99: u64, neighbour_ops| Row {
        imp: imp.to_owned(),
        case: CASES[case],
        quiet,
        alone_p99,
        fair,
        neighbour_ops,
        queued_p99: None,
        running_p99: None,
        anchor: true,
    };
    if let Ok(mut ring) = io_uring::IoUring::new(8) {
        let solo = sample(budgets.window, {
            let mut one = raw_read(&mut ring, &file, 1);
            move || {
                one();
            }
        });
        let (solo_ops, solo_p99) = (solo.ops_per_sec(), solo.pct(0.99));
        rows.push(anchor("raw-io-uring", 0, solo, solo_ops, solo_p99, None));
        let read64 = |stop: &AtomicBool, count: &AtomicU64| {
            let mut ring = io_uring::IoUring::new(256).unwrap();
            let mut batch = raw_read(&mut ring, &file, 64);
            while !stop.load(Relaxed) {
                count.fetch_add(batch(), Relaxed);
            }
        };
        let nop32 = |stop: &AtomicBool, count: &AtomicU64| {
            let mut ring = io_uring::IoUring::new(256).unwrap();
            let mut batch = raw_nop(&mut ring, 32);
            while !stop.load(Relaxed) {
                count.fetch_add(batch(), Relaxed);
            }
        };
        for (case, neighbour) in [(1, &read64 as &(dyn Fn(&AtomicBool, &AtomicU64) + Sync)), (3, &nop32)] {
            let neighbour_alone = alone(budgets, neighbour);
            let mut one = raw_read(&mut ring, &file, 1);
            let (q, n) = beside(
                budgets,
                || {
                    one();
                },
                neighbour,
            );
            rows.push(anchor("raw-io-uring", case, q, solo_ops.min(neighbour_alone / 2.0), solo_p99, Some(n)));
        }
    }
    let pread = |seed: u64| {
        let mut off = Offsets { state: seed, pages: file_size() / 4096 };
        let mut buf = vec![0u8; 4096];
        let file = &file;
        move || assert_eq!(file.read_at(&mut buf, off.next()).unwrap(), 4096)
    };
    let solo = sample(budgets.window, pread(0x9e3779b97f4a7c15));
    let (solo_ops, solo_p99) = (solo.ops_per_sec(), solo.pct(0.99));
    rows.push(anchor("std", 0, solo, solo_ops, solo_p99, None));
    let neighbour = |stop: &AtomicBool, count: &AtomicU64| {
        let mut one = pread(0x2545f4914f6cdd1d);
        while !stop.load(Relaxed) {
            for _ in 0..64 {
                one();
            }
            count.fetch_add(64, Relaxed);
        }
    };
    let neighbour_alone = alone(budgets, neighbour);
    let (q, n) = beside(budgets, pread(0x9e3779b97f4a7c15), neighbour);
    rows.push(anchor("std", 1, q, solo_ops.min(neighbour_alone / 2.0), solo_p99, Some(n)));
    rows
}

/// A rate limit's check: what was asked and what was measured, per second.
struct RateCheck {
    imp: String,
    what: &'static str,
    asked: f64,
    measured: f64,
    /// Time the tenant spent throttled, over the time it ran.
    throttled: f64,
}

impl RateCheck {
    fn error(&self) -> f64 {
        self.measured / self.asked - 1.0
    }
    fn met(&self) -> bool {
        self.error().abs() <= 0.05
    }
}

/// Runs `saturating` for `pid` on a thread of its own; its completions a second over the window
/// after the warm-up, and the fraction of its run it spent throttled.
fn counted(
    m: &IoUringManager,
    pid: Pid,
    budgets: &Budgets,
    saturating: impl FnOnce(&AtomicBool, &AtomicU64) + Send,
) -> (f64, f64) {
    let (stop, count) = (AtomicBool::new(false), AtomicU64::new(0));
    let start = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| saturating(&stop, &count));
        std::thread::sleep(budgets.rate_warm);
        let (before, t) = (count.load(Relaxed), Instant::now());
        std::thread::sleep(budgets.rate_window);
        let rate = (count.load(Relaxed) - before) as f64 / t.elapsed().as_secs_f64();
        let throttled = m.stats_for(pid).unwrap().throttled.as_secs_f64() / start.elapsed().as_secs_f64();
        stop.store(true, Relaxed);
        (rate, throttled)
    })
}

fn rate_checks(name: &str, b: &Arc<dyn Backend>, dir: &Path, budgets: &Budgets) -> Vec<RateCheck> {
    let m = IoUringManager::with_backend(b.clone());
    m.set_policy(RATED, Policy::default().ops_rate(RateLimit::per_second(OPS_RATE))).unwrap();
    m.create_ring(RATED, Some(1024), Some(1024)).unwrap();
    let (ops, throttled) =
        counted(&m, RATED, budgets, |stop, count| saturate(&m, RATED, 256, 32, stop, count, || Op::Nop));
    m.destroy_ring(RATED).unwrap();
    let ops = RateCheck { imp: name.to_owned(), what: "ops_rate", asked: OPS_RATE as f64, measured: ops, throttled };

    let m = IoUringManager::with_backend(b.clone());
    let policy = Policy::rooted(dir).bytes_rate(RateLimit::per_second(BYTES_RATE));
    let fd = reader(&m, RATED, Some(1024), policy);
    let (reads_per_sec, throttled) = counted(&m, RATED, budgets, |stop, count| {
        saturate(&m, RATED, 64, 16, stop, count, reads(fd, 0x2545f4914f6cdd1d))
    });
    m.destroy_ring(RATED).unwrap();
    let bytes = RateCheck {
        imp: name.to_owned(),
        what: "bytes_rate",
        asked: BYTES_RATE as f64,
        measured: reads_per_sec * 4096.0,
        throttled,
    };
    vec![ops, bytes]
}

/// Two tenants of weights 1 and 3, each keeping 512 reads outstanding: their completions a
/// second over the window after the warm-up.
struct Weights {
    imp: String,
    light: f64,
    heavy: f64,
    /// Of samples taken every millisecond: the fraction with both tenants in the executor's line
    /// (both with operations queued: contending), and the mean of the window in use.
    both_in_line: f64,
    window_used: f64,
}

impl Weights {
    fn share(&self) -> f64 {
        self.light / (self.light + self.heavy)
    }
    fn met(&self) -> bool {
        (0.225..=0.275).contains(&self.share())
    }
}

fn weights(name: &str, b: &Arc<dyn Backend>, dir: &Path, budgets: &Budgets) -> Weights {
    let m = IoUringManager::with_backend(b.clone());
    let light_fd = reader(&m, LIGHT, Some(1024), Policy::rooted(dir).weight(1));
    let heavy_fd = reader(&m, HEAVY, Some(1024), Policy::rooted(dir).weight(3));
    let (stop, light, heavy) = (AtomicBool::new(false), AtomicU64::new(0), AtomicU64::new(0));
    let window = b.capabilities().max_in_flight;
    let ((l, h), (both_in_line, window_used)) = std::thread::scope(|s| {
        s.spawn(|| saturate(&m, LIGHT, 512, 32, &stop, &light, reads(light_fd, 0x2545f4914f6cdd1d)));
        s.spawn(|| saturate(&m, HEAVY, 512, 32, &stop, &heavy, reads(heavy_fd, 0x9e3779b97f4a7c15)));
        std::thread::sleep(budgets.rate_warm / 2);
        let (l0, h0, t) = (light.load(Relaxed), heavy.load(Relaxed), Instant::now());
        let (mut samples, mut both, mut used) = (0u32, 0u32, 0.0);
        while t.elapsed() < budgets.rate_window {
            samples += 1;
            both += u32::from(m.executor().ready_rings() >= 2);
            used += m.executor().in_flight() as f64 / window as f64;
            std::thread::sleep(Duration::from_millis(1));
        }
        let secs = t.elapsed().as_secs_f64();
        let counts = ((light.load(Relaxed) - l0) as f64 / secs, (heavy.load(Relaxed) - h0) as f64 / secs);
        stop.store(true, Relaxed);
        (counts, (f64::from(both) / f64::from(samples), used / f64::from(samples)))
    });
    m.destroy_ring(LIGHT).unwrap();
    m.destroy_ring(HEAVY).unwrap();
    Weights { imp: name.to_owned(), light: l, heavy: h, both_in_line, window_used }
}

fn mkfifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid, NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo {path:?}");
}

/// Runs the whole workload and prints it (`json`: one object per line).
pub fn run(quick: bool, json: bool) {
    let budgets = if quick {
        Budgets {
            window: Duration::from_millis(250),
            warm: Duration::from_millis(100),
            rate_warm: Duration::from_millis(250),
            rate_window: Duration::from_millis(500),
        }
    } else {
        Budgets {
            window: Duration::from_secs(1),
            warm: Duration::from_millis(200),
            rate_warm: Duration::from_secs(1),
            rate_window: Duration::from_secs(1),
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_file(&data, file_size()).unwrap(); // page-cached: just written
    let fifos = dir.path().join("fifos");
    std::fs::create_dir(&fifos).unwrap();
    for i in 0..FIFOS {
        mkfifo(&fifos.join(format!("fifo{i}")));
    }

    let (started, load_before) = (Instant::now(), load());
    let (mut rows, mut rates, mut shares) = (Vec::new(), Vec::new(), Vec::new());
    for &name in backend::available() {
        match backend::by_name(name) {
            Ok(b) => {
                rows.extend(quiet_rows(name, &b, dir.path(), &fifos, &budgets));
                rates.extend(rate_checks(name, &b, dir.path(), &budgets));
                shares.push(weights(name, &b, dir.path(), &budgets));
            }
            Err(e) => eprintln!("noisy: {name} skipped ({e})"),
        }
    }
    rows.extend(anchor_rows(&data, &budgets));
    let took = started.elapsed();
    let load_after = load();

    let met = |ok: bool| if ok { "met" } else { "not met" };
    if json {
        for r in &rows {
            let case = CASES.iter().position(|c| *c == r.case).unwrap();
            println!(
                "{{\"workload\":\"{}\",\"impl\":\"{}\",\"ops\":{},\"secs\":{:.6},\"ops_per_sec\":{:.1},\"p50_ns\":{},\"p99_ns\":{},\
                 \"p99_over_alone\":{:.3},\"fair_share\":{:.1},\"over_fair\":{:.3},\"neighbour_ops_per_sec\":{},\
                 \"queued_p99_ns\":{},\"running_p99_ns\":{},\"preempted\":{},\"slept\":{},\"bench_cores\":{:.2},\"host_cores\":{:.2},\"anchor\":{},\"met\":{}}}",
                WORKLOADS[case],
                r.imp,
                r.quiet.ops,
                r.quiet.secs,
                r.quiet.ops_per_sec(),
                r.quiet.pct(0.5),
                r.quiet.pct(0.99),
                r.p99_over_alone(),
                r.fair,
                r.over_fair(),
                r.neighbour_ops.map_or("null".into(), |n| format!("{n:.1}")),
                r.queued_p99.map_or("null".into(), |d| d.as_nanos().to_string()),
                r.running_p99.map_or("null".into(), |d| d.as_nanos().to_string()),
                r.quiet.preempted,
                r.quiet.slept,
                r.quiet.bench_cores,
                r.quiet.host_cores,
                r.anchor,
                r.p99_met() && r.share_met()
            );
        }
        for c in &rates {
            println!(
                "{{\"target\":\"noisy {} {}\",\"goal\":{:.0},\"measured\":{:.1},\"error\":{:.4},\"throttled\":{:.3},\"met\":{}}}",
                c.what,
                c.imp,
                c.asked,
                c.measured,
                c.error(),
                c.throttled,
                c.met()
            );
        }
        for w in &shares {
            println!(
                "{{\"target\":\"noisy weights 1:3 {}\",\"light_ops_per_sec\":{:.1},\"heavy_ops_per_sec\":{:.1},\"share\":{:.4},\"both_in_line\":{:.3},\"window_used\":{:.3},\"goal\":\"0.225..=0.275\",\"met\":{}}}",
                w.imp,
                w.light,
                w.heavy,
                w.share(),
                w.both_in_line,
                w.window_used,
                w.met()
            );
        }
        return;
    }
    println!(
        "noisy: a quiet tenant reading 4 KiB of a page-cached {} MiB file one at a time, alone and beside (a) a tenant \
         keeping 64 reads outstanding, (b) {} reads parked on {FIFOS} FIFOs, (c) NOPs in batches of 32, 512 outstanding, \
         (d) {IDLE_TENANTS} idle tenants each with an accept parked ({:.0} s; host load average {load_before} before, \
         {load_after} after)",
        file_size() >> 20,
        FIFOS * PARKED_PER_FIFO,
        took.as_secs_f64()
    );
    println!(
        "columns: SQ p99, run p99 = the quiet tenant's time in its SQ and in the backend (stats_for: one operation in 16, \
         power-of-two buckets, upper bounds); sleep/op, preempt/s = voluntary context switches of its thread per \
         operation, involuntary ones a second; cores b/h = cores busy in this process (getrusage) / on the whole host \
         (/proc/stat, sampled at each tick: approximate) during its run"
    );
    println!("{FAIR_SHARE}");
    println!("targets: p99 <= 2x the quiet tenant's p99 alone; ops/s >= 0.8x fair share; anchors have none");
    println!(
        "{:<13} {:<20} {:>8} {:>8} {:>8} {:>6} {:>8} {:>6} {:>8} {:>8} {:>8} {:>9} {:>9} {:>11}  verdict (p99, share)",
        "impl",
        "case",
        "ops/s",
        "p50",
        "p99",
        "/alone",
        "fair",
        "/fair",
        "SQ p99",
        "run p99",
        "sleep/op",
        "preempt/s",
        "nbr ops/s",
        "cores b/h"
    );
    let us = |ns: u64| format!("{:.1}us", ns as f64 / 1000.0);
    for r in &rows {
        let verdict =
            if r.anchor { "(anchor)".to_owned() } else { format!("{}, {}", met(r.p99_met()), met(r.share_met())) };
        println!(
            "{:<13} {:<20} {:>8.0} {:>8} {:>8} {:>5.2}x {:>8.0} {:>5.2}x {:>8} {:>8} {:>8.3} {:>9.0} {:>9} {:>5.2}/{:<5.2}  {verdict}",
            r.imp,
            r.case,
            r.quiet.ops_per_sec(),
            us(r.quiet.pct(0.5)),
            us(r.quiet.pct(0.99)),
            r.p99_over_alone(),
            r.fair,
            r.over_fair(),
            r.queued_p99.map_or("-".into(), |d| us(d.as_nanos() as u64)),
            r.running_p99.map_or("-".into(), |d| us(d.as_nanos() as u64)),
            r.quiet.slept as f64 / r.quiet.ops as f64,
            r.quiet.preempted as f64 / r.quiet.secs,
            r.neighbour_ops.map_or("-".into(), |n| format!("{n:.0}")),
            r.quiet.bench_cores,
            r.quiet.host_cores,
        );
    }
    println!(
        "rate limits: one tenant saturating (256 NOPs or 64 reads of 4 KiB outstanding), completions over {:.1} s after \
         {:.1} s; target within 5 %",
        budgets.rate_window.as_secs_f64(),
        budgets.rate_warm.as_secs_f64()
    );
    for c in &rates {
        let unit = if c.what == "bytes_rate" { 1048576.0 } else { 1.0 };
        let suffix = if c.what == "bytes_rate" { " MiB/s" } else { "/s" };
        println!(
            "  {:<9} {:<10} asked {:>7.0}{suffix:<6} measured {:>9.1}{suffix:<6} {:>+6.2}%  throttled {:>3.0}% of the run  {}",
            c.imp,
            c.what,
            c.asked / unit,
            c.measured / unit,
            c.error() * 100.0,
            c.throttled * 100.0,
            met(c.met())
        );
    }
    println!(
        "weights 1:3: two tenants keeping 512 reads of 4 KiB outstanding each, completions over {:.1} s; target weight-1 \
         share 0.225..=0.275",
        budgets.rate_window.as_secs_f64()
    );
    for w in &shares {
        println!(
            "  {:<9} weight 1 {:>9.0}/s  weight 3 {:>9.0}/s  share {:.3}  both in line {:>3.0}% of the time, window {:>3.0}% used  {}",
            w.imp,
            w.light,
            w.heavy,
            w.share(),
            w.both_in_line * 100.0,
            w.window_used * 100.0,
            met(w.met())
        );
    }
}
