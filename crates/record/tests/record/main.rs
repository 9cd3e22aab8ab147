//! Real eBPF tests of the recorder (root only): each test starts a recording
//! filtered to its own peers (distinct comms set with PR_SET_NAME by the
//! `snoop-peer` helper), makes traffic with known byte counts on loopback,
//! stops, reads the trace back with snoop_format's reader and checks exact
//! per-process bytes. Readiness is awaited on pipes ("ready PORT" from the
//! peers, the recorder's ready callback), never with sleeps.
//!
//! Without root the tests print why and pass, unless SNOOP_REQUIRE_BPF=1.
//!
//! Modules: `util` (recording, peers, trace totals), `traffic` (exact bytes
//! per process over loopback), `iface` (`--iface` on the host side of a
//! veth pair joining two network namespaces), `lifecycle` (TCP connection
//! open/close times and kernel byte counters), `pressure` (a full owner
//! map counted, closed and never-connected sockets leaving it), `pidreuse` (a pid
//! given to a new process keeps the two apart), `outcomes` (how TCP
//! connections end: refused, closed, reset, retransmissions on a lossy
//! link between two namespaces), `containers` (cgroups named like docker's
//! and systemd's: their paths in the trace, names, `--cgroup` by container
//! id prefix).

mod containers;
mod iface;
mod lifecycle;
mod outcomes;
mod pidreuse;
mod pressure;
mod traffic;
mod util;
