//! A tenant's handles (`Tenant`, `File`, `TcpListener`, `TcpStream`, `UdpSocket`), awaited
//! under the runtime of the crate running the suite: what they do on disk and on loopback,
//! their errors as `io::Error`s, the async I/O traits, and closing on drop.

use std::io;
use std::net::{Ipv4Addr, Shutdown, SocketAddr};
use std::time::Duration;

use ai_os_kernel::sandbox::Policy;
use ai_os_kernel::syscalls::{EntryKind, IoUringManager};
use ai_os_kernel::tenant::{File, OpenOptions};
use futures::StreamExt;
use futures::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::manager;
use crate::support::{MakeBackend, eventually};

/// The descriptors `pid` holds, once the closes its dropped handles submitted have run.
fn settles_at(m: &IoUringManager, pid: u32, open: usize) {
    let now = || m.processes().get(pid).map_or(0, |p| p.open_descriptors());
    eventually(Duration::from_secs(10), "dropped handles closed their descriptors", || now() == open);
}

/// Files and paths through the handles, checked on disk; errors keep their kinds.
/// A file handle's reads and writes with a tenant's registered buffers: in place, at offsets,
/// the buffer back each time (with a refusal too), home to its pool when dropped.
pub async fn handles_fixed_buffers(make: MakeBackend) {
    let m = manager(make);
    let dir = tempfile::tempdir().unwrap();
    m.set_policy(1, Policy::rooted(dir.path()).read_write()).unwrap();
    let t = m.tenant(1);
    let pool = t.register_buffers(2, 32).unwrap();
    let f = t.open("fixed.txt", OpenOptions::new().read(true).write(true).create(true)).await.unwrap();
    let mut out = pool.take().unwrap();
    out.extend_from_slice(b"registered bytes");
    let (n, out) = f.write_fixed_at(out, 4).await;
    assert_eq!((n.unwrap(), &out[..]), (16, &b"registered bytes"[..]));
    assert_eq!(std::fs::read(dir.path().join("fixed.txt")).unwrap(), b"\0\0\0\0registered bytes");
    let mut into = pool.take().unwrap();
    into.extend_from_slice(b">");
    let at = into.as_ptr() as usize;
    let (n, into) = f.read_fixed_at(into, 15).await;
    assert_eq!((n.unwrap(), &into[..], into.as_ptr() as usize), (5, &b">bytes"[..], at), "in place");
    // A refusal (a descriptor closed under it) gives the buffer back as it was.
    let closed = t.create("other.txt").await.unwrap();
    let fd = closed.fd();
    m.submit(1, ai_os_kernel::syscalls::SyscallOpType::Close { fd })
        .map(|seq| m.wait_completion(1, seq))
        .unwrap()
        .unwrap();
    let (n, into) = closed.read_fixed_at(into, 0).await;
    assert_eq!(n.unwrap_err().raw_os_error(), Some(libc::EBADF));
    assert_eq!(&into[..], b">bytes");
    drop((out, into));
    assert_eq!(pool.available(), 2, "both went home");
}

