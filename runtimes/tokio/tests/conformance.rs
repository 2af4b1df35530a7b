//! The conformance suite on `TokioBackend`, with only the `tokio` feature compiled in.

use std::sync::{Arc, OnceLock};

use ai_os_kernel::backend::{Backend, TokioBackend};
use ai_os_kernel_conformance::support::BoxFuture;

fn block_on(f: BoxFuture) {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap().block_on(f)
}

fn block_on_current_thread(f: BoxFuture) {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

/// A backend that owns its runtime (made outside any runtime).
fn owned() -> Arc<dyn Backend> {
    Arc::new(TokioBackend::new().unwrap())
}

/// A backend borrowing a runtime shared by every test.
fn shared() -> Arc<dyn Backend> {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    let rt =
        RT.get_or_init(|| tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap());
    Arc::new(TokioBackend::with_handle(rt.handle().clone()))
}

mod owned_runtime {
    ai_os_kernel_conformance::conformance_tests!(make: super::owned, block_on: super::block_on);
}

mod given_handle {
    ai_os_kernel_conformance::conformance_tests!(make: super::shared, block_on: super::block_on_current_thread);
}

#[test]
fn new_borrows_a_current_multi_thread_runtime_only() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
    let inside = rt.block_on(async { TokioBackend::new().unwrap() });
    assert_eq!(inside.handle().id(), rt.handle().id());
    let ct = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let inside_ct = ct.block_on(async { TokioBackend::new().unwrap() });
    assert_ne!(inside_ct.handle().id(), ct.handle().id(), "a current-thread runtime is not borrowed");
    let outside = TokioBackend::new().unwrap();
    assert_ne!(outside.handle().id(), rt.handle().id());
    // Dropped inside its own runtime: no panic.
    let h = outside.handle().clone();
    h.block_on(async move { drop(outside) });
}

#[test]
fn default_manager_is_tokio() {
    assert_eq!(ai_os_kernel::backend::available(), ["tokio"]);
    assert_eq!(ai_os_kernel::syscalls::IoUringManager::new().stats().backend, "tokio");
}

#[test]
fn runtime_without_io_is_a_clear_error() {
    use ai_os_kernel::sandbox::Policy;
    use ai_os_kernel::syscalls::{IoUringManager, SyscallOpType, SyscallSubmissionEntry};
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
    let m = IoUringManager::with_backend(Arc::new(TokioBackend::with_handle(rt.handle().clone())));
    m.set_policy(1, Policy::unrestricted()).unwrap();
    let socket = SyscallOpType::Socket { domain: 2, ty: 1, protocol: 0 };
    let seq = m.submit(1, SyscallSubmissionEntry::new(1, socket, 0)).unwrap();
    let fd = match m.wait_completion(1, seq).unwrap().result {
        ai_os_kernel::syscalls::OpResult::Fd(fd) => fd,
        other => panic!("{other:?}"),
    };
    let run = |op| m.wait_completion(1, m.submit(1, SyscallSubmissionEntry::new(1, op, 0)).unwrap()).unwrap();
    assert!(run(SyscallOpType::Bind { sockfd: fd, addr: "127.0.0.1:0".parse().unwrap() }).status.is_success());
    assert!(run(SyscallOpType::Listen { sockfd: fd, backlog: 1 }).status.is_success());
    // Nobody connects: the accept must wait on the reactor, which this runtime lacks.
    let done = run(SyscallOpType::Accept { sockfd: fd });
    assert!(
        matches!(&done.status, ai_os_kernel::syscalls::SyscallCompletionStatus::Error(msg) if msg.contains("enable_io")),
        "{:?}",
        done.status
    );
}
