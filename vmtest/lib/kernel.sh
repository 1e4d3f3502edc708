# vmtest/lib/kernel.sh: Debian's stock kernel for the VM, fetched with the
# system package manager (never installed) and unpacked into the cache; the
# kernel modules the tests need, with their dependencies in load order.
# Sourced by vmtest/run.sh; defines functions only.

# The link kinds nicslice uses and the VM must offer (the development and
# CI kernels lack ipvlan, ipvtap, dummy and 8021q).
VM_MODULES=(veth bridge dummy 8021q macvlan macvtap tap ipvlan ipvtap)

# Prints "PACKAGE VERSION" of the newest Debian amd64 kernel image the package
# lists know: the image linux-image-amd64 depends on, its -unsigned twin when
# there is one (same kernel and modules, no signed EFI stub needed here).
newest_kernel_package() {
    local image=""
    image=$(apt-cache show --no-all-versions linux-image-amd64 2>/dev/null \
        | sed -n 's/^Depends:.*\(linux-image-[0-9][^ ,]*-amd64\).*/\1/p' | head -n1) || true
    if [ -z "$image" ]; then
        # No metapackage: take the highest versioned image name instead.
        image=$(apt-cache pkgnames linux-image- 2>/dev/null \
            | grep -E '^linux-image-[0-9][0-9.]*-[0-9]+-amd64(-unsigned)?$' \
            | sed 's/-unsigned$//' | sort -uV | tail -n1) || true
    fi
    [ -n "$image" ] || return 1
    # One policy call for both; the unsigned package wins when it exists.
    apt-cache policy "$image-unsigned" "$image" 2>/dev/null | awk '
        /^[^ ]/ { pkg = $1; sub(/:$/, "", pkg) }
        $1 == "Candidate:" && $2 != "(none)" && !found { print pkg, $2; found = 1 }
        END { exit !found }'
}

# The newest complete kernel already in the cache, for offline runs.
newest_cached_kernel() {
    local d
    for d in "$CACHE"/kernel/*/; do
        [ -f "$d.complete" ] && printf '%s\n' "${d%/}"
    done | sort -V | tail -n1
}

# Sets KERNEL_DIR (the unpacked package), KERNEL_IMAGE (vmlinuz),
# KERNEL_RELEASE (uname -r) and KERNEL_MODDIR. Downloads and unpacks only
# when the newest version is not in the cache yet.
# Downloads and unpacks "$1" (PACKAGE VERSION) into the cache unless it is
# there already; sets dir. Returns non-zero when the download failed.
download_kernel() {
    local pkg version tmp deb=()
    read -r pkg version <<<"$1"
    dir=$CACHE/kernel/${pkg}_${version//:/%}
    [ -f "$dir/.complete" ] && return 0
    say "downloading $pkg $version (not installed, unpacked into the cache)"
    tmp=$CACHE/kernel/.download
    rm -rf "$tmp" "$dir"
    mkdir -p "$tmp"
    # apt-get download drops privileges to _apt, which cannot write
    # into our cache; this fetch needs no sandbox.
    if ! (cd "$tmp" && apt_quiet -o APT::Sandbox::User=root download "$pkg=$version"); then
        rm -rf "$tmp"
        return 1
    fi
    deb=("$tmp"/*.deb)
    rm -rf "$dir.part"
    dpkg-deb -x "${deb[0]}" "$dir.part"
    mv "$dir.part" "$dir"
    touch "$dir/.complete"
    rm -rf "$tmp"
    # Older kernels are of no further use; they take ~400 MB each.
    find "$CACHE/kernel" -mindepth 1 -maxdepth 1 -type d ! -path "$dir" -exec rm -rf {} +
}

fetch_kernel() {
    local found dir=""
    found=$(newest_kernel_package) || true
    # Stale package lists name a kernel the mirror no longer has (or none):
    # refresh them once and choose again.
    if [ -z "$found" ] || ! download_kernel "$found"; then
        say "refreshing the package lists to find the kernel package"
        apt_quiet update || true
        found=$(newest_kernel_package) || true
        if [ -n "$found" ] && ! download_kernel "$found"; then
            say "download of ${found% *} failed; trying the cache"
            dir=""
        fi
    fi
    if [ -z "${dir:-}" ] || [ ! -f "$dir/.complete" ]; then
        dir=$(newest_cached_kernel)
        [ -n "$dir" ] || die "no Debian kernel package found (apt-get update failed?) and none cached"
        say "using cached $(basename "$dir")"
    fi
    KERNEL_DIR=$dir
    KERNEL_IMAGE=""
    local f
    for f in "$dir"/boot/vmlinuz-*; do
        [ -f "$f" ] && KERNEL_IMAGE=$f
    done
    [ -n "$KERNEL_IMAGE" ] || die "no boot/vmlinuz-* in $dir"
    KERNEL_RELEASE=${KERNEL_IMAGE##*/vmlinuz-}
    KERNEL_MODDIR=""
    local m
    for m in "$dir/lib/modules/$KERNEL_RELEASE" "$dir/usr/lib/modules/$KERNEL_RELEASE"; do
        [ -d "$m" ] && KERNEL_MODDIR=$m
    done
    [ -n "$KERNEL_MODDIR" ] || die "no modules for $KERNEL_RELEASE in $dir"
}

