//! `snoop top`: the flow seed's live table — per process, KB received and
//! sent in the last interval and since start, TCP and UDP, IPv4 and IPv6 —
//! computed from the same message programs as `snoop record`, aggregated in
//! memory instead of written to a file. `--from FILE` shows a recorded trace
//! through the same table instead (see `top_from`). This table is what
//! `top` prints when stdout is not a terminal, or with `--plain`; on a
//! terminal the full-screen view of `tui` and `tui_run` shows the same
//! messages instead. A process is shown under the latest name seen for it,
//! its main thread's when that thread was seen (as `ps` names it), and
//! every sum saturates.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use snoop_format::names::shown_width;
use snoop_format::{comm_str, Direction, Shown};

use crate::event::Event;
use crate::kernel::{with_kernel, KernelOptions};
use crate::pipeline::{run_pipeline, Control, EventSink, Limits};
use crate::record::{install_signal_handlers, signalled};

/// `snoop top`: per-process network traffic, every INTERVAL seconds.
#[derive(Args, Clone, Debug)]
#[command(after_long_help = TOP_HELP)]
pub struct TopArgs {
    /// Only this process (repeatable).
    #[arg(short, long, value_name = "PID", value_parser = clap::value_parser!(u32).range(1..))]
    pub pid: Vec<u32>,
    /// Only processes with this name (repeatable).
    #[arg(long, value_name = "NAME")]
    pub comm: Vec<String>,
    /// Show a recorded trace instead of live traffic.
    #[arg(long, value_name = "FILE")]
    pub from: Option<PathBuf>,
    /// Replay `--from FILE` this many times faster than it was recorded
    /// (e.g. 10, or 0.5 for half speed; 0.001 to 1000000). The full-screen
    /// view replays at real speed without it; the plain table prints every
    /// table at once without it.
    #[arg(long, value_name = "X", requires = "from", value_parser = parse_speed)]
    pub speed: Option<f64>,
    /// Print the plain table every INTERVAL even on a terminal (as when
    /// stdout is a pipe or a file) instead of the full-screen view.
    #[arg(long)]
    pub plain: bool,
    /// Seconds between tables, or between updates of the full-screen view
    /// (1 to 31536000, one year).
    #[arg(default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=MAX_INTERVAL_SECS))]
    pub interval: u64,
    /// Number of tables (or updates of the view), then exit (default: until
    /// Ctrl-C, or q in the view).
    #[arg(value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
}

/// What `snoop top --help` says after the options: the two faces and
/// the keys of the full-screen view.
const TOP_HELP: &str = "\
On a terminal, snoop top opens a full-screen view: per process, the
receive and send rates of the last INTERVAL in bit/s and the totals, and
with Tab the same per connection and per remote address. With --from FILE
it replays the trace through that view, at the recording's speed or
--speed times it, and stays on the last interval until q. When stdout is
not a terminal, or with --plain, it prints the table
PID COMM RX_KB TX_KB RXSUM_KB TXSUM_KB SUM_KB every INTERVAL instead
(all at once for --from, unless --speed paces it).

Keys of the full-screen view:
  q, Ctrl-C        quit
  Tab, Shift-Tab   next, previous view: processes, connections, remotes
  s, S             sort by the next, previous column
  1-9, 0           sort by that column; 0: by traffic (the default)
  r                reverse the order
  /                filter by name (process name; a remote's address or
                   its processes' names): type, Enter applies, Esc cancels
  Esc              clear the filter
  p, Space         pause (the view freezes; the next interval after it
                   covers the whole pause; a replay stops its clock)
  Up, Down, PgUp, PgDn, Home   scroll";

/// The longest INTERVAL `snoop top` takes, in seconds (one year).
pub const MAX_INTERVAL_SECS: u64 = 365 * 24 * 3600;

/// The slowest and fastest `--speed`.
pub const SPEED_RANGE: (f64, f64) = (0.001, 1e6);

/// Parse `--speed`: a number in [`SPEED_RANGE`].
pub fn parse_speed(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("invalid speed {s:?} (a number, e.g. 10 or 0.5)"))?;
    let (lo, hi) = SPEED_RANGE;
    if !(lo..=hi).contains(&v) {
        return Err(format!("speed {s:?} out of range: {lo} to {hi}"));
    }
    Ok(v)
}

/// Byte counters of one process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopRow {
    /// Process id.
    pub pid: u32,
    /// Last comm seen (of the main thread, once it was seen).
    pub comm: String,
    /// Whether `comm` is the main thread's (tid == pid).
    pub comm_main: bool,
    /// Received in the current interval.
    pub rx: u64,
    /// Sent in the current interval.
    pub tx: u64,
    /// Received since start.
    pub rx_sum: u64,
    /// Sent since start.
    pub tx_sum: u64,
}

/// Aggregates messages per process; shared with the printing thread.
#[derive(Clone, Default)]
pub struct TopTable {
    rows: Arc<Mutex<HashMap<u32, TopRow>>>,
}

impl TopTable {
    /// Add one message of the process's main thread (or of a thread
    /// unknown).
    pub fn add(&self, pid: u32, comm: &[u8; 16], bytes: u64, dir: Direction) {
        self.add_msg(pid, pid, comm, bytes, dir);
    }

