//! Integration tests of the trace format: round trips of every table and
//! type (property-based), truncation at every byte offset, random byte
//! flips, and recovery of a file whose writer was killed. Every damaged file
//! must either recover a valid prefix or give an error — never panic.

use proptest::prelude::*;
use snoop_format::synth::{write_synthetic, SynthConfig};
use snoop_format::{
    col, ColumnSet, Direction, FileInfo, Flow, FormatError, ProcessKind, ProcessRow, Table,
    TcpOutcome, Trace, TraceWriter, WriterOptions,
};

fn info() -> FileInfo {
    FileInfo {
        host: "testhost".into(),
        kernel: "6.18.0".into(),
        snoop_version: "0.1.0".into(),
        command: vec!["snoop".into(), "record".into()],
        boot_to_wall_ns: 1_700_000_000_000_000_000,
        start_ns: 1_000,
        ifaces: vec![(1, "lo".into())],
    }
}

fn opts(chunk_rows: usize) -> WriterOptions {
    WriterOptions {
        chunk_rows,
        zstd_level: 3,
    }
}

/// A small trace with rows in every table, chunked small so truncation
/// tests see many chunk boundaries.
fn small_trace(complete: bool) -> Vec<u8> {
    let mut w = TraceWriter::new(Vec::new(), &info(), opts(16)).unwrap();
    write_synthetic(
        &mut w,
        SynthConfig {
            flows: 20,
            processes: 5,
            ..SynthConfig::default()
        },
        100,
    )
    .unwrap();
    let f = Flow {
        pid: 7,
        proto: 6,
        ..Flow::default()
    };
    w.push_packet(5_000, &f, 1500, Direction::Rx, 1).unwrap();
    let full = w.finish(10_000_000_000).unwrap();
    if complete {
        return full;
    }
    // What a killed writer leaves after its last flush: every chunk, no
    // footer, no trailer (the writer never seeks back).
    let t = Trace::from_bytes(full.clone()).unwrap();
    let end = t.chunks().last().map(|c| c.offset + c.len).unwrap() as usize;
    full[..end].to_vec()
}

/// Read every row of every chunk; returns the total rows decoded.
fn read_all(t: &Trace) -> Result<u64, FormatError> {
    let mut n = 0;
    for (i, c) in t.chunks().iter().enumerate() {
        let chunk = t.read_chunk(i, ColumnSet::ALL)?;
        n += match Table::from_id(c.table).unwrap() {
            Table::Processes => chunk.into_processes()?.ts.len(),
            Table::Stats => chunk.into_stats()?.ts.len(),
            _ => chunk.into_events()?.ts.len(),
        } as u64;
    }
    Ok(n)
}

#[test]
fn complete_file_reads_back() {
    let bytes = small_trace(true);
    let t = Trace::from_bytes(bytes).unwrap();
    assert!(t.is_complete());
    assert_eq!(t.rows(Table::Messages), 100);
    assert_eq!(t.rows(Table::Packets), 1);
    assert_eq!(t.rows(Table::Processes), 5);
    assert_eq!(
        read_all(&t).unwrap(),
        t.chunks().iter().map(|c| c.rows as u64).sum::<u64>()
    );
    assert_eq!(t.info(), &info());
    assert_eq!(t.end_ns(), Some(10_000_000_000));
}

/// Releasing a mapped chunk's pages after decoding it changes nothing a
/// reader sees: the same chunk decodes to the same rows again.
#[test]
fn released_chunks_read_back_the_same() {
    let mut w = TraceWriter::new(Vec::new(), &info(), opts(20_000)).unwrap();
    write_synthetic(&mut w, SynthConfig::default(), 100_000).unwrap();
    let bytes = w.finish(10_000_000_000).unwrap();
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("t.snp");
    std::fs::write(&p, bytes).unwrap();
    let t = Trace::open(&p).unwrap();
    for i in 0..t.chunks().len() {
        let a = t.read_chunk(i, ColumnSet::ALL).unwrap();
        t.release_chunk(i);
        let b = t.read_chunk(i, ColumnSet::ALL).unwrap();
        assert_eq!(format!("{a:?}"), format!("{b:?}"), "chunk {i}");
    }
    t.release_chunk(usize::MAX); // out of range: nothing happens
}

