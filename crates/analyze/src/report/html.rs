//! The HTML report: one self-contained page (inline CSS and SVG, no script,
//! nothing fetched) with the charts a person would rather look at than read
//! — send/receive rate over time for the top processes, a section per top
//! process, message and packet size histograms, connection durations and
//! outcomes, remote-address shares, behaviour — behind a table of contents.
//! Charts fill the page's width and scale with the window; hovering a bar or
//! a time slot shows its exact values (SVG `<title>`).

use std::collections::HashMap;
use std::fmt::Write;

use snoop_format::ConnStatus;

use super::behavior::{profiles, Profile};
use super::conns::{connections, Conn};
use super::keys::Groups;
use super::remotes::RemoteRow;
use super::svg::{bar_chart, esc, share_chart, time_chart, Series};
use super::{coverage, pow2_hist, remotes, sizes, summary, throughput, Ctx};
use crate::cli::Key;
use crate::filter::addr_str;
use crate::frame::{cell, Frame};
use crate::load::Origin;
use crate::units;

/// Processes drawn in the rate charts and given a section of their own.
const TOP: usize = 6;

const STYLE: &str = "\
body{font-family:system-ui,sans-serif;margin:0 auto;padding:16px 24px;color:#222;max-width:1400px}\
h1{font-size:24px;margin:8px 0}h2{font-size:19px;margin:36px 0 8px;padding-top:8px;border-top:2px solid #e4e4e4}\
h3{font-size:16px;margin:28px 0 6px}\
nav{background:#f6f7f9;border:1px solid #e4e4e4;border-radius:6px;padding:8px 16px;font-size:14px}\
nav ol{margin:4px 0;padding-left:22px}nav li{margin:2px 0}a{color:#2a5d9f}\
div.tbl{overflow-x:auto}\
table{border-collapse:collapse;font-size:13px;margin:6px 0}\
td,th{border-bottom:1px solid #ddd;padding:4px 10px;text-align:left;vertical-align:top}th,td.n{white-space:nowrap}th{background:#f6f7f9}\
td.n{text-align:right;font-variant-numeric:tabular-nums}\
.note,.meta{color:#555;font-size:13px}.empty{color:#888}.facts{font-size:14px;margin:4px 0}\
div.fig{margin:10px 0;padding:6px 20px 6px 92px;border:1px solid #eee;border-radius:4px}\
div.fig.share{padding-left:12px}\
svg.chart{display:block;overflow:visible}\
.legend{font-size:12px;margin:2px 0}.legend span{display:inline-block;margin-right:18px;white-space:nowrap}\
.legend i{display:inline-block;width:11px;height:11px;margin-right:5px;vertical-align:-1px}\
@media (max-width:760px){svg .odd{display:none}div.fig{padding-left:84px}}";

fn html_table(f: &Frame, top: usize) -> anyhow::Result<String> {
    let mut s = format!(
        "<h3>{}</h3><div class=\"tbl\"><table><thead><tr>",
        esc(&f.title)
    );
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
    s.push_str("</tbody></table></div>");
    for n in &f.notes {
        let _ = write!(s, "<p class=\"note\">{}</p>", esc(n));
    }
    Ok(s)
}

/// Application bytes per process and time slot, on one time grid shared by
/// every rate chart of the page.
struct RateGrid {
    /// Processes (`--by pid` groups).
    groups: Groups,
    /// Group ids by total bytes, largest first, at most [`TOP`].
    order: Vec<usize>,
    /// Bytes (sent, received) per (group, slot).
    cells: HashMap<(usize, u64), (u64, u64)>,
    /// Slot length.
    step_ns: u64,
    /// Number of slots (0: no traffic).
    n: u64,
}

