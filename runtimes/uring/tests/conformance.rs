//! The conformance suite on `UringBackend`, with only the `uring` feature compiled in. Where the
//! kernel refuses io_uring, the checks run on the fallback the manager itself would choose.

use std::sync::Arc;

use ai_os_kernel::backend::{Backend, BlockingBackend, UringBackend};
use ai_os_kernel_conformance::support::report_skipped;

fn uring() -> Arc<dyn Backend> {
    match UringBackend::new() {
        Ok(b) => Arc::new(b),
        Err(e) => {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                report_skipped(
                    "io_uring conformance",
                    format_args!("io_uring unavailable ({e}): ran on the blocking fallback"),
                )
            });
            Arc::new(BlockingBackend::new())
        }
    }
}

ai_os_kernel_conformance::conformance_tests!(make: uring, block_on: |f| futures::executor::block_on(f));

/// The same suite with sockets on the fallback reactor, as on a kernel that would not wait on a
/// non-blocking socket itself.
mod sockets_on_fallback {
    use super::*;

    fn uring_files_only() -> Arc<dyn Backend> {
        match UringBackend::with_sockets_on_fallback() {
            Ok(b) => {
                assert!(!b.probe().sockets_in_kernel);
                Arc::new(b)
            }
            Err(e) => {
                static SAID: std::sync::Once = std::sync::Once::new();
                SAID.call_once(|| {
                    report_skipped(
                        "sockets_on_fallback::*",
                        format_args!("io_uring unavailable ({e}): ran on the blocking fallback"),
                    )
                });
                Arc::new(BlockingBackend::new())
            }
        }
    }

    ai_os_kernel_conformance::conformance_tests!(make: uring_files_only, block_on: |f| futures::executor::block_on(f));
}

#[test]
fn default_manager_prefers_uring_where_allowed() {
    assert_eq!(ai_os_kernel::backend::available(), ["uring", "blocking"]);
    let expect = if UringBackend::new().is_ok() { "uring" } else { "blocking" };
    assert_eq!(ai_os_kernel::syscalls::IoUringManager::new().stats().backend, expect);
}

#[test]
fn probe_reports_the_opcodes_used() {
    let b = match UringBackend::new() {
        Ok(b) => b,
        Err(e) => return report_skipped("probe_reports_the_opcodes_used", format_args!("io_uring unavailable ({e})")),
    };
    let probe = b.probe();
    let names: Vec<_> = probe.opcodes.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        [
            "NOP",
            "READ",
            "WRITE",
            "READV",
            "WRITEV",
            "FSYNC",
            "FTRUNCATE",
            "STATX",
            "FALLOCATE",
            "OPENAT2",
            "ASYNC_CANCEL",
            "ACCEPT",
            "CONNECT",
            "SEND",
            "RECV",
            "SENDMSG",
            "RECVMSG"
        ]
    );
    assert!(probe.opcodes.iter().any(|(n, ok)| *n == "NOP" && *ok));
    assert_eq!(b.in_flight(), 0);
}

/// Parked accepts and receives are held by the kernel (its in-flight table), not by a fallback
/// thread; cancelling them takes them out of the kernel and leaks no descriptor.
#[test]
fn parked_socket_requests_wait_in_the_kernel() {
    use std::time::Duration;

    use ai_os_kernel::sandbox::Policy;
    use ai_os_kernel::syscalls::{IoUringManager, OpResult, SyscallOpType as Op, SyscallSubmissionEntry};
    use ai_os_kernel_conformance::support::{eventually, run_op, within};

    let b = match UringBackend::new() {
        Ok(b) => b,
        Err(e) => {
            return report_skipped(
                "parked_socket_requests_wait_in_the_kernel",
                format_args!("io_uring unavailable ({e})"),
            );
        }
    };
    if !b.probe().sockets_in_kernel {
        return report_skipped(
            "parked_socket_requests_wait_in_the_kernel",
            "this kernel does not wait on non-blocking sockets: they run on the fallback",
        );
    }
    within(Duration::from_secs(60), "parked socket requests", move || {
        let b = Arc::new(b);
        let m = IoUringManager::with_backend(b.clone());
        let loopback: ai_os_kernel::sandbox::IpNet = "127.0.0.0/8".parse().unwrap();
        m.set_policy(
            1,
            Policy::default().allow_bind(loopback, 0..=65535).allow_listen().allow_connect(loopback, 0..=65535),
        )
        .unwrap();
        let fd = |done: ai_os_kernel::syscalls::SyscallCompletionEntry| match done.result {
            OpResult::Fd(fd) => fd,
            other => panic!("{other:?}"),
        };
        let listener = fd(run_op(&m, 1, Op::Socket { domain: 2, ty: 1, protocol: 0 }));
        assert!(run_op(&m, 1, Op::Bind { sockfd: listener, addr: "127.0.0.1:0".parse().unwrap() }).status.is_success());
        assert!(run_op(&m, 1, Op::Listen { sockfd: listener, backlog: 64 }).status.is_success());
        let OpResult::Addr(addr) = run_op(&m, 1, Op::LocalAddr { sockfd: listener }).result else { panic!() };
        let client = fd(run_op(&m, 1, Op::Socket { domain: 2, ty: 1, protocol: 0 }));
        assert!(run_op(&m, 1, Op::Connect { sockfd: client, addr }).status.is_success());
        let OpResult::Accepted { fd: server, .. } = run_op(&m, 1, Op::Accept { sockfd: listener }).result else {
            panic!()
        };
        let descriptors = m.processes().get(1).unwrap().open_descriptors();

        let parked: Vec<_> = (0..40)
            .map(|i| {
                let op = if i % 2 == 0 {
                    Op::Accept { sockfd: listener }
                } else {
                    Op::Recv { sockfd: server, size: 64, flags: 0 }
                };
                m.submit_async(1, SyscallSubmissionEntry::new(1, op, i)).unwrap()
            })
            .collect();
        eventually(Duration::from_secs(10), "40 requests in the kernel", || b.in_flight() == 40);
        drop(parked);
        eventually(Duration::from_secs(10), "cancelled out of the kernel", || {
            b.in_flight() == 0 && m.stats().pending == 0
        });
        assert_eq!(m.processes().get(1).unwrap().open_descriptors(), descriptors, "no descriptor leaked");

        // The connection still works after its cancelled receives.
        let sent = run_op(&m, 1, Op::Send { sockfd: client, data: b"ping".to_vec(), flags: 0 });
        assert_eq!(sent.result, OpResult::Count(4));
        let got = run_op(&m, 1, Op::Recv { sockfd: server, size: 64, flags: 0 });
        assert_eq!(got.result, OpResult::Bytes(b"ping".to_vec()));
    });
}

