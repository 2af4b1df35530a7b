//! Sockets on loopback only (127.0.0.1 and ::1, port 0): TCP and UDP, IPv4 and IPv6, errors,
//! cancellation, and the network policy.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use ai_os_kernel::Pid;
use ai_os_kernel::sandbox::{IpNet, Policy};
use ai_os_kernel::syscalls::open_flags::*;
use ai_os_kernel::syscalls::{
    IoUringError, IoUringManager, OpResult, SyscallCompletionEntry, SyscallOpType as Op, errno,
};

use super::{entry, manager};
use crate::support::{MakeBackend, eventually, run_op};

const T: Duration = Duration::from_secs(30);
pub(crate) const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

/// Loopback only: bind, listen, connect and send to 127.0.0.0/8 and ::1.
pub fn loopback_policy() -> Policy {
    let v4: IpNet = "127.0.0.0/8".parse().unwrap();
    let v6: IpNet = "::1/128".parse().unwrap();
    Policy::default().allow_bind(v4, ..).allow_bind(v6, ..).allow_connect(v4, ..).allow_connect(v6, ..).allow_listen()
}

fn ok(done: SyscallCompletionEntry, what: &str) -> OpResult {
    assert!(done.status.is_success(), "{what}: {:?}", done.status);
    done.result
}

fn domain(ip: IpAddr) -> i32 {
    if ip.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 }
}

pub(crate) fn socket(m: &IoUringManager, pid: Pid, ip: IpAddr, ty: i32) -> i32 {
    match ok(run_op(m, pid, Op::Socket { domain: domain(ip), ty, protocol: 0 }), "socket") {
        OpResult::Fd(fd) => fd,
        other => panic!("socket gave {other:?}"),
    }
}

/// A bound socket of `ty` on `ip`, port 0, and the address it got.
pub(crate) fn bound(m: &IoUringManager, pid: Pid, ip: IpAddr, ty: i32) -> (i32, SocketAddr) {
    let fd = socket(m, pid, ip, ty);
    ok(run_op(m, pid, Op::Bind { sockfd: fd, addr: SocketAddr::new(ip, 0) }), "bind");
    let OpResult::Addr(addr) = ok(run_op(m, pid, Op::LocalAddr { sockfd: fd }), "getsockname") else { panic!() };
    assert_eq!(addr.ip(), ip);
    assert_ne!(addr.port(), 0);
    (fd, addr)
}

pub(crate) fn listener(m: &IoUringManager, pid: Pid, ip: IpAddr) -> (i32, SocketAddr) {
    let (fd, addr) = bound(m, pid, ip, libc::SOCK_STREAM);
    ok(run_op(m, pid, Op::Listen { sockfd: fd, backlog: 128 }), "listen");
    (fd, addr)
}

fn wait_all(m: &IoUringManager, pid: Pid, seqs: &[u64]) -> Vec<SyscallCompletionEntry> {
    seqs.iter().map(|&s| m.wait_completion_timeout(pid, s, T).expect("completion")).collect()
}

/// `n` connections from `client` to `server`'s listener: (server fd, client fd) pairs.
pub(crate) fn connect_pairs(m: &IoUringManager, server: Pid, client: Pid, ip: IpAddr, n: usize) -> Vec<(i32, i32)> {
    let (lfd, addr) = listener(m, server, ip);
    let accepts =
        m.submit_batch(server, (0..n).map(|_| entry(server, Op::Accept { sockfd: lfd }, 0)).collect()).unwrap();
    let clients: Vec<i32> = (0..n).map(|_| socket(m, client, ip, libc::SOCK_STREAM)).collect();
    let connects =
        m.submit_batch(client, clients.iter().map(|&fd| entry(client, Op::Connect { sockfd: fd, addr }, 0)).collect());
    for c in wait_all(m, client, &connects.unwrap()) {
        ok(c, "connect");
    }
    let mut by_peer = std::collections::HashMap::new();
    for a in wait_all(m, server, &accepts) {
        let OpResult::Accepted { fd, peer } = ok(a, "accept") else { panic!() };
        assert_eq!(peer.ip(), ip);
        by_peer.insert(peer, fd);
    }
    clients
        .into_iter()
        .map(|c| {
            let OpResult::Addr(local) = ok(run_op(m, client, Op::LocalAddr { sockfd: c }), "getsockname") else {
                panic!()
            };
            (by_peer[&local], c)
        })
        .collect()
}

