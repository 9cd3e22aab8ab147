//! Decoded chunks as typed column vectors: what the analyzer turns into
//! DataFrames and `replay` walks row by row. Columns that were not asked for
//! are empty vectors, so a query pays only for what it reads.

use crate::codec::ColumnData;
use crate::error::{FormatError, Result};
use crate::schema::{col, Table, TcpOutcome};

/// Which columns to decode: a bit per column id (ids are < 128).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ColumnSet(pub u128);

impl ColumnSet {
    /// Every column.
    pub const ALL: ColumnSet = ColumnSet(u128::MAX);

    /// Exactly these column ids.
    pub fn of(ids: &[u16]) -> ColumnSet {
        ColumnSet(
            ids.iter()
                .fold(0u128, |m, &id| m | (1u128 << (id.min(127)))),
        )
    }

    /// Whether `id` is in the set.
    pub fn has(self, id: u16) -> bool {
        id < 128 && self.0 & (1u128 << id) != 0
    }

    /// The set with `ids` added.
    pub fn with(self, ids: &[u16]) -> ColumnSet {
        ColumnSet(self.0 | ColumnSet::of(ids).0)
    }
}

/// One decoded chunk, columns by id.
#[derive(Clone, Debug)]
pub struct Chunk {
    /// Table of the rows.
    pub table: Table,
    /// Event rows.
    pub rows: usize,
    /// Flow dictionary rows.
    pub flow_rows: usize,
    /// Decoded columns.
    pub columns: Vec<(u16, ColumnData)>,
    /// File offset of the chunk (for error messages).
    pub offset: u64,
}

macro_rules! take {
    ($name:ident, $variant:ident, $t:ty) => {
        /// Remove and return column `id` (empty if absent or of another type).
        pub fn $name(&mut self, id: u16) -> Vec<$t> {
            match self.columns.iter().position(|(i, _)| *i == id) {
                Some(p) => match self.columns.swap_remove(p).1 {
                    ColumnData::$variant(v) => v,
                    _ => Vec::new(),
                },
                None => Vec::new(),
            }
        }
    };
}

impl Chunk {
    take!(take_u8, U8, u8);
    take!(take_u16, U16, u16);
    take!(take_u32, U32, u32);
    take!(take_u64, U64, u64);
    take!(take_i32, I32, i32);
    take!(take_fixed16, Fixed16, [u8; 16]);
    take!(take_str, Str, String);

    fn corrupt(&self, detail: String) -> FormatError {
        FormatError::corrupt(format!("{} chunk", self.table.name()), self.offset, detail)
    }

