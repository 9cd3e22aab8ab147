//! The remotes report: per process, the remote addresses it talked to, with
//! the ports used, application and wire bytes, connection count and the
//! share of the process's traffic — the seed study's "remote address
//! distribution".

use std::collections::{BTreeMap, HashMap, HashSet};

use snoop_format::comm_str;

use super::Ctx;
use crate::filter::addr_str;
use crate::frame::{f64c, opt_strc, strc, u32c, u64c, Frame};
use crate::load::Origin;

/// One (process, remote) row.
#[derive(Clone, Debug, Default)]
pub struct RemoteRow {
    /// File.
    pub file: u16,
    /// pid.
    pub pid: u32,
    /// The process's latest comm.
    pub comm: [u8; 16],
    /// Remote address.
    pub raddr: [u8; 16],
    /// Bytes per remote port.
    pub ports: BTreeMap<u16, u64>,
    /// Distinct (proto, lport, rport) flows.
    pub conns: HashSet<(u8, u16, u16)>,
    /// App bytes sent.
    pub tx: u64,
    /// App bytes received.
    pub rx: u64,
    /// Wire bytes sent.
    pub tx_wire: u64,
    /// Wire bytes received.
    pub rx_wire: u64,
    /// Share of the process's bytes.
    pub share: f64,
}

/// Rows sorted by process total then share.
pub fn rows(ctx: &Ctx) -> Vec<RemoteRow> {
    let ds = ctx.ds;
    let mut per: HashMap<(u16, u32, [u8; 16]), RemoteRow> = HashMap::new();
    let names = super::keys::latest_comms(ds);
    for (i, r) in ds.flows.iter().enumerate() {
        let a = &ds.agg[i];
        let attributed = r.origin == Origin::Message || r.origin.attributed();
        if a.events() == 0 || !attributed {
            continue;
        }
        let f = &r.flow;
        let row = per
            .entry((r.file, f.pid, f.raddr))
            .or_insert_with(|| RemoteRow {
                file: r.file,
                pid: f.pid,
                raddr: f.raddr,
                ..RemoteRow::default()
            });
        if r.origin == Origin::Message {
            row.tx = row.tx.saturating_add(a.tx_bytes);
            row.rx = row.rx.saturating_add(a.rx_bytes);
            row.conns.insert((f.proto, f.lport, f.rport));
            let p = row.ports.entry(f.rport).or_default();
            *p = p.saturating_add(a.tx_bytes.saturating_add(a.rx_bytes));
            if row.comm == [0; 16] {
                row.comm = f.comm;
            }
        } else {
            row.tx_wire = row.tx_wire.saturating_add(a.tx_bytes);
            row.rx_wire = row.rx_wire.saturating_add(a.rx_bytes);
        }
    }
    let mut totals: HashMap<(u16, u32), u64> = HashMap::new();
    for r in per.values() {
        let t = totals.entry((r.file, r.pid)).or_default();
        *t = t.saturating_add(r.tx.saturating_add(r.rx));
    }
    let mut out: Vec<RemoteRow> = per
        .into_values()
        .map(|mut r| {
            let t = totals.get(&(r.file, r.pid)).copied().unwrap_or(0);
            r.share = if t == 0 {
                0.0
            } else {
                r.tx.saturating_add(r.rx) as f64 / t as f64
            };
            if let Some(c) = names.get(&(r.file, r.pid)) {
                r.comm = *c;
            }
            r
        })
        .collect();
    out.sort_by(|a, b| {
        let ta = totals.get(&(a.file, a.pid)).copied().unwrap_or(0);
        let tb = totals.get(&(b.file, b.pid)).copied().unwrap_or(0);
        tb.cmp(&ta)
            .then(a.file.cmp(&b.file))
            .then(a.pid.cmp(&b.pid))
            .then(b.tx.saturating_add(b.rx).cmp(&a.tx.saturating_add(a.rx)))
            .then(a.raddr.cmp(&b.raddr))
    });
    out
}

/// The remotes frame.
pub fn frame(ctx: &Ctx) -> anyhow::Result<Frame> {
    let ds = ctx.ds;
    let rows = rows(ctx);
    let mut cols = Vec::new();
    if ds.multi_host() {
        cols.push(strc(
            "host",
            rows.iter()
                .map(|r| ds.files[r.file as usize].host.clone())
                .collect(),
        ));
    }
    cols.push(u32c("pid", rows.iter().map(|r| r.pid).collect()));
    cols.push(strc(
        "comm",
        rows.iter().map(|r| comm_str(&r.comm)).collect(),
    ));
    cols.push(strc(
        "remote",
        rows.iter().map(|r| addr_str(&r.raddr)).collect(),
    ));
    cols.push(opt_strc(
        "remote_name",
        rows.iter()
            .map(|r| {
                ds.files[r.file as usize]
                    .names
                    .any(r.pid, &r.raddr)
                    .map(str::to_string)
            })
            .collect(),
    ));
    cols.push(strc(
        "ports",
        rows.iter()
            .map(|r| {
                let mut p: Vec<(&u16, &u64)> = r.ports.iter().collect();
                p.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
                let mut s: Vec<String> =
                    p.iter().take(5).map(|(port, _)| port.to_string()).collect();
                if p.len() > 5 {
                    s.push(format!("+{}", p.len() - 5));
                }
                s.join(",")
            })
            .collect(),
    ));
    cols.push(u64c(
        "conns",
        rows.iter().map(|r| r.conns.len() as u64).collect(),
    ));
    cols.push(u64c("tx_bytes", rows.iter().map(|r| r.tx).collect()));
    cols.push(u64c("rx_bytes", rows.iter().map(|r| r.rx).collect()));
    cols.push(u64c(
        "tx_wire_bytes",
        rows.iter().map(|r| r.tx_wire).collect(),
    ));
    cols.push(u64c(
        "rx_wire_bytes",
        rows.iter().map(|r| r.rx_wire).collect(),
    ));
    cols.push(f64c("share", rows.iter().map(|r| r.share).collect()));
    let off = ds
        .files
        .first()
        .map(|f| f.info.boot_to_wall_ns)
        .unwrap_or(0);
    Frame::new(
        "remote addresses per process (share = of the process's application bytes)",
        cols,
        off,
    )
}
