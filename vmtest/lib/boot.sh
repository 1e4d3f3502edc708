# vmtest/lib/boot.sh: boots the VM under qemu (TCG, no network), keeps its
# serial console in a log file and judges the run from the markers vmtest/init
# prints. Sourced by vmtest/run.sh; defines functions only.

# Boots $KERNEL_IMAGE with $INITRAMFS. Sets CONSOLE_LOG and QEMU_STATUS.
# Optional: VM_CONSOLE (the log's name, default console.log), VM_APPEND (more
# kernel command line), VM_QEMU (an array of more qemu arguments).
boot_vm() {
    local timeout=${NICSLICE_VM_TIMEOUT:-1500}
    CONSOLE_LOG=$CACHE/${VM_CONSOLE:-console.log}
    say "booting $KERNEL_RELEASE under qemu (TCG, timeout ${timeout}s); console: $CONSOLE_LOG"
    local qemu=(
        qemu-system-x86_64 -accel tcg -m "${NICSLICE_VM_MEMORY:-1024}" -smp 2
        -nographic -no-reboot -nic none
        -kernel "$KERNEL_IMAGE" -initrd "$INITRAMFS"
        -append "console=ttyS0 quiet panic=-1${VM_APPEND:+ $VM_APPEND}"
        ${VM_QEMU[@]+"${VM_QEMU[@]}"}
    )
    # stdin from /dev/null: qemu leaves the terminal alone, and the VM reads
    # nothing from it. The console is streamed and logged without the serial
    # line's \r and the firmware's terminal escapes (which would hide markers).
    QEMU_STATUS=0
    timeout --kill-after=10 "$timeout" "${qemu[@]}" </dev/null 2>&1 \
        | sed -u -e 's/\r//g' -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' \
            -e 's/\x1b[()][0-9A-Za-z]//g' -e 's/\x1b[c78=>]//g' \
        | tee "$CONSOLE_LOG" \
        | if [ "${NICSLICE_VM_QUIET:-0}" = 1 ]; then cat >/dev/null; else sed 's/^/  | /'; fi \
        || QEMU_STATUS=${PIPESTATUS[0]}
}

# Reads CONSOLE_LOG and prints one line per test executable. Returns non-zero
# when a test failed, a marker is missing, a module did not load, or the
# kernel panicked.
judge_run() {
    local bad=0 i name rc line
    printf '\n== VM summary: kernel %s, %s s\n' "$KERNEL_RELEASE" "$1"
    if grep -q 'Kernel panic' "$CONSOLE_LOG"; then
        printf '  PANIC   %s\n' "$(grep -m1 'Kernel panic' "$CONSOLE_LOG")"
        bad=1
    fi
    if [ "$QEMU_STATUS" = 124 ] || [ "$QEMU_STATUS" = 137 ]; then
        printf '  TIMEOUT the VM did not finish within %ss\n' "${NICSLICE_VM_TIMEOUT:-1500}"
        bad=1
    elif [ "$QEMU_STATUS" != 0 ]; then
        printf '  QEMU    exited with status %s\n' "$QEMU_STATUS"
        bad=1
    fi
    if ! grep -q '^NICSLICE-VM-KERNEL ' "$CONSOLE_LOG"; then
        printf '  NO INIT the VM never reached /init\n'
        bad=1
    fi
    while IFS= read -r line; do
        printf '  MODULE  failed to load: %s\n' "${line#NICSLICE-VM-MODULE-FAILED }"
        bad=1
    done < <(grep '^NICSLICE-VM-MODULE-FAILED ' "$CONSOLE_LOG" || true)
    for i in "${!TEST_NAMES[@]}"; do
        name=${TEST_NAMES[$i]}
        rc=$(sed -n "s/^NICSLICE-VM-END $name rc=\([0-9]*\)\$/\1/p" "$CONSOLE_LOG" | tail -n1)
        if [ -n "$rc" ]; then
            if [ "$rc" = 0 ]; then
                printf '  ok      %s\n' "$name"
            else
                printf '  FAILED  %s (exit %s)\n' "$name" "$rc"
                bad=1
            fi
        elif grep -qx "NICSLICE-VM-BEGIN $name" "$CONSOLE_LOG"; then
            printf '  CRASHED %s (started, never ended: VM crash or timeout)\n' "$name"
            bad=1
        else
            printf '  MISSING %s (never started)\n' "$name"
            bad=1
        fi
    done
    if [ $bad = 0 ] && ! grep -qx 'NICSLICE-VM-DONE' "$CONSOLE_LOG"; then
        printf '  MISSING the end-of-run marker\n'
        bad=1
    fi
    [ $bad = 0 ] && printf '  all %s test executables passed\n' "${#TEST_NAMES[@]}"
    if [ $bad != 0 ]; then
        if [ "${NICSLICE_VM_QUIET:-0}" = 1 ]; then
            printf '  last lines of the console:\n'
            tail -n 40 "$CONSOLE_LOG" | sed 's/^/  | /'
        fi
        printf '  full console log: %s\n' "$CONSOLE_LOG"
    fi
    return $bad
}
