//! `ai-os-kernel` against its peers: the same workloads written with each crate's own API, run
//! one after another in one run, each with its throughput, its CPU time per operation and its
//! system calls per operation.
//!
//! # Running
//!
//! ```text
//! cargo run --release --manifest-path peers/Cargo.toml -- [--only PREFIX] [--impls A,B] [--secs S]
//!     [--rounds N] [--json] [--plot FILE.svg] [--timeout SECS]
//! ```
//!
//! - `--only PREFIX`: only the workloads whose names start with it (`echo`, `read4k-qd1-t`).
//! - `--impls A,B`: only these implementations (`ours,raw-io-uring`).
//! - `--secs S` (default 1.0): each cell's timed section, after a warm-up of a tenth of it
//!   (at least 50 ms).
//! - `--rounds N` (default 3): every cell is run once per round, the rounds one after another;
//!   each figure is the median of the rounds (the range of ops/s is printed beside it).
//! - `--json`: one JSON object per line instead of the tables: the run (kernel, cores,
//!   durations, how syscalls were counted), then each cell (ops/s per round and median, ratio to
//!   the best peer, CPU µs/op, syscalls/op), each cell not run or failed (with why), and each
//!   thread-scaling ratio.
//! - `--plot FILE.svg`: a bar chart of each cell's ops/s over the best peer's, per workload.
//! - `--timeout SECS` (default 600, or twice the run's expected length if more): the whole run
//!   is aborted past it; a cell's process is killed (and the cell reported as failed) if it runs
//!   a minute past its own budget.
//!
//! With defaults a run takes about two and a half minutes on two cores.
//!
//! With `PEERS_OURS_FIXED` set in the environment, `ours`' reads use buffers of a registered
//! pool (`ReadFixed`, `READ_FIXED` on io_uring) in place of reused `Vec`s (`ReadInto`).
//!
//! # Workloads
//!
//! | workload | one operation | implementations |
//! |---|---|---|
//! | `nop-b1`, `nop-b32` | a NOP; submitted one at a time, or 32 at a time and all awaited | ours, ours-drive, ours-block-on, raw-io-uring |
//! | `read4k-qd1`, `read4k-qd64` | a 4 KiB read at a random 4 KiB-aligned offset of a 64 MiB file in the page cache; 1 or 64 in flight | ours, ours-drive, ours-block-on, raw-io-uring, monoio, compio, std (qd1) |
//! | `write4k` | a buffered 4 KiB positional write, 32 in flight, at ascending offsets of a file truncated whenever it reaches 64 MiB | ours, raw-io-uring, monoio, compio, std (one at a time) |
//! | `echo-srv-c1`, `echo-srv-c16` | a 64-byte round trip over TCP on 127.0.0.1: each connection's server side is a task looping `read_exact(64)` and `write_all` back, its read posted before the data comes; an iteration is one round trip from each of the 1 or 16 clients, awaited together, all on one thread | ours, ours-drive, ours-block-on, raw-io-uring, monoio, compio, tokio-epoll |
//! | `echo-srv-c16-t2` | the same with two threads, each running 8 connections on its own runtime | as above |
//! | `nop-b1-tN`, `read4k-qd1-tN` | `nop-b1` and `read4k-qd1` on N threads (1, 2, all cores) at once | ours, ours-drive, ours-block-on, raw-io-uring |
//!
//! The implementations:
//!
//! - `ours`: `IoUringManager::with_backend(Arc::new(UringBackend::new()?))`; NOPs and files
//!   through the polling API (`submit` or `submit_batch`, then `wait_completion` /
//!   `reap_completions`) as `benches/anchors.rs` does; the echo through a tenant's
//!   `ai_os_kernel::tenant::TcpStream` with tokio's I/O traits on a tokio current-thread
//!   runtime. Threads share one manager, each with a tenant pid of its own.
//! - `ours-drive`: the same manager with its drive task (`IoUringManager::drive`) spawned in a
//!   `LocalSet` of a tokio current-thread runtime on each thread that submits, so that each
//!   thread's operations go to a kernel ring of its own, entered once per tick of the runtime;
//!   NOPs and reads through the async API (`submit_async`, `submit_batch_async`), the echo as
//!   `ours`. Not run for `write4k`.
//! - `ours-block-on`: the same manager with no other runtime: each thread's work runs in
//!   `IoUringManager::block_on` (a kernel ring of its own, parked in `io_uring_enter` between
//!   ticks); the echo through a tenant's streams with futures' I/O traits, server sides and
//!   clients joined on the thread. Not run for `write4k`.
//! - `raw-io-uring`: the io-uring crate by hand, one ring per thread, buffers reused, one
//!   `submit_and_wait` per batch; the echo is a hand-written event loop of RECVs and SENDs
//!   with one `submit_and_wait(1)` per tick.
//! - `monoio`: monoio's runtime on its io_uring driver, `monoio::fs::File::read_at` /
//!   `write_at` and its `TcpStream` with owned buffers; concurrency is joined futures, and
//!   spawned tasks for the echo's servers.
//! - `compio`: the same with compio's runtime, `compio::fs::File` and `compio::net::TcpStream`.
//! - `tokio-epoll`: tokio's own `TcpStream` on a current-thread runtime (epoll), the same
//!   echo code as `ours`.
//! - `std`: `std::os::unix::fs::FileExt::read_at` / `write_at`, blocking.
//!
//! The echo's sockets have `TCP_NODELAY` set wherever the crate offers it (everywhere but a
//! tenant's `TcpStream`, which has no such option); in a strict ping-pong of one message each
//! way, Nagle's algorithm never holds a segment back, so this changes nothing measured.
//!
//! Peers (what "vs best peer" divides by): monoio, compio, raw-io-uring, tokio-epoll, std.
//! Cells that cannot be written with a crate's API are listed as skipped, with the reason:
//! neither monoio nor compio offers a NOP operation; std has no queue depth; `-tall` is not
//! run where all cores are two (it would be `-t2` again).
//!
//! # How a cell is measured
//!
//! Every cell runs in a process of its own: the binary runs itself with
//! `--cell WORKLOAD --impl IMPL --secs S --dir DIR`, so no thread, ring or runtime of one cell
//! lingers into another, and the counters below see only the cell. In that process:
//!
//! - **System calls.** First thing, before any other thread is made, the process opens a
//!   counting perf event on the `raw_syscalls:sys_enter` tracepoint (`perf_event_open` with
//!   `PERF_TYPE_TRACEPOINT`, the id from `/sys/kernel/tracing/events/raw_syscalls/sys_enter/id`,
//!   `pid` 0, `cpu` -1, `inherit` 1, disabled). Every thread made afterwards (runtime workers,
//!   the backend's threads, the cell's threads) inherits it; the io_uring kernel workers inherit
//!   it too but enter no system calls. The counter is reset and enabled when the timed section
//!   starts (after set-up and warm-up), and disabled and read when it ends, so it counts every
//!   system call of every thread of the process in the timed section and nothing else; the
//!   count divided by the section's operations is `syscalls/op`. The meter's own calls (two
//!   `ioctl`s, `getrusage`) add a handful per cell, nothing per operation. This is more exact
//!   than `perf stat -e raw_syscalls:sys_enter` around the child, which would also count the
//!   set-up, the warm-up and the exit. The parent checks the counter once at start (a thousand
//!   `getppid` calls) and prints what it counted; without the tracepoint (no tracefs, or
//!   `perf_event_paranoid` forbidding it), `syscalls/op` is `-`.
//! - **CPU time.** `getrusage(RUSAGE_SELF)` user plus system time, which covers every thread of
//!   the process (the io_uring workers included: they belong to it), read when the timed
//!   section starts and ends; the difference divided by the operations is `CPU µs/op`. On two
//!   cores a cell with background threads may use more CPU than wall time.
//! - **Throughput.** Operations (round trips for the echo) over the timed section's wall time.
//!   A multi-threaded cell starts its meter once every thread is warm, releases them together,
//!   and stops it when the last is done; its threads never tear down inside the section (the
//!   process exits once the sample is taken).
//!
//! Nothing waits forever: every cell's process aborts itself past its budget plus a minute, the
//! parent kills a cell's process that outlives that (and every cell's process dies with the
//! parent: `PR_SET_PDEATHSIG`), a panic on any thread aborts the process
//! (`panic = "abort"`), and the whole run aborts after `--timeout`. Sockets are on 127.0.0.1
//! only. The machine's other load shows in every figure: compare cells of one run, and read the
//! range of the rounds before a small difference.

