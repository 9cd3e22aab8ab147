//! Report frames and their writers. A report is one or more polars
//! DataFrames with a title and per-column display styles; this module turns
//! them into an aligned human table (KiB/MiB, ms/s, bit/s, wall-clock UTC),
//! a JSON array of row objects (integers stay integers, addresses strings),
//! CSV or zstd Parquet. Column constructors here take ownership of vectors
//! (`ChunkedArray::from_vec`), so building a frame copies nothing.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::Context;
use polars::prelude::*;

use snoop_format::names::{csv_cell, width};
use snoop_format::{shown, Shown};

use crate::cli::Format;
use crate::units;

/// How a column is shown in a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// As is.
    Plain,
    /// Byte count with binary units.
    Bytes,
    /// CLOCK_BOOTTIME ns shown as wall-clock time.
    Wall,
    /// Duration in ns.
    Dur,
    /// Bits per second.
    Rate,
    /// Fraction 0..1 shown as a percentage.
    Pct,
}

/// Infer a style from a column name.
pub fn style_of(name: &str) -> Style {
    if name.ends_with("_bytes") || name == "bytes" {
        Style::Bytes
    } else if name.ends_with("_bps") {
        Style::Rate
    } else if name == "share" || name.ends_with("_share") || name.ends_with("_pct") {
        Style::Pct
    } else if name.ends_with("duration_ns")
        || name.ends_with("_after_ns")
        || name.ends_with("_dur_ns")
    {
        Style::Dur
    } else if name.ends_with("_ns") {
        Style::Wall
    } else {
        Style::Plain
    }
}

/// One table of a report.
#[derive(Clone, Debug)]
pub struct Frame {
    /// Title shown above the table.
    pub title: String,
    /// The rows.
    pub df: DataFrame,
    /// Style overrides by column name (others are inferred from the name).
    pub styles: Vec<(String, Style)>,
    /// Lines printed under the table.
    pub notes: Vec<String>,
    /// Boot-to-wall offset for [`Style::Wall`] columns.
    pub wall_offset: i64,
}

impl Frame {
    /// A frame from columns (all of the same length).
    pub fn new(
        title: impl Into<String>,
        columns: Vec<Column>,
        wall_offset: i64,
    ) -> anyhow::Result<Frame> {
        let df = DataFrame::new_infer_height(columns)
            .map_err(|e| anyhow::anyhow!("building a report frame: {e}"))?;
        Ok(Frame {
            title: title.into(),
            df,
            styles: Vec::new(),
            notes: Vec::new(),
            wall_offset,
        })
    }

    pub(crate) fn style_for(&self, name: &str) -> Style {
        self.styles
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, s)| *s)
            .unwrap_or_else(|| style_of(name))
    }
}

/// A u64 column, taking ownership of the vector (no copy).
pub fn u64c(name: &str, v: Vec<u64>) -> Column {
    UInt64Chunked::from_vec(name.into(), v)
        .into_series()
        .into_column()
}

/// A u32 column (no copy).
pub fn u32c(name: &str, v: Vec<u32>) -> Column {
    UInt32Chunked::from_vec(name.into(), v)
        .into_series()
        .into_column()
}

/// An i64 column (no copy).
pub fn i64c(name: &str, v: Vec<i64>) -> Column {
    Int64Chunked::from_vec(name.into(), v)
        .into_series()
        .into_column()
}

/// An f64 column (no copy).
pub fn f64c(name: &str, v: Vec<f64>) -> Column {
    Float64Chunked::from_vec(name.into(), v)
        .into_series()
        .into_column()
}

/// A nullable u64 column.
pub fn opt_u64c(name: &str, v: Vec<Option<u64>>) -> Column {
    Column::new(name.into(), v)
}

/// A nullable string column.
pub fn opt_strc(name: &str, v: Vec<Option<String>>) -> Column {
    Column::new(name.into(), v)
}

/// A nullable f64 column.
pub fn opt_f64c(name: &str, v: Vec<Option<f64>>) -> Column {
    Column::new(name.into(), v)
}

/// A string column.
pub fn strc(name: &str, v: Vec<String>) -> Column {
    Column::new(name.into(), v)
}