#[test]
fn killed_writer_recovers_every_complete_chunk() {
    let full = Trace::from_bytes(small_trace(true)).unwrap();
    let cut = small_trace(false);
    let t = Trace::from_bytes(cut).unwrap();
    assert!(!t.is_complete());
    let r = t.recovery().unwrap();
    assert_eq!(r.chunks, full.chunks().len());
    assert_eq!(r.ignored_bytes, 0);
    assert_eq!(read_all(&t).unwrap(), read_all(&full).unwrap());
}

#[test]
fn truncation_at_every_offset_recovers_a_prefix_or_errors() {
    let bytes = small_trace(true);
    let full = Trace::from_bytes(bytes.clone()).unwrap();
    let ends: Vec<u64> = full.chunks().iter().map(|c| c.offset + c.len).collect();
    let first = full.chunks()[0].offset;
    for cut in 0..bytes.len() {
        match Trace::from_bytes(bytes[..cut].to_vec()) {
            Ok(t) => {
                // Every chunk that ended before the cut is recovered, and
                // exactly the bytes after the last of them are ignored.
                let kept = ends.iter().filter(|&&e| e <= cut as u64).count();
                assert_eq!(t.chunks().len(), kept, "cut at {cut}");
                let r = t.recovery().expect("a truncated file is never complete");
                let kept_end = if kept == 0 { first } else { ends[kept - 1] };
                assert_eq!(r.ignored_bytes, cut as u64 - kept_end, "cut at {cut}");
                assert_eq!(read_all(&t).unwrap(), r.events, "cut at {cut}");
            }
            Err(e) => {
                // Only a file without a complete info block may fail to open.
                assert!((cut as u64) < first, "cut at {cut}: {e}");
            }
        }
    }
}

#[test]
fn byte_flips_never_panic() {
    let bytes = small_trace(true);
    let mut rng = snoop_format::synth::Rng::new(7);
    for _ in 0..3000 {
        let mut b = bytes.clone();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(b.len() as u64) as usize;
            b[at] ^= 1 << rng.below(8);
        }
        if let Ok(t) = Trace::from_bytes(b) {
            let _ = read_all(&t);
        }
    }
}

#[test]
fn bad_magic_and_newer_major_have_clear_errors() {
    let err = Trace::from_bytes(b"GIF89a not a trace at all, sorry".to_vec())
        .err()
        .unwrap();
    assert!(err.to_string().contains("not a snoop trace"), "{err}");
    let mut b = small_trace(true);
    b[8] = 2;
    let err = Trace::from_bytes(b).err().unwrap();
    let want = format!(
        "unsupported trace format version 2.{}",
        snoop_format::layout::MINOR
    );
    assert!(err.to_string().contains(&want), "{err}");
    let err = Trace::from_bytes(Vec::new()).err().unwrap();
    assert!(err.to_string().contains("too short"), "{err}");
}

#[test]
fn only_requested_columns_are_decoded() {
    let t = Trace::from_bytes(small_trace(true)).unwrap();
    let i = t.chunks_of(Table::Messages).next().unwrap();
    let b = t
        .read_chunk(i, ColumnSet::of(&[col::TS, col::BYTES]))
        .unwrap()
        .into_events()
        .unwrap();
    assert_eq!(b.ts.len(), b.rows);
    assert_eq!(b.bytes.len(), b.rows);
    assert!(b.flow.is_empty() && b.flows.pid.is_empty());
}

