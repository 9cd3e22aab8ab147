//! Integration tests of snoop-analyze: hand-built traces with exact known
//! answers for every report (throughput, conns, sizes, remotes, timeline,
//! lifecycle, coverage, summary, html), filters, several hosts, a recovered
//! trace, golden JSON for a small synthetic fixture, replay and export, and
//! bad input (missing, corrupt, empty files; unknown names) giving clear
//! errors without panics.

use std::path::{Path, PathBuf};

use clap::Parser;
use serde_json::Value;
use snoop_analyze::{
    is_usage_error, run_analyze, run_export, run_replay, AnalyzeArgs, ExportArgs, ReplayArgs,
};
use snoop_format::synth::{write_synthetic, SynthConfig};
use snoop_format::{
    addr_bytes, comm_bytes, Direction, FileInfo, Flow, ProcessKind, ProcessRow, TraceWriter,
    WriterOptions,
};

const S: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;
const WALL: i64 = 1_700_000_000_000_000_000;

#[derive(Parser)]
struct AnalyzeCli {
    #[command(flatten)]
    a: AnalyzeArgs,
}

#[derive(Parser)]
struct ReplayCli {
    #[command(flatten)]
    a: ReplayArgs,
}

#[derive(Parser)]
struct ExportCli {
    #[command(flatten)]
    a: ExportArgs,
}

fn analyze(args: &[&str]) -> anyhow::Result<()> {
    let cli = AnalyzeCli::try_parse_from(std::iter::once("analyze").chain(args.iter().copied()))?;
    run_analyze(&cli.a)
}

/// `--report REPORT --format json` of `trace`, written to DIR/REPORT.json;
/// returns the JSON text.
fn report_json(trace: &Path, dir: &Path, report: &str) -> String {
    let out = dir.join(format!("{report}.json"));
    analyze(&[
        trace.to_str().unwrap(),
        "--report",
        report,
        "--format",
        "json",
        "-o",
        out.to_str().unwrap(),
    ])
    .unwrap();
    std::fs::read_to_string(&out).unwrap()
}

fn info(host: &str) -> FileInfo {
    FileInfo {
        host: host.into(),
        kernel: "6.18.0-test".into(),
        snoop_version: "0.1.0".into(),
        command: vec!["snoop".into(), "record".into()],
        boot_to_wall_ns: WALL,
        start_ns: S,
        ifaces: vec![(1, "lo".into()), (2, "eth0".into())],
    }
}

#[allow(clippy::too_many_arguments)]
fn flow(
    pid: u32,
    comm: &str,
    proto: u8,
    l: &str,
    lport: u16,
    r: &str,
    rport: u16,
    cookie: u64,
) -> Flow {
    Flow {
        pid,
        tid: pid,
        comm: comm_bytes(comm),
        cgroup: 1,
        cookie,
        ifindex: 0,
        family: 2,
        proto,
        laddr: addr_bytes(l.parse().unwrap()),
        lport,
        raddr: addr_bytes(r.parse().unwrap()),
        rport,
    }
}

fn pkt(f: &Flow, pid: u32, cookie: u64, ifindex: u32) -> Flow {
    Flow {
        pid,
        tid: pid,
        comm: if pid == 0 { [0; 16] } else { f.comm },
        cgroup: 0,
        cookie,
        ifindex,
        ..*f
    }
}

fn proc_row(
    ts: u64,
    kind: ProcessKind,
    pid: u32,
    ppid: u32,
    comm: &str,
    file: &str,
    code: i32,
) -> ProcessRow {
    ProcessRow {
        ts_ns: ts,
        kind,
        pid,
        tid: pid,
        ppid,
        comm: comm_bytes(comm),
        exit_code: code,
        filename: file.into(),
    }
}

/// The hand-built trace whose answers the tests know exactly (see the
/// comments for every expected number).
fn write_known(path: &Path, host: &str) {
    let file = std::fs::File::create(path).unwrap();
    let mut w = TraceWriter::new(file, &info(host), WriterOptions::default()).unwrap();
    let curl = flow(100, "curl", 6, "10.0.0.1", 40000, "93.184.216.34", 443, 11);
    let dns = flow(200, "dns", 17, "10.0.0.1", 5353, "8.8.8.8", 53, 22);
    w.push_process(&proc_row(S / 2, ProcessKind::Fork, 200, 1, "bash", "", 0))
        .unwrap();
    w.push_process(&proc_row(
        6 * S / 10,
        ProcessKind::Exec,
        200,
        1,
        "dns",
        "/usr/bin/dns",
        0,
    ))
    .unwrap();
    w.push_process(&proc_row(
        9 * S / 10,
        ProcessKind::Exec,
        100,
        1,
        "curl",
        "/usr/bin/curl",
        0,
    ))
    .unwrap();
    w.push_process(&proc_row(
        2 * S + 600 * MS,
        ProcessKind::Exit,
        100,
        1,
        "curl",
        "",
        0,
    ))
    .unwrap();
    // curl: TCP 1.0 s .. 2.5 s; tx 100 + 50, rx 1000 + 3000.
    w.push_conn(S, &curl, 7, 2, 0, 0).unwrap();
    w.push_conn(S + MS, &pkt(&curl, 0, 11, 0), 2, 1, 0, 0)
        .unwrap();
    w.push_message(S + 10 * MS, &curl, 100, Direction::Tx)
        .unwrap();
    w.push_message(S + 20 * MS, &curl, 1000, Direction::Rx)
        .unwrap();
    w.push_message(S + 500 * MS, &curl, 3000, Direction::Rx)
        .unwrap();
    w.push_message(2 * S + 200 * MS, &curl, 50, Direction::Tx)
        .unwrap();
    w.push_conn(2 * S + 500 * MS, &pkt(&curl, 0, 11, 0), 1, 7, 151, 4001)
        .unwrap();
    // dns: UDP, two bursts 38.8 s apart (> 30 s idle: two connections).
    w.push_message(S + 100 * MS, &dns, 40, Direction::Tx)
        .unwrap();
    w.push_message(S + 200 * MS, &dns, 120, Direction::Rx)
        .unwrap();
    w.push_message(40 * S, &dns, 40, Direction::Tx).unwrap();
    w.push_message(40 * S + 100 * MS, &dns, 100, Direction::Rx)
        .unwrap();
    // Packets on eth0 (ifindex 2).
    w.push_packet(S + 10 * MS, &pkt(&curl, 0, 11, 2), 152, Direction::Tx, 1)
        .unwrap(); // cookie
    w.push_packet(S + 20 * MS, &pkt(&curl, 0, 0, 2), 1052, Direction::Rx, 1)
        .unwrap(); // 5-tuple
    w.push_packet(S + 500 * MS, &pkt(&curl, 0, 0, 2), 3052, Direction::Rx, 1)
        .unwrap(); // 5-tuple
    w.push_packet(S + 200 * MS, &pkt(&dns, 0, 0, 2), 148, Direction::Rx, 1)
        .unwrap(); // 5-tuple
    let icmp = flow(0, "", 1, "10.0.0.1", 0, "10.0.0.254", 0, 0);
    w.push_packet(S + 300 * MS, &pkt(&icmp, 0, 0, 2), 84, Direction::Rx, 1)
        .unwrap(); // icmp
    let stray = flow(0, "", 6, "10.0.0.1", 9999, "1.2.3.4", 5555, 0);
    w.push_packet(S + 310 * MS, &pkt(&stray, 0, 0, 2), 60, Direction::Rx, 1)
        .unwrap(); // no socket
    let fwd = flow(0, "", 6, "192.168.5.5", 80, "1.2.3.4", 5556, 0);
    w.push_packet(S + 320 * MS, &pkt(&fwd, 0, 0, 2), 70, Direction::Rx, 1)
        .unwrap(); // forwarded
    let kern = flow(0, "", 6, "10.0.0.1", 2049, "10.0.0.9", 700, 0);
    w.push_packet(S + 330 * MS, &pkt(&kern, 0, 99, 2), 40, Direction::Tx, 1)
        .unwrap(); // kernel socket
    let ssh = flow(300, "sshd", 6, "10.0.0.1", 22, "10.0.0.7", 50000, 0);
    w.push_packet(S + 340 * MS, &pkt(&ssh, 300, 77, 2), 90, Direction::Tx, 1)
        .unwrap(); // owner
    w.push_stats(41 * S, 0, 2, 8).unwrap();
    // Map pressure: not a drop, reported on its own.
    w.push_stats(41 * S, snoop_format::source::OWNER_MAP_FULL, 0, 5)
        .unwrap();
    w.push_stats(41 * S, snoop_format::source::OWNER_EVICTIONS, 0, 3)
        .unwrap();
    w.finish(41 * S).unwrap();
}

struct Fx {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    trace: String,
}

fn known() -> Fx {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("known.snp");
    write_known(&p, "host-a");
    Fx {
        dir: d.path().to_path_buf(),
        trace: p.display().to_string(),
        _dir: d,
    }
}

fn json(fx: &Fx, args: &[&str]) -> Vec<Value> {
    let out = fx.dir.join(format!("out-{}.json", rand_name(args)));
    let mut a: Vec<&str> = vec![&fx.trace];
    a.extend_from_slice(args);
    let o = out.display().to_string();
    a.extend(["--format", "json", "-o", &o]);
    analyze(&a).unwrap();
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    v.as_array().unwrap().clone()
}

fn rand_name(args: &[&str]) -> String {
    args.join("_").replace(['/', ' ', '.', ':'], "-")
}

fn row<'a>(rows: &'a [Value], key: &str, val: u64) -> &'a Value {
    rows.iter()
        .find(|r| r[key] == val)
        .unwrap_or_else(|| panic!("no row with {key}={val} in {rows:?}"))
}

