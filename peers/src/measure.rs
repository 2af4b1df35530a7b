//! What a cell measures and how: the timed section's operations, wall time, CPU time (all
//! threads, from `getrusage`) and system calls (all threads, from the `raw_syscalls:sys_enter`
//! tracepoint counted in-process), and the shared pieces of the workloads (the data file, the
//! offsets, the write file's bound).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The size of the read file, and the bound of the write file: 64 MiB.
pub const FILE_SIZE: u64 = 64 << 20;

/// The read file's name in the run's directory.
pub const DATA: &str = "data";

/// One timed section: what it did and what it cost.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// Operations done (round trips for the echo workloads).
    pub ops: u64,
    /// Wall time, seconds.
    pub secs: f64,
    /// User plus system CPU time of the whole process (every thread), seconds.
    pub cpu_secs: f64,
    /// System calls entered by any thread of the process; `None` where the counter could not
    /// be opened.
    pub syscalls: Option<u64>,
}

impl Sample {
    /// One line for the parent to read.
    pub fn to_line(self) -> String {
        let syscalls = self.syscalls.map_or(-1, |n| n as i64);
        format!("result ops={} secs={:.9} cpu={:.9} syscalls={syscalls}", self.ops, self.secs, self.cpu_secs)
    }

    /// The inverse of [`to_line`](Self::to_line).
    pub fn from_line(line: &str) -> Option<Sample> {
        let mut fields = line.strip_prefix("result ")?.split_whitespace();
        let mut next = |key: &str| fields.next()?.strip_prefix(key)?.strip_prefix('=').map(str::to_owned);
        let ops = next("ops")?.parse().ok()?;
        let secs = next("secs")?.parse().ok()?;
        let cpu_secs = next("cpu")?.parse().ok()?;
        let syscalls: i64 = next("syscalls")?.parse().ok()?;
        Some(Sample { ops, secs, cpu_secs, syscalls: u64::try_from(syscalls).ok() })
    }
}

/// The fields of `struct perf_event_attr` up to `PERF_ATTR_SIZE_VER0` (64 bytes), which is all
/// a counting tracepoint event needs.
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    /// The event's type (`PERF_TYPE_TRACEPOINT`).
    type_: u32,
    /// The size of this struct.
    size: u32,
    /// The event: for a tracepoint, its id.
    config: u64,
    /// Unused: the event counts, it does not sample.
    sample_period: u64,
    /// Unused: the event counts, it does not sample.
    sample_type: u64,
    /// What a read gives: 0, the count alone.
    read_format: u64,
    /// The bit field: `disabled` is bit 0, `inherit` bit 1.
    flags: u64,
    /// Unused: the event counts, it does not sample.
    wakeup_events: u32,
    /// Unused: not a breakpoint.
    bp_type: u32,
    /// Unused by tracepoints.
    config1: u64,
}

/// `perf_event_attr.type` of a tracepoint.
const PERF_TYPE_TRACEPOINT: u32 = 2;
/// `perf_event_open`'s flag for a close-on-exec descriptor.
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;
/// `perf_event_attr.disabled`: opened stopped.
const ATTR_DISABLED: u64 = 1 << 0;
/// `perf_event_attr.inherit`: threads made later get a counter of their own, summed in.
const ATTR_INHERIT: u64 = 1 << 1;
/// `PERF_EVENT_IOC_ENABLE`, `_IO('$', 0)`.
const IOC_ENABLE: libc::c_ulong = 0x2400;
/// `PERF_EVENT_IOC_DISABLE`, `_IO('$', 1)`.
const IOC_DISABLE: libc::c_ulong = 0x2401;
/// `PERF_EVENT_IOC_RESET`, `_IO('$', 3)`.
const IOC_RESET: libc::c_ulong = 0x2403;

/// A counter of the `raw_syscalls:sys_enter` tracepoint for this process: opened disabled and
/// inherited, so that every thread made after it is counted too (with the io_uring workers of
/// the process, which never enter a system call); enabling, disabling and reading it covers
/// them all.
#[derive(Debug)]
pub struct SyscallCounter {
    /// The perf event.
    fd: OwnedFd,
}

