//! The behaviour report's per-event work, done inside the loader's parallel
//! per-chunk decode instead of over materialised events afterwards. Each
//! chunk yields a [`ChunkPart`] — message sizes per process, direction runs
//! per flow, gaps between messages per flow and direction, message bursts
//! per remote endpoint — in a form that merges exactly, chunk after chunk in
//! storage order, into the [`BehaviourData`] of the dataset: the result is
//! the same as one pass over every event in storage order would give.
//!
//! - Direction runs: a chunk keeps its first two and last two runs (which
//!   may continue across its edges) and sums the request/reply pairs of the
//!   complete runs between them for either direction of the flow's first
//!   message, which only the merge knows.
//! - Gaps: the first and last time per flow and direction carry the gap
//!   across a chunk edge; counts below, inside and above the human range,
//!   exact sums, and the in-range gaps themselves (few in a busy trace)
//!   give the median and its spread.
//! - Bursts: a chunk keeps its first time, its latest time and each burst
//!   start with the latest time before it; the merge re-checks only those
//!   starts against the latest time of the chunks before.

use std::collections::HashMap;

use polars::prelude::PlHashMap;

use crate::model::Agg;
use crate::report::behavior::{
    BULK_LARGE_MSG_BYTES, BURST_GAP_NS, HUMAN_GAP_MAX_NS, HUMAN_GAP_MIN_NS,
};

/// Request/response counts (per flow while loading, per process after).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Exchanges {
    /// Exchanges: a run from the side that spoke first, answered by a run the other way.
    pub n: u64,
    /// Exchanges whose reply is larger than the request.
    pub larger: u64,
    /// Request bytes.
    pub req_bytes: u64,
    /// Reply bytes.
    pub rep_bytes: u64,
    /// Flows with at least one exchange (per process only).
    pub flows: u64,
}

impl Exchanges {
    fn pair(&mut self, req: u64, rep: u64) {
        self.n += 1;
        self.req_bytes = self.req_bytes.saturating_add(req);
        self.rep_bytes = self.rep_bytes.saturating_add(rep);
        if rep > req {
            self.larger += 1;
        }
    }

    /// Add `o`'s counts (saturating sums of non-negative numbers: the
    /// order of addition does not matter).
    pub fn add(&mut self, o: &Exchanges) {
        self.n += o.n;
        self.larger += o.larger;
        self.req_bytes = self.req_bytes.saturating_add(o.req_bytes);
        self.rep_bytes = self.rep_bytes.saturating_add(o.rep_bytes);
        self.flows += o.flows;
    }
}

/// Direction-run state of one flow, fed in storage order.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FlowState {
    /// Direction of the flow's first message (2: none yet).
    pub first_dir: u8,
    /// Current run's direction (2: none) and bytes.
    run_dir: u8,
    run_bytes: u64,
    /// The last complete request run, waiting for its reply.
    pending: Option<u64>,
}

impl Default for FlowState {
    fn default() -> Self {
        FlowState {
            first_dir: 2,
            run_dir: 2,
            run_bytes: 0,
            pending: None,
        }
    }
}

impl FlowState {
    /// Close the current run (at a direction change or the end).
    pub fn close_run(&mut self, ex: &mut Exchanges) {
        if self.run_dir == 2 {
            return;
        }
        if self.run_dir == self.first_dir {
            self.pending = Some(self.run_bytes);
        } else if let Some(req) = self.pending.take() {
            ex.pair(req, self.run_bytes);
        }
    }

    /// One message (or a run of them) of `bytes` in direction `dir`.
    fn feed(&mut self, ex: &mut Exchanges, dir: u8, bytes: u64) {
        if self.first_dir == 2 {
            self.first_dir = dir;
        }
        if self.run_dir == dir {
            self.run_bytes = self.run_bytes.saturating_add(bytes);
        } else {
            self.close_run(ex);
            self.run_dir = dir;
            self.run_bytes = bytes;
        }
    }

    /// Apply one chunk's runs of this flow.
    fn apply(&mut self, ex: &mut Exchanges, c: &ChunkRuns, cold: &RunsCold) {
        match c.k {
            0 => {}
            1 => self.feed(ex, c.cur_dir, c.cur),
            2 => {
                self.feed(ex, cold.r1.0, cold.r1.1);
                self.feed(ex, c.cur_dir, c.cur);
            }
            _ => {
                self.feed(ex, cold.r1.0, cold.r1.1);
                self.feed(ex, 1 - cold.r1.0, cold.r2);
                // The second run is complete: close it, count the pairs
                // of complete runs after it, and resume at the last run
                // with the state the run before it left.
                self.close_run(ex);
                ex.add(&cold.inner[self.first_dir.min(1) as usize]);
                self.pending = (c.prev_dir == self.first_dir).then_some(c.prev);
                self.run_dir = c.cur_dir;
                self.run_bytes = c.cur;
            }
        }
    }
}

/// One flow's direction runs within one chunk (the fields every message
/// touches first, for cache locality).
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
struct ChunkRuns {
    /// Runs seen.
    k: u32,
    /// Direction of the current run and of the one before it.
    cur_dir: u8,
    prev_dir: u8,
    /// Bytes of the current (last) run and of the one before it.
    cur: u64,
    prev: u64,
}

/// The rest of a flow's runs within one chunk (touched at run changes).
#[derive(Clone, Copy, Debug, Default)]
struct RunsCold {
    /// The first run (once closed).
    r1: (u8, u64),
    /// The second run's bytes (once closed).
    r2: u64,
    /// Pairs of complete runs (neither the chunk's first nor its last), by
    /// the direction of the pair's first run.
    inner: [Exchanges; 2],
}

