//! `snoop export`: the raw rows of one table (flow dictionary expanded per
//! row) as Parquet or CSV, for DuckDB, pandas or Spark users. Chunks are
//! decoded in parallel, a batch at a time, into per-chunk DataFrames that
//! are streamed to the file in order. Rows are as
//! recorded: a packet's pid is the one the kernel knew (0 for most received
//! packets); `analyze` does the attribution. A `.pcapng` output goes to the
//! pcapng writer and `--dataset` to the dataset writer. `--table dns` writes
//! the names DNS answers gave (no chunks: one small frame from the trace's
//! DNS blocks).

use std::fs::File;
use std::path::Path;

use anyhow::Context;
use polars::io::{csv, parquet};
use polars::prelude::*;
use rayon::prelude::*;
use snoop_format::{comm_str, ProcessKind, Table, Trace};

use crate::cli::{ExportArgs, Format};
use crate::filter::{addr_str, FileFilter, Filter};
use crate::frame::{csv_safe, i64c, opt_u64c, strc, u32c, u64c, write_df};
use crate::load::{all_columns, open_all};
use crate::usage;

/// The table of names from DNS answers: not a chunk table of the format.
const DNS_TABLE: &str = "dns";

pub(crate) fn parse_table(s: &str) -> anyhow::Result<Table> {
    Table::ALL
        .into_iter()
        .find(|t| t.name() == s)
        .ok_or_else(|| {
            usage(format!(
                "unknown table {s:?} (known: messages, packets, connections, processes, stats, dns)"
            ))
        })
}

fn small<T: Copy + Into<u32>>(name: &str, v: &[T], keep: &[usize]) -> Column {
    u32c(name, keep.iter().map(|&i| v[i].into()).collect())
}