fn arb_flow() -> impl Strategy<Value = Flow> {
    (
        any::<u32>(),
        any::<u32>(),
        any::<[u8; 16]>(),
        any::<u64>(),
        any::<u64>(),
        any::<u32>(),
        any::<u8>(),
        any::<u8>(),
        any::<[u8; 16]>(),
        any::<u16>(),
        any::<[u8; 16]>(),
        any::<u16>(),
    )
        .prop_map(
            |(
                pid,
                tid,
                comm,
                cgroup,
                cookie,
                ifindex,
                family,
                proto,
                laddr,
                lport,
                raddr,
                rport,
            )| Flow {
                pid,
                tid,
                comm,
                cgroup,
                cookie,
                ifindex,
                family,
                proto,
                laddr,
                lport,
                raddr,
                rport,
            },
        )
}

#[derive(Debug, Clone)]
enum Row {
    Msg(u64, usize, u32, bool),
    Pkt(u64, usize, u32, bool, u16),
    Conn(u64, usize, u8, u8, u64, u64),
    Proc(u64, u8, u32, u32, u32, [u8; 16], i32, String),
    Stat(u64, u8, u64, u64),
}

fn arb_row() -> impl Strategy<Value = Row> {
    prop_oneof![
        (any::<u64>(), 0..8usize, any::<u32>(), any::<bool>())
            .prop_map(|(a, b, c, d)| Row::Msg(a, b, c, d)),
        (
            any::<u64>(),
            0..8usize,
            any::<u32>(),
            any::<bool>(),
            any::<u16>()
        )
            .prop_map(|(a, b, c, d, e)| Row::Pkt(a, b, c, d, e)),
        (
            any::<u64>(),
            0..8usize,
            any::<u8>(),
            any::<u8>(),
            any::<u64>(),
            any::<u64>()
        )
            .prop_map(|(a, b, c, d, e, f)| Row::Conn(a, b, c, d, e, f)),
        (
            any::<u64>(),
            0..3u8,
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<[u8; 16]>(),
            any::<i32>(),
            ".{0,40}"
        )
            .prop_map(|(a, b, c, d, e, f, g, h)| Row::Proc(a, b, c, d, e, f, g, h)),
        (any::<u64>(), any::<u8>(), any::<u64>(), any::<u64>())
            .prop_map(|(a, b, c, d)| Row::Stat(a, b, c, d)),
    ]
}

