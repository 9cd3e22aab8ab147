//! The recording pipeline after the kernel: one thread takes the raw
//! records out of the [`EventSource`] a few hundred at a time, decodes them
//! and pushes rows into an [`EventSink`] (the trace writer), flushing
//! complete chunks every second and writing the kernel's per-kind
//! event/drop counters as stats rows, the paths of the cgroups its
//! messages came from, and the names DNS answers gave (parsed here, off
//! the kernel side; only names, addresses and TTLs reach the trace).
//!
//! Records are decoded right after they leave the ring, while the small
//! batch they were copied into is still in this core's cache (an earlier
//! design handed megabyte batches to a writer thread, which read every
//! record a second time on another core and could queue hundreds of
//! megabytes). The trace writer sorts and compresses full chunks on its
//! own thread (`TraceWriter::seal_in_background`), so this loop only stops
//! draining when four chunks are already being sealed; if the rings fill
//! meanwhile, the kernel counts the drops — nothing is lost silently.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use crossbeam_channel::bounded;
use snoop_format::source;

use crate::cgroups::CgroupNames;
use crate::dns::{TcpStreams, UdpRepeats};
use crate::event::{decode, Event};
use crate::skel::kind;
use crate::source::{Counters, EventSource, Pressure, RawBatch};

/// Where decoded events go. Implemented by `snoop_format::TraceWriter` and
/// by the live aggregation of `snoop top`.
pub trait EventSink {
    /// Take one event.
    fn push(&mut self, ev: &Event) -> Result<()>;
    /// Record one stats row (per-interval counts for one source).
    fn push_stats(&mut self, ts_ns: u64, source: u8, dropped: u64, events: u64) -> Result<()>;
    /// Make everything pushed so far durable (seal open chunks).
    fn flush(&mut self) -> Result<()>;
    /// Bytes written to the output so far.
    fn bytes_written(&self) -> u64;
    /// Write what is ready without waiting (chunks sealed meanwhile).
    fn write_ready(&mut self) -> Result<()> {
        Ok(())
    }
    /// Record which hook groups ran (once, before the first event).
    fn hooks(&mut self, _hooks: &[(String, String)]) -> Result<()> {
        Ok(())
    }
    /// Whether the sink keeps cgroup paths (then the pipeline resolves the
    /// cgroup ids it sees and hands them to [`EventSink::cgroups`]).
    fn records_cgroups(&self) -> bool {
        false
    }
    /// Record cgroup ids and their paths.
    fn cgroups(&mut self, _paths: &[(u64, String)]) -> Result<()> {
        Ok(())
    }
    /// Record names learned from DNS answers.
    fn dns(&mut self, _answers: &[snoop_format::DnsAnswer]) -> Result<()> {
        Ok(())
    }
}

impl<W: std::io::Write> EventSink for snoop_format::TraceWriter<W> {
    fn push(&mut self, ev: &Event) -> Result<()> {
        match ev {
            Event::Message {
                ts_ns,
                flow,
                bytes,
                dir,
            } => self.push_message(*ts_ns, flow, *bytes, *dir)?,
            Event::Packet {
                ts_ns,
                last_ns,
                count,
                tcp_flags,
                flow,
                len,
                dir,
                segs,
            } => self.push_packet_run(
                *ts_ns, *last_ns, *count, flow, *len, *dir, *segs, *tcp_flags,
            )?,
            Event::PacketSet { flow, dir, n, runs } => {
                for r in &runs[..usize::from(*n)] {
                    self.push_packet_run(
                        r.ts_ns,
                        r.last_ns,
                        r.count,
                        flow,
                        r.len,
                        *dir,
                        r.segs,
                        r.tcp_flags,
                    )?;
                }
            }
            Event::Conn {
                ts_ns,
                flow,
                old_state,
                new_state,
                bytes_acked,
                bytes_received,
                outcome,
            } => self.push_conn_outcome(
                *ts_ns,
                flow,
                *old_state,
                *new_state,
                *bytes_acked,
                *bytes_received,
                outcome,
            )?,
            Event::Process(row) => self.push_process(row)?,
            // Parsed by the pipeline; its names arrive through `dns`.
            Event::Dns(_) => {}
        }
        Ok(())
    }

