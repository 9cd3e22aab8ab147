//! The fixed-size binary frames of the file: file header, block header and
//! trailer. These are hand-encoded little-endian structs (not rkyv) so that
//! a reader can find and check block boundaries before trusting any rkyv
//! bytes, and so that FORMAT.md can describe them byte by byte.

use crate::error::{FormatError, Result};

/// File magic, bytes 0..8.
pub const FILE_MAGIC: &[u8; 8] = b"SNOOPTRC";
/// Major version written and read by this crate.
pub const MAJOR: u16 = 1;
/// Minor version written by this crate.
pub const MINOR: u16 = 4;
/// Length of the file header.
pub const FILE_HEADER_LEN: usize = 32;
/// Block magic.
pub const BLOCK_MAGIC: &[u8; 4] = b"SNPB";
/// Length of a block header.
pub const BLOCK_HEADER_LEN: usize = 32;
/// Trailer magic.
pub const TRAILER_MAGIC: &[u8; 8] = b"SNOOPEND";
/// Length of the trailer.
pub const TRAILER_LEN: usize = 32;
/// Alignment of every block start and of the body inside a block.
pub const ALIGN: usize = 16;
/// Largest rkyv meta a reader accepts.
pub const MAX_META_LEN: u32 = 64 << 20;

/// Block kinds.
pub mod kind {
    /// File information (host, kernel, clock offset, ...). First block.
    pub const INFO: u8 = 1;
    /// A chunk of one table.
    pub const CHUNK: u8 = 2;
    /// The footer index, written at clean close.
    pub const FOOTER: u8 = 3;
    /// Which hook groups ran (format 1.1): right after the info block.
    pub const HOOKS: u8 = 4;
    /// cgroup v2 ids and their paths (format 1.2): anywhere after the info
    /// block, as many as the recorder writes.
    pub const CGROUPS: u8 = 5;
    /// Names from DNS answers (format 1.3): anywhere after the info
    /// block, as many as the recorder writes.
    pub const DNS: u8 = 6;
}

/// Round `n` up to [`ALIGN`].
pub fn pad(n: u64) -> u64 {
    n.div_ceil(ALIGN as u64) * ALIGN as u64
}

fn crc(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// The file header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileHeader {
    /// Major version.
    pub major: u16,
    /// Minor version.
    pub minor: u16,
    /// Flags (none defined; must be ignored by readers).
    pub flags: u32,
}

impl FileHeader {
    /// Encode to the 32 header bytes.
    pub fn encode(&self) -> [u8; FILE_HEADER_LEN] {
        let mut b = [0u8; FILE_HEADER_LEN];
        b[0..8].copy_from_slice(FILE_MAGIC);
        b[8..10].copy_from_slice(&self.major.to_le_bytes());
        b[10..12].copy_from_slice(&self.minor.to_le_bytes());
        b[12..16].copy_from_slice(&self.flags.to_le_bytes());
        b[16..20].copy_from_slice(&(FILE_HEADER_LEN as u32).to_le_bytes());
        let c = crc(&b[0..28]);
        b[28..32].copy_from_slice(&c.to_le_bytes());
        b
    }

    /// Parse and check the file header at the start of `file`.
    pub fn parse(file: &[u8]) -> Result<FileHeader> {
        if file.len() < 8 || &file[0..8] != FILE_MAGIC {
            if file.len() < 8 && FILE_MAGIC.starts_with(file) {
                return Err(FormatError::TooShort {
                    len: file.len() as u64,
                    need: FILE_HEADER_LEN as u64,
                });
            }
            return Err(FormatError::BadMagic);
        }
        if file.len() < FILE_HEADER_LEN {
            return Err(FormatError::TooShort {
                len: file.len() as u64,
                need: FILE_HEADER_LEN as u64,
            });
        }
        let b = &file[..FILE_HEADER_LEN];
        let major = u16_at(b, 8);
        let minor = u16_at(b, 10);
        if major != MAJOR {
            return Err(FormatError::UnsupportedVersion {
                major,
                minor,
                supported: MAJOR,
            });
        }
        let expected = u32_at(b, 28);
        let got = crc(&b[0..28]);
        if expected != got {
            return Err(FormatError::Crc {
                what: "file header".into(),
                offset: 0,
                expected,
                got,
            });
        }
        let header_len = u32_at(b, 16);
        if header_len as usize != FILE_HEADER_LEN {
            return Err(FormatError::corrupt(
                "file header",
                0,
                format!("header length {header_len}, expected {FILE_HEADER_LEN}"),
            ));
        }
        Ok(FileHeader {
            major,
            minor,
            flags: u32_at(b, 12),
        })
    }
}

/// The header in front of every block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockHeader {
    /// Block kind (see [`kind`]).
    pub kind: u8,
    /// Table id for chunks, 0 otherwise.
    pub table: u8,
    /// Length of the rkyv meta that follows the header.
    pub meta_len: u32,
    /// CRC-32 of the meta bytes.
    pub meta_crc: u32,
    /// Length of the body that follows the (padded) meta.
    pub body_len: u64,
}

impl BlockHeader {
    /// Total bytes of the block on disk, header and padding included.
    pub fn total_len(&self) -> u64 {
        BLOCK_HEADER_LEN as u64 + pad(self.meta_len as u64) + pad(self.body_len)
    }

    /// Offset of the meta relative to the block start.
    pub fn meta_offset(&self) -> u64 {
        BLOCK_HEADER_LEN as u64
    }

