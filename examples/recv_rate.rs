//! Receive rate: a client thread writes `MiB` mebibytes (default 256) over loopback to a
//! tenant's connection, which receives them either with one `Recv` per chunk (`one`) or with
//! one multishot receive (`multi`: `RecvMulti`, resubmitted whenever it stops), `size` bytes
//! at most per result (default 65536). Prints MiB/s and the process's CPU time per MiB (the
//! client's writes included); count system calls with `strace -f -c`.
//!
//! `cargo run --release --example recv_rate -- [one|multi] [MiB] [size]`

use std::io::Write;
use std::net::Ipv4Addr;
use std::time::Instant;

use ai_os_kernel::sandbox::Policy;
use ai_os_kernel::syscalls::{IoUringManager, OpResult, SyscallOpType as Op};
use futures::StreamExt;
use futures::stream::FusedStream;

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or("multi".into());
    let mib: usize = args.next().map_or(256, |s| s.parse().unwrap());
    let size: usize = args.next().map_or(65536, |s| s.parse().unwrap());
    let total = mib << 20;
    let m = IoUringManager::new();
    let lo = Ipv4Addr::LOCALHOST;
    m.set_policy(1, Policy::default().allow_bind(lo, ..).allow_listen()).unwrap();
    let tenant = m.tenant(1);
    m.block_on(async {
        let listener = tenant.tcp_listen((lo, 0)).await.unwrap();
        let addr = listener.local_addr();
        let client = std::thread::spawn(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            let chunk = vec![7u8; 1 << 20];
            for _ in 0..total >> 20 {
                s.write_all(&chunk).unwrap();
            }
        });
        let (stream, _) = listener.accept().await.unwrap();
        let fd = stream.fd();
        let start = Instant::now();
        let cpu0 = cpu();
        let mut got = 0;
        if mode == "one" {
            while got < total {
                match m.submit_async(1, Op::Recv { sockfd: fd, size, flags: 0 }).unwrap().await.result {
                    OpResult::Bytes(b) if !b.is_empty() => got += b.len(),
                    other => panic!("{other:?}"),
                }
            }
        } else {
            while got < total {
                let mut shots = m.submit_multishot(1, Op::RecvMulti { sockfd: fd, size }).unwrap();
                while let Some(done) = shots.next().await {
                    match done.result {
                        OpResult::Bytes(b) if !shots.is_terminated() => got += b.len(),
                        _ if shots.is_terminated() => break,
                        other => panic!("{other:?}"),
                    }
                    if got >= total {
                        break;
                    }
                }
            }
        }
        let secs = start.elapsed().as_secs_f64();
        client.join().unwrap();
        let mibs = got as f64 / f64::from(1 << 20);
        println!(
            "result mode={mode} mib={mibs:.0} mib_per_s={:.0} cpu_us_per_mib={:.1}",
            mibs / secs,
            (cpu() - cpu0) / mibs * 1e6
        );
    });
}

fn cpu() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}
