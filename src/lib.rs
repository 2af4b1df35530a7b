//! io_uring-style batched, asynchronous, sandboxed file and network I/O for the virtual
//! processes of an agent OS kernel, or any host running many isolated tenants.
//!
//! Start with the [`guide`]: a tenant's files and sockets through its handles
//! ([`tenant`]), which the SPEC's enum API below carries.
//!
//! # The model
//!
//! Each virtual process (a [`Pid`], not an OS process) has a
//! [`SyscallCompletionRing`](syscalls::SyscallCompletionRing): a submission queue (SQ) of
//! operations not yet started and a completion queue (CQ) of results not yet taken. Callers
//! submit syscall-like operations ([`SyscallOpType`](syscalls::SyscallOpType): read, write,
//! open, pread, fsync, ...) to an [`IoUringManager`](syscalls::IoUringManager) and collect
//! completions in any of three ways:
//!
//! - `.await` the [`CompletionFuture`](syscalls::CompletionFuture) of
//!   [`submit_async`](syscalls::IoUringManager::submit_async), which owns its completion;
//! - consume the ring's [`CompletionStream`](syscalls::CompletionStream);
//! - poll with [`submit`](syscalls::IoUringManager::submit),
//!   [`reap_completions`](syscalls::IoUringManager::reap_completions) and
//!   [`wait_completion`](syscalls::IoUringManager::wait_completion).
//!
//! Execution is a pluggable [`Backend`](backend::Backend) (the kernel's io_uring where allowed,
//! else a blocking thread pool, tokio or smol);
//! the [`IoUringExecutor`](syscalls::IoUringExecutor) feeds it from the rings by weighted round
//! robin ([`Policy::weight`](sandbox::Policy::weight)), within each process's rate limits
//! ([`Policy::ops_rate`](sandbox::Policy::ops_rate)), so no process can starve another. Every process has its own descriptor table (virtual fds from 3)
//! and a [`Policy`](sandbox::Policy) that decides which paths and addresses it may touch;
//! without one it may touch nothing.
//!
//! # Delivery rules
//!
//! 1. Every accepted submission completes exactly once.
//! 2. A future owns its completion; dropping it unfinished cancels the operation and discards
//!    the completion (counted in [`IoUringStats::discarded`](syscalls::IoUringStats)).
//! 3. `wait_completion(seq)` takes that one completion wherever it stands in the CQ.
//! 4. Nothing is dropped: a full ring refuses new submissions at once
//!    ([`SubmissionQueueFull`](syscalls::IoUringError::SubmissionQueueFull),
//!    [`CompletionQueueFull`](syscalls::IoUringError::CompletionQueueFull)).
//! 5. Waiting for a seq never issued, already taken, or of a destroyed ring fails at once; a seq
//!    never names an operation of another ring, even a later ring of the same pid.
//! 6. Futures and streams store a `Waker`, so they work under tokio, smol or
//!    `futures::executor::block_on` alike.
//! 7. An operation given a deadline
//!    ([`with_deadline`](syscalls::SyscallSubmissionEntry::with_deadline)) and not done by then
//!    is stopped as a cancel stops it and completes `ETIMEDOUT`, once.
//! 8. A linked chain ([`submit_linked`](syscalls::IoUringManager::submit_linked)) runs each
//!    operation only after the one before succeeded; after a failure the rest complete
//!    `Cancelled` without running.
//!
//! # Isolation
//!
//! A pid has one lifecycle: its policy, descriptors, ring and sequence numbers begin with its
//! first use and end together with
//! [`destroy_ring`](syscalls::IoUringManager::destroy_ring). An operation's rights (root, write
//! permission, network rules, limits) are taken when it is submitted, and every limit and rule is
//! checked before the kernel acts, so a refused operation leaves no trace. The bytes a tenant's
//! reads may hold at once are bounded by its policy.
//!
//! # What may wait
//!
//! An operation that may wait for as long as a peer likes (an `Accept`, a `Recv`, a `Read` or
//! `Write` of a socket, a FIFO or a character device, a `Timeout`) waits for readiness, in the
//! kernel's io_uring, on a reactor or on the host's timer thread: it holds no thread and no place in the executor's window, and a
//! cancel or `destroy_ring` stops it. Opens never wait (a FIFO's included: they are made
//! non-blocking). Everything else (file I/O, opens, `fsync`) ends on its own and takes a place
//! in the window, which the executor shares among the processes with work queued.
//!
//! # Layers
//!
//! Each layer uses only those beneath it; `scripts/layers.sh` checks it in CI.
//!
//! ```text
//! tenant          a tenant's handles: files and sockets as std and tokio shape them
//!    |
//! syscalls        the manager, the executor (fair, weighted, rate-limited), the handler
//!    |  hands a Batch of runs of one ring's operations to the backend, through
//! backend          the door: Backend::submit(Batch), Submission, Completer
//!    |             the runtimes (uring, blocking, tokio, smol) behind it, knowing only the door,
//!    |             and the op families they share (file_ops, net_ops)
//! ring             a process's SQ, CQ and slot states, futures and streams
//!    |             (it gives window places back through a trait the executor implements)
//! process          descriptor tables
//! sandbox          policies, path resolution, network rules, rate limits
//! op               the vocabulary: operations, results, errors, flags (imports nothing)
//! timer, sync      one thread running tasks at their time; the locks loom can model (leaves)
//! ```
//!
//! # Example
//!
//! ```
//! use ai_os_kernel::sandbox::Policy;
//! use ai_os_kernel::syscalls::{
//!     IoUringManager, OpResult, SyscallOpType, SyscallSubmissionEntry, open_flags::*,
//! };
//!
//! let dir = std::env::temp_dir().join(format!("ai-os-kernel-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let manager = IoUringManager::new();
//! let pid = 7;
//! manager.set_policy(pid, Policy::rooted(&dir).read_write()).unwrap();
//!
//! // Open beneath the root, then write and read back with the polling API.
//! let open = SyscallOpType::open("/notes.txt", O_RDWR | O_CREAT | O_TRUNC);
//! let seq = manager.submit(pid, SyscallSubmissionEntry::new(pid, open, 1)).unwrap();
//! let OpResult::Fd(fd) = manager.wait_completion(pid, seq).unwrap().result else { panic!() };
//!
//! let write = SyscallOpType::WriteAt { fd, offset: 0, data: b"hello".to_vec() };
//! let read = SyscallOpType::ReadAt { fd, offset: 0, size: 64 };
//! let w = manager.submit(pid, SyscallSubmissionEntry::new(pid, write, 2)).unwrap();
//! assert_eq!(manager.wait_completion(pid, w).unwrap().result, OpResult::Count(5));
//!
//! // Or await a future, under any executor.
//! let fut = manager.submit_async(pid, SyscallSubmissionEntry::new(pid, read, 3)).unwrap();
//! let done = futures::executor::block_on(fut);
//! assert_eq!(done.result, OpResult::Bytes(b"hello".to_vec()));
//!
//! // Escapes are refused with EACCES.
//! let escape = SyscallOpType::open("../../etc/passwd", O_RDONLY);
//! let seq = manager.submit(pid, SyscallSubmissionEntry::new(pid, escape, 4)).unwrap();
//! let refused = manager.wait_completion(pid, seq).unwrap();
//! assert_eq!(refused.errno(), Some(ai_os_kernel::syscalls::errno::EACCES));
//!
//! manager.destroy_ring(pid).unwrap();
//! std::fs::remove_dir_all(&dir).unwrap();
//! ```
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `uring` | yes (Linux) | `UringBackend`: the kernel's io_uring, falling back to the pool |
//! | `blocking` | yes | `BlockingBackend`: a bounded thread pool, no runtime needed |
//! | `tokio` | no | `TokioBackend`: a tokio runtime (yours or its own) |
//! | `smol` | no | `SmolBackend`: smol's executor and blocking pool |
//!
//! [`IoUringManager::new`](syscalls::IoUringManager::new) picks the best one compiled in and usable
//! here, fastest first (uring where the kernel allows it, then blocking, smol, tokio, as measured
//! in BENCHMARKS.md; [`backend::choose`] says why);
//! `AI_OS_KERNEL_BACKEND=uring|tokio|smol|blocking` forces one.

#![warn(missing_docs)]

pub mod backend;
pub mod guide;
mod op;
pub mod process;
pub mod sandbox;
mod sync;
pub mod syscalls;
pub mod tenant;
mod timer;

pub use op::Pid;
