//! Per-chunk decoding and aggregation, run in parallel by the loader: a
//! chunk's columns are decoded (only those asked for), its flow dictionary is
//! filtered once, and events are summed per small local flow id (totals and
//! per-interval buckets) without materialising rows. Packets are attributed
//! here, per event, through the read-only [`AttribIndex`].

use polars::prelude::PlHashMap;

use anyhow::Context;
use snoop_format::{ColumnSet, EventBatch, Flow, Table, Trace, FLOW_COLUMNS};

use crate::attrib::{AttribIndex, PktResolver};
use crate::behave::ChunkPart;
use crate::filter::FileFilter;
use crate::model::{Agg, Events, LoadPlan, Origin};
use crate::udpcut::{Exits, UdpChunk, UdpRows};

/// Every column of an event table plus the flow dictionary.
pub(crate) fn event_columns(table: Table) -> ColumnSet {
    let mut ids: Vec<u16> = table.columns().iter().map(|c| c.id).collect();
    ids.extend(FLOW_COLUMNS.iter().map(|c| c.id));
    ColumnSet::of(&ids)
}

/// Per-chunk accumulation on local key ids.
struct Acc {
    keys: Vec<(Flow, Origin)>,
    agg: Vec<Agg>,
    buckets: Vec<(u64, u32, u64, u64)>,
    cur_b: u64,
    /// Time range `[b_lo, b_hi)` of the current bucket (saves a division per event).
    b_lo: u64,
    b_hi: u64,
    cur: Vec<(u64, u64, bool)>,
    touched: Vec<u32>,
    interval: u64,
    events: Option<Events>,
    /// Per local flow, whether its events are kept (empty: all are).
    keep: Vec<bool>,
}

impl Acc {
    /// Room for about `keys` flows and, when events are kept, `rows`
    /// events: grown by doubling instead, a connection storm's chunk copied
    /// its tens of thousands of keys several times over, into fresh pages
    /// each time (perf: most of the analyzer's page faults).
    fn new(interval: u64, keep: bool, keys: usize, rows: usize) -> Acc {
        Acc {
            keys: Vec::with_capacity(keys),
            agg: Vec::with_capacity(keys),
            buckets: Vec::new(),
            cur_b: u64::MAX,
            b_lo: u64::MAX,
            b_hi: 0,
            cur: Vec::with_capacity(keys),
            touched: Vec::new(),
            interval: interval.max(1),
            events: keep.then(|| Events {
                ts: Vec::with_capacity(rows),
                flow: Vec::with_capacity(rows),
                bytes: Vec::with_capacity(rows),
                dir: Vec::with_capacity(rows),
                count: Vec::new(),
            }),
            keep: Vec::new(),
        }
    }

    fn key(&mut self, k: (Flow, Origin)) -> u32 {
        self.keys.push(k);
        self.agg.push(Agg::default());
        self.cur.push((0, 0, false));
        (self.keys.len() - 1) as u32
    }

    fn flush(&mut self) {
        for &id in &self.touched {
            let (tx, rx, _) = std::mem::take(&mut self.cur[id as usize]);
            self.buckets.push((self.cur_b, id, tx, rx));
        }
        self.touched.clear();
    }

    #[inline(always)]
    fn add(&mut self, id: u32, ts: u64, bytes: u32, dir: u8) {
        let i = id as usize;
        self.agg[i].add(ts, bytes, dir);
        if ts < self.b_lo || ts >= self.b_hi {
            self.flush();
            self.cur_b = ts / self.interval;
            self.b_lo = self.cur_b * self.interval;
            self.b_hi = self.b_lo.saturating_add(self.interval);
        }
        let c = &mut self.cur[i];
        if !c.2 {
            c.2 = true;
            self.touched.push(id);
        }
        if dir == 0 {
            c.0 = c.0.saturating_add(bytes as u64);
        } else {
            c.1 = c.1.saturating_add(bytes as u64);
        }
        self.event(id, ts, bytes, dir);
    }

    /// Keep the event when events are kept (and its flow's are).
    #[inline(always)]
    fn event(&mut self, id: u32, ts: u64, bytes: u32, dir: u8) {
        if let Some(e) = &mut self.events {
            if !self.keep.is_empty() && !self.keep[id as usize] {
                return;
            }
            e.ts.push(ts);
            e.flow.push(id);
            e.bytes.push(bytes);
            e.dir.push(dir);
        }
    }

