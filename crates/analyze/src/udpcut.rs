//! UDP "connections" (a process's messages with one peer 5-tuple, cut
//! after an idle gap or at the process's exit), cut while the loader decodes
//! message chunks in parallel, instead of after loading, on one thread, over
//! every UDP event gathered into per-tuple lists. The conns and behaviour
//! reports read the result through [`UdpCuts`].
//!
//! Each chunk cuts each tuple's messages (in time order) by the two rules —
//! a gap longer than [`UDP_IDLE_NS`], or an exit of the process at or after
//! one message and before the next — into spans: first and last time and
//! the bytes either way. The merge is exact: no cut of the tuple's whole
//! time-ordered message list falls inside a chunk's span (other chunks'
//! messages inside it only split its gaps, into shorter ones that still
//! hold no exit), so the tuple's connections are unions of spans. Sorted by
//! start, a span that starts at or before the latest end so far belongs to
//! the current connection; one that starts after it is cut from it or not
//! by the same two rules, applied to the gap between them.

use std::collections::HashMap;

use snoop_format::{Flow, ProcessKind};

use crate::model::ProcEvent;

/// A UDP flow idle longer than this starts a new "connection".
pub const UDP_IDLE_NS: u64 = 30_000_000_000;

/// Process exit times per (file, pid), in time order.
pub(crate) type Exits = HashMap<(u16, u32), Vec<u64>>;

/// The process exits among `procs` (a thread's exit does not end its
/// process), per (file, pid) in time order.
pub(crate) fn process_exits(procs: &[ProcEvent]) -> Exits {
    let mut out: Exits = HashMap::new();
    for e in procs {
        let r = &e.row;
        if r.kind == ProcessKind::Exit && (r.tid == r.pid || r.tid == 0) {
            out.entry((e.file, r.pid)).or_default().push(r.ts_ns);
        }
    }
    for v in out.values_mut() {
        v.sort_unstable();
    }
    out
}

/// A UDP message flow's peer tuple within one file: (pid, local address,
/// local port, remote address, remote port).
pub(crate) type Tuple = (u32, [u8; 16], u16, [u8; 16], u16);

/// The tuple of a UDP flow (None for any other protocol).
fn tuple_of(f: &Flow) -> Option<Tuple> {
    (f.proto == 17).then_some((f.pid, f.laddr, f.lport, f.raddr, f.rport))
}

/// Messages of one tuple from `start` to `end` (times) with no cut
/// between them, and their bytes sent and received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    /// First message time.
    pub start: u64,
    /// Last message time.
    pub end: u64,
    /// Bytes sent.
    pub tx: u64,
    /// Bytes received.
    pub rx: u64,
}

/// Whether the cut rules separate a message at `last` from the next one
/// at `ts` (`ts >= last`): a gap longer than [`UDP_IDLE_NS`], or an exit
/// (`exits`, in time order) at or after `last` and before `ts`.
fn cut_between(exits: &[u64], last: u64, ts: u64) -> bool {
    ts - last > UDP_IDLE_NS
        || exits
            .get(exits.partition_point(|&x| x < last))
            .is_some_and(|&x| x < ts)
}

/// The (row, local flow) pairs of a chunk's UDP rows, noted while its
/// totals are summed: every row is written to a small buffer and only a
/// UDP row advances it, so there is no branch on whether a row is UDP
/// (UDP and TCP rows mix at random: a mispredicted branch each time).
pub(crate) struct UdpRows {
    buf: [(u32, u32); 64],
    k: usize,
    out: Vec<(u32, u32)>,
}

impl UdpRows {
    /// Nothing noted yet.
    pub fn new() -> UdpRows {
        UdpRows {
            buf: [(0, 0); 64],
            k: 0,
            out: Vec::new(),
        }
    }

    /// Note row `i` of local flow `id` when `udp`.
    #[inline(always)]
    pub fn note(&mut self, udp: bool, i: u32, id: u32) {
        self.buf[self.k % 64] = (i, id);
        self.k += usize::from(udp);
        if self.k == 64 {
            self.out.extend_from_slice(&self.buf);
            self.k = 0;
        }
    }

    /// The noted pairs, in the order noted.
    pub fn finish(mut self) -> Vec<(u32, u32)> {
        self.out.extend_from_slice(&self.buf[..self.k]);
        self.out
    }
}

