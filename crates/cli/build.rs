//! Release builds of the `nicslice` binary lay out the code a CNI call runs,
//! then the rest of what `attach` and `detach` run (listed in
//! `hot-symbols.txt`, made by `scripts/hot-symbols.sh`), together at the
//! start of `.text`. A CNI plugin is one short-lived process per call:
//! the kernel maps the binary's pages around each one the call touches, so
//! scattered hot code costs page faults and resident memory (nicslice-bench cni: peak
//! RSS 4.2 -> 2.2 MiB, ADD about 0.15 ms faster). Only the order changes;
//! names the list no longer matches are skipped. Needs LLD, rustc's default
//! linker on x86_64 Linux since 1.90; `NICSLICE_NO_SYMBOL_ORDER=1` opts out.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=hot-symbols.txt");
    println!("cargo:rerun-if-env-changed=NICSLICE_NO_SYMBOL_ORDER");
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    let wanted = env("PROFILE") == "release"
        && env("NICSLICE_NO_SYMBOL_ORDER") != "1"
        && env("TARGET").starts_with("x86_64-unknown-linux-gnu")
        && rustc_links_with_lld()
        // A linker of the user's own may not know the option.
        && !env("CARGO_ENCODED_RUSTFLAGS").contains("linker")
        && !env("CARGO_ENCODED_RUSTFLAGS").contains("fuse-ld");
    let list = Path::new(&env("CARGO_MANIFEST_DIR")).join("hot-symbols.txt");
    if wanted && list.exists() {
        let arg = format!("-Wl,--symbol-ordering-file={}", list.display());
        println!("cargo:rustc-link-arg-bin=nicslice={arg}");
        println!("cargo:rustc-link-arg-bin=nicslice=-Wl,--no-warn-symbol-ordering");
    }
}

/// rustc 1.90 and later link x86_64 Linux binaries with its bundled LLD.
fn rustc_links_with_lld() -> bool {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(out) = std::process::Command::new(rustc).arg("-V").output() else { return false };
    let text = String::from_utf8_lossy(&out.stdout);
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let minor = text.split_whitespace().nth(1).and_then(|v| v.split('.').nth(1));
    minor.and_then(|m| m.parse::<u32>().ok()).is_some_and(|m| m >= 90)
}
