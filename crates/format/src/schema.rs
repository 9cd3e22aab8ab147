//! The logical schema of a trace: which tables exist, which columns each has,
//! and the row types writers push. Kept apart from the byte layout so the
//! spec (FORMAT.md) and the code name the same things in one place.

/// A table of the trace. A chunk holds rows of exactly one table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Table {
    /// Application-level sends and receives (process context).
    Messages = 1,
    /// Packets on the wire (device transmit / receive).
    Packets = 2,
    /// TCP state changes.
    Connections = 3,
    /// Process exec / fork / exit.
    Processes = 4,
    /// Recorder statistics: events kept and dropped per source.
    Stats = 5,
}

impl Table {
    /// Every table, in id order.
    pub const ALL: [Table; 5] = [
        Table::Messages,
        Table::Packets,
        Table::Connections,
        Table::Processes,
        Table::Stats,
    ];

    /// The table with this on-disk id, if known.
    pub fn from_id(id: u8) -> Option<Table> {
        Table::ALL.into_iter().find(|t| *t as u8 == id)
    }

    /// The table's name as used in `snoop info` and `snoop export`.
    pub fn name(self) -> &'static str {
        match self {
            Table::Messages => "messages",
            Table::Packets => "packets",
            Table::Connections => "connections",
            Table::Processes => "processes",
            Table::Stats => "stats",
        }
    }

    /// Whether rows of this table refer to a per-chunk flow dictionary.
    pub fn has_flows(self) -> bool {
        matches!(self, Table::Messages | Table::Packets | Table::Connections)
    }

    /// The columns (besides the flow dictionary) of this table, in order.
    pub fn columns(self) -> &'static [ColumnDef] {
        match self {
            Table::Messages => MESSAGE_COLUMNS,
            Table::Packets => PACKET_COLUMNS,
            Table::Connections => CONNECTION_COLUMNS,
            Table::Processes => PROCESS_COLUMNS,
            Table::Stats => STATS_COLUMNS,
        }
    }
}

/// Physical type of a column body (after decompression and transforms).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ColType {
    /// `u8` per row.
    U8 = 1,
    /// `u16` little-endian per row.
    U16 = 2,
    /// `u32` little-endian per row.
    U32 = 3,
    /// `u64` little-endian per row.
    U64 = 4,
    /// `i32` little-endian per row.
    I32 = 5,
    /// 16 bytes per row (addresses, comm).
    Fixed16 = 6,
    /// Variable-length bytes: `rows + 1` u32 offsets, then the data.
    Str = 7,
}

impl ColType {
    /// The type with this on-disk id, if known.
    pub fn from_id(id: u8) -> Option<ColType> {
        use ColType::*;
        [U8, U16, U32, U64, I32, Fixed16, Str]
            .into_iter()
            .find(|t| *t as u8 == id)
    }

    /// Bytes per row for fixed-width types; `None` for [`ColType::Str`].
    pub fn width(self) -> Option<usize> {
        match self {
            ColType::U8 => Some(1),
            ColType::U16 => Some(2),
            ColType::U32 | ColType::I32 => Some(4),
            ColType::U64 => Some(8),
            ColType::Fixed16 => Some(16),
            ColType::Str => None,
        }
    }
}

/// One column of a table: its id within the chunk, name and physical type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ColumnDef {
    /// Id stored in the chunk meta.
    pub id: u16,
    /// Name used by the spec and the exporters.
    pub name: &'static str,
    /// Physical type.
    pub ty: ColType,
}

const fn c(id: u16, name: &'static str, ty: ColType) -> ColumnDef {
    ColumnDef { id, name, ty }
}

