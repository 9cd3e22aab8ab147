//! The one error type of the format crate. Every message carries the numbers
//! (chunk, offset, expected and found values) a user needs to see what is
//! wrong with a file without a hex editor.

use std::io;

/// Errors reading or writing a trace file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// An I/O error, with what was being done.
    #[error("{what}: {cause}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error (part of the message, so it is not also
        /// reported as a source: `{:#}` would print it twice).
        cause: io::Error,
    },
    /// The file does not start with the snoop magic.
    #[error("not a snoop trace (bad magic at offset 0; a snoop trace starts with \"SNOOPTRC\")")]
    BadMagic,
    /// The file is shorter than its header.
    #[error("file too short for a snoop trace header ({len} bytes, need {need})")]
    TooShort {
        /// File length.
        len: u64,
        /// Bytes needed.
        need: u64,
    },
    /// A major version this reader does not know.
    #[error("unsupported trace format version {major}.{minor} (this snoop reads {supported}.x); upgrade snoop")]
    UnsupportedVersion {
        /// Major version in the file.
        major: u16,
        /// Minor version in the file.
        minor: u16,
        /// Major version this reader supports.
        supported: u16,
    },
    /// A structural problem at a given file offset.
    #[error("{what} at offset {offset}: {detail}")]
    Corrupt {
        /// Which structure ("file header", "block", "chunk 3", ...).
        what: String,
        /// File offset of the structure.
        offset: u64,
        /// What was wrong, with numbers.
        detail: String,
    },
    /// A CRC did not match.
    #[error(
        "{what} at offset {offset}: CRC mismatch (expected {expected:#010x}, got {got:#010x})"
    )]
    Crc {
        /// Which structure.
        what: String,
        /// File offset.
        offset: u64,
        /// CRC stored in the file.
        expected: u32,
        /// CRC computed.
        got: u32,
    },
    /// The caller asked for something the format cannot hold.
    #[error("{0}")]
    Invalid(String),
}

impl FormatError {
    /// The OS error number of an I/O error (e.g. ENOSPC), if this is one.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            FormatError::Io { cause, .. } => cause.raw_os_error(),
            _ => None,
        }
    }

    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> FormatError {
        FormatError::Io {
            what: what.into(),
            cause: source,
        }
    }

    pub(crate) fn corrupt(what: impl Into<String>, offset: u64, detail: impl Into<String>) -> Self {
        FormatError::Corrupt {
            what: what.into(),
            offset,
            detail: detail.into(),
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = FormatError> = std::result::Result<T, E>;