# Sets MODNAME to the module name as the kernel spells it: the file name of
# $1 without .ko[.xz|.zst|.gz], dashes as underscores. (No subshell: it runs
# for each of the ~4000 modules.)
module_name() {
    local n=${1##*/}
    n=${n%.xz} n=${n%.zst} n=${n%.gz}
    n=${n%.ko}
    MODNAME=${n//-/_}
}

# Path of an uncompressed copy of module file $1 (busybox insmod and older
# modinfo builds read only plain ELF); decompresses once into the cache.
module_plain() {
    local src=$1 out
    case $src in
        *.ko) printf '%s\n' "$src"; return ;;
    esac
    module_name "$src"
    out=$KERNEL_DIR/.vmtest-ko/$MODNAME.ko
    if [ ! -f "$out" ]; then
        mkdir -p "${out%/*}"
        case $src in
            *.xz) ensure_packages xz-utils; xz -dc "$src" >"$out.part" ;;
            *.zst) ensure_packages zstd; zstd -dcq "$src" >"$out.part" ;;
            *.gz) gzip -dc "$src" >"$out.part" ;;
            *) die "unknown module compression: $src" ;;
        esac
        mv "$out.part" "$out"
    fi
    printf '%s\n' "$out"
}

declare -A MOD_FILE=() MOD_BUILTIN=() MOD_SEEN=()
MODULES=()       # plain .ko files, dependencies before their users
MODULE_NAMES=()  # the same, by name

add_module() {
    local name=${1//-/_} src ko deps d
    [ -n "${MOD_SEEN[$name]:-}" ] && return 0
    MOD_SEEN[$name]=1
    src=${MOD_FILE[$name]:-}
    if [ -z "$src" ]; then
        [ -n "${MOD_BUILTIN[$name]:-}" ] && return 0
        die "kernel $KERNEL_RELEASE has no module $name (and it is not built in)"
    fi
    ko=$(module_plain "$src")
    deps=$(modinfo -F depends "$ko") || die "modinfo $ko failed"
    for d in ${deps//,/ }; do
        add_module "$d"
    done
    MODULES+=("$ko")
    MODULE_NAMES+=("$name")
}

# Fills MODULES with VM_MODULES and everything they depend on, read from the
# modules themselves (the package ships no modules.dep: depmod runs at install).
resolve_modules() {
    local f
    while IFS= read -r -d '' f; do
        module_name "$f"
        MOD_FILE[$MODNAME]=$f
    done < <(find "$KERNEL_MODDIR/kernel" -type f \( -name '*.ko' -o -name '*.ko.xz' \
        -o -name '*.ko.zst' -o -name '*.ko.gz' \) -print0)
    if [ -f "$KERNEL_MODDIR/modules.builtin" ]; then
        while IFS= read -r f; do
            module_name "$f"
            MOD_BUILTIN[$MODNAME]=1
        done <"$KERNEL_MODDIR/modules.builtin"
    fi
    for f in "${VM_MODULES[@]}"; do
        add_module "$f"
    done
}