pub(crate) fn chunk_frame(
    tr: &Trace,
    ci: usize,
    table: Table,
    ff: &FileFilter,
    host: Option<&str>,
) -> anyhow::Result<DataFrame> {
    let ch = tr.read_chunk(ci, all_columns(table))?;
    let mut cols: Vec<Column> = Vec::new();
    match table {
        Table::Processes => {
            let b = ch.into_processes()?;
            let keep: Vec<usize> = (0..b.rows.min(b.ts.len()))
                .filter(|&i| ff.time_ok(b.ts[i]) && ff.process_ok(b.pid[i], &b.comm[i]))
                .collect();
            cols.push(u64c("ts_ns", keep.iter().map(|&i| b.ts[i]).collect()));
            cols.push(strc(
                "kind",
                keep.iter()
                    .map(|&i| {
                        ProcessKind::from_u8(b.kind[i])
                            .map(|k| k.name().to_string())
                            .unwrap_or_default()
                    })
                    .collect(),
            ));
            cols.push(u32c("pid", keep.iter().map(|&i| b.pid[i]).collect()));
            cols.push(u32c("tid", keep.iter().map(|&i| b.tid[i]).collect()));
            cols.push(u32c("ppid", keep.iter().map(|&i| b.ppid[i]).collect()));
            cols.push(strc(
                "comm",
                keep.iter().map(|&i| comm_str(&b.comm[i])).collect(),
            ));
            cols.push(i64c(
                "exit_code",
                keep.iter().map(|&i| b.exit_code[i] as i64).collect(),
            ));
            cols.push(strc(
                "filename",
                keep.iter().map(|&i| b.filename[i].clone()).collect(),
            ));
        }
        Table::Stats => {
            let b = ch.into_stats()?;
            let n = b.rows.min(b.ts.len());
            cols.push(u64c("ts_ns", b.ts[..n].to_vec()));
            cols.push(strc(
                "source",
                b.source[..n]
                    .iter()
                    .map(|&s| snoop_format::source::name(s))
                    .collect(),
            ));
            cols.push(u64c("dropped", b.dropped[..n].to_vec()));
            cols.push(u64c("events", b.events[..n].to_vec()));
        }
        _ => {
            let b = ch.into_events()?;
            let f = &b.flows;
            let nf = f.pid.len();
            if [
                f.tid.len(),
                f.comm.len(),
                f.cgroup.len(),
                f.cookie.len(),
                f.ifindex.len(),
                f.family.len(),
                f.proto.len(),
                f.laddr.len(),
                f.lport.len(),
                f.raddr.len(),
                f.rport.len(),
            ]
            .iter()
            .any(|&l| l != nf)
            {
                anyhow::bail!("chunk {ci}: flow columns have different lengths");
            }
            let flow_ok: Vec<bool> = (0..nf)
                .map(|j| {
                    let fl = snoop_format::Flow {
                        pid: f.pid[j],
                        tid: f.tid[j],
                        comm: f.comm[j],
                        cgroup: f.cgroup[j],
                        cookie: f.cookie[j],
                        ifindex: f.ifindex[j],
                        family: f.family[j],
                        proto: f.proto[j],
                        laddr: f.laddr[j],
                        lport: f.lport[j],
                        raddr: f.raddr[j],
                        rport: f.rport[j],
                    };
                    if table == Table::Messages {
                        ff.flow_ok(&fl)
                    } else {
                        ff.net_ok(&fl)
                    }
                })
                .collect();
            let keep: Vec<usize> = (0..b.rows.min(b.ts.len()))
                .filter(|&i| ff.time_ok(b.ts[i]) && flow_ok[b.flow[i] as usize])
                .collect();
            let fi: Vec<usize> = keep.iter().map(|&i| b.flow[i] as usize).collect();
            cols.push(u64c("ts_ns", keep.iter().map(|&i| b.ts[i]).collect()));
            cols.push(small("pid", &f.pid, &fi));
            cols.push(small("tid", &f.tid, &fi));
            cols.push(strc(
                "comm",
                fi.iter().map(|&j| comm_str(&f.comm[j])).collect(),
            ));
            cols.push(u64c("cgroup", fi.iter().map(|&j| f.cgroup[j]).collect()));
            cols.push(u64c("cookie", fi.iter().map(|&j| f.cookie[j]).collect()));
            cols.push(small("ifindex", &f.ifindex, &fi));
            cols.push(small("family", &f.family, &fi));
            cols.push(small("proto", &f.proto, &fi));
            cols.push(strc(
                "laddr",
                fi.iter().map(|&j| addr_str(&f.laddr[j])).collect(),
            ));
            cols.push(small("lport", &f.lport, &fi));
            cols.push(strc(
                "raddr",
                fi.iter().map(|&j| addr_str(&f.raddr[j])).collect(),
            ));
            cols.push(small("rport", &f.rport, &fi));
            if table == Table::Connections {
                if b.old_state.len() != b.rows
                    || b.new_state.len() != b.rows
                    || b.bytes_acked.len() != b.rows
                    || b.bytes_received.len() != b.rows
                {
                    anyhow::bail!("chunk {ci}: state columns have different lengths");
                }
                cols.push(small("old_state", &b.old_state, &keep));
                cols.push(small("new_state", &b.new_state, &keep));
                cols.push(u64c(
                    "bytes_acked",
                    keep.iter().map(|&i| b.bytes_acked[i]).collect(),
                ));
                cols.push(u64c(
                    "bytes_received",
                    keep.iter().map(|&i| b.bytes_received[i]).collect(),
                ));
                // Outcome columns (format 1.2): null in older traces.
                let out: Vec<Option<snoop_format::TcpOutcome>> =
                    keep.iter().map(|&i| b.outcome(i)).collect();
                for (name, get) in [
                    (
                        "sk_err",
                        (|o: &snoop_format::TcpOutcome| u64::from(o.sk_err))
                            as fn(&snoop_format::TcpOutcome) -> u64,
                    ),
                    ("retrans_segs", |o| u64::from(o.retrans_segs)),
                    ("srtt_us", |o| u64::from(o.srtt_us)),
                    ("min_rtt_us", |o| u64::from(o.min_rtt_us)),
                    ("segs_out", |o| u64::from(o.segs_out)),
                    ("segs_in", |o| u64::from(o.segs_in)),
                ] {
                    cols.push(opt_u64c(
                        name,
                        out.iter().map(|o| o.as_ref().map(get)).collect(),
                    ));
                }
            } else {
                if b.bytes.len() != b.rows || b.dir.len() != b.rows {
                    anyhow::bail!("chunk {ci}: event columns have different lengths");
                }
                let name = if table == Table::Packets {
                    "len"
                } else {
                    "bytes"
                };
                cols.push(small(name, &b.bytes, &keep));
                cols.push(strc(
                    "dir",
                    keep.iter()
                        .map(|&i| if b.dir[i] == 0 { "tx" } else { "rx" }.to_string())
                        .collect(),
                ));
                if table == Table::Packets {
                    if b.segs.len() != b.rows {
                        anyhow::bail!("chunk {ci}: segs column has a different length");
                    }
                    cols.push(small("segs", &b.segs, &keep));
                    // Runs (format 1.4): every row of an older trace is one packet.
                    cols.push(u64c(
                        "count",
                        keep.iter().map(|&i| u64::from(b.count(i))).collect(),
                    ));
                    cols.push(u64c(
                        "last_ns",
                        keep.iter().map(|&i| b.last_ns(i)).collect(),
                    ));
                    cols.push(opt_u64c(
                        "tcp_flags",
                        keep.iter()
                            .map(|&i| b.tcp_flags.get(i).map(|&f| u64::from(f)))
                            .collect(),
                    ));
                }
            }
        }
    }
    if let Some(h) = host {
        let n = cols.first().map(|c| c.len()).unwrap_or(0);
        cols.insert(0, strc("host", vec![h.to_string(); n]));
    }
    Ok(DataFrame::new_infer_height(cols)?)
}

