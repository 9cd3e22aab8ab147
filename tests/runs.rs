//! Packet runs (`snoop record --packets=runs`, the default) against one
//! packet per record (`--packets=each`): two recorders run at once over one
//! workload this test makes itself on loopback (short TCP connections, a
//! bulk TCP transfer, small UDP datagrams, all on one port number that both
//! recorders filter on), and the analyzer must find the same packet-size
//! distributions count for count, the exact bytes the test sent and
//! received, and the same connections. Also: a run still open when
//! recording stops is in the trace, a socket's packets of more lengths
//! than one packet set holds are all counted, `--packets=off` and
//! `--no-packets` record no packets, and the trace says which mode was
//! used.
//!
//! Real eBPF: skipped without root, failing instead with SNOOP_REQUIRE_BPF=1.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{bpf_or_skip, info_json, start_recorder, stdout_of, SNOOP};
use serde_json::Value;

/// Short TCP connections, their request and reply sizes.
const SHORT_CONNS: usize = 20;
const REQUEST: usize = 100;
const REPLY: usize = 300;
/// One bulk TCP transfer.
const BULK: usize = 5_000_000;
/// Small UDP datagrams.
const DATAGRAMS: usize = 300;
const DATAGRAM: usize = 64;

/// Bytes the workload sends (and, every byte arriving at its own
/// sockets, receives).
fn workload_bytes() -> u64 {
    (SHORT_CONNS * (REQUEST + REPLY) + BULK + DATAGRAMS * DATAGRAM) as u64
}

/// Run the workload against `listener` and `udp` (bound to the same port).
fn workload(listener: &TcpListener, udp: &UdpSocket) {
    let addr = listener.local_addr().unwrap();
    std::thread::scope(|s| {
        let server = s.spawn(|| {
            for i in 0..=SHORT_CONNS {
                let (mut c, _) = listener.accept().unwrap();
                if i < SHORT_CONNS {
                    let mut req = [0u8; REQUEST];
                    c.read_exact(&mut req).unwrap();
                    c.write_all(&[7u8; REPLY]).unwrap();
                    // Wait for the client's close, so every connection
                    // ends the same way.
                    assert_eq!(c.read(&mut req).unwrap(), 0);
                } else {
                    let mut got = Vec::with_capacity(BULK);
                    c.read_to_end(&mut got).unwrap();
                    assert_eq!(got.len(), BULK);
                }
            }
        });
        for _ in 0..SHORT_CONNS {
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(&[1u8; REQUEST]).unwrap();
            let mut reply = [0u8; REPLY];
            c.read_exact(&mut reply).unwrap();
        }
        let mut bulk = TcpStream::connect(addr).unwrap();
        bulk.write_all(&vec![2u8; BULK]).unwrap();
        drop(bulk);
        server.join().unwrap();
    });
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut buf = [0u8; 2048];
    for _ in 0..DATAGRAMS {
        client
            .send_to(&[3u8; DATAGRAM], udp.local_addr().unwrap())
            .unwrap();
        // One at a time: loopback never drops a datagram waiting to be read.
        assert_eq!(udp.recv(&mut buf).unwrap(), DATAGRAM);
    }
}

/// A TCP listener and a UDP socket on one loopback port.
fn sockets() -> (TcpListener, UdpSocket, u16) {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        if let Ok(u) = UdpSocket::bind(("127.0.0.1", port)) {
            return (l, u, port);
        }
    }
}

fn json(args: &[&str]) -> Vec<Value> {
    let v: Value = serde_json::from_str(&stdout_of(args)).unwrap();
    v.as_array().cloned().unwrap_or_default()
}

/// The test process's row of `analyze --by pid`.
fn own_row(trace: &Path) -> Value {
    let me = std::process::id();
    json(&[
        "analyze",
        trace.to_str().unwrap(),
        "--by",
        "pid",
        "--format",
        "json",
    ])
    .into_iter()
    .find(|r| r["pid"] == me)
    .unwrap_or_else(|| panic!("no row for pid {me} in {}", trace.display()))
}

/// Packet-size distributions of `analyze --report sizes`, keyed by
/// (pid, dir), every column.
fn packet_sizes(trace: &Path) -> BTreeMap<(u64, String), Value> {
    json(&[
        "analyze",
        trace.to_str().unwrap(),
        "--report",
        "sizes",
        "--by",
        "pid",
        "--format",
        "json",
    ])
    .into_iter()
    .filter(|r| r["kind"] == "packet")
    .map(|r| {
        (
            (
                r["pid"].as_u64().unwrap(),
                r["dir"].as_str().unwrap().to_string(),
            ),
            r,
        )
    })
    .collect()
}

