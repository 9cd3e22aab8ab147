//! Names for remote addresses, end to end with the real recorder: the test
//! runs its own DNS responder (UDP and TCP, port 53 on a loopback address
//! of its own), a client thread asks it for names the test chose, gets
//! addresses the test chose (loopback addresses where the test listens),
//! connects and sends a known number of bytes. `remote_name` in `conns`,
//! `remotes` and replay lines must be the name the client asked for —
//! also when the name is re-answered with another address mid-trace, for
//! a CNAME chain, over TCP, and for AAAA — and `--no-dns` records none.
//! Both places the kernel side reads answers are run: the packets group's
//! receive program (the default) and the cgroup_skb program used when
//! packets are off; the recorder's own program descriptors show which one
//! it loaded.
//!
//! Needs root (eBPF); without it the tests print why and pass, unless
//! SNOOP_REQUIRE_BPF=1 (CI), then they fail.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

mod common;
use common::*;

/// What the responder answers for a name: a CNAME, or addresses.
#[derive(Clone, Debug)]
enum Rr {
    Cname(String),
    Addr(IpAddr),
}

type Zone = Arc<Mutex<HashMap<String, Vec<(String, Rr)>>>>;

const TTL: u32 = 77;

fn wire_name(name: &str) -> Vec<u8> {
    let mut v = Vec::new();
    for l in name.split('.').filter(|l| !l.is_empty()) {
        v.push(l.len() as u8);
        v.extend_from_slice(l.as_bytes());
    }
    v.push(0);
    v
}

/// The question's name (lowercase) and the end of the question section.
fn question(q: &[u8]) -> Option<(String, usize)> {
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = *q.get(at)? as usize;
        if len == 0 {
            return Some((labels.join("."), at + 5));
        }
        labels.push(String::from_utf8_lossy(q.get(at + 1..at + 1 + len)?).to_lowercase());
        at += 1 + len;
    }
}

/// The response to query `q` from `zone`.
fn answer(q: &[u8], zone: &Zone) -> Option<Vec<u8>> {
    let (name, qend) = question(q)?;
    let rrs = zone.lock().unwrap().get(&name).cloned().unwrap_or_default();
    let mut m = q[..2].to_vec();
    m.extend_from_slice(&[0x81, 0x80, 0, 1]);
    m.extend_from_slice(&(rrs.len() as u16).to_be_bytes());
    m.extend_from_slice(&[0, 0, 0, 0]);
    m.extend_from_slice(&q[12..qend]);
    for (owner, rr) in rrs {
        m.extend(wire_name(&owner));
        let (ty, rdata) = match rr {
            Rr::Cname(t) => (5u16, wire_name(&t)),
            Rr::Addr(IpAddr::V4(a)) => (1, a.octets().to_vec()),
            Rr::Addr(IpAddr::V6(a)) => (28, a.octets().to_vec()),
        };
        m.extend_from_slice(&ty.to_be_bytes());
        m.extend_from_slice(&[0, 1]);
        m.extend_from_slice(&TTL.to_be_bytes());
        m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        m.extend(rdata);
    }
    Some(m)
}

/// A query for `name` of type `qtype`.
fn query(name: &str, qtype: u16) -> Vec<u8> {
    let mut m = vec![0x4a, 0x17, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    m.extend(wire_name(name));
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&[0, 1]);
    m
}

/// The address of the last record of a response (the test's responder
/// puts the address last).
fn last_addr(r: &[u8], qtype: u16) -> IpAddr {
    if qtype == 28 {
        let b: [u8; 16] = r[r.len() - 16..].try_into().unwrap();
        IpAddr::V6(Ipv6Addr::from(b))
    } else {
        let b: [u8; 4] = r[r.len() - 4..].try_into().unwrap();
        IpAddr::V4(Ipv4Addr::from(b))
    }
}

/// A DNS responder on UDP and TCP port 53 of a loopback address of its
/// own, answering from `zone` until the test process ends.
struct Responder {
    addr: IpAddr,
    zone: Zone,
}

