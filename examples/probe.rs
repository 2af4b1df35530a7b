//! What this machine offers: whether io_uring is available (and why not), the opcodes the crate
//! uses, and the backend `IoUringManager::new()` picks. The first line is `backend: <name>`, the
//! second `why: <reason>`.
//!
//! `cargo run --release --example probe`

use ai_os_kernel::backend;
use ai_os_kernel::syscalls::IoUringManager;

fn main() {
    match backend::choose() {
        Ok(choice) => {
            let m = IoUringManager::with_backend(choice.backend);
            println!("backend: {}", m.stats().backend);
            println!("why: {}", choice.why);
        }
        Err(e) => println!("backend: none ({e})"),
    }
    println!("compiled in: {:?}", backend::available());
    if let Ok(forced) = std::env::var(backend::BACKEND_ENV) {
        println!("forced by {}={forced}", backend::BACKEND_ENV);
    }
    let sysctl = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").map(|s| s.trim().to_owned());
    println!("kernel.io_uring_disabled: {}", sysctl.unwrap_or_else(|_| "n/a".into()));
    uring();
}

#[cfg(all(feature = "uring", target_os = "linux"))]
fn uring() {
    match backend::UringBackend::new() {
        Ok(b) => {
            println!("io_uring: available");
            let probe = b.probe();
            for (name, ok) in probe.opcodes {
                println!("  IORING_OP_{name:<13} {}", if ok { "supported" } else { "missing (runs on the fallback)" });
            }
            let sockets = if probe.sockets_in_kernel { "in the kernel" } else { "on the fallback pool" };
            println!("sockets: {sockets}");
        }
        Err(e) => println!("io_uring: unavailable: {e}"),
    }
}

#[cfg(not(all(feature = "uring", target_os = "linux")))]
fn uring() {
    println!("io_uring: not compiled in (feature `uring`, Linux only)");
}
