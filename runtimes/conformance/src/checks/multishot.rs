//! Multishot operations (`AcceptMulti`): many results, each handed to the operation's stream,
//! then its one completion; bounded, cancellable, and leaving nothing behind.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use ai_os_kernel::syscalls::{
    IoUringManager, Multishot, OpResult, RECV_SHARES, SHOTS_WAITING, SyscallCompletionEntry, SyscallOpType as Op,
    errno, net_flags,
};
use futures::StreamExt;
use futures::executor::block_on;
use futures::stream::FusedStream;

use super::net::{V4, listener, loopback_policy};
use super::{entry, manager};
use crate::support::{MakeBackend, eventually, run_op};

const T: Duration = Duration::from_secs(30);

/// The stream's next item; panics if it ended.
fn next(shots: &mut Multishot) -> SyscallCompletionEntry {
    block_on(shots.next()).expect("the stream ended before its completion")
}

/// The connection a result holds: its descriptor in the process.
fn accepted(done: SyscallCompletionEntry) -> i32 {
    match done.result {
        OpResult::Accepted { fd, .. } => fd,
        other => panic!("not a connection: {other:?} ({:?})", done.status),
    }
}

/// Takes results until the completion, which it returns with the connections taken before it.
fn drain(shots: &mut Multishot) -> (Vec<i32>, SyscallCompletionEntry) {
    let mut fds = Vec::new();
    loop {
        let done = next(shots);
        if shots.is_terminated() {
            assert!(block_on(shots.next()).is_none(), "nothing after the completion");
            return (fds, done);
        }
        fds.push(accepted(done));
    }
}

/// `data` sent by `client` arrives at the process's connection `fd`.
fn carries(m: &IoUringManager, fd: i32, client: &mut TcpStream, data: &[u8]) {
    client.write_all(data).unwrap();
    let mut got = Vec::new();
    while got.len() < data.len() {
        match run_op(m, 1, Op::Recv { sockfd: fd, size: data.len() - got.len(), flags: 0 }).result {
            OpResult::Bytes(b) if !b.is_empty() => got.extend(b),
            other => panic!("recv on an accepted connection: {other:?}"),
        }
    }
    assert_eq!(got, data);
}

fn open(m: &IoUringManager) -> usize {
    m.processes().get(1).map_or(0, |p| p.open_descriptors())
}

/// An `AcceptMulti` hands each connection to its stream as it comes, installed in the process
/// (each works, with its own descriptor), and ends with its one completion: cancelled when
/// cancelled, after which the stream ends. Submitted any other way it is refused with `EINVAL`
/// and accepts nothing; any other operation submitted so gives only its completion. A
/// connection that came as the cancellation did is either a result or still queued for the
/// next accept: none is lost.
pub fn multishot_accept_streams_connections(make: MakeBackend) {
    let m = manager(make);
    m.set_policy(1, loopback_policy()).unwrap();
    let (lfd, addr) = listener(&m, 1, V4);

    // Refused elsewhere: to the CQ, to a future.
    assert_eq!(run_op(&m, 1, Op::AcceptMulti { sockfd: lfd }).errno(), Some(errno::EINVAL));
    let refused = block_on(m.submit_async(1, entry(1, Op::AcceptMulti { sockfd: lfd }, 0)).unwrap());
    assert_eq!(refused.errno(), Some(errno::EINVAL));
    // Any other operation: its completion alone.
    let mut nop = m.submit_multishot(1, entry(1, Op::Nop, 9)).unwrap();
    let done = next(&mut nop);
    assert!(nop.is_terminated() && done.status.is_success() && done.user_data == 9, "{done:?}");
    assert!(block_on(nop.next()).is_none());

    let mut shots = m.submit_multishot(1, entry(1, Op::AcceptMulti { sockfd: lfd }, 7)).unwrap();
    let mut clients: Vec<TcpStream> = (0..5).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let mut fds = Vec::new();
    for _ in 0..clients.len() {
        let done = next(&mut shots);
        assert!(!shots.is_terminated(), "a result, not the completion: {done:?}");
        assert_eq!((done.seq, done.user_data), (shots.seq(), 7));
        let OpResult::Accepted { fd, peer } = done.result else { panic!("{done:?}") };
        assert!(clients.iter().any(|c| c.local_addr().unwrap() == peer), "{peer} is one of the clients");
        fds.push((fd, peer));
    }
    let mut distinct: Vec<i32> = fds.iter().map(|(fd, _)| *fd).collect();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), clients.len(), "a descriptor each");
    for (fd, peer) in &fds {
        let client = clients.iter_mut().find(|c| c.local_addr().unwrap() == *peer).unwrap();
        carries(&m, *fd, client, format!("to {fd}").as_bytes());
    }
    // On a socket that does not listen, at once on every backend (not when data next comes).
    let mut not_listening = m.submit_multishot(1, Op::AcceptMulti { sockfd: fds[0].0 }).unwrap();
    assert_eq!(next(&mut not_listening).errno(), Some(errno::EINVAL));
    let mut listening = m.submit_multishot(1, Op::RecvMulti { sockfd: lfd, size: 64 }).unwrap();
    assert_eq!(next(&mut listening).errno(), Some(errno::ENOTCONN));

    // One more connects as the operation is cancelled.
    let late = TcpStream::connect(addr).unwrap();
    m.cancel(1, shots.seq()).unwrap();
    let (raced, done) = drain(&mut shots);
    assert!(done.status.is_cancelled(), "{done:?}");
    assert!(raced.len() <= 1, "only the late one could come: {raced:?}");
    if raced.is_empty() {
        // Still queued: a later accept has it.
        let OpResult::Accepted { peer, .. } = run_op(&m, 1, Op::Accept { sockfd: lfd }).result else {
            panic!("the late connection was lost")
        };
        assert_eq!(peer, late.local_addr().unwrap());
    }
    assert_eq!(open(&m), 1 + clients.len() + 1, "the listener and every connection, once");
}

