//! The data model every report reads: the [`Dataset`] the loader fills —
//! global flows with their origin (messages, connections, or packets and how
//! they were attributed), per-flow totals, per-interval buckets, optional
//! per-event columns, TCP state changes, process events and recorder stats.

use std::path::PathBuf;

use snoop_format::{FileInfo, Flow, ProcessRow, Recovery};

use crate::filter::FileFilter;

/// Where a flow row of the dataset comes from, and for packets how (or why
/// not) it was attributed to a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Origin {
    /// Application-level messages (pid authoritative).
    Message,
    /// TCP state changes (pid not trustworthy; owner via cookie).
    Conn,
    /// Packet attributed by socket cookie.
    PktCookie,
    /// Packet attributed by 5-tuple and time.
    PktTuple,
    /// Packet attributed by the owner the kernel recorded with its cookie.
    PktOwner,
    /// Unattributed: no socket with this 5-tuple was seen.
    PktNoSocket,
    /// Unattributed: ICMP / ICMPv6.
    PktIcmp,
    /// Unattributed: an IP protocol other than TCP, UDP, ICMP.
    PktOtherProto,
    /// Unattributed: not addressed to this host (forwarded, other netns).
    PktForwarded,
    /// Unattributed: a kernel socket (cookie without an owner).
    PktKernel,
}

impl Origin {
    /// Every packet origin, attributed first.
    pub const PACKETS: [Origin; 8] = [
        Origin::PktCookie,
        Origin::PktTuple,
        Origin::PktOwner,
        Origin::PktNoSocket,
        Origin::PktIcmp,
        Origin::PktOtherProto,
        Origin::PktForwarded,
        Origin::PktKernel,
    ];

    /// Whether rows of this origin are packets.
    pub fn is_packet(self) -> bool {
        !matches!(self, Origin::Message | Origin::Conn)
    }

    /// Whether a packet of this origin is attributed to a process.
    pub fn attributed(self) -> bool {
        matches!(
            self,
            Origin::PktCookie | Origin::PktTuple | Origin::PktOwner
        )
    }

    /// Short name used in the coverage report.
    pub fn reason(self) -> &'static str {
        match self {
            Origin::Message => "message",
            Origin::Conn => "connection",
            Origin::PktCookie => "socket cookie",
            Origin::PktTuple => "5-tuple + time",
            Origin::PktOwner => "kernel-recorded owner",
            Origin::PktNoSocket => "no socket seen",
            Origin::PktIcmp => "icmp",
            Origin::PktOtherProto => "other protocol",
            Origin::PktForwarded => "forwarded/other netns",
            Origin::PktKernel => "kernel socket",
        }
    }
}

/// One input file.
#[derive(Debug)]
pub struct FileMeta {
    /// Path given.
    pub path: PathBuf,
    /// Host label (unique among the inputs).
    pub host: String,
    /// The file's info block.
    pub info: FileInfo,
    /// Recovery report when the file was not closed cleanly.
    pub recovery: Option<Recovery>,
    /// Filters resolved against this file's clock.
    pub filter: FileFilter,
    /// Recording end from the footer, if complete.
    pub end_ns: Option<u64>,
    /// Which hook groups the recorder ran (None: a trace from before 1.1).
    pub hooks: Option<snoop_format::Hooks>,
    /// Format minor version (2 and later record TCP outcomes).
    pub minor: u16,
    /// cgroup id -> path (relative to the cgroup v2 mount), as recorded
    /// (format 1.2; empty for older traces).
    pub cgroups: std::collections::HashMap<u64, String>,
    /// Names for remote addresses from the trace's DNS answers (format
    /// 1.3; empty for older traces).
    pub names: crate::remote_names::RemoteNames,
}

impl FileMeta {
    /// The hook groups that did not run, as `group (state)`; empty for a
    /// trace that does not say.
    pub fn hooks_not_run(&self) -> Vec<String> {
        self.hooks
            .iter()
            .flat_map(|h| h.hook_groups())
            // Interface capture is off unless asked for: not news.
            .filter(|(g, s)| s != "active" && !(g == "iface" && s.starts_with("off")))
            .map(|(g, s)| format!("{g} ({s})"))
            .collect()
    }

    /// The recorded path of cgroup `id`, if the trace names it.
    pub fn cgroup_path(&self, id: u64) -> Option<&str> {
        self.cgroups.get(&id).map(String::as_str)
    }

    /// The container or service cgroup `id` belongs to (`docker:ID12`,
    /// `nginx.service`, ...), if its recorded path names one.
    pub fn container(&self, id: u64) -> Option<String> {
        snoop_format::cgroup::container(self.cgroup_path(id)?).map(|c| c.name())
    }

    /// Does the trace say how TCP connections ended (format 1.2 or later,
    /// with the TCP state hooks running)? When not, statuses and outcome
    /// counters are unknown (null), not "open" or zero.
    pub fn has_outcomes(&self) -> bool {
        self.minor >= 2 && self.hook_ran("tcp_state")
    }

