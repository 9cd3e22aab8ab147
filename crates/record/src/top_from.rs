//! `snoop top --from FILE`: the live table of `snoop top`, replayed from a
//! recorded trace. Messages are bucketed by trace time into INTERVAL-long
//! slices starting at the recording's start, and each slice is printed as
//! the same `PID COMM RX_KB TX_KB RXSUM_KB TXSUM_KB SUM_KB` table, with the
//! running totals the live view would have shown at that moment. Needs no
//! privileges and no eBPF: it only reads the file.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use snoop_format::{col, comm_bytes, ColumnSet, Direction, Table, Trace};

use crate::top::{render, TopArgs, TopRow, TopTable};

/// Which processes to show (empty lists: all).
#[derive(Clone, Debug, Default)]
pub struct TopFilter {
    /// Process ids.
    pub pids: Vec<u32>,
    /// comms (as the kernel stores them, truncated to 15 bytes).
    pub comms: Vec<[u8; 16]>,
}

impl TopFilter {
    pub(crate) fn from_args(args: &TopArgs) -> TopFilter {
        TopFilter {
            pids: args.pid.clone(),
            comms: args.comm.iter().map(|c| comm_bytes(c)).collect(),
        }
    }

    /// A process is shown if no filter is set, or its pid or comm is listed.
    pub(crate) fn wants(&self, pid: u32, comm: &[u8; 16]) -> bool {
        (self.pids.is_empty() && self.comms.is_empty())
            || self.pids.contains(&pid)
            || self.comms.contains(comm)
    }
}

#[derive(Default)]
struct Acc {
    comm: [u8; 16],
    /// (main thread, ts) of `comm`: the main thread's latest name wins.
    comm_rank: (bool, u64),
    tid: u32,
    rx: u64,
    tx: u64,
}

/// One printed table: its offset from the recording start and its rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slice {
    /// Start of the interval, ns since the recording started.
    pub offset_ns: u64,
    /// Rows as the live `top` would print them.
    pub rows: Vec<TopRow>,
}

/// The most tables `top --from` prints without a COUNT: a trace whose span
/// (or a crafted or clock-skewed end time) needs more is refused with an
/// error instead of printing (or, before, allocating) without end.
pub const MAX_TABLES: u64 = 1_000_000;

/// Cut the messages of `trace` into `interval_ns` slices (at most `count`).
pub fn slices(
    trace: &Trace,
    filter: &TopFilter,
    interval_ns: u64,
    count: Option<u64>,
) -> Result<Vec<Slice>> {
    let mut out = Vec::new();
    for_each_slice(trace, filter, interval_ns, count, |s| {
        out.push(s);
        Ok(())
    })?;
    Ok(out)
}