#[test]
fn throughput_by_pid_exact() {
    let fx = known();
    let rows = json(&fx, &["--by", "pid"]);
    assert_eq!(rows.len(), 4, "{rows:#?}");
    let curl = row(&rows, "pid", 100);
    assert_eq!(curl["comm"], "curl");
    assert_eq!(curl["tx_bytes"], 150);
    assert_eq!(curl["rx_bytes"], 4000);
    assert_eq!(curl["tx_msgs"], 2);
    assert_eq!(curl["rx_msgs"], 2);
    assert_eq!(curl["tx_wire_bytes"], 152);
    assert_eq!(curl["rx_wire_bytes"], 4104);
    assert_eq!(curl["tx_packets"], 1);
    assert_eq!(curl["rx_packets"], 2);
    assert_eq!(curl["first_ns"], S + 10 * MS);
    assert_eq!(curl["last_ns"], 2 * S + 200 * MS);
    assert_eq!(curl["tx_peak_bps"].as_f64().unwrap(), 800.0);
    assert_eq!(curl["rx_peak_bps"].as_f64().unwrap(), 32000.0);
    let avg = curl["tx_avg_bps"].as_f64().unwrap();
    assert!((avg - 150.0 * 8.0 / 1.19).abs() < 1e-6, "{avg}");
    let dns = row(&rows, "pid", 200);
    assert_eq!(
        (dns["tx_bytes"].as_u64(), dns["rx_bytes"].as_u64()),
        (Some(80), Some(220))
    );
    assert_eq!(dns["rx_wire_bytes"], 148);
    assert_eq!(dns["tx_wire_bytes"], 0);
    let sshd = row(&rows, "pid", 300);
    assert_eq!(sshd["comm"], "sshd");
    assert_eq!(sshd["tx_wire_bytes"], 90);
    assert_eq!(sshd["tx_bytes"], 0);
    let un = row(&rows, "pid", 0);
    assert_eq!(un["comm"], "[unattributed]");
    assert_eq!(un["rx_wire_bytes"], 84 + 60 + 70);
    assert_eq!(un["tx_wire_bytes"], 40);
    // Ordered by traffic.
    assert_eq!(rows[0]["pid"], 100);
    assert_eq!(rows[1]["pid"], 200);
    let fields: Vec<&String> = rows[0].as_object().unwrap().keys().collect();
    for f in [
        "pid",
        "comm",
        "tx_bytes",
        "rx_bytes",
        "tx_msgs",
        "rx_msgs",
        "tx_wire_bytes",
        "rx_wire_bytes",
        "tx_packets",
        "rx_packets",
        "first_ns",
        "last_ns",
        "tx_avg_bps",
        "rx_avg_bps",
        "tx_peak_bps",
        "rx_peak_bps",
    ] {
        assert!(fields.iter().any(|k| *k == f), "missing {f}");
    }
}

#[test]
fn throughput_other_keys() {
    let fx = known();
    let rows = json(&fx, &["--by", "port"]);
    let p443 = row(&rows, "port", 443);
    assert_eq!(p443["tx_bytes"], 150);
    let p53 = row(&rows, "port", 53);
    assert_eq!(p53["rx_bytes"], 220);
    let rows = json(&fx, &["--by", "proto"]);
    let tcp = rows.iter().find(|r| r["proto"] == "TCP").unwrap();
    assert_eq!(tcp["tx_bytes"], 150);
    assert!(rows
        .iter()
        .any(|r| r["proto"] == "ICMP" && r["rx_wire_bytes"] == 84));
    let rows = json(&fx, &["--by", "remote"]);
    assert_eq!(
        rows.iter().find(|r| r["remote"] == "8.8.8.8").unwrap()["tx_bytes"],
        80
    );
    let rows = json(&fx, &["--by", "iface"]);
    let eth0 = rows.iter().find(|r| r["iface"] == "eth0").unwrap();
    assert_eq!(eth0["rx_wire_bytes"], 1052 + 3052 + 148 + 84 + 60 + 70);
    let rows = json(&fx, &["--by", "conn"]);
    let c = rows.iter().find(|r| r["dport"] == 443).unwrap();
    assert_eq!(
        (c["src"].as_str(), c["dst"].as_str(), c["sport"].as_u64()),
        (Some("10.0.0.1"), Some("93.184.216.34"), Some(40000))
    );
    assert_eq!(c["rx_wire_bytes"], 4104);
    for key in ["tid", "comm", "cgroup"] {
        assert!(!json(&fx, &["--by", key]).is_empty());
    }
}

#[test]
fn filters() {
    let fx = known();
    let rows = json(&fx, &["--by", "pid", "--pid", "100"]);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["rx_wire_bytes"], 4104);
    let rows = json(&fx, &["--by", "pid", "--comm", "dns"]);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["pid"], 200);
    let rows = json(&fx, &["--by", "pid", "--since", "30s"]);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["tx_bytes"], 40);
    assert_eq!(rows[0]["rx_bytes"], 100);
    let rows = json(&fx, &["--by", "pid", "--until", "2s"]); // before 3.0 s boot time
    assert_eq!(row(&rows, "pid", 100)["tx_bytes"], 150);
    let rows = json(&fx, &["--by", "pid", "--until", "1s"]); // before 2.0 s
    assert_eq!(row(&rows, "pid", 100)["tx_bytes"], 100);
    let rows = json(&fx, &["--by", "pid", "--proto", "udp"]);
    assert_eq!(
        rows.iter()
            .filter(|r| r["tx_bytes"].as_u64() > Some(0))
            .count(),
        1
    );
    let rows = json(&fx, &["--by", "pid", "--port", "443"]);
    assert_eq!(row(&rows, "pid", 100)["tx_bytes"], 150);
    assert!(rows.iter().all(|r| r["pid"] != 200));
    let rows = json(&fx, &["--by", "pid", "--remote", "8.8.8.0/24"]);
    assert_eq!(row(&rows, "pid", 200)["rx_bytes"], 220);
    assert!(rows.iter().all(|r| r["pid"] != 100));
    let wall_since = format!("@{}", (WALL as u64 + 30 * S) / S);
    let rows = json(&fx, &["--by", "pid", "--since", &wall_since]);
    assert_eq!(rows.len(), 1);
}

#[test]
fn conns_exact() {
    let fx = known();
    let rows = json(&fx, &["--report", "conns"]);
    assert_eq!(rows.len(), 3, "{rows:#?}");
    let tcp = rows.iter().find(|r| r["proto"] == "TCP").unwrap();
    assert_eq!(tcp["pid"], 100);
    assert_eq!(tcp["comm"], "curl");
    assert_eq!(tcp["start_ns"], S);
    assert_eq!(tcp["end_ns"], 2 * S + 500 * MS);
    assert_eq!(tcp["duration_ns"], S + 500 * MS);
    assert_eq!(
        (tcp["tx_bytes"].as_u64(), tcp["rx_bytes"].as_u64()),
        (Some(150), Some(4000))
    );
    assert_eq!(
        (tcp["dst"].as_str(), tcp["dport"].as_u64()),
        (Some("93.184.216.34"), Some(443))
    );
    let udp: Vec<&Value> = rows.iter().filter(|r| r["proto"] == "UDP").collect();
    assert_eq!(udp.len(), 2);
    assert_eq!(udp[0]["start_ns"], S + 100 * MS);
    assert_eq!(udp[0]["end_ns"], S + 200 * MS);
    assert_eq!(udp[0]["duration_ns"], 100 * MS);
    assert_eq!(
        (udp[0]["tx_bytes"].as_u64(), udp[0]["rx_bytes"].as_u64()),
        (Some(40), Some(120))
    );
    assert_eq!(udp[1]["start_ns"], 40 * S);
    assert!(
        udp[1]["end_ns"].is_null(),
        "still open at the end: {:?}",
        udp[1]
    );
    assert_eq!(udp[1]["duration_ns"], S);
    // Distribution per process.
    let d = json(&fx, &["--report", "conns", "--by", "pid"]);
    let dns = row(&d, "pid", 200);
    assert_eq!(dns["conns"], 2);
    assert_eq!(dns["p50_duration_ns"], 100 * MS);
    assert_eq!(dns["max_duration_ns"], S);
    assert_eq!(row(&d, "pid", 100)["p99_duration_ns"], S + 500 * MS);
}

/// A TCP connection known only from its state changes (no message events):
/// the active opener's SYN_SENT event carries no source port yet, and the
/// kernel's bytes_acked / bytes_received count SYN and FIN in sequence
/// space. The report shows the port the kernel picked later and the payload.
#[test]
fn conns_from_lifecycle_only() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("lifecycle.snp");
    let file = std::fs::File::create(&p).unwrap();
    let mut w = TraceWriter::new(file, &info("h"), WriterOptions::default()).unwrap();
    let c = flow(400, "wget", 6, "10.0.0.1", 41000, "10.0.0.9", 80, 31);
    let syn = Flow {
        lport: 0,
        laddr: [0; 16],
        ..c
    };
    // Client: active open, sends 500, receives 2000, closes first.
    w.push_conn(S, &syn, 7, 2, 0, 0).unwrap();
    w.push_conn(S + MS, &pkt(&c, 0, 31, 0), 2, 1, 0, 0).unwrap();
    w.push_conn(S + 50 * MS, &c, 1, 4, 501, 2000).unwrap();
    w.push_conn(S + 51 * MS, &pkt(&c, 0, 31, 0), 4, 5, 502, 2000)
        .unwrap();
    w.push_conn(S + 52 * MS, &pkt(&c, 0, 31, 0), 5, 7, 502, 2001)
        .unwrap();
    // Server end of another connection: passive open, peer closes first.
    let s = flow(500, "httpd", 6, "10.0.0.1", 80, "10.0.0.8", 50000, 32);
    w.push_conn(2 * S, &pkt(&s, 0, 32, 0), 10, 3, 0, 0).unwrap();
    w.push_conn(2 * S + MS, &pkt(&s, 0, 32, 0), 3, 1, 0, 0)
        .unwrap();
    w.push_conn(2 * S + 9 * MS, &pkt(&s, 0, 32, 0), 1, 8, 700, 301)
        .unwrap();
    w.push_conn(2 * S + 10 * MS, &s, 8, 9, 700, 301).unwrap();
    w.push_conn(2 * S + 11 * MS, &pkt(&s, 0, 32, 0), 9, 7, 701, 301)
        .unwrap();
    w.finish(3 * S).unwrap();
    let fx = Fx {
        dir: d.path().to_path_buf(),
        trace: p.display().to_string(),
        _dir: d,
    };
    let rows = json(&fx, &["--report", "conns"]);
    assert_eq!(rows.len(), 2, "{rows:#?}");
    let cl = row(&rows, "pid", 400);
    assert_eq!(
        (cl["src"].as_str(), cl["sport"].as_u64()),
        (Some("10.0.0.1"), Some(41000))
    );
    assert_eq!(
        (cl["tx_bytes"].as_u64(), cl["rx_bytes"].as_u64()),
        (Some(500), Some(2000))
    );
    assert_eq!(cl["duration_ns"], 52 * MS);
    let sv = row(&rows, "pid", 500);
    assert_eq!(sv["sport"], 80);
    assert_eq!(
        (sv["tx_bytes"].as_u64(), sv["rx_bytes"].as_u64()),
        (Some(700), Some(300))
    );
}

