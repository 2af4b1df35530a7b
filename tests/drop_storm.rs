//! Memory stays flat while tens of thousands of futures are dropped mid-flight, on every backend
//! compiled in (its own test binary, one test, so nothing else moves the process's memory).

use std::time::Duration;

use ai_os_kernel::backend;
use ai_os_kernel::sandbox::Policy;
use ai_os_kernel::syscalls::open_flags::*;
use ai_os_kernel::syscalls::{IoUringManager, SyscallOpType as Op, SyscallSubmissionEntry};
use ai_os_kernel_conformance::support::{eventually, kernel_fds_to, within};

/// Resident memory of this process, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS in /proc/self/status");
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

fn storm(m: &IoUringManager, fd: i32, rounds: u64) {
    for round in 0..rounds {
        let futs: Vec<_> = (0..250u64)
            .map(|i| {
                let op = if i % 4 == 0 {
                    Op::open("f", O_RDONLY)
                } else {
                    Op::ReadAt { fd, offset: (round * 250 + i) % 256 * 4096, size: 4096 }
                };
                m.submit_async(1, SyscallSubmissionEntry::new(1, op, 0)).unwrap()
            })
            .collect();
        drop(futs);
    }
    eventually(Duration::from_secs(60), "storm retired", || m.stats().pending == 0 && m.executor().in_flight() == 0);
}

#[test]
fn memory_and_descriptors_stay_flat_under_drop_storms() {
    within(Duration::from_secs(300), "drop storms", || {
        for name in backend::available() {
            let Ok(b) = backend::by_name(name) else { continue };
            let m = IoUringManager::with_backend(b);
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("f"), vec![1u8; 1 << 20]).unwrap();
            m.set_policy(1, Policy::rooted(dir.path())).unwrap();
            let seq = m.submit(1, SyscallSubmissionEntry::new(1, Op::open("f", O_RDONLY), 0)).unwrap();
            let ai_os_kernel::syscalls::OpResult::Fd(fd) = m.wait_completion(1, seq).unwrap().result else { panic!() };
            storm(&m, fd, 20); // warm up: pools, allocator arenas
            let before = rss();
            storm(&m, fd, 200); // 50,000 dropped futures
            let after = rss();
            let grew = after.saturating_sub(before);
            eprintln!("{name}: rss {} -> {} KiB over 50,000 dropped futures", before / 1024, after / 1024);
            // A leak of one 4 KiB buffer per dropped read would be ~150 MiB.
            assert!(grew < 16 << 20, "{name}: memory grew by {} KiB", grew / 1024);
            assert_eq!(kernel_fds_to(&dir.path().join("f")), 1, "{name}: only the one open descriptor remains");
            assert_eq!(m.processes().get(1).unwrap().open_descriptors(), 1);
        }
    });
}
