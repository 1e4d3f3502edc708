# vmtest/lib/common.sh: messages and the host packages the VM stage needs.
# Sourced by vmtest/run.sh; defines functions only.

say() { printf 'vmtest: %s\n' "$*" >&2; }
die() {
    printf 'vmtest: error: %s\n' "$*" >&2
    exit 1
}

# Seconds since the epoch with milliseconds, for the timings we print.
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

pkg_installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

# apt-get with the options every call of ours wants: no questions, no noise.
apt_quiet() {
    DEBIAN_FRONTEND=noninteractive apt-get -qq -o=Dpkg::Use-Pty=0 "$@"
}

# Installs the named Debian packages that are not installed yet; silent when
# all are. Refreshes the package lists once if the first attempt fails (a
# fresh machine or container often has none). Never removes a package to make
# room (--no-remove): on a conflict it stops and says so.
ensure_packages() {
    local missing=() p
    for p in "$@"; do
        pkg_installed "$p" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || die "missing packages ${missing[*]}; run as root or install them"
    say "installing ${missing[*]}"
    local install=(install -y --no-install-recommends --no-remove "${missing[@]}")
    if ! apt_quiet "${install[@]}" >/dev/null 2>&1; then
        apt_quiet update || true
        apt_quiet "${install[@]}" >/dev/null || die "apt-get install ${missing[*]} failed" \
            "(if it conflicts with an installed package, install an equivalent yourself)"
    fi
}

# The host tools of the VM stage: qemu, a static busybox for the VM's
# userland, modinfo (kmod) to read module dependencies, cpio for the
# initramfs, jq for cargo's JSON. A tool already on PATH is used as it is
# (qemu from backports, say), whichever package brought it.
ensure_host_tools() {
    local need=()
    command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
    command -v modinfo >/dev/null || need+=(kmod)
    command -v cpio >/dev/null || need+=(cpio)
    command -v jq >/dev/null || need+=(jq)
    # The VM has no libc: its busybox must be the static build.
    pkg_installed busybox-static || need+=(busybox-static)
    ensure_packages "${need[@]}"
    [ -x /bin/busybox ] || die "busybox-static is installed but /bin/busybox is missing"
}
