//! The conns report: one row per connection. TCP connections come from the
//! lifecycle (state change) events, grouped per socket cookie and cut at
//! CLOSE; every TCP message flow is counted in exactly one of them (what an
//! application reads after CLOSE included), so a process's connections add
//! up to its TCP bytes. Their owner is the process that sent/received on
//! that cookie (the state-change pid is only trustworthy at SYN_SENT). UDP
//! "connections" are message flows by 5-tuple, cut after an idle gap or at
//! the process's exit. A TCP connection's `status` and counters come from
//! its CLOSE row (sk_err, retransmissions, RTTs, segments; format 1.2): a
//! connection with no CLOSE is `open`, and a trace that does not record
//! outcomes leaves them null. A second frame gives the duration
//! distribution per process and how many of its connections failed.

use std::collections::HashMap;

use snoop_format::{comm_str, ConnStatus, Flow, TcpOutcome};

use super::{nearest_rank, Ctx};
use crate::filter::addr_str;
use crate::frame::{opt_strc, opt_u64c, strc, u32c, u64c, Frame};
use crate::load::{tcp, Origin};
use crate::protos::proto_name;

/// (file, proto, laddr, lport, raddr, rport).
type TupleKey = (u16, u8, [u8; 16], u16, [u8; 16], u16);
/// (file, cookie) or (file, 0, laddr, lport, raddr, rport) when there is no cookie.
type SockKey = (u16, u64, [u8; 16], u16, [u8; 16], u16);
/// ((file, pid), (durations, comm)).
type DistRow = ((u16, u32), (Vec<u64>, [u8; 16]));

pub use crate::udpcut::UDP_IDLE_NS;

/// One connection.
#[derive(Clone, Debug)]
pub struct Conn {
    /// File.
    pub file: u16,
    /// Owner pid (0 unknown).
    pub pid: u32,
    /// Owner comm.
    pub comm: [u8; 16],
    /// The flow (addresses, ports, protocol).
    pub flow: Flow,
    /// Start.
    pub start: u64,
    /// End (None: open at the end of the trace).
    pub end: Option<u64>,
    /// Duration (to the end of the trace when open).
    pub duration: u64,
    /// Bytes sent.
    pub tx: u64,
    /// Bytes received.
    pub rx: u64,
    /// How it ended (TCP; None: UDP, or a trace that does not say).
    pub status: Option<ConnStatus>,
    /// The kernel's counters at its CLOSE (TCP, closed, format 1.2).
    pub outcome: Option<TcpOutcome>,
}

/// Last event time per file (footer end or last event seen).
pub fn trace_ends(ctx: &Ctx) -> Vec<u64> {
    let ds = ctx.ds;
    let mut end: Vec<u64> = ds.files.iter().map(|f| f.end_ns.unwrap_or(0)).collect();
    for (i, r) in ds.flows.iter().enumerate() {
        let a = &ds.agg[i];
        if a.events() > 0 {
            end[r.file as usize] = end[r.file as usize].max(a.last);
        }
    }
    for c in &ds.conns {
        let f = ds.flows[c.flow as usize].file as usize;
        end[f] = end[f].max(c.ts);
    }
    end
}

/// One TCP connection as its state changes delimit it, and the message
/// flows assigned to it.
struct Seg {
    file: u16,
    flow: Flow,
    start: u64,
    /// Time of its CLOSE (None: no CLOSE in the trace).
    close: Option<u64>,
    /// Its last state change (bytes_acked / bytes_received at CLOSE).
    last: usize,
    seq: SeqFlags,
    hint: (u32, [u8; 16]),
    tx: u64,
    rx: u64,
    /// (events, flow) of its busiest message flow: the owner.
    best: Option<(u64, usize)>,
    first_msg: u64,
    last_msg: u64,
}

