//! The behaviour report (`--report behavior`, also `behaviour`): the
//! conclusions the seed study asks for, drawn per process from what the
//! other reports only count. Each process gets traits from a fixed
//! vocabulary ([`Trait`]) — bulk, interactive, request-response, streaming,
//! periodic, fan-out, scan, short-lived-conns, long-lived-conns, listener —
//! a role (client, server, both, none), the numbers the traits rest on, and
//! one evidence sentence per trait with the numbers that made it. Every
//! threshold is a named constant below (documented in the README), so a
//! conclusion can always be traced back to a rule.
//!
//! The per-event facts (sizes, gaps, direction runs per connection,
//! bursts per remote endpoint) are worked out by the loader inside its
//! parallel per-chunk decode ([`crate::behave`]); per-second volume comes
//! from its buckets, connections from the conns report; so the report stays
//! in the analyzer's class next to `--by pid`. [`profiles`] is shared with
//! `snoop diff`.

use std::collections::{BTreeSet, HashMap};

use snoop_format::comm_str;

use super::conns::{connections, Conn};
use super::{nearest_rank, Ctx};
use crate::behave::Exchanges;
use crate::filter::sock_str;
use crate::frame::{opt_u64c, strc, u32c, u64c, Frame, Style};
use crate::load::{tcp, LoadPlan, Origin};
use crate::units;

/// A message of at least this many bytes is "large" (bulk transfer).
pub const BULK_LARGE_MSG_BYTES: u64 = 8 * 1024;
/// `bulk`: at least this share of the process's bytes is in large messages.
pub const BULK_LARGE_SHARE: f64 = 0.5;
/// `bulk`: at least this share of its bytes goes one way.
pub const BULK_DIR_SHARE: f64 = 0.8;
/// `bulk`: at least this many bytes in all.
pub const BULK_MIN_BYTES: u64 = 1024 * 1024;
/// `interactive`: the process's median message is at most this many bytes.
pub const INTERACTIVE_MAX_P50_BYTES: u64 = 256;
/// `interactive`: at least this many messages each way.
pub const INTERACTIVE_MIN_MSGS: u64 = 5;
/// `interactive`: the median gap between consecutive messages in one
/// direction of one connection is at least this (a person, not a program).
pub const HUMAN_GAP_MIN_NS: u64 = 50_000_000;
/// `interactive`: ... and at most this.
pub const HUMAN_GAP_MAX_NS: u64 = 10_000_000_000;
/// `interactive`: the gaps vary at least this much (coefficient of
/// variation): people are irregular, timers are not.
pub const INTERACTIVE_MIN_GAP_CV: f64 = 0.3;
/// `request-response`: at least this many exchanges (a run of messages
/// from the side that spoke first on a connection, answered by a run the
/// other way).
pub const RR_MIN_EXCHANGES: u64 = 5;
/// `request-response`: at least this share of exchanges has a reply larger
/// than its request.
pub const RR_LARGER_REPLY_SHARE: f64 = 0.8;
/// `streaming`: active for at least this long (first to last message).
pub const STREAM_MIN_SPAN_NS: u64 = 10_000_000_000;
/// `streaming`: at least this share of the slots carry bytes. A slot is one
/// `--interval` (default 1 s): the whole intervals between the process's
/// first and last message (several intervals per slot past 65536 of them).
pub const STREAM_ACTIVE_SHARE: f64 = 0.8;
/// `streaming`: bytes per slot vary at most this much (coefficient of variation).
pub const STREAM_MAX_CV: f64 = 0.5;
/// `streaming`: at least this many bytes per second on average (a
/// heartbeat is not a stream).
pub const STREAM_MIN_BYTES_PER_SEC: u64 = 1000;
/// Messages to one remote endpoint further apart than this start a new burst.
pub const BURST_GAP_NS: u64 = 500_000_000;
/// `periodic`: at least this many connections (or bursts) to one endpoint.
pub const PERIODIC_MIN_REPEATS: usize = 5;
/// `periodic`: the mean interval is at least this (faster is a stream).
pub const PERIODIC_MIN_PERIOD_NS: u64 = 1_000_000_000;
/// `periodic`: the intervals' coefficient of variation is at most this.
pub const PERIODIC_MAX_JITTER: f64 = 0.2;
/// `fan-out`: the process contacted at least this many remote addresses.
pub const FANOUT_MIN_REMOTES: usize = 20;
/// `scan`: its outbound connections reach at least this many remote ports
/// (or remote addresses).
pub const SCAN_MIN_TARGETS: usize = 20;
/// `scan`: at least this share of its outbound connections failed or were empty.
pub const SCAN_MIN_FAILED_SHARE: f64 = 0.5;
/// `short-lived-conns`: the median connection lasts at most this.
pub const SHORT_CONN_MAX_NS: u64 = 1_000_000_000;
/// `short-lived-conns`: with at least this many connections.
pub const SHORT_CONN_MIN_CONNS: usize = 3;
/// `long-lived-conns`: the median connection lasts at least this.
pub const LONG_CONN_MIN_NS: u64 = 60_000_000_000;
/// `listener`: accepted at least this many TCP connections (or has a
/// listening socket).
pub const LISTENER_MIN_ACCEPTED: usize = 1;