impl ChunkRuns {
    #[inline]
    fn push(&mut self, cold: &mut RunsCold, dir: u8, b: u64) {
        if self.k >= 3 {
            // From the third run on, without a branch on the direction
            // (it may change at random: a mispredicted branch each time).
            // A change pairs the last two runs; no change adds nothing.
            let change = self.cur_dir != dir;
            let m = u64::from(change).wrapping_neg();
            let e = &mut cold.inner[usize::from(self.prev_dir & 1)];
            e.n += u64::from(change);
            e.req_bytes = e.req_bytes.saturating_add(self.prev & m);
            e.rep_bytes = e.rep_bytes.saturating_add(self.cur & m);
            e.larger += u64::from(change & (self.cur > self.prev));
            self.prev = (self.cur & m) | (self.prev & !m);
            self.prev_dir = if change { self.cur_dir } else { self.prev_dir };
            self.cur = (b & m) | (self.cur.saturating_add(b) & !m);
            self.cur_dir = dir;
            self.k += u32::from(change);
            return;
        }
        if self.k > 0 {
            if self.cur_dir == dir {
                self.cur = self.cur.saturating_add(b);
                return;
            }
            match self.k {
                1 => cold.r1 = (self.cur_dir, self.cur),
                2 => cold.r2 = self.cur,
                _ => cold.inner[self.prev_dir as usize].pair(self.prev, self.cur),
            }
            self.prev_dir = self.cur_dir;
            self.prev = self.cur;
        }
        self.cur_dir = dir;
        self.cur = b;
        self.k += 1;
    }
}

/// Gaps between consecutive messages in one direction of one flow, pooled
/// per process.
#[derive(Clone, Debug, Default)]
pub(crate) struct GapStats {
    /// Gaps.
    pub n: u64,
    /// Gaps shorter than [`HUMAN_GAP_MIN_NS`].
    pub below: u64,
    /// Gaps longer than [`HUMAN_GAP_MAX_NS`].
    pub above: u64,
    /// Sum and sum of squares of every gap (exact).
    pub sum: u128,
    pub sum_sq: u128,
    /// The gaps within the human range, unordered.
    pub human: Vec<u64>,
}

impl GapStats {
    fn add(&mut self, g: u64) {
        let mut s = GapSums::default();
        s.add(g, &mut self.human);
        self.add_sums(&s);
    }

    /// Add counts and sums kept apart (the gaps within the human range
    /// already went to `human`).
    fn add_sums(&mut self, g: &GapSums) {
        self.n += g.n;
        self.below += g.below;
        self.above += g.above;
        self.sum = self.sum.saturating_add(g.sum);
        self.sum_sq = self.sum_sq.saturating_add(g.sum_sq);
    }

    fn merge(&mut self, o: GapStats) {
        self.n += o.n;
        self.below += o.below;
        self.above += o.above;
        self.sum = self.sum.saturating_add(o.sum);
        self.sum_sq = self.sum_sq.saturating_add(o.sum_sq);
        if self.human.is_empty() {
            self.human = o.human;
        } else {
            self.human.extend_from_slice(&o.human);
        }
    }

    /// The nearest-rank median gap when it lies within the human range
    /// (None otherwise, or without gaps), and the gaps' coefficient of
    /// variation.
    pub fn human_median(&mut self) -> Option<(u64, f64)> {
        if self.n == 0 {
            return None;
        }
        let r = self.n.div_ceil(2) - 1;
        if self.below > r || r >= self.n - self.above {
            return None;
        }
        let (_, m, _) = self.human.select_nth_unstable((r - self.below) as usize);
        let m = *m;
        let n = self.n as f64;
        let mean = self.sum as f64 / n;
        let var = (self.sum_sq as f64 / n - mean * mean).max(0.0);
        let cv = if mean > 0.0 { var.sqrt() / mean } else { 0.0 };
        Some((m, cv))
    }
}

/// One chunk's message sizes of one process: those below 64 KiB (nearly
/// all) in two bytes each, the rest in four. Only the median is taken of
/// them: their order does not matter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Sizes {
    /// Sizes below 64 KiB.
    pub small: Vec<u16>,
    /// Sizes of 64 KiB and more.
    pub big: Vec<u32>,
}

impl Sizes {
    /// How many sizes.
    pub fn len(&self) -> usize {
        self.small.len() + self.big.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.small.is_empty() && self.big.is_empty()
    }

    #[inline]
    fn push(&mut self, v: u32) {
        match u16::try_from(v) {
            Ok(s) => self.small.push(s),
            Err(_) => self.big.push(v),
        }
    }

    /// Every size (small ones first).
    #[cfg(test)]
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.small
            .iter()
            .map(|&v| u32::from(v))
            .chain(self.big.iter().copied())
    }
}

/// The message data of one process in one chunk.
#[derive(Debug, Default)]
struct ProcPart {
    pid: u32,
    sizes: Sizes,
    large_bytes: u64,
    gaps: GapStats,
}

/// Rows grouped and walked at a time by [`ChunkPart::run`]: their grouped
/// copy (16 bytes a row, 512 KiB) stays in a core's L2 cache, and most
/// endpoints get runs of more than one row (8192 rows, with thousands of
/// endpoints per chunk, cost 4% more).
const BLOCK: usize = 32768;

/// Messages to one remote endpoint of one process in one chunk.
#[derive(Debug)]
struct EpPart {
    /// Latest time, first message time (storage order).
    max: u64,
    first: u64,
    seen: bool,
    /// The endpoint's process (index into the chunk's processes) and its
    /// first local flow.
    proc: u32,
    flow: u32,
    /// Burst starts after the first message: (time, latest time before it).
    starts: Vec<(u64, u64)>,
    key: (u32, [u8; 16], u16),
}

