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
# room (--no-remove): on a conflict it stops and says so. APT_BACKPORTS, when
# set, is a directory of sources that adds the backports suite, preferred for
# this call only (see qemu_from_backports).
ensure_packages() {
    local missing=() p
    for p in "$@"; do
        pkg_installed "$p" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || die "missing packages ${missing[*]}; run as root or install them"
    say "installing ${missing[*]}"
    local opts=()
    if [ -n "${APT_BACKPORTS:-}" ]; then
        opts=(-o "Dir::Etc::SourceParts=$APT_BACKPORTS" -t "$(os_codename)-backports")
    fi
    local install=("${opts[@]}" install -y --no-install-recommends --no-remove "${missing[@]}")
    if ! apt_quiet "${install[@]}" >/dev/null 2>&1; then
        apt_quiet "${opts[@]}" update || true
        apt_quiet "${install[@]}" >/dev/null || die "apt-get install ${missing[*]} failed" \
            "(if it conflicts with an installed package, install an equivalent yourself)"
    fi
}

os_codename() { (. /etc/os-release && echo "${VERSION_CODENAME:-}"); }

# qemu-system-x86 must come from the release of an installed qemu-utils: a
# machine may carry qemu-utils from backports (this project's machines do),
# whose Breaks keep the stable qemu-system out, so that apt would remove
# qemu-utils. When qemu-utils is a backport, this sets APT_BACKPORTS to a
# private copy of the system's sources plus the backports suite; /etc/apt is
# never changed.
qemu_from_backports() {
    local version
    version=$(dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null) || return 0
    pkg_installed qemu-utils || return 0
    case "$version" in *~bpo*) ;; *) return 0 ;; esac
    [ -n "$(os_codename)" ] || die "qemu-utils $version is a backport, but /etc/os-release names no codename"
    APT_BACKPORTS=$(mktemp -d /tmp/nicslice-vmtest-apt.XXXXXX)
    cp /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list "$APT_BACKPORTS"/ 2>/dev/null || true
    cat >"$APT_BACKPORTS/nicslice-backports.sources" <<EOS
Types: deb
URIs: http://deb.debian.org/debian
Suites: $(os_codename)-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOS
}

# The host tools of the VM stage: qemu, a static busybox for the VM's
# userland, modinfo (kmod) to read module dependencies, cpio for the
# initramfs, jq for cargo's JSON. A tool already on PATH is used as it is
# (qemu from backports, say), whichever package brought it.
ensure_host_tools() {
    local need=()
    if ! command -v qemu-system-x86_64 >/dev/null; then
        need+=(qemu-system-x86)
        qemu_from_backports
    fi
    command -v modinfo >/dev/null || need+=(kmod)
    command -v cpio >/dev/null || need+=(cpio)
    command -v jq >/dev/null || need+=(jq)
    # The VM has no libc: its busybox must be the static build.
    pkg_installed busybox-static || need+=(busybox-static)
    # vm_dhcp's DHCP server, copied into the initramfs (image.sh).
    [ -x /usr/sbin/dnsmasq ] || need+=(dnsmasq-base)
    ensure_packages "${need[@]}"
    if [ -n "${APT_BACKPORTS:-}" ]; then
        rm -rf "$APT_BACKPORTS"
        unset APT_BACKPORTS
    fi
    [ -x /bin/busybox ] || die "busybox-static is installed but /bin/busybox is missing"
}