#![warn(clippy::missing_docs_in_private_items)]

mod compio;
mod measure;
mod monoio;
mod ours;
mod raw;
mod std_tokio;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use measure::{Env, Meter, Sample};

/// What a cell's function gives: its sample, or why it could not run.
pub type Outcome = Result<Sample, Box<dyn std::error::Error>>;

/// The workloads, in the order printed.
const WORKLOADS: [&str; 14] = [
    "nop-b1",
    "nop-b32",
    "read4k-qd1",
    "read4k-qd64",
    "write4k",
    "echo-srv-c1",
    "echo-srv-c16",
    "echo-srv-c16-t2",
    "nop-b1-t1",
    "nop-b1-t2",
    "nop-b1-tall",
    "read4k-qd1-t1",
    "read4k-qd1-t2",
    "read4k-qd1-tall",
];

/// The implementations, in the order printed.
const IMPLS: [&str; 8] =
    ["ours", "ours-drive", "ours-block-on", "raw-io-uring", "monoio", "compio", "tokio-epoll", "std"];

/// The implementations a workload's ratios are taken against.
const PEERS: [&str; 5] = ["monoio", "compio", "raw-io-uring", "tokio-epoll", "std"];

/// The number of cores.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// The threads of a scaling workload (`...-t1`, `...-t2`, `...-tall`).
pub fn threads_of(workload: &str) -> usize {
    match workload.rsplit_once("-t").map(|(_, n)| n) {
        Some("all") => cores(),
        Some(n) => n.parse().unwrap_or(1),
        None => 1,
    }
}