/// Results nobody takes are bounded: once [`SHOTS_WAITING`] wait, the operation stops and
/// completes ([`OpResult::None`]); submitted again it takes the rest, and every connection
/// arrives once. Dropping the stream closes the connections it had not handed on (their
/// clients read end of file); destroying the ring does too, and the stream ends cancelled.
pub fn multishot_accept_is_bounded_and_leaves_nothing(make: MakeBackend) {
    let m = manager(make);
    m.set_policy(1, loopback_policy()).unwrap();
    let (lfd, addr) = listener(&m, 1, V4);

    let n = SHOTS_WAITING + 16;
    let mut shots = m.submit_multishot(1, Op::AcceptMulti { sockfd: lfd }).unwrap();
    let clients: Vec<TcpStream> = (0..n).map(|_| TcpStream::connect(addr).unwrap()).collect();
    // Untaken, the results stop at the bound (and a few on their way as it was reached).
    eventually(T, "the bound reached", || open(&m) > SHOTS_WAITING);
    let (mut fds, done) = drain(&mut shots);
    assert!(done.status.is_success(), "stopped for room: {done:?}");
    assert_eq!(done.result, OpResult::None);
    assert!(fds.len() >= SHOTS_WAITING && fds.len() <= n, "{} results before it stopped", fds.len());
    let mut again = m.submit_multishot(1, Op::AcceptMulti { sockfd: lfd }).unwrap();
    while fds.len() < n {
        let done = next(&mut again);
        assert!(!again.is_terminated(), "{done:?}");
        fds.push(accepted(done));
    }
    drop(again);
    let mut peers: Vec<_> = fds
        .iter()
        .map(|&fd| match run_op(&m, 1, Op::PeerAddr { sockfd: fd }).result {
            OpResult::Addr(a) => a,
            other => panic!("{other:?}"),
        })
        .collect();
    let mut expected: Vec<_> = clients.iter().map(|c| c.local_addr().unwrap()).collect();
    peers.sort_unstable();
    expected.sort_unstable();
    assert_eq!(peers, expected, "every connection once");
    for fd in fds {
        run_op(&m, 1, Op::Close { fd });
    }
    eventually(T, "closed", || open(&m) == 1);

    // Dropped with results waiting: their connections are closed.
    let shots = m.submit_multishot(1, Op::AcceptMulti { sockfd: lfd }).unwrap();
    let mut dropped: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
    eventually(T, "accepted", || open(&m) == 4);
    drop(shots);
    eventually(T, "the untaken connections closed", || open(&m) == 1);
    for client in &mut dropped {
        client.set_read_timeout(Some(T)).unwrap();
        let mut byte = [0u8; 1];
        match client.read(&mut byte) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("not closed by the server: {other:?}"),
        }
    }

    // Destroyed with results waiting: the stream ends cancelled.
    let mut shots = m.submit_multishot(1, Op::AcceptMulti { sockfd: lfd }).unwrap();
    let _more: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
    eventually(T, "accepted", || open(&m) == 3);
    m.destroy_ring(1).unwrap();
    let (_, done) = drain(&mut shots);
    assert!(done.status.is_cancelled(), "{done:?}");
    assert_eq!(open(&m), 0, "the untaken connections went with the process");
}

