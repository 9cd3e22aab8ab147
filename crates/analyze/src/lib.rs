//! snoop-analyze: the offline analyzer. A trace (or several, one per host) is
//! decoded chunk by chunk in parallel into per-flow aggregates and, when a
//! report needs them, per-event columns; packets are attributed to processes
//! offline (socket cookie, then 5-tuple and time); reports become polars
//! DataFrames written as aligned tables, JSON, CSV, Parquet or one HTML page.
//! `replay` prints every event in time order and `export` writes raw rows,
//! packets as pcapng for Wireshark, or a Hive-partitioned Parquet dataset.
//!
//! `diff` compares two traces process by process (matched by name).
//!
//! The binary calls [`run_analyze`], [`run_diff`], [`run_replay`] and [`run_export`] with
//! the clap argument structs defined here; usage mistakes come back as a
//! [`UsageError`] inside the `anyhow::Error`, which the binary maps to exit 2.

mod attrib;
mod behave;
mod cli;
mod dataset;
mod decode;
mod diff;
mod export;
mod filter;
mod frame;
mod load;
mod model;
mod pcapng;
mod protos;
mod remote_names;
mod replay;
mod report;
mod udpcut;
mod units;

pub use cli::{AnalyzeArgs, ExportArgs, FilterArgs, ReplayArgs};
pub use diff::{run_diff, DiffArgs};
pub use export::run_export;
pub use load::{Dataset, FileMeta, LoadPlan, Origin};
pub use protos::proto_name;
pub use replay::run_replay;
pub use report::run_analyze;

/// A mistake in how snoop was called (unknown report or key, bad duration,
/// bad address). The binary prints it and exits with code 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// A usage error as an `anyhow::Error`.
pub(crate) fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.into()))
}

/// Whether `err` (anywhere in its chain) is a [`UsageError`].
pub fn is_usage_error(err: &anyhow::Error) -> bool {
    err.chain().any(|e| e.is::<UsageError>())
}
