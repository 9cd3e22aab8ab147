//! The summary, the human default when no report is named: what was
//! recorded, the top processes and connections, connection problems
//! (failed connects, resets, retransmission rate per process), drops during
//! recording and how much wire traffic was attributed. As JSON it is one object with a
//! member per section.

use std::io::Write;
use std::path::Path;

use snoop_format::{comm_str, source, ConnStatus};

use super::conns::connections;
use super::{coverage, throughput, Ctx};
use crate::cli::Key;
use crate::filter::sock_str;
use crate::frame::{f64c, json_rows, open_output, opt_f64c, strc, u32c, u64c, Frame, Row};
use crate::load::Origin;
use crate::protos::proto_name;
use crate::units;

const TOP: usize = 10;

fn overview(ctx: &Ctx) -> anyhow::Result<Frame> {
    let ds = ctx.ds;
    let mut kv: Vec<(String, String)> = Vec::new();
    for f in &ds.files {
        let end = f
            .end_ns
            .map(|e| units::wall(f.info.wall_ns(e)))
            .unwrap_or_else(|| "(not closed cleanly)".into());
        kv.push((
            "trace".into(),
            format!(
                "{} (host {}, kernel {})",
                f.path.display(),
                f.host,
                f.info.kernel
            ),
        ));
        kv.push((
            "recorded".into(),
            format!(
                "{} .. {}",
                units::wall(f.info.wall_ns(f.info.start_ns)),
                end
            ),
        ));
        let missing = f.hooks_not_run();
        if !missing.is_empty() {
            kv.push((
                "not recorded".into(),
                format!("hook groups {}", missing.join(", ")),
            ));
        }
        if let Some(r) = &f.recovery {
            kv.push((
                "recovered".into(),
                format!(
                    "{} chunks / {} events, {} bytes ignored",
                    r.chunks, r.events, r.ignored_bytes
                ),
            ));
        }
    }
    let (mut msgs, mut pkts, mut bytes) = (0u64, 0u64, 0u64);
    for (i, r) in ds.flows.iter().enumerate() {
        let a = &ds.agg[i];
        if r.origin == Origin::Message {
            msgs = msgs.saturating_add(a.events());
            bytes = bytes.saturating_add(a.tx_bytes.saturating_add(a.rx_bytes));
        } else if r.origin.is_packet() {
            pkts = pkts.saturating_add(a.events());
        }
    }
    kv.push((
        "messages".into(),
        format!("{msgs} ({} application bytes)", units::bytes(bytes)),
    ));
    kv.push(("packets".into(), pkts.to_string()));
    kv.push(("tcp state changes".into(), ds.conns.len().to_string()));
    let count = |src: u8| -> u64 {
        ds.stats
            .iter()
            .filter(|s| s.source == src)
            .map(|s| s.events)
            .fold(0, u64::saturating_add)
    };
    let pressure: Vec<String> = [
        (
            source::OWNER_MAP_FULL,
            "socket-owner inserts refused, owner map full (those sockets' packets and state \
             changes unattributed)",
        ),
        (
            source::OWNER_EVICTIONS,
            "socket owners evicted and re-learned (their packets in between unattributed)",
        ),
        (
            source::TRACKED_FULL,
            "selected processes not tracked (map full)",
        ),
    ]
    .into_iter()
    .map(|(src, what)| (count(src), what))
    .filter(|&(n, _)| n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect();
    if !pressure.is_empty() {
        kv.push(("map pressure".into(), pressure.join(", ")));
    }
    Frame::new(
        "snoop trace summary",
        vec![
            strc("field", kv.iter().map(|k| k.0.clone()).collect()),
            strc("value", kv.into_iter().map(|k| k.1).collect()),
        ],
        0,
    )
}

fn drops(ctx: &Ctx) -> anyhow::Result<Frame> {
    let mut per: std::collections::BTreeMap<u8, (u64, u64)> = Default::default();
    for s in ctx
        .ds
        .stats
        .iter()
        .filter(|s| !source::is_pressure(s.source))
    {
        let e = per.entry(s.source).or_default();
        e.0 = e.0.saturating_add(s.events);
        e.1 = e.1.saturating_add(s.dropped);
    }
    let rows: Vec<(u8, (u64, u64))> = per.into_iter().collect();
    Frame::new(
        "drops during recording",
        vec![
            strc("source", rows.iter().map(|r| source::name(r.0)).collect()),
            u64c("events", rows.iter().map(|r| r.1 .0).collect()),
            u64c("dropped", rows.iter().map(|r| r.1 .1).collect()),
            f64c(
                "dropped_share",
                rows.iter()
                    .map(|r| {
                        // In f64: events + dropped may not fit in a u64.
                        let all = r.1 .0 as f64 + r.1 .1 as f64;
                        if all == 0.0 {
                            0.0
                        } else {
                            r.1 .1 as f64 / all
                        }
                    })
                    .collect(),
            ),
        ],
        0,
    )
}

fn top_conns(ctx: &Ctx) -> anyhow::Result<Frame> {
    let mut c = connections(ctx);
    c.sort_by(|a, b| {
        b.tx.saturating_add(b.rx)
            .cmp(&a.tx.saturating_add(a.rx))
            .then(a.start.cmp(&b.start))
    });
    c.truncate(TOP);
    let off = ctx
        .ds
        .files
        .first()
        .map(|f| f.info.boot_to_wall_ns)
        .unwrap_or(0);
    Frame::new(
        "top connections",
        vec![
            u32c("pid", c.iter().map(|x| x.pid).collect()),
            strc("comm", c.iter().map(|x| comm_str(&x.comm)).collect()),
            strc(
                "proto",
                c.iter()
                    .map(|x| proto_name(x.flow.proto).to_string())
                    .collect(),
            ),
            strc(
                "src",
                c.iter()
                    .map(|x| sock_str(&x.flow.laddr, x.flow.lport))
                    .collect(),
            ),
            strc(
                "dst",
                c.iter()
                    .map(|x| sock_str(&x.flow.raddr, x.flow.rport))
                    .collect(),
            ),
            u64c("duration_ns", c.iter().map(|x| x.duration).collect()),
            u64c("tx_bytes", c.iter().map(|x| x.tx).collect()),
            u64c("rx_bytes", c.iter().map(|x| x.rx).collect()),
        ],
        off,
    )
}

/// Per process: TCP connects that failed, resets, and the retransmission
/// rate of its closed connections (retransmitted / sent segments, from the
/// kernel's counters at CLOSE). Only processes with a problem or a
/// retransmission are listed, worst first.
pub(crate) fn problems(ctx: &Ctx) -> anyhow::Result<Frame> {
    #[derive(Default)]
    struct P {
        comm: [u8; 16],
        conns: u64,
        st: [u64; ConnStatus::ALL.len()],
        retrans: u64,
        segs_out: u64,
    }
    let mut per: std::collections::BTreeMap<(u16, u32), P> = Default::default();
    let mut known = false;
    for c in connections(ctx) {
        let Some(s) = c.status else { continue };
        known = true;
        let p = per.entry((c.file, c.pid)).or_default();
        p.comm = c.comm;
        p.conns += 1;
        if let Some(i) = ConnStatus::ALL.iter().position(|&x| x == s) {
            p.st[i] += 1;
        }
        if let Some(o) = c.outcome {
            p.retrans = p.retrans.saturating_add(u64::from(o.retrans_segs));
            p.segs_out = p.segs_out.saturating_add(u64::from(o.segs_out));
        }
    }
    let n = |p: &P, s: ConnStatus| p.st[s as usize];
    let bad = |p: &P| -> u64 {
        ConnStatus::ALL
            .iter()
            .filter(|s| s.is_problem())
            .map(|&s| n(p, s))
            .sum()
    };
    let mut rows: Vec<((u16, u32), P)> = per
        .into_iter()
        .filter(|(_, p)| bad(p) > 0 || p.retrans > 0)
        .collect();
    rows.sort_by(|a, b| {
        bad(&b.1)
            .cmp(&bad(&a.1))
            .then(b.1.retrans.cmp(&a.1.retrans))
            .then(a.0.cmp(&b.0))
    });
    let col =
        |name: &str, f: &dyn Fn(&P) -> u64| u64c(name, rows.iter().map(|r| f(&r.1)).collect());
    let mut f = Frame::new(
        "connection problems",
        vec![
            u32c("pid", rows.iter().map(|r| r.0 .1).collect()),
            strc("comm", rows.iter().map(|r| comm_str(&r.1.comm)).collect()),
            col("tcp_conns", &|p| p.conns),
            col("failed_connects", &|p| {
                n(p, ConnStatus::Refused) + n(p, ConnStatus::Timeout) + n(p, ConnStatus::Failed)
            }),
            col("refused", &|p| n(p, ConnStatus::Refused)),
            col("timeout", &|p| n(p, ConnStatus::Timeout)),
            col("reset_by_peer", &|p| n(p, ConnStatus::ResetByPeer)),
            col("reset_local", &|p| n(p, ConnStatus::ResetLocal)),
            col("retrans_segs", &|p| p.retrans),
            col("segs_out", &|p| p.segs_out),
            opt_f64c(
                "retrans_share",
                rows.iter()
                    .map(|r| (r.1.segs_out > 0).then(|| r.1.retrans as f64 / r.1.segs_out as f64))
                    .collect(),
            ),
        ],
        0,
    )?;
    if !known {
        f.notes.push(
            "the trace does not say how TCP connections ended (recorded before format 1.2, \
             or without the tcp_state hooks)"
                .into(),
        );
    }
    Ok(f)
}

/// The summary's frames: overview, top processes, behaviour (scan, fan-out
/// and periodic processes first), top connections, connection problems,
/// drops, coverage.
pub fn frames(ctx: &Ctx) -> anyhow::Result<Vec<Frame>> {
    let by_pid = Ctx {
        ds: ctx.ds,
        key: Key::Pid,
        key_given: true,
        interval_ns: ctx.interval_ns,
    };
    let mut procs = throughput::frame(&by_pid)?;
    let keep = [
        "pid",
        "comm",
        "tx_bytes",
        "rx_bytes",
        "tx_wire_bytes",
        "rx_wire_bytes",
        "tx_peak_bps",
        "rx_peak_bps",
    ];
    procs.df = procs.df.select(keep)?.head(Some(TOP));
    procs.title = "top processes".into();
    Ok(vec![
        overview(ctx)?,
        procs,
        super::behavior::summary_frame(ctx, TOP)?,
        top_conns(ctx)?,
        problems(ctx)?,
        drops(ctx)?,
        coverage::frame(ctx)?,
    ])
}

/// The summary as one JSON object (sections and columns in display order).
pub fn write_json(frames: &[Frame], output: Option<&Path>) -> anyhow::Result<()> {
    let names = [
        "overview",
        "processes",
        "behaviour",
        "connections",
        "connection_problems",
        "drops",
        "coverage",
    ];
    let mut sections: Vec<String> = Vec::new();
    for (n, f) in names.iter().zip(frames) {
        let rows = json_rows(&f.df)?;
        let body = if *n == "overview" {
            let mut o = Vec::new();
            for r in rows {
                if let (Some(k), Some(v)) =
                    (r.get("field").and_then(|v| v.as_str()), r.get("value"))
                {
                    o.push((k.to_string(), v.clone()));
                }
            }
            serde_json::to_string_pretty(&Row(o))?
        } else {
            serde_json::to_string_pretty(&rows)?
        };
        sections.push(format!(
            "  {}: {}",
            serde_json::to_string(n)?,
            body.replace('\n', "\n  ")
        ));
    }
    let mut w = open_output(output)?;
    writeln!(w, "{{\n{}\n}}", sections.join(",\n"))?;
    w.flush()?;
    Ok(())
}
