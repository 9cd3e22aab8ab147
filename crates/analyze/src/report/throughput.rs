//! The throughput report (`--by KEY`, the default with `--by`): per group,
//! application bytes and messages, wire bytes and packets (attributed
//! offline), first/last activity and average and peak send/receive rates.
//! Per-flow totals go into a polars frame keyed by the integer group id;
//! polars sums them per group, the key columns are joined at the end.

use std::collections::HashMap;

use polars::prelude::*;

use super::keys::{is_msg, Groups};
use super::Ctx;
use crate::frame::{f64c, u32c, u64c, Frame};

/// Peak tx/rx bytes in one interval, per group (messages only).
pub fn peaks(ctx: &Ctx, groups: &Groups) -> Vec<(u64, u64)> {
    let mut per: HashMap<(u32, u64), (u64, u64)> = HashMap::new();
    for b in &ctx.ds.buckets {
        let g = groups.of_flow[b.flow as usize];
        if g == u32::MAX || !is_msg(&ctx.ds.flows[b.flow as usize]) {
            continue;
        }
        let e = per.entry((g, b.b)).or_default();
        e.0 += b.tx;
        e.1 += b.rx;
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
    // Per flow: group id and the metrics it contributes.
    let n = ds.flows.len();
    let (mut gid, mut txb, mut rxb, mut txm, mut rxm) =
        (Vec::with_capacity(n), vec![], vec![], vec![], vec![]);
    let (mut txw, mut rxw, mut txp, mut rxp, mut first, mut last) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for (i, r) in ds.flows.iter().enumerate() {
        let g = groups.of_flow[i];
        let a = &ds.agg[i];
        if g == u32::MAX || a.events() == 0 {
            continue;
        }
        gid.push(g);
        let m = is_msg(r);
        let pick = |x: u64, msg: bool| if msg == m { x } else { 0 };
        txb.push(pick(a.tx_bytes, true));
        rxb.push(pick(a.rx_bytes, true));
        txm.push(pick(a.tx_n, true));
        rxm.push(pick(a.rx_n, true));
        txw.push(pick(a.tx_bytes, false));
        rxw.push(pick(a.rx_bytes, false));
        txp.push(pick(a.tx_n, false));
        rxp.push(pick(a.rx_n, false));
        first.push(a.first);
        last.push(a.last);
    }
    let per_flow = DataFrame::new_infer_height(vec![
        u32c("gid", gid),
        u64c("tx_bytes", txb),
        u64c("rx_bytes", rxb),
        u64c("tx_msgs", txm),
        u64c("rx_msgs", rxm),
        u64c("tx_wire_bytes", txw),
        u64c("rx_wire_bytes", rxw),
        u64c("tx_packets", txp),
        u64c("rx_packets", rxp),
        u64c("first_ns", first),
        u64c("last_ns", last),
    ])?;
    let sums = [
        "tx_bytes",
        "rx_bytes",
        "tx_msgs",
        "rx_msgs",
        "tx_wire_bytes",
        "rx_wire_bytes",
        "tx_packets",
        "rx_packets",
    ];
    let mut aggs: Vec<Expr> = sums.iter().map(|c| col(*c).sum()).collect();
    aggs.push(col("first_ns").min());
    aggs.push(col("last_ns").max());
    let grouped = per_flow
        .lazy()
        .group_by([col("gid")])
        .agg(aggs)
        .sort(["gid"], SortMultipleOptions::default())
        .collect()
        .map_err(|e| anyhow::anyhow!("aggregating per group: {e}"))?;

    // Rates, in group-id order (every group has at least one flow with events).
    let get = |name: &str| -> anyhow::Result<Vec<u64>> {
        Ok(grouped
            .column(name)?
            .u64()?
            .iter()
            .map(|v| v.unwrap_or(0))
            .collect())
    };
    let gids: Vec<u32> = grouped
        .column("gid")?
        .u32()?
        .iter()
        .map(|v| v.unwrap_or(0))
        .collect();
    let (tx, rx, f, l) = (
        get("tx_bytes")?,
        get("rx_bytes")?,
        get("first_ns")?,
        get("last_ns")?,
    );
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
    for name in sums.iter().chain(["first_ns", "last_ns"].iter()) {
        cols.push(grouped.column(name)?.clone());
    }
    cols.push(f64c("tx_avg_bps", avg_tx));
    cols.push(f64c("rx_avg_bps", avg_rx));
    cols.push(f64c("tx_peak_bps", peak_tx));
    cols.push(f64c("rx_peak_bps", peak_rx));
    let total: Vec<u64> = (0..rows)
        .map(|i| tx[i] + rx[i])
        .zip(
            get("tx_wire_bytes")?
                .iter()
                .zip(get("rx_wire_bytes")?.iter())
                .map(|(a, b)| a + b),
        )
        .map(|(a, b)| a.max(b))
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
    }
}