    fn push_stats(&mut self, ts_ns: u64, source: u8, dropped: u64, events: u64) -> Result<()> {
        snoop_format::TraceWriter::push_stats(self, ts_ns, source, dropped, events)?;
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        snoop_format::TraceWriter::flush(self)?;
        Ok(())
    }

    fn bytes_written(&self) -> u64 {
        snoop_format::TraceWriter::bytes_written(self)
    }

    fn records_cgroups(&self) -> bool {
        true
    }

    fn cgroups(&mut self, paths: &[(u64, String)]) -> Result<()> {
        self.write_cgroups(paths)?;
        Ok(())
    }

    fn dns(&mut self, answers: &[snoop_format::DnsAnswer]) -> Result<()> {
        self.write_dns(answers)?;
        Ok(())
    }

    fn hooks(&mut self, hooks: &[(String, String)]) -> Result<()> {
        self.write_hooks(hooks)?;
        Ok(())
    }

    fn write_ready(&mut self) -> Result<()> {
        self.collect_ready()?;
        Ok(())
    }
}

/// Limits after which recording stops by itself.
#[derive(Clone, Debug, Default)]
pub struct Limits {
    /// Stop after this many events were written.
    pub max_events: Option<u64>,
    /// Stop once the output reached this many bytes.
    pub max_bytes: Option<u64>,
}

/// State shared by the threads: the stop flag and live figures.
#[derive(Debug, Default)]
pub struct Control {
    stop: AtomicBool,
    /// Events pushed into the sink.
    pub events: AtomicU64,
    /// Events per record kind pushed into the sink.
    pub per_kind: [AtomicU64; kind::COUNT],
    /// Bytes written by the sink.
    pub bytes: AtomicU64,
    /// Records the kernel could not reserve (all kinds).
    pub kernel_drops: AtomicU64,
    /// Records lost in userspace (undecodable).
    pub user_drops: AtomicU64,
}

impl Control {
    /// Ask every thread to finish.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Has a stop been requested?
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// What the pipeline saw, for the final summary.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Events written, per record kind.
    pub events: [u64; kind::COUNT],
    /// Wire packets the packet records stand for (a run counts its
    /// packets).
    pub wire_packets: u64,
    /// Kernel counters at the end (records emitted / dropped per kind).
    pub kernel: Counters,
    /// Records lost in userspace.
    pub user_drops: u64,
    /// Address records learned from DNS answers.
    pub dns_names: u64,
    /// Kernel map pressure at the end.
    pub pressure: Pressure,
    /// First decode error, if any (the rest are only counted).
    pub first_decode_error: Option<String>,
}

const POLL: Duration = Duration::from_millis(100);
const COUNTER_EVERY: Duration = Duration::from_secs(1);
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Records taken from the rings at a time: ~25 KiB of typical records, so
/// the batch stays in L1 between the copy and the decode.
const BATCH_RECORDS: usize = 256;

