//! Real eBPF tests of the recorder (root only): each test starts a recording
//! filtered to its own peers (distinct comms set with PR_SET_NAME by the
//! `snoop-peer` helper), makes traffic with known byte counts on loopback,
//! stops, reads the trace back with snoop_format's reader and checks exact
//! per-process bytes. Readiness is awaited on pipes ("ready PORT" from the
//! peers, the recorder's ready callback), never with sleeps.
//!
//! Without root the tests print why and pass, unless SNOOP_REQUIRE_BPF=1.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use snoop_format::{col, comm_str, ColumnSet, FileInfo, Table, Trace, TraceWriter, WriterOptions};
use snoop_record::kernel::KernelOptions;
use snoop_record::pipeline::{Control, Limits, Summary};
use snoop_record::record_session;

fn bpf_ok(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        return true;
    }
    if std::env::var("SNOOP_REQUIRE_BPF").as_deref() == Ok("1") {
        panic!("{test}: needs root for eBPF and SNOOP_REQUIRE_BPF=1");
    }
    eprintln!("{test}: skipped: not root (eBPF needs CAP_BPF/CAP_PERFMON/CAP_NET_ADMIN)");
    false
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A comm unique to this test process and call (<= 15 bytes).
fn name(tag: &str) -> String {
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    format!("{tag}{}x{n}", std::process::id() % 100000)
}

struct Recording {
    ctl: Arc<Control>,
    handle: std::thread::JoinHandle<anyhow::Result<Summary>>,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

fn start(opts: KernelOptions) -> Recording {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.snp");
    let file = std::fs::File::create(&path).expect("create trace");
    let ctl = Arc::new(Control::default());
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let c2 = Arc::clone(&ctl);
    let p2 = path.clone();
    let handle = std::thread::spawn(move || {
        let info = FileInfo::from_host(vec!["test".into()]);
        let mut w = TraceWriter::new(file, &info, WriterOptions::default())?;
        let s = record_session(
            &mut w,
            &opts,
            &Limits::default(),
            &c2,
            move || {
                let _ = tx.send(());
            },
            |_| {},
        )?;
        w.finish(snoop_format::boottime_ns())?;
        let _ = p2;
        Ok(s)
    });
    if rx.recv().is_err() {
        let r = handle.join().expect("recorder thread");
        panic!(
            "recorder did not start: {:#}",
            r.err().map(|e| format!("{e:#}")).unwrap_or_default()
        );
    }
    Recording {
        ctl,
        handle,
        path,
        _dir: dir,
    }
}

impl Recording {
    fn stop(self) -> (Trace, Summary, tempfile::TempDir) {
        self.ctl.stop();
        let s = self
            .handle
            .join()
            .expect("recorder thread")
            .expect("recording");
        let t = Trace::open(&self.path).expect("read trace");
        (t, s, self._dir)
    }
}

fn peer_bin() -> &'static str {
    env!("CARGO_BIN_EXE_snoop-peer")
}

