//! The sizes report: message- and packet-size distributions per group and
//! direction (count, min, mean, nearest-rank p50/p90/p99, max and a
//! power-of-two histogram) — small messages mean interactive traffic, large
//! ones bulk transfer.

use std::collections::HashMap;

use polars::prelude::*;

use super::keys::Groups;
use super::{hist_str, nearest_rank, pow2_hist, Ctx};
use crate::frame::{f64c, strc, u64c, Frame};
use crate::load::Events;

/// One distribution: sorted sizes of one (group, kind, direction).
pub struct Dist {
    /// Group id.
    pub group: u32,
    /// "message" or "packet".
    pub kind: &'static str,
    /// 0 tx, 1 rx.
    pub dir: u8,
    /// Sorted sizes.
    pub sizes: Vec<u64>,
}

/// Collect the distributions for `ctx.key`.
pub fn dists(ctx: &Ctx) -> (Groups, Vec<Dist>) {
    let ds = ctx.ds;
    let groups = Groups::new(ds, ctx.key, |r| {
        r.origin.is_packet() || r.origin == crate::load::Origin::Message
    });
    let mut per: HashMap<(u32, &'static str, u8), Vec<u64>> = HashMap::new();
    let mut add = |evs: &[Events], kind: &'static str| {
        for e in evs {
            for i in 0..e.ts.len() {
                let g = groups.of_flow[e.flow[i] as usize];
                if g != u32::MAX {
                    per.entry((g, kind, e.dir[i]))
                        .or_default()
                        .push(e.bytes[i] as u64);
                }
            }
        }
    };
    add(&ds.msg_events, "message");
    add(&ds.pkt_events, "packet");
    let mut out: Vec<Dist> = per
        .into_iter()
        .map(|((group, kind, dir), mut sizes)| {
            sizes.sort_unstable();
            Dist {
                group,
                kind,
                dir,
                sizes,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        let ta = a.sizes.iter().fold(0u64, |t, &v| t.saturating_add(v));
        let tb = b.sizes.iter().fold(0u64, |t, &v| t.saturating_add(v));
        (a.kind, std::cmp::Reverse(ta), a.group, a.dir).cmp(&(
            b.kind,
            std::cmp::Reverse(tb),
            b.group,
            b.dir,
        ))
    });
    (groups, out)
}

/// The sizes frame.
pub fn frame(ctx: &Ctx) -> anyhow::Result<Frame> {
    let (groups, d) = dists(ctx);
    let keys = DataFrame::new_infer_height(groups.columns(ctx.ds))?;
    let idx = IdxCa::from_vec("idx".into(), d.iter().map(|x| x.group as IdxSize).collect());
    let mut cols: Vec<Column> = keys.take(&idx)?.columns().to_vec();
    cols.push(strc("kind", d.iter().map(|x| x.kind.to_string()).collect()));
    cols.push(strc(
        "dir",
        d.iter()
            .map(|x| if x.dir == 0 { "tx" } else { "rx" }.to_string())
            .collect(),
    ));
    cols.push(u64c(
        "count",
        d.iter().map(|x| x.sizes.len() as u64).collect(),
    ));
    cols.push(u64c(
        "min_bytes",
        d.iter()
            .map(|x| x.sizes.first().copied().unwrap_or(0))
            .collect(),
    ));
    cols.push(f64c(
        "mean_bytes",
        d.iter()
            .map(|x| x.sizes.iter().map(|&v| v as f64).sum::<f64>() / x.sizes.len().max(1) as f64)
            .collect(),
    ));
    for (name, q) in [("p50_bytes", 0.5), ("p90_bytes", 0.9), ("p99_bytes", 0.99)] {
        cols.push(u64c(
            name,
            d.iter().map(|x| nearest_rank(&x.sizes, q)).collect(),
        ));
    }
    cols.push(u64c(
        "max_bytes",
        d.iter()
            .map(|x| x.sizes.last().copied().unwrap_or(0))
            .collect(),
    ));
    cols.push(strc(
        "hist",
        d.iter().map(|x| hist_str(&pow2_hist(&x.sizes))).collect(),
    ));
    let off = ctx
        .ds
        .files
        .first()
        .map(|f| f.info.boot_to_wall_ns)
        .unwrap_or(0);
    let mut f = Frame::new(
        "size distributions (hist: bucket lower bound:count, power-of-two buckets)",
        cols,
        off,
    )?;
    f.notes.push("percentiles are nearest-rank".into());
    Ok(f)
}
