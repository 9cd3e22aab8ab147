//! The behaviour report and `snoop diff`, on traces the tests
//! write row by row (messages, TCP state changes, process events) so each
//! knows exactly what it put in. Every trait of the vocabulary is shown on
//! a workload made to have it and on one made not to; then roles, the
//! numbers and evidence sentences, table/CSV/summary/HTML output, several
//! traces (host column), a `--since/--until` window, the committed traces
//! from before this report existed, and `snoop diff` on two written
//! traces with new, gone, changed and same processes. The per-event facts
//! are worked out chunk by chunk while loading; one workload written as one
//! chunk and as hundreds must give the same rows.

use std::path::{Path, PathBuf};

use clap::Parser;
use serde_json::Value;
use snoop_analyze::{run_analyze, run_diff, AnalyzeArgs, DiffArgs};
use snoop_format::{
    addr_bytes, comm_bytes, Direction, FileInfo, Flow, ProcessKind, ProcessRow, TraceWriter,
    WriterOptions,
};

const S: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;
const TX: Direction = Direction::Tx;
const RX: Direction = Direction::Rx;

#[derive(Parser)]
struct AnalyzeCli {
    #[command(flatten)]
    a: AnalyzeArgs,
}

#[derive(Parser)]
struct DiffCli {
    #[command(flatten)]
    a: DiffArgs,
}

/// Writes a trace: flows get fresh cookies and local ports.
struct Gen {
    w: TraceWriter<std::fs::File>,
    cookie: u64,
    port: u16,
    end: u64,
}

impl Gen {
    fn new(path: &Path, host: &str) -> Gen {
        Gen::with_options(path, host, WriterOptions::default())
    }

    fn with_options(path: &Path, host: &str, opts: WriterOptions) -> Gen {
        let info = FileInfo {
            host: host.into(),
            kernel: "6.18.0-test".into(),
            snoop_version: "0.1.0".into(),
            command: vec!["snoop".into(), "record".into()],
            boot_to_wall_ns: 1_700_000_000_000_000_000,
            start_ns: S,
            ifaces: vec![(1, "lo".into())],
        };
        let w = TraceWriter::new(std::fs::File::create(path).unwrap(), &info, opts).unwrap();
        Gen {
            w,
            cookie: 1,
            port: 40000,
            end: S,
        }
    }

    /// A new socket of `pid` to `raddr:rport`.
    fn flow(&mut self, pid: u32, comm: &str, proto: u8, raddr: &str, rport: u16) -> Flow {
        self.cookie += 1;
        self.port += 1;
        Flow {
            pid,
            tid: pid,
            comm: comm_bytes(comm),
            cgroup: 1,
            cookie: self.cookie,
            ifindex: 0,
            family: 2,
            proto,
            laddr: addr_bytes("10.0.0.1".parse().unwrap()),
            lport: self.port,
            raddr: addr_bytes(raddr.parse().unwrap()),
            rport,
        }
    }

    /// A socket of `pid` that accepted a connection on `lport` from `raddr:rport`.
    fn inbound(&mut self, pid: u32, comm: &str, lport: u16, raddr: &str, rport: u16) -> Flow {
        let mut f = self.flow(pid, comm, 6, raddr, rport);
        f.lport = lport;
        f
    }

    fn at(&mut self, t: u64) {
        self.end = self.end.max(t);
    }

    fn msg(&mut self, f: &Flow, t: u64, bytes: u32, dir: Direction) {
        self.at(t);
        self.w.push_message(t, f, bytes, dir).unwrap();
    }

    fn state(&mut self, f: &Flow, t: u64, old: u8, new: u8) {
        self.at(t);
        self.w.push_conn(t, f, old, new, 0, 0).unwrap();
    }

    /// CLOSE -> SYN_SENT -> ESTABLISHED (the SYN before the source port is known).
    fn connect(&mut self, f: &Flow, t: u64) {
        let syn = Flow {
            lport: 0,
            laddr: [0; 16],
            ..*f
        };
        self.state(&syn, t, 7, 2);
        self.state(f, t + MS / 10, 2, 1);
    }

    /// SYN_SENT -> CLOSE: refused.
    fn refused(&mut self, f: &Flow, t: u64) {
        let syn = Flow {
            lport: 0,
            laddr: [0; 16],
            ..*f
        };
        self.state(&syn, t, 7, 2);
        self.state(f, t + MS, 2, 7);
    }

    fn accept(&mut self, f: &Flow, t: u64) {
        self.state(f, t, 3, 1);
    }

    fn close(&mut self, f: &Flow, t: u64) {
        self.state(f, t, 1, 7);
    }

    fn listen(&mut self, pid: u32, comm: &str, port: u16, t: u64) {
        let mut f = self.flow(pid, comm, 6, "0.0.0.0", 0);
        f.lport = port;
        f.laddr = [0; 16];
        f.raddr = [0; 16];
        self.state(&f, t, 7, 10);
    }

    fn exec(&mut self, pid: u32, comm: &str, t: u64) {
        self.w
            .push_process(&ProcessRow {
                ts_ns: t,
                kind: ProcessKind::Exec,
                pid,
                tid: pid,
                ppid: 1,
                comm: comm_bytes(comm),
                exit_code: 0,
                filename: format!("/usr/bin/{comm}"),
            })
            .unwrap();
    }

