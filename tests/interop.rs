//! snoop's traces in the tools people already use. A real recording of
//! TCP and UDP traffic this test makes, exported as pcapng, read back by
//! tshark: every conversation's frames and bytes are snoop's packets and
//! wire bytes, the UDP conversation is exactly the datagrams sent, and every
//! packet names its owning thread in its comment; the committed loopback
//! fixture (TCP over IPv4, UDP over IPv6) is checked the same way without
//! root. Three traces exported as
//! a Hive-partitioned Parquet dataset (two of one host, appended in two
//! runs, one of another; a repeated export skipped) give, through the
//! README's DuckDB query, exactly the per-process bytes of
//! `snoop analyze --by pid` and of the traces' own rows; a trace that spans
//! midnight lands in two date partitions, under its host name escaped.
//!
//! The pcapng test needs root (eBPF) and tshark; the dataset test needs
//! DuckDB for Python. Without them the tests print why and pass, unless
//! SNOOP_REQUIRE_BPF=1 (CI), then they fail.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use snoop_format::{ColumnSet, Direction, FileInfo, Flow, Table, Trace, TraceWriter};

mod common;
use common::*;

/// Whether missing tools must fail the test (CI) rather than skip it.
fn required() -> bool {
    std::env::var("SNOOP_REQUIRE_BPF").as_deref() == Ok("1")
}

/// Skip (or fail under CI) when `what` is missing.
fn missing(test: &str, what: &str) -> bool {
    if required() {
        panic!("{test}: {what} is missing and SNOOP_REQUIRE_BPF=1 (scripts/setup.sh installs it)");
    }
    eprintln!("skipping {test}: {what} is missing (scripts/setup.sh installs it)");
    true
}

fn name_thread(comm: &str) {
    let name = std::ffi::CString::new(comm).unwrap();
    // SAFETY: PR_SET_NAME reads a NUL-terminated string (this thread's name).
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr() as libc::c_ulong, 0, 0, 0) };
}

/// What the traffic was: the TCP connection's ports and the UDP ports.
struct Traffic {
    tcp_client: u16,
    tcp_server: u16,
    udp_tx: u16,
    udp_rx: u16,
}

/// A TCP exchange (client sends `up` bytes, server answers `down`) and
/// `count` UDP datagrams of `size` bytes, each end in its own named thread.
fn traffic(names: &[String; 4], up: usize, down: usize, count: usize, size: usize) -> Traffic {
    let [srv, cli, utx, urx] = names.clone();
    let (ptx, prx) = mpsc::channel();
    let server = std::thread::spawn(move || {
        name_thread(&srv);
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        ptx.send(l.local_addr().unwrap()).unwrap();
        let (mut s, _) = l.accept().unwrap();
        let mut buf = vec![0u8; up];
        s.read_exact(&mut buf).unwrap();
        s.write_all(&vec![3u8; down]).unwrap();
    });
    let to = prx.recv().unwrap();
    let tcp_server = to.port();
    let client = std::thread::spawn(move || {
        name_thread(&cli);
        let mut s = TcpStream::connect(to).unwrap();
        let port = s.local_addr().unwrap().port();
        s.write_all(&vec![5u8; up]).unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        assert_eq!(got.len(), down);
        port
    });
    let tcp_client = client.join().unwrap();
    server.join().unwrap();

    let (ptx, prx) = mpsc::channel();
    let receiver = std::thread::spawn(move || {
        name_thread(&urx);
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        ptx.send(rx.local_addr().unwrap()).unwrap();
        let mut buf = vec![0u8; 65536];
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut got = 0;
        while got < count && Instant::now() < deadline {
            if rx.recv(&mut buf).is_ok() {
                got += 1;
            }
        }
        assert_eq!(got, count, "datagrams received");
    });
    let to = prx.recv().unwrap();
    let sender = std::thread::spawn(move || {
        name_thread(&utx);
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.connect(to).unwrap();
        // A few dozen small datagrams fit the receive buffer: no pacing.
        for _ in 0..count {
            assert_eq!(tx.send(&vec![9u8; size]).unwrap(), size);
        }
        tx.local_addr().unwrap().port()
    });
    let udp_tx = sender.join().unwrap();
    receiver.join().unwrap();
    Traffic {
        tcp_client,
        tcp_server,
        udp_tx,
        udp_rx: to.port(),
    }
}