/// Column ids. Ids below 100 are per-event columns of the chunk's table;
/// ids from 100 are columns of the chunk's flow dictionary.
pub mod col {
    /// Event time, ns of CLOCK_BOOTTIME (every table).
    pub const TS: u16 = 0;
    /// Index into the chunk's flow dictionary (messages, packets, connections).
    pub const FLOW: u16 = 1;
    /// Message payload bytes / packet wire length.
    pub const BYTES: u16 = 2;
    /// Direction: 0 = sent, 1 = received.
    pub const DIR: u16 = 3;
    /// Packets: GSO segments.
    pub const SEGS: u16 = 4;
    /// Packets (since 1.4): packets in the row's run (1 for a single packet).
    pub const COUNT: u16 = 5;
    /// Packets (since 1.4): time from the run's first packet (`ts_ns`) to
    /// its last, ns (0 for a single packet).
    pub const SPAN_NS: u16 = 6;
    /// Packets (since 1.4): the TCP flags of the run's packets, OR-ed (0
    /// for other protocols).
    pub const TCP_FLAGS: u16 = 7;
    /// Connections: previous TCP state.
    pub const OLD_STATE: u16 = 2;
    /// Connections: new TCP state.
    pub const NEW_STATE: u16 = 3;
    /// Connections: tcp_sock bytes_acked at the change.
    pub const BYTES_ACKED: u16 = 4;
    /// Connections: tcp_sock bytes_received at the change.
    pub const BYTES_RECEIVED: u16 = 5;
    /// Connections (since 1.2): `sk->sk_err` at CLOSE, an errno.
    pub const SK_ERR: u16 = 6;
    /// Connections (since 1.2): tcp_sock total_retrans at CLOSE.
    pub const RETRANS_SEGS: u16 = 7;
    /// Connections (since 1.2): smoothed RTT in µs at CLOSE.
    pub const SRTT_US: u16 = 8;
    /// Connections (since 1.2): minimum RTT in µs at CLOSE.
    pub const MIN_RTT_US: u16 = 9;
    /// Connections (since 1.2): tcp_sock segs_out at CLOSE.
    pub const SEGS_OUT: u16 = 10;
    /// Connections (since 1.2): tcp_sock segs_in at CLOSE.
    pub const SEGS_IN: u16 = 11;
    /// Processes: event kind.
    pub const KIND: u16 = 1;
    /// Processes: pid (tgid).
    pub const PID: u16 = 2;
    /// Processes: thread id.
    pub const TID: u16 = 3;
    /// Processes: parent pid.
    pub const PPID: u16 = 4;
    /// Processes: comm.
    pub const COMM: u16 = 5;
    /// Processes: exit code.
    pub const EXIT_CODE: u16 = 6;
    /// Processes: executed file name.
    pub const FILENAME: u16 = 7;
    /// Stats: source (record kind).
    pub const SOURCE: u16 = 1;
    /// Stats: records dropped in the interval.
    pub const DROPPED: u16 = 2;
    /// Stats: records kept in the interval.
    pub const EVENTS: u16 = 3;

    /// Flow dictionary: process id.
    pub const F_PID: u16 = 100;
    /// Flow dictionary: thread id.
    pub const F_TID: u16 = 101;
    /// Flow dictionary: comm.
    pub const F_COMM: u16 = 102;
    /// Flow dictionary: cgroup id.
    pub const F_CGROUP: u16 = 103;
    /// Flow dictionary: socket cookie.
    pub const F_COOKIE: u16 = 104;
    /// Flow dictionary: interface index.
    pub const F_IFINDEX: u16 = 105;
    /// Flow dictionary: address family.
    pub const F_FAMILY: u16 = 106;
    /// Flow dictionary: IP protocol.
    pub const F_PROTO: u16 = 107;
    /// Flow dictionary: local address.
    pub const F_LADDR: u16 = 108;
    /// Flow dictionary: local port.
    pub const F_LPORT: u16 = 109;
    /// Flow dictionary: remote address.
    pub const F_RADDR: u16 = 110;
    /// Flow dictionary: remote port.
    pub const F_RPORT: u16 = 111;
}

use ColType::*;

/// Columns of the per-chunk flow dictionary.
pub const FLOW_COLUMNS: &[ColumnDef] = &[
    c(col::F_PID, "pid", U32),
    c(col::F_TID, "tid", U32),
    c(col::F_COMM, "comm", Fixed16),
    c(col::F_CGROUP, "cgroup", U64),
    c(col::F_COOKIE, "cookie", U64),
    c(col::F_IFINDEX, "ifindex", U32),
    c(col::F_FAMILY, "family", U8),
    c(col::F_PROTO, "proto", U8),
    c(col::F_LADDR, "laddr", Fixed16),
    c(col::F_LPORT, "lport", U16),
    c(col::F_RADDR, "raddr", Fixed16),
    c(col::F_RPORT, "rport", U16),
];

const MESSAGE_COLUMNS: &[ColumnDef] = &[
    c(col::TS, "ts_ns", U64),
    c(col::FLOW, "flow", U32),
    c(col::BYTES, "bytes", U32),
    c(col::DIR, "dir", U8),
];

