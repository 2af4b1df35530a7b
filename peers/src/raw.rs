//! `raw-io-uring`: the io-uring crate by hand, one ring per thread, buffers reused, one
//! `submit_and_wait` per batch (or per tick of the echo's event loop).

use std::os::fd::AsRawFd;

use io_uring::{IoUring, opcode, squeue, types::Fd};

use crate::measure::{Env, Offsets, Runner, Sample, WRITE_BATCH, WriteFile, on_threads};
use crate::{Outcome, threads_of};

/// Entries of each ring.
const RING: u32 = 256;

/// Runs `workload` on rings of this process's own.
pub fn run(workload: &str, env: &Env) -> Outcome {
    Ok(match workload {
        "nop-b1" => nop(1, env.runner())?,
        "nop-b32" => nop(32, env.runner())?,
        "read4k-qd1" => read4k(env, 1, 0, env.runner())?,
        "read4k-qd64" => read4k(env, 64, 0, env.runner())?,
        "write4k" => write4k(env, env.runner())?,
        "echo-srv-c1" => echo(1, env.runner())?,
        "echo-srv-c16" => echo(16, env.runner())?,
        "echo-srv-c16-t2" => on_threads(env, 2, |_, runner| {
            echo(8, runner).expect("echo on one thread");
        }),
        w if w.starts_with("nop-b1-t") => on_threads(env, threads_of(w), |_, runner| {
            nop(1, runner).expect("NOPs on one thread");
        }),
        w if w.starts_with("read4k-qd1-t") => {
            let env2 = env.clone();
            on_threads(env, threads_of(w), move |i, runner| {
                read4k(&env2, 1, i as u64, runner).expect("reads on one thread");
            })
        }
        _ => return Err(format!("raw-io-uring: no workload {workload}").into()),
    })
}

/// Pushes `sqe` to the ring's submission queue.
///
/// # Safety
///
/// Whatever memory `sqe` points to must stay valid until its completion is reaped.
unsafe fn push(ring: &mut IoUring, sqe: &squeue::Entry) {
    // SAFETY: as the caller promises.
    unsafe { ring.submission().push(sqe).expect("submission queue full") };
}

/// NOPs, `batch` at a time.
fn nop(batch: usize, mut runner: Runner) -> std::io::Result<Sample> {
    let mut ring = IoUring::new(RING)?;
    loop {
        for _ in 0..batch {
            // SAFETY: a NOP points to no memory.
            unsafe { push(&mut ring, &opcode::Nop::new().build()) };
        }
        ring.submit_and_wait(batch)?;
        assert_eq!(ring.completion().filter(|c| c.result() == 0).count(), batch);
        if !runner.record(batch as u64) {
            return Ok(runner.finish());
        }
    }
}

/// 4 KiB reads of the data file at random offsets (stream `stream`), `qd` at a time, into the
/// same buffers each time.
fn read4k(env: &Env, qd: usize, stream: u64, mut runner: Runner) -> std::io::Result<Sample> {
    let mut ring = IoUring::new(RING)?;
    let file = std::fs::File::open(env.data())?;
    let fd = Fd(file.as_raw_fd());
    let mut bufs = vec![vec![0u8; 4096]; qd];
    let mut off = Offsets::new(stream);
    loop {
        for buf in &mut bufs {
            let sqe = opcode::Read::new(fd, buf.as_mut_ptr(), 4096).offset(off.next_offset()).build();
            // SAFETY: the buffers outlive the wait below, which reaps every read.
            unsafe { push(&mut ring, &sqe) };
        }
        ring.submit_and_wait(qd)?;
        assert_eq!(ring.completion().filter(|c| c.result() == 4096).count(), qd);
        if !runner.record(qd as u64) {
            return Ok(runner.finish());
        }
    }
}

/// 4 KiB writes at ascending offsets, [`WRITE_BATCH`] at a time, of one buffer.
fn write4k(env: &Env, mut runner: Runner) -> std::io::Result<Sample> {
    let mut ring = IoUring::new(RING)?;
    let mut file = WriteFile::create(&env.dir, "raw-io-uring")?;
    let out = std::fs::OpenOptions::new().write(true).open(&file.path)?;
    let fd = Fd(out.as_raw_fd());
    let buf = vec![7u8; 4096];
    loop {
        let first = file.next_batch();
        for i in 0..WRITE_BATCH {
            let sqe = opcode::Write::new(fd, buf.as_ptr(), 4096).offset(first + i * 4096).build();
            // SAFETY: the buffer outlives the wait below, which reaps every write.
            unsafe { push(&mut ring, &sqe) };
        }
        ring.submit_and_wait(WRITE_BATCH as usize)?;
        assert_eq!(ring.completion().filter(|c| c.result() == 4096).count(), WRITE_BATCH as usize);
        if !runner.record(WRITE_BATCH) {
            return Ok(runner.finish());
        }
    }
}

