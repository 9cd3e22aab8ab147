//! `snoop diff A.snp B.snp`: what changed between two recordings —
//! yesterday and today, before and after a deploy, host A and host B.
//! Process ids differ between recordings, so processes are matched by name
//! (all processes of one name together). Each side is profiled by the
//! behaviour report ([`crate::report::behavior::profiles`]); one row per
//! name says whether it is new, gone, changed or the same, with its bytes
//! on both sides, the remotes and listening ports that appeared or went,
//! and its traits on both sides. Rows are sorted by how much changed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use snoop_format::comm_str;

use crate::cli::{FilterArgs, Format, Key};
use crate::filter::{sock_str, Filter};
use crate::frame::{opt_u64c, strc, write_frames, Frame, Style};
use crate::load::Dataset;
use crate::report::behavior::{self, Endpoint, Trait};
use crate::report::Ctx;
use crate::usage;

/// Bytes of one name count as changed when one side is more than this
/// factor of the other ...
pub const DIFF_BYTES_FACTOR: f64 = 2.0;
/// ... and the larger side is at least this many bytes.
pub const DIFF_MIN_BYTES: u64 = 4096;

/// `snoop diff A.snp B.snp`: what changed between two recordings.
#[derive(clap::Args, Debug, Clone)]
pub struct DiffArgs {
    /// The earlier (or reference) trace.
    #[arg(value_name = "A")]
    pub a: PathBuf,
    /// The later (or compared) trace.
    #[arg(value_name = "B")]
    pub b: PathBuf,
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
    /// Event filters, applied to both traces.
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// Everything one side says about one process name.
#[derive(Clone, Debug, Default)]
struct Side {
    tx: u64,
    rx: u64,
    traits: BTreeSet<Trait>,
    endpoints: BTreeSet<Endpoint>,
    listen: BTreeSet<(u8, u16)>,
}

/// How a name changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    /// Only in B.
    New,
    /// Only in A.
    Gone,
    /// In both, with a difference (traits, remotes, listening ports or bytes).
    Changed,
    /// In both, alike.
    Same,
}

impl Change {
    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Change::New => "new",
            Change::Gone => "gone",
            Change::Changed => "changed",
            Change::Same => "same",
        }
    }
}

/// Whether two byte counts differ by more than [`DIFF_BYTES_FACTOR`]
/// (and the larger is at least [`DIFF_MIN_BYTES`]).
pub fn bytes_changed(a: u64, b: u64) -> bool {
    let (lo, hi) = (a.min(b), a.max(b));
    hi >= DIFF_MIN_BYTES && hi as f64 > DIFF_BYTES_FACTOR * lo as f64
}

fn endpoint_str(e: &Endpoint) -> String {
    match e.1 {
        Some(port) => sock_str(&e.0, port),
        None => match snoop_format::addr(&e.0) {
            std::net::IpAddr::V6(v6) => format!("[{v6}]:*"),
            v4 => format!("{v4}:*"),
        },
    }
}

fn port_str(p: &(u8, u16)) -> String {
    format!(
        "{}/{}",
        p.1,
        crate::protos::proto_name(p.0).to_ascii_lowercase()
    )
}

fn traits_str(t: &BTreeSet<Trait>) -> String {
    t.iter().map(|t| t.name()).collect::<Vec<_>>().join(",")
}

/// Profile one trace and gather its processes by name.
fn side(path: &Path, filter: &Filter) -> anyhow::Result<BTreeMap<String, Side>> {
    let interval_ns = 1_000_000_000;
    let ds = Dataset::load(&[path.to_path_buf()], filter, behavior::plan(interval_ns))?;
    let ctx = Ctx {
        ds: &ds,
        key: Key::Pid,
        key_given: false,
        interval_ns,
    };
    let mut out: BTreeMap<String, Side> = BTreeMap::new();
    for p in behavior::profiles(&ctx) {
        let s = out.entry(comm_str(&p.comm)).or_default();
        s.tx = s.tx.saturating_add(p.tx_bytes);
        s.rx = s.rx.saturating_add(p.rx_bytes);
        s.traits.extend(Trait::ALL.iter().filter(|t| p.has(**t)));
        s.endpoints.extend(p.endpoints.iter().copied());
        s.listen.extend(p.listen_ports.iter().copied());
    }
    Ok(out)
}

