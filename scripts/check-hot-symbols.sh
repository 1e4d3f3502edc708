#!/usr/bin/env bash
# Fails when crates/cli/hot-symbols.txt has gone stale: when more than a tenth
# of the names it lists are missing from the release binary given (LLD skips
# names it does not find without a word, --no-warn-symbol-ordering, so a stale
# list would silently lose the layout README's figures depend on). Names with
# hashes change with the code and the toolchain; regenerate the list with
# scripts/hot-symbols.sh.
#
#   scripts/check-hot-symbols.sh target/x86_64-unknown-linux-gnu/release/nicslice
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${1:?usage: scripts/check-hot-symbols.sh RELEASE_NICSLICE_BINARY}
list=crates/cli/hot-symbols.txt
command -v nm >/dev/null || { echo "check-hot-symbols.sh: nm (binutils) is needed" >&2; exit 1; }
listed=$(sort -u "$list" | wc -l)
missing=$(sort -u "$list" | comm -23 - <(nm "$bin" | awk '{print $NF}' | sort -u) | wc -l)
echo "hot symbols: $missing of the $listed names in $list are missing from $bin"
if [ $((missing * 10)) -gt "$listed" ]; then
    echo "hot symbols: more than a tenth of the list is stale; regenerate it (root, about" \
        "2 min): scripts/hot-symbols.sh" >&2
    exit 1
fi
