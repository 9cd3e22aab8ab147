//! Packet attribution, the heart of `tx_wire_bytes`/`rx_wire_bytes` and of
//! the coverage report. A packet's own pid is never trusted (receive runs in
//! softirq). A packet belongs to a process when (1) its socket cookie is the
//! cookie of a message flow, else (2) its 5-tuple matches a message flow's
//! (exactly, then with the wildcard peer of an unconnected socket, then with
//! the wildcard local address of a socket bound to any address) at a time
//! that flow was active, else (3) the kernel recorded an owner together with
//! the cookie. Everything else is unattributed, with a reason.

use polars::prelude::{PlHashMap, PlHashSet};
use smallvec::SmallVec;
use snoop_format::Flow;

use crate::load::{Dataset, Origin};

/// How far outside a flow's first/last message a 5-tuple match still counts
/// (handshakes before the first send, ACKs after the last receive).
pub const TUPLE_SLACK_NS: u64 = 5_000_000_000;

#[derive(Clone, Copy, Debug)]
struct Cand {
    lo: u64,
    hi: u64,
    gflow: u32,
}

type TupleKey = (u16, u8, [u8; 16], u16, [u8; 16], u16);

/// The message flows behind one key. Almost every key has one, kept inline
/// in the map's entry: a connection storm's packets look up tens of
/// thousands of keys, and a separate heap block per key was one more cache
/// miss per lookup (a quarter of the resolver's time by perf).
type Cands = SmallVec<[Cand; 1]>;

/// Message flows indexed by cookie and by 5-tuple, per file.
#[derive(Debug, Default)]
pub struct AttribIndex {
    by_cookie: PlHashMap<(u16, u64), Cands>,
    by_tuple: PlHashMap<TupleKey, Cands>,
    local_addrs: PlHashSet<(u16, [u8; 16])>,
    has_local: PlHashSet<u16>,
    owners: Vec<Flow>,
}

fn tuple(file: u16, f: &Flow) -> TupleKey {
    (file, f.proto, f.laddr, f.lport, f.raddr, f.rport)
}

impl AttribIndex {
    /// Index the message flows of `ds` (those with at least one event).
    pub fn build(ds: &Dataset) -> AttribIndex {
        let mut ix = AttribIndex::default();
        for (g, row) in ds.flows.iter().enumerate() {
            if row.origin != Origin::Message {
                continue;
            }
            let a = &ds.agg[g];
            if a.events() == 0 {
                continue;
            }
            let c = Cand {
                lo: a.first,
                hi: a.last,
                gflow: g as u32,
            };
            if row.flow.cookie != 0 {
                ix.by_cookie
                    .entry((row.file, row.flow.cookie))
                    .or_default()
                    .push(c);
            }
            ix.by_tuple
                .entry(tuple(row.file, &row.flow))
                .or_default()
                .push(c);
            if row.flow.laddr != [0; 16] {
                ix.local_addrs.insert((row.file, row.flow.laddr));
                ix.has_local.insert(row.file);
            }
        }
        ix.owners = ds.flows.iter().map(|r| r.flow).collect();
        ix
    }

    fn tuple_cands(&self, file: u16, f: &Flow) -> Option<&[Cand]> {
        let mut k = tuple(file, f);
        if let Some(c) = self.by_tuple.get(&k) {
            return Some(c);
        }
        k.4 = [0; 16];
        k.5 = 0;
        if let Some(c) = self.by_tuple.get(&k) {
            return Some(c);
        }
        k.2 = [0; 16];
        self.by_tuple.get(&k).map(|c| c.as_slice())
    }
}

/// A fixed answer, applied to the packet's own flow.
#[derive(Clone, Copy, Debug)]
enum Fixed {
    /// The flow as recorded (the kernel's owner).
    AsRecorded,
    /// The flow with its owner fields cleared.
    Unowned,
}

impl Fixed {
    fn apply(self, f: &Flow) -> Flow {
        match self {
            Fixed::AsRecorded => *f,
            Fixed::Unowned => unowned(f),
        }
    }
}

/// How the packets of one packet-flow dictionary row are attributed. Small
/// (no flow inside): a chunk of a connection storm holds one per each of
/// tens of thousands of rows.
#[derive(Clone, Copy, Debug)]
enum Plan<'a> {
    /// Pick among these message flows by time; `strict` = within the slack.
    Cands(&'a [Cand], Origin, bool),
    /// Fixed result.
    Fixed(Fixed, Origin),
}

/// Resolves the packets of one chunk (caches per flow dictionary row).
pub struct PktResolver<'a> {
    ix: &'a AttribIndex,
    file: u16,
    flows: &'a [Flow],
    plans: Vec<Option<Plan<'a>>>,
}