/// Whether `imp` belongs in `workload`'s table: `None` if not at all, `Some(Err(why))` if it
/// is listed but not run, `Some(Ok(()))` if it runs.
fn support(workload: &str, imp: &str) -> Option<Result<(), &'static str>> {
    let scaling = workload.starts_with("nop-b1-t") || workload.starts_with("read4k-qd1-t");
    if scaling && !matches!(imp, "ours" | "ours-drive" | "ours-block-on" | "raw-io-uring") {
        return None;
    }
    if workload.ends_with("-tall") && cores() <= 2 {
        return Some(Err("all cores are 2 here: the same cell as -t2"));
    }
    let nop = workload.starts_with("nop-");
    let echo = workload.starts_with("echo-");
    match imp {
        "ours" | "raw-io-uring" => Some(Ok(())),
        "ours-drive" | "ours-block-on" if workload == "write4k" => None,
        "ours-drive" | "ours-block-on" => Some(Ok(())),
        "monoio" if nop => Some(Err("monoio has no NOP operation")),
        "compio" if nop => Some(Err("compio (compio-driver 0.12) has no NOP operation")),
        "monoio" | "compio" => Some(Ok(())),
        "tokio-epoll" => echo.then_some(Ok(())),
        "std" => match workload {
            "read4k-qd1" | "write4k" => Some(Ok(())),
            "read4k-qd64" => Some(Err("blocking: one read at a time (see read4k-qd1)")),
            _ => None,
        },
        _ => None,
    }
}

/// The value after `flag` on the command line.
fn arg(flag: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned()
}

/// Whether `flag` is on the command line.
fn flag(flag: &str) -> bool {
    std::env::args().any(|a| a == flag)
}

