//! The trace reader. Maps the file, trusts nothing in it: the footer index is
//! used when the trailer, footer and every entry check out; otherwise the
//! chunks are scanned forward and every chunk whose lengths, CRCs and meta
//! validate is kept (recovery). Chunks are decoded on demand, only the
//! columns asked for, and independently (so callers can decode in parallel).

use std::fs::File;
use std::path::Path;

use crate::batch::{Chunk, ColumnSet};
use crate::codec;
use crate::error::{FormatError, Result};
use crate::layout::{kind, BlockHeader, FileHeader, Trailer, FILE_HEADER_LEN};
use crate::meta::{
    self, Cgroups, ChunkEntry, ChunkMeta, DnsAnswer, DnsNames, FileInfo, Footer, Hooks,
};
use crate::schema::{column_def, column_optional, Table};

enum Data {
    Mmap(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Data {
    fn bytes(&self) -> &[u8] {
        match self {
            Data::Mmap(m) => m,
            Data::Owned(v) => v,
        }
    }
}

/// What recovery found in a file without a valid footer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovery {
    /// Chunks kept.
    pub chunks: usize,
    /// Event rows in the kept chunks.
    pub events: u64,
    /// Bytes after the last good chunk that were not used.
    pub ignored_bytes: u64,
    /// Why the scan stopped (empty when it reached the end of the file).
    pub stopped_because: String,
}

/// An open trace file.
pub struct Trace {
    data: Data,
    header: FileHeader,
    info: FileInfo,
    hooks: Option<Hooks>,
    chunks: Vec<ChunkEntry>,
    end_ns: Option<u64>,
    recovery: Option<Recovery>,
    cgroups: Vec<(u64, String)>,
    dns: Vec<DnsAnswer>,
}

impl Trace {
    /// Open and index a trace file (memory-mapped).
    pub fn open(path: &Path) -> Result<Trace> {
        let file = File::open(path)
            .map_err(|e| FormatError::io(format!("opening {}", path.display()), e))?;
        let meta = file
            .metadata()
            .map_err(|e| FormatError::io(format!("reading metadata of {}", path.display()), e))?;
        if meta.is_dir() {
            return Err(FormatError::Invalid(format!(
                "{} is a directory, not a trace file",
                path.display()
            )));
        }
        if meta.len() == 0 {
            return Trace::index(Data::Owned(Vec::new()));
        }
        // SAFETY: the map is read-only and private to this reader. A file
        // truncated underneath us by another process could fault; recorders
        // only ever append, and we map only the length seen at open.
        let map = unsafe {
            memmap2::MmapOptions::new()
                .len(meta.len() as usize)
                .map(&file)
        }
        .map_err(|e| FormatError::io(format!("mapping {}", path.display()), e))?;
        Trace::index(Data::Mmap(map))
    }

    /// Index a trace held in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Trace> {
        Trace::index(Data::Owned(bytes))
    }

    fn index(data: Data) -> Result<Trace> {
        let file = data.bytes();
        let header = FileHeader::parse(file)?;
        let at = FILE_HEADER_LEN as u64;
        let h = BlockHeader::parse(file, at).map_err(|e| match e {
            FormatError::Corrupt { detail, offset, .. } => FormatError::corrupt(
                "info block (the file holds no complete block)",
                offset,
                detail,
            ),
            other => other,
        })?;
        if h.kind != kind::INFO {
            return Err(FormatError::corrupt(
                "info block",
                at,
                format!("first block has kind {}, expected {}", h.kind, kind::INFO),
            ));
        }
        let info: FileInfo =
            meta::decode(block_meta(file, at, &h, "info block")?, "info block", at)?;
        let first = at + h.total_len();
        let hooks = read_hooks(file, first);
        let (chunks, end_ns, recovery, end) = match Trailer::find(file)
            .and_then(|t| read_footer(file, t, first).ok().map(|f| (t, f)))
        {
            Some((t, f)) => (f.chunks, Some(f.end_ns), None, t.footer_offset),
            None => {
                let (chunks, rec) = scan(file, first);
                (chunks, None, Some(rec), file.len() as u64)
            }
        };
        let (cgroups, dns) = read_side_blocks(file, first, &chunks, end);
        Ok(Trace {
            data,
            header,
            info,
            hooks,
            chunks,
            end_ns,
            recovery,
            cgroups,
            dns,
        })
    }

    /// File-level information.
    pub fn info(&self) -> &FileInfo {
        &self.info
    }

    /// Which hook groups the recorder ran, when the trace says (format 1.1
    /// and later; `None` for older traces or an unreadable block).
    pub fn hooks(&self) -> Option<&Hooks> {
        self.hooks.as_ref()
    }

    /// cgroup v2 ids and their paths (format 1.2; empty for older traces
    /// or a recorder that could not resolve any), sorted by id.
    pub fn cgroups(&self) -> &[(u64, String)] {
        &self.cgroups
    }

