//! TCP connection lifecycle: the test opens a loopback connection itself,
//! exchanges known byte counts, holds it open for a time it measures, and
//! closes it. The connections table must show, for both ends, the
//! ESTABLISHED and CLOSE transitions with the test's pid, the right ports
//! and one cookie per socket; the times must fall inside the windows the
//! test saw from CLOCK_BOOTTIME around connect() and close(), so the
//! recorded duration matches the test's own measurement; and the kernel's
//! bytes_acked / bytes_received at CLOSE equal what each end sent and
//! received (plus the SYN and FIN, which the kernel counts as one byte
//! each). It guards the CLOSE record's local port: the kernel releases the
//! port (skc_num = 0) before the state change is traced.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use snoop_format::{boottime_ns, ColumnSet, Table, Trace};
use snoop_record::kernel::KernelOptions;

use crate::util::{bpf_ok, event_batches, start};

const ESTABLISHED: u8 = 1;
const SYN_SENT: u8 = 2;
const SYN_RECV: u8 = 3;
const CLOSE: u8 = 7;

/// Scheduling noise allowed around the test's own time windows.
const SLACK_NS: u64 = 50_000_000;

/// One row of the connections table.
#[derive(Debug, Clone, Copy)]
struct Transition {
    ts: u64,
    old: u8,
    new: u8,
    acked: u64,
    received: u64,
    pid: u32,
    cookie: u64,
}

/// Transitions of the socket with these local and remote ports, in order.
fn transitions(t: &Trace, lport: u16, rport: u16) -> Vec<Transition> {
    let want = ColumnSet::ALL;
    let mut out = Vec::new();
    for b in event_batches(t, Table::Connections, want) {
        for r in 0..b.rows {
            let f = b.flow[r] as usize;
            if b.flows.lport[f] != lport || b.flows.rport[f] != rport {
                continue;
            }
            out.push(Transition {
                ts: b.ts[r],
                old: b.old_state[r],
                new: b.new_state[r],
                acked: b.bytes_acked[r],
                received: b.bytes_received[r],
                pid: b.flows.pid[f],
                cookie: b.flows.cookie[f],
            });
        }
    }
    out.sort_by_key(|x| x.ts);
    out
}

fn read_n(s: &mut TcpStream, n: usize) {
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf).expect("read");
}

/// Check one end: opened within `open`, closed within `close`, owned by us,
/// one cookie, and the kernel's counters at CLOSE.
fn check_end(
    what: &str,
    tr: &[Transition],
    opened_from: u8,
    open: (u64, u64),
    close: (u64, u64),
    bytes: (u64, u64),
) -> u64 {
    let est = tr
        .iter()
        .find(|x| x.new == ESTABLISHED)
        .unwrap_or_else(|| panic!("{what}: no ESTABLISHED in {tr:?}"));
    let cl = tr
        .iter()
        .find(|x| x.new == CLOSE)
        .unwrap_or_else(|| panic!("{what}: no CLOSE in {tr:?}"));
    assert_eq!(est.old, opened_from, "{what}: opened from");
    let me = std::process::id();
    assert!(tr.iter().all(|x| x.pid == me), "{what}: owner pid {tr:?}");
    assert!(est.cookie != 0, "{what}: cookie");
    assert!(
        tr.iter().all(|x| x.cookie == est.cookie),
        "{what}: one cookie {tr:?}"
    );
    assert!(
        open.0 <= est.ts && est.ts <= open.1 + SLACK_NS,
        "{what}: ESTABLISHED at {} outside connect() window {open:?}",
        est.ts
    );
    assert!(
        close.0 <= cl.ts && cl.ts <= close.1 + SLACK_NS,
        "{what}: CLOSE at {} outside close() window {close:?}",
        cl.ts
    );
    assert_eq!((cl.acked, cl.received), bytes, "{what}: acked/received");
    cl.ts - est.ts
}

