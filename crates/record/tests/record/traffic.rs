//! Exact bytes per process over loopback: TCP and UDP, IPv4 and IPv6,
//! connected and unconnected, receive attribution of packets, many
//! short-lived processes, a late process tracked by `--comm`, and a
//! connection opened before recording started.

use std::collections::HashMap;
use std::io::Write;
use std::process::Command;

use snoop_format::{col, comm_str, ColumnSet, Table};

use crate::util::{
    bpf_ok, event_batches, message_cgroups, name, opts, own_cgroup_id, peer_bin, read_line, server,
    spawn, start, totals, wait_ok,
};

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
    // The peers run in the test's cgroup; the BPF side reads the id with
    // plain loads, which must give what the kernel's helper gives.
    let own = own_cgroup_id();
    for (k, ids) in message_cgroups(&t) {
        assert_eq!(ids, vec![own], "cgroup of {k}'s messages");
    }

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
    // Every datagram is one packet each way on the wire, owned by the
    // process that sent or received it: the server's first received
    // datagram too, which arrives before the server's first receive.
    let p = totals(&t, Table::Packets);
    for (who, n) in [(&sn, "server"), (&cn, "client")] {
        let got = p.get(who.as_str()).map_or(0, |e| e.0.n);
        assert_eq!(got, 2 * count as u64, "{n} packets (sent + received)");
    }
    // Unconnected UDP: the peer address comes from the cgroup hooks.
    let want = ColumnSet::of(&[col::FLOW, col::F_COMM, col::F_RPORT]);
    for b in event_batches(&t, Table::Messages, want) {
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

/// Messages are staged per CPU in the kernel (`msg_batch`). A CPU that
/// goes quiet must not keep them until the end: the recorder has every
/// message of a finished exchange while it still records (the flush
/// program runs on each CPU a few times a second), and the trace has them
/// once, exactly.
#[test]
fn staged_messages_of_a_quiet_cpu_arrive_while_recording() {
    if !bpf_ok("staged_messages_of_a_quiet_cpu_arrive_while_recording") {
        return;
    }
    let (sn, cn) = (name("qs"), name("qc"));
    let rec = start(opts(&[&sn, &cn]));
    // Three datagrams each way: far fewer than a batch of 16, so only a
    // flush sends them on.
    let (count, size) = (3usize, 100usize);
    let (srv, port) = server("udp-server", &sn, "127.0.0.1:0", count, 0);
    let (cli, _) = spawn(&[
        "udp-client",
        &cn,
        &format!("127.0.0.1:{port}"),
        &count.to_string(),
        &size.to_string(),
        "connected",
    ]);
    wait_ok(cli);
    wait_ok(srv);
    let want = 4 * count as u64; // each side sends and receives each datagram
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while rec.messages_so_far() < want && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let live = rec.messages_so_far();
    let (t, _sum, _d) = rec.stop();
    assert_eq!(live, want, "messages the recorder had before stopping");
    let m = totals(&t, Table::Messages);
    let total = (count * size) as u64;
    for (who, what) in [(&sn, "server"), (&cn, "client")] {
        let e = m
            .get(who.as_str())
            .unwrap_or_else(|| panic!("{what} missing in {m:?}"))
            .0;
        assert_eq!(
            (e.rx, e.tx, e.n),
            (total, total, 2 * count as u64),
            "{what}"
        );
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
    for b in event_batches(&t, Table::Messages, want) {
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
    // Every hook group asked for ran: a verifier refusal of the iterators
    // (e.g. a read beyond the sock_common iter/tcp hands over) would
    // only degrade, so it is checked here.
    for (g, s) in &t.hooks().expect("hook groups").groups {
        assert!(!s.starts_with("refused"), "{g}: {s}");
    }
    // The "already open" records (old_state 0) carry the socket's
    // counters at the start: the handshake's segments at least.
    let mut open = 0;
    for b in event_batches(&t, Table::Connections, ColumnSet::ALL) {
        for r in 0..b.rows {
            let f = b.flow[r] as usize;
            if b.old_state[r] == 0 && comm_str(&b.flows.comm[f]) == cn {
                let o = b.outcome(r).expect("outcome columns");
                assert!(o.segs_out > 0 && o.segs_in > 0, "{o:?}");
                open += 1;
            }
        }
    }
    assert_eq!(open, 1, "one already-open record of the client");
}
