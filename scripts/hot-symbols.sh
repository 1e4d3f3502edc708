#!/usr/bin/env bash
# Regenerates crates/cli/hot-symbols.txt, the functions a CNI call runs, which
# release builds place together (see crates/cli/build.rs). Run it after
# changing the CNI path; a stale list only loses some of the gain.
#
# It builds the static release binary of the benchmark, makes a private world
# (a host namespace with a veth parent, a container namespace; both deleted
# at the end), runs nicslice-macvlan ADD and DEL four times in a range of two
# addresses (a new lease database, an existing one, then the steady state of a
# busy node: the range walked, released addresses reused) under valgrind's
# callgrind with children traced, and
# keeps every function name callgrind saw. valgrind's CPU has no AVX-512, so
# glibc's string functions are listed in all their variants.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" -eq 0 ] || { echo "hot-symbols.sh: needs root (network namespaces)" >&2; exit 1; }
command -v valgrind >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null

target=x86_64-unknown-linux-gnu
NICSLICE_NO_SYMBOL_ORDER=1 RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static" \
    cargo build --release --target "$target" -p nicslice
bin=$PWD/target/$target/release/nicslice

tmp=$(mktemp -d /tmp/nicslice-hot.XXXXXX)
pfx=nslhot$$
cleanup() {
    ip netns del "$pfx-h" 2>/dev/null || true
    ip netns del "$pfx-c" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
ip netns add "$pfx-h"
ip netns add "$pfx-c"
ip -n "$pfx-h" link add eth0 type veth peer name peer0
ip -n "$pfx-h" link set eth0 up
ip -n "$pfx-h" link set peer0 up
ip -n "$pfx-h" addr add 192.168.0.254/24 dev eth0

ln -s "$bin" "$tmp/nicslice-macvlan"
ln -s "$bin" "$tmp/nicslice-ipam"
cat >"$tmp/conf.json" <<EOF
{ "cniVersion": "1.1.0", "name": "hot", "type": "nicslice-macvlan", "master": "eth0", "mode": "bridge",
  "ipam": { "type": "nicslice-ipam", "subnet": "192.168.0.0/24", "gateway": "192.168.0.1",
            "rangeStart": "192.168.0.10", "rangeEnd": "192.168.0.11", "dataDir": "$tmp/ipam" } }
EOF
for round in 1 2 3 4; do
    for verb in ADD DEL; do
        ip netns exec "$pfx-h" env -i PATH=/usr/bin:/bin CNI_COMMAND=$verb CNI_CONTAINERID=hot$round \
            CNI_NETNS=/run/netns/$pfx-c CNI_IFNAME=eth0 CNI_PATH="$tmp" \
            valgrind --tool=callgrind --trace-children=yes --demangle=no \
            --callgrind-out-file="$tmp/cg.$verb.$round.%p" "$tmp/nicslice-macvlan" \
            <"$tmp/conf.json" >"$tmp/out.$verb.$round" 2>"$tmp/vg.$verb.$round" ||
            { echo "$verb failed: $(cat "$tmp/out.$verb.$round")" >&2; exit 1; }
    done
done

out=crates/cli/hot-symbols.txt
{
    cat "$tmp"/cg.* | grep -oE "^c?fn=\([0-9]+\) [^ ]+" | awk '{print $2}' |
        grep -v '^0x' | grep -v '^(below' | sed "s/'[0-9]*\$//"
    nm "$bin" | awk '{print $3}' |
        grep -E '^__(mem|str|wcs|wmem|raw)[a-z]*_(avx|evex|sse|erms)' || true
} | sort -u >"$out"
echo "hot-symbols.sh: $(wc -l <"$out") functions in $out"