    /// An outbound TCP connection at `t` with `msgs` (offset, bytes, dir), closed at `t + dur`.
    #[allow(clippy::too_many_arguments)]
    fn tcp_conn(
        &mut self,
        pid: u32,
        comm: &str,
        raddr: &str,
        rport: u16,
        t: u64,
        dur: u64,
        msgs: &[(u64, u32, Direction)],
    ) -> Flow {
        let f = self.flow(pid, comm, 6, raddr, rport);
        self.connect(&f, t);
        for &(dt, b, d) in msgs {
            self.msg(&f, t + MS + dt, b, d);
        }
        self.close(&f, t + dur);
        f
    }

    fn finish(self) {
        let end = self.end + S;
        self.w.finish(end).unwrap();
    }
}

struct Fx {
    _dir: tempfile::TempDir,
    dir: PathBuf,
}

fn fx() -> Fx {
    let d = tempfile::tempdir().unwrap();
    Fx {
        dir: d.path().to_path_buf(),
        _dir: d,
    }
}

impl Fx {
    fn trace(&self, name: &str, host: &str, write: impl FnOnce(&mut Gen)) -> String {
        let p = self.dir.join(format!("{name}.snp"));
        let mut g = Gen::new(&p, host);
        write(&mut g);
        g.finish();
        p.display().to_string()
    }

