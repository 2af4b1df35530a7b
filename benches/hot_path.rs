//! Criterion micro-benchmarks of the hot path, so a regression shows per change:
//! `cargo bench --bench hot_path`.
//!
//! - `core/submit_complete_reap`: one NOP through the manager on a backend that completes
//!   inline, so only the core is measured (ring, executor, delivery);
//! - `core/future_wake`: the same through a `CompletionFuture`, polled to completion;
//! - `core/batch32`: a batch of 32 NOPs submitted, completed inline and reaped;
//! - `<backend>/nop_roundtrip`: one NOP on each real backend compiled in (threads included).

use std::sync::Arc;

use ai_os_kernel::backend::{self, Backend, Batch, Task};
use ai_os_kernel::syscalls::{IoUringManager, OpResult, SyscallOpType, SyscallSubmissionEntry};
use criterion::{Criterion, criterion_group, criterion_main};

/// Completes every operation inside `submit`, on the submitting thread.
struct Inline;

impl Backend for Inline {
    fn name(&self) -> &'static str {
        "inline"
    }
    fn spawn(&self, task: Task) {
        futures::executor::block_on(task)
    }
    fn submit(&self, batch: Batch) {
        for sub in batch.into_submissions() {
            sub.complete(Ok(OpResult::None));
        }
    }
}

fn nop() -> SyscallSubmissionEntry {
    SyscallSubmissionEntry::new(1, SyscallOpType::Nop, 0)
}

fn core(c: &mut Criterion) {
    let m = IoUringManager::with_backend(Arc::new(Inline));
    m.create_ring(1, Some(256), Some(512)).unwrap();
    c.bench_function("core/submit_complete_reap", |b| {
        b.iter(|| {
            m.submit(1, nop()).unwrap();
            assert_eq!(m.reap_completions(1, Some(1)).unwrap().len(), 1);
        })
    });
    c.bench_function("core/future_wake", |b| b.iter(|| futures::executor::block_on(m.submit_async(1, nop()).unwrap())));
    c.bench_function("core/batch32", |b| {
        b.iter(|| {
            m.submit_batch(1, (0..32).map(|_| nop()).collect()).unwrap();
            assert_eq!(m.reap_completions(1, None).unwrap().len(), 32);
        })
    });
}

fn backends(c: &mut Criterion) {
    for name in backend::available() {
        let Ok(b) = backend::by_name(name) else { continue };
        let m = IoUringManager::with_backend(b);
        m.create_ring(1, Some(256), Some(512)).unwrap();
        c.bench_function(&format!("{name}/nop_roundtrip"), |b| {
            b.iter(|| {
                let seq = m.submit(1, nop()).unwrap();
                m.wait_completion(1, seq).unwrap()
            })
        });
    }
}

criterion_group!(benches, core, backends);
criterion_main!(benches);
