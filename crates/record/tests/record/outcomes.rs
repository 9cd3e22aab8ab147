//! TCP outcomes: how each connection the test makes ends, read
//! from the CLOSE row's sk_err and tcp_sock counters. A connect to a port
//! the test has just closed must be `refused`; a client that shuts down,
//! reads the server's EOF and closes must be `closed`, with the kernel's
//! segment counters equal to what `TCP_INFO` says on the same socket after
//! its CLOSE; a client that closes with `SO_LINGER` 0 must be `reset_local`
//! and its server `reset_by_peer`; and a transfer through a veth pair with
//! netem dropping 20% of the client's packets (two network namespaces the
//! test makes; no traffic leaves them) must show `retrans_segs` > 0, equal
//! to the kernel's own `tcpi_total_retrans` of that socket.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};

use snoop_format::{ConnStatus, Table, TcpOutcome, Trace};
use snoop_record::kernel::KernelOptions;

use crate::util::{bpf_ok, event_batches, name, start};

const CLOSE: u8 = 7;

/// The CLOSE rows (old state, outcome) of the socket with these ports.
fn closes(t: &Trace, lport: u16, rport: u16) -> Vec<(u8, TcpOutcome)> {
    let mut out = Vec::new();
    for b in event_batches(t, Table::Connections, snoop_format::ColumnSet::ALL) {
        for r in 0..b.rows {
            let f = b.flow[r] as usize;
            if b.flows.lport[f] == lport && b.flows.rport[f] == rport && b.new_state[r] == CLOSE {
                out.push((b.old_state[r], b.outcome(r).expect("1.2 outcome columns")));
            }
        }
    }
    out
}

/// The one CLOSE of a socket and the status it gives.
fn status(t: &Trace, what: &str, lport: u16, rport: u16) -> (ConnStatus, TcpOutcome) {
    let c = closes(t, lport, rport);
    assert_eq!(c.len(), 1, "{what}: one CLOSE for {lport}->{rport}: {c:?}");
    let (old, o) = c[0];
    (ConnStatus::at_close(old, o.sk_err), o)
}

/// The kernel's own view of a socket (`getsockopt(TCP_INFO)`).
fn tcp_info(s: &TcpStream) -> libc::tcp_info {
    // SAFETY: tcp_info is plain integers; zero is a valid value.
    let mut i: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: the pointers are to live locals of the sizes given.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut i as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
    i
}

fn set_linger_zero(s: &TcpStream) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: the pointer is to a live linger of the size given.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER: {}", std::io::Error::last_os_error());
}

fn port(a: SocketAddr) -> u16 {
    a.port()
}

fn own_recording() -> crate::util::Recording {
    start(KernelOptions {
        pids: vec![std::process::id()],
        lifecycle: true,
        ring_bytes: 8 << 20,
        ..KernelOptions::default()
    })
}

