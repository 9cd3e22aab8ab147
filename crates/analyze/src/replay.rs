//! `snoop replay`: every event of one or more traces in time order, one line
//! each, like tcpdump with process names (or one JSON object per line).
//! Chunks are decoded lazily and merged k-way: a chunk is decoded only when
//! its first timestamp is due, so memory holds just the chunks that overlap
//! in time. Packets get their owner through the same offline attribution as
//! `analyze`. Write errors propagate, so `| head` ends quietly.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::Write;

use anyhow::Context;
use snoop_format::{comm_str, Flow, ProcessRow, Shown, Table, Trace};

use crate::attrib::{AttribIndex, PktResolver};
use crate::cli::ReplayArgs;
use crate::filter::{addr_str, Filter};
use crate::frame::open_output;
use crate::load::{all_columns, tcp, Dataset, FileMeta, LoadPlan, Origin};
use crate::protos::proto_name;
use crate::units;

/// One decoded chunk being replayed.
enum Rows {
    Events {
        table: Table,
        flows: Vec<Flow>,
        b: Box<snoop_format::EventBatch>,
    },
    Procs(Vec<ProcessRow>),
}

struct Cursor {
    file: u16,
    rows: Rows,
    ts: Vec<u64>,
    next: usize,
}

fn decode(tr: &Trace, file: u16, ci: usize, table: Table) -> anyhow::Result<Cursor> {
    let ch = tr
        .read_chunk(ci, all_columns(table))
        .with_context(|| format!("decoding chunk {ci}"))?;
    if table == Table::Processes {
        let b = ch.into_processes()?;
        let n = [
            b.ts.len(),
            b.kind.len(),
            b.pid.len(),
            b.tid.len(),
            b.ppid.len(),
            b.comm.len(),
            b.exit_code.len(),
            b.filename.len(),
        ]
        .into_iter()
        .min()
        .unwrap_or(0);
        let rows: Vec<ProcessRow> = (0..n)
            .filter_map(|i| {
                Some(ProcessRow {
                    ts_ns: b.ts[i],
                    kind: snoop_format::ProcessKind::from_u8(b.kind[i])?,
                    pid: b.pid[i],
                    tid: b.tid[i],
                    ppid: b.ppid[i],
                    comm: b.comm[i],
                    exit_code: b.exit_code[i],
                    filename: b.filename[i].clone(),
                })
            })
            .collect();
        let ts = rows.iter().map(|r| r.ts_ns).collect();
        return Ok(Cursor {
            file,
            rows: Rows::Procs(rows),
            ts,
            next: 0,
        });
    }
    let b = ch.into_events()?;
    let f = &b.flows;
    let n = f.pid.len();
    let ok = [
        f.tid.len(),
        f.comm.len(),
        f.cgroup.len(),
        f.cookie.len(),
        f.ifindex.len(),
        f.family.len(),
        f.proto.len(),
        f.laddr.len(),
        f.lport.len(),
        f.raddr.len(),
        f.rport.len(),
    ]
    .iter()
    .all(|&l| l == n);
    let rows_ok = b.ts.len() == b.rows
        && b.flow.len() == b.rows
        && match table {
            Table::Connections => b.old_state.len() == b.rows && b.new_state.len() == b.rows,
            _ => b.bytes.len() == b.rows && b.dir.len() == b.rows,
        };
    if !ok || !rows_ok {
        anyhow::bail!("chunk {ci}: columns have different lengths");
    }
    let flows = (0..n)
        .map(|i| Flow {
            pid: f.pid[i],
            tid: f.tid[i],
            comm: f.comm[i],
            cgroup: f.cgroup[i],
            cookie: f.cookie[i],
            ifindex: f.ifindex[i],
            family: f.family[i],
            proto: f.proto[i],
            laddr: f.laddr[i],
            lport: f.lport[i],
            raddr: f.raddr[i],
            rport: f.rport[i],
        })
        .collect();
    let ts = b.ts.clone();
    Ok(Cursor {
        file,
        rows: Rows::Events {
            table,
            flows,
            b: Box::new(b),
        },
        ts,
        next: 0,
    })
}

/// `addr:port`, with brackets around IPv6 addresses.
fn hp(addr: &str, port: u16) -> String {
    if addr.contains(':') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    }
}

struct Printer<'a> {
    w: Box<dyn Write + 'a>,
    json: bool,
    files: &'a [FileMeta],
    multi: bool,
}