    /// Did the recorder run hook group `name`? (Assumed yes for traces from
    /// before hook groups were recorded.)
    pub fn hook_ran(&self, name: &str) -> bool {
        self.hooks
            .as_ref()
            .is_none_or(|h| h.groups.iter().any(|(g, s)| g == name && s == "active"))
    }
}

/// One flow of the dataset: a flow dictionary row of a file, with its origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowRow {
    /// Index into [`Dataset::files`].
    pub file: u16,
    /// The flow (for packets: the packet's addresses with the owner filled in).
    pub flow: Flow,
    /// Origin / attribution.
    pub origin: Origin,
}

impl FlowRow {
    /// A 64-bit hash of the row ([`Flow::hash64`] with the file and the
    /// origin folded in), for the load-time flow index. The flow hash is
    /// already mixed, and the multiply keeps file and origin (low bits) in
    /// the low bits.
    pub fn hash64(&self) -> u64 {
        snoop_format::fx_step(
            self.flow.hash64(),
            (self.file as u64) << 8 | self.origin as u64,
        )
    }
}

/// Totals of one flow (messages for message flows, packets for packet flows).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Agg {
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Events sent.
    pub tx_n: u64,
    /// Events received.
    pub rx_n: u64,
    /// First event time (u64::MAX when none).
    pub first: u64,
    /// Last event time.
    pub last: u64,
}

impl Default for Agg {
    fn default() -> Self {
        Agg {
            tx_bytes: 0,
            rx_bytes: 0,
            tx_n: 0,
            rx_n: 0,
            first: u64::MAX,
            last: 0,
        }
    }
}

impl Agg {
    /// Add a run of `count` events of `bytes` each, the first at `first`
    /// and the last at `last`.
    #[inline]
    pub(crate) fn add_run(&mut self, first: u64, last: u64, count: u64, bytes: u32, dir: u8) {
        let total = (bytes as u64).saturating_mul(count);
        if dir == 0 {
            self.tx_bytes = self.tx_bytes.saturating_add(total);
            self.tx_n = self.tx_n.saturating_add(count);
        } else {
            self.rx_bytes = self.rx_bytes.saturating_add(total);
            self.rx_n = self.rx_n.saturating_add(count);
        }
        self.first = self.first.min(first);
        self.last = self.last.max(last);
    }

    #[inline]
    pub(crate) fn add(&mut self, ts: u64, bytes: u32, dir: u8) {
        if dir == 0 {
            self.tx_bytes = self.tx_bytes.saturating_add(bytes as u64);
            self.tx_n = self.tx_n.saturating_add(1);
        } else {
            self.rx_bytes = self.rx_bytes.saturating_add(bytes as u64);
            self.rx_n = self.rx_n.saturating_add(1);
        }
        self.first = self.first.min(ts);
        self.last = self.last.max(ts);
    }

    /// Add another aggregate.
    pub fn merge(&mut self, o: &Agg) {
        self.tx_bytes = self.tx_bytes.saturating_add(o.tx_bytes);
        self.rx_bytes = self.rx_bytes.saturating_add(o.rx_bytes);
        self.tx_n = self.tx_n.saturating_add(o.tx_n);
        self.rx_n = self.rx_n.saturating_add(o.rx_n);
        self.first = self.first.min(o.first);
        self.last = self.last.max(o.last);
    }

    /// Events in both directions.
    pub fn events(&self) -> u64 {
        self.tx_n.saturating_add(self.rx_n)
    }
}

/// Bytes of one flow in one interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bucket {
    /// Interval number: `ts / interval_ns`.
    pub b: u64,
    /// Global flow id.
    pub flow: u32,
    /// Bytes sent.
    pub tx: u64,
    /// Bytes received.
    pub rx: u64,
}

/// Per-event columns of one decoded chunk, with global flow ids.
#[derive(Clone, Debug, Default)]
pub struct Events {
    /// Times.
    pub ts: Vec<u64>,
    /// Global flow ids.
    pub flow: Vec<u32>,
    /// Bytes.
    pub bytes: Vec<u32>,
    /// Direction (0 tx, 1 rx).
    pub dir: Vec<u8>,
    /// Packets of a row that stands for a run of equal packets (1 for a
    /// message or a single packet); empty when every row is one event.
    pub count: Vec<u32>,
}

impl Events {
    /// How many events row `i` stands for (a run of packets: its count).
    pub fn count(&self, i: usize) -> u64 {
        self.count.get(i).map_or(1, |&c| u64::from(c.max(1)))
    }
}

