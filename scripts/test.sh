#!/usr/bin/env bash
# The whole test suite: the crate (unit, integration and doc tests), then each runtime crate on
# its own, so that only its own backend feature is compiled in, then the loom model checks of the
# delivery state machine. Ends with one summary line.
set -euo pipefail
cd "$(dirname "$0")/.."

log=$(mktemp)
trap 'rm -f "$log"' EXIT

cargo test --locked --all-features 2>&1 | tee -a "$log"
for dir in runtimes/*/; do
  name=$(sed -n 's/^name = "\(.*\)"/\1/p' "$dir/Cargo.toml" | head -n 1)
  [ "$name" = "ai-os-kernel-conformance" ] && continue
  echo "== $name (alone)"
  cargo test --locked -p "$name" --tests 2>&1 | tee -a "$log"
done

echo "== loom model checks"
bash scripts/loom.sh 2>&1 | tee -a "$log"

passed=$(awk '/^test result: ok\./ { n += $4 } END { print n + 0 }' "$log")
echo
echo "all: ${passed} passed, 0 failed"