    /// Offset of the body relative to the block start.
    pub fn body_offset(&self) -> u64 {
        BLOCK_HEADER_LEN as u64 + pad(self.meta_len as u64)
    }

    /// Encode to the 32 header bytes.
    pub fn encode(&self) -> [u8; BLOCK_HEADER_LEN] {
        let mut b = [0u8; BLOCK_HEADER_LEN];
        b[0..4].copy_from_slice(BLOCK_MAGIC);
        b[4] = self.kind;
        b[5] = self.table;
        b[8..12].copy_from_slice(&self.meta_len.to_le_bytes());
        b[12..16].copy_from_slice(&self.meta_crc.to_le_bytes());
        b[16..24].copy_from_slice(&self.body_len.to_le_bytes());
        let c = crc(&b[0..24]);
        b[24..28].copy_from_slice(&c.to_le_bytes());
        b
    }

    /// Parse and check the block header at `offset` of `file`: magic, CRC,
    /// and that the whole block lies inside the file.
    pub fn parse(file: &[u8], offset: u64) -> Result<BlockHeader> {
        let what = "block header";
        let len = file.len() as u64;
        if offset % ALIGN as u64 != 0 {
            return Err(FormatError::corrupt(what, offset, "offset not 16-aligned"));
        }
        if offset
            .checked_add(BLOCK_HEADER_LEN as u64)
            .is_none_or(|e| e > len)
        {
            return Err(FormatError::corrupt(
                what,
                offset,
                format!(
                    "truncated: {} bytes left, a block header needs {BLOCK_HEADER_LEN}",
                    len.saturating_sub(offset)
                ),
            ));
        }
        let at = offset as usize;
        let b = &file[at..at + BLOCK_HEADER_LEN];
        if &b[0..4] != BLOCK_MAGIC {
            return Err(FormatError::corrupt(what, offset, "bad block magic"));
        }
        let expected = u32_at(b, 24);
        let got = crc(&b[0..24]);
        if expected != got {
            return Err(FormatError::Crc {
                what: what.into(),
                offset,
                expected,
                got,
            });
        }
        let h = BlockHeader {
            kind: b[4],
            table: b[5],
            meta_len: u32_at(b, 8),
            meta_crc: u32_at(b, 12),
            body_len: u64_at(b, 16),
        };
        if h.meta_len > MAX_META_LEN {
            return Err(FormatError::corrupt(
                what,
                offset,
                format!("meta length {} exceeds limit {MAX_META_LEN}", h.meta_len),
            ));
        }
        let total = BLOCK_HEADER_LEN as u64 + pad(h.meta_len as u64);
        let end = (h.body_len < len)
            .then(|| pad(h.body_len))
            .and_then(|body| total.checked_add(body))
            .and_then(|t| offset.checked_add(t));
        match end {
            Some(e) if e <= len => Ok(h),
            _ => Err(FormatError::corrupt(
                what,
                offset,
                format!(
                    "block of meta {} + body {} bytes extends past end of file ({len} bytes)",
                    h.meta_len, h.body_len
                ),
            )),
        }
    }
}

/// The trailer at the very end of a cleanly closed file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trailer {
    /// Offset of the footer block.
    pub footer_offset: u64,
    /// Total length of the footer block.
    pub footer_len: u64,
}

impl Trailer {
    /// Encode to the 32 trailer bytes.
    pub fn encode(&self) -> [u8; TRAILER_LEN] {
        let mut b = [0u8; TRAILER_LEN];
        b[0..8].copy_from_slice(TRAILER_MAGIC);
        b[8..16].copy_from_slice(&self.footer_offset.to_le_bytes());
        b[16..24].copy_from_slice(&self.footer_len.to_le_bytes());
        let c = crc(&b[0..24]);
        b[24..28].copy_from_slice(&c.to_le_bytes());
        b
    }

    /// The trailer at the end of `file`, if there is a valid one.
    pub fn find(file: &[u8]) -> Option<Trailer> {
        let len = file.len();
        if len < FILE_HEADER_LEN + TRAILER_LEN {
            return None;
        }
        let b = &file[len - TRAILER_LEN..];
        if &b[0..8] != TRAILER_MAGIC || u32_at(b, 24) != crc(&b[0..24]) {
            return None;
        }
        let t = Trailer {
            footer_offset: u64_at(b, 8),
            footer_len: u64_at(b, 16),
        };
        let end = t.footer_offset.checked_add(t.footer_len)?;
        (end == (len - TRAILER_LEN) as u64).then_some(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let h = FileHeader {
            major: MAJOR,
            minor: MINOR,
            flags: 0,
        };
        assert_eq!(FileHeader::parse(&h.encode()).unwrap(), h);
    }

    #[test]
    fn newer_major_is_rejected_by_name() {
        let mut b = FileHeader {
            major: MAJOR,
            minor: 0,
            flags: 0,
        }
        .encode();
        b[8] = 9;
        let err = FileHeader::parse(&b).unwrap_err().to_string();
        assert!(err.contains("version 9.0"), "{err}");
    }

    #[test]
    fn block_past_end_is_rejected() {
        let h = BlockHeader {
            kind: kind::CHUNK,
            table: 1,
            meta_len: 10,
            meta_crc: 0,
            body_len: u64::MAX - 3,
        };
        let mut file = vec![0u8; 64];
        file[..32].copy_from_slice(&h.encode());
        let err = BlockHeader::parse(&file, 0).unwrap_err().to_string();
        assert!(err.contains("past end of file"), "{err}");
    }
}
