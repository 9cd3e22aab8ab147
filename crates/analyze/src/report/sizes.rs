//! The sizes report: message- and packet-size distributions per group and
//! direction (count, min, mean, nearest-rank p50/p90/p99, max and a
//! power-of-two histogram) — small messages mean interactive traffic, large
//! ones bulk transfer.

use std::collections::HashMap;

use polars::prelude::*;

use super::keys::Groups;
use super::{hist_str, Ctx};
use crate::frame::{f64c, strc, u64c, Frame};
use crate::load::Events;

/// One distribution: the sizes of one (group, kind, direction), as
/// `(size, how many)` sorted by size, each size once (a run of packets
/// counts as its count of packets).
pub struct Dist {
    /// Group id.
    pub group: u32,
    /// "message" or "packet".
    pub kind: &'static str,
    /// 0 tx, 1 rx.
    pub dir: u8,
    /// `(size, count)`, sorted by size, sizes distinct.
    pub sizes: Vec<(u64, u64)>,
}

impl Dist {
    /// Events in the distribution.
    pub fn count(&self) -> u64 {
        self.sizes
            .iter()
            .fold(0u64, |t, &(_, n)| t.saturating_add(n))
    }

    /// Bytes in all.
    pub fn total(&self) -> u64 {
        self.sizes
            .iter()
            .fold(0u64, |t, &(v, n)| t.saturating_add(v.saturating_mul(n)))
    }

    /// The nearest-rank `q` quantile.
    pub fn rank(&self, q: f64) -> u64 {
        let n = self.count();
        if n == 0 {
            return 0;
        }
        let r = ((q * n as f64).ceil() as u64).clamp(1, n);
        let mut seen = 0u64;
        for &(v, c) in &self.sizes {
            seen = seen.saturating_add(c);
            if seen >= r {
                return v;
            }
        }
        self.sizes.last().map_or(0, |&(v, _)| v)
    }

    /// Power-of-two histogram, as [`super::pow2_hist`].
    pub fn hist(&self) -> Vec<u64> {
        pow2_hist_weighted(&self.sizes)
    }
}

/// Power-of-two histogram of `(value, count)` pairs: bucket 0 counts zeros,
/// bucket k values in `[2^(k-1), 2^k)`; trailing empty buckets dropped.
pub fn pow2_hist_weighted(values: &[(u64, u64)]) -> Vec<u64> {
    let mut h = vec![0u64; 65];
    for &(v, n) in values {
        let b = &mut h[(64 - v.leading_zeros()) as usize];
        *b = b.saturating_add(n);
    }
    while h.last() == Some(&0) {
        h.pop();
    }
    h
}

/// Collect the distributions for `ctx.key`.
pub fn dists(ctx: &Ctx) -> (Groups, Vec<Dist>) {
    let ds = ctx.ds;
    let groups = Groups::new(ds, ctx.key, |r| {
        r.origin.is_packet() || r.origin == crate::load::Origin::Message
    });
    /// (size, count) pairs per (group, kind, direction).
    type Per = HashMap<(u32, &'static str, u8), Vec<(u64, u64)>>;
    let mut per: Per = HashMap::new();
    let mut add = |evs: &[Events], kind: &'static str| {
        for e in evs {
            for i in 0..e.ts.len() {
                let g = groups.of_flow[e.flow[i] as usize];
                if g != u32::MAX {
                    per.entry((g, kind, e.dir[i]))
                        .or_default()
                        .push((e.bytes[i] as u64, e.count(i)));
                }
            }
        }
    };
    add(&ds.msg_events, "message");
    add(&ds.pkt_events, "packet");
    let mut out: Vec<Dist> = per
        .into_iter()
        .map(|((group, kind, dir), mut sizes)| {
            sizes.sort_unstable_by_key(|&(v, _)| v);
            let mut merged: Vec<(u64, u64)> = Vec::with_capacity(sizes.len());
            for (v, n) in sizes {
                match merged.last_mut() {
                    Some(last) if last.0 == v => last.1 = last.1.saturating_add(n),
                    _ => merged.push((v, n)),
                }
            }
            Dist {
                group,
                kind,
                dir,
                sizes: merged,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        let ta = a.total();
        let tb = b.total();
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
    cols.push(u64c("count", d.iter().map(Dist::count).collect()));
    cols.push(u64c(
        "min_bytes",
        d.iter()
            .map(|x| x.sizes.first().map_or(0, |&(v, _)| v))
            .collect(),
    ));
    cols.push(f64c(
        "mean_bytes",
        d.iter()
            .map(|x| {
                x.sizes
                    .iter()
                    .map(|&(v, n)| v as f64 * n as f64)
                    .sum::<f64>()
                    / x.count().max(1) as f64
            })
            .collect(),
    ));
    for (name, q) in [("p50_bytes", 0.5), ("p90_bytes", 0.9), ("p99_bytes", 0.99)] {
        cols.push(u64c(name, d.iter().map(|x| x.rank(q)).collect()));
    }
    cols.push(u64c(
        "max_bytes",
        d.iter()
            .map(|x| x.sizes.last().map_or(0, |&(v, _)| v))
            .collect(),
    ));
    cols.push(strc(
        "hist",
        d.iter().map(|x| hist_str(&x.hist())).collect(),
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
