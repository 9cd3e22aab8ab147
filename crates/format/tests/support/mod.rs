//! Shared by the hostile-input tests (`tests/hostile.rs`) and the fuzz
//! target (`fuzz/`): small valid seed traces, a block walker that follows
//! FORMAT.md byte by byte, a CRC fix-up that makes a mutated file pass every
//! checksum again (so mutations reach the meta, rkyv and column decoders
//! instead of dying at the first CRC), and `exercise`, which does everything
//! a reader does with a file: index, every chunk's sizes, every chunk decoded
//! into its typed batch, and the `snoop info` summary arithmetic.

#![allow(dead_code)]

use snoop_format::synth::{write_synthetic, SynthConfig};
use snoop_format::{
    source, ColumnSet, FileInfo, ProcessKind, ProcessRow, Table, Trace, TraceWriter, WriterOptions,
};

/// A small trace with rows in every table (messages, packets, connections,
/// processes with exec/exit and file names, stats), `chunk_rows` rows per
/// chunk. `finish = false` leaves it as a killed recorder would.
pub fn sample_trace(events: u64, chunk_rows: usize, finish: bool) -> Vec<u8> {
    let info = FileInfo {
        host: "hostile".into(),
        kernel: "6.18".into(),
        snoop_version: "0.1.0".into(),
        command: vec!["snoop".into(), "test".into()],
        boot_to_wall_ns: 1_767_225_600_000_000_000,
        start_ns: 1_000,
        ifaces: vec![(1, "lo".into())],
    };
    let opts = WriterOptions {
        chunk_rows,
        zstd_level: 1,
    };
    let mut w = TraceWriter::new(Vec::new(), &info, opts).expect("writer");
    let cfg = SynthConfig {
        flows: 20,
        processes: 5,
        start_ns: 1_000,
        ..SynthConfig::default()
    };
    let totals = write_synthetic(&mut w, cfg.clone(), events).expect("synth");
    let s = snoop_format::synth::Synth::new(cfg);
    for (i, f) in s.flows().iter().take(8).enumerate() {
        let i = i as u64;
        w.push_packet(2_000 + i, f, 60 + i as u32, snoop_format::Direction::Rx, 1)
            .expect("packet");
    }
    w.push_process(&ProcessRow {
        ts_ns: totals.end_ns + 2,
        kind: ProcessKind::Exit,
        pid: 77,
        tid: 77,
        ppid: 1,
        comm: snoop_format::comm_bytes("leaver"),
        exit_code: -9,
        filename: String::new(),
    })
    .expect("process");
    w.push_stats(totals.end_ns + 3, source::PACKETS, 5, 8)
        .expect("stats");
    if finish {
        w.finish(totals.end_ns + 10).expect("finish")
    } else {
        w.flush().expect("flush");
        // A killed writer: take the bytes without the footer. `finish`
        // would write it, so rebuild from a finished file minus the tail.
        let full = w.finish(totals.end_ns + 10).expect("finish");
        let t = blocks(&full);
        let footer = t.iter().find(|b| b.kind == 3).expect("footer block").offset;
        full[..footer].to_vec()
    }
}

/// One block as FORMAT.md lays it out.
#[derive(Clone, Copy, Debug)]
pub struct Block {
    /// File offset of the block header.
    pub offset: usize,
    /// Block kind (1 info, 2 chunk, 3 footer).
    pub kind: u8,
    /// Meta bytes: `[meta, meta + meta_len)`.
    pub meta: usize,
    /// Meta length.
    pub meta_len: usize,
    /// Body start.
    pub body: usize,
    /// Body length.
    pub body_len: usize,
    /// Total block length.
    pub total: usize,
}

