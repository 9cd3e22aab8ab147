//! Builds bpf/snoop.bpf.c with clang and generates the libbpf-rs skeleton
//! into OUT_DIR (never into src/, so nothing generated is tracked by git).

use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let bpf = manifest.join("../../bpf");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR")).join("snoop.skel.rs");
    // The whole directory: cargo rebuilds when any file in it changes, so a
    // new header can never be left out of the list and silently not rebuilt.
    println!("cargo:rerun-if-changed={}", bpf.display());
    let include = format!("-I{}", bpf.display());
    if let Err(e) = SkeletonBuilder::new()
        .source(bpf.join("snoop.bpf.c"))
        .clang_args([include.as_str(), "-Wall", "-Wno-unused-function"])
        .build_and_generate(&out)
    {
        panic!("building bpf/snoop.bpf.c failed (needs clang and libelf): {e:#}");
    }
}