/// The TCP sockets' state changes cut into connections (at CLOSE), by start.
fn tcp_segments(ctx: &Ctx) -> Vec<Seg> {
    let ds = ctx.ds;
    let mut per_sock: HashMap<SockKey, Vec<usize>> = HashMap::new();
    for (i, c) in ds.conns.iter().enumerate() {
        let r = &ds.flows[c.flow as usize];
        let f = &r.flow;
        let k = if f.cookie != 0 {
            (r.file, f.cookie, [0; 16], 0, [0; 16], 0)
        } else {
            (r.file, 0, f.laddr, f.lport, f.raddr, f.rport)
        };
        per_sock.entry(k).or_default().push(i);
    }
    let mut socks: Vec<_> = per_sock.into_values().collect();
    socks.sort_by_key(|v| v.first().map(|&i| (ds.conns[i].ts, i)));
    let mut out = Vec::new();
    for evs in socks {
        let mut cur: Option<(u64, Flow)> = None; // start, flow
        let mut last = 0;
        let mut owner_hint: (u32, [u8; 16]) = (0, [0; 16]);
        let mut seq = SeqFlags::default();
        for &i in &evs {
            let c = &ds.conns[i];
            let row = &ds.flows[c.flow as usize];
            if c.new == tcp::LISTEN || c.old == tcp::LISTEN {
                continue;
            }
            // The recorder takes a connection event's owner from the
            // socket's owner map, never from the current task, so any
            // owner it carries is the socket's (the opener's preferred).
            if row.flow.pid != 0 && (c.new == tcp::SYN_SENT || owner_hint.0 == 0) {
                owner_hint = (row.flow.pid, row.flow.comm);
            }
            seq.see(c.old, c.new);
            last = i;
            let (_, fl) = cur.get_or_insert((c.ts, row.flow));
            if fl.raddr == [0; 16] {
                *fl = row.flow;
            }
            // An active opener's first event (SYN_SENT) is emitted
            // before the kernel picks the source port and address.
            if fl.lport == 0 && row.flow.lport != 0 {
                fl.lport = row.flow.lport;
                fl.laddr = row.flow.laddr;
            }
            if c.new == tcp::CLOSE {
                if let Some((start, fl)) = cur.take() {
                    out.push(Seg::new(
                        row.file,
                        fl,
                        start,
                        Some(c.ts),
                        i,
                        seq,
                        owner_hint,
                    ));
                }
                owner_hint = (0, [0; 16]);
                seq = SeqFlags::default();
            }
        }
        if let Some((start, fl)) = cur {
            let file = ds.flows[ds.conns[last].flow as usize].file;
            out.push(Seg::new(file, fl, start, None, last, seq, owner_hint));
        }
    }
    out
}

impl Seg {
    fn new(
        file: u16,
        flow: Flow,
        start: u64,
        close: Option<u64>,
        last: usize,
        seq: SeqFlags,
        hint: (u32, [u8; 16]),
    ) -> Seg {
        Seg {
            file,
            flow,
            start,
            close,
            last,
            seq,
            hint,
            tx: 0,
            rx: 0,
            best: None,
            first_msg: u64::MAX,
            last_msg: 0,
        }
    }

    /// Whether time `t` falls between its start and its CLOSE.
    fn holds(&self, t: u64) -> bool {
        self.start <= t && self.close.is_none_or(|c| t <= c)
    }
}

/// The connection of `segs` (indices into `all`, by start) a message flow
/// whose first message is at `t` belongs to: the one open at `t`, else the
/// last one started before `t` (an application reads what is left in the
/// receive queue after CLOSE), else the first.
fn pick(all: &[Seg], segs: &[usize], t: u64) -> usize {
    segs.iter()
        .copied()
        .find(|&s| all[s].holds(t))
        .or_else(|| segs.iter().copied().rfind(|&s| all[s].start <= t))
        .unwrap_or(segs[0])
}

