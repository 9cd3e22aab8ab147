//! `snoop record`: the front end that ties the pieces together — output
//! file, kernel options from the flags, signals, the live status line, the
//! pipeline, the footer and the final summary.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use snoop_format::{FileInfo, TraceWriter, WriterOptions};

use crate::args::RecordArgs;
use crate::kernel::{cgroup_id, with_kernel, KernelOptions};
use crate::pipeline::{run_pipeline, Control, Limits, Summary};
use crate::skel::kind;

static SIGNALS: AtomicU32 = AtomicU32::new(0);

extern "C" fn on_signal(_sig: libc::c_int) {
    // Only async-signal-safe work here: an atomic and _exit.
    if SIGNALS.fetch_add(1, Ordering::SeqCst) >= 1 {
        // Second Ctrl-C: leave now. Every sealed chunk is already in the
        // file (one write per chunk), so the reader recovers them.
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(130) };
    }
}

/// Install SIGINT/SIGTERM handlers that count signals.
pub(crate) fn install_signal_handlers() -> Result<()> {
    SIGNALS.store(0, Ordering::SeqCst);
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction is valid; we set a plain handler that
        // only touches an atomic and calls _exit.
        let rc = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error()).context("install signal handler");
        }
    }
    Ok(())
}

/// Has SIGINT/SIGTERM arrived?
pub(crate) fn signalled() -> bool {
    SIGNALS.load(Ordering::SeqCst) > 0
}

/// Translate the flags into kernel options.
pub fn kernel_options(args: &RecordArgs) -> Result<KernelOptions> {
    let cgroup = match &args.cgroup {
        // A path, absolute or under the mount; else a container id prefix
        // or a systemd unit name.
        Some(p) => match cgroup_id(p) {
            Ok(id) => id,
            Err(e) => crate::cgroups::find_container(p)
                .map(|(id, _)| id)
                .map_err(|c| anyhow::anyhow!("--cgroup {p}: {e:#}; {c:#}"))?,
        },
        None => 0,
    };
    Ok(KernelOptions {
        pids: args.pid.clone(),
        comms: args.comm.clone(),
        follow: args.follow,
        cgroup,
        port: args.port.unwrap_or(0),
        proto: args.proto.map_or(0, |p| p.number()),
        family: if args.ipv4 {
            snoop_format::AF_INET
        } else if args.ipv6 {
            snoop_format::AF_INET6
        } else {
            0
        },
        packets: args.packet_mode() != crate::args::PacketMode::Off,
        pkt_runs: args.packet_mode() == crate::args::PacketMode::Runs,
        msg_batch: true,
        dns: !args.no_dns,
        lifecycle: true,
        existing: true,
        ifaces: args.iface.clone(),
        ring_bytes: args.ring_size.unwrap_or(crate::args::DEFAULT_RING_SIZE),
        owner_entries: args.owner_map_entries,
    })
}

/// Run `snoop record` with these arguments until a limit or a signal.
pub fn run_record(args: &RecordArgs) -> Result<()> {
    let kopts = kernel_options(args)?;
    // A size the user gave that does not split into one power-of-two ring
    // per CPU: say what it becomes (the default is not the user's doing).
    if let Some(given) = args.ring_size {
        if let Some(note) = libbpf_rs::num_possible_cpus()
            .ok()
            .and_then(|cpus| crate::args::ring_size_note(&crate::human_bytes(given), given, cpus))
        {
            eprintln!("snoop: {note}");
        }
    }
    let limits = Limits {
        max_events: args.max_events,
        max_bytes: args.max_size,
    };
    let file = crate::output::create_output(&args.output, args.force)?;
    record_into(file, &args.output, &kopts, &limits, args.duration)
}