/// Cut the messages of `trace` into `interval_ns` slices (at most `count`)
/// and hand each to `each` in time order, holding one table at a time.
/// The tables run from the recording start to its end or its last message,
/// whichever is later; more than [`MAX_TABLES`] of them is an error unless
/// `count` bounds them.
pub fn for_each_slice(
    trace: &Trace,
    filter: &TopFilter,
    interval_ns: u64,
    count: Option<u64>,
    mut each: impl FnMut(Slice) -> Result<()>,
) -> Result<()> {
    let interval_ns = interval_ns.max(1);
    let start = trace.info().start_ns;
    let want = ColumnSet::of(&[
        col::TS,
        col::FLOW,
        col::BYTES,
        col::DIR,
        col::F_PID,
        col::F_TID,
        col::F_COMM,
    ]);
    let mut buckets: BTreeMap<u64, HashMap<u32, Acc>> = BTreeMap::new();
    let chunks: Vec<usize> = trace.chunks_of(Table::Messages).collect();
    for i in chunks {
        let b = trace
            .read_chunk(i, want)
            .and_then(|c| c.into_events())
            .with_context(|| format!("read messages chunk {i}"))?;
        let n = b.rows.min(b.ts.len()).min(b.bytes.len()).min(b.dir.len());
        for r in 0..n {
            let f = b.flow[r] as usize;
            let (Some(&pid), Some(comm)) = (b.flows.pid.get(f), b.flows.comm.get(f)) else {
                continue;
            };
            let tid = b.flows.tid.get(f).copied().unwrap_or(pid);
            if !filter.wants(pid, comm) {
                continue;
            }
            let ts = b.ts[r];
            let bucket = ts.saturating_sub(start) / interval_ns;
            if count.is_some_and(|c| bucket >= c) {
                continue;
            }
            let a = buckets.entry(bucket).or_default().entry(pid).or_default();
            let rank = (tid == pid, ts);
            if comm[0] != 0 && rank >= a.comm_rank {
                a.comm = *comm;
                a.comm_rank = rank;
                a.tid = tid;
            }
            let bytes = u64::from(b.bytes[r]);
            if b.dir[r] == Direction::Rx as u8 {
                a.rx = a.rx.saturating_add(bytes);
            } else {
                a.tx = a.tx.saturating_add(bytes);
            }
        }
    }
    if count == Some(0) {
        return Ok(());
    }
    // The last slice is the one holding the recording's end (or the last
    // message of a recovered file without an end time).
    let by_end = trace
        .end_ns()
        .map(|e| e.saturating_sub(start).saturating_sub(1) / interval_ns)
        .unwrap_or(0);
    let by_data = buckets.keys().next_back().copied().unwrap_or(0);
    let mut last = by_end.max(by_data);
    if let Some(c) = count {
        last = last.min(c.saturating_sub(1));
    }
    if last >= MAX_TABLES {
        let what = if by_data >= by_end {
            "last message"
        } else {
            "end"
        };
        bail!(
            "the trace needs {} tables of {} s from its start to its {what} \
             (more than {MAX_TABLES}): give a longer INTERVAL or a COUNT",
            last.saturating_add(1),
            interval_ns / 1_000_000_000
        );
    }
    let table = TopTable::default();
    for k in 0..=last {
        if let Some(b) = buckets.remove(&k) {
            for (pid, a) in b {
                table.add_msg(pid, a.tid, &a.comm, a.rx, Direction::Rx);
                table.add_msg(pid, a.tid, &a.comm, a.tx, Direction::Tx);
            }
        }
        each(Slice {
            offset_ns: k * interval_ns,
            rows: table.take_interval(),
        })?;
    }
    Ok(())
}

/// Print the tables of a recorded trace: all at once, or with `--speed`
/// one every INTERVAL / speed.
pub fn run_top_from(path: &Path, args: &TopArgs) -> Result<()> {
    let trace = Trace::open(path).with_context(|| format!("open {}", path.display()))?;
    if let Some(r) = trace.recovery() {
        eprintln!(
            "snoop: {} was not closed cleanly: {} chunks / {} events recovered, {} bytes ignored",
            snoop_format::Shown(&path.display().to_string()),
            r.chunks,
            r.events,
            r.ignored_bytes
        );
    }
    let interval_ns = args.interval.saturating_mul(1_000_000_000);
    let pace = match args.speed {
        Some(x) => Some(
            Duration::try_from_secs_f64(args.interval as f64 / x)
                .with_context(|| format!("--speed {x} with INTERVAL {} s", args.interval))?,
        ),
        None => None,
    };
    let mut due = Instant::now();
    let mut o = std::io::stdout().lock();
    for_each_slice(
        &trace,
        &TopFilter::from_args(args),
        interval_ns,
        args.count,
        |s| {
            if let Some(p) = pace {
                // The first table after one interval, as the live view.
                due += p;
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
            }
            write!(
                o,
                "\n+{}s\n{}",
                s.offset_ns / 1_000_000_000,
                render(&s.rows)
            )
            .and_then(|()| if pace.is_some() { o.flush() } else { Ok(()) })
            .context("write table")
        },
    )
    .with_context(|| format!("top --from {}", path.display()))?;
    o.flush().context("write table")
}

#[cfg(test)]
mod tests {
    use super::*;
    use snoop_format::{comm_bytes, FileInfo, Flow, TraceWriter, WriterOptions, AF_INET};

    const S: u64 = 1_000_000_000;

    fn flow(pid: u32, comm: &str) -> Flow {
        Flow {
            pid,
            tid: pid,
            comm: comm_bytes(comm),
            family: AF_INET,
            proto: 6,
            ..Flow::default()
        }
    }