/// Drain `src` into the writer until `ctl` says stop (then once more, to
/// the end of what the rings hold).
fn drain_loop<S: EventSink>(src: &mut dyn EventSource, w: &mut Writer<'_, S>) -> Result<()> {
    let mut batch = RawBatch::with_capacity(BATCH_RECORDS * 256);
    let mut last_counters = Instant::now();
    let mut last_flush = Instant::now();
    w.sink
        .hooks(&[src.hooks(), src.settings()].concat())
        .context("write hook groups")?;
    loop {
        let stopping = w.ctl.stopping();
        if stopping {
            // Nothing may be emitted after the last drain: detach first,
            // then drain to empty, then read the counters.
            src.detach();
        }
        let mut wait = if stopping { Duration::ZERO } else { POLL };
        loop {
            src.poll(wait, &mut batch, BATCH_RECORDS)?;
            wait = Duration::ZERO;
            let n = batch.len();
            if n > 0 {
                w.batch(&batch)?;
                batch.clear();
            }
            // Empty, or time to flush — except when stopping: then the
            // rings are drained to the end first.
            if n < BATCH_RECORDS || (!stopping && last_flush.elapsed() >= FLUSH_EVERY) {
                break;
            }
        }
        if stopping || last_counters.elapsed() >= COUNTER_EVERY {
            last_counters = Instant::now();
            let c = src.counters()?;
            let p = src.pressure()?;
            w.counters(c, p)?;
        }
        if stopping {
            // A program already running when the links went may still
            // have reserved after the counters were read: take its record
            // and read the counters again, so both include it.
            drain_rest(src, w, &mut batch)?;
            let c = src.counters()?;
            let p = src.pressure()?;
            w.counters(c, p)?;
            return w.finish();
        }
        if last_flush.elapsed() >= FLUSH_EVERY {
            last_flush = Instant::now();
            w.cgroup_paths(false)?;
            w.dns_names()?;
            w.sink.flush().context("flush trace")?;
            w.check_limits();
        } else {
            // A chunk sealed since the last flush goes to the file now,
            // not a second later: a killed recorder loses less.
            w.sink.write_ready().context("write trace")?;
        }
    }
}

/// Take whatever the source still holds, without waiting.
fn drain_rest<S: EventSink>(
    src: &mut dyn EventSource,
    w: &mut Writer<'_, S>,
    batch: &mut RawBatch,
) -> Result<()> {
    loop {
        src.poll(Duration::ZERO, batch, BATCH_RECORDS)?;
        let n = batch.len();
        if n > 0 {
            w.batch(batch)?;
            batch.clear();
        }
        if n < BATCH_RECORDS {
            return Ok(());
        }
    }
}

struct Writer<'a, S: EventSink> {
    sink: &'a mut S,
    ctl: &'a Control,
    limits: &'a Limits,
    summary: Summary,
    last_counters: Counters,
    cgroups: CgroupNames,
    /// Where DNS messages start in TCP streams.
    dns_streams: TcpStreams,
    /// UDP answers seen twice on their way in.
    dns_repeats: UdpRepeats,
    /// Answers parsed since the last flush.
    dns_pending: Vec<snoop_format::DnsAnswer>,
}