pub async fn handles_files(make: MakeBackend) {
    let m = manager(make);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    m.set_policy(1, Policy::rooted(root).read_write()).unwrap();
    let t = m.tenant(1);
    t.write("a.txt", b"hello world").await.unwrap();
    assert_eq!(std::fs::read(root.join("a.txt")).unwrap(), b"hello world");
    assert_eq!(t.read("/a.txt").await.unwrap(), b"hello world");
    let f = t.open("a.txt", OpenOptions::new().read(true).write(true)).await.unwrap();
    // Owned buffers: read into the spare room, handed back; write from any bytes.
    let (n, buf) = f.read_at(Vec::with_capacity(5), 6).await;
    assert_eq!((n.unwrap(), &buf[..]), (5, &b"world"[..]));
    let (n, buf) = f.read_at(buf, 0).await;
    assert_eq!((n.unwrap(), buf.len()), (0, 5), "no spare room: nothing read");
    // Read where the buffer lies: the same allocation back, the bytes appended.
    let mut room = Vec::with_capacity(16);
    room.extend_from_slice(b">");
    let at = room.as_ptr() as usize;
    let (n, room) = f.read_at(room, 0).await;
    assert_eq!((n.unwrap(), &room[..], room.as_ptr() as usize), (11, &b">hello world"[..], at));
    // A ring too full to take the read gives the buffer back with its refusal.
    m.create_ring(2, Some(1), Some(1)).unwrap();
    m.set_policy(2, Policy::rooted(root)).unwrap();
    let full = File::open(&m.tenant(2), "a.txt").await.unwrap();
    let slow = m
        .submit(2, ai_os_kernel::syscalls::SyscallOpType::Timeout { duration: std::time::Duration::from_secs(60) })
        .unwrap();
    let mut kept = Vec::with_capacity(16);
    kept.extend_from_slice(b"kept");
    let (refused, kept) = full.read_at(kept, 0).await;
    assert_eq!(refused.unwrap_err().kind(), io::ErrorKind::ResourceBusy);
    assert_eq!(kept, b"kept");
    m.cancel(2, slow).unwrap();
    assert!(m.wait_completion(2, slow).unwrap().status.is_cancelled());
    drop(full);
    let (done, _) = f.write_all_at(b"HELLO", 0).await;
    done.unwrap();
    let (done, buf) = f.read_exact_at(Vec::with_capacity(11), 0).await;
    done.unwrap();
    assert_eq!(buf, b"HELLO world");
    let (short, buf) = f.read_exact_at(Vec::with_capacity(20), 0).await;
    assert_eq!(short.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    assert_eq!(buf, b"HELLO world", "what was read is kept");
    let (n, _) = f.write_at(vec![b'!'; 3], 11).await;
    assert_eq!(n.unwrap(), 3);
    let st = f.metadata().await.unwrap();
    assert_eq!((st.size, st.kind), (14, EntryKind::File));
    f.set_len(5).await.unwrap();
    f.sync_all().await.unwrap();
    f.sync_data().await.unwrap();
    assert_eq!(std::fs::read(root.join("a.txt")).unwrap(), b"HELLO");
    f.close().await.unwrap();
    // The async traits, at the file's position.
    let mut g = t.create("b.txt").await.unwrap();
    g.write_all(b"one two three").await.unwrap();
    g.flush().await.unwrap();
    drop(g);
    let mut g = File::open(&t, "b.txt").await.unwrap();
    let mut word = [0u8; 3];
    g.read_exact(&mut word).await.unwrap();
    assert_eq!(&word, b"one");
    assert_eq!(g.seek(io::SeekFrom::Current(1)).await.unwrap(), 4);
    let mut rest = Vec::new();
    g.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest, b"two three");
    assert_eq!(g.seek(io::SeekFrom::Start(0)).await.unwrap(), 0);
    let mut out = t.create("c.txt").await.unwrap();
    assert_eq!(futures::io::copy(&mut g, &mut out).await.unwrap(), 13);
    drop(out);
    assert_eq!(std::fs::read(root.join("c.txt")).unwrap(), b"one two three");
    // Copy in the kernel, of a file larger than one step of any buffer.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(root.join("big"), &big).unwrap();
    assert_eq!(t.copy("big", "big2").await.unwrap(), big.len() as u64);
    assert_eq!(std::fs::read(root.join("big2")).unwrap(), big);
    // Paths.
    t.create_dir("d").await.unwrap();
    t.rename("c.txt", "d/c.txt").await.unwrap();
    t.hard_link("d/c.txt", "d/c2.txt").await.unwrap();
    t.symlink("c.txt", "d/link").await.unwrap();
    assert_eq!(t.read_link("d/link").await.unwrap(), std::path::PathBuf::from("c.txt"));
    assert_eq!(t.metadata("d/link").await.unwrap().links, 2);
    assert_eq!(t.symlink_metadata("d/link").await.unwrap().kind, EntryKind::Symlink);
    let mut names: Vec<_> = t.read_dir("d").await.unwrap().into_iter().map(|e| e.name).collect();
    names.sort();
    assert_eq!(names, ["c.txt", "c2.txt", "link"]);
    for name in ["d/c.txt", "d/c2.txt", "d/link"] {
        t.remove_file(name).await.unwrap();
    }
    t.remove_dir("d").await.unwrap();
    // Errors, as io::Errors with their kinds.
    assert_eq!(t.read("missing").await.unwrap_err().kind(), io::ErrorKind::NotFound);
    let exists = t.open("a.txt", OpenOptions::new().write(true).create_new(true)).await.unwrap_err();
    assert_eq!(exists.kind(), io::ErrorKind::AlreadyExists);
    assert_eq!(t.read("../escape").await.unwrap_err().kind(), io::ErrorKind::PermissionDenied);
    assert_eq!(t.open("a.txt", &OpenOptions::new()).await.unwrap_err().kind(), io::ErrorKind::InvalidInput);
    let read_only = m.tenant(2);
    m.set_policy(2, Policy::rooted(root)).unwrap();
    assert_eq!(read_only.write("a.txt", b"x").await.unwrap_err().kind(), io::ErrorKind::PermissionDenied);
    assert_eq!(read_only.remove_file("a.txt").await.unwrap_err().kind(), io::ErrorKind::PermissionDenied);
    // Every handle dropped: every descriptor closed, without a wait in the drop.
    drop(g);
    settles_at(&m, 1, 0);
    settles_at(&m, 2, 0);
}

