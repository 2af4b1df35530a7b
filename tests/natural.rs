//! The first things a new user writes, as issue 20 lists them: each compiles and works in a
//! function returning `io::Result`.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use ai_os_kernel::sandbox::Policy;
use ai_os_kernel::syscalls::net_flags::{AF_INET, SHUT_WR, SOCK_STREAM};
use ai_os_kernel::syscalls::open_flags::*;
use ai_os_kernel::syscalls::{IoUringManager, SyscallOpType as Op};
use futures::executor::block_on;

fn attempts() -> io::Result<()> {
    let dir = tempfile::tempdir()?;
    let m = IoUringManager::new();
    let pid = 1;
    // Policies from plain addresses and half-open port ranges; `?` on the manager's errors.
    let policy = Policy::rooted(dir.path()).read_write().allow_bind(Ipv4Addr::LOCALHOST, 0..1).allow_listen();
    m.set_policy(pid, policy)?;
    // An operation alone, a `PathBuf`, and the result taken as the value it holds.
    let path: PathBuf = "notes.txt".into();
    let fd: i32 = block_on(m.submit_async(pid, Op::open(&path, O_RDWR | O_CREAT))?).into_result()?.try_into()?;
    let write = Op::WriteAt { fd, offset: 0, data: b"hello".to_vec() };
    let wrote: usize = block_on(m.submit_async(pid, write)?).into_result()?.try_into()?;
    assert_eq!(wrote, 5);
    let seq = m.submit(pid, Op::ReadAt { fd, offset: 0, size: 16 })?;
    let read: Vec<u8> = m.wait_completion(pid, seq)?.into_result()?.try_into()?;
    assert_eq!(read, b"hello");
    assert_eq!(std::fs::read(dir.path().join(&path))?, b"hello");
    // A failure is its errno.
    let missing = block_on(m.submit_async(pid, Op::open("missing", O_RDONLY))?).into_result();
    assert_eq!(missing.unwrap_err().kind(), io::ErrorKind::NotFound);
    // Socket constants, no libc.
    let socket = Op::Socket { domain: AF_INET, ty: SOCK_STREAM, protocol: 0 };
    let s: i32 = block_on(m.submit_async(pid, socket)?).into_result()?.try_into()?;
    let bind = Op::Bind { sockfd: s, addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)) };
    block_on(m.submit_async(pid, bind)?).into_result()?;
    let bound: SocketAddr = block_on(m.submit_async(pid, Op::LocalAddr { sockfd: s })?).into_result()?.try_into()?;
    assert_ne!(bound.port(), 0);
    let shut = block_on(m.submit_async(pid, Op::Shutdown { sockfd: s, how: SHUT_WR })?).into_result();
    assert_eq!(shut.unwrap_err().raw_os_error(), Some(libc::ENOTCONN));
    // A batch with one future per operation: nothing to match by user_data.
    let futures = m.submit_batch_async(pid, (0..3).map(|i| Op::ReadAt { fd, offset: i, size: 1 }))?;
    let bytes: Vec<Vec<u8>> = block_on(futures::future::join_all(futures))
        .into_iter()
        .map(|d| d.into_result()?.try_into().map_err(io::Error::from))
        .collect::<io::Result<_>>()?;
    assert_eq!(bytes, [b"h".to_vec(), b"e".to_vec(), b"l".to_vec()]);
    // A full ring is the manager's error as an io::Error that says to wait.
    m.create_ring(2, Some(1), Some(1))?;
    m.submit(2, Op::Timeout { duration: std::time::Duration::from_secs(3600) })?;
    let full: io::Error = m.submit(2, Op::Nop).unwrap_err().into();
    assert_eq!(full.kind(), io::ErrorKind::ResourceBusy);
    m.destroy_ring(2)?;
    Ok(())
}

#[test]
fn the_first_attempts_compile_and_work() {
    attempts().unwrap();
}
