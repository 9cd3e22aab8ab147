//! `snoop analyze`: picks the report, loads only what it needs, builds its
//! frames and writes them. One module per report; `keys` holds the `--by`
//! grouping they share.

pub(crate) mod behavior;
mod conns;
mod coverage;
mod html;
pub(crate) mod keys;
mod lifecycle;
mod remotes;
mod sizes;
mod summary;
mod svg;
mod throughput;
mod timeline;

use crate::cli::{AnalyzeArgs, Format, Key, Report};
use crate::filter::Filter;
use crate::frame::{write_frames, Frame};
use crate::load::{Dataset, LoadPlan};
use crate::units::parse_duration;
use crate::usage;

/// What a report needs loaded.
fn plan_for(report: Report, interval_ns: u64) -> LoadPlan {
    let mut p = LoadPlan {
        messages: true,
        packets: false,
        events: false,
        behaviour: false,
        udp_conns: false,
        connections: false,
        // Process events are few; they give processes their latest name
        // and end UDP flows at exit.
        processes: true,
        stats: false,
        interval_ns,
    };
    match report {
        Report::Throughput | Report::Timeline => p.packets = true,
        Report::Coverage => {
            p.packets = true;
            p.processes = false;
        }
        Report::Conns => {
            p.udp_conns = true;
            p.connections = true;
        }
        Report::Sizes => {
            p.packets = true;
            p.events = true;
        }
        Report::Remotes => {
            p.packets = true;
            p.connections = true;
        }
        Report::Lifecycle => {
            p.udp_conns = true;
            p.connections = true;
        }
        Report::Summary => {
            p.packets = true;
            p.connections = true;
            p.stats = true;
        }
        Report::Behavior => return behavior::plan(interval_ns),
        Report::Html => {
            p.packets = true;
            p.events = true;
            p.behaviour = true;
            p.udp_conns = true;
            p.connections = true;
            p.stats = true;
        }
    }
    p
}

/// The parsed options every report sees.
pub(crate) struct Ctx<'a> {
    /// The data.
    pub ds: &'a Dataset,
    /// `--by` (default pid).
    pub key: Key,
    /// Whether `--by` was given.
    pub key_given: bool,
    /// `--interval` in ns.
    pub interval_ns: u64,
}

/// Build a report's frames (everything but html and the summary layout).
pub(crate) fn build(report: Report, ctx: &Ctx) -> anyhow::Result<Vec<Frame>> {
    match report {
        Report::Throughput => Ok(vec![throughput::frame(ctx)?]),
        Report::Conns => conns::frames(ctx),
        Report::Sizes => Ok(vec![sizes::frame(ctx)?]),
        Report::Remotes => Ok(vec![remotes::frame(ctx)?]),
        Report::Timeline => Ok(vec![timeline::frame(ctx)?]),
        Report::Lifecycle => Ok(vec![lifecycle::frame(ctx)?]),
        Report::Coverage => Ok(vec![coverage::frame(ctx)?]),
        Report::Summary => summary::frames(ctx),
        Report::Behavior => Ok(vec![behavior::frame(ctx)?]),
        Report::Html => Err(usage("html is written by run_analyze")),
    }
}

/// Run `snoop analyze`.
pub fn run_analyze(args: &AnalyzeArgs) -> anyhow::Result<()> {
    let report = Report::resolve(
        args.report.as_deref(),
        args.by.is_some(),
        args.format.as_deref(),
        args.output.as_deref(),
    )?;
    let key = args.by.as_deref().map(Key::parse).transpose()?;
    let format = Format::resolve(args.format.as_deref(), args.output.as_deref())?;
    let interval_ns = parse_duration(&args.interval)?;
    if interval_ns == 0 {
        return Err(usage("--interval must be greater than zero"));
    }
    let filter = Filter::parse(&args.filter)?;
    if report == Report::Html && args.format.is_some() {
        return Err(usage("--report html writes HTML; drop --format"));
    }
    let ds = Dataset::load(&args.files, &filter, plan_for(report, interval_ns))?;
    let ctx = Ctx {
        ds: &ds,
        key: key.unwrap_or(Key::Pid),
        key_given: key.is_some(),
        interval_ns,
    };
    if report == Report::Html {
        let html = html::page(&ctx)?;
        let mut w = crate::frame::open_output(args.output.as_deref())?;
        w.write_all(html.as_bytes())?;
        w.flush()?;
        return Ok(());
    }
    let t = std::time::Instant::now();
    let mut frames = build(report, &ctx)?;
    if std::env::var_os("SNOOP_TIMING").is_some() {
        eprintln!("timing: report {:?}", t.elapsed());
    }
    if matches!(report, Report::Behavior | Report::Summary) && format == Format::Table {
        frames = behavior::for_table(frames, args.top)?;
    }
    if report == Report::Summary && format == Format::Json {
        return summary::write_json(&frames, args.output.as_deref());
    }
    if let (Format::Csv, false, Some(f)) = (format, args.raw, frames.first_mut()) {
        crate::frame::csv_safe(&mut f.df)?;
    }
    write_frames(&mut frames, format, args.output.as_deref(), args.top)
}

use std::io::Write as _;

/// Nearest-rank quantile of sorted values: the smallest value such that at
/// least a fraction `q` of the values is less than or equal to it (0 if empty).
pub(crate) fn nearest_rank(sorted: &[u64], q: f64) -> u64 {
    let n = sorted.len();
    if n == 0 {
        return 0;
    }
    let r = (q * n as f64).ceil() as usize;
    sorted[r.clamp(1, n) - 1]
}

/// Power-of-two histogram: bucket 0 counts zeros, bucket k counts values in
/// `[2^(k-1), 2^k)`. Trailing empty buckets are dropped.
pub(crate) fn pow2_hist(values: &[u64]) -> Vec<u64> {
    let mut h = vec![0u64; 65];
    for &v in values {
        h[(64 - v.leading_zeros()) as usize] += 1;
    }
    while h.last() == Some(&0) {
        h.pop();
    }
    h
}

/// A histogram as text: `lower:count` for non-empty buckets.
pub(crate) fn hist_str(h: &[u64]) -> String {
    h.iter()
        .enumerate()
        .filter(|(_, &c)| c > 0)
        .map(|(k, c)| format!("{}:{c}", if k == 0 { 0 } else { 1u64 << (k - 1) }))
        .collect::<Vec<_>>()
        .join(" ")
}
