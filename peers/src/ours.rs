//! `ours`: this crate's `IoUringManager` over its `UringBackend`, through the polling API
//! (`submit`, `submit_batch`, `wait_completion`, `reap_completions`) for the NOPs and files as
//! `benches/anchors.rs` does, and through a tenant's `TcpStream` with tokio's I/O traits for
//! the echo.

use std::net::Ipv4Addr;
use std::sync::Arc;

use ai_os_kernel::Pid;
use ai_os_kernel::backend::UringBackend;
use ai_os_kernel::sandbox::{IpNet, Policy};
use ai_os_kernel::syscalls::open_flags::{O_RDONLY, O_WRONLY};
use ai_os_kernel::syscalls::{IoUringManager, LentBuf, OpResult, SyscallOpType as Op, SyscallSubmissionEntry as Entry};

use crate::measure::{Env, FILE_SIZE, Offsets, Runner, Sample, WRITE_BATCH, WriteFile, on_threads};
use crate::std_tokio::{current_thread, echo_server_pattern};
use crate::{Outcome, threads_of};

/// The pid whose NOPs are timed.
const NOP_PID: Pid = 1;
/// The pid whose reads are timed.
const READ_PID: Pid = 2;
/// The pid whose writes are timed.
const WRITE_PID: Pid = 3;
/// The first pid of the echo's tenants (one per thread).
const NET_PID: Pid = 4;
/// The first pid of the thread-scaling cells' processes (one per thread).
const THREAD_PID: Pid = 10;

/// Runs `workload` on our manager with the manager's drive task (`IoUringManager::drive`) on
/// each thread that submits, in a `LocalSet` of a tokio current-thread runtime of the thread's:
/// the async API (`submit_async`, `submit_batch_async`, a tenant's streams), each thread's
/// operations on a kernel ring of its own, entered once per tick.
pub fn run_driven(workload: &str, env: &Env) -> Outcome {
    let m = IoUringManager::with_backend(Arc::new(UringBackend::new()?));
    Ok(match workload {
        "nop-b1" => driven(&m, |m| nop_async(m, NOP_PID, 1, env.runner())),
        "nop-b32" => driven(&m, |m| nop_async(m, NOP_PID, 32, env.runner())),
        "read4k-qd1" => driven(&m, |m| read4k_async(m, env, READ_PID, 1, 0, env.runner()))?,
        "read4k-qd64" => driven(&m, |m| read4k_async(m, env, READ_PID, 64, 0, env.runner()))?,
        "echo-srv-c1" => echo_driven(&m, NET_PID, 1, env.runner())?,
        "echo-srv-c16" => echo_driven(&m, NET_PID, 16, env.runner())?,
        "echo-srv-c16-t2" => on_threads(env, 2, move |i, runner| {
            echo_driven(&m, NET_PID + i as Pid, 8, runner).expect("echo on one thread");
        }),
        w if w.starts_with("nop-b1-t") => on_threads(env, threads_of(w), move |i, runner| {
            driven(&m, |m| nop_async(m, THREAD_PID + i as Pid, 1, runner));
        }),
        w if w.starts_with("read4k-qd1-t") => {
            let env2 = env.clone();
            on_threads(env, threads_of(w), move |i, runner| {
                driven(&m, |m| read4k_async(m, &env2, THREAD_PID + i as Pid, 1, i as u64, runner))
                    .expect("reads on one thread");
            })
        }
        _ => return Err(format!("ours-drive: no workload {workload}").into()),
    })
}