    /// Addresses learned from DNS answers (format 1.3; empty for older
    /// traces, recordings with `--no-dns`, or no answers), in the order
    /// they were received.
    pub fn dns(&self) -> &[DnsAnswer] {
        &self.dns
    }

    /// Minor format version of the file (what it may hold: 1 hook groups,
    /// 2 connection outcomes, cgroup paths and start times, 3 DNS names).
    pub fn minor(&self) -> u16 {
        self.header.minor
    }

    /// Format version as `major.minor`.
    pub fn version(&self) -> String {
        format!("{}.{}", self.header.major, self.header.minor)
    }

    /// Every chunk, in file order.
    pub fn chunks(&self) -> &[ChunkEntry] {
        &self.chunks
    }

    /// Whether the file was closed cleanly (valid footer).
    pub fn is_complete(&self) -> bool {
        self.recovery.is_none()
    }

    /// What recovery found, for a file without a valid footer.
    pub fn recovery(&self) -> Option<&Recovery> {
        self.recovery.as_ref()
    }

    /// Recording end (CLOCK_BOOTTIME ns) from the footer, if complete.
    pub fn end_ns(&self) -> Option<u64> {
        self.end_ns
    }

    /// File size in bytes.
    pub fn file_len(&self) -> u64 {
        self.data.bytes().len() as u64
    }

    /// Event rows per table.
    pub fn rows(&self, table: Table) -> u64 {
        self.chunks
            .iter()
            .filter(|c| c.table == table as u8)
            .map(|c| c.rows as u64)
            .sum()
    }

    /// Indexes of the chunks of `table`.
    pub fn chunks_of(&self, table: Table) -> impl Iterator<Item = usize> + '_ {
        self.chunks
            .iter()
            .enumerate()
            .filter(move |(_, c)| c.table == table as u8)
            .map(|(i, _)| i)
    }

    /// Tell the kernel this process is done with a chunk's mapped pages
    /// (after decoding it): they leave the resident set, the page cache keeps
    /// them, and a later read simply faults them back in. Reading a trace
    /// larger than memory then costs memory for the decoded data only, not
    /// for the file. Best effort; no-op for in-memory traces.
    pub fn release_chunk(&self, index: usize) {
        let (Data::Mmap(m), Some(e)) = (&self.data, self.chunks.get(index)) else {
            return;
        };
        const PAGE: u64 = 4096;
        // Whole pages inside the chunk only: neighbours may still be in use.
        let start = e.offset.div_ceil(PAGE) * PAGE;
        let end = (e.offset.saturating_add(e.len) / PAGE * PAGE).min(m.len() as u64);
        if end <= start {
            return;
        }
        // SAFETY: MADV_DONTNEED on a read-only shared file mapping only drops
        // page-table entries; the next access reads the same file bytes back
        // from the page cache, so slices into the range stay valid.
        let _ = unsafe {
            m.unchecked_advise_range(
                memmap2::UncheckedAdvice::DontNeed,
                start as usize,
                (end - start) as usize,
            )
        };
    }

    /// Decode chunk `index`, only the columns in `want`.
    pub fn read_chunk(&self, index: usize, want: ColumnSet) -> Result<Chunk> {
        let e = self.chunks.get(index).ok_or_else(|| {
            FormatError::Invalid(format!(
                "no chunk {index} (the file has {})",
                self.chunks.len()
            ))
        })?;
        let file = self.data.bytes();
        let (h, m) = chunk_meta(file, e.offset)?;
        let what = format!("chunk {index}");
        if m.table != e.table || m.rows != e.rows || h.total_len() != e.len {
            return Err(FormatError::corrupt(
                what,
                e.offset,
                "chunk does not match its index entry",
            ));
        }
        decode_chunk(file, e.offset, &h, &m, want, &what)
    }
}

/// Every cgroups block (format 1.2) merged, by id, and every DNS block
/// (1.3) concatenated, sorted by time. They lie between the other blocks:
/// only the gaps the chunk index leaves (before, between and after the
/// chunks, up to `end`) are walked, block header by block header; a gap
/// stops at the first block that does not parse, and a block that does
/// not validate is skipped.
fn read_side_blocks(
    file: &[u8],
    first: u64,
    chunks: &[ChunkEntry],
    end: u64,
) -> (Vec<(u64, String)>, Vec<DnsAnswer>) {
    let mut out: std::collections::BTreeMap<u64, String> = Default::default();
    let mut dns: Vec<DnsAnswer> = Vec::new();
    let mut walk = |mut at: u64, stop: u64| {
        while at < stop {
            let Ok(h) = BlockHeader::parse(file, at) else {
                return;
            };
            if h.kind == kind::CGROUPS {
                if let Some(c) = block_meta(file, at, &h, "cgroups block")
                    .ok()
                    .and_then(|b| meta::decode::<Cgroups>(b, "cgroups block", at).ok())
                {
                    out.extend(c.paths);
                }
            } else if h.kind == kind::DNS {
                if let Some(d) = block_meta(file, at, &h, "dns block")
                    .ok()
                    .and_then(|b| meta::decode::<DnsNames>(b, "dns block", at).ok())
                {
                    dns.extend(d.answers);
                }
            }
            at += h.total_len();
        }
    };
    let mut at = first;
    for c in chunks {
        walk(at, c.offset);
        at = c.offset.saturating_add(c.len);
    }
    walk(at, end);
    dns.sort_by_key(|a| a.ts_ns);
    (out.into_iter().collect(), dns)
}

