#!/usr/bin/env bash
# Regenerates crates/cli/hot-symbols.txt, the functions a CNI call runs, then
# those `nicslice attach` and `detach` run besides, which release builds place
# together (see crates/cli/build.rs). Run it (as root, about 2 minutes plus a
# release build) after changing the CNI path or the attach path:
#
#   scripts/hot-symbols.sh
#
# A stale list loses the layout without a word from the linker;
# scripts/check-hot-symbols.sh, part of scripts/test.sh, fails when more than
# a tenth of it is missing from the release binary.
#
# It builds the release binary without the present order, makes a private world
# (a host namespace with a veth parent, a container namespace; both deleted
# at the end; the lease database in /run, as by default), runs
# nicslice-macvlan ADD and DEL four times in a range of two addresses (a new
# lease database, an existing one, then the steady state of a busy node: the
# range walked, released addresses reused), with the benchmark's configuration
# (cniVersion 1.0.0, a default route from IPAM) and then a 1.1.0 one, then two
# pods with `hostAccess` (the first ADD makes the shim, the second routes
# through the shim it finds, as the benchmark's hostAccess ADD does), under
# valgrind's callgrind with children traced, and keeps every function name
# callgrind saw, ADD's first. valgrind's CPU has no AVX-512: glibc's string
# functions of the native CPU come from perf samples of native runs, and the
# other variants follow ADD's code. The static data an ADD touches (from a
# valgrind lackey trace of its memory accesses) is listed too: the linker
# packs it in fewer pages of .data and .bss, each written page a fault.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" -eq 0 ] || { echo "hot-symbols.sh: needs root (network namespaces)" >&2; exit 1; }
command -v valgrind >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null

# The release build users get (static, non-PIE: .cargo/config.toml), laid
# out without the list being replaced; the path as cargo reports it.
release_build() {
    cargo build --release --locked -p nicslice --message-format=json-render-diagnostics |
        sed -n 's/.*"executable":"\([^"]*\/release\/nicslice\)".*/\1/p' | tail -n1
}
bin=$(NICSLICE_NO_SYMBOL_ORDER=1 release_build)
[ -x "$bin" ] || { echo "hot-symbols.sh: cargo reported no release nicslice binary" >&2; exit 1; }