/// Rows of one table as comparable tuples, sorted (chunks sort by time and
/// the sort is stable, so compare as multisets).
fn canon(t: &Trace, table: Table) -> Vec<String> {
    let mut out = Vec::new();
    for i in t.chunks_of(table) {
        let c = t.read_chunk(i, ColumnSet::ALL).unwrap();
        match table {
            Table::Processes => {
                let b = c.into_processes().unwrap();
                for r in 0..b.rows {
                    out.push(format!(
                        "{} {} {} {} {} {:?} {} {:?}",
                        b.ts[r],
                        b.kind[r],
                        b.pid[r],
                        b.tid[r],
                        b.ppid[r],
                        b.comm[r],
                        b.exit_code[r],
                        b.filename[r]
                    ));
                }
            }
            Table::Stats => {
                let b = c.into_stats().unwrap();
                for r in 0..b.rows {
                    out.push(format!(
                        "{} {} {} {}",
                        b.ts[r], b.source[r], b.dropped[r], b.events[r]
                    ));
                }
            }
            _ => {
                let b = c.into_events().unwrap();
                for r in 0..b.rows {
                    let f = b.flow[r] as usize;
                    let fl = &b.flows;
                    let flow = Flow {
                        pid: fl.pid[f],
                        tid: fl.tid[f],
                        comm: fl.comm[f],
                        cgroup: fl.cgroup[f],
                        cookie: fl.cookie[f],
                        ifindex: fl.ifindex[f],
                        family: fl.family[f],
                        proto: fl.proto[f],
                        laddr: fl.laddr[f],
                        lport: fl.lport[f],
                        raddr: fl.raddr[f],
                        rport: fl.rport[f],
                    };
                    let rest = match table {
                        Table::Messages => format!("{} {}", b.bytes[r], b.dir[r]),
                        Table::Packets => format!("{} {} {}", b.bytes[r], b.dir[r], b.segs[r]),
                        _ => format!(
                            "{} {} {} {}",
                            b.old_state[r], b.new_state[r], b.bytes_acked[r], b.bytes_received[r]
                        ),
                    };
                    out.push(format!("{} {:?} {rest}", b.ts[r], flow));
                }
            }
        }
    }
    out.sort();
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_table_round_trips(flows in prop::collection::vec(arb_flow(), 8),
                               rows in prop::collection::vec(arb_row(), 0..300),
                               chunk_rows in 1usize..64) {
        let mut w = TraceWriter::new(Vec::new(), &info(), opts(chunk_rows)).unwrap();
        let mut expect: std::collections::BTreeMap<u8, Vec<String>> = Default::default();
        let dir = |rx: bool| if rx { Direction::Rx } else { Direction::Tx };
        for r in &rows {
            match r.clone() {
                Row::Msg(ts, f, n, rx) => {
                    w.push_message(ts, &flows[f], n, dir(rx)).unwrap();
                    expect.entry(1).or_default().push(format!("{ts} {:?} {n} {}", flows[f], rx as u8));
                }
                Row::Pkt(ts, f, n, rx, s) => {
                    w.push_packet(ts, &flows[f], n, dir(rx), s).unwrap();
                    expect.entry(2).or_default().push(format!("{ts} {:?} {n} {} {s}", flows[f], rx as u8));
                }
                Row::Conn(ts, f, o, n, a, b) => {
                    w.push_conn(ts, &flows[f], o, n, a, b).unwrap();
                    expect.entry(3).or_default().push(format!("{ts} {:?} {o} {n} {a} {b}", flows[f]));
                }
                Row::Proc(ts, k, pid, tid, ppid, comm, code, file) => {
                    let kind = ProcessKind::from_u8(k).unwrap();
                    w.push_process(&ProcessRow { ts_ns: ts, kind, pid, tid, ppid, comm, exit_code: code, filename: file.clone() }).unwrap();
                    expect.entry(4).or_default().push(format!("{ts} {k} {pid} {tid} {ppid} {comm:?} {code} {file:?}"));
                }
                Row::Stat(ts, s, d, e) => {
                    w.push_stats(ts, s, d, e).unwrap();
                    expect.entry(5).or_default().push(format!("{ts} {s} {d} {e}"));
                }
            }
        }
        let t = Trace::from_bytes(w.finish(1).unwrap()).unwrap();
        for table in Table::ALL {
            let mut e = expect.remove(&(table as u8)).unwrap_or_default();
            e.sort();
            prop_assert_eq!(canon(&t, table), e, "table {}", table.name());
        }
    }
}

#[test]
fn synthetic_workload_is_compact() {
    let mut w = TraceWriter::new(Vec::new(), &info(), WriterOptions::default()).unwrap();
    let totals = write_synthetic(&mut w, SynthConfig::default(), 1_000_000).unwrap();
    let bytes = w.finish(totals.end_ns).unwrap();
    let t = Trace::from_bytes(bytes.clone()).unwrap();
    let msg_bytes: u64 = t
        .chunks()
        .iter()
        .filter(|c| c.table == Table::Messages as u8)
        .map(|c| c.len)
        .sum();
    let per_event = msg_bytes as f64 / t.rows(Table::Messages) as f64;
    eprintln!(
        "synthetic: {per_event:.2} bytes per message event ({} file bytes)",
        bytes.len()
    );
    // The format's design target (FORMAT.md); a regression here is a format bug.
    assert!(per_event <= 5.0, "{per_event:.2} bytes per message event");
}

