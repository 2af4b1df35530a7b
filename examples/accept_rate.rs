//! Accept rate: a tenant's listener accepts N connections (default 20,000), either with one
//! `Accept` per connection (`one`: `TcpListener::accept`) or with one multishot accept for all
//! (`multi`: `TcpListener::incoming`). A client thread connects `batch` at a time (default 64)
//! and closes them once all were accepted. Prints accepts per second and the process's CPU time per accept (the
//! client's connects included); count system calls with `strace -f -c`.
//!
//! `cargo run --release --example accept_rate -- [one|multi] [connections] [batch]`

use ai_os_kernel::sandbox::Policy;
use ai_os_kernel::syscalls::IoUringManager;
use futures::StreamExt;
use std::net::Ipv4Addr;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or("multi".into());
    let n: usize = args.next().map_or(20000, |s| s.parse().unwrap());
    let batch: usize = args.next().map_or(64, |s| s.parse().unwrap());
    let m = IoUringManager::new();
    let lo = Ipv4Addr::LOCALHOST;
    m.set_policy(1, Policy::default().allow_bind(lo, ..).allow_listen().max_open_fds(4096)).unwrap();
    let tenant = m.tenant(1);
    m.block_on(async {
        let listener = tenant.tcp_listen((lo, 0)).await.unwrap();
        let addr = listener.local_addr();
        let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
        let client = std::thread::spawn(move || {
            for _ in 0..n / batch {
                let conns: Vec<_> = (0..batch).map(|_| std::net::TcpStream::connect(addr).unwrap()).collect();
                rx.recv().unwrap();
                drop(conns);
            }
        });
        let start = Instant::now();
        let cpu0 = cpu();
        let mut incoming = listener.incoming();
        for _ in 0..n / batch {
            let mut got = Vec::with_capacity(batch);
            for _ in 0..batch {
                let s = if mode == "one" {
                    listener.accept().await.unwrap().0
                } else {
                    incoming.next().await.unwrap().unwrap()
                };
                got.push(s);
            }
            drop(got);
            tx.send(()).unwrap();
        }
        let secs = start.elapsed().as_secs_f64();
        client.join().unwrap();
        let done = (n / batch * batch) as f64;
        println!(
            "result mode={mode} accepts={done} per_s={:.0} cpu_us_per={:.2}",
            done / secs,
            (cpu() - cpu0) / done * 1e6
        );
    });
}

fn cpu() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}