/// The fixed trait vocabulary, in display order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Trait {
    /// Most bytes in large messages, one direction dominant.
    Bulk,
    /// Small messages both ways at human-scale, irregular gaps.
    Interactive,
    /// Alternating requests and larger replies on the same connection.
    RequestResponse,
    /// A steady rate for most of the process's active time.
    Streaming,
    /// Connections or message bursts at regular intervals (beaconing).
    Periodic,
    /// Many distinct remote addresses contacted.
    FanOut,
    /// Many remote ports or addresses, mostly refused, failed or empty connections.
    Scan,
    /// Short connections.
    ShortLivedConns,
    /// Long connections.
    LongLivedConns,
    /// Accepts connections.
    Listener,
}

impl Trait {
    /// Every trait, in display order.
    pub const ALL: [Trait; 10] = [
        Trait::Bulk,
        Trait::Interactive,
        Trait::RequestResponse,
        Trait::Streaming,
        Trait::Periodic,
        Trait::FanOut,
        Trait::Scan,
        Trait::ShortLivedConns,
        Trait::LongLivedConns,
        Trait::Listener,
    ];

    /// The trait's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Trait::Bulk => "bulk",
            Trait::Interactive => "interactive",
            Trait::RequestResponse => "request-response",
            Trait::Streaming => "streaming",
            Trait::Periodic => "periodic",
            Trait::FanOut => "fan-out",
            Trait::Scan => "scan",
            Trait::ShortLivedConns => "short-lived-conns",
            Trait::LongLivedConns => "long-lived-conns",
            Trait::Listener => "listener",
        }
    }

    /// Whether the summary lists processes with this trait first.
    pub fn alarming(self) -> bool {
        matches!(self, Trait::Scan | Trait::FanOut | Trait::Periodic)
    }
}

/// Which side of its connections a process is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Only opened connections (or spoke first).
    Client,
    /// Only accepted connections (or was spoken to first), or listens.
    Server,
    /// Both.
    Both,
    /// No connection of known direction.
    None,
}

impl Role {
    /// The role's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Server => "server",
            Role::Both => "both",
            Role::None => "none",
        }
    }
}

/// A remote endpoint as `snoop diff` compares them: `addr:port` of a
/// remote the process contacted, or the peer address alone (port `None`:
/// ephemeral) of a connection it accepted or was spoken to first on.
pub type Endpoint = ([u8; 16], Option<u16>);

/// The behaviour of one process.
#[derive(Clone, Debug, Default)]
pub struct Profile {
    /// File.
    pub file: u16,
    /// pid.
    pub pid: u32,
    /// Latest name.
    pub comm: [u8; 16],
    /// Traits with their evidence sentences, in vocabulary order.
    pub traits: Vec<(Trait, String)>,
    /// Opened connections (outbound).
    pub outbound: u64,
    /// Accepted connections (inbound).
    pub inbound: u64,
    /// Has a listening socket or accepted a connection.
    pub listener: bool,
    /// Distinct remote addresses.
    pub remotes: u64,
    /// Distinct remote ports.
    pub remote_ports: u64,
    /// Connections (TCP, and UDP flows as the conns report cuts them).
    pub conns: u64,
    /// Connections that failed or were empty ([`conn_failed`]).
    pub failed_conns: u64,
    /// Median message size.
    pub p50_msg_bytes: Option<u64>,
    /// Median connection duration.
    pub p50_conn_duration_ns: Option<u64>,
    /// Period when `periodic`.
    pub period_ns: Option<u64>,
    /// Coefficient of variation of the intervals when `periodic`.
    pub period_jitter: Option<f64>,
    /// Application bytes sent.
    pub tx_bytes: u64,
    /// Application bytes received.
    pub rx_bytes: u64,
    /// Remote endpoints (see [`Endpoint`]).
    pub endpoints: BTreeSet<Endpoint>,
    /// Ports it serves: (proto, local port) of listening sockets, accepted
    /// TCP connections and UDP flows it was spoken to first on.
    pub listen_ports: BTreeSet<(u8, u16)>,
}

impl Profile {
    /// The role from the connection directions.
    pub fn role(&self) -> Role {
        match (self.outbound > 0, self.inbound > 0 || self.listener) {
            (true, true) => Role::Both,
            (true, false) => Role::Client,
            (false, true) => Role::Server,
            (false, false) => Role::None,
        }
    }

    /// Whether the process has trait `t`.
    pub fn has(&self, t: Trait) -> bool {
        self.traits.iter().any(|(x, _)| *x == t)
    }