/// One local flow of a chunk: its runs and, per direction, whether a
/// message was seen, its last and its first time; its totals and its bytes
/// in the current interval.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
struct LocalFlow {
    runs: ChunkRuns,
    /// Local endpoint (u32::MAX: not profiled, pid 0).
    ep: u32,
    last: [u64; 2],
    seen: [bool; 2],
    first: [u64; 2],
    tot: FlowTotals,
    cur: FlowInterval,
    cold: RunsCold,
}

/// A local flow's totals in a chunk (what [`Agg`] holds), indexed by
/// direction.
#[derive(Clone, Copy, Debug)]
struct FlowTotals {
    bytes: [u64; 2],
    n: [u64; 2],
    first: u64,
    last: u64,
}

impl Default for FlowTotals {
    fn default() -> Self {
        FlowTotals {
            bytes: [0; 2],
            n: [0; 2],
            first: u64::MAX,
            last: 0,
        }
    }
}

impl FlowTotals {
    #[inline(always)]
    fn add(&mut self, d: usize, ts: u64, b: u64) {
        self.bytes[d] = self.bytes[d].saturating_add(b);
        self.n[d] = self.n[d].saturating_add(1);
        self.first = self.first.min(ts);
        self.last = self.last.max(ts);
    }

    fn agg(&self) -> Agg {
        Agg {
            tx_bytes: self.bytes[0],
            rx_bytes: self.bytes[1],
            tx_n: self.n[0],
            rx_n: self.n[1],
            first: self.first,
            last: self.last,
        }
    }
}

/// A local flow's bytes in its current interval `[lo, hi)` (number `b`),
/// indexed by direction; `lo` is u64::MAX before its first message.
#[derive(Clone, Copy, Debug)]
struct FlowInterval {
    lo: u64,
    hi: u64,
    b: u64,
    bytes: [u64; 2],
}

impl Default for FlowInterval {
    fn default() -> Self {
        FlowInterval {
            lo: u64::MAX,
            hi: 0,
            b: 0,
            bytes: [0; 2],
        }
    }
}

/// One message of a chunk, in the endpoint-grouped copy [`ChunkPart::run`]
/// walks: time, bytes, and local flow id with the direction in its low bit.
#[derive(Clone, Copy, Debug, Default)]
struct Msg {
    ts: u64,
    bytes: u32,
    flow_dir: u32,
}

/// Gap sums of one endpoint's walk, kept in registers and added to its
/// process's [`GapStats`] once at the end.
#[derive(Default)]
struct GapSums {
    n: u64,
    below: u64,
    above: u64,
    sum: u128,
    sum_sq: u128,
}

impl GapSums {
    /// Count one gap; one within the human range also goes to `human`.
    #[inline]
    fn add(&mut self, gap: u64, human: &mut Vec<u64>) {
        self.n += 1;
        if gap < HUMAN_GAP_MIN_NS {
            self.below += 1;
        } else if gap > HUMAN_GAP_MAX_NS {
            self.above += 1;
        } else {
            human.push(gap);
        }
        let w = u128::from(gap);
        self.sum = self.sum.saturating_add(w);
        self.sum_sq = self.sum_sq.saturating_add(w * w);
    }
}

/// Bytes of a local flow in one interval: (interval number, local flow,
/// bytes sent, bytes received).
pub(crate) type LocalBucket = (u64, u32, u64, u64);

/// The behaviour partials of one chunk, on its local flow ids.
#[derive(Debug, Default)]
pub(crate) struct ChunkPart {
    flows: Vec<LocalFlow>,
    /// Per local flow, its endpoint (the same as in `flows`, packed for
    /// the grouping passes).
    flow_ep: Vec<u32>,
    procs: Vec<ProcPart>,
    eps: Vec<EpPart>,
    proc_index: PlHashMap<u32, u32>,
    ep_index: PlHashMap<(u32, [u8; 16], u16), u32>,
    /// Interval length of the buckets (nanoseconds, at least 1).
    interval: u64,
    /// Bytes per (interval, local flow), as the loader's buckets.
    buckets: Vec<LocalBucket>,
}

impl ChunkPart {
    /// Register the next local flow (ids in order from 0).
    pub fn flow(&mut self, f: &snoop_format::Flow) {
        let flow_id = self.flows.len() as u32;
        let e = if f.pid == 0 {
            u32::MAX
        } else {
            let procs = &mut self.procs;
            let p = *self.proc_index.entry(f.pid).or_insert_with(|| {
                procs.push(ProcPart {
                    pid: f.pid,
                    ..ProcPart::default()
                });
                (procs.len() - 1) as u32
            });
            let key = (f.pid, f.raddr, f.rport);
            let eps = &mut self.eps;
            *self.ep_index.entry(key).or_insert_with(|| {
                eps.push(EpPart {
                    key,
                    flow: flow_id,
                    first: 0,
                    max: 0,
                    seen: false,
                    proc: p,
                    starts: Vec::new(),
                });
                (eps.len() - 1) as u32
            })
        };
        self.flows.push(LocalFlow {
            ep: e,
            ..LocalFlow::default()
        });
        self.flow_ep.push(e);
    }

    /// An empty chunk part whose buckets are intervals of `interval_ns`.
    pub fn new(interval_ns: u64) -> ChunkPart {
        ChunkPart {
            interval: interval_ns.max(1),
            ..ChunkPart::default()
        }
    }

    /// The chunk's messages, in storage order: row `i` is a message of
    /// local flow `ids[i]` (u32::MAX: skipped, e.g. outside the time
    /// window) at `ts[i]` of `bytes[i]` in direction `dir[i]`;
    /// `flow_rows[l]` is the number of rows of local flow `l`.
    ///
    /// The rows are grouped, a block at a time, by remote endpoint (a
    /// stable counting sort: each endpoint's rows keep their storage
    /// order), then each endpoint's rows are walked in one run, so its
    /// flows', its process's and its own state stay in the cache instead of
    /// being looked up afresh for every message (a chunk's messages visit
    /// thousands of flows in random order). The same walk sums each flow's
    /// totals and its bytes per interval ([`ChunkPart::totals`]), so each
    /// row is read once; the rows of flows that are not profiled (pid 0)
    /// form one more group, walked for those alone.
    pub fn run(&mut self, ids: &[u32], ts: &[u64], bytes: &[u32], dir: &[u8], flow_rows: &[u32]) {
        self.run_in_blocks(ids, ts, bytes, dir, flow_rows, BLOCK);
    }

