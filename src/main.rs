//! The `snoop` binary: parse the command line, dispatch to the crate that
//! does the work, print errors as `snoop: <message>` and exit non-zero. A
//! closed pipe (`snoop replay t.snp | head`) ends the program quietly.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod docs;
mod info;
mod synth;
mod units;

/// Per-process network recorder (eBPF) and offline analyzer.
///
/// Record what every process sends and receives with `sudo snoop record`,
/// then analyse the trace anywhere, without root, with `snoop analyze`.
#[derive(Parser)]
#[command(name = "snoop", version, about, long_about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Record every send, receive, packet, TCP state change and process event (needs root).
    #[cfg(feature = "record")]
    Record(snoop_record::RecordArgs),
    /// Live per-process network traffic (needs root), or a recorded trace's: full-screen on a terminal, a table when piped.
    #[cfg(feature = "record")]
    Top(snoop_record::TopArgs),
    /// Per-process reports from a trace: throughput, connections, sizes, remotes, timeline...
    #[cfg(feature = "analyze")]
    Analyze(snoop_analyze::AnalyzeArgs),
    /// What changed between two traces, per process name: new, gone, changed, same.
    #[cfg(feature = "analyze")]
    Diff(snoop_analyze::DiffArgs),
    /// Print every event of a trace in time order, like tcpdump with process names.
    #[cfg(feature = "analyze")]
    Replay(snoop_analyze::ReplayArgs),
    /// Write raw rows as Parquet or CSV, packets as pcapng (Wireshark), or a Parquet dataset.
    #[cfg(feature = "analyze")]
    Export(snoop_analyze::ExportArgs),
    /// Describe a trace file: time range, events per table, size, drops, recovery, hooks.
    Info(info::InfoArgs),
    /// Check this machine before recording: BTF, privileges, cgroup v2, each hook group.
    #[cfg(feature = "record")]
    Doctor(snoop_record::DoctorArgs),
    /// Print a shell completion script: bash, zsh, fish, elvish, powershell.
    Completions(docs::CompletionsArgs),
    /// Print the man page (roff) of snoop, or of one subcommand: snoop man > snoop.1
    Man(docs::ManArgs),
    /// Write a deterministic synthetic trace (for tests, fixtures and benches).
    #[command(hide = true)]
    Synth(synth::SynthArgs),
}

/// Run the command; `Ok` carries the exit status (non-zero only for
/// `doctor`'s verdicts).
fn run(cli: Cli) -> anyhow::Result<u8> {
    let done = |r: anyhow::Result<()>| r.map(|()| 0);
    match cli.command {
        #[cfg(feature = "record")]
        Command::Record(args) => done(snoop_record::run_record(&args)),
        #[cfg(feature = "record")]
        Command::Top(args) => done(snoop_record::run_top(&args)),
        #[cfg(feature = "record")]
        Command::Doctor(args) => snoop_record::run_doctor(&args),
        #[cfg(feature = "analyze")]
        Command::Analyze(args) => done(snoop_analyze::run_analyze(&args)),
        #[cfg(feature = "analyze")]
        Command::Diff(args) => done(snoop_analyze::run_diff(&args)),
        #[cfg(feature = "analyze")]
        Command::Replay(args) => done(snoop_analyze::run_replay(&args)),
        #[cfg(feature = "analyze")]
        Command::Export(args) => done(snoop_analyze::run_export(&args)),
        Command::Info(args) => done(info::run(&args)),
        Command::Synth(args) => done(synth::run(&args)),
        Command::Completions(args) => done(docs::completions::<Cli>(&args)),
        Command::Man(args) => done(docs::man::<Cli>(&args)),
    }
}

/// Whether the error is a write to a closed pipe.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Whether the error is a mistake in how snoop was called (exit status 2).
fn is_usage_error(err: &anyhow::Error) -> bool {
    if err.chain().any(|e| e.is::<docs::UnknownCommand>()) {
        return true;
    }
    #[cfg(feature = "analyze")]
    if err.chain().any(|e| e.is::<snoop_analyze::UsageError>()) {
        return true;
    }
    let _ = err;
    false
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("snoop: {}", snoop_format::Shown(&format!("{err:#}")));
            if is_usage_error(&err) {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