/// What a completion of the echo's event loop was (the kind in the high half of its
/// `user_data`, the connection in the low): a server side's RECV.
const SERVER_RECV: u64 = 0;
/// A server side's SEND of what it got.
const SERVER_SEND: u64 = 1;
/// A client's SEND of its message.
const CLIENT_SEND: u64 = 2;
/// A client's RECV of the reply.
const CLIENT_RECV: u64 = 3;

/// One direction of one socket of the echo: its descriptor, its 64-byte buffer (boxed, so that
/// it does not move while the kernel holds its address) and how much of it is done.
struct Half {
    /// The socket.
    fd: Fd,
    /// The message's bytes.
    buf: Box<[u8; 64]>,
    /// How many of them are sent or received so far.
    done: usize,
}

impl Half {
    /// A half on socket `fd` with a buffer of `fill` bytes.
    fn new(fd: i32, fill: u8) -> Self {
        Half { fd: Fd(fd), buf: Box::new([fill; 64]), done: 0 }
    }

    /// A RECV of the rest of the buffer.
    fn recv(&mut self, kind: u64, conn: usize) -> squeue::Entry {
        let rest = &mut self.buf[self.done..];
        opcode::Recv::new(self.fd, rest.as_mut_ptr(), rest.len() as u32).build().user_data(kind << 32 | conn as u64)
    }

    /// A SEND of the rest of the buffer.
    fn send(&self, kind: u64, conn: usize) -> squeue::Entry {
        let rest = &self.buf[self.done..];
        opcode::Send::new(self.fd, rest.as_ptr(), rest.len() as u32).build().user_data(kind << 32 | conn as u64)
    }
}

/// The server pattern on `n` loopback connections as a hand-written event loop on one ring:
/// each server side keeps a RECV posted, echoes what it got with a SEND and posts its RECV
/// again once the SEND is done; an iteration posts each client's SEND and RECV and runs ticks
/// (one `submit_and_wait(1)`, then every completion ready) until every client has its reply.
fn echo(n: usize, mut runner: Runner) -> std::io::Result<Sample> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let mut sockets = Vec::new();
    for _ in 0..n {
        let client = std::net::TcpStream::connect(listener.local_addr()?)?;
        let (server, _) = listener.accept()?;
        client.set_nodelay(true)?;
        server.set_nodelay(true)?;
        sockets.push((server, client));
    }
    let mut servers: Vec<Half> = sockets.iter().map(|(s, _)| Half::new(s.as_raw_fd(), 0)).collect();
    let mut sends: Vec<Half> = sockets.iter().map(|(_, c)| Half::new(c.as_raw_fd(), 1)).collect();
    let mut replies: Vec<Half> = sockets.iter().map(|(_, c)| Half::new(c.as_raw_fd(), 0)).collect();
    let mut ring = IoUring::new(RING)?;
    let (submitter, mut sq, mut cq) = ring.split();
    // SAFETY (every push below): the buffers are boxed and live until the process exits, past
    // every completion.
    for (i, server) in servers.iter_mut().enumerate() {
        unsafe { sq.push(&server.recv(SERVER_RECV, i)).expect("submission queue full") };
    }
    let mut ready = Vec::with_capacity(4 * n);
    loop {
        for i in 0..n {
            sends[i].done = 0;
            replies[i].done = 0;
            replies[i].buf.fill(0);
            unsafe { sq.push(&sends[i].send(CLIENT_SEND, i)).expect("submission queue full") };
            unsafe { sq.push(&replies[i].recv(CLIENT_RECV, i)).expect("submission queue full") };
        }
        let mut answered = 0;
        while answered < n {
            sq.sync();
            submitter.submit_and_wait(1)?;
            cq.sync();
            ready.extend(cq.by_ref().map(|c| (c.user_data(), c.result())));
            for (data, result) in ready.drain(..) {
                let (kind, i) = (data >> 32, (data & 0xffff_ffff) as usize);
                assert!(result > 0, "echo: {kind} on connection {i}: {}", std::io::Error::from_raw_os_error(-result));
                let half = match kind {
                    SERVER_RECV | SERVER_SEND => &mut servers[i],
                    CLIENT_SEND => &mut sends[i],
                    _ => &mut replies[i],
                };
                half.done += result as usize;
                let whole = half.done == 64;
                let next = match (kind, whole) {
                    (SERVER_RECV | CLIENT_RECV, false) => Some(half.recv(kind, i)),
                    (SERVER_SEND | CLIENT_SEND, false) => Some(half.send(kind, i)),
                    (SERVER_RECV, true) => {
                        half.done = 0;
                        Some(half.send(SERVER_SEND, i))
                    }
                    (SERVER_SEND, true) => {
                        half.done = 0;
                        Some(half.recv(SERVER_RECV, i))
                    }
                    (CLIENT_RECV, true) => {
                        assert_eq!(*half.buf, [1; 64]);
                        answered += 1;
                        None
                    }
                    _ => None,
                };
                if let Some(sqe) = next {
                    unsafe { sq.push(&sqe).expect("submission queue full") };
                }
            }
        }
        if !runner.record(n as u64) {
            return Ok(runner.finish());
        }
    }
}