/// The timed section's length, from `--secs`.
fn secs() -> Duration {
    let secs = arg("--secs").and_then(|s| s.parse::<f64>().ok()).filter(|s| *s > 0.0).unwrap_or(1.0);
    Duration::from_secs_f64(secs)
}

/// The warm-up before a timed section of `secs`.
fn warm(secs: Duration) -> Duration {
    (secs / 10).max(Duration::from_millis(50))
}

/// The longest a cell's process may take: its budget and a minute for set-up and teardown.
fn cell_deadline(secs: Duration) -> Duration {
    secs + warm(secs) + Duration::from_secs(60)
}

fn main() {
    if let Some(workload) = arg("--cell") {
        child(&workload, &arg("--impl").expect("--impl"), PathBuf::from(arg("--dir").expect("--dir")));
    }
    let rounds = arg("--rounds").and_then(|s| s.parse::<usize>().ok()).filter(|&n| n > 0).unwrap_or(3);
    let only = arg("--only");
    let impls = arg("--impls");
    let json = flag("--json");
    let mut cells: Vec<Cell> = Vec::new();
    for workload in WORKLOADS.iter().filter(|w| only.as_deref().is_none_or(|p| w.starts_with(p))) {
        for imp in IMPLS.iter().filter(|i| impls.as_deref().is_none_or(|l| l.split(',').any(|x| x == **i))) {
            if let Some(support) = support(workload, imp) {
                cells.push(Cell { workload, imp, skipped: support.err(), samples: Vec::new(), failed: None });
            }
        }
    }
    // Ten minutes, or twice what the cells should take if that is more.
    let runs = cells.iter().filter(|c| c.skipped.is_none()).count() * rounds;
    let expected = (secs() + warm(secs()) + Duration::from_millis(500)) * runs as u32;
    let timeout = arg("--timeout").and_then(|s| s.parse::<u64>().ok()).map(Duration::from_secs);
    let dir = TempDir::new().expect("a temporary directory");
    watchdog(timeout.unwrap_or((2 * expected).max(Duration::from_secs(600))), "the run", Some(dir.0.clone()));
    measure::write_data(&dir.0.join(measure::DATA)).expect("write the read file");
    let counter = counter_check();
    let header = format!(
        "kernel {}, {} cores, {} s per cell after {} ms of warm-up, median of {rounds} rounds; syscalls: {counter}",
        kernel(),
        cores(),
        secs().as_secs_f64(),
        warm(secs()).as_millis()
    );
    eprintln!("{header}");
    for round in 1..=rounds {
        for cell in cells.iter_mut().filter(|c| c.skipped.is_none() && c.failed.is_none()) {
            match run_cell(cell.workload, cell.imp, &dir.0) {
                Ok(sample) => {
                    eprintln!(
                        "[round {round}/{rounds}] {:<16} {:<13} {:>12.0} ops/s",
                        cell.workload,
                        cell.imp,
                        sample.ops as f64 / sample.secs
                    );
                    cell.samples.push(sample);
                }
                Err(e) => {
                    eprintln!("[round {round}/{rounds}] {} {}: failed: {e}", cell.workload, cell.imp);
                    cell.failed = Some(e);
                }
            }
        }
    }

    if let Some(path) = arg("--plot") {
        match plot(&cells, &path) {
            Ok(()) => eprintln!("plot written to {path}"),
            Err(e) => eprintln!("plot not written: {e}"),
        }
    }
    if json {
        println!(
            "{{\"kernel\":{:?},\"cores\":{},\"secs\":{},\"warm_secs\":{},\"rounds\":{rounds},\"syscalls\":{counter:?}}}",
            kernel(),
            cores(),
            secs().as_secs_f64(),
            warm(secs()).as_secs_f64()
        );
        print_json(&cells);
    } else {
        println!("{header}\n");
        print_tables(&cells);
    }
}

/// One workload on one implementation, over the rounds.
struct Cell {
    /// The workload.
    workload: &'static str,
    /// The implementation.
    imp: &'static str,
    /// Why it is listed but not run.
    skipped: Option<&'static str>,
    /// One sample per round run.
    samples: Vec<Sample>,
    /// Why it failed, if a round did.
    failed: Option<String>,
}

