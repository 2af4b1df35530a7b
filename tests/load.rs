//! Load: 1,000 processes, each with its own ring, drive mixed file operations at the same time on
//! every backend compiled in. Every operation completes once with the right result, every file
//! holds what its process wrote, and every process ends with no descriptor open.

use std::time::{Duration, Instant};

use ai_os_kernel::Pid;
use ai_os_kernel::backend;
use ai_os_kernel::sandbox::Policy;
use ai_os_kernel::syscalls::open_flags::*;
use ai_os_kernel::syscalls::{
    IoUringManager, OpResult, SyscallCompletionEntry, SyscallOpType as Op, SyscallSubmissionEntry,
};
use ai_os_kernel_conformance::support::within;
use futures::future::join_all;

const PROCESSES: Pid = 1000;
const SEEK_SET: i32 = 0;

fn head(pid: Pid) -> Vec<u8> {
    (0..4096u32).map(|i| (i.wrapping_mul(7) ^ pid) as u8).collect()
}

fn tail(pid: Pid) -> Vec<u8> {
    vec![(pid % 251) as u8; 1000]
}

async fn op(m: &IoUringManager, pid: Pid, op: Op) -> SyscallCompletionEntry {
    let what = format!("pid {pid}: {}", op.name());
    let done = m.submit_async(pid, SyscallSubmissionEntry::new(pid, op, u64::from(pid))).expect("submit").await;
    assert!(done.status.is_success(), "{what}: {done:?}");
    assert_eq!(done.user_data, u64::from(pid));
    done
}

/// One process's life: create its file, write it two ways, flush, seek, read it back two ways,
/// close.
async fn process(m: &IoUringManager, pid: Pid) {
    let path = format!("p{pid}");
    let OpResult::Fd(fd) = op(m, pid, Op::open(&path, O_RDWR | O_CREAT | O_TRUNC)).await.result else {
        panic!("pid {pid}: open gave no fd")
    };
    assert_eq!(op(m, pid, Op::Write { fd, data: head(pid) }).await.result, OpResult::Count(4096));
    assert_eq!(op(m, pid, Op::WriteAt { fd, offset: 4096, data: tail(pid) }).await.result, OpResult::Count(1000));
    if pid.is_multiple_of(50) {
        op(m, pid, Op::Fsync { fd }).await;
    }
    assert_eq!(op(m, pid, Op::Lseek { fd, offset: 0, whence: SEEK_SET }).await.result, OpResult::Offset(0));
    let OpResult::Bytes(all) = op(m, pid, Op::Read { fd, size: 8192 }).await.result else { panic!() };
    assert_eq!(all.len(), 5096, "pid {pid}");
    assert!(all[..4096] == head(pid)[..] && all[4096..] == tail(pid)[..], "pid {pid}: read back another's data");
    let OpResult::Bytes(mid) = op(m, pid, Op::ReadAt { fd, offset: 4000, size: 200 }).await.result else { panic!() };
    assert_eq!(mid, all[4000..4200]);
    op(m, pid, Op::Nop).await;
    op(m, pid, Op::Close { fd }).await;
}

fn load_on(name: &'static str) {
    let b = match backend::by_name(name) {
        Ok(b) => b,
        Err(e) => {
            return ai_os_kernel_conformance::support::report_skipped(&format!("load on the {name} backend"), e);
        }
    };
    let m = IoUringManager::with_backend(b);
    let dir = tempfile::tempdir().unwrap();
    for pid in 1..=PROCESSES {
        m.set_policy(pid, Policy::rooted(dir.path()).read_write()).unwrap();
        m.create_ring(pid, None, None).unwrap();
    }
    let start = Instant::now();
    futures::executor::block_on(join_all((1..=PROCESSES).map(|pid| {
        let m = &m;
        async move { process(m, pid).await }
    })));
    let took = start.elapsed();

    let stats = m.stats();
    assert_eq!(stats.active_rings, PROCESSES as usize);
    assert_eq!(stats.total_submissions, stats.total_completions, "{name}: {stats:?}");
    assert_eq!(stats.pending, 0);
    for pid in 1..=PROCESSES {
        let on_disk = std::fs::read(dir.path().join(format!("p{pid}"))).unwrap();
        assert!(on_disk[..4096] == head(pid)[..] && on_disk[4096..] == tail(pid)[..], "{name}: p{pid} on disk");
        assert_eq!(m.processes().get(pid).unwrap().open_descriptors(), 0, "{name}: pid {pid} leaked a descriptor");
        let s = m.stats_for(pid).unwrap();
        assert_eq!((s.submitted, s.completed, s.failed), (s.completed, s.submitted, 0), "{name}: pid {pid}: {s:?}");
    }
    eprintln!(
        "{name}: {} processes, {} operations in {took:.2?} ({:.0} ops/s)",
        PROCESSES,
        stats.total_submissions,
        stats.total_submissions as f64 / took.as_secs_f64()
    );
}

#[test]
fn thousand_processes_mixed_file_ops_on_every_backend() {
    within(Duration::from_secs(300), "1,000 processes", || {
        for name in backend::available() {
            load_on(name);
        }
    });
}
