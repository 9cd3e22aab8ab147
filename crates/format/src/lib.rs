//! snoop-format: the snoop trace file.
//!
//! A trace is a file header, an info block, then self-contained chunks (each
//! one table's rows as zstd-compressed columns with a per-chunk flow
//! dictionary), and — when the writer closed cleanly — a footer index and a
//! trailer. The reader memory-maps the file, validates everything it reads
//! and recovers the complete chunks of a file whose writer was killed. The
//! byte layout is specified in `FORMAT.md` beside this crate.
//!
//! This crate knows nothing of eBPF or polars: the recorder pushes rows into
//! a [`TraceWriter`], the analyzer reads typed column batches from a [`Trace`].

mod batch;
pub mod cgroup;
mod codec;
mod error;
mod host;
pub mod layout;
pub mod meta;
pub mod names;
mod reader;
mod schema;
pub mod synth;
mod writer;

pub use batch::{Chunk, ColumnSet, EventBatch, FlowColumns, ProcessBatch, StatsBatch};
pub use codec::{ColumnData, MAX_CHUNK_ROWS, MAX_STR_BYTES};
pub use error::{FormatError, Result};
pub use host::{boot_to_wall_ns, boottime_ns, interfaces};
pub use meta::{Cgroups, ChunkEntry, DnsAnswer, DnsNames, FileInfo, Hooks, PACKET_MODE};
pub use names::{name_text, shown, Shown};
pub use reader::{ChunkSizes, Recovery, Trace};
pub use schema::{
    addr, addr_bytes, col, column_def, column_optional, comm_bytes, comm_str, fold_mix, fx_step,
    source, ColType, ColumnDef, ConnStatus, Direction, Flow, ProcessKind, ProcessRow, Table,
    TcpOutcome, AF_INET, AF_INET6, FLOW_COLUMNS,
};
pub use writer::{TraceWriter, WriterOptions};
