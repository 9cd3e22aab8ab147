//! Hook groups, end to end with the real recorder: every optional group
//! forced off (the way a kernel refuses it: a tracepoint that does not
//! exist at load, or a bad descriptor at attach) still records — exact
//! message bytes for traffic this test sends — prints one warning naming
//! the group, and the trace says the group did not run (`snoop info`,
//! `analyze`). The essential group refused stops `record` with one line
//! and exit 1. `snoop doctor` reports each group and exits 0, 3 or 1.
//!
//! Needs root (eBPF); without it the tests print why and pass, unless
//! SNOOP_REQUIRE_BPF=1 (CI), then they fail.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use snoop_format::{ColumnSet, Table, Trace};

mod common;
use common::*;

/// Sends `count` datagrams of `size` bytes over loopback from a thread
/// named `comm` to a socket read by another thread; returns the bytes sent.
fn udp_traffic(comm: &str, count: usize, size: usize) -> u64 {
    let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let to = rx.local_addr().unwrap();
    let name = std::ffi::CString::new(comm).unwrap();
    let sender = std::thread::spawn(move || {
        // SAFETY: PR_SET_NAME reads a NUL-terminated string (this thread's name).
        unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr() as libc::c_ulong, 0, 0, 0) };
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.connect(to).unwrap();
        let buf = vec![7u8; size];
        let mut sent = 0u64;
        // 50 small datagrams fit the receive buffer: no pacing needed.
        for _ in 0..count {
            sent += tx.send(&buf).unwrap() as u64;
        }
        sent
    });
    let mut buf = vec![0u8; 65536];
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = 0;
    while got < count && Instant::now() < deadline {
        if rx.recv(&mut buf).is_ok() {
            got += 1;
        }
    }
    sender.join().unwrap()
}

/// Sent bytes (tx messages) of thread `comm` in the trace, and the number of
/// rows of each table.
fn tx_bytes_and_tables(path: &Path, comm: &str) -> (u64, [u64; 4]) {
    let t = Trace::open(path).unwrap();
    let mut tx = 0u64;
    for i in t.chunks_of(Table::Messages).collect::<Vec<_>>() {
        let b = t
            .read_chunk(i, ColumnSet::ALL)
            .and_then(|c| c.into_events())
            .unwrap();
        for r in 0..b.rows {
            let f = b.flow[r] as usize;
            if b.dir[r] == 0 && snoop_format::comm_str(&b.flows.comm[f]) == comm {
                tx += u64::from(b.bytes[r]);
            }
        }
    }
    let tables = [
        Table::Messages,
        Table::Packets,
        Table::Connections,
        Table::Processes,
    ]
    .map(|tb| t.rows(tb));
    (tx, tables)
}

/// What one recording with a group refused gave.
struct Refused {
    stderr: String,
    info: serde_json::Value,
    sent: u64,
    recorded: u64,
    tables: [u64; 4],
}

/// Record this test's own traffic into `path` with
/// `SNOOP_FORCE_REFUSE=group`.
fn record_with_refused(path: &Path, group: &str, extra: &[&str]) -> Refused {
    let comm = format!("hk{}{}", &group[..3], std::process::id() % 100_000);
    let mut args = vec!["--comm", comm.as_str()];
    args.extend_from_slice(extra);
    let rec = start_recorder(path, &args, &[("SNOOP_FORCE_REFUSE", group)]);
    let sent = udp_traffic(&comm, 50, 300);
    let stderr = rec.stop();
    let (recorded, tables) = tx_bytes_and_tables(path, &comm);
    Refused {
        stderr,
        info: info_json(path),
        sent,
        recorded,
        tables,
    }
}

#[test]
fn each_optional_group_refused_alone_still_records() {
    let Some(_g) = bpf_or_skip("each_optional_group_refused_alone_still_records") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for group in [
        "sockets",
        "packets",
        "tcp_state",
        "processes",
        "existing_sockets",
        "iface",
        "existing_processes",
        "dns",
        "msg_batch",
    ] {
        let path = dir.path().join(format!("{group}.snp"));
        let extra: &[&str] = if group == "iface" {
            &["--iface", "lo"]
        } else {
            &[]
        };
        let r = record_with_refused(&path, group, extra);
        let warnings: Vec<&str> = r
            .stderr
            .lines()
            .filter(|l| l.starts_with("snoop: warning: hook group"))
            .collect();
        assert_eq!(warnings.len(), 1, "{group}: one warning line: {}", r.stderr);
        assert!(
            warnings[0].starts_with(&format!("snoop: warning: hook group {group} disabled: "))
                && warnings[0].contains("(kernel: "),
            "{group}: {}",
            warnings[0]
        );
        assert!(
            !r.stderr.contains("libbpf:") && !r.stderr.contains("processed "),
            "{group}: libbpf's log leaked: {}",
            r.stderr
        );
        assert_eq!(
            r.recorded, r.sent,
            "{group}: message bytes of the test's thread"
        );
        let hooks = r.info["hooks"].as_object().expect("hooks object in info");
        assert_eq!(hooks.len(), 10, "every group is listed: {hooks:?}");
        for (g, state) in hooks {
            let state = state.as_str().unwrap();
            if g == group {
                assert!(state.starts_with("refused: "), "{group}: {state}");
            } else if g == "iface" {
                assert!(state.starts_with("off: "), "iface: {state}");
            } else {
                assert_eq!(state, "active", "{g} while {group} was refused");
            }
        }
        // The refusal is real: with packets refused none are recorded;
        // with any other group they are (the test's datagrams).
        if group == "packets" {
            assert_eq!(r.tables[1], 0, "packets recorded while refused");
        } else {
            assert!(r.tables[1] > 0, "{group}: packets missing: {:?}", r.tables);
        }
        let text = stdout_of(&["info", path.to_str().unwrap()]);
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with(group) && l.contains("refused: ")),
            "{group}: snoop info text: {text}"
        );
        let summary = stdout_of(&["analyze", path.to_str().unwrap()]);
        assert!(
            summary.contains("not recorded") && summary.contains(&format!("{group} (refused: ")),
            "{group}: analyze summary: {summary}"
        );
    }
}