/// Every TCP connection. Each TCP message flow is counted in exactly one
/// connection, so a process's connections add up to its TCP bytes: a flow
/// belongs to the connection of its socket (cookie, else 5-tuple) it falls
/// in (see [`pick`]); flows of sockets with no state change in the trace
/// make connections of their own, open at the end.
fn tcp_conns(ctx: &Ctx, ends: &[u64], names: &HashMap<(u16, u32), [u8; 16]>) -> Vec<Conn> {
    let ds = ctx.ds;
    let mut segs = tcp_segments(ctx);
    let mut seg_by_cookie: HashMap<(u16, u64), Vec<usize>> = HashMap::new();
    let mut seg_by_tuple: HashMap<TupleKey, Vec<usize>> = HashMap::new();
    for (i, s) in segs.iter().enumerate() {
        let f = &s.flow;
        if f.cookie != 0 {
            seg_by_cookie.entry((s.file, f.cookie)).or_default().push(i);
        }
        seg_by_tuple
            .entry((s.file, 6, f.laddr, f.lport, f.raddr, f.rport))
            .or_default()
            .push(i);
    }
    // Message flows of sockets without state changes, by socket.
    let mut orphans: HashMap<SockKey, Vec<usize>> = HashMap::new();
    for (i, r) in ds.flows.iter().enumerate() {
        let a = &ds.agg[i];
        if r.origin != Origin::Message || r.flow.proto != 6 || a.events() == 0 {
            continue;
        }
        let f = &r.flow;
        let cands = (f.cookie != 0)
            .then(|| seg_by_cookie.get(&(r.file, f.cookie)))
            .flatten()
            .or_else(|| seg_by_tuple.get(&(r.file, 6, f.laddr, f.lport, f.raddr, f.rport)));
        let Some(cands) = cands else {
            let k = if f.cookie != 0 {
                (r.file, f.cookie, [0; 16], 0, [0; 16], 0)
            } else {
                (r.file, 0, f.laddr, f.lport, f.raddr, f.rport)
            };
            orphans.entry(k).or_default().push(i);
            continue;
        };
        let at = pick(&segs, cands, a.first);
        let s = &mut segs[at];
        s.tx = s.tx.saturating_add(a.tx_bytes);
        s.rx = s.rx.saturating_add(a.rx_bytes);
        s.first_msg = s.first_msg.min(a.first);
        s.last_msg = s.last_msg.max(a.last);
        if s.best.is_none_or(|(w, _)| a.events() > w) {
            s.best = Some((a.events(), i));
        }
    }
    let mut out = Vec::with_capacity(segs.len() + orphans.len());
    for s in segs {
        let (pid, mut comm) = match s.best {
            Some((_, m)) => (ds.flows[m].flow.pid, ds.flows[m].flow.comm),
            None if s.hint.0 != 0 => s.hint,
            None => (0, [0; 16]),
        };
        if let Some(c) = names.get(&(s.file, pid)) {
            comm = *c;
        }
        let (mut tx, mut rx) = (s.tx, s.rx);
        if s.best.is_none() && s.close.is_some() {
            let last = &ds.conns[s.last];
            (tx, rx) = s.seq.payload(last.acked, last.received);
        }
        let start = s.start.min(s.first_msg);
        // Closed at CLOSE, or at the last read of what was still queued.
        let end = s.close.map(|c| c.max(s.last_msg));
        let knows = ds.files[s.file as usize].has_outcomes();
        let (status, outcome) = match s.close {
            Some(_) => {
                let last = &ds.conns[s.last];
                let o = last.outcome.filter(|_| knows);
                (o.map(|o| ConnStatus::at_close(last.old, o.sk_err)), o)
            }
            None => (knows.then_some(ConnStatus::Open), None),
        };
        let duration = end.unwrap_or(ends[s.file as usize]).saturating_sub(start);
        out.push(Conn {
            file: s.file,
            pid,
            comm,
            flow: s.flow,
            start,
            end,
            duration,
            tx,
            rx,
            status,
            outcome,
        });
    }
    for (_, flows) in orphans {
        let r0 = &ds.flows[flows[0]];
        let (mut c, mut best) = (
            Conn {
                file: r0.file,
                pid: r0.flow.pid,
                comm: r0.flow.comm,
                flow: r0.flow,
                start: u64::MAX,
                end: None,
                duration: 0,
                tx: 0,
                rx: 0,
                // No state change in the trace: open from before the
                // recording to its end, as far as the trace can tell.
                status: ds.files[r0.file as usize]
                    .has_outcomes()
                    .then_some(ConnStatus::Open),
                outcome: None,
            },
            0,
        );
        for &i in &flows {
            let a = &ds.agg[i];
            c.start = c.start.min(a.first);
            c.tx = c.tx.saturating_add(a.tx_bytes);
            c.rx = c.rx.saturating_add(a.rx_bytes);
            if a.events() > best {
                best = a.events();
                (c.pid, c.flow) = (ds.flows[i].flow.pid, ds.flows[i].flow);
            }
        }
        c.comm = names.get(&(c.file, c.pid)).copied().unwrap_or(c.flow.comm);
        c.duration = ends[c.file as usize].saturating_sub(c.start);
        out.push(c);
    }
    out
}