/// How a recording ended badly, worded by the stage that failed; the
/// trace is removed only when it holds nothing.
fn failed(path: &Path, e: anyhow::Error, written: (usize, u64), stage: Stage) -> anyhow::Error {
    // What the file holds, as a reader will see it (the writer's own count
    // misses chunks sealed in the background and written by a failed
    // close); the writer's count only if the file cannot be read.
    let (chunks, events) = match snoop_format::Trace::open(path) {
        Ok(t) => (
            t.chunks().len(),
            t.chunks()
                .iter()
                .fold(0u64, |a, c| a.saturating_add(u64::from(c.rows))),
        ),
        Err(_) => written,
    };
    if chunks == 0 {
        // Nothing was recorded (e.g. the kernel side never came up): do
        // not leave an empty trace behind.
        let _ = std::fs::remove_file(path);
        return match stage {
            Stage::SetUp => e,
            _ => e.context(format!(
                "recording to {} (nothing was kept)",
                path.display()
            )),
        };
    }
    let full = e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
            .or_else(|| {
                c.downcast_ref::<snoop_format::FormatError>()
                    .and_then(snoop_format::FormatError::raw_os_error)
            })
            == Some(libc::ENOSPC)
    });
    let what = match (full, stage) {
        (true, _) => "disk full writing",
        (false, Stage::Closing) => "closing",
        (false, _) => "error writing",
    };
    e.context(format!(
        "{what} {p}: kept {events} events in {chunks} chunks; the trace is readable \
         (snoop info {p})",
        p = path.display()
    ))
}

/// Which part of a recording failed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Loading and attaching (nothing recorded yet).
    SetUp,
    /// Draining and writing.
    Recording,
    /// Sealing the last chunks and writing the footer.
    Closing,
}

/// Rows per chunk while recording: 128 Ki, half the format's default. A
/// chunk's flow dictionary and columns are filled at random (a new flow per
/// short connection) and read back at sealing; at half the size more of
/// them stay in the core's caches (recorder CPU per short connection
/// -15 to -20% in `crates/record/examples/pipeline_cost.rs`) while the
/// file stays the same size (64 Ki saved a little more CPU but compressed
/// 9% worse). SNOOP_CHUNK_ROWS overrides it (1..=the format's limit) for
/// measurements.
pub fn record_chunk_rows() -> usize {
    std::env::var("SNOOP_CHUNK_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0 && n <= snoop_format::MAX_CHUNK_ROWS as usize)
        .unwrap_or(128 * 1024)
}

/// zstd level of the column frames while recording. SNOOP_ZSTD_LEVEL
/// overrides it (1..=19, or negative for zstd's fast levels) for
/// measurements.
pub fn record_zstd_level() -> i32 {
    std::env::var("SNOOP_ZSTD_LEVEL")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &i32| (-7..=19).contains(&n) && n != 0)
        .unwrap_or(WriterOptions::default().zstd_level)
}

fn record_into(
    file: std::fs::File,
    path: &Path,
    kopts: &KernelOptions,
    limits: &Limits,
    duration: Option<Duration>,
) -> Result<()> {
    let info = FileInfo::from_host(std::env::args().collect());
    let opts = WriterOptions {
        chunk_rows: record_chunk_rows(),
        zstd_level: record_zstd_level(),
    };
    let mut writer = match TraceWriter::new(file, &info, opts) {
        Ok(w) => w,
        Err(e) => {
            let e =
                anyhow::Error::new(e).context(format!("write trace header to {}", path.display()));
            return Err(failed(path, e, (0, 0), Stage::SetUp));
        }
    };
    // The drain thread pushes rows; sorting and compressing a full chunk
    // must not stop it from emptying the rings.
    writer
        .seal_in_background()
        .context("start the chunk sealing thread")?;
    install_signal_handlers()?;
    let ctl = Control::default();
    let started = Instant::now();
    let bar = status_bar();
    let mut rate = RateMeter::default();
    let ready = std::cell::Cell::new(false);
    let summary = record_session(
        &mut writer,
        kopts,
        limits,
        &ctl,
        || {
            ready.set(true);
            crate::perm::drop_privileges_or_warn();
            eprintln!("snoop: recording to {}", path.display());
        },
        |ctl| {
            if signalled() || duration.is_some_and(|d| started.elapsed() >= d) {
                ctl.stop();
            }
            if let Some(b) = &bar {
                b.set_message(rate.status(ctl));
                b.tick();
            }
        },
    );
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let summary = match summary {
        Ok(s) => s,
        Err(e) => {
            let stage = if ready.get() {
                Stage::Recording
            } else {
                Stage::SetUp
            };
            return Err(failed(path, e, writer.written(), stage));
        }
    };
    let bytes = writer.bytes_written();
    // finish consumes the writer: note what is durable before.
    let before = writer.written();
    if let Err(e) = writer.finish(snoop_format::boottime_ns()) {
        let e = anyhow::Error::new(e).context("write the last chunks and the footer");
        return Err(failed(path, e, before, Stage::Closing));
    }
    print_summary(path, &summary, bytes, started.elapsed());
    Ok(())
}