/// Receives exactly `len` bytes (TCP may split them).
pub(crate) fn recv_exact(m: &IoUringManager, pid: Pid, fd: i32, len: usize) -> Vec<u8> {
    let mut got = Vec::with_capacity(len);
    while got.len() < len {
        let OpResult::Bytes(b) = ok(run_op(m, pid, Op::Recv { sockfd: fd, size: len - got.len(), flags: 0 }), "recv")
        else {
            panic!()
        };
        assert!(!b.is_empty(), "peer closed after {} of {len} bytes", got.len());
        got.extend(b);
    }
    got
}

/// Sends all of `data`, however short each send is.
pub(crate) fn send_all(m: &IoUringManager, pid: Pid, fd: i32, data: &[u8]) {
    let mut sent = 0;
    while sent < data.len() {
        let OpResult::Count(n) =
            ok(run_op(m, pid, Op::Send { sockfd: fd, data: data[sent..].to_vec(), flags: 0 }), "send")
        else {
            panic!()
        };
        sent += n;
    }
}

fn echo(make: MakeBackend, ip: IpAddr, conns: usize, rounds: usize) {
    let m = manager(make);
    m.set_policy(1, loopback_policy()).unwrap();
    m.set_policy(2, loopback_policy()).unwrap();
    let pairs = connect_pairs(&m, 1, 2, ip, conns);
    for round in 0..rounds {
        let msgs: Vec<Vec<u8>> = (0..conns).map(|i| format!("{round:03}:{i:04}:").repeat(7).into_bytes()).collect();
        let sends = pairs
            .iter()
            .zip(&msgs)
            .map(|(&(_, c), msg)| entry(2, Op::Send { sockfd: c, data: msg.clone(), flags: 0 }, 0))
            .collect();
        for s in wait_all(&m, 2, &m.submit_batch(2, sends).unwrap()) {
            assert!(matches!(ok(s, "send"), OpResult::Count(n) if n == msgs[0].len()));
        }
        for (&(s, c), msg) in pairs.iter().zip(&msgs) {
            let got = recv_exact(&m, 1, s, msg.len());
            send_all(&m, 1, s, &got);
            assert_eq!(&recv_exact(&m, 2, c, msg.len()), msg, "echo on connection {c}");
        }
    }
    // Closing the client side ends the server's stream with an empty read.
    let (s, c) = pairs[0];
    ok(run_op(&m, 2, Op::Close { fd: c }), "close");
    assert_eq!(ok(run_op(&m, 1, Op::Recv { sockfd: s, size: 64, flags: 0 }), "recv"), OpResult::Bytes(Vec::new()));
}

/// TCP echo over 16 concurrent IPv4 connections.
pub fn tcp_echo_many_connections(make: MakeBackend) {
    echo(make, V4, 16, 3);
}

/// Whether this machine has an IPv6 loopback (containers sometimes do not).
fn has_ipv6_loopback() -> bool {
    let has = std::net::TcpListener::bind("[::1]:0").is_ok();
    if !has {
        crate::support::report_skipped("IPv6 part of a network check", "no ::1 on this machine");
    }
    has
}

/// TCP echo over IPv6.
pub fn tcp_echo_ipv6(make: MakeBackend) {
    if has_ipv6_loopback() {
        echo(make, V6, 4, 2);
    }
}

