//! Running `snoop top`'s full-screen view on a real terminal: entering raw
//! mode and the alternate screen and always leaving them (on return, on
//! error and on panic), reading keys, and the two clocks that drive
//! [`TopModel`]: live traffic from the kernel ticked every INTERVAL of wall
//! time, or a recorded trace replayed interval by interval at real or
//! multiplied speed (`--speed`), its rates those of the recording.

use std::io::{IsTerminal, Stdout};
use std::path::Path;
use std::sync::{Arc, Mutex, Once, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use crossterm::event::{self, Event as TermEvent};
use crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use crossterm::{cursor, execute};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;
use snoop_format::{col, ColumnSet, Direction, EventBatch, Flow, Table, Trace};

use crate::event::Event;
use crate::kernel::{with_kernel, KernelOptions};
use crate::pipeline::{run_pipeline, Control, EventSink, Limits};
use crate::record::{install_signal_handlers, signalled};
use crate::top::TopArgs;
use crate::top_from::TopFilter;
use crate::tui::{draw, Action, TopModel};

/// Whether `snoop top` shows the full-screen view: stdout is a terminal
/// and `--plain` was not given.
pub fn wants_ui(args: &TopArgs) -> bool {
    !args.plain && std::io::stdout().is_terminal()
}

/// Put the terminal back as it was: raw mode off, alternate screen left,
/// cursor shown. Safe to call more than once.
fn restore_terminal() {
    let _ = disable_raw_mode();
    let _ = execute!(std::io::stdout(), LeaveAlternateScreen, cursor::Show);
}

/// The terminal in full-screen mode until [`Screen::leave`], which says
/// when restoring fails. On the paths that cannot (an error returned past
/// it, unwinding) dropping it restores the terminal as well as it can, and
/// a panic restores it before its message is printed.
struct Screen {
    term: Terminal<CrosstermBackend<Stdout>>,
    left: bool,
}

impl Screen {
    fn enter() -> Result<Screen> {
        static HOOK: Once = Once::new();
        HOOK.call_once(|| {
            let prev = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore_terminal();
                prev(info);
            }));
        });
        enable_raw_mode().context("terminal: raw mode")?;
        if let Err(e) = execute!(std::io::stdout(), EnterAlternateScreen, cursor::Hide) {
            restore_terminal();
            return Err(e).context("terminal: alternate screen");
        }
        match Terminal::new(CrosstermBackend::new(std::io::stdout())) {
            Ok(term) => Ok(Screen { term, left: false }),
            Err(e) => {
                restore_terminal();
                Err(e).context("terminal: set up")
            }
        }
    }

    fn draw(&mut self, m: &mut TopModel) -> Result<()> {
        self.term
            .draw(|f| draw(f, m))
            .map(|_| ())
            .context("terminal: draw")
    }
}

impl Screen {
    /// Restore the terminal: raw mode off, alternate screen left, cursor
    /// shown.
    fn leave(mut self) -> Result<()> {
        self.left = true;
        disable_raw_mode().context("terminal: leave raw mode")?;
        execute!(self.term.backend_mut(), LeaveAlternateScreen, cursor::Show)
            .context("terminal: leave the alternate screen")
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        if !self.left {
            restore_terminal();
        }
    }
}

/// Handle the terminal events already waiting (or arriving within
/// `wait`); says whether to quit. Redraws after each.
fn handle_events(screen: &mut Screen, m: &mut TopModel, wait: Duration) -> Result<bool> {
    let mut wait = wait;
    while event::poll(wait).context("terminal: read keys")? {
        wait = Duration::ZERO;
        match event::read().context("terminal: read keys")? {
            TermEvent::Key(k) => {
                if m.key(k) == Action::Quit {
                    return Ok(true);
                }
            }
            TermEvent::Resize(..) => {}
            _ => continue,
        }
        screen.draw(m)?;
    }
    Ok(false)
}

struct UiSink(Arc<Mutex<TopModel>>);