/// One message in a chunk's tuple-grouped copy: time, bytes, direction.
#[derive(Clone, Copy, Debug, Default)]
struct Row {
    ts: u64,
    bytes: u32,
    dir: u8,
}

/// One tuple of a chunk.
#[derive(Debug)]
struct ChunkTuple {
    key: Tuple,
    /// The local flow of its first message in storage order (u32::MAX: none).
    first: u32,
    spans: Vec<Span>,
}

/// The UDP spans of one chunk, on its local flow ids.
#[derive(Debug, Default)]
pub(crate) struct UdpChunk {
    /// Per local flow, its tuple (u32::MAX: not UDP).
    of_flow: Vec<u32>,
    /// Per local flow, whether it is UDP.
    is_udp: Vec<bool>,
    tuples: Vec<ChunkTuple>,
    index: HashMap<Tuple, u32>,
}

impl UdpChunk {
    /// Register the next local flow (ids in order from 0).
    pub fn flow(&mut self, f: &Flow) {
        let t = match tuple_of(f) {
            Some(key) => {
                let tuples = &mut self.tuples;
                *self.index.entry(key).or_insert_with(|| {
                    tuples.push(ChunkTuple {
                        key,
                        first: u32::MAX,
                        spans: Vec::new(),
                    });
                    (tuples.len() - 1) as u32
                })
            }
            None => u32::MAX,
        };
        self.of_flow.push(t);
        self.is_udp.push(t != u32::MAX);
    }

    /// Whether any local flow so far is UDP.
    pub fn any(&self) -> bool {
        !self.tuples.is_empty()
    }

    /// Per local flow so far, whether it is UDP (the rows to give
    /// [`UdpChunk::run`]).
    pub fn flows(&self) -> &[bool] {
        &self.is_udp
    }

    /// The chunk's UDP messages: `rows` are (row, local flow) in storage
    /// order, row `i` a message at `ts[i]` of `bytes[i]` in direction
    /// `dir[i]`; `exits` are those of the chunk's file. Each tuple's rows
    /// are gathered (a stable counting sort), put in time order and cut
    /// into spans.
    pub fn run(
        &mut self,
        rows: &[(u32, u32)],
        ts: &[u64],
        bytes: &[u32],
        dir: &[u8],
        file: u16,
        exits: &Exits,
    ) {
        if self.tuples.is_empty() || rows.is_empty() {
            return;
        }
        let n = ts.len().min(bytes.len()).min(dir.len());
        let of = |id: u32| self.of_flow.get(id as usize).copied().unwrap_or(u32::MAX);
        let mut start = vec![0u32; self.tuples.len() + 1];
        for &(i, id) in rows {
            let t = of(id);
            if t != u32::MAX && (i as usize) < n {
                start[t as usize + 1] += 1;
            }
        }
        for t in 1..start.len() {
            start[t] += start[t - 1];
        }
        let total = start[self.tuples.len()] as usize;
        if total == 0 {
            return;
        }
        let mut grouped = vec![Row::default(); total];
        let mut at = start.clone();
        for &(i, id) in rows {
            let (t, i) = (of(id), i as usize);
            if t == u32::MAX || i >= n {
                continue;
            }
            let slot = &mut at[t as usize];
            if *slot == start[t as usize] {
                self.tuples[t as usize].first = id;
            }
            grouped[*slot as usize] = Row {
                ts: ts[i],
                bytes: bytes[i],
                dir: dir[i],
            };
            *slot += 1;
        }
        for (t, tu) in self.tuples.iter_mut().enumerate() {
            let r = &mut grouped[start[t] as usize..start[t + 1] as usize];
            if r.is_empty() {
                continue;
            }
            if !r.is_sorted_by_key(|x| x.ts) {
                r.sort_unstable_by_key(|x| x.ts);
            }
            let ex = exits.get(&(file, tu.key.0)).map_or(&[][..], Vec::as_slice);
            let mut cur = Span {
                start: r[0].ts,
                end: r[0].ts,
                tx: 0,
                rx: 0,
            };
            for x in r.iter() {
                if cut_between(ex, cur.end, x.ts) {
                    tu.spans.push(cur);
                    cur = Span {
                        start: x.ts,
                        end: x.ts,
                        tx: 0,
                        rx: 0,
                    };
                }
                cur.end = x.ts;
                if x.dir == 0 {
                    cur.tx = cur.tx.saturating_add(u64::from(x.bytes));
                } else {
                    cur.rx = cur.rx.saturating_add(u64::from(x.bytes));
                }
            }
            tu.spans.push(cur);
        }
    }
}