/// One row of the diff.
#[derive(Clone, Debug)]
struct Row {
    comm: String,
    change: Change,
    a: Option<Side>,
    b: Option<Side>,
    new_remotes: Vec<Endpoint>,
    gone_remotes: Vec<Endpoint>,
    new_listen: Vec<(u8, u16)>,
    /// Differences counted for sorting.
    changes: usize,
    /// |Δtx| + |Δrx|.
    delta: u64,
}

fn compare(comm: String, a: Option<Side>, b: Option<Side>) -> Row {
    let empty = Side::default();
    let (sa, sb) = (a.as_ref().unwrap_or(&empty), b.as_ref().unwrap_or(&empty));
    let new_remotes: Vec<Endpoint> = sb.endpoints.difference(&sa.endpoints).copied().collect();
    let gone_remotes: Vec<Endpoint> = sa.endpoints.difference(&sb.endpoints).copied().collect();
    let new_listen: Vec<(u8, u16)> = sb.listen.difference(&sa.listen).copied().collect();
    let gone_listen = sa.listen.difference(&sb.listen).count();
    let traits = sa.traits.symmetric_difference(&sb.traits).count();
    let bytes = usize::from(bytes_changed(sa.tx, sb.tx)) + usize::from(bytes_changed(sa.rx, sb.rx));
    let changes =
        new_remotes.len() + gone_remotes.len() + new_listen.len() + gone_listen + traits + bytes;
    let change = match (&a, &b) {
        (None, _) => Change::New,
        (_, None) => Change::Gone,
        _ if changes > 0 => Change::Changed,
        _ => Change::Same,
    };
    let delta = sa.tx.abs_diff(sb.tx).saturating_add(sa.rx.abs_diff(sb.rx));
    Row {
        comm,
        change,
        a,
        b,
        new_remotes,
        gone_remotes,
        new_listen,
        // Appearing or going is a change in itself.
        changes: changes + usize::from(matches!(change, Change::New | Change::Gone)),
        delta,
    }
}

/// The rows, most changed first: by the number of differences (remotes
/// and listening ports that appeared or went, traits gained or lost,
/// directions whose bytes changed, appearing or going), then by how many
/// bytes the totals moved, then by name.
fn rows(a: BTreeMap<String, Side>, mut b: BTreeMap<String, Side>) -> Vec<Row> {
    let mut out = Vec::new();
    for (comm, sa) in a {
        let sb = b.remove(&comm);
        out.push(compare(comm, Some(sa), sb));
    }
    for (comm, sb) in b {
        out.push(compare(comm, None, Some(sb)));
    }
    out.sort_by(|x, y| {
        y.changes
            .cmp(&x.changes)
            .then(y.delta.cmp(&x.delta))
            .then(x.comm.cmp(&y.comm))
    });
    out
}

/// A list cell: every item, or (in a table) the first few and a count.
fn list<T>(v: &[T], show: impl Fn(&T) -> String, limit: Option<usize>) -> String {
    let n = limit.unwrap_or(usize::MAX).min(v.len());
    let mut s: Vec<String> = v[..n].iter().map(show).collect();
    if n < v.len() {
        s.push(format!("+{} more", v.len() - n));
    }
    s.join(",")
}