impl Printer<'_> {
    fn iface(&self, file: u16, ifindex: u32) -> String {
        if ifindex == 0 {
            return "-".into();
        }
        self.files[file as usize]
            .info
            .iface_name(ifindex)
            .map(str::to_string)
            .unwrap_or_else(|| format!("if{ifindex}"))
    }

    #[allow(clippy::too_many_arguments)]
    fn net(
        &mut self,
        file: u16,
        ts: u64,
        event: &str,
        f: &Flow,
        dir: Option<u8>,
        len: Option<u32>,
        extra: Option<String>,
        reason: Option<&str>,
        run: Option<(u32, u64)>,
    ) -> anyhow::Result<()> {
        let m = &self.files[file as usize];
        let wall = m.info.wall_ns(ts);
        let (src, sport, dst, dport) = match dir {
            Some(1) => (addr_str(&f.raddr), f.rport, addr_str(&f.laddr), f.lport),
            _ => (addr_str(&f.laddr), f.lport, addr_str(&f.raddr), f.rport),
        };
        let dir_s = match dir {
            Some(0) => "tx",
            Some(_) => "rx",
            None => "",
        };
        // The remote's name from the trace's DNS answers before this event.
        let name = m.names.at(f.pid, &f.raddr, ts).map(str::to_string);
        let iface = if event == "packet" {
            self.iface(file, f.ifindex)
        } else {
            event.to_string()
        };
        if self.json {
            let mut o = serde_json::json!({
                "ts_ns": ts, "wall": units::wall(wall), "event": event, "iface": iface,
                "proto": proto_name(f.proto), "src": src, "sport": sport, "dst": dst, "dport": dport,
                "pid": f.pid, "comm": comm_str(&f.comm), "remote_name": name,
            });
            if let Some(obj) = o.as_object_mut() {
                if let Some(d) = dir {
                    obj.insert("dir".into(), if d == 0 { "tx" } else { "rx" }.into());
                }
                if let Some(l) = len {
                    obj.insert("len".into(), l.into());
                }
                if let Some(x) = &extra {
                    obj.insert("state".into(), x.clone().into());
                }
                if let Some((count, last)) = run {
                    obj.insert("count".into(), count.into());
                    obj.insert("last_ns".into(), last.into());
                }
                if let Some(r) = reason {
                    obj.insert("attribution".into(), r.into());
                }
                if self.multi {
                    obj.insert("host".into(), m.host.clone().into());
                }
            }
            writeln!(self.w, "{o}")?;
        } else {
            let host = if self.multi {
                format!("{} ", Shown(&m.host))
            } else {
                String::new()
            };
            let who = if f.pid == 0 {
                "pid ?".to_string()
            } else {
                format!("pid {}/{}", f.pid, Shown(&comm_str(&f.comm)))
            };
            let named = |side: String, remote: bool| match (&name, remote) {
                (Some(n), true) => format!("{side} ({})", Shown(n)),
                _ => side,
            };
            let rx = dir == Some(1);
            let what = match (len, &extra) {
                // A run: its packets, each of length l, over its time span.
                (Some(l), _) if run.is_some_and(|(n, _)| n > 1) => {
                    let (n, last) = run.unwrap_or((1, ts));
                    format!(
                        "{dir_s} {l} x{n} over {}",
                        units::duration(last.saturating_sub(ts))
                    )
                }
                (Some(l), _) => format!("{dir_s} {l}"),
                (None, Some(x)) => x.clone(),
                _ => String::new(),
            };
            writeln!(
                self.w,
                "{host}{} {} {} {} -> {} {what} {who}",
                units::wall_time(wall),
                Shown(&iface),
                proto_name(f.proto),
                named(hp(&src, sport), rx),
                named(hp(&dst, dport), !rx)
            )?;
        }
        Ok(())
    }

    fn proc(&mut self, file: u16, r: &ProcessRow) -> anyhow::Result<()> {
        let m = &self.files[file as usize];
        let wall = m.info.wall_ns(r.ts_ns);
        let kind = r.kind.name();
        if self.json {
            let mut o = serde_json::json!({
                "ts_ns": r.ts_ns, "wall": units::wall(wall), "event": "process", "kind": kind,
                "pid": r.pid, "tid": r.tid, "ppid": r.ppid, "comm": comm_str(&r.comm),
            });
            if let Some(obj) = o.as_object_mut() {
                match r.kind {
                    snoop_format::ProcessKind::Exec => {
                        obj.insert("filename".into(), r.filename.clone().into());
                    }
                    snoop_format::ProcessKind::Exit => {
                        obj.insert("exit_code".into(), r.exit_code.into());
                    }
                    _ => {}
                }
                if self.multi {
                    obj.insert("host".into(), m.host.clone().into());
                }
            }
            writeln!(self.w, "{o}")?;
        } else {
            let host = if self.multi {
                format!("{} ", Shown(&m.host))
            } else {
                String::new()
            };
            let detail = match r.kind {
                snoop_format::ProcessKind::Exec => format!(" {}", Shown(&r.filename)),
                snoop_format::ProcessKind::Exit => format!(" code {}", r.exit_code),
                _ => String::new(),
            };
            writeln!(
                self.w,
                "{host}{} process {kind} pid {}/{} ppid {}{detail}",
                units::wall_time(wall),
                r.pid,
                Shown(&comm_str(&r.comm)),
                r.ppid
            )?;
        }
        Ok(())
    }
}