impl Cell {
    /// The median of `f` over the rounds.
    fn median(&self, f: impl Fn(&Sample) -> Option<f64>) -> Option<f64> {
        let mut v: Vec<f64> = self.samples.iter().filter_map(f).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some(v[v.len() / 2])
    }

    /// Operations per second (median of the rounds).
    fn ops_per_sec(&self) -> Option<f64> {
        self.median(|s| Some(s.ops as f64 / s.secs))
    }

    /// CPU microseconds per operation, every thread counted (median of the rounds).
    fn cpu_us_per_op(&self) -> Option<f64> {
        self.median(|s| Some(s.cpu_secs * 1e6 / s.ops as f64))
    }

    /// System calls per operation, every thread counted (median of the rounds).
    fn syscalls_per_op(&self) -> Option<f64> {
        self.median(|s| s.syscalls.map(|n| n as f64 / s.ops as f64))
    }

    /// The lowest and highest ops/s of the rounds.
    fn range(&self) -> Option<(f64, f64)> {
        let rates = self.samples.iter().map(|s| s.ops as f64 / s.secs);
        let (lo, hi) = rates.fold((f64::MAX, 0.0f64), |(lo, hi), r| (lo.min(r), hi.max(r)));
        (!self.samples.is_empty()).then_some((lo, hi))
    }

    /// Ops/s over the best peer's in the same workload.
    fn ratio(&self, cells: &[Cell]) -> Option<f64> {
        let best = best_peer(cells, self.workload)?;
        Some(self.ops_per_sec()? / best)
    }
}

/// The best peer's ops/s in `workload`.
fn best_peer(cells: &[Cell], workload: &str) -> Option<f64> {
    cells
        .iter()
        .filter(|c| c.workload == workload && PEERS.contains(&c.imp))
        .filter_map(Cell::ops_per_sec)
        .max_by(f64::total_cmp)
}

/// The run's directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    /// Makes the directory, named after this process.
    fn new() -> std::io::Result<Self> {
        let dir = std::env::temp_dir().join(format!("ai-os-kernel-peers-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Aborts the process once `limit` has passed, removing `cleanup` first.
fn watchdog(limit: Duration, what: &'static str, cleanup: Option<PathBuf>) {
    std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || {
            std::thread::sleep(limit);
            eprintln!("watchdog: {what} took more than {} s; aborting", limit.as_secs());
            if let Some(dir) = cleanup {
                let _ = std::fs::remove_dir_all(dir);
            }
            std::process::abort();
        })
        .expect("spawn the watchdog");
}

/// The running kernel's release.
fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map_or_else(|_| "?".into(), |s| s.trim().to_owned())
}

/// Checks the syscall counter on a thousand `getppid` calls; says what it counted, or why
/// there is none.
fn counter_check() -> String {
    match measure::SyscallCounter::open() {
        Ok(counter) => {
            counter.start();
            for _ in 0..1000 {
                // SAFETY: getppid takes nothing and cannot fail.
                unsafe { libc::syscall(libc::SYS_getppid) };
            }
            let counted = counter.stop();
            format!(
                "in-process raw_syscalls:sys_enter counter, inherited by every thread, timed section only \
                 (check: 1000 getppid counted as {counted})"
            )
        }
        Err(e) => format!("not counted (the raw_syscalls:sys_enter tracepoint could not be opened: {e})"),
    }
}

/// Runs one cell in a process of its own and takes its sample.
fn run_cell(workload: &str, imp: &str, dir: &Path) -> Result<Sample, String> {
    let secs = secs();
    let mut child = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
        .args(["--cell", workload, "--impl", imp, "--secs", &secs.as_secs_f64().to_string()])
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn: {e}"))?;
    let deadline = Instant::now() + cell_deadline(secs) + Duration::from_secs(5);
    let status = loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(status) => break status,
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("timed out: killed".into());
            }
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    };
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().expect("piped"), &mut out).map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("exited with {status}"));
    }
    out.lines().find_map(Sample::from_line).ok_or_else(|| format!("no result in {out:?}"))
}