    /// Add a run of `count` packets of `bytes` each, evenly spread from
    /// `first` to `last`: its bytes go to the intervals it spans in
    /// proportion to the time it spends in each (a run within one interval,
    /// nearly all of them, goes there whole). Kept events get one row for
    /// the run, with its count. Only the packets inside `[lo, hi]` (the
    /// `--since`/`--until` window) count: evenly spread, like the rest.
    fn add_run(&mut self, id: u32, first: u64, last: u64, count: u64, bytes: u32, dir: u8) {
        if count <= 1 || last <= first {
            // A single packet, or every packet at one instant.
            self.add_n(id, first, count.max(1), bytes, dir);
            return;
        }
        let i = id as usize;
        self.agg[i].add_run(first, last, count, bytes, dir);
        // Packet k (0-based) is at first + span * k / (count - 1): walk the
        // intervals the run touches, giving each the packets that fall in it.
        let span = (last - first) as u128;
        let steps = (count - 1) as u128;
        let at = |k: u64| first + ((span * k as u128) / steps) as u64;
        // One step per interval that holds packets (never more steps than
        // packets, however long a crafted span): the interval of packet
        // k0, and the packets before its end.
        let mut k0: u64 = 0;
        while k0 < count {
            let t = at(k0);
            let end = (t / self.interval + 1).saturating_mul(self.interval); // exclusive
                                                                             // Packets with first + span*k/steps < end: k < (end-first)*steps/span.
            let k1 = if end > last {
                count
            } else {
                (((end - first) as u128 * steps).div_ceil(span)).min(count as u128) as u64
            }
            .clamp(k0 + 1, count);
            self.bucket_add(id, t, (bytes as u64).saturating_mul(k1 - k0), dir);
            k0 = k1;
        }
        if let Some(e) = &mut self.events {
            e.ts.push(first);
            e.flow.push(id);
            e.bytes.push(bytes);
            e.dir.push(dir);
            e.count.resize(e.ts.len() - 1, 1);
            e.count.push(count.min(u32::MAX as u64) as u32);
        }
    }

    /// `count` events of `bytes` at one instant.
    fn add_n(&mut self, id: u32, ts: u64, count: u64, bytes: u32, dir: u8) {
        if count == 1 {
            self.add(id, ts, bytes, dir);
            return;
        }
        self.agg[id as usize].add_run(ts, ts, count, bytes, dir);
        self.bucket_add(id, ts, (bytes as u64).saturating_mul(count), dir);
        if let Some(e) = &mut self.events {
            e.ts.push(ts);
            e.flow.push(id);
            e.bytes.push(bytes);
            e.dir.push(dir);
            e.count.resize(e.ts.len() - 1, 1);
            e.count.push(count.min(u32::MAX as u64) as u32);
        }
    }

    /// Add `bytes` to flow `id`'s bucket of the interval holding `ts`.
    #[inline]
    fn bucket_add(&mut self, id: u32, ts: u64, bytes: u64, dir: u8) {
        if ts < self.b_lo || ts >= self.b_hi {
            self.flush();
            self.cur_b = ts / self.interval;
            self.b_lo = self.cur_b * self.interval;
            self.b_hi = self.b_lo.saturating_add(self.interval);
        }
        let c = &mut self.cur[id as usize];
        if !c.2 {
            c.2 = true;
            self.touched.push(id);
        }
        if dir == 0 {
            c.0 = c.0.saturating_add(bytes);
        } else {
            c.1 = c.1.saturating_add(bytes);
        }
    }

    fn finish(mut self, file: u16) -> ChunkOut {
        if let Some(e) = &mut self.events {
            if !e.count.is_empty() {
                e.count.resize(e.ts.len(), 1);
            }
        }
        self.flush();
        ChunkOut {
            file,
            keys: self.keys,
            agg: self.agg,
            buckets: self.buckets,
            events: self.events,
            behaviour: None,
            udp: None,
        }
    }
}

pub(crate) struct ChunkOut {
    pub file: u16,
    pub keys: Vec<(Flow, Origin)>,
    pub agg: Vec<Agg>,
    pub buckets: Vec<(u64, u32, u64, u64)>,
    pub events: Option<Events>,
    pub behaviour: Option<ChunkPart>,
    pub udp: Option<UdpChunk>,
}

fn flow_at(f: &snoop_format::FlowColumns, i: usize) -> Flow {
    Flow {
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
    }
}

/// The flow dictionary of a batch as rows (checks the column lengths).
pub(crate) fn batch_flows(b: &EventBatch, what: &str) -> anyhow::Result<Vec<Flow>> {
    let f = &b.flows;
    let n = f.pid.len();
    let lens = [
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
    ];
    if lens.iter().any(|&l| l != n) {
        anyhow::bail!("{what}: flow dictionary columns have different lengths");
    }
    if b.ts.len() != b.rows
        || b.flow.len() != b.rows
        || (!b.bytes.is_empty() && b.bytes.len() != b.rows)
        || (!b.dir.is_empty() && b.dir.len() != b.rows)
    {
        anyhow::bail!("{what}: event columns have different lengths");
    }
    Ok((0..n).map(|i| flow_at(f, i)).collect())
}

