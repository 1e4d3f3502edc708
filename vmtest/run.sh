#!/usr/bin/env bash
# The VM stage of nicslice's tests: runs the integration tests of the
# nicslice package inside qemu (TCG) booting Debian's stock kernel, which has
# what the development and CI kernels lack (ipvlan, ipvtap, dummy, 802.1Q).
#
#   vmtest/run.sh              every tests/*.rs of crates/cli (vm_* need the VM)
#   vmtest/run.sh vm_smoke ... only these test targets
#   vmtest/run.sh vm_reboot    two boots sharing a state disk (vmtest/lib/reboot.sh);
#                              every vm_reboot* target runs so, after the others
#
# Installs its host packages with apt-get when missing (needs root then),
# caches the kernel and the initramfs in <target dir>/vmtest-cache/.
# Environment: NICSLICE_VM_TIMEOUT (s, default 1500), NICSLICE_VM_MEMORY (MiB,
# default 1024), NICSLICE_VM_TEST_ARGS (extra test-harness arguments, e.g. a
# test name filter), NICSLICE_VM_QUIET=1 (do not stream the console).
# The VM has no network device; nothing on the host's network is touched.
set -euo pipefail

export PATH=$PATH:/usr/sbin:/sbin
VMTEST_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$VMTEST_DIR/.."

# shellcheck source=vmtest/lib/common.sh
source "$VMTEST_DIR/lib/common.sh"
# shellcheck source=vmtest/lib/kernel.sh
source "$VMTEST_DIR/lib/kernel.sh"
# shellcheck source=vmtest/lib/build.sh
source "$VMTEST_DIR/lib/build.sh"
# shellcheck source=vmtest/lib/image.sh
source "$VMTEST_DIR/lib/image.sh"
# shellcheck source=vmtest/lib/boot.sh
source "$VMTEST_DIR/lib/boot.sh"
# shellcheck source=vmtest/lib/reboot.sh
source "$VMTEST_DIR/lib/reboot.sh"

case "${1:-}" in
    -h | --help)
        sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
        exit 0
        ;;
esac

start=$(now)
command -v cargo >/dev/null || die "cargo is not on PATH"
ensure_host_tools
read_metadata
CACHE=${NICSLICE_VM_CACHE:-$TARGET_DIR/vmtest-cache}
mkdir -p "$CACHE"
# One run at a time per cache: the initramfs and the console log are shared.
exec 9>"$CACHE/.lock"
if ! flock -n 9; then
    say "waiting for another vmtest run to finish"
    flock 9
fi

if [ $# -gt 0 ]; then
    tests=("$@")
else
    tests=("${DEFAULT_TESTS[@]}")
fi
[ ${#tests[@]} -gt 0 ] || die "no test targets in crates/cli/tests"
single=() reboot=()
for t in "${tests[@]}"; do
    if is_reboot_test "$t"; then reboot+=("$t"); else single+=("$t"); fi
done

t=$(now)
fetch_kernel
resolve_modules
say "kernel $KERNEL_RELEASE ready in $(since "$t") s; modules: ${MODULE_NAMES[*]}"

failed=0
if [ ${#single[@]} -gt 0 ]; then
    t=$(now)
    build_tests "${single[@]}"
    say "built ${TEST_NAMES[*]} and nicslice in $(since "$t") s"

    t=$(now)
    build_initramfs
    say "initramfs ready in $(since "$t") s"

    t=$(now)
    boot_vm
    vm_time=$(since "$t")
    judge_run "$vm_time" || failed=1
fi
if [ ${#reboot[@]} -gt 0 ]; then
    run_two_boots "${reboot[@]}" || failed=1
fi

if [ $failed = 0 ]; then
    say "VM stage passed in $(since "$start") s"
else
    say "VM stage FAILED after $(since "$start") s"
    exit 1
fi