fn json_value(v: AnyValue) -> serde_json::Value {
    use serde_json::Value;
    match v {
        AnyValue::Null => Value::Null,
        AnyValue::Boolean(b) => Value::Bool(b),
        AnyValue::UInt8(x) => x.into(),
        AnyValue::UInt16(x) => x.into(),
        AnyValue::UInt32(x) => x.into(),
        AnyValue::UInt64(x) => x.into(),
        AnyValue::Int8(x) => x.into(),
        AnyValue::Int16(x) => x.into(),
        AnyValue::Int32(x) => x.into(),
        AnyValue::Int64(x) => x.into(),
        AnyValue::Float32(x) => serde_json::Number::from_f64(x as f64)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        AnyValue::Float64(x) => serde_json::Number::from_f64(x)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        AnyValue::String(s) => Value::String(s.to_string()),
        AnyValue::StringOwned(s) => Value::String(s.to_string()),
        other => Value::String(other.to_string()),
    }
}

/// One row as a JSON object that keeps the frame's column order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Row(pub Vec<(String, serde_json::Value)>);

impl serde::Serialize for Row {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl Row {
    /// The value of column `name`.
    pub fn get(&self, name: &str) -> Option<&serde_json::Value> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }
}

/// The rows of a frame as JSON objects (column order kept).
pub fn json_rows(df: &DataFrame) -> anyhow::Result<Vec<Row>> {
    let cols = df.columns();
    let mut out = Vec::with_capacity(df.height());
    for i in 0..df.height() {
        let mut row = Vec::with_capacity(cols.len());
        for c in cols {
            row.push((c.name().to_string(), json_value(c.get(i)?)));
        }
        out.push(Row(row));
    }
    Ok(out)
}

pub(crate) fn cell(v: AnyValue, style: Style, off: i64) -> (String, bool) {
    let num = |v: &AnyValue| -> Option<f64> {
        match v {
            AnyValue::UInt8(x) => Some(*x as f64),
            AnyValue::UInt16(x) => Some(*x as f64),
            AnyValue::UInt32(x) => Some(*x as f64),
            AnyValue::UInt64(x) => Some(*x as f64),
            AnyValue::Int32(x) => Some(*x as f64),
            AnyValue::Int64(x) => Some(*x as f64),
            AnyValue::Float64(x) => Some(*x),
            AnyValue::Float32(x) => Some(*x as f64),
            _ => None,
        }
    };
    match (&v, num(&v)) {
        (AnyValue::Null, _) => ("-".into(), true),
        (_, Some(x)) => {
            let s = match style {
                Style::Plain => match v {
                    AnyValue::Float64(f) => format!("{f:.1}"),
                    AnyValue::Float32(f) => format!("{f:.1}"),
                    _ => v.to_string(),
                },
                Style::Bytes => units::bytes(x.max(0.0) as u64),
                Style::Wall => units::wall((x as i64).saturating_add(off)),
                Style::Dur => units::duration(x.max(0.0) as u64),
                Style::Rate => units::rate(x),
                Style::Pct => format!("{:.1}%", x * 100.0),
            };
            (s, true)
        }
        (AnyValue::String(s), _) => (s.to_string(), false),
        (AnyValue::StringOwned(s), _) => (s.to_string(), false),
        _ => (v.to_string(), false),
    }
}

