# vmtest/lib/reboot.sh: the two-boot run of the test targets named vm_reboot*:
# a raw disk image with an empty ext4 file system is made on the host, and the
# VM boots twice with it (nicslice.boot=1, then 2); vmtest/init mounts it on
# /var/lib/nicslice, nicslice's state directory, so the second boot starts
# with what the first one recorded and nothing else: a real reboot.
# Sourced by vmtest/run.sh; defines functions only.

# Modules a disk needs in the VM (Debian builds them as modules), with
# crc32c, which ext4 asks the crypto API for by name (no modprobe in the VM).
REBOOT_MODULES=(virtio_pci virtio_blk crc32c_generic ext4)

# True when test target $1 runs in two boots.
is_reboot_test() { [[ $1 == vm_reboot* ]]; }

# Builds, boots twice and judges the targets in "$@". Returns non-zero when
# either boot failed.
run_two_boots() {
    local t boot disk bad=0
    # Read by boot_vm (dynamic scope).
    local VM_CONSOLE VM_APPEND VM_QEMU=()
    for t in "${REBOOT_MODULES[@]}"; do
        add_module "$t"
    done
    t=$(now)
    build_tests "$@"
    build_initramfs initramfs-reboot
    say "two-boot run of $* ready in $(since "$t") s"
    command -v mkfs.ext4 >/dev/null || ensure_packages e2fsprogs
    disk=$CACHE/reboot-disk.img
    rm -f "$disk"
    truncate -s 64M "$disk"
    # No metadata checksums: nothing in the VM needs them, and the file
    # system stays mountable with the modules above alone.
    mkfs.ext4 -q -F -O ^metadata_csum -L nicslice-state "$disk"
    for boot in 1 2; do
        t=$(now)
        VM_CONSOLE=console-boot$boot.log
        VM_APPEND="nicslice.boot=$boot"
        VM_QEMU=(-drive "file=$disk,format=raw,if=virtio")
        boot_vm
        if ! grep -q "^NICSLICE-VM-DISK boot=$boot mounted" "$CONSOLE_LOG"; then
            say "boot $boot: the state disk was not mounted"
            bad=1
        fi
        judge_run "$(since "$t")" || bad=1
        [ $bad = 0 ] || break
    done
    return $bad
}