/// Sealing on the helper thread writes the very same file as sealing
/// inline: same chunks, same order, same bytes, through flushes and
/// more full chunks than can be in flight at once.
#[test]
fn background_sealing_writes_the_same_file() {
    let write = |background: bool| {
        let mut w = TraceWriter::new(Vec::new(), &info(), opts(64)).unwrap();
        if background {
            w.seal_in_background().unwrap();
        }
        for round in 0..3 {
            write_synthetic(
                &mut w,
                SynthConfig {
                    flows: 50,
                    processes: 5,
                    seed: round,
                    ..SynthConfig::default()
                },
                2_000,
            )
            .unwrap();
            w.flush().unwrap();
        }
        w.finish(10_000_000_000).unwrap()
    };
    let inline = write(false);
    let background = write(true);
    let t = Trace::from_bytes(background.clone()).unwrap();
    assert!(t.chunks().len() > 30, "many chunks: {}", t.chunks().len());
    assert_eq!(
        read_all(&t).unwrap(),
        read_all(&Trace::from_bytes(inline.clone()).unwrap()).unwrap()
    );
    assert!(inline == background, "files differ");
}

/// The hook groups a recorder writes after the info block (format 1.1)
/// read back from a complete and from a recovered file; a trace without
/// them (format 1.0) says so with `None`; a late call is refused, since
/// readers look for the block right after the info block.
#[test]
fn hook_groups_round_trip_and_survive_recovery() {
    let groups = vec![
        ("messages".to_string(), "active".to_string()),
        (
            "packets".to_string(),
            "refused: R1 invalid mem access".to_string(),
        ),
        (
            "iface".to_string(),
            "off: not requested (no --iface)".to_string(),
        ),
    ];
    let mut w = TraceWriter::new(Vec::new(), &info(), opts(16)).unwrap();
    w.write_hooks(&groups).unwrap();
    let flow = Flow {
        pid: 7,
        ..Flow::default()
    };
    for i in 0..100u64 {
        w.push_message(2_000 + i, &flow, 10, Direction::Tx).unwrap();
    }
    w.flush().unwrap();
    assert!(
        w.write_hooks(&groups).is_err(),
        "hooks after the first chunk must be refused"
    );
    let complete = w.finish(10_000).unwrap();
    let t = Trace::from_bytes(complete.clone()).unwrap();
    assert_eq!(t.hooks().map(|h| &h.groups), Some(&groups));
    assert_eq!(t.rows(Table::Messages), 100);
    assert_eq!(t.version(), format!("1.{}", snoop_format::layout::MINOR));

    // Cut off the footer: recovery scans past the hooks block.
    let cut = complete.len() - 200;
    let t = Trace::from_bytes(complete[..cut].to_vec()).unwrap();
    assert!(t.recovery().is_some());
    assert_eq!(t.hooks().map(|h| &h.groups), Some(&groups));
    assert!(t.rows(Table::Messages) > 0);

    // No hooks block: None, and the chunks still read.
    let t = Trace::from_bytes(small_trace(true)).unwrap();
    assert!(t.hooks().is_none());
    assert!(t.rows(Table::Messages) > 0);
}

/// A TCP state change's outcome (sk_err, retransmissions, RTTs,
/// segments; format 1.2) reads back row by row, also after the rows were
/// sorted by time; rows pushed without one read back as zeros.
#[test]
fn tcp_outcomes_round_trip() {
    let mut w = TraceWriter::new(Vec::new(), &info(), opts(16)).unwrap();
    let flow = Flow {
        pid: 9,
        proto: 6,
        cookie: 77,
        ..Flow::default()
    };
    let out = TcpOutcome {
        sk_err: 111,
        retrans_segs: 3,
        srtt_us: 250,
        min_rtt_us: 40,
        segs_out: 12,
        segs_in: 10,
    };
    // Pushed out of time order: the CLOSE first.
    w.push_conn_outcome(3_000, &flow, 2, 7, 1, 0, &out).unwrap();
    w.push_conn(1_000, &flow, 7, 2, 0, 0).unwrap();
    let t = Trace::from_bytes(w.finish(10_000).unwrap()).unwrap();
    let c = t.chunks_of(Table::Connections).next().unwrap();
    let b = t
        .read_chunk(c, ColumnSet::ALL)
        .unwrap()
        .into_events()
        .unwrap();
    assert_eq!(b.ts, vec![1_000, 3_000]);
    assert_eq!(b.outcome(0), Some(TcpOutcome::default()));
    assert_eq!(b.outcome(1), Some(out));
}

