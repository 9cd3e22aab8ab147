//! The HTML report opened in a real browser (Debian's chromium, headless,
//! driven over the DevTools pipe): it must load without errors or
//! requests, every chart must have marks the browser drew, hover titles must
//! carry the exact values the test put in the trace, and charts must fill
//! the width at two window sizes. Screenshots of both are kept under the
//! target directory (the paths are printed). The checker itself is shown
//! to fail on pages broken on purpose.
//!
//! Without chromium these tests skip, unless SNOOP_REQUIRE_BPF=1 or CI is
//! set (scripts/setup.sh installs it), then they fail.

mod cdp;

use std::path::{Path, PathBuf};

use clap::Parser;
use serde_json::Value;
use snoop_analyze::{run_analyze, AnalyzeArgs};
use snoop_format::{
    addr_bytes, comm_bytes, Direction, FileInfo, Flow, TcpOutcome, TraceWriter, WriterOptions,
};

use cdp::{find_chromium, problems, Browser, MEASURE};

const S: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;

#[derive(Parser)]
struct AnalyzeCli {
    #[command(flatten)]
    a: AnalyzeArgs,
}

fn analyze(args: &[&str]) {
    let cli =
        AnalyzeCli::try_parse_from(std::iter::once("analyze").chain(args.iter().copied())).unwrap();
    run_analyze(&cli.a).unwrap();
}

/// The browser, or None (skip) when it is missing and not required.
fn chromium(test: &str) -> Option<PathBuf> {
    if let Some(p) = find_chromium() {
        return Some(p);
    }
    let required = std::env::var("SNOOP_REQUIRE_BPF").as_deref() == Ok("1")
        || std::env::var_os("CI").is_some();
    if required {
        panic!("{test}: chromium not found (scripts/setup.sh installs it; or set SNOOP_CHROMIUM)");
    }
    eprintln!("skipping {test}: chromium not found; set SNOOP_REQUIRE_BPF=1 to fail instead");
    None
}

