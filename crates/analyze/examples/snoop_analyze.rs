//! A stand-alone `analyze` / `replay` / `export` front end over this crate,
//! for trying reports and measuring them before the `snoop` binary wires
//! them in: `cargo run --release -p snoop-analyze --example snoop_analyze --
//! analyze trace.snp --by pid`. Exit code 2 on usage errors, quiet on a
//! broken pipe, like the real binary.

use clap::{Parser, Subcommand};
use snoop_analyze::{
    is_usage_error, run_analyze, run_export, run_replay, AnalyzeArgs, ExportArgs, ReplayArgs,
};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Reports.
    Analyze(AnalyzeArgs),
    /// Events in time order.
    Replay(ReplayArgs),
    /// Raw rows.
    Export(ExportArgs),
}

fn main() {
    let cli = Cli::parse();
    let r = match &cli.cmd {
        Cmd::Analyze(a) => run_analyze(a),
        Cmd::Replay(a) => run_replay(a),
        Cmd::Export(a) => run_export(a),
    };
    if let Err(e) = r {
        let broken = e.chain().any(|c| {
            c.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        });
        if broken {
            std::process::exit(0);
        }
        eprintln!("snoop: {e:#}");
        std::process::exit(if is_usage_error(&e) { 2 } else { 1 });
    }
}
