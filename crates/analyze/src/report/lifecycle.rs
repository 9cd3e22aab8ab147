//! The lifecycle report: per process, its parent, start (fork/exec), exit
//! and exit code, first and last network activity, and how long after its
//! start it opened its first and each connection — the seed study's "how
//! long after start was this sent". `comm` is the latest name of the
//! process, `comms` every name it had, oldest first. A process that was
//! already running when recording began has its start from the kernel
//! (the trace's "running" row, format 1.2), so its times after start work
//! too; one known only that way, with no network activity, is not listed.

use std::collections::BTreeMap;

use snoop_format::{comm_str, ProcessKind};

use super::conns::connections;
use super::Ctx;
use crate::frame::{opt_u64c, strc, u32c, u64c, Frame};
use crate::load::Origin;

#[derive(Default, Clone)]
struct P {
    ppid: u32,
    comm: [u8; 16],
    filename: String,
    start: Option<u64>,
    exec: Option<u64>,
    exit: Option<u64>,
    exit_code: Option<i32>,
    first_net: Option<u64>,
    last_net: Option<u64>,
    conns: Vec<u64>,
    /// Has a fork, exec or exit row (not only "already running").
    events: bool,
}

/// The lifecycle frame.
pub fn frame(ctx: &Ctx) -> anyhow::Result<Frame> {
    let ds = ctx.ds;
    let mut ps: BTreeMap<(u16, u32), P> = BTreeMap::new();
    for e in &ds.procs {
        let r = &e.row;
        // Thread events (tid != pid) do not start or end the process.
        if r.kind != ProcessKind::Exec && r.tid != 0 && r.tid != r.pid {
            continue;
        }
        let p = ps.entry((e.file, r.pid)).or_default();
        p.events |= r.kind != ProcessKind::Running;
        match r.kind {
            ProcessKind::Fork => {
                p.start = Some(p.start.map_or(r.ts_ns, |s| s.min(r.ts_ns)));
                p.ppid = r.ppid;
                p.comm = r.comm;
            }
            ProcessKind::Exec => {
                p.exec.get_or_insert(r.ts_ns);
                p.start = Some(p.start.map_or(r.ts_ns, |s| s.min(r.ts_ns)));
                if r.ppid != 0 {
                    p.ppid = r.ppid;
                }
                p.comm = r.comm;
                p.filename = r.filename.clone();
            }
            ProcessKind::Running => {
                // Started before the recording: the row's time is the
                // kernel's start time of the process.
                p.start = Some(p.start.map_or(r.ts_ns, |s| s.min(r.ts_ns)));
                if p.ppid == 0 {
                    p.ppid = r.ppid;
                }
                if p.comm == [0; 16] {
                    p.comm = r.comm;
                }
            }
            ProcessKind::Exit => {
                p.exit = Some(r.ts_ns);
                p.exit_code = Some(r.exit_code);
                if p.comm == [0; 16] {
                    p.comm = r.comm;
                }
            }
        }
    }
    for (i, r) in ds.flows.iter().enumerate() {
        let a = &ds.agg[i];
        if r.origin != Origin::Message || a.events() == 0 {
            continue;
        }
        let p = ps.entry((r.file, r.flow.pid)).or_default();
        if p.comm == [0; 16] {
            p.comm = r.flow.comm;
        }
        p.first_net = Some(p.first_net.map_or(a.first, |x| x.min(a.first)));
        p.last_net = Some(p.last_net.map_or(a.last, |x| x.max(a.last)));
    }
    let names = super::keys::names_over_time(ds);
    for ((f, pid), p) in ps.iter_mut() {
        if let Some(c) = names.get(&(*f, *pid)).and_then(|v| v.last()) {
            p.comm = *c;
        }
    }
    for c in connections(ctx) {
        if let Some(p) = ps.get_mut(&(c.file, c.pid)) {
            p.conns.push(c.start);
        }
    }
    let rows: Vec<((u16, u32), P)> = ps
        .into_iter()
        // A process known only as already running (no lifecycle event, no
        // network activity) is not listed: an unfiltered recording sees
        // every process of the host at its start.
        .filter(|(_, p)| p.events || p.first_net.is_some())
        .filter(|((f, pid), p)| ds.files[*f as usize].filter.process_ok(*pid, &p.comm))
        .map(|(k, mut p)| {
            p.conns.sort_unstable();
            (k, p)
        })
        .collect();
    let after = |p: &P, t: u64| p.start.map(|s| t.saturating_sub(s));
    let mut cols = Vec::new();
    if ds.multi_host() {
        cols.push(strc(
            "host",
            rows.iter()
                .map(|r| ds.files[r.0 .0 as usize].host.clone())
                .collect(),
        ));
    }
    cols.push(u32c("pid", rows.iter().map(|r| r.0 .1).collect()));
    cols.push(u32c("ppid", rows.iter().map(|r| r.1.ppid).collect()));
    cols.push(strc(
        "comm",
        rows.iter().map(|r| comm_str(&r.1.comm)).collect(),
    ));
    cols.push(strc(
        "filename",
        rows.iter().map(|r| r.1.filename.clone()).collect(),
    ));
    cols.push(opt_u64c(
        "start_ns",
        rows.iter().map(|r| r.1.start).collect(),
    ));
    cols.push(opt_u64c("exec_ns", rows.iter().map(|r| r.1.exec).collect()));
    cols.push(opt_u64c("exit_ns", rows.iter().map(|r| r.1.exit).collect()));
    cols.push(polars::prelude::Column::new(
        "exit_code".into(),
        rows.iter().map(|r| r.1.exit_code).collect::<Vec<_>>(),
    ));
    cols.push(opt_u64c(
        "first_net_ns",
        rows.iter().map(|r| r.1.first_net).collect(),
    ));
    cols.push(opt_u64c(
        "last_net_ns",
        rows.iter().map(|r| r.1.last_net).collect(),
    ));
    cols.push(opt_u64c(
        "first_net_after_ns",
        rows.iter()
            .map(|r| r.1.first_net.and_then(|t| after(&r.1, t)))
            .collect(),
    ));
    cols.push(opt_u64c(
        "first_conn_after_ns",
        rows.iter()
            .map(|r| r.1.conns.first().and_then(|&t| after(&r.1, t)))
            .collect(),
    ));
    cols.push(u64c(
        "conns",
        rows.iter().map(|r| r.1.conns.len() as u64).collect(),
    ));
    cols.push(strc(
        "conn_after_ns",
        rows.iter()
            .map(|r| {
                r.1.conns
                    .iter()
                    .filter_map(|&t| after(&r.1, t))
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect(),
    ));
    cols.push(strc(
        "comms",
        rows.iter()
            .map(|r| {
                names
                    .get(&r.0)
                    .map(|v| v.iter().map(comm_str).collect::<Vec<_>>().join(","))
                    .unwrap_or_else(|| comm_str(&r.1.comm))
            })
            .collect(),
    ));
    let off = ds
        .files
        .first()
        .map(|f| f.info.boot_to_wall_ns)
        .unwrap_or(0);
    let mut f = Frame::new("process lifecycle", cols, off)?;
    f.notes
        .push("conn_after_ns: ns from process start to each connection, comma-separated".into());
    f.notes
        .push("comm: the latest name; comms: every name the process had, oldest first".into());
    Ok(f)
}