    fn out(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

fn analyze(args: &[&str]) {
    let cli =
        AnalyzeCli::try_parse_from(std::iter::once("analyze").chain(args.iter().copied())).unwrap();
    run_analyze(&cli.a).unwrap();
}

/// `snoop analyze FILES... --report behavior ARGS --format json` as rows.
fn behavior(fx: &Fx, files: &[&str], args: &[&str]) -> Vec<Value> {
    let out = fx.out("behavior.json");
    let mut a: Vec<&str> = files.to_vec();
    a.extend(["--report", "behavior", "--format", "json", "-o", &out]);
    a.extend_from_slice(args);
    analyze(&a);
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    v.as_array().unwrap().clone()
}

fn proc_row(rows: &[Value], pid: u32) -> &Value {
    rows.iter()
        .find(|r| r["pid"] == pid)
        .unwrap_or_else(|| panic!("no pid {pid} in {rows:#?}"))
}

fn traits(r: &Value) -> Vec<String> {
    r["traits"]
        .as_str()
        .unwrap()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Assert that `pid` has trait `t` (and return its evidence sentence) or not.
fn has(rows: &[Value], pid: u32, t: &str) -> Option<String> {
    let r = proc_row(rows, pid);
    if !traits(r).iter().any(|x| x == t) {
        return None;
    }
    let ev = r["evidence"].as_str().unwrap();
    let s = ev
        .split("; ")
        .find_map(|s| s.strip_prefix(&format!("{t}: ")))
        .unwrap_or_else(|| panic!("no evidence for {t} in {ev:?}"));
    Some(s.to_string())
}

fn assert_trait(rows: &[Value], pid: u32, t: &str) -> String {
    has(rows, pid, t).unwrap_or_else(|| panic!("pid {pid} lacks {t}: {:#}", proc_row(rows, pid)))
}

fn assert_no_trait(rows: &[Value], pid: u32, t: &str) {
    assert!(
        has(rows, pid, t).is_none(),
        "pid {pid} has {t}: {:#}",
        proc_row(rows, pid)
    );
}

/// A deterministic, irregular human-scale gap: 80 ms to 1.5 s.
fn human_gap(i: u64) -> u64 {
    let x = (i.wrapping_mul(2_654_435_761) >> 7) % 1421;
    (80 + x) * MS
}

#[test]
fn bulk_positive_and_negative() {
    let fx = fx();
    let t = fx.trace("bulk", "h", |g| {
        // 10: 100 sends of 64 KiB, 5 small replies: bulk.
        let mut m: Vec<_> = (0..100).map(|i| (i * MS, 65536, TX)).collect();
        m.extend((0..5).map(|i| (i * 20 * MS, 100, RX)));
        g.tcp_conn(10, "bulkpos", "10.0.0.2", 80, S, 2 * S, &m);
        // 11: as many large messages each way: no direction dominates.
        let m: Vec<_> = (0..100)
            .map(|i| (i * MS, 65536, if i % 2 == 0 { TX } else { RX }))
            .collect();
        g.tcp_conn(11, "bulkbal", "10.0.0.2", 80, S, 2 * S, &m);
        // 12: 2 MB one way, but in 100-byte messages.
        let m: Vec<_> = (0..20_000).map(|i| (i * 10_000, 100, TX)).collect();
        g.tcp_conn(12, "bulksmall", "10.0.0.2", 80, S, 2 * S, &m);
    });
    let rows = behavior(&fx, &[&t], &[]);
    let ev = assert_trait(&rows, 10, "bulk");
    assert!(
        ev.contains("in messages of at least 8.0 KiB") && ev.contains("sent"),
        "{ev}"
    );
    assert_no_trait(&rows, 11, "bulk");
    assert_no_trait(&rows, 12, "bulk");
    let r = proc_row(&rows, 10);
    assert_eq!(r["tx_bytes"], 100 * 65536);
    assert_eq!(r["rx_bytes"], 500);
    assert_eq!(r["p50_msg_bytes"], 65536);
    assert_eq!(proc_row(&rows, 12)["p50_msg_bytes"], 100);
}

#[test]
fn interactive_positive_and_negative() {
    let fx = fx();
    let t = fx.trace("interactive", "h", |g| {
        // 20: keystrokes at irregular human pace, each echoed 2 ms later.
        let f = g.flow(20, "sshpos", 6, "10.0.0.3", 22);
        g.connect(&f, S);
        let mut at = 2 * S;
        for i in 0..60 {
            g.msg(&f, at, 48, TX);
            g.msg(&f, at + 2 * MS, 48, RX);
            at += human_gap(i);
        }
        g.close(&f, at);
        // 21: the same exchange at machine pace (2 ms apart).
        let f = g.flow(21, "rpcfast", 6, "10.0.0.3", 22);
        g.connect(&f, S);
        for i in 0..60 {
            g.msg(&f, 2 * S + i * 4 * MS, 48, TX);
            g.msg(&f, 2 * S + i * 4 * MS + 2 * MS, 48, RX);
        }
        g.close(&f, 3 * S);
        // 22: the same exchange every 5 s exactly (a timer, not a person).
        let f = g.flow(22, "ticker", 6, "10.0.0.3", 22);
        g.connect(&f, S);
        for i in 0..20 {
            g.msg(&f, 2 * S + i * 5 * S, 48, TX);
            g.msg(&f, 2 * S + i * 5 * S + 2 * MS, 48, RX);
        }
        g.close(&f, 120 * S);
    });
    let rows = behavior(&fx, &[&t], &[]);
    let ev = assert_trait(&rows, 20, "interactive");
    assert!(
        ev.starts_with("60 sent and 60 received messages of 48 B"),
        "{ev}"
    );
    assert_no_trait(&rows, 21, "interactive");
    assert_no_trait(&rows, 22, "interactive");
    assert_eq!(proc_row(&rows, 20)["p50_msg_bytes"], 48);
}

#[test]
fn request_response_positive_and_negative() {
    let fx = fx();
    let t = fx.trace("rr", "h", |g| {
        // 30: 20 requests of 100 B, each answered by 4000 B.
        let m: Vec<_> = (0..20)
            .flat_map(|i| [(i * 50 * MS, 100, TX), (i * 50 * MS + 5 * MS, 4000, RX)])
            .collect();
        g.tcp_conn(30, "rrpos", "10.0.0.4", 443, S, 2 * S, &m);
        // 31: alternating too, but the answers are smaller (an upload with acks).
        let m: Vec<_> = (0..20)
            .flat_map(|i| [(i * 50 * MS, 4000, TX), (i * 50 * MS + 5 * MS, 100, RX)])
            .collect();
        g.tcp_conn(31, "upload", "10.0.0.4", 443, S, 2 * S, &m);
        // 32: one-way only.
        let m: Vec<_> = (0..20).map(|i| (i * 50 * MS, 100, TX)).collect();
        g.tcp_conn(32, "oneway", "10.0.0.4", 443, S, 2 * S, &m);
    });
    let rows = behavior(&fx, &[&t], &[]);
    let ev = assert_trait(&rows, 30, "request-response");
    assert_eq!(
        ev,
        "20 exchanges on 1 connection: requests of 100 B and replies of 3.9 KiB on average, \
         the reply larger in 20"
    );
    assert_no_trait(&rows, 31, "request-response");
    assert_no_trait(&rows, 32, "request-response");
}

#[test]
fn streaming_positive_and_negative() {
    let fx = fx();
    let t = fx.trace("stream", "h", |g| {
        // 40: 10 KiB every 100 ms for 60 s.
        let m: Vec<_> = (0..600).map(|i| (i * 100 * MS, 10240, TX)).collect();
        g.tcp_conn(40, "streampos", "10.0.0.5", 8000, S, 62 * S, &m);
        // 41: the same bytes in three bursts.
        let m: Vec<_> = (0..600)
            .map(|i| ((i / 200) * 29 * S + (i % 200) * MS, 10240, TX))
            .collect();
        g.tcp_conn(41, "bursty", "10.0.0.5", 8000, S, 62 * S, &m);
        // 42: steady, but only a heartbeat (10 B a second).
        let m: Vec<_> = (0..60).map(|i| (i * S, 10, TX)).collect();
        g.tcp_conn(42, "heartbeat", "10.0.0.5", 8000, S, 62 * S, &m);
    });
    let rows = behavior(&fx, &[&t], &[]);
    let ev = assert_trait(&rows, 40, "streaming");
    assert!(
        ev.starts_with("100.0 KiB/s steady (cv 0.00) in 58 of 58 slots of 1.00 s"),
        "{ev}"
    );
    assert_no_trait(&rows, 41, "streaming");
    assert_no_trait(&rows, 42, "streaming");
}

/// 12 connections to 10.0.0.5:443 about every 30 s (pid 50), 12 at
/// irregular times (pid 51), and a message burst every 10 s on one
/// long-lived connection (pid 52).
fn periodic_trace(g: &mut Gen) {
    let jitter: [i64; 12] = [0, 300, -400, 200, -100, 400, -300, 100, 0, -200, 300, -400];
    for (i, j) in jitter.iter().enumerate() {
        let t = (10 * S as i64 + i as i64 * 30 * S as i64 + j * MS as i64) as u64;
        g.tcp_conn(
            50,
            "beacon",
            "10.0.0.5",
            443,
            t,
            50 * MS,
            &[(0, 200, TX), (MS, 300, RX)],
        );
    }
    let irregular = [0u64, 2, 40, 41, 90, 150, 151, 152, 200, 260, 300, 333];
    for s in irregular {
        g.tcp_conn(
            51,
            "irregular",
            "10.0.0.6",
            443,
            (10 + s) * S,
            50 * MS,
            &[(0, 200, TX)],
        );
    }
    let m: Vec<_> = (0..10)
        .flat_map(|i| [(i * 10 * S, 50, TX), (i * 10 * S + MS, 50, RX)])
        .collect();
    g.tcp_conn(52, "heartbeat", "10.0.0.7", 9000, 10 * S, 100 * S, &m);
}

#[test]
fn periodic_positive_and_negative() {
    let fx = fx();
    let t = fx.trace("periodic", "h", periodic_trace);
    let rows = behavior(&fx, &[&t], &[]);
    let ev = assert_trait(&rows, 50, "periodic");
    assert!(
        ev.starts_with("12 connections to 10.0.0.5:443, every 30.0 s ± 0."),
        "{ev}"
    );
    let r = proc_row(&rows, 50);
    // Intervals: (330 s - 0.4 s) / 11.
    let period = r["period_ns"].as_u64().unwrap();
    assert!(period.abs_diff(29_963_636_364) < 1000, "{period}");
    let jitter = r["period_jitter"].as_f64().unwrap();
    assert!(jitter > 0.0 && jitter < 0.02, "{jitter}");
    assert_eq!(r["conns"], 12);

    assert_no_trait(&rows, 51, "periodic");
    let r = proc_row(&rows, 51);
    assert!(
        r["period_ns"].is_null() && r["period_jitter"].is_null(),
        "{r}"
    );

    let ev = assert_trait(&rows, 52, "periodic");
    assert!(
        ev.starts_with("10 message bursts with 10.0.0.7:9000, every 10.0 s ± 0.0 s"),
        "{ev}"
    );
    assert_eq!(proc_row(&rows, 52)["period_ns"], 10 * S);
}

#[test]
fn fan_out_and_scan_positive_and_negative() {
    let fx = fx();
    let t = fx.trace("fanscan", "h", |g| {
        for i in 0..30u64 {
            // 60: 30 addresses, all answered: fan-out, not scan.
            let a = format!("10.0.1.{}", i + 1);
            g.tcp_conn(
                60,
                "crawler",
                &a,
                80,
                S + i * S,
                100 * MS,
                &[(0, 100, TX), (MS, 2000, RX)],
            );
            // 61: 30 connections to 3 addresses: neither.
            let a = format!("10.0.1.{}", 101 + i % 3);
            g.tcp_conn(
                61,
                "client3",
                &a,
                80,
                S + i * S,
                100 * MS,
                &[(0, 100, TX), (MS, 2000, RX)],
            );
        }
        for port in 1..=50u16 {
            // 70: 50 ports of one address, all refused: scan.
            let f = g.flow(70, "scanner", 6, "10.0.2.1", port);
            g.refused(&f, S + port as u64 * 10 * MS);
            // 71: 50 ports of one address, all answered: not a scan.
            let t = S + port as u64 * 10 * MS;
            g.tcp_conn(
                71,
                "checker",
                "10.0.2.2",
                port,
                t,
                5 * MS,
                &[(0, 10, TX), (MS, 10, RX)],
            );
        }
        // 72: 3 refused connections: failed, but not many targets.
        for port in [22u16, 23, 25] {
            let f = g.flow(72, "fewfail", 6, "10.0.2.3", port);
            g.refused(&f, 2 * S + port as u64 * MS);
        }
        // 73: 30 ports, connected but nothing sent either way (a connect scan).
        for port in 1..=30u16 {
            let f = g.flow(73, "connscan", 6, "10.0.2.4", port);
            g.connect(&f, 3 * S + port as u64 * MS);
            g.close(&f, 3 * S + port as u64 * MS + MS / 2);
        }
    });
    let rows = behavior(&fx, &[&t], &[]);
    let ev = assert_trait(&rows, 60, "fan-out");
    assert!(
        ev.starts_with(
            "contacted 30 distinct remote addresses (10.0.1.1, 10.0.1.2, 10.0.1.3, ...)"
        ),
        "{ev}"
    );
    assert_no_trait(&rows, 60, "scan");
    assert_no_trait(&rows, 61, "fan-out");
    assert_eq!(proc_row(&rows, 61)["remotes"], 3);

    let ev = assert_trait(&rows, 70, "scan");
    assert_eq!(
        ev,
        "50 of 50 outbound connections to 50 ports on 1 address were refused, failed or empty"
    );
    let r = proc_row(&rows, 70);
    assert_eq!(r["comm"], "scanner");
    assert_eq!(
        (r["conns"].as_u64(), r["failed_conns"].as_u64()),
        (Some(50), Some(50))
    );
    assert_eq!(
        (r["remotes"].as_u64(), r["remote_ports"].as_u64()),
        (Some(1), Some(50))
    );
    assert_eq!(r["role"], "client");
    assert_no_trait(&rows, 70, "fan-out");
    assert_no_trait(&rows, 71, "scan");
    assert_eq!(proc_row(&rows, 71)["failed_conns"], 0);
    assert_no_trait(&rows, 72, "scan");
    assert_eq!(proc_row(&rows, 72)["failed_conns"], 3);
    assert_trait(&rows, 73, "scan");
    assert_eq!(proc_row(&rows, 73)["failed_conns"], 30);
}

#[test]
fn short_and_long_lived_conns_positive_and_negative() {
    let fx = fx();
    let t = fx.trace("durations", "h", |g| {
        for i in 0..5 {
            g.tcp_conn(
                80,
                "shorty",
                "10.0.0.8",
                80,
                S + i * S,
                10 * MS,
                &[(0, 10, TX)],
            );
        }
        for i in 0..2 {
            g.tcp_conn(
                81,
                "longy",
                "10.0.0.9",
                5432,
                S + i * S,
                120 * S,
                &[(0, 10, TX)],
            );
        }
    });
    let rows = behavior(&fx, &[&t], &[]);
    let ev = assert_trait(&rows, 80, "short-lived-conns");
    assert_eq!(ev, "median connection 10.0 ms over 5 connections");
    assert_eq!(proc_row(&rows, 80)["p50_conn_duration_ns"], 10 * MS);
    assert_no_trait(&rows, 80, "long-lived-conns");
    let ev = assert_trait(&rows, 81, "long-lived-conns");
    assert_eq!(ev, "median connection 2m 00s over 2 connections");
    assert_no_trait(&rows, 81, "short-lived-conns");
}

#[test]
fn listener_and_roles() {
    let fx = fx();
    let t = fx.trace("roles", "h", |g| {
        // 90: listens on 8080 and accepts three connections.
        g.listen(90, "server", 8080, S);
        for i in 0..3u64 {
            let f = g.inbound(90, "server", 8080, "10.0.3.1", 50000 + i as u16);
            g.accept(&f, 2 * S + i * S);
            g.msg(&f, 2 * S + i * S + MS, 100, RX);
            g.msg(&f, 2 * S + i * S + 2 * MS, 900, TX);
            g.close(&f, 2 * S + i * S + 3 * MS);
        }
        // 91: connects out only.
        g.tcp_conn(
            91,
            "client",
            "10.0.3.9",
            8080,
            2 * S,
            S,
            &[(0, 100, TX), (MS, 900, RX)],
        );
        // 92: accepts one connection on 3128 and opens one upstream.
        let f = g.inbound(92, "proxy", 3128, "10.0.3.2", 50100);
        g.accept(&f, 2 * S);
        g.msg(&f, 2 * S + MS, 100, RX);
        g.close(&f, 3 * S);
        g.tcp_conn(
            92,
            "proxy",
            "10.0.3.10",
            80,
            2 * S,
            S,
            &[(0, 100, TX), (MS, 900, RX)],
        );
        // 93: a UDP server: spoken to first on port 53.
        let mut f = g.flow(93, "dnsd", 17, "10.0.3.3", 40000);
        f.lport = 53;
        g.msg(&f, 2 * S, 40, RX);
        g.msg(&f, 2 * S + MS, 120, TX);
        // 94: the other end of a UDP query, asking first.
        let f = g.flow(94, "resolver", 17, "10.0.3.4", 53);
        g.msg(&f, 2 * S, 40, TX);
        g.msg(&f, 2 * S + MS, 120, RX);
    });
    let rows = behavior(&fx, &[&t], &[]);
    let ev = assert_trait(&rows, 90, "listener");
    assert_eq!(ev, "accepted 3 connections on TCP port 8080");
    assert_eq!(proc_row(&rows, 90)["role"], "server");
    assert_no_trait(&rows, 91, "listener");
    assert_eq!(proc_row(&rows, 91)["role"], "client");
    assert_trait(&rows, 92, "listener");
    assert_eq!(proc_row(&rows, 92)["role"], "both");
    assert_eq!(proc_row(&rows, 93)["role"], "server");
    assert_no_trait(&rows, 93, "listener");
    assert_eq!(proc_row(&rows, 94)["role"], "client");
    assert_eq!(proc_row(&rows, 94)["failed_conns"], 0);
    // Every number column is there, nulls where they do not apply.
    let r = proc_row(&rows, 90);
    let keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
    let mut want = vec![
        "pid",
        "comm",
        "traits",
        "role",
        "remotes",
        "remote_ports",
        "conns",
        "failed_conns",
        "p50_msg_bytes",
        "p50_conn_duration_ns",
        "period_ns",
        "period_jitter",
        "tx_bytes",
        "rx_bytes",
        "evidence",
    ];
    let mut got = keys.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    assert_eq!(
        (r["conns"].as_u64(), r["remotes"].as_u64()),
        (Some(3), Some(1))
    );
    assert_eq!(
        (r["tx_bytes"].as_u64(), r["rx_bytes"].as_u64()),
        (Some(2700), Some(300))
    );
}

#[test]
fn behaviour_alias_table_csv_and_hostile_names() {
    let fx = fx();
    let t = fx.trace("table", "h", |g| {
        for port in 1..=25u16 {
            let f = g.flow(70, "evil\x1b[31m", 6, "10.0.2.1", port);
            g.refused(&f, S + port as u64 * MS);
        }
        g.tcp_conn(80, "=cmd", "10.0.0.8", 80, S, 10 * MS, &[(0, 10, TX)]);
    });
    let out = fx.out("b.txt");
    analyze(&[&t, "--report", "behaviour", "-o", &out]);
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("TRAITS") && text.contains("ROLE"), "{text}");
    assert!(!text.contains("EVIDENCE"), "{text}");
    assert!(text.contains("evidence:"), "{text}");
    assert!(
        text.contains("70 evil\\x1b[31m: scan: 25 of 25 outbound connections"),
        "{text}"
    );
    assert!(!text.contains('\x1b'), "raw escape in table: {text:?}");
    let csv = fx.out("b.csv");
    analyze(&[&t, "--report", "behavior", "-o", &csv]);
    let csv = std::fs::read_to_string(&csv).unwrap();
    assert!(csv.starts_with("pid,comm,traits,role,remotes,remote_ports,conns,failed_conns,p50_msg_bytes,p50_conn_duration_ns,period_ns,period_jitter,tx_bytes,rx_bytes,evidence\n"), "{csv}");
    assert!(csv.contains("'=cmd"), "{csv}");
}

#[test]
fn summary_lists_scan_fan_out_and_periodic_first_and_html_has_a_section() {
    let fx = fx();
    let t = fx.trace("summary", "h", |g| {
        // The busiest process has no alarming trait ...
        let m: Vec<_> = (0..100).map(|i| (i * MS, 65536, TX)).collect();
        g.tcp_conn(10, "bulkpos", "10.0.0.2", 80, S, 2 * S, &m);
        // ... the beacon and the scanner move little.
        periodic_trace(g);
        for port in 1..=25u16 {
            let f = g.flow(70, "scanner", 6, "10.0.2.1", port);
            g.refused(&f, S + port as u64 * MS);
        }
    });
    let out = fx.out("s.json");
    analyze(&[&t, "--format", "json", "-o", &out]);
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let b = v["behaviour"].as_array().unwrap();
    let pids: Vec<u64> = b.iter().map(|r| r["pid"].as_u64().unwrap()).collect();
    // Alarming first (by traffic among them: 50 > 70), then the rest. The
    // summary reads no per-event data: 52's periodic message bursts and
    // 10's bulk are left to --report behavior.
    assert_eq!(&pids[..2], &[50, 70], "{b:#?}");
    assert!(
        pids[2..].contains(&10) && pids[2..].contains(&52),
        "{pids:?}"
    );
    let traits = |pid: u64| b.iter().find(|r| r["pid"] == pid).unwrap()["traits"].clone();
    assert_eq!(traits(52), "long-lived-conns");
    assert_eq!(traits(10), "");
    assert_eq!(v["processes"][0]["pid"], 10);

    let out = fx.out("s.txt");
    analyze(&[&t, "-o", &out]);
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.contains("behaviour from connections and rates (scan, fan-out, periodic first"),
        "{text}"
    );

    let html = fx.out("r.html");
    analyze(&[&t, "-o", &html]);
    let html = std::fs::read_to_string(&html).unwrap();
    assert!(html.contains("<h2>Behaviour</h2>"), "no section");
    assert!(html.contains("<b>scan</b>: 25 of 25"), "no scan evidence");
    assert!(html.contains("<b>periodic</b>: 12 connections to 10.0.0.5:443"));
}

#[test]
fn several_traces_windows_and_old_traces() {
    let fx = fx();
    let a = fx.trace("a", "host-a", periodic_trace);
    let b = fx.trace("b", "host-b", |g| {
        for port in 1..=25u16 {
            let f = g.flow(70, "scanner", 6, "10.0.2.1", port);
            g.refused(&f, S + port as u64 * MS);
        }
    });
    let rows = behavior(&fx, &[&a, &b], &[]);
    let host = |pid: u32| proc_row(&rows, pid)["host"].as_str().unwrap().to_string();
    assert_eq!((host(50), host(70)), ("host-a".into(), "host-b".into()));
    assert_trait(&rows, 70, "scan");
    assert_trait(&rows, 50, "periodic");

    // The beacon's connections start 9 s, 39 s, 69 s, 99 s ... after the
    // recording: the first 100 s hold four, too few to call periodic.
    let rows = behavior(&fx, &[&a], &["--until", "100s"]);
    let r = proc_row(&rows, 50);
    assert_eq!(r["conns"], 4, "{r}");
    assert_no_trait(&rows, 50, "periodic");
    // From 60 s on: ten connections, still every ~30 s.
    let rows = behavior(&fx, &[&a], &["--since", "60s"]);
    assert_eq!(proc_row(&rows, 50)["conns"], 10);
    assert_trait(&rows, 50, "periodic");
    // --pid keeps one process.
    let rows = behavior(&fx, &[&a], &["--pid", "51"]);
    assert_eq!(rows.len(), 1);

    // Traces written before this report existed (format 1.0, real and recovered).
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    for name in ["v1-synthetic.snp", "v1-recovered.snp", "loopback.snp"] {
        let p = fixtures.join(name).display().to_string();
        let rows = behavior(&fx, &[&p], &[]);
        assert!(!rows.is_empty(), "{name}");
        for r in &rows {
            for t in traits(r) {
                assert!(
                    [
                        "bulk",
                        "interactive",
                        "request-response",
                        "streaming",
                        "periodic",
                        "fan-out",
                        "scan",
                        "short-lived-conns",
                        "long-lived-conns",
                        "listener"
                    ]
                    .contains(&t.as_str()),
                    "{t}"
                );
            }
        }
    }
}

fn diff(args: &[&str]) -> anyhow::Result<()> {
    let cli = DiffCli::try_parse_from(std::iter::once("diff").chain(args.iter().copied()))?;
    run_diff(&cli.a)
}

/// Before and after: `web` also listens on 9090 and gets a new client,
/// `curl` talks to 2.2.2.2 instead of 3.3.3.3, `old` is gone, `fresh` is
/// new, `steady` does the same under another pid, `grower` sends ten
/// times more.
fn diff_traces(fx: &Fx) -> (String, String) {
    let a = fx.trace("before", "h", |g| {
        g.listen(100, "web", 8080, S);
        let f = g.inbound(100, "web", 8080, "10.9.0.1", 50000);
        g.accept(&f, 2 * S);
        g.msg(&f, 2 * S + MS, 100, RX);
        g.msg(&f, 2 * S + 2 * MS, 1000, TX);
        g.close(&f, 3 * S);
        g.tcp_conn(
            101,
            "curl",
            "1.1.1.1",
            443,
            S,
            S,
            &[(0, 100, TX), (MS, 900, RX)],
        );
        g.tcp_conn(
            101,
            "curl",
            "3.3.3.3",
            443,
            S,
            S,
            &[(0, 100, TX), (MS, 900, RX)],
        );
        g.tcp_conn(102, "old", "4.4.4.4", 22, S, S, &[(0, 10, TX)]);
        g.tcp_conn(
            103,
            "steady",
            "5.5.5.5",
            80,
            S,
            S,
            &[(0, 10, TX), (MS, 10, RX)],
        );
        g.tcp_conn(104, "grower", "6.6.6.6", 80, S, S, &[(0, 10_000, TX)]);
        g.exec(103, "steady", S / 2);
    });
    let b = fx.trace("after", "h", |g| {
        g.listen(200, "web", 8080, S);
        g.listen(200, "web", 9090, S);
        for (i, peer) in ["10.9.0.1", "10.9.0.2"].iter().enumerate() {
            let f = g.inbound(200, "web", 8080, peer, 51000 + i as u16);
            g.accept(&f, 2 * S);
            g.msg(&f, 2 * S + MS, 100, RX);
            g.msg(&f, 2 * S + 2 * MS, 1000, TX);
            g.close(&f, 3 * S);
        }
        g.tcp_conn(
            201,
            "curl",
            "1.1.1.1",
            443,
            S,
            S,
            &[(0, 100, TX), (MS, 900, RX)],
        );
        g.tcp_conn(
            201,
            "curl",
            "2.2.2.2",
            443,
            S,
            S,
            &[(0, 100, TX), (MS, 900, RX)],
        );
        g.tcp_conn(202, "fresh", "7.7.7.7", 25, S, S, &[(0, 10, TX)]);
        g.tcp_conn(
            203,
            "steady",
            "5.5.5.5",
            80,
            S,
            S,
            &[(0, 10, TX), (MS, 10, RX)],
        );
        g.tcp_conn(204, "grower", "6.6.6.6", 80, S, S, &[(0, 100_000, TX)]);
    });
    (a, b)
}

#[test]
fn diff_new_gone_changed_same() {
    let fx = fx();
    let (a, b) = diff_traces(&fx);
    let out = fx.out("d.json");
    diff(&[&a, &b, "--format", "json", "-o", &out]).unwrap();
    let rows: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let row = |comm: &str| {
        rows.iter()
            .find(|r| r["comm"] == comm)
            .unwrap_or_else(|| panic!("no {comm} in {rows:#?}"))
            .clone()
    };
    assert_eq!(rows.len(), 6, "{rows:#?}");
    let web = row("web");
    assert_eq!(web["change"], "changed");
    assert_eq!(web["new_listen_ports"], "9090/tcp");
    assert_eq!(web["new_remotes"], "10.9.0.2:*");
    assert_eq!(web["gone_remotes"], "");
    assert_eq!(
        (web["tx_bytes_a"].as_u64(), web["tx_bytes_b"].as_u64()),
        (Some(1000), Some(2000))
    );
    assert_eq!(
        (web["rx_bytes_a"].as_u64(), web["rx_bytes_b"].as_u64()),
        (Some(100), Some(200))
    );
    assert_eq!(web["traits_a"], "listener");
    let curl = row("curl");
    assert_eq!(curl["change"], "changed");
    assert_eq!(curl["new_remotes"], "2.2.2.2:443");
    assert_eq!(curl["gone_remotes"], "3.3.3.3:443");
    let old = row("old");
    assert_eq!(old["change"], "gone");
    assert_eq!(old["tx_bytes_a"], 10);
    assert!(
        old["tx_bytes_b"].is_null() && old["traits_b"].is_null(),
        "{old}"
    );
    assert_eq!(old["gone_remotes"], "4.4.4.4:22");
    let fresh = row("fresh");
    assert_eq!(fresh["change"], "new");
    assert!(fresh["tx_bytes_a"].is_null());
    assert_eq!(fresh["new_remotes"], "7.7.7.7:25");
    let steady = row("steady");
    assert_eq!(steady["change"], "same");
    assert_eq!(steady["new_remotes"], "");
    assert_eq!(steady["traits_a"], steady["traits_b"]);
    let grower = row("grower");
    assert_eq!(grower["change"], "changed");
    assert_eq!(
        (grower["tx_bytes_a"].as_u64(), grower["tx_bytes_b"].as_u64()),
        (Some(10_000), Some(100_000))
    );
    // Most changed first (web: new port, new peer, more bytes both ways),
    // the same last.
    assert_eq!(rows[0]["comm"], "web", "{rows:#?}");
    assert_eq!(rows.last().unwrap()["comm"], "steady");
    assert_eq!(rows[rows.len() - 2]["change"], "changed");

    // --top and a filter.
    diff(&[&a, &b, "--format", "json", "-o", &out, "--top", "2"]).unwrap();
    let top: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(top.len(), 2);
    assert_eq!(top[0]["comm"], "web");
    diff(&[&a, &b, "--format", "json", "-o", &out, "--comm", "curl"]).unwrap();
    let only: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(only.len(), 1);
    assert_eq!(only[0]["comm"], "curl");

    // Table and CSV.
    let txt = fx.out("d.txt");
    diff(&[&a, &b, "-o", &txt]).unwrap();
    let text = std::fs::read_to_string(&txt).unwrap();
    assert!(text.contains("1 new, 1 gone, 3 changed, 1 same"), "{text}");
    assert!(text.contains("NEW_LISTEN_PORTS"), "{text}");
    let csv = fx.out("d.csv");
    diff(&[&a, &b, "-o", &csv]).unwrap();
    let csv = std::fs::read_to_string(&csv).unwrap();
    assert!(csv.starts_with("comm,change,tx_bytes_a,tx_bytes_b,rx_bytes_a,rx_bytes_b,new_remotes,gone_remotes,new_listen_ports,traits_a,traits_b\n"), "{csv}");
}

#[test]
fn diff_bad_input_is_an_error() {
    let fx = fx();
    let (a, _) = diff_traces(&fx);
    let missing = fx.out("missing.snp");
    let e = diff(&[&a, &missing]).unwrap_err();
    assert!(format!("{e:#}").contains("missing.snp"), "{e:#}");
    let e = diff(&[&a, &a, "--format", "xml"]).unwrap_err();
    assert!(snoop_analyze::is_usage_error(&e), "{e:#}");
}

/// One workload with every per-event fact in play, as the list of
/// messages in time order: interactive sessions (small messages both
/// ways, human gaps), request/reply exchanges whose runs span several
/// messages, bursts every 30 s, bulk, and a busy UDP flow.
fn mixed_workload(g: &mut Gen) -> Vec<(Flow, u64, u32, Direction)> {
    let mut r = snoop_format::synth::Rng::new(0x9e37_79b9_7f4a_7c15);
    let mut msgs = Vec::new();
    g.exec(100, "shell", S);
    for k in 0..2 {
        let f = g.flow(100, "shell", 6, "10.0.0.2", 22);
        g.connect(&f, S + k);
        let mut t = 2 * S + k * 7 * MS;
        for _ in 0..70 {
            t += 80 * MS + r.below(1500) * MS;
            let d = if r.below(2) == 0 { TX } else { RX };
            msgs.push((f, t, 20 + r.below(80) as u32, d));
        }
    }
    for k in 0..3 {
        let f = g.flow(200, "web", 6, "10.0.0.3", 443);
        g.connect(&f, S + k);
        let mut t = 2 * S + k * MS;
        for _ in 0..40 {
            for _ in 0..1 + r.below(3) {
                t += 1 + r.below(3) * MS;
                msgs.push((f, t, 100 + r.below(300) as u32, TX));
            }
            for _ in 0..1 + r.below(4) {
                t += 1 + r.below(2) * MS;
                msgs.push((f, t, 200 + r.below(3000) as u32, RX));
            }
            t += r.below(900) * MS;
        }
    }
    let beacon = g.flow(300, "beacon", 6, "10.0.0.4", 8443);
    g.connect(&beacon, S);
    for i in 0..8 {
        let t = 3 * S + i * 30 * S + r.below(200) * MS;
        for j in 0..2 + r.below(4) {
            let d = if j % 2 == 0 { TX } else { RX };
            msgs.push((beacon, t + j * 10 * MS, 64, d));
        }
    }
    let bulk = g.flow(400, "bulk", 6, "10.0.0.5", 873);
    g.connect(&bulk, S);
    for i in 0..300 {
        msgs.push((
            bulk,
            2 * S + i * 300 * MS,
            32 * 1024 + r.below(1000) as u32,
            TX,
        ));
    }
    let udp = g.flow(500, "udpy", 17, "10.0.0.6", 53);
    for i in 0..400u64 {
        let t = 2 * S + i * 600 * MS + r.below(2 * S);
        let d = if r.below(3) == 0 { RX } else { TX };
        msgs.push((udp, t, 1 + r.below(2000) as u32, d));
    }
    // In time order: the writer sorts each chunk by time, so only a
    // workload in time order is stored in the same order however it is cut
    // into chunks (out-of-order storage is covered by the loader's own tests).
    msgs.sort_by_key(|m| m.1);
    msgs
}

fn write_mixed(fx: &Fx, name: &str, chunk_rows: usize) -> String {
    let p = fx.dir.join(format!("{name}.snp"));
    let opts = WriterOptions {
        chunk_rows,
        ..WriterOptions::default()
    };
    let mut g = Gen::with_options(&p, "h", opts);
    let msgs = mixed_workload(&mut g);
    for (f, t, b, d) in msgs {
        g.msg(&f, t, b, d);
    }
    g.finish();
    p.display().to_string()
}

#[test]
fn per_chunk_facts_match_one_chunk() {
    let fx = fx();
    let one = write_mixed(&fx, "one", 1 << 20);
    let info = snoop_format::Trace::open(Path::new(&one)).unwrap();
    let chunks = |t: &snoop_format::Trace| t.chunks_of(snoop_format::Table::Messages).count();
    assert_eq!(chunks(&info), 1);
    let whole = behavior(&fx, &[&one], &[]);
    // The workload has what it was made to have, so the comparison below
    // covers every per-event fact.
    assert_trait(&whole, 100, "interactive");
    assert_trait(&whole, 200, "request-response");
    assert_trait(&whole, 300, "periodic");
    assert_trait(&whole, 400, "bulk");
    for rows in [1, 2, 3, 7, 64, 1000] {
        let many = write_mixed(&fx, &format!("many{rows}"), rows);
        let t = snoop_format::Trace::open(Path::new(&many)).unwrap();
        assert!(chunks(&t) > 1, "{rows} rows per chunk gave one chunk");
        assert_eq!(behavior(&fx, &[&many], &[]), whole, "{rows} rows per chunk");
        for window in [["--since", "40s"], ["--until", "150s"]] {
            assert_eq!(
                behavior(&fx, &[&many], &window),
                behavior(&fx, &[&one], &window),
                "{rows} rows per chunk, {window:?}"
            );
        }
    }
}
