//! Hostile names through the `snoop` binary, without root: `snoop top --from`
//! shows hostile process names escaped in columns that stay aligned, the
//! comments of a pcapng export show them escaped, and an
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
        // The datagram on the wire, owned through the socket cookie.
        let pkt = Flow {
            pid: 0,
            tid: 0,
            comm: [0; 16],
            ..flow
        };
        w.push_packet(
            S + i as u64,
            &pkt,
            1024 * (i as u32 + 1) + 28,
            Direction::Rx,
            1,
        )
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

/// The comments of a pcapng file's section header and of its packets, in
/// order, read block by block.
fn pcapng_comments(bytes: &[u8]) -> (Vec<String>, Vec<String>) {
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().expect("4 bytes"));
    let u16_at = |o: usize| u16::from_le_bytes(bytes[o..o + 2].try_into().expect("2 bytes"));
    let (mut section, mut packets) = (Vec::new(), Vec::new());
    let mut at = 0;
    while at < bytes.len() {
        let (kind, len) = (u32_at(at), u32_at(at + 4) as usize);
        assert_eq!(
            u32_at(at + len - 4) as usize,
            len,
            "block at {at}: trailing length"
        );
        let opts = match kind {
            0x0A0D_0D0A => at + 24,
            6 => at + 28 + (u32_at(at + 20) as usize).next_multiple_of(4),
            _ => at + len - 4,
        };
        let mut o = opts;
        while o < at + len - 4 {
            let (code, n) = (u16_at(o), u16_at(o + 2) as usize);
            if code == 0 {
                break;
            }
            if code == 1 {
                let text = String::from_utf8(bytes[o + 4..o + 4 + n].to_vec()).expect("UTF-8");
                if kind == 6 {
                    packets.push(text);
                } else {
                    section.push(text);
                }
            }
            o += 4 + n.next_multiple_of(4);
        }
        at += len;
    }
    (section, packets)
}

#[test]
#[cfg(feature = "analyze")]
fn pcapng_comments_show_names_escaped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = dir.path().join("names.snp");
    write_trace(&t);
    let out = dir.path().join("names.pcapng");
    let o = Command::new(env!("CARGO_BIN_EXE_snoop"))
        .args([
            "export",
            t.to_str().expect("path"),
            "--table",
            "packets",
            "-o",
        ])
        .arg(&out)
        .output()
        .expect("run snoop");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (section, packets) = pcapng_comments(&std::fs::read(&out).expect("pcapng"));
    let want: Vec<String> = NAMES
        .iter()
        .enumerate()
        .map(|(i, (_, shown))| format!("pid={} comm={shown}", 1000 + i))
        .collect();
    assert_eq!(packets, want);
    for (i, (_, shown)) in NAMES.iter().enumerate() {
        let n = 1024 * (i + 1) + 28;
        let line = format!(
            "pid={} tx_packets=0 tx_bytes=0 rx_packets=1 rx_bytes={n} comm={shown}",
            1000 + i
        );
        assert!(section.contains(&line), "{line:?} not in {section:?}");
    }
    assert!(
        !section
            .iter()
            .chain(&packets)
            .any(|c| c.chars().any(char::is_control)),
        "control characters in {section:?} {packets:?}"
    );
}
