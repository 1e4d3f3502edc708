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

# CNI conformance: the reference plugins (Debian's containernetworking-plugins
# in /usr/lib/cni) run beside nicslice's; their absence fails the suite.
if [ ! -x /usr/lib/cni/macvlan ]; then
    echo "== installing the reference CNI plugins"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq containernetworking-plugins) >/dev/null
fi
export NICSLICE_REQUIRE_REFERENCE=1

# A real CNI runtime for crates/cli/tests/podman.rs: Podman with its CNI
# backend, runc (crun refuses this machine's hybrid cgroups), and a static
# busybox as the container's root.
static_busybox() { [ "$(dpkg-query -W -f='${Status}' busybox-static 2>/dev/null)" = "install ok installed" ]; }
if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! static_busybox; then
    echo "== installing podman, runc and busybox-static"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends podman runc conmon busybox-static) >/dev/null
fi
export NICSLICE_REQUIRE_PODMAN=1

# A real DHCP server for crates/cli/tests/dhcp.rs (dnsmasq, started by the
# test itself inside its switch namespace).
if ! command -v dnsmasq >/dev/null; then
    echo "== installing dnsmasq-base"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends dnsmasq-base) >/dev/null
fi
export NICSLICE_REQUIRE_DNSMASQ=1

# Real servers the tests start themselves in their own namespaces: etcd for
# the fleet pool (crates/cli/tests/fleet.rs, fleet_tls.rs). A service the package starts
# is not used (the tests run their own on their own addresses).
if ! command -v etcd >/dev/null; then
    echo "== installing etcd-server"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends etcd-server) >/dev/null
fi

# The openssl command makes the CA and certificates of the TLS fleet test
# (crates/cli/tests/fleet_tls.rs: etcd with --client-cert-auth).
if ! command -v openssl >/dev/null; then
    echo "== installing openssl"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends openssl) >/dev/null
fi

# strace counts the netlink writes of a second `nicslice apply` of the same
# file (crates/cli/tests/apply.rs: there must be none).
if ! command -v strace >/dev/null; then
    echo "== installing strace"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends strace) >/dev/null
fi

# The binary users get: `cargo build --release` (static and non-PIE by the
# workspace's .cargo/config.toml), without fault injection. Its hot-symbol
# list must still match it, and crates/cli/tests/release_build.rs runs it.
echo "== release build and its hot-symbol list"
release=$(cargo build --release --locked -p nicslice --message-format=json-render-diagnostics |
    sed -n 's/.*"executable":"\([^"]*\/release\/nicslice\)".*/\1/p' | tail -n1)
[ -x "$release" ] || { echo "scripts/test.sh: cargo reported no release nicslice binary" >&2; exit 1; }
scripts/check-hot-symbols.sh "$release"
export NICSLICE_RELEASE_BIN=$release NICSLICE_REQUIRE_RELEASE=1

echo "== unit and kernel tests"
cargo test --workspace --locked

# The vm_* tests pass as no-ops outside the VM: the stage itself must run.
if [ "${NICSLICE_SKIP_VM:-0}" = 1 ]; then
    echo "== VM stage skipped (NICSLICE_SKIP_VM=1)"
else
    echo "== VM stage (Debian kernel under qemu)"
    vmtest/run.sh
fi
