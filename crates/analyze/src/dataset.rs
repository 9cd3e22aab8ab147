//! `snoop export FILE... --dataset DIR`: every table of many traces as one
//! Hive-partitioned Parquet dataset, `DIR/table=T/host=H/date=YYYY-MM-DD/
//! part-N.parquet`, for engines that scale past one machine (DuckDB, Spark,
//! Trino, polars). A fleet's traces pile up in one directory tree that those
//! engines read as tables, with the partitions pruning hosts and days.
//!
//! Exporting only adds files: each trace becomes new parts (the next free
//! numbers) written under temporary names and linked into place when the
//! whole trace is written, so readers never see half a trace. The ledger
//! `DIR/_snoop_traces.jsonl` (engines skip names starting with `_`) lists
//! the recordings already in the dataset; a trace whose recording is there
//! is skipped with a message, so re-running an export over a directory of
//! traces adds only the new ones.
//!
//! Column types are chosen for every engine: integers are signed 64-bit
//! (Spark has no unsigned types), times are timestamps in UTC from the
//! trace's wall clock (`time`, microseconds, which every engine reads, and
//! `time_ns`, nanoseconds since the Unix epoch), names (`comm`, `container`,
//! `remote_name`, the dns table's `name`) are dictionary (categorical)
//! strings. Besides the chunk tables, a trace's DNS answers are table `dns`.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use polars::io::parquet::write::BatchedWriter;
use polars::prelude::*;
use rayon::prelude::*;
use snoop_format::{shown, Table, Trace};

use crate::cli::ExportArgs;
use crate::export::chunk_frame;
use crate::filter::Filter;
use crate::frame::i64c;
use crate::load::{open_all, FileMeta};
use crate::units::civil_from_days;

/// The ledger of recordings in a dataset.
const LEDGER: &str = "_snoop_traces.jsonl";
/// Columns holding names: dictionary strings.
const NAME_COLUMNS: [&str; 4] = ["comm", "container", "remote_name", "name"];
const DAY_NS: i64 = 86_400_000_000_000;

/// A partition value as a directory name, escaped the way Hive escapes
/// them: every byte outside `A-Za-z0-9._-` becomes `%XX`, and so does a
/// value made only of dots; the empty value is Hive's default partition.
pub fn hive_escape(v: &str) -> String {
    if v.is_empty() {
        return "__HIVE_DEFAULT_PARTITION__".into();
    }
    let all_dots = v.bytes().all(|b| b == b'.');
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && !all_dots) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `YYYY-MM-DD` (UTC) of a wall-clock time in ns since the Unix epoch.
fn date_of(wall_ns: i64) -> String {
    let (y, m, d) = civil_from_days(wall_ns.div_euclid(DAY_NS));
    format!("{y:04}-{m:02}-{d:02}")
}

/// What identifies a recording: its host, clocks, start and command line
/// (a recording cannot start twice at the same boot-clock nanosecond).
fn recording_id(m: &FileMeta) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325; // FNV-1a
    let mut eat = |bytes: &[u8]| {
        for &b in bytes.iter().chain(&[0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(m.info.host.as_bytes());
    eat(&m.info.boot_to_wall_ns.to_le_bytes());
    eat(&m.info.start_ns.to_le_bytes());
    for a in &m.info.command {
        eat(a.as_bytes());
    }
    format!("{h:016x}")
}

/// The recordings listed in the ledger.
fn read_ledger(dir: &Path) -> anyhow::Result<HashSet<String>> {
    let path = dir.join(LEDGER);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashSet::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut ids = HashSet::new();
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("{} line {}: not JSON", path.display(), n + 1))?;
        let Some(id) = v.get("recording").and_then(|r| r.as_str()) else {
            anyhow::bail!("{} line {}: no \"recording\"", path.display(), n + 1);
        };
        ids.insert(id.to_string());
    }
    Ok(ids)
}