/// The hooks block, if the block after the info block is one and validates.
fn read_hooks(file: &[u8], at: u64) -> Option<Hooks> {
    let h = BlockHeader::parse(file, at).ok()?;
    if h.kind != kind::HOOKS {
        return None;
    }
    let bytes = block_meta(file, at, &h, "hooks block").ok()?;
    meta::decode(bytes, "hooks block", at).ok()
}

fn block_meta<'a>(file: &'a [u8], at: u64, h: &BlockHeader, what: &str) -> Result<&'a [u8]> {
    let s = (at + h.meta_offset()) as usize;
    let bytes = &file[s..s + h.meta_len as usize];
    let got = crc32fast::hash(bytes);
    if got != h.meta_crc {
        return Err(FormatError::Crc {
            what: format!("{what} meta"),
            offset: at,
            expected: h.meta_crc,
            got,
        });
    }
    Ok(bytes)
}

fn read_footer(file: &[u8], t: Trailer, first: u64) -> Result<Footer> {
    let h = BlockHeader::parse(file, t.footer_offset)?;
    if h.kind != kind::FOOTER || h.total_len() != t.footer_len {
        return Err(FormatError::corrupt(
            "footer",
            t.footer_offset,
            "trailer does not point at a footer",
        ));
    }
    let f: Footer = meta::decode(
        block_meta(file, t.footer_offset, &h, "footer")?,
        "footer",
        t.footer_offset,
    )?;
    let mut next = first;
    for (i, c) in f.chunks.iter().enumerate() {
        let ok = c.offset >= next
            && c.offset
                .checked_add(c.len)
                .is_some_and(|e| e <= t.footer_offset)
            && Table::from_id(c.table).is_some();
        if !ok {
            return Err(FormatError::corrupt(
                "footer",
                t.footer_offset,
                format!("entry {i} is out of order or bounds"),
            ));
        }
        next = c.offset + c.len;
    }
    Ok(f)
}

/// Parse a chunk block's header and meta and check its column layout.
fn chunk_meta(file: &[u8], at: u64) -> Result<(BlockHeader, ChunkMeta)> {
    let h = BlockHeader::parse(file, at)?;
    if h.kind != kind::CHUNK {
        return Err(FormatError::corrupt(
            "chunk",
            at,
            format!("block kind {} is not a chunk", h.kind),
        ));
    }
    let m: ChunkMeta = meta::decode(block_meta(file, at, &h, "chunk")?, "chunk meta", at)?;
    let Some(table) = Table::from_id(m.table) else {
        return Err(FormatError::corrupt(
            "chunk",
            at,
            format!("unknown table {}", m.table),
        ));
    };
    if m.table != h.table || m.rows > codec::MAX_CHUNK_ROWS || m.flow_rows > codec::MAX_CHUNK_ROWS {
        return Err(FormatError::corrupt(
            "chunk",
            at,
            format!(
                "table {} / rows {} / flows {} out of range",
                m.table, m.rows, m.flow_rows
            ),
        ));
    }
    let mut seen = ColumnSet(0);
    for c in &m.columns {
        let rows = if c.id >= 100 { m.flow_rows } else { m.rows };
        // Every column, known or not, must lie inside the body: recovery
        // checks the CRC of each one, unknown columns included.
        if c.offset.checked_add(c.len).is_none_or(|e| e > h.body_len) {
            return Err(FormatError::corrupt(
                "chunk",
                at,
                format!(
                    "column {} at {}+{} outside body of {} bytes",
                    c.id, c.offset, c.len, h.body_len
                ),
            ));
        }
        if column_def(table, c.id).is_none() {
            continue; // a column of a newer minor version: skipped by length
        }
        // A known column twice would be decoded twice: a few KiB of file
        // could then make the reader allocate rows x width per copy.
        if seen.has(c.id) {
            return Err(FormatError::corrupt(
                "chunk",
                at,
                format!("column {} appears more than once", c.id),
            ));
        }
        seen = seen.with(&[c.id]);
        codec::check_meta(c, rows, "chunk", at)?;
    }
    Ok((h, m))
}