    /// 3.5 s of traffic of two processes, closed at start + 4 s.
    fn trace(finish: bool) -> Trace {
        let start = 100 * S;
        let info = FileInfo {
            start_ns: start,
            ..FileInfo::default()
        };
        let opts = WriterOptions {
            chunk_rows: 3,
            ..WriterOptions::default()
        };
        let mut buf = Vec::new();
        let mut w = TraceWriter::new(&mut buf, &info, opts).expect("writer");
        let (a, b) = (flow(10, "alpha"), flow(20, "beta"));
        // Second 0: alpha sends 4 KiB, receives 2 KiB; beta receives 1 KiB.
        w.push_message(start + 1, &a, 4096, Direction::Tx)
            .expect("push");
        w.push_message(start + 2, &a, 2048, Direction::Rx)
            .expect("push");
        w.push_message(start + S / 2, &b, 1024, Direction::Rx)
            .expect("push");
        // Second 1: nothing. Second 2: beta sends 10 KiB.
        w.push_message(start + 2 * S + 5, &b, 10240, Direction::Tx)
            .expect("push");
        // Second 3: alpha receives 3 KiB.
        w.push_message(start + 3 * S + S / 2, &a, 3072, Direction::Rx)
            .expect("push");
        if finish {
            w.finish(start + 4 * S).expect("finish");
        } else {
            // A killed recorder: sealed chunks, no footer.
            w.flush().expect("flush");
            drop(w);
        }
        let bytes = buf;
        Trace::from_bytes(bytes).expect("trace")
    }

    fn row(s: &Slice, pid: u32) -> &TopRow {
        s.rows.iter().find(|r| r.pid == pid).expect("row")
    }

    #[test]
    fn slices_follow_trace_time() {
        let t = trace(true);
        let s = slices(&t, &TopFilter::default(), S, None).expect("slices");
        assert_eq!(s.len(), 4, "one table per second up to the end");
        assert_eq!(
            s.iter().map(|x| x.offset_ns).collect::<Vec<_>>(),
            [0, S, 2 * S, 3 * S]
        );
        let a0 = row(&s[0], 10);
        assert_eq!((a0.comm.as_str(), a0.rx, a0.tx), ("alpha", 2048, 4096));
        assert_eq!(s[0].rows[0].pid, 10, "sorted by interval traffic");
        assert_eq!((row(&s[1], 10).rx, row(&s[1], 10).rx_sum), (0, 2048));
        let b2 = row(&s[2], 20);
        assert_eq!((b2.tx, b2.tx_sum, b2.rx_sum), (10240, 10240, 1024));
        assert_eq!(s[2].rows[0].pid, 20);
        let a3 = row(&s[3], 10);
        assert_eq!((a3.rx, a3.rx_sum, a3.tx_sum), (3072, 5120, 4096));
        let text = render(&s[3].rows);
        assert!(text.starts_with("PID     COMM"), "{text}");
        assert!(text.contains("alpha"), "{text}");
    }

    #[test]
    fn recovered_trace_ends_at_its_last_message() {
        let t = trace(false);
        assert!(!t.is_complete());
        let s = slices(&t, &TopFilter::default(), S, None).expect("slices");
        assert_eq!(s.len(), 4);
        assert_eq!(row(&s[3], 10).rx_sum, 5120);
    }

    #[test]
    fn count_interval_and_filters() {
        let t = trace(true);
        let two = slices(&t, &TopFilter::default(), 2 * S, None).expect("slices");
        assert_eq!(two.len(), 2);
        assert_eq!(row(&two[0], 10).rx, 2048);
        assert_eq!(row(&two[1], 20).tx, 10240);
        let first = slices(&t, &TopFilter::default(), S, Some(1)).expect("slices");
        assert_eq!(first.len(), 1);
        assert_eq!(row(&first[0], 10).tx_sum, 4096);
        assert!(slices(&t, &TopFilter::default(), S, Some(0))
            .expect("slices")
            .is_empty());
        let only_beta = TopFilter {
            comms: vec![comm_bytes("beta")],
            ..TopFilter::default()
        };
        let s = slices(&t, &only_beta, S, None).expect("slices");
        assert!(s.iter().all(|x| x.rows.iter().all(|r| r.pid == 20)));
        let only_alpha = TopFilter {
            pids: vec![10],
            ..TopFilter::default()
        };
        let s = slices(&t, &only_alpha, S, None).expect("slices");
        assert_eq!(row(&s[3], 10).rx_sum, 5120);
        assert!(s.iter().all(|x| x.rows.iter().all(|r| r.pid == 10)));
    }