/// The merged UDP spans of a dataset, per (file, tuple).
#[derive(Debug, Default)]
pub struct UdpCuts {
    index: HashMap<(u16, Tuple), u32>,
    /// Per tuple: the global flow of its first message in storage order,
    /// and its spans (in chunk order).
    tuples: Vec<(u32, Vec<Span>)>,
}

impl UdpCuts {
    /// Merge the next chunk (storage order) of file `file`; `remap` maps
    /// its local flow ids to global ones.
    pub(crate) fn merge(&mut self, file: u16, remap: &[u32], c: UdpChunk) {
        for t in c.tuples {
            if t.spans.is_empty() {
                continue;
            }
            let tuples = &mut self.tuples;
            let i = *self.index.entry((file, t.key)).or_insert_with(|| {
                tuples.push((u32::MAX, Vec::new()));
                (tuples.len() - 1) as u32
            });
            let (first, spans) = &mut self.tuples[i as usize];
            if *first == u32::MAX {
                *first = remap[t.first as usize];
            }
            spans.extend_from_slice(&t.spans);
        }
    }

    /// The connections of `tuple` in file `file`, in time order, with the
    /// global flow of its first message (None without messages); `exits`
    /// are its process's exits in time order.
    pub(crate) fn connections(
        &self,
        file: u16,
        tuple: &Tuple,
        exits: &[u64],
    ) -> Option<(u32, Vec<Span>)> {
        let &i = self.index.get(&(file, *tuple))?;
        let (first, spans) = &self.tuples[i as usize];
        let mut spans = spans.clone();
        if !spans.is_sorted_by_key(|s| s.start) {
            spans.sort_by_key(|s| s.start);
        }
        let mut out: Vec<Span> = Vec::new();
        for s in spans {
            match out.last_mut() {
                Some(c) if s.start <= c.end || !cut_between(exits, c.end, s.start) => {
                    c.end = c.end.max(s.end);
                    c.tx = c.tx.saturating_add(s.tx);
                    c.rx = c.rx.saturating_add(s.rx);
                }
                _ => out.push(s),
            }
        }
        Some((*first, out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use snoop_format::synth::Rng;

    fn udp(pid: u32, tid: u32, lport: u16, raddr: u8) -> Flow {
        let mut a = [0u8; 16];
        a[0] = raddr;
        Flow {
            pid,
            tid,
            lport,
            raddr: a,
            rport: 53,
            proto: 17,
            ..Default::default()
        }
    }

    /// The connections of one pass over every event in storage order, as
    /// the conns report cut them before the loader did it per chunk: each
    /// tuple's events gathered, sorted, and cut event by event.
    fn straight(
        flows: &[Flow],
        ev: &[(usize, u64, u32, u8)],
        exits: &Exits,
    ) -> HashMap<Tuple, (usize, Vec<Span>)> {
        type Events = Vec<(u64, u32, u8)>;
        let mut per: HashMap<Tuple, (usize, Events)> = HashMap::new();
        for &(f, ts, b, d) in ev {
            let Some(k) = tuple_of(&flows[f]) else {
                continue;
            };
            per.entry(k).or_insert((f, Vec::new())).1.push((ts, b, d));
        }
        per.into_iter()
            .map(|(k, (g, mut v))| {
                v.sort_unstable();
                let ex = exits.get(&(0, k.0)).map_or(&[][..], Vec::as_slice);
                let exit_after = |t: u64| ex.get(ex.partition_point(|&x| x < t)).copied();
                let mut out = Vec::new();
                let (mut s, mut last, mut tx, mut rx) = (v[0].0, v[0].0, 0u64, 0u64);
                for &(ts, b, d) in &v {
                    let exited = exit_after(last).is_some_and(|x| x < ts);
                    if ts - last > UDP_IDLE_NS || exited {
                        out.push(Span {
                            start: s,
                            end: last,
                            tx,
                            rx,
                        });
                        (s, tx, rx) = (ts, 0, 0);
                    }
                    last = ts;
                    if d == 0 {
                        tx += u64::from(b);
                    } else {
                        rx += u64::from(b);
                    }
                }
                out.push(Span {
                    start: s,
                    end: last,
                    tx,
                    rx,
                });
                (k, (g, out))
            })
            .collect()
    }

    #[test]
    fn chunk_spans_merge_to_the_one_pass_connections() {
        let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
        // Two flows (threads) of one tuple, another tuple of the same
        // process, one of another process, and a TCP flow (not cut).
        let mut tcp = udp(10, 10, 7, 1);
        tcp.proto = 6;
        let flows = [
            udp(10, 10, 1, 1),
            udp(10, 11, 1, 1),
            udp(10, 10, 2, 1),
            udp(20, 20, 3, 2),
            tcp,
        ];
        for round in 0..400 {
            // Times mostly rising, by up to a minute (idle gaps either
            // side of 30 s), sometimes stepping back; exits among them.
            let n = 1 + rng.below(300) as usize;
            let mut ts = 100 * UDP_IDLE_NS;
            let mut exits: Exits = HashMap::new();
            let ev: Vec<(usize, u64, u32, u8)> = (0..n)
                .map(|_| {
                    ts = match rng.below(10) {
                        0 => ts.saturating_sub(rng.below(3 * UDP_IDLE_NS)),
                        1 => ts + UDP_IDLE_NS - 2 + rng.below(5),
                        2..=3 => ts + rng.below(2 * UDP_IDLE_NS),
                        _ => ts + rng.below(UDP_IDLE_NS / 10),
                    };
                    if rng.below(30) == 0 {
                        let pid = [10, 20][rng.below(2) as usize];
                        let at = ts + rng.below(3) * rng.below(UDP_IDLE_NS / 5);
                        exits.entry((0, pid)).or_default().push(at);
                    }
                    let f = rng.below(if round % 2 == 0 { 2 } else { 5 }) as usize;
                    (f, ts, 1 + rng.below(70000) as u32, rng.below(2) as u8)
                })
                .collect();
            for v in exits.values_mut() {
                v.sort_unstable();
            }
            let want = straight(&flows, &ev, &exits);

            let mut cuts: Vec<usize> = (0..rng.below(12))
                .map(|_| rng.below(n as u64 + 1) as usize)
                .collect();
            cuts.sort_unstable();
            let mut all = UdpCuts::default();
            let mut lo = 0;
            for &hi in cuts.iter().chain(std::iter::once(&n)) {
                let part = &ev[lo..hi.max(lo)];
                lo = hi.max(lo);
                // Each chunk numbers its flows in its own order, and the
                // decoder skips some rows (not given to the cut).
                let mut order: Vec<usize> = (0..flows.len()).collect();
                for i in (1..order.len()).rev() {
                    order.swap(i, rng.below(i as u64 + 1) as usize);
                }
                let mut c = UdpChunk::default();
                let mut local = vec![0u32; flows.len()];
                for (l, &g) in order.iter().enumerate() {
                    c.flow(&flows[g]);
                    local[g] = l as u32;
                }
                let mut rows = UdpRows::new();
                let (mut tss, mut bytes, mut dirs) = (vec![], vec![], vec![]);
                for &(f, t, b, d) in part {
                    if rng.below(8) == 0 {
                        tss.push(rng.below(1 << 40));
                        bytes.push(7);
                        dirs.push(0);
                    }
                    rows.note(c.flows()[local[f] as usize], tss.len() as u32, local[f]);
                    tss.push(t);
                    bytes.push(b);
                    dirs.push(d);
                }
                c.run(&rows.finish(), &tss, &bytes, &dirs, 0, &exits);
                let remap: Vec<u32> = order.iter().map(|&g| g as u32).collect();
                all.merge(0, &remap, c);
            }
            let mut keys: Vec<Tuple> = flows.iter().filter_map(tuple_of).collect();
            keys.sort_unstable();
            keys.dedup();
            for k in keys {
                let ex = exits.get(&(0, k.0)).map_or(&[][..], Vec::as_slice);
                let got = all.connections(0, &k, ex);
                let w = want.get(&k).map(|(g, s)| (*g as u32, s.clone()));
                assert_eq!(got, w, "round {round}, tuple {k:?}, cuts {cuts:?}");
            }
        }
    }
}