tmp=$(mktemp -d /run/nicslice-hot.XXXXXX)
pfx=nslhot$$
cleanup() {
    ip netns del "$pfx-h" 2>/dev/null || true
    ip netns del "$pfx-c" 2>/dev/null || true
    ip netns del "$pfx-c2" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
ip netns add "$pfx-h"
ip netns add "$pfx-c"
ip netns add "$pfx-c2"
ip -n "$pfx-h" link add eth0 type veth peer name peer0
ip -n "$pfx-h" link set eth0 up
ip -n "$pfx-h" link set peer0 up
ip -n "$pfx-h" addr add 192.168.0.254/24 dev eth0

ln -s "$bin" "$tmp/nicslice-macvlan"
ln -s "$bin" "$tmp/nicslice-ipam"
# The benchmark's configuration (crates/bench/src/cni/mod.rs), then the newest version's.
write_conf() {
    cat >"$tmp/conf.json" <<EOF
{ "cniVersion": "$1", "name": "hot", "type": "nicslice-macvlan", "master": "eth0", "mode": "bridge", ${3:-}
  "ipam": { "type": "nicslice-ipam", "subnet": "192.168.0.0/24", "gateway": "192.168.0.1",
            "rangeStart": "192.168.0.10", "rangeEnd": "192.168.0.11", $2 "dataDir": "$tmp/ipam" } }
EOF
}
# One call of `verb` in round `round` under valgrind with the options given.
call() {
    local verb=$1 round=$2
    shift 2
    ip netns exec "$pfx-h" env -i PATH=/usr/bin:/bin CNI_COMMAND=$verb CNI_CONTAINERID=hot$round \
        CNI_NETNS=/run/netns/${NETNS:-$pfx-c} CNI_IFNAME=eth0 CNI_PATH="$tmp" \
        valgrind "$@" "$tmp/nicslice-macvlan" \
        <"$tmp/conf.json" >"$tmp/out.$verb.$round" 2>"$tmp/vg.$verb.$round" ||
        { echo "$verb failed: $(cat "$tmp/out.$verb.$round")" >&2; exit 1; }
}
for round in 1 2 3 4; do
    if [ "$round" -le 2 ]; then write_conf 1.0.0 '"routes": [{"dst": "0.0.0.0/0"}],'; else write_conf 1.1.0 ""; fi
    for verb in ADD DEL; do
        call $verb $round --tool=callgrind --trace-children=yes --demangle=no \
            --callgrind-out-file="$tmp/cg.$verb.$round.%p"
    done
done
write_conf 1.0.0 '"routes": [{"dst": "0.0.0.0/0"}],' '"hostAccess": true,'
for step in "ADD 5 $pfx-c" "ADD 6 $pfx-c2" "DEL 6 $pfx-c2" "DEL 5 $pfx-c"; do
    set -- $step
    NETNS=$3 call "$1" "$2" --tool=callgrind --trace-children=yes --demangle=no \
        --callgrind-out-file="$tmp/cg.$1.$2.%p"
done
# `nicslice attach` and `detach` (scripts/bench-attach.py's commands): a
# state database of their own, a network on the same parent, the container's
# namespace (its CNI links are gone). Their code goes after CNI's: 153 page
# faults an attach instead of 191 when it was scattered through the binary.
ip netns exec "$pfx-h" "$bin" --state "$tmp/state.db" network create hot --parent eth0 \
    --mode bridge --subnet 192.168.0.0/24 --gateway 192.168.0.1 >/dev/null
for round in 1 2; do
    for verb in attach detach; do
        ip netns exec "$pfx-h" valgrind --tool=callgrind --demangle=no \
            --callgrind-out-file="$tmp/cg.$verb.$round" \
            "$bin" --state "$tmp/state.db" $verb hot --netns "$pfx-c" \
            >"$tmp/out.$verb.$round" 2>"$tmp/vg.$verb.$round" ||
            { echo "$verb failed: $(cat "$tmp/out.$verb.$round" "$tmp/vg.$verb.$round")" >&2; exit 1; }
    done
done
# Every load and store of one ADD (the benchmark's configuration, an existing database).
write_conf 1.0.0 '"routes": [{"dst": "0.0.0.0/0"}],'
call ADD 7 --tool=lackey --trace-mem=yes --log-file="$tmp/lackey.txt"
call DEL 7 --tool=none

# Run natively, glibc takes paths valgrind's CPU does not (its start-up code
# by CPU vendor, the string functions of this CPU): 100 native ADDs are
# sampled with perf, and every function of the binary seen in them is added.
: >"$tmp/native.txt"
if command -v perf >/dev/null; then
    # ADD and DEL in turn; each ADD's pid (kept through exec) goes to add.pids.
    cat >"$tmp/native.sh" <<'SH'
dir=$1 netns=$2
for i in $(seq 1 100); do
    sh -c 'echo $$ >>"$1/add.pids"; exec env -i CNI_COMMAND=ADD CNI_CONTAINERID="native$3" \
        CNI_NETNS="/run/netns/$2" CNI_IFNAME=eth0 CNI_PATH="$1" "$1/nicslice-macvlan"' \
        sh "$dir" "$netns" "$i" <"$dir/conf.json" >/dev/null
    env -i CNI_COMMAND=DEL CNI_CONTAINERID="native$i" CNI_NETNS="/run/netns/$netns" \
        CNI_IFNAME=eth0 CNI_PATH="$dir" "$dir/nicslice-macvlan" <"$dir/conf.json" >/dev/null
done
SH
    : >"$tmp/add.pids"
    ip netns exec "$pfx-h" perf record -q -F 20000 -e cpu-clock -o "$tmp/perf.data" -- \
        sh "$tmp/native.sh" "$tmp" "$pfx-c" 2>/dev/null
    perf script -i "$tmp/perf.data" -F pid,ip,sym 2>/dev/null |
        awk 'NR == FNR { add[$1] = 1; next } ($1 in add) && NF >= 3 { print $3 }' "$tmp/add.pids" - |
        sort -u | comm -12 - <(nm "$bin" | awk '{print $3}' | sort -u) >"$tmp/native.txt" || true
fi

out=crates/cli/hot-symbols.txt
# The functions callgrind saw in the given runs, one per line.
seen() {
    cat "$@" | grep -oE "^c?fn=\([0-9]+\) [^ ]+" | awk '{print $2}' |
        grep -v '^0x' | grep -v '^(below' | sed "s/'[0-9]*\$//" | sort -u
}
# glibc's string functions by CPU feature: only those run natively belong with ADD's code.
variants='^__(mem|str|wcs|wmem|raw)[a-z]*_(avx|evex|sse|erms)'
# The named static data (.data, .bss, .data.rel.ro, .tdata, .tbss) the lackey
# trace touched: each address looked up in nm's list, sorted by address.
nm -S -n --defined-only "$bin" | awk 'NF == 4 && $3 ~ /^[bBdDvV]$/ {print $1, $2, $4}' >"$tmp/data-syms.txt"
grep -E '^ [LSM] ' "$tmp/lackey.txt" | awk '{ split($2, a, ","); print a[1] }' | sort -u |
    python3 -c '
import bisect, sys
syms = [(int(a, 16), int(a, 16) + int(z, 16), n) for a, z, n in (l.split() for l in open(sys.argv[1]))]
starts = [s[0] for s in syms]
for line in sys.stdin:
    x = int(line, 16)
    i = bisect.bisect_right(starts, x) - 1
    if i >= 0 and x < syms[i][1]:
        print(syms[i][2])' "$tmp/data-syms.txt" | sort -u >"$tmp/data.txt"
# ADD's functions first, then those only DEL runs: the code of an ADD, the
# call whose speed is measured against the kernel's, lies in the fewest pages.
{ seen "$tmp"/cg.ADD.* | grep -vE "$variants"; cat "$tmp/native.txt"; } | sort -u >"$tmp/add.txt"
{
    cat "$tmp/add.txt"
    nm "$bin" | awk '{print $3}' | grep -E "$variants" | sort -u || true
    seen "$tmp"/cg.DEL.* | comm -23 - "$tmp/add.txt"
    cat "$tmp/data.txt"
    # attach's functions, then detach's, where CNI's list has them not.
    seen "$tmp"/cg.attach.*
    seen "$tmp"/cg.detach.*
} | awk '!seen[$0]++' >"$out"
echo "hot-symbols.sh: $(wc -l <"$out") symbols in $out ($(wc -l <"$tmp/add.txt") of ADD's functions," \
    "$(wc -l <"$tmp/data.txt") of its static data," \
    "$(comm -23 "$tmp/native.txt" <(seen "$tmp"/cg.ADD.*) | wc -l) seen only natively)"
# The release binary again, laid out by the new list (the build above left
# one without any order in the target directory), and the list checked on it.
bin=$(release_build)
scripts/check-hot-symbols.sh "$bin"