#[test]
fn sizes_exact() {
    let fx = known();
    let rows = json(&fx, &["--report", "sizes"]);
    let r = rows
        .iter()
        .find(|r| r["pid"] == 100 && r["kind"] == "message" && r["dir"] == "rx")
        .unwrap();
    assert_eq!(r["count"], 2);
    assert_eq!(r["min_bytes"], 1000);
    assert_eq!(r["mean_bytes"].as_f64(), Some(2000.0));
    assert_eq!(r["p50_bytes"], 1000);
    assert_eq!(r["p90_bytes"], 3000);
    assert_eq!(r["max_bytes"], 3000);
    assert_eq!(r["hist"], "512:1 2048:1");
    let p = rows
        .iter()
        .find(|r| r["pid"] == 100 && r["kind"] == "packet" && r["dir"] == "rx")
        .unwrap();
    assert_eq!(p["count"], 2);
    assert_eq!(p["p50_bytes"], 1052);
}

#[test]
fn remotes_exact() {
    let fx = known();
    let rows = json(&fx, &["--report", "remotes"]);
    let c = rows.iter().find(|r| r["pid"] == 100).unwrap();
    assert_eq!(c["remote"], "93.184.216.34");
    assert_eq!(c["ports"], "443");
    assert_eq!(c["conns"], 1);
    assert_eq!(c["share"].as_f64(), Some(1.0));
    assert_eq!(c["rx_wire_bytes"], 4104);
    let d = rows.iter().find(|r| r["pid"] == 200).unwrap();
    assert_eq!(d["remote"], "8.8.8.8");
    assert_eq!(
        (d["tx_bytes"].as_u64(), d["rx_bytes"].as_u64()),
        (Some(80), Some(220))
    );
}

#[test]
fn timeline_exact() {
    let fx = known();
    let rows = json(&fx, &["--report", "timeline", "--by", "pid"]);
    let at = |b: u64, pid: u64| {
        rows.iter()
            .find(|r| r["interval_ns"] == b * S && r["pid"] == pid)
    };
    assert_eq!(at(1, 100).unwrap()["tx_bytes"], 100);
    assert_eq!(at(1, 100).unwrap()["rx_bytes"], 4000);
    assert_eq!(at(1, 100).unwrap()["rx_wire_bytes"], 4104);
    assert_eq!(at(2, 100).unwrap()["tx_bytes"], 50);
    assert_eq!(at(40, 200).unwrap()["rx_bytes"], 100);
    assert_eq!(at(40, 200).unwrap()["rx_bps"].as_f64(), Some(800.0));
    let rows = json(
        &fx,
        &["--report", "timeline", "--by", "pid", "--interval", "100ms"],
    );
    assert!(rows
        .iter()
        .any(|r| r["interval_ns"] == 2 * S + 200 * MS && r["tx_bytes"] == 50));
}

#[test]
fn lifecycle_exact() {
    let fx = known();
    let rows = json(&fx, &["--report", "lifecycle"]);
    let c = row(&rows, "pid", 100);
    assert_eq!(c["ppid"], 1);
    assert_eq!(c["filename"], "/usr/bin/curl");
    assert_eq!(c["start_ns"], 9 * S / 10);
    assert_eq!(c["exit_ns"], 2 * S + 600 * MS);
    assert_eq!(c["exit_code"], 0);
    assert_eq!(c["first_net_ns"], S + 10 * MS);
    assert_eq!(c["first_net_after_ns"], 110 * MS);
    assert_eq!(c["first_conn_after_ns"], 100 * MS);
    assert_eq!(c["conns"], 1);
    let d = row(&rows, "pid", 200);
    assert_eq!(d["start_ns"], S / 2);
    assert_eq!(d["exec_ns"], 6 * S / 10);
    assert!(d["exit_ns"].is_null());
    assert_eq!(d["conns"], 2);
    assert_eq!(
        d["conn_after_ns"],
        format!("{},{}", 600 * MS, 39 * S + 500 * MS)
    );
}

#[test]
fn coverage_reasons_exact() {
    let fx = known();
    let rows = json(&fx, &["--report", "coverage"]);
    let r = |reason: &str| {
        rows.iter()
            .find(|r| r["reason"] == reason)
            .unwrap_or_else(|| panic!("{reason}: {rows:#?}"))
            .clone()
    };
    assert_eq!(r("socket cookie")["tx_wire_bytes"], 152);
    assert_eq!(r("5-tuple + time")["rx_wire_bytes"], 1052 + 3052 + 148);
    assert_eq!(r("5-tuple + time")["rx_packets"], 3);
    assert_eq!(r("kernel-recorded owner")["tx_wire_bytes"], 90);
    assert_eq!(r("no socket seen")["rx_wire_bytes"], 60);
    assert_eq!(r("icmp")["rx_wire_bytes"], 84);
    assert_eq!(r("forwarded/other netns")["rx_wire_bytes"], 70);
    assert_eq!(r("kernel socket")["tx_wire_bytes"], 40);
    assert_eq!(r("icmp")["attributed"], "no");
    assert_eq!(r("socket cookie")["attributed"], "yes");
    let total = 152 + 4252 + 90 + 60 + 84 + 70 + 40;
    let share = r("icmp")["share"].as_f64().unwrap();
    assert!((share - 84.0 / total as f64).abs() < 1e-12);
}

#[test]
fn summary_and_table_output() {
    let fx = known();
    let out = fx.dir.join("summary.txt");
    analyze(&[&fx.trace, "-o", out.to_str().unwrap()]).unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    for needle in [
        "top processes",
        "curl",
        "top connections",
        "drops during recording",
        "wire traffic attribution",
        "2023-11-14",
    ] {
        assert!(text.contains(needle), "{needle} missing in:\n{text}");
    }
    let out = fx.dir.join("summary.json");
    analyze(&[&fx.trace, "--format", "json", "-o", out.to_str().unwrap()]).unwrap();
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(v["drops"][0]["dropped"], 2);
    assert_eq!(v["drops"].as_array().unwrap().len(), 1, "{}", v["drops"]);
    let mp = v["overview"]["map pressure"].as_str().unwrap_or_default();
    assert!(
        mp.starts_with("5 socket-owner inserts refused, owner map full")
            && mp.contains(", 3 socket owners evicted"),
        "{}",
        v["overview"]
    );
    assert_eq!(v["processes"][0]["pid"], 100);
    // Table: human units.
    let out = fx.dir.join("t.txt");
    analyze(&[&fx.trace, "--by", "pid", "-o", out.to_str().unwrap()]).unwrap();
    let t = std::fs::read_to_string(&out).unwrap();
    assert!(t.contains("3.9 KiB"), "{t}");
    assert!(t.contains("TX_BYTES"), "{t}");
}

#[test]
fn csv_and_parquet() {
    let fx = known();
    let csv = fx.dir.join("p.csv");
    analyze(&[&fx.trace, "--by", "pid", "-o", csv.to_str().unwrap()]).unwrap();
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(
        text.starts_with("pid,comm,tx_bytes,rx_bytes,tx_msgs,rx_msgs"),
        "{text}"
    );
    assert!(
        text.contains("100,curl,150,4000,2,2,152,4104,1,2"),
        "{text}"
    );
    let pq = fx.dir.join("p.parquet");
    analyze(&[&fx.trace, "--by", "pid", "-o", pq.to_str().unwrap()]).unwrap();
    let bytes = std::fs::read(&pq).unwrap();
    assert_eq!(&bytes[..4], b"PAR1");
}

#[test]
fn several_hosts_get_a_host_column() {
    let fx = known();
    let b = fx.dir.join("b.snp");
    write_known(&b, "host-b");
    let out = fx.dir.join("two.json");
    analyze(&[
        &fx.trace,
        b.to_str().unwrap(),
        "--by",
        "pid",
        "-o",
        out.to_str().unwrap(),
    ])
    .unwrap();
    let rows: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(rows.len(), 8);
    assert_eq!(
        rows.iter()
            .filter(|r| r["host"] == "host-b" && r["pid"] == 100)
            .count(),
        1
    );
    assert_eq!(
        rows.iter()
            .filter(|r| r["host"] == "host-a" && r["pid"] == 100)
            .count(),
        1
    );
}

#[test]
fn recovered_trace_still_analyses() {
    let fx = known();
    let bytes = std::fs::read(&fx.trace).unwrap();
    // Cut the footer and trailer off: the chunks remain.
    let cut = fx.dir.join("cut.snp");
    std::fs::write(&cut, &bytes[..bytes.len() - 200]).unwrap();
    let out = fx.dir.join("cut.json");
    analyze(&[
        cut.to_str().unwrap(),
        "--by",
        "pid",
        "-o",
        out.to_str().unwrap(),
    ])
    .unwrap();
    let rows: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert!(rows.iter().any(|r| r["pid"] == 100));
}

#[test]
fn bad_input_gives_clear_errors() {
    let fx = known();
    let e = analyze(&["/nonexistent/x.snp"]).unwrap_err();
    assert!(format!("{e:#}").contains("/nonexistent/x.snp"), "{e:#}");
    assert!(!is_usage_error(&e));
    let junk = fx.dir.join("junk.snp");
    std::fs::write(
        &junk,
        "this is not a trace at all, just some words. ".repeat(20),
    )
    .unwrap();
    let e = analyze(&[junk.to_str().unwrap()]).unwrap_err();
    assert!(format!("{e:#}").contains("not a snoop trace"), "{e:#}");
    let empty = fx.dir.join("empty.snp");
    std::fs::write(&empty, b"").unwrap();
    let e = analyze(&[empty.to_str().unwrap()]).unwrap_err();
    assert!(!format!("{e:#}").is_empty());
    for args in [
        vec![fx.trace.as_str(), "--report", "nope"],
        vec![fx.trace.as_str(), "--by", "nope"],
        vec![fx.trace.as_str(), "--by", "pid", "--interval", "fast"],
        vec![fx.trace.as_str(), "--by", "pid", "--since", "yesterday"],
        vec![fx.trace.as_str(), "--by", "pid", "--remote", "10.0.0.0/99"],
        vec![fx.trace.as_str(), "--by", "pid", "--format", "xml"],
        vec![fx.trace.as_str(), "--by", "pid", "--proto", "sctpx"],
    ] {
        let e = analyze(&args).unwrap_err();
        assert!(is_usage_error(&e), "{args:?}: {e:#}");
    }
    // Bit flips in the middle of the file: an error or fewer rows, never a panic.
    let mut bytes = std::fs::read(&fx.trace).unwrap();
    for i in (64..bytes.len()).step_by(97) {
        bytes[i] ^= 0x5a;
    }
    let bad = fx.dir.join("flipped.snp");
    std::fs::write(&bad, &bytes).unwrap();
    let _ = analyze(&[
        bad.to_str().unwrap(),
        "--by",
        "pid",
        "-o",
        fx.dir.join("f.json").to_str().unwrap(),
    ]);
}