fn pad16(n: usize) -> usize {
    n.div_ceil(16) * 16
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// Walk blocks from offset 32 while their magic and lengths fit the file
/// (CRCs are not checked: this is the tool that repairs them).
pub fn blocks(file: &[u8]) -> Vec<Block> {
    let mut out = Vec::new();
    let mut at = 32usize;
    while at + 32 <= file.len() && &file[at..at + 4] == b"SNPB" {
        let meta_len = u32_at(file, at + 8) as usize;
        let body_len = u64_at(file, at + 16);
        if meta_len > file.len() || body_len > file.len() as u64 {
            break;
        }
        let body_len = body_len as usize;
        let total = 32 + pad16(meta_len) + pad16(body_len);
        if at + total > file.len() {
            break;
        }
        out.push(Block {
            offset: at,
            kind: file[at + 4],
            meta: at + 32,
            meta_len,
            body: at + 32 + pad16(meta_len),
            body_len,
            total,
        });
        at += total;
    }
    out
}

pub use snoop_format::meta::{ArchivedChunkMeta, ChunkMeta, Footer};

/// Decode a chunk meta (validated) from a block of `file`.
pub fn chunk_meta(file: &[u8], b: &Block) -> Option<ChunkMeta> {
    let mut v = rkyv::util::AlignedVec::<16>::new();
    v.extend_from_slice(&file[b.meta..b.meta + b.meta_len]);
    rkyv::from_bytes::<ChunkMeta, rkyv::rancor::Error>(&v).ok()
}

/// Recompute every checksum of `file` in place: file header, each block's
/// column CRCs (chunks whose meta still validates), meta CRC and header CRC,
/// and the trailer. Lengths, offsets and values are left as they are.
pub fn fix_crcs(file: &mut [u8]) {
    if file.len() >= 32 && &file[0..8] == b"SNOOPTRC" {
        let c = crc32fast::hash(&file[0..28]);
        file[28..32].copy_from_slice(&c.to_le_bytes());
    }
    let bl = blocks(file);
    // The block where the walk stopped (e.g. a length past the end): its
    // header CRC too, so the reader sees the bad length, not a bad CRC.
    let next = bl.last().map_or(32, |b| b.offset + b.total);
    if next + 32 <= file.len() && &file[next..next + 4] == b"SNPB" {
        let hc = crc32fast::hash(&file[next..next + 24]);
        file[next + 24..next + 28].copy_from_slice(&hc.to_le_bytes());
    }
    for b in bl {
        if b.kind == 2 {
            fix_column_crcs(file, &b);
        }
        let mc = crc32fast::hash(&file[b.meta..b.meta + b.meta_len]);
        file[b.offset + 12..b.offset + 16].copy_from_slice(&mc.to_le_bytes());
        let hc = crc32fast::hash(&file[b.offset..b.offset + 24]);
        file[b.offset + 24..b.offset + 28].copy_from_slice(&hc.to_le_bytes());
    }
    let n = file.len();
    if n >= 64 && &file[n - 32..n - 24] == b"SNOOPEND" {
        let c = crc32fast::hash(&file[n - 32..n - 8]);
        file[n - 8..n - 4].copy_from_slice(&c.to_le_bytes());
    }
}

/// Patch each archived column's `crc` field in place (found by address in
/// the validated archive, so the rest of the meta keeps its mutations).
fn fix_column_crcs(file: &mut [u8], b: &Block) {
    let mut v = rkyv::util::AlignedVec::<16>::new();
    v.extend_from_slice(&file[b.meta..b.meta + b.meta_len]);
    let Ok(m) = rkyv::access::<ArchivedChunkMeta, rkyv::rancor::Error>(&v) else {
        return;
    };
    let base = v.as_ptr() as usize;
    let mut patches = Vec::new();
    for c in m.columns.iter() {
        let (off, len) = (c.offset.to_native(), c.len.to_native());
        let Some(end) = off.checked_add(len) else {
            continue;
        };
        if end > b.body_len as u64 {
            continue;
        }
        let s = b.body + off as usize;
        let crc = crc32fast::hash(&file[s..s + len as usize]);
        let at = (&c.crc as *const _ as usize) - base;
        patches.push((at, crc));
    }
    for (at, crc) in patches {
        file[b.meta + at..b.meta + at + 4].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Replace the meta of chunk block `b` with `m` re-encoded (same length
/// required; the body is untouched), then fix every CRC.
pub fn set_chunk_meta(file: &mut [u8], b: &Block, m: &ChunkMeta) {
    let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(m).expect("serialize");
    assert_eq!(bytes.len(), b.meta_len, "re-encoded meta changed length");
    file[b.meta..b.meta + b.meta_len].copy_from_slice(&bytes);
    fix_crcs(file);
}

/// What the reader and `snoop info` do with a file, start to end. Returns
/// the number of rows decoded; any panic inside is a bug.
pub fn exercise(bytes: Vec<u8>) -> u64 {
    let Ok(t) = Trace::from_bytes(bytes) else {
        return 0;
    };
    let _ = (t.version(), t.info().wall_ns(t.info().start_ns), t.end_ns());
    let _ = (t.is_complete(), t.recovery(), t.file_len());
    // `snoop info` (src/info.rs `summarize`), same arithmetic.
    let events: u64 = [
        Table::Messages,
        Table::Packets,
        Table::Connections,
        Table::Processes,
    ]
    .into_iter()
    .map(|tb| t.rows(tb))
    .sum();
    let (mut stored, mut raw) = (0u64, 0u64);
    for i in 0..t.chunks().len() {
        if let Ok(s) = t.chunk_sizes(i) {
            stored += s.stored;
            raw += s.raw;
        }
    }
    let _ = (events, stored, raw);
    let mut dropped = std::collections::BTreeMap::<String, u64>::new();
    let mut decoded = 0u64;
    for i in 0..t.chunks().len() {
        let Ok(c) = t.read_chunk(i, ColumnSet::ALL) else {
            continue;
        };
        decoded += c.rows as u64;
        match c.table {
            Table::Stats => {
                if let Ok(b) = c.into_stats() {
                    for (s, d) in b.source.iter().zip(&b.dropped) {
                        let n = dropped.entry(source::name(*s)).or_default();
                        *n = n.saturating_add(*d);
                    }
                }
            }
            Table::Processes => {
                let _ = c.into_processes();
            }
            _ => {
                if let Ok(b) = c.into_events() {
                    // What an analyzer does: look every row's flow up.
                    for &f in &b.flow {
                        let _ = b.flows.pid.get(f as usize);
                    }
                }
            }
        }
        // Only some columns, as `analyze` asks.
        let _ = t.read_chunk(i, ColumnSet::of(&[0, 2, 100]));
    }
    let last = t.chunks().iter().map(|c| c.t_max).max().unwrap_or(0);
    let end = t.end_ns().unwrap_or(last).max(t.info().start_ns);
    let _ = end - t.info().start_ns;
    decoded
}

// ---------------------------------------------------------------------------
// Deterministic mutations (hostile.rs, and the analyzer's bounded fuzz test).

/// A seeded splitmix64 generator (deterministic mutations).
pub struct Rng(pub u64);

impl Rng {
    /// Next 64 random bits.
    pub fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Values that tend to break length arithmetic.
pub const INTERESTING: [u64; 12] = [
    0,
    1,
    15,
    16,
    255,
    0xFFFF,
    (1 << 24) - 1,
    1 << 24,
    (1 << 24) + 1,
    0x7FFF_FFFF,
    0xFFFF_FFFF,
    u64::MAX,
];

/// One structure-aware mutation: most land inside a block header or a meta
/// (where the checks are), some anywhere.
pub fn mutate(rng: &mut Rng, f: &mut Vec<u8>) {
    if f.is_empty() {
        f.push(0);
    }
    let bl = blocks(f);
    let at = match (rng.below(4), bl.is_empty()) {
        (0 | 1, false) => {
            let b = bl[rng.below(bl.len())];
            if rng.below(2) == 0 || b.meta_len == 0 {
                b.offset + rng.below(32)
            } else {
                b.meta + rng.below(b.meta_len)
            }
        }
        _ => rng.below(f.len()),
    };
    let at = at.min(f.len() - 1);
    match rng.below(8) {
        0 => f[at] ^= 1 << rng.below(8),
        1 => f[at] = rng.next() as u8,
        2 | 3 => {
            let v = INTERESTING[rng.below(INTERESTING.len())];
            let w = [1, 2, 4, 8][rng.below(4)];
            let end = (at + w).min(f.len());
            let bytes = v.to_le_bytes();
            f[at..end].copy_from_slice(&bytes[..end - at]);
        }
        4 => f.truncate(at),
        5 => {
            let n = rng.below(64).min(f.len() - at);
            f.drain(at..at + n);
        }
        6 => {
            // duplicate a block (or a random range) somewhere
            let (s, n) = match bl.get(rng.below(bl.len() + 1)) {
                Some(b) => (b.offset, b.total),
                None => (at, rng.below(256).min(f.len() - at)),
            };
            let piece = f[s..s + n].to_vec();
            let to = rng.below(f.len() + 1);
            f.splice(to..to, piece);
        }
        _ => {
            let v = rng.next() as u32 as u64 % (f.len() as u64 + 64);
            let end = (at + 8).min(f.len());
            f[at..end].copy_from_slice(&v.to_le_bytes()[..end - at]);
        }
    }
}
