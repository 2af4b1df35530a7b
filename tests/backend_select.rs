//! Backend selection by `AI_OS_KERNEL_BACKEND`, checked in child processes (the environment is
//! process-wide, so each choice gets a process of its own).

use std::process::Command;

use ai_os_kernel::backend;
use ai_os_kernel::syscalls::{IoUringError, IoUringManager};

const EXPECT: &str = "AI_OS_KERNEL_TEST_EXPECT";

/// How a child says what `try_new` made of its environment, on a line of its own.
const REPORT: &str = "backend-select child report: ";

/// What `try_new` makes of this process's environment: the backend's name, `error` for a bad
/// choice (whose message names every choice), `unavailable` for a backend that cannot start.
fn report() -> String {
    match IoUringManager::try_new() {
        Ok(m) => m.stats().backend.to_string(),
        Err(IoUringError::InvalidConfig(msg)) => {
            for name in backend::available() {
                assert!(msg.contains(name), "the error names the choices: {msg}");
            }
            "error".into()
        }
        Err(IoUringError::Backend(msg)) => {
            assert!(msg.contains("io_uring"), "{msg}");
            "unavailable".into()
        }
        Err(e) => format!("unexpected error: {e}"),
    }
}

/// In a child (with `EXPECT` set): reports what `try_new` made of the environment and checks it.
/// In an ordinary run: checks that the child pattern itself works, i.e. that a child reports the
/// backend it was given and fails when told to expect another, so that the tests below cannot
/// pass with a child that checks nothing.
#[test]
fn child_reports_backend() {
    let Ok(expect) = std::env::var(EXPECT) else {
        let given = backend::available().iter().copied().find(|n| usable(n)).expect("a usable backend");
        let (ok, got) = run_child(Some(given), "no-such-backend", &[]);
        assert_eq!(got.as_deref(), Some(given), "the child reports what it made");
        assert!(!ok, "a child given {given} but expecting another backend must fail");
        let (ok, got) = run_child(Some(given), given, &[]);
        assert!(ok && got.as_deref() == Some(given), "{got:?}");
        let (ok, got) = run_child(Some("bogus"), given, &[]);
        assert!(!ok && got.as_deref() == Some("error"), "{got:?}");
        return;
    };
    let got = report();
    println!("{REPORT}{got}");
    assert_eq!(got, expect);
    // Where io_uring was refused, the choice says so, and that the fallback is the fastest left.
    if std::env::var_os(SETUP_ERRNO).is_some() && std::env::var(backend::BACKEND_ENV).is_err() {
        let why = backend::choose().expect("a backend").why;
        assert!(
            why.contains("fastest") && why.contains("skipped: uring (") && why.contains("io_uring is unavailable here"),
            "{why}"
        );
    }
}

/// The variable that makes io_uring setup fail, as the tests below set it.
const SETUP_ERRNO: &str = "AI_OS_KERNEL_URING_SETUP_ERRNO";

/// Whether a backend can start here (io_uring may be disabled on this kernel).
fn usable(name: &str) -> bool {
    backend::by_name(name).is_ok()
}

/// Runs `child_reports_backend` in a child with `BACKEND_ENV` set to `value` (unset for `None`)
/// and `env`, told to expect `expect`: whether it passed, and what it reported.
fn run_child(value: Option<&str>, expect: &str, env: &[(&str, &str)]) -> (bool, Option<String>) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child_reports_backend", "--test-threads", "1", "--nocapture"]).env(EXPECT, expect);
    cmd.envs(env.iter().copied());
    match value {
        Some(v) => cmd.env(backend::BACKEND_ENV, v),
        None => cmd.env_remove(backend::BACKEND_ENV),
    };
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let reports: Vec<&str> = stdout.lines().filter_map(|l| Some(l.split_once(REPORT)?.1.trim())).collect();
    assert!(reports.len() <= 1, "one report per child: {stdout}");
    let passed = out.status.success() && stdout.contains("1 passed");
    (passed, reports.first().map(|r| r.to_string()))
}

fn child(value: Option<&str>, expect: &str) {
    child_with(value, expect, &[]);
}

/// The child must pass and report exactly `expect`.
fn child_with(value: Option<&str>, expect: &str, env: &[(&str, &str)]) {
    let (passed, got) = run_child(value, expect, env);
    assert!(
        passed && got.as_deref() == Some(expect),
        "{}={value:?} with {env:?}: expected {expect}, the child reported {got:?} and {}",
        backend::BACKEND_ENV,
        if passed { "passed" } else { "failed" }
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
/// falls back to the next backend, the fastest of the others (the blocking pool, when compiled
/// in), and says why; forcing uring there is a clear error.
#[cfg(all(feature = "uring", target_os = "linux"))]
#[test]
fn failed_io_uring_setup_falls_back() {
    use ai_os_kernel::backend::uring::SETUP_FAILURE_ENV;
    let next = backend::available().iter().copied().find(|n| *n != "uring").unwrap();
    if cfg!(feature = "blocking") {
        assert_eq!(next, "blocking", "the measured fastest fallback comes first");
    }
    for errno in ["EPERM", "ENOSYS", "ENOMEM"] {
        child_with(None, next, &[(SETUP_FAILURE_ENV, errno)]);
        child_with(Some("uring"), "unavailable", &[(SETUP_FAILURE_ENV, errno)]);
    }
}