/// UDP ping-pong on both families; the sender's address comes with each datagram.
pub fn udp_ping_pong(make: MakeBackend) {
    let m = manager(make);
    m.set_policy(1, loopback_policy()).unwrap();
    let ips: Vec<IpAddr> = if has_ipv6_loopback() { vec![V4, V6] } else { vec![V4] };
    for ip in ips {
        let (a, a_addr) = bound(&m, 1, ip, libc::SOCK_DGRAM);
        let (b, b_addr) = bound(&m, 1, ip, libc::SOCK_DGRAM);
        for i in 0..20u8 {
            let ping = vec![i; 1 + i as usize * 50];
            let sent = run_op(&m, 1, Op::SendTo { sockfd: a, data: ping.clone(), addr: b_addr, flags: 0 });
            assert_eq!(ok(sent, "sendto"), OpResult::Count(ping.len()));
            let got = ok(run_op(&m, 1, Op::RecvFrom { sockfd: b, size: 2048, flags: 0 }), "recvfrom");
            assert_eq!(got, OpResult::Datagram { data: ping.clone(), from: a_addr });
            ok(run_op(&m, 1, Op::SendTo { sockfd: b, data: ping[..1].to_vec(), addr: a_addr, flags: 0 }), "sendto");
            let back = ok(run_op(&m, 1, Op::RecvFrom { sockfd: a, size: 1, flags: 0 }), "recvfrom");
            assert_eq!(back, OpResult::Datagram { data: vec![i], from: b_addr });
        }
        // A datagram larger than the buffer is cut to the buffer.
        ok(run_op(&m, 1, Op::SendTo { sockfd: a, data: vec![9; 100], addr: b_addr, flags: 0 }), "sendto");
        let cut = ok(run_op(&m, 1, Op::RecvFrom { sockfd: b, size: 10, flags: 0 }), "recvfrom");
        assert_eq!(cut, OpResult::Datagram { data: vec![9; 10], from: a_addr });
        // Connected UDP: Send and Recv.
        ok(run_op(&m, 1, Op::Connect { sockfd: a, addr: b_addr }), "connect udp");
        assert_eq!(
            ok(run_op(&m, 1, Op::Send { sockfd: a, data: b"c".to_vec(), flags: 0 }), "send"),
            OpResult::Count(1)
        );
        assert_eq!(
            ok(run_op(&m, 1, Op::Recv { sockfd: b, size: 8, flags: 0 }), "recv"),
            OpResult::Bytes(b"c".to_vec())
        );
    }
}

/// A port nobody listens on: `ECONNREFUSED`.
pub fn connection_refused(make: MakeBackend) {
    let m = manager(make);
    m.set_policy(1, loopback_policy()).unwrap();
    let (fd, addr) = bound(&m, 1, V4, libc::SOCK_STREAM);
    ok(run_op(&m, 1, Op::Close { fd }), "close");
    let c = socket(&m, 1, V4, libc::SOCK_STREAM);
    let done = run_op(&m, 1, Op::Connect { sockfd: c, addr });
    assert_eq!(done.errno(), Some(libc::ECONNREFUSED), "{:?}", done.status);
}

/// A peer that closes with unread data resets the connection: `ECONNRESET`, then `EPIPE`.
pub fn peer_reset(make: MakeBackend) {
    let m = manager(make);
    m.set_policy(1, loopback_policy()).unwrap();
    let pairs = connect_pairs(&m, 1, 1, V4, 1);
    let (s, c) = pairs[0];
    send_all(&m, 1, c, &[1; 100]);
    eventually(T, "data arrived", || {
        let peek = run_op(&m, 1, Op::Recv { sockfd: s, size: 1, flags: libc::MSG_PEEK as u32 });
        peek.result == OpResult::Bytes(vec![1])
    });
    ok(run_op(&m, 1, Op::Close { fd: s }), "close with unread data");
    let done = run_op(&m, 1, Op::Recv { sockfd: c, size: 10, flags: 0 });
    assert_eq!(done.errno(), Some(libc::ECONNRESET), "{:?}", done.status);
    let done = run_op(&m, 1, Op::Send { sockfd: c, data: vec![1], flags: 0 });
    assert_eq!(done.errno(), Some(libc::EPIPE), "{:?}", done.status);
}