#[test]
fn empty_trace_gives_empty_reports() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("empty.snp");
    let w = TraceWriter::new(
        std::fs::File::create(&p).unwrap(),
        &info("h"),
        WriterOptions::default(),
    )
    .unwrap();
    w.finish(S).unwrap();
    for report in [
        "summary",
        "throughput",
        "conns",
        "sizes",
        "remotes",
        "timeline",
        "lifecycle",
        "coverage",
    ] {
        report_json(&p, d.path(), report);
    }
    let out = d.path().join("e.json");
    analyze(&[
        p.to_str().unwrap(),
        "--by",
        "pid",
        "-o",
        out.to_str().unwrap(),
    ])
    .unwrap();
    assert_eq!(std::fs::read_to_string(&out).unwrap().trim(), "[]");
}

fn synth_fixture(dir: &Path) -> (PathBuf, snoop_format::synth::SynthTotals) {
    synth_fixture_of(dir, 1000, 5000)
}

/// A synthetic trace of `messages` messages, `chunk_rows` rows per chunk.
fn synth_fixture_of(
    dir: &Path,
    chunk_rows: usize,
    messages: u64,
) -> (PathBuf, snoop_format::synth::SynthTotals) {
    let p = dir.join("synth.snp");
    let mut info = info("synth");
    info.boot_to_wall_ns = WALL;
    let mut w = TraceWriter::new(
        std::fs::File::create(&p).unwrap(),
        &info,
        WriterOptions {
            chunk_rows,
            zstd_level: 3,
        },
    )
    .unwrap();
    let cfg = SynthConfig {
        flows: 40,
        processes: 6,
        ..SynthConfig::default()
    };
    let totals = write_synthetic(&mut w, cfg, messages).unwrap();
    w.finish(totals.end_ns + 1).unwrap();
    (p, totals)
}

#[test]
fn synthetic_totals_match() {
    let d = tempfile::tempdir().unwrap();
    let (p, totals) = synth_fixture(d.path());
    check_synthetic_totals(d.path(), &p, &totals);
}

/// Hundreds of chunks load in many decode batches, merged one after the
/// other: every process's totals are still exactly what was written.
#[test]
fn synthetic_totals_match_across_many_batches() {
    let d = tempfile::tempdir().unwrap();
    let (p, totals) = synth_fixture_of(d.path(), 50, 30_000);
    let t = snoop_format::Trace::open(&p).unwrap();
    let chunks = t.chunks_of(snoop_format::Table::Messages).count();
    // More chunks than several batches hold on any machine this runs on.
    assert!(chunks >= 600, "{chunks} chunks");
    check_synthetic_totals(d.path(), &p, &totals);
    // The same messages in one chunk (one batch, one merge) give the same
    // behaviour and connections: batches merge in file order.
    let one = tempfile::tempdir().unwrap();
    let (q, _) = synth_fixture_of(one.path(), 1 << 20, 30_000);
    for report in ["behavior", "conns"] {
        let many = report_json(&p, d.path(), report);
        let whole = report_json(&q, one.path(), report);
        assert!(many.len() > 100, "{report}: {many}");
        assert_eq!(many, whole, "{report}");
    }
}

/// `--by pid` on `p` gives each process the totals `write_synthetic` wrote.
fn check_synthetic_totals(dir: &Path, p: &Path, totals: &snoop_format::synth::SynthTotals) {
    let out = dir.join("s.json");
    analyze(&[
        p.to_str().unwrap(),
        "--by",
        "pid",
        "--format",
        "json",
        "-o",
        out.to_str().unwrap(),
    ])
    .unwrap();
    let rows: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(rows.len(), totals.per_pid.len());
    for (pid, (tx, rx, txn, rxn)) in &totals.per_pid {
        let r = row(&rows, "pid", *pid as u64);
        assert_eq!(r["tx_bytes"], *tx);
        assert_eq!(r["rx_bytes"], *rx);
        assert_eq!(r["tx_msgs"], *txn);
        assert_eq!(r["rx_msgs"], *rxn);
    }
}

/// The reports every golden test runs, with their file stems.
fn golden_reports() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        ("by_pid", vec!["--by", "pid"]),
        ("by_port", vec!["--by", "port"]),
        ("conns", vec!["--report", "conns"]),
        ("sizes", vec!["--report", "sizes"]),
        ("remotes", vec!["--report", "remotes"]),
        (
            "timeline",
            vec!["--report", "timeline", "--by", "comm", "--interval", "1ms"],
        ),
        ("lifecycle", vec!["--report", "lifecycle"]),
        ("coverage", vec!["--report", "coverage"]),
    ]
}

/// Run every golden report on `trace` and compare with `dir/<prefix><stem>.json`.
/// SNOOP_UPDATE_GOLDEN=1 rewrites the files after an intended change; a
/// missing file is an error otherwise.
fn check_goldens(trace: &Path, dir: &Path, prefix: &str, scratch: &Path) {
    let update = std::env::var_os("SNOOP_UPDATE_GOLDEN").is_some();
    for (stem, args) in golden_reports() {
        let name = format!("{prefix}{stem}");
        let out = scratch.join(format!("{name}.json"));
        let mut a = vec![trace.to_str().unwrap()];
        a.extend(args);
        a.extend(["--format", "json", "-o", out.to_str().unwrap()]);
        analyze(&a).unwrap();
        let got = std::fs::read_to_string(&out).unwrap();
        let gpath = dir.join(format!("{name}.json"));
        if update {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(&gpath, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&gpath).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (SNOOP_UPDATE_GOLDEN=1 creates it)",
                gpath.display()
            )
        });
        let (g, w): (Value, Value) = (
            serde_json::from_str(&got).unwrap(),
            serde_json::from_str(&want).unwrap(),
        );
        assert!(
            g == w,
            "{}: {name}: output differs from {} (SNOOP_UPDATE_GOLDEN=1 to accept)",
            trace.display(),
            gpath.display()
        );
    }
}

/// Golden JSON for the small synthetic fixture: set SNOOP_UPDATE_GOLDEN=1 to
/// rewrite the files under tests/golden/ after an intended change.
#[test]
fn synthetic_golden_json() {
    let d = tempfile::tempdir().unwrap();
    let (p, _) = synth_fixture(d.path());
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    check_goldens(&p, &golden, "synth_", d.path());
}

/// Every committed trace in fixtures/ (real recordings and the v1
/// compatibility files) has the expected output of each report beside it,
/// in fixtures/golden/<trace>/<report>.json.
#[test]
fn fixture_golden_json() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    let d = tempfile::tempdir().unwrap();
    let mut seen = 0;
    for e in std::fs::read_dir(&root).unwrap() {
        let p = e.unwrap().path();
        if p.extension().and_then(|x| x.to_str()) != Some("snp") {
            continue;
        }
        let stem = p.file_stem().unwrap().to_str().unwrap().to_string();
        check_goldens(&p, &root.join("golden").join(&stem), "", d.path());
        seen += 1;
    }
    assert!(seen >= 3, "expected the committed fixtures, found {seen}");
}

#[test]
fn html_report_is_self_contained() {
    let fx = known();
    let out = fx.dir.join("r.html");
    analyze(&[&fx.trace, "--report", "html", "-o", out.to_str().unwrap()]).unwrap();
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<svg"));
    assert!(html.contains("curl"));
    assert!(
        !html.contains("http://") && !html.contains("https://") && !html.contains("<script src"),
        "must not load anything"
    );
}

fn replay(args: &[&str]) -> anyhow::Result<()> {
    let cli = ReplayCli::try_parse_from(std::iter::once("replay").chain(args.iter().copied()))?;
    run_replay(&cli.a)
}

#[test]
fn replay_and_export() {
    let fx = known();
    let out = fx.dir.join("replay.jsonl");
    replay(&[&fx.trace, "--json", "-o", out.to_str().unwrap()]).unwrap();
    let lines: Vec<Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // 4 process + 3 conn + 8 message + 9 packet events (stats are not replayed).
    assert_eq!(lines.len(), 24, "{lines:#?}");
    assert!(
        lines
            .windows(2)
            .all(|w| w[0]["ts_ns"].as_u64() <= w[1]["ts_ns"].as_u64()),
        "time order"
    );
    assert!(lines.iter().any(|l| l["proto"] == "ICMP"));
    let rx = lines
        .iter()
        .find(|l| l["event"] == "packet" && l["len"] == 1052)
        .unwrap();
    assert_eq!(rx["pid"], 100, "replay attributes packets: {rx}");
    let txt = fx.dir.join("replay.txt");
    replay(&[&fx.trace, "--pid", "100", "-o", txt.to_str().unwrap()]).unwrap();
    let text = std::fs::read_to_string(&txt).unwrap();
    assert!(
        text.contains("TCP 10.0.0.1:40000 -> 93.184.216.34:443"),
        "{text}"
    );
    assert!(text.contains("curl"), "{text}");
    assert!(!text.contains("dns"), "{text}");

    let csv = fx.dir.join("m.csv");
    let cli = ExportCli::try_parse_from([
        "export",
        &fx.trace,
        "--table",
        "messages",
        "-o",
        csv.to_str().unwrap(),
    ])
    .unwrap();
    run_export(&cli.a).unwrap();
    let text = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(text.lines().count(), 9, "{text}");
    assert!(text.lines().next().unwrap().starts_with("ts_ns,"), "{text}");
    let pq = fx.dir.join("p.parquet");
    let cli = ExportCli::try_parse_from([
        "export",
        &fx.trace,
        "--table",
        "packets",
        "-o",
        pq.to_str().unwrap(),
    ])
    .unwrap();
    run_export(&cli.a).unwrap();
    assert_eq!(&std::fs::read(&pq).unwrap()[..4], b"PAR1");
    let cli =
        ExportCli::try_parse_from(["export", &fx.trace, "--table", "nope", "-o", "x.csv"]).unwrap();
    assert!(is_usage_error(&run_export(&cli.a).unwrap_err()));
}

