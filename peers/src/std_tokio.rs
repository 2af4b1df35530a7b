//! `std` (blocking `FileExt` positional reads and writes) and `tokio-epoll` (tokio's own
//! `TcpStream` on a current-thread runtime), and the server-pattern echo over tokio's I/O
//! traits that `tokio-epoll` and `ours` share.

use std::os::unix::fs::FileExt;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::Outcome;
use crate::measure::{Env, Offsets, Runner, Sample, WRITE_BATCH, WriteFile, on_threads};

/// Runs `workload` on std's blocking file I/O.
pub fn run_std(workload: &str, env: &Env) -> Outcome {
    let mut runner = env.runner();
    match workload {
        "read4k-qd1" => {
            let file = std::fs::File::open(env.data())?;
            let mut off = Offsets::new(0);
            let mut buf = vec![0u8; 4096];
            loop {
                assert_eq!(file.read_at(&mut buf, off.next_offset())?, 4096);
                if !runner.record(1) {
                    return Ok(runner.finish());
                }
            }
        }
        "write4k" => {
            let mut file = WriteFile::create(&env.dir, "std")?;
            let out = std::fs::OpenOptions::new().write(true).open(&file.path)?;
            let buf = vec![7u8; 4096];
            loop {
                let first = file.next_batch();
                for i in 0..WRITE_BATCH {
                    assert_eq!(out.write_at(&buf, first + i * 4096)?, 4096);
                }
                if !runner.record(WRITE_BATCH) {
                    return Ok(runner.finish());
                }
            }
        }
        _ => Err(format!("std: no workload {workload}").into()),
    }
}

/// Runs `workload` on tokio's own sockets (epoll).
pub fn run_tokio(workload: &str, env: &Env) -> Outcome {
    match workload {
        "echo-srv-c1" => Ok(tokio_echo(1, env.runner())?),
        "echo-srv-c16" => Ok(tokio_echo(16, env.runner())?),
        "echo-srv-c16-t2" => Ok(on_threads(env, 2, |_, runner| {
            tokio_echo(8, runner).expect("echo on one thread");
        })),
        _ => Err(format!("tokio-epoll: no workload {workload}").into()),
    }
}

/// A tokio current-thread runtime.
pub fn current_thread() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()
}

/// The server pattern on `n` connections of tokio's, on a current-thread runtime of this
/// thread's.
fn tokio_echo(n: usize, runner: Runner) -> std::io::Result<Sample> {
    let rt = current_thread()?;
    let pairs = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mut pairs = Vec::new();
        for _ in 0..n {
            let client = tokio::net::TcpStream::connect(addr).await?;
            let (server, _) = listener.accept().await?;
            client.set_nodelay(true)?;
            server.set_nodelay(true)?;
            pairs.push((server, client));
        }
        std::io::Result::Ok(pairs)
    })?;
    Ok(echo_server_pattern(&rt, &tokio::task::LocalSet::new(), pairs, runner))
}

/// The server pattern over streams of type `S` on `rt`: each connection's server side is a
/// task of its own looping `read_exact` of 64 bytes and `write_all` of them back, its read
/// posted before the data comes; an iteration is one round trip from each client, awaited
/// together, and the whole timed loop runs in one `block_on`.
pub fn echo_server_pattern<S>(
    rt: &tokio::runtime::Runtime,
    local: &tokio::task::LocalSet,
    pairs: Vec<(S, S)>,
    mut runner: Runner,
) -> Sample
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut clients = Vec::new();
    for (mut server, client) in pairs {
        rt.spawn(async move {
            let mut buf = [0u8; 64];
            while server.read_exact(&mut buf).await.is_ok() {
                if server.write_all(&buf).await.is_err() {
                    break;
                }
            }
        });
        clients.push(client);
    }
    let n = clients.len() as u64;
    local.block_on(rt, async move {
        loop {
            futures::future::join_all(clients.iter_mut().map(|client| async move {
                let mut buf = [0u8; 64];
                client.write_all(&[1; 64]).await.expect("client write");
                client.read_exact(&mut buf).await.expect("client read");
                assert_eq!(buf, [1; 64]);
            }))
            .await;
            if !runner.record(n) {
                return runner.finish();
            }
        }
    })
}