/// Run `snoop export`.
pub fn run_export(args: &ExportArgs) -> anyhow::Result<()> {
    if let Some(dir) = &args.dataset {
        return crate::dataset::run_dataset(args, dir);
    }
    let Some(output) = args.output.as_deref() else {
        return Err(usage("export needs -o PATH or --dataset DIR"));
    };
    let dns = args.table == DNS_TABLE;
    let table = if dns {
        Table::Stats
    } else {
        parse_table(&args.table)?
    };
    let pcapng = match args.format.as_deref() {
        Some(f) => f.eq_ignore_ascii_case("pcapng"),
        None => output
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("pcapng")),
    };
    if pcapng {
        if dns || table != Table::Packets {
            return Err(usage(format!(
                "pcapng holds packets: use --table packets (got --table {})",
                args.table
            )));
        }
        return crate::pcapng::run_pcapng(args, output);
    }
    let format = Format::resolve(args.format.as_deref(), Some(output))?;
    if !matches!(format, Format::Csv | Format::Parquet) {
        return Err(usage(format!(
            "export writes parquet, csv or pcapng; name the output .parquet, .csv or .pcapng (got {})",
            output.display()
        )));
    }
    let filter = Filter::parse(&args.filter)?;
    let (traces, files) = open_all(&args.files, &filter)?;
    let multi = files.len() > 1;
    if dns {
        let mut df = dns_frame(&traces, &files, multi)?;
        if format == Format::Csv && !args.raw {
            csv_safe(&mut df)?;
        }
        return write_df(&mut df, format, Some(output));
    }
    let jobs: Vec<(usize, usize)> = traces
        .iter()
        .enumerate()
        .flat_map(|(fi, tr)| {
            let ff = &files[fi].filter;
            tr.chunks_of(table)
                .filter(move |&c| ff.chunk_ok(&tr.chunks()[c]))
                .map(move |c| (fi, c))
        })
        .collect();
    if jobs.is_empty() {
        let mut df = ExportEmpty(table).frame(multi)?;
        return write_df(&mut df, format, Some(output));
    }
    // Chunks are decoded in parallel a batch at a time and written in file
    // order, so memory holds one batch of rows, whatever the trace's size.
    let pb = crate::load::progress(jobs.len(), "exporting");
    let out: &Path = output;
    let mut sink: Option<Sink> = None;
    let batch = rayon::current_num_threads().max(1) * 4;
    for group in jobs.chunks(batch) {
        let frames: Vec<DataFrame> = group
            .par_iter()
            .map(|&(fi, ci)| {
                let r = chunk_frame(
                    &traces[fi],
                    ci,
                    table,
                    &files[fi].filter,
                    multi.then_some(files[fi].host.as_str()),
                )
                .and_then(|mut df| {
                    if format == Format::Csv && !args.raw {
                        csv_safe(&mut df)?;
                    }
                    Ok(df)
                })
                .with_context(|| format!("{}: chunk {ci}", files[fi].path.display()));
                traces[fi].release_chunk(ci);
                pb.inc(1);
                r
            })
            .collect::<anyhow::Result<_>>()?;
        for df in &frames {
            if sink.is_none() {
                sink = Some(Sink::create(format, out, df.schema())?);
            }
            if let Some(s) = sink.as_mut() {
                s.write(df)
                    .map_err(|e| anyhow::anyhow!("writing {}: {e}", out.display()))?;
            }
        }
    }
    pb.finish_and_clear();
    if let Some(s) = sink {
        s.finish()
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", out.display()))?;
    }
    Ok(())
}