/// A connection its client reset before it was accepted does not end the stream: the next
/// connection still comes.
pub fn multishot_accept_outlives_a_reset_connection(make: MakeBackend) {
    use std::os::fd::AsRawFd;
    let m = manager(make);
    m.set_policy(1, loopback_policy()).unwrap();
    let (lfd, addr) = listener(&m, 1, V4);
    let reset = TcpStream::connect(addr).unwrap();
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: a valid socket, and a `linger` of the size given.
    let set = unsafe {
        libc::setsockopt(
            reset.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(set, 0);
    drop(reset); // closed with a reset, still in the listener's queue
    let good = TcpStream::connect(addr).unwrap();
    let mut shots = m.submit_multishot(1, Op::AcceptMulti { sockfd: lfd }).unwrap();
    // The reset one may come first (accept(2) returns it on the pools) or be skipped (io_uring).
    for _ in 0..2 {
        let done = next(&mut shots);
        assert!(!shots.is_terminated(), "the stream ended: {done:?}");
        if let OpResult::Accepted { peer, .. } = done.result
            && peer == good.local_addr().unwrap()
        {
            return;
        }
    }
    panic!("the connection after the reset one never came");
}

/// At the descriptor limit an `AcceptMulti` ends with `EMFILE` after the connections it had
/// room for, and leaves the rest queued for later accepts: it never holds more descriptors than
/// the policy allows, and closes no connection for want of room. Near the limit (less room
/// than the listener's backlog) the connections still come, each exactly once.
pub fn multishot_accept_stops_at_the_descriptor_limit(make: MakeBackend) {
    let m = manager(make);
    m.set_policy(1, loopback_policy().max_open_fds(3)).unwrap();
    let (lfd, addr) = listener(&m, 1, V4);
    let mut shots = m.submit_multishot(1, Op::AcceptMulti { sockfd: lfd }).unwrap();
    let clients: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let (fds, done) = drain(&mut shots);
    assert_eq!(fds.len(), 2, "room for two beside the listener");
    assert_eq!(done.errno(), Some(errno::EMFILE), "{done:?}");
    assert_eq!(open(&m), 3);
    // The other two are still queued.
    for fd in fds {
        run_op(&m, 1, Op::Close { fd });
        let OpResult::Accepted { peer, .. } = run_op(&m, 1, Op::Accept { sockfd: lfd }).result else {
            panic!("a connection past the limit was lost")
        };
        assert!(clients.iter().any(|c| c.local_addr().unwrap() == peer));
    }

    // Room for 149 more, the listener's backlog 128: every connection comes, once.
    let m = manager(make);
    m.set_policy(1, loopback_policy().max_open_fds(150)).unwrap();
    let (lfd, addr) = listener(&m, 1, V4);
    let clients: Vec<TcpStream> = (0..60).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let mut peers = Vec::new();
    while peers.len() < clients.len() {
        let mut shots = m.submit_multishot(1, Op::AcceptMulti { sockfd: lfd }).unwrap();
        while peers.len() < clients.len() {
            let done = next(&mut shots);
            if shots.is_terminated() {
                assert_eq!(done.result, OpResult::None, "stopped for room, not failed: {done:?}");
                break;
            }
            let OpResult::Accepted { peer, .. } = done.result else { panic!("{done:?}") };
            peers.push(peer);
        }
    }
    let mut expected: Vec<_> = clients.iter().map(|c| c.local_addr().unwrap()).collect();
    peers.sort_unstable();
    expected.sort_unstable();
    assert_eq!(peers, expected, "every connection once");
    assert_eq!(open(&m), 1 + clients.len());
}

/// A connection of process 1's, accepted from a `std` client: its descriptor, and the client.
fn accepted_pair(m: &IoUringManager) -> (i32, TcpStream) {
    let (lfd, addr) = listener(m, 1, V4);
    let client = TcpStream::connect(addr).unwrap();
    let fd = accepted(run_op(m, 1, Op::Accept { sockfd: lfd }));
    run_op(m, 1, Op::Close { fd: lfd });
    (fd, client)
}

/// A `RecvMulti` hands what arrives to its stream as it comes, in order, each result at most
/// its `size`; stopped because its results waited (a slow reader), it completes
/// [`OpResult::None`] and goes on when submitted again; when the peer closes, it completes
/// with an empty result after the last bytes. Cancelled, it completes cancelled. Without room
/// for results (`size` 0) it is `EINVAL`.
pub fn multishot_recv_streams_data(make: MakeBackend) {
    let m = manager(make);
    m.set_policy(1, loopback_policy()).unwrap();
    let (fd, mut client) = accepted_pair(&m);
    let data: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 251) as u8).collect();
    let sent = data.clone();
    let writer = std::thread::spawn(move || {
        client.write_all(&sent).unwrap();
        // Closed: the stream's last completion says so.
    });
    let size = 4096;
    let mut got = Vec::new();
    let mut stops = 0;
    let end = loop {
        let mut shots = m.submit_multishot(1, Op::RecvMulti { sockfd: fd, size }).unwrap();
        let (stopped, end) = loop {
            let done = next(&mut shots);
            if shots.is_terminated() {
                break (done.result == OpResult::None, done);
            }
            let OpResult::Bytes(bytes) = done.result else { panic!("{done:?}") };
            assert!(!bytes.is_empty() && bytes.len() <= size, "{} bytes", bytes.len());
            got.extend(bytes);
            if got.len() % (256 << 10) < size {
                // A slow reader now and then: its results wait, and the receive stops.
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        if !stopped {
            break end;
        }
        stops += 1;
    };
    writer.join().unwrap();
    assert_eq!(end.result, OpResult::Bytes(Vec::new()), "the peer closed: {end:?}");
    assert_eq!(got.len(), data.len());
    assert!(got == data, "the bytes, in order");
    assert!(stops > 0, "the slow reader never made it stop");

    // Cancelled while it waits.
    let (fd, _client) = accepted_pair(&m);
    let mut shots = m.submit_multishot(1, Op::RecvMulti { sockfd: fd, size }).unwrap();
    m.cancel(1, shots.seq()).unwrap();
    let (_, done) = drain_bytes(&mut shots);
    assert!(done.status.is_cancelled(), "{done:?}");
    let mut none = m.submit_multishot(1, Op::RecvMulti { sockfd: fd, size: 0 }).unwrap();
    assert_eq!(next(&mut none).errno(), Some(errno::EINVAL));
    // A datagram socket: an empty datagram is no end of file.
    let OpResult::Fd(udp) =
        run_op(&m, 1, Op::Socket { domain: libc::AF_INET, ty: libc::SOCK_DGRAM, protocol: 0 }).result
    else {
        panic!()
    };
    let mut datagrams = m.submit_multishot(1, Op::RecvMulti { sockfd: udp, size }).unwrap();
    assert_eq!(next(&mut datagrams).errno(), Some(errno::EINVAL));

    // The tenant's handle: `TcpStream::chunks`, until the peer shuts its side.
    let tenant = m.tenant(1);
    block_on(async {
        let listener = tenant.tcp_listen((std::net::Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr()).unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let part = &data[..100_000];
        client.write_all(part).unwrap();
        drop(client);
        let mut got = Vec::new();
        // Any size: kept within the process's limits.
        let mut chunks = server.chunks(usize::MAX);
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.unwrap();
            assert!(!chunk.is_empty());
            got.extend(chunk);
        }
        assert!(got == part, "{} bytes of {}", got.len(), part.len());
        assert!(chunks.is_terminated() && chunks.next().await.is_none());
        // An error ends it: the next poll after it is the end, not the error again.
        let _client = TcpStream::connect(listener.local_addr()).unwrap();
        let (other, _) = listener.accept().await.unwrap();
        m.destroy_ring(1).unwrap();
        let mut chunks = other.chunks(64);
        assert!(chunks.next().await.unwrap().is_err());
        assert!(chunks.next().await.is_none());
    });
}

/// Takes results until the completion, which it returns with the bytes taken before it.
fn drain_bytes(shots: &mut Multishot) -> (Vec<u8>, SyscallCompletionEntry) {
    let mut got = Vec::new();
    loop {
        let done = next(shots);
        if shots.is_terminated() {
            return (got, done);
        }
        let OpResult::Bytes(bytes) = done.result else { panic!("{done:?}") };
        got.extend(bytes);
    }
}

/// A `RecvMulti` counts [`RECV_SHARES`] times its `size` against the buffer budget while it
/// runs, and what its results hold once it completed until they are taken: past the budget it
/// is refused (`ENOMEM`), and everything it held is given back.
pub fn multishot_recv_counts_its_buffers(make: MakeBackend) {
    let size = 1024;
    let budget = RECV_SHARES * size;
    let m = manager(make);
    m.set_policy(1, loopback_policy().max_buffered_bytes(budget)).unwrap();
    let (fd, mut client) = accepted_pair(&m);
    let mut over = m.submit_multishot(1, Op::RecvMulti { sockfd: fd, size: size + 1 }).unwrap();
    assert_eq!(next(&mut over).errno(), Some(libc::ENOMEM), "past the budget");
    let peek = |n| run_op(&m, 1, Op::Recv { sockfd: fd, size: n, flags: net_flags::MSG_PEEK });

    let mut shots = m.submit_multishot(1, Op::RecvMulti { sockfd: fd, size }).unwrap();
    assert_eq!(peek(1).errno(), Some(libc::ENOMEM), "its reservation is the whole budget");
    // Nobody reads: its results wait, and it stops for them.
    let completed = m.stats_for(1).unwrap().completed;
    let sent = 64 << 10;
    client.write_all(&vec![7u8; sent]).unwrap();
    eventually(T, "stopped for its results", || m.stats_for(1).unwrap().completed > completed);
    assert_eq!(peek(budget).errno(), Some(libc::ENOMEM), "its results waiting are counted");
    let (mut got, done) = drain_bytes(&mut shots);
    assert_eq!(done.result, OpResult::None, "{done:?}");
    assert!(!got.is_empty() && got.len() < sent);
    // All given back: the whole budget is free again.
    assert!(peek(budget).status.is_success());
    while got.len() < sent {
        let mut again = m.submit_multishot(1, Op::RecvMulti { sockfd: fd, size }).unwrap();
        let (more, done) = drain_bytes_until(&mut again, sent - got.len());
        got.extend(more);
        drop(done);
    }
    assert!(got.iter().all(|&b| b == 7) && got.len() == sent);
    // The last one was dropped running: once it ended, nothing is held.
    eventually(T, "every operation ended", || m.stats_for(1).unwrap().in_flight == 0);
    client.write_all(b"!").unwrap();
    assert!(peek(budget).status.is_success(), "nothing held once taken and dropped");
}

/// Takes results until `want` bytes came or the completion did (returned if it came).
fn drain_bytes_until(shots: &mut Multishot, want: usize) -> (Vec<u8>, Option<SyscallCompletionEntry>) {
    let mut got = Vec::new();
    while got.len() < want {
        let done = next(shots);
        if shots.is_terminated() {
            return (got, Some(done));
        }
        let OpResult::Bytes(bytes) = done.result else { panic!("{done:?}") };
        got.extend(bytes);
    }
    (got, None)
}

/// Many multishot receives of one process at once (more than io_uring lets one process
/// register buffer rings for: the rest run on the pools): each gets its own socket's bytes,
/// and all end cancelled when cancelled, leaving nothing behind.
pub fn multishot_recv_many_at_once(make: MakeBackend) {
    let m = manager(make);
    m.set_policy(1, loopback_policy()).unwrap();
    let pairs = super::net::connect_pairs(&m, 1, 1, V4, 24);
    let mut streams: Vec<Multishot> = pairs
        .iter()
        .map(|&(server, _)| m.submit_multishot(1, Op::RecvMulti { sockfd: server, size: 64 }).unwrap())
        .collect();
    for (i, &(_, client)) in pairs.iter().enumerate() {
        let data = format!("to {i}").into_bytes();
        assert!(run_op(&m, 1, Op::Send { sockfd: client, data, flags: 0 }).status.is_success());
    }
    for (i, shots) in streams.iter_mut().enumerate() {
        let want = format!("to {i}").into_bytes();
        let (got, done) = drain_bytes_until(shots, want.len());
        assert_eq!((got, done.map(|d| d.status)), (want, None));
    }
    for shots in &streams {
        m.cancel(1, shots.seq()).unwrap();
    }
    for shots in &mut streams {
        let (rest, done) = drain_bytes(shots);
        assert!(rest.is_empty() && done.status.is_cancelled(), "{done:?}");
    }
    eventually(T, "every operation ended", || m.stats_for(1).unwrap().in_flight == 0);
}