    /// Add one message sent or received by thread `tid` of process `pid`,
    /// named `comm` at the time. Messages must come in time order: the
    /// latest name wins, the main thread's over other threads'.
    pub fn add_msg(&self, pid: u32, tid: u32, comm: &[u8; 16], bytes: u64, dir: Direction) {
        let mut rows = self.rows.lock().unwrap_or_else(PoisonError::into_inner);
        let r = rows.entry(pid).or_insert_with(|| TopRow {
            pid,
            ..TopRow::default()
        });
        let main = tid == pid;
        if r.comm.is_empty() || (comm[0] != 0 && (main || !r.comm_main)) {
            r.comm = comm_str(comm);
            r.comm_main |= main && comm[0] != 0;
        }
        match dir {
            Direction::Rx => {
                r.rx = r.rx.saturating_add(bytes);
                r.rx_sum = r.rx_sum.saturating_add(bytes);
            }
            Direction::Tx => {
                r.tx = r.tx.saturating_add(bytes);
                r.tx_sum = r.tx_sum.saturating_add(bytes);
            }
        }
    }

    /// The rows sorted by interval traffic then total, and reset the
    /// interval counters.
    pub fn take_interval(&self) -> Vec<TopRow> {
        let mut rows = self.rows.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<TopRow> = rows.values().cloned().collect();
        for r in rows.values_mut() {
            r.rx = 0;
            r.tx = 0;
        }
        out.sort_by(|a, b| {
            (
                b.rx.saturating_add(b.tx),
                b.rx_sum.saturating_add(b.tx_sum),
                a.pid,
            )
                .cmp(&(
                    a.rx.saturating_add(a.tx),
                    a.rx_sum.saturating_add(a.tx_sum),
                    b.pid,
                ))
        });
        out
    }
}

/// Render the table (header plus one line per row).
pub fn render(rows: &[TopRow]) -> String {
    // Names are shown escaped, and COMM widens to the widest one.
    let cw = rows
        .iter()
        .map(|r| shown_width(&r.comm))
        .fold(16, usize::max);
    let mut s = format!(
        "{:<7} {:<cw$} {:>9} {:>9} {:>10} {:>10} {:>10}\n",
        "PID", "COMM", "RX_KB", "TX_KB", "RXSUM_KB", "TXSUM_KB", "SUM_KB"
    );
    for r in rows {
        s.push_str(&format!(
            "{:<7} {:<cw$} {:>9} {:>9} {:>10} {:>10} {:>10}\n",
            r.pid,
            Shown(&r.comm),
            r.rx / 1024,
            r.tx / 1024,
            r.rx_sum / 1024,
            r.tx_sum / 1024,
            r.rx_sum.saturating_add(r.tx_sum) / 1024
        ));
    }
    s
}

struct TopSink(TopTable);

impl EventSink for TopSink {
    fn push(&mut self, ev: &Event) -> Result<()> {
        if let Event::Message {
            flow, bytes, dir, ..
        } = ev
        {
            self.0
                .add_msg(flow.pid, flow.tid, &flow.comm, u64::from(*bytes), *dir);
        }
        Ok(())
    }
    fn push_stats(&mut self, _: u64, _: u8, _: u64, _: u64) -> Result<()> {
        Ok(())
    }
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
    fn bytes_written(&self) -> u64 {
        0
    }
}

/// Run `snoop top`: the full-screen view on a terminal (until q), else
/// the plain table until COUNT tables were printed or Ctrl-C.
pub fn run_top(args: &TopArgs) -> Result<()> {
    let ui = crate::tui_run::wants_ui(args);
    if let Some(path) = &args.from {
        if ui {
            return crate::tui_run::run_replay(path, args, args.speed.unwrap_or(1.0));
        }
        return crate::top_from::run_top_from(path, args);
    }
    let kopts = KernelOptions {
        pids: args.pid.clone(),
        comms: args.comm.clone(),
        ring_bytes: 8 << 20,
        ..KernelOptions::default()
    };
    if ui {
        return crate::tui_run::run_live(args, &kopts);
    }
    let table = TopTable::default();
    let mut sink = TopSink(table.clone());
    install_signal_handlers()?;
    let ctl = Control::default();
    let interval = Duration::from_secs(args.interval);
    let mut next = Instant::now()
        .checked_add(interval)
        .with_context(|| format!("INTERVAL {} s is too long for this clock", args.interval))?;
    let mut printed = 0u64;
    let mut out_err: Option<std::io::Error> = None;
    run_pipeline(
        &mut sink,
        &ctl,
        &Limits::default(),
        |drain| with_kernel(&kopts, |src| drain(src)).context("kernel: set up eBPF"),
        || {
            crate::perm::drop_privileges_or_warn();
            eprintln!("snoop: tracing TCP/UDP traffic... Ctrl-C to end");
        },
        |ctl| {
            if signalled() {
                ctl.stop();
                return;
            }
            if Instant::now() < next {
                return;
            }
            // None is unreachable for INTERVAL <= MAX_INTERVAL_SECS; never panic.
            match next.checked_add(interval) {
                Some(n) => next = n,
                None => ctl.stop(),
            }
            // The drain thread decodes asynchronously; a row can land in
            // the next interval at worst.
            let rows = table.take_interval();
            let mut o = std::io::stdout().lock();
            if let Err(e) = writeln!(o)
                .and_then(|_| o.write_all(render(&rows).as_bytes()))
                .and_then(|_| o.flush())
            {
                out_err = Some(e);
                ctl.stop();
            }
            printed += 1;
            if args.count.is_some_and(|c| printed >= c) {
                ctl.stop();
            }
        },
    )?;
    match out_err {
        Some(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Some(e) => Err(e).context("write table"),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_and_resets() {
        let t = TopTable::default();
        let c = snoop_format::comm_bytes("a");
        t.add(1, &c, 2048, Direction::Tx);
        t.add(2, &c, 4096, Direction::Rx);
        let rows = t.take_interval();
        assert_eq!(rows[0].pid, 2);
        assert_eq!(rows[1].tx, 2048);
        let again = t.take_interval();
        assert!(again.iter().all(|r| r.rx == 0 && r.tx == 0));
        assert!(render(&again).contains("RXSUM_KB"));
    }
}