fn unowned(f: &Flow) -> Flow {
    Flow {
        pid: 0,
        tid: 0,
        comm: [0; 16],
        cgroup: 0,
        ..*f
    }
}

impl<'a> PktResolver<'a> {
    /// A resolver for the packets of a chunk whose dictionary is `flows`.
    pub fn new(ix: &'a AttribIndex, file: u16, flows: &'a [Flow]) -> PktResolver<'a> {
        PktResolver {
            ix,
            file,
            flows,
            plans: vec![None; flows.len()],
        }
    }

    fn plan(&self, f: &Flow) -> Plan<'a> {
        if f.proto != 6 && f.proto != 17 {
            let why = if f.proto == 1 || f.proto == 58 {
                Origin::PktIcmp
            } else {
                Origin::PktOtherProto
            };
            return Plan::Fixed(Fixed::Unowned, why);
        }
        if f.cookie != 0 {
            let ix: &'a AttribIndex = self.ix;
            if let Some(c) = ix.by_cookie.get(&(self.file, f.cookie)) {
                return Plan::Cands(c, Origin::PktCookie, false);
            }
        }
        let ix: &'a AttribIndex = self.ix;
        if let Some(c) = ix.tuple_cands(self.file, f) {
            return Plan::Cands(c, Origin::PktTuple, true);
        }
        self.fallback(f)
    }

    fn fallback(&self, f: &Flow) -> Plan<'a> {
        if f.cookie != 0 && f.pid != 0 {
            return Plan::Fixed(Fixed::AsRecorded, Origin::PktOwner);
        }
        if f.cookie != 0 {
            return Plan::Fixed(Fixed::Unowned, Origin::PktKernel);
        }
        let known_local = self.ix.has_local.contains(&self.file);
        if known_local && !self.ix.local_addrs.contains(&(self.file, f.laddr)) {
            return Plan::Fixed(Fixed::Unowned, Origin::PktForwarded);
        }
        Plan::Fixed(Fixed::Unowned, Origin::PktNoSocket)
    }

    /// Whether dictionary row `i` (already resolved once) resolves the same
    /// way at any time: a fixed answer, or a single cookie candidate.
    pub fn stable(&self, i: usize) -> bool {
        match self.plans.get(i) {
            Some(Some(Plan::Fixed(..))) => true,
            Some(Some(Plan::Cands(c, _, strict))) => !*strict && c.len() == 1,
            _ => false,
        }
    }

    /// The effective flow (owner filled in) and origin of a packet of
    /// dictionary row `i` at time `ts`.
    pub fn resolve(&mut self, i: usize, ts: u64) -> (Flow, Origin) {
        let (eff, origin, _) = self.resolve_owner(i, ts);
        (eff, origin)
    }

    /// [`PktResolver::resolve`], plus the global index of the message flow
    /// whose owner was taken (`None` for a fixed answer). Row, origin and
    /// that index determine the effective flow, so callers can key on them
    /// instead of hashing the flow.
    pub fn resolve_owner(&mut self, i: usize, ts: u64) -> (Flow, Origin, Option<u32>) {
        let f = self.flows[i];
        if self.plans[i].is_none() {
            self.plans[i] = Some(self.plan(&f));
        }
        match &self.plans[i] {
            Some(Plan::Fixed(fx, o)) => (fx.apply(&f), *o, None),
            Some(Plan::Cands(cands, o, strict)) => {
                let dist = |c: &Cand| {
                    if ts < c.lo {
                        c.lo - ts
                    } else {
                        ts.saturating_sub(c.hi)
                    }
                };
                let best = cands
                    .iter()
                    .min_by_key(|c| dist(c))
                    .filter(|c| !*strict || dist(c) <= TUPLE_SLACK_NS);
                match best {
                    Some(c) => {
                        let owner = &self.ix.owners[c.gflow as usize];
                        let eff = Flow {
                            pid: owner.pid,
                            tid: owner.tid,
                            comm: owner.comm,
                            cgroup: owner.cgroup,
                            cookie: if f.cookie != 0 {
                                f.cookie
                            } else {
                                owner.cookie
                            },
                            ..f
                        };
                        (eff, *o, Some(c.gflow))
                    }
                    None => match self.fallback(&f) {
                        Plan::Fixed(fx, o) => (fx.apply(&f), o, None),
                        Plan::Cands(..) => (unowned(&f), Origin::PktNoSocket, None),
                    },
                }
            }
            None => (unowned(&f), Origin::PktNoSocket, None),
        }
    }
}