/// Runs `workload` on our manager with no other runtime: each thread that submits runs its
/// work in `IoUringManager::block_on` (a kernel ring of its own, parked in `io_uring_enter`
/// between ticks); NOPs and reads through the async API, the echo through a tenant's streams
/// with futures' I/O traits, its server sides and clients joined on the thread.
pub fn run_block_on(workload: &str, env: &Env) -> Outcome {
    let m = IoUringManager::with_backend(Arc::new(UringBackend::new()?));
    Ok(match workload {
        "nop-b1" => m.block_on(nop_async(&m, NOP_PID, 1, env.runner())),
        "nop-b32" => m.block_on(nop_async(&m, NOP_PID, 32, env.runner())),
        "read4k-qd1" => m.block_on(read4k_async(&m, env, READ_PID, 1, 0, env.runner()))?,
        "read4k-qd64" => m.block_on(read4k_async(&m, env, READ_PID, 64, 0, env.runner()))?,
        "echo-srv-c1" => echo_block_on(&m, NET_PID, 1, env.runner())?,
        "echo-srv-c16" => echo_block_on(&m, NET_PID, 16, env.runner())?,
        "echo-srv-c16-t2" => on_threads(env, 2, move |i, runner| {
            echo_block_on(&m, NET_PID + i as Pid, 8, runner).expect("echo on one thread");
        }),
        w if w.starts_with("nop-b1-t") => on_threads(env, threads_of(w), move |i, runner| {
            m.block_on(nop_async(&m, THREAD_PID + i as Pid, 1, runner));
        }),
        w if w.starts_with("read4k-qd1-t") => {
            let env2 = env.clone();
            on_threads(env, threads_of(w), move |i, runner| {
                m.block_on(read4k_async(&m, &env2, THREAD_PID + i as Pid, 1, i as u64, runner))
                    .expect("reads on one thread");
            })
        }
        _ => return Err(format!("ours-block-on: no workload {workload}").into()),
    })
}

/// The server pattern on `n` loopback connections of tenant `pid`'s, in `m.block_on`: the
/// server sides (each looping `read_exact` of 64 bytes and `write_all` back) and the clients'
/// round trips joined on this thread.
fn echo_block_on(m: &IoUringManager, pid: Pid, n: usize, mut runner: Runner) -> std::io::Result<Sample> {
    use futures::StreamExt;
    use futures::io::{AsyncReadExt, AsyncWriteExt};
    let loopback: IpNet = "127.0.0.0/8".parse().expect("a network");
    m.set_policy(pid, Policy::default().allow_bind(loopback, ..).allow_listen().allow_connect(loopback, ..))?;
    let tenant = m.tenant(pid);
    m.block_on(async {
        let listener = tenant.tcp_listen((Ipv4Addr::LOCALHOST, 0)).await?;
        let (mut clients, mut servers) = (Vec::new(), Vec::new());
        for _ in 0..n {
            let (client, accepted) = futures::join!(tenant.tcp_connect(listener.local_addr()), listener.accept());
            clients.push(client?);
            servers.push(accepted?.0);
        }
        // Sets that poll only the futures woken, as a runtime's tasks are (`join_all` of a few
        // polls every one of them at each wake-up).
        let serve = servers
            .iter_mut()
            .map(|server| async move {
                let mut buf = [0u8; 64];
                while server.read_exact(&mut buf).await.is_ok() {
                    if server.write_all(&buf).await.is_err() {
                        break;
                    }
                }
            })
            .collect::<futures::stream::FuturesUnordered<_>>()
            .collect::<Vec<()>>();
        let trips = async {
            loop {
                clients
                    .iter_mut()
                    .map(|client| async move {
                        let mut buf = [0u8; 64];
                        client.write_all(&[1; 64]).await.expect("client write");
                        client.read_exact(&mut buf).await.expect("client read");
                        assert_eq!(buf, [1; 64]);
                    })
                    .collect::<futures::stream::FuturesUnordered<_>>()
                    .collect::<Vec<()>>()
                    .await;
                if !runner.record(n as u64) {
                    return runner.finish();
                }
            }
        };
        futures::pin_mut!(serve, trips);
        match futures::future::select(serve, trips).await {
            futures::future::Either::Right((sample, _)) => Ok(sample),
            futures::future::Either::Left(_) => Err(std::io::Error::other("a server side ended")),
        }
    })
}

/// Runs the future `body` makes on a tokio current-thread runtime of this thread's, in a
/// `LocalSet` with `m`'s drive task.
fn driven<'m, F: std::future::Future>(m: &'m IoUringManager, body: impl FnOnce(&'m IoUringManager) -> F) -> F::Output {
    let rt = current_thread().expect("a runtime");
    let local = tokio::task::LocalSet::new();
    local.spawn_local(m.drive());
    local.block_on(&rt, async {
        // The drive task starts at its first poll: a body whose operations never wait (NOPs
        // answered inside the enter) would not let it run otherwise.
        tokio::task::yield_now().await;
        body(m).await
    })
}