impl Responder {
    /// Bind port 53 on the first free candidate address.
    fn start(candidates: impl IntoIterator<Item = IpAddr>) -> Option<Responder> {
        let zone: Zone = Arc::default();
        for addr in candidates {
            let sa = SocketAddr::new(addr, 53);
            let (Ok(udp), Ok(tcp)) = (UdpSocket::bind(sa), TcpListener::bind(sa)) else {
                continue;
            };
            let z = zone.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 512];
                while let Ok((n, from)) = udp.recv_from(&mut buf) {
                    if let Some(a) = answer(&buf[..n], &z) {
                        let _ = udp.send_to(&a, from);
                    }
                }
            });
            let z = zone.clone();
            std::thread::spawn(move || {
                for mut s in tcp.incoming().map_while(Result::ok) {
                    let mut len = [0u8; 2];
                    if s.read_exact(&mut len).is_err() {
                        continue;
                    }
                    let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
                    if s.read_exact(&mut q).is_err() {
                        continue;
                    }
                    if let Some(a) = answer(&q, &z) {
                        let mut out = (a.len() as u16).to_be_bytes().to_vec();
                        out.extend(a);
                        let _ = s.write_all(&out);
                    }
                }
            });
            return Some(Responder { addr, zone });
        }
        None
    }

    fn set(&self, name: &str, rrs: Vec<(String, Rr)>) {
        self.zone.lock().unwrap().insert(name.to_string(), rrs);
    }

    /// Ask for `name` (over TCP when `tcp`), as the calling thread.
    fn resolve(&self, name: &str, qtype: u16, tcp: bool) -> IpAddr {
        let q = query(name, qtype);
        let to = SocketAddr::new(self.addr, 53);
        let r = if tcp {
            let mut s = TcpStream::connect(to).unwrap();
            let mut out = (q.len() as u16).to_be_bytes().to_vec();
            out.extend(q);
            s.write_all(&out).unwrap();
            let mut len = [0u8; 2];
            s.read_exact(&mut len).unwrap();
            let mut r = vec![0u8; u16::from_be_bytes(len) as usize];
            s.read_exact(&mut r).unwrap();
            r
        } else {
            let bind: SocketAddr = if self.addr.is_ipv6() {
                "[::1]:0".parse().unwrap()
            } else {
                "127.0.0.1:0".parse().unwrap()
            };
            let s = UdpSocket::bind(bind).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.send_to(&q, to).unwrap();
            let mut buf = [0u8; 512];
            let n = s.recv(&mut buf).unwrap();
            buf[..n].to_vec()
        };
        last_addr(&r, qtype)
    }

    /// Ask for `name` (type A) over UDP from a socket never bound: the
    /// kernel picks its port at sendto(), and its local address stays the
    /// wildcard (what resolvers that do not bind do).
    fn resolve_unbound(&self, name: &str) -> IpAddr {
        let IpAddr::V4(server) = self.addr else {
            panic!("an IPv4 responder");
        };
        let q = query(name, 1);
        // SAFETY: plain socket(2); the descriptor is owned below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        assert!(fd >= 0, "{}", std::io::Error::last_os_error());
        // SAFETY: fd is a fresh socket nobody else owns.
        let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        // SAFETY: sockaddr_in is plain data; zeroed is a valid value.
        let mut to: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        to.sin_family = libc::AF_INET as libc::sa_family_t;
        to.sin_port = 53u16.to_be();
        to.sin_addr.s_addr = u32::from(server).to_be();
        // SAFETY: q and to live across the call, with the lengths given.
        let n = unsafe {
            libc::sendto(
                fd,
                q.as_ptr().cast(),
                q.len(),
                0,
                (&to as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        assert_eq!(n, q.len() as isize, "{}", std::io::Error::last_os_error());
        let udp = UdpSocket::from(sock);
        udp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 512];
        let n = udp.recv(&mut buf).unwrap();
        last_addr(&buf[..n], 1)
    }
}

/// A TCP listener on `addr` that reads every connection to its end;
/// returns its port.
fn sink(addr: IpAddr) -> u16 {
    let l = TcpListener::bind(SocketAddr::new(addr, 0)).unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in l.incoming().map_while(Result::ok) {
            let mut buf = Vec::new();
            let _ = s.read_to_end(&mut buf);
        }
    });
    port
}

/// Connect to `addr:port`, send `n` bytes and close (waiting for the
/// peer's close, so the connection is complete in the trace).
fn send_to(addr: IpAddr, port: u16, n: usize) {
    let mut s = TcpStream::connect(SocketAddr::new(addr, port)).unwrap();
    s.write_all(&vec![b'x'; n]).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
}