    /// [`ChunkPart::run`] with blocks of `block` rows.
    fn run_in_blocks(
        &mut self,
        ids: &[u32],
        ts: &[u64],
        bytes: &[u32],
        dir: &[u8],
        flow_rows: &[u32],
        block: usize,
    ) {
        let block = block.max(1);
        let n = ids.len().min(ts.len()).min(bytes.len()).min(dir.len());
        let ne = self.eps.len();
        // Groups: the endpoints, then the flows not profiled (ne), then
        // the skipped rows (ne + 1, not walked).
        let (unprofiled, skipped) = (ne as u32, ne as u32 + 1);
        let group = |flow_ep: &[u32], id: u32| {
            flow_ep
                .get(id as usize)
                .map_or(skipped, |&e| e.min(unprofiled))
        };
        let mut start = vec![0u32; ne + 3];
        // Rows per group over the whole chunk, from its flows' counts.
        for (l, &c) in flow_rows.iter().enumerate() {
            let g = group(&self.flow_ep, l as u32);
            start[g as usize + 1] += c;
        }
        for e in 1..start.len() {
            start[e] += start[e - 1];
        }
        // Room for each process's sizes.
        for (p, cnt) in self.proc_counts(&start) {
            self.procs[p].sizes.small.reserve_exact(cnt);
        }
        // A block at a time, so the grouped copy stays in the cache.
        let mut msgs = vec![Msg::default(); n.min(block)];
        let mut at = vec![0u32; ne + 3];
        for lo in (0..n).step_by(block) {
            let hi = (lo + block).min(n);
            if (lo, hi) != (0, n) {
                start.fill(0);
                for &id in &ids[lo..hi] {
                    start[group(&self.flow_ep, id) as usize + 1] += 1;
                }
                // Offsets per group: group g's rows are start[g]..start[g + 1].
                for e in 1..start.len() {
                    start[e] += start[e - 1];
                }
            }
            at.copy_from_slice(&start);
            for i in lo..hi {
                let id = ids[i];
                let slot = &mut at[group(&self.flow_ep, id) as usize];
                msgs[*slot as usize] = Msg {
                    ts: ts[i],
                    bytes: bytes[i],
                    flow_dir: (id << 1) | u32::from(dir[i].min(1)),
                };
                *slot += 1;
            }
            for e in 0..ne {
                let (s0, s1) = (start[e] as usize, start[e + 1] as usize);
                if s1 > s0 {
                    self.walk(e, &msgs[s0..s1]);
                }
            }
            let (s0, s1) = (start[ne] as usize, start[ne + 1] as usize);
            self.walk_unprofiled(&msgs[s0..s1]);
        }
    }

    /// Messages per process (index, count) from the group offsets.
    fn proc_counts(&self, start: &[u32]) -> Vec<(usize, usize)> {
        let mut c = vec![0usize; self.procs.len()];
        for (e, ep) in self.eps.iter().enumerate() {
            c[ep.proc as usize] += (start[e + 1] - start[e]) as usize;
        }
        c.into_iter().enumerate().filter(|&(_, n)| n > 0).collect()
    }

    /// One endpoint's messages, in storage order.
    fn walk(&mut self, e: usize, rows: &[Msg]) {
        let ep = &mut self.eps[e];
        let pp = &mut self.procs[ep.proc as usize];
        let flows = &mut self.flows;
        let (interval, buckets) = (self.interval, &mut self.buckets);
        let mut large = 0u64;
        let mut g = GapSums::default();
        let (mut seen, mut first, mut max) = (ep.seen, ep.first, ep.max);
        for m in rows {
            pp.sizes.push(m.bytes);
        }
        for m in rows {
            let (ts, b) = (m.ts, u64::from(m.bytes));
            // Without a branch: sizes either side of the bound mix at random.
            large = large.saturating_add(b & u64::from(b >= BULK_LARGE_MSG_BYTES).wrapping_neg());
            let d = (m.flow_dir & 1) as usize;
            let l = m.flow_dir >> 1;
            let f = &mut flows[l as usize];
            f.tot.add(d, ts, b);
            f.cur.add(buckets, interval, l, d, ts, b);
            f.runs.push(&mut f.cold, d as u8, b);
            if f.seen[d] {
                let last = f.last[d];
                if ts >= last {
                    g.add(ts - last, &mut pp.gaps.human);
                }
            } else {
                f.seen[d] = true;
                f.first[d] = ts;
            }
            f.last[d] = ts;
            if !seen {
                seen = true;
                first = ts;
                max = ts;
            } else {
                if ts.saturating_sub(max) > BURST_GAP_NS {
                    ep.starts.push((ts, max));
                }
                max = max.max(ts);
            }
        }
        (ep.seen, ep.first, ep.max) = (seen, first, max);
        pp.large_bytes = pp.large_bytes.saturating_add(large);
        pp.gaps.add_sums(&g);
    }

    /// Messages of flows that are not profiled: their totals and buckets only.
    fn walk_unprofiled(&mut self, rows: &[Msg]) {
        let (interval, buckets) = (self.interval, &mut self.buckets);
        for m in rows {
            let (ts, b) = (m.ts, u64::from(m.bytes));
            let d = (m.flow_dir & 1) as usize;
            let l = m.flow_dir >> 1;
            let f = &mut self.flows[l as usize];
            f.tot.add(d, ts, b);
            f.cur.add(buckets, interval, l, d, ts, b);
        }
    }

