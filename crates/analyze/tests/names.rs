//! Hostile names must not reach the operator's terminal or
//! spreadsheet. One hand-built trace holds a process per hostile class —
//! escape sequences, newline and tab, `<`/`&`, a leading `=`/`+`/`-`/`@`,
//! invalid UTF-8, a backslash, a bidi override, and the 15-byte maximum
//! (wide characters, and a truncation in the middle of a character) — plus
//! a hostile executed filename, interface name and host name. Every output
//! of `analyze`, `replay` and `export` is checked byte by byte against the
//! names the test wrote: text shows them escaped and keeps its columns,
//! JSON and Parquet keep the exact bytes (through the lossless text rule),
//! CSV quotes and neutralises formulas unless `--raw`, HTML escapes.

use std::path::{Path, PathBuf};

use clap::Parser;
use serde_json::Value;
use snoop_analyze::{
    run_analyze, run_diff, run_export, run_replay, AnalyzeArgs, DiffArgs, ExportArgs, ReplayArgs,
};
use snoop_format::names::{name_text, name_text_bytes, width};
use snoop_format::{
    addr_bytes, Direction, FileInfo, Flow, ProcessKind, ProcessRow, TraceWriter, WriterOptions,
};

const S: u64 = 1_000_000_000;

/// The comm bytes of each process (pid = 1000 + index) and how a terminal
/// must show them.
const NAMES: &[(&[u8], &str)] = &[
    (b"\x1b[31mRED\x1b[0m", "\\x1b[31mRED\\x1b[0m"),
    (b"a\nb\tc\rd", "a\\nb\\tc\\rd"),
    (b"<svg/onload=&>", "<svg/onload=&>"),
    (b"=cmd|' /C calc", "=cmd|' /C calc"),
    (b"+1", "+1"),
    (b"-2+3", "-2+3"),
    (b"@SUM(A1)", "@SUM(A1)"),
    (b"bad\xff\xfe", "bad\\xff\\xfe"),
    (b"back\\slash", "back\\\\slash"),
    ("\u{202e}txt.exe".as_bytes(), "\\xe2\\x80\\xaetxt.exe"),
    // 15 bytes of wide characters: five CJK characters, ten columns.
    (
        "\u{4e2d}\u{6587}\u{4e2d}\u{6587}\u{4e2d}".as_bytes(),
        "\u{4e2d}\u{6587}\u{4e2d}\u{6587}\u{4e2d}",
    ),
    // The kernel cuts at 15 bytes, here inside a three-byte character.
    (
        b"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xe4",
        "\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\\xe4",
    ),
];

/// The executed file of pid 1000, as the recorder stores it (lossless text).
const FILE_BYTES: &[u8] = b"/tmp/\x1b[2J\n<&>=\xff";
const FILE_SHOWN: &str = "/tmp/\\x1b[2J\\n<&>=\\xff";
const IFACE: &str = "ev\x1b[7mil";
const IFACE_SHOWN: &str = "ev\\x1b[7mil";
const HOST: &str = "h\x1b]0;pwned\x07";
const HOST_SHOWN: &str = "h\\x1b]0;pwned\\x07";

fn comm(b: &[u8]) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[..b.len()].copy_from_slice(b);
    c
}

fn flow(i: usize, ifindex: u32, cookie: u64) -> Flow {
    Flow {
        pid: 1000 + i as u32,
        tid: 1000 + i as u32,
        comm: comm(NAMES[i].0),
        cgroup: 1,
        cookie,
        ifindex,
        family: 2,
        proto: 17,
        laddr: addr_bytes("10.0.0.1".parse().unwrap()),
        lport: 20000 + i as u16,
        raddr: addr_bytes("10.0.0.2".parse().unwrap()),
        rport: 53,
    }
}

