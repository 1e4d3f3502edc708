#!/usr/bin/env bash
# The whole test suite: unit tests, kernel tests in private network namespaces
# (root), lints, and the VM stage for what this kernel lacks (ipvlan, dummy,
# 802.1Q). Installs what it needs; safe to run on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/test.sh: the kernel tests create network namespaces and need root (try: sudo $0)" >&2
    exit 1
fi

echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== unit and kernel tests"
cargo test --workspace --locked

if [ -x vmtest/run.sh ] && [ "${NICSLICE_SKIP_VM:-0}" != 1 ]; then
    echo "== VM stage (Debian kernel under qemu)"
    vmtest/run.sh
fi