impl<S: EventSink> Writer<'_, S> {
    /// Name the cgroup ids seen since the last call in the trace (at the
    /// flush, off the per-event path).
    fn cgroup_paths(&mut self, force: bool) -> Result<()> {
        if !self.sink.records_cgroups() {
            return Ok(());
        }
        let new = self.cgroups.resolve(force);
        if !new.is_empty() {
            self.sink.cgroups(&new).context("write cgroup paths")?;
        }
        Ok(())
    }

    /// Write the DNS answers parsed since the last call (at the flush).
    fn dns_names(&mut self) -> Result<()> {
        if !self.dns_pending.is_empty() {
            self.sink
                .dns(&self.dns_pending)
                .context("write DNS names")?;
            self.summary.dns_names += self.dns_pending.len() as u64;
            self.dns_pending.clear();
        }
        Ok(())
    }

    /// Parse one DNS packet's payload into the pending answers.
    fn dns_payload(&mut self, p: &crate::event::DnsPayload) {
        let answers = match p.tcp_seq {
            Some(seq) => self.dns_streams.segment(p.cookie, seq, &p.data),
            None if self.dns_repeats.repeat(p.cookie, p.ts_ns, &p.data) => Vec::new(),
            None => crate::dns::parse_response(&p.data),
        };
        self.dns_pending
            .extend(answers.into_iter().map(|a| a.into_trace(p.ts_ns, p.pid)));
    }

    fn batch(&mut self, b: &RawBatch) -> Result<()> {
        // Counted locally and published once per batch: shared atomics
        // bumped per event cost more than decoding the event.
        let mut per_kind = [0u64; kind::COUNT];
        let mut written = 0u64;
        let mut bad = 0u64;
        // --max-events is exact: records drained past it are not written.
        let allowed = self
            .limits
            .max_events
            .map(|m| m.saturating_sub(self.ctl.events.load(Ordering::Relaxed)));
        for rec in b.iter() {
            if allowed.is_some_and(|a| written >= a) {
                self.ctl.stop();
                break;
            }
            match decode(rec) {
                Ok(Event::Dns(p)) => {
                    // Not a row: parsed now, its names written at the flush.
                    self.dns_payload(&p);
                    per_kind[kind::DNS as usize] += 1;
                }
                Ok(mut ev) => {
                    // A set past --max-events keeps only the runs allowed.
                    if let (Some(a), Event::PacketSet { n, .. }) = (allowed, &mut ev) {
                        *n = (*n).min(u8::try_from(a - written).unwrap_or(u8::MAX));
                    }
                    match &ev {
                        Event::Message { flow, .. } => self.cgroups.see(flow.cgroup),
                        Event::Packet { count, .. } => {
                            self.summary.wire_packets += u64::from(*count);
                        }
                        Event::PacketSet { n, runs, .. } => {
                            self.summary.wire_packets += runs[..usize::from(*n)]
                                .iter()
                                .map(|r| u64::from(r.count))
                                .sum::<u64>();
                        }
                        _ => {}
                    }
                    self.sink.push(&ev).context("write trace")?;
                    let rows = ev.rows();
                    if let Some(n) = per_kind.get_mut(ev.kind() as usize) {
                        *n += rows;
                    }
                    written += rows;
                }
                Err(e) => {
                    bad += 1;
                    self.summary
                        .first_decode_error
                        .get_or_insert_with(|| e.to_string());
                }
            }
        }
        for (k, n) in per_kind.iter().enumerate() {
            if *n > 0 {
                self.summary.events[k] += n;
                self.ctl.per_kind[k].fetch_add(*n, Ordering::Relaxed);
            }
        }
        self.ctl.events.fetch_add(written, Ordering::Relaxed);
        if bad > 0 {
            self.summary.user_drops += bad;
            self.ctl.user_drops.fetch_add(bad, Ordering::Relaxed);
        }
        self.check_limits();
        Ok(())
    }

    fn check_limits(&mut self) {
        let events = self.ctl.events.load(Ordering::Relaxed);
        if self.limits.max_events.is_some_and(|m| events >= m) {
            self.ctl.stop();
        }
        let bytes = self.sink.bytes_written();
        self.ctl.bytes.store(bytes, Ordering::Relaxed);
        if self.limits.max_bytes.is_some_and(|m| bytes >= m) {
            self.ctl.stop();
        }
    }

    fn counters(&mut self, c: Counters, p: Pressure) -> Result<()> {
        let before = self.summary.pressure;
        for (src, now, was) in [
            (
                source::OWNER_MAP_FULL,
                p.owner_map_full,
                before.owner_map_full,
            ),
            (source::TRACKED_FULL, p.tracked_full, before.tracked_full),
        ] {
            if now > was {
                self.sink
                    .push_stats(snoop_format::boottime_ns(), src, 0, now - was)
                    .context("write stats")?;
            }
        }
        self.summary.pressure = p;
        let ts = snoop_format::boottime_ns();
        let mut drops = 0;
        for (k, (now, before)) in c.iter().zip(self.last_counters.iter()).enumerate() {
            drops += now.drops;
            let de = now.events.saturating_sub(before.events);
            let dd = now.drops.saturating_sub(before.drops);
            if de > 0 || dd > 0 {
                let src = if k == kind::DNS as usize {
                    source::DNS
                } else {
                    k as u8
                };
                self.sink
                    .push_stats(ts, src, dd, de)
                    .context("write stats")?;
            }
        }
        self.ctl.kernel_drops.store(drops, Ordering::Relaxed);
        self.last_counters = c;
        self.summary.kernel = c;
        Ok(())
    }

    /// The end of the recording: userspace losses as a stats row, then
    /// everything sealed.
    fn finish(&mut self) -> Result<()> {
        if self.summary.user_drops > 0 {
            let ts = snoop_format::boottime_ns();
            self.sink
                .push_stats(ts, source::USERSPACE, self.summary.user_drops, 0)
                .context("write stats")?;
        }
        self.cgroup_paths(true)?;
        self.dns_names()?;
        self.sink.flush().context("flush trace")?;
        self.check_limits();
        Ok(())
    }
}