/// `tshark ARGS`' standard output, checking it succeeded.
fn tshark(args: &[&str]) -> String {
    let out = Command::new("tshark").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "tshark {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A conversation: protocol and its two ends, in order.
type Conv = (String, (String, u16), (String, u16));

fn conv(proto: &str, a: (String, u16), b: (String, u16)) -> Conv {
    if a <= b {
        (proto.to_string(), a, b)
    } else {
        (proto.to_string(), b, a)
    }
}

fn endpoint(s: &str) -> (String, u16) {
    let (a, p) = s.rsplit_once(':').unwrap();
    (a.to_string(), p.parse().unwrap())
}

/// `-z conv,tcp` / `-z conv,udp`: total frames and the shown byte total
/// (value, unit multiplier) per conversation.
fn tshark_convs(file: &Path) -> BTreeMap<Conv, (u64, f64, f64)> {
    let f = file.to_str().unwrap();
    let text = tshark(&["-r", f, "-q", "-z", "conv,tcp", "-z", "conv,udp"]);
    let mut out = BTreeMap::new();
    let mut proto = "";
    for line in text.lines() {
        if line.starts_with("TCP Conversations") {
            proto = "TCP";
        } else if line.starts_with("UDP Conversations") {
            proto = "UDP";
        }
        let t: Vec<&str> = line.split_whitespace().collect();
        if t.len() < 12 || t[1] != "<->" {
            continue;
        }
        let unit = match t[11] {
            "bytes" => 1.0,
            "kB" => 1e3,
            "MB" => 1e6,
            "GB" => 1e9,
            u => panic!("unknown unit {u:?} in {line:?}"),
        };
        let key = conv(proto, endpoint(t[0]), endpoint(t[2]));
        let frames: u64 = t[9].replace(',', "").parse().unwrap();
        let shown: f64 = t[10].replace(',', "").parse().unwrap();
        out.insert(key, (frames, shown, unit));
    }
    out
}

/// One frame as tshark reads it.
struct Frame {
    len: u64,
    conv: Conv,
    src_port: u16,
    dst_port: u16,
    outbound: bool,
    comment: String,
}

fn tshark_frames(file: &Path) -> Vec<Frame> {
    let f = file.to_str().unwrap();
    let mut fields = vec!["-r", f, "-T", "fields", "-E", "separator=|"];
    for e in [
        "frame.len",
        "ip.src",
        "ipv6.src",
        "ip.dst",
        "ipv6.dst",
        "tcp.srcport",
        "udp.srcport",
        "tcp.dstport",
        "udp.dstport",
        "frame.packet_flags_direction",
    ] {
        fields.extend(["-e", e]);
    }
    // The comment field is frame.comment in tshark 4.x, pkt_comment before.
    let comment_field = if Command::new("tshark")
        .args(["-r", f, "-c", "1", "-T", "fields", "-e", "frame.comment"])
        .output()
        .unwrap()
        .status
        .success()
    {
        "frame.comment"
    } else {
        "pkt_comment"
    };
    fields.extend(["-e", comment_field]);
    tshark(&fields)
        .lines()
        .map(|l| {
            let c: Vec<&str> = l.split('|').collect();
            let src = if c[1].is_empty() { c[2] } else { c[1] };
            let dst = if c[3].is_empty() { c[4] } else { c[3] };
            let (proto, sp, dp) = if c[5].is_empty() {
                ("UDP", c[6], c[8])
            } else {
                ("TCP", c[5], c[7])
            };
            let (sp, dp): (u16, u16) = (sp.parse().unwrap(), dp.parse().unwrap());
            let flags = u32::from_str_radix(c[9].trim_start_matches("0x"), 16).unwrap();
            Frame {
                len: c[0].parse().unwrap(),
                conv: conv(proto, (src.into(), sp), (dst.into(), dp)),
                src_port: sp,
                dst_port: dp,
                outbound: flags & 3 == 2,
                comment: c[10].to_string(),
            }
        })
        .collect()
}

/// Read `out` (exported from `trace`) with tshark and check every
/// conversation against `snoop analyze --by conn`: `-z conv` frames and
/// the frames' bytes are snoop's packets and wire bytes (plus the 14-byte
/// Ethernet header of a loopback frame). Returns the frames and the exact
/// (frames, bytes) per conversation.
fn check_against_analyze(trace: &Path, out: &Path) -> (Vec<Frame>, BTreeMap<Conv, (u64, u64)>) {
    let frames = tshark_frames(out);
    let convs = tshark_convs(out);

    // snoop's view: packets and IP bytes per conversation.
    let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout_of(&[
        "analyze",
        trace.to_str().unwrap(),
        "--by",
        "conn",
        "--format",
        "json",
        "--top",
        "0",
    ]))
    .unwrap();
    let mut snoop: BTreeMap<Conv, (u64, u64)> = BTreeMap::new();
    for r in &rows {
        let s = |k: &str| r[k].as_str().unwrap().to_string();
        let n = |k: &str| r[k].as_u64().unwrap();
        let e = snoop
            .entry(conv(
                &s("proto"),
                (s("src"), n("sport") as u16),
                (s("dst"), n("dport") as u16),
            ))
            .or_default();
        e.0 += n("tx_packets") + n("rx_packets");
        e.1 += n("tx_wire_bytes") + n("rx_wire_bytes");
    }
    snoop.retain(|_, v| v.0 > 0);

    // tshark's exact bytes per conversation.
    let mut exact: BTreeMap<Conv, (u64, u64)> = BTreeMap::new();
    for f in &frames {
        let e = exact.entry(f.conv.clone()).or_default();
        e.0 += 1;
        e.1 += f.len;
    }
    assert_eq!(
        convs.keys().collect::<Vec<_>>(),
        snoop.keys().collect::<Vec<_>>(),
        "the conversations tshark sees are snoop's"
    );
    for (k, &(packets, wire)) in &snoop {
        let (frames_z, shown, unit) = convs[k];
        let (frames_x, bytes_x) = exact[k];
        assert_eq!(frames_z, packets, "{k:?}: -z conv frames = snoop packets");
        assert_eq!(frames_x, packets, "{k:?}: frames read = snoop packets");
        // Loopback has an Ethernet header: 14 bytes per frame over snoop's IP bytes.
        assert_eq!(bytes_x, wire + 14 * packets, "{k:?}: frame bytes");
        assert!(
            (shown * unit - bytes_x as f64).abs() < unit,
            "{k:?}: -z conv shows {shown} x {unit} bytes, frames hold {bytes_x}"
        );
    }

    (frames, exact)
}

