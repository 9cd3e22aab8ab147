//! `snoop top` live, as a user runs it (root only): the table of the
//! test's own process shows exactly the bytes the test sent and received,
//! COUNT ends the run, and the running tool has given up root.
//!
//! Without root the test prints why and passes, unless SNOOP_REQUIRE_BPF=1.

use std::io::{BufRead, BufReader, Read};
use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::Duration;

const SNOOP: &str = env!("CARGO_BIN_EXE_snoop");

fn root_or_skip(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var("SNOOP_REQUIRE_BPF").as_deref() == Ok("1") {
        panic!("{test}: needs root for eBPF and SNOOP_REQUIRE_BPF=1");
    }
    eprintln!("{test}: skipped: not root");
    false
}

#[test]
#[cfg(feature = "record")]
fn top_shows_exact_bytes_of_a_process() {
    if !root_or_skip("top_shows_exact_bytes_of_a_process") {
        return;
    }
    let me = std::process::id();
    let mut top = Command::new(SNOOP)
        .args(["top", "-p", &me.to_string(), "1", "3"])
        .env_remove("SUDO_UID")
        .env_remove("SUDO_GID")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn snoop top");
    let mut err = BufReader::new(top.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.contains("tracing TCP/UDP traffic"), "{line}");
    let status = std::fs::read_to_string(format!("/proc/{}/status", top.id())).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(uid.split_whitespace().nth(2), Some("65534"), "{uid}");

    // 200 datagrams of 1 KiB to ourselves: 200 KiB sent, 200 KiB received.
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    a.connect(b.local_addr().unwrap()).unwrap();
    let mut buf = [0u8; 1024];
    for _ in 0..200 {
        a.send(&buf).unwrap();
        assert_eq!(b.recv(&mut buf).unwrap(), 1024);
    }

    // COUNT ends the run: top closes its stdout when it exits.
    let mut stdout = top.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        let _ = tx.send(out);
    });
    let out = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| {
            let _ = top.kill();
            panic!("snoop top 1 3 did not end");
        });
    let st = top.wait().unwrap();
    assert!(st.success(), "{out}");
    assert_eq!(out.matches("PID").count(), 3, "three tables: {out}");
    // PID COMM RX_KB TX_KB RXSUM_KB TXSUM_KB SUM_KB
    let sums = out
        .lines()
        .filter(|l| l.split_whitespace().next() == Some(&me.to_string()))
        .map(|l| {
            let f: Vec<u64> = l
                .split_whitespace()
                .skip(2)
                .map(|v| v.parse().unwrap())
                .collect();
            (f[2], f[3], f[4])
        })
        .max()
        .unwrap_or_else(|| panic!("no row for pid {me}: {out}"));
    assert_eq!(sums, (200, 200, 400), "{out}");
}