const PACKET_COLUMNS: &[ColumnDef] = &[
    c(col::TS, "ts_ns", U64),
    c(col::FLOW, "flow", U32),
    c(col::BYTES, "len", U32),
    c(col::DIR, "dir", U8),
    c(col::SEGS, "segs", U16),
    c(col::COUNT, "count", U32),
    c(col::SPAN_NS, "span_ns", U64),
    c(col::TCP_FLAGS, "tcp_flags", U8),
];

const CONNECTION_COLUMNS: &[ColumnDef] = &[
    c(col::TS, "ts_ns", U64),
    c(col::FLOW, "flow", U32),
    c(col::OLD_STATE, "old_state", U8),
    c(col::NEW_STATE, "new_state", U8),
    c(col::BYTES_ACKED, "bytes_acked", U64),
    c(col::BYTES_RECEIVED, "bytes_received", U64),
    c(col::SK_ERR, "sk_err", U16),
    c(col::RETRANS_SEGS, "retrans_segs", U32),
    c(col::SRTT_US, "srtt_us", U32),
    c(col::MIN_RTT_US, "min_rtt_us", U32),
    c(col::SEGS_OUT, "segs_out", U32),
    c(col::SEGS_IN, "segs_in", U32),
];

/// How a TCP connection stood when its state last changed, as the kernel's
/// socket counts it (since format 1.2). The recorder reads it once, at
/// CLOSE and for connections already open when recording began; other
/// state changes carry zeros (`Default`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TcpOutcome {
    /// `sk->sk_err`: why the kernel gave up on the connection (an errno:
    /// 111 ECONNREFUSED, 110 ETIMEDOUT, 104 ECONNRESET, ...), 0 if it did not.
    pub sk_err: u16,
    /// Segments retransmitted over the connection's life (`total_retrans`).
    pub retrans_segs: u32,
    /// Smoothed round-trip time, µs; 0 = no sample.
    pub srtt_us: u32,
    /// Minimum round-trip time seen, µs; 0 = no sample.
    pub min_rtt_us: u32,
    /// Segments sent, retransmissions included (`segs_out`).
    pub segs_out: u32,
    /// Segments received (`segs_in`).
    pub segs_in: u32,
}

const PROCESS_COLUMNS: &[ColumnDef] = &[
    c(col::TS, "ts_ns", U64),
    c(col::KIND, "kind", U8),
    c(col::PID, "pid", U32),
    c(col::TID, "tid", U32),
    c(col::PPID, "ppid", U32),
    c(col::COMM, "comm", Fixed16),
    c(col::EXIT_CODE, "exit_code", I32),
    c(col::FILENAME, "filename", Str),
];

const STATS_COLUMNS: &[ColumnDef] = &[
    c(col::TS, "ts_ns", U64),
    c(col::SOURCE, "source", U8),
    c(col::DROPPED, "dropped", U64),
    c(col::EVENTS, "events", U64),
];

/// The definition of column `id` in `table` (flow dictionary included).
pub fn column_def(table: Table, id: u16) -> Option<&'static ColumnDef> {
    if id >= 100 {
        if table.has_flows() {
            FLOW_COLUMNS.iter().find(|c| c.id == id)
        } else {
            None
        }
    } else {
        table.columns().iter().find(|c| c.id == id)
    }
}

/// How a TCP connection ended (or did not), from its last state change:
/// the `status` of `snoop analyze conns`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConnStatus {
    /// No CLOSE in the trace: still open at its end.
    Open,
    /// Orderly close (FINs both ways).
    Closed,
    /// The peer reset it (a RST after the handshake: ECONNRESET, or EPIPE
    /// in CLOSE_WAIT).
    ResetByPeer,
    /// This end reset it: closed with unread data or `SO_LINGER` 0 (an
    /// ESTABLISHED or CLOSE_WAIT socket going straight to CLOSE with no
    /// error), or aborted (ECONNABORTED, e.g. `ss -K`).
    ResetLocal,
    /// The connect was answered by a RST (ECONNREFUSED).
    Refused,
    /// The kernel gave up retransmitting (ETIMEDOUT): the connect or an
    /// established connection timed out.
    Timeout,
    /// Any other error (e.g. EHOSTUNREACH), or a connect abandoned before
    /// it completed.
    Failed,
}

impl ConnStatus {
    /// Every status, in report order.
    pub const ALL: [ConnStatus; 7] = [
        ConnStatus::Open,
        ConnStatus::Closed,
        ConnStatus::ResetByPeer,
        ConnStatus::ResetLocal,
        ConnStatus::Refused,
        ConnStatus::Timeout,
        ConnStatus::Failed,
    ];

