#!/usr/bin/env bash
# The whole test suite: the crate (unit, integration and doc tests), then each runtime crate on
# its own, so that only its own backend feature is compiled in.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --locked
for dir in runtimes/*/; do
  name=$(sed -n 's/^name = "\(.*\)"/\1/p' "$dir/Cargo.toml" | head -n 1)
  [ "$name" = "ai-os-kernel-conformance" ] && continue
  echo "== $name (alone)"
  cargo test --locked -p "$name"
done