/// Run the pipeline: `kernel` must create the event source on the calling
/// (drain) thread and hand it to the closure it is given; `on_ready` runs on
/// the caller's thread once the source exists (every probe attached); then
/// `monitor` is called about every 100 ms on the caller's thread until the
/// pipeline stops (it may call `ctl.stop()`). Returns the sink (to be
/// finished by the caller) and the summary.
pub fn run_pipeline<S, K>(
    sink: &mut S,
    ctl: &Control,
    limits: &Limits,
    kernel: K,
    on_ready: impl FnOnce(),
    mut monitor: impl FnMut(&Control),
) -> Result<Summary>
where
    S: EventSink + Send,
    K: FnOnce(&mut dyn FnMut(&mut dyn EventSource) -> Result<()>) -> Result<()> + Send,
{
    let (ready_tx, ready_rx) = bounded::<()>(1);
    std::thread::scope(|s| {
        let drain = std::thread::Builder::new()
            .name("snoop-drain".into())
            .spawn_scoped(s, move || {
                let mut w = Writer {
                    sink,
                    ctl,
                    limits,
                    summary: Summary::default(),
                    last_counters: Counters::default(),
                    cgroups: CgroupNames::new(),
                    dns_streams: TcpStreams::default(),
                    dns_repeats: UdpRepeats::default(),
                    dns_pending: Vec::new(),
                };
                let r = kernel(&mut |src: &mut dyn EventSource| {
                    let _ = ready_tx.send(());
                    drain_loop(src, &mut w)
                });
                ctl.stop();
                r.map(|()| w.summary)
            })
            .context("spawn drain thread")?;

        let ready = ready_rx.recv().is_ok();
        if ready {
            on_ready();
            while !drain.is_finished() {
                monitor(ctl);
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        drain
            .join()
            .map_err(|_| anyhow::anyhow!("drain thread panicked"))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::skel::bytes_of;
    use crate::skel::types::snoop_msg;
    use crate::source::{KindCounters, ReplaySource};
    use snoop_format::{FileInfo, Table, Trace, TraceWriter, WriterOptions};

    fn msg(pid: u32, bytes: u32, dir: u8) -> Vec<u8> {
        let m = snoop_msg {
            kind: kind::MSG,
            dir,
            family: 2,
            proto: 6,
            pid,
            tid: pid,
            bytes,
            ts_ns: 1000 + u64::from(bytes),
            ..snoop_msg::default()
        };
        bytes_of(&m).to_vec()
    }

    /// The whole pipeline after the kernel, without root: replayed records
    /// (one of them garbage) end up as rows and stats in a real trace.
    #[test]
    fn replay_into_trace() {
        let mut recs: Vec<Vec<u8>> = (0..1000)
            .map(|i| msg(i % 7 + 1, i + 1, (i % 2) as u8))
            .collect();
        recs.push(vec![42, 1, 2]);
        let mut drops = Counters::default();
        drops[0] = KindCounters {
            events: 0,
            drops: 5,
        };
        let info = FileInfo::from_host(vec!["test".into()]);
        let mut w = TraceWriter::new(Vec::new(), &info, WriterOptions::default()).expect("writer");
        let ctl = Control::default();
        let summary = run_pipeline(
            &mut w,
            &ctl,
            &Limits::default(),
            |drain| {
                let mut src = ReplaySource::new(recs, 64, drops);
                drain(&mut src)
            },
            || {},
            |ctl| {
                if ctl.events.load(Ordering::Relaxed) + ctl.user_drops.load(Ordering::Relaxed)
                    >= 1001
                {
                    ctl.stop();
                }
            },
        )
        .expect("pipeline");
        assert_eq!(summary.events[kind::MSG as usize], 1000);
        assert_eq!(summary.user_drops, 1);
        assert_eq!(summary.kernel[0].drops, 5);
        let bytes = w.finish(2000).expect("finish");
        let t = Trace::from_bytes(bytes).expect("read back");
        assert_eq!(t.rows(Table::Messages), 1000);
        assert!(
            t.rows(Table::Stats) >= 2,
            "kernel drops and userspace losses are recorded"
        );
    }

    /// A packet set of `lens` runs (run i: length 100 + i, i + 1 packets).
    fn pktset(cookie: u64, lens: u8) -> Vec<u8> {
        let mut p = crate::skel::types::snoop_pktset {
            kind: kind::PKTSET,
            family: 2,
            proto: 6,
            ifindex: 1,
            cookie,
            pid: 9,
            n: lens,
            ..Default::default()
        };
        for (i, e) in p.e.iter_mut().enumerate().take(usize::from(lens)) {
            e.first_ns = 1000 + i as u64;
            e.last_ns = 2000 + i as u64;
            e.len = 100 + i as u32;
            e.count = i as u32 + 1;
            e.segs = 1;
        }
        bytes_of(&p).to_vec()
    }

    /// Each run of a packet set is a packet row with its count and span;
    /// the summary counts rows and wire packets; --max-events stays exact
    /// when a set crosses it.
    #[test]
    fn packet_sets_become_one_row_per_run() {
        let run = |recs: Vec<Vec<u8>>, max_events: Option<u64>| {
            let info = FileInfo::from_host(vec!["test".into()]);
            let mut w =
                TraceWriter::new(Vec::new(), &info, WriterOptions::default()).expect("writer");
            let ctl = Control::default();
            let limits = Limits {
                max_events,
                max_bytes: None,
            };
            let s = run_pipeline(
                &mut w,
                &ctl,
                &limits,
                |drain| drain(&mut ReplaySource::new(recs, 64, Counters::default())),
                || {},
                |ctl| {
                    // Every record replayed: 8 rows.
                    if ctl.events.load(Ordering::Relaxed) >= 8 {
                        ctl.stop();
                    }
                },
            )
            .expect("pipeline");
            let t = Trace::from_bytes(w.finish(5000).expect("finish")).expect("read back");
            (s, t)
        };
        // 4 + 1 + 3 runs of 10 + 1 + 6 packets.
        let (s, t) = run(vec![pktset(1, 4), pktset(2, 1), pktset(3, 3)], None);
        assert_eq!(s.events[kind::PKT as usize], 8);
        assert_eq!(s.wire_packets, 17);
        assert_eq!(t.rows(Table::Packets), 8);
        let (s, t) = run(vec![pktset(1, 4), pktset(2, 1), pktset(3, 3)], Some(6));
        assert_eq!(s.events[kind::PKT as usize], 6);
        assert_eq!(t.rows(Table::Packets), 6);
    }

    fn dns(pid: u32, ts_ns: u64, tcp: Option<u32>, payload: &[u8]) -> Vec<u8> {
        let mut d = crate::skel::types::snoop_dns {
            kind: kind::DNS,
            proto: if tcp.is_some() { 6 } else { 17 },
            len: payload.len() as u16,
            pid,
            tid: pid,
            seq: tcp.unwrap_or(0),
            ts_ns,
            cookie: 77,
            ..Default::default()
        };
        d.data[..payload.len()].copy_from_slice(payload);
        bytes_of(&d).to_vec()
    }

    /// DNS records become names in the trace (not rows): a UDP answer, a
    /// TCP answer behind its length prefix, a TCP continuation segment
    /// that is skipped, garbage that gives nothing; the kernel's DNS drops
    /// are stats of their own source.
    #[test]
    fn dns_records_become_names() {
        use crate::dns::tests::response;
        let udp = response("u.test", 1, &[("u.test", 1, vec![10, 0, 0, 1])]);
        let tcp = response("t.test", 1, &[("t.test", 1, vec![10, 0, 0, 2])]);
        let mut framed = (tcp.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&tcp);
        let recs = vec![
            dns(5, 100, None, &udp),
            dns(6, 200, Some(9000), &framed),
            dns(6, 300, Some(9001), &framed),
            dns(7, 400, None, &[0xff; 40]),
            msg(5, 10, 0),
        ];
        let mut drops = Counters::default();
        drops[kind::DNS as usize] = KindCounters {
            events: 4,
            drops: 2,
        };
        let info = FileInfo::from_host(vec!["test".into()]);
        let mut w = TraceWriter::new(Vec::new(), &info, WriterOptions::default()).expect("writer");
        let ctl = Control::default();
        let summary = run_pipeline(
            &mut w,
            &ctl,
            &Limits::default(),
            |drain| drain(&mut ReplaySource::new(recs, 64, drops)),
            || {},
            |ctl| {
                if ctl.events.load(Ordering::Relaxed) >= 1 {
                    ctl.stop();
                }
            },
        )
        .expect("pipeline");
        assert_eq!(summary.events[kind::DNS as usize], 4);
        assert_eq!(summary.dns_names, 2);
        let t = Trace::from_bytes(w.finish(2000).expect("finish")).expect("read back");
        let got: Vec<(u64, u32, &str, u8)> = t
            .dns()
            .iter()
            .map(|a| (a.ts_ns, a.pid, a.name.as_str(), a.addr[15]))
            .collect();
        assert_eq!(got, vec![(100, 5, "u.test", 1), (200, 6, "t.test", 2)]);
        assert_eq!(t.rows(Table::Messages), 1, "DNS records are no rows");
        let stats = t
            .chunks_of(Table::Stats)
            .flat_map(|i| {
                let b = t.read_chunk(i, snoop_format::ColumnSet::ALL).unwrap();
                let s = b.into_stats().unwrap();
                (0..s.source.len())
                    .map(|r| (s.source[r], s.dropped[r]))
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>();
        assert!(stats.contains(&(source::DNS, 2)), "{stats:?}");
    }

    /// Records still in the rings when the stop comes are all written,
    /// even when draining them takes longer than the flush interval.
    #[test]
    fn stop_drains_to_the_end() {
        /// Hands out a full batch per poll, slowly (5 ms), so draining the
        /// backlog crosses a flush deadline.
        struct Slow(std::collections::VecDeque<Vec<u8>>);
        impl EventSource for Slow {
            fn poll(&mut self, _: Duration, out: &mut RawBatch, max: usize) -> Result<()> {
                std::thread::sleep(Duration::from_millis(5));
                for _ in 0..max {
                    let Some(r) = self.0.pop_front() else { break };
                    out.push(&r);
                }
                Ok(())
            }
            fn counters(&mut self) -> Result<Counters> {
                Ok(Counters::default())
            }
        }
        let batches = (FLUSH_EVERY.as_millis() / 5 * 3 / 2) as u32; // ~1.5 s of draining
        let n = batches * BATCH_RECORDS as u32 + 7;
        let recs = (0..n).map(|i| msg(1, i % 60_000 + 1, 0)).collect();
        let info = FileInfo::from_host(vec!["test".into()]);
        let mut w = TraceWriter::new(Vec::new(), &info, WriterOptions::default()).expect("writer");
        let ctl = Control::default();
        ctl.stop(); // the stop comes first; the backlog is already there
        let s = run_pipeline(
            &mut w,
            &ctl,
            &Limits::default(),
            |drain| drain(&mut Slow(recs)),
            || {},
            |_| {},
        )
        .expect("pipeline");
        assert_eq!(s.events[kind::MSG as usize], u64::from(n));
    }

    /// A live source keeps emitting until it is detached, like attached
    /// BPF programs: every record it ever emitted must be written, and the
    /// counters read at the end must say exactly that many (records emitted
    /// between the last drain and the detach were once lost uncounted). The hook groups it reports land in the trace.
    #[test]
    fn records_until_detach_are_written_and_counted() {
        struct Live {
            emitted: u64,
            attached: bool,
            pending: Vec<Vec<u8>>,
        }
        impl Live {
            /// Producers never pause while attached: a few records arrive
            /// whenever time passes (before a poll, before a counter read).
            fn tick(&mut self) {
                if self.attached {
                    for _ in 0..3 {
                        self.emitted += 1;
                        self.pending
                            .push(msg(1, (self.emitted % 60_000) as u32 + 1, 0));
                    }
                }
            }
        }
        impl EventSource for Live {
            fn poll(&mut self, _: Duration, out: &mut RawBatch, max: usize) -> Result<()> {
                self.tick();
                let n = self.pending.len().min(max);
                for r in self.pending.drain(..n) {
                    out.push(&r);
                }
                Ok(())
            }
            fn counters(&mut self) -> Result<Counters> {
                self.tick();
                let mut c = Counters::default();
                c[kind::MSG as usize].events = self.emitted;
                Ok(c)
            }
            fn detach(&mut self) {
                self.attached = false;
            }
            fn hooks(&self) -> Vec<(String, String)> {
                vec![
                    ("messages".into(), "active".into()),
                    ("packets".into(), "refused: test".into()),
                ]
            }
        }
        let info = FileInfo::from_host(vec!["test".into()]);
        let mut w = TraceWriter::new(Vec::new(), &info, WriterOptions::default()).expect("writer");
        let ctl = Control::default();
        let mut src = Live {
            emitted: 0,
            attached: true,
            pending: Vec::new(),
        };
        let s = run_pipeline(
            &mut w,
            &ctl,
            &Limits::default(),
            |drain| drain(&mut src),
            || {},
            |ctl| {
                if ctl.events.load(Ordering::Relaxed) > 30 {
                    ctl.stop();
                }
            },
        )
        .expect("pipeline");
        assert_eq!(s.events[kind::MSG as usize], src.emitted);
        assert_eq!(s.kernel[kind::MSG as usize].events, src.emitted);
        let t = Trace::from_bytes(w.finish(5000).expect("finish")).expect("read back");
        assert_eq!(t.rows(Table::Messages), src.emitted);
        let hooks = t.hooks().expect("hooks block");
        assert_eq!(hooks.groups[1], ("packets".into(), "refused: test".into()));
    }

    #[test]
    fn max_events_stops() {
        let recs: Vec<Vec<u8>> = (0..500).map(|i| msg(1, i + 1, 0)).collect();
        let info = FileInfo::from_host(vec!["test".into()]);
        let mut w = TraceWriter::new(Vec::new(), &info, WriterOptions::default()).expect("writer");
        let ctl = Control::default();
        let limits = Limits {
            max_events: Some(100),
            max_bytes: None,
        };
        let s = run_pipeline(
            &mut w,
            &ctl,
            &limits,
            |drain| drain(&mut ReplaySource::new(recs, 50, Counters::default())),
            || {},
            |_| {},
        )
        .expect("pipeline");
        assert_eq!(s.events[0], 100);
    }
}
