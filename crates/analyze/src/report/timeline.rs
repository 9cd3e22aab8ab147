//! The timeline report: per `--interval`, per group, bytes and rates sent
//! and received (application and wire) — the `flow` seed's periodic view,
//! computed from the per-interval buckets the loader keeps per flow.

use std::collections::HashMap;

use polars::prelude::*;

use super::keys::Groups;
use super::Ctx;
use crate::frame::{f64c, u64c, Frame};
use crate::load::Origin;

/// Per (interval, group): tx, rx, tx wire, rx wire.
pub fn cells(ctx: &Ctx, groups: &Groups) -> Vec<((u64, u32), [u64; 4])> {
    let ds = ctx.ds;
    let mut per: HashMap<(u64, u32), [u64; 4]> = HashMap::new();
    for b in &ds.buckets {
        let g = groups.of_flow[b.flow as usize];
        if g == u32::MAX {
            continue;
        }
        let e = per.entry((b.b, g)).or_default();
        if ds.flows[b.flow as usize].origin == Origin::Message {
            e[0] = e[0].saturating_add(b.tx);
            e[1] = e[1].saturating_add(b.rx);
        } else {
            e[2] = e[2].saturating_add(b.tx);
            e[3] = e[3].saturating_add(b.rx);
        }
    }
    let mut v: Vec<_> = per.into_iter().collect();
    v.sort_by(|a, b| {
        a.0 .0
            .cmp(&b.0 .0)
            .then(
                b.1[0]
                    .saturating_add(b.1[1])
                    .cmp(&a.1[0].saturating_add(a.1[1])),
            )
            .then(a.0 .1.cmp(&b.0 .1))
    });
    v
}

/// The timeline frame.
pub fn frame(ctx: &Ctx) -> anyhow::Result<Frame> {
    let ds = ctx.ds;
    let groups = Groups::new(ds, ctx.key, |r| {
        r.origin == Origin::Message || r.origin.is_packet()
    });
    let cells = cells(ctx, &groups);
    let secs = ctx.interval_ns as f64 / 1e9;
    let mut cols = vec![u64c(
        "interval_ns",
        cells.iter().map(|c| c.0 .0 * ctx.interval_ns).collect(),
    )];
    let keys = DataFrame::new_infer_height(groups.columns(ds))?;
    let idx = IdxCa::from_vec(
        "idx".into(),
        cells.iter().map(|c| c.0 .1 as IdxSize).collect(),
    );
    cols.extend(keys.take(&idx)?.columns().iter().cloned());
    cols.push(u64c("tx_bytes", cells.iter().map(|c| c.1[0]).collect()));
    cols.push(u64c("rx_bytes", cells.iter().map(|c| c.1[1]).collect()));
    cols.push(f64c(
        "tx_bps",
        cells.iter().map(|c| c.1[0] as f64 * 8.0 / secs).collect(),
    ));
    cols.push(f64c(
        "rx_bps",
        cells.iter().map(|c| c.1[1] as f64 * 8.0 / secs).collect(),
    ));
    cols.push(u64c(
        "tx_wire_bytes",
        cells.iter().map(|c| c.1[2]).collect(),
    ));
    cols.push(u64c(
        "rx_wire_bytes",
        cells.iter().map(|c| c.1[3]).collect(),
    ));
    let off = ds
        .files
        .first()
        .map(|f| f.info.boot_to_wall_ns)
        .unwrap_or(0);
    Frame::new(
        format!(
            "timeline (interval {})",
            crate::units::duration(ctx.interval_ns)
        ),
        cols,
        off,
    )
}
