//! The command-line surface of `analyze`, `replay` and `export` (clap derive
//! structs the binary flattens into its subcommands), and the parsing of the
//! names they take (reports, keys, formats) into enums, with usage errors
//! that list what is accepted.

use std::path::{Path, PathBuf};

use crate::usage;

/// Filters shared by `analyze`, `replay` and `export`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct FilterArgs {
    /// Only events at or after T: an offset from the recording start (30s,
    /// 1m), a UTC time (2026-01-02T03:04:05Z) or @UNIX_SECONDS.
    #[arg(long, value_name = "T")]
    pub since: Option<String>,
    /// Only events before T (same forms as --since).
    #[arg(long, value_name = "T")]
    pub until: Option<String>,
    /// Only this process id (repeatable).
    #[arg(long, value_name = "PID")]
    pub pid: Vec<u32>,
    /// Only processes with this command name (repeatable).
    #[arg(long, value_name = "NAME")]
    pub comm: Vec<String>,
    /// Only this transport protocol: tcp or udp.
    #[arg(long, value_name = "tcp|udp")]
    pub proto: Option<String>,
    /// Only traffic with this local or remote port.
    #[arg(long, value_name = "N")]
    pub port: Option<u16>,
    /// Only traffic with a remote address in this CIDR (10.0.0.0/8, fd00::/8, 1.2.3.4).
    #[arg(long, value_name = "CIDR")]
    pub remote: Option<String>,
}

/// `snoop analyze FILE...`: reports over one or more traces.
#[derive(clap::Args, Debug, Clone)]
pub struct AnalyzeArgs {
    /// Trace files (several: analysed together, with a `host` column).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Report: summary (default without --by), throughput (default with
    /// --by), conns, sizes, remotes, timeline, lifecycle, coverage,
    /// behavior (or behaviour), html (default when -o ends in .html).
    #[arg(long, value_name = "NAME")]
    pub report: Option<String>,
    /// Group by: pid (default), tid, comm, conn, remote, port, proto, iface, cgroup, container.
    /// `remote` groups by the name DNS answers gave the address, when the trace has one.
    #[arg(long, value_name = "KEY")]
    pub by: Option<String>,
    /// Output format: table (default), json, csv, parquet (inferred from -o's extension).
    #[arg(long, value_name = "table|json|csv|parquet")]
    pub format: Option<String>,
    /// Write to PATH instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// Show only the first N rows (table default 20; 0 = all).
    #[arg(long, value_name = "N")]
    pub top: Option<usize>,
    /// CSV: keep text cells exactly as recorded (by default a cell starting
    /// with = + - @ gets a leading ' so spreadsheets do not run it).
    #[arg(long)]
    pub raw: bool,
    /// Interval for peak rates and the timeline (default 1s).
    #[arg(long, value_name = "DUR", default_value = "1s")]
    pub interval: String,
    /// Event filters.
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// `snoop replay FILE`: every event in time order, one line each (a remote
/// named by the trace's DNS answers is followed by ` (NAME)`).
#[derive(clap::Args, Debug, Clone)]
pub struct ReplayArgs {
    /// Trace file(s).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// One JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,
    /// Write to PATH instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// Event filters.
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// `snoop export FILE --table T -o out.parquet|out.csv|out.pcapng`: raw
/// rows, or the packets for Wireshark; `snoop export FILE... --dataset DIR`:
/// every table as a Hive-partitioned Parquet dataset.
#[derive(clap::Args, Debug, Clone)]
pub struct ExportArgs {
    /// Trace file(s).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Table: messages, packets, connections, processes, stats, dns (names
    /// from DNS answers: ts_ns, pid, name, cnames, addr, ttl).
    #[arg(long, value_name = "TABLE", default_value = "messages")]
    pub table: String,
    /// Output file: .parquet, .csv, or .pcapng (--table packets, for
    /// Wireshark and tshark); or use --format.
    #[arg(
        short = 'o',
        long = "output",
        value_name = "PATH",
        required_unless_present = "dataset",
        conflicts_with = "dataset"
    )]
    pub output: Option<PathBuf>,
    /// Output format: parquet, csv or pcapng (default: from the extension of -o).
    #[arg(long, value_name = "parquet|csv|pcapng")]
    pub format: Option<String>,
    /// Write every table of every FILE into the Hive-partitioned Parquet
    /// dataset DIR (DIR/table=T/host=H/date=YYYY-MM-DD/part-N.parquet),
    /// adding new parts beside the existing ones; a trace already in DIR is
    /// skipped with a message.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["format", "raw", "table"])]
    pub dataset: Option<PathBuf>,
    /// CSV: keep text cells exactly as recorded (by default a cell starting
    /// with = + - @ gets a leading ' so spreadsheets do not run it).
    #[arg(long)]
    pub raw: bool,
    /// Event filters.
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// The reports of `analyze`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Report {
    /// Human overview.
    Summary,
    /// Bytes, messages, packets and rates per group.
    Throughput,
    /// One row per connection.
    Conns,
    /// Size distributions.
    Sizes,
    /// Remote addresses per process.
    Remotes,
    /// Bytes per interval per group.
    Timeline,
    /// Process lifecycle and network timing.
    Lifecycle,
    /// Packet attribution coverage.
    Coverage,
    /// Self-contained HTML page with charts.
    Html,
    /// Behaviour traits, role and evidence per process.
    Behavior,
}