pub(crate) fn decode_messages(
    tr: &Trace,
    fi: u16,
    ci: usize,
    ff: &FileFilter,
    plan: &LoadPlan,
    exits: &Exits,
) -> anyhow::Result<ChunkOut> {
    let t0 = std::time::Instant::now();
    let b = tr
        .read_chunk(ci, event_columns(Table::Messages))
        .and_then(|c| c.into_events())
        .with_context(|| format!("decoding messages chunk {ci}"))?;
    DECODE_NS.fetch_add(
        t0.elapsed().as_nanos() as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
    let flows = batch_flows(&b, &format!("messages chunk {ci}"))?;
    if plan.behaviour {
        return Ok(behaviour_chunk(&b, &flows, fi, ff, plan, exits, t0));
    }
    let mut acc = Acc::new(plan.interval_ns, plan.events, flows.len(), b.rows);
    let mut udp = UdpChunk::default();
    let map: Vec<u32> = flows
        .iter()
        .map(|f| {
            if ff.flow_ok(f) {
                if plan.udp_conns {
                    udp.flow(f);
                }
                acc.key((*f, Origin::Message))
            } else {
                u32::MAX
            }
        })
        .collect();
    let whole = ff.all_in_window(&b.ts);
    if !udp.any() {
        for i in 0..b.rows {
            let id = map[b.flow[i] as usize];
            let ts = b.ts[i];
            if id == u32::MAX || (!whole && !ff.time_ok(ts)) {
                continue;
            }
            acc.add(id, ts, b.bytes[i], b.dir[i]);
        }
    } else {
        // The same, noting the UDP rows and their local flows for the cut.
        let is_udp = udp.flows();
        let mut rows = UdpRows::new();
        for i in 0..b.rows {
            let id = map[b.flow[i] as usize];
            let ts = b.ts[i];
            if id == u32::MAX || (!whole && !ff.time_ok(ts)) {
                continue;
            }
            rows.note(is_udp[id as usize], i as u32, id);
            acc.add(id, ts, b.bytes[i], b.dir[i]);
        }
        udp.run(&rows.finish(), &b.ts, &b.bytes, &b.dir, fi, exits);
    }
    AGG_NS.fetch_add(
        t0.elapsed().as_nanos() as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
    let mut out = acc.finish(fi);
    out.udp = plan.udp_conns.then_some(udp);
    Ok(out)
}

/// [`decode_messages`] for a plan with `behaviour`: the same totals and
/// buckets, plus the chunk's behaviour partials. Equal dictionary rows share
/// one local id (a flow's runs and gaps must see all its messages in
/// order). Without `events`, UDP flows are cut into connections here
/// (`udp_conns`), or else keep their events (the connections cut after
/// loading reads them).
fn behaviour_chunk(
    b: &EventBatch,
    flows: &[Flow],
    fi: u16,
    ff: &FileFilter,
    plan: &LoadPlan,
    exits: &Exits,
    t0: std::time::Instant,
) -> ChunkOut {
    let keep_udp = !plan.events && !plan.udp_conns;
    let mut acc = Acc::new(plan.interval_ns, keep_udp, flows.len(), 0);
    if plan.events {
        acc.events = Some(Events {
            ts: Vec::with_capacity(b.rows),
            flow: Vec::with_capacity(b.rows),
            bytes: Vec::with_capacity(b.rows),
            dir: Vec::with_capacity(b.rows),
            count: Vec::new(),
        });
    }
    let mut part = ChunkPart::new(plan.interval_ns);
    let mut udp = UdpChunk::default();
    let mut seen: hashbrown::HashTable<u32> = hashbrown::HashTable::with_capacity(flows.len());
    let map: Vec<u32> = flows
        .iter()
        .map(|f| {
            if !ff.flow_ok(f) {
                return u32::MAX;
            }
            let keys = &acc.keys;
            match seen.entry(
                f.hash64(),
                |&j| keys[j as usize].0 == *f,
                |&j| keys[j as usize].0.hash64(),
            ) {
                hashbrown::hash_table::Entry::Occupied(e) => *e.get(),
                hashbrown::hash_table::Entry::Vacant(e) => {
                    let id = acc.key((*f, Origin::Message));
                    e.insert(id);
                    part.flow(f);
                    if plan.udp_conns {
                        udp.flow(f);
                    }
                    if keep_udp {
                        acc.keep.push(f.proto == 17);
                    }
                    id
                }
            }
        })
        .collect();
    if keep_udp {
        // Exact room for the kept (UDP) events: no regrowth copies.
        let kept = b
            .flow
            .iter()
            .filter(|&&r| {
                map.get(r as usize)
                    .is_some_and(|&id| id != u32::MAX && acc.keep[id as usize])
            })
            .count();
        if let Some(e) = &mut acc.events {
            e.ts.reserve_exact(kept);
            e.flow.reserve_exact(kept);
            e.bytes.reserve_exact(kept);
            e.dir.reserve_exact(kept);
        }
    }
    let whole = ff.all_in_window(&b.ts);
    // Each row's local flow (u32::MAX: skipped) and the rows per local
    // flow, for the behaviour facts, which walk the rows grouped by
    // endpoint and sum the totals and buckets on the way.
    let mut ids = Vec::with_capacity(b.rows);
    let mut flow_rows = vec![0u32; acc.keys.len() + 1];
    let skipped = acc.keys.len();
    // The UDP rows and their local flows, for the connections cut.
    let is_udp = udp.flows();
    let mut udp_rows = UdpRows::new();
    let keep = acc.events.is_some();
    for i in 0..b.rows {
        let mut id = map[b.flow[i] as usize];
        let ts = b.ts[i];
        if !whole && !ff.time_ok(ts) {
            id = u32::MAX;
        }
        ids.push(id);
        flow_rows[(id as usize).min(skipped)] += 1;
        if id == u32::MAX {
            continue;
        }
        udp_rows.note(
            is_udp.get(id as usize).copied().unwrap_or(false),
            i as u32,
            id,
        );
        if keep {
            acc.event(id, ts, b.bytes[i], b.dir[i]);
        }
    }
    flow_rows.truncate(skipped);
    part.run(&ids, &b.ts, &b.bytes, &b.dir, &flow_rows);
    (acc.agg, acc.buckets) = part.totals();
    udp.run(&udp_rows.finish(), &b.ts, &b.bytes, &b.dir, fi, exits);
    AGG_NS.fetch_add(
        t0.elapsed().as_nanos() as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
    let mut out = acc.finish(fi);
    out.behaviour = Some(part);
    out.udp = plan.udp_conns.then_some(udp);
    out
}

/// CPU time spent decoding / decoding + aggregating chunks (SNOOP_TIMING).
pub static DECODE_NS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// See [`DECODE_NS`].
pub static AGG_NS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub(crate) fn decode_packets(
    tr: &Trace,
    fi: u16,
    ci: usize,
    ff: &FileFilter,
    plan: &LoadPlan,
    index: &AttribIndex,
) -> anyhow::Result<ChunkOut> {
    let b = tr
        .read_chunk(ci, event_columns(Table::Packets))
        .and_then(|c| c.into_events())
        .with_context(|| format!("decoding packets chunk {ci}"))?;
    let flows = batch_flows(&b, &format!("packets chunk {ci}"))?;
    let mut acc = Acc::new(plan.interval_ns, plan.events, flows.len(), b.rows);
    let mut resolver = PktResolver::new(index, fi, &flows);
    // Local ids by (dictionary row, origin, owner's message flow), which
    // determine the effective flow: no flow hashed per packet. Rows that
    // resolve to equal flows keep separate ids here; the merge interns
    // them into one.
    let mut local: PlHashMap<(u32, Origin, u32), u32> =
        PlHashMap::with_capacity_and_hasher(flows.len(), Default::default());
    // Per dictionary row whose answer never depends on time: its local id
    // (or SKIP when filtered out), so most packets cost no hashing at all.
    const UNKNOWN: u32 = u32::MAX;
    const SKIP: u32 = u32::MAX - 1;
    let mut memo: Vec<u32> = vec![UNKNOWN; flows.len()];
    for i in 0..b.rows {
        let ts = b.ts[i];
        let (count, last) = (u64::from(b.count(i)), b.last_ns(i));
        // A run is kept when any of its packets is in the time window
        // (then only those count, below).
        let (ts, last, count) = ff.clip_run(ts, last, count);
        if count == 0 {
            continue;
        }
        let row = b.flow[i] as usize;
        let id = match memo.get(row).copied().unwrap_or(UNKNOWN) {
            SKIP => continue,
            UNKNOWN => {
                let (eff, origin, owner) = resolver.resolve_owner(row, ts);
                let stable = resolver.stable(row);
                if !ff.flow_ok(&eff) {
                    if stable {
                        memo[row] = SKIP;
                    }
                    continue;
                }
                let id = *local
                    .entry((row as u32, origin, owner.unwrap_or(u32::MAX)))
                    .or_insert_with(|| acc.key((eff, origin)));
                if stable {
                    memo[row] = id;
                }
                id
            }
            id => id,
        };
        if count == 1 {
            acc.add(id, ts, b.bytes[i], b.dir[i]);
        } else {
            acc.add_run(id, ts, last, count, b.bytes[i], b.dir[i]);
        }
    }
    Ok(acc.finish(fi))
}

/// Column ids of a table (for export/replay users).
pub fn all_columns(table: Table) -> ColumnSet {
    if table.has_flows() {
        event_columns(table)
    } else {
        ColumnSet::ALL
    }
}