/// Export streams a multi-chunk trace batch by batch: every row, in file
/// order, once, in CSV and Parquet alike.
#[test]
fn export_of_many_chunks_keeps_every_row_in_order() {
    let d = tempfile::tempdir().unwrap();
    let (p, totals) = synth_fixture(d.path()); // 5000 messages, 1000 per chunk
    let t = snoop_format::Trace::open(&p).unwrap();
    let mut want: Vec<u64> = Vec::new();
    for c in t
        .chunks_of(snoop_format::Table::Messages)
        .collect::<Vec<_>>()
    {
        let cs = snoop_format::ColumnSet::of(&[snoop_format::col::TS]);
        want.extend(t.read_chunk(c, cs).unwrap().into_events().unwrap().ts);
    }
    assert_eq!(want.len() as u64, totals.messages);
    for ext in ["csv", "parquet"] {
        let out = d.path().join(format!("all.{ext}"));
        let cli =
            ExportCli::try_parse_from(["export", p.to_str().unwrap(), "-o", out.to_str().unwrap()])
                .unwrap();
        run_export(&cli.a).unwrap();
        let df = if ext == "csv" {
            use polars::prelude::*;
            CsvReadOptions::default()
                .try_into_reader_with_file_path(Some(out.clone()))
                .unwrap()
                .finish()
                .unwrap()
        } else {
            use polars::prelude::*;
            ParquetReader::new(std::fs::File::open(&out).unwrap())
                .finish()
                .unwrap()
        };
        let got: Vec<u64> = df
            .column("ts_ns")
            .unwrap()
            .cast(&polars::prelude::DataType::UInt64)
            .unwrap()
            .u64()
            .unwrap()
            .into_no_null_iter()
            .collect();
        assert_eq!(got, want, "{ext}");
    }
}

/// A trace written by the test, analysed into `rows` of `args` as JSON.
/// `write` returns the recording's end time.
fn trace_fx(name: &str, write: impl FnOnce(&mut TraceWriter<std::fs::File>) -> u64) -> Fx {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join(format!("{name}.snp"));
    let mut w = TraceWriter::new(
        std::fs::File::create(&p).unwrap(),
        &info("h"),
        WriterOptions::default(),
    )
    .unwrap();
    let end = write(&mut w);
    w.finish(end).unwrap();
    Fx {
        dir: d.path().to_path_buf(),
        trace: p.display().to_string(),
        _dir: d,
    }
}

/// The flow the kernel records for a message on a socket already in
/// TCP_CLOSE: the local port was released (0), the cookie stays.
fn after_close(f: &Flow) -> Flow {
    Flow { lport: 0, ..*f }
}

/// Half-closed TCP connections, from both sides. The
/// side that shuts down its sending half first (FIN_WAIT1 -> FIN_WAIT2)
/// goes on receiving; what is still queued when its socket reaches CLOSE is
/// read after CLOSE. Every byte the test wrote must be in a connection, the
/// connection must last until CLOSE or the last read after it, and each
/// process's connections must add up to its TCP bytes.
#[test]
fn conns_half_close_from_both_sides() {
    const CLIENT: u32 = 600;
    const SERVER: u32 = 700;
    let fx = trace_fx("halfclose", |w| {
        // 1. The client half-closes: sends 300, shutdown(SHUT_WR), reads
        //    the 5000-byte reply, part of it after its socket's CLOSE.
        let c = flow(CLIENT, "client", 6, "10.0.0.1", 41000, "10.0.0.2", 80, 41);
        let syn = Flow {
            lport: 0,
            laddr: [0; 16],
            ..c
        };
        w.push_conn(S, &syn, 7, 2, 0, 0).unwrap(); // CLOSE -> SYN_SENT
        w.push_conn(S + MS, &pkt(&c, 0, 41, 0), 2, 1, 0, 0).unwrap(); // ESTABLISHED
        w.push_message(S + 2 * MS, &c, 300, Direction::Tx).unwrap();
        w.push_conn(S + 3 * MS, &c, 1, 4, 0, 0).unwrap(); // FIN_WAIT1
        w.push_conn(S + 4 * MS, &pkt(&c, 0, 41, 0), 4, 5, 0, 0)
            .unwrap(); // FIN_WAIT2
        w.push_message(S + 10 * MS, &c, 1000, Direction::Rx)
            .unwrap();
        w.push_message(S + 20 * MS, &c, 1500, Direction::Rx)
            .unwrap();
        w.push_conn(S + 30 * MS, &pkt(&c, 0, 41, 0), 5, 7, 302, 5001)
            .unwrap(); // CLOSE (TIME_WAIT)
        w.push_message(S + 40 * MS, &after_close(&c), 2000, Direction::Rx)
            .unwrap();
        w.push_message(S + 50 * MS, &after_close(&c), 500, Direction::Rx)
            .unwrap();
        // The server of that connection (same host): reads 300, the
        // client's FIN puts it in CLOSE_WAIT, it replies 5000, closes.
        let s = flow(SERVER, "server", 6, "10.0.0.2", 80, "10.0.0.1", 41000, 42);
        w.push_conn(S + MS, &pkt(&s, 0, 42, 0), 12, 1, 0, 0)
            .unwrap(); // ESTABLISHED
        w.push_message(S + 3 * MS, &s, 300, Direction::Rx).unwrap();
        w.push_conn(S + 4 * MS, &pkt(&s, 0, 42, 0), 1, 8, 0, 0)
            .unwrap(); // CLOSE_WAIT
        w.push_message(S + 5 * MS, &s, 2500, Direction::Tx).unwrap();
        w.push_message(S + 6 * MS, &s, 2500, Direction::Tx).unwrap();
        w.push_conn(S + 7 * MS, &s, 8, 9, 0, 0).unwrap(); // LAST_ACK
        w.push_conn(S + 30 * MS, &pkt(&s, 0, 42, 0), 9, 7, 5001, 301)
            .unwrap(); // CLOSE
                       // 2. The server half-closes: it sends a 100-byte banner and
                       //    shuts down; the client uploads 7000, then closes; the
                       //    server reads the upload, the last of it after CLOSE.
        let u = flow(CLIENT, "client", 6, "10.0.0.1", 41001, "10.0.0.2", 21, 51);
        let v = flow(SERVER, "server", 6, "10.0.0.2", 21, "10.0.0.1", 41001, 52);
        w.push_conn(2 * S, &u, 7, 2, 0, 0).unwrap();
        w.push_conn(2 * S + MS, &pkt(&u, 0, 51, 0), 2, 1, 0, 0)
            .unwrap();
        w.push_conn(2 * S + MS, &pkt(&v, 0, 52, 0), 12, 1, 0, 0)
            .unwrap();
        w.push_message(2 * S + 2 * MS, &v, 100, Direction::Tx)
            .unwrap();
        w.push_conn(2 * S + 3 * MS, &v, 1, 4, 0, 0).unwrap(); // FIN_WAIT1
        w.push_conn(2 * S + 4 * MS, &pkt(&v, 0, 52, 0), 4, 5, 0, 0)
            .unwrap(); // FIN_WAIT2
        w.push_conn(2 * S + 4 * MS, &pkt(&u, 0, 51, 0), 1, 8, 0, 0)
            .unwrap(); // CLOSE_WAIT
        w.push_message(2 * S + 5 * MS, &u, 100, Direction::Rx)
            .unwrap();
        w.push_message(2 * S + 6 * MS, &u, 4000, Direction::Tx)
            .unwrap();
        w.push_message(2 * S + 7 * MS, &u, 3000, Direction::Tx)
            .unwrap();
        w.push_message(2 * S + 8 * MS, &v, 4000, Direction::Rx)
            .unwrap();
        w.push_conn(2 * S + 9 * MS, &u, 8, 9, 0, 0).unwrap(); // LAST_ACK
        w.push_conn(2 * S + 10 * MS, &pkt(&v, 0, 52, 0), 5, 7, 101, 7001)
            .unwrap(); // CLOSE
        w.push_conn(2 * S + 11 * MS, &pkt(&u, 0, 51, 0), 9, 7, 7001, 101)
            .unwrap(); // CLOSE
        w.push_message(2 * S + 12 * MS, &after_close(&v), 3000, Direction::Rx)
            .unwrap();
        3 * S
    });
    let rows = json(&fx, &["--report", "conns"]);
    assert_eq!(rows.len(), 4, "{rows:#?}");
    let conn = |pid: u32, port: u64| {
        rows.iter()
            .find(|r| r["pid"] == pid && (r["sport"] == port || r["dport"] == port))
            .unwrap_or_else(|| panic!("no {pid} :{port} in {rows:#?}"))
    };
    let bytes = |r: &Value| {
        (
            r["tx_bytes"].as_u64().unwrap(),
            r["rx_bytes"].as_u64().unwrap(),
        )
    };
    // Client half-closed: all 5000 reply bytes, until its last read.
    let c = conn(CLIENT, 80);
    assert_eq!(bytes(c), (300, 5000), "{c}");
    assert_eq!(
        (c["start_ns"].as_u64(), c["end_ns"].as_u64()),
        (Some(S), Some(S + 50 * MS))
    );
    assert_eq!(c["sport"], 41000, "the port from before CLOSE");
    let s = conn(SERVER, 80);
    assert_eq!(bytes(s), (5000, 300), "{s}");
    assert_eq!(s["end_ns"], S + 30 * MS);
    // Server half-closed: the whole 7000-byte upload.
    let v = conn(SERVER, 21);
    assert_eq!(bytes(v), (100, 7000), "{v}");
    assert_eq!(v["end_ns"], 2 * S + 12 * MS);
    let u = conn(CLIENT, 21);
    assert_eq!(bytes(u), (7000, 100), "{u}");
    assert_eq!(u["end_ns"], 2 * S + 11 * MS);
    // Each process's connections add up to its TCP bytes.
    let procs = json(&fx, &["--by", "pid", "--proto", "tcp"]);
    for (pid, want) in [(CLIENT, (7300, 5100)), (SERVER, (5100, 7300))] {
        let p = row(&procs, "pid", pid as u64);
        assert_eq!(bytes(p), want, "{p}");
        let sum = rows
            .iter()
            .filter(|r| r["pid"] == pid && r["proto"] == "TCP")
            .map(bytes)
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        assert_eq!(sum, want, "connections of {pid}");
    }
}

