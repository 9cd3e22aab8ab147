//! `--iface` (the sockfilter seed): capture every IP packet of a device,
//! traffic of other network namespaces included. The test builds the
//! topology of a container host: two namespaces, each with a veth whose
//! host-side end stays in the root namespace as a port of a bridge (no
//! address in the root namespace; 10.213.x.y/30 exist only inside the
//! test's namespaces). A UDP client in one namespace exchanges datagrams
//! of known size with an echo server in the other; the recorder captures
//! both host-side ends, and the test checks every datagram appears once
//! per direction on each, with its exact IP length. The topology is removed
//! on drop, also when an assertion fails.

use std::process::{Child, Command, Stdio};

use snoop_format::{addr_bytes, col, ColumnSet, Table, Trace};
use snoop_record::kernel::KernelOptions;

use crate::util::{bpf_ok, event_batches, name, peer_bin, read_line, start, wait_ok};

/// Run `ip ARGS`, panicking with its stderr on failure.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Two namespaces bridged through veth pairs whose host ends are in the
/// root namespace. Dropping it deletes everything it created.
struct Topology {
    ns: [String; 2],
    host: [String; 2],
    bridge: String,
    addr: [String; 2],
}

impl Topology {
    fn new(seq: u8) -> Topology {
        let tag = name("");
        let t = Topology {
            ns: [format!("snoop-t-{tag}a"), format!("snoop-t-{tag}b")],
            host: [format!("snh{tag}a"), format!("snh{tag}b")],
            bridge: format!("snb{tag}"),
            addr: [format!("10.213.{seq}.1"), format!("10.213.{seq}.2")],
        };
        // Created before the first command so a failure half-way still
        // cleans up what exists (Drop ignores what does not).
        ip(&["link", "add", &t.bridge, "type", "bridge"]);
        ip(&["link", "set", &t.bridge, "up"]);
        for i in 0..2 {
            let inner = format!("snv{tag}{i}");
            ip(&["netns", "add", &t.ns[i]]);
            ip(&[
                "link", "add", &t.host[i], "type", "veth", "peer", "name", &inner,
            ]);
            ip(&["link", "set", &inner, "netns", &t.ns[i]]);
            ip(&["link", "set", &t.host[i], "master", &t.bridge]);
            ip(&["link", "set", &t.host[i], "up"]);
            let n = &t.ns[i];
            ip(&["-n", n, "link", "set", "lo", "up"]);
            ip(&["-n", n, "link", "set", &inner, "up"]);
            let cidr = format!("{}/30", t.addr[i]);
            ip(&["-n", n, "addr", "add", &cidr, "dev", &inner]);
        }
        t
    }

    /// Start `snoop-peer ARGS` inside namespace `i`.
    fn peer(&self, i: usize, args: &[&str]) -> Child {
        Command::new("ip")
            .args(["netns", "exec", &self.ns[i], peer_bin()])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn snoop-peer in netns")
    }

    fn ifindex(&self, i: usize) -> u32 {
        let p = format!("/sys/class/net/{}/ifindex", self.host[i]);
        std::fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("{p}: {e}"))
            .trim()
            .parse()
            .expect("ifindex")
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        // Deleting a namespace deletes its veth end and so the pair; the
        // host ends are deleted explicitly in case a namespace never got one.
        let quiet = |args: &[&str]| {
            let _ = Command::new("ip")
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        };
        for h in &self.host {
            quiet(&["link", "del", h]);
        }
        quiet(&["link", "del", &self.bridge]);
        for n in &self.ns {
            quiet(&["netns", "del", n]);
        }
    }
}

fn have_ip() -> bool {
    let ok = Command::new("ip")
        .arg("-V")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        if std::env::var("SNOOP_REQUIRE_BPF").as_deref() == Ok("1") {
            panic!("iface test needs iproute2 (`ip`) and SNOOP_REQUIRE_BPF=1");
        }
        eprintln!("iface: skipped: iproute2 (`ip`) not found");
    }
    ok
}

/// Packets (count, IP bytes) per (ifindex, direction) of the test's UDP
/// exchange, from the interface capture only (no owner: pid 0, cookie 0).
fn captured(t: &Trace, ifindex: u32, port: u16, addrs: &[[u8; 16]; 2]) -> [(u64, u64); 2] {
    let want = ColumnSet::of(&[
        col::FLOW,
        col::BYTES,
        col::DIR,
        col::F_PID,
        col::F_COOKIE,
        col::F_IFINDEX,
        col::F_PROTO,
        col::F_LADDR,
        col::F_RADDR,
        col::F_LPORT,
        col::F_RPORT,
    ]);
    let mut out = [(0, 0); 2];
    for b in event_batches(t, Table::Packets, want) {
        for r in 0..b.rows {
            let f = b.flow[r] as usize;
            let fl = &b.flows;
            if fl.ifindex[f] != ifindex
                || fl.proto[f] != 17
                || (fl.lport[f] != port && fl.rport[f] != port)
                || fl.pid[f] != 0
                || fl.cookie[f] != 0
            {
                continue;
            }
            assert!(
                addrs.contains(&fl.laddr[f]) && addrs.contains(&fl.raddr[f]),
                "packet on {ifindex} with foreign addresses"
            );
            let d = &mut out[usize::from(b.dir[r])];
            d.0 += 1;
            d.1 += u64::from(b.bytes[r]);
        }
    }
    out
}

/// `--iface` on both host-side veth ends: every datagram between the two
/// namespaces is seen once per direction per device, with its IP length.
#[test]
fn iface_captures_other_namespaces_on_veth() {
    if !bpf_ok("iface_veth") || !have_ip() {
        return;
    }
    let seq = (std::process::id() % 250) as u8;
    let topo = Topology::new(seq);
    let (sn, cn) = (name("is"), name("ic"));
    let rec = start(KernelOptions {
        comms: vec![sn.clone(), cn.clone()],
        ifaces: topo.host.to_vec(),
        ring_bytes: 8 << 20,
        ..KernelOptions::default()
    });
    let (count, size) = (40usize, 1000usize);
    let mut srv = topo.peer(
        1,
        &[
            "udp-server",
            &sn,
            &format!("{}:0", topo.addr[1]),
            &count.to_string(),
            "0",
        ],
    );
    let mut out = std::io::BufReader::new(srv.stdout.take().expect("stdout"));
    let line = read_line(&mut out);
    let port: u16 = line
        .strip_prefix("ready ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("bad ready line {line:?}"));
    let cli = topo.peer(
        0,
        &[
            "udp-client",
            &cn,
            &format!("{}:{port}", topo.addr[1]),
            &count.to_string(),
            &size.to_string(),
            "connected",
        ],
    );
    wait_ok(cli);
    wait_ok(srv);
    let (t, sum, _d) = rec.stop();
    assert_eq!(sum.kernel.iter().map(|k| k.drops).sum::<u64>(), 0);

    let addrs = topo.addr.clone().map(|a| {
        let ip: std::net::IpAddr = a.parse().expect("addr");
        addr_bytes(ip)
    });
    let ip_len = (size + 28) as u64; // IPv4 header 20 + UDP header 8
    let n = count as u64;
    for i in 0..2 {
        let [tx, rx] = captured(&t, topo.ifindex(i), port, &addrs);
        assert_eq!(tx, (n, n * ip_len), "{}: transmitted", topo.host[i]);
        assert_eq!(rx, (n, n * ip_len), "{}: received", topo.host[i]);
    }
}