/// TCP connections of `analyze --report conns`: (client port, server port)
/// -> (status, duration).
fn conns(trace: &Path) -> BTreeMap<(u64, u64), (String, u64)> {
    json(&[
        "analyze",
        trace.to_str().unwrap(),
        "--report",
        "conns",
        "--format",
        "json",
    ])
    .into_iter()
    .filter(|r| r["proto"] == "TCP")
    .map(|r| {
        (
            (r["sport"].as_u64().unwrap(), r["dport"].as_u64().unwrap()),
            (
                r["status"].as_str().unwrap_or("").to_string(),
                r["duration_ns"].as_u64().unwrap_or(0),
            ),
        )
    })
    .collect()
}

#[test]
fn runs_and_each_agree_on_one_workload() {
    let Some(_g) = bpf_or_skip("runs_and_each_agree_on_one_workload") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (runs, each) = (dir.path().join("runs.snp"), dir.path().join("each.snp"));
    let (listener, udp, port) = sockets();
    let port = port.to_string();
    let r1 = start_recorder(&runs, &["--port", &port], &[]);
    let r2 = start_recorder(&each, &["--port", &port, "--packets=each"], &[]);
    workload(&listener, &udp);
    let (e1, e2) = (r1.stop(), r2.stop());
    assert!(!e2.contains("packet runs of"), "each summary: {e2}");
    assert!(e1.contains("packet runs of"), "runs summary: {e1}");

    assert_eq!(info_json(&runs)["packet_mode"], "runs");
    assert_eq!(info_json(&each)["packet_mode"], "each");
    for t in [&runs, &each] {
        let i = info_json(t);
        for (k, n) in i["dropped"].as_object().unwrap() {
            assert_eq!(n, 0, "{}: {k} dropped", t.display());
        }
    }

    // Exact bytes for the process in both, and the same wire packets.
    let (a, b) = (own_row(&runs), own_row(&each));
    for row in [&a, &b] {
        assert_eq!(row["tx_bytes"], workload_bytes(), "{row}");
        assert_eq!(row["rx_bytes"], workload_bytes(), "{row}");
    }
    for k in ["tx_packets", "rx_packets", "tx_wire_bytes", "rx_wire_bytes"] {
        assert_eq!(a[k], b[k], "{k}: runs {a} each {b}");
    }
    assert!(
        a["tx_packets"].as_u64().unwrap() >= (SHORT_CONNS * 2 + DATAGRAMS) as u64,
        "{a}"
    );

    // Packet sizes count for count.
    let (sa, sb) = (packet_sizes(&runs), packet_sizes(&each));
    assert!(!sa.is_empty());
    assert_eq!(sa, sb, "packet sizes differ between runs and each");

    // The same connections, ending the same way, lasting as long (each
    // recorder reads the clock itself, microseconds apart).
    let (ca, cb) = (conns(&runs), conns(&each));
    assert_eq!(ca.len(), 2 * (SHORT_CONNS + 1), "{ca:?}");
    assert_eq!(ca.keys().collect::<Vec<_>>(), cb.keys().collect::<Vec<_>>());
    for (k, (status, d)) in &ca {
        let (status_b, d_b) = &cb[k];
        assert_eq!(status, status_b, "status of {k:?}");
        assert!(
            d.abs_diff(*d_b) < 1_000_000,
            "duration of {k:?}: {d} vs {d_b}"
        );
    }

    // Fewer records for the same packets, and replay shows runs as one line.
    let (pa, pb) = (
        info_json(&runs)["tables"]["packets"].as_u64().unwrap(),
        info_json(&each)["tables"]["packets"].as_u64().unwrap(),
    );
    assert!(pa < pb, "runs {pa} records, each {pb}");
    let replay = stdout_of(&["replay", runs.to_str().unwrap()]);
    let run_line = replay
        .lines()
        .find(|l| l.contains(" x") && l.contains(" over "))
        .unwrap_or_else(|| panic!("no run in replay:\n{replay}"));
    assert!(
        run_line.contains(&format!("pid {}", std::process::id())),
        "{run_line}"
    );
}