/// A UDP flow ends at its last message when its process
/// exits, or when the trace goes on idle for 30 s after it; `end_ns` is
/// null only for a flow still active at the end.
#[test]
fn udp_flows_end_at_exit_or_idle() {
    let fx = trace_fx("udp", |w| {
        // pid 800 sends for 1 ms and exits at 1.1 s; the trace runs to 2 s.
        let brief = flow(800, "brief", 17, "10.0.0.1", 5000, "10.0.0.9", 53, 81);
        w.push_process(&proc_row(
            S / 2,
            ProcessKind::Exec,
            800,
            1,
            "brief",
            "/bin/brief",
            0,
        ))
        .unwrap();
        w.push_message(S, &brief, 40, Direction::Tx).unwrap();
        w.push_message(S + MS, &brief, 60, Direction::Rx).unwrap();
        w.push_process(&proc_row(
            S + 100 * MS,
            ProcessKind::Exit,
            800,
            1,
            "brief",
            "",
            0,
        ))
        .unwrap();
        // A thread of pid 900 exits: not the process; pid 900 still sends
        // at 1.9 s: still active at the end.
        let live = flow(900, "live", 17, "10.0.0.1", 5001, "10.0.0.9", 53, 91);
        w.push_message(S, &live, 10, Direction::Tx).unwrap();
        let mut t = proc_row(S + 10 * MS, ProcessKind::Exit, 900, 1, "live", "", 0);
        t.tid = 901;
        w.push_process(&t).unwrap();
        w.push_message(S + 900 * MS, &live, 10, Direction::Tx)
            .unwrap();
        2 * S
    });
    let rows = json(&fx, &["--report", "conns"]);
    assert_eq!(rows.len(), 2, "{rows:#?}");
    let b = row(&rows, "pid", 800);
    assert_eq!(
        (b["start_ns"].as_u64(), b["end_ns"].as_u64()),
        (Some(S), Some(S + MS)),
        "{b}"
    );
    assert_eq!(b["duration_ns"], MS);
    assert_eq!(
        (b["tx_bytes"].as_u64(), b["rx_bytes"].as_u64()),
        (Some(40), Some(60))
    );
    let l = row(&rows, "pid", 900);
    assert!(l["end_ns"].is_null(), "{l}");
    assert_eq!(l["duration_ns"], S, "to the end of the trace");
    // The summary's top connections (no per-event data) end the same way.
    let out = fx.dir.join("sum.json");
    analyze(&[&fx.trace, "--format", "json", "-o", out.to_str().unwrap()]).unwrap();
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let c = v["connections"].as_array().unwrap();
    assert_eq!(row(c, "pid", 800)["duration_ns"], MS, "{c:?}");
    assert_eq!(row(c, "pid", 900)["duration_ns"], S, "{c:?}");
}

/// A process is shown under its latest name: one that
/// execs another program (and whose first name has more traffic) and one
/// whose worker thread has a name of its own. `lifecycle` lists the names.
#[test]
fn processes_show_their_latest_name() {
    let fx = trace_fx("names", |w| {
        let before = flow(1000, "launcher", 6, "10.0.0.1", 42000, "10.0.0.9", 443, 101);
        for i in 0..5 {
            w.push_message(S + i * MS, &before, 100, Direction::Tx)
                .unwrap();
        }
        w.push_process(&proc_row(
            S + 10 * MS,
            ProcessKind::Exec,
            1000,
            1,
            "server",
            "/bin/server",
            0,
        ))
        .unwrap();
        let after = Flow {
            comm: comm_bytes("server"),
            cookie: 102,
            lport: 42001,
            ..before
        };
        w.push_message(S + 20 * MS, &after, 100, Direction::Tx)
            .unwrap();
        // A worker thread, named differently, is the last to send.
        let worker = Flow {
            tid: 1001,
            comm: comm_bytes("server-io"),
            ..after
        };
        w.push_message(S + 30 * MS, &worker, 100, Direction::Tx)
            .unwrap();
        2 * S
    });
    let by_pid = json(&fx, &["--by", "pid"]);
    assert_eq!(row(&by_pid, "pid", 1000)["comm"], "server", "{by_pid:?}");
    let conns = json(&fx, &["--report", "conns"]);
    assert!(conns.iter().all(|c| c["comm"] == "server"), "{conns:#?}");
    let d = json(&fx, &["--report", "conns", "--by", "pid"]);
    assert_eq!(row(&d, "pid", 1000)["comm"], "server");
    let lc = json(&fx, &["--report", "lifecycle"]);
    let p = row(&lc, "pid", 1000);
    assert_eq!(
        (p["comm"].as_str(), p["comms"].as_str()),
        (Some("server"), Some("launcher,server"))
    );
    let out = fx.dir.join("sum.json");
    analyze(&[&fx.trace, "--format", "json", "-o", out.to_str().unwrap()]).unwrap();
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(v["processes"][0]["comm"], "server", "{}", v["processes"]);
    assert_eq!(
        v["connections"][0]["comm"], "server",
        "{}",
        v["connections"]
    );
}

/// `-o FILE.html` picks the html report as `-o FILE.json`
/// picks the format; a table report into an .html file is a usage error
/// unless `--format` asks for it.
#[test]
fn html_output_infers_the_html_report() {
    let fx = known();
    let out = fx.dir.join("inferred.html");
    analyze(&[&fx.trace, "-o", out.to_str().unwrap()]).unwrap();
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(
        html.starts_with("<!DOCTYPE html>"),
        "{}",
        &html[..html.len().min(200)]
    );
    let out = fx.dir.join("HTM.HTM");
    analyze(&[&fx.trace, "--by", "pid", "-o", out.to_str().unwrap()]).unwrap();
    assert!(std::fs::read_to_string(&out)
        .unwrap()
        .starts_with("<!DOCTYPE html>"));
    let bad = fx.dir.join("conns.html");
    let e = analyze(&[&fx.trace, "--report", "conns", "-o", bad.to_str().unwrap()]).unwrap_err();
    assert!(is_usage_error(&e), "{e:#}");
    assert!(format!("{e:#}").contains("--report html"), "{e:#}");
    assert!(!bad.exists(), "nothing written on a usage error");
    analyze(&[
        &fx.trace,
        "--report",
        "conns",
        "--format",
        "table",
        "-o",
        bad.to_str().unwrap(),
    ])
    .unwrap();
    assert!(std::fs::read_to_string(&bad).unwrap().contains("TX_BYTES"));
}

/// How each TCP connection ended, from its CLOSE row's sk_err
/// and counters (format 1.2): `status` per connection, null RTTs when the
/// kernel had no sample, the duration table's `failed` count, the
/// summary's connection problems and the HTML outcomes chart.
#[test]
fn conns_status_from_tcp_outcomes() {
    use snoop_format::TcpOutcome;
    const CLIENT: u32 = 600;
    const SERVER: u32 = 700;
    let fx = trace_fx("outcomes", |w| {
        let err = |sk_err: u16| TcpOutcome {
            sk_err,
            segs_out: 1,
            ..TcpOutcome::default()
        };
        // Refused and timed-out connects (SYN_SENT -> CLOSE).
        for (port, e, ck) in [(81u16, 111u16, 61u64), (82, 110, 62)] {
            let c = flow(
                CLIENT,
                "cli",
                6,
                "10.0.0.1",
                42000 + port,
                "10.0.0.2",
                port,
                ck,
            );
            w.push_conn(S, &c, 7, 2, 0, 0).unwrap();
            w.push_conn_outcome(S + MS, &c, 2, 7, 0, 0, &err(e))
                .unwrap();
        }
        // A clean close with retransmissions (FIN_WAIT2 -> CLOSE).
        let c = flow(CLIENT, "cli", 6, "10.0.0.1", 42090, "10.0.0.2", 90, 63);
        w.push_conn(S, &c, 7, 2, 0, 0).unwrap();
        w.push_conn(S + MS, &c, 2, 1, 0, 0).unwrap();
        w.push_message(S + 2 * MS, &c, 1000, Direction::Tx).unwrap();
        w.push_conn(S + 3 * MS, &c, 1, 4, 0, 0).unwrap();
        w.push_conn(S + 4 * MS, &c, 4, 5, 0, 0).unwrap();
        let clean = TcpOutcome {
            sk_err: 0,
            retrans_segs: 5,
            srtt_us: 900,
            min_rtt_us: 300,
            segs_out: 100,
            segs_in: 60,
        };
        w.push_conn_outcome(S + 5 * MS, &c, 5, 7, 1002, 1, &clean)
            .unwrap();
        // Reset by the peer: an RST in ESTABLISHED (ECONNRESET).
        let c = flow(CLIENT, "cli", 6, "10.0.0.1", 42091, "10.0.0.2", 91, 64);
        w.push_conn(S, &c, 7, 2, 0, 0).unwrap();
        w.push_conn(S + MS, &c, 2, 1, 0, 0).unwrap();
        w.push_conn_outcome(S + 6 * MS, &c, 1, 7, 1, 0, &err(104))
            .unwrap();
        // The server resets (ESTABLISHED -> CLOSE, no error) and keeps
        // one connection open.
        let s = flow(SERVER, "srv", 6, "10.0.0.2", 80, "10.0.0.3", 50000, 71);
        w.push_conn(S, &s, 12, 1, 0, 0).unwrap();
        w.push_message(S + MS, &s, 10, Direction::Rx).unwrap();
        w.push_conn_outcome(S + 7 * MS, &s, 1, 7, 0, 10, &err(0))
            .unwrap();
        let o = flow(SERVER, "srv", 6, "10.0.0.2", 80, "10.0.0.3", 50001, 72);
        w.push_conn(S, &o, 12, 1, 0, 0).unwrap();
        w.push_message(S + MS, &o, 10, Direction::Rx).unwrap();
        2 * S
    });
    let rows = json(&fx, &["--report", "conns"]);
    let status = |port: u64| -> &Value {
        &rows
            .iter()
            .find(|r| r["dport"] == port)
            .unwrap_or_else(|| panic!("no :{port} in {rows:#?}"))["status"]
    };
    assert_eq!(status(81), "refused");
    assert_eq!(status(82), "timeout");
    assert_eq!(status(90), "closed");
    assert_eq!(status(91), "reset_by_peer");
    assert_eq!(status(50000), "reset_local");
    assert_eq!(status(50001), "open");
    let clean = rows.iter().find(|r| r["dport"] == 90).unwrap();
    assert_eq!(clean["retrans_segs"], 5);
    assert_eq!(clean["srtt_us"], 900);
    assert_eq!(clean["min_rtt_us"], 300);
    assert_eq!(
        (&clean["segs_out"], &clean["segs_in"]),
        (&100.into(), &60.into())
    );
    let refused = rows.iter().find(|r| r["dport"] == 81).unwrap();
    assert!(refused["srtt_us"].is_null(), "no RTT sample: {refused}");
    assert_eq!(refused["retrans_segs"], 0);
    let open = rows.iter().find(|r| r["dport"] == 50001).unwrap();
    assert!(open["retrans_segs"].is_null(), "open: no counters yet");

    let per = json(&fx, &["--report", "conns", "--by", "pid"]);
    assert_eq!(row(&per, "pid", CLIENT as u64)["failed"], 2);
    assert_eq!(row(&per, "pid", SERVER as u64)["failed"], 0);

    let out = fx.dir.join("summary.json");
    analyze(&[&fx.trace, "--format", "json", "-o", out.to_str().unwrap()]).unwrap();
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let probs = v["connection_problems"].as_array().unwrap();
    let cli = row(probs, "pid", CLIENT as u64);
    assert_eq!(cli["tcp_conns"], 4);
    assert_eq!(cli["failed_connects"], 2);
    assert_eq!((&cli["refused"], &cli["timeout"]), (&1.into(), &1.into()));
    assert_eq!(cli["reset_by_peer"], 1);
    assert_eq!(cli["retrans_segs"], 5);
    assert_eq!(cli["segs_out"], 103);
    let share = cli["retrans_share"].as_f64().unwrap();
    assert!((share - 5.0 / 103.0).abs() < 1e-9, "{share}");
    assert_eq!(row(probs, "pid", SERVER as u64)["reset_local"], 1);
    assert_eq!(probs[0]["pid"], CLIENT, "worst first");

    let html = fx.dir.join("r.html");
    analyze(&[&fx.trace, "--report", "html", "-o", html.to_str().unwrap()]).unwrap();
    let h = std::fs::read_to_string(&html).unwrap();
    assert!(h.contains("Connection outcomes") && h.contains("TCP connections by outcome"));
    assert!(h.contains("reset_by_peer") && h.contains("Connection problems"));
}