/// The async traits' ordering and failures: a write is taken whole and its failure is the next
/// flush's; a seek waits for the write before it; transfers larger than the policy's
/// per-operation limit are split, never refused; a close given up still closes; a handle
/// outliving its process never touches a later process of the same pid.
pub async fn handles_write_in_the_background(make: MakeBackend) {
    use futures::FutureExt;
    let m = manager(make);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    m.set_policy(1, Policy::rooted(root).read_write().max_io_bytes(64 << 10)).unwrap();
    let t = m.tenant(1);
    // Writes, then a seek, then a write: in that order on the file.
    let mut f = t.create("o.txt").await.unwrap();
    f.write_all(b"abc").await.unwrap();
    assert_eq!(f.seek(io::SeekFrom::Start(1)).await.unwrap(), 1);
    f.write_all(b"Z").await.unwrap();
    f.flush().await.unwrap();
    assert_eq!(std::fs::read(root.join("o.txt")).unwrap(), b"aZc");
    // A write's failure comes back from the flush.
    let mut read_only = File::open(&t, "o.txt").await.unwrap();
    assert_eq!(read_only.write(b"x").await.unwrap(), 1, "taken whole, written in the background");
    let failed = read_only.flush().await.unwrap_err();
    assert_eq!(failed.raw_os_error(), Some(libc::EBADF));
    assert!(read_only.flush().await.is_ok(), "reported once");
    // Larger than max_io_bytes (64 KiB): split, through the traits and the handles alike.
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 241) as u8).collect();
    let mut w = t.create("big").await.unwrap();
    w.write_all(&big).await.unwrap();
    w.close().await.unwrap();
    let mut r = File::open(&t, "big").await.unwrap();
    let mut back = Vec::new();
    r.read_to_end(&mut back).await.unwrap();
    assert!(back == big, "read back through the trait");
    assert!(t.read("big").await.unwrap() == big);
    assert_eq!(t.copy("big", "big2").await.unwrap(), big.len() as u64);
    assert!(std::fs::read(root.join("big2")).unwrap() == big);
    let (done, _) = r.write_all_at(&big, 0).await;
    assert_eq!(done.unwrap_err().raw_os_error(), Some(libc::EBADF), "read-only: refused by the kernel, not the limit");
    drop((f, read_only, r));
    settles_at(&m, 1, 0);
    // A close whose future is given up after its first poll still closes.
    let f = t.create("c").await.unwrap();
    let _ = f.close().now_or_never();
    settles_at(&m, 1, 0);
    // A handle that outlives its process: dropping it leaves the next process of the pid alone.
    let old = t.create("old").await.unwrap();
    m.destroy_ring(1).unwrap();
    m.set_policy(1, Policy::rooted(root).read_write()).unwrap();
    let new = t.open("o.txt", OpenOptions::new().read(true)).await.unwrap();
    assert_eq!(new.fd(), old.fd(), "the new process reuses the number");
    drop(old);
    let (read, buf) = new.read_at(Vec::with_capacity(3), 0).await;
    assert_eq!((read.unwrap(), &buf[..]), (3, &b"aZc"[..]), "the new process's descriptor is still open");
    drop(new);
    settles_at(&m, 1, 0);
}