#[test]
fn tcp_connection_lifecycle_times_and_bytes() {
    if !bpf_ok("tcp_lifecycle") {
        return;
    }
    let rec = start(KernelOptions {
        pids: vec![std::process::id()],
        lifecycle: true,
        ring_bytes: 8 << 20,
        ..KernelOptions::default()
    });
    let (up, down) = (100_000usize, 7_777usize);
    let hold = Duration::from_millis(300);

    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let sport = l.local_addr().expect("addr").port();
    let t0 = boottime_ns();
    let mut c = TcpStream::connect(("127.0.0.1", sport)).expect("connect");
    let (mut s, _) = l.accept().expect("accept");
    let t1 = boottime_ns();
    let cport = c.local_addr().expect("addr").port();

    c.write_all(&vec![1u8; up]).expect("send up");
    read_n(&mut s, up);
    s.write_all(&vec![2u8; down]).expect("send down");
    read_n(&mut c, down);
    // Holding the connection is the point of the test, not a wait for
    // readiness: the hold is what the trace must measure.
    std::thread::sleep(hold);

    // The client closes first (FIN_WAIT -> CLOSE via TIME_WAIT), the server
    // sees EOF and closes (CLOSE_WAIT -> LAST_ACK -> CLOSE).
    let t2 = boottime_ns();
    drop(c);
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).expect("read eof");
    assert!(rest.is_empty());
    drop(s);
    let t3 = boottime_ns();
    drop(l);

    let (t, sum, _d) = rec.stop();
    assert_eq!(sum.kernel.iter().map(|k| k.drops).sum::<u64>(), 0);
    let client = transitions(&t, cport, sport);
    let server = transitions(&t, sport, cport);
    // The kernel's counters live in sequence space: SYN and FIN count one
    // byte each. bytes_acked includes the active opener's SYN and the own
    // FIN once acked; bytes_received includes the peer's FIN. The trace
    // keeps the kernel's values; the payload is exactly what was sent.
    let (up, down) = (up as u64, down as u64);
    let (syn, fin) = (1, 1);
    let dc = check_end(
        "client",
        &client,
        SYN_SENT,
        (t0, t1),
        (t2, t3),
        (up + syn + fin, down + fin),
    );
    let ds = check_end(
        "server",
        &server,
        SYN_RECV,
        (t0, t1),
        (t2, t3),
        (down + fin, up + fin),
    );
    assert_ne!(client[0].cookie, server[0].cookie, "one cookie per end");
    // The test's own measurement: from connect() to the end of close().
    let measured = t3 - t0;
    for (what, d) in [("client", dc), ("server", ds)] {
        assert!(
            d <= measured + SLACK_NS && d + SLACK_NS >= measured,
            "{what}: recorded duration {d} ns vs measured {measured} ns"
        );
        assert!(d >= hold.as_nanos() as u64, "{what}: {d} ns < hold");
    }
}

/// A process's start time in ns of CLOCK_BOOTTIME, as /proc/PID/stat
/// gives it: `[ticks, ticks + 1)` clock ticks since boot.
fn proc_start_window(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // Field 22; the comm (field 2) may hold spaces, so count after ')'.
    let after = &stat[stat.rfind(')').expect("comm end") + 2..];
    let ticks: u64 = after
        .split(' ')
        .nth(19)
        .and_then(|f| f.parse().ok())
        .expect("starttime");
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    let tick = 1_000_000_000 / hz;
    (ticks * tick, (ticks + 1) * tick)
}

/// A process started before the recording (a server the test
/// starts first) gets a "running" row whose time is its kernel start time,
/// inside the window /proc/PID/stat gives for it, with the test as its
/// parent; a process started during the recording gets no such row.
#[test]
fn process_started_before_recording_has_its_start_time() {
    use crate::util::{name, opts, server, spawn, wait_ok};
    use snoop_format::{comm_str, ProcessKind};
    if !bpf_ok("running_start") {
        return;
    }
    let (sn, cn) = (name("rs"), name("rc"));
    let (srv, port) = server("tcp-server", &sn, "127.0.0.1:0", 1000, 10);
    let spid = srv.id();
    let window = proc_start_window(spid);
    let rec = start(opts(&[&sn, &cn]));
    let (cli, _) = spawn(&[
        "tcp-client",
        &cn,
        &format!("127.0.0.1:{port}"),
        "1000",
        "10",
    ]);
    let cpid = cli.id();
    wait_ok(cli);
    wait_ok(srv);
    let (t, _sum, _d) = rec.stop();
    let mut rows = Vec::new();
    for c in t.chunks_of(Table::Processes) {
        let b = t
            .read_chunk(c, ColumnSet::ALL)
            .expect("chunk")
            .into_processes()
            .expect("processes");
        for i in 0..b.rows {
            rows.push((
                ProcessKind::from_u8(b.kind[i]),
                b.pid[i],
                b.ppid[i],
                b.ts[i],
                comm_str(&b.comm[i]),
            ));
        }
    }
    let running: Vec<_> = rows
        .iter()
        .filter(|r| r.0 == Some(ProcessKind::Running) && r.1 == spid)
        .collect();
    assert_eq!(running.len(), 1, "one running row for the server: {rows:?}");
    let (_, _, ppid, ts, comm) = running[0];
    assert!(
        window.0 <= *ts && *ts < window.1,
        "start {ts} outside /proc's window {window:?}"
    );
    assert!(*ts < t.info().start_ns, "started before the recording");
    assert_eq!(*ppid, std::process::id(), "the test started it");
    assert_eq!(comm, &sn);
    assert!(
        !rows
            .iter()
            .any(|r| r.1 == cpid && r.0 == Some(ProcessKind::Running)),
        "the client started during the recording: {rows:?}"
    );
    // It took its name (PR_SET_NAME) after exec, so --comm tracks it only
    // from its first message: its exit is its one row.
    assert!(
        rows.iter()
            .any(|r| r.1 == cpid && r.0 == Some(ProcessKind::Exit)),
        "the client's exit: {rows:?}"
    );
}