/// The async checks again, each future driven with the manager's drive task beside it on the
/// same thread (`Backend::drive`): the thread's operations go to a kernel ring of its own,
/// pushed without entering the kernel and entered once per turn of the executor, their
/// completions taken by the drive task.
mod driven {
    use std::cell::RefCell;
    use std::sync::Arc;
    use std::task::Poll;

    use ai_os_kernel::backend::{Backend, LocalTask};
    use ai_os_kernel_conformance::support::BoxFuture;

    thread_local! {
        /// Backends made on this thread whose drive task is not started yet.
        pub(super) static MADE: RefCell<Vec<Arc<dyn Backend>>> = const { RefCell::new(Vec::new()) };
    }

    /// [`super::uring`], kept in [`MADE`] for the thread's driver.
    pub(super) fn uring_driven() -> Arc<dyn Backend> {
        let backend = super::uring();
        MADE.with(|made| made.borrow_mut().push(backend.clone()));
        backend
    }

    /// Polls `f`, then the drive tasks of the backends it made so far, on this thread; checks
    /// that every io_uring backend made got its task.
    fn block_on_driven(mut f: BoxFuture) {
        let mut drives: Vec<LocalTask> = Vec::new();
        let (mut on_uring, mut started) = (0, 0);
        futures::executor::block_on(futures::future::poll_fn(|cx| {
            if f.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
            for backend in MADE.with(|made| std::mem::take(&mut *made.borrow_mut())) {
                on_uring += usize::from(backend.name() == "uring");
                let drive = backend.drive();
                started += usize::from(drive.is_some());
                drives.extend(drive);
            }
            drives.retain_mut(|drive| drive.as_mut().poll(cx).is_pending());
            Poll::Pending
        }));
        assert_eq!(started, on_uring, "a drive task for each io_uring backend");
    }

    ai_os_kernel_conformance::__async_checks!(uring_driven, block_on_driven;
        futures_resolve, stream_delivers_then_ends, woken_from_another_thread, async_echo_concurrent,
        handles_files, handles_sockets, handles_write_in_the_background,
    );
}

/// The async checks once more, each future handed to its backend's `run_here` (what
/// `IoUringManager::block_on` uses) once it has made the backend: on io_uring the thread's own
/// ring, parked in the kernel between ticks.
mod run_here {
    use std::sync::Arc;
    use std::task::{Context, Wake, Waker};

    use ai_os_kernel_conformance::support::BoxFuture;

    /// Unparks the thread that polls.
    struct Unpark(std::thread::Thread);

    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }

    /// Polls `f` on this thread until it has made its backend, then hands it to the backend's
    /// `run_here` to the end.
    fn block_on_run_here(mut f: BoxFuture) {
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        loop {
            if f.as_mut().poll(&mut cx).is_ready() {
                return;
            }
            if let Some(backend) = super::driven::MADE.with(|made| made.borrow_mut().pop()) {
                backend.run_here(f.as_mut());
                return;
            }
            std::thread::park();
        }
    }

    ai_os_kernel_conformance::__async_checks!(super::driven::uring_driven, block_on_run_here;
        futures_resolve, stream_delivers_then_ends, woken_from_another_thread, async_echo_concurrent,
        handles_files, handles_sockets, handles_write_in_the_background,
    );
}