fn frame(rows: &[Row], title: String, table: bool) -> anyhow::Result<Frame> {
    let limit = table.then_some(4);
    let bytes = |f: fn(&Side) -> u64, side: fn(&Row) -> &Option<Side>| {
        rows.iter()
            .map(|r| side(r).as_ref().map(f))
            .collect::<Vec<_>>()
    };
    fn a(r: &Row) -> &Option<Side> {
        &r.a
    }
    fn b(r: &Row) -> &Option<Side> {
        &r.b
    }
    let traits = |side: fn(&Row) -> &Option<Side>| {
        polars::prelude::Column::new(
            "".into(),
            rows.iter()
                .map(|r| side(r).as_ref().map(|s| traits_str(&s.traits)))
                .collect::<Vec<_>>(),
        )
    };
    let cols = vec![
        strc("comm", rows.iter().map(|r| r.comm.clone()).collect()),
        strc(
            "change",
            rows.iter().map(|r| r.change.name().to_string()).collect(),
        ),
        opt_u64c("tx_bytes_a", bytes(|s| s.tx, a)),
        opt_u64c("tx_bytes_b", bytes(|s| s.tx, b)),
        opt_u64c("rx_bytes_a", bytes(|s| s.rx, a)),
        opt_u64c("rx_bytes_b", bytes(|s| s.rx, b)),
        strc(
            "new_remotes",
            rows.iter()
                .map(|r| list(&r.new_remotes, endpoint_str, limit))
                .collect(),
        ),
        strc(
            "gone_remotes",
            rows.iter()
                .map(|r| list(&r.gone_remotes, endpoint_str, limit))
                .collect(),
        ),
        strc(
            "new_listen_ports",
            rows.iter()
                .map(|r| list(&r.new_listen, port_str, limit))
                .collect(),
        ),
        traits(a).with_name("traits_a".into()),
        traits(b).with_name("traits_b".into()),
    ];
    let mut f = Frame::new(title, cols, 0)?;
    for c in ["tx_bytes_a", "tx_bytes_b", "rx_bytes_a", "rx_bytes_b"] {
        f.styles.push((c.into(), Style::Bytes));
    }
    if table {
        f.notes.push(
            "matched by process name; remotes are addr:port contacted, or addr:* of peers \
             that connected (ports ephemeral)"
                .into(),
        );
    }
    Ok(f)
}

/// Run `snoop diff`.
pub fn run_diff(args: &DiffArgs) -> anyhow::Result<()> {
    let format = Format::resolve(args.format.as_deref(), args.output.as_deref())?;
    let filter = Filter::parse(&args.filter)?;
    if args
        .output
        .as_deref()
        .and_then(|p| p.extension())
        .is_some_and(|e| e.eq_ignore_ascii_case("html") || e.eq_ignore_ascii_case("htm"))
        && args.format.is_none()
    {
        return Err(usage(
            "snoop diff writes table, json, csv or parquet, not HTML",
        ));
    }
    let a = side(&args.a, &filter)?;
    let b = side(&args.b, &filter)?;
    let rows = rows(a, b);
    let count = |c: Change| rows.iter().filter(|r| r.change == c).count();
    let title = format!(
        "changes from {} to {} ({} new, {} gone, {} changed, {} same)",
        args.a.display(),
        args.b.display(),
        count(Change::New),
        count(Change::Gone),
        count(Change::Changed),
        count(Change::Same)
    );
    let mut frames = vec![frame(&rows, title, format == Format::Table)?];
    if let (Format::Csv, false) = (format, args.raw) {
        crate::frame::csv_safe(&mut frames[0].df)?;
    }
    write_frames(&mut frames, format, args.output.as_deref(), args.top)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_change_needs_a_factor_and_a_floor() {
        assert!(!bytes_changed(0, 0));
        assert!(!bytes_changed(100, 4000)); // under the floor
        assert!(bytes_changed(0, 4096));
        assert!(!bytes_changed(10_000, 20_000)); // exactly 2x: not more
        assert!(bytes_changed(10_000, 20_001));
        assert!(bytes_changed(20_001, 10_000));
    }

    #[test]
    fn endpoints_are_shown_with_or_without_port() {
        let v4 = snoop_format::addr_bytes("10.0.0.5".parse().unwrap());
        let v6 = snoop_format::addr_bytes("fd00::1".parse().unwrap());
        assert_eq!(endpoint_str(&(v4, Some(443))), "10.0.0.5:443");
        assert_eq!(endpoint_str(&(v4, None)), "10.0.0.5:*");
        assert_eq!(endpoint_str(&(v6, None)), "[fd00::1]:*");
        assert_eq!(port_str(&(6, 8080)), "8080/tcp");
    }
}
