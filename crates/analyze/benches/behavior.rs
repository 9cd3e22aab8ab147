//! `snoop analyze --report behavior` side by side with
//! `--by pid` on the same synthetic trace (SNOOP_BENCH_EVENTS, default 20
//! million message events), both writing JSON. The trace is generated at
//! bench time and cached in the temp dir under the same name as the
//! `by_pid` bench's, so the two benches share it. Run:
//! `cargo bench -p snoop-analyze --bench behavior`; the shell twin with
//! peak memory is `bash benches/analyze/behavior.sh`.

#![allow(missing_docs)] // criterion_group! generates an undocumented fn

use std::path::{Path, PathBuf};

use clap::Parser;
use criterion::{criterion_group, criterion_main, Criterion};
use snoop_analyze::{run_analyze, AnalyzeArgs};
use snoop_format::synth::{write_synthetic, SynthConfig};
use snoop_format::{FileInfo, TraceWriter, WriterOptions};

fn events() -> u64 {
    std::env::var("SNOOP_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000_000)
}

fn trace_path(n: u64) -> PathBuf {
    std::env::temp_dir().join(format!("snoop-bench-{n}.snp"))
}

fn make_trace(p: &Path, n: u64) {
    if p.exists() {
        return;
    }
    let tmp = p.with_extension("tmp");
    let info = FileInfo {
        host: "bench".into(),
        start_ns: 1_000_000_000,
        ..FileInfo::default()
    };
    let out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp).unwrap());
    let mut w = TraceWriter::new(out, &info, WriterOptions::default()).unwrap();
    let t = write_synthetic(&mut w, SynthConfig::default(), n).unwrap();
    w.finish(t.end_ns + 1).unwrap();
    std::fs::rename(&tmp, p).unwrap();
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    a: AnalyzeArgs,
}

fn analyze(trace: &Path, args: &[&str]) {
    let mut all = vec!["analyze", trace.to_str().unwrap()];
    all.extend_from_slice(args);
    all.extend(["--format", "json", "-o", "/dev/null"]);
    run_analyze(&Cli::parse_from(all).a).unwrap();
}

fn bench(c: &mut Criterion) {
    let n = events();
    let trace = trace_path(n);
    make_trace(&trace, n);
    let mut g = c.benchmark_group(format!("behavior_vs_by_pid_{n}"));
    g.sample_size(10);
    g.bench_function("by_pid", |b| b.iter(|| analyze(&trace, &["--by", "pid"])));
    g.bench_function("behavior", |b| {
        b.iter(|| analyze(&trace, &["--report", "behavior"]))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