/// A UDP socket the test receives on, and a default recorder filtering on
/// its port: (temporary dir, trace path, socket, port, recorder).
fn recording_udp_port() -> (tempfile::TempDir, PathBuf, UdpSocket, u16, common::Recorder) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.snp");
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let rec = start_recorder(&path, &["--port", &port.to_string()], &[]);
    (dir, path, server, port, rec)
}

/// `snoop export TRACE --table TABLE` as CSV text.
fn export_csv(trace: &Path, table: &str) -> String {
    let csv = trace.with_extension(format!("{table}.csv"));
    let out = Command::new(SNOOP)
        .args(["export", trace.to_str().unwrap(), "--table", table, "-o"])
        .arg(&csv)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    std::fs::read_to_string(&csv).unwrap()
}

#[test]
fn a_run_open_at_stop_is_recorded() {
    let Some(_g) = bpf_or_skip("a_run_open_at_stop_is_recorded") else {
        return;
    };
    let (_dir, path, _server, port, rec) = recording_udp_port();
    // Back to back, microseconds apart: one run per socket and direction
    // (per CPU), still open when the recorder is told to stop.
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let n = 500u64;
    for _ in 0..n {
        client.send_to(&[5u8; 200], ("127.0.0.1", port)).unwrap();
    }
    rec.stop();
    let row = own_row(&path);
    assert_eq!(row["tx_packets"], n, "{row}");
    assert_eq!(row["rx_packets"], n, "{row}");
    assert_eq!(row["tx_bytes"], n * 200, "{row}");
    assert_eq!(row["tx_wire_bytes"], n * (200 + 28), "{row}");
    // The runs read out at the end are counted in the trace's stats like
    // every other packet record: the stats' packet events equal the
    // packets table's rows.
    let events: u64 = export_csv(&path, "stats")
        .lines()
        .skip(1)
        .filter(|l| l.split(',').nth(1) == Some("packets"))
        .map(|l| l.rsplit(',').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(
        events,
        info_json(&path)["tables"]["packets"],
        "stats vs rows"
    );
}

/// Packets of more lengths than one packet set holds, interleaved back to
/// back on one socket: every length's packets are in the trace, count for
/// count, in both directions (a set closes when a fifth length comes and
/// the next one opens with it).
#[test]
fn more_lengths_than_a_set_holds() {
    let Some(_g) = bpf_or_skip("more_lengths_than_a_set_holds") else {
        return;
    };
    let (_dir, path, _server, port, rec) = recording_udp_port();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sizes = [10usize, 20, 30, 40, 50, 60];
    let rounds = 50;
    for _ in 0..rounds {
        for &n in &sizes {
            client.send_to(&vec![7u8; n], ("127.0.0.1", port)).unwrap();
        }
    }
    rec.stop();
    let text = export_csv(&path, "packets");
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| head.iter().position(|h| *h == name).unwrap();
    let (len, count, dirc, pid) = (col("len"), col("count"), col("dir"), col("pid"));
    let me = std::process::id().to_string();
    let mut got: BTreeMap<(String, u64), u64> = BTreeMap::new();
    for l in lines {
        let f: Vec<&str> = l.split(',').collect();
        if f[pid] != me {
            continue;
        }
        *got.entry((f[dirc].to_string(), f[len].parse().unwrap()))
            .or_default() += f[count].parse::<u64>().unwrap();
    }
    let mut want = BTreeMap::new();
    for d in ["tx", "rx"] {
        for &n in &sizes {
            want.insert((d.to_string(), n as u64 + 28), rounds as u64);
        }
    }
    assert_eq!(got, want, "packets per direction and IP length");
}

#[test]
fn packets_off_and_no_packets_record_none() {
    let Some(_g) = bpf_or_skip("packets_off_and_no_packets_record_none") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for flag in ["--packets=off", "--no-packets"] {
        let path = dir
            .path()
            .join(format!("{}.snp", flag.trim_start_matches('-')));
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = server.local_addr().unwrap().port();
        let rec = start_recorder(&path, &["--port", &port.to_string(), flag], &[]);
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..10 {
            client.send_to(&[5u8; 100], ("127.0.0.1", port)).unwrap();
        }
        rec.stop();
        let info = info_json(&path);
        assert_eq!(info["packet_mode"], "off", "{flag}");
        assert_eq!(info["tables"]["packets"], 0, "{flag}");
        assert!(
            info["hooks"]["packets"]
                .as_str()
                .unwrap()
                .starts_with("off"),
            "{flag}"
        );
        let row = own_row(&path);
        assert_eq!(row["tx_bytes"], 1000, "{flag}: {row}");
    }
}
