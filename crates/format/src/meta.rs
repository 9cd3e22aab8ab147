//! The rkyv-encoded metadata of blocks: file information, chunk meta (row
//! counts, ranges for skipping, per-column codec/offset/length/CRC) and the
//! footer index. Readers only ever reach these through validated access
//! ([`access`]), never `access_unchecked`, because the bytes come from a file.

use rkyv::rancor;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};

use crate::error::{FormatError, Result};

/// File-level information, written as the first block.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct FileInfo {
    /// Host name of the recording machine.
    pub host: String,
    /// Kernel release (`uname -r`).
    pub kernel: String,
    /// snoop version that wrote the file.
    pub snoop_version: String,
    /// Command line of the recording.
    pub command: Vec<String>,
    /// Add to a CLOCK_BOOTTIME timestamp to get ns since the Unix epoch.
    pub boot_to_wall_ns: i64,
    /// Recording start, CLOCK_BOOTTIME ns.
    pub start_ns: u64,
    /// Interface index to name, as seen at start.
    pub ifaces: Vec<(u32, String)>,
}

/// Which of the recorder's hook groups ran (format 1.1, a block of kind 4
/// right after the info block): `(group, state)` pairs, the state being
/// `active`, `off: WHY` or `refused: REASON`. Traces written before 1.1
/// have no such block.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Hooks {
    /// `(group name, state)` in the recorder's order.
    pub groups: Vec<(String, String)>,
}

/// The recording setting kept in the hooks block (since 1.4) beside the
/// groups: how wire packets were asked to be recorded, `runs`, `each` or
/// `off` (the `packets` group's own state says whether they were).
pub const PACKET_MODE: &str = "packet_mode";

/// Names in the hooks block that are settings, not hook groups.
pub const SETTINGS: &[&str] = &[PACKET_MODE];

impl Hooks {
    /// The hook groups only (settings left out).
    pub fn hook_groups(&self) -> impl Iterator<Item = &(String, String)> {
        self.groups
            .iter()
            .filter(|(g, _)| !SETTINGS.contains(&g.as_str()))
    }

    /// The value of a setting (e.g. [`PACKET_MODE`]), if recorded.
    pub fn setting(&self, name: &str) -> Option<&str> {
        self.groups
            .iter()
            .find(|(g, _)| g == name)
            .map(|(_, v)| v.as_str())
    }
}

/// cgroup v2 ids and the paths they had (format 1.2, blocks of kind 5
/// anywhere after the info block): `(id, path)` with the path relative to
/// the cgroup v2 mount, `/` for its root. A recorder writes one block per
/// batch of ids it resolved; readers merge them.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Cgroups {
    /// `(cgroup id, path)`.
    pub paths: Vec<(u64, String)>,
}

/// Names learned from DNS answers delivered to local processes (format
/// 1.3, blocks of kind 6 anywhere after the info block). Only names,
/// addresses and TTLs: no other part of any packet. A recorder writes one
/// block per batch of answers it parsed; readers concatenate them.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct DnsNames {
    /// The address records, in the order the answers were received.
    pub answers: Vec<DnsAnswer>,
}

/// One address a DNS answer gave for a name.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct DnsAnswer {
    /// When the answer reached the socket, CLOCK_BOOTTIME ns.
    pub ts_ns: u64,
    /// The process owning the socket the answer was delivered to (the one
    /// that asked); 0 when unknown.
    pub pid: u32,
    /// The name asked for (the question), lowercase, without the final dot.
    pub name: String,
    /// The CNAME chain from the question to the address record's owner,
    /// in answer order (empty when the address was given for the name
    /// itself).
    pub cnames: Vec<String>,
    /// The address: IPv4 as v4-mapped IPv6 (an A record), else IPv6 (AAAA).
    pub addr: [u8; 16],
    /// The address record's TTL, seconds.
    pub ttl: u32,
}

/// How a column body is compressed.
pub mod codec {
    /// Stored as is.
    pub const RAW: u8 = 0;
    /// One zstd frame.
    pub const ZSTD: u8 = 1;
}