/// Sockets through the handles on loopback: a TCP echo over the async traits, end of file
/// after a shutdown, addresses, incoming connections, UDP datagrams; closed on drop.
pub async fn handles_sockets(make: MakeBackend) {
    let m = manager(make);
    let lo = Ipv4Addr::LOCALHOST;
    m.set_policy(1, Policy::default().allow_bind(lo, ..).allow_connect(lo, ..).allow_listen()).unwrap();
    let t = m.tenant(1);
    let listener = t.tcp_listen((lo, 0)).await.unwrap();
    let addr = listener.local_addr();
    assert_ne!(addr.port(), 0);
    let mut client = t.tcp_connect(addr).await.unwrap();
    let (mut server, peer) = listener.accept().await.unwrap();
    assert_eq!(client.local_addr().await.unwrap(), peer);
    assert_eq!(server.peer_addr().await.unwrap(), peer);
    client.write_all(b"ping").await.unwrap();
    let mut got = [0u8; 4];
    server.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"ping");
    let (sent, _) = server.send_all(b"pong!").await;
    sent.unwrap();
    let (n, buf) = client.recv(Vec::with_capacity(16)).await;
    assert!(n.unwrap() >= 1 && b"pong!".starts_with(&buf));
    // The trait's close shuts the writing side: the peer reads the rest, then end of file.
    client.write_all(b"bye").await.unwrap();
    client.close().await.unwrap();
    let mut rest = Vec::new();
    server.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest, b"bye");
    server.shutdown_how(Shutdown::Both).await.unwrap();
    let mut after = Vec::new();
    client.read_to_end(&mut after).await.unwrap();
    assert!(b"pong!".ends_with(&after), "the rest of what the server sent, then end of file");
    drop((server, client));
    // Incoming connections as a stream.
    let mut incoming = listener.incoming();
    let dial = async {
        let a = t.tcp_connect(addr).await.unwrap();
        let b = t.tcp_connect(addr).await.unwrap();
        (a, b)
    };
    let ((a, b), (x, y)) = futures::join!(dial, async {
        let x = incoming.next().await.unwrap().unwrap();
        let y = incoming.next().await.unwrap().unwrap();
        (x, y)
    });
    let mut peers = [x.peer_addr().await.unwrap(), y.peer_addr().await.unwrap()];
    let mut locals = [a.local_addr().await.unwrap(), b.local_addr().await.unwrap()];
    peers.sort();
    locals.sort();
    assert_eq!(peers, locals);
    drop((a, b, x, y, incoming));
    // Refusals and errors keep their kinds.
    let closed: SocketAddr = {
        let gone = t.tcp_listen((lo, 0)).await.unwrap();
        gone.local_addr()
    };
    settles_at(&m, 1, 1);
    assert_eq!(t.tcp_connect(closed).await.unwrap_err().kind(), io::ErrorKind::ConnectionRefused);
    let far = t.tcp_connect((Ipv4Addr::new(10, 1, 2, 3), 80)).await.unwrap_err();
    assert_eq!(far.kind(), io::ErrorKind::PermissionDenied, "the policy allows loopback only");
    assert_eq!(t.tcp_connect("not an address").await.unwrap_err().kind(), io::ErrorKind::InvalidInput);
    // UDP.
    let u1 = t.udp_bind("127.0.0.1:0").await.unwrap();
    let u2 = t.udp_bind((lo, 0)).await.unwrap();
    let to = u2.local_addr().await.unwrap();
    let (sent, _) = u1.send_to(b"datagram", to).await;
    assert_eq!(sent.unwrap(), 8);
    let (got, buf) = u2.recv_from(Vec::with_capacity(64)).await;
    assert_eq!(got.unwrap(), (8, u1.local_addr().await.unwrap()));
    assert_eq!(buf, b"datagram");
    u1.close().await.unwrap();
    drop((u2, listener));
    settles_at(&m, 1, 0);
}