impl SyscallCounter {
    /// The tracepoint's id, from tracefs (or its older place under debugfs).
    fn tracepoint_id() -> std::io::Result<u64> {
        let paths = [
            "/sys/kernel/tracing/events/raw_syscalls/sys_enter/id",
            "/sys/kernel/debug/tracing/events/raw_syscalls/sys_enter/id",
        ];
        let mut last = std::io::Error::from(std::io::ErrorKind::NotFound);
        for path in paths {
            match std::fs::read_to_string(path) {
                Ok(id) => {
                    return id.trim().parse().map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e));
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Opens the counter, disabled, for this thread and every thread it or they make later.
    pub fn open() -> std::io::Result<Self> {
        let attr = PerfEventAttr {
            type_: PERF_TYPE_TRACEPOINT,
            size: std::mem::size_of::<PerfEventAttr>() as u32,
            config: Self::tracepoint_id()?,
            sample_period: 0,
            flags: ATTR_DISABLED | ATTR_INHERIT,
            ..PerfEventAttr::default()
        };
        // SAFETY: `attr` is a valid perf_event_attr of the size it declares; pid 0 and cpu -1
        // ask for this task on any CPU, with no group.
        let fd = unsafe {
            libc::syscall(libc::SYS_perf_event_open, &attr as *const PerfEventAttr, 0, -1, -1, PERF_FLAG_FD_CLOEXEC)
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: the kernel just returned this descriptor, owned by nothing else.
        Ok(SyscallCounter { fd: unsafe { OwnedFd::from_raw_fd(fd as i32) } })
    }

    /// Applies a perf ioctl to the event and every inherited copy of it.
    fn ioctl(&self, request: libc::c_ulong) {
        // SAFETY: a perf event ioctl without an argument on our own descriptor.
        let r = unsafe { libc::ioctl(self.fd.as_raw_fd(), request as _, 0) };
        assert!(r == 0, "perf ioctl {request:#x}: {}", std::io::Error::last_os_error());
    }

    /// Zeroes the count (of every inherited counter too) and starts counting.
    pub fn start(&self) {
        self.ioctl(IOC_RESET);
        self.ioctl(IOC_ENABLE);
    }

    /// Stops counting and reads the count, the threads' included.
    pub fn stop(&self) -> u64 {
        self.ioctl(IOC_DISABLE);
        let mut count = 0u64;
        // SAFETY: reading 8 bytes into a u64 from our own descriptor.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), (&raw mut count).cast(), 8) };
        assert_eq!(n, 8, "perf read: {}", std::io::Error::last_os_error());
        count
    }
}

/// User plus system CPU time of the whole process so far, seconds.
pub fn cpu_time() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, &mut usage), 0);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// The timed section of a cell's process: one at a time.
#[derive(Debug)]
pub struct Meter {
    /// The syscall counter, if it could be opened.
    counter: Option<SyscallCounter>,
    /// Why there is no counter.
    pub counter_error: Option<String>,
    /// When the timed section started, and the process's CPU time then.
    started: Mutex<Option<(Instant, f64)>>,
}

/// The process's meter, made by [`Meter::init`].
static METER: OnceLock<Meter> = OnceLock::new();

impl Meter {
    /// Opens the process's syscall counter; call it before any thread to be counted is made.
    pub fn init() -> &'static Meter {
        METER.get_or_init(|| {
            let (counter, counter_error) = match SyscallCounter::open() {
                Ok(c) => (Some(c), None),
                Err(e) => (None, Some(e.to_string())),
            };
            Meter { counter, counter_error, started: Mutex::new(None) }
        })
    }

    /// The process's meter.
    pub fn get() -> &'static Meter {
        METER.get().expect("Meter::init first")
    }

    /// Starts the timed section.
    pub fn start(&self) {
        let cpu = cpu_time();
        if let Some(c) = &self.counter {
            c.start();
        }
        *self.started.lock().unwrap() = Some((Instant::now(), cpu));
    }

    /// Ends the timed section, in which `ops` operations were done.
    pub fn stop(&self, ops: u64) -> Sample {
        let syscalls = self.counter.as_ref().map(SyscallCounter::stop);
        let (at, cpu) = self.started.lock().unwrap().take().expect("Meter::start first");
        let secs = at.elapsed().as_secs_f64();
        Sample { ops, secs, cpu_secs: cpu_time() - cpu, syscalls }
    }
}

/// What a cell's process was asked for: how long to run and where the files are.
#[derive(Clone, Debug)]
pub struct Env {
    /// The timed section's length.
    pub secs: Duration,
    /// The warm-up before it.
    pub warm: Duration,
    /// The run's directory, holding the read file [`DATA`].
    pub dir: PathBuf,
}

impl Env {
    /// The read file.
    pub fn data(&self) -> PathBuf {
        self.dir.join(DATA)
    }

    /// A runner for a cell timed on this thread alone.
    pub fn runner(&self) -> Runner {
        Runner { env: self.clone(), gate: None, measuring: false, since: Instant::now(), ops: 0 }
    }
}

/// The rendezvous of the threads of a multi-threaded cell and the thread that meters them.
#[derive(Debug)]
pub struct Gate {
    /// Every thread is warm.
    ready: Barrier,
    /// The meter has started: the threads go.
    go: Barrier,
    /// Every thread is done; the meter stops.
    done: Barrier,
    /// The threads' operations in the timed section.
    ops: AtomicU64,
}

/// Drives a timed loop: warm-up, then the timed section. Call [`record`](Self::record) after
/// each iteration with the operations it did, and go on while it says so; then
/// [`finish`](Self::finish).
#[derive(Debug)]
pub struct Runner {
    /// The cell's durations.
    env: Env,
    /// The other threads of the cell, if any.
    gate: Option<Arc<Gate>>,
    /// Whether the timed section has begun.
    measuring: bool,
    /// When the current phase (warm-up or timed section) began.
    since: Instant,
    /// Operations done in the timed section.
    ops: u64,
}