/// Connections of a trace written before format 1.2 (the
/// committed v1.0 fixture) have no outcome columns: they read as absent
/// (`None`), never as zeros that would claim a clean close.
#[test]
fn old_traces_have_no_tcp_outcomes() {
    let p =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/v1-synthetic.snp");
    let t = Trace::open(&p).unwrap();
    assert_eq!(t.version(), "1.0");
    let mut rows = 0;
    for c in t.chunks_of(Table::Connections) {
        let b = t
            .read_chunk(c, ColumnSet::ALL)
            .unwrap()
            .into_events()
            .unwrap();
        assert!(b.sk_err.is_empty() && b.retrans_segs.is_empty());
        for i in 0..b.rows {
            assert_eq!(b.outcome(i), None);
        }
        rows += b.rows;
    }
    assert!(rows > 0, "the fixture has connection rows");
}

/// A run of packets (format 1.4: count, last time, TCP flags) reads back
/// row by row after the rows were sorted by time; a single packet reads
/// as a run of 1 ending where it starts.
#[test]
fn packet_runs_round_trip() {
    let mut w = TraceWriter::new(Vec::new(), &info(), opts(16)).unwrap();
    let flow = Flow {
        pid: 9,
        proto: 6,
        cookie: 77,
        ..Flow::default()
    };
    w.push_packet_run(5_000, 9_000, 40, &flow, 1500, Direction::Rx, 1, 0x18)
        .unwrap();
    w.push_packet(1_000, &flow, 52, Direction::Tx, 1).unwrap();
    let t = Trace::from_bytes(w.finish(10_000).unwrap()).unwrap();
    let c = t.chunks_of(Table::Packets).next().unwrap();
    let b = t
        .read_chunk(c, ColumnSet::ALL)
        .unwrap()
        .into_events()
        .unwrap();
    assert_eq!(b.ts, vec![1_000, 5_000]);
    assert_eq!((b.count(0), b.last_ns(0), b.tcp_flags[0]), (1, 1_000, 0));
    assert_eq!(
        (b.count(1), b.last_ns(1), b.tcp_flags[1]),
        (40, 9_000, 0x18)
    );
    assert_eq!(b.bytes, vec![52, 1500]);
}

/// Packets of a trace written before format 1.4 (the committed real
/// loopback fixture) have no run columns: every row is one packet.
#[test]
fn old_traces_have_single_packets() {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/loopback.snp");
    let t = Trace::open(&p).unwrap();
    let mut rows = 0;
    for c in t.chunks_of(Table::Packets) {
        let b = t
            .read_chunk(c, ColumnSet::ALL)
            .unwrap()
            .into_events()
            .unwrap();
        assert!(b.count.is_empty() && b.span_ns.is_empty() && b.tcp_flags.is_empty());
        for i in 0..b.rows {
            assert_eq!((b.count(i), b.last_ns(i)), (1, b.ts[i]));
        }
        rows += b.rows;
    }
    assert!(rows > 0, "the fixture has packet rows");
}