/// Every DNS answer of the traces the filters keep: `ts_ns`, `pid`,
/// `name`, `cnames` (comma-separated), `addr`, `ttl`.
/// The DNS answers of `traces` as one frame (`--table dns`, and the
/// dataset's dns table).
pub(crate) fn dns_frame(
    traces: &[Trace],
    files: &[crate::load::FileMeta],
    multi: bool,
) -> anyhow::Result<DataFrame> {
    let rows: Vec<(&str, &snoop_format::DnsAnswer)> = traces
        .iter()
        .zip(files)
        .flat_map(|(t, f)| {
            t.dns()
                .iter()
                .filter(|a| f.filter.dns_ok(a.ts_ns, a.pid, &a.addr))
                .map(|a| (f.host.as_str(), a))
        })
        .collect();
    let mut cols = Vec::new();
    if multi {
        cols.push(strc("host", rows.iter().map(|r| r.0.to_string()).collect()));
    }
    cols.push(u64c("ts_ns", rows.iter().map(|r| r.1.ts_ns).collect()));
    cols.push(u32c("pid", rows.iter().map(|r| r.1.pid).collect()));
    cols.push(strc(
        "name",
        rows.iter().map(|r| r.1.name.clone()).collect(),
    ));
    cols.push(strc(
        "cnames",
        rows.iter().map(|r| r.1.cnames.join(",")).collect(),
    ));
    cols.push(strc(
        "addr",
        rows.iter().map(|r| addr_str(&r.1.addr)).collect(),
    ));
    cols.push(u32c("ttl", rows.iter().map(|r| r.1.ttl).collect()));
    Ok(DataFrame::new_infer_height(cols)?)
}

/// A Parquet (zstd) or CSV file written a DataFrame at a time.
enum Sink {
    Csv(csv::write::BatchedWriter<File>),
    Parquet(Box<parquet::write::BatchedWriter<File>>),
}

impl Sink {
    fn create(format: Format, path: &Path, schema: &Schema) -> anyhow::Result<Sink> {
        let file =
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        let e = |e: PolarsError| anyhow::anyhow!("writing {}: {e}", path.display());
        Ok(match format {
            Format::Csv => Sink::Csv(
                // polars serializes into its own buffer: no BufWriter, whose
                // flush-on-drop would swallow a full-disk error.
                CsvWriter::new(file)
                    .include_header(true)
                    .batched(schema)
                    .map_err(e)?,
            ),
            _ => Sink::Parquet(Box::new(
                ParquetWriter::new(file)
                    .with_compression(ParquetCompression::Zstd(None))
                    .batched(schema)
                    .map_err(e)?,
            )),
        })
    }

    fn write(&mut self, df: &DataFrame) -> PolarsResult<()> {
        match self {
            Sink::Csv(w) => w.write_batch(df),
            Sink::Parquet(w) => w.write_batch(df),
        }
    }

    fn finish(self) -> PolarsResult<()> {
        match self {
            Sink::Csv(mut w) => w.finish(),
            Sink::Parquet(w) => w.finish().map(|_| ()),
        }
    }
}

/// The column layout of an export with no rows.
struct ExportEmpty(Table);

impl ExportEmpty {
    fn frame(&self, multi: bool) -> anyhow::Result<DataFrame> {
        let names: Vec<&str> = match self.0 {
            Table::Processes => vec![
                "ts_ns",
                "kind",
                "pid",
                "tid",
                "ppid",
                "comm",
                "exit_code",
                "filename",
            ],
            Table::Stats => vec!["ts_ns", "source", "dropped", "events"],
            t => {
                let mut v = vec![
                    "ts_ns", "pid", "tid", "comm", "cgroup", "cookie", "ifindex", "family",
                    "proto", "laddr", "lport", "raddr", "rport",
                ];
                v.extend(match t {
                    Table::Connections => {
                        vec![
                            "old_state",
                            "new_state",
                            "bytes_acked",
                            "bytes_received",
                            "sk_err",
                            "retrans_segs",
                            "srtt_us",
                            "min_rtt_us",
                            "segs_out",
                            "segs_in",
                        ]
                    }
                    Table::Packets => vec!["len", "dir", "segs", "count", "last_ns", "tcp_flags"],
                    _ => vec!["bytes", "dir"],
                });
                v
            }
        };
        let mut cols: Vec<Column> = names.iter().map(|n| strc(n, Vec::new())).collect();
        if multi {
            cols.insert(0, strc("host", Vec::new()));
        }
        Ok(DataFrame::new_infer_height(cols)?)
    }
}