impl Runner {
    /// Records `ops` operations just done; whether to do another iteration.
    pub fn record(&mut self, ops: u64) -> bool {
        let elapsed = self.since.elapsed();
        if !self.measuring {
            if elapsed >= self.env.warm {
                self.begin();
            }
            return true;
        }
        self.ops += ops;
        elapsed < self.env.secs
    }

    /// The timed section begins: alone, the meter starts; with other threads, this one waits
    /// until all are warm and the meter has started.
    fn begin(&mut self) {
        match &self.gate {
            None => Meter::get().start(),
            Some(gate) => {
                gate.ready.wait();
                gate.go.wait();
            }
        }
        self.measuring = true;
        self.since = Instant::now();
    }

    /// Ends the timed section: alone, the sample. With other threads, this thread's operations
    /// are added to the cell's, and it waits for the meter to stop and the process to exit: it
    /// never returns.
    pub fn finish(self) -> Sample {
        match self.gate {
            None => Meter::get().stop(self.ops),
            Some(gate) => {
                gate.ops.fetch_add(self.ops, Ordering::SeqCst);
                gate.done.wait();
                loop {
                    std::thread::park();
                }
            }
        }
    }
}

/// Runs `body` on `n` threads, each given its index and a runner of its own; the timed section
/// is the span from all of them being warm to all of them being done, and its operations their
/// sum. The threads never return (the process exits once the sample is taken), so nothing of
/// their teardown is counted.
pub fn on_threads(env: &Env, n: usize, body: impl Fn(usize, Runner) + Send + Sync + 'static) -> Sample {
    let gate = Arc::new(Gate {
        ready: Barrier::new(n + 1),
        go: Barrier::new(n + 1),
        done: Barrier::new(n + 1),
        ops: AtomicU64::new(0),
    });
    let body = Arc::new(body);
    for i in 0..n {
        let runner =
            Runner { env: env.clone(), gate: Some(gate.clone()), measuring: false, since: Instant::now(), ops: 0 };
        let body = body.clone();
        std::thread::Builder::new()
            .name(format!("cell-{i}"))
            .spawn(move || body(i, runner))
            .expect("spawn a cell thread");
    }
    gate.ready.wait();
    let meter = Meter::get();
    meter.start();
    gate.go.wait();
    gate.done.wait();
    meter.stop(gate.ops.load(Ordering::SeqCst))
}

/// A cheap, repeatable stream of 4 KiB-aligned offsets in a file of [`FILE_SIZE`] bytes.
#[derive(Debug)]
pub struct Offsets {
    /// The xorshift generator's state.
    state: u64,
}

impl Offsets {
    /// The stream numbered `stream` (threads take one each).
    pub fn new(stream: u64) -> Self {
        Offsets { state: 0x9e37_79b9_7f4a_7c15 ^ stream.wrapping_mul(0xbf58_476d_1ce4_e5b9) }
    }

    /// The next offset.
    pub fn next_offset(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        (self.state % (FILE_SIZE / 4096)) * 4096
    }
}

/// Writes per iteration of `write4k`, the same in every implementation.
pub const WRITE_BATCH: u64 = 32;

/// The write file of `write4k`: 4 KiB blocks written at ascending offsets, the file truncated
/// to nothing whenever they reach [`FILE_SIZE`], so that it stays bounded.
#[derive(Debug)]
pub struct WriteFile {
    /// Its path.
    pub path: PathBuf,
    /// A handle of the host's that truncates it.
    truncator: std::fs::File,
    /// The next block.
    block: u64,
}

impl WriteFile {
    /// Creates (or truncates) the write file of implementation `imp` in `dir`.
    pub fn create(dir: &Path, imp: &str) -> std::io::Result<Self> {
        let path = dir.join(format!("write-{imp}"));
        let truncator = std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(&path)?;
        Ok(WriteFile { path, truncator, block: 0 })
    }

    /// The offset of the first of the next [`WRITE_BATCH`] blocks (consecutive), truncating the
    /// file first if it has reached its bound.
    pub fn next_batch(&mut self) -> u64 {
        if self.block * 4096 >= FILE_SIZE {
            self.truncator.set_len(0).expect("truncate the write file");
            self.block = 0;
        }
        let first = self.block * 4096;
        self.block += WRITE_BATCH;
        first
    }
}

/// Writes the read file (a repeating pattern) through to the disk, then reads it once so that
/// it is in the page cache.
pub fn write_data(path: &Path) -> std::io::Result<()> {
    use std::io::{Read, Write};
    let chunk: Vec<u8> = (0..8u64 << 20).map(|i| (i * 31 % 251) as u8).collect();
    let mut f = std::fs::File::create(path)?;
    for _ in 0..FILE_SIZE / chunk.len() as u64 {
        f.write_all(&chunk)?;
    }
    f.sync_all()?;
    let mut back = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    while back.read(&mut buf)? > 0 {}
    Ok(())
}