/// A cell's process: opens the meter before anything else, runs the cell, prints its sample
/// and exits at once (threads, runtimes and sockets are not torn down: the process ends).
fn child(workload: &str, imp: &str, dir: PathBuf) -> ! {
    let secs = secs();
    // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number: the cell dies with the run.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    // Made before the counter is opened, so that it is not counted.
    watchdog(cell_deadline(secs), "a cell", None);
    let meter = Meter::init();
    if let Some(e) = &meter.counter_error {
        eprintln!("{workload} {imp}: system calls not counted: {e}");
    }
    let env = Env { secs, warm: warm(secs), dir };
    let outcome = match imp {
        "ours" => ours::run(workload, &env),
        "ours-drive" => ours::run_driven(workload, &env),
        "ours-block-on" => ours::run_block_on(workload, &env),
        "raw-io-uring" => raw::run(workload, &env),
        "monoio" => monoio::run(workload, &env),
        "compio" => compio::run(workload, &env),
        "tokio-epoll" => std_tokio::run_tokio(workload, &env),
        "std" => std_tokio::run_std(workload, &env),
        _ => Err(format!("no implementation {imp}").into()),
    };
    let code = match outcome {
        Ok(sample) => {
            println!("{}", sample.to_line());
            0
        }
        Err(e) => {
            eprintln!("{workload} {imp}: {e}");
            1
        }
    };
    let _ = std::io::stdout().flush();
    // SAFETY: `_exit` ends the process without running anything of the threads still there.
    unsafe { libc::_exit(code) }
}

/// A number with three significant digits, or `-`.
fn fmt3(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) if v >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

/// An ops/s figure in thousands or millions.
fn rate(v: f64) -> String {
    if v >= 1e6 { format!("{:.2}M", v / 1e6) } else { format!("{:.1}k", v / 1e3) }
}

/// One markdown table per workload, then the thread-scaling ratios.
fn print_tables(cells: &[Cell]) {
    for workload in WORKLOADS {
        let rows: Vec<&Cell> = cells.iter().filter(|c| c.workload == workload).collect();
        if rows.is_empty() {
            continue;
        }
        println!("### {workload}\n");
        println!("| impl | ops/s | vs best peer | CPU µs/op | syscalls/op | ops/s range |");
        println!("|---|---:|---:|---:|---:|---:|");
        for c in rows {
            if let Some(why) = c.skipped.or(c.failed.as_deref()) {
                let label = if c.skipped.is_some() { "not run" } else { "failed" };
                println!("| {} | {label}: {why} | | | | |", c.imp);
                continue;
            }
            let range = c.range().map_or("-".into(), |(lo, hi)| format!("{}–{}", rate(lo), rate(hi)));
            println!(
                "| {} | {:.0} | {} | {} | {} | {range} |",
                c.imp,
                c.ops_per_sec().unwrap_or(0.0),
                c.ratio(cells).map_or("-".into(), |r| format!("{r:.2}x")),
                fmt3(c.cpu_us_per_op()),
                fmt3(c.syscalls_per_op()),
            );
        }
        println!();
    }
    let scaling = scaling(cells);
    if !scaling.is_empty() {
        println!("### thread scaling (ops/s at T threads over T=1)\n");
        println!("| workload | impl | T | T/T1 |");
        println!("|---|---|---:|---:|");
        for (base, imp, t, ratio) in scaling {
            println!("| {base} | {imp} | {t} | {ratio:.2}x |");
        }
        println!();
    }
}