    /// Messages, packets or connections as typed columns. Flow indices are
    /// checked against the dictionary.
    pub fn into_events(mut self) -> Result<EventBatch> {
        if !self.table.has_flows() {
            return Err(self.corrupt("not an event table".into()));
        }
        let flow = self.take_u32(col::FLOW);
        if let Some(bad) = flow.iter().find(|&&f| f as usize >= self.flow_rows) {
            return Err(self.corrupt(format!(
                "flow index {bad} outside dictionary of {} flows",
                self.flow_rows
            )));
        }
        let is_conn = self.table == Table::Connections;
        let b = EventBatch {
            table: self.table,
            ts: self.take_u64(col::TS),
            flow,
            bytes: if is_conn {
                Vec::new()
            } else {
                self.take_u32(col::BYTES)
            },
            dir: if is_conn {
                Vec::new()
            } else {
                self.take_u8(col::DIR)
            },
            segs: if self.table == Table::Packets {
                self.take_u16(col::SEGS)
            } else {
                Vec::new()
            },
            count: if self.table == Table::Packets {
                self.take_u32(col::COUNT)
            } else {
                Vec::new()
            },
            span_ns: if self.table == Table::Packets {
                self.take_u64(col::SPAN_NS)
            } else {
                Vec::new()
            },
            tcp_flags: if self.table == Table::Packets {
                self.take_u8(col::TCP_FLAGS)
            } else {
                Vec::new()
            },
            old_state: if is_conn {
                self.take_u8(col::OLD_STATE)
            } else {
                Vec::new()
            },
            new_state: if is_conn {
                self.take_u8(col::NEW_STATE)
            } else {
                Vec::new()
            },
            bytes_acked: if is_conn {
                self.take_u64(col::BYTES_ACKED)
            } else {
                Vec::new()
            },
            bytes_received: if is_conn {
                self.take_u64(col::BYTES_RECEIVED)
            } else {
                Vec::new()
            },
            sk_err: if is_conn {
                self.take_u16(col::SK_ERR)
            } else {
                Vec::new()
            },
            retrans_segs: if is_conn {
                self.take_u32(col::RETRANS_SEGS)
            } else {
                Vec::new()
            },
            srtt_us: if is_conn {
                self.take_u32(col::SRTT_US)
            } else {
                Vec::new()
            },
            min_rtt_us: if is_conn {
                self.take_u32(col::MIN_RTT_US)
            } else {
                Vec::new()
            },
            segs_out: if is_conn {
                self.take_u32(col::SEGS_OUT)
            } else {
                Vec::new()
            },
            segs_in: if is_conn {
                self.take_u32(col::SEGS_IN)
            } else {
                Vec::new()
            },
            flows: FlowColumns {
                pid: self.take_u32(col::F_PID),
                tid: self.take_u32(col::F_TID),
                comm: self.take_fixed16(col::F_COMM),
                cgroup: self.take_u64(col::F_CGROUP),
                cookie: self.take_u64(col::F_COOKIE),
                ifindex: self.take_u32(col::F_IFINDEX),
                family: self.take_u8(col::F_FAMILY),
                proto: self.take_u8(col::F_PROTO),
                laddr: self.take_fixed16(col::F_LADDR),
                lport: self.take_u16(col::F_LPORT),
                raddr: self.take_fixed16(col::F_RADDR),
                rport: self.take_u16(col::F_RPORT),
            },
            rows: self.rows,
        };
        Ok(b)
    }

    /// Process events as typed columns.
    pub fn into_processes(mut self) -> Result<ProcessBatch> {
        if self.table != Table::Processes {
            return Err(self.corrupt("not the processes table".into()));
        }
        Ok(ProcessBatch {
            ts: self.take_u64(col::TS),
            kind: self.take_u8(col::KIND),
            pid: self.take_u32(col::PID),
            tid: self.take_u32(col::TID),
            ppid: self.take_u32(col::PPID),
            comm: self.take_fixed16(col::COMM),
            exit_code: self.take_i32(col::EXIT_CODE),
            filename: self.take_str(col::FILENAME),
            rows: self.rows,
        })
    }

    /// Stats rows as typed columns.
    pub fn into_stats(mut self) -> Result<StatsBatch> {
        if self.table != Table::Stats {
            return Err(self.corrupt("not the stats table".into()));
        }
        Ok(StatsBatch {
            ts: self.take_u64(col::TS),
            source: self.take_u8(col::SOURCE),
            dropped: self.take_u64(col::DROPPED),
            events: self.take_u64(col::EVENTS),
            rows: self.rows,
        })
    }
}

/// The flow dictionary of one chunk (columns not asked for are empty).
#[derive(Clone, Debug, Default)]
pub struct FlowColumns {
    /// Process ids.
    pub pid: Vec<u32>,
    /// Thread ids.
    pub tid: Vec<u32>,
    /// comms.
    pub comm: Vec<[u8; 16]>,
    /// cgroup ids.
    pub cgroup: Vec<u64>,
    /// Socket cookies.
    pub cookie: Vec<u64>,
    /// Interface indexes.
    pub ifindex: Vec<u32>,
    /// Address families.
    pub family: Vec<u8>,
    /// IP protocols.
    pub proto: Vec<u8>,
    /// Local addresses.
    pub laddr: Vec<[u8; 16]>,
    /// Local ports.
    pub lport: Vec<u16>,
    /// Remote addresses.
    pub raddr: Vec<[u8; 16]>,
    /// Remote ports.
    pub rport: Vec<u16>,
}

