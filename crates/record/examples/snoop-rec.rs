//! A stand-alone `snoop record` / `snoop top` front end for trying the
//! recorder without building the analyzer (polars): same arguments as the
//! `snoop` binary's subcommands.
//!
//!     cargo run -p snoop-record --example snoop-rec -- record -o t.snp --duration 5s

use clap::{Parser, Subcommand};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    Record(snoop_record::RecordArgs),
    Top(snoop_record::TopArgs),
}

fn main() -> std::process::ExitCode {
    let r = match Cli::parse().cmd {
        Cmd::Record(a) => snoop_record::run_record(&a),
        Cmd::Top(a) => snoop_record::run_top(&a),
    };
    match r {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("snoop: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