/// Record into `writer` until `ctl` is stopped (or a limit is hit):
/// load and attach per `kopts`, call `on_ready` once everything is attached,
/// and `monitor` about every 100 ms. The caller finishes the writer. This is
/// the library entry point the tests use; `run_record` wraps it with signals,
/// the status line and the summary.
pub fn record_session<W: std::io::Write + Send>(
    writer: &mut TraceWriter<W>,
    kopts: &KernelOptions,
    limits: &Limits,
    ctl: &Control,
    on_ready: impl FnOnce(),
    monitor: impl FnMut(&Control),
) -> Result<Summary> {
    run_pipeline(
        writer,
        ctl,
        limits,
        |drain| {
            // Set-up errors are worded as such; errors while recording
            // pass through as they are (the caller words them).
            let mut recording: Option<anyhow::Error> = None;
            with_kernel(kopts, |src| {
                recording = drain(src).err();
                Ok(())
            })
            .context("set up eBPF")?;
            recording.map_or(Ok(()), Err)
        },
        on_ready,
        monitor,
    )
}

fn status_bar() -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    b.set_style(
        ProgressStyle::with_template("{spinner} {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    Some(b)
}

/// Events per second over the last status interval.
#[derive(Default)]
struct RateMeter {
    last: Option<(Instant, u64)>,
    rate: f64,
}

impl RateMeter {
    fn status(&mut self, ctl: &Control) -> String {
        let events = ctl.events.load(Ordering::Relaxed);
        let now = Instant::now();
        match self.last {
            Some((t, e)) if now.duration_since(t) >= Duration::from_millis(500) => {
                self.rate = (events - e.min(events)) as f64 / now.duration_since(t).as_secs_f64();
                self.last = Some((now, events));
            }
            None => self.last = Some((now, events)),
            _ => {}
        }
        let bytes = ctl.bytes.load(Ordering::Relaxed);
        let dropped =
            ctl.kernel_drops.load(Ordering::Relaxed) + ctl.user_drops.load(Ordering::Relaxed);
        let per = if events > 0 {
            bytes as f64 / events as f64
        } else {
            0.0
        };
        format!(
            "{:.0} events/s, {events} events, {dropped} dropped, {} written, {per:.1} B/event",
            self.rate,
            human_bytes(bytes)
        )
    }
}

/// `1.5 MiB`-style sizes.
pub fn human_bytes(b: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < U.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

fn print_summary(path: &Path, s: &Summary, bytes: u64, elapsed: Duration) {
    let names = ["messages", "packets", "connections", "processes", "DNS"];
    // DNS records are no rows: the trace keeps the names parsed from them.
    let total: u64 = s.events.iter().take(kind::DNS as usize).sum();
    let kdrops: u64 = s.kernel.iter().map(|c| c.drops).sum();
    eprintln!(
        "snoop: wrote {} in {:.1}s: {total} events ({}), {} dropped in kernel, {} in userspace; {}{}",
        path.display(),
        elapsed.as_secs_f64(),
        names
            .iter()
            .zip(s.events.iter())
            .take(kind::DNS as usize)
            .map(|(n, c)| {
                if *n == "packets" && s.wire_packets > *c {
                    format!("{c} packet runs of {} packets", s.wire_packets)
                } else {
                    format!("{c} {n}")
                }
            })
            .chain((s.dns_names > 0).then(|| format!("{} DNS names", s.dns_names)))
            .collect::<Vec<_>>()
            .join(", "),
        kdrops,
        s.user_drops,
        human_bytes(bytes),
        if total > 0 {
            format!(", {:.1} B/event", bytes as f64 / total as f64)
        } else {
            String::new()
        }
    );
    for (k, c) in s.kernel.iter().enumerate().take(kind::COUNT) {
        if c.drops > 0 {
            eprintln!(
                "snoop: {} {} records lost: ring buffer full (try --ring-size)",
                c.drops, names[k]
            );
        }
    }
    if s.pressure.owner_map_full > 0 {
        eprintln!(
            "snoop: {} socket-owner inserts refused: the owner map was full (those sockets' \
             packets and state changes show as unattributed; try --owner-map-entries)",
            s.pressure.owner_map_full
        );
    }
    if s.pressure.tracked_full > 0 {
        eprintln!(
            "snoop: {} selected processes did not fit in the tracked-process map: their events are not recorded",
            s.pressure.tracked_full
        );
    }
    if let Some(e) = &s.first_decode_error {
        eprintln!("snoop: first undecodable record: {e}");
    }
}