impl RateGrid {
    fn new(ctx: &Ctx) -> RateGrid {
        let ds = ctx.ds;
        let groups = Groups::new(ds, Key::Pid, |r| r.origin == Origin::Message);
        let mut totals = vec![0u64; groups.len()];
        for (i, &g) in groups.of_flow.iter().enumerate() {
            if g != u32::MAX {
                totals[g as usize] = totals[g as usize]
                    .saturating_add(ds.agg[i].tx_bytes.saturating_add(ds.agg[i].rx_bytes));
            }
        }
        let mut order: Vec<usize> = (0..groups.len()).filter(|&g| totals[g] > 0).collect();
        order.sort_by(|a, b| totals[*b].cmp(&totals[*a]).then(a.cmp(b)));
        order.truncate(TOP);
        let (mut b0, mut b1) = (u64::MAX, 0u64);
        for b in &ds.buckets {
            b0 = b0.min(b.b);
            b1 = b1.max(b.b);
        }
        let mut cells: HashMap<(usize, u64), (u64, u64)> = HashMap::new();
        if b0 > b1 {
            return RateGrid {
                groups,
                order,
                cells,
                step_ns: ctx.interval_ns,
                n: 0,
            };
        }
        // At most ~300 slots: merge intervals when the trace is long; with
        // per-event data, a finer step when the trace is short.
        let (t0, t1) = ds
            .msg_events
            .iter()
            .filter_map(|e| Some((*e.ts.first()?, *e.ts.last()?)))
            .fold((u64::MAX, 0), |a, b| (a.0.min(b.0), a.1.max(b.1)));
        let fine = t0 < t1 && (t1 - t0) / 100 < ctx.interval_ns;
        let (step_ns, n) = if fine {
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
            (step, (t1 - t0) / step + 1)
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
            (ctx.interval_ns.saturating_mul(k), (b1 - b0) / k + 1)
        };
        RateGrid {
            groups,
            order,
            cells,
            step_ns,
            n,
        }
    }

    fn name(&self, g: usize) -> String {
        format!("{} {}", self.groups.reps[g].flow.pid, self.groups.comm(g))
    }

    fn bytes(&self, g: usize, slot: u64, dir: usize) -> u64 {
        let c = self.cells.get(&(g, slot)).copied().unwrap_or_default();
        if dir == 0 {
            c.0
        } else {
            c.1
        }
    }

    fn bps(&self, bytes: u64) -> f64 {
        bytes as f64 * 8.0 / (self.step_ns as f64 / 1e9)
    }

    fn times(&self) -> Vec<u64> {
        (0..self.n).map(|i| i * self.step_ns).collect()
    }

    /// A rate chart of `lines`: (legend name, group, direction 0 sent / 1
    /// received). Each slot's title gives its time span and, per line,
    /// the exact bytes and the rate.
    fn chart(&self, title: &str, lines: &[(String, usize, usize)]) -> String {
        let series: Vec<Series> = lines
            .iter()
            .map(|(name, g, dir)| Series {
                name: name.clone(),
                values: (0..self.n)
                    .map(|i| self.bps(self.bytes(*g, i, *dir)))
                    .collect(),
            })
            .collect();
        let tips: Vec<Vec<String>> = (0..self.n)
            .map(|i| {
                let from = match i {
                    0 => "0".to_string(),
                    _ => units::duration(i * self.step_ns),
                };
                let mut t = vec![format!(
                    "{from} to {} after the first message",
                    units::duration((i + 1) * self.step_ns)
                )];
                for (name, g, dir) in lines {
                    let b = self.bytes(*g, i, *dir);
                    t.push(format!(
                        "{name}: {b} B = {} ({:.0} bit/s)",
                        units::rate(self.bps(b)),
                        self.bps(b)
                    ));
                }
                t
            })
            .collect();
        time_chart(
            &format!("{title} (per {})", units::duration(self.step_ns)),
            &self.times(),
            &series,
            &tips,
            &|y| units::rate(y).replace(".0 ", " "),
        )
    }
}