    /// Per local flow its totals, and the bytes per (interval number,
    /// local flow, sent, received): the same sums as the loader's
    /// row-by-row [`Agg`] and buckets (the buckets in another order, and
    /// an interval a flow leaves and comes back to may have two entries,
    /// which every reader sums).
    pub fn totals(&mut self) -> (Vec<Agg>, Vec<LocalBucket>) {
        let mut buckets = std::mem::take(&mut self.buckets);
        for (l, f) in self.flows.iter().enumerate() {
            let c = &f.cur;
            if c.hi != 0 {
                buckets.push((c.b, l as u32, c.bytes[0], c.bytes[1]));
            }
        }
        (self.flows.iter().map(|f| f.tot.agg()).collect(), buckets)
    }
}

impl FlowInterval {
    /// Add `b` bytes in direction `d` at `ts` to local flow `l`; a message
    /// in another interval first moves the current one's bytes to
    /// `buckets`.
    #[inline(always)]
    fn add(
        &mut self,
        buckets: &mut Vec<LocalBucket>,
        interval: u64,
        l: u32,
        d: usize,
        ts: u64,
        b: u64,
    ) {
        if ts < self.lo || ts >= self.hi {
            if self.hi != 0 {
                buckets.push((self.b, l, self.bytes[0], self.bytes[1]));
            }
            self.b = ts / interval;
            self.lo = self.b * interval;
            self.hi = self.lo.saturating_add(interval);
            self.bytes = [0; 2];
        }
        self.bytes[d] = self.bytes[d].saturating_add(b);
    }
}

/// A remote endpoint of a process: (file, pid, remote address, remote port).
pub(crate) type EpKey = (u16, u32, [u8; 16], u16);

/// Per global flow: its run state, its exchanges and its last message
/// time per direction.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct FlowPart {
    /// Run state (its `close_run` is still due at the end).
    pub state: FlowState,
    /// Exchanges completed so far.
    pub ex: Exchanges,
    last: [Option<u64>; 2],
}

/// Per process (file, pid): its message sizes, bytes in large messages and gaps.
#[derive(Clone, Debug, Default)]
pub(crate) struct ProcData {
    /// Message sizes, one list per chunk.
    pub sizes: Vec<Sizes>,
    /// Bytes in messages of at least [`BULK_LARGE_MSG_BYTES`].
    pub large_bytes: u64,
    /// Gaps between messages in one direction of one flow.
    pub gaps: GapStats,
}

impl ProcData {
    /// Nearest-rank median message size (None without messages), found
    /// in the per-chunk lists without copying them together: one pass
    /// counts the sizes per bucket of [`SIZE_BUCKET`] sizes (an array in
    /// L1), which gives the median's bucket and its rank there; a second
    /// counts the sizes of that bucket exactly. Sizes of 1 MiB and more
    /// share the last bucket and, when the median is among them, are
    /// gathered and selected.
    pub fn median_size(&self) -> Option<u64> {
        let n: u64 = self.sizes.iter().map(|s| s.len() as u64).sum();
        if n == 0 {
            return None;
        }
        let r = n.div_ceil(2) - 1;
        const BUCKETS: usize = (1 << 20) / SIZE_BUCKET;
        let bucket = |v: u32| (v as usize / SIZE_BUCKET).min(BUCKETS);
        // Four histograms, one per size in a group of four: most sizes fall
        // in a few buckets, and each count would otherwise wait for the
        // one before it.
        let mut h4 = vec![[0u64; 4]; BUCKETS + 1];
        for s in &self.sizes {
            let mut quads = s.small.chunks_exact(4);
            for q in &mut quads {
                for (j, &v) in q.iter().enumerate() {
                    h4[usize::from(v) / SIZE_BUCKET][j] += 1;
                }
            }
            for &v in quads.remainder() {
                h4[usize::from(v) / SIZE_BUCKET][0] += 1;
            }
            for &v in &s.big {
                h4[bucket(v)][0] += 1;
            }
        }
        let h: Vec<u64> = h4.iter().map(|c| c.iter().sum()).collect();
        let (mut b, mut below) = (0, 0u64);
        while below + h[b] <= r {
            below += h[b];
            b += 1;
        }
        let k = r - below;
        if b == BUCKETS {
            let mut big: Vec<u32> = self
                .sizes
                .iter()
                .flat_map(|s| s.big.iter().copied())
                .filter(|&v| bucket(v) == BUCKETS)
                .collect();
            let (_, m, _) = big.select_nth_unstable(k as usize);
            return Some(u64::from(*m));
        }
        // Without a branch: the median's bucket may hold half the sizes.
        let mut c = [0u64; SIZE_BUCKET];
        for s in &self.sizes {
            for &v in &s.small {
                let v = usize::from(v);
                c[v % SIZE_BUCKET] += u64::from(v / SIZE_BUCKET == b);
            }
            for &v in &s.big {
                c[v as usize % SIZE_BUCKET] += u64::from(bucket(v) == b);
            }
        }
        let mut seen = 0;
        for (lo, &cnt) in c.iter().enumerate() {
            seen += cnt;
            if seen > k {
                return Some((b * SIZE_BUCKET + lo) as u64);
            }
        }
        None
    }
}

/// Sizes per bucket of the median's first pass (see
/// [`ProcData::median_size`]).
const SIZE_BUCKET: usize = 512;

/// Nearest-rank median of `v` (reordered), None when empty: what the
/// tests compare the report's medians with.
#[cfg(test)]
pub(crate) fn median<T: Copy + Ord + Into<u64>>(v: &mut [T]) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    let r = v.len().div_ceil(2) - 1;
    let (_, m, _) = v.select_nth_unstable(r);
    Some((*m).into())
}

