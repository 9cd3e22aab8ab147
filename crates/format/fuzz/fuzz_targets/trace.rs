//! Fuzz target over the trace reader and the `snoop info` summary: the
//! input's first byte picks a mode (bit 0: recompute every CRC after the
//! mutation, so the fuzzer gets past checksums into metas, rkyv validation,
//! column layout checks, zstd and the typed batches); the rest is the file.
//! Anything but a clean error or a correct read — a panic, an abort, an
//! allocation beyond the bound — is a finding.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/support/mod.rs"]
mod support;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, file)) = data.split_first() else {
        return;
    };
    let mut file = file.to_vec();
    if mode & 1 != 0 {
        support::fix_crcs(&mut file);
    }
    support::exercise(file);
});