/// Each scaling cell's ops/s over its one-thread cell's: (workload, impl, threads, ratio).
fn scaling(cells: &[Cell]) -> Vec<(&'static str, &'static str, usize, f64)> {
    let mut out = Vec::new();
    for base in ["nop-b1", "read4k-qd1"] {
        for imp in ["ours", "ours-drive", "ours-block-on", "raw-io-uring"] {
            let rate = |suffix: &str| {
                let name = format!("{base}-{suffix}");
                cells.iter().find(|c| c.workload == name && c.imp == imp).and_then(Cell::ops_per_sec)
            };
            let Some(one) = rate("t1") else { continue };
            for suffix in ["t2", "tall"] {
                if let Some(many) = rate(suffix) {
                    let name = format!("{base}-{suffix}");
                    out.push((base, imp, threads_of(&name), many / one));
                }
            }
        }
    }
    out
}

/// One JSON object per line: cells, skipped or failed cells, scaling ratios.
fn print_json(cells: &[Cell]) {
    let num = |v: Option<f64>| v.map_or("null".into(), |v| format!("{v:.4}"));
    for c in cells {
        if let Some(why) = c.skipped.or(c.failed.as_deref()) {
            let key = if c.skipped.is_some() { "skipped" } else { "failed" };
            println!("{{\"workload\":\"{}\",\"impl\":\"{}\",\"{key}\":{:?}}}", c.workload, c.imp, why);
            continue;
        }
        let rounds: Vec<String> = c.samples.iter().map(|s| format!("{:.1}", s.ops as f64 / s.secs)).collect();
        println!(
            "{{\"workload\":\"{}\",\"impl\":\"{}\",\"ops_per_sec\":{},\"rounds\":[{}],\"ratio_to_best_peer\":{},\
             \"cpu_us_per_op\":{},\"syscalls_per_op\":{}}}",
            c.workload,
            c.imp,
            num(c.ops_per_sec()),
            rounds.join(","),
            num(c.ratio(cells)),
            num(c.cpu_us_per_op()),
            num(c.syscalls_per_op())
        );
    }
    for (base, imp, threads, ratio) in scaling(cells) {
        println!("{{\"scaling\":\"{base}\",\"impl\":\"{imp}\",\"threads\":{threads},\"over_t1\":{ratio:.4}}}");
    }
}

/// Each cell's ops/s over the best peer's as horizontal bars, one group per workload, ours in
/// blue and the peers in grey, with a line at 1.
fn plot(cells: &[Cell], path: &str) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    let bars: Vec<(&Cell, f64)> = cells.iter().filter_map(|c| Some((c, c.ratio(cells)?))).collect();
    let workloads = bars.iter().map(|(c, _)| c.workload).fold(Vec::new(), |mut v, w| {
        if !v.contains(&w) {
            v.push(w);
        }
        v
    });
    let row = 18i32;
    let height = 60 + bars.len() as i32 * row + workloads.len() as i32 * 24;
    let root = SVGBackend::new(path, (900, height as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let text = ("sans-serif", 13).into_font();
    root.draw(&Text::new("ops/s over the best peer's, per workload (median of the rounds)", (10, 10), text.clone()))?;
    let max = bars.iter().map(|(_, r)| *r).fold(1.0, f64::max) * 1.1;
    let (x0, x1) = (260i32, 860i32);
    let x = |r: f64| x0 + (r / max * f64::from(x1 - x0)) as i32;
    let mut y = 40i32;
    for workload in workloads {
        y += 6;
        root.draw(&Text::new(workload.to_string(), (10, y), text.clone()))?;
        y += 18;
        let top = y;
        for (c, ratio) in bars.iter().filter(|(c, _)| c.workload == workload) {
            let color = if c.imp.starts_with("ours") { RGBColor(40, 110, 200) } else { RGBColor(160, 160, 160) };
            root.draw(&Rectangle::new([(x0, y), (x(*ratio), y + row - 4)], color.filled()))?;
            root.draw(&Text::new(c.imp.to_string(), (130, y), text.clone()))?;
            root.draw(&Text::new(format!("{ratio:.2}x"), (x(*ratio) + 4, y), text.clone()))?;
            y += row;
        }
        root.draw(&PathElement::new(vec![(x(1.0), top - 2), (x(1.0), y)], BLACK.stroke_width(1)))?;
    }
    root.present()?;
    Ok(())
}
