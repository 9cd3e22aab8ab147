//! Column encoding: delta for timestamps, byte shuffle for multi-byte values,
//! one zstd frame per column, CRC over the stored bytes. Decoding checks every
//! length against the meta before allocating, so a hostile file cannot make
//! the reader allocate more than `rows x width` (bounded by the chunk limits).

use crate::error::{FormatError, Result};
use crate::meta::{codec, transform, ColumnMeta};
use crate::schema::ColType;
use std::cell::RefCell;

/// Most rows one chunk may hold (readers reject more).
pub const MAX_CHUNK_ROWS: u32 = 1 << 24;
/// Most bytes a variable-length column may decompress to.
pub const MAX_STR_BYTES: u64 = 256 << 20;

/// A column ready to be written: its meta (offset filled in by the caller)
/// and stored bytes.
pub struct EncodedColumn {
    /// Meta; `offset` is 0 until the chunk is laid out.
    pub meta: ColumnMeta,
    /// Stored bytes.
    pub data: Vec<u8>,
}

/// Byte-shuffle `raw` (values of `width` bytes) into `out`: all first
/// bytes, then all second bytes, and so on, plane by plane, so `out` is
/// written in order and never zeroed first.
fn shuffle_into(raw: &[u8], width: usize, out: &mut Vec<u8>) {
    out.clear();
    out.reserve(raw.len());
    for b in 0..width {
        out.extend(raw[b..].iter().step_by(width));
    }
}

#[cfg(test)]
fn shuffle(raw: &[u8], width: usize) -> Vec<u8> {
    let mut out = Vec::new();
    shuffle_into(raw, width, &mut out);
    out
}

/// The values of a fixed-width little-endian column body, undoing the byte
/// shuffle in the same pass (no intermediate buffer).
fn values<const W: usize, T>(body: &[u8], shuffled: bool, from: impl Fn([u8; W]) -> T) -> Vec<T> {
    let n = body.len() / W;
    if !shuffled || W == 1 {
        return body
            .chunks_exact(W)
            .map(|b| from(std::array::from_fn(|k| b[k])))
            .collect();
    }
    let planes: [&[u8]; W] = std::array::from_fn(|k| &body[k * n..(k + 1) * n]);
    (0..n)
        .map(|i| from(std::array::from_fn(|k| planes[k][i])))
        .collect()
}