    /// The status of a connection whose CLOSE change left `old_state` with
    /// `sk_err` (an errno, 0 for none).
    pub fn at_close(old_state: u8, sk_err: u16) -> ConnStatus {
        const SYN_SENT: u8 = 2;
        const SYN_RECV: u8 = 3;
        const ESTABLISHED: u8 = 1;
        const CLOSE_WAIT: u8 = 8;
        match sk_err {
            111 => ConnStatus::Refused,
            110 => ConnStatus::Timeout,
            104 | 32 => ConnStatus::ResetByPeer,
            103 => ConnStatus::ResetLocal,
            0 => match old_state {
                ESTABLISHED | CLOSE_WAIT => ConnStatus::ResetLocal,
                SYN_SENT | SYN_RECV => ConnStatus::Failed,
                _ => ConnStatus::Closed,
            },
            _ => ConnStatus::Failed,
        }
    }

    /// Lowercase name (JSON value of `status`).
    pub fn name(self) -> &'static str {
        match self {
            ConnStatus::Open => "open",
            ConnStatus::Closed => "closed",
            ConnStatus::ResetByPeer => "reset_by_peer",
            ConnStatus::ResetLocal => "reset_local",
            ConnStatus::Refused => "refused",
            ConnStatus::Timeout => "timeout",
            ConnStatus::Failed => "failed",
        }
    }

    /// Whether the connection ended badly (anything but open or closed).
    pub fn is_problem(self) -> bool {
        !matches!(self, ConnStatus::Open | ConnStatus::Closed)
    }

    /// Whether the connection failed (refused, timed out or another
    /// error) rather than being reset or closed.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            ConnStatus::Refused | ConnStatus::Timeout | ConnStatus::Failed
        )
    }

    /// Whether either end reset it.
    pub fn is_reset(self) -> bool {
        matches!(self, ConnStatus::ResetByPeer | ConnStatus::ResetLocal)
    }
}

/// Whether column `id` of `table` may be absent from a chunk: it was added
/// by a later minor version (connections' outcome columns, 1.2; packets'
/// run columns, 1.4), so chunks
/// of older traces lack it and readers treat its values as unknown.
pub fn column_optional(table: Table, id: u16) -> bool {
    (table == Table::Connections && (col::SK_ERR..=col::SEGS_IN).contains(&id))
        || (table == Table::Packets && matches!(id, col::COUNT | col::SPAN_NS | col::TCP_FLAGS))
}

/// Stats sources: which recorder stage a stats row counts.
pub mod source {
    /// Message records (sock_send_length / sock_recv_length).
    pub const MESSAGES: u8 = 0;
    /// Packet records.
    pub const PACKETS: u8 = 1;
    /// TCP state-change records.
    pub const CONNECTIONS: u8 = 2;
    /// Process lifecycle records.
    pub const PROCESSES: u8 = 3;
    /// Map pressure, not event loss: live sockets whose owner entry the
    /// recorder's kernel map evicted (count in the `events` column). Only
    /// in traces of recorders whose owner map was an LRU; newer ones write
    /// [`OWNER_MAP_FULL`] instead.
    pub const OWNER_EVICTIONS: u8 = 4;
    /// Map pressure, not event loss: selected processes that did not fit in
    /// the recorder's tracked-process map (count in the `events` column).
    pub const TRACKED_FULL: u8 = 5;
    /// Map pressure, not event loss: inserts into the recorder's kernel
    /// socket-owner map refused because it was full (count in the `events`
    /// column); those sockets' packets and state changes are unattributed
    /// until an insert succeeds.
    pub const OWNER_MAP_FULL: u8 = 6;
    /// DNS answer records (format 1.3): answers the kernel side could not
    /// hand over (`dropped`) or did (`events`).
    pub const DNS: u8 = 7;
    /// Records lost in user space (decode errors, full channel).
    pub const USERSPACE: u8 = 255;

    /// Whether a source counts map pressure rather than records.
    pub fn is_pressure(source: u8) -> bool {
        matches!(source, OWNER_EVICTIONS | TRACKED_FULL | OWNER_MAP_FULL)
    }

    /// Human name of a stats source (used as a JSON key).
    pub fn name(source: u8) -> String {
        match source {
            MESSAGES => "messages".into(),
            PACKETS => "packets".into(),
            CONNECTIONS => "connections".into(),
            PROCESSES => "processes".into(),
            OWNER_EVICTIONS => "owner_evictions".into(),
            TRACKED_FULL => "tracked_full".into(),
            OWNER_MAP_FULL => "owner_map_full".into(),
            DNS => "dns".into(),
            USERSPACE => "userspace".into(),
            other => format!("source{other}"),
        }
    }
}

