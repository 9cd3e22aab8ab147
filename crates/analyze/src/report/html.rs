//! The HTML report: one self-contained page (inline CSS and SVG, no script,
//! nothing fetched) with the charts a person would rather look at than read
//! — send/receive rate over time for the top processes, message and packet
//! size histograms, connection-duration distribution, remote-address
//! shares — followed by the top-process and coverage tables.

use std::collections::HashMap;
use std::fmt::Write;

use snoop_format::ConnStatus;

use super::conns::connections;
use super::keys::Groups;
use super::svg::{bar_chart, esc, line_chart, share_chart};
use super::{coverage, pow2_hist, remotes, sizes, summary, throughput, Ctx};
use crate::cli::Key;
use crate::filter::addr_str;
use crate::frame::{cell, Frame};
use crate::load::Origin;
use crate::units;

const TOP: usize = 6;

fn html_table(f: &Frame, top: usize) -> anyhow::Result<String> {
    let mut s = format!("<h2>{}</h2><table><thead><tr>", esc(&f.title));
    for c in f.df.columns() {
        let _ = write!(s, "<th>{}</th>", esc(c.name()));
    }
    s.push_str("</tr></thead><tbody>");
    for i in 0..f.df.height().min(top) {
        s.push_str("<tr>");
        for c in f.df.columns() {
            let (text, right) = cell(c.get(i)?, f.style_for(c.name()), f.wall_offset);
            let _ = write!(
                s,
                "<td{}>{}</td>",
                if right { " class=\"n\"" } else { "" },
                esc(&text)
            );
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table>");
    for n in &f.notes {
        let _ = write!(s, "<p class=\"note\">{}</p>", esc(n));
    }
    Ok(s)
}

/// Rate-over-time series for the top processes: (tx, rx) charts.
fn rate_charts(ctx: &Ctx) -> (String, String) {
    let ds = ctx.ds;
    let groups = Groups::new(ds, Key::Pid, |r| r.origin == Origin::Message);
    let mut totals = vec![0u64; groups.len()];
    for (i, &g) in groups.of_flow.iter().enumerate() {
        if g != u32::MAX {
            totals[g as usize] = totals[g as usize]
                .saturating_add(ds.agg[i].tx_bytes.saturating_add(ds.agg[i].rx_bytes));
        }
    }
    let mut order: Vec<usize> = (0..groups.len()).collect();
    order.sort_by(|a, b| totals[*b].cmp(&totals[*a]).then(a.cmp(b)));
    order.truncate(TOP);
    let (mut b0, mut b1) = (u64::MAX, 0u64);
    for b in &ds.buckets {
        b0 = b0.min(b.b);
        b1 = b1.max(b.b);
    }
    if b0 > b1 {
        return (
            line_chart("send rate", &[], &|x| x.to_string(), &|y| y.to_string()),
            String::new(),
        );
    }
    // At most ~300 points per series: merge intervals when the trace is long;
    // with per-event data, a finer step when the trace is short.
    let mut cells: HashMap<(usize, u64), (u64, u64)> = HashMap::new();
    let (t0, t1) = ds
        .msg_events
        .iter()
        .filter_map(|e| Some((*e.ts.first()?, *e.ts.last()?)))
        .fold((u64::MAX, 0), |a, b| (a.0.min(b.0), a.1.max(b.1)));
    let fine = t0 < t1 && (t1 - t0) / 100 < ctx.interval_ns;
    let (k, step_ns) = if fine {
        let step = ((t1 - t0) / 200).max(1_000);
        for e in &ds.msg_events {
            for i in 0..e.ts.len() {
                let g = groups.of_flow[e.flow[i] as usize];
                if g == u32::MAX {
                    continue;
                }
                let c = cells
                    .entry((g as usize, e.ts[i].saturating_sub(t0) / step))
                    .or_default();
                if e.dir[i] == 0 {
                    c.0 = c.0.saturating_add(e.bytes[i] as u64);
                } else {
                    c.1 = c.1.saturating_add(e.bytes[i] as u64);
                }
            }
        }
        (0, step)
    } else {
        let k = ((b1 - b0).saturating_add(1) / 300).max(1);
        for b in &ds.buckets {
            let g = groups.of_flow[b.flow as usize];
            if g == u32::MAX {
                continue;
            }
            let e = cells.entry((g as usize, (b.b - b0) / k)).or_default();
            e.0 = e.0.saturating_add(b.tx);
            e.1 = e.1.saturating_add(b.rx);
        }
        (k, ctx.interval_ns.saturating_mul(k))
    };
    let secs = step_ns as f64 / 1e9;
    let n = if fine {
        (t1 - t0) / step_ns + 1
    } else {
        (b1 - b0) / k + 1
    };
    let series = |dir: usize| -> Vec<(String, Vec<(f64, f64)>)> {
        order
            .iter()
            .map(|&g| {
                let r = &groups.reps[g];
                let name = format!("{} {}", r.flow.pid, groups.comm(g));
                let pts = (0..n)
                    .map(|i| {
                        let c = cells.get(&(g, i)).copied().unwrap_or_default();
                        let v = if dir == 0 { c.0 } else { c.1 };
                        (i as f64 * secs, v as f64 * 8.0 / secs)
                    })
                    .collect();
                (name, pts)
            })
            .collect()
    };
    let xfmt = |x: f64| format!("+{}", units::duration((x * 1e9) as u64));
    let yfmt = |y: f64| units::rate(y);
    (
        line_chart(
            &format!(
                "send rate, top processes (per {})",
                units::duration(step_ns)
            ),
            &series(0),
            &xfmt,
            &yfmt,
        ),
        line_chart(
            &format!(
                "receive rate, top processes (per {})",
                units::duration(step_ns)
            ),
            &series(1),
            &xfmt,
            &yfmt,
        ),
    )
}

fn hist_chart(
    title: &str,
    tx: &[(u64, u64)],
    rx: &[(u64, u64)],
    label: &dyn Fn(u64) -> String,
) -> String {
    let (htx, hrx) = (sizes::pow2_hist_weighted(tx), sizes::pow2_hist_weighted(rx));
    let n = htx.len().max(hrx.len());
    let first = (0..n)
        .find(|&k| htx.get(k).copied().unwrap_or(0) + hrx.get(k).copied().unwrap_or(0) > 0)
        .unwrap_or(0);
    let labels: Vec<String> = (first..n)
        .map(|k| label(if k == 0 { 0 } else { 1u64 << (k - 1) }))
        .collect();
    let get = |h: &[u64]| {
        (first..n)
            .map(|k| h.get(k).copied().unwrap_or(0) as f64)
            .collect::<Vec<_>>()
    };
    bar_chart(
        title,
        &labels,
        &[("sent".into(), get(&htx)), ("received".into(), get(&hrx))],
        &|y| format!("{y:.0}"),
    )
}

/// The whole page.
pub fn page(ctx: &Ctx) -> anyhow::Result<String> {
    let ds = ctx.ds;
    let mut h = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>snoop report</title><style>\
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1000px}\
h1{font-size:22px}h2{font-size:16px;margin-top:28px}\
table{border-collapse:collapse;font-size:12px}td,th{border-bottom:1px solid #ddd;padding:3px 8px;text-align:left}\
td.n{text-align:right;font-variant-numeric:tabular-nums}.note,.meta{color:#555;font-size:12px}.empty{color:#888}\
svg{display:block;margin:8px 0;border:1px solid #eee}</style></head><body>\n<h1>snoop report</h1>\n",
    );
    for f in &ds.files {
        let _ = writeln!(
            h,
            "<p class=\"meta\">{} — host {}, kernel {}, recording started {} UTC{}</p>",
            esc(&f.path.display().to_string()),
            esc(&f.host),
            esc(&f.info.kernel),
            units::wall(f.info.wall_ns(f.info.start_ns)),
            if f.recovery.is_some() {
                " (recovered: not closed cleanly)"
            } else {
                ""
            }
        );
    }
    let (tx_chart, rx_chart) = rate_charts(ctx);
    h.push_str("<h2>Send and receive rate over time</h2>\n");
    h.push_str(&tx_chart);
    h.push_str(&rx_chart);

    // Size histograms.
    let all = Ctx {
        ds,
        key: Key::Proto,
        key_given: true,
        interval_ns: ctx.interval_ns,
    };
    let (_, dists) = sizes::dists(&all);
    let mut by: HashMap<(&str, u8), Vec<(u64, u64)>> = HashMap::new();
    for d in &dists {
        by.entry((d.kind, d.dir))
            .or_default()
            .extend_from_slice(&d.sizes);
    }
    let get = |k: &str, d: u8| by.get(&(k, d)).cloned().unwrap_or_default();
    h.push_str("<h2>Size distributions</h2>\n");
    let bl = |b: u64| units::bytes(b).replace(".0 ", " ").replace(' ', "");
    h.push_str(&hist_chart(
        "message sizes (count per power-of-two bucket)",
        &get("message", 0),
        &get("message", 1),
        &bl,
    ));
    if by.keys().any(|k| k.0 == "packet") {
        h.push_str(&hist_chart(
            "packet sizes on the wire",
            &get("packet", 0),
            &get("packet", 1),
            &bl,
        ));
    }

    // Connection durations.
    let conns = connections(ctx);
    let durs = |p: u8| {
        conns
            .iter()
            .filter(|c| c.flow.proto == p)
            .map(|c| c.duration)
            .collect::<Vec<_>>()
    };
    let (tcp, udp) = (durs(6), durs(17));
    let (ht, hu) = (pow2_hist(&tcp), pow2_hist(&udp));
    let n = ht.len().max(hu.len());
    let first = (0..n)
        .find(|&k| ht.get(k).copied().unwrap_or(0) + hu.get(k).copied().unwrap_or(0) > 0)
        .unwrap_or(n);
    let labels: Vec<String> = (first..n)
        .map(|k| units::duration(if k == 0 { 0 } else { 1u64 << (k - 1) }))
        .collect();
    let col = |hh: &[u64]| {
        (first..n)
            .map(|k| hh.get(k).copied().unwrap_or(0) as f64)
            .collect::<Vec<_>>()
    };
    h.push_str("<h2>Connection durations</h2>\n");
    h.push_str(&bar_chart(
        &format!(
            "connections by duration ({} TCP, {} UDP; bucket = at least)",
            tcp.len(),
            udp.len()
        ),
        &labels,
        &[("TCP".into(), col(&ht)), ("UDP".into(), col(&hu))],
        &|y| format!("{y:.0}"),
    ));

    // How TCP connections ended.
    let mut outcomes = [0u64; ConnStatus::ALL.len()];
    for c in &conns {
        if let Some(s) = c.status {
            outcomes[s as usize] += 1;
        }
    }
    h.push_str("<h2>Connection outcomes</h2>\n");
    if outcomes.iter().any(|&n| n > 0) {
        h.push_str(&bar_chart(
            "TCP connections by outcome",
            &ConnStatus::ALL
                .iter()
                .map(|s| s.name().to_string())
                .collect::<Vec<_>>(),
            &[("TCP".into(), outcomes.iter().map(|&n| n as f64).collect())],
            &|y| format!("{y:.0}"),
        ));
    } else {
        h.push_str(
            "<p class=\"empty\">no TCP outcomes in this trace (recorded before format 1.2, \
             without the tcp_state hooks, or no TCP connections)</p>\n",
        );
    }

    let mut probs = summary::problems(ctx)?;
    probs.title = "Connection problems".into();
    h.push_str(&html_table(&probs, 20)?);

    // Remote shares (all processes).
    let rows = remotes::rows(ctx);
    let mut per: HashMap<[u8; 16], u64> = HashMap::new();
    for r in &rows {
        let t = per.entry(r.raddr).or_default();
        *t = t.saturating_add(r.tx.saturating_add(r.rx));
    }
    let total: u64 = per.values().fold(0, |a, &b| a.saturating_add(b));
    let mut top: Vec<([u8; 16], u64)> = per.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    top.truncate(12);
    let shares: Vec<(String, f64, String)> = top
        .iter()
        .map(|(a, b)| {
            (
                addr_str(a),
                if total == 0 {
                    0.0
                } else {
                    *b as f64 / total as f64
                },
                units::bytes(*b),
            )
        })
        .collect();
    h.push_str("<h2>Remote addresses</h2>\n");
    h.push_str(&share_chart(
        "share of application bytes by remote address",
        &shares,
    ));

    let by_pid = Ctx {
        ds,
        key: Key::Pid,
        key_given: true,
        interval_ns: ctx.interval_ns,
    };
    let mut procs = throughput::frame(&by_pid)?;
    procs.df = procs.df.select([
        "pid",
        "comm",
        "tx_bytes",
        "rx_bytes",
        "tx_wire_bytes",
        "rx_wire_bytes",
        "tx_peak_bps",
        "rx_peak_bps",
    ])?;
    procs.title = "Top processes".into();
    h.push_str(&html_table(&procs, 20)?);
    h.push_str(&super::behavior::html_section(ctx)?);
    let mut cov = coverage::frame(ctx)?;
    cov.title = "Wire traffic attribution".into();
    h.push_str(&html_table(&cov, 20)?);
    h.push_str("\n<p class=\"note\">generated by snoop analyze --report html</p></body></html>\n");
    Ok(h)
}