/// A trace recorded before format 1.2 (the committed real
/// loopback fixture, 1.1) still opens; its connections' status and
/// counters are null, not "closed" and zero.
#[test]
fn old_traces_have_null_outcomes() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/loopback.snp");
    let d = tempfile::tempdir().unwrap();
    let v: Value = serde_json::from_str(&report_json(&p, d.path(), "conns")).unwrap();
    let rows = v.as_array().unwrap();
    assert!(rows.iter().any(|r| r["proto"] == "TCP"), "{rows:#?}");
    for r in rows {
        for k in [
            "status",
            "retrans_segs",
            "srtt_us",
            "min_rtt_us",
            "segs_out",
            "segs_in",
        ] {
            assert!(r[k].is_null(), "{k} in {r}");
        }
    }
}

/// A process already running when recording began has a
/// "running" row at its kernel start time (before the recording), so
/// lifecycle gives it a start, first_net_after_ns and conn_after_ns; a
/// process known only from such a row, without network activity, is not
/// listed.
#[test]
fn lifecycle_of_processes_running_before_the_recording() {
    let fx = trace_fx("running", |w| {
        // sshd started 100 s after boot, long before the recording (S).
        w.push_process(&proc_row(
            100 * MS,
            ProcessKind::Running,
            800,
            1,
            "sshd",
            "",
            0,
        ))
        .unwrap();
        w.push_process(&proc_row(
            50 * MS,
            ProcessKind::Running,
            801,
            1,
            "idle",
            "",
            0,
        ))
        .unwrap();
        let c = flow(800, "sshd", 6, "10.0.0.1", 22, "10.0.0.9", 50000, 81);
        w.push_conn(S + 2 * MS, &c, 3, 1, 0, 0).unwrap();
        w.push_message(S + 5 * MS, &c, 100, Direction::Tx).unwrap();
        2 * S
    });
    let rows = json(&fx, &["--report", "lifecycle"]);
    assert_eq!(rows.len(), 1, "the idle process is not listed: {rows:#?}");
    let r = row(&rows, "pid", 800);
    assert_eq!(r["start_ns"], 100 * MS);
    assert_eq!(r["ppid"], 1);
    assert!(r["exec_ns"].is_null());
    assert_eq!(r["first_net_after_ns"], S + 5 * MS - 100 * MS);
    assert_eq!(r["first_conn_after_ns"], S + 2 * MS - 100 * MS);
    assert_eq!(r["conn_after_ns"], format!("{}", S + 2 * MS - 100 * MS));
}

/// A trace that names its cgroups (format 1.2) shows their paths
/// and containers with `--by cgroup`, and groups by container or service
/// with `--by container` ("-" for neither or unnamed).
#[test]
fn by_cgroup_and_container_show_names() {
    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let fx = trace_fx("cgroups", |w| {
        w.write_cgroups(&[
            (10, format!("/system.slice/docker-{ID}.scope")),
            (11, format!("/system.slice/docker-{ID}.scope/init")),
            (20, "/system.slice/nginx.service".into()),
            (30, "/user.slice/session-1.scope".into()),
        ])
        .unwrap();
        let mut f = |pid: u32, cgroup: u64, bytes: u32| {
            let fl = Flow {
                cgroup,
                ..flow(
                    pid,
                    "p",
                    6,
                    "10.0.0.1",
                    1000 + pid as u16,
                    "10.0.0.2",
                    80,
                    pid as u64,
                )
            };
            w.push_message(S + u64::from(pid), &fl, bytes, Direction::Tx)
                .unwrap();
        };
        f(1, 10, 100);
        f(2, 11, 50);
        f(3, 20, 7);
        f(4, 30, 3);
        f(5, 40, 1); // a cgroup the trace does not name
        2 * S
    });
    let rows = json(&fx, &["--by", "cgroup"]);
    let r = row(&rows, "cgroup", 10);
    assert_eq!(r["cgroup_path"], format!("/system.slice/docker-{ID}.scope"));
    assert_eq!(r["container"], "docker:0123456789ab");
    assert_eq!(row(&rows, "cgroup", 20)["container"], "nginx.service");
    assert!(row(&rows, "cgroup", 30)["container"].is_null());
    assert!(row(&rows, "cgroup", 40)["cgroup_path"].is_null());

    let rows = json(&fx, &["--by", "container"]);
    let by = |name: &str| {
        rows.iter()
            .find(|r| r["container"] == name)
            .unwrap_or_else(|| panic!("no {name} in {rows:#?}"))["tx_bytes"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(by("docker:0123456789ab"), 150, "both of its cgroups");
    assert_eq!(by("nginx.service"), 7);
    assert_eq!(by("-"), 4, "a session scope and an unnamed cgroup");
    assert_eq!(rows.len(), 3);
}

/// Names for remote addresses from DNS answers (format 1.3): a connection
/// gets the name its own process was last answered for the address before
/// the connection started, else the name anyone was last answered; none
/// before any answer. `remotes` and `--by remote` take the whole trace.
#[test]
fn remote_names_follow_who_asked_and_when() {
    let addr = |a: &str| addr_bytes(a.parse().unwrap());
    let answer = |ts_ns: u64, pid: u32, name: &str| snoop_format::DnsAnswer {
        ts_ns,
        pid,
        name: name.into(),
        cnames: Vec::new(),
        addr: addr("10.0.0.5"),
        ttl: 30,
    };
    let fx = trace_fx("names", |w| {
        w.write_dns(&[
            answer(S + 10 * MS, 1, "x.test"),
            answer(S + 20 * MS, 2, "y.test"),
        ])
        .unwrap();
        let sends = [
            (3, 1000, "10.0.0.5", 5),  // before any answer
            (2, 1001, "10.0.0.5", 15), // anyone's: x.test
            (2, 1002, "10.0.0.5", 25), // its own: y.test
            (1, 1003, "10.0.0.5", 30), // its own, though y.test is later
            (3, 1004, "10.0.0.9", 30), // never answered
        ];
        for (pid, lport, to, ms) in sends {
            let f = flow(pid, "c", 17, "10.0.0.1", lport, to, 443, u64::from(lport));
            w.push_message(S + ms * MS, &f, 100, Direction::Tx).unwrap();
        }
        S + 40 * MS
    });
    let conns = json(&fx, &["--report", "conns"]);
    let name_of = |lport: u64| row(&conns, "sport", lport)["remote_name"].clone();
    assert!(name_of(1000).is_null(), "{conns:#?}");
    assert_eq!(name_of(1001), "x.test");
    assert_eq!(name_of(1002), "y.test");
    assert_eq!(name_of(1003), "x.test");
    assert!(name_of(1004).is_null());
    let remotes = json(&fx, &["--report", "remotes"]);
    let r = |pid: u64, remote: &str| {
        remotes
            .iter()
            .find(|r| r["pid"] == pid && r["remote"] == remote)
            .unwrap_or_else(|| panic!("{pid} {remote}: {remotes:#?}"))["remote_name"]
            .clone()
    };
    assert_eq!(r(1, "10.0.0.5"), "x.test");
    assert_eq!(r(2, "10.0.0.5"), "y.test");
    assert_eq!(r(3, "10.0.0.5"), "y.test");
    assert!(r(3, "10.0.0.9").is_null());
    let by = json(&fx, &["--by", "remote"]);
    let g = |name: &str| by.iter().find(|r| r["remote_name"] == name).cloned();
    assert_eq!(g("x.test").unwrap()["tx_bytes"], 100, "pid 1: {by:#?}");
    assert_eq!(g("y.test").unwrap()["tx_bytes"], 300, "pids 2 and 3");
    let unnamed = by.iter().find(|r| r["remote"] == "10.0.0.9").unwrap();
    assert!(unnamed["remote_name"].is_null());
    // The HTML report's remote shares name them too.
    let html = fx.dir.join("names.html");
    analyze(&[&fx.trace, "-o", html.to_str().unwrap()]).unwrap();
    let html = std::fs::read_to_string(&html).unwrap();
    assert!(html.contains("x.test") && html.contains("y.test"), "{html}");
    // The answers themselves, exported (here: those pid 2 received).
    let out = fx.dir.join("dns.csv");
    let cli = ExportCli::try_parse_from([
        "export",
        &fx.trace,
        "--table",
        "dns",
        "--pid",
        "2",
        "-o",
        out.to_str().unwrap(),
    ])
    .unwrap();
    run_export(&cli.a).unwrap();
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        format!(
            "ts_ns,pid,name,cnames,addr,ttl\n{},2,y.test,\"\",10.0.0.5,30\n",
            S + 20 * MS
        )
    );
}

/// A trace with a run of packets (format 1.4): 100 packets of 1000 bytes
/// sent from 0.5 s to 1.5 s after boot, evenly spread, by pid 300 (its
/// socket's cookie is on its message), and one 52-byte packet received at
/// 2.2 s.
fn runs_trace(dir: &Path) -> String {
    let p = dir.join("runs.snp");
    let file = std::fs::File::create(&p).unwrap();
    let mut w = TraceWriter::new(file, &info("host-r"), WriterOptions::default()).unwrap();
    let bulk = flow(300, "bulk", 6, "10.0.0.1", 1000, "10.0.0.2", 2000, 5);
    w.push_message(4 * S / 10, &bulk, 100_000, Direction::Tx)
        .unwrap();
    let p300 = pkt(&bulk, 300, 5, 1);
    w.push_packet_run(S / 2, 3 * S / 2, 100, &p300, 1000, Direction::Tx, 1, 0x18)
        .unwrap();
    w.push_packet(2 * S + 200 * MS, &p300, 52, Direction::Rx, 1)
        .unwrap();
    w.finish(3 * S).unwrap();
    p.display().to_string()
}

/// Every report weighs a run as its packets: counts, wire bytes and size
/// distributions as if each packet were a row; the timeline splits the run
/// over the intervals it spans in proportion to its time in each (50
/// packets before 1 s, 50 after); --since keeps only the run's packets
/// inside the window; replay shows it as one line with count and span.
#[test]
fn runs_weigh_as_their_packets() {
    let d = tempfile::tempdir().unwrap();
    let fx = Fx {
        dir: d.path().to_path_buf(),
        trace: runs_trace(d.path()),
        _dir: tempfile::tempdir().unwrap(),
    };
    let by_pid = json(&fx, &["--by", "pid"]);
    let b = row(&by_pid, "pid", 300);
    assert_eq!(b["tx_packets"], 100);
    assert_eq!(b["tx_wire_bytes"], 100_000);
    assert_eq!(b["rx_packets"], 1);
    assert_eq!(b["rx_wire_bytes"], 52);

    let sizes = json(&fx, &["--report", "sizes", "--by", "pid"]);
    let tx = sizes
        .iter()
        .find(|r| r["kind"] == "packet" && r["dir"] == "tx")
        .unwrap();
    assert_eq!(tx["count"], 100);
    assert_eq!(tx["min_bytes"], 1000);
    assert_eq!(tx["p99_bytes"], 1000);
    assert_eq!(tx["mean_bytes"], 1000.0);
    assert_eq!(tx["hist"], "512:100");

    let tl = json(&fx, &["--report", "timeline", "--by", "pid"]);
    let at = |i: u64| {
        tl.iter()
            .find(|r| r["interval_ns"] == i * S && r["pid"] == 300)
            .map(|r| r["tx_wire_bytes"].clone())
    };
    assert_eq!(at(0), Some(Value::from(50_000)), "{tl:#?}");
    assert_eq!(at(1), Some(Value::from(50_000)), "{tl:#?}");

    // --since 1s: 1 s after the recording's start, which is at 1 s of
    // boot time, so 2 s of boot time: none of the run, only the 52 bytes.
    let late = json(&fx, &["--by", "pid", "--since", "1s"]);
    let b = row(&late, "pid", 300);
    assert_eq!(b["tx_packets"], 0);
    assert_eq!(b["rx_packets"], 1);
    // --until 0.25s after the start (1.25 s of boot time): packets 0..=74.
    let early = json(&fx, &["--by", "pid", "--until", "250ms"]);
    assert_eq!(row(&early, "pid", 300)["tx_packets"], 75);

    let out = fx.dir.join("runs.txt");
    replay(&[&fx.trace, "-o", out.to_str().unwrap()]).unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.contains("tx 1000 x100 over 1.00 s pid 300/bulk"),
        "{text}"
    );
}

