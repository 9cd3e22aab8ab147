//! Writes the reference synthetic trace (snoop_format::synth) for manual
//! runs and benchmarks: `gen_synth OUT.snp EVENTS [FLOWS] [PROCESSES]`.

use snoop_format::synth::{write_synthetic, SynthConfig};
use snoop_format::{FileInfo, TraceWriter, WriterOptions};

fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 3 {
        anyhow::bail!("usage: gen_synth OUT.snp EVENTS [FLOWS] [PROCESSES]");
    }
    let n: u64 = a[2].parse()?;
    let mut cfg = SynthConfig::default();
    if let Some(f) = a.get(3) {
        cfg.flows = f.parse()?;
    }
    if let Some(p) = a.get(4) {
        cfg.processes = p.parse()?;
    }
    let info = FileInfo {
        host: "synth".into(),
        kernel: "synthetic".into(),
        start_ns: cfg.start_ns,
        boot_to_wall_ns: 1_700_000_000_000_000_000,
        ..FileInfo::default()
    };
    let out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&a[1])?);
    let mut w = TraceWriter::new(out, &info, WriterOptions::default())?;
    let t = std::time::Instant::now();
    let totals = write_synthetic(&mut w, cfg, n)?;
    w.finish(totals.end_ns + 1)?;
    eprintln!(
        "wrote {} messages in {:.1}s",
        totals.messages,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