/// Every connection in the dataset, by start time.
pub fn connections(ctx: &Ctx) -> Vec<Conn> {
    let ends = trace_ends(ctx);
    let names = super::keys::latest_comms(ctx.ds);
    let mut out = tcp_conns(ctx, &ends, &names);
    // UDP: message flows by tuple, split at idle gaps and process exits.
    out.extend(udp_conns(ctx, &ends, &names));
    out.retain(|c| {
        ctx.ds.files[c.file as usize]
            .filter
            .process_ok(c.pid, &c.comm)
    });
    out.sort_by(|a, b| {
        (a.file, a.start, a.flow.lport, a.flow.rport).cmp(&(
            b.file,
            b.start,
            b.flow.lport,
            b.flow.rport,
        ))
    });
    out
}

/// What a connection's state changes say about the sequence-space bytes
/// (SYN and FIN count one each) inside the kernel's bytes_acked and
/// bytes_received, so the payload can be recovered from them.
#[derive(Clone, Copy, Default)]
struct SeqFlags {
    /// This end sent the SYN (active open): bytes_acked counts it.
    active: bool,
    /// This end's FIN was acknowledged: bytes_acked counts it.
    fin_acked: bool,
    /// The peer's FIN arrived: bytes_received counts it.
    fin_received: bool,
}

impl SeqFlags {
    fn see(&mut self, old: u8, new: u8) {
        use tcp::*;
        match (old, new) {
            (_, SYN_SENT) => self.active = true,
            (FIN_WAIT1, FIN_WAIT2) | (LAST_ACK, CLOSE) | (CLOSING, _) => self.fin_acked = true,
            _ => {}
        }
        if matches!(new, CLOSE_WAIT | CLOSING | TIME_WAIT) || (old, new) == (FIN_WAIT2, CLOSE) {
            self.fin_received = true;
        }
    }

    /// Payload bytes (acked, received) from the kernel's counters.
    fn payload(self, acked: u64, received: u64) -> (u64, u64) {
        let sent_seq = u64::from(self.active) + u64::from(self.fin_acked);
        (
            acked.saturating_sub(sent_seq),
            received.saturating_sub(u64::from(self.fin_received)),
        )
    }
}