/// A run from a hostile file (two packets centuries apart) costs the
/// timeline one step per interval that holds a packet, not one per
/// interval in between, and still counts its two packets.
#[test]
fn a_run_with_a_huge_span_is_cheap() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("span.snp");
    let file = std::fs::File::create(&p).unwrap();
    let mut w = TraceWriter::new(file, &info("host-s"), WriterOptions::default()).unwrap();
    let f = flow(400, "far", 6, "10.0.0.1", 1000, "10.0.0.2", 2000, 9);
    w.push_message(S, &f, 10, Direction::Tx).unwrap();
    w.push_packet_run(
        S,
        u64::MAX / 2,
        2,
        &pkt(&f, 400, 9, 1),
        100,
        Direction::Tx,
        1,
        0,
    )
    .unwrap();
    w.finish(2 * S).unwrap();
    let fx = Fx {
        dir: d.path().to_path_buf(),
        trace: p.display().to_string(),
        _dir: tempfile::tempdir().unwrap(),
    };
    let tl = json(
        &fx,
        &["--report", "timeline", "--by", "pid", "--interval", "1ms"],
    );
    let total: u64 = tl
        .iter()
        .filter(|r| r["pid"] == 400)
        .map(|r| r["tx_wire_bytes"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(total, 200, "{tl:?}");
}

/// The dataset holds a trace's DNS answers as table `dns`: one row per
/// answer the test wrote, the name a dictionary string, the time the
/// answer's wall-clock time; a trace without answers adds no dns table.
#[test]
fn dataset_has_the_dns_answers() {
    use polars::prelude::{DataType, ParquetReader, SerReader};
    let answer = |ts_ns: u64, pid: u32, name: &str, a: &str| snoop_format::DnsAnswer {
        ts_ns,
        pid,
        name: name.into(),
        cnames: vec!["edge.cdn.test".into()],
        addr: addr_bytes(a.parse().unwrap()),
        ttl: 60,
    };
    let fx = trace_fx("dns-dataset", |w| {
        w.write_dns(&[
            answer(S + 10 * MS, 7, "x.test", "10.0.0.5"),
            answer(S + 20 * MS, 8, "y.test", "2001:db8::1"),
        ])
        .unwrap();
        let f = flow(7, "c", 17, "10.0.0.1", 1000, "10.0.0.5", 443, 1);
        w.push_message(S + 30 * MS, &f, 100, Direction::Tx).unwrap();
        S + 40 * MS
    });
    let dir = fx.dir.join("ds");
    let cli = ExportCli::try_parse_from(["export", &fx.trace, "--dataset", dir.to_str().unwrap()])
        .unwrap();
    run_export(&cli.a).unwrap();
    let parts: Vec<PathBuf> = walk(&dir.join("table=dns"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    assert_eq!(parts.len(), 1, "{parts:?}");
    let df = ParquetReader::new(std::fs::File::open(&parts[0]).unwrap())
        .finish()
        .unwrap();
    assert_eq!(df.height(), 2);
    let names = df.column("name").unwrap();
    assert!(
        matches!(names.dtype(), DataType::Categorical(..)),
        "{:?}",
        names.dtype()
    );
    let names = names.cast(&DataType::String).unwrap();
    let names = names.str().unwrap();
    let names: Vec<&str> = (0..names.len()).filter_map(|i| names.get(i)).collect();
    assert_eq!(names, ["x.test", "y.test"]);
    let addrs = df.column("addr").unwrap().str().unwrap();
    let addrs: Vec<&str> = (0..addrs.len()).filter_map(|i| addrs.get(i)).collect();
    assert_eq!(addrs, ["10.0.0.5", "2001:db8::1"]);
    let pids: Vec<i64> = df
        .column("pid")
        .unwrap()
        .i64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    assert_eq!(pids, [7, 8]);
    // Wall-clock time: the trace's boot-to-wall offset plus the answer's time.
    let info = snoop_format::Trace::open(Path::new(&fx.trace))
        .unwrap()
        .info()
        .clone();
    let t0 = df.column("time_ns").unwrap().i64().unwrap().get(0).unwrap();
    assert_eq!(t0, info.wall_ns(S + 10 * MS));

    // A trace without answers: no dns table.
    let plain = trace_fx("no-dns-dataset", |w| {
        let f = flow(7, "c", 17, "10.0.0.1", 1000, "10.0.0.5", 443, 1);
        w.push_message(S, &f, 100, Direction::Tx).unwrap();
        2 * S
    });
    let dir2 = plain.dir.join("ds2");
    let cli =
        ExportCli::try_parse_from(["export", &plain.trace, "--dataset", dir2.to_str().unwrap()])
            .unwrap();
    run_export(&cli.a).unwrap();
    assert!(dir2.join("table=messages").exists());
    assert!(!dir2.join("table=dns").exists());
}

/// Every file under `dir`, recursively.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// A chunk of packets whose every run starts before `--since` still counts
/// the packets its runs have inside the window: 101 packets 10 ms apart
/// from 100 ms after the start; `--since 500ms` keeps the 61 from 500 ms.
#[test]
fn since_keeps_a_runs_packets_inside_the_window() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("run-since.snp");
    let file = std::fs::File::create(&p).unwrap();
    let mut w = TraceWriter::new(file, &info("host-r"), WriterOptions::default()).unwrap();
    let bulk = flow(300, "bulk", 6, "10.0.0.1", 1000, "10.0.0.2", 2000, 5);
    w.push_message(S + 50 * MS, &bulk, 101_000, Direction::Tx)
        .unwrap();
    let p300 = pkt(&bulk, 300, 5, 1);
    w.push_packet_run(
        S + 100 * MS,
        S + 1100 * MS,
        101,
        &p300,
        1000,
        Direction::Tx,
        1,
        0x10,
    )
    .unwrap();
    w.finish(S + 2 * S).unwrap();
    let fx = Fx {
        trace: p.display().to_string(),
        dir: d.path().to_path_buf(),
        _dir: d,
    };
    let all = json(&fx, &["--by", "pid"]);
    assert_eq!(row(&all, "pid", 300)["tx_packets"], 101);
    let late = json(&fx, &["--by", "pid", "--since", "500ms"]);
    assert_eq!(row(&late, "pid", 300)["tx_packets"], 61, "{late:#?}");
}
