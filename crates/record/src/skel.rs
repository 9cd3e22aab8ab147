//! The generated libbpf-rs skeleton (built from `bpf/snoop.bpf.c` into
//! OUT_DIR by build.rs) and the one place that declares the contract's
//! record types plain old data, so the rest of the crate can read them from
//! ring-buffer bytes without hand-copied twins of `bpf/snoop.h`.

#[allow(
    clippy::all,
    missing_docs,
    dead_code,
    unused_imports,
    unsafe_op_in_unsafe_fn,
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals
)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/snoop.skel.rs"));
}

pub use generated::*;

use generated::types::{
    snoop_config, snoop_conn, snoop_counter, snoop_dns, snoop_msg, snoop_msgs, snoop_pkt,
    snoop_pktset, snoop_proc,
};

// SAFETY: these are `#[repr(C)]` structs generated from BTF of bpf/snoop.h,
// made only of integers and integer arrays with explicit padding fields, so
// every bit pattern is a valid value and they contain no pointers.
unsafe impl plain::Plain for snoop_msg {}
// SAFETY: as above.
unsafe impl plain::Plain for snoop_msgs {}
// SAFETY: as above.
unsafe impl plain::Plain for snoop_pkt {}
// SAFETY: as above.
unsafe impl plain::Plain for snoop_pktset {}
// SAFETY: as above.
unsafe impl plain::Plain for snoop_conn {}
// SAFETY: as above.
unsafe impl plain::Plain for snoop_proc {}
// SAFETY: as above.
unsafe impl plain::Plain for snoop_counter {}
// SAFETY: as above.
unsafe impl plain::Plain for snoop_dns {}

// Compile-time checks that the generated types have the layout snoop.h
// promises (a change of the header without the decoder fails the build).
const _: () = assert!(std::mem::size_of::<snoop_msg>() == 96);
const _: () = assert!(std::mem::size_of::<snoop_msgs>() == MSGS_HEADER + 16 * 96);
const _: () = assert!(std::mem::size_of::<snoop_pkt>() == 112);
const _: () = assert!(std::mem::size_of::<snoop_pktset>() == 216);
const _: () = assert!(std::mem::size_of::<snoop_conn>() == 120);
const _: () = assert!(std::mem::size_of::<snoop_proc>() == 176);
const _: () = assert!(std::mem::size_of::<snoop_counter>() == 16);
const _: () = assert!(std::mem::size_of::<snoop_dns>() == 560);
const _: () = assert!(std::mem::size_of::<snoop_config>() == 24);

/// Record kinds: the first byte of every ring-buffer record (`enum snoop_kind`).
pub mod kind {
    /// Application-level message (`struct snoop_msg`).
    pub const MSG: u8 = 0;
    /// Wire packet (`struct snoop_pkt`).
    pub const PKT: u8 = 1;
    /// TCP state change (`struct snoop_conn`).
    pub const CONN: u8 = 2;
    /// Process event (`struct snoop_proc`).
    pub const PROC: u8 = 3;
    /// The first bytes of a DNS answer (`struct snoop_dns`).
    pub const DNS: u8 = 4;
    /// Number of kinds (size of the counters map).
    pub const COUNT: usize = 5;
    /// A socket's packets of a few lengths (`struct snoop_pktset`), counted
    /// as [`PKT`]: one packet row per length.
    pub const PKTSET: u8 = 6;
    /// Up to 16 messages of one CPU (`struct snoop_msgs`), counted as
    /// [`MSG`]: split into message records as they leave the ring.
    pub const MSGS: u8 = 7;
}

/// Bytes before the first message of a `struct snoop_msgs` (kind, n,
/// padding, first_ns); message `i` follows at `MSGS_HEADER + i * 96`.
pub const MSGS_HEADER: usize = 16;

/// Read a plain record from possibly unaligned bytes; `None` when too short.
pub fn read<T: plain::Plain + Copy>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < std::mem::size_of::<T>() {
        return None;
    }
    // SAFETY: the length is checked above, T is Plain (every bit pattern is
    // a valid T) and read_unaligned copes with any alignment of `bytes`.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// The bytes of a plain record (for tests and fake sources).
pub fn bytes_of<T: plain::Plain>(v: &T) -> &[u8] {
    // SAFETY: T is Plain (no padding-dependent invariants, no pointers), so
    // viewing it as bytes is sound; the contract's structs have explicit
    // padding fields, so there are no uninitialised holes.
    unsafe { plain::as_bytes(v) }
}
