# vmtest/lib/image.sh: the VM's initramfs: static busybox, vmtest/init, the
# kernel modules, and the test executables and nicslice binary at their exact
# host paths (the tests run env!("CARGO_BIN_EXE_nicslice")) with the shared
# libraries they load. Rebuilt only when one of its inputs changed.
# Sourced by vmtest/run.sh; defines functions only.

# Shared libraries (and the dynamic loader) of the executables in "$@". The
# workspace's builds are static (.cargo/config.toml): ldd then names none and
# fails, which must not end the loop (pipefail) before a dynamic one.
shared_libraries() {
    local exe
    for exe in "$@"; do
        { ldd "$exe" 2>/dev/null || true; } | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'
    done | sort -u
}

# Copies $1 to the same absolute path under $2, following symlinks.
copy_at_path() {
    mkdir -p "$2$(dirname "$1")"
    cp -L "$1" "$2$1"
}

# Copies executable $1 to its path under $2 without debug info: the debug
# builds carry hundreds of MB of it, which the VM would load into RAM. The
# symbol table stays, so backtraces still name functions.
copy_executable() {
    mkdir -p "$2$(dirname "$1")"
    if command -v objcopy >/dev/null; then
        objcopy --strip-debug "$1" "$2$1"
    else
        cp -L "$1" "$2$1"
    fi
}

# Builds $CACHE/initramfs.cpio from the state set by fetch_kernel,
# resolve_modules and build_tests, unless the one there has the same inputs.
# Sets INITRAMFS; named $1 (default initramfs), so that two kinds of run
# keep one each.
build_initramfs() {
    local libs manifest hash stamp root f i servers=()
    INITRAMFS=$CACHE/${1:-initramfs}.cpio
    stamp=$INITRAMFS.sha256
    # The DHCP server vm_dhcp starts, when the host has it.
    [ -x /usr/sbin/dnsmasq ] && servers+=(/usr/sbin/dnsmasq)
    # Host tools some tests run, at their host paths (before busybox's in
    # PATH): strace (apply.rs counts netlink writes with it), iproute2's ip
    # and bridge (busybox's ip has no netns, -n or nodad, and no bridge port
    # flags: doctor_wire.rs).
    for f in /usr/bin/strace /usr/sbin/ip /usr/sbin/bridge; do
        if [ -x "$f" ]; then servers+=("$f"); fi
    done
    mapfile -t libs < <(shared_libraries "$NICSLICE_EXE" "${TEST_EXES[@]}" "${servers[@]}")

    # What goes in, and from where: the manifest and the content of every
    # input make the hash; the harness scripts count as inputs too.
    manifest=${INITRAMFS%.cpio}.manifest
    {
        printf 'kernel %s\n' "$KERNEL_RELEASE"
        printf 'nicslice %s\n' "$NICSLICE_EXE"
        for i in "${!TEST_NAMES[@]}"; do
            printf 'test %s %s\n' "${TEST_NAMES[$i]}" "${TEST_EXES[$i]}"
        done
        printf 'lib %s\n' "${libs[@]}"
        printf 'server %s\n' "${servers[@]}"
        printf 'module %s\n' "${MODULES[@]}"
        printf 'test-args %s\n' "${NICSLICE_VM_TEST_ARGS:-}"
    } >"$manifest"
    hash=$(
        {
            cat "$manifest"
            sha256sum /bin/busybox "$NICSLICE_EXE" "${TEST_EXES[@]}" "${libs[@]}" "${servers[@]}" \
                "${MODULES[@]}" "$VMTEST_DIR"/init "$VMTEST_DIR"/lib/*.sh
        } | sha256sum | cut -d' ' -f1
    )
    if [ -f "$INITRAMFS" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$hash" ]; then
        say "initramfs unchanged, reused"
        return 0
    fi

    root=${INITRAMFS%.cpio}.root
    rm -rf "$root"
    mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,run,tmp,root,etc,vmtest} \
        "$root/lib/modules/$KERNEL_RELEASE"
    cp /bin/busybox "$root/bin/busybox"
    cp "$VMTEST_DIR/init" "$root/init"
    chmod 0755 "$root/init"
    for f in "${libs[@]}"; do
        copy_at_path "$f" "$root"
    done
    copy_executable "$NICSLICE_EXE" "$root"
    for f in "${servers[@]}"; do
        copy_executable "$f" "$root"
    done
    : >"$root/vmtest/tests"
    for i in "${!TEST_NAMES[@]}"; do
        copy_executable "${TEST_EXES[$i]}" "$root"
        printf '%s %s\n' "${TEST_NAMES[$i]}" "${TEST_EXES[$i]}" >>"$root/vmtest/tests"
    done
    : >"$root/vmtest/modules"
    for f in "${MODULES[@]}"; do
        cp "$f" "$root/lib/modules/$KERNEL_RELEASE/"
        printf '/lib/modules/%s/%s\n' "$KERNEL_RELEASE" "${f##*/}" >>"$root/vmtest/modules"
    done
    printf '%s\n' "${NICSLICE_VM_TEST_ARGS:-}" >"$root/vmtest/test-args"
    printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
    printf 'root:x:0:\n' >"$root/etc/group"

    # Uncompressed: under TCG the kernel would spend longer inflating it than
    # qemu spends loading the larger file.
    (cd "$root" && find . -print0 | LC_ALL=C sort -z \
        | cpio --null --create --format=newc --owner=0:0 --quiet) >"$INITRAMFS.part"
    mv "$INITRAMFS.part" "$INITRAMFS"
    printf '%s\n' "$hash" >"$stamp"
    rm -rf "$root"
    say "initramfs built: $(du -h "$INITRAMFS" | cut -f1)"
}