#[test]
fn refused_messages_group_stops_with_one_line() {
    let Some(_g) = bpf_or_skip("refused_messages_group_stops_with_one_line") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("none.snp");
    let out = Command::new(SNOOP)
        .args(["record", "--duration", "1s", "-o"])
        .arg(&path)
        .env("SNOOP_FORCE_REFUSE", "messages")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line, no verifier dump: {err}");
    assert!(
        lines[0].starts_with("snoop: set up eBPF: this kernel cannot record messages: ")
            && lines[0].contains("sock_send_length/sock_recv_length")
            && lines[0].contains("Linux 6.3 or later"),
        "{err}"
    );
    assert!(!path.exists(), "an empty trace was left behind");
}

/// `snoop doctor --json` with the environment given: (exit code, JSON).
fn doctor(env: &[(&str, &str)]) -> (Option<i32>, serde_json::Value) {
    let out = Command::new(SNOOP)
        .args(["doctor", "--json"])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor --json printed no JSON ({e}): {} {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), v)
}

#[test]
fn doctor_loads_every_group_and_says_what_is_missing() {
    let Some(_g) = bpf_or_skip("doctor_loads_every_group_and_says_what_is_missing") else {
        return;
    };
    let (code, v) = doctor(&[]);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["can_record"], true);
    let hooks = v["hooks"].as_object().unwrap();
    assert_eq!(hooks.len(), 10, "{v}");
    assert!(hooks.values().all(|s| s == "active"), "{v}");

    let (code, v) = doctor(&[("SNOOP_FORCE_REFUSE", "tcp_state")]);
    assert_eq!(code, Some(3), "{v}");
    assert_eq!(v["can_record"], true);
    assert!(v["hooks"]["tcp_state"]
        .as_str()
        .unwrap()
        .starts_with("refused: "));
    let failed: Vec<&serde_json::Value> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .collect();
    assert_eq!(failed.len(), 1, "{v}");
    assert_eq!(failed[0]["item"], "hooks tcp_state");
    assert!(
        failed[0]["detail"]
            .as_str()
            .unwrap()
            .contains("no TCP connection lifecycle"),
        "what it costs: {v}"
    );

    let (code, v) = doctor(&[("SNOOP_FORCE_REFUSE", "messages")]);
    assert_eq!(code, Some(1), "{v}");
    assert_eq!(v["can_record"], false);

    let text = Command::new(SNOOP).arg("doctor").output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    for item in [
        "btf",
        "privileges",
        "cgroup v2",
        "tracefs",
        "hooks messages",
        "hooks iface",
    ] {
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with(&format!("ok   {item} ")))
                .count(),
            1,
            "one ok line for {item}: {text}"
        );
    }
}

/// Without privileges nothing can be loaded: doctor says which
/// capabilities are missing, checks no group, and exits 1.
#[test]
fn doctor_without_privileges_says_what_is_missing() {
    let Some(_g) = bpf_or_skip("doctor_without_privileges_says_what_is_missing") else {
        return;
    };
    // A copy nobody can reach, wherever the build tree lives.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let bin = dir.path().join("snoop");
    std::fs::copy(SNOOP, &bin).unwrap();
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(&bin)
        .args(["doctor", "--json"])
        .output()
        .expect("setpriv (util-linux)");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(1), "{v}");
    assert_eq!(v["can_record"], false);
    let checks = v["checks"].as_array().unwrap();
    let privileges = checks.iter().find(|c| c["item"] == "privileges").unwrap();
    assert_eq!(privileges["ok"], false);
    assert!(
        privileges["detail"].as_str().unwrap().contains("CAP_BPF"),
        "{privileges}"
    );
    assert!(
        v["hooks"]
            .as_object()
            .unwrap()
            .values()
            .all(|s| s.as_str().unwrap().starts_with("not checked")),
        "{v}"
    );
}
