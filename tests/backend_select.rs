//! Backend selection by `AI_OS_KERNEL_BACKEND`, checked in child processes (the environment is
//! process-wide, so each choice gets a process of its own).

use std::process::Command;

use ai_os_kernel::backend;
use ai_os_kernel::syscalls::{IoUringError, IoUringManager};

const EXPECT: &str = "AI_OS_KERNEL_TEST_EXPECT";

/// Runs in a child: checks what `try_new` made of the environment it was given.
#[test]
fn child_reports_backend() {
    let Ok(expect) = std::env::var(EXPECT) else { return };
    match (expect.as_str(), IoUringManager::try_new()) {
        ("error", Err(IoUringError::InvalidConfig(msg))) => {
            for name in backend::available() {
                assert!(msg.contains(name), "the error names the choices: {msg}");
            }
        }
        ("unavailable", Err(IoUringError::Backend(msg))) => assert!(msg.contains("io_uring"), "{msg}"),
        (name, Ok(m)) => assert_eq!(m.stats().backend, name),
        (expect, Err(e)) => panic!("expected {expect}, got error {e}"),
    }
}

/// Whether a backend can start here (io_uring may be disabled on this kernel).
fn usable(name: &str) -> bool {
    backend::by_name(name).is_ok()
}

fn child(value: Option<&str>, expect: &str) {
    child_with(value, expect, &[]);
}

fn child_with(value: Option<&str>, expect: &str, env: &[(&str, &str)]) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child_reports_backend", "--test-threads", "1"]).env(EXPECT, expect);
    cmd.envs(env.iter().copied());
    match value {
        Some(v) => cmd.env(backend::BACKEND_ENV, v),
        None => cmd.env_remove(backend::BACKEND_ENV),
    };
    let out = cmd.output().unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("1 passed"),
        "{}={value:?} expecting {expect}:\n{}{}",
        backend::BACKEND_ENV,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn env_var_forces_each_compiled_backend() {
    for name in backend::available() {
        let expect = if usable(name) { name } else { "unavailable" };
        child(Some(name), expect);
        child(Some(&format!("  {name} ")), expect);
    }
}

#[test]
fn unknown_or_missing_backend_is_an_error_not_a_fallback() {
    child(Some("bogus"), "error");
    for name in ["uring", "tokio", "smol", "blocking"] {
        if !backend::available().contains(&name) {
            child(Some(name), "error");
        }
    }
}

#[test]
fn unset_picks_the_best_compiled_in() {
    let best = backend::available().iter().copied().find(|n| usable(n)).unwrap_or("error");
    child(None, best);
    child(Some(""), best);
}

/// Where io_uring setup fails (disabled by sysctl, filtered by seccomp, too old), the manager
/// falls back to the next backend; forcing uring there is a clear error.
#[cfg(all(feature = "uring", target_os = "linux"))]
#[test]
fn failed_io_uring_setup_falls_back() {
    use ai_os_kernel::backend::uring::SETUP_FAILURE_ENV;
    let next = backend::available().iter().copied().find(|n| *n != "uring").unwrap();
    for errno in ["EPERM", "ENOSYS", "ENOMEM"] {
        child_with(None, next, &[(SETUP_FAILURE_ENV, errno)]);
        child_with(Some("uring"), "unavailable", &[(SETUP_FAILURE_ENV, errno)]);
    }
}
