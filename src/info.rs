//! `snoop info`: what a user wants to know about a trace before analysing it
//! — time range, events per table, size and compression, drops during
//! recording, and whether the file was closed cleanly or recovered.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use serde_json::{json, Value};
use snoop_format::{shown, source, Shown, Table, Trace};

use crate::units;

/// Arguments of `snoop info`.
#[derive(clap::Args)]
pub struct InfoArgs {
    /// Trace file to describe.
    pub file: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Everything `snoop info` reports, computed once for both outputs.
struct Summary {
    trace: Trace,
    tables: BTreeMap<&'static str, u64>,
    events: u64,
    stored: u64,
    raw: u64,
    dropped: BTreeMap<String, u64>,
    /// Map pressure counts (owner-map inserts refused, tracked map full;
    /// owner evictions of older recorders).
    pressure: BTreeMap<String, u64>,
    start_ns: u64,
    end_ns: u64,
}

fn summarize(trace: Trace) -> anyhow::Result<Summary> {
    let tables: BTreeMap<&'static str, u64> = [
        Table::Messages,
        Table::Packets,
        Table::Connections,
        Table::Processes,
    ]
    .into_iter()
    .map(|t| (t.name(), trace.rows(t)))
    .collect();
    let events = tables.values().fold(0u64, |a, n| a.saturating_add(*n));
    let (mut stored, mut raw) = (0u64, 0u64);
    for i in 0..trace.chunks().len() {
        let s = trace
            .chunk_sizes(i)
            .with_context(|| format!("reading chunk {i}"))?;
        stored = s.stored.saturating_add(stored);
        raw = s.raw.saturating_add(raw);
    }
    let mut dropped: BTreeMap<String, u64> = [
        source::MESSAGES,
        source::PACKETS,
        source::CONNECTIONS,
        source::PROCESSES,
    ]
    .into_iter()
    .map(|s| (source::name(s), 0))
    .collect();
    let mut pressure: BTreeMap<String, u64> = [
        source::OWNER_EVICTIONS,
        source::TRACKED_FULL,
        source::OWNER_MAP_FULL,
    ]
    .into_iter()
    .map(|s| (source::name(s), 0))
    .collect();
    let stats: Vec<usize> = trace.chunks_of(Table::Stats).collect();
    for i in stats {
        let b = trace
            .read_chunk(i, snoop_format::ColumnSet::ALL)
            .and_then(|c| c.into_stats())
            .with_context(|| format!("reading stats chunk {i}"))?;
        for ((s, d), e) in b.source.iter().zip(&b.dropped).zip(&b.events) {
            // Saturating: the counts come from the file (a hostile one
            // could make them overflow).
            let (map, v) = if source::is_pressure(*s) {
                (&mut pressure, *e)
            } else {
                (&mut dropped, *d)
            };
            let n = map.entry(source::name(*s)).or_default();
            *n = n.saturating_add(v);
        }
    }
    let start_ns = trace.info().start_ns;
    let last = trace
        .chunks()
        .iter()
        .map(|c| c.t_max)
        .max()
        .unwrap_or(start_ns);
    let end_ns = trace.end_ns().unwrap_or(last).max(start_ns);
    Ok(Summary {
        trace,
        tables,
        events,
        stored,
        raw,
        dropped,
        pressure,
        start_ns,
        end_ns,
    })
}

/// Distinct names the trace's DNS answers were asked for.
fn dns_names(t: &snoop_format::Trace) -> usize {
    t.dns()
        .iter()
        .map(|a| a.name.as_str())
        .collect::<std::collections::HashSet<_>>()
        .len()
}

fn to_json(s: &Summary) -> Value {
    let t = &s.trace;
    let info = t.info();
    let file_bytes = t.file_len();
    json!({
        "format_version": t.version(),
        "complete": t.is_complete(),
        "chunks": t.chunks().len(),
        "events": s.events,
        "tables": s.tables,
        "stats_rows": t.rows(Table::Stats),
        "dns_answers": t.dns().len(),
        "dns_names": dns_names(t),
        "file_bytes": file_bytes,
        "bytes_per_event": if s.events == 0 { 0.0 } else { file_bytes as f64 / s.events as f64 },
        "compression_ratio": if s.stored == 0 { 0.0 } else { s.raw as f64 / s.stored as f64 },
        "start_ns": info.wall_ns(s.start_ns),
        "end_ns": info.wall_ns(s.end_ns),
        "duration_ns": s.end_ns - s.start_ns,
        "dropped": s.dropped,
        "pressure": s.pressure,
        "ignored_bytes": t.recovery().map_or(0, |r| r.ignored_bytes),
        "recovery": t.recovery().map(|r| json!({
            "chunks": r.chunks, "events": r.events, "ignored_bytes": r.ignored_bytes,
            "stopped_because": r.stopped_because,
        })),
        "host": info.host,
        "kernel": info.kernel,
        "snoop_version": info.snoop_version,
        "command": info.command,
        "hooks": t.hooks().map(|h| {
            h.hook_groups()
                .map(|(g, state)| (g.clone(), Value::String(state.clone())))
                .collect::<serde_json::Map<String, Value>>()
        }),
        "packet_mode": t.hooks().and_then(|h| h.setting(snoop_format::PACKET_MODE)),
    })
}

