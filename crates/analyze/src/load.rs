//! The loader: trace files -> a [`Dataset`] of global flows, per-flow
//! aggregates, per-interval buckets and (only when a report needs them)
//! per-event columns. Chunks are decoded in parallel (rayon), only the
//! columns asked for, and skipped unread when their time/pid ranges fall
//! outside the filters. Aggregation happens inside each chunk on its small
//! integer flow ids; only the flow dictionaries are merged globally, so a
//! 100-million-event trace never materialises per-event rows for `--by pid`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rayon::prelude::*;
use snoop_format::{ColumnSet, EventBatch, ProcessKind, ProcessRow, Table, Trace};

use crate::attrib::AttribIndex;
pub use crate::decode::{all_columns, AGG_NS, DECODE_NS};
use crate::decode::{batch_flows, decode_messages, decode_packets, event_columns, ChunkOut};
use crate::filter::{FileFilter, Filter};
pub use crate::model::*;

/// Open every file (with a warning for recovered ones) and resolve filters.
pub fn open_all(paths: &[PathBuf], filter: &Filter) -> anyhow::Result<(Vec<Trace>, Vec<FileMeta>)> {
    let mut traces = Vec::new();
    let mut metas = Vec::new();
    for p in paths {
        let t = Trace::open(p).with_context(|| format!("cannot read trace {}", p.display()))?;
        if let Some(r) = t.recovery() {
            eprintln!(
                "snoop: warning: {} was not closed cleanly: recovered {} chunks / {} events, {} bytes ignored{}",
                snoop_format::Shown(&p.display().to_string()),
                r.chunks,
                r.events,
                r.ignored_bytes,
                if r.stopped_because.is_empty() { String::new() } else { format!(" ({})", r.stopped_because) }
            );
        }
        metas.push(FileMeta {
            path: p.clone(),
            host: String::new(),
            info: t.info().clone(),
            recovery: t.recovery().cloned(),
            filter: filter.for_file(t.info()),
            end_ns: t.end_ns(),
            hooks: t.hooks().cloned(),
            minor: t.minor(),
            cgroups: t.cgroups().iter().cloned().collect(),
            names: crate::remote_names::RemoteNames::new(t.dns()),
        });
        traces.push(t);
    }
    label_hosts(&mut metas);
    Ok((traces, metas))
}

