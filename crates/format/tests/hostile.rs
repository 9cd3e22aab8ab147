//! Hostile trace files. Each test writes a valid trace with
//! [`snoop_format::TraceWriter`], patches bytes the way FORMAT.md lays them
//! out (recomputing CRCs so the damage reaches the check that should catch
//! it), and requires a clear error or a correct read — never a panic — with
//! memory bounded by what the file declares (`raw_len == rows x width`,
//! rows ≤ 2^24, meta ≤ 64 MiB, strings ≤ 256 MiB). A counting allocator
//! measures the peak heap of each read on its own thread.
//!
//! The last tests are a deterministic mutation fuzzer (the CI-sized sibling
//! of the libFuzzer target in `fuzz/`) and the regression tests of what the
//! fuzzing and this review found.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use snoop_format::layout::{kind, BlockHeader, FileHeader, Trailer};
use snoop_format::{ColumnSet, FormatError, Table, Trace};
use support::{
    blocks, chunk_meta, exercise, fix_crcs, mutate, sample_trace, set_chunk_meta, Block, Rng,
};

// ---------------------------------------------------------------------------
// Peak heap per thread.

struct Counting;

thread_local! {
    static CUR: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn add(n: isize) {
    let _ = CUR.try_with(|c| {
        let v = c.get() + n;
        c.set(v);
        let _ = PEAK.try_with(|p| p.set(p.get().max(v)));
    });
}

// SAFETY: forwards to the system allocator; the counters are const-initialised
// thread locals without destructors, so touching them never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        add(l.size() as isize);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        add(-(l.size() as isize));
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        add(new as isize - l.size() as isize);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Run `f` and return its result with the peak heap growth it caused.
fn peak<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = CUR.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let r = f();
    let grown = PEAK.with(Cell::get) - base;
    (r, grown.max(0) as usize)
}

const MIB: usize = 1 << 20;

// ---------------------------------------------------------------------------
// Helpers.

/// Open, then decode every chunk; the first error as text, or the rows read.
fn read_all(file: Vec<u8>) -> Result<u64, String> {
    let t = Trace::from_bytes(file).map_err(|e| e.to_string())?;
    let mut rows = 0;
    for i in 0..t.chunks().len() {
        rows += t
            .read_chunk(i, ColumnSet::ALL)
            .map_err(|e| e.to_string())?
            .rows as u64;
    }
    Ok(rows)
}

fn chunks(file: &[u8]) -> Vec<Block> {
    blocks(file).into_iter().filter(|b| b.kind == 2).collect()
}

/// Events in a sample trace (all tables but stats, plus stats rows).
fn all_rows(file: &[u8]) -> u64 {
    read_all(file.to_vec()).expect("valid sample")
}

/// A block with `meta` and `body`, as the writer lays it out.
fn block_bytes(k: u8, table: u8, meta: &[u8], body: &[u8]) -> Vec<u8> {
    let h = BlockHeader {
        kind: k,
        table,
        meta_len: meta.len() as u32,
        meta_crc: crc32fast::hash(meta),
        body_len: body.len() as u64,
    };
    let mut out = h.encode().to_vec();
    out.extend_from_slice(meta);
    out.resize(h.body_offset() as usize, 0);
    out.extend_from_slice(body);
    out.resize(h.total_len() as usize, 0);
    out
}