/// One TCP state change.
#[derive(Clone, Copy, Debug)]
pub struct ConnEvent {
    /// Time.
    pub ts: u64,
    /// Global flow id (origin [`Origin::Conn`]).
    pub flow: u32,
    /// Previous state.
    pub old: u8,
    /// New state.
    pub new: u8,
    /// bytes_acked at the change.
    pub acked: u64,
    /// bytes_received at the change.
    pub received: u64,
    /// The socket's outcome counters (format 1.2; None in older traces).
    /// Read at CLOSE and for already open connections, zero otherwise.
    pub outcome: Option<snoop_format::TcpOutcome>,
}

/// One process lifecycle event.
#[derive(Clone, Debug)]
pub struct ProcEvent {
    /// File index.
    pub file: u16,
    /// The row.
    pub row: ProcessRow,
}

/// One recorder statistics row.
#[derive(Clone, Copy, Debug)]
pub struct StatRow {
    /// File index.
    pub file: u16,
    /// Time.
    pub ts: u64,
    /// Source (see `snoop_format::source`).
    pub source: u8,
    /// Records dropped.
    pub dropped: u64,
    /// Records kept.
    pub events: u64,
}

/// What a report needs loaded.
#[derive(Clone, Copy, Debug)]
pub struct LoadPlan {
    /// Message aggregates.
    pub messages: bool,
    /// Packet aggregates (implies messages, for attribution).
    pub packets: bool,
    /// Keep per-event columns.
    pub events: bool,
    /// Compute the behaviour report's per-event partials while decoding
    /// ([`Dataset::behaviour`]); without `events`, per-event columns are
    /// then kept for UDP message flows only (the connections cut).
    pub behaviour: bool,
    /// Cut UDP message flows into connections while decoding
    /// ([`Dataset::udp_cuts`]), so the connections reports need no
    /// per-event columns for them.
    pub udp_conns: bool,
    /// TCP state changes.
    pub connections: bool,
    /// Process events.
    pub processes: bool,
    /// Recorder stats.
    pub stats: bool,
    /// Bucket width for rates and the timeline.
    pub interval_ns: u64,
}

/// Everything a report reads.
#[derive(Debug, Default)]
pub struct Dataset {
    /// Input files.
    pub files: Vec<FileMeta>,
    /// Global flows.
    pub flows: Vec<FlowRow>,
    /// Totals per global flow.
    pub agg: Vec<Agg>,
    /// Per-interval bytes per flow (unsorted; a (b, flow) pair may repeat).
    pub buckets: Vec<Bucket>,
    /// Bucket count after the last compaction (load-time bookkeeping).
    pub(crate) buckets_compacted: usize,
    /// Indices into `flows`, hashed by [`FlowRow::hash64`] (load-time
    /// bookkeeping; every row enters `flows` through it). It stores no
    /// keys: with ~10^5 flows a copy of every row would cost more in
    /// first-touch page faults than the hashing it saves.
    pub(crate) flow_index: hashbrown::HashTable<u32>,
    /// Message events, per chunk (when asked for).
    pub msg_events: Vec<Events>,
    /// Packet events, per chunk (when asked for).
    pub pkt_events: Vec<Events>,
    /// The behaviour report's merged per-event partials (when asked for).
    pub behaviour: Option<crate::behave::BehaviourData>,
    /// UDP message flows cut into connections (when asked for).
    pub udp_cuts: Option<crate::udpcut::UdpCuts>,
    /// TCP state changes, in time order per file.
    pub conns: Vec<ConnEvent>,
    /// Process events, in time order per file.
    pub procs: Vec<ProcEvent>,
    /// Recorder stats.
    pub stats: Vec<StatRow>,
    /// Bucket width.
    pub interval_ns: u64,
}

/// The TCP_* state numbers the reports use.
pub mod tcp {
    /// SYN_SENT.
    pub const SYN_SENT: u8 = 2;
    /// FIN_WAIT1.
    pub const FIN_WAIT1: u8 = 4;
    /// FIN_WAIT2.
    pub const FIN_WAIT2: u8 = 5;
    /// TIME_WAIT.
    pub const TIME_WAIT: u8 = 6;
    /// CLOSE.
    pub const CLOSE: u8 = 7;
    /// CLOSE_WAIT.
    pub const CLOSE_WAIT: u8 = 8;
    /// LAST_ACK.
    pub const LAST_ACK: u8 = 9;
    /// CLOSING.
    pub const CLOSING: u8 = 11;
    /// LISTEN.
    pub const LISTEN: u8 = 10;

    /// Name of a TCP state.
    pub fn name(s: u8) -> &'static str {
        match s {
            1 => "ESTABLISHED",
            2 => "SYN_SENT",
            3 => "SYN_RECV",
            4 => "FIN_WAIT1",
            5 => "FIN_WAIT2",
            6 => "TIME_WAIT",
            7 => "CLOSE",
            8 => "CLOSE_WAIT",
            9 => "LAST_ACK",
            10 => "LISTEN",
            11 => "CLOSING",
            12 => "NEW_SYN_RECV",
            _ => "UNKNOWN",
        }
    }
}