fn hist_chart(
    title: &str,
    tx: &[(u64, u64)],
    rx: &[(u64, u64)],
    label: &dyn Fn(u64) -> String,
    what: &str,
) -> String {
    let (htx, hrx) = (sizes::pow2_hist_weighted(tx), sizes::pow2_hist_weighted(rx));
    let n = htx.len().max(hrx.len());
    let first = (0..n)
        .find(|&k| htx.get(k).copied().unwrap_or(0) + hrx.get(k).copied().unwrap_or(0) > 0)
        .unwrap_or(n);
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
        &|y| counted(y, what),
    )
}

/// A count with its noun: `1 connection`, `3 connections`.
fn counted(n: f64, one: &str) -> String {
    format!("{n:.0} {one}{}", if n == 1.0 { "" } else { "s" })
}

/// A power-of-two bucket's lower bound in bytes, short: `512B`, `4KiB`.
fn bytes_label(b: u64) -> String {
    units::bytes(b).replace(".0 ", " ").replace(' ', "")
}

/// A power-of-two bucket's lower bound as a duration, short: `1 µs`.
fn duration_label(ns: u64) -> String {
    units::duration(ns).replace(".0 ", " ").replace(".00 ", " ")
}

/// Table of contents entry.
struct Toc {
    id: String,
    title: String,
    children: Vec<(String, String)>,
}

/// The per-process section of group `g`.
fn process_section(
    grid: &RateGrid,
    g: usize,
    remotes: &[RemoteRow],
    conns: &[Conn],
    profile: Option<&Profile>,
) -> String {
    let rep = &grid.groups.reps[g];
    let (file, pid) = (rep.file, rep.flow.pid);
    let name = grid.name(g);
    let (mut tx, mut rx) = (0u64, 0u64);
    for i in 0..grid.n {
        tx = tx.saturating_add(grid.bytes(g, i, 0));
        rx = rx.saturating_add(grid.bytes(g, i, 1));
    }
    let mine: Vec<&Conn> = conns
        .iter()
        .filter(|c| c.file == file && c.pid == pid)
        .collect();
    let mut outcomes = [0u64; ConnStatus::ALL.len()];
    for c in &mine {
        if let Some(s) = c.status {
            outcomes[s as usize] += 1;
        }
    }
    let mut rs: Vec<&RemoteRow> = remotes
        .iter()
        .filter(|r| r.file == file && r.pid == pid)
        .collect();
    rs.sort_by(|a, b| {
        (b.tx.saturating_add(b.rx))
            .cmp(&a.tx.saturating_add(a.rx))
            .then(a.raddr.cmp(&b.raddr))
    });
    let mut h = format!(
        "<section id=\"proc-{g}\"><h3>{}</h3><p class=\"facts\">sent {}, received {}; {} connection{}, {} remote address{}",
        esc(&name),
        units::bytes(tx),
        units::bytes(rx),
        mine.len(),
        if mine.len() == 1 { "" } else { "s" },
        rs.len(),
        if rs.len() == 1 { "" } else { "es" },
    );
    if outcomes.iter().any(|&n| n > 0) {
        let parts: Vec<String> = ConnStatus::ALL
            .iter()
            .zip(outcomes)
            .filter(|(_, n)| *n > 0)
            .map(|(s, n)| format!("{n} {}", s.name()))
            .collect();
        let _ = write!(h, "; TCP outcomes: {}", parts.join(", "));
    }
    if let Some(p) = profile.filter(|p| !p.traits.is_empty()) {
        let _ = write!(
            h,
            "; behaviour: <b>{}</b> ({})",
            esc(&p.trait_names()),
            p.role().name()
        );
    }
    h.push_str("</p>\n");
    h.push_str(&grid.chart(
        &format!("{name}: send and receive rate"),
        &[("sent".into(), g, 0), ("received".into(), g, 1)],
    ));
    if !rs.is_empty() {
        h.push_str(
            "<div class=\"tbl\"><table><thead><tr><th>remote</th><th>ports</th><th>flows</th>\
             <th>sent</th><th>received</th><th>share</th></tr></thead><tbody>",
        );
        for r in rs.iter().take(8) {
            let ports: Vec<String> = r.ports.keys().take(6).map(|p| p.to_string()).collect();
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{:.1}%</td></tr>",
                esc(&addr_str(&r.raddr)),
                ports.join(", "),
                if r.ports.len() > 6 { ", …" } else { "" },
                r.conns.len(),
                units::bytes(r.tx),
                units::bytes(r.rx),
                r.share * 100.0
            );
        }
        h.push_str("</tbody></table></div>");
        if rs.len() > 8 {
            let _ = write!(
                h,
                "<p class=\"note\">... {} more remote addresses</p>",
                rs.len() - 8
            );
        }
    }
    h.push_str("</section>\n");
    h
}

