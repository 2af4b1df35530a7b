//! Soak: many NOPs and file operations per backend, reporting throughput and resident memory at
//! start and end, with every completion accounted for. Not run by CI (it takes minutes).
//!
//! `cargo run --release --all-features --example soak -- [nops] [file ops]` (defaults: 10,000,000
//! and 1,000,000 per backend; `AI_OS_KERNEL_BACKEND` limits it to one backend).

use std::time::Instant;

use ai_os_kernel::backend;
use ai_os_kernel::sandbox::Policy;
use ai_os_kernel::syscalls::open_flags::*;
use ai_os_kernel::syscalls::{IoUringManager, OpResult, SyscallOpType as Op, SyscallSubmissionEntry as Entry};

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// Submits `total` operations in batches of 64 across 16 processes, taking every completion.
fn drive(m: &IoUringManager, total: u64, op: impl Fn(u32, u64) -> Op) -> f64 {
    let start = Instant::now();
    let mut done = 0;
    let mut i = 0u64;
    while done < total {
        let pid = 1 + (i % 16) as u32;
        let n = 64.min(total - done);
        let seqs = m.submit_batch(pid, (0..n).map(|k| Entry::new(pid, op(pid, i * 64 + k), 0)).collect()).unwrap();
        for s in seqs {
            let c = m.wait_completion(pid, s).unwrap();
            assert!(c.status.is_success(), "{:?}", c.status);
        }
        done += n;
        i += 1;
    }
    total as f64 / start.elapsed().as_secs_f64()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u64>());
    let nops = args.next().transpose()?.unwrap_or(10_000_000);
    let file_ops = args.next().transpose()?.unwrap_or(1_000_000);
    let names: Vec<String> = match std::env::var(backend::BACKEND_ENV) {
        Ok(n) => vec![n],
        Err(_) => backend::available().iter().map(|s| s.to_string()).collect(),
    };
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("data"), vec![3u8; 16 << 20])?;
    for name in names {
        let m = IoUringManager::with_backend(backend::by_name(&name)?);
        let mut fds = Vec::new();
        for pid in 1..=16 {
            m.set_policy(pid, Policy::rooted(dir.path()))?;
            let seq = m.submit(pid, Entry::new(pid, Op::open("data", O_RDONLY), 0))?;
            let OpResult::Fd(fd) = m.wait_completion(pid, seq)?.result else { return Err("open failed".into()) };
            fds.push(fd);
        }
        let rss_start = rss_kib();
        let nop_rate = drive(&m, nops, |_, _| Op::Nop);
        let read_rate = drive(&m, file_ops, |pid, i| Op::ReadAt {
            fd: fds[pid as usize - 1],
            offset: (i * 7919 % 4096) * 4096,
            size: 4096,
        });
        let rss_end = rss_kib();
        let s = m.stats();
        assert_eq!(s.pending, 0, "nothing lost");
        assert_eq!(s.total_submissions, s.total_completions);
        println!(
            "{name}: {nops} NOPs at {nop_rate:.0}/s, {file_ops} 4 KiB preads at {read_rate:.0}/s; rss {rss_start} -> {rss_end} KiB; submissions {} = completions {}",
            s.total_submissions, s.total_completions
        );
    }
    Ok(())
}