/// UDP "connections": a process's messages with one peer (5-tuple), cut
/// where the flow was idle longer than [`UDP_IDLE_NS`] or the process
/// exited in between. One ends at its last message when the process exited
/// after it or the trace went on for the idle gap after it; otherwise it was
/// still active at the end (`end` None). The trace records no socket
/// release, so a socket closed by a live process ends by the idle rule.
fn udp_conns(ctx: &Ctx, ends: &[u64], names: &HashMap<(u16, u32), [u8; 16]>) -> Vec<Conn> {
    let ds = ctx.ds;
    type K = (u16, u32, [u8; 16], u16, [u8; 16], u16);
    let key = |g: usize| -> Option<K> {
        let r = &ds.flows[g];
        (r.origin == Origin::Message && r.flow.proto == 17).then_some((
            r.file,
            r.flow.pid,
            r.flow.laddr,
            r.flow.lport,
            r.flow.raddr,
            r.flow.rport,
        ))
    };
    let exits = crate::udpcut::process_exits(&ds.procs);
    // The first exit of the process at or after `t`.
    let exit_after = |k: &K, t: u64| -> Option<u64> {
        let v = exits.get(&(k.0, k.1))?;
        v.get(v.partition_point(|&x| x < t)).copied()
    };
    let mut out = Vec::new();
    let mut emit = |k: &K, g: usize, s: u64, e: u64, tx: u64, rx: u64| {
        let end = ends[k.0 as usize];
        let open = exit_after(k, e).is_none() && end.saturating_sub(e) < UDP_IDLE_NS;
        let f = ds.flows[g].flow;
        out.push(Conn {
            file: k.0,
            pid: f.pid,
            comm: names.get(&(k.0, f.pid)).copied().unwrap_or(f.comm),
            flow: f,
            start: s,
            end: (!open).then_some(e),
            duration: if open { end } else { e }.saturating_sub(s),
            tx,
            rx,
            status: None,
            outcome: None,
        });
    };
    let Some(cuts) = &ds.udp_cuts else {
        // Not cut while loading (the summary): one connection per flow
        // tuple.
        let mut per: HashMap<K, (usize, u64, u64, u64, u64)> = HashMap::new();
        for g in 0..ds.flows.len() {
            let (Some(k), a) = (key(g), &ds.agg[g]) else {
                continue;
            };
            if a.events() == 0 {
                continue;
            }
            let e = per.entry(k).or_insert((g, u64::MAX, 0, 0, 0));
            e.1 = e.1.min(a.first);
            e.2 = e.2.max(a.last);
            e.3 = e.3.saturating_add(a.tx_bytes);
            e.4 = e.4.saturating_add(a.rx_bytes);
        }
        for (k, (g, s, e, tx, rx)) in per {
            emit(&k, g, s, e, tx, rx);
        }
        return out;
    };
    // Cut per chunk by the loader (see `crate::udpcut`): the tuples in the
    // order of their first global flow.
    let mut seen: std::collections::HashSet<K> = std::collections::HashSet::new();
    for g in 0..ds.flows.len() {
        let Some(k) = key(g) else {
            continue;
        };
        if !seen.insert(k) {
            continue;
        }
        let ex = exits.get(&(k.0, k.1)).map_or(&[][..], Vec::as_slice);
        let Some((first, spans)) = cuts.connections(k.0, &(k.1, k.2, k.3, k.4, k.5), ex) else {
            continue;
        };
        for s in spans {
            emit(&k, first as usize, s.start, s.end, s.tx, s.rx);
        }
    }
    out
}