/// Refused, closed, reset_local / reset_by_peer on loopback.
#[test]
fn tcp_outcomes_refused_closed_and_reset() {
    if !bpf_ok("tcp_outcomes") {
        return;
    }
    let rec = own_recording();

    // Refused: a port the test bound and closed, so nothing listens.
    let gone = TcpListener::bind("127.0.0.1:0").expect("bind");
    let gone_port = port(gone.local_addr().expect("addr"));
    drop(gone);
    let e = TcpStream::connect(("127.0.0.1", gone_port)).expect_err("nothing listens");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");

    // Orderly: the client shuts down its side, the server reads EOF,
    // answers and closes; the client reads the server's EOF, so its
    // CLOSE has happened before TCP_INFO is read.
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let sport = port(l.local_addr().expect("addr"));
    let mut c = TcpStream::connect(("127.0.0.1", sport)).expect("connect");
    let (mut s, _) = l.accept().expect("accept");
    let cport = port(c.local_addr().expect("addr"));
    c.write_all(&[1u8; 10_000]).expect("send");
    c.shutdown(Shutdown::Write).expect("shutdown");
    let mut got = Vec::new();
    s.read_to_end(&mut got).expect("server reads to EOF");
    assert_eq!(got.len(), 10_000);
    s.write_all(b"bye").expect("answer");
    drop(s);
    let mut back = Vec::new();
    c.read_to_end(&mut back).expect("client reads to EOF");
    assert_eq!(back, b"bye");
    let closed_info = tcp_info(&c);
    drop(c);

    // Reset: the client closes with SO_LINGER 0 (a RST, no FIN); the
    // server's next read sees it.
    let mut c2 = TcpStream::connect(("127.0.0.1", sport)).expect("connect");
    let (mut s2, _) = l.accept().expect("accept");
    let c2port = port(c2.local_addr().expect("addr"));
    c2.write_all(b"x").expect("send");
    let mut one = [0u8; 1];
    s2.read_exact(&mut one).expect("read");
    set_linger_zero(&c2);
    drop(c2);
    let e = s2.read(&mut one).expect_err("the peer reset");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
    drop(s2);
    drop(l);

    let (t, sum, _d) = rec.stop();
    assert_eq!(sum.kernel.iter().map(|k| k.drops).sum::<u64>(), 0);

    // The refused connect's source port is not known to the test; it is
    // the one CLOSE from SYN_SENT to gone_port.
    let refused: Vec<_> = event_batches(&t, Table::Connections, snoop_format::ColumnSet::ALL)
        .iter()
        .flat_map(|b| {
            (0..b.rows)
                .filter(|&r| {
                    let f = b.flow[r] as usize;
                    b.flows.rport[f] == gone_port && b.new_state[r] == CLOSE
                })
                .map(|r| (b.old_state[r], b.outcome(r).expect("outcome")))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(refused.len(), 1, "one refused connect: {refused:?}");
    let (old, o) = refused[0];
    assert_eq!(old, 2, "closed from SYN_SENT");
    assert_eq!(o.sk_err, libc::ECONNREFUSED as u16);
    assert_eq!(ConnStatus::at_close(old, o.sk_err), ConnStatus::Refused);

    let (st, o) = status(&t, "orderly client", cport, sport);
    assert_eq!(st, ConnStatus::Closed, "{o:?}");
    assert_eq!(o.sk_err, 0);
    assert_eq!(o.retrans_segs, closed_info.tcpi_total_retrans);
    assert_eq!(o.segs_out, closed_info.tcpi_segs_out);
    assert_eq!(o.segs_in, closed_info.tcpi_segs_in);
    assert_eq!(o.min_rtt_us, closed_info.tcpi_min_rtt);
    assert_eq!(o.srtt_us, closed_info.tcpi_rtt);
    assert!(o.srtt_us > 0, "loopback RTT sampled: {o:?}");
    let (st, _) = status(&t, "orderly server", sport, cport);
    assert_eq!(st, ConnStatus::Closed);

    let (st, o) = status(&t, "lingering client", c2port, sport);
    assert_eq!(st, ConnStatus::ResetLocal, "{o:?}");
    let (st, o) = status(&t, "reset server", sport, c2port);
    assert_eq!(st, ConnStatus::ResetByPeer, "{o:?}");
    assert_eq!(o.sk_err, libc::ECONNRESET as u16);
}

/// Run `ip ARGS`/`tc ARGS`, panicking with its stderr on failure.
fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().expect("run");
    assert!(
        out.status.success(),
        "{cmd} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Three network namespaces in a line, client (a) - router (r) - server
/// (b), joined by veth pairs; the router loses packets it forwards to the
/// server. Forwarded packets, so the client's TCP cannot learn of a drop
/// from its own qdisc: it must retransmit. The loss is netem's 20% where
/// the kernel has netem (`CONFIG_NET_SCH_NETEM`), else a token bucket
/// with room for two packets (tbf), which drops whatever a sender's burst
/// puts beyond that. Dropping it deletes the namespaces.
struct LossyLink {
    ns: [String; 3],
    /// Client and server addresses.
    addr: [String; 2],
    /// Which loss: "netem loss 20%" or the tbf bottleneck.
    loss: &'static str,
}

impl LossyLink {
    fn new() -> LossyLink {
        let tag = name("");
        let seq = std::process::id() % 250;
        let mut l = LossyLink {
            ns: [
                format!("snoop-l-{tag}a"),
                format!("snoop-l-{tag}r"),
                format!("snoop-l-{tag}b"),
            ],
            addr: [format!("10.214.{seq}.1"), format!("10.214.{seq}.6")],
            loss: "",
        };
        for n in &l.ns {
            run("ip", &["netns", "add", n]);
        }
        for n in &l.ns {
            run("ip", &["-n", n, "link", "set", "lo", "up"]);
        }
        // (namespace, device, address/30, gateway) per end of each pair.
        let ends = [
            [
                (
                    0,
                    format!("sla{tag}"),
                    format!("10.214.{seq}.1/30"),
                    Some(format!("10.214.{seq}.2")),
                ),
                (1, format!("slra{tag}"), format!("10.214.{seq}.2/30"), None),
            ],
            [
                (1, format!("slrb{tag}"), format!("10.214.{seq}.5/30"), None),
                (
                    2,
                    format!("slb{tag}"),
                    format!("10.214.{seq}.6/30"),
                    Some(format!("10.214.{seq}.5")),
                ),
            ],
        ];
        for [x, y] in &ends {
            run(
                "ip",
                &["link", "add", &x.1, "type", "veth", "peer", "name", &y.1],
            );
            for (i, dev, cidr, gw) in [x, y] {
                let n = &l.ns[*i];
                run("ip", &["link", "set", dev, "netns", n]);
                run("ip", &["-n", n, "addr", "add", cidr, "dev", dev]);
                run("ip", &["-n", n, "link", "set", dev, "up"]);
                if let Some(gw) = gw {
                    run("ip", &["-n", n, "route", "add", "default", "via", gw]);
                }
            }
        }
        let r = &l.ns[1];
        run(
            "ip",
            &[
                "netns",
                "exec",
                r,
                "sh",
                "-c",
                "echo 1 > /proc/sys/net/ipv4/ip_forward",
            ],
        );
        let to_b = &ends[1][0].1;
        let netem = Command::new("ip")
            .args([
                "netns", "exec", r, "tc", "qdisc", "add", "dev", to_b, "root",
            ])
            .args(["netem", "loss", "20%"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        l.loss = if netem {
            "netem loss 20%"
        } else {
            run(
                "ip",
                &[
                    "netns", "exec", r, "tc", "qdisc", "add", "dev", to_b, "root", "tbf", "rate",
                    "20mbit", "burst", "3000", "limit", "3000",
                ],
            );
            "tbf, two packets of queue"
        };
        l
    }

    /// Run `f` on a thread that has entered namespace `i` (sockets it
    /// creates live there; the rest of the process stays where it is).
    fn on<T: Send + 'static>(
        &self,
        i: usize,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = format!("/var/run/netns/{}", self.ns[i]);
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            // SAFETY: setns on a descriptor we own; it changes only this
            // thread's network namespace.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
    }
}

impl Drop for LossyLink {
    fn drop(&mut self) {
        for n in &self.ns {
            let _ = Command::new("ip")
                .args(["netns", "del", n])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn have_tools() -> bool {
    let ok = ["ip", "tc"].iter().all(|c| {
        Command::new(c)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if !ok {
        if std::env::var("SNOOP_REQUIRE_BPF").as_deref() == Ok("1") {
            panic!("lossy-link test needs iproute2 (`ip`, `tc`) and SNOOP_REQUIRE_BPF=1");
        }
        eprintln!("tcp_retransmits: skipped: iproute2 (`ip`, `tc`) not found");
    }
    ok
}

/// 300 kB through a link that loses the sender's packets: the
/// sender's CLOSE row counts the retransmissions, exactly as the kernel's
/// TCP_INFO of that socket does after its CLOSE.
#[test]
fn tcp_retransmits_on_a_lossy_link() {
    if !bpf_ok("tcp_retransmits") || !have_tools() {
        return;
    }
    let link = LossyLink::new();
    let rec = own_recording();
    const N: usize = 300_000;
    let (tx, rx) = std::sync::mpsc::channel::<u16>();
    let bind = format!("{}:0", link.addr[1]);
    let server = link.on(2, move || {
        let l = TcpListener::bind(&bind).expect("bind in namespace b");
        tx.send(port(l.local_addr().expect("addr")))
            .expect("send port");
        let (mut s, _) = l.accept().expect("accept");
        let mut got = Vec::new();
        s.read_to_end(&mut got).expect("read to EOF");
        got.len()
    });
    let sport = rx.recv().expect("server port");
    let dst = format!("{}:{sport}", link.addr[1]);
    let client = link.on(0, move || {
        let mut c = TcpStream::connect(&dst).expect("connect through the lossy link");
        let cport = port(c.local_addr().expect("addr"));
        c.write_all(&vec![7u8; N]).expect("send");
        c.shutdown(Shutdown::Write).expect("shutdown");
        let mut rest = Vec::new();
        // The server's EOF: our CLOSE has happened (FIN_WAIT2 -> CLOSE).
        c.read_to_end(&mut rest).expect("read EOF");
        (cport, tcp_info(&c))
    });
    let (cport, info) = client.join().expect("client");
    assert_eq!(server.join().expect("server"), N);
    let (t, sum, _d) = rec.stop();
    assert_eq!(sum.kernel.iter().map(|k| k.drops).sum::<u64>(), 0);

    let (st, o) = status(&t, "lossy client", cport, sport);
    assert!(
        o.retrans_segs > 0,
        "retransmissions recorded ({}): {o:?}",
        link.loss
    );
    assert_eq!(
        o.retrans_segs, info.tcpi_total_retrans,
        "as TCP_INFO counts"
    );
    assert_eq!(o.segs_out, info.tcpi_segs_out);
    assert!(o.segs_out > o.retrans_segs);
    assert_eq!(st, ConnStatus::Closed, "{o:?}");
}
