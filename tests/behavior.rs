//! On a real recording: the real recorder watches threads of this
//! test (all named alike) connect to 25 closed loopback ports (refused by
//! the kernel) and serve three connections they make to themselves; then
//! `snoop analyze --report behavior` must call the process a scanner and
//! a listener with role `both`, from the kernel's own TCP state changes,
//! and `snoop diff` of the trace with itself must call it the same.
//!
//! Needs root (eBPF); without it the test prints why and passes, unless
//! SNOOP_REQUIRE_BPF=1 (CI), then it fails.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

mod common;
use common::*;

/// Name the calling thread `comm`.
fn name_thread(comm: &str) {
    let name = std::ffi::CString::new(comm).unwrap();
    // SAFETY: PR_SET_NAME reads a NUL-terminated string (this thread's name).
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr() as libc::c_ulong, 0, 0, 0) };
}

/// The workload, in threads named `comm`: 25 refused connections, then a
/// listener that accepts 3 connections (request 100 B, reply 1000 B).
fn workload(comm: &str) -> usize {
    let c = comm.to_string();
    std::thread::spawn(move || {
        name_thread(&c);
        // Ports that were just free: bind, note, close.
        let ports: Vec<u16> = (0..25)
            .map(|_| {
                let l = TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap().port()
            })
            .collect();
        let mut refused = 0;
        for p in &ports {
            if TcpStream::connect(("127.0.0.1", *p)).is_err() {
                refused += 1;
            }
        }
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let c2 = c.clone();
        let server = std::thread::spawn(move || {
            name_thread(&c2);
            for _ in 0..3 {
                let (mut s, _) = l.accept().unwrap();
                let mut req = [0u8; 100];
                s.read_exact(&mut req).unwrap();
                s.write_all(&[1u8; 1000]).unwrap();
            }
        });
        for _ in 0..3 {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(&[2u8; 100]).unwrap();
            let mut rep = [0u8; 1000];
            s.read_exact(&mut rep).unwrap();
        }
        server.join().unwrap();
        refused
    })
    .join()
    .unwrap()
}

#[test]
fn issue18_real_scan_and_listener() {
    let Some(_bpf) = bpf_or_skip("issue18_real_scan_and_listener") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("behavior.snp");
    let comm = format!("bh{}", std::process::id() % 100_000);
    let rec = start_recorder(&path, &["--comm", &comm, "--no-packets"], &[]);
    let refused = workload(&comm);
    assert_eq!(refused, 25, "the closed ports must refuse");
    rec.stop();
    let p = path.to_str().unwrap();

    let rows: serde_json::Value = serde_json::from_str(&stdout_of(&[
        "analyze", p, "--report", "behavior", "--format", "json",
    ]))
    .unwrap();
    let rows = rows.as_array().unwrap();
    let me = rows
        .iter()
        .find(|r| r["pid"] == std::process::id())
        .unwrap_or_else(|| panic!("no row for this process in {rows:#?}"));
    let traits: Vec<&str> = me["traits"].as_str().unwrap().split(',').collect();
    assert!(traits.contains(&"scan"), "{me:#}");
    assert!(traits.contains(&"listener"), "{me:#}");
    assert_eq!(me["role"], "both", "{me:#}");
    assert!(me["failed_conns"].as_u64().unwrap() >= 25, "{me:#}");
    assert!(me["remote_ports"].as_u64().unwrap() >= 25, "{me:#}");
    assert_eq!(me["comm"], comm.as_str());

    let diff: serde_json::Value =
        serde_json::from_str(&stdout_of(&["diff", p, p, "--format", "json"])).unwrap();
    let row = diff
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["comm"] == comm.as_str())
        .unwrap_or_else(|| panic!("no {comm} in {diff:#}"));
    assert_eq!(row["change"], "same", "{row:#}");
    assert!(
        row["traits_a"].as_str().unwrap().contains("scan"),
        "{row:#}"
    );
}
