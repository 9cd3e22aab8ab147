//! `snoop synth`: writes the reference synthetic workload as a trace, for
//! fixtures, tests and benches (no root, no eBPF). Deterministic: the same
//! flags always give the same bytes.

use std::fs::OpenOptions;
use std::io::BufWriter;
use std::path::PathBuf;

use anyhow::Context;
use snoop_format::synth::{write_synthetic, SynthConfig};
use snoop_format::{FileInfo, TraceWriter, WriterOptions};

/// Arguments of `snoop synth`.
#[derive(clap::Args)]
pub struct SynthArgs {
    /// Output trace file.
    #[arg(short, long, default_value = "synthetic.snp")]
    pub output: PathBuf,
    /// Message events to generate.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Random seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Number of flows.
    #[arg(long, default_value_t = 3000)]
    pub flows: usize,
    /// Number of processes.
    #[arg(long, default_value_t = 200)]
    pub processes: usize,
    /// Rows per chunk.
    #[arg(long, default_value_t = 256 * 1024)]
    pub chunk_rows: usize,
    /// Leave the file without footer, as a killed recorder would.
    #[arg(long)]
    pub unfinished: bool,
    /// Host name recorded in the trace.
    #[arg(long, default_value = "synthetic")]
    pub host: String,
    /// Overwrite an existing output file.
    #[arg(long)]
    pub force: bool,
}

/// Wall clock of the synthetic boot: 2026-01-01 00:00:00 UTC.
const SYNTH_BOOT_WALL_NS: i64 = 1_767_225_600_000_000_000;

/// Run `snoop synth`.
pub fn run(args: &SynthArgs) -> anyhow::Result<()> {
    let cfg = SynthConfig {
        seed: args.seed,
        flows: args.flows,
        processes: args.processes,
        ..SynthConfig::default()
    };
    let info = FileInfo {
        host: args.host.clone(),
        kernel: "synthetic".into(),
        snoop_version: env!("CARGO_PKG_VERSION").into(),
        command: vec![
            "snoop".into(),
            "synth".into(),
            format!("--events={}", args.events),
            format!("--seed={}", args.seed),
        ],
        boot_to_wall_ns: SYNTH_BOOT_WALL_NS,
        start_ns: cfg.start_ns,
        ifaces: vec![(1, "lo".into())],
    };
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .create_new(!args.force)
        .truncate(true)
        .open(&args.output)
        .with_context(|| {
            format!(
                "creating {} (use --force to overwrite)",
                args.output.display()
            )
        })?;
    let opts = WriterOptions {
        chunk_rows: args.chunk_rows,
        ..WriterOptions::default()
    };
    let mut w = TraceWriter::new(BufWriter::new(file), &info, opts)?;
    let totals = write_synthetic(&mut w, cfg, args.events)?;
    if args.unfinished {
        w.flush()?;
    } else {
        w.finish(totals.end_ns + 1)?;
    }
    eprintln!(
        "snoop: wrote {} messages to {}",
        totals.messages,
        args.output.display()
    );
    Ok(())
}