fn print_text(o: &mut impl Write, path: &std::path::Path, s: &Summary) -> std::io::Result<()> {
    let t = &s.trace;
    let info = t.info();
    let file_bytes = t.file_len();
    let dropped = s.dropped.values().fold(0u64, |a, n| a.saturating_add(*n));
    writeln!(o, "file:         {}", Shown(&path.display().to_string()))?;
    writeln!(o, "format:       snoop trace v{}", t.version())?;
    match t.recovery() {
        None => writeln!(o, "state:        complete (closed cleanly)")?,
        Some(r) => writeln!(
            o,
            "state:        RECOVERED (no valid footer): {} chunks / {} events recovered, {} bytes ignored{}",
            r.chunks,
            r.events,
            r.ignored_bytes,
            if r.stopped_because.is_empty() { String::new() } else { format!(" ({})", Shown(&r.stopped_because)) }
        )?,
    }
    writeln!(
        o,
        "host:         {} (kernel {})",
        Shown(&info.host),
        Shown(&info.kernel)
    )?;
    writeln!(
        o,
        "recorded by:  snoop {}: {}",
        Shown(&info.snoop_version),
        Shown(&info.command.join(" "))
    )?;
    writeln!(o, "start:        {}", units::wall(info.wall_ns(s.start_ns)))?;
    writeln!(o, "end:          {}", units::wall(info.wall_ns(s.end_ns)))?;
    writeln!(
        o,
        "duration:     {}",
        units::duration(s.end_ns - s.start_ns)
    )?;
    writeln!(o, "events:       {}", s.events)?;
    for (name, n) in &s.tables {
        writeln!(o, "  {name:<12}{n}")?;
    }
    writeln!(
        o,
        "names:        {} from DNS answers ({} addresses)",
        dns_names(t),
        t.dns().len()
    )?;
    writeln!(o, "chunks:       {}", t.chunks().len())?;
    writeln!(
        o,
        "file size:    {} ({file_bytes} bytes)",
        units::bytes(file_bytes)
    )?;
    if s.events > 0 {
        writeln!(
            o,
            "per event:    {:.2} bytes",
            file_bytes as f64 / s.events as f64
        )?;
    }
    if s.stored > 0 {
        writeln!(
            o,
            "compression:  {:.1}x ({} of columns)",
            s.raw as f64 / s.stored as f64,
            units::bytes(s.raw)
        )?;
    }
    let parts: Vec<String> = s.dropped.iter().map(|(k, v)| format!("{k} {v}")).collect();
    writeln!(o, "dropped:      {dropped} ({})", parts.join(", "))?;
    if s.pressure.values().any(|&v| v > 0) {
        let parts: Vec<String> = s.pressure.iter().map(|(k, v)| format!("{k} {v}")).collect();
        writeln!(o, "map pressure: {}", parts.join(", "))?;
    }
    print_hooks(o, t)
}

/// The hook groups: the active ones on one line, then one line per group
/// that did not run, with why.
fn print_hooks(o: &mut impl Write, t: &Trace) -> std::io::Result<()> {
    let Some(h) = t.hooks() else {
        return writeln!(
            o,
            "hooks:        not recorded (written by a snoop before hook groups were recorded)"
        );
    };
    let active: Vec<std::borrow::Cow<'_, str>> = h
        .hook_groups()
        .filter(|(_, s)| s == "active")
        .map(|(g, _)| shown(g))
        .collect();
    writeln!(
        o,
        "hooks:        active: {}",
        if active.is_empty() {
            "none".to_string()
        } else {
            active.join(", ")
        }
    )?;
    for (g, state) in h.hook_groups().filter(|(_, s)| s != "active") {
        // A trace is a file from anywhere: its group states are shown
        // escaped like any other text from it.
        writeln!(o, "  {:<17}{}", Shown(g), Shown(state))?;
    }
    if let Some(mode) = h.setting(snoop_format::PACKET_MODE) {
        writeln!(o, "packets:      {}", Shown(mode))?;
    }
    Ok(())
}

/// Run `snoop info`.
pub fn run(args: &InfoArgs) -> anyhow::Result<()> {
    let trace =
        Trace::open(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let s = summarize(trace).with_context(|| format!("reading {}", args.file.display()))?;
    if args.json {
        let v = to_json(&s);
        writeln!(
            std::io::stdout().lock(),
            "{}",
            serde_json::to_string_pretty(&v)?
        )?;
    } else {
        print_text(&mut std::io::stdout().lock(), &args.file, &s)?;
    }
    if let Some(r) = s.trace.recovery() {
        eprintln!(
            "snoop: warning: {} was not closed cleanly; recovered {} chunks / {} events, ignored {} bytes",
            Shown(&args.file.display().to_string()),
            r.chunks,
            r.events,
            r.ignored_bytes
        );
    }
    Ok(())
}
