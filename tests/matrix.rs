//! "Runtime-agnostic" shown, not claimed: futures and streams from every backend compiled in,
//! awaited under every executor: `futures::executor::block_on`, tokio current-thread, tokio
//! multi-thread, and smol.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use ai_os_kernel::backend::Backend;
use ai_os_kernel::sandbox::Policy;
use ai_os_kernel::syscalls::open_flags::*;
use ai_os_kernel::syscalls::{IoUringManager, OpResult, SyscallOpType as Op, SyscallSubmissionEntry};
use ai_os_kernel_conformance::support::{BoxFuture, within};
use futures::StreamExt;

/// One cell: 20 futures joined, a file written and read back through futures, and 20 stream
/// completions, all awaited on the executor under test.
async fn cell(backend: Arc<dyn Backend>) {
    let m = IoUringManager::with_backend(backend);
    let dir = tempfile::tempdir().unwrap();
    m.set_policy(1, Policy::rooted(dir.path()).read_write()).unwrap();
    let e = |op| SyscallSubmissionEntry::new(1, op, 0);

    let futs: Vec<_> = (0..20).map(|_| m.submit_async(1, e(Op::Nop)).unwrap()).collect();
    assert!(futures::future::join_all(futs).await.iter().all(|c| c.status.is_success()));

    let opened = m.submit_async(1, e(Op::open("f", O_RDWR | O_CREAT))).unwrap().await;
    let OpResult::Fd(fd) = opened.result else { panic!("{:?}", opened.status) };
    let wrote = m.submit_async(1, e(Op::WriteAt { fd, offset: 0, data: b"matrix".to_vec() })).unwrap().await;
    assert_eq!(wrote.result, OpResult::Count(6));
    let read = m.submit_async(1, e(Op::ReadAt { fd, offset: 0, size: 16 })).unwrap().await;
    assert_eq!(read.result, OpResult::Bytes(b"matrix".to_vec()));

    let mut stream = m.completions(1).unwrap();
    let seqs: HashSet<u64> = m.submit_batch(1, (0..20).map(|_| e(Op::Nop)).collect()).unwrap().into_iter().collect();
    let got: HashSet<u64> = (&mut stream).take(20).map(|c| c.seq).collect().await;
    assert_eq!(got, seqs);
    m.destroy_ring(1).unwrap();
    assert!(stream.next().await.is_none());
}

fn block_on_futures(f: BoxFuture) {
    futures::executor::block_on(f)
}
fn tokio_current_thread(f: BoxFuture) {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}
fn tokio_multi_thread(f: BoxFuture) {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap().block_on(f)
}
fn smol_block_on(f: BoxFuture) {
    smol::block_on(f)
}

macro_rules! matrix {
    ($($backend:ident: $make:expr, $feature:literal;)*) => {$(
        #[cfg(feature = $feature)]
        mod $backend {
            use super::*;
            fn make() -> Arc<dyn Backend> {
                $make
            }
            fn run(exec: fn(BoxFuture)) {
                within(Duration::from_secs(60), stringify!($backend), move || exec(Box::pin(cell(make()))));
            }
            #[test]
            fn under_block_on() {
                run(block_on_futures)
            }
            #[test]
            fn under_tokio_current_thread() {
                run(tokio_current_thread)
            }
            #[test]
            fn under_tokio_multi_thread() {
                run(tokio_multi_thread)
            }
            #[test]
            fn under_smol() {
                run(smol_block_on)
            }
        }
    )*};
}

matrix! {
    uring: match ai_os_kernel::backend::UringBackend::new() {
        Ok(b) => Arc::new(b),
        Err(e) => {
            ai_os_kernel_conformance::support::report_skipped(
                "matrix uring::*",
                format_args!("io_uring unavailable ({e}): this cell ran on the blocking fallback"),
            );
            Arc::new(ai_os_kernel::backend::BlockingBackend::new())
        }
    }, "uring";
    blocking: Arc::new(ai_os_kernel::backend::BlockingBackend::new()), "blocking";
    tokio_backend: Arc::new(ai_os_kernel::backend::TokioBackend::new().unwrap()), "tokio";
    smol_backend: Arc::new(ai_os_kernel::backend::SmolBackend::new()), "smol";
}