impl Report {
    /// The report to run: `--report` if given; else html for an `-o` ending
    /// in `.html`/`.htm` (unless `--format` says otherwise), throughput with
    /// `--by`, summary without. A named report other than html written to
    /// an .html file without `--format` is a usage error (it would be a
    /// text table in a file a browser opens).
    pub fn resolve(
        given: Option<&str>,
        by: bool,
        format: Option<&str>,
        output: Option<&Path>,
    ) -> anyhow::Result<Report> {
        let html_out = output
            .and_then(|p| p.extension())
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("html") || e.eq_ignore_ascii_case("htm"));
        let r = match given {
            Some(r) => Report::parse(r)?,
            None if html_out && format.is_none() => Report::Html,
            None if by => Report::Throughput,
            None => Report::Summary,
        };
        if html_out && format.is_none() && r != Report::Html {
            return Err(usage(format!(
                "-o {}: only --report html writes HTML; give --report html, or --format \
                 table|json|csv|parquet to write that into the file",
                output.map(|p| p.display().to_string()).unwrap_or_default()
            )));
        }
        Ok(r)
    }

    const NAMES: &'static str =
        "summary, throughput, conns, sizes, remotes, timeline, lifecycle, coverage, behavior, html";

    /// Parse a report name.
    pub fn parse(s: &str) -> anyhow::Result<Report> {
        Ok(match s {
            "summary" => Report::Summary,
            "throughput" => Report::Throughput,
            "conns" | "connections" => Report::Conns,
            "sizes" => Report::Sizes,
            "remotes" => Report::Remotes,
            "timeline" => Report::Timeline,
            "lifecycle" => Report::Lifecycle,
            "coverage" => Report::Coverage,
            "html" => Report::Html,
            "behavior" | "behaviour" => Report::Behavior,
            _ => {
                return Err(usage(format!(
                    "unknown report {s:?} (known: {})",
                    Report::NAMES
                )))
            }
        })
    }
}

/// Group keys of `--by`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    /// Process id (+ comm).
    Pid,
    /// Thread id (+ pid, comm).
    Tid,
    /// Command name.
    Comm,
    /// Connection 5-tuple (+ pid, comm).
    Conn,
    /// Remote address.
    Remote,
    /// Remote port (well-known side).
    Port,
    /// IP protocol.
    Proto,
    /// Network interface.
    Iface,
    /// cgroup id (with its path and container when the trace names it).
    Cgroup,
    /// Container or systemd service, from the cgroup's path (format 1.2).
    Container,
}

impl Key {
    const NAMES: &'static str =
        "pid, tid, comm, conn, remote, port, proto, iface, cgroup, container";

    /// Parse a key name.
    pub fn parse(s: &str) -> anyhow::Result<Key> {
        Ok(match s {
            "pid" => Key::Pid,
            "tid" => Key::Tid,
            "comm" => Key::Comm,
            "conn" => Key::Conn,
            "remote" => Key::Remote,
            "port" => Key::Port,
            "proto" => Key::Proto,
            "iface" => Key::Iface,
            "cgroup" => Key::Cgroup,
            "container" => Key::Container,
            _ => {
                return Err(usage(format!(
                    "unknown key {s:?} for --by (known: {})",
                    Key::NAMES
                )))
            }
        })
    }
}

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Aligned text.
    Table,
    /// JSON array of row objects.
    Json,
    /// CSV with a header.
    Csv,
    /// Parquet (zstd).
    Parquet,
}

impl Format {
    /// Parse `--format`, else infer from the output path's extension.
    pub fn resolve(given: Option<&str>, output: Option<&Path>) -> anyhow::Result<Format> {
        let from_ext = output
            .and_then(|p| p.extension())
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let name = match (given, from_ext.as_deref()) {
            (Some(g), _) => g.to_string(),
            (None, Some("json")) => "json".into(),
            (None, Some("csv")) => "csv".into(),
            (None, Some("parquet" | "pq")) => "parquet".into(),
            _ => "table".into(),
        };
        Ok(match name.as_str() {
            "table" | "text" => Format::Table,
            "json" => Format::Json,
            "csv" => Format::Csv,
            "parquet" => Format::Parquet,
            other => {
                return Err(usage(format!(
                    "unknown format {other:?} (known: table, json, csv, parquet)"
                )))
            }
        })
    }
}