#[test]
fn pcapng_of_the_loopback_fixture_matches_analyze() {
    let test = "pcapng_of_the_loopback_fixture_matches_analyze";
    if Command::new("tshark").arg("--version").output().is_err() && missing(test, "tshark") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let trace = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/loopback.snp");
    let out = dir.path().join("f.pcapng");
    stdout_of(&[
        "export",
        trace.to_str().unwrap(),
        "--table",
        "packets",
        "-o",
        out.to_str().unwrap(),
    ]);
    // TCP over IPv4 and UDP over IPv6, every packet owned.
    let (frames, exact) = check_against_analyze(&trace, &out);
    assert_eq!(
        frames.len() as u64,
        snoop_format::Trace::open(&trace)
            .unwrap()
            .rows(Table::Packets)
    );
    assert!(exact.keys().any(|k| k.0 == "UDP" && k.1 .0 == "::1"));
    assert!(exact.keys().any(|k| k.0 == "TCP" && k.1 .0 == "127.0.0.1"));
    assert!(frames.iter().all(|f| f.comment.starts_with("pid=")));
}

#[test]
fn pcapng_export_reads_back_in_tshark() {
    let test = "pcapng_export_reads_back_in_tshark";
    let Some(_g) = bpf_or_skip(test) else {
        return;
    };
    if Command::new("tshark").arg("--version").output().is_err() && missing(test, "tshark") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("t.snp");
    let id = std::process::id() % 100_000;
    let names = ["pS", "pC", "pU", "pR"].map(|p| format!("{p}{id}"));
    let mut args = Vec::new();
    for n in &names {
        args.extend(["--comm", n.as_str()]);
    }
    let (up, down, count, size) = (200_000, 30_000, 40, 500);
    let rec = start_recorder(&trace, &args, &[]);
    let t = traffic(&names, up, down, count, size);
    rec.stop();

    let out = dir.path().join("t.pcapng");
    let o = stdout_of(&[
        "export",
        trace.to_str().unwrap(),
        "--table",
        "packets",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.is_empty());
    let (frames, exact) = check_against_analyze(&trace, &out);

    // What the test sent: the UDP conversation is exactly the datagrams,
    // once leaving the sender and once arriving (loopback).
    let udp = conv(
        "UDP",
        ("127.0.0.1".into(), t.udp_tx),
        ("127.0.0.1".into(), t.udp_rx),
    );
    let per = (size + 8 + 20 + 14) as u64;
    assert_eq!(
        exact.get(&udp),
        Some(&(2 * count as u64, 2 * count as u64 * per))
    );
    let tcp = conv(
        "TCP",
        ("127.0.0.1".into(), t.tcp_client),
        ("127.0.0.1".into(), t.tcp_server),
    );
    assert!(exact.contains_key(&tcp), "the test's TCP connection");
    assert!(
        exact[&tcp].1 >= 2 * (up + down) as u64,
        "TCP payload on the wire"
    );

    // Every packet names the thread whose socket it is.
    let pid = std::process::id();
    let owner = |port: u16| -> &str {
        match port {
            p if p == t.tcp_server => &names[0],
            p if p == t.tcp_client => &names[1],
            p if p == t.udp_tx => &names[2],
            p if p == t.udp_rx => &names[3],
            _ => "",
        }
    };
    let mut checked = 0;
    for f in &frames {
        if f.conv != tcp && f.conv != udp {
            continue;
        }
        let local = if f.outbound { f.src_port } else { f.dst_port };
        assert_eq!(
            f.comment,
            format!("pid={pid} comm={}", owner(local)),
            "packet {:?} {}",
            f.conv,
            if f.outbound { "out" } else { "in" }
        );
        checked += 1;
    }
    assert!(checked >= 2 * count);

    // Per-process statistics in the section header (capinfos prints them).
    let caps = Command::new("capinfos").arg(&out).output().unwrap();
    let caps = String::from_utf8_lossy(&caps.stdout);
    let want = format!(
        "pid={pid} tx_packets={count} tx_bytes={} rx_packets=0 rx_bytes=0 comm={}",
        count * (size + 28),
        names[2]
    );
    assert!(caps.contains(&want), "{want:?} not in\n{caps}");
}

/// Message bytes per (host, pid, comm, dir) read straight from traces.
fn trace_bytes(paths: &[&Path]) -> HashMap<(String, u64, String), (u64, u64)> {
    let mut out: HashMap<_, (u64, u64)> = HashMap::new();
    for p in paths {
        let t = Trace::open(p).unwrap();
        let host = t.info().host.clone();
        for i in t.chunks_of(Table::Messages).collect::<Vec<_>>() {
            let b = t
                .read_chunk(i, ColumnSet::ALL)
                .and_then(|c| c.into_events())
                .unwrap();
            for r in 0..b.rows {
                let f = b.flow[r] as usize;
                let key = (
                    host.clone(),
                    u64::from(b.flows.pid[f]),
                    snoop_format::comm_str(&b.flows.comm[f]),
                );
                let e = out.entry(key).or_default();
                if b.dir[r] == 0 {
                    e.0 += u64::from(b.bytes[r]);
                } else {
                    e.1 += u64::from(b.bytes[r]);
                }
            }
        }
    }
    out
}

/// The README's DuckDB query, with DIR replaced.
fn readme_duckdb_query(dir: &Path) -> String {
    let readme = include_str!("../README.md");
    let start = readme
        .find("```sql\n-- DuckDB")
        .expect("README has a ```sql block starting with -- DuckDB");
    let body = &readme[start + "```sql\n".len()..];
    let end = body.find("```").unwrap();
    body[..end].replace("DIR", dir.to_str().unwrap())
}

#[test]
fn dataset_in_duckdb_matches_analyze_by_pid() {
    let test = "dataset_in_duckdb_matches_analyze_by_pid";
    let has_duckdb = Command::new("python3")
        .args(["-c", "import duckdb"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_duckdb && missing(test, "DuckDB for Python (python3 -m pip install duckdb)") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    for (name, seed, host) in [("a", "1", "web-1"), ("b", "2", "web-1"), ("c", "3", "db-7")] {
        let out = p(&format!("{name}.snp"));
        let o = Command::new(SNOOP)
            .args([
                "synth",
                "--events",
                "30000",
                "--flows",
                "60",
                "--processes",
                "12",
            ])
            .args(["--seed", seed, "--host", host, "-o"])
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let ds = p("ds");
    let export = |files: &[&str]| {
        let mut c = Command::new(SNOOP);
        c.arg("export");
        for f in files {
            c.arg(p(f));
        }
        let o = c.arg("--dataset").arg(&ds).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stderr).unwrap()
    };
    export(&["a.snp", "c.snp"]);
    export(&["b.snp"]);
    let parts = |d: &Path| std::fs::read_dir(d).map(|r| r.count()).unwrap_or(0);
    let web = ds.join("table=messages/host=web-1/date=2026-01-01");
    assert_eq!(
        parts(&web),
        2,
        "the second export added a part beside the first"
    );
    let again = export(&["a.snp"]);
    assert!(
        again.contains("skipping") && again.contains("already in"),
        "{again}"
    );
    assert_eq!(parts(&web), 2, "a repeated export adds nothing");

    let sql = readme_duckdb_query(&ds);
    let py = format!(
        "import duckdb, json\nrows = duckdb.sql({sql:?}).fetchall()\n\
         print(json.dumps([[r[0], r[1], r[2], int(r[3]), int(r[4])] for r in rows]))"
    );
    let o = Command::new("python3").args(["-c", &py]).output().unwrap();
    assert!(
        o.status.success(),
        "duckdb: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let rows: Vec<(String, u64, String, u64, u64)> = serde_json::from_slice(&o.stdout).unwrap();
    let duck: HashMap<(String, u64, String), (u64, u64)> = rows
        .into_iter()
        .map(|(h, pid, comm, tx, rx)| ((h, pid, comm), (tx, rx)))
        .collect();

    let files = ["a.snp", "b.snp", "c.snp"].map(p);
    let mut args = vec!["analyze".to_string()];
    args.extend(files.iter().map(|f| f.to_str().unwrap().to_string()));
    args.extend(["--by", "pid", "--format", "json", "--top", "0"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout_of(&args)).unwrap();
    let mut analyze: HashMap<(String, u64, String), (u64, u64)> = HashMap::new();
    for r in &rows {
        // Two files of one host are labelled "web-1 (a)", "web-1 (b)".
        let label = r["host"].as_str().unwrap();
        let host = label.split(" (").next().unwrap().to_string();
        let key = (
            host,
            r["pid"].as_u64().unwrap(),
            r["comm"].as_str().unwrap().to_string(),
        );
        let e = analyze.entry(key).or_default();
        e.0 += r["tx_bytes"].as_u64().unwrap();
        e.1 += r["rx_bytes"].as_u64().unwrap();
    }
    let direct = trace_bytes(&files.each_ref().map(|f| f.as_path()));
    assert!(duck.keys().any(|k| k.0 == "db-7") && duck.keys().any(|k| k.0 == "web-1"));
    assert_eq!(
        duck, analyze,
        "DuckDB over the dataset = snoop analyze --by pid"
    );
    assert_eq!(
        duck, direct,
        "DuckDB over the dataset = the traces' own rows"
    );

    // Times are the trace's wall clock: first and last message of c.snp.
    let t = Trace::open(&files[2]).unwrap();
    let (mut lo, mut hi) = (u64::MAX, 0);
    for i in t.chunks_of(Table::Messages).collect::<Vec<_>>() {
        let b = t
            .read_chunk(i, ColumnSet::ALL)
            .and_then(|c| c.into_events())
            .unwrap();
        lo = lo.min(*b.ts.iter().min().unwrap());
        hi = hi.max(*b.ts.iter().max().unwrap());
    }
    let wall = |ts: u64| ts as i64 + t.info().boot_to_wall_ns;
    let py = format!(
        "import duckdb\nprint(*duckdb.sql(\"SELECT min(time_ns), max(time_ns), \
         epoch_us(min(time)), min(date)::VARCHAR, count(DISTINCT date) FROM \
         read_parquet('{}/table=messages/*/*/*.parquet', hive_partitioning = true) \
         WHERE host = 'db-7'\").fetchall()[0])",
        ds.display()
    );
    let o = Command::new("python3").args(["-c", &py]).output().unwrap();
    assert!(
        o.status.success(),
        "duckdb: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let got = String::from_utf8(o.stdout).unwrap();
    assert_eq!(
        got.trim(),
        format!(
            "{} {} {} 2026-01-01 1",
            wall(lo),
            wall(hi),
            wall(lo).div_euclid(1000)
        )
    );
}

#[test]
fn dataset_splits_a_trace_at_midnight_and_escapes_the_host() {
    let test = "dataset_splits_a_trace_at_midnight_and_escapes_the_host";
    let has_duckdb = Command::new("python3")
        .args(["-c", "import duckdb"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_duckdb && missing(test, "DuckDB for Python (python3 -m pip install duckdb)") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("m.snp");
    // Boot clock 0 is one second before 2026-01-02 00:00:00 UTC.
    let midnight: i64 = 1_767_312_000_000_000_000;
    let info = FileInfo {
        host: "../a b".into(),
        kernel: "test".into(),
        snoop_version: "0.1.0".into(),
        command: vec!["test".into()],
        boot_to_wall_ns: midnight - 1_000_000_000,
        start_ns: 0,
        ifaces: Vec::new(),
    };
    let mut w = TraceWriter::new(
        std::fs::File::create(&trace).unwrap(),
        &info,
        Default::default(),
    )
    .unwrap();
    let flow = Flow {
        pid: 42,
        tid: 42,
        comm: *b"late\0\0\0\0\0\0\0\0\0\0\0\0",
        family: 2,
        proto: 17,
        ..Flow::default()
    };
    // 7 messages of 100 bytes before midnight, 3 of 1000 after.
    for i in 0..7u64 {
        w.push_message(100_000_000 * i, &flow, 100, Direction::Tx)
            .unwrap();
    }
    for i in 0..3u64 {
        w.push_message(1_000_000_000 + i, &flow, 1000, Direction::Tx)
            .unwrap();
    }
    w.finish(2_000_000_000).unwrap();

    let ds = dir.path().join("ds");
    let o = Command::new(SNOOP)
        .arg("export")
        .arg(&trace)
        .arg("--dataset")
        .arg(&ds)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let host = ds.join("table=messages/host=..%2Fa%20b");
    let mut dates: Vec<String> = std::fs::read_dir(&host)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    dates.sort();
    assert_eq!(dates, ["date=2026-01-01", "date=2026-01-02"]);
    let py = format!(
        "import duckdb\nfor r in duckdb.sql(\"SELECT date::VARCHAR, count(*), sum(bytes) FROM \
         read_parquet('{}/table=messages/*/*/*.parquet', hive_partitioning = true) \
         GROUP BY date ORDER BY date\").fetchall(): print(*r)",
        ds.display()
    );
    let o = Command::new("python3").args(["-c", &py]).output().unwrap();
    assert!(
        o.status.success(),
        "duckdb: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        String::from_utf8(o.stdout).unwrap(),
        "2026-01-01 7 700\n2026-01-02 3 3000\n"
    );
}