/// Render a frame as an aligned table (first `top` rows; 0 = all).
pub fn write_table(w: &mut dyn Write, f: &Frame, top: usize) -> anyhow::Result<()> {
    let df = &f.df;
    if !f.title.is_empty() {
        writeln!(w, "{}", Shown(&f.title))?;
    }
    let n = if top == 0 {
        df.height()
    } else {
        df.height().min(top)
    };
    let cols = df.columns();
    let mut grid: Vec<Vec<(String, bool)>> = Vec::with_capacity(cols.len());
    for c in cols {
        let style = f.style_for(c.name());
        let mut v = vec![(c.name().to_uppercase(), false)];
        for i in 0..n {
            let (text, right) = cell(c.get(i)?, style, f.wall_offset);
            v.push((shown(&text).into_owned(), right));
        }
        grid.push(v);
    }
    let widths: Vec<usize> = grid
        .iter()
        .map(|c| c.iter().map(|(s, _)| width(s)).max().unwrap_or(0))
        .collect();
    for r in 0..=n {
        let mut line = String::new();
        for (ci, c) in grid.iter().enumerate() {
            let (s, right) = &c[r];
            let pad = widths[ci] - width(s);
            if ci > 0 {
                line.push_str("  ");
            }
            if *right && r > 0 {
                line.extend(std::iter::repeat_n(' ', pad));
                line.push_str(s);
            } else {
                line.push_str(s);
                if ci + 1 < grid.len() {
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
        }
        writeln!(w, "{}", line.trim_end())?;
    }
    if df.height() == 0 {
        writeln!(w, "(no rows)")?;
    } else if n < df.height() {
        writeln!(w, "... {} more rows (--top 0 shows all)", df.height() - n)?;
    }
    for note in &f.notes {
        writeln!(w, "{}", Shown(note))?;
    }
    Ok(())
}

/// Where output goes.
pub fn open_output(path: Option<&Path>) -> anyhow::Result<Box<dyn Write>> {
    Ok(match path {
        Some(p) => Box::new(BufWriter::new(
            File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    })
}

/// Write the frames of a report in `format`. Machine formats write the
/// first frame only (the report's rows); tables print every frame.
pub fn write_frames(
    frames: &mut [Frame],
    format: Format,
    output: Option<&Path>,
    top: Option<usize>,
) -> anyhow::Result<()> {
    match format {
        Format::Table => {
            let mut w = open_output(output)?;
            for (i, f) in frames.iter().enumerate() {
                if i > 0 {
                    writeln!(w)?;
                }
                write_table(&mut w, f, top.unwrap_or(20))?;
            }
            w.flush()?;
        }
        Format::Json => {
            let mut w = open_output(output)?;
            let rows = match frames.first() {
                Some(f) => json_rows(&limit(&f.df, top))?,
                None => Vec::new(),
            };
            serde_json::to_writer_pretty(&mut w, &rows)?;
            writeln!(w)?;
            w.flush()?;
        }
        Format::Csv | Format::Parquet => {
            let Some(f) = frames.first_mut() else {
                return Ok(());
            };
            let mut df = limit(&f.df, top);
            write_df(&mut df, format, output)?;
        }
    }
    Ok(())
}

/// Neutralise text cells a spreadsheet would run as a formula
/// ([`csv_cell`]) in every string column of `df`: CSV without `--raw`.
pub fn csv_safe(df: &mut DataFrame) -> anyhow::Result<()> {
    let names: Vec<PlSmallStr> = df
        .columns()
        .iter()
        .filter(|c| c.dtype() == &DataType::String)
        .map(|c| c.name().clone())
        .collect();
    for name in names {
        let col = df.column(&name)?.str()?;
        let safe: StringChunked = col
            .iter()
            .map(|v| v.map(|s| csv_cell(s).into_owned()))
            .collect();
        df.with_column(safe.with_name(name).into_column())?;
    }
    Ok(())
}

fn limit(df: &DataFrame, top: Option<usize>) -> DataFrame {
    match top {
        Some(n) if n > 0 && n < df.height() => df.head(Some(n)),
        _ => df.clone(),
    }
}

/// Write a DataFrame as CSV or Parquet (stdout allowed for CSV).
pub fn write_df(df: &mut DataFrame, format: Format, output: Option<&Path>) -> anyhow::Result<()> {
    match format {
        Format::Csv => {
            let mut w = open_output(output)?;
            CsvWriter::new(&mut w)
                .include_header(true)
                .finish(df)
                .map_err(|e| anyhow::anyhow!("writing CSV: {e}"))?;
            w.flush()?;
        }
        Format::Parquet => {
            let Some(p) = output else {
                return Err(crate::usage("parquet output needs -o PATH"));
            };
            let file = File::create(p).with_context(|| format!("cannot create {}", p.display()))?;
            ParquetWriter::new(file)
                .with_compression(ParquetCompression::Zstd(None))
                .finish(df)
                .map_err(|e| anyhow::anyhow!("writing {}: {e}", p.display()))?;
        }
        _ => {
            let mut w = open_output(output)?;
            serde_json::to_writer_pretty(&mut w, &json_rows(df)?)?;
            writeln!(w)?;
            w.flush()?;
        }
    }
    Ok(())
}