/// The raw rows of one chunk shaped for the dataset, with the date of
/// each row: `ts_ns` becomes `time` and `time_ns` (wall clock), flow tables get
/// `container`, integers become i64 and names dictionary strings.
fn shape(mut df: DataFrame, m: &FileMeta) -> anyhow::Result<(DataFrame, Vec<String>)> {
    let ts = df.column("ts_ns")?.u64()?.clone();
    let wall: Vec<i64> = ts.into_no_null_iter().map(|t| m.info.wall_ns(t)).collect();
    let dates: Vec<String> = wall.iter().map(|&w| date_of(w)).collect();
    // Microseconds: the unit every engine reads (Spark refuses nanosecond
    // timestamps); `time_ns` keeps the exact time.
    let micros: Vec<i64> = wall.iter().map(|&w| w.div_euclid(1000)).collect();
    let time = Int64Chunked::from_vec("time".into(), micros)
        .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
        .into_series()
        .into_column();
    df.drop_in_place("ts_ns")?;
    df.insert_column(0, time)?;
    df.insert_column(1, i64c("time_ns", wall))?;
    if let Ok(cg) = df.column("cgroup").and_then(|c| c.u64().cloned()) {
        let names: Vec<Option<String>> = cg.into_no_null_iter().map(|id| m.container(id)).collect();
        let at = df.get_column_index("comm").map_or(df.width(), |i| i + 1);
        df.insert_column(at, Column::new("container".into(), names))?;
    }
    let cat = DataType::from_categories(Categories::global());
    let mut cols: Vec<Column> = Vec::with_capacity(df.width());
    for c in df.columns() {
        let name = c.name().as_str();
        cols.push(match c.dtype() {
            DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
                c.strict_cast(&DataType::Int64).map_err(|e| {
                    anyhow::anyhow!("column {name}: a value exceeds 64-bit signed: {e}")
                })?
            }
            DataType::String if NAME_COLUMNS.contains(&name) => c.cast(&cat)?,
            _ => c.clone(),
        });
    }
    Ok((DataFrame::new_infer_height(cols)?, dates))
}

/// One partition being written: a temporary file and its writer.
struct Part {
    tmp: PathBuf,
    dir: PathBuf,
    w: BatchedWriter<File>,
    rows: usize,
}

/// Append one shaped frame to its date partitions of table `name`, opening
/// a part for each date not seen yet.
fn write_frame(
    parts: &mut BTreeMap<String, Part>,
    name: &str,
    root: &Path,
    host_dir: &str,
    df: &DataFrame,
    dates: &[String],
) -> anyhow::Result<()> {
    let mut days: Vec<&String> = dates.iter().collect();
    days.dedup();
    days.sort();
    days.dedup();
    for day in days {
        let piece = if dates.iter().all(|d| d == day) {
            df.clone()
        } else {
            let mask: BooleanChunked = dates.iter().map(|d| d == day).collect::<BooleanChunked>();
            df.filter(&mask)?
        };
        if piece.height() == 0 {
            continue;
        }
        if !parts.contains_key(day) {
            let dir = root
                .join(format!("table={name}"))
                .join(format!("host={host_dir}"))
                .join(format!("date={day}"));
            fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            let tmp = dir.join(format!(".snoop-{}.parquet.tmp", std::process::id()));
            let file =
                File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
            let w = ParquetWriter::new(file)
                .with_compression(ParquetCompression::Zstd(None))
                .batched(piece.schema())
                .map_err(|e| anyhow::anyhow!("writing {}: {e}", tmp.display()))?;
            parts.insert(
                day.clone(),
                Part {
                    tmp,
                    dir,
                    w,
                    rows: 0,
                },
            );
        }
        if let Some(p) = parts.get_mut(day) {
            p.w.write_batch(&piece)
                .map_err(|e| anyhow::anyhow!("writing {}: {e}", p.tmp.display()))?;
            p.rows += piece.height();
        }
    }
    Ok(())
}

/// Write `table` of one trace into new temporary parts, one per date.
fn export_table(
    tr: &Trace,
    m: &FileMeta,
    table: Table,
    root: &Path,
    host_dir: &str,
    done: &mut Vec<(PathBuf, PathBuf, usize)>,
) -> anyhow::Result<()> {
    let ff = &m.filter;
    let chunks: Vec<usize> = tr
        .chunks_of(table)
        .filter(|&c| ff.chunk_ok(&tr.chunks()[c]))
        .collect();
    let mut parts: BTreeMap<String, Part> = BTreeMap::new();
    let batch = rayon::current_num_threads().max(1) * 4;
    for group in chunks.chunks(batch) {
        let frames: Vec<(DataFrame, Vec<String>)> = group
            .par_iter()
            .map(|&ci| {
                let r = chunk_frame(tr, ci, table, ff, None)
                    .and_then(|df| shape(df, m))
                    .with_context(|| format!("{}: chunk {ci}", m.path.display()));
                tr.release_chunk(ci);
                r
            })
            .collect::<anyhow::Result<_>>()?;
        for (df, dates) in frames {
            write_frame(&mut parts, table.name(), root, host_dir, &df, &dates)?;
        }
    }
    finish_parts(parts, done)
}

/// Write the trace's DNS answers (format 1.3) as table `dns`: one row per
/// address an answer gave, the name asked (`name`) a dictionary string.
fn export_dns(
    tr: &Trace,
    m: &FileMeta,
    root: &Path,
    host_dir: &str,
    done: &mut Vec<(PathBuf, PathBuf, usize)>,
) -> anyhow::Result<()> {
    let df = crate::export::dns_frame(std::slice::from_ref(tr), std::slice::from_ref(m), false)?;
    if df.height() == 0 {
        return Ok(());
    }
    let (df, dates) = shape(df, m).with_context(|| format!("{}: DNS answers", m.path.display()))?;
    let mut parts = BTreeMap::new();
    write_frame(&mut parts, "dns", root, host_dir, &df, &dates)?;
    finish_parts(parts, done)
}

