//! `snoop analyze --by pid` against polars scanning the same events from a
//! zstd Parquet file. The synthetic trace is generated at bench time
//! (SNOOP_BENCH_EVENTS, default 20 million; the figure uses
//! 100000000) and cached in the temp dir with its Parquet twin, so repeated
//! runs skip the generation. Run:
//! `SNOOP_BENCH_EVENTS=100000000 cargo bench -p snoop-analyze --bench by_pid`.

#![allow(missing_docs)] // criterion_group! generates an undocumented fn

use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, Criterion};
use polars::prelude::*;
use snoop_analyze::{run_analyze, AnalyzeArgs};
use snoop_format::synth::{write_synthetic, SynthConfig};
use snoop_format::{col as fcol, ColumnSet, FileInfo, Table, Trace, TraceWriter, WriterOptions};

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

/// The same message events, one row each (ts, pid, tid, bytes, dir), as zstd Parquet.
fn make_parquet(trace: &Path, p: &Path) {
    if p.exists() {
        return;
    }
    let tr = Trace::open(trace).unwrap();
    let schema = Schema::from_iter([
        Field::new("ts".into(), DataType::UInt64),
        Field::new("pid".into(), DataType::UInt32),
        Field::new("tid".into(), DataType::UInt32),
        Field::new("bytes".into(), DataType::UInt32),
        Field::new("dir".into(), DataType::UInt8),
    ]);
    let tmp = p.with_extension("tmp");
    let f = std::fs::File::create(&tmp).unwrap();
    let mut w = ParquetWriter::new(f)
        .with_compression(ParquetCompression::Zstd(None))
        .batched(&schema)
        .unwrap();
    let cols = ColumnSet::of(&[
        fcol::TS,
        fcol::FLOW,
        fcol::BYTES,
        fcol::DIR,
        fcol::F_PID,
        fcol::F_TID,
    ]);
    for c in tr.chunks_of(Table::Messages).collect::<Vec<_>>() {
        let b = tr.read_chunk(c, cols).unwrap().into_events().unwrap();
        let pid: Vec<u32> = b.flow.iter().map(|&f| b.flows.pid[f as usize]).collect();
        let tid: Vec<u32> = b.flow.iter().map(|&f| b.flows.tid[f as usize]).collect();
        let df = DataFrame::new_infer_height(vec![
            UInt64Chunked::from_vec("ts".into(), b.ts)
                .into_series()
                .into_column(),
            UInt32Chunked::from_vec("pid".into(), pid)
                .into_series()
                .into_column(),
            UInt32Chunked::from_vec("tid".into(), tid)
                .into_series()
                .into_column(),
            UInt32Chunked::from_vec("bytes".into(), b.bytes)
                .into_series()
                .into_column(),
            UInt8Chunked::from_vec("dir".into(), b.dir)
                .into_series()
                .into_column(),
        ])
        .unwrap();
        w.write_batch(&df).unwrap();
    }
    w.finish().unwrap();
    std::fs::rename(&tmp, p).unwrap();
}

fn snoop_by_pid(trace: &Path) {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        a: AnalyzeArgs,
    }
    let cli = Cli::parse_from([
        "analyze",
        trace.to_str().unwrap(),
        "--by",
        "pid",
        "--format",
        "json",
        "-o",
        "/dev/null",
    ]);
    run_analyze(&cli.a).unwrap();
}

/// The idiomatic fast form: per-row tx/rx columns, then plain sums per pid.
pub fn polars_by_pid(parquet: &Path) -> DataFrame {
    let tx = col("dir").eq(lit(0u8));
    let b = col("bytes").cast(DataType::UInt64);
    LazyFrame::scan_parquet(
        PlRefPath::new(parquet.to_str().unwrap()),
        ScanArgsParquet::default(),
    )
    .unwrap()
    .with_columns([
        when(tx.clone())
            .then(b.clone())
            .otherwise(lit(0u64))
            .alias("tx_bytes"),
        when(tx.clone())
            .then(lit(0u64))
            .otherwise(b)
            .alias("rx_bytes"),
        when(tx.clone())
            .then(lit(1u64))
            .otherwise(lit(0u64))
            .alias("tx_msgs"),
        when(tx)
            .then(lit(0u64))
            .otherwise(lit(1u64))
            .alias("rx_msgs"),
    ])
    .group_by([col("pid")])
    .agg([
        col("tx_bytes").sum(),
        col("rx_bytes").sum(),
        col("tx_msgs").sum(),
        col("rx_msgs").sum(),
        col("ts").min().alias("first_ns"),
        col("ts").max().alias("last_ns"),
    ])
    .collect()
    .unwrap()
}

fn bench(c: &mut Criterion) {
    let n = events();
    let trace = trace_path(n);
    make_trace(&trace, n);
    let parquet = trace.with_extension("parquet");
    make_parquet(&trace, &parquet);
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "{n} events: trace {} MB, parquet {} MB",
        size(&trace) / 1_000_000,
        size(&parquet) / 1_000_000
    );
    let mut g = c.benchmark_group(format!("by_pid_{n}"));
    g.sample_size(10);
    g.bench_function("snoop_analyze", |b| b.iter(|| snoop_by_pid(&trace)));
    g.bench_function("polars_parquet", |b| b.iter(|| polars_by_pid(&parquet)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
