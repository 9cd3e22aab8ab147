//! The coverage report: how much of the wire traffic snoop attributed to a
//! process, how (cookie, 5-tuple, kernel-recorded owner) and what it could
//! not attribute, by reason (no socket seen, ICMP, other protocol,
//! forwarded/other netns, kernel socket), reconciled with the application
//! (message) totals. No peer tool shows this.

use super::Ctx;
use crate::frame::{f64c, strc, u64c, Frame};
use crate::load::Origin;
use crate::units;

/// Per packet origin: tx packets, rx packets, tx bytes, rx bytes.
pub fn by_origin(ctx: &Ctx) -> Vec<(Origin, [u64; 4])> {
    let ds = ctx.ds;
    let mut out: Vec<(Origin, [u64; 4])> = Origin::PACKETS.iter().map(|&o| (o, [0; 4])).collect();
    for (i, r) in ds.flows.iter().enumerate() {
        if let Some(e) = out.iter_mut().find(|e| e.0 == r.origin) {
            let a = &ds.agg[i];
            e.1[0] = e.1[0].saturating_add(a.tx_n);
            e.1[1] = e.1[1].saturating_add(a.rx_n);
            e.1[2] = e.1[2].saturating_add(a.tx_bytes);
            e.1[3] = e.1[3].saturating_add(a.rx_bytes);
        }
    }
    out
}

/// The coverage frame.
pub fn frame(ctx: &Ctx) -> anyhow::Result<Frame> {
    let ds = ctx.ds;
    let rows: Vec<(Origin, [u64; 4])> = by_origin(ctx)
        .into_iter()
        .filter(|r| r.1.iter().any(|&x| x > 0))
        .collect();
    let total: u64 = rows
        .iter()
        .map(|r| r.1[2].saturating_add(r.1[3]))
        .fold(0, u64::saturating_add);
    let cols = vec![
        strc(
            "reason",
            rows.iter().map(|r| r.0.reason().to_string()).collect(),
        ),
        strc(
            "attributed",
            rows.iter()
                .map(|r| if r.0.attributed() { "yes" } else { "no" }.to_string())
                .collect(),
        ),
        u64c("tx_packets", rows.iter().map(|r| r.1[0]).collect()),
        u64c("rx_packets", rows.iter().map(|r| r.1[1]).collect()),
        u64c("tx_wire_bytes", rows.iter().map(|r| r.1[2]).collect()),
        u64c("rx_wire_bytes", rows.iter().map(|r| r.1[3]).collect()),
        f64c(
            "share",
            rows.iter()
                .map(|r| {
                    if total == 0 {
                        0.0
                    } else {
                        r.1[2].saturating_add(r.1[3]) as f64 / total as f64
                    }
                })
                .collect(),
        ),
    ];
    let off = ds
        .files
        .first()
        .map(|f| f.info.boot_to_wall_ns)
        .unwrap_or(0);
    let mut f = Frame::new(
        "wire traffic attribution (share = of all wire bytes)",
        cols,
        off,
    )?;
    let att: u64 = rows
        .iter()
        .filter(|r| r.0.attributed())
        .map(|r| r.1[2].saturating_add(r.1[3]))
        .fold(0, u64::saturating_add);
    let (mut app_tx, mut app_rx) = (0u64, 0u64);
    for (i, r) in ds.flows.iter().enumerate() {
        if r.origin == Origin::Message {
            app_tx = app_tx.saturating_add(ds.agg[i].tx_bytes);
            app_rx = app_rx.saturating_add(ds.agg[i].rx_bytes);
        }
    }
    let (w_tx, w_rx): (u64, u64) = rows
        .iter()
        .filter(|r| r.0.attributed())
        .fold((0, 0), |a, r| {
            (a.0.saturating_add(r.1[2]), a.1.saturating_add(r.1[3]))
        });
    for file in ds.files.iter().filter(|file| !file.hook_ran("packets")) {
        f.notes.push(format!(
            "{}: no wire packets recorded (hook group packets {})",
            file.path.display(),
            file.hooks
                .iter()
                .flat_map(|h| &h.groups)
                .find(|(g, _)| g == "packets")
                .map_or("did not run", |(_, s)| s.as_str())
        ));
    }
    if total == 0 {
        f.notes.push(
            "no packet events in the selection (was the trace recorded with packet capture?)"
                .into(),
        );
    } else {
        f.notes.push(format!(
            "attributed: {} of {} wire bytes ({:.1}%)",
            units::bytes(att),
            units::bytes(total),
            att as f64 * 100.0 / total as f64
        ));
    }
    f.notes.push(format!(
        "application bytes: tx {} / rx {}; attributed wire bytes: tx {} / rx {} (headers, retransmits and GSO make wire >= application)",
        units::bytes(app_tx),
        units::bytes(app_rx),
        units::bytes(w_tx),
        units::bytes(w_rx)
    ));
    Ok(f)
}
