//! Futures and streams, awaited under the runtime of the crate running the suite.

use std::collections::HashSet;
use std::time::Duration;

use ai_os_kernel::syscalls::{OpResult, SyscallOpType};
use futures::StreamExt;

use super::{entry, held, manager, nop};
use crate::support::MakeBackend;

/// Many futures awaited together all resolve with their own completion.
pub async fn futures_resolve(make: MakeBackend) {
    let m = manager(make);
    let futs: Vec<_> = (0..100).map(|i| m.submit_async(1, entry(1, SyscallOpType::Nop, i)).unwrap()).collect();
    let seqs: Vec<u64> = futs.iter().map(|f| f.seq()).collect();
    let done = futures::future::join_all(futs).await;
    for (i, (d, seq)) in done.iter().zip(seqs).enumerate() {
        assert_eq!((d.seq, d.user_data, &d.result), (seq, i as u64, &OpResult::None));
        assert!(d.status.is_success());
    }
    assert_eq!(m.stats().pending, 0);
}

/// The stream yields every CQ completion once, then ends when the ring is destroyed.
pub async fn stream_delivers_then_ends(make: MakeBackend) {
    let m = manager(make);
    m.create_ring(1, None, None).unwrap();
    let mut stream = m.completions(1).unwrap();
    let seqs: HashSet<u64> = m.submit_batch(1, (0..50).map(|_| nop(1)).collect()).unwrap().into_iter().collect();
    let mut got = HashSet::new();
    while got.len() < 50 {
        let e = stream.next().await.expect("stream ended early");
        assert!(got.insert(e.seq), "seq {} twice", e.seq);
    }
    assert_eq!(got, seqs);
    let detached = m.submit_async(1, nop(1)).unwrap().detach();
    assert_eq!(stream.next().await.unwrap().seq, detached);
    m.destroy_ring(1).unwrap();
    assert!(stream.next().await.is_none());
    assert!(stream.next().await.is_none(), "an ended stream stays ended");
}

/// A future and a stream parked on one thread are woken by the thread that completes the work.
pub async fn woken_from_another_thread(make: MakeBackend) {
    let (m, gate) = held(make, 4);
    let fut = m.submit_async(1, nop(1)).unwrap();
    let mut stream = m.completions(1).unwrap();
    let seq = m.submit(1, nop(1)).unwrap();
    // Every runtime under test polls this future on the thread that called its block_on.
    let awaiting = crate::support::current_thread_id();
    let opener = std::thread::spawn(move || {
        crate::support::eventually(Duration::from_secs(30), "the awaiting thread parked", || {
            crate::support::thread_is_asleep(awaiting)
        });
        gate.open();
    });
    assert!(fut.await.status.is_success());
    assert_eq!(stream.next().await.unwrap().seq, seq);
    opener.join().unwrap();
}

/// Awaited one after another, each operation's result as a `Result`.
async fn op(m: &ai_os_kernel::syscalls::IoUringManager, pid: u32, op: SyscallOpType) -> OpResult {
    let name = op.name();
    let done = m.submit_async(pid, entry(pid, op, 0)).unwrap().await;
    assert!(done.status.is_success(), "{name}: {:?}", done.status);
    done.result
}

/// Receives exactly `n` bytes on `fd` of pid 1, awaiting each `Recv`.
async fn recv_exact(m: &ai_os_kernel::syscalls::IoUringManager, fd: i32, n: usize) -> Vec<u8> {
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        let OpResult::Bytes(b) = op(m, 1, SyscallOpType::Recv { sockfd: fd, size: n - got.len(), flags: 0 }).await
        else {
            panic!("recv gave no bytes")
        };
        assert!(!b.is_empty(), "peer closed early");
        got.extend(b);
    }
    got
}

/// Echo over 8 connections at once, every step an awaited future: the shape of a real server.
/// (It caught a busy loop once: a socket registered with tokio before it connected.)
pub async fn async_echo_concurrent(make: MakeBackend) {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    let m = manager(make);
    m.set_policy(1, super::net::loopback_policy()).unwrap();
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let OpResult::Fd(l) =
        op(&m, 1, SyscallOpType::Socket { domain: libc::AF_INET, ty: libc::SOCK_STREAM, protocol: 0 }).await
    else {
        panic!()
    };
    op(&m, 1, SyscallOpType::Bind { sockfd: l, addr: SocketAddr::new(ip, 0) }).await;
    op(&m, 1, SyscallOpType::Listen { sockfd: l, backlog: 64 }).await;
    let OpResult::Addr(addr) = op(&m, 1, SyscallOpType::LocalAddr { sockfd: l }).await else { panic!() };
    let session = |id: u8| {
        let m = &m;
        async move {
            let OpResult::Fd(c) =
                op(m, 1, SyscallOpType::Socket { domain: libc::AF_INET, ty: libc::SOCK_STREAM, protocol: 0 }).await
            else {
                panic!()
            };
            op(m, 1, SyscallOpType::Connect { sockfd: c, addr }).await;
            let OpResult::Accepted { fd: s, .. } = op(m, 1, SyscallOpType::Accept { sockfd: l }).await else {
                panic!()
            };
            for round in 0..50u8 {
                let msg = vec![id ^ round; 64];
                assert_eq!(
                    op(m, 1, SyscallOpType::Send { sockfd: c, data: msg.clone(), flags: 0 }).await,
                    OpResult::Count(64)
                );
                let got = recv_exact(m, s, 64).await;
                assert_eq!(op(m, 1, SyscallOpType::Send { sockfd: s, data: got, flags: 0 }).await, OpResult::Count(64));
                let back = recv_exact(m, c, 64).await;
                assert_eq!(back, msg);
            }
        }
    };
    futures::future::join_all((0..8).map(session)).await;
    assert_eq!(m.stats().pending, 0);
}