/// [`nop`] through `submit_async` and `submit_batch_async`.
async fn nop_async(m: &IoUringManager, pid: Pid, batch: usize, mut runner: Runner) -> Sample {
    m.create_ring(pid, Some(256), Some(512)).expect("ring");
    loop {
        if batch == 1 {
            assert!(m.submit_async(pid, Op::Nop).expect("submit").await.status.is_success());
        } else {
            let futures = m.submit_batch_async(pid, (0..batch).map(|_| Op::Nop).collect::<Vec<_>>()).expect("submit");
            for done in futures::future::join_all(futures).await {
                assert!(done.status.is_success());
            }
        }
        if !runner.record(batch as u64) {
            return runner.finish();
        }
    }
}

/// [`read4k`] through `submit_async` and `submit_batch_async`.
async fn read4k_async(
    m: &IoUringManager,
    env: &Env,
    pid: Pid,
    qd: usize,
    stream: u64,
    mut runner: Runner,
) -> std::io::Result<Sample> {
    let fd = open_data(m, env, pid)?;
    let mut off = Offsets::new(stream);
    // Owned buffers handed to each read and back, reused (`ReadInto`), as the peers' are.
    let mut bufs: Vec<Vec<u8>> = (0..qd).map(|_| Vec::with_capacity(4096)).collect();
    loop {
        let ops: Vec<Op> = bufs
            .drain(..)
            .map(|mut buf| {
                buf.clear();
                Op::read_into(fd, Some(off.next_offset()), buf)
            })
            .collect();
        for done in futures::future::join_all(m.submit_batch_async(pid, ops)?).await {
            let (read, buf) = done.into_buf();
            assert_eq!(read?, 4096, "short read");
            bufs.push(buf);
        }
        if !runner.record(qd as u64) {
            return Ok(runner.finish());
        }
    }
}

/// [`echo`] with the drive task on the runtime's thread.
fn echo_driven(m: &IoUringManager, pid: Pid, n: usize, runner: Runner) -> std::io::Result<Sample> {
    echo_on(m, pid, n, runner, true)
}

/// Runs `workload` on our manager.
pub fn run(workload: &str, env: &Env) -> Outcome {
    let m = IoUringManager::with_backend(Arc::new(UringBackend::new()?));
    Ok(match workload {
        "nop-b1" => nop(&m, NOP_PID, 1, env.runner()),
        "nop-b32" => nop(&m, NOP_PID, 32, env.runner()),
        "read4k-qd1" => read4k(&m, env, READ_PID, 1, 0, env.runner())?,
        "read4k-qd64" => read4k(&m, env, READ_PID, 64, 0, env.runner())?,
        "write4k" => write4k(&m, env, env.runner())?,
        "echo-srv-c1" => echo(&m, NET_PID, 1, env.runner())?,
        "echo-srv-c16" => echo(&m, NET_PID, 16, env.runner())?,
        "echo-srv-c16-t2" => on_threads(env, 2, move |i, runner| {
            echo(&m, NET_PID + i as Pid, 8, runner).expect("echo on one thread");
        }),
        w if w.starts_with("nop-b1-t") => on_threads(env, threads_of(w), move |i, runner| {
            nop(&m, THREAD_PID + i as Pid, 1, runner);
        }),
        w if w.starts_with("read4k-qd1-t") => {
            let env2 = env.clone();
            on_threads(env, threads_of(w), move |i, runner| {
                read4k(&m, &env2, THREAD_PID + i as Pid, 1, i as u64, runner).expect("reads on one thread");
            })
        }
        _ => return Err(format!("ours: no workload {workload}").into()),
    })
}

/// An entry of `op` for `pid`.
fn entry(pid: Pid, op: Op) -> Entry {
    Entry::new(pid, op, 0)
}