/// Run `f` on a thread named `comm` (the recorder's --comm).
fn as_thread<T: Send + 'static>(comm: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let name = std::ffi::CString::new(comm).unwrap();
    std::thread::spawn(move || {
        // SAFETY: PR_SET_NAME reads a NUL-terminated string (this thread's name).
        unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr() as libc::c_ulong, 0, 0, 0) };
        f()
    })
    .join()
    .unwrap()
}

/// Ask `dns` for `name` from a thread named `comm`.
fn ask(comm: &str, dns: &Arc<Responder>, name: &str, qtype: u16, tcp: bool) -> IpAddr {
    let (d, n) = (dns.clone(), name.to_string());
    as_thread(comm, move || d.resolve(&n, qtype, tcp))
}

/// Loopback addresses of this test process: 127.A.B.x with A, B from the
/// pid and `tag`, so parallel test processes do not meet.
fn lo4(tag: u8, x: u8) -> IpAddr {
    let pid = std::process::id();
    IpAddr::V4(Ipv4Addr::new(127, tag, (pid % 251) as u8 + 1, x))
}

fn json_rows(args: &[&str]) -> Vec<Value> {
    let out = stdout_of(args);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    match v {
        Value::Array(a) => a,
        Value::Object(o) => o
            .values()
            .find_map(|x| x.as_array().cloned())
            .unwrap_or_default(),
        _ => panic!("{out}"),
    }
}

/// The conns rows to `addr:port`.
fn conns_to(path: &Path, addr: IpAddr, port: u16) -> Vec<Value> {
    json_rows(&[
        "analyze",
        path.to_str().unwrap(),
        "--report",
        "conns",
        "--format",
        "json",
    ])
    .into_iter()
    .filter(|r| r["dst"] == addr.to_string() && r["dport"] == port)
    .collect()
}

/// What one connection of the test was: where to, how many bytes, and the
/// name it must carry.
struct Sent {
    addr: IpAddr,
    port: u16,
    bytes: u64,
    name: String,
}

/// The responders of this test process (UDP and TCP port 53 on a
/// loopback address of its own, and on [::1] when that port is free),
/// shared by its tests: a port 53 is bound once per process.
fn responders() -> &'static (Arc<Responder>, Option<Arc<Responder>>) {
    static R: std::sync::OnceLock<(Arc<Responder>, Option<Arc<Responder>>)> =
        std::sync::OnceLock::new();
    R.get_or_init(|| {
        let v4 = Responder::start((1..=250).map(|x| lo4(53, x))).expect("a free port 53");
        let v6 = Responder::start([IpAddr::V6(Ipv6Addr::LOCALHOST)]);
        (Arc::new(v4), v6.map(Arc::new))
    })
}

/// BPF programs of type cgroup_skb the process `pid` holds (from its
/// descriptors' fdinfo: a program's names its `prog_type`, 8 for cgroup_skb).
fn cgroup_skb_programs(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .filter(|info| info.lines().any(|l| l == "prog_type:\t8"))
        .count()
}

#[test]
fn remote_names_from_the_packets_receive_hook() {
    let Some(_g) = bpf_or_skip("remote_names_from_the_packets_receive_hook") else {
        return;
    };
    remote_names_come_from_the_answers_the_process_received("pk", &[], &[], 0);
}

#[test]
fn remote_names_from_the_cgroup_skb_hook_without_packets() {
    let Some(_g) = bpf_or_skip("remote_names_from_the_cgroup_skb_hook_without_packets") else {
        return;
    };
    remote_names_come_from_the_answers_the_process_received("cg", &["--packets=off"], &[], 1);
}

#[test]
fn remote_names_from_the_cgroup_skb_hook_when_packets_are_refused() {
    let Some(_g) = bpf_or_skip("remote_names_from_the_cgroup_skb_hook_when_packets_are_refused")
    else {
        return;
    };
    let refused = [("SNOOP_FORCE_REFUSE", "packets")];
    remote_names_come_from_the_answers_the_process_received("rf", &[], &refused, 1);
}

