//! snoop-record: the eBPF recorder behind `snoop record` and `snoop top`.
//!
//! It loads the one BPF object built from `bpf/` (the contract is
//! `bpf/snoop.h`), attaches its programs, and on one dedicated thread drains
//! the per-CPU ring buffers in small batches, decodes them and pushes rows
//! into a `snoop_format::TraceWriter`. The kernel side is behind the
//! [`source::EventSource`] trait so the whole pipeline after the kernel is
//! testable without root.

pub mod args;
pub mod cgroups;
pub mod dns;
pub mod doctor;
pub mod event;
pub mod hooks;
pub mod kernel;
pub mod output;
pub mod perm;
pub mod pipeline;
mod record;
pub mod skel;
pub mod source;
pub mod top;
pub mod top_from;
pub mod tui;
pub mod tui_run;

pub use args::RecordArgs;
pub use doctor::{run_doctor, DoctorArgs};
pub use record::{
    human_bytes, kernel_options, record_chunk_rows, record_session, record_zstd_level, run_record,
};
pub use top::{run_top, TopArgs};
