//! A user's guide: the common tasks through a tenant's handles ([`tenant`](crate::tenant)),
//! then what each costs. Every example here runs as a test.
//!
//! # A tenant
//!
//! A host gives each tenant a pid and a [`Policy`](crate::sandbox::Policy), then works through
//! its [`Tenant`](crate::tenant::Tenant) handle. Everything a tenant does is checked against
//! its policy; without one it may do nothing.
//!
//! ```
//! use ai_os_kernel::sandbox::Policy;
//! use ai_os_kernel::syscalls::IoUringManager;
//!
//! # fn main() -> std::io::Result<()> {
//! let dir = tempfile::tempdir()?;
//! let manager = IoUringManager::new();
//! manager.set_policy(1, Policy::rooted(dir.path()).read_write())?;
//! let tenant = manager.tenant(1);
//! # let _ = tenant;
//! # Ok(())
//! # }
//! ```
//!
//! # Read a whole file, write one, copy one
//!
//! ```
//! # use ai_os_kernel::sandbox::Policy;
//! # use ai_os_kernel::syscalls::IoUringManager;
//! # fn main() -> std::io::Result<()> {
//! # let dir = tempfile::tempdir()?;
//! # let manager = IoUringManager::new();
//! # manager.set_policy(1, Policy::rooted(dir.path()).read_write())?;
//! let tenant = manager.tenant(1);
//! futures::executor::block_on(async {
//!     tenant.write("report.txt", b"all good").await?;
//!     assert_eq!(tenant.read("report.txt").await?, b"all good");
//!     // In the kernel (copy_file_range): no byte passes through this process.
//!     assert_eq!(tenant.copy("report.txt", "backup.txt").await?, 8);
//!     std::io::Result::Ok(())
//! })
//! # }
//! ```
//!
//! A [`File`](crate::tenant::File) reads and writes at offsets with owned buffers: the buffer
//! comes back beside the result, so one buffer serves a whole loop.
//!
//! ```
//! # use ai_os_kernel::sandbox::Policy;
//! # use ai_os_kernel::syscalls::IoUringManager;
//! use ai_os_kernel::tenant::OpenOptions;
//! # fn main() -> std::io::Result<()> {
//! # let dir = tempfile::tempdir()?;
//! # let manager = IoUringManager::new();
//! # manager.set_policy(1, Policy::rooted(dir.path()).read_write())?;
//! # let tenant = manager.tenant(1);
//! futures::executor::block_on(async {
//!     let file = tenant.open("log", OpenOptions::new().read(true).write(true).create(true)).await?;
//!     let (written, _) = file.write_all_at(b"first line\n", 0).await;
//!     written?;
//!     let mut buf = Vec::with_capacity(4096);
//!     let mut at = 0;
//!     loop {
//!         buf.clear();
//!         let (read, back) = file.read_at(buf, at).await;
//!         buf = back;
//!         match read? {
//!             0 => break,
//!             n => at += n as u64,
//!         }
//!     }
//!     assert_eq!(at, 11);
//!     file.sync_all().await?;
//!     std::io::Result::Ok(())
//! })
//! # }
//! ```
//!
//! Underneath, the enum API has the same owned buffers: `ReadInto` reads into the caller's
//! `Vec` and `WriteFrom` writes one where it lies, and the completion gives the buffer back
//! ([`OpResult::Buf`](crate::syscalls::OpResult::Buf)) however the operation ends, an error
//! or a cancellation included.
//!
//! ```
//! # use ai_os_kernel::sandbox::Policy;
//! use ai_os_kernel::syscalls::{IoUringManager, OpResult, SyscallOpType, open_flags::*};
//! # fn main() -> std::io::Result<()> {
//! # let dir = tempfile::tempdir()?;
//! # let manager = IoUringManager::new();
//! # manager.set_policy(1, Policy::rooted(dir.path()).read_write())?;
//! let seq = manager.submit(1, SyscallOpType::open("data", O_RDWR | O_CREAT))?;
//! let fd: i32 = manager.wait_completion(1, seq)?.into_result()?.try_into()?;
//! futures::executor::block_on(async {
//!     let write = SyscallOpType::write_from(fd, Some(0), b"0123456789".to_vec());
//!     let (wrote, _) = manager.submit_async(1, write)?.await.into_buf();
//!     assert_eq!(wrote?, 10);
//!     let buf = Vec::with_capacity(4096);
//!     let (read, buf) = manager.submit_async(1, SyscallOpType::read_into(fd, Some(2), buf))?.await.into_buf();
//!     assert_eq!((read?, &buf[..]), (8, &b"23456789"[..]));
//!     // A bad descriptor fails, and the buffer still comes back.
//!     let failed = manager.submit_async(1, SyscallOpType::read_into(99, Some(0), buf))?.await;
//!     assert!(matches!(failed.result, OpResult::Buf { count: 0, ref buf } if buf == b"23456789"));
//!     std::io::Result::Ok(())
//! })
//! # }
//! ```
//!
//! A tenant that reads and writes the same few buffers over and over can register them: a
//! pool ([`register_buffers`](crate::syscalls::IoUringManager::register_buffers)) whose memory
//! counts against its buffer budget, and whose buffers ([`FixedBuf`](crate::syscalls::FixedBuf))
//! `ReadFixed` and `WriteFixed` use where they lie. On io_uring the kernel ring registers the pool
//! once and looks up no pages per request (`READ_FIXED`, `WRITE_FIXED`); elsewhere they are plain
//! reads and writes of the same memory. A buffer goes back to its pool when dropped.
//!
//! ```
//! # use ai_os_kernel::sandbox::Policy;
//! # use ai_os_kernel::syscalls::IoUringManager;
//! # fn main() -> std::io::Result<()> {
//! # let dir = tempfile::tempdir()?;
//! # let manager = IoUringManager::new();
//! # manager.set_policy(1, Policy::rooted(dir.path()).read_write())?;
//! let tenant = manager.tenant(1);
//! let pool = tenant.register_buffers(8, 4096)?;
//! futures::executor::block_on(async {
//!     let file = tenant.create("log").await?;
//!     let mut buf = pool.take().expect("a free buffer");
//!     buf.extend_from_slice(b"registered");
//!     let (wrote, buf) = file.write_fixed_at(buf, 0).await;
//!     assert_eq!((wrote?, pool.available()), (10, 7));
//!     drop(buf); // home to the pool
//!     assert_eq!(pool.available(), 8);
//!     std::io::Result::Ok(())
//! })
//! # }
//! ```
//!
//! # An async TCP server, under tokio
//!
//! With the `tokio` feature a [`TcpStream`](crate::tenant::TcpStream) is a
//! `tokio::io::AsyncRead + AsyncWrite`, so tokio's utilities, codecs and hyper work over it
//! (`examples/tenant_http.rs` serves a tenant's directory with hyper).
//!
//! ```
//! # #[cfg(feature = "tokio")]
//! # fn main() -> std::io::Result<()> {
//! use ai_os_kernel::sandbox::Policy;
//! use ai_os_kernel::syscalls::IoUringManager;
//! use std::net::Ipv4Addr;
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! let manager = IoUringManager::new();
//! let lo = Ipv4Addr::LOCALHOST;
//! manager.set_policy(1, Policy::default().allow_bind(lo, ..).allow_connect(lo, ..).allow_listen())?;
//! let tenant = manager.tenant(1);
//! tokio::runtime::Runtime::new()?.block_on(async {
//!     let listener = tenant.tcp_listen((lo, 0)).await?;
//!     let addr = listener.local_addr();
//!     tokio::spawn(async move {
//!         while let Ok((mut stream, _)) = listener.accept().await {
//!             tokio::spawn(async move {
//!                 let (mut reader, mut writer) = tokio::io::split(&mut stream);
//!                 let _ = tokio::io::copy(&mut reader, &mut writer).await;
//!             });
//!         }
//!     });
//!     let mut client = tenant.tcp_connect(addr).await?;
//!     client.write_all(b"echo me").await?;
//!     let mut back = [0u8; 7];
//!     client.read_exact(&mut back).await?;
//!     assert_eq!(&back, b"echo me");
//!     std::io::Result::Ok(())
//! })
//! # }
//! # #[cfg(not(feature = "tokio"))]
//! # fn main() {}
//! ```
//!
//! # The same, under smol
//!
//! The handles implement `futures_io::AsyncRead + AsyncWrite` on every backend, so smol's and
//! the `futures` crate's utilities take them as they are.
//!
//! ```
//! # fn main() -> std::io::Result<()> {
//! use ai_os_kernel::sandbox::Policy;
//! use ai_os_kernel::syscalls::IoUringManager;
//! use futures::io::{AsyncReadExt, AsyncWriteExt};
//! use std::net::Ipv4Addr;
//!
//! let manager = IoUringManager::new();
//! let lo = Ipv4Addr::LOCALHOST;
//! manager.set_policy(1, Policy::default().allow_bind(lo, ..).allow_connect(lo, ..).allow_listen())?;
//! let tenant = manager.tenant(1);
//! smol::block_on(async {
//!     let listener = tenant.tcp_listen((lo, 0)).await?;
//!     let addr = listener.local_addr();
//!     let server = smol::spawn(async move {
//!         let (stream, _) = listener.accept().await?;
//!         let (reader, mut writer) = stream.split();
//!         futures::io::copy(reader, &mut writer).await
//!     });
//!     let mut client = tenant.tcp_connect(addr).await?;
//!     client.write_all(b"echo me").await?;
//!     client.close().await?; // shuts writing: the server's copy ends
//!     let mut back = Vec::new();
//!     client.read_to_end(&mut back).await?;
//!     assert_eq!(back, b"echo me");
//!     assert_eq!(server.await?, 7);
//!     std::io::Result::Ok(())
//! })
//! # }
//! ```
//!
//! # Every connection from one accept
//!
//! [`TcpListener::incoming`](crate::tenant::TcpListener::incoming) is a `Stream` of
//! connections that one multishot accept takes, however many come
//! ([`SyscallOpType::AcceptMulti`](crate::syscalls::SyscallOpType::AcceptMulti), one kernel
//! request on io_uring). Below the handles,
//! [`submit_multishot`](crate::syscalls::IoUringManager::submit_multishot) gives its results one
//! by one, then its completion; the same call takes a
//! [`RecvMulti`](crate::syscalls::SyscallOpType::RecvMulti), whose results are a connection's
//! bytes as they come (into a ring of provided buffers on io_uring), which
//! [`TcpStream::chunks`](crate::tenant::TcpStream::chunks) turns into a `Stream` of chunks.
//!
//! ```
//! # fn main() -> std::io::Result<()> {
//! use ai_os_kernel::sandbox::Policy;
//! use ai_os_kernel::syscalls::IoUringManager;
//! use futures::StreamExt;
//! use futures::io::{AsyncReadExt, AsyncWriteExt};
//! use std::net::Ipv4Addr;
//!
//! let manager = IoUringManager::new();
//! let lo = Ipv4Addr::LOCALHOST;
//! manager.set_policy(1, Policy::default().allow_bind(lo, ..).allow_connect(lo, ..).allow_listen())?;
//! let tenant = manager.tenant(1);
//! futures::executor::block_on(async {
//!     let listener = tenant.tcp_listen((lo, 0)).await?;
//!     let mut clients = Vec::new();
//!     for _ in 0..3 {
//!         clients.push(tenant.tcp_connect(listener.local_addr()).await?);
//!     }
//!     let mut incoming = listener.incoming();
//!     let mut servers = Vec::new();
//!     for _ in 0..clients.len() {
//!         let mut server = incoming.next().await.expect("it never ends")?;
//!         server.write_all(b"hi").await?;
//!         server.flush().await?; // written, not only taken
//!         servers.push(server);
//!     }
//!     for client in &mut clients {
//!         let mut hi = [0u8; 2];
//!         client.read_exact(&mut hi).await?;
//!         assert_eq!(&hi, b"hi");
//!     }
//!     std::io::Result::Ok(())
//! })
//! # }
//! ```
//!
//! # The fast path: a drive task per thread
//!
//! By default each submission enters the kernel on its own, and completions that come later
//! are taken by a thread of the backend's, which wakes the waiting task from there. A server
//! that runs its connections on one thread's executor does better with the manager's
//! [`drive`](crate::syscalls::IoUringManager::drive) task spawned on that thread: on io_uring
//! the thread gets a kernel ring of its own, everything its tasks submit in one turn of the
//! executor reaches the kernel in one system call while any of them waits (a connection's
//! receive), and completions are taken on the thread itself when its reactor reports them.
//! Threads that each run a drive task share no ring. It changes no result: without the task,
//! or if it stops being polled, everything completes as before (BENCHMARKS.md has what it
//! saves: about 4 system calls per round trip of one connection where there were 7 to 10, and
//! 0.26 with sixteen where there were 5 to 7).
//!
//! ```
//! # #[cfg(feature = "tokio")]
//! # fn main() -> std::io::Result<()> {
//! use ai_os_kernel::sandbox::Policy;
//! use ai_os_kernel::syscalls::IoUringManager;
//! use std::net::Ipv4Addr;
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! let manager = IoUringManager::new();
//! let lo = Ipv4Addr::LOCALHOST;
//! manager.set_policy(1, Policy::default().allow_bind(lo, ..).allow_connect(lo, ..).allow_listen())?;
//! let tenant = manager.tenant(1);
//! let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
//! let local = tokio::task::LocalSet::new();
//! local.spawn_local(manager.drive());
//! local.block_on(&rt, async {
//!     let listener = tenant.tcp_listen((lo, 0)).await?;
//!     let addr = listener.local_addr();
//!     tokio::spawn(async move {
//!         let (mut stream, _) = listener.accept().await?;
//!         let mut buf = [0u8; 64];
//!         while stream.read_exact(&mut buf).await.is_ok() {
//!             stream.write_all(&buf).await?;
//!         }
//!         std::io::Result::Ok(())
//!     });
//!     let mut client = tenant.tcp_connect(addr).await?;
//!     for _ in 0..100 {
//!         client.write_all(&[7; 64]).await?;
//!         let mut back = [0u8; 64];
//!         client.read_exact(&mut back).await?;
//!         assert_eq!(back, [7; 64]);
//!     }
//!     std::io::Result::Ok(())
//! })
//! # }
//! # #[cfg(not(feature = "tokio"))]
//! # fn main() {}
//! ```
//!
//! With no other runtime, [`IoUringManager::block_on`](crate::syscalls::IoUringManager::block_on)
//! does the same and parks the thread in the kernel between ticks, in the `io_uring_enter` that
//! submits the tick's operations: two system calls per round trip of one connection, as monoio
//! and compio pay. Join the tasks inside the future it runs:
//!
//! ```
//! use ai_os_kernel::sandbox::Policy;
//! use ai_os_kernel::syscalls::IoUringManager;
//! use futures::io::{AsyncReadExt, AsyncWriteExt};
//! use std::net::Ipv4Addr;
//!
//! # fn main() -> std::io::Result<()> {
//! let manager = IoUringManager::new();
//! let lo = Ipv4Addr::LOCALHOST;
//! manager.set_policy(1, Policy::default().allow_bind(lo, ..).allow_connect(lo, ..).allow_listen())?;
//! let tenant = manager.tenant(1);
//! manager.block_on(async {
//!     let listener = tenant.tcp_listen((lo, 0)).await?;
//!     let (client, accepted) = futures::join!(tenant.tcp_connect(listener.local_addr()), listener.accept());
//!     let (mut client, (mut server, _)) = (client?, accepted?);
//!     let echo = async {
//!         let mut buf = [0u8; 5];
//!         server.read_exact(&mut buf).await?;
//!         server.write_all(&buf).await
//!     };
//!     let ask = async {
//!         client.write_all(b"hello").await?;
//!         let mut back = [0u8; 5];
//!         client.read_exact(&mut back).await?;
//!         std::io::Result::Ok(back)
//!     };
//!     let (echoed, back) = futures::join!(echo, ask);
//!     echoed?;
//!     assert_eq!(&back?, b"hello");
//!     std::io::Result::Ok(())
//! })
//! # }
//! ```
//!
//! # Handling errors
//!
//! Every handle returns `io::Result`. A failed operation's error is its errno
//! ([`io::Error::raw_os_error`](std::io::Error::raw_os_error)), so its kind is the one `std`
//! would give: a policy refusal is `PermissionDenied` (`EACCES`), a missing file `NotFound`, a
//! deadline `TimedOut`. The manager's own refusals convert too: a full ring is `ResourceBusy`
//! (take completions, then try again), a missing ring `InvalidInput`. With the SPEC's enum API,
//! [`into_result`](crate::syscalls::SyscallCompletionEntry::into_result) and `TryFrom` give the
//! same:
//!
//! ```
//! use ai_os_kernel::syscalls::{IoUringManager, SyscallOpType};
//! use std::io;
//!
//! fn open_fd(m: &IoUringManager, path: &str) -> io::Result<i32> {
//!     let seq = m.submit(1, SyscallOpType::open(path, 0))?;
//!     Ok(m.wait_completion(1, seq)?.into_result()?.try_into()?)
//! }
//! let m = IoUringManager::new(); // no policy: nothing allowed
//! assert_eq!(open_fd(&m, "/etc/hostname").unwrap_err().kind(), io::ErrorKind::PermissionDenied);
//! ```
//!
//! # What a size costs
//!
//! Measured on a 2-core machine (BENCHMARKS.md has the runs and the anchors beside them):
//!
//! | what | cost |
//! |---|---|
//! | an idle ring of default sizes (256 queued, 512 outstanding) | about 1.1 KiB of memory |
//! | a ring's capacity | nothing until used: slots exist for operations in flight only |
//! | one operation's round trip (a NOP) | about 1–2 µs |
//! | a 4 KiB read of a cached file, one at a time | about 2 µs (io_uring 2.5 µs) |
//! | a `Stat` of a cached path | about 2.5 µs (`std::fs::metadata` 0.7 µs) |
//! | a 64 MiB copy (`Tenant::copy`) | as `std::fs::copy`: the kernel's |
//! | a read's buffer | its size, counted against the policy's `max_buffered_bytes` until taken |
//! | a read into the caller's buffer (`ReadInto`, a handle's `read_at`, `recv`) | no allocation if it has room; only what it grows by is counted |
//! | a pool of registered buffers (`register_buffers`) | its buffers' memory, counted against `max_buffered_bytes` while it is registered; reads and writes of its buffers (`ReadFixed`, `WriteFixed`) allocate nothing |
//! | a handle | one descriptor of the process (counted by `max_open_fds`), closed on drop |
//!
//! A tenant's reads hold at most `max_buffered_bytes` (256 MiB by default) at once, and each
//! read or write at most `max_io_bytes` (64 MiB): size them to what the host can hold for all its
//! tenants together.
