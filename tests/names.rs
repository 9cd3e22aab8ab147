//! Hostile names through the `snoop` binary, without root: `snoop top --from`
//! shows hostile process names escaped in columns that stay aligned, and an
//! error quoting a hostile path cannot drive the terminal. The trace is
//! written here with `TraceWriter`, so the test knows every byte of every
//! name (the analyzer's outputs are covered by crates/analyze/tests/names.rs).

use std::path::Path;
use std::process::Command;

use snoop_format::names::width;
use snoop_format::{addr_bytes, Direction, FileInfo, Flow, TraceWriter, WriterOptions};

const S: u64 = 1_000_000_000;

/// Comm bytes and how a terminal must show them, one per hostile class.
const NAMES: &[(&[u8], &str)] = &[
    (b"\x1b[2J\x1b[H", "\\x1b[2J\\x1b[H"),
    (b"a\nb\tc", "a\\nb\\tc"),
    (b"<x>&", "<x>&"),
    (b"=cmd|' /C calc", "=cmd|' /C calc"),
    (b"bad\xff", "bad\\xff"),
    (
        b"\xe4\xb8\xad\xe6\x96\x87\xe4\xb8\xad\xe6\x96\x87\xe4\xb8\xad",
        "\u{4e2d}\u{6587}\u{4e2d}\u{6587}\u{4e2d}",
    ),
    (
        b"\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0c\x0e\x0f\x10\x11\x12",
        "\\x01\\x02\\x03\\x04\\x05\\x06\\x07\\x08\\x0b\\x0c\\x0e\\x0f\\x10\\x11\\x12",
    ),
];

fn write_trace(path: &Path) {
    let info = FileInfo {
        host: "test".into(),
        kernel: "6.18.0-test".into(),
        snoop_version: "0.1.0".into(),
        command: vec!["snoop".into(), "record".into()],
        boot_to_wall_ns: 1_700_000_000_000_000_000,
        start_ns: S,
        ifaces: Vec::new(),
    };
    let file = std::fs::File::create(path).expect("create trace");
    let mut w = TraceWriter::new(file, &info, WriterOptions::default()).expect("writer");
    for (i, (name, _)) in NAMES.iter().enumerate() {
        let mut comm = [0u8; 16];
        comm[..name.len()].copy_from_slice(name);
        let flow = Flow {
            pid: 1000 + i as u32,
            tid: 1000 + i as u32,
            comm,
            cgroup: 1,
            cookie: 10 + i as u64,
            ifindex: 0,
            family: 2,
            proto: 17,
            laddr: addr_bytes("10.0.0.1".parse().expect("ip")),
            lport: 20000 + i as u16,
            raddr: addr_bytes("10.0.0.2".parse().expect("ip")),
            rport: 53,
        };
        // 1024 x (i + 1) bytes: the KB columns tell the rows apart.
        w.push_message(S + i as u64, &flow, 1024 * (i as u32 + 1), Direction::Rx)
            .expect("push");
    }
    w.finish(2 * S).expect("finish");
}

#[test]
#[cfg(feature = "record")]
fn issue21_top_from_shows_names_escaped_in_aligned_columns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = dir.path().join("names.snp");
    write_trace(&t);
    let o = Command::new(env!("CARGO_BIN_EXE_snoop"))
        .args(["top", "--from", t.to_str().expect("path"), "10", "1"])
        .output()
        .expect("run snoop");
    let out = String::from_utf8(o.stdout).expect("UTF-8 output");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        !out.chars().any(|c| c.is_control() && c != '\n'),
        "control characters in:\n{out}"
    );
    let lines: Vec<&str> = out.lines().filter(|l| !l.is_empty()).collect();
    let h = lines
        .iter()
        .position(|l| l.starts_with("PID"))
        .expect("header");
    let table = &lines[h..];
    assert_eq!(table.len(), 1 + NAMES.len(), "{out}");
    // Every line of the table ends in the same terminal column.
    for l in table {
        assert_eq!(width(l), width(table[0]), "misaligned: {l:?}\n{out}");
    }
    for (i, (_, shown)) in NAMES.iter().enumerate() {
        let row = table
            .iter()
            .find(|l| l.starts_with(&(1000 + i).to_string()))
            .unwrap_or_else(|| panic!("pid {} missing in:\n{out}", 1000 + i));
        assert_eq!(
            row[4..].trim_start().split("  ").next(),
            Some(*shown),
            "{row:?}"
        );
        let kb: Vec<&str> = row.split_whitespace().rev().take(5).collect();
        assert_eq!(kb[0], (i + 1).to_string(), "SUM_KB of {row:?}");
    }
}

#[test]
#[cfg(feature = "analyze")]
fn issue21_errors_quoting_a_hostile_path_are_escaped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("x\x1b]0;owned\x07\ny.snp");
    let o = Command::new(env!("CARGO_BIN_EXE_snoop"))
        .args(["analyze", bad.to_str().expect("path")])
        .output()
        .expect("run snoop");
    assert!(!o.status.success());
    let err = String::from_utf8(o.stderr).expect("UTF-8 stderr");
    assert!(err.starts_with("snoop: "), "{err}");
    assert!(err.contains("x\\x1b]0;owned\\x07\\ny.snp"), "{err}");
    assert_eq!(err.matches('\n').count(), 1, "one line: {err:?}");
    assert!(!err.contains('\x1b') && !err.contains('\x07'), "{err:?}");
}