/// A send larger than the socket buffers is partial and says how much went; large messages
/// arrive whole.
pub fn partial_sends_and_large_messages(make: MakeBackend) {
    let m = manager(make);
    m.set_policy(1, loopback_policy()).unwrap();
    m.set_policy(2, loopback_policy()).unwrap();
    let (s, c) = connect_pairs(&m, 1, 2, V4, 1)[0];
    let big: Vec<u8> = (0..32u32 << 20).map(|i| (i % 251) as u8).collect();
    let first = ok(run_op(&m, 2, Op::Send { sockfd: c, data: big.clone(), flags: 0 }), "send");
    let OpResult::Count(n) = first else { panic!() };
    assert!(n > 0 && n < big.len(), "a 32 MiB send into an unread socket sent {n} bytes");
    // The rest goes while the other side reads.
    let reader = {
        let m = m.clone();
        let len = big.len();
        std::thread::spawn(move || recv_exact(&m, 1, s, len))
    };
    send_all(&m, 2, c, &big[n..]);
    assert!(reader.join().unwrap() == big, "32 MiB arrived intact");
}

/// Accepts nobody answers and receives on a silent peer wait without holding a thread: file
/// operations still complete; cancelled, they end `Cancelled` and leak nothing.
pub fn parked_waits_hold_no_thread(make: MakeBackend) {
    let m = manager(make);
    m.set_policy(1, loopback_policy().read_write()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    m.set_policy(3, Policy::rooted(dir.path()).read_write()).unwrap();
    let (lfd, _) = listener(&m, 1, V4);
    let (s, _c) = connect_pairs(&m, 1, 1, V4, 1)[0];
    let before = m.processes().get(1).unwrap().open_descriptors();
    let mut parked = Vec::new();
    for _ in 0..200 {
        parked.push(m.submit(1, entry(1, Op::Accept { sockfd: lfd }, 0)).unwrap());
        parked.push(m.submit(1, entry(1, Op::Recv { sockfd: s, size: 16, flags: 0 }, 0)).unwrap());
    }
    // More parked operations than any pool has threads; file I/O goes on.
    let done = run_op(&m, 3, Op::open("f", O_RDWR | O_CREAT));
    let OpResult::Fd(fd) = ok(done, "open") else { panic!() };
    for i in 0..64u64 {
        let w = run_op(&m, 3, Op::WriteAt { fd, offset: i * 4, data: vec![i as u8; 4] });
        assert_eq!(ok(w, "pwrite"), OpResult::Count(4));
    }
    assert_eq!(m.ring(1).unwrap().ready(), 0, "nothing parked completed");
    for &seq in &parked {
        m.cancel(1, seq).unwrap();
    }
    for c in wait_all(&m, 1, &parked) {
        assert!(c.status.is_cancelled(), "{:?}", c.status);
    }
    assert_eq!(m.processes().get(1).unwrap().open_descriptors(), before);
}

/// An operation outlives the thread that submitted it: an accept and a receive submitted by
/// threads that then exit still complete with their results (io_uring cancels the requests of
/// an exiting thread; the backend must not pass that on as a cancellation nobody asked for).
pub fn submitter_thread_may_exit(make: MakeBackend) {
    let m = manager(make);
    m.set_policy(1, loopback_policy()).unwrap();
    let (lfd, addr) = listener(&m, 1, V4);
    let submit_and_exit = |op: Op| {
        let m = m.clone();
        std::thread::spawn(move || m.submit(1, entry(1, op, 7)).unwrap()).join().unwrap()
    };
    let accept = submit_and_exit(Op::Accept { sockfd: lfd });
    // A bound, not an observation, and the point of the check: the operation must survive a
    // while after its submitter exited (long enough for io_uring to have cancelled the exited
    // thread's request), which no state of the manager shows.
    std::thread::sleep(Duration::from_millis(50));
    let c = socket(&m, 1, V4, libc::SOCK_STREAM);
    ok(run_op(&m, 1, Op::Connect { sockfd: c, addr }), "connect");
    let OpResult::Accepted { fd: s, .. } = ok(m.wait_completion_timeout(1, accept, T).unwrap(), "accept") else {
        panic!()
    };
    // A future made on a thread that exits, awaited here.
    let recv = {
        let m = m.clone();
        std::thread::spawn(move || m.submit_async(1, entry(1, Op::Recv { sockfd: s, size: 16, flags: 0 }, 8)).unwrap())
            .join()
            .unwrap()
    };
    // As above: the receive must outlive its submitter by a while.
    std::thread::sleep(Duration::from_millis(50));
    ok(run_op(&m, 1, Op::Send { sockfd: c, data: b"still here".to_vec(), flags: 0 }), "send");
    let got = futures::executor::block_on(recv);
    assert_eq!(ok(got, "recv"), OpResult::Bytes(b"still here".to_vec()));
}

/// Dropping the last handle to a manager ends the operations still waiting (an accept nobody
/// answers, a receive on a silent peer, detached or polled), so that the backend is released
/// instead of being kept alive by them.
pub fn dropping_the_manager_ends_waiting_ops(make: MakeBackend) {
    let backend = make();
    let weak = std::sync::Arc::downgrade(&backend);
    let m = IoUringManager::with_backend(backend);
    m.set_policy(1, loopback_policy()).unwrap();
    let (lfd, addr) = listener(&m, 1, V4);
    let c = socket(&m, 1, V4, libc::SOCK_STREAM);
    ok(run_op(&m, 1, Op::Connect { sockfd: c, addr }), "connect");
    let OpResult::Accepted { fd: s, .. } = ok(run_op(&m, 1, Op::Accept { sockfd: lfd }), "accept") else { panic!() };
    m.submit(1, entry(1, Op::Accept { sockfd: lfd }, 0)).unwrap();
    let recv = m.submit_async(1, entry(1, Op::Recv { sockfd: s, size: 8, flags: 0 }, 0)).unwrap();
    m.submit_async(1, entry(1, Op::Recv { sockfd: c, size: 8, flags: 0 }, 0)).unwrap().detach();
    // Gives the operations time to park in the backend, the case this check is about. A bound
    // only: dropped before they park, they must end the same way, so no timing can fail it.
    std::thread::sleep(Duration::from_millis(20));
    drop(m);
    assert!(futures::executor::block_on(recv).status.is_cancelled(), "the polled receive was cancelled");
    eventually(T, "the backend released", || weak.upgrade().is_none());
}

/// A cancelled or dropped accept really stops: the next connection goes to the next accept, and
/// an accept that wins the race against its own cancellation leaks no descriptor.
pub fn cancelled_accept_stops_and_leaks_nothing(make: MakeBackend) {
    let m = manager(make);
    m.set_policy(1, loopback_policy()).unwrap();
    m.set_policy(2, loopback_policy()).unwrap();
    let (lfd, addr) = listener(&m, 1, V4);
    let seq = m.submit(1, entry(1, Op::Accept { sockfd: lfd }, 0)).unwrap();
    m.cancel(1, seq).unwrap();
    assert!(m.wait_completion_timeout(1, seq, T).unwrap().status.is_cancelled());
    drop(m.submit_async(1, entry(1, Op::Accept { sockfd: lfd }, 0)).unwrap());
    // Dropping asks for cancellation; the accept stops when its task next runs. Until then a
    // connection arriving may still be taken (and closed with the discarded result): a result
    // ready in the same poll as the cancellation wins. So the connection is made only once the
    // dropped accept has retired.
    eventually(T, "the dropped accept retired", || m.stats().pending == 0);
    let c = socket(&m, 2, V4, libc::SOCK_STREAM);
    ok(run_op(&m, 2, Op::Connect { sockfd: c, addr }), "connect");
    let OpResult::Addr(local) = ok(run_op(&m, 2, Op::LocalAddr { sockfd: c }), "getsockname") else { panic!() };
    let got = ok(run_op(&m, 1, Op::Accept { sockfd: lfd }), "accept after cancel");
    assert!(matches!(got, OpResult::Accepted { peer, .. } if peer == local), "{got:?}");
    let OpResult::Accepted { fd, .. } = got else { unreachable!() };
    ok(run_op(&m, 1, Op::Close { fd }), "close");

    // Races: accepts dropped the instant a connection arrives.
    let server = m.processes().get(1).unwrap();
    let baseline = server.open_descriptors();
    let mut peers = HashSet::new();
    for _ in 0..50 {
        let fut = m.submit_async(1, entry(1, Op::Accept { sockfd: lfd }, 0)).unwrap();
        let c = socket(&m, 2, V4, libc::SOCK_STREAM);
        let connect = m.submit(2, entry(2, Op::Connect { sockfd: c, addr }, 0)).unwrap();
        drop(fut);
        ok(m.wait_completion_timeout(2, connect, T).unwrap(), "connect");
        peers.insert(c);
    }
    eventually(T, "dropped accepts retired", || m.stats().pending == 0);
    // Connections no accept took wait in the backlog; take them now. How many is not known (each
    // raced accept either took its connection or not), so the drain ends once an accept has found
    // nothing for 200 ms: a bound, not an observation, and harmless when it ends early, since
    // connections left in the backlog hold no descriptor of the process.
    loop {
        let fut = m.submit_async(1, entry(1, Op::Accept { sockfd: lfd }, 0)).unwrap();
        let seq = fut.detach();
        let (done, more) = match m.wait_completion_timeout(1, seq, Duration::from_millis(200)) {
            Ok(done) => (done, true),
            Err(e) => {
                assert_eq!(e, IoUringError::Timeout { pid: 1, seq });
                m.cancel(1, seq).unwrap();
                // The accept may have taken a late connection just before the cancellation.
                (m.wait_completion_timeout(1, seq, T).unwrap(), false)
            }
        };
        match done.result {
            OpResult::Accepted { fd, .. } => {
                ok(run_op(&m, 1, Op::Close { fd }), "close");
            }
            _ => assert!(done.status.is_cancelled(), "drain accept: {:?}", done.status),
        }
        if !more {
            break;
        }
    }
    assert_eq!(server.open_descriptors(), baseline, "a raced accept leaked its connection");
}

/// The network policy, both outcomes.
pub fn network_policy_enforced(make: MakeBackend) {
    let m = manager(make);
    let server = manager(make);
    server.set_policy(1, loopback_policy()).unwrap();
    let (_l, open_addr) = listener(&server, 1, V4);
    let (_l2, other_addr) = listener(&server, 1, V4);
    let only = |port: u16| Policy::default().allow_connect(V4, port);
    m.set_policy(1, only(open_addr.port())).unwrap();
    let s = socket(&m, 1, V4, libc::SOCK_STREAM);
    let denied = run_op(&m, 1, Op::Connect { sockfd: s, addr: other_addr });
    assert_eq!(denied.errno(), Some(errno::EACCES), "{:?}", denied.status);
    ok(run_op(&m, 1, Op::Connect { sockfd: s, addr: open_addr }), "allowed connect");
    // Bind and listen are separate permissions.
    let b = socket(&m, 1, V4, libc::SOCK_STREAM);
    let done = run_op(&m, 1, Op::Bind { sockfd: b, addr: SocketAddr::new(V4, 0) });
    assert_eq!(done.errno(), Some(errno::EACCES));
    m.set_policy(2, Policy::default().allow_bind(V4, ..)).unwrap();
    let (b, _) = bound(&m, 2, V4, libc::SOCK_STREAM);
    assert_eq!(run_op(&m, 2, Op::Listen { sockfd: b, backlog: 1 }).errno(), Some(errno::EACCES));
    let any =
        run_op(&m, 2, Op::Bind { sockfd: socket(&m, 2, V4, libc::SOCK_STREAM), addr: "0.0.0.0:0".parse().unwrap() });
    assert_eq!(any.errno(), Some(errno::EACCES), "binding 0.0.0.0 when only 127.0.0.1 is allowed");
    // UDP destinations follow the connect rules; a v4-mapped v6 address is no way round them.
    let (u, _) = bound(&m, 2, V4, libc::SOCK_DGRAM);
    let done = run_op(&m, 2, Op::SendTo { sockfd: u, data: vec![1], addr: open_addr, flags: 0 });
    assert_eq!(done.errno(), Some(errno::EACCES));
    m.set_policy(3, Policy::default().allow_connect("::/0".parse::<IpNet>().unwrap(), ..)).unwrap();
    let v6 = socket(&m, 3, V6, libc::SOCK_STREAM);
    let mapped: SocketAddr = format!("[::ffff:127.0.0.1]:{}", open_addr.port()).parse().unwrap();
    assert_eq!(run_op(&m, 3, Op::Connect { sockfd: v6, addr: mapped }).errno(), Some(errno::EACCES));
    // A pid with no network policy at all cannot even make a socket.
    let done = run_op(&m, 4, Op::Socket { domain: libc::AF_INET, ty: libc::SOCK_DGRAM, protocol: 0 });
    assert_eq!(done.errno(), Some(errno::EACCES));
}

/// Bad socket operations are clear errors.
pub fn bad_socket_ops(make: MakeBackend) {
    let m = manager(make);
    let dir = tempfile::tempdir().unwrap();
    m.set_policy(1, loopback_policy()).unwrap();
    let unix = run_op(&m, 1, Op::Socket { domain: libc::AF_UNIX, ty: libc::SOCK_STREAM, protocol: 0 });
    assert_eq!(unix.errno(), Some(errno::EAFNOSUPPORT));
    let raw = run_op(&m, 1, Op::Socket { domain: libc::AF_INET, ty: libc::SOCK_RAW, protocol: 0 });
    assert_eq!(raw.errno(), Some(errno::EINVAL));
    let neg = run_op(&m, 1, Op::Socket { domain: libc::AF_INET, ty: libc::SOCK_STREAM, protocol: -1 });
    assert_eq!(neg.errno(), Some(errno::EINVAL));
    let s = socket(&m, 1, V4, libc::SOCK_STREAM | libc::SOCK_NONBLOCK);
    assert_eq!(
        run_op(&m, 1, Op::Accept { sockfd: s }).errno(),
        Some(errno::EINVAL),
        "accept on a socket not listening"
    );
    assert_eq!(run_op(&m, 1, Op::Recv { sockfd: 99, size: 1, flags: 0 }).errno(), Some(errno::EBADF));
    m.set_policy(2, Policy::rooted(dir.path()).read_write().allow_connect(V4, ..)).unwrap();
    let OpResult::Fd(file) = ok(run_op(&m, 2, Op::open("f", O_RDWR | O_CREAT)), "open") else { panic!() };
    assert_eq!(run_op(&m, 2, Op::Recv { sockfd: file, size: 1, flags: 0 }).errno(), Some(errno::ENOTSOCK));
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    assert_eq!(run_op(&m, 2, Op::Connect { sockfd: file, addr }).errno(), Some(errno::ENOTSOCK));
    assert!(denied_big_recv(&m, s));
}

/// `PeerAddr` names the other end of a connection (each side's is the other's `LocalAddr`);
/// `Shutdown` with `SHUT_WR` makes the peer read end of file while the other direction still
/// carries data. An unconnected socket has no peer (`ENOTCONN`); a file is no socket
/// (`ENOTSOCK`); a `how` other than 0, 1 or 2 is `EINVAL`.
pub fn peer_address_and_shutdown(make: MakeBackend) {
    let m = manager(make);
    m.set_policy(1, loopback_policy()).unwrap();
    let (s, c) = connect_pairs(&m, 1, 1, V4, 1)[0];
    let addr = |op: Op| match ok(run_op(&m, 1, op), "address") {
        OpResult::Addr(a) => a,
        other => panic!("{other:?}"),
    };
    assert_eq!(addr(Op::PeerAddr { sockfd: c }), addr(Op::LocalAddr { sockfd: s }));
    assert_eq!(addr(Op::PeerAddr { sockfd: s }), addr(Op::LocalAddr { sockfd: c }));
    ok(run_op(&m, 1, Op::Shutdown { sockfd: c, how: libc::SHUT_WR }), "shutdown");
    assert_eq!(run_op(&m, 1, Op::Recv { sockfd: s, size: 16, flags: 0 }).result, OpResult::Bytes(Vec::new()), "EOF");
    send_all(&m, 1, s, b"still open");
    assert_eq!(recv_exact(&m, 1, c, 10), b"still open");
    let bad = run_op(&m, 1, Op::Shutdown { sockfd: c, how: 3 });
    assert_eq!(bad.errno(), Some(errno::EINVAL), "{:?}", bad.status);
    let lone = socket(&m, 1, V4, libc::SOCK_STREAM);
    assert_eq!(run_op(&m, 1, Op::PeerAddr { sockfd: lone }).errno(), Some(errno::ENOTCONN));
    assert_eq!(run_op(&m, 1, Op::PeerAddr { sockfd: 99 }).errno(), Some(errno::EBADF));
    let dir = tempfile::tempdir().unwrap();
    m.set_policy(2, Policy::rooted(dir.path()).read_write()).unwrap();
    let OpResult::Fd(file) = ok(run_op(&m, 2, Op::open("f", O_RDWR | O_CREAT)), "open") else { panic!() };
    assert_eq!(run_op(&m, 2, Op::PeerAddr { sockfd: file }).errno(), Some(errno::ENOTSOCK));
    assert_eq!(run_op(&m, 2, Op::Shutdown { sockfd: file, how: 2 }).errno(), Some(errno::ENOTSOCK));
}

fn denied_big_recv(m: &IoUringManager, s: i32) -> bool {
    run_op(m, 1, Op::Recv { sockfd: s, size: usize::MAX, flags: 0 }).errno() == Some(errno::EINVAL)
}

/// Every socket the crate makes for a process, listening, connecting or accepted, is
/// close-on-exec in the kernel, even when the caller asked for none of `SOCK_CLOEXEC`.
pub fn sockets_are_close_on_exec(make: MakeBackend) {
    use crate::support::{is_close_on_exec, kernel_fd_numbers_of_socket, tcp_socket_inode};
    let m = manager(make);
    m.set_policy(1, loopback_policy()).unwrap();
    let ips: Vec<IpAddr> = if has_ipv6_loopback() { vec![V4, V6] } else { vec![V4] };
    let local = |fd: i32| match ok(run_op(&m, 1, Op::LocalAddr { sockfd: fd }), "getsockname") {
        OpResult::Addr(a) => a,
        other => panic!("getsockname gave {other:?}"),
    };
    for ip in ips {
        let (lfd, addr) = listener(&m, 1, ip);
        // An accept waiting before its connection arrives (io_uring hands it to the kernel), then
        // one that finds its connection already queued (taken at once, without waiting).
        let parked = m.submit(1, entry(1, Op::Accept { sockfd: lfd }, 0)).unwrap();
        let c1 = socket(&m, 1, ip, libc::SOCK_STREAM);
        ok(run_op(&m, 1, Op::Connect { sockfd: c1, addr }), "connect");
        let OpResult::Accepted { fd: s1, peer: p1 } = ok(m.wait_completion_timeout(1, parked, T).unwrap(), "accept")
        else {
            panic!()
        };
        let c2 = socket(&m, 1, ip, libc::SOCK_STREAM);
        ok(run_op(&m, 1, Op::Connect { sockfd: c2, addr }), "connect");
        let OpResult::Accepted { fd: s2, peer: p2 } = ok(run_op(&m, 1, Op::Accept { sockfd: lfd }), "accept") else {
            panic!()
        };
        let (a1, a2) = (local(c1), local(c2));
        assert_eq!((p1, p2), (a1, a2));
        for (what, local, remote) in [
            ("listening", addr, None),
            ("connecting", a1, Some(addr)),
            ("connecting", a2, Some(addr)),
            ("accepted while waiting", addr, Some(a1)),
            ("accepted at once", addr, Some(a2)),
        ] {
            let inode = tcp_socket_inode(local, remote).unwrap_or_else(|| panic!("{what} socket {local} not found"));
            let kernel = kernel_fd_numbers_of_socket(inode);
            assert_eq!(kernel.len(), 1, "{what} socket {local}: kernel descriptors {kernel:?}");
            assert!(is_close_on_exec(kernel[0]), "{what} socket {local} is not close-on-exec");
        }
        for fd in [s1, s2, c1, c2, lfd] {
            ok(run_op(&m, 1, Op::Close { fd }), "close");
        }
    }
}
