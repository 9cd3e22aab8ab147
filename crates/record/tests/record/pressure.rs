//! Map pressure: the kernel side remembers socket owners in a hash map of
//! `--owner-map-entries` entries that never evicts. Closed sockets must
//! leave it (or churn of short connections would fill it), and when more
//! sockets are alive than it holds, every refused insert is counted —
//! while message attribution stays exact.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use snoop_format::{col, ColumnSet, Table, Trace};
use snoop_record::kernel::KernelOptions;

use crate::util::{bpf_ok, event_batches, start};

/// Room for `n` open files (root may raise the hard limit too).
fn raise_nofile(n: u64) {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct passed in.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut r), 0);
        if r.rlim_cur < n {
            r.rlim_cur = n;
            r.rlim_max = r.rlim_max.max(n);
            assert_eq!(
                libc::setrlimit(libc::RLIMIT_NOFILE, &r),
                0,
                "raise RLIMIT_NOFILE to {n}"
            );
        }
    }
}

/// A connected pair over loopback: (client, accepted server end).
fn pair(l: &TcpListener) -> (TcpStream, TcpStream) {
    let c = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
    let (s, _) = l.accept().expect("accept");
    (c, s)
}

/// One message each way on a pair.
fn ping(p: &mut (TcpStream, TcpStream), n: usize) {
    let mut buf = vec![0u8; n];
    p.0.write_all(&buf).expect("send");
    p.1.read_exact(&mut buf).expect("recv");
    p.1.write_all(&buf).expect("reply");
    p.0.read_exact(&mut buf).expect("recv reply");
}

/// (tx bytes, rx bytes) of this process's messages on `port`.
fn my_bytes(t: &Trace, port: u16) -> (u64, u64) {
    let me = std::process::id();
    let want = ColumnSet::of(&[
        col::FLOW,
        col::BYTES,
        col::DIR,
        col::F_PID,
        col::F_LPORT,
        col::F_RPORT,
    ]);
    let (mut tx, mut rx) = (0, 0);
    for b in event_batches(t, Table::Messages, want) {
        for r in 0..b.rows {
            let f = b.flow[r] as usize;
            let fl = &b.flows;
            if fl.pid[f] != me || (fl.lport[f] != port && fl.rport[f] != port) {
                continue;
            }
            if b.dir[r] == 0 {
                tx += u64::from(b.bytes[r]);
            } else {
                rx += u64::from(b.bytes[r]);
            }
        }
    }
    (tx, rx)
}

fn opts(entries: u32) -> KernelOptions {
    KernelOptions {
        pids: vec![std::process::id()],
        lifecycle: true,
        ring_bytes: 32 << 20,
        owner_entries: entries,
        ..KernelOptions::default()
    }
}

/// 5000 short connections (10,000 sockets) through a 4096-entry owner map
/// while 100 connections stay open: without closed sockets leaving the map
/// the churn would fill it and inserts would be refused; with it, none is.
#[test]
fn closed_sockets_leave_the_owner_map() {
    if !bpf_ok("closed_sockets_leave_the_owner_map") {
        return;
    }
    raise_nofile(4096);
    let rec = start(opts(4096));
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let mut live: Vec<_> = (0..100).map(|_| pair(&l)).collect();
    for p in &mut live {
        ping(p, 10);
    }
    for _ in 0..5000 {
        let mut p = pair(&l);
        ping(&mut p, 3);
    }
    for p in &mut live {
        ping(p, 10);
    }
    drop(live);
    let (t, sum, _d) = rec.stop();
    assert_eq!(sum.kernel.iter().map(|k| k.drops).sum::<u64>(), 0);
    assert_eq!(
        sum.pressure.owner_map_full, 0,
        "owner map filled up with closed sockets"
    );
    // Each side sends and receives: 100 × 2 pings × 10 B + 5000 × 3 B.
    let expect = 100 * 2 * 10 * 2 + 5000 * 3 * 2;
    assert_eq!(my_bytes(&t, port), (expect, expect));
}

/// TCP sockets that never reach a state change to TCP_CLOSE leave the map
/// too: 5000 closed without connecting (they are TCP_CLOSE from the start)
/// and 1000 whose connect is refused (SYN_SENT, then reset), through a
/// 4096-entry map.
#[test]
fn unconnected_tcp_sockets_leave_the_owner_map() {
    if !bpf_ok("unconnected_tcp_sockets_leave_the_owner_map") {
        return;
    }
    let rec = start(opts(4096));
    // A port with nobody listening: bind, note it, close.
    let refused = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    for i in 0..5000 {
        // SAFETY: plain socket(2) / close(2) on an fd this loop owns.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
            libc::close(fd);
        }
        if i % 5 == 0 {
            let e = TcpStream::connect(refused).expect_err("nobody listens");
            assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
        }
    }
    let (_t, sum, _d) = rec.stop();
    assert_eq!(sum.kernel.iter().map(|k| k.drops).sum::<u64>(), 0);
    assert_eq!(
        sum.pressure.owner_map_full, 0,
        "owner map filled up with unconnected sockets"
    );
}

/// 1000 open connections (2000 sockets) through a 256-entry owner map:
/// most sockets find the map full when their owner is first put (at
/// socket creation, or at ESTABLISHED for accepted ones) and again at each
/// message; every refused insert is counted and reported in the trace's
/// stats, and message bytes stay exact (messages carry the calling task).
#[test]
fn a_full_owner_map_is_counted() {
    if !bpf_ok("a_full_owner_map_is_counted") {
        return;
    }
    raise_nofile(4096);
    let rec = start(opts(256));
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let mut live: Vec<_> = (0..1000).map(|_| pair(&l)).collect();
    for round in 0..2 {
        for p in &mut live {
            ping(p, 7 + round);
        }
    }
    drop(live);
    let (t, sum, _d) = rec.stop();
    assert_eq!(sum.kernel.iter().map(|k| k.drops).sum::<u64>(), 0);
    let full = sum.pressure.owner_map_full;
    // Every socket's owner is put at least once; at most 256 fit. (No
    // upper bound: each socket without an entry tries again at each of its
    // 4 messages, and the map learns every process's sockets, those of
    // tests running alongside too.)
    assert!(
        full >= 2000 - 256,
        "refused owner inserts {full}: expected one or more for each of the ~1744 sockets that \
         cannot fit"
    );
    // The count is in the trace too (stats source OWNER_MAP_FULL).
    let mut in_trace = 0;
    for i in t.chunks_of(Table::Stats).collect::<Vec<_>>() {
        let s = t
            .read_chunk(i, ColumnSet::ALL)
            .and_then(|c| c.into_stats())
            .expect("stats");
        for (src, n) in s.source.iter().zip(&s.events) {
            if *src == snoop_format::source::OWNER_MAP_FULL {
                in_trace += n;
            }
        }
    }
    assert_eq!(in_trace, full, "stats rows vs summary");
    let expect = 1000 * (7 + 8) * 2;
    assert_eq!(my_bytes(&t, port), (expect, expect));
}
