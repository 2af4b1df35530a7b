#!/usr/bin/env bash
# Model-checks the ring's delivery state machine with loom (src/syscalls/iouring/loom_tests.rs):
# the crate is rebuilt with `--cfg ai_os_kernel_loom`, which swaps its locks, condition variable,
# atomics and waker cells for loom's, in a target directory of its own. LOOM_MAX_PREEMPTIONS
# (default 3 here) bounds the interleavings explored per test.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTFLAGS="--cfg ai_os_kernel_loom ${RUSTFLAGS:-}"
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}"
cargo test --locked --release --lib --no-default-features --target-dir target/loom -- loom_ "$@"