    /// An end time far past the recording start (crafted,
    /// or a skewed clock) is refused with an error naming the way out, not
    /// met with one table per interval; a COUNT still shows the start.
    #[test]
    fn a_far_end_is_an_error_not_a_blow_up() {
        let start = 100 * S;
        let info = FileInfo {
            start_ns: start,
            ..FileInfo::default()
        };
        let mut buf = Vec::new();
        let mut w = TraceWriter::new(&mut buf, &info, WriterOptions::default()).expect("writer");
        w.push_message(start + 1, &flow(10, "alpha"), 100, Direction::Tx)
            .expect("push");
        // Ten years later.
        w.finish(start + 10 * 365 * 24 * 3600 * S).expect("finish");
        let t = Trace::from_bytes(buf).expect("trace");
        let e = slices(&t, &TopFilter::default(), S, None).expect_err("too many tables");
        let msg = format!("{e:#}");
        assert!(
            msg.contains("more than 1000000") && msg.contains("INTERVAL or a COUNT"),
            "{msg}"
        );
        let s = slices(&t, &TopFilter::default(), S, Some(3)).expect("COUNT bounds it");
        assert_eq!(s.len(), 3);
        assert_eq!(row(&s[0], 10).tx, 100);
        // A message far in the future (skewed clock) counts the same way.
        let mut buf = Vec::new();
        let mut w = TraceWriter::new(&mut buf, &info, WriterOptions::default()).expect("writer");
        w.push_message(start + 1, &flow(10, "alpha"), 100, Direction::Tx)
            .expect("push");
        w.push_message(u64::MAX - 1, &flow(10, "alpha"), 100, Direction::Tx)
            .expect("push");
        w.flush().expect("flush");
        drop(w);
        let t = Trace::from_bytes(buf).expect("trace");
        let e = slices(&t, &TopFilter::default(), S, None).expect_err("too many tables");
        assert!(format!("{e:#}").contains("last message"), "{e:#}");
    }

    /// A process shows its latest name, and its main
    /// thread's rather than a worker thread's (as ps does).
    #[test]
    fn latest_main_thread_name_wins() {
        let start = 100 * S;
        let info = FileInfo {
            start_ns: start,
            ..FileInfo::default()
        };
        let mut buf = Vec::new();
        let mut w = TraceWriter::new(&mut buf, &info, WriterOptions::default()).expect("writer");
        let old = flow(10, "alpha");
        let renamed = flow(10, "omega");
        let worker = Flow {
            tid: 11,
            comm: comm_bytes("worker"),
            ..old
        };
        w.push_message(start + 1, &old, 100, Direction::Tx)
            .expect("push");
        w.push_message(start + S + 1, &renamed, 100, Direction::Tx)
            .expect("push");
        w.push_message(start + S + 2, &worker, 100, Direction::Tx)
            .expect("push");
        w.push_message(start + 2 * S + 2, &worker, 100, Direction::Tx)
            .expect("push");
        w.finish(start + 3 * S).expect("finish");
        let t = Trace::from_bytes(buf).expect("trace");
        let s = slices(&t, &TopFilter::default(), S, None).expect("slices");
        let names: Vec<&str> = s.iter().map(|x| row(x, 10).comm.as_str()).collect();
        assert_eq!(names, ["alpha", "omega", "omega"]);
        assert_eq!(row(&s[2], 10).tx_sum, 400);
        // The live table, fed message by message.
        let live = TopTable::default();
        live.add_msg(10, 10, &comm_bytes("alpha"), 1, Direction::Tx);
        live.add_msg(10, 11, &comm_bytes("worker"), 1, Direction::Tx);
        assert_eq!(live.take_interval()[0].comm, "alpha");
        live.add_msg(10, 10, &comm_bytes("omega"), 1, Direction::Tx);
        assert_eq!(live.take_interval()[0].comm, "omega");
        // A process whose main thread was never seen: its thread's latest name.
        live.add_msg(20, 21, &comm_bytes("w1"), 1, Direction::Rx);
        live.add_msg(20, 22, &comm_bytes("w2"), 1, Direction::Rx);
        let rows = live.take_interval();
        assert_eq!(
            rows.iter().find(|r| r.pid == 20).map(|r| r.comm.as_str()),
            Some("w2")
        );
    }

    /// Sums saturate instead of overflowing.
    #[test]
    fn sums_saturate() {
        let t = TopTable::default();
        let c = comm_bytes("big");
        t.add(1, &c, u64::MAX, Direction::Tx);
        t.add(1, &c, u64::MAX, Direction::Rx);
        t.add(1, &c, 5, Direction::Rx);
        t.add(2, &c, u64::MAX, Direction::Tx);
        let rows = t.take_interval();
        assert_eq!((rows[0].rx_sum, rows[0].tx_sum), (u64::MAX, u64::MAX));
        let text = render(&rows);
        assert!(text.contains(&(u64::MAX / 1024).to_string()), "{text}");
    }
}