/// The conns frames: connections, and durations per process (first when `--by` is given).
pub fn frames(ctx: &Ctx) -> anyhow::Result<Vec<Frame>> {
    let ds = ctx.ds;
    let conns = connections(ctx);
    let off = ds
        .files
        .first()
        .map(|f| f.info.boot_to_wall_ns)
        .unwrap_or(0);
    let mut cols = Vec::new();
    if ds.multi_host() {
        cols.push(strc(
            "host",
            conns
                .iter()
                .map(|c| ds.files[c.file as usize].host.clone())
                .collect(),
        ));
    }
    cols.push(u32c("pid", conns.iter().map(|c| c.pid).collect()));
    cols.push(strc(
        "comm",
        conns.iter().map(|c| comm_str(&c.comm)).collect(),
    ));
    cols.push(strc(
        "proto",
        conns
            .iter()
            .map(|c| proto_name(c.flow.proto).to_string())
            .collect(),
    ));
    cols.push(strc(
        "src",
        conns.iter().map(|c| addr_str(&c.flow.laddr)).collect(),
    ));
    cols.push(u32c(
        "sport",
        conns.iter().map(|c| c.flow.lport as u32).collect(),
    ));
    cols.push(strc(
        "dst",
        conns.iter().map(|c| addr_str(&c.flow.raddr)).collect(),
    ));
    cols.push(u32c(
        "dport",
        conns.iter().map(|c| c.flow.rport as u32).collect(),
    ));
    cols.push(opt_strc(
        "remote_name",
        conns
            .iter()
            .map(|c| {
                ds.files[c.file as usize]
                    .names
                    .at(c.pid, &c.flow.raddr, c.start)
                    .map(str::to_string)
            })
            .collect(),
    ));
    cols.push(u64c("start_ns", conns.iter().map(|c| c.start).collect()));
    cols.push(opt_u64c("end_ns", conns.iter().map(|c| c.end).collect()));
    cols.push(u64c(
        "duration_ns",
        conns.iter().map(|c| c.duration).collect(),
    ));
    cols.push(u64c("tx_bytes", conns.iter().map(|c| c.tx).collect()));
    cols.push(u64c("rx_bytes", conns.iter().map(|c| c.rx).collect()));
    cols.push(opt_strc(
        "status",
        conns
            .iter()
            .map(|c| c.status.map(|s| s.name().to_string()))
            .collect(),
    ));
    let counter = |name: &str, f: fn(&TcpOutcome) -> u32, zero_unknown: bool| {
        opt_u64c(
            name,
            conns
                .iter()
                .map(|c| {
                    let v = f(c.outcome.as_ref()?);
                    (!zero_unknown || v != 0).then_some(u64::from(v))
                })
                .collect(),
        )
    };
    cols.push(counter("retrans_segs", |o| o.retrans_segs, false));
    // An RTT of 0 is "no sample" (a connect that never got an answer).
    cols.push(counter("srtt_us", |o| o.srtt_us, true));
    cols.push(counter("min_rtt_us", |o| o.min_rtt_us, true));
    cols.push(counter("segs_out", |o| o.segs_out, false));
    cols.push(counter("segs_in", |o| o.segs_in, false));
    let list = Frame::new(format!("connections ({})", conns.len()), cols, off)?;

    // Duration distribution per process, with how many failed.
    let mut per: HashMap<(u16, u32), (Vec<u64>, [u8; 16])> = HashMap::new();
    let mut failed: HashMap<(u16, u32), Option<u64>> = HashMap::new();
    for c in &conns {
        per.entry((c.file, c.pid))
            .or_insert_with(|| (Vec::new(), c.comm))
            .0
            .push(c.duration);
        let f = failed.entry((c.file, c.pid)).or_default();
        if let Some(s) = c.status {
            *f = Some(f.unwrap_or(0) + u64::from(s.is_failure()));
        }
    }
    let mut rows: Vec<DistRow> = per.into_iter().collect();
    rows.sort_by(|a, b| b.1 .0.len().cmp(&a.1 .0.len()).then(a.0.cmp(&b.0)));
    let mut d = Vec::new();
    if ds.multi_host() {
        d.push(strc(
            "host",
            rows.iter()
                .map(|r| ds.files[r.0 .0 as usize].host.clone())
                .collect(),
        ));
    }
    d.push(u32c("pid", rows.iter().map(|r| r.0 .1).collect()));
    d.push(strc(
        "comm",
        rows.iter().map(|r| comm_str(&r.1 .1)).collect(),
    ));
    d.push(u64c(
        "conns",
        rows.iter().map(|r| r.1 .0.len() as u64).collect(),
    ));
    // Connects refused, timed out or failed; null when no connection of
    // the process has a known status (UDP only, or an older trace).
    d.push(opt_u64c(
        "failed",
        rows.iter()
            .map(|r| failed.get(&r.0).copied().flatten())
            .collect(),
    ));
    let mut sorted: Vec<Vec<u64>> = rows.into_iter().map(|r| r.1 .0).collect();
    sorted.iter_mut().for_each(|v| v.sort_unstable());
    for (name, q) in [
        ("p50_duration_ns", 0.5),
        ("p90_duration_ns", 0.9),
        ("p99_duration_ns", 0.99),
        ("max_duration_ns", 1.0),
    ] {
        d.push(u64c(
            name,
            sorted.iter().map(|v| nearest_rank(v, q)).collect(),
        ));
    }
    let dist = Frame::new("connection durations per process", d, off)?;
    Ok(if ctx.key_given {
        vec![dist, list]
    } else {
        vec![list, dist]
    })
}