/// Transforms applied before compression (bit flags), undone after.
pub mod transform {
    /// Values are differences from the previous row (first from 0); u64 only.
    pub const DELTA: u8 = 1;
    /// Bytes are transposed: all first bytes of every value, then all second
    /// bytes, ... (a "byte shuffle"), which zstd compresses far better.
    pub const SHUFFLE: u8 = 2;
}

/// Where and how one column of a chunk is stored.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ColumnMeta {
    /// Column id (see `schema::col`).
    pub id: u16,
    /// Physical type id (see `schema::ColType`).
    pub ty: u8,
    /// Codec (see [`codec`]).
    pub codec: u8,
    /// Transform flags (see [`transform`]).
    pub transform: u8,
    /// Rows in this column.
    pub rows: u32,
    /// Offset of the stored bytes from the start of the chunk body.
    pub offset: u64,
    /// Stored (compressed) length.
    pub len: u64,
    /// Length after decompression.
    pub raw_len: u64,
    /// CRC-32 of the stored bytes.
    pub crc: u32,
}

/// Meta of one chunk: what a reader needs to skip or decode it.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ChunkMeta {
    /// Sequence number of the chunk in the file (0, 1, ...).
    pub seq: u32,
    /// Table id.
    pub table: u8,
    /// Event rows.
    pub rows: u32,
    /// Flow dictionary rows (0 for tables without flows).
    pub flow_rows: u32,
    /// Smallest event time.
    pub t_min: u64,
    /// Largest event time.
    pub t_max: u64,
    /// Smallest pid among the rows' flows (or rows).
    pub pid_min: u32,
    /// Largest pid.
    pub pid_max: u32,
    /// The columns.
    pub columns: Vec<ColumnMeta>,
}

/// One entry of the footer index.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ChunkEntry {
    /// Offset of the chunk block.
    pub offset: u64,
    /// Total length of the block.
    pub len: u64,
    /// Table id.
    pub table: u8,
    /// Event rows.
    pub rows: u32,
    /// Smallest event time.
    pub t_min: u64,
    /// Largest event time.
    pub t_max: u64,
    /// Smallest pid.
    pub pid_min: u32,
    /// Largest pid.
    pub pid_max: u32,
}

/// The footer index, written at clean close.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Footer {
    /// Every chunk, in file order.
    pub chunks: Vec<ChunkEntry>,
    /// Recording end, CLOCK_BOOTTIME ns.
    pub end_ns: u64,
}

/// Serialize a meta value.
pub fn to_bytes<T>(value: &T) -> Result<AlignedVec>
where
    T: for<'a> Serialize<
        rkyv::api::high::HighSerializer<
            AlignedVec,
            rkyv::ser::allocator::ArenaHandle<'a>,
            rancor::Error,
        >,
    >,
{
    rkyv::to_bytes::<rancor::Error>(value)
        .map_err(|e| FormatError::Invalid(format!("cannot serialize metadata: {e}")))
}

/// Validate `bytes` as an archived `T` and deserialize it. Misaligned input
/// is copied to an aligned buffer first (the bytes may come from anywhere).
pub fn decode<T>(bytes: &[u8], what: &str, offset: u64) -> Result<T>
where
    T: Archive,
    T::Archived: for<'a> rkyv::bytecheck::CheckBytes<rkyv::api::high::HighValidator<'a, rancor::Error>>
        + Deserialize<T, rkyv::api::high::HighDeserializer<rancor::Error>>,
{
    let fail =
        |e: rancor::Error| FormatError::corrupt(what, offset, format!("invalid metadata: {e}"));
    let aligned;
    let bytes = if (bytes.as_ptr() as usize) % 16 == 0 {
        bytes
    } else {
        let mut v = AlignedVec::<16>::with_capacity(bytes.len());
        v.extend_from_slice(bytes);
        aligned = v;
        &aligned[..]
    };
    let archived = rkyv::access::<T::Archived, rancor::Error>(bytes).map_err(fail)?;
    rkyv::deserialize::<T, rancor::Error>(archived).map_err(fail)
}
