//! Link settings of the `barge` binary.

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        // DT_RELR (glibc >= 2.36, binutils >= 2.38; Debian 12 has 2.36/2.40): the ~70,000
        // relative relocations of this PIE packed into a few KB instead of a 1.6 MB
        // `.rela.dyn` that every start of the binary (CLI, per-container monitor, daemon)
        // reads page by page, and that stays resident in the daemon.
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
        let order = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap())
            .join("layout/barge.order");
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
        println!("cargo:rerun-if-changed=layout/barge.order");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