/// Address family as recorded (`AF_INET`).
pub const AF_INET: u8 = 2;
/// Address family as recorded (`AF_INET6`).
pub const AF_INET6: u8 = 10;

/// Everything that is constant for one flow (socket as seen by one thread).
/// Stored once per chunk in the flow dictionary; events refer to it by index.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct Flow {
    /// Process id (tgid); 0 when unknown (e.g. a received packet).
    pub pid: u32,
    /// Thread id; 0 when unknown.
    pub tid: u32,
    /// Task comm, NUL padded.
    pub comm: [u8; 16],
    /// cgroup v2 id.
    pub cgroup: u64,
    /// Socket cookie; 0 when unknown.
    pub cookie: u64,
    /// Interface index; 0 when not applicable.
    pub ifindex: u32,
    /// Address family: [`AF_INET`], [`AF_INET6`] or 0.
    pub family: u8,
    /// IP protocol number (6 = TCP, 17 = UDP, ...).
    pub proto: u8,
    /// Local address, IPv6 or v4-mapped IPv6.
    pub laddr: [u8; 16],
    /// Local port (host order).
    pub lport: u16,
    /// Remote address, IPv6 or v4-mapped IPv6.
    pub raddr: [u8; 16],
    /// Remote port (host order).
    pub rport: u16,
}

impl Flow {
    /// The fields that tell flows apart in practice (socket, task,
    /// interface, tuple) folded into four words. comm and cgroup follow the
    /// task, so leaving them out only costs an equality check on the rare
    /// collision.
    #[inline]
    pub fn hash_words(&self) -> [u64; 4] {
        let w = |b: &[u8; 16], half: usize| {
            u64::from_le_bytes(std::array::from_fn(|k| b[half * 8 + k]))
        };
        [
            self.cookie,
            (self.pid as u64) << 32 | self.tid as u64,
            self.ifindex as u64 | (self.lport as u64) << 32 | (self.rport as u64) << 48,
            w(&self.laddr, 0)
                ^ w(&self.laddr, 1).rotate_left(29)
                ^ w(&self.raddr, 0).rotate_left(7)
                ^ w(&self.raddr, 1).rotate_left(43)
                ^ ((self.family as u64) << 8 | self.proto as u64),
        ]
    }
}

/// One step of FxHash (rustc's hasher): fold `v` into `h`. Flows are hashed
/// per event on the write path and per flow when read; SipHash's DoS
/// resistance buys nothing for keys a recorder made.
#[inline]
pub fn fx_step(h: u64, v: u64) -> u64 {
    (h.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95)
}

/// Spreads every bit of `h` over the whole word: the low and high halves
/// of a 128-bit product, xored. An FxHash multiply only carries a bit
/// upward, while hash tables pick the bucket from the low bits; without
/// this, ports (a word's high half) barely reached them, and one chunk's
/// packet flows of a connection storm fell into a sixth of the buckets, up
/// to 495 in one.
#[inline]
pub fn fold_mix(h: u64) -> u64 {
    let p = u128::from(h) * 0x9e37_79b9_7f4a_7c15;
    (p as u64) ^ ((p >> 64) as u64)
}

impl Flow {
    /// [`Flow::hash_words`] folded with [`fx_step`], then [`fold_mix`]: the
    /// hash of the flow dictionaries (writer) and of the analyzer's flow
    /// index.
    #[inline]
    pub fn hash64(&self) -> u64 {
        fold_mix(self.hash_words().into_iter().fold(0, fx_step))
    }
}

/// Hashes [`Flow::hash_words`]: four words instead of a dozen fields (flows
/// are hashed per event when traces are written and per flow when read).
impl std::hash::Hash for Flow {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        for w in self.hash_words() {
            state.write_u64(w);
        }
    }
}

/// Direction of a message or packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Direction {
    /// Sent by the local process / transmitted by the device.
    Tx = 0,
    /// Received.
    Rx = 1,
}

/// Kind of a process lifecycle event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ProcessKind {
    /// The process executed a new program.
    Exec = 0,
    /// A process (or thread) was created; `ppid` is the parent.
    Fork = 1,
    /// The process exited.
    Exit = 2,
    /// The process was already running when recording began (since 1.2):
    /// the row's time is the process's start (the kernel's
    /// `task->start_boottime`, possibly before the recording), `ppid` its
    /// parent when recording began. Older readers skip the kind.
    Running = 3,
}