/// Record with `extra` flags and `env` (the recorder must hold
/// `cgroup_skb` cgroup_skb programs: 0 when DNS is read in the packets
/// group's receive program, 1 when in its own), ask the responders for names tagged `tag`,
/// connect to the addresses they gave, and check every report's names.
fn remote_names_come_from_the_answers_the_process_received(
    tag: &str,
    extra: &[&str],
    env: &[(&str, &str)],
    cgroup_skb: usize,
) {
    let pid = std::process::id();
    let comm = format!("dns{tag}{}", pid % 100_000);
    let (dns, six) = responders().clone();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dns.snp");
    let mut args = vec!["--comm", comm.as_str()];
    args.extend_from_slice(extra);
    let rec = start_recorder(&path, &args, env);
    assert_eq!(
        cgroup_skb_programs(rec.child.id()),
        cgroup_skb,
        "cgroup_skb programs of the recorder with {extra:?} {env:?}"
    );

    let web = format!("web-{tag}-{pid}.snoop.test");
    let alias = format!("alias-{tag}-{pid}.snoop.test");
    let real = format!("edge-{tag}-{pid}.cdn.snoop.test");
    let viatcp = format!("tcp-{tag}-{pid}.snoop.test");
    let v6 = format!("six-{tag}-{pid}.snoop.test");
    let (t1, t2, t3, t4) = (lo4(54, 1), lo4(54, 2), lo4(54, 3), lo4(54, 4));
    let (p1, p2, p3, p4) = (sink(t1), sink(t2), sink(t3), sink(t4));
    let a = |ip: IpAddr, owner: &str| vec![(owner.to_string(), Rr::Addr(ip))];
    dns.set(&web, a(t1, &web));
    dns.set(
        &alias,
        vec![
            (alias.clone(), Rr::Cname(real.clone())),
            (real.clone(), Rr::Addr(t3)),
        ],
    );
    dns.set(&viatcp, a(t4, &viatcp));
    let mut sent = Vec::new();

    // The name answered with t1, used, then re-answered with t2.
    let got = ask(&comm, &dns, &web, 1, false);
    assert_eq!(got, t1);
    as_thread(&comm, move || send_to(t1, p1, 1111));
    sent.push(Sent {
        addr: t1,
        port: p1,
        bytes: 1111,
        name: web.clone(),
    });
    dns.set(&web, a(t2, &web));
    let got = ask(&comm, &dns, &web, 1, false);
    assert_eq!(got, t2);
    as_thread(&comm, move || send_to(t2, p2, 2222));
    sent.push(Sent {
        addr: t2,
        port: p2,
        bytes: 2222,
        name: web.clone(),
    });
    // A CNAME chain, asked from a socket never bound.
    let (d, n) = (dns.clone(), alias.clone());
    let got = as_thread(&comm, move || d.resolve_unbound(&n));
    assert_eq!(got, t3);
    as_thread(&comm, move || send_to(t3, p3, 3333));
    sent.push(Sent {
        addr: t3,
        port: p3,
        bytes: 3333,
        name: alias.clone(),
    });
    // Over TCP.
    let got = ask(&comm, &dns, &viatcp, 1, true);
    assert_eq!(got, t4);
    as_thread(&comm, move || send_to(t4, p4, 4444));
    sent.push(Sent {
        addr: t4,
        port: p4,
        bytes: 4444,
        name: viatcp.clone(),
    });
    // AAAA over IPv6, when IPv6 loopback has a free port 53.
    if let Some(six) = six {
        let t6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        let p6 = sink(t6);
        six.set(&v6, a(t6, &v6));
        let got = ask(&comm, &six, &v6, 28, false);
        assert_eq!(got, t6);
        as_thread(&comm, move || send_to(t6, p6, 5555));
        sent.push(Sent {
            addr: t6,
            port: p6,
            bytes: 5555,
            name: v6.clone(),
        });
    } else {
        eprintln!("no free [::1]:53: AAAA over IPv6 not checked");
    }
    let stderr = rec.stop();
    let p = path.to_str().unwrap();

    // The trace holds the answers: names, addresses, TTLs, who asked.
    let t = snoop_format::Trace::open(&path).unwrap();
    let mine: Vec<_> = t
        .dns()
        .iter()
        .filter(|x| x.name.ends_with(&format!("-{tag}-{pid}.snoop.test")))
        .collect();
    assert_eq!(mine.len(), sent.len(), "{mine:?} {stderr}");
    for (x, s) in mine.iter().zip(&sent) {
        assert_eq!(x.name, s.name);
        assert_eq!(x.addr, snoop_format::addr_bytes(s.addr));
        assert_eq!(x.ttl, TTL);
        assert_eq!(x.pid, pid, "the process that asked");
    }
    assert_eq!(mine[2].cnames, vec![real.clone()], "the CNAME chain");
    let info = info_json(&path);
    assert_eq!(info["hooks"]["dns"], "active");
    assert!(info["dns_names"].as_u64().unwrap() >= 4, "{info}");

    // conns: each connection carries the name its address was asked as.
    for s in &sent {
        let rows = conns_to(&path, s.addr, s.port);
        assert_eq!(rows.len(), 1, "{}:{}: {rows:?}", s.addr, s.port);
        assert_eq!(rows[0]["tx_bytes"], s.bytes, "{rows:?}");
        assert_eq!(rows[0]["remote_name"], s.name.as_str(), "{rows:?}");
    }
    // remotes: per process and address (::1 is this process's own
    // address too: its row also holds the accepting side's bytes).
    let remotes = json_rows(&["analyze", p, "--report", "remotes", "--format", "json"]);
    for s in &sent {
        let r: Vec<&Value> = remotes
            .iter()
            .filter(|r| r["remote"] == s.addr.to_string())
            .collect();
        assert_eq!(r.len(), 1, "{}: {remotes:?}", s.addr);
        assert_eq!(r[0]["remote_name"], s.name.as_str());
        let tx = r[0]["tx_bytes"].as_u64().unwrap();
        assert!(tx == s.bytes || (s.addr.is_loopback() && s.addr.is_ipv6() && tx > s.bytes));
    }
    // --by remote: the name re-answered groups both its addresses.
    let by = json_rows(&["analyze", p, "--by", "remote", "--format", "json"]);
    let g: Vec<&Value> = by
        .iter()
        .filter(|r| r["remote_name"] == web.as_str())
        .collect();
    assert_eq!(g.len(), 1, "{by:?}");
    assert_eq!(g[0]["remote"], format!("{t1},{t2}"));
    assert_eq!(g[0]["tx_bytes"], 1111 + 2222);
    // Replay: text and JSON lines of each connection's messages.
    let text = stdout_of(&["replay", p]);
    let json = stdout_of(&["replay", p, "--json"]);
    for s in &sent {
        let end = match s.addr {
            IpAddr::V6(a) => format!("[{a}]:{}", s.port),
            IpAddr::V4(a) => format!("{a}:{}", s.port),
        };
        let want = format!("-> {end} ({}) tx", s.name);
        assert!(
            text.lines()
                .any(|l| l.contains(" msg TCP ") && l.contains(&want)),
            "{want} not in replay:\n{text}"
        );
        let tx: u64 = json
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|o| {
                o["event"] == "msg"
                    && o["dir"] == "tx"
                    && o["dst"] == s.addr.to_string()
                    && o["dport"] == s.port
            })
            .map(|o| {
                assert_eq!(o["remote_name"], s.name.as_str(), "{o}");
                o["len"].as_u64().unwrap()
            })
            .sum();
        assert_eq!(tx, s.bytes, "{}", s.name);
    }
}