/// Close one table's parts and hand them over for publishing.
fn finish_parts(
    parts: BTreeMap<String, Part>,
    done: &mut Vec<(PathBuf, PathBuf, usize)>,
) -> anyhow::Result<()> {
    for (_, p) in parts {
        p.w.finish()
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", p.tmp.display()))?;
        done.push((p.tmp, p.dir, p.rows));
    }
    Ok(())
}

/// The first free part number in `dir`.
fn next_part(dir: &Path) -> anyhow::Result<u64> {
    let mut next = 0;
    for e in fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let name = e?.file_name();
        let n = name
            .to_str()
            .and_then(|s| s.strip_prefix("part-"))
            .and_then(|s| s.strip_suffix(".parquet"))
            .and_then(|s| s.parse::<u64>().ok());
        if let Some(n) = n {
            next = next.max(n + 1);
        }
    }
    Ok(next)
}

/// Give a finished temporary part its final name: the first free
/// `part-N.parquet` (a hard link never replaces an existing file).
fn publish(tmp: &Path, dir: &Path) -> anyhow::Result<PathBuf> {
    let mut n = next_part(dir)?;
    loop {
        let dest = dir.join(format!("part-{n}.parquet"));
        match fs::hard_link(tmp, &dest) {
            Ok(()) => {
                fs::remove_file(tmp).with_context(|| format!("cannot remove {}", tmp.display()))?;
                return Ok(dest);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => n += 1,
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", dest.display())),
        }
    }
}

/// Run `snoop export FILE... --dataset DIR`.
pub fn run_dataset(args: &ExportArgs, root: &Path) -> anyhow::Result<()> {
    let filter = Filter::parse(&args.filter)?;
    fs::create_dir_all(root).with_context(|| format!("cannot create {}", root.display()))?;
    let mut known = read_ledger(root)?;
    let shown_root = shown(&root.display().to_string()).into_owned();
    for path in &args.files {
        let (traces, files) = open_all(std::slice::from_ref(path), &filter)?;
        let (tr, m) = (&traces[0], &files[0]);
        let id = recording_id(m);
        let shown_path = shown(&path.display().to_string()).into_owned();
        if known.contains(&id) {
            eprintln!(
                "snoop: skipping {shown_path}: its recording is already in {shown_root} \
                 (recording {id} in {LEDGER})"
            );
            continue;
        }
        let host_dir = hive_escape(&m.host);
        let mut done = Vec::new();
        let written = (|| {
            for table in Table::ALL {
                export_table(tr, m, table, root, &host_dir, &mut done)?;
            }
            export_dns(tr, m, root, &host_dir, &mut done)?;
            anyhow::Ok(())
        })();
        if let Err(e) = written {
            for (tmp, _, _) in &done {
                let _ = fs::remove_file(tmp);
            }
            return Err(e);
        }
        let mut parts = Vec::new();
        let mut rows = 0;
        for (tmp, dir, n) in &done {
            let dest = publish(tmp, dir)?;
            rows += n;
            parts.push(
                dest.strip_prefix(root)
                    .unwrap_or(&dest)
                    .display()
                    .to_string(),
            );
        }
        let line = serde_json::json!({
            "recording": id,
            "file": path.display().to_string(),
            "host": m.host,
            "start_wall_ns": m.info.wall_ns(m.info.start_ns),
            "rows": rows,
            "parts": parts,
        });
        let ledger = root.join(LEDGER);
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&ledger)
            .with_context(|| format!("cannot open {}", ledger.display()))?;
        writeln!(f, "{line}")
            .and_then(|()| f.sync_all())
            .with_context(|| format!("writing {}", ledger.display()))?;
        known.insert(id);
        eprintln!(
            "snoop: added {shown_path} to {shown_root}: {rows} rows in {} parts",
            parts.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hive_escape_keeps_paths_inside_the_dataset() {
        assert_eq!(hive_escape("web-1.example"), "web-1.example");
        assert_eq!(hive_escape("../etc"), "..%2Fetc");
        assert_eq!(hive_escape(".."), "%2E%2E");
        assert_eq!(hive_escape("a=b c"), "a%3Db%20c");
        assert_eq!(hive_escape(""), "__HIVE_DEFAULT_PARTITION__");
        assert_eq!(hive_escape("é"), "%C3%A9");
    }

    #[test]
    fn dates_are_utc_days() {
        assert_eq!(date_of(0), "1970-01-01");
        assert_eq!(date_of(DAY_NS - 1), "1970-01-01");
        assert_eq!(date_of(1_767_225_600_000_000_000), "2026-01-01");
        assert_eq!(date_of(-1), "1969-12-31");
    }
}