fn stem(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

fn label_hosts(metas: &mut [FileMeta]) {
    let names: Vec<String> = metas
        .iter()
        .map(|m| {
            if m.info.host.is_empty() {
                stem(&m.path)
            } else {
                m.info.host.clone()
            }
        })
        .collect();
    for (i, m) in metas.iter_mut().enumerate() {
        let dup = names.iter().filter(|n| **n == names[i]).count() > 1;
        m.host = if dup {
            format!("{} ({})", names[i], stem(&m.path))
        } else {
            names[i].clone()
        };
    }
}

/// A progress bar on a terminal, hidden otherwise or for small jobs.
pub fn progress(total: usize, what: &str) -> indicatif::ProgressBar {
    if total < 16 || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(total as u64);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} chunks {elapsed}")
    {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(what.to_string());
    pb
}

/// Time spent merging chunk outputs, on the loading thread (SNOOP_TIMING).
static MERGE_NS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Sum duplicate (interval, flow) buckets of `v` (chunks split intervals),
/// so the bucket list grows with distinct intervals × flows, not chunks;
/// `compacted` is set to the length after.
fn compact_buckets(v: &mut Vec<Bucket>, compacted: &mut usize) {
    let mut v2 = std::mem::take(v);
    v2.par_sort_unstable_by_key(|x| (x.b, x.flow));
    let mut out: Vec<Bucket> = Vec::with_capacity(v2.len() / 2 + 1);
    for x in v2 {
        match out.last_mut() {
            Some(l) if l.b == x.b && l.flow == x.flow => {
                l.tx = l.tx.saturating_add(x.tx);
                l.rx = l.rx.saturating_add(x.rx);
            }
            _ => out.push(x),
        }
    }
    out.shrink_to_fit();
    *compacted = out.len();
    *v = out;
}

/// Chunks decoded per merge step: enough to keep every core busy, few
/// enough that their outputs (per-chunk flow keys, totals and buckets) stay
/// small next to the merged dataset.
fn merge_batch() -> usize {
    rayon::current_num_threads().max(1) * 16
}

impl Dataset {
    /// Load `paths` per `plan` and `filter`.
    pub fn load(paths: &[PathBuf], filter: &Filter, plan: LoadPlan) -> anyhow::Result<Dataset> {
        let (traces, files) = open_all(paths, filter)?;
        let mut ds = Dataset {
            files,
            interval_ns: plan.interval_ns.max(1),
            ..Dataset::default()
        };
        let want = |t: Table| -> Vec<(u16, usize)> {
            traces
                .iter()
                .enumerate()
                .flat_map(|(fi, tr)| {
                    let ff = &ds.files[fi].filter;
                    tr.chunks_of(t)
                        .filter(move |&c| ff.chunk_ok(&tr.chunks()[c]))
                        .map(move |c| (fi as u16, c))
                })
                .collect()
        };
        let msg_chunks = if plan.messages || plan.packets {
            want(Table::Messages)
        } else {
            Vec::new()
        };
        let pkt_chunks = if plan.packets {
            want(Table::Packets)
        } else {
            Vec::new()
        };
        let pb = progress(msg_chunks.len() + pkt_chunks.len(), "decoding");

        // Process events first: the UDP connections cut while decoding
        // messages ends a flow at its process's exit.
        if plan.processes {
            ds.load_procs(&traces)?;
        }
        let exits = if plan.udp_conns {
            crate::udpcut::process_exits(&ds.procs)
        } else {
            Default::default()
        };
        // Messages: pid authoritative, the flow is its own key.
        let t0 = std::time::Instant::now();
        let msg_events = ds.decode_merged(&traces, &msg_chunks, &pb, |tr, fi, ci, ff| {
            decode_messages(tr, fi, ci, ff, &plan, &exits)
        })?;
        let t1 = std::time::Instant::now();
        if std::env::var_os("SNOOP_TIMING").is_some() {
            eprintln!(
                "timing: messages decode+aggregate+merge {:?} (cpu: decode {} ms, total {} ms; merge {} ms; {} chunks, {} flows, {} buckets)",
                t1 - t0,
                DECODE_NS.load(std::sync::atomic::Ordering::Relaxed) / 1_000_000,
                AGG_NS.load(std::sync::atomic::Ordering::Relaxed) / 1_000_000,
                MERGE_NS.load(std::sync::atomic::Ordering::Relaxed) / 1_000_000,
                msg_chunks.len(),
                ds.flows.len(),
                ds.buckets.len()
            );
        }
        ds.msg_events = msg_events;
        if plan.behaviour && ds.behaviour.is_none() {
            ds.behaviour = Some(Default::default());
        }
        if plan.udp_conns && ds.udp_cuts.is_none() {
            ds.udp_cuts = Some(Default::default());
        }

        if plan.packets && !pkt_chunks.is_empty() {
            let index = AttribIndex::build(&ds);
            ds.pkt_events = ds.decode_merged(&traces, &pkt_chunks, &pb, |tr, fi, ci, ff| {
                decode_packets(tr, fi, ci, ff, &plan, &index)
            })?;
        }
        pb.finish_and_clear();
        let t2 = std::time::Instant::now();
        if plan.connections {
            ds.load_conns(&traces)?;
        }
        if plan.stats {
            ds.load_stats(&traces)?;
        }
        if std::env::var_os("SNOOP_TIMING").is_some() {
            eprintln!(
                "timing: packets {:?}, connections/processes/stats {:?}",
                t2 - t1,
                t2.elapsed()
            );
        }
        Ok(ds)
    }

    /// Decode `chunks` in parallel a batch at a time, merging each batch
    /// before the next, so memory holds one batch of per-chunk outputs, not
    /// all; each chunk's mapped pages are released once it is decoded.
    fn decode_merged(
        &mut self,
        traces: &[Trace],
        chunks: &[(u16, usize)],
        pb: &indicatif::ProgressBar,
        decode: impl Fn(&Trace, u16, usize, &FileFilter) -> anyhow::Result<ChunkOut> + Sync,
    ) -> anyhow::Result<Vec<Events>> {
        let filters: Vec<FileFilter> = self.files.iter().map(|f| f.filter.clone()).collect();
        let mut events = Vec::new();
        for batch in chunks.chunks(merge_batch()) {
            let outs: Vec<ChunkOut> = batch
                .par_iter()
                .map(|&(fi, ci)| {
                    let tr = &traces[fi as usize];
                    let r = decode(tr, fi, ci, &filters[fi as usize]);
                    tr.release_chunk(ci);
                    pb.inc(1);
                    r
                })
                .collect::<anyhow::Result<_>>()?;
            let t = std::time::Instant::now();
            events.extend(self.merge(outs));
            MERGE_NS.fetch_add(
                t.elapsed().as_nanos() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        Ok(events)
    }

    /// Sum duplicate (interval, flow) buckets (chunks split intervals), so
    /// the bucket list grows with distinct intervals × flows, not chunks.
    #[cfg(test)]
    fn compact_buckets(&mut self) {
        compact_buckets(&mut self.buckets, &mut self.buckets_compacted);
    }

    /// Intern chunk outputs into the global flow table; returns the events.
    /// The flows are interned first (in order: global ids follow storage
    /// order); then the totals and buckets, the behaviour partials and the
    /// UDP spans, which touch disjoint state, are merged side by side, each
    /// in storage order.
    fn merge(&mut self, outs: Vec<ChunkOut>) -> Vec<Events> {
        let flows = &self.flows;
        let keys: usize = outs.iter().map(|o| o.keys.len()).sum();
        self.flow_index
            .reserve(keys, |&j| flows[j as usize].hash64());
        self.flows.reserve(keys);
        self.agg.reserve(keys);
        let n = outs.len();
        let mut remaps: Vec<Vec<u32>> = Vec::with_capacity(n);
        let mut sums = Vec::with_capacity(n);
        let mut parts = Vec::with_capacity(n);
        let mut udps = Vec::with_capacity(n);
        let mut events = Vec::new();
        let mut event_remaps = Vec::new();
        for (i, o) in outs.into_iter().enumerate() {
            let remap: Vec<u32> = o
                .keys
                .iter()
                .map(|&(flow, origin)| {
                    let row = FlowRow {
                        file: o.file,
                        flow,
                        origin,
                    };
                    intern(&mut self.flows, &mut self.agg, &mut self.flow_index, row)
                })
                .collect();
            sums.push((o.agg, o.buckets));
            if let Some(part) = o.behaviour {
                parts.push((i, o.file, part));
            }
            if let Some(u) = o.udp {
                udps.push((i, o.file, u));
            }
            if let Some(e) = o.events {
                events.push(e);
                event_remaps.push(i);
            }
            remaps.push(remap);
        }
        let remaps = &remaps;
        let agg = &mut self.agg;
        let buckets = &mut self.buckets;
        let compacted = &mut self.buckets_compacted;
        let behaviour = &mut self.behaviour;
        let udp_cuts = &mut self.udp_cuts;
        let sum = move || {
            for ((a, bs), remap) in sums.into_iter().zip(remaps) {
                for (l, a) in a.iter().enumerate() {
                    agg[remap[l] as usize].merge(a);
                }
                buckets.extend(bs.iter().map(|&(b, l, tx, rx)| Bucket {
                    b,
                    flow: remap[l as usize],
                    tx,
                    rx,
                }));
                if buckets.len() > (2 * *compacted).max(1 << 22) {
                    compact_buckets(buckets, compacted);
                }
            }
        };
        let behave = move || {
            for (i, file, part) in parts {
                behaviour
                    .get_or_insert_with(Default::default)
                    .merge(file, &remaps[i], part);
            }
        };
        let udp = move || {
            for (i, file, u) in udps {
                udp_cuts
                    .get_or_insert_with(Default::default)
                    .merge(file, &remaps[i], u);
            }
        };
        rayon::join(behave, || rayon::join(sum, udp));
        events
            .par_iter_mut()
            .zip(event_remaps.par_iter())
            .for_each(|(e, &i)| {
                let r = &remaps[i];
                for f in e.flow.iter_mut() {
                    *f = r[*f as usize];
                }
            });
        events
    }

    fn load_conns(&mut self, traces: &[Trace]) -> anyhow::Result<()> {
        for (fi, tr) in traces.iter().enumerate() {
            let ff = self.files[fi].filter.clone();
            let chunks: Vec<usize> = tr
                .chunks_of(Table::Connections)
                .filter(|&c| ff.chunk_ok(&tr.chunks()[c]))
                .collect();
            let batches: Vec<EventBatch> = chunks
                .par_iter()
                .map(|&c| -> anyhow::Result<EventBatch> {
                    let b = tr
                        .read_chunk(c, event_columns(Table::Connections))
                        .and_then(|ch| ch.into_events())
                        .with_context(|| {
                            format!(
                                "{}: decoding connections chunk {c}",
                                self.files[fi].path.display()
                            )
                        })?;
                    Ok(b)
                })
                .collect::<anyhow::Result<_>>()?;
            for b in batches {
                let what = format!("{}: connections chunk", self.files[fi].path.display());
                let flows = batch_flows(&b, &what)?;
                if b.old_state.len() != b.rows
                    || b.new_state.len() != b.rows
                    || b.bytes_acked.len() != b.rows
                {
                    anyhow::bail!("{what}: state columns have different lengths");
                }
                // Global id per dictionary row (SKIP: filtered out), so
                // each flow is hashed once per chunk, not once per event.
                const UNKNOWN: u32 = u32::MAX;
                const SKIP: u32 = u32::MAX - 1;
                let mut memo = vec![UNKNOWN; flows.len()];
                for i in 0..b.rows {
                    if !ff.time_ok(b.ts[i]) {
                        continue;
                    }
                    let r = b.flow[i] as usize;
                    let id = match memo.get(r).copied() {
                        Some(SKIP) => continue,
                        Some(UNKNOWN) => {
                            let f = flows[r];
                            if !ff.net_ok(&f) {
                                memo[r] = SKIP;
                                continue;
                            }
                            let row = FlowRow {
                                file: fi as u16,
                                flow: f,
                                origin: Origin::Conn,
                            };
                            let id =
                                intern(&mut self.flows, &mut self.agg, &mut self.flow_index, row);
                            memo[r] = id;
                            id
                        }
                        Some(id) => id,
                        None => anyhow::bail!("{what}: flow index {r} out of range"),
                    };
                    self.conns.push(ConnEvent {
                        ts: b.ts[i],
                        flow: id,
                        old: b.old_state[i],
                        new: b.new_state[i],
                        acked: b.bytes_acked[i],
                        received: b.bytes_received.get(i).copied().unwrap_or(0),
                        outcome: b.outcome(i),
                    });
                }
            }
        }
        self.conns
            .sort_by_key(|c| (self.flows[c.flow as usize].file, c.ts));
        Ok(())
    }

    fn load_procs(&mut self, traces: &[Trace]) -> anyhow::Result<()> {
        for (fi, tr) in traces.iter().enumerate() {
            let ff = self.files[fi].filter.clone();
            for c in tr.chunks_of(Table::Processes) {
                let b = tr
                    .read_chunk(c, ColumnSet::ALL)
                    .and_then(|ch| ch.into_processes())
                    .with_context(|| {
                        format!(
                            "{}: decoding processes chunk {c}",
                            self.files[fi].path.display()
                        )
                    })?;
                let n = b.rows;
                let ok = [
                    b.ts.len(),
                    b.kind.len(),
                    b.pid.len(),
                    b.tid.len(),
                    b.ppid.len(),
                    b.comm.len(),
                    b.exit_code.len(),
                    b.filename.len(),
                ]
                .iter()
                .all(|&l| l == n);
                if !ok {
                    anyhow::bail!(
                        "{}: processes chunk {c}: columns have different lengths",
                        self.files[fi].path.display()
                    );
                }
                for i in 0..n {
                    let Some(kind) = ProcessKind::from_u8(b.kind[i]) else {
                        continue;
                    };
                    if !ff.process_ok(b.pid[i], &b.comm[i]) && !ff.process_ok(b.ppid[i], &b.comm[i])
                    {
                        continue;
                    }
                    self.procs.push(ProcEvent {
                        file: fi as u16,
                        row: ProcessRow {
                            ts_ns: b.ts[i],
                            kind,
                            pid: b.pid[i],
                            tid: b.tid[i],
                            ppid: b.ppid[i],
                            comm: b.comm[i],
                            exit_code: b.exit_code[i],
                            filename: b.filename[i].clone(),
                        },
                    });
                }
            }
        }
        self.procs.sort_by_key(|p| (p.file, p.row.ts_ns));
        Ok(())
    }

    fn load_stats(&mut self, traces: &[Trace]) -> anyhow::Result<()> {
        for (fi, tr) in traces.iter().enumerate() {
            for c in tr.chunks_of(Table::Stats) {
                let b = tr
                    .read_chunk(c, ColumnSet::ALL)
                    .and_then(|ch| ch.into_stats())
                    .with_context(|| {
                        format!(
                            "{}: decoding stats chunk {c}",
                            self.files[fi].path.display()
                        )
                    })?;
                for i in 0..b
                    .rows
                    .min(b.ts.len())
                    .min(b.source.len())
                    .min(b.dropped.len())
                    .min(b.events.len())
                {
                    self.stats.push(StatRow {
                        file: fi as u16,
                        ts: b.ts[i],
                        source: b.source[i],
                        dropped: b.dropped[i],
                        events: b.events[i],
                    });
                }
            }
        }
        Ok(())
    }

    /// Whether the inputs are several files (reports then add a `host` column).
    pub fn multi_host(&self) -> bool {
        self.files.len() > 1
    }

    /// Host label of flow `f`.
    pub fn host_of(&self, f: u32) -> &str {
        &self.files[self.flows[f as usize].file as usize].host
    }

    /// Wall-clock offset of file `file`.
    pub fn wall_offset(&self, file: u16) -> i64 {
        self.files
            .get(file as usize)
            .map(|f| f.info.boot_to_wall_ns)
            .unwrap_or(0)
    }
}

/// The index of `row` in `flows`, appended (with empty totals in `agg`)
/// when new; `index` holds the indices of `flows` by [`FlowRow::hash64`].
fn intern(
    flows: &mut Vec<FlowRow>,
    agg: &mut Vec<Agg>,
    index: &mut hashbrown::HashTable<u32>,
    row: FlowRow,
) -> u32 {
    match index.entry(
        row.hash64(),
        |&j| flows[j as usize] == row,
        |&j| flows[j as usize].hash64(),
    ) {
        hashbrown::hash_table::Entry::Occupied(e) => *e.get(),
        hashbrown::hash_table::Entry::Vacant(e) => {
            let id = flows.len() as u32;
            flows.push(row);
            agg.push(Agg::default());
            e.insert(id);
            id
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn compacting_buckets_sums_duplicates_and_keeps_totals() {
        let mut ds = Dataset::default();
        let mut want: HashMap<(u64, u32), (u64, u64)> = HashMap::new();
        for i in 0..10_000u64 {
            let (b, flow) = (i % 37, (i % 11) as u32);
            let (tx, rx) = (i, 2 * i + 1);
            ds.buckets.push(Bucket { b, flow, tx, rx });
            let e = want.entry((b, flow)).or_default();
            e.0 += tx;
            e.1 += rx;
        }
        ds.compact_buckets();
        assert_eq!(ds.buckets.len(), want.len());
        assert_eq!(ds.buckets_compacted, want.len());
        for x in &ds.buckets {
            assert_eq!(want[&(x.b, x.flow)], (x.tx, x.rx));
        }
    }
}