/// Takes a batch's completions as the polling API intends: `reap_completions` takes every one
/// that is ready under one lock, and `wait_completion` blocks only when none is. Each must
/// have succeeded and, if `check` says so, have the result it accepts.
fn wait_all(m: &IoUringManager, pid: Pid, seqs: &[u64], mut check: impl FnMut(OpResult) -> bool) {
    let first = seqs[0];
    let mut left = vec![true; seqs.len()];
    let mut remaining = seqs.len();
    let mut oldest = 0;
    while remaining > 0 {
        let mut ready = m.reap_completions(pid, None).expect("reap");
        if ready.is_empty() {
            // Nothing ready: block on the oldest operation not yet taken.
            while !left[oldest] {
                oldest += 1;
            }
            ready.push(m.wait_completion(pid, seqs[oldest]).expect("completion"));
        }
        for done in ready {
            let (seq, ok) = (done.seq, done.status.is_success());
            assert!(ok && check(done.result), "seq {seq} failed");
            assert!(std::mem::replace(&mut left[(done.seq - first) as usize], false), "seq {} taken twice", done.seq);
            remaining -= 1;
        }
    }
}

/// NOPs to `pid`, `batch` at a time: `submit` and `wait_completion` one at a time,
/// `submit_batch` and [`wait_all`] in batches.
fn nop(m: &IoUringManager, pid: Pid, batch: usize, mut runner: Runner) -> Sample {
    m.create_ring(pid, Some(256), Some(512)).expect("ring");
    loop {
        if batch == 1 {
            let seq = m.submit(pid, entry(pid, Op::Nop)).expect("submit");
            assert!(m.wait_completion(pid, seq).expect("completion").status.is_success());
        } else {
            let seqs = m.submit_batch(pid, (0..batch).map(|_| entry(pid, Op::Nop)).collect()).expect("submit");
            wait_all(m, pid, &seqs, |_| true);
        }
        if !runner.record(batch as u64) {
            return runner.finish();
        }
    }
}

/// Runs one operation of `pid` and waits for it.
fn run_one(m: &IoUringManager, pid: Pid, op: Op) -> std::io::Result<OpResult> {
    let seq = m.submit(pid, entry(pid, op))?;
    m.wait_completion(pid, seq)?.into_result()
}

/// Gives `pid` a ring and a policy rooted at the cell's directory, and opens the data file
/// there for it (waiting for it on this thread: no drive task's turn is needed, as an open runs
/// on the backend's pool).
fn open_data(m: &IoUringManager, env: &Env, pid: Pid) -> std::io::Result<i32> {
    m.create_ring(pid, Some(256), Some(512))?;
    m.set_policy(pid, Policy::rooted(&env.dir))?;
    match run_one(m, pid, Op::open(crate::measure::DATA, O_RDONLY))? {
        OpResult::Fd(fd) => Ok(fd),
        _ => Err(std::io::Error::other("open gave no descriptor")),
    }
}

/// 4 KiB reads of the data file at random offsets (stream `stream`), `qd` at a time, by `pid`.
fn read4k(
    m: &IoUringManager,
    env: &Env,
    pid: Pid,
    qd: usize,
    stream: u64,
    mut runner: Runner,
) -> std::io::Result<Sample> {
    let fd = open_data(m, env, pid)?;
    let mut off = Offsets::new(stream);
    // Owned buffers handed to each read and back, reused (`ReadInto`), as the peers' are; with
    // `PEERS_OURS_FIXED` set, buffers of a registered pool (`ReadFixed`).
    let mut bufs: Vec<LentBuf> = if std::env::var_os("PEERS_OURS_FIXED").is_some() {
        let pool = m.register_buffers(pid, qd, 4096)?;
        (0..qd).map(|_| LentBuf::Fixed(pool.take().expect("a buffer of the pool"))).collect()
    } else {
        (0..qd).map(|_| LentBuf::Vec(Vec::with_capacity(4096))).collect()
    };
    let read_into = |buf: LentBuf, off: &mut Offsets| match buf {
        LentBuf::Fixed(mut buf) => {
            buf.clear();
            Op::read_fixed(fd, Some(off.next_offset()), buf)
        }
        LentBuf::Vec(mut buf) => {
            buf.clear();
            Op::read_into(fd, Some(off.next_offset()), buf)
        }
    };
    let full = |bufs: &mut Vec<LentBuf>, r: OpResult| match r {
        OpResult::Buf { count: 4096, buf } => {
            bufs.push(LentBuf::Vec(buf));
            true
        }
        OpResult::Fixed { count: 4096, buf } => {
            bufs.push(LentBuf::Fixed(buf));
            true
        }
        _ => false,
    };
    loop {
        if qd == 1 {
            let op = read_into(bufs.pop().expect("a buffer"), &mut off);
            let read = run_one(m, pid, op)?;
            assert!(full(&mut bufs, read), "short read");
        } else {
            let batch = bufs.drain(..).map(|buf| entry(pid, read_into(buf, &mut off))).collect::<Vec<_>>();
            wait_all(m, pid, &m.submit_batch(pid, batch)?, |r| full(&mut bufs, r));
        }
        if !runner.record(qd as u64) {
            return Ok(runner.finish());
        }
    }
}