/// The merged behaviour partials of a dataset (the loader fills it when
/// the plan asks for `behaviour`).
#[derive(Debug, Default)]
pub struct BehaviourData {
    /// Per global flow (message flows; others default).
    pub(crate) flows: Vec<FlowPart>,
    /// Per (file, pid).
    pub(crate) procs: HashMap<(u16, u32), ProcData>,
    /// Per remote endpoint: latest message time and burst start times.
    bursts: Vec<(u64, Vec<u64>)>,
    /// Index of `bursts`.
    ep_index: HashMap<EpKey, u32>,
    /// Per global flow, its endpoint in `bursts` (u32::MAX: not known
    /// yet), so a chunk's endpoints are found without hashing their keys.
    flow_ep: Vec<u32>,
}

impl BehaviourData {
    /// The burst start times of a remote endpoint, in storage order (None
    /// without messages).
    pub(crate) fn bursts(&self, k: &EpKey) -> Option<&[u64]> {
        let &i = self.ep_index.get(k)?;
        Some(&self.bursts[i as usize].1)
    }

    /// Merge the next chunk (storage order) of file `file`; `remap` maps
    /// its local flow ids to global ones.
    pub(crate) fn merge(&mut self, file: u16, remap: &[u32], c: ChunkPart) {
        let ChunkPart {
            flows,
            mut procs,
            eps,
            ..
        } = c;
        if let Some(&max) = remap.iter().max() {
            if self.flows.len() <= max as usize {
                self.flows.resize(max as usize + 1, FlowPart::default());
                self.flow_ep.resize(max as usize + 1, u32::MAX);
            }
        }
        for (l, f) in flows.iter().enumerate() {
            if f.ep == u32::MAX || f.runs.k == 0 {
                continue;
            }
            let gaps = &mut procs[eps[f.ep as usize].proc as usize].gaps;
            let g = &mut self.flows[remap[l] as usize];
            g.state.apply(&mut g.ex, &f.runs, &f.cold);
            for d in 0..2 {
                if !f.seen[d] {
                    continue;
                }
                if let Some(l0) = g.last[d] {
                    if f.first[d] >= l0 {
                        gaps.add(f.first[d] - l0);
                    }
                }
                g.last[d] = Some(f.last[d]);
            }
        }
        for p in procs {
            let d = self.procs.entry((file, p.pid)).or_default();
            if !p.sizes.is_empty() {
                d.sizes.push(p.sizes);
            }
            d.large_bytes = d.large_bytes.saturating_add(p.large_bytes);
            d.gaps.merge(p.gaps);
        }
        for e in eps {
            if !e.seen {
                continue;
            }
            let gf = remap[e.flow as usize] as usize;
            let gi = match self.flow_ep[gf] {
                u32::MAX => {
                    let (pid, raddr, rport) = e.key;
                    let bursts = &mut self.bursts;
                    let i = *self
                        .ep_index
                        .entry((file, pid, raddr, rport))
                        .or_insert_with(|| {
                            bursts.push((0, Vec::new()));
                            (bursts.len() - 1) as u32
                        });
                    self.flow_ep[gf] = i;
                    i
                }
                i => i,
            };
            let (max, times) = &mut self.bursts[gi as usize];
            let before = *max;
            if times.is_empty() || e.first.saturating_sub(before) > BURST_GAP_NS {
                times.push(e.first);
            }
            for (ts, prev) in e.starts {
                if ts.saturating_sub(before.max(prev)) > BURST_GAP_NS {
                    times.push(ts);
                }
            }
            *max = before.max(e.max);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use snoop_format::synth::Rng;
    use std::collections::BTreeMap;

    fn flow(pid: u32, port: u16, raddr: u8) -> snoop_format::Flow {
        let mut a = [0u8; 16];
        a[0] = raddr;
        snoop_format::Flow {
            pid,
            lport: port,
            raddr: a,
            rport: 443,
            proto: 6,
            ..Default::default()
        }
    }

    /// The facts of one pass over every event in storage order, as the
    /// behaviour report made them before the loader did it per chunk.
    #[derive(Debug, PartialEq)]
    struct Straight {
        first_dir: Vec<u8>,
        ex: Vec<Exchanges>,
        sizes: Vec<Vec<u32>>,
        large: Vec<u64>,
        gaps: Vec<Vec<u64>>,
        bursts: Vec<Vec<u64>>,
    }

    fn straight(flows: &[snoop_format::Flow], ev: &[(usize, u64, u32, u8)]) -> Straight {
        let pids: Vec<u32> = {
            let mut p: Vec<u32> = flows.iter().map(|f| f.pid).filter(|&p| p != 0).collect();
            p.sort_unstable();
            p.dedup();
            p
        };
        let pi = |f: &snoop_format::Flow| pids.iter().position(|&p| p == f.pid).unwrap();
        let eps: Vec<(u32, [u8; 16])> = {
            let mut e: Vec<_> = flows
                .iter()
                .filter(|f| f.pid != 0)
                .map(|f| (f.pid, f.raddr))
                .collect();
            e.sort_unstable();
            e.dedup();
            e
        };
        let mut fs = vec![FlowState::default(); flows.len()];
        let mut ex = vec![Exchanges::default(); flows.len()];
        let mut sizes = vec![Vec::new(); pids.len()];
        let mut large = vec![0u64; pids.len()];
        let mut gaps = vec![Vec::new(); pids.len()];
        let mut last: HashMap<(usize, u8), u64> = HashMap::new();
        let mut bursts: Vec<(u64, Vec<u64>)> = vec![(0, Vec::new()); eps.len()];
        for &(f, ts, bytes, dir) in ev {
            // Flows of pid 0 are not profiled.
            if flows[f].pid == 0 {
                continue;
            }
            let p = pi(&flows[f]);
            let b = u64::from(bytes);
            sizes[p].push(bytes);
            if b >= BULK_LARGE_MSG_BYTES {
                large[p] += b;
            }
            fs[f].feed(&mut ex[f], dir, b);
            if let Some(l) = last.insert((f, dir), ts) {
                if ts >= l {
                    gaps[p].push(ts - l);
                }
            }
            let e = eps
                .iter()
                .position(|&k| k == (flows[f].pid, flows[f].raddr))
                .unwrap();
            let bs = &mut bursts[e];
            if bs.1.is_empty() || ts.saturating_sub(bs.0) > BURST_GAP_NS {
                bs.1.push(ts);
            }
            bs.0 = bs.0.max(ts);
        }
        for (f, s) in fs.iter_mut().enumerate() {
            s.close_run(&mut ex[f]);
        }
        for s in sizes.iter_mut() {
            s.sort_unstable();
        }
        Straight {
            first_dir: fs.iter().map(|s| s.first_dir).collect(),
            ex,
            sizes,
            large,
            gaps,
            bursts: bursts.into_iter().map(|b| b.1).collect(),
        }
    }

    /// Bytes sent and received per (interval number, local flow).
    type Buckets = BTreeMap<(u64, u32), (u64, u64)>;

    /// Per local flow its totals, and the bytes per (interval number,
    /// local flow), summed row by row as the loader did before the walk
    /// took them over.
    fn row_by_row_totals(
        ids: &[u32],
        ts: &[u64],
        bytes: &[u32],
        dir: &[u8],
        flows: usize,
        interval: u64,
    ) -> (Vec<Agg>, Buckets) {
        let mut aggs = vec![Agg::default(); flows];
        let mut buckets = Buckets::new();
        for i in 0..ids.len() {
            if ids[i] == u32::MAX {
                continue;
            }
            aggs[ids[i] as usize].add(ts[i], bytes[i], dir[i]);
            let e = buckets.entry((ts[i] / interval, ids[i])).or_default();
            if dir[i] == 0 {
                e.0 += u64::from(bytes[i]);
            } else {
                e.1 += u64::from(bytes[i]);
            }
        }
        (aggs, buckets)
    }

    /// The same facts through per-chunk partials cut at `cuts`, each
    /// chunk numbering its flows in its own order.
    fn chunked(
        flows: &[snoop_format::Flow],
        ev: &[(usize, u64, u32, u8)],
        cuts: &[usize],
        rng: &mut Rng,
    ) -> (Straight, Vec<GapStats>) {
        let mut bd = BehaviourData::default();
        let mut start = 0;
        for &end in cuts.iter().chain(std::iter::once(&ev.len())) {
            let part_ev = &ev[start..end.max(start)];
            start = end.max(start);
            let mut order: Vec<usize> = (0..flows.len()).collect();
            for i in (1..order.len()).rev() {
                order.swap(i, rng.below(i as u64 + 1) as usize);
            }
            let mut c = ChunkPart::new(1);
            let mut local = vec![0u32; flows.len()];
            for (l, &g) in order.iter().enumerate() {
                c.flow(&flows[g]);
                local[g] = l as u32;
            }
            // Rows the decoder skips (outside the time window) are given
            // as u32::MAX: some extra ones go in between.
            let (mut ids, mut tss, mut sizes, mut dirs) = (vec![], vec![], vec![], vec![]);
            for &(f, ts, bytes, dir) in part_ev {
                if rng.below(8) == 0 {
                    ids.push(u32::MAX);
                    tss.push(rng.below(1 << 40));
                    sizes.push(70000);
                    dirs.push(0);
                }
                ids.push(local[f]);
                tss.push(ts);
                sizes.push(bytes);
                dirs.push(dir);
            }
            // Blocks of one row up to more than the chunk.
            let block = 1 + rng.below(2 + ids.len() as u64) as usize;
            let mut flow_rows = vec![0u32; flows.len()];
            for &id in &ids {
                if id != u32::MAX {
                    flow_rows[id as usize] += 1;
                }
            }
            let interval = [1, 999, 1_000_000, 1_000_000_000, 7_000_000_000][rng.below(5) as usize];
            let mut c = ChunkPart { interval, ..c };
            c.run_in_blocks(&ids, &tss, &sizes, &dirs, &flow_rows, block);
            // The totals and buckets folded into the walk are the sums of
            // one pass over the rows.
            let (aggs, buckets) = c.totals();
            let (want_aggs, want_buckets) =
                row_by_row_totals(&ids, &tss, &sizes, &dirs, flows.len(), interval);
            assert_eq!(aggs, want_aggs, "interval {interval}, block {block}");
            let mut got_buckets = Buckets::new();
            for (b, l, tx, rx) in buckets {
                let e = got_buckets.entry((b, l)).or_default();
                e.0 += tx;
                e.1 += rx;
            }
            assert_eq!(
                got_buckets, want_buckets,
                "interval {interval}, block {block}"
            );
            let remap: Vec<u32> = order.iter().map(|&g| g as u32).collect();
            bd.merge(0, &remap, c);
        }
        let mut pids: Vec<u32> = flows.iter().map(|f| f.pid).filter(|&p| p != 0).collect();
        pids.sort_unstable();
        pids.dedup();
        let mut eps: Vec<(u32, [u8; 16])> = flows
            .iter()
            .filter(|f| f.pid != 0)
            .map(|f| (f.pid, f.raddr))
            .collect();
        eps.sort_unstable();
        eps.dedup();
        let mut ex = Vec::new();
        let mut first_dir = Vec::new();
        for g in 0..flows.len() {
            let mut f = bd.flows.get(g).copied().unwrap_or_default();
            f.state.close_run(&mut f.ex);
            ex.push(f.ex);
            first_dir.push(f.state.first_dir);
        }
        let proc = |p: u32| bd.procs.get(&(0, p)).cloned().unwrap_or_default();
        let sizes = pids
            .iter()
            .map(|&p| {
                let mut v: Vec<u32> = proc(p).sizes.iter().flat_map(Sizes::iter).collect();
                v.sort_unstable();
                v
            })
            .collect();
        let straight = Straight {
            first_dir,
            ex,
            sizes,
            large: pids.iter().map(|&p| proc(p).large_bytes).collect(),
            gaps: pids.iter().map(|_| Vec::new()).collect(),
            bursts: eps
                .iter()
                .map(|&(p, a)| {
                    bd.bursts(&(0, p, a, 443))
                        .map(<[u64]>::to_vec)
                        .unwrap_or_default()
                })
                .collect(),
        };
        (straight, pids.iter().map(|&p| proc(p).gaps).collect())
    }

    #[test]
    fn median_size_is_the_nearest_rank_median_of_every_chunk() {
        let mut rng = Rng::new(0x5851_f42d_4c95_7f2d);
        for round in 0..500 {
            // Sizes from a few values (ties), across bucket edges and the
            // two- and four-byte lists' edge, and some of 1 MiB and more
            // (the last bucket), in 1-6 lists.
            let pick = |rng: &mut Rng| -> u32 {
                match rng.below(6) {
                    0 => rng.below(4) as u32,
                    1 => [511, 512, 513, 1024, 65535, 65536, 65537][rng.below(7) as usize],
                    2 => (1 << 20) - 1 + rng.below(3) as u32,
                    3 => (1 << 20) + rng.below(1 << 22) as u32,
                    4 => u32::MAX - rng.below(2) as u32,
                    _ => rng.below(70_000) as u32,
                }
            };
            let lists = 1 + rng.below(6) as usize;
            let sizes: Vec<Vec<u32>> = (0..lists)
                .map(|_| (0..rng.below(40)).map(|_| pick(&mut rng)).collect())
                .collect();
            let d = ProcData {
                sizes: sizes
                    .iter()
                    .map(|l| {
                        let mut s = Sizes::default();
                        for &v in l {
                            s.push(v);
                        }
                        s
                    })
                    .collect(),
                ..ProcData::default()
            };
            let mut all = sizes.concat();
            all.sort_unstable();
            let want = (!all.is_empty()).then(|| u64::from(all[all.len().div_ceil(2) - 1]));
            assert_eq!(d.median_size(), want, "round {round}: {sizes:?}");
        }
    }

    #[test]
    fn chunk_partials_merge_to_the_one_pass_facts() {
        let mut rng = Rng::new(0x2545_f491_4f6c_dd1d);
        let flows = [
            flow(10, 1, 1),
            flow(10, 2, 1),
            flow(10, 3, 2),
            flow(20, 4, 3),
            flow(0, 5, 3),
        ];
        for round in 0..300 {
            // Times mostly rising by up to 2 s (bursts, human gaps and
            // floods), sometimes stepping back; runs of one direction.
            let n = 1 + rng.below(400) as usize;
            let mut ts = 5_000_000_000u64;
            let mut dir = 0u8;
            let ev: Vec<(usize, u64, u32, u8)> = (0..n)
                .map(|_| {
                    ts = match rng.below(10) {
                        0 => ts.saturating_sub(rng.below(3_000_000_000)),
                        1..=3 => ts + rng.below(2_000_000_000),
                        _ => ts + rng.below(60_000_000),
                    };
                    if rng.below(3) == 0 {
                        dir = 1 - dir;
                    }
                    let f = rng.below(if round % 2 == 0 { 2 } else { 5 }) as usize;
                    let bytes = [1, 100, 255, 256, 4000, 8192, 70000][rng.below(7) as usize];
                    (f, ts, bytes, dir)
                })
                .collect();
            let mut cuts: Vec<usize> = (0..rng.below(12))
                .map(|_| rng.below(n as u64 + 1) as usize)
                .collect();
            cuts.sort_unstable();
            let want = straight(&flows, &ev);
            let (mut got, gaps) = chunked(&flows, &ev, &cuts, &mut rng);
            // Compare gaps through what the report reads: counts, sums,
            // the human-range gaps and the median with its spread.
            for (i, g) in gaps.into_iter().enumerate() {
                let want_g = want.gaps[i].clone();
                assert_eq!(g.n, want_g.len() as u64, "round {round}");
                let below = want_g.iter().filter(|&&x| x < HUMAN_GAP_MIN_NS).count() as u64;
                let above = want_g.iter().filter(|&&x| x > HUMAN_GAP_MAX_NS).count() as u64;
                assert_eq!((g.below, g.above), (below, above), "round {round}");
                let sum: u128 = want_g.iter().map(|&x| u128::from(x)).sum();
                let sq: u128 = want_g.iter().map(|&x| u128::from(x) * u128::from(x)).sum();
                assert_eq!((g.sum, g.sum_sq), (sum, sq), "round {round}");
                let mut h = g.human.clone();
                h.sort_unstable();
                let mut wh: Vec<u64> = want_g
                    .iter()
                    .copied()
                    .filter(|x| (HUMAN_GAP_MIN_NS..=HUMAN_GAP_MAX_NS).contains(x))
                    .collect();
                wh.sort_unstable();
                assert_eq!(h, wh, "round {round}");
                let mut m = want_g.clone();
                let med =
                    median(&mut m).filter(|x| (HUMAN_GAP_MIN_NS..=HUMAN_GAP_MAX_NS).contains(x));
                assert_eq!(g.clone().human_median().map(|x| x.0), med, "round {round}");
                got.gaps[i] = want.gaps[i].clone();
            }
            assert_eq!(got, want, "round {round}, cuts {cuts:?}");
        }
    }
}