impl EventSink for UiSink {
    fn push(&mut self, ev: &Event) -> Result<()> {
        if let Event::Message {
            flow, bytes, dir, ..
        } = ev
        {
            self.0.lock().unwrap_or_else(PoisonError::into_inner).add(
                flow,
                u64::from(*bytes),
                *dir,
            );
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

/// The live full-screen view, until q, Ctrl-C, a signal or COUNT ticks.
pub fn run_live(args: &TopArgs, kopts: &KernelOptions) -> Result<()> {
    let model = Arc::new(Mutex::new(TopModel::default()));
    model.lock().unwrap_or_else(PoisonError::into_inner).status =
        format!("live, every {} s", args.interval);
    let mut sink = UiSink(model.clone());
    install_signal_handlers()?;
    let ctl = Control::default();
    let interval = Duration::from_secs(args.interval);
    let mut screen: Option<Screen> = None;
    let mut failed: Option<anyhow::Error> = None;
    let mut last = Instant::now();
    let mut next = last
        .checked_add(interval)
        .with_context(|| format!("INTERVAL {} s is too long for this clock", args.interval))?;
    run_pipeline(
        &mut sink,
        &ctl,
        &Limits::default(),
        |drain| with_kernel(kopts, |src| drain(src)).context("kernel: set up eBPF"),
        crate::perm::drop_privileges_or_warn,
        |ctl| {
            if signalled() {
                ctl.stop();
                return;
            }
            let mut step = || -> Result<bool> {
                let s = match &mut screen {
                    Some(s) => s,
                    None => {
                        let mut s = Screen::enter()?;
                        s.draw(&mut model.lock().unwrap_or_else(PoisonError::into_inner))?;
                        screen.insert(s)
                    }
                };
                let mut m = model.lock().unwrap_or_else(PoisonError::into_inner);
                if handle_events(s, &mut m, Duration::ZERO)? {
                    return Ok(true);
                }
                let now = Instant::now();
                if now < next {
                    return Ok(false);
                }
                m.tick(u64::try_from((now - last).as_nanos()).unwrap_or(u64::MAX));
                last = now;
                // None is unreachable for INTERVAL <= MAX_INTERVAL_SECS.
                next = match next.checked_add(interval) {
                    Some(n) => n.max(now),
                    None => return Ok(true),
                };
                s.draw(&mut m)?;
                Ok(args.count.is_some_and(|c| m.ticks >= c))
            };
            match step() {
                Ok(false) => {}
                Ok(true) => ctl.stop(),
                Err(e) => {
                    failed = Some(e);
                    ctl.stop();
                }
            }
        },
    )?;
    if let Some(s) = screen {
        s.leave()?;
    }
    failed.map_or(Ok(()), Err)
}

/// Reads a trace's messages in order, chunk by chunk, one chunk in memory.
struct Messages<'a> {
    trace: &'a Trace,
    chunks: Vec<usize>,
    next_chunk: usize,
    batch: Option<EventBatch>,
    row: usize,
    filter: TopFilter,
}

impl<'a> Messages<'a> {
    fn new(trace: &'a Trace, filter: TopFilter) -> Self {
        Messages {
            trace,
            chunks: trace.chunks_of(Table::Messages).collect(),
            next_chunk: 0,
            batch: None,
            row: 0,
            filter,
        }
    }

    fn rows(b: &EventBatch) -> usize {
        b.rows.min(b.ts.len()).min(b.bytes.len()).min(b.dir.len())
    }

    /// Whether every message was handed out.
    fn done(&self) -> bool {
        self.next_chunk >= self.chunks.len()
            && self
                .batch
                .as_ref()
                .is_none_or(|b| self.row >= Self::rows(b))
    }

    /// Add to `m` every message before `limit` (trace time).
    fn feed_until(&mut self, limit: u64, m: &mut TopModel) -> Result<()> {
        loop {
            let b = match &self.batch {
                Some(b) if self.row < Self::rows(b) => b,
                _ => {
                    let Some(&i) = self.chunks.get(self.next_chunk) else {
                        return Ok(());
                    };
                    self.next_chunk += 1;
                    let want = ColumnSet::of(&[
                        col::TS,
                        col::FLOW,
                        col::BYTES,
                        col::DIR,
                        col::F_PID,
                        col::F_TID,
                        col::F_COMM,
                        col::F_PROTO,
                        col::F_FAMILY,
                        col::F_LADDR,
                        col::F_LPORT,
                        col::F_RADDR,
                        col::F_RPORT,
                    ]);
                    let b = self
                        .trace
                        .read_chunk(i, want)
                        .and_then(|c| c.into_events())
                        .with_context(|| format!("read messages chunk {i}"))?;
                    self.batch = Some(b);
                    self.row = 0;
                    continue;
                }
            };
            let r = self.row;
            if b.ts[r] >= limit {
                return Ok(());
            }
            self.row += 1;
            let fl = &b.flows;
            let f = b.flow[r] as usize;
            let (Some(&pid), Some(&comm)) = (fl.pid.get(f), fl.comm.get(f)) else {
                continue;
            };
            if !self.filter.wants(pid, &comm) {
                continue;
            }
            let flow = Flow {
                pid,
                tid: fl.tid.get(f).copied().unwrap_or(pid),
                comm,
                family: fl.family.get(f).copied().unwrap_or(0),
                proto: fl.proto.get(f).copied().unwrap_or(0),
                laddr: fl.laddr.get(f).copied().unwrap_or_default(),
                lport: fl.lport.get(f).copied().unwrap_or(0),
                raddr: fl.raddr.get(f).copied().unwrap_or_default(),
                rport: fl.rport.get(f).copied().unwrap_or(0),
                ..Flow::default()
            };
            let dir = if b.dir[r] == Direction::Rx as u8 {
                Direction::Rx
            } else {
                Direction::Tx
            };
            m.add(&flow, u64::from(b.bytes[r]), dir);
        }
    }
}

/// Replay `path` through the full-screen view, one INTERVAL of trace time
/// every INTERVAL / `speed` of wall time, until q (the view stays on the
/// last interval at the end of the trace) or COUNT ticks.
pub fn run_replay(path: &Path, args: &TopArgs, speed: f64) -> Result<()> {
    let trace = Trace::open(path).with_context(|| format!("open {}", path.display()))?;
    let start = trace.info().start_ns;
    let end = trace.end_ns().unwrap_or(start);
    let interval_ns = args.interval.saturating_mul(1_000_000_000);
    // A recovered trace has no end time: its span is not known ahead.
    let span = trace
        .end_ns()
        .map(|e| format!(" of {} s", e.saturating_sub(start).div_ceil(1_000_000_000)))
        .unwrap_or_default();
    let name = snoop_format::Shown(&path.display().to_string()).to_string();
    let recovered = if trace.recovery().is_some() {
        " (recovered: not closed cleanly)"
    } else {
        ""
    };
    let tick_real = Duration::try_from_secs_f64(args.interval as f64 / speed)
        .with_context(|| format!("--speed {speed} with INTERVAL {} s", args.interval))?;
    let mut msgs = Messages::new(&trace, crate::top_from::TopFilter::from_args(args));
    let mut m = TopModel::default();
    let status = |k: u64, done: bool| {
        let at = k.saturating_mul(args.interval);
        let end = if done {
            "  end of trace: q to quit"
        } else {
            ""
        };
        format!("{name}{recovered} at {speed}x  +{at} s{span}{end}")
    };
    m.status = status(0, false);
    let mut screen = Screen::enter()?;
    screen.draw(&mut m)?;
    let mut k = 0u64;
    let mut finished = false;
    let mut due = Instant::now() + tick_real;
    loop {
        let paused = m.paused();
        let wait = if finished || paused {
            Duration::from_secs(1)
        } else {
            due.saturating_duration_since(Instant::now())
        };
        if handle_events(&mut screen, &mut m, wait)? {
            return screen.leave();
        }
        if paused && !m.paused() {
            // Resumed: the next interval is a whole one again.
            due = Instant::now() + tick_real;
        }
        if finished || m.paused() || Instant::now() < due {
            continue;
        }
        let boundary = start.saturating_add((k + 1).saturating_mul(interval_ns));
        msgs.feed_until(boundary, &mut m)
            .with_context(|| format!("top --from {}", path.display()))?;
        m.tick(interval_ns);
        k += 1;
        finished = boundary >= end && msgs.done();
        m.status = status(k, finished);
        screen.draw(&mut m)?;
        if args.count.is_some_and(|c| k >= c) {
            return screen.leave();
        }
        due += tick_real;
        let now = Instant::now();
        if due < now {
            due = now;
        }
    }
}
