# vmtest/lib/build.sh: the Rust side of the VM stage: which test targets run
# in the VM, building them and the nicslice binary, and where cargo put them.
# Sourced by vmtest/run.sh; defines functions only.

# Sets TARGET_DIR (cargo's target directory, honouring CARGO_TARGET_DIR and
# .cargo/config) and DEFAULT_TESTS (every integration test target of package
# nicslice: the vm_* ones need the VM's kernel, the others prove that what
# passes on the host's kernel passes on Debian's too).
read_metadata() {
    local meta
    meta=$(cargo metadata --format-version 1 --no-deps) || die "cargo metadata failed"
    # shellcheck disable=SC2034 # read by run.sh
    TARGET_DIR=$(jq -r '.target_directory' <<<"$meta")
    # shellcheck disable=SC2034 # read by run.sh
    mapfile -t DEFAULT_TESTS < <(jq -r '.packages[] | select(.name == "nicslice")
        | .targets[] | select(.kind | index("test")) | .name' <<<"$meta" | sort)
}

# Builds the test targets named in "$@" and, with them, the nicslice binary
# (integration tests always get it, for env!("CARGO_BIN_EXE_nicslice")). Sets
# TEST_NAMES/TEST_EXES (parallel arrays) and NICSLICE_EXE.
build_tests() {
    local args=() t json
    for t in "$@"; do
        args+=(--test "$t")
    done
    json=$CACHE/cargo-build.json
    if ! cargo test --no-run --message-format=json -p nicslice "${args[@]}" >"$json"; then
        # With JSON output the compiler's errors are in the JSON, not on stderr.
        jq -r 'select(.reason == "compiler-message" and .message.level == "error")
            | .message.rendered' "$json" >&2 || true
        die "cargo test --no-run -p nicslice ${args[*]} failed"
    fi
    TEST_NAMES=() TEST_EXES=()
    local name exe
    while read -r name exe; do
        TEST_NAMES+=("$name")
        TEST_EXES+=("$exe")
    done < <(jq -r 'select(.reason == "compiler-artifact" and .executable != null
        and .profile.test and (.target.kind | index("test"))) | "\(.target.name) \(.executable)"' "$json")
    for t in "$@"; do
        [[ " ${TEST_NAMES[*]} " == *" $t "* ]] || die "cargo built no test executable for $t"
    done
    NICSLICE_EXE=$(jq -r 'select(.reason == "compiler-artifact" and .executable != null
        and (.target.kind | index("bin")) and .target.name == "nicslice"
        and (.profile.test | not)) | .executable' "$json" | tail -n1)
    [ -n "$NICSLICE_EXE" ] && [ -x "$NICSLICE_EXE" ] \
        || die "cargo reported no nicslice binary (see $json)"
}