    /// The trait names, comma-separated.
    pub fn trait_names(&self) -> String {
        self.traits
            .iter()
            .map(|(t, _)| t.name())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `trait: sentence` for every trait, separated by `; `.
    pub fn evidence(&self) -> String {
        self.traits
            .iter()
            .map(|(t, s)| format!("{}: {s}", t.name()))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// What the report needs loaded: messages with the behaviour partials
/// (see [`crate::behave`]), TCP state changes and process events.
pub(crate) fn plan(interval_ns: u64) -> LoadPlan {
    LoadPlan {
        messages: true,
        packets: false,
        events: false,
        behaviour: true,
        udp_conns: true,
        connections: true,
        processes: true,
        stats: false,
        interval_ns,
    }
}

/// What the TCP state changes say about one socket.
#[derive(Clone, Copy, Debug, Default)]
pub struct SockFacts {
    /// This end sent the SYN.
    pub active: bool,
    /// This end was accepted (SYN_RECV -> ESTABLISHED).
    pub passive: bool,
    /// The connection reached ESTABLISHED (or a state only reached through it).
    pub established: bool,
}

/// (file, cookie, laddr, lport, raddr, rport): by cookie when there is one.
type SockKey = (u16, u64, [u8; 16], u16, [u8; 16], u16);

fn sock_key(file: u16, f: &snoop_format::Flow) -> SockKey {
    if f.cookie != 0 {
        (file, f.cookie, [0; 16], 0, [0; 16], 0)
    } else {
        (file, 0, f.laddr, f.lport, f.raddr, f.rport)
    }
}

/// Whether a connection failed or was empty: a TCP connection whose state
/// changes never reached ESTABLISHED (refused, timed out, failed), one
/// with no bytes either way, or an outbound UDP flow that got no reply.
///
/// This is the one place that decides it. A TCP connection whose outcome
/// the kernel recorded (`status`, format 1.2) failed when it was refused,
/// timed out or failed otherwise; for traces before that, from the state
/// changes (never ESTABLISHED). Either way an exchange that carried no
/// bytes counts as empty.
pub fn conn_failed(c: &Conn, facts: Option<&SockFacts>, outbound: bool) -> bool {
    use snoop_format::ConnStatus;
    if let Some(s) = c.status {
        if matches!(
            s,
            ConnStatus::Refused | ConnStatus::Timeout | ConnStatus::Failed
        ) {
            return true;
        }
    } else if c.flow.proto == 6 && facts.is_some_and(|f| !f.established) {
        return true;
    }
    if c.tx == 0 && c.rx == 0 {
        return true;
    }
    c.flow.proto == 17 && outbound && c.rx == 0
}

/// (file, pid, local port) of a listening TCP socket.
type Listening = (u16, u32, u16);

/// TCP state facts per socket, and every listening socket.
fn sock_facts(ctx: &Ctx) -> (HashMap<SockKey, SockFacts>, Vec<Listening>) {
    use tcp::*;
    let ds = ctx.ds;
    let mut out: HashMap<SockKey, SockFacts> = HashMap::new();
    let mut listen = Vec::new();
    const SYN_RECV: u8 = 3;
    const ESTABLISHED: u8 = 1;
    for c in &ds.conns {
        let r = &ds.flows[c.flow as usize];
        if c.new == LISTEN {
            if r.flow.pid != 0 && r.flow.lport != 0 {
                listen.push((r.file, r.flow.pid, r.flow.lport));
            }
            continue;
        }
        if c.old == LISTEN {
            continue;
        }
        let f = out.entry(sock_key(r.file, &r.flow)).or_default();
        if c.new == SYN_SENT {
            f.active = true;
        }
        if c.old == SYN_RECV && c.new == ESTABLISHED {
            f.passive = true;
        }
        let after_open = |s: u8| {
            matches!(
                s,
                ESTABLISHED | FIN_WAIT1 | FIN_WAIT2 | TIME_WAIT | CLOSE_WAIT | LAST_ACK | CLOSING
            )
        };
        if after_open(c.new) || after_open(c.old) {
            f.established = true;
        }
    }
    (out, listen)
}

/// Per-process accumulation.
#[derive(Default)]
struct Acc {
    p50: Option<u64>,
    large_bytes: u64,
    tx: u64,
    rx: u64,
    tx_n: u64,
    rx_n: u64,
    /// Median gap (when within the human range) and the gaps' spread.
    gap: Option<(u64, f64)>,
    first: u64,
    last: u64,
    /// Slot width, intervals per slot, and the interval of the first slot.
    slot_ns: u64,
    slot_k: u64,
    slot_b0: u64,
    slots: Vec<u64>,
    ex: Exchanges,
}

/// Mean and coefficient of variation.
fn mean_cv(v: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let (n, sum) = v.clone().fold((0usize, 0.0), |(n, s), x| (n + 1, s + x));
    if n == 0 {
        return (0.0, 0.0);
    }
    let mean = sum / n as f64;
    let var = v.map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
    (mean, if mean > 0.0 { var.sqrt() / mean } else { 0.0 })
}

/// Whether event times repeat regularly: (period, jitter, std dev, count).
fn periodicity(times: &mut [u64]) -> Option<(f64, f64, f64, usize)> {
    if times.len() < PERIODIC_MIN_REPEATS {
        return None;
    }
    times.sort_unstable();
    let iv = times.windows(2).map(|w| (w[1] - w[0]) as f64);
    let (mean, cv) = mean_cv(iv);
    (mean >= PERIODIC_MIN_PERIOD_NS as f64 && cv <= PERIODIC_MAX_JITTER).then_some((
        mean,
        cv,
        cv * mean,
        times.len(),
    ))
}

/// `1 port`, `2 ports`, `3 addresses`.
fn counted(n: usize, what: &str) -> String {
    match (n, what.ends_with('s')) {
        (1, _) => format!("1 {what}"),
        (_, true) => format!("{n} {what}es"),
        _ => format!("{n} {what}s"),
    }
}

fn pct(x: f64) -> String {
    format!("{:.0}%", x * 100.0)
}

fn secs(ns: f64) -> String {
    format!("{:.1} s", ns / 1e9)
}

/// A few addresses, for evidence sentences.
fn some_addrs(set: &BTreeSet<[u8; 16]>) -> String {
    let mut s: Vec<String> = set.iter().take(3).map(crate::filter::addr_str).collect();
    if set.len() > 3 {
        s.push("...".into());
    }
    s.join(", ")
}

/// Per-process connection facts.
#[derive(Default)]
struct ConnAcc {
    durations: Vec<u64>,
    failed: u64,
    out: u64,
    out_failed: u64,
    inn: u64,
    out_addrs: BTreeSet<[u8; 16]>,
    out_ports: BTreeSet<u16>,
    addrs: BTreeSet<[u8; 16]>,
    ports: BTreeSet<u16>,
    /// Outbound connection starts per remote endpoint.
    starts: HashMap<([u8; 16], u16), Vec<u64>>,
}

/// The behaviour of every process in the dataset, by traffic (most first).
pub fn profiles(ctx: &Ctx) -> Vec<Profile> {
    let ds = ctx.ds;
    let timing = std::env::var_os("SNOOP_TIMING").is_some();
    let mut t0 = std::time::Instant::now();
    let mut lap = |what: &str| {
        if timing {
            eprintln!("timing: behaviour {what} {:?}", t0.elapsed());
            t0 = std::time::Instant::now();
        }
    };
    // The per-event facts, merged per chunk by the loader (none when the
    // plan did not ask for them: the summary).
    let empty = crate::behave::BehaviourData::default();
    let bd = ds.behaviour.as_ref().unwrap_or(&empty);
    // The three slowest steps, each reading the dataset alone, side by
    // side: every process's median message size, the TCP socket facts and
    // the connections.
    use rayon::prelude::*;
    let (p50_of, ((facts, listens), conns)) = rayon::join(
        || {
            bd.procs
                .par_iter()
                .map(|(&k, d)| (k, d.median_size()))
                .collect::<HashMap<(u16, u32), Option<u64>>>()
        },
        || rayon::join(|| sock_facts(ctx), || connections(ctx)),
    );
    lap("medians, socket facts, connections");
    let names = super::keys::latest_comms(ds);
    let mut index: HashMap<(u16, u32), usize> = HashMap::new();
    let mut procs: Vec<Profile> = Vec::new();
    let mut proc_id = |file: u16, pid: u32, comm: [u8; 16], procs: &mut Vec<Profile>| -> usize {
        *index.entry((file, pid)).or_insert_with(|| {
            procs.push(Profile {
                file,
                pid,
                comm: names.get(&(file, pid)).copied().unwrap_or(comm),
                ..Profile::default()
            });
            procs.len() - 1
        })
    };

    // Message flows -> processes and remote endpoints (for bursts).
    let mut of_flow = vec![u32::MAX; ds.flows.len()];
    let mut ep_of_flow = vec![u32::MAX; ds.flows.len()];
    let mut ep_index: HashMap<(usize, [u8; 16], u16), u32> = HashMap::new();
    let mut eps: Vec<(usize, [u8; 16], u16)> = Vec::new();
    let mut acc: Vec<Acc> = Vec::new();
    for (i, r) in ds.flows.iter().enumerate() {
        let a = &ds.agg[i];
        if r.origin != Origin::Message || r.flow.pid == 0 || a.events() == 0 {
            continue;
        }
        let p = proc_id(r.file, r.flow.pid, r.flow.comm, &mut procs);
        if acc.len() < procs.len() {
            acc.resize_with(procs.len(), || Acc {
                first: u64::MAX,
                ..Acc::default()
            });
        }
        of_flow[i] = p as u32;
        let x = &mut acc[p];
        x.first = x.first.min(a.first);
        x.last = x.last.max(a.last);
        x.tx = x.tx.saturating_add(a.tx_bytes);
        x.rx = x.rx.saturating_add(a.rx_bytes);
        x.tx_n = x.tx_n.saturating_add(a.tx_n);
        x.rx_n = x.rx_n.saturating_add(a.rx_n);
        let key = (p, r.flow.raddr, r.flow.rport);
        ep_of_flow[i] = *ep_index.entry(key).or_insert_with(|| {
            eps.push(key);
            (eps.len() - 1) as u32
        });
    }
    // Bytes per slot from the loader's per-interval buckets.
    let iv = ds.interval_ns.max(1);
    for x in &mut acc {
        if x.last.saturating_sub(x.first) >= STREAM_MIN_SPAN_NS {
            let (b0, b1) = (x.first / iv, x.last / iv);
            let whole = b1.saturating_sub(b0).saturating_sub(1);
            x.slot_k = whole / (1 << 16) + 1;
            x.slot_ns = iv.saturating_mul(x.slot_k);
            x.slot_b0 = b0 + 1;
            x.slots = vec![0; (whole / x.slot_k) as usize];
        }
    }
    for b in &ds.buckets {
        let p = of_flow[b.flow as usize];
        if p == u32::MAX {
            continue;
        }
        let x = &mut acc[p as usize];
        if x.slots.is_empty() || b.b < x.slot_b0 {
            continue;
        }
        if let Some(v) = x.slots.get_mut(((b.b - x.slot_b0) / x.slot_k) as usize) {
            *v = v.saturating_add(b.tx.saturating_add(b.rx));
        }
    }

    lap("flows");
    let mut bursts: Vec<Vec<u64>> = eps
        .iter()
        .map(|&(p, a, port)| {
            let pr = &procs[p];
            bd.bursts(&(pr.file, pr.pid, a, port))
                .map(<[u64]>::to_vec)
                .unwrap_or_default()
        })
        .collect();
    let flow_part = |g: usize| bd.flows.get(g).copied().unwrap_or_default();
    for (g, &p) in of_flow.iter().enumerate() {
        if p == u32::MAX {
            continue;
        }
        let mut f = flow_part(g);
        f.state.close_run(&mut f.ex);
        f.ex.flows = u64::from(f.ex.n > 0);
        acc[p as usize].ex.add(&f.ex);
    }
    let data: Vec<Option<&crate::behave::ProcData>> = procs
        .iter()
        .map(|pr| bd.procs.get(&(pr.file, pr.pid)))
        .collect();
    for (p, x) in acc.iter_mut().enumerate() {
        let pr = &procs[p];
        x.p50 = p50_of.get(&(pr.file, pr.pid)).copied().flatten();
        if let Some(d) = data[p] {
            x.large_bytes = d.large_bytes;
        }
    }
    lap("event facts");
    // The gaps' median and spread, only for processes whose sizes and
    // counts could make them interactive.
    for (p, x) in acc.iter_mut().enumerate() {
        let candidate = x.tx_n >= INTERACTIVE_MIN_MSGS
            && x.rx_n >= INTERACTIVE_MIN_MSGS
            && x.p50.is_some_and(|m| m <= INTERACTIVE_MAX_P50_BYTES);
        if let (true, Some(d)) = (candidate, data[p]) {
            x.gap = d.gaps.clone().human_median();
        }
    }

    // First direction per message flow tuple, for connections without
    // TCP open facts.
    type Tuple = (u16, u8, [u8; 16], u16, [u8; 16], u16);
    let mut first_dir: HashMap<Tuple, (u64, u8)> = HashMap::new();
    for (g, r) in ds.flows.iter().enumerate() {
        let first = flow_part(g).state.first_dir;
        if of_flow[g] == u32::MAX || first == 2 {
            continue;
        }
        let f = &r.flow;
        let k = (r.file, f.proto, f.laddr, f.lport, f.raddr, f.rport);
        let v = (ds.agg[g].first, first);
        first_dir
            .entry(k)
            .and_modify(|e| {
                if v.0 < e.0 {
                    *e = v
                }
            })
            .or_insert(v);
    }

    lap("gaps");
    // Connections.
    let mut cacc: Vec<ConnAcc> = Vec::new();
    for c in conns {
        if c.pid == 0 {
            continue;
        }
        let p = proc_id(c.file, c.pid, c.comm, &mut procs);
        if cacc.len() < procs.len() {
            cacc.resize_with(procs.len(), ConnAcc::default);
        }
        let f = &c.flow;
        let fact = (f.proto == 6)
            .then(|| facts.get(&sock_key(c.file, f)))
            .flatten();
        let outbound = match fact {
            Some(x) if x.active => true,
            Some(x) if x.passive => false,
            _ => first_dir
                .get(&(c.file, f.proto, f.laddr, f.lport, f.raddr, f.rport))
                .is_none_or(|&(_, d)| d == 0),
        };
        let failed = conn_failed(&c, fact, outbound);
        let pr = &mut procs[p];
        let ca = &mut cacc[p];
        ca.durations.push(c.duration);
        ca.failed += u64::from(failed);
        if f.raddr != [0; 16] {
            ca.addrs.insert(f.raddr);
        }
        if f.rport != 0 {
            ca.ports.insert(f.rport);
        }
        if outbound {
            ca.out += 1;
            ca.out_failed += u64::from(failed);
            if f.raddr != [0; 16] {
                ca.out_addrs.insert(f.raddr);
                pr.endpoints.insert((f.raddr, Some(f.rport)));
            }
            ca.out_ports.insert(f.rport);
            ca.starts
                .entry((f.raddr, f.rport))
                .or_default()
                .push(c.start);
        } else {
            ca.inn += 1;
            if f.raddr != [0; 16] {
                pr.endpoints.insert((f.raddr, None));
            }
            if f.lport != 0 && (f.proto == 17 || fact.is_some_and(|x| x.passive)) {
                pr.listen_ports.insert((f.proto, f.lport));
            }
        }
        if fact.is_some_and(|x| x.passive) {
            pr.listener = true;
        }
    }
    for (file, pid, lport) in listens {
        if let Some(&p) = index.get(&(file, pid)) {
            procs[p].listener = true;
            procs[p].listen_ports.insert((6, lport));
        }
    }
    acc.resize_with(procs.len(), Acc::default);
    cacc.resize_with(procs.len(), ConnAcc::default);

    lap("connections");
    // Message bursts per process: (endpoint, times).
    let mut burst_of: Vec<Vec<(usize, Vec<u64>)>> = vec![Vec::new(); procs.len()];
    for (e, times) in bursts.drain(..).enumerate() {
        if times.len() >= PERIODIC_MIN_REPEATS {
            burst_of[eps[e].0].push((e, times));
        }
    }

    for (p, pr) in procs.iter_mut().enumerate() {
        let x = &mut acc[p];
        let ca = &mut cacc[p];
        pr.tx_bytes = x.tx;
        pr.rx_bytes = x.rx;
        pr.outbound = ca.out;
        pr.inbound = ca.inn;
        pr.conns = ca.durations.len() as u64;
        pr.failed_conns = ca.failed;
        pr.remotes = ca.addrs.len() as u64;
        pr.remote_ports = ca.ports.len() as u64;
        pr.p50_msg_bytes = x.p50;
        ca.durations.sort_unstable();
        pr.p50_conn_duration_ns =
            (!ca.durations.is_empty()).then(|| nearest_rank(&ca.durations, 0.5));
        let mut traits: Vec<(Trait, String)> = Vec::new();
        let total = x.tx.saturating_add(x.rx);

        // bulk
        let large = x.large_bytes as f64 / total.max(1) as f64;
        let one_way = x.tx.max(x.rx) as f64 / total.max(1) as f64;
        if total >= BULK_MIN_BYTES && large >= BULK_LARGE_SHARE && one_way >= BULK_DIR_SHARE {
            traits.push((
                Trait::Bulk,
                format!(
                    "{} of {} in messages of at least {}, {} {}",
                    pct(large),
                    units::bytes(total),
                    units::bytes(BULK_LARGE_MSG_BYTES),
                    pct(one_way),
                    if x.tx >= x.rx { "sent" } else { "received" }
                ),
            ));
        }

        // interactive
        if let Some(p50) = pr.p50_msg_bytes {
            if p50 <= INTERACTIVE_MAX_P50_BYTES
                && x.tx_n >= INTERACTIVE_MIN_MSGS
                && x.rx_n >= INTERACTIVE_MIN_MSGS
            {
                if let Some((gap, cv)) = x.gap.filter(|&(_, cv)| cv >= INTERACTIVE_MIN_GAP_CV) {
                    traits.push((
                        Trait::Interactive,
                        format!(
                            "{} sent and {} received messages of {} (median), {} apart \
                             (median, one direction, cv {:.2})",
                            x.tx_n,
                            x.rx_n,
                            units::bytes(p50),
                            units::duration(gap),
                            cv
                        ),
                    ));
                }
            }
        }

        // request-response
        let ex = x.ex;
        if ex.n >= RR_MIN_EXCHANGES && ex.larger as f64 >= RR_LARGER_REPLY_SHARE * ex.n as f64 {
            traits.push((
                Trait::RequestResponse,
                format!(
                    "{} exchanges on {} connection{}: requests of {} and replies of {} on \
                     average, the reply larger in {}",
                    ex.n,
                    ex.flows,
                    if ex.flows == 1 { "" } else { "s" },
                    units::bytes(ex.req_bytes / ex.n),
                    units::bytes(ex.rep_bytes / ex.n),
                    ex.larger
                ),
            ));
        }

        // streaming
        if !x.slots.is_empty() {
            let n = x.slots.len();
            let active = x.slots.iter().filter(|&&v| v > 0).count();
            let (mean, cv) = mean_cv(x.slots.iter().map(|&v| v as f64));
            let per_sec = mean * 1e9 / x.slot_ns as f64;
            if active as f64 >= STREAM_ACTIVE_SHARE * n as f64
                && cv <= STREAM_MAX_CV
                && per_sec >= STREAM_MIN_BYTES_PER_SEC as f64
            {
                traits.push((
                    Trait::Streaming,
                    format!(
                        "{}/s steady (cv {:.2}) in {} of {} slots of {} over {}",
                        units::bytes(per_sec as u64),
                        cv,
                        active,
                        n,
                        units::duration(x.slot_ns),
                        units::duration(x.last - x.first)
                    ),
                ));
            }
        }

        // periodic: connections to one endpoint first, then message bursts.
        let mut best: Option<(usize, f64, f64, String)> = None;
        let consider = |best: &mut Option<(usize, f64, f64, String)>,
                        what: &str,
                        ep: String,
                        times: &mut [u64]| {
            if let Some((period, cv, sd, n)) = periodicity(times) {
                if best.as_ref().is_none_or(|b| n > b.0) {
                    *best = Some((
                        n,
                        period,
                        cv,
                        format!("{n} {what} {ep}, every {} ± {}", secs(period), secs(sd)),
                    ));
                }
            }
        };
        let mut starts: Vec<_> = ca.starts.iter_mut().collect();
        starts.sort_by_key(|(k, _)| **k);
        for ((a, port), times) in starts {
            consider(&mut best, "connections to", sock_str(a, *port), times);
        }
        if best.is_none() {
            for (e, times) in &mut burst_of[p] {
                let (_, a, port) = eps[*e];
                consider(&mut best, "message bursts with", sock_str(&a, port), times);
            }
        }
        if let Some((_, period, cv, s)) = best {
            pr.period_ns = Some(period.round() as u64);
            pr.period_jitter = Some(cv);
            traits.push((Trait::Periodic, s));
        }

        // fan-out
        if ca.out_addrs.len() >= FANOUT_MIN_REMOTES {
            traits.push((
                Trait::FanOut,
                format!(
                    "contacted {} distinct remote addresses ({})",
                    ca.out_addrs.len(),
                    some_addrs(&ca.out_addrs)
                ),
            ));
        }

        // scan
        let targets = ca.out_ports.len().max(ca.out_addrs.len());
        if targets >= SCAN_MIN_TARGETS
            && ca.out_failed as f64 >= SCAN_MIN_FAILED_SHARE * ca.out as f64
        {
            traits.push((
                Trait::Scan,
                format!(
                    "{} of {} outbound connections to {} on {} were refused, failed or empty",
                    ca.out_failed,
                    ca.out,
                    counted(ca.out_ports.len(), "port"),
                    counted(ca.out_addrs.len(), "address")
                ),
            ));
        }

        // short- and long-lived connections
        if let Some(d) = pr.p50_conn_duration_ns {
            let n = ca.durations.len();
            if d <= SHORT_CONN_MAX_NS && n >= SHORT_CONN_MIN_CONNS {
                traits.push((
                    Trait::ShortLivedConns,
                    format!(
                        "median connection {} over {n} connections",
                        units::duration(d)
                    ),
                ));
            }
            if d >= LONG_CONN_MIN_NS {
                traits.push((
                    Trait::LongLivedConns,
                    format!(
                        "median connection {} over {n} connection{}",
                        units::duration(d),
                        if n == 1 { "" } else { "s" }
                    ),
                ));
            }
        }

        // listener
        if pr.listener {
            let ports: Vec<String> = pr
                .listen_ports
                .iter()
                .filter(|(proto, _)| *proto == 6)
                .map(|(_, port)| port.to_string())
                .collect();
            let accepted = ca.inn;
            if !ports.is_empty() || accepted as usize >= LISTENER_MIN_ACCEPTED {
                traits.push((
                    Trait::Listener,
                    format!(
                        "accepted {accepted} connection{} on TCP port{} {}",
                        if accepted == 1 { "" } else { "s" },
                        if ports.len() == 1 { "" } else { "s" },
                        ports.join(", ")
                    ),
                ));
            }
        }
        traits.sort_by_key(|t| t.0);
        pr.traits = traits;
    }
    lap("traits");
    procs.retain(|p| {
        ctx.ds.files[p.file as usize]
            .filter
            .process_ok(p.pid, &p.comm)
    });
    procs.sort_by(|a, b| {
        let ta = a.tx_bytes.saturating_add(a.rx_bytes);
        let tb = b.tx_bytes.saturating_add(b.rx_bytes);
        tb.cmp(&ta)
            .then(b.conns.cmp(&a.conns))
            .then((a.file, a.pid).cmp(&(b.file, b.pid)))
    });
    procs
}

/// The behaviour frame of `procs` (in their order).
pub fn frame_of(ctx: &Ctx, procs: &[Profile], title: &str) -> anyhow::Result<Frame> {
    let ds = ctx.ds;
    let mut cols = Vec::new();
    if ds.multi_host() {
        cols.push(strc(
            "host",
            procs
                .iter()
                .map(|p| ds.files[p.file as usize].host.clone())
                .collect(),
        ));
    }
    cols.push(u32c("pid", procs.iter().map(|p| p.pid).collect()));
    cols.push(strc(
        "comm",
        procs.iter().map(|p| comm_str(&p.comm)).collect(),
    ));
    cols.push(strc(
        "traits",
        procs.iter().map(Profile::trait_names).collect(),
    ));
    cols.push(strc(
        "role",
        procs.iter().map(|p| p.role().name().to_string()).collect(),
    ));
    cols.push(u64c("remotes", procs.iter().map(|p| p.remotes).collect()));
    cols.push(u64c(
        "remote_ports",
        procs.iter().map(|p| p.remote_ports).collect(),
    ));
    cols.push(u64c("conns", procs.iter().map(|p| p.conns).collect()));
    cols.push(u64c(
        "failed_conns",
        procs.iter().map(|p| p.failed_conns).collect(),
    ));
    cols.push(opt_u64c(
        "p50_msg_bytes",
        procs.iter().map(|p| p.p50_msg_bytes).collect(),
    ));
    cols.push(opt_u64c(
        "p50_conn_duration_ns",
        procs.iter().map(|p| p.p50_conn_duration_ns).collect(),
    ));
    cols.push(opt_u64c(
        "period_ns",
        procs.iter().map(|p| p.period_ns).collect(),
    ));
    cols.push(polars::prelude::Column::new(
        "period_jitter".into(),
        procs.iter().map(|p| p.period_jitter).collect::<Vec<_>>(),
    ));
    cols.push(u64c("tx_bytes", procs.iter().map(|p| p.tx_bytes).collect()));
    cols.push(u64c("rx_bytes", procs.iter().map(|p| p.rx_bytes).collect()));
    cols.push(strc(
        "evidence",
        procs.iter().map(Profile::evidence).collect(),
    ));
    let off = ds
        .files
        .first()
        .map(|f| f.info.boot_to_wall_ns)
        .unwrap_or(0);
    let mut f = Frame::new(title, cols, off)?;
    f.styles.push(("period_ns".into(), Style::Dur));
    f.styles.push(("period_jitter".into(), Style::Pct));
    Ok(f)
}

/// The behaviour report's frame: one row per process, by traffic.
pub fn frame(ctx: &Ctx) -> anyhow::Result<Frame> {
    let procs = profiles(ctx);
    let title = format!("behaviour per process ({})", procs.len());
    frame_of(ctx, &procs, &title)
}

/// The summary's behaviour section: processes with `scan`, `fan-out` or
/// `periodic` first, then the rest by traffic. The summary loads no
/// per-event data (it stays as cheap as `--by pid`), so the traits that
/// need it — bulk, interactive, request-response, periodic message bursts —
/// are left to `--report behavior`; those from connections remain.
pub fn summary_frame(ctx: &Ctx, top: usize) -> anyhow::Result<Frame> {
    let mut procs = profiles(ctx);
    // Stable: keeps the traffic order within each group.
    procs.sort_by_key(|p| !p.traits.iter().any(|(t, _)| t.alarming()));
    procs.truncate(top);
    let title = if ctx.ds.behaviour.is_none() {
        "behaviour from connections and rates (scan, fan-out, periodic first; \
         --report behavior for every trait)"
    } else {
        "behaviour (scan, fan-out, periodic first)"
    };
    let mut f = frame_of(ctx, &procs, title)?;
    f.df = f.df.select([
        "pid",
        "comm",
        "traits",
        "role",
        "remotes",
        "conns",
        "failed_conns",
        "evidence",
    ])?;
    Ok(f)
}

/// For a table: the evidence column moves under the table, one line per
/// trait of each shown row (the first `top`; 0 = all), so the table stays
/// narrow enough to read.
pub fn for_table(mut frames: Vec<Frame>, top: Option<usize>) -> anyhow::Result<Vec<Frame>> {
    for f in &mut frames {
        let Ok(ev) = f.df.column("evidence").and_then(|c| c.str().cloned()) else {
            continue;
        };
        let pid = f.df.column("pid")?.u32()?.clone();
        let comm = f.df.column("comm")?.str()?.clone();
        let n = match top.unwrap_or(20) {
            0 => f.df.height(),
            t => t.min(f.df.height()),
        };
        let mut notes = Vec::new();
        for i in 0..n {
            let Some(e) = ev.get(i).filter(|e| !e.is_empty()) else {
                continue;
            };
            for s in e.split("; ") {
                notes.push(format!(
                    "  {} {}: {s}",
                    pid.get(i).unwrap_or(0),
                    comm.get(i).unwrap_or("")
                ));
            }
        }
        if !notes.is_empty() {
            notes.insert(0, "evidence:".into());
        }
        f.df = f.df.drop("evidence")?;
        notes.append(&mut f.notes);
        f.notes = notes;
    }
    Ok(frames)
}

/// The HTML report's behaviour section: a table of every process with a
/// trait (scan, fan-out and periodic first) with its role, traits and
/// evidence; None when no process has one.
pub fn html_section(profiles: &[Profile]) -> Option<String> {
    use super::svg::esc;
    use std::fmt::Write;
    let mut procs: Vec<&Profile> = profiles.iter().filter(|p| !p.traits.is_empty()).collect();
    if procs.is_empty() {
        return None;
    }
    procs.sort_by_key(|p| !p.traits.iter().any(|(t, _)| t.alarming()));
    let mut h = String::from("<h2>Behaviour</h2><div class=\"tbl\">");
    h.push_str(
        "<table><thead><tr><th>pid</th><th>comm</th><th>role</th><th>traits</th>\
         <th>evidence</th></tr></thead><tbody>",
    );
    for p in procs.iter().take(50) {
        let ev: Vec<String> = p
            .traits
            .iter()
            .map(|(t, s)| format!("<b>{}</b>: {}", t.name(), esc(s)))
            .collect();
        let _ = write!(
            h,
            "<tr><td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            p.pid,
            esc(&comm_str(&p.comm)),
            p.role().name(),
            esc(&p.trait_names()),
            ev.join("<br>")
        );
    }
    h.push_str("</tbody></table></div>");
    if procs.len() > 50 {
        let _ = write!(h, "<p class=\"note\">... {} more</p>", procs.len() - 50);
    }
    Some(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::behave::median;

    #[test]
    fn periodicity_needs_repeats_regularity_and_a_slow_period() {
        let s = 1_000_000_000u64;
        let mut regular: Vec<u64> = (0..6).map(|i| i * 30 * s).collect();
        let (p, cv, _, n) = periodicity(&mut regular).unwrap();
        assert_eq!((p as u64, n), (30 * s, 6));
        assert!(cv < 1e-9);
        let mut few: Vec<u64> = (0..4).map(|i| i * 30 * s).collect();
        assert!(periodicity(&mut few).is_none());
        let mut fast: Vec<u64> = (0..10).map(|i| i * s / 10).collect();
        assert!(periodicity(&mut fast).is_none());
        let mut irregular = vec![0, s, 31 * s, 38 * s, 128 * s, 131 * s];
        assert!(periodicity(&mut irregular).is_none());
    }

    #[test]
    fn median_is_nearest_rank() {
        assert_eq!(median::<u32>(&mut []), None);
        assert_eq!(median(&mut [5u32]), Some(5));
        assert_eq!(median(&mut [4u32, 1, 3, 2]), Some(2));
        assert_eq!(median(&mut [9u64, 1, 5]), Some(5));
    }

    #[test]
    fn vocabulary_is_fixed_and_ordered() {
        let names: Vec<&str> = Trait::ALL.iter().map(|t| t.name()).collect();
        assert_eq!(
            names,
            [
                "bulk",
                "interactive",
                "request-response",
                "streaming",
                "periodic",
                "fan-out",
                "scan",
                "short-lived-conns",
                "long-lived-conns",
                "listener"
            ]
        );
        let mut sorted = Trait::ALL;
        sorted.sort();
        assert_eq!(sorted, Trait::ALL);
    }
}