/// Run `snoop replay`.
pub fn run_replay(args: &ReplayArgs) -> anyhow::Result<()> {
    let filter = Filter::parse(&args.filter)?;
    // A first pass over the messages builds the attribution index for packets.
    let plan = LoadPlan {
        messages: true,
        packets: false,
        events: false,
        behaviour: false,
        udp_conns: false,
        connections: false,
        processes: false,
        stats: false,
        interval_ns: 1_000_000_000,
    };
    // Only the replayed time window matters (plus slack for 5-tuple matches).
    let window = crate::cli::FilterArgs {
        since: args.filter.since.clone(),
        until: args.filter.until.clone(),
        ..Default::default()
    };
    let ds = Dataset::load(
        &args.files,
        &Filter::parse(&window)?.widened(crate::attrib::TUPLE_SLACK_NS),
        plan,
    )?;
    let index = AttribIndex::build(&ds);
    let (traces, files) = crate::load::open_all(&args.files, &filter)?;
    let mut pending: Vec<(i64, u16, usize, Table)> = Vec::new();
    for (fi, tr) in traces.iter().enumerate() {
        let ff = &files[fi].filter;
        for (ci, c) in tr.chunks().iter().enumerate() {
            let Some(t) = Table::from_id(c.table) else {
                continue;
            };
            if t == Table::Stats || !ff.chunk_ok(c) {
                continue;
            }
            pending.push((files[fi].info.wall_ns(c.t_min), fi as u16, ci, t));
        }
    }
    pending.sort();
    pending.reverse(); // pop from the end = earliest first
    let mut out = Printer {
        w: open_output(args.output.as_deref())?,
        json: args.json,
        files: &files,
        multi: files.len() > 1,
    };
    let mut active: Vec<Cursor> = Vec::new();
    let mut heap: BinaryHeap<Reverse<(i64, usize)>> = BinaryHeap::new();
    loop {
        let next_active = heap.peek().map(|Reverse((k, _))| *k);
        let next_pending = pending.last().map(|p| p.0);
        match (next_active, next_pending) {
            (None, None) => break,
            (a, Some(p)) if a.is_none_or(|a| p <= a) => {
                let Some((_, fi, ci, t)) = pending.pop() else {
                    break;
                };
                let c = decode(&traces[fi as usize], fi, ci, t)
                    .with_context(|| format!("{}", files[fi as usize].path.display()))?;
                traces[fi as usize].release_chunk(ci);
                if let Some(&ts) = c.ts.first() {
                    heap.push(Reverse((files[fi as usize].info.wall_ns(ts), active.len())));
                    active.push(c);
                } else {
                    active.push(c);
                }
            }
            _ => {
                let Some(Reverse((_, slot))) = heap.pop() else {
                    break;
                };
                let c = &mut active[slot];
                let i = c.next;
                c.next += 1;
                emit(&mut out, c, i, &index, &files)?;
                if let Some(&ts) = c.ts.get(c.next) {
                    heap.push(Reverse((files[c.file as usize].info.wall_ns(ts), slot)));
                } else {
                    // Free the finished chunk's memory.
                    c.rows = Rows::Procs(Vec::new());
                    c.ts = Vec::new();
                }
            }
        }
    }
    out.w.flush()?;
    Ok(())
}

fn emit(
    out: &mut Printer,
    c: &Cursor,
    i: usize,
    index: &AttribIndex,
    files: &[FileMeta],
) -> anyhow::Result<()> {
    let ff = &files[c.file as usize].filter;
    let ts = c.ts[i];
    if !ff.time_ok(ts) {
        return Ok(());
    }
    match &c.rows {
        Rows::Procs(rows) => {
            let r = &rows[i];
            if ff.process_ok(r.pid, &r.comm) {
                out.proc(c.file, r)?;
            }
        }
        Rows::Events { table, flows, b } => {
            let fl = b.flow[i] as usize;
            let Some(&f) = flows.get(fl) else {
                return Ok(());
            };
            match table {
                Table::Messages => {
                    if ff.flow_ok(&f) {
                        out.net(
                            c.file,
                            ts,
                            "msg",
                            &f,
                            Some(b.dir[i]),
                            Some(b.bytes[i]),
                            None,
                            None,
                            None,
                        )?;
                    }
                }
                Table::Packets => {
                    let mut r = PktResolver::new(index, c.file, std::slice::from_ref(&f));
                    let (eff, origin) = r.resolve(0, ts);
                    if ff.flow_ok(&eff) {
                        out.net(
                            c.file,
                            ts,
                            "packet",
                            &eff,
                            Some(b.dir[i]),
                            Some(b.bytes[i]),
                            None,
                            Some(origin.reason()),
                            Some((b.count(i), b.last_ns(i))),
                        )?;
                    }
                }
                _ => {
                    // The state-change pid is only trustworthy at SYN_SENT; use the cookie's owner.
                    let mut r = PktResolver::new(index, c.file, std::slice::from_ref(&f));
                    let (mut eff, origin) = r.resolve(0, ts);
                    if !origin.attributed() || origin == Origin::PktOwner {
                        eff = f;
                    }
                    if ff.flow_ok(&eff) {
                        let st = format!(
                            "{} -> {}",
                            tcp::name(b.old_state[i]),
                            tcp::name(b.new_state[i])
                        );
                        out.net(c.file, ts, "tcp", &eff, None, None, Some(st), None, None)?;
                    }
                }
            }
        }
    }
    Ok(())
}