impl ProcessKind {
    /// The kind with this on-disk value.
    pub fn from_u8(v: u8) -> Option<ProcessKind> {
        match v {
            0 => Some(ProcessKind::Exec),
            1 => Some(ProcessKind::Fork),
            2 => Some(ProcessKind::Exit),
            3 => Some(ProcessKind::Running),
            _ => None,
        }
    }

    /// Lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            ProcessKind::Exec => "exec",
            ProcessKind::Fork => "fork",
            ProcessKind::Exit => "exit",
            ProcessKind::Running => "running",
        }
    }
}

/// One process lifecycle event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessRow {
    /// Event time, ns of CLOCK_BOOTTIME.
    pub ts_ns: u64,
    /// What happened.
    pub kind: ProcessKind,
    /// Process id (tgid).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Parent process id.
    pub ppid: u32,
    /// comm after the event, NUL padded.
    pub comm: [u8; 16],
    /// Exit code (exit events), else 0.
    pub exit_code: i32,
    /// Executed file (exec events), else empty.
    pub filename: String,
}

/// A comm as text: bytes up to the first NUL, as the lossless
/// [`crate::names::name_text`] (exact unless it holds a backslash or
/// invalid UTF-8).
pub fn comm_str(comm: &[u8; 16]) -> String {
    let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    crate::names::name_text(&comm[..end])
}

/// A comm from text: truncated to 15 bytes and NUL padded, like the kernel.
pub fn comm_bytes(s: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    let b = s.as_bytes();
    let n = b.len().min(15);
    out[..n].copy_from_slice(&b[..n]);
    out
}

/// An address column value as an `IpAddr`: v4-mapped addresses become IPv4.
pub fn addr(bytes: &[u8; 16]) -> std::net::IpAddr {
    let v6 = std::net::Ipv6Addr::from(*bytes);
    match v6.to_ipv4_mapped() {
        Some(v4) => std::net::IpAddr::V4(v4),
        None => std::net::IpAddr::V6(v6),
    }
}

/// An `IpAddr` as an address column value (IPv4 becomes v4-mapped).
pub fn addr_bytes(ip: std::net::IpAddr) -> [u8; 16] {
    match ip {
        std::net::IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        std::net::IpAddr::V6(v6) => v6.octets(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Buckets (of `1 << bits`) that `flows` fill by their hash's low bits,
    /// as hashbrown picks them.
    fn buckets_used(flows: impl Iterator<Item = Flow>, bits: u32) -> usize {
        let mut used = vec![false; 1 << bits];
        for f in flows {
            used[(f.hash64() & ((1 << bits) - 1)) as usize] = true;
        }
        used.iter().filter(|&&u| u).count()
    }

    #[test]
    fn flows_that_differ_only_in_a_port_spread_over_the_buckets() {
        // Unowned packets of a connection storm: no cookie, no process,
        // the same addresses; only the client port tells them apart.
        let base = Flow {
            ifindex: 1,
            family: AF_INET6,
            proto: 6,
            laddr: addr_bytes("127.0.0.1".parse().expect("addr")),
            raddr: addr_bytes("127.0.0.1".parse().expect("addr")),
            lport: 8080,
            ..Flow::default()
        };
        // 4096 keys in 16384 buckets: a uniform hash fills ~3,620.
        let by_rport = buckets_used(
            (0..4096u16).map(|p| Flow {
                rport: 30_000 + p,
                ..base
            }),
            14,
        );
        let by_lport = buckets_used(
            (0..4096u16).map(|p| Flow {
                lport: 30_000 + p,
                rport: 8080,
                ..base
            }),
            14,
        );
        // Many IPv4 peers of one socket, and many threads of one process.
        let by_raddr = buckets_used(
            (0..4096u32).map(|a| Flow {
                raddr: addr_bytes(std::net::Ipv4Addr::from(0x0a00_0000 + a).into()),
                ..base
            }),
            14,
        );
        let by_tid = buckets_used(
            (0..4096u32).map(|t| Flow {
                pid: 1000,
                tid: 1000 + t,
                cookie: 77,
                ..base
            }),
            14,
        );
        assert!(by_rport > 3400, "remote ports fill {by_rport} buckets");
        assert!(by_lport > 3400, "local ports fill {by_lport} buckets");
        assert!(by_raddr > 3400, "remote addresses fill {by_raddr} buckets");
        assert!(by_tid > 3400, "thread ids fill {by_tid} buckets");
    }
}