#[test]
fn no_dns_records_no_names() {
    let Some(_g) = bpf_or_skip("no_dns_records_no_names") else {
        return;
    };
    // With packets (DNS would be read in their receive program) and
    // without (it would be the cgroup_skb program's).
    for (tag, extra) in [("pk", None), ("cg", Some("--packets=off"))] {
        no_dns_records_no_names_with(tag, extra);
    }
}

fn no_dns_records_no_names_with(tag: &str, extra: Option<&str>) {
    let pid = std::process::id();
    let comm = format!("nodns{tag}{}", pid % 100_000);
    let dns = responders().0.clone();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nodns.snp");
    let mut args = vec!["--comm", comm.as_str(), "--no-dns"];
    args.extend(extra);
    let rec = start_recorder(&path, &args, &[]);
    assert_eq!(cgroup_skb_programs(rec.child.id()), 0, "{args:?}");
    let name = format!("off-{tag}-{pid}.snoop.test");
    let t = lo4(56, if extra.is_some() { 2 } else { 1 });
    let port = sink(t);
    dns.set(&name, vec![(name.clone(), Rr::Addr(t))]);
    assert_eq!(ask(&comm, &dns, &name, 1, false), t);
    as_thread(&comm, move || send_to(t, port, 999));
    rec.stop();
    let info = info_json(&path);
    assert_eq!(info["hooks"]["dns"], "off: not requested (--no-dns)");
    assert_eq!(info["dns_answers"], 0);
    let rows = conns_to(&path, t, port);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["tx_bytes"], 999);
    assert!(rows[0]["remote_name"].is_null(), "{rows:?}");
}
