#!/usr/bin/env bash
# Fuzzes the parsers that take outside input (issue 16), for SECONDS in all
# (default 600), split between the targets: the CNI network configuration
# (NetConf, LinkConf, IpamConf: 40%), CNI_ARGS (20%) and the topology files
# of `nicslice explain` (40%). Not part of scripts/test.sh: a run is long.
#
# The targets are proptest runs (fuzz/driver.rs) built with the `fuzz`
# profile: optimized, with overflow checks. Seeds are in fuzz/corpus/; a
# failing input is shrunk and saved to fuzz/regressions/TARGET/ (commit it:
# the normal tests replay both directories), and the run stops non-zero.
# FUZZ_SEED=N makes a run reproducible.
#
# Usage: scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."

total="${1:-600}"
case "$total" in
    '' | *[!0-9]*) echo "scripts/fuzz.sh: SECONDS must be a whole number, not '$total'" >&2; exit 2 ;;
esac
conf=$((total * 40 / 100))
args=$((total * 20 / 100))
topology=$((total - conf - args))

export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
echo "== building the fuzz targets (profile fuzz)"
cargo test --profile fuzz --locked -p nicslice-cni --test fuzz --no-run
cargo test --profile fuzz --locked -p nicslice-model --test fuzz_topology --no-run

run() { # SECONDS PACKAGE TEST FILTER
    echo "== fuzz $4 for $1 s"
    FUZZ_SECONDS="$1" cargo test --profile fuzz --locked -q -p "$2" --test "$3" "$4" \
        -- --ignored --exact --nocapture --test-threads 1
}
run "$conf" nicslice-cni fuzz fuzz_cni_conf
run "$args" nicslice-cni fuzz fuzz_cni_args
run "$topology" nicslice-model fuzz_topology fuzz_topology
echo "== fuzz: done, no failure"
