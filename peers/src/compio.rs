//! `compio`: compio's runtime on its io_uring driver, one per thread, with its owned-buffer
//! file and socket API (`AsyncReadAt`, `AsyncWriteAt`, `AsyncReadExt`, `AsyncWriteExt`).

use compio::BufResult;
use compio::io::{AsyncReadAt, AsyncReadExt, AsyncWriteAt, AsyncWriteExt};
use compio::net::{TcpListener, TcpStream};

use crate::Outcome;
use crate::measure::{Env, Offsets, Runner, Sample, WRITE_BATCH, WriteFile, on_threads};

/// Runs `workload` on compio.
pub fn run(workload: &str, env: &Env) -> Outcome {
    Ok(match workload {
        "read4k-qd1" => block_on(read4k(env.clone(), 1, env.runner()))?,
        "read4k-qd64" => block_on(read4k(env.clone(), 64, env.runner()))?,
        "write4k" => block_on(write4k(env.clone(), env.runner()))?,
        "echo-srv-c1" => block_on(echo(1, env.runner()))?,
        "echo-srv-c16" => block_on(echo(16, env.runner()))?,
        "echo-srv-c16-t2" => on_threads(env, 2, |_, runner| {
            block_on(echo(8, runner)).expect("echo on one thread");
        }),
        _ => return Err(format!("compio: no workload {workload}").into()),
    })
}

/// Runs `future` on a new compio runtime of this thread's.
fn block_on<T>(future: impl Future<Output = std::io::Result<T>>) -> std::io::Result<T> {
    compio::runtime::Runtime::new()?.block_on(future)
}

/// 4 KiB reads of the data file at random offsets, `qd` futures at a time (joined), with owned
/// buffers handed back and reused.
async fn read4k(env: Env, qd: usize, mut runner: Runner) -> std::io::Result<Sample> {
    let file = compio::fs::File::open(env.data()).await?;
    let mut off = Offsets::new(0);
    let mut bufs = vec![vec![0u8; 4096]; qd];
    loop {
        if qd == 1 {
            let BufResult(read, buf) = file.read_at(bufs.pop().expect("a buffer"), off.next_offset()).await;
            assert_eq!(read?, 4096);
            bufs.push(buf);
        } else {
            let reads = bufs.drain(..).map(|buf| file.read_at(buf, off.next_offset()));
            for BufResult(read, buf) in futures::future::join_all(reads.collect::<Vec<_>>()).await {
                assert_eq!(read?, 4096);
                bufs.push(buf);
            }
        }
        if !runner.record(qd as u64) {
            return Ok(runner.finish());
        }
    }
}

/// 4 KiB writes at ascending offsets, [`WRITE_BATCH`] futures at a time (joined).
async fn write4k(env: Env, mut runner: Runner) -> std::io::Result<Sample> {
    let mut target = WriteFile::create(&env.dir, "compio")?;
    let file = compio::fs::OpenOptions::new().write(true).open(&target.path).await?;
    let mut bufs = vec![vec![7u8; 4096]; WRITE_BATCH as usize];
    loop {
        let first = target.next_batch();
        let writes = bufs.drain(..).enumerate().map(|(i, buf)| {
            let mut file = &file;
            async move { file.write_at(buf, first + i as u64 * 4096).await }
        });
        for BufResult(written, buf) in futures::future::join_all(writes.collect::<Vec<_>>()).await {
            assert_eq!(written?, 4096);
            bufs.push(buf);
        }
        if !runner.record(WRITE_BATCH) {
            return Ok(runner.finish());
        }
    }
}

/// A client of the echo: its stream and its two owned buffers.
struct Client {
    /// The client side of the connection.
    stream: TcpStream,
    /// The message it sends (64 bytes of 1).
    send: Vec<u8>,
    /// Where the reply goes.
    recv: Vec<u8>,
}

/// The server pattern on `n` loopback connections: each server side is a task looping
/// `read_exact` of 64 bytes and `write_all` of them back; an iteration is one round trip from
/// each client, joined.
async fn echo(n: usize, mut runner: Runner) -> std::io::Result<Sample> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let mut clients = Vec::new();
    for _ in 0..n {
        let stream = TcpStream::connect(addr).await?;
        let (mut server, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        server.set_nodelay(true)?;
        compio::runtime::spawn(async move {
            let mut buf = vec![0u8; 64];
            loop {
                let BufResult(read, back) = server.read_exact(buf).await;
                if read.is_err() {
                    break;
                }
                let BufResult(written, back) = server.write_all(back).await;
                if written.is_err() {
                    break;
                }
                buf = back;
            }
        })
        .detach();
        clients.push(Client { stream, send: vec![1; 64], recv: vec![0; 64] });
    }
    loop {
        futures::future::join_all(clients.iter_mut().map(|c| async move {
            let BufResult(written, send) = c.stream.write_all(std::mem::take(&mut c.send)).await;
            written.expect("client write");
            c.send = send;
            let BufResult(read, recv) = c.stream.read_exact(std::mem::take(&mut c.recv)).await;
            read.expect("client read");
            assert_eq!(recv, [1; 64]);
            c.recv = recv;
        }))
        .await;
        if !runner.record(n as u64) {
            return Ok(runner.finish());
        }
    }
}