/// 4 KiB writes at ascending offsets, [`WRITE_BATCH`] at a time (`submit_batch`).
fn write4k(m: &IoUringManager, env: &Env, mut runner: Runner) -> std::io::Result<Sample> {
    let mut file = WriteFile::create(&env.dir, "ours")?;
    m.create_ring(WRITE_PID, Some(256), Some(512))?;
    m.set_policy(WRITE_PID, Policy::rooted(&env.dir).read_write())?;
    let name = file.path.file_name().expect("a file name").to_owned();
    let OpResult::Fd(fd) = run_one(m, WRITE_PID, Op::open(name, O_WRONLY))? else {
        return Err(std::io::Error::other("open gave no descriptor"));
    };
    // Owned buffers written from where they lie and handed back (`WriteFrom`), reused, as the
    // peers' are.
    let mut bufs = vec![vec![7u8; 4096]; WRITE_BATCH as usize];
    loop {
        let first = file.next_batch();
        let batch = (0..WRITE_BATCH)
            .zip(bufs.drain(..))
            .map(|(i, buf)| entry(WRITE_PID, Op::write_from(fd, Some(first + i * 4096), buf)))
            .collect();
        let written = |r: OpResult| match r {
            OpResult::Buf { count: 4096, buf } => {
                bufs.push(buf);
                true
            }
            _ => false,
        };
        wait_all(m, WRITE_PID, &m.submit_batch(WRITE_PID, batch)?, written);
        debug_assert!(first + WRITE_BATCH * 4096 <= FILE_SIZE);
        if !runner.record(WRITE_BATCH) {
            return Ok(runner.finish());
        }
    }
}

/// The server pattern on `n` loopback connections of tenant `pid`'s, on a tokio
/// current-thread runtime of this thread's.
fn echo(m: &IoUringManager, pid: Pid, n: usize, runner: Runner) -> std::io::Result<Sample> {
    echo_on(m, pid, n, runner, false)
}

/// [`echo`], with `m`'s drive task on the runtime's thread if `drive`.
fn echo_on(m: &IoUringManager, pid: Pid, n: usize, runner: Runner, drive: bool) -> std::io::Result<Sample> {
    let loopback: IpNet = "127.0.0.0/8".parse().expect("a network");
    m.set_policy(pid, Policy::default().allow_bind(loopback, ..).allow_listen().allow_connect(loopback, ..))?;
    let rt = current_thread()?;
    let local = tokio::task::LocalSet::new();
    if drive {
        local.spawn_local(m.drive());
    }
    let tenant = m.tenant(pid);
    let pairs = local.block_on(&rt, async {
        let listener = tenant.tcp_listen((Ipv4Addr::LOCALHOST, 0)).await?;
        let mut pairs = Vec::new();
        for _ in 0..n {
            let (client, accepted) = futures::join!(tenant.tcp_connect(listener.local_addr()), listener.accept());
            pairs.push((accepted?.0, client?));
        }
        std::io::Result::Ok(pairs)
    })?;
    Ok(echo_server_pattern(&rt, &local, pairs, runner))
}