/// One exec and one datagram per name (pid 1000 + i sends 200 - i bytes,
/// so the rows sort in name order), one packet on the hostile interface.
fn write_trace(dir: &Path) -> PathBuf {
    let path = dir.join("names.snp");
    let info = FileInfo {
        host: HOST.into(),
        kernel: "6.18.0-test".into(),
        snoop_version: "0.1.0".into(),
        command: vec!["snoop".into(), "record".into()],
        boot_to_wall_ns: 1_700_000_000_000_000_000,
        start_ns: S,
        ifaces: vec![(2, IFACE.into())],
    };
    let file = std::fs::File::create(&path).unwrap();
    let mut w = TraceWriter::new(file, &info, WriterOptions::default()).unwrap();
    w.push_process(&ProcessRow {
        ts_ns: S,
        kind: ProcessKind::Exec,
        pid: 1000,
        tid: 1000,
        ppid: 1,
        comm: comm(NAMES[0].0),
        exit_code: 0,
        filename: name_text(FILE_BYTES),
    })
    .unwrap();
    for i in 0..NAMES.len() {
        let ts = 2 * S + i as u64 * 1_000_000;
        w.push_message(
            ts,
            &flow(i, 0, 10 + i as u64),
            200 - i as u32,
            Direction::Tx,
        )
        .unwrap();
    }
    w.push_packet(3 * S, &flow(0, 2, 10), 128, Direction::Tx, 1)
        .unwrap();
    w.finish(4 * S).unwrap();
    path
}

#[derive(Parser)]
struct AnalyzeCli {
    #[command(flatten)]
    a: AnalyzeArgs,
}

#[derive(Parser)]
struct ReplayCli {
    #[command(flatten)]
    a: ReplayArgs,
}

#[derive(Parser)]
struct ExportCli {
    #[command(flatten)]
    a: ExportArgs,
}