/// The whole page.
pub fn page(ctx: &Ctx) -> anyhow::Result<String> {
    let ds = ctx.ds;
    let mut toc: Vec<Toc> = Vec::new();
    let mut body = String::new();
    let section = |toc: &mut Vec<Toc>, body: &mut String, id: &str, title: &str| {
        toc.push(Toc {
            id: id.into(),
            title: title.into(),
            children: Vec::new(),
        });
        let _ = writeln!(body, "<section id=\"{id}\"><h2>{}</h2>", esc(title));
    };

    // Rates over time, then a section per top process.
    let grid = RateGrid::new(ctx);
    let conns = connections(ctx);
    let remote_rows = remotes::rows(ctx);
    let profs = profiles(ctx);
    section(
        &mut toc,
        &mut body,
        "rates",
        "Send and receive rate over time",
    );
    if grid.n == 0 || grid.order.is_empty() {
        body.push_str("<p class=\"empty\">no application traffic in this trace</p>\n");
    } else {
        let lines = |dir: usize| -> Vec<(String, usize, usize)> {
            grid.order.iter().map(|&g| (grid.name(g), g, dir)).collect()
        };
        body.push_str(&grid.chart("send rate, top processes", &lines(0)));
        body.push_str(&grid.chart("receive rate, top processes", &lines(1)));
        body.push_str(
            "<p class=\"note\">Time runs from the first recorded message; hover over the \
             chart for a slot's exact bytes per process.</p>\n",
        );
    }
    body.push_str("</section>\n");

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
    procs.title = "All processes (top 20)".into();
    section(&mut toc, &mut body, "processes", "Top processes");
    for &g in &grid.order {
        let rep = &grid.groups.reps[g];
        let prof = profs
            .iter()
            .find(|p| p.file == rep.file && p.pid == rep.flow.pid);
        body.push_str(&process_section(&grid, g, &remote_rows, &conns, prof));
        if let Some(t) = toc.last_mut() {
            t.children.push((format!("proc-{g}"), grid.name(g)));
        }
    }
    body.push_str(&html_table(&procs, 20)?);
    body.push_str("</section>\n");

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
    section(&mut toc, &mut body, "sizes", "Size distributions");
    body.push_str(&hist_chart(
        "message sizes (count per power-of-two bucket)",
        &get("message", 0),
        &get("message", 1),
        &bytes_label,
        "message",
    ));
    if by.keys().any(|k| k.0 == "packet") {
        body.push_str(&hist_chart(
            "packet sizes on the wire",
            &get("packet", 0),
            &get("packet", 1),
            &bytes_label,
            "packet",
        ));
    }
    body.push_str("</section>\n");

    // Connection durations.
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
        .map(|k| duration_label(if k == 0 { 0 } else { 1u64 << (k - 1) }))
        .collect();
    let col = |hh: &[u64]| {
        (first..n)
            .map(|k| hh.get(k).copied().unwrap_or(0) as f64)
            .collect::<Vec<_>>()
    };
    section(&mut toc, &mut body, "durations", "Connection durations");
    body.push_str(&bar_chart(
        &format!(
            "connections by duration ({} TCP, {} UDP; bucket = at least)",
            tcp.len(),
            udp.len()
        ),
        &labels,
        &[("TCP".into(), col(&ht)), ("UDP".into(), col(&hu))],
        &|y| counted(y, "connection"),
    ));
    body.push_str("</section>\n");

    // How TCP connections ended, when the trace records it.
    let mut outcomes = [0u64; ConnStatus::ALL.len()];
    for c in &conns {
        if let Some(s) = c.status {
            outcomes[s as usize] += 1;
        }
    }
    if outcomes.iter().any(|&n| n > 0) {
        section(&mut toc, &mut body, "outcomes", "Connection outcomes");
        body.push_str(&bar_chart(
            "TCP connections by outcome",
            &ConnStatus::ALL
                .iter()
                .map(|s| s.name().to_string())
                .collect::<Vec<_>>(),
            &[("TCP".into(), outcomes.iter().map(|&n| n as f64).collect())],
            &|y| counted(y, "connection"),
        ));
        let mut probs = summary::problems(ctx)?;
        probs.title = "Connection problems".into();
        body.push_str(&html_table(&probs, 20)?);
        body.push_str("</section>\n");
    }

    // Remote shares (all processes), by name where DNS answers gave one.
    let mut per: HashMap<String, u64> = HashMap::new();
    for r in &remote_rows {
        let label = ctx.ds.files[r.file as usize]
            .names
            .any(r.pid, &r.raddr)
            .map_or_else(|| addr_str(&r.raddr), str::to_string);
        let t = per.entry(label).or_default();
        *t = t.saturating_add(r.tx.saturating_add(r.rx));
    }
    let total: u64 = per.values().fold(0, |a, &b| a.saturating_add(b));
    let mut top: Vec<(String, u64)> = per.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    top.truncate(12);
    let shares: Vec<(String, f64, String)> = top
        .iter()
        .map(|(a, b)| {
            (
                a.clone(),
                if total == 0 {
                    0.0
                } else {
                    *b as f64 / total as f64
                },
                format!("{} ({b} B)", units::bytes(*b)),
            )
        })
        .collect();
    section(&mut toc, &mut body, "remotes", "Remote addresses");
    body.push_str(&share_chart(
        "share of application bytes by remote (name from DNS answers, else address)",
        &shares,
    ));
    body.push_str("</section>\n");

    if let Some(b) = super::behavior::html_section(&profs) {
        toc.push(Toc {
            id: "behaviour".into(),
            title: "Behaviour".into(),
            children: Vec::new(),
        });
        let _ = writeln!(body, "<section id=\"behaviour\">{b}</section>");
    }

    let mut cov = coverage::frame(ctx)?;
    cov.title = "By reason".into();
    section(
        &mut toc,
        &mut body,
        "attribution",
        "Wire traffic attribution",
    );
    body.push_str(&html_table(&cov, 20)?);
    body.push_str("</section>\n");

    let mut h = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>snoop report</title><style>{STYLE}</style></head><body>\n<h1>snoop report</h1>\n"
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
    h.push_str("<nav><b>Contents</b><ol>");
    for t in &toc {
        let _ = write!(h, "<li><a href=\"#{}\">{}</a>", t.id, esc(&t.title));
        if !t.children.is_empty() {
            h.push_str("<ol>");
            for (id, name) in &t.children {
                let _ = write!(h, "<li><a href=\"#{id}\">{}</a></li>", esc(name));
            }
            h.push_str("</ol>");
        }
        h.push_str("</li>");
    }
    h.push_str("</ol></nav>\n");
    h.push_str(&body);
    h.push_str("\n<p class=\"note\">generated by snoop analyze --report html</p></body></html>\n");
    Ok(h)
}
