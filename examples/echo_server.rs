//! A TCP echo server on 127.0.0.1 driven entirely by ring submissions, with a client in the same
//! program (another virtual process) that checks every byte and reports round trips per second.
//!
//! `cargo run --release --example echo_server -- [connections] [round trips per connection]`
//! (default 16 and 2000); `AI_OS_KERNEL_BACKEND` picks the backend.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use ai_os_kernel::Pid;
use ai_os_kernel::sandbox::{IpNet, Policy};
use ai_os_kernel::syscalls::{IoUringManager, OpResult, SyscallOpType as Op, SyscallSubmissionEntry};

const SERVER: Pid = 1;
const CLIENT: Pid = 2;
const MSG: usize = 64;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Runs one operation through the ring and awaits it; an error completion becomes an `Err`.
async fn op(m: &IoUringManager, pid: Pid, op: Op) -> Result<OpResult, Error> {
    let name = op.name();
    let done = m.submit_async(pid, SyscallSubmissionEntry::new(pid, op, 0))?.await;
    if !done.status.is_success() {
        return Err(format!("{name}: {:?}", done.status).into());
    }
    Ok(done.result)
}

async fn recv_exact(m: &IoUringManager, pid: Pid, fd: i32, len: usize) -> Result<Vec<u8>, Error> {
    let mut got = Vec::with_capacity(len);
    while got.len() < len {
        match op(m, pid, Op::Recv { sockfd: fd, size: len - got.len(), flags: 0 }).await? {
            OpResult::Bytes(b) if b.is_empty() => return Err("peer closed early".into()),
            OpResult::Bytes(b) => got.extend(b),
            other => return Err(format!("recv gave {other:?}").into()),
        }
    }
    Ok(got)
}

async fn send_all(m: &IoUringManager, pid: Pid, fd: i32, mut data: &[u8]) -> Result<(), Error> {
    while !data.is_empty() {
        let OpResult::Count(n) = op(m, pid, Op::Send { sockfd: fd, data: data.to_vec(), flags: 0 }).await? else {
            return Err("send gave no count".into());
        };
        data = &data[n..];
    }
    Ok(())
}

/// The server side of one connection: echo until the client closes.
async fn serve(m: &IoUringManager, fd: i32) -> Result<u64, Error> {
    let mut echoed = 0;
    loop {
        let OpResult::Bytes(b) = op(m, SERVER, Op::Recv { sockfd: fd, size: 4096, flags: 0 }).await? else {
            return Err("recv gave no bytes".into());
        };
        if b.is_empty() {
            op(m, SERVER, Op::Close { fd }).await?;
            return Ok(echoed);
        }
        echoed += b.len() as u64;
        send_all(m, SERVER, fd, &b).await?;
    }
}

/// The client side of one connection: `rounds` round trips, each byte checked.
async fn client(m: &IoUringManager, addr: SocketAddr, id: usize, rounds: usize) -> Result<(), Error> {
    let OpResult::Fd(fd) = op(m, CLIENT, Op::Socket { domain: libc_af_inet(), ty: 1, protocol: 0 }).await? else {
        return Err("socket gave no fd".into());
    };
    op(m, CLIENT, Op::Connect { sockfd: fd, addr }).await?;
    for r in 0..rounds {
        let msg: Vec<u8> = (0..MSG).map(|i| (id * 31 + r * 7 + i) as u8).collect();
        send_all(m, CLIENT, fd, &msg).await?;
        if recv_exact(m, CLIENT, fd, MSG).await? != msg {
            return Err(format!("connection {id}, round {r}: the echo differs").into());
        }
    }
    op(m, CLIENT, Op::Close { fd }).await?;
    Ok(())
}

/// `AF_INET` (2 on every platform this crate runs on), without a libc dependency.
fn libc_af_inet() -> i32 {
    2
}

fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>());
    let conns = args.next().transpose()?.unwrap_or(16).max(1);
    let rounds = args.next().transpose()?.unwrap_or(2000);

    let m = IoUringManager::try_new()?;
    let loopback: IpNet = "127.0.0.0/8".parse()?;
    m.set_policy(SERVER, Policy::default().allow_bind(loopback, ..).allow_listen())?;
    m.set_policy(CLIENT, Policy::default().allow_connect(loopback, ..))?;
    println!("backend: {}", m.stats().backend);

    futures::executor::block_on(async {
        let OpResult::Fd(lfd) = op(&m, SERVER, Op::Socket { domain: libc_af_inet(), ty: 1, protocol: 0 }).await? else {
            return Err::<(), Error>("socket gave no fd".into());
        };
        op(&m, SERVER, Op::Bind { sockfd: lfd, addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0) }).await?;
        op(&m, SERVER, Op::Listen { sockfd: lfd, backlog: 1024 }).await?;
        let OpResult::Addr(addr) = op(&m, SERVER, Op::LocalAddr { sockfd: lfd }).await? else {
            return Err("no local address".into());
        };
        println!("listening on {addr}; {conns} connections x {rounds} round trips of {MSG} bytes");

        let start = Instant::now();
        let server = async {
            let mut sessions = Vec::new();
            for _ in 0..conns {
                let OpResult::Accepted { fd, .. } = op(&m, SERVER, Op::Accept { sockfd: lfd }).await? else {
                    return Err::<Vec<_>, Error>("accept gave no connection".into());
                };
                sessions.push(serve(&m, fd));
            }
            Ok(sessions)
        };
        let clients = futures::future::try_join_all((0..conns).map(|id| client(&m, addr, id, rounds)));
        // Accepts and connects first, then the echo sessions alongside the clients.
        let (sessions, ()) = futures::future::try_join(
            async {
                let sessions = server.await?;
                futures::future::try_join_all(sessions).await
            },
            async {
                clients.await?;
                Ok(())
            },
        )
        .await?;
        let secs = start.elapsed().as_secs_f64();
        let total: u64 = sessions.iter().sum();
        let trips = conns * rounds;
        assert_eq!(total, (trips * MSG) as u64, "every byte echoed");
        println!("{trips} round trips in {secs:.3} s: {:.0} round trips/s, every byte checked", trips as f64 / secs);
        op(&m, SERVER, Op::Close { fd: lfd }).await?;
        Ok(())
    })?;
    let s = m.stats();
    println!("submissions {}, completions {}, pending {}", s.total_submissions, s.total_completions, s.pending);
    Ok(())
}