fn set_u64(file: &mut [u8], at: usize, v: u64) {
    file[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn set_u32(file: &mut [u8], at: usize, v: u32) {
    file[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// Rewrite chunk `b` with `m` as its meta (any length), dropping footer and
/// trailer: the result reads through recovery.
fn replace_chunk(file: &[u8], b: &Block, m: &support::ChunkMeta) -> Vec<u8> {
    let meta = rkyv::to_bytes::<rkyv::rancor::Error>(m).expect("serialize");
    let body = &file[b.body..b.body + b.body_len];
    let end = blocks(file)
        .iter()
        .find(|x| x.kind == 3)
        .map_or(file.len(), |f| f.offset);
    let mut out = file[..b.offset].to_vec();
    out.extend_from_slice(&block_bytes(kind::CHUNK, m.table, &meta, body));
    out.extend_from_slice(&file[b.offset + b.total..end]);
    out
}

// ---------------------------------------------------------------------------
// Sanity of the tools.

#[test]
fn fix_crcs_is_identity_on_a_valid_file() {
    for finish in [true, false] {
        let f = sample_trace(100, 16, finish);
        let mut g = f.clone();
        fix_crcs(&mut g);
        assert_eq!(f, g);
        let t = Trace::from_bytes(f.clone()).unwrap();
        assert_eq!(t.is_complete(), finish);
        assert!(all_rows(&f) > 100);
    }
}

// ---------------------------------------------------------------------------
// Lengths pointing outside the file.

#[test]
fn block_body_past_end_of_file_is_refused() {
    for finish in [true, false] {
        let mut f = sample_trace(100, 16, finish);
        let c = chunks(&f)[2];
        set_u64(&mut f, c.offset + 16, 1 << 40);
        fix_crcs(&mut f);
        if finish {
            // The footer indexes the chunk: reading it fails.
            let e = read_all(f.clone()).unwrap_err();
            assert!(e.contains("past end of file"), "{e}");
        } else {
            let t = Trace::from_bytes(f).unwrap();
            let r = t.recovery().unwrap();
            assert_eq!(r.chunks, 2, "the two chunks before the bad one are kept");
            assert!(r.stopped_because.contains("past end of file"), "{r:?}");
            assert!(r.ignored_bytes > 0);
        }
    }
}

#[test]
fn meta_longer_than_64_mib_is_refused_before_reading() {
    let mut f = sample_trace(100, 16, false);
    let c = chunks(&f)[0];
    set_u32(&mut f, c.offset + 8, (64 << 20) + 16);
    fix_crcs(&mut f);
    let t = Trace::from_bytes(f).unwrap();
    let r = t.recovery().unwrap();
    assert_eq!(r.chunks, 0);
    assert!(r.stopped_because.contains("exceeds limit"), "{r:?}");
}

#[test]
fn column_outside_its_body_is_refused() {
    let f = sample_trace(100, 16, true);
    let c = chunks(&f)[0];
    let mut m = chunk_meta(&f, &c).unwrap();
    m.columns[1].offset = c.body_len as u64 - 2; // len > 2, so the end is outside
    m.columns[0].offset = u64::MAX - 1; // and an overflowing one
    let mut g = f.clone();
    set_chunk_meta(&mut g, &c, &m);
    let e = read_all(g).unwrap_err();
    assert!(e.contains("outside body"), "{e}");
}

#[test]
fn trailer_pointing_outside_falls_back_to_recovery() {
    let mut f = sample_trace(100, 16, true);
    let n = f.len();
    let rows = all_rows(&f);
    set_u64(&mut f, n - 24, 1 << 50); // footer_offset
    fix_crcs(&mut f);
    let t = Trace::from_bytes(f.clone()).unwrap();
    assert!(!t.is_complete());
    let r = t.recovery().unwrap();
    assert!(r.stopped_because.contains("footer at offset"), "{r:?}");
    // Every chunk is still there (recovery ends at the orphan footer).
    assert_eq!(read_all(f).unwrap(), rows);
}

#[test]
fn footer_entry_outside_file_falls_back_to_recovery() {
    let f = sample_trace(100, 16, true);
    let rows = all_rows(&f);
    let fb = *blocks(&f).iter().find(|b| b.kind == 3).unwrap();
    let mut v = rkyv::util::AlignedVec::<16>::new();
    v.extend_from_slice(&f[fb.meta..fb.meta + fb.meta_len]);
    let mut footer = rkyv::from_bytes::<support::Footer, rkyv::rancor::Error>(&v).unwrap();
    footer.chunks[1].len = 1 << 45;
    let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&footer).unwrap();
    assert_eq!(bytes.len(), fb.meta_len);
    let mut g = f.clone();
    g[fb.meta..fb.meta + fb.meta_len].copy_from_slice(&bytes);
    fix_crcs(&mut g);
    let t = Trace::from_bytes(g.clone()).unwrap();
    assert!(!t.is_complete(), "a footer with a bad entry is not trusted");
    assert_eq!(read_all(g).unwrap(), rows);
}

// ---------------------------------------------------------------------------
// Huge declared row counts.

#[test]
fn rows_above_2_pow_24_are_refused() {
    let f = sample_trace(100, 16, false);
    let c = chunks(&f)[0];
    let mut m = chunk_meta(&f, &c).unwrap();
    m.rows = (1 << 24) + 1;
    let mut g = f.clone();
    set_chunk_meta(&mut g, &c, &m);
    let t = Trace::from_bytes(g).unwrap();
    let r = t.recovery().unwrap();
    assert_eq!(r.chunks, 0);
    assert!(r.stopped_because.contains("rows 16777217"), "{r:?}");
}

#[test]
fn huge_consistent_row_count_allocates_at_most_rows_x_width() {
    // Every column claims 2^24 rows (raw_len = 2^24 x width, consistent),
    // but the stored frames hold 16 rows: decoding must fail cleanly after
    // allocating no more than one column's declared raw size.
    let f = sample_trace(100, 16, true);
    let c = chunks(&f)[0];
    let mut m = chunk_meta(&f, &c).unwrap();
    let big = 1u32 << 24;
    m.rows = big;
    m.flow_rows = big;
    for col in &mut m.columns {
        let w = col.raw_len / col.rows.max(1) as u64; // fixed-width tables only here
        col.rows = big;
        col.raw_len = big as u64 * w;
        col.codec = 1;
    }
    // Keep the footer valid: the entry's rows must match the chunk.
    let mut g = f.clone();
    set_chunk_meta(&mut g, &c, &m);
    let g = replace_footer_rows(&g, 0, big);
    let (r, grown) = peak(|| {
        let t = Trace::from_bytes(g.clone()).unwrap();
        assert!(t.is_complete());
        t.read_chunk(0, ColumnSet::ALL).map(|_| ())
    });
    let e = r.unwrap_err().to_string();
    assert!(e.contains("zstd") || e.contains("decompressed to"), "{e}");
    // The widest column of a messages chunk is 16 bytes (comm, addresses).
    assert!(grown <= 16 * big as usize + 8 * MIB, "peak {grown} bytes");
}

/// Set footer entry `i`'s row count (keeps the footer the same length).
fn replace_footer_rows(f: &[u8], i: usize, rows: u32) -> Vec<u8> {
    let fb = *blocks(f).iter().find(|b| b.kind == 3).unwrap();
    let mut v = rkyv::util::AlignedVec::<16>::new();
    v.extend_from_slice(&f[fb.meta..fb.meta + fb.meta_len]);
    let mut footer = rkyv::from_bytes::<support::Footer, rkyv::rancor::Error>(&v).unwrap();
    footer.chunks[i].rows = rows;
    let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&footer).unwrap();
    let mut g = f.to_vec();
    g[fb.meta..fb.meta + fb.meta_len].copy_from_slice(&bytes);
    fix_crcs(&mut g);
    g
}

// ---------------------------------------------------------------------------
// Decompression bombs.

/// A zstd frame of 12 bytes that declares `size` bytes of content
/// (single segment, 8-byte content size, one empty last raw block).
fn bomb_frame(size: u64) -> Vec<u8> {
    let mut v = vec![0x28, 0xB5, 0x2F, 0xFD, 0xE0];
    v.extend_from_slice(&size.to_le_bytes());
    v.extend_from_slice(&[0x01, 0x00, 0x00]);
    v
}

/// The first chunk's first column replaced by `frame`, declaring `raw_len`.
fn with_bomb(raw_len: u64, frame: &[u8]) -> Vec<u8> {
    let f = sample_trace(100, 16, false);
    let c = chunks(&f)[0];
    let mut m = chunk_meta(&f, &c).unwrap();
    // Append the frame to the body, point column 0 at it.
    let mut body = f[c.body..c.body + c.body_len].to_vec();
    let off = body.len() as u64;
    body.extend_from_slice(frame);
    m.columns[0].offset = off;
    m.columns[0].len = frame.len() as u64;
    m.columns[0].raw_len = raw_len;
    m.columns[0].codec = 1;
    m.columns[0].crc = crc32fast::hash(frame);
    let meta = rkyv::to_bytes::<rkyv::rancor::Error>(&m).unwrap();
    let mut out = f[..c.offset].to_vec();
    out.extend_from_slice(&block_bytes(kind::CHUNK, m.table, &meta, &body));
    out.extend_from_slice(&f[c.offset + c.total..]);
    out
}

#[test]
fn decompression_bomb_declared_in_meta_is_refused_before_allocation() {
    // raw_len 1 TiB: check_meta refuses (raw_len != rows x width) before
    // anything is allocated for the column; recovery keeps nothing of it.
    let g = with_bomb(1 << 40, &bomb_frame(1 << 40));
    let (t, grown) = peak(|| Trace::from_bytes(g.clone()).unwrap());
    let r = t.recovery().unwrap();
    assert_eq!(r.chunks, 0);
    assert!(
        r.stopped_because
            .contains("declares 1099511627776 raw bytes"),
        "{r:?}"
    );
    assert!(grown < 4 * MIB, "peak {grown} bytes while refusing a bomb");
}

#[test]
fn decompression_bomb_in_frame_header_is_refused_within_declared_size() {
    // The meta is honest (raw_len = rows x 8), the frame declares 1 TiB:
    // decompression into a raw_len buffer fails, nothing larger is allocated.
    let f = sample_trace(100, 16, false);
    let c = chunks(&f)[0];
    let rows = chunk_meta(&f, &c).unwrap().rows as u64;
    let g = with_bomb(rows * 8, &bomb_frame(1 << 40));
    let (r, grown) = peak(|| {
        let t = Trace::from_bytes(g.clone()).unwrap();
        assert_eq!(t.recovery().unwrap().stopped_because, "");
        t.read_chunk(0, ColumnSet::ALL).map(|_| ())
    });
    let e = r.unwrap_err().to_string();
    assert!(e.contains("zstd"), "{e}");
    assert!(grown < 4 * MIB, "peak {grown} bytes");
}

#[test]
fn real_zstd_bomb_is_bounded_by_declared_rows() {
    // A genuine frame of 64 MiB of zeros (a few KiB compressed) behind a
    // column that declares 16 rows: the decoder stops at raw_len.
    let zeros = vec![0u8; 64 * MIB];
    let frame = zstd::bulk::compress(&zeros, 19).unwrap();
    drop(zeros);
    assert!(frame.len() < 8 * 1024, "{}", frame.len());
    let f = sample_trace(100, 16, false);
    let c = chunks(&f)[0];
    let rows = chunk_meta(&f, &c).unwrap().rows as u64;
    let g = with_bomb(rows * 8, &frame);
    let (r, grown) = peak(|| {
        let t = Trace::from_bytes(g.clone()).unwrap();
        t.read_chunk(0, ColumnSet::ALL).map(|_| ())
    });
    assert!(r.is_err());
    assert!(grown < 4 * MIB, "peak {grown} bytes");
}

// ---------------------------------------------------------------------------
// Mismatched column lengths.

#[test]
fn column_rows_differing_from_chunk_rows_are_refused() {
    let f = sample_trace(100, 16, false);
    let c = chunks(&f)[0];
    let mut m = chunk_meta(&f, &c).unwrap();
    m.columns[2].rows += 1;
    let mut g = f.clone();
    set_chunk_meta(&mut g, &c, &m);
    let r = Trace::from_bytes(g).unwrap().recovery().unwrap().clone();
    assert!(r.stopped_because.contains("rows, chunk says"), "{r:?}");
}

#[test]
fn raw_len_differing_from_rows_x_width_is_refused() {
    let f = sample_trace(100, 16, false);
    let c = chunks(&f)[0];
    let mut m = chunk_meta(&f, &c).unwrap();
    m.columns[1].raw_len += 4;
    let mut g = f.clone();
    set_chunk_meta(&mut g, &c, &m);
    let r = Trace::from_bytes(g).unwrap().recovery().unwrap().clone();
    assert!(r.stopped_because.contains("raw bytes"), "{r:?}");
}

#[test]
fn raw_codec_with_len_differing_from_raw_len_is_refused() {
    let f = sample_trace(100, 16, false);
    let c = chunks(&f)[0];
    let mut m = chunk_meta(&f, &c).unwrap();
    let i = m.columns.iter().position(|c| c.codec == 0).unwrap_or(0);
    m.columns[i].codec = 0;
    m.columns[i].len = m.columns[i].raw_len.saturating_sub(1);
    let mut g = f.clone();
    set_chunk_meta(&mut g, &c, &m);
    let r = Trace::from_bytes(g).unwrap().recovery().unwrap().clone();
    assert!(
        r.stopped_because.contains("stores") || r.stopped_because.contains("CRC"),
        "{r:?}"
    );
}

#[test]
fn flow_index_outside_dictionary_is_refused() {
    let f = sample_trace(100, 16, false);
    let c = chunks(&f)[0];
    let mut m = chunk_meta(&f, &c).unwrap();
    assert_eq!(m.table, Table::Messages as u8);
    m.flow_rows = 0; // flow columns now mismatch (they hold more rows)
    for col in m.columns.iter_mut().filter(|c| c.id >= 100) {
        col.rows = 0;
        col.raw_len = 0;
        if col.codec == 0 {
            col.len = 0;
        }
    }
    let mut g = f.clone();
    set_chunk_meta(&mut g, &c, &m);
    let t = Trace::from_bytes(g).unwrap();
    assert_eq!(t.recovery().unwrap().stopped_because, "");
    let chunk = t.read_chunk(0, ColumnSet::of(&[1])).unwrap();
    let e = chunk.into_events().unwrap_err().to_string();
    assert!(e.contains("outside dictionary"), "{e}");
}

// ---------------------------------------------------------------------------
// Duplicate or missing footer.

#[test]
fn missing_footer_recovers_every_chunk() {
    let full = sample_trace(100, 16, true);
    let cut = sample_trace(100, 16, false);
    let t = Trace::from_bytes(cut.clone()).unwrap();
    let r = t.recovery().unwrap();
    assert_eq!(r.chunks, chunks(&full).len());
    assert_eq!(r.ignored_bytes, 0);
    assert_eq!(read_all(cut).unwrap(), all_rows(&full));
}

#[test]
fn duplicate_footer_uses_the_one_the_trailer_points_at() {
    let f = sample_trace(100, 16, true);
    let rows = all_rows(&f);
    let fb = *blocks(&f).iter().find(|b| b.kind == 3).unwrap();
    let footer = f[fb.offset..fb.offset + fb.total].to_vec();
    // chunks, footer, footer, trailer -> the trailer points at the second.
    let mut g = f[..fb.offset + fb.total].to_vec();
    g.extend_from_slice(&footer);
    let t = Trailer {
        footer_offset: (fb.offset + fb.total) as u64,
        footer_len: fb.total as u64,
    };
    g.extend_from_slice(&t.encode());
    let tr = Trace::from_bytes(g.clone()).unwrap();
    assert!(tr.is_complete());
    assert_eq!(read_all(g).unwrap(), rows);
}

#[test]
fn two_footers_without_trailer_recover_up_to_the_first() {
    let f = sample_trace(100, 16, true);
    let rows = all_rows(&f);
    let fb = *blocks(&f).iter().find(|b| b.kind == 3).unwrap();
    let footer = f[fb.offset..fb.offset + fb.total].to_vec();
    let mut g = f[..fb.offset + fb.total].to_vec();
    g.extend_from_slice(&footer);
    let t = Trace::from_bytes(g.clone()).unwrap();
    let r = t.recovery().unwrap();
    assert!(
        r.stopped_because.contains("without a valid trailer"),
        "{r:?}"
    );
    assert_eq!(r.ignored_bytes, 2 * fb.total as u64);
    assert_eq!(read_all(g).unwrap(), rows);
}

#[test]
fn footer_in_the_middle_stops_recovery_there() {
    let f = sample_trace(100, 16, false);
    let c = chunks(&f);
    let fb_bytes = {
        let full = sample_trace(100, 16, true);
        let fb = *blocks(&full).iter().find(|b| b.kind == 3).unwrap();
        full[fb.offset..fb.offset + fb.total].to_vec()
    };
    let mut g = f[..c[3].offset].to_vec();
    g.extend_from_slice(&fb_bytes);
    g.extend_from_slice(&f[c[3].offset..]);
    let t = Trace::from_bytes(g).unwrap();
    assert_eq!(t.recovery().unwrap().chunks, 3);
}

// ---------------------------------------------------------------------------
// Versions.

#[test]
fn major_2_is_refused_with_a_clear_message() {
    let mut f = sample_trace(10, 16, true);
    f[8..10].copy_from_slice(&2u16.to_le_bytes());
    fix_crcs(&mut f);
    let e = Trace::from_bytes(f).err().unwrap();
    assert!(matches!(
        e,
        FormatError::UnsupportedVersion { major: 2, .. }
    ));
    assert_eq!(
        e.to_string(),
        format!(
            "unsupported trace format version 2.{} (this snoop reads 1.x); upgrade snoop",
            snoop_format::layout::MINOR
        )
    );
}

#[test]
fn minor_9_with_unknown_block_kind_is_skipped_by_length() {
    for finish in [false, true] {
        let f = sample_trace(100, 16, finish);
        let rows = all_rows(&f);
        let unknown = block_bytes(9, 0, b"a block of a future minor version", &[7u8; 100]);
        let mut g = f.clone();
        g[8..12].copy_from_slice(&[1, 0, 9, 0]); // 1.9
        let cs = chunks(&f);
        // One unknown block between chunks 1 and 2 and one at the end of
        // the chunks (before the footer when there is one).
        let at_mid = cs[2].offset;
        let at_end = cs.last().map(|c| c.offset + c.total).unwrap();
        let mut h = g[..at_mid].to_vec();
        h.extend_from_slice(&unknown);
        h.extend_from_slice(&g[at_mid..at_end]);
        h.extend_from_slice(&unknown);
        let shift = 2 * unknown.len() as u64;
        if finish {
            // The footer's entries move: rebuild it.
            let fb = *blocks(&f).iter().find(|b| b.kind == 3).unwrap();
            let mut v = rkyv::util::AlignedVec::<16>::new();
            v.extend_from_slice(&f[fb.meta..fb.meta + fb.meta_len]);
            let mut footer = rkyv::from_bytes::<support::Footer, rkyv::rancor::Error>(&v).unwrap();
            for e in &mut footer.chunks {
                if e.offset >= at_mid as u64 {
                    e.offset += unknown.len() as u64;
                }
            }
            let meta = rkyv::to_bytes::<rkyv::rancor::Error>(&footer).unwrap();
            let fo = h.len() as u64;
            let fbytes = block_bytes(kind::FOOTER, 0, &meta, &[]);
            h.extend_from_slice(&fbytes);
            h.extend_from_slice(
                &Trailer {
                    footer_offset: fo,
                    footer_len: fbytes.len() as u64,
                }
                .encode(),
            );
            assert_eq!(fo, fb.offset as u64 + shift);
        }
        fix_crcs(&mut h);
        let t = Trace::from_bytes(h.clone()).unwrap();
        assert_eq!(t.version(), "1.9");
        assert_eq!(t.is_complete(), finish);
        if let Some(r) = t.recovery() {
            assert_eq!(r.stopped_because, "", "{r:?}");
            assert_eq!(r.ignored_bytes, 0);
        }
        assert_eq!(read_all(h).unwrap(), rows);
    }
}

#[test]
fn header_crc_mismatch_names_both_values() {
    let mut f = sample_trace(10, 16, true);
    f[12] = 1; // flags, without fixing the CRC
    let e = Trace::from_bytes(f).err().unwrap().to_string();
    assert!(
        e.contains("file header") && e.contains("CRC mismatch"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------
// Unknown column ids.

#[test]
fn unknown_column_ids_are_skipped() {
    let f = sample_trace(100, 16, false);
    let rows = all_rows(&f);
    let c = chunks(&f)[0];
    let mut m = chunk_meta(&f, &c).unwrap();
    // Two columns of a future minor version: one reusing column 0's stored
    // bytes, one of an unknown type with an absurd raw_len (never decoded).
    let mut a = m.columns[0].clone();
    a.id = 50;
    let mut b = m.columns[1].clone();
    b.id = 120;
    b.ty = 99;
    b.codec = 7;
    b.raw_len = u64::MAX;
    m.columns.push(a);
    m.columns.insert(0, b);
    let g = replace_chunk(&f, &c, &m);
    let t = Trace::from_bytes(g.clone()).unwrap();
    assert_eq!(t.recovery().unwrap().stopped_because, "");
    assert_eq!(read_all(g.clone()).unwrap(), rows);
    assert!(exercise(g) >= rows);
}

// ---------------------------------------------------------------------------
// Regression tests: what this review and the fuzzers found.

/// Found by review: recovery checked the CRC of every column, but bounds
/// only of known ones, so an unknown column pointing outside the body
/// sliced past the file (panic).
#[test]
fn regression_unknown_column_outside_body_is_an_error_not_a_panic() {
    let f = sample_trace(100, 16, false);
    let c = chunks(&f)[0];
    for (offset, len) in [(1u64 << 40, 8u64), (u64::MAX - 3, 8), (0, 1 << 33)] {
        let mut m = chunk_meta(&f, &c).unwrap();
        let mut x = m.columns[0].clone();
        x.id = 60;
        x.offset = offset;
        x.len = len;
        m.columns.push(x);
        let g = replace_chunk(&f, &c, &m);
        let t = Trace::from_bytes(g).unwrap();
        let r = t.recovery().unwrap();
        assert_eq!(r.chunks, 0);
        assert!(r.stopped_because.contains("outside body"), "{r:?}");
    }
}

/// Found by review: `chunk_sizes` summed the declared raw_len of every
/// column, unknown ones (unchecked) included: overflow panic in debug
/// builds of `snoop info`, a wrong compression ratio in release.
#[test]
fn regression_unknown_column_raw_len_does_not_overflow_chunk_sizes() {
    let f = sample_trace(100, 16, false);
    let c = chunks(&f)[0];
    let mut m = chunk_meta(&f, &c).unwrap();
    let known: u64 = m.columns.iter().map(|c| c.raw_len).sum();
    for id in [70, 71] {
        let mut x = m.columns[0].clone();
        x.id = id;
        x.raw_len = u64::MAX;
        m.columns.push(x);
    }
    let g = replace_chunk(&f, &c, &m);
    let t = Trace::from_bytes(g).unwrap();
    assert_eq!(t.chunk_sizes(0).unwrap().raw, known);
}

/// Found by review: a known column listed many times was decoded once per
/// listing. All copies can share one small zstd frame, so a few KiB of
/// file made the reader allocate rows x width per copy (a memory bomb the
/// per-column bound did not cover). Duplicates are now refused.
#[test]
fn regression_duplicate_column_ids_are_refused() {
    let f = sample_trace(100, 16, false);
    let c = chunks(&f)[0];
    let mut m = chunk_meta(&f, &c).unwrap();
    let ts = m.columns.iter().find(|c| c.id == 0).unwrap().clone();
    for _ in 0..1000 {
        m.columns.push(ts.clone());
    }
    let g = replace_chunk(&f, &c, &m);
    let (t, grown) = peak(|| Trace::from_bytes(g.clone()).unwrap());
    let r = t.recovery().unwrap();
    assert_eq!(r.chunks, 0);
    assert!(r.stopped_because.contains("more than once"), "{r:?}");
    assert!(grown < 4 * MIB, "peak {grown}");
}

// ---------------------------------------------------------------------------
// Deterministic mutation fuzzing (bounded, for CI).

/// 12 000 mutated inputs (60% with CRCs recomputed so they pass the
/// checksums): no panic, and no read allocates more than the documented
/// bound allows for a chunk these small files can declare.
#[test]
fn deterministic_mutation_fuzz() {
    let n: usize = std::env::var("SNOOP_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12_000);
    let seeds: Vec<Vec<u8>> = vec![
        sample_trace(5, 4, true),
        sample_trace(40, 16, true),
        sample_trace(40, 16, false),
        sample_trace(200, 64, true),
    ];
    let mut rng = Rng(0x5EED);
    let mut ok_reads = 0u64;
    let mut worst = 0usize;
    let start = std::time::Instant::now();
    for i in 0..n {
        let mut f = seeds[rng.below(seeds.len())].clone();
        for _ in 0..1 + rng.below(4) {
            mutate(&mut rng, &mut f);
        }
        if rng.below(10) < 6 {
            fix_crcs(&mut f);
        }
        let input = f.clone();
        let r = std::panic::catch_unwind(move || peak(|| exercise(f)));
        match r {
            Ok((rows, grown)) => {
                ok_reads += u64::from(rows > 0);
                worst = worst.max(grown);
                if grown > BOUND {
                    let p = save_crash(i, &input);
                    panic!("input {i} made the reader allocate {grown} bytes (saved {p})");
                }
            }
            Err(_) => {
                let p = save_crash(i, &input);
                panic!("input {i} panicked the reader (saved to {p})");
            }
        }
    }
    eprintln!(
        "{n} mutated inputs in {:.1?}: {ok_reads} decoded rows, worst peak heap {worst} bytes",
        start.elapsed()
    );
}

/// What one mutated input may make the reader allocate: a string column
/// may declare up to 256 MiB (`MAX_STR_BYTES`), plus slack for the copy of
/// the file and the decoded columns of these small seeds. Since the zstd
/// frame's own content size must match `raw_len`, reaching it takes a frame
/// that claims that size.
const BOUND: usize = 256 * MIB + 16 * MIB;

fn save_crash(i: usize, input: &[u8]) -> String {
    let p = std::env::temp_dir().join(format!("snoop-hostile-crash-{i}.snp"));
    let _ = std::fs::write(&p, input);
    p.display().to_string()
}

/// Every file the libFuzzer run saved as a crash (none so far) stays in
/// `fuzz/regressions/`; each must now read without panicking.
#[test]
fn fuzz_regressions_do_not_panic() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return;
    };
    for e in rd.flatten() {
        let data = std::fs::read(e.path()).unwrap();
        let Some((&mode, file)) = data.split_first() else {
            continue;
        };
        let mut file = file.to_vec();
        if mode & 1 != 0 {
            fix_crcs(&mut file);
        }
        exercise(file);
    }
}

#[test]
fn file_header_versions_encode_as_documented() {
    let h = FileHeader {
        major: 1,
        minor: 9,
        flags: 0xFFFF_FFFF,
    };
    let b = h.encode();
    assert_eq!(&b[0..8], b"SNOOPTRC");
    assert_eq!(
        FileHeader::parse(&b).unwrap(),
        h,
        "unknown flags are ignored"
    );
}
