//! The throughput report (`--by KEY`, the default with `--by`): per group,
//! application bytes and messages, wire bytes and packets (attributed
//! offline), first/last activity and average and peak send/receive rates.
//! Per-flow totals are summed per integer group id in one pass (there are
//! few groups and up to millions of flows: a polars group-by of a frame of
//! every flow cost a connection storm's report more than the sums), then
//! the key columns are joined and polars sorts the rows.

use polars::prelude::*;

use super::keys::{is_msg, Groups};
use super::Ctx;
use crate::frame::{f64c, u32c, u64c, Frame};

/// Peak tx/rx bytes in one interval, per group (messages only).
pub fn peaks(ctx: &Ctx, groups: &Groups) -> Vec<(u64, u64)> {
    let mut per: PlHashMap<(u32, u64), (u64, u64)> = PlHashMap::default();
    for b in &ctx.ds.buckets {
        let g = groups.of_flow[b.flow as usize];
        if g == u32::MAX || !is_msg(&ctx.ds.flows[b.flow as usize]) {
            continue;
        }
        let e = per.entry((g, b.b)).or_default();
        e.0 = e.0.saturating_add(b.tx);
        e.1 = e.1.saturating_add(b.rx);
    }
    let mut out = vec![(0u64, 0u64); groups.len()];
    for ((g, _), (tx, rx)) in per {
        let o = &mut out[g as usize];
        o.0 = o.0.max(tx);
        o.1 = o.1.max(rx);
    }
    out
}

/// The throughput frame for `ctx.key`.
pub fn frame(ctx: &Ctx) -> anyhow::Result<Frame> {
    let ds = ctx.ds;
    let groups = Groups::new(ds, ctx.key, |r| r.origin.is_packet() || is_msg(r));
    // Per group: the sums below (messages: app bytes and counts; packets:
    // wire bytes and counts), first and last activity.
    const SUMS: [&str; 8] = [
        "tx_bytes",
        "rx_bytes",
        "tx_msgs",
        "rx_msgs",
        "tx_wire_bytes",
        "rx_wire_bytes",
        "tx_packets",
        "rx_packets",
    ];
    #[derive(Clone, Copy)]
    struct Sums {
        v: [u64; 8],
        first: u64,
        last: u64,
        seen: bool,
    }
    let mut per = vec![
        Sums {
            v: [0; 8],
            first: u64::MAX,
            last: 0,
            seen: false,
        };
        groups.len()
    ];
    for (i, r) in ds.flows.iter().enumerate() {
        let g = groups.of_flow[i];
        let a = &ds.agg[i];
        if g == u32::MAX || a.events() == 0 {
            continue;
        }
        let s = &mut per[g as usize];
        let at = if is_msg(r) { 0 } else { 4 };
        for (k, x) in [a.tx_bytes, a.rx_bytes, a.tx_n, a.rx_n]
            .into_iter()
            .enumerate()
        {
            s.v[at + k] = s.v[at + k].saturating_add(x);
        }
        s.first = s.first.min(a.first);
        s.last = s.last.max(a.last);
        s.seen = true;
    }
    // Groups with events, in group-id order.
    let gids: Vec<u32> = (0..per.len() as u32)
        .filter(|&g| per[g as usize].seen)
        .collect();
    let col_of = |k: usize| -> Vec<u64> { gids.iter().map(|&g| per[g as usize].v[k]).collect() };
    let (tx, rx) = (col_of(0), col_of(1));
    let f: Vec<u64> = gids.iter().map(|&g| per[g as usize].first).collect();
    let l: Vec<u64> = gids.iter().map(|&g| per[g as usize].last).collect();
    let peak = peaks(ctx, &groups);
    let secs = ctx.interval_ns as f64 / 1e9;
    let span = |i: usize| (l[i].saturating_sub(f[i])).max(ctx.interval_ns) as f64 / 1e9;
    let rows = gids.len();
    let avg_tx: Vec<f64> = (0..rows).map(|i| tx[i] as f64 * 8.0 / span(i)).collect();
    let avg_rx: Vec<f64> = (0..rows).map(|i| rx[i] as f64 * 8.0 / span(i)).collect();
    let peak_tx: Vec<f64> = gids
        .iter()
        .map(|&g| peak[g as usize].0 as f64 * 8.0 / secs)
        .collect();
    let peak_rx: Vec<f64> = gids
        .iter()
        .map(|&g| peak[g as usize].1 as f64 * 8.0 / secs)
        .collect();

    // Key columns for the groups present, in the same order.
    let keys = DataFrame::new_infer_height(groups.columns(ds))?;
    let idx = IdxCa::from_vec("idx".into(), gids.iter().map(|&g| g as IdxSize).collect());
    let keys = keys.take(&idx)?;
    let mut cols: Vec<Column> = keys.columns().to_vec();
    for (k, name) in SUMS.iter().enumerate() {
        cols.push(u64c(name, col_of(k)));
    }
    cols.push(u64c("first_ns", f));
    cols.push(u64c("last_ns", l));
    cols.push(f64c("tx_avg_bps", avg_tx));
    cols.push(f64c("rx_avg_bps", avg_rx));
    cols.push(f64c("tx_peak_bps", peak_tx));
    cols.push(f64c("rx_peak_bps", peak_rx));
    let total: Vec<u64> = gids
        .iter()
        .map(|&g| {
            let v = &per[g as usize].v;
            v[0].saturating_add(v[1]).max(v[4].saturating_add(v[5]))
        })
        .collect();
    cols.push(u64c("_total", total));
    cols.push(u32c("_gid", gids));
    let df = DataFrame::new_infer_height(cols)?
        .lazy()
        .sort(
            ["_total", "_gid"],
            SortMultipleOptions::default().with_order_descending_multi([true, false]),
        )
        .drop(cols_sel(["_total", "_gid"]))
        .collect()
        .map_err(|e| anyhow::anyhow!("sorting throughput rows: {e}"))?;
    let off = ds
        .files
        .first()
        .map(|f| f.info.boot_to_wall_ns)
        .unwrap_or(0);
    let title = format!(
        "throughput by {} ({} groups, interval {})",
        key_name(ctx),
        df.height(),
        crate::units::duration(ctx.interval_ns)
    );
    Frame::new(title, df.columns().to_vec(), off)
}

fn cols_sel<const N: usize>(names: [&str; N]) -> Selector {
    by_name(names.iter().map(|s| s.to_string()), true, false)
}

/// The key's name for titles.
pub fn key_name(ctx: &Ctx) -> &'static str {
    use crate::cli::Key::*;
    match ctx.key {
        Pid => "pid",
        Tid => "tid",
        Comm => "comm",
        Conn => "conn",
        Remote => "remote",
        Port => "port",
        Proto => "proto",
        Iface => "iface",
        Cgroup => "cgroup",
        Container => "container",
    }
}