fn decode_chunk(
    file: &[u8],
    at: u64,
    h: &BlockHeader,
    m: &ChunkMeta,
    want: ColumnSet,
    what: &str,
) -> Result<Chunk> {
    let table =
        Table::from_id(m.table).ok_or_else(|| FormatError::corrupt(what, at, "unknown table"))?;
    let body = (at + h.body_offset()) as usize;
    let mut columns = Vec::new();
    for c in &m.columns {
        let Some(def) = column_def(table, c.id) else {
            continue;
        };
        if !want.has(c.id) {
            continue;
        }
        if c.ty != def.ty as u8 {
            return Err(FormatError::corrupt(
                what,
                at,
                format!(
                    "column {} has type {}, expected {}",
                    c.id, c.ty, def.ty as u8
                ),
            ));
        }
        let s = body + c.offset as usize;
        let stored = &file[s..s + c.len as usize];
        columns.push((c.id, codec::decode(c, def.ty, stored, what, at)?));
    }
    for def in table.columns() {
        if want.has(def.id)
            && !column_optional(table, def.id)
            && !columns.iter().any(|(id, _)| *id == def.id)
        {
            return Err(FormatError::corrupt(
                what,
                at,
                format!("column {} ({}) is missing", def.id, def.name),
            ));
        }
    }
    Ok(Chunk {
        table,
        rows: m.rows as usize,
        flow_rows: m.flow_rows as usize,
        columns,
        offset: at,
    })
}

/// Check the CRC of every column body of a chunk whose meta checked out.
fn verify_crcs(file: &[u8], at: u64, h: &BlockHeader, m: &ChunkMeta) -> Result<()> {
    let body = (at + h.body_offset()) as usize;
    for c in &m.columns {
        let s = body + c.offset as usize;
        let got = crc32fast::hash(&file[s..s + c.len as usize]);
        if got != c.crc {
            return Err(FormatError::Crc {
                what: format!("chunk {} column {}", m.seq, c.id),
                offset: at,
                expected: c.crc,
                got,
            });
        }
    }
    Ok(())
}

/// Scan blocks forward from `first`, keeping every chunk that validates
/// completely (column CRCs included); stop at the first bad block.
fn scan(file: &[u8], first: u64) -> (Vec<ChunkEntry>, Recovery) {
    let mut at = first;
    let mut chunks = Vec::new();
    let mut events = 0u64;
    let len = file.len() as u64;
    let mut stopped_because = String::new();
    while at < len {
        let h = match BlockHeader::parse(file, at) {
            Ok(h) => h,
            Err(e) => {
                stopped_because = e.to_string();
                break;
            }
        };
        match h.kind {
            kind::CHUNK => {
                let checked = chunk_meta(file, at)
                    .and_then(|(h, m)| verify_crcs(file, at, &h, &m).map(|_| m));
                match checked {
                    Ok(m) => {
                        events += m.rows as u64;
                        chunks.push(ChunkEntry {
                            offset: at,
                            len: h.total_len(),
                            table: m.table,
                            rows: m.rows,
                            t_min: m.t_min,
                            t_max: m.t_max,
                            pid_min: m.pid_min,
                            pid_max: m.pid_max,
                        });
                    }
                    Err(e) => {
                        stopped_because = e.to_string();
                        break;
                    }
                }
            }
            kind::FOOTER => {
                stopped_because = format!("footer at offset {at} without a valid trailer");
                break;
            }
            _ => {} // unknown block of a newer minor version: skip by length
        }
        at += h.total_len();
    }
    let rec = Recovery {
        chunks: chunks.len(),
        events,
        ignored_bytes: len - at.min(len),
        stopped_because,
    };
    (chunks, rec)
}

/// Stored and decompressed sizes of one chunk's columns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChunkSizes {
    /// Bytes of the block on disk.
    pub stored: u64,
    /// Bytes of the columns after decompression.
    pub raw: u64,
}

impl Trace {
    /// Sizes of chunk `index` (reads only its meta, decompresses nothing).
    pub fn chunk_sizes(&self, index: usize) -> Result<ChunkSizes> {
        let e = self.chunks.get(index).ok_or_else(|| {
            FormatError::Invalid(format!(
                "no chunk {index} (the file has {})",
                self.chunks.len()
            ))
        })?;
        let (_, m) = chunk_meta(self.data.bytes(), e.offset)?;
        // Only known columns: their raw_len passed check_meta (rows x
        // width); an unknown column's declared raw_len is unchecked.
        let table = Table::from_id(m.table);
        let raw = m
            .columns
            .iter()
            .filter(|c| table.is_some_and(|t| column_def(t, c.id).is_some()))
            .fold(0u64, |sum, c| sum.saturating_add(c.raw_len));
        Ok(ChunkSizes { stored: e.len, raw })
    }
}