fn analyze(trace: &Path, out: &Path, args: &[&str]) -> Vec<u8> {
    let mut all = vec![
        "analyze",
        trace.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    run_analyze(&AnalyzeCli::try_parse_from(all).unwrap().a).unwrap();
    std::fs::read(out).unwrap()
}

fn replay(trace: &Path, out: &Path, args: &[&str]) -> Vec<u8> {
    let mut all = vec![
        "replay",
        trace.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    run_replay(&ReplayCli::try_parse_from(all).unwrap().a).unwrap();
    std::fs::read(out).unwrap()
}

fn export(trace: &Path, out: &Path, args: &[&str]) -> Vec<u8> {
    let mut all = vec![
        "export",
        trace.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    run_export(&ExportCli::try_parse_from(all).unwrap().a).unwrap();
    std::fs::read(out).unwrap()
}

/// Text for a terminal: UTF-8, and no control byte but the line feeds
/// that end its lines (no C1 or bidi control either).
fn assert_terminal_safe(out: &[u8]) -> &str {
    let s = std::str::from_utf8(out).expect("text output is UTF-8");
    let bad: Vec<char> = s
        .chars()
        .filter(|&c| {
            c != '\n'
                && (c.is_control()
                    || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'))
        })
        .collect();
    assert!(bad.is_empty(), "control characters {bad:?} in:\n{s}");
    s
}

/// The display column at which `needle` starts in `line`.
fn column_of(line: &str, needle: &str) -> usize {
    width(
        &line[..line
            .find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not in {line:?}"))],
    )
}

#[test]
fn issue21_table_shows_names_escaped_in_aligned_columns() {
    let dir = tempfile::tempdir().unwrap();
    let t = write_trace(dir.path());
    let out = analyze(
        &t,
        &dir.path().join("by_pid.txt"),
        &["--by", "pid", "--top", "0"],
    );
    let s = assert_terminal_safe(&out);
    let lines: Vec<&str> = s.lines().collect();
    let h = lines.iter().position(|l| l.starts_with("PID")).unwrap();
    let header = lines[h];
    let tx_col = column_of(header, "TX_BYTES");
    for (i, (_, shown)) in NAMES.iter().enumerate() {
        let pid = (1000 + i).to_string();
        let row: Vec<&&str> = lines.iter().filter(|l| l.starts_with(&pid)).collect();
        assert_eq!(row.len(), 1, "one line for pid {pid} in:\n{s}");
        let row = row[0];
        // The name, escaped, right after the pid column, then the byte
        // count ending where the TX_BYTES column ends.
        let after_pid = row[pid.len()..].trim_start();
        assert!(
            after_pid.starts_with(shown),
            "{shown:?} not shown in {row:?}"
        );
        let tx = format!("{} B", 200 - i);
        assert_eq!(
            column_of(row, &tx) + width(&tx),
            tx_col + width("TX_BYTES"),
            "TX_BYTES misaligned in {row:?}\n{s}"
        );
    }
    assert_eq!(lines.len(), h + 1 + NAMES.len(), "{s}");

    // --by iface and --by comm: the interface name and comm keys too.
    let out = analyze(&t, &dir.path().join("iface.txt"), &["--by", "iface"]);
    let s = assert_terminal_safe(&out);
    assert!(s.contains(IFACE_SHOWN), "{s}");
    let out = analyze(
        &t,
        &dir.path().join("comm.txt"),
        &["--by", "comm", "--top", "0"],
    );
    let s = assert_terminal_safe(&out);
    for (_, shown) in NAMES {
        assert!(s.contains(shown), "{shown:?} not in {s}");
    }
}

#[test]
fn issue21_summary_and_lifecycle_tables_escape_host_names_and_filenames() {
    let dir = tempfile::tempdir().unwrap();
    let t = write_trace(dir.path());
    let out = analyze(&t, &dir.path().join("summary.txt"), &[]);
    let s = assert_terminal_safe(&out);
    assert!(s.contains(&format!("host {HOST_SHOWN}")), "{s}");
    assert!(s.contains(NAMES[0].1), "{s}");
    let out = analyze(&t, &dir.path().join("life.txt"), &["--report", "lifecycle"]);
    let s = assert_terminal_safe(&out);
    assert!(s.contains(FILE_SHOWN), "{s}");
}

#[test]
fn issue21_json_keeps_exact_bytes_through_the_lossless_rule() {
    let dir = tempfile::tempdir().unwrap();
    let t = write_trace(dir.path());
    let out = analyze(
        &t,
        &dir.path().join("by_pid.json"),
        &["--by", "pid", "--top", "0"],
    );
    assert!(!out.contains(&0x1b), "raw ESC in JSON");
    let v: Vec<Value> = serde_json::from_slice(&out).unwrap();
    assert_eq!(v.len(), NAMES.len());
    for row in &v {
        let i = row["pid"].as_u64().unwrap() as usize - 1000;
        let got = row["comm"].as_str().unwrap();
        assert_eq!(name_text_bytes(got).as_deref(), Some(NAMES[i].0), "{got:?}");
    }
    // Valid UTF-8 without a backslash is the exact text (ESC JSON-escaped).
    let s = std::str::from_utf8(&out).unwrap();
    assert!(s.contains(r#""comm": "\u001b[31mRED\u001b[0m""#), "{s}");
    assert!(s.contains(r#""comm": "a\nb\tc\rd""#), "{s}");
    assert!(s.contains(r#""comm": "bad\\xff\\xfe""#), "{s}");
    assert!(s.contains(r#""comm": "back\\\\slash""#), "{s}");

    let out = analyze(
        &t,
        &dir.path().join("life.json"),
        &["--report", "lifecycle"],
    );
    let v: Vec<Value> = serde_json::from_slice(&out).unwrap();
    let f = v
        .iter()
        .find_map(|r| r["filename"].as_str().filter(|f| !f.is_empty()));
    assert_eq!(name_text_bytes(f.unwrap()).as_deref(), Some(FILE_BYTES));
}

/// Fields of RFC 4180 CSV (quotes doubled inside quoted fields).
fn parse_csv(s: &str) -> Vec<Vec<String>> {
    let (mut rows, mut row, mut field) = (Vec::new(), Vec::new(), String::new());
    let (mut quoted, mut chars) = (false, s.chars().peekable());
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(
        !quoted && field.is_empty() && row.is_empty(),
        "CSV ends mid-row"
    );
    rows
}

/// A comm as the neutralised CSV cell must hold it.
fn csv_text(name: &[u8]) -> String {
    let t = name_text(name);
    if matches!(t.as_bytes()[0], b'=' | b'+' | b'-' | b'@') {
        format!("'{t}")
    } else {
        t
    }
}

fn check_csv(out: &[u8], raw: bool) {
    let rows = parse_csv(std::str::from_utf8(out).unwrap());
    let (pid, comm) = (
        rows[0].iter().position(|c| c == "pid").unwrap(),
        rows[0].iter().position(|c| c == "comm").unwrap(),
    );
    let mut seen = 0;
    for r in &rows[1..] {
        assert_eq!(r.len(), rows[0].len(), "a name broke the row: {r:?}");
        let i = r[pid].parse::<usize>().unwrap() - 1000;
        let want = if raw {
            name_text(NAMES[i].0)
        } else {
            csv_text(NAMES[i].0)
        };
        assert_eq!(r[comm], want);
        seen += 1;
    }
    assert!(seen >= NAMES.len());
}

#[test]
fn issue21_csv_quotes_and_neutralises_formulas_unless_raw() {
    let dir = tempfile::tempdir().unwrap();
    let t = write_trace(dir.path());
    let out = analyze(
        &t,
        &dir.path().join("a.csv"),
        &["--by", "pid", "--top", "0"],
    );
    check_csv(&out, false);
    let s = std::str::from_utf8(&out).unwrap();
    assert!(
        s.contains(",\"'=cmd|' /C calc\",") || s.contains(",'=cmd|' /C calc,"),
        "{s}"
    );
    assert!(s.contains(",\"a\nb\tc\rd\","), "{s}");
    let raw = analyze(
        &t,
        &dir.path().join("r.csv"),
        &["--by", "pid", "--top", "0", "--raw"],
    );
    check_csv(&raw, true);
    assert!(std::str::from_utf8(&raw)
        .unwrap()
        .contains(",=cmd|' /C calc,"));

    let out = export(&t, &dir.path().join("e.csv"), &["--table", "messages"]);
    check_csv(&out, false);
    let raw = export(
        &t,
        &dir.path().join("er.csv"),
        &["--table", "messages", "--raw"],
    );
    check_csv(&raw, true);
    // The filename of the processes table, neutralised or not: it starts
    // with '/', so both keep it; its newline is inside a quoted field.
    let out = export(&t, &dir.path().join("p.csv"), &["--table", "processes"]);
    let rows = parse_csv(std::str::from_utf8(&out).unwrap());
    let fi = rows[0].iter().position(|c| c == "filename").unwrap();
    assert_eq!(rows[1][fi], name_text(FILE_BYTES));
}

#[test]
fn issue21_parquet_keeps_exact_bytes() {
    use polars::prelude::*;
    let dir = tempfile::tempdir().unwrap();
    let t = write_trace(dir.path());
    let p = dir.path().join("m.parquet");
    export(&t, &p, &["--table", "messages"]);
    let df = ParquetReader::new(std::fs::File::open(&p).unwrap())
        .finish()
        .unwrap();
    let pids = df.column("pid").unwrap().cast(&DataType::UInt32).unwrap();
    let pids = pids.u32().unwrap();
    let comms = df.column("comm").unwrap().str().unwrap().clone();
    assert_eq!(df.height(), NAMES.len());
    for r in 0..df.height() {
        let i = pids.get(r).unwrap() as usize - 1000;
        let c = comms.get(r).unwrap();
        assert_eq!(name_text_bytes(c).as_deref(), Some(NAMES[i].0), "{c:?}");
    }
}

#[test]
fn issue21_replay_text_is_one_safe_line_per_event_and_json_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let t = write_trace(dir.path());
    let out = replay(&t, &dir.path().join("r.txt"), &[]);
    let s = assert_terminal_safe(&out);
    // One exec, one datagram per name, one packet: nothing split a line.
    assert_eq!(s.lines().count(), 1 + NAMES.len() + 1, "{s}");
    for (i, (_, shown)) in NAMES.iter().enumerate() {
        let who = format!("pid {}/{shown}", 1000 + i);
        assert!(s.lines().any(|l| l.ends_with(&who)), "{who:?} not in {s}");
    }
    assert!(
        s.contains(&format!("pid 1000/{} ppid 1 {FILE_SHOWN}", NAMES[0].1)),
        "{s}"
    );
    assert!(s.contains(&format!(" {IFACE_SHOWN} UDP ")), "{s}");

    let out = replay(&t, &dir.path().join("r.json"), &["--json"]);
    let lines: Vec<Value> = std::str::from_utf8(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1 + NAMES.len() + 1);
    for o in &lines {
        let i = o["pid"].as_u64().unwrap() as usize - 1000;
        let c = o["comm"].as_str().unwrap();
        assert_eq!(name_text_bytes(c).as_deref(), Some(NAMES[i].0));
        if let Some(f) = o.get("filename") {
            assert_eq!(
                name_text_bytes(f.as_str().unwrap()).as_deref(),
                Some(FILE_BYTES)
            );
        }
        if o["event"] == "packet" {
            assert_eq!(o["iface"], IFACE);
        }
    }
}

#[test]
fn issue21_html_escapes_names_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let t = write_trace(dir.path());
    let out = analyze(&t, &dir.path().join("r.html"), &["--report", "html"]);
    let s = std::str::from_utf8(&out).unwrap();
    assert!(
        !s.contains('\x1b') && !s.contains('\x07'),
        "raw control bytes in HTML"
    );
    assert!(!s.contains("<svg/onload"), "unescaped tag");
    assert!(s.contains("&lt;svg/onload=&amp;&gt;"), "{s}");
    assert!(!s.contains("=cmd|' /C"), "unescaped quote");
    assert!(s.contains("=cmd|&#39; /C calc"));
    assert!(s.contains(HOST_SHOWN), "{s}");
    // Inside every SVG <title>, no markup from a name.
    for title in s.split("<title>").skip(1) {
        let title = &title[..title.find("</title>").unwrap()];
        assert!(!title.contains('<') && !title.contains('"'), "{title:?}");
    }
}

#[derive(Parser)]
struct DiffCli {
    #[command(flatten)]
    a: DiffArgs,
}

/// The behaviour report and `snoop diff` show names escaped in
/// tables (evidence lines too) and keep the lossless name text in JSON.
#[test]
fn issue18_behaviour_and_diff_escape_names() {
    let dir = tempfile::tempdir().unwrap();
    let t = write_trace(dir.path());
    let out = analyze(
        &t,
        &dir.path().join("behaviour.txt"),
        &["--report", "behaviour", "--top", "0"],
    );
    let s = assert_terminal_safe(&out);
    for (_, shown) in NAMES {
        assert!(s.contains(shown), "{shown:?} not in {s}");
    }
    let json = dir.path().join("diff.json");
    let mut args = vec!["diff", t.to_str().unwrap(), t.to_str().unwrap()];
    args.extend(["--format", "json", "-o", json.to_str().unwrap()]);
    run_diff(&DiffCli::try_parse_from(&args).unwrap().a).unwrap();
    let rows: Vec<Value> = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    for (raw, _) in NAMES {
        let text = name_text(raw);
        let r = rows.iter().find(|r| r["comm"] == text.as_str());
        assert_eq!(
            r.map(|r| &r["change"]),
            Some(&Value::from("same")),
            "{text:?}"
        );
    }
    let txt = dir.path().join("diff.txt");
    let args = [
        "diff",
        t.to_str().unwrap(),
        t.to_str().unwrap(),
        "-o",
        txt.to_str().unwrap(),
    ];
    run_diff(&DiffCli::try_parse_from(args).unwrap().a).unwrap();
    let out = std::fs::read(&txt).unwrap();
    let s = assert_terminal_safe(&out);
    for (_, shown) in NAMES {
        assert!(s.contains(shown), "{shown:?} not in {s}");
    }
}
