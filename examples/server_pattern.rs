//! The server pattern on one backend, one connection: a server side that loops on a task of
//! its own with its read posted before the data comes, and a client that sends 64 bytes and
//! reads them back, `TRIPS` times, over a tenant's `TcpStream` (tokio's traits, on a
//! current-thread runtime). Prints round trips a second. For counting what a round trip costs:
//!
//! ```sh
//! cargo build --release --example server_pattern --features tokio
//! strace -f -c target/release/examples/server_pattern smol 5000   # BACKEND TRIPS
//! strace -f -c target/release/examples/server_pattern uring 5000 drive 16  # the drive task, 16 connections
//! strace -f -c target/release/examples/server_pattern uring 5000 block_on 1  # IoUringManager::block_on
//! ```
use ai_os_kernel::sandbox::Policy;
use ai_os_kernel::syscalls::IoUringManager;
use std::net::Ipv4Addr;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn main() {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "uring".into());
    let trips: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(5000);
    let m = IoUringManager::with_backend(ai_os_kernel::backend::by_name(&name).unwrap());
    let lo = Ipv4Addr::LOCALHOST;
    m.set_policy(1, Policy::default().allow_bind(lo, ..).allow_connect(lo, ..).allow_listen()).unwrap();
    let t = m.tenant(1);
    // `drive` as a third argument: the thread's submissions and completions are worked on this
    // thread by the manager's drive task (`IoUringManager::drive`), spawned in a `LocalSet`;
    // `block_on`: no tokio at all, the same on `IoUringManager::block_on` (futures' traits).
    let mode = args.next();
    let drive = mode.as_deref() == Some("drive");
    let conns: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(1);
    if mode.as_deref() == Some("block_on") {
        return plain::on_block_on(&m, &t, &name, trips, conns);
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let local = tokio::task::LocalSet::new();
    if drive {
        local.spawn_local(m.drive());
    }
    // The connections, as a fourth argument (1 by default): each client's round trips run
    // together with the others', each server side on a task of its own.
    local.block_on(&rt, async {
        let l = t.tcp_listen((lo, 0)).await.unwrap();
        let mut clients = Vec::new();
        for _ in 0..conns {
            let (c, a) = futures::join!(t.tcp_connect(l.local_addr()), l.accept());
            let (c, (mut s, _)) = (c.unwrap(), a.unwrap());
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                while s.read_exact(&mut buf).await.is_ok() {
                    if s.write_all(&buf).await.is_err() {
                        break;
                    }
                }
            });
            clients.push(c);
        }
        let start = Instant::now();
        futures::future::join_all(clients.iter_mut().map(|c| async move {
            let mut buf = [0u8; 64];
            for _ in 0..trips {
                c.write_all(&[1; 64]).await.unwrap();
                c.read_exact(&mut buf).await.unwrap();
            }
        }))
        .await;
        report(&name, trips * conns, start.elapsed());
    });
}

/// Prints the round trips a second, and the time of one.
fn report(name: &str, all: usize, took: std::time::Duration) {
    eprintln!(
        "{name}: {} trips/s, {:.1} us/trip",
        (all as f64 / took.as_secs_f64()) as u64,
        took.as_secs_f64() * 1e6 / all as f64
    );
}

/// Futures' I/O traits only (tokio's are in scope above).
mod plain {
    use ai_os_kernel::syscalls::IoUringManager;
    use futures::io::{AsyncReadExt, AsyncWriteExt};
    use std::net::Ipv4Addr;
    use std::time::Instant;

    /// The same round trips with no runtime but the manager's own `block_on`: the server sides and
    /// the clients are futures joined on this thread.
    pub fn on_block_on(m: &IoUringManager, t: &ai_os_kernel::tenant::Tenant, name: &str, trips: usize, conns: usize) {
        m.block_on(async {
            let l = t.tcp_listen((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
            let (mut clients, mut servers) = (Vec::new(), Vec::new());
            for _ in 0..conns {
                let (c, a) = futures::join!(t.tcp_connect(l.local_addr()), l.accept());
                clients.push(c.unwrap());
                servers.push(a.unwrap().0);
            }
            let serve = futures::future::join_all(servers.iter_mut().map(|s| async move {
                let mut buf = [0u8; 64];
                while s.read_exact(&mut buf).await.is_ok() {
                    if s.write_all(&buf).await.is_err() {
                        break;
                    }
                }
            }));
            let start = Instant::now();
            let trip = futures::future::join_all(clients.iter_mut().map(|c| async move {
                let mut buf = [0u8; 64];
                for _ in 0..trips {
                    c.write_all(&[1; 64]).await.unwrap();
                    c.read_exact(&mut buf).await.unwrap();
                }
            }));
            futures::pin_mut!(serve, trip);
            futures::future::select(serve, trip).await;
            super::report(&format!("{name} (block_on)"), trips * conns, start.elapsed());
        });
    }
}
