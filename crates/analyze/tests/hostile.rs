//! Bounded fuzzing of the analyzer (CI-sized): the same structure-aware
//! mutations snoop-format's reader is fuzzed with (shared from
//! `crates/format/tests/support`), applied to small valid traces, then
//! every loading path of the analyzer runs on the result — the summary
//! (messages, packets, connections, stats), the lifecycle report
//! (processes), `conns`, `replay` and `export`, and the text tables of the
//! summary and `--by pid`. Each must return a result or a clear error; a
//! panic fails the test and the input is saved to the temp dir.
//! `SNOOP_FUZZ_ITERS=N` for a longer run. Traces whose counters are at
//! `u64::MAX` check that every sum saturates.

#[path = "../../format/tests/support/mod.rs"]
#[allow(unused_imports)] // shared with the reader tests, which use more of it
mod support;

use std::path::Path;

use clap::Parser;
use snoop_analyze::{run_analyze, run_export, run_replay, AnalyzeArgs, ExportArgs, ReplayArgs};
use support::{fix_crcs, mutate, sample_trace, Rng};

#[derive(Parser)]
struct A {
    #[command(flatten)]
    a: AnalyzeArgs,
}
#[derive(Parser)]
struct R {
    #[command(flatten)]
    a: ReplayArgs,
}
#[derive(Parser)]
struct E {
    #[command(flatten)]
    a: ExportArgs,
}

/// Every analyzer entry point on one file; errors are fine, panics are not.
fn exercise(path: &Path, out: &Path) -> usize {
    let p = path.to_str().unwrap();
    let o = out.to_str().unwrap();
    let mut ok = 0;
    for args in [
        vec!["analyze", p, "--format", "json", "-o", o],
        vec![
            "analyze",
            p,
            "--report",
            "lifecycle",
            "--format",
            "json",
            "-o",
            o,
        ],
        vec![
            "analyze", p, "--report", "conns", "--format", "csv", "-o", o,
        ],
        // The text path: every table of the summary, and throughput.
        vec!["analyze", p, "--format", "table", "-o", o],
        vec!["analyze", p, "--by", "pid", "--format", "table", "-o", o],
    ] {
        let a = A::try_parse_from(args).unwrap();
        match run_analyze(&a.a) {
            Ok(()) => ok += 1,
            Err(e) => assert!(!format!("{e:#}").is_empty()),
        }
    }
    let r = R::try_parse_from(["replay", p, "--json", "-o", o]).unwrap();
    ok += usize::from(run_replay(&r.a).is_ok());
    let csv = out.with_extension("csv");
    let e = E::try_parse_from([
        "export",
        p,
        "--table",
        "packets",
        "-o",
        csv.to_str().unwrap(),
    ])
    .unwrap();
    ok += usize::from(run_export(&e.a).is_ok());
    ok
}

#[test]
fn mutated_traces_never_panic_the_analyzer() {
    let n: usize = std::env::var("SNOOP_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let seeds = [
        sample_trace(40, 16, true),
        sample_trace(40, 16, false),
        sample_trace(200, 64, true),
    ];
    let d = tempfile::tempdir().unwrap();
    let (path, out) = (d.path().join("m.snp"), d.path().join("out"));
    let mut rng = Rng(0xA11A);
    let (mut runs_ok, mut files_ok) = (0, 0);
    for i in 0..n {
        let mut f = seeds[rng.below(seeds.len())].clone();
        for _ in 0..1 + rng.below(3) {
            mutate(&mut rng, &mut f);
        }
        if rng.below(10) < 6 {
            fix_crcs(&mut f);
        }
        std::fs::write(&path, &f).unwrap();
        let r = std::panic::catch_unwind(|| exercise(&path, &out));
        match r {
            Ok(k) => {
                runs_ok += k;
                files_ok += usize::from(k > 0);
            }
            Err(_) => {
                let saved = std::env::temp_dir().join(format!("snoop-analyze-crash-{i}.snp"));
                std::fs::write(&saved, &f).unwrap();
                panic!(
                    "input {i} panicked the analyzer (saved to {})",
                    saved.display()
                );
            }
        }
    }
    // The mutations must leave many files readable, or this tests nothing.
    assert!(
        files_ok * 4 >= n,
        "only {files_ok} of {n} mutated files analysed"
    );
    eprintln!("FIGURE analyzer fuzz: {n} mutated traces, {files_ok} analysed, {runs_ok} successful runs, 0 panics");
}

/// Recorder statistics are u64 counters from the file; two
/// rows at `u64::MAX` must give a saturated total in the summary's drops
/// (text and JSON), not an overflow (a panic in a debug build).
#[test]
fn stats_at_u64_max_saturate() {
    use snoop_format::{FileInfo, TraceWriter, WriterOptions};
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("max.snp");
    let mut w = TraceWriter::new(
        std::fs::File::create(&p).unwrap(),
        &FileInfo::default(),
        WriterOptions::default(),
    )
    .unwrap();
    for src in [
        0u8,
        0,
        1,
        snoop_format::source::OWNER_MAP_FULL,
        snoop_format::source::OWNER_MAP_FULL,
    ] {
        w.push_stats(1_000, src, u64::MAX, u64::MAX).unwrap();
    }
    w.finish(2_000).unwrap();
    let ps = p.to_str().unwrap();
    let txt = d.path().join("s.txt");
    let a = A::try_parse_from(["analyze", ps, "-o", txt.to_str().unwrap()]).unwrap();
    run_analyze(&a.a).unwrap();
    let text = std::fs::read_to_string(&txt).unwrap();
    assert!(text.contains("drops during recording"), "{text}");
    assert!(
        text.contains(&format!("{} socket-owner inserts refused", u64::MAX)),
        "{text}"
    );
    let js = d.path().join("s.json");
    let a = A::try_parse_from([
        "analyze",
        ps,
        "--format",
        "json",
        "-o",
        js.to_str().unwrap(),
    ])
    .unwrap();
    run_analyze(&a.a).unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&js).unwrap()).unwrap();
    let drops = v["drops"].as_array().unwrap();
    assert_eq!(drops.len(), 2, "{drops:?}");
    for r in drops {
        assert_eq!(r["dropped"], u64::MAX, "{r}");
        assert_eq!(r["events"], u64::MAX, "{r}");
    }
    assert_eq!(drops[0]["dropped_share"].as_f64(), Some(0.5));
}
