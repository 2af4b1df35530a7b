//! The ways a host uses a ring, end to end on a real temp file, under a rooted read-write policy:
//! submit and reap, wait for one completion, `.await` a future, consume the completion stream,
//! and print the stats.
//!
//! `cargo run --release --example quickstart` (set `AI_OS_KERNEL_BACKEND` to pick a backend).

use std::time::Instant;

use ai_os_kernel::sandbox::Policy;
use ai_os_kernel::syscalls::open_flags::*;
use ai_os_kernel::syscalls::{
    IoUringManager, OpResult, SyscallCompletionStatus, SyscallOpType, SyscallSubmissionEntry,
};
use futures::StreamExt;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let manager = IoUringManager::try_new()?;
    let pid = 7;
    println!("backend: {}", manager.stats().backend);

    // Each process has its own ring and sandbox: this one may read and write beneath `dir` only.
    manager.create_ring(pid, Some(256), Some(512))?;
    manager.set_policy(pid, Policy::rooted(dir.path()).read_write())?;

    // Basic submission: open, then reap the completion.
    let open = SyscallOpType::open("/journal.log", O_RDWR | O_CREAT | O_TRUNC);
    let seq = manager.submit(pid, SyscallSubmissionEntry::new(pid, open, 1))?;
    let fd = loop {
        if let Some(c) = manager.reap_completions(pid, Some(32))?.into_iter().next() {
            assert_eq!(c.seq, seq);
            let OpResult::Fd(fd) = c.result else { return Err(format!("open failed: {:?}", c.status).into()) };
            break fd;
        }
        std::thread::yield_now();
    };
    println!("open /journal.log -> virtual fd {fd} (seq {seq})");

    // A batch of writes in one submission, each at its own offset.
    let start = Instant::now();
    let lines: Vec<Vec<u8>> = (0..64).map(|i| format!("entry {i:02}\n").into_bytes()).collect();
    let batch = lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let offset = (i * line.len()) as u64;
            SyscallSubmissionEntry::new(pid, SyscallOpType::WriteAt { fd, offset, data: line.clone() }, 100 + i as u64)
        })
        .collect();
    let seqs = manager.submit_batch(pid, batch)?;

    // Blocking wait for one specific operation, then reap the rest.
    let last = manager.wait_completion(pid, *seqs.last().expect("64 seqs"))?;
    println!("wait_completion(seq {}) -> {:?}", last.seq, last.result);
    let mut written = 0;
    let mut reaped = 1;
    written += count(&last.result);
    while reaped < seqs.len() {
        for c in manager.reap_completions(pid, Some(32))? {
            match c.status {
                SyscallCompletionStatus::Success => written += count(&c.result),
                SyscallCompletionStatus::Error(msg) => return Err(msg.into()),
                SyscallCompletionStatus::Cancelled => return Err("cancelled".into()),
            }
            reaped += 1;
        }
    }
    println!("batch of {} writes: {written} bytes in {:?}", seqs.len(), start.elapsed());

    // `.await` a future: the future owns its completion.
    let fsync = manager.submit_async(pid, SyscallSubmissionEntry::new(pid, SyscallOpType::Fsync { fd }, 2))?;
    let read = manager
        .submit_async(pid, SyscallSubmissionEntry::new(pid, SyscallOpType::ReadAt { fd, offset: 0, size: 18 }, 3))?;
    let (synced, got) = futures::executor::block_on(async { (fsync.await, read.await) });
    println!("fsync -> {:?}; pread(0, 18) -> {:?}", synced.status, text(&got.result));

    // The completion stream: every CQ completion, in completion order.
    let mut stream = manager.completions(pid)?;
    let reads = (0..4)
        .map(|i| SyscallSubmissionEntry::new(pid, SyscallOpType::ReadAt { fd, offset: i * 9, size: 9 }, 200 + i))
        .collect();
    manager.submit_batch(pid, reads)?;
    futures::executor::block_on(async {
        for _ in 0..4 {
            let c = stream.next().await.expect("stream open");
            println!("stream: user_data {} -> {:?}", c.user_data, text(&c.result));
        }
    });

    // The sandbox at work: escaping the root is refused with EACCES.
    let escape = SyscallOpType::open("../../etc/passwd", O_RDONLY);
    let seq = manager.submit(pid, SyscallSubmissionEntry::new(pid, escape, 4))?;
    let refused = manager.wait_completion(pid, seq)?;
    println!("open ../../etc/passwd -> errno {:?}: {:?}", refused.errno(), refused.status);

    let stats = manager.stats();
    println!("Active rings: {}", stats.active_rings);
    println!("Submissions: {}", stats.total_submissions);
    println!("Completions: {}", stats.total_completions);
    println!("Pending: {}", stats.pending);
    assert_eq!(std::fs::read(dir.path().join("journal.log"))?, lines.concat());
    manager.destroy_ring(pid)?;
    println!("ok: the file on disk holds every write");
    Ok(())
}

fn count(r: &OpResult) -> usize {
    match r {
        OpResult::Count(n) => *n,
        _ => 0,
    }
}

fn text(r: &OpResult) -> String {
    match r {
        OpResult::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        other => format!("{other:?}"),
    }
}