/// Decoded rows of a messages, packets or connections chunk.
#[derive(Clone, Debug)]
pub struct EventBatch {
    /// Which table.
    pub table: Table,
    /// Rows in the chunk.
    pub rows: usize,
    /// Times (CLOCK_BOOTTIME ns), sorted.
    pub ts: Vec<u64>,
    /// Flow index per row.
    pub flow: Vec<u32>,
    /// Message bytes / packet wire length.
    pub bytes: Vec<u32>,
    /// Direction (0 tx, 1 rx).
    pub dir: Vec<u8>,
    /// Packets: GSO segments.
    pub segs: Vec<u16>,
    /// Packets (1.4): packets in each row's run. Empty when not asked for
    /// or when the chunk has none (older traces: every row one packet);
    /// read it with [`EventBatch::count`].
    pub count: Vec<u32>,
    /// Packets (1.4): ns from each run's first packet to its last. Empty
    /// as `count`; read it with [`EventBatch::last_ns`].
    pub span_ns: Vec<u64>,
    /// Packets (1.4): TCP flags of each run's packets, OR-ed. Empty as
    /// `count` (flags unknown).
    pub tcp_flags: Vec<u8>,
    /// Connections: old state.
    pub old_state: Vec<u8>,
    /// Connections: new state.
    pub new_state: Vec<u8>,
    /// Connections: bytes acked.
    pub bytes_acked: Vec<u64>,
    /// Connections: bytes received.
    pub bytes_received: Vec<u64>,
    /// Connections (1.2): sk_err at CLOSE. Empty when not asked for or
    /// when the chunk has no such column (older traces).
    pub sk_err: Vec<u16>,
    /// Connections (1.2): segments retransmitted.
    pub retrans_segs: Vec<u32>,
    /// Connections (1.2): smoothed RTT, µs.
    pub srtt_us: Vec<u32>,
    /// Connections (1.2): minimum RTT, µs.
    pub min_rtt_us: Vec<u32>,
    /// Connections (1.2): segments sent.
    pub segs_out: Vec<u32>,
    /// Connections (1.2): segments received.
    pub segs_in: Vec<u32>,
    /// The chunk's flow dictionary.
    pub flows: FlowColumns,
}

impl EventBatch {
    /// Packets in row `i`'s run: 1 for a single packet and for every row
    /// of a trace older than format 1.4.
    pub fn count(&self, i: usize) -> u32 {
        self.count.get(i).copied().unwrap_or(1).max(1)
    }

    /// Time of the last packet of row `i`'s run: its `ts` for a single
    /// packet and for every row of a trace older than format 1.4.
    pub fn last_ns(&self, i: usize) -> u64 {
        let ts = self.ts.get(i).copied().unwrap_or(0);
        ts.saturating_add(self.span_ns.get(i).copied().unwrap_or(0))
    }

    /// Row `i`'s TCP outcome, `None` when the chunk has no outcome columns
    /// (a trace older than format 1.2, or columns not asked for).
    pub fn outcome(&self, i: usize) -> Option<TcpOutcome> {
        Some(TcpOutcome {
            sk_err: *self.sk_err.get(i)?,
            retrans_segs: *self.retrans_segs.get(i)?,
            srtt_us: *self.srtt_us.get(i)?,
            min_rtt_us: *self.min_rtt_us.get(i)?,
            segs_out: *self.segs_out.get(i)?,
            segs_in: *self.segs_in.get(i)?,
        })
    }
}

/// Decoded rows of a processes chunk.
#[derive(Clone, Debug)]
pub struct ProcessBatch {
    /// Rows in the chunk.
    pub rows: usize,
    /// Times.
    pub ts: Vec<u64>,
    /// Kinds (see `ProcessKind`).
    pub kind: Vec<u8>,
    /// Process ids.
    pub pid: Vec<u32>,
    /// Thread ids.
    pub tid: Vec<u32>,
    /// Parent pids.
    pub ppid: Vec<u32>,
    /// comms.
    pub comm: Vec<[u8; 16]>,
    /// Exit codes.
    pub exit_code: Vec<i32>,
    /// File names.
    pub filename: Vec<String>,
}

/// Decoded rows of a stats chunk.
#[derive(Clone, Debug)]
pub struct StatsBatch {
    /// Rows in the chunk.
    pub rows: usize,
    /// Times.
    pub ts: Vec<u64>,
    /// Sources.
    pub source: Vec<u8>,
    /// Dropped records.
    pub dropped: Vec<u64>,
    /// Kept records.
    pub events: Vec<u64>,
}