/// One thread's zstd context and column buffers, reused column after
/// column and chunk after chunk. A zstd context is a few hundred KiB of
/// tables, and a column body megabytes: making them anew for every column
/// (what `zstd::bulk::compress` and fresh vectors do) cost the recorder
/// about a third of its CPU on traces of many small flows, in allocation,
/// page faults and context resets.
#[derive(Default)]
struct Scratch {
    /// The compression context and the level it was made for.
    cctx: Option<(i32, zstd::bulk::Compressor<'static>)>,
    /// Little-endian values as the encoder wrote them.
    raw: Vec<u8>,
    /// The body after the byte shuffle.
    body: Vec<u8>,
    /// Compressed bytes (room for the worst case).
    out: Vec<u8>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Encode one column: `fill` writes its values' little-endian bytes.
fn encode(
    id: u16,
    ty: ColType,
    rows: usize,
    flags: u8,
    level: i32,
    fill: impl FnOnce(&mut Vec<u8>),
) -> Result<EncodedColumn> {
    SCRATCH.with(|cell| {
        let mut guard = cell.borrow_mut();
        let s = &mut *guard;
        s.raw.clear();
        fill(&mut s.raw);
        finish(id, ty, rows, flags, level, s)
    })
}

fn finish(
    id: u16,
    ty: ColType,
    rows: usize,
    mut flags: u8,
    level: i32,
    s: &mut Scratch,
) -> Result<EncodedColumn> {
    let width = ty.width().unwrap_or(1);
    let body: &[u8] = if width > 1 && !s.raw.is_empty() {
        flags |= transform::SHUFFLE;
        shuffle_into(&s.raw, width, &mut s.body);
        &s.body
    } else {
        &s.raw
    };
    let cctx = match &mut s.cctx {
        Some((l, c)) if *l == level => c,
        slot => {
            let c = zstd::bulk::Compressor::new(level)
                .map_err(|e| FormatError::io(format!("zstd context for column {id}"), e))?;
            &mut slot.insert((level, c)).1
        }
    };
    s.out.clear();
    s.out.reserve(zstd::zstd_safe::compress_bound(body.len()));
    cctx.compress_to_buffer(body, &mut s.out)
        .map_err(|e| FormatError::io(format!("zstd compression of column {id}"), e))?;
    let (codec_id, data) = if s.out.len() < body.len() {
        (codec::ZSTD, s.out.clone())
    } else {
        (codec::RAW, body.to_vec())
    };
    Ok(EncodedColumn {
        meta: ColumnMeta {
            id,
            ty: ty as u8,
            codec: codec_id,
            transform: flags,
            rows: u32::try_from(rows).map_err(|_| FormatError::Invalid("too many rows".into()))?,
            offset: 0,
            len: data.len() as u64,
            raw_len: body.len() as u64,
            crc: crc32fast::hash(&data),
        },
        data,
    })
}

/// Encode a u64 column, optionally as deltas (values must then be sorted).
pub fn u64s(id: u16, vals: &[u64], delta: bool, level: i32) -> Result<EncodedColumn> {
    u64s_of(id, vals.iter().copied(), delta, level)
}

/// [`u64s`] of the values an iterator yields (no intermediate vector).
pub fn u64s_of(
    id: u16,
    vals: impl ExactSizeIterator<Item = u64>,
    delta: bool,
    level: i32,
) -> Result<EncodedColumn> {
    let rows = vals.len();
    let flags = if delta { transform::DELTA } else { 0 };
    encode(id, ColType::U64, rows, flags, level, |raw| {
        raw.reserve(rows * 8);
        let mut prev = 0u64;
        for v in vals {
            let x = if delta { v.wrapping_sub(prev) } else { v };
            prev = v;
            raw.extend_from_slice(&x.to_le_bytes());
        }
    })
}

macro_rules! plain {
    ($name:ident, $of:ident, $t:ty, $ct:expr) => {
        /// Encode a plain column of this type.
        pub fn $name(id: u16, vals: &[$t], level: i32) -> Result<EncodedColumn> {
            $of(id, vals.iter().copied(), level)
        }

        /// The same, of the values an iterator yields (no intermediate vector).
        pub fn $of(
            id: u16,
            vals: impl ExactSizeIterator<Item = $t>,
            level: i32,
        ) -> Result<EncodedColumn> {
            let rows = vals.len();
            encode(id, $ct, rows, 0, level, |raw| {
                raw.reserve(rows * std::mem::size_of::<$t>());
                for v in vals {
                    raw.extend_from_slice(&v.to_le_bytes());
                }
            })
        }
    };
}
plain!(u32s, u32s_of, u32, ColType::U32);
plain!(u16s, u16s_of, u16, ColType::U16);
plain!(i32s, i32s_of, i32, ColType::I32);
plain!(u8s, u8s_of, u8, ColType::U8);

/// Encode a 16-byte column.
pub fn fixed16s(id: u16, vals: &[[u8; 16]], level: i32) -> Result<EncodedColumn> {
    fixed16s_of(id, vals.iter().copied(), level)
}

/// [`fixed16s`] of the values an iterator yields (no intermediate vector).
pub fn fixed16s_of(
    id: u16,
    vals: impl ExactSizeIterator<Item = [u8; 16]>,
    level: i32,
) -> Result<EncodedColumn> {
    let rows = vals.len();
    encode(id, ColType::Fixed16, rows, 0, level, |raw| {
        raw.reserve(rows * 16);
        for v in vals {
            raw.extend_from_slice(&v);
        }
    })
}

/// Encode a variable-length column: `rows + 1` u32 offsets, then the bytes.
pub fn strs(id: u16, vals: &[String], level: i32) -> Result<EncodedColumn> {
    let total: usize = vals.iter().map(String::len).sum();
    if total as u64 > MAX_STR_BYTES {
        return Err(FormatError::Invalid(format!(
            "string column {id} holds {total} bytes, more than {MAX_STR_BYTES}"
        )));
    }
    encode(id, ColType::Str, vals.len(), 0, level, |raw| {
        raw.reserve(4 * (vals.len() + 1) + total);
        let mut off = 0u32;
        raw.extend_from_slice(&off.to_le_bytes());
        for v in vals {
            off += v.len() as u32;
            raw.extend_from_slice(&off.to_le_bytes());
        }
        for v in vals {
            raw.extend_from_slice(v.as_bytes());
        }
    })
}

/// A decoded column.
#[derive(Clone, Debug, PartialEq)]
pub enum ColumnData {
    /// u8 values.
    U8(Vec<u8>),
    /// u16 values.
    U16(Vec<u16>),
    /// u32 values.
    U32(Vec<u32>),
    /// u64 values.
    U64(Vec<u64>),
    /// i32 values.
    I32(Vec<i32>),
    /// 16-byte values.
    Fixed16(Vec<[u8; 16]>),
    /// Strings (invalid UTF-8 replaced).
    Str(Vec<String>),
}

/// What a column's meta promises, checked against the chunk before any
/// allocation: the raw length must be exactly `rows x width`.
pub fn check_meta(m: &ColumnMeta, rows: u32, what: &str, offset: u64) -> Result<ColType> {
    let bad = |d: String| Err(FormatError::corrupt(what, offset, d));
    let Some(ty) = ColType::from_id(m.ty) else {
        return bad(format!("column {} has unknown type {}", m.id, m.ty));
    };
    if m.rows != rows {
        return bad(format!(
            "column {} has {} rows, chunk says {rows}",
            m.id, m.rows
        ));
    }
    match ty.width() {
        Some(w) if m.raw_len != rows as u64 * w as u64 => bad(format!(
            "column {} declares {} raw bytes, {rows} rows x {w} bytes = {}",
            m.id,
            m.raw_len,
            rows as u64 * w as u64
        )),
        None if m.raw_len < 4 * (rows as u64 + 1) || m.raw_len > MAX_STR_BYTES => bad(format!(
            "string column {} declares {} raw bytes (allowed {}..={MAX_STR_BYTES})",
            m.id,
            m.raw_len,
            4 * (rows as u64 + 1)
        )),
        _ if m.codec == codec::RAW && m.len != m.raw_len => bad(format!(
            "raw column {} stores {} bytes but declares {}",
            m.id, m.len, m.raw_len
        )),
        _ if m.codec > codec::ZSTD => bad(format!("column {} has unknown codec {}", m.id, m.codec)),
        _ => Ok(ty),
    }
}

/// Decode the stored bytes of a column whose meta passed [`check_meta`].
pub fn decode(
    m: &ColumnMeta,
    ty: ColType,
    stored: &[u8],
    what: &str,
    offset: u64,
) -> Result<ColumnData> {
    let got = crc32fast::hash(stored);
    if got != m.crc {
        return Err(FormatError::Crc {
            what: format!("{what} column {}", m.id),
            offset,
            expected: m.crc,
            got,
        });
    }
    let raw_len = m.raw_len as usize;
    let body = if m.codec == codec::ZSTD {
        // A frame that states its size must state raw_len: checked before
        // the raw_len buffer is allocated.
        match zstd::zstd_safe::get_frame_content_size(stored) {
            Ok(Some(n)) if n != m.raw_len => {
                return Err(FormatError::corrupt(
                    what,
                    offset,
                    format!(
                        "column {}: zstd frame declares {n} bytes, meta {raw_len}",
                        m.id
                    ),
                ))
            }
            Err(_) => {
                return Err(FormatError::corrupt(
                    what,
                    offset,
                    format!("column {}: not a zstd frame", m.id),
                ))
            }
            _ => {}
        }
        let out = zstd::bulk::decompress(stored, raw_len).map_err(|e| {
            FormatError::corrupt(what, offset, format!("column {}: zstd: {e}", m.id))
        })?;
        if out.len() != raw_len {
            return Err(FormatError::corrupt(
                what,
                offset,
                format!(
                    "column {} decompressed to {} bytes, expected {raw_len}",
                    m.id,
                    out.len()
                ),
            ));
        }
        out
    } else {
        stored.to_vec()
    };
    let shuffled = m.transform & transform::SHUFFLE != 0;
    let rows = m.rows as usize;
    Ok(match ty {
        ColType::U8 => ColumnData::U8(body),
        ColType::U16 => ColumnData::U16(values(&body, shuffled, u16::from_le_bytes)),
        ColType::U32 => ColumnData::U32(values(&body, shuffled, u32::from_le_bytes)),
        ColType::I32 => ColumnData::I32(values(&body, shuffled, i32::from_le_bytes)),
        ColType::U64 => {
            let mut v = values(&body, shuffled, u64::from_le_bytes);
            if m.transform & transform::DELTA != 0 {
                let mut acc = 0u64;
                for x in &mut v {
                    acc = acc.wrapping_add(*x);
                    *x = acc;
                }
            }
            ColumnData::U64(v)
        }
        ColType::Fixed16 => ColumnData::Fixed16(values(&body, shuffled, |a: [u8; 16]| a)),
        ColType::Str => {
            let offs_end = 4 * (rows + 1);
            let offs: Vec<usize> = body[..offs_end]
                .chunks_exact(4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
                .collect();
            let data = &body[offs_end..];
            let mut out = Vec::with_capacity(rows);
            for w in offs.windows(2) {
                if w[0] > w[1] || w[1] > data.len() {
                    return Err(FormatError::corrupt(
                        what,
                        offset,
                        format!(
                            "string column {}: offsets {}..{} outside {} bytes",
                            m.id,
                            w[0],
                            w[1],
                            data.len()
                        ),
                    ));
                }
                out.push(String::from_utf8_lossy(&data[w[0]..w[1]]).into_owned());
            }
            ColumnData::Str(out)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffle_round_trip() {
        let raw: Vec<u8> = (0..=255u8).cycle().take(8 * 37).collect();
        let plain = values(&raw, false, u64::from_le_bytes);
        assert_eq!(values(&shuffle(&raw, 8), true, u64::from_le_bytes), plain);
        assert!(values(&[], true, u32::from_le_bytes).is_empty());
    }

    #[test]
    fn delta_u64_round_trip() {
        let vals = [5u64, 9, 9, 1000, u64::MAX];
        let e = u64s(0, &vals, true, 3).unwrap();
        let ty = check_meta(&e.meta, 5, "t", 0).unwrap();
        assert_eq!(
            decode(&e.meta, ty, &e.data, "t", 0).unwrap(),
            ColumnData::U64(vals.to_vec())
        );
    }

    #[test]
    fn bomb_is_refused_before_allocation() {
        let e = u32s(1, &[7; 10], 3).unwrap();
        let mut m = e.meta.clone();
        m.raw_len = 1 << 40;
        assert!(check_meta(&m, 10, "t", 0).is_err());
    }
}