/// Cgroup id -> path blocks (format 1.2) written between chunks
/// are found in a complete file (in the gaps of the chunk index) and in a
/// recovered one, merged by id; the chunks around them read as before.
#[test]
fn cgroup_paths_round_trip_and_survive_recovery() {
    let mut w = TraceWriter::new(Vec::new(), &info(), opts(16)).unwrap();
    w.write_hooks(&[("messages".into(), "active".into())])
        .unwrap();
    let flow = Flow {
        pid: 7,
        cgroup: 42,
        ..Flow::default()
    };
    w.write_cgroups(&[(42, "/system.slice/nginx.service".into())])
        .unwrap();
    for i in 0..40u64 {
        w.push_message(2_000 + i, &flow, 10, Direction::Tx).unwrap();
    }
    w.flush().unwrap();
    w.write_cgroups(&[(1, "/".into()), (99, "/docker/abc".into())])
        .unwrap();
    for i in 0..40u64 {
        w.push_message(3_000 + i, &flow, 10, Direction::Tx).unwrap();
    }
    w.flush().unwrap();
    assert!(w.write_hooks(&[]).is_err(), "hooks come first");
    let complete = w.finish(10_000).unwrap();
    let want = [
        (1, "/".to_string()),
        (42, "/system.slice/nginx.service".to_string()),
        (99, "/docker/abc".to_string()),
    ];
    let t = Trace::from_bytes(complete.clone()).unwrap();
    assert!(t.recovery().is_none());
    assert_eq!(t.cgroups(), &want[..]);
    assert_eq!(t.rows(Table::Messages), 80);
    assert!(t.hooks().is_some());
    let cut = complete.len() - 100;
    let t = Trace::from_bytes(complete[..cut].to_vec()).unwrap();
    assert!(t.recovery().is_some());
    assert_eq!(t.cgroups(), &want[..]);
    // A trace without such blocks has none.
    assert!(Trace::from_bytes(small_trace(true))
        .unwrap()
        .cgroups()
        .is_empty());
}

/// DNS name blocks (format 1.3) written between chunks are found in a
/// complete file and in a recovered one, in time order, beside cgroup
/// blocks; fixtures written before 1.3 hold none.
#[test]
fn dns_names_round_trip_and_survive_recovery() {
    use snoop_format::DnsAnswer;
    let mut w = TraceWriter::new(Vec::new(), &info(), opts(16)).unwrap();
    w.write_hooks(&[("dns".into(), "active".into())]).unwrap();
    let flow = Flow {
        pid: 7,
        ..Flow::default()
    };
    let a = |ts_ns: u64, name: &str, last: u8| DnsAnswer {
        ts_ns,
        pid: 7,
        name: name.into(),
        cnames: vec![format!("edge.{name}")],
        addr: snoop_format::addr_bytes(format!("10.0.0.{last}").parse().unwrap()),
        ttl: 60,
    };
    w.write_dns(&[a(1_500, "a.example", 1)]).unwrap();
    for i in 0..40u64 {
        w.push_message(2_000 + i, &flow, 10, Direction::Tx).unwrap();
    }
    w.flush().unwrap();
    w.write_cgroups(&[(1, "/".into())]).unwrap();
    w.write_dns(&[a(2_500, "b.example", 2), a(2_600, "a.example", 3)])
        .unwrap();
    for i in 0..40u64 {
        w.push_message(3_000 + i, &flow, 10, Direction::Tx).unwrap();
    }
    w.flush().unwrap();
    let complete = w.finish(10_000).unwrap();
    let want = [
        a(1_500, "a.example", 1),
        a(2_500, "b.example", 2),
        a(2_600, "a.example", 3),
    ];
    let t = Trace::from_bytes(complete.clone()).unwrap();
    assert_eq!(t.dns(), &want[..]);
    assert_eq!(t.cgroups().len(), 1);
    assert_eq!(t.rows(Table::Messages), 80);
    let cut = complete.len() - 100;
    let t = Trace::from_bytes(complete[..cut].to_vec()).unwrap();
    assert!(t.recovery().is_some());
    assert_eq!(t.dns(), &want[..]);
    for f in ["v1-synthetic.snp", "v1-recovered.snp", "loopback.snp"] {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures")
            .join(f);
        let t = Trace::open(&p).unwrap();
        assert!(t.minor() < 3 && t.dns().is_empty(), "{f}");
    }
}