fn spawn(args: &[&str]) -> (Child, BufReader<ChildStdout>) {
    let mut c = Command::new(peer_bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn snoop-peer");
    let out = BufReader::new(c.stdout.take().expect("stdout"));
    (c, out)
}

fn read_line(r: &mut BufReader<ChildStdout>) -> String {
    let mut l = String::new();
    r.read_line(&mut l).expect("peer output");
    l.trim().to_string()
}

fn wait_ok(mut c: Child) {
    let st = c.wait().expect("wait peer");
    assert!(st.success(), "peer failed: {st}");
}

fn server(mode: &str, name: &str, bind: &str, a: usize, b: usize) -> (Child, u16) {
    let (c, mut out) = spawn(&[mode, name, bind, &a.to_string(), &b.to_string()]);
    let l = read_line(&mut out);
    let port = l
        .strip_prefix("ready ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("bad ready line {l:?}"));
    (c, port)
}

#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
struct Bytes {
    tx: u64,
    rx: u64,
    n: u64,
}

/// (comm -> bytes) of one event table, plus pid per comm.
fn totals(t: &Trace, table: Table) -> HashMap<String, (Bytes, u32)> {
    let mut out: HashMap<String, (Bytes, u32)> = HashMap::new();
    let want = ColumnSet::of(&[
        col::TS,
        col::FLOW,
        col::BYTES,
        col::DIR,
        col::F_PID,
        col::F_COMM,
    ]);
    for i in t.chunks_of(table).collect::<Vec<_>>() {
        let b = t
            .read_chunk(i, want)
            .expect("chunk")
            .into_events()
            .expect("events");
        for r in 0..b.rows {
            let f = b.flow[r] as usize;
            let e = out.entry(comm_str(&b.flows.comm[f])).or_default();
            e.1 = b.flows.pid[f];
            e.0.n += 1;
            if table == Table::Connections {
                continue;
            }
            if b.dir[r] == 0 {
                e.0.tx += u64::from(b.bytes[r]);
            } else {
                e.0.rx += u64::from(b.bytes[r]);
            }
        }
    }
    out
}

fn opts(comms: &[&str]) -> KernelOptions {
    KernelOptions {
        comms: comms.iter().map(|s| s.to_string()).collect(),
        packets: true,
        lifecycle: true,
        existing: true,
        ring_bytes: 8 << 20,
        ..KernelOptions::default()
    }
}

fn tcp_case(test: &str, bind: &str, connect_host: &str) {
    if !bpf_ok(test) {
        return;
    }
    let (sn, cn) = (name("ts"), name("tc"));
    let rec = start(opts(&[&sn, &cn]));
    let (up, down) = (300_000usize, 70_001usize);
    let (srv, port) = server("tcp-server", &sn, bind, up, down);
    let (cli, _) = spawn(&[
        "tcp-client",
        &cn,
        &format!("{connect_host}:{port}"),
        &up.to_string(),
        &down.to_string(),
    ]);
    wait_ok(cli);
    wait_ok(srv);
    let (t, sum, _d) = rec.stop();
    let m = totals(&t, Table::Messages);
    let s = m
        .get(&sn)
        .unwrap_or_else(|| panic!("server {sn} missing in {m:?}"))
        .0;
    let c = m
        .get(&cn)
        .unwrap_or_else(|| panic!("client {cn} missing in {m:?}"))
        .0;
    assert_eq!((s.rx, s.tx), (up as u64, down as u64), "server bytes");
    assert_eq!((c.tx, c.rx), (up as u64, down as u64), "client bytes");
    assert_eq!(m.len(), 2, "only the test's processes: {m:?}");
    assert_eq!(sum.kernel.iter().map(|k| k.drops).sum::<u64>(), 0);

    // Receive attribution: every packet kept is owned by one of the peers
    // (never by whatever task softirq interrupted), and the server's
    // received packets go to the server.
    let p = totals(&t, Table::Packets);
    let spid = m[&sn].1;
    let sp = p
        .get(&sn)
        .unwrap_or_else(|| panic!("no packets for server in {p:?}"));
    assert_eq!(sp.1, spid);
    assert!(
        sp.0.rx >= up as u64,
        "server received wire bytes {} < payload {up}",
        sp.0.rx
    );
    for k in p.keys() {
        assert!(k == &sn || k == &cn, "packet attributed to {k:?}");
    }
}

#[test]
fn tcp_ipv4_exact_bytes_per_process() {
    tcp_case("tcp_ipv4", "127.0.0.1:0", "127.0.0.1");
}

#[test]
fn tcp_ipv6_exact_bytes_per_process() {
    tcp_case("tcp_ipv6", "[::1]:0", "[::1]");
}

fn udp_case(test: &str, bind: &str, host: &str, connected: bool) {
    if !bpf_ok(test) {
        return;
    }
    let (sn, cn) = (name("us"), name("uc"));
    let rec = start(opts(&[&sn, &cn]));
    let (count, size) = (50usize, 1200usize);
    let (srv, port) = server("udp-server", &sn, bind, count, 0);
    let mode = if connected {
        "connected"
    } else {
        "unconnected"
    };
    let (cli, _) = spawn(&[
        "udp-client",
        &cn,
        &format!("{host}:{port}"),
        &count.to_string(),
        &size.to_string(),
        mode,
    ]);
    wait_ok(cli);
    wait_ok(srv);
    let (t, _sum, _d) = rec.stop();
    let m = totals(&t, Table::Messages);
    let total = (count * size) as u64;
    let s = m
        .get(&sn)
        .unwrap_or_else(|| panic!("server missing in {m:?}"))
        .0;
    let c = m
        .get(&cn)
        .unwrap_or_else(|| panic!("client missing in {m:?}"))
        .0;
    assert_eq!(
        (s.rx, s.tx, s.n),
        (total, total, 2 * count as u64),
        "server"
    );
    assert_eq!(
        (c.rx, c.tx, c.n),
        (total, total, 2 * count as u64),
        "client"
    );
    // Unconnected UDP: the peer address comes from the cgroup hooks.
    let want = ColumnSet::of(&[col::FLOW, col::F_COMM, col::F_RPORT]);
    for i in t.chunks_of(Table::Messages).collect::<Vec<_>>() {
        let b = t
            .read_chunk(i, want)
            .expect("chunk")
            .into_events()
            .expect("events");
        for f in 0..b.flows.rport.len() {
            if comm_str(&b.flows.comm[f]) == cn {
                assert_eq!(b.flows.rport[f], port, "client's remote port");
            }
            if comm_str(&b.flows.comm[f]) == sn {
                assert_ne!(
                    b.flows.rport[f], 0,
                    "server's remote port (from recvmsg hook)"
                );
            }
        }
    }
}

#[test]
fn udp_ipv4_unconnected() {
    udp_case("udp_ipv4_unconnected", "127.0.0.1:0", "127.0.0.1", false);
}

#[test]
fn udp_ipv4_connected() {
    udp_case("udp_ipv4_connected", "127.0.0.1:0", "127.0.0.1", true);
}

#[test]
fn udp_ipv6_unconnected() {
    udp_case("udp_ipv6_unconnected", "[::1]:0", "[::1]", false);
}

#[test]
fn udp_ipv6_connected() {
    udp_case("udp_ipv6_connected", "[::1]:0", "[::1]", true);
}

#[test]
fn many_short_lived_processes() {
    if !bpf_ok("many_short_lived") {
        return;
    }
    let sn = name("ms");
    let cn = name("mc");
    let n = 200usize;
    let rec = start(opts(&[&sn, &cn]));
    let (srv, port) = server("udp-server", &sn, "127.0.0.1:0", n, 0);
    let mut pids = Vec::new();
    for _ in 0..n {
        let (c, _) = spawn(&[
            "udp-client",
            &cn,
            &format!("127.0.0.1:{port}"),
            "1",
            "333",
            "unconnected",
        ]);
        pids.push(c.id());
        wait_ok(c);
    }
    wait_ok(srv);
    let (t, _s, _d) = rec.stop();
    let want = ColumnSet::of(&[col::FLOW, col::BYTES, col::DIR, col::F_PID, col::F_COMM]);
    let mut per_pid: HashMap<u32, u64> = HashMap::new();
    for i in t.chunks_of(Table::Messages).collect::<Vec<_>>() {
        let b = t
            .read_chunk(i, want)
            .expect("chunk")
            .into_events()
            .expect("events");
        for r in 0..b.rows {
            let f = b.flow[r] as usize;
            if comm_str(&b.flows.comm[f]) == cn && b.dir[r] == 0 {
                *per_pid.entry(b.flows.pid[f]).or_default() += u64::from(b.bytes[r]);
            }
        }
    }
    for p in &pids {
        assert_eq!(per_pid.get(p), Some(&333), "pid {p} sent 333 bytes");
    }
}

/// A process started after recording began, tracked by --comm from its
/// exec (its executable's name is the comm the kernel gives it).
#[test]
fn late_process_tracked_by_comm() {
    if !bpf_ok("late_process") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let late = name("lt");
    let exe = dir.path().join(&late);
    std::fs::copy(peer_bin(), &exe).expect("copy peer");
    let sn = name("ls");
    let rec = start(opts(&[&late, &sn]));
    let (srv, port) = server("tcp-server", &sn, "127.0.0.1:0", 5000, 10);
    // The client keeps its exec'd name (NAME = the same comm).
    let st = Command::new(&exe)
        .args([
            "tcp-client",
            &late,
            &format!("127.0.0.1:{port}"),
            "5000",
            "10",
        ])
        .status()
        .expect("late client");
    assert!(st.success());
    wait_ok(srv);
    let (t, _s, _d) = rec.stop();
    let m = totals(&t, Table::Messages);
    assert_eq!(
        m.get(&late).map(|b| (b.0.tx, b.0.rx)),
        Some((5000, 10)),
        "{m:?}"
    );
    // The exec was recorded too.
    let mut execs = 0;
    for i in t.chunks_of(Table::Processes).collect::<Vec<_>>() {
        let b = t
            .read_chunk(i, ColumnSet::ALL)
            .expect("chunk")
            .into_processes()
            .expect("procs");
        for r in 0..b.rows {
            if b.kind[r] == 0 && comm_str(&b.comm[r]) == late {
                execs += 1;
                assert!(b.filename[r].ends_with(&late), "{}", b.filename[r]);
            }
        }
    }
    assert_eq!(execs, 1);
}

/// A TCP connection opened before recording started is attributed (its
/// later bytes, and the synthetic "already open" connection record).
#[test]
fn connection_opened_before_recording() {
    if !bpf_ok("preexisting") {
        return;
    }
    let (sn, cn) = (name("ps"), name("pc"));
    let n = 12_345usize;
    let (srv, port) = server("tcp-server", &sn, "127.0.0.1:0", n, n);
    let (mut cli, mut out) = spawn(&[
        "tcp-hold",
        &cn,
        &format!("127.0.0.1:{port}"),
        &n.to_string(),
    ]);
    assert_eq!(read_line(&mut out), "connected");
    let cpid = cli.id();
    let rec = start(opts(&[&sn, &cn]));
    cli.stdin
        .take()
        .expect("stdin")
        .write_all(b"go\n")
        .expect("go");
    wait_ok(cli);
    wait_ok(srv);
    let (t, _s, _d) = rec.stop();
    let m = totals(&t, Table::Messages);
    assert_eq!(
        m.get(&cn).map(|b| (b.0.tx, b.0.rx, b.1)),
        Some((n as u64, n as u64, cpid)),
        "{m:?}"
    );
    assert_eq!(
        m.get(&sn).map(|b| (b.0.rx, b.0.tx)),
        Some((n as u64, n as u64)),
        "{m:?}"
    );
    let c = totals(&t, Table::Connections);
    assert!(
        c.contains_key(&cn),
        "connection records of the client: {c:?}"
    );
}