/// Where the reports and screenshots of a test are kept.
fn artefacts(test: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("html-report")
        .join(test);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn flow(pid: u32, comm: &str, proto: u8, lport: u16, raddr: &str, rport: u16, cookie: u64) -> Flow {
    Flow {
        pid,
        tid: pid,
        comm: comm_bytes(comm),
        cgroup: 1,
        cookie,
        ifindex: 0,
        family: 2,
        proto,
        laddr: addr_bytes("10.0.0.1".parse().unwrap()),
        lport,
        raddr: addr_bytes(raddr.parse().unwrap()),
        rport,
    }
}

/// How many connections of each outcome the trace of [`write_trace`] has.
const CLOSED: u64 = 2;
const RESET: u64 = 1;
const REFUSED: u64 = 25;

/// A trace with something for every section: `curl` (pid 100) fetching
/// over three TCP connections for two seconds (two closed, one reset by
/// the peer), with wire packets; `scanner` (pid 200) refused on 25 ports;
/// `dns` (pid 300) asking a UDP resolver.
fn write_trace(path: &Path) {
    let info = FileInfo {
        host: "h".into(),
        kernel: "6.18.0-test".into(),
        snoop_version: "0.1.0".into(),
        command: vec!["snoop".into(), "record".into()],
        boot_to_wall_ns: 1_700_000_000_000_000_000,
        start_ns: S,
        ifaces: vec![(1, "lo".into()), (2, "eth0".into())],
    };
    let mut w = TraceWriter::new(
        std::fs::File::create(path).unwrap(),
        &info,
        WriterOptions::default(),
    )
    .unwrap();
    let outcome = |sk_err: u16| TcpOutcome {
        sk_err,
        segs_out: 10,
        segs_in: 10,
        srtt_us: 800,
        min_rtt_us: 500,
        ..TcpOutcome::default()
    };
    // curl: three connections one after another, 20 ms request/response.
    for (i, err) in [0u16, 0, 104].into_iter().enumerate() {
        let i = i as u64;
        let c = flow(
            100,
            "curl",
            6,
            40000 + i as u16,
            "93.184.216.34",
            443,
            10 + i,
        );
        let t0 = S + i * 700 * MS;
        w.push_conn(t0, &c, 7, 2, 0, 0).unwrap();
        w.push_conn(t0 + MS, &c, 2, 1, 0, 0).unwrap();
        for k in 0..30u64 {
            let t = t0 + 2 * MS + k * 20 * MS;
            w.push_message(t, &c, 500, Direction::Tx).unwrap();
            w.push_message(
                t + 5 * MS,
                &c,
                60_000 + (k as u32 % 7) * 1000,
                Direction::Rx,
            )
            .unwrap();
            let p = Flow { ifindex: 2, ..c };
            w.push_packet(t, &p, 566, Direction::Tx, 1).unwrap();
            for _ in 0..4 {
                w.push_packet(t + 5 * MS, &p, 1514, Direction::Rx, 1)
                    .unwrap();
            }
        }
        let end = t0 + 650 * MS;
        if err == 0 {
            w.push_conn(end, &c, 1, 4, 0, 0).unwrap();
            w.push_conn(end + MS, &c, 4, 5, 0, 0).unwrap();
            w.push_conn_outcome(end + 2 * MS, &c, 5, 7, 15_001, 1_900_000, &outcome(0))
                .unwrap();
        } else {
            w.push_conn_outcome(end, &c, 1, 7, 15_001, 1_900_000, &outcome(err))
                .unwrap();
        }
    }
    // scanner: SYN_SENT -> CLOSE with ECONNREFUSED on ports 1..=25.
    for port in 1..=REFUSED as u16 {
        let f = flow(
            200,
            "scanner",
            6,
            50000 + port,
            "10.0.2.1",
            port,
            100 + port as u64,
        );
        let syn = Flow {
            lport: 0,
            laddr: [0; 16],
            ..f
        };
        let t = S + u64::from(port) * 10 * MS;
        w.push_conn(t, &syn, 7, 2, 0, 0).unwrap();
        w.push_conn_outcome(t + MS, &f, 2, 7, 0, 0, &outcome(111))
            .unwrap();
    }
    // dns: 40 queries over two seconds.
    let d = flow(300, "dns", 17, 53000, "10.0.0.53", 53, 500);
    for k in 0..40u64 {
        let t = S + k * 50 * MS;
        w.push_message(t, &d, 40, Direction::Tx).unwrap();
        w.push_message(t + MS, &d, 120, Direction::Rx).unwrap();
    }
    w.finish(S + 3 * S).unwrap();
}

/// Load `html` at `width`, measure it, keep a screenshot in `dir`, and
/// return (measurements, problems).
fn check(b: &mut Browser, html: &Path, width: u32, dir: &Path, shot: &str) -> (Value, Vec<String>) {
    let url = format!("file://{}", html.display());
    b.resize(width, 900);
    b.open(&url);
    let page = b.eval(MEASURE);
    let png = b.screenshot();
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    let path = dir.join(format!("{shot}-{width}.png"));
    std::fs::write(&path, png).unwrap();
    println!("screenshot: {}", path.display());
    let p = problems(&page, &b.events, &url);
    (page, p)
}

fn titles(page: &Value, chart: &str) -> Vec<String> {
    let c = page["charts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == chart)
        .unwrap_or_else(|| panic!("no chart {chart:?} in {page:#}"));
    c["titles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn report_renders_in_chromium_with_every_chart_drawn() {
    let Some(chrome) = chromium("report_renders_in_chromium_with_every_chart_drawn") else {
        return;
    };
    let dir = artefacts("synthetic");
    let trace = dir.join("t.snp");
    write_trace(&trace);
    let html = dir.join("report.html");
    analyze(&[
        trace.to_str().unwrap(),
        "--report",
        "html",
        "-o",
        html.to_str().unwrap(),
    ]);
    let profile = tempfile::tempdir().unwrap();
    let mut b = Browser::launch(&chrome, profile.path(), 1280);
    for width in [1280, 640] {
        let (page, p) = check(&mut b, &html, width, &dir, "report");
        assert!(p.is_empty(), "at {width} px: {p:#?}");
        let charts = page["charts"].as_array().unwrap();
        // Rates (send, receive), one per process that moved bytes (curl,
        // dns; the scanner only knocked), message and packet sizes,
        // durations, outcomes, remote shares.
        assert_eq!(charts.len(), 2 + 2 + 2 + 1 + 1 + 1, "{page:#}");
        let heads: Vec<&str> = page["headings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h.as_str().unwrap())
            .collect();
        for h in ["100 curl", "300 dns", "Connection outcomes", "Behaviour"] {
            assert!(heads.contains(&h), "no section {h:?}: {heads:?}");
        }
        // The outcome bars' hover titles: the counts the trace holds.
        let t = titles(&page, "TCP connections by outcome");
        for want in [
            format!("TCP, closed: {CLOSED} connections"),
            format!("TCP, reset_by_peer: {RESET} connection"),
            format!("TCP, refused: {REFUSED} connections"),
            "TCP, timeout: 0 connections".to_string(),
        ] {
            assert!(t.contains(&want), "no {want:?} in {t:?}");
        }
        // The remote share of curl's server: 3 x 30 x (500 + 60 000 + ...).
        let curl: u64 = 3
            * (0..30u64)
                .map(|k| 500 + 60_000 + (k % 7) * 1000)
                .sum::<u64>();
        let t = titles(
            &page,
            "share of application bytes by remote (name from DNS answers, else address)",
        );
        assert!(
            t.iter()
                .any(|s| s.starts_with("93.184.216.34:") && s.contains(&format!("({curl} B)"))),
            "{t:?}"
        );
    }
}

#[test]
fn recorded_loopback_trace_renders_without_an_outcome_section() {
    let Some(chrome) = chromium("recorded_loopback_trace_renders_without_an_outcome_section")
    else {
        return;
    };
    let dir = artefacts("loopback");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/loopback.snp");
    let html = dir.join("report.html");
    analyze(&[
        fixture.to_str().unwrap(),
        "--report",
        "html",
        "-o",
        html.to_str().unwrap(),
    ]);
    let profile = tempfile::tempdir().unwrap();
    let mut b = Browser::launch(&chrome, profile.path(), 1280);
    let (page, p) = check(&mut b, &html, 1280, &dir, "report");
    assert!(p.is_empty(), "{p:#?}");
    let heads = page["headings"].to_string();
    // Recorded before the kernel's outcomes were (format 1.1): no section
    // and no chart for them, rather than an empty one.
    assert!(!heads.contains("Connection outcomes"), "{heads}");
    assert!(heads.contains("fx-client"), "{heads}");
}

/// The checker finds what is wrong with pages broken on purpose: a chart
/// whose marks are gone, a flat all-zero line chart, a fetched image, a
/// script that throws.
#[test]
fn checker_fails_on_broken_pages() {
    let Some(chrome) = chromium("checker_fails_on_broken_pages") else {
        return;
    };
    let dir = artefacts("broken");
    let trace = dir.join("t.snp");
    write_trace(&trace);
    let html = dir.join("good.html");
    analyze(&[
        trace.to_str().unwrap(),
        "--report",
        "html",
        "-o",
        html.to_str().unwrap(),
    ]);
    let good = std::fs::read_to_string(&html).unwrap();
    let profile = tempfile::tempdir().unwrap();
    let mut b = Browser::launch(&chrome, profile.path(), 1000);
    let mut run = |name: &str, page: String| -> Vec<String> {
        let f = dir.join(format!("{name}.html"));
        std::fs::write(&f, page).unwrap();
        check(&mut b, &f, 1000, &dir, name).1
    };
    assert_eq!(run("good", good.clone()), Vec::<String>::new());

    // The size chart with its bars removed.
    let start = good.find("aria-label=\"message sizes").unwrap();
    let m0 = start + good[start..].find("<g class=\"marks\">").unwrap() + 17;
    let m1 = m0 + good[m0..].find("</g>").unwrap();
    let emptied = format!("{}{}", &good[..m0], &good[m1..]);
    assert_eq!(
        run("empty-chart", emptied),
        ["chart \"message sizes (count per power-of-two bucket)\" has no drawn marks"]
    );

    // The send-rate chart's lines all flat at zero.
    let start = good.find("aria-label=\"send rate, top processes").unwrap();
    let end = start + good[start..].find("</svg>").unwrap();
    let mut flat = String::new();
    let mut rest = &good[start..end];
    while let Some(i) = rest.find("points=\"") {
        flat.push_str(&rest[..i + 8]);
        rest = &rest[i + 8..];
        let j = rest.find('"').unwrap();
        let pts: Vec<String> = rest[..j]
            .split(' ')
            .map(|p| format!("{},230.0", p.split(',').next().unwrap()))
            .collect();
        flat.push_str(&pts.join(" "));
        rest = &rest[j..];
    }
    flat.push_str(rest);
    let flat = format!("{}{}{}", &good[..start], flat, &good[end..]);
    let p = run("flat-lines", flat);
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(
        p[0].starts_with("chart \"send rate, top processes"),
        "{p:#?}"
    );

    // Something fetched, and a script that throws.
    let fetched = good.replace(
        "<h1>snoop report</h1>",
        "<h1>snoop report</h1><img src=\"http://127.0.0.1:9/x.png\">",
    );
    let p = run("fetched", fetched);
    assert!(
        p.iter()
            .any(|s| s == "the page requested http://127.0.0.1:9/x.png"),
        "{p:#?}"
    );
    let thrown = good.replace(
        "<h1>snoop report</h1>",
        "<h1>snoop report</h1><script>throw new Error('boom')</script>",
    );
    let p = run("script", thrown);
    assert!(p.iter().any(|s| s.contains("Error: boom")), "{p:#?}");
    assert!(p.iter().any(|s| s == "the page has 1 scripts"), "{p:#?}");
}
