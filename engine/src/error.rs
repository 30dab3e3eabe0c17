//! Typed errors, one enum per operation family. I/O errors carry the operation and the path.

use std::{io, path::PathBuf};

use crate::types::Offset;

/// Why a record batch (or a run of batches) failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// No bytes at all.
    #[error("no record batches")]
    Empty,
    /// Fewer bytes remain than a batch header needs.
    #[error("truncated batch at byte {position}: {available} bytes left, a header needs 61")]
    TooShort {
        /// Position of the batch in the input.
        position: usize,
        /// Bytes left from `position`.
        available: usize,
    },
    /// `batchLength` is below the header size or runs past the end of the input.
    #[error("batch at byte {position} declares batchLength {batch_length} but {available} bytes follow the length field")]
    BadLength {
        /// Position of the batch in the input.
        position: usize,
        /// The declared `batchLength`.
        batch_length: i32,
        /// Bytes available after the 12-byte log overhead.
        available: usize,
    },
    /// The magic byte is not 2.
    #[error("unsupported record batch magic {0}")]
    BadMagic(i8),
    /// The CRC32C over attributes..end does not match the header.
    #[error("batch CRC mismatch: header says {expected:#010x}, computed {actual:#010x}")]
    BadCrc {
        /// CRC stored in the header.
        expected: u32,
        /// CRC computed over the bytes.
        actual: u32,
    },
    /// `recordsCount` is not positive or does not equal `lastOffsetDelta + 1`.
    #[error(
        "recordsCount {records_count} is inconsistent with lastOffsetDelta {last_offset_delta}"
    )]
    RecordCountMismatch {
        /// Declared record count.
        records_count: i32,
        /// Declared last offset delta.
        last_offset_delta: i32,
    },
    /// Compression codec bits name no known codec.
    #[error("unknown compression codec {0}")]
    UnknownCompression(u8),
    /// The record framing inside an uncompressed batch is inconsistent.
    #[error("invalid records in batch at byte {position}: {reason}")]
    InvalidRecords {
        /// Position of the batch in the input.
        position: usize,
        /// What is wrong.
        reason: RecordsError,
    },
}

/// Inconsistent record framing inside an uncompressed batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordsError {
    /// A record length varint is malformed or negative.
    #[error("malformed record length")]
    BadLength,
    /// A record runs past the end of the batch.
    #[error("a record runs past the end of the batch")]
    Overrun,
    /// Bytes remain after `recordsCount` records.
    #[error("bytes remain after the last record")]
    TrailingBytes,
}

/// Why an append was rejected. Nothing was appended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    /// A batch failed validation (CRC, lengths, record count).
    #[error("corrupt record batch: {0}")]
    CorruptBatch(BatchError),
    /// A batch exceeds `max.message.bytes`.
    #[error("batch of {size} bytes exceeds max.message.bytes {max}")]
    BatchTooLarge {
        /// Size of the offending batch.
        size: usize,
        /// The configured maximum.
        max: u32,
    },
    /// The magic byte is not 2 (old message formats are not accepted).
    #[error("unsupported record batch magic {0}")]
    UnsupportedMagic(i8),
    /// The records inside a batch are malformed.
    #[error("invalid record: {0}")]
    InvalidRecord(RecordsError),
    /// A write or fdatasync failed earlier; the log accepts nothing more.
    #[error("log is poisoned by an earlier I/O failure")]
    Poisoned,
    /// The log was closed.
    #[error("log is closed")]
    Closed,
    /// Too much appended data is waiting for the disk; retry after `PartitionLog::writable()`.
    #[error("{unwritten_bytes} bytes are waiting for the disk (limit {limit})")]
    Backpressure {
        /// Bytes appended but not yet written.
        unwritten_bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// Offsets would overflow i64.
    #[error("offset overflow")]
    OffsetOverflow,
}

impl AppendError {
    pub(crate) fn from_batch(error: BatchError) -> AppendError {
        match error {
            BatchError::BadMagic(magic) => AppendError::UnsupportedMagic(magic),
            BatchError::InvalidRecords { reason, .. } => AppendError::InvalidRecord(reason),
            other => AppendError::CorruptBatch(other),
        }
    }
}

/// Errors of log-level operations (open, flush, truncate, retention, reads from disk).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// An I/O operation failed.
    #[error("{op} {path:?}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A write or fdatasync failed earlier (see `PartitionLog::poison_cause`).
    #[error("log is poisoned by an earlier I/O failure")]
    Poisoned,
    /// The log was closed.
    #[error("log is closed")]
    Closed,
    /// A file could not be interpreted (e.g. an unparsable directory entry we must not ignore).
    #[error("corrupt {path:?} at byte {position}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Where.
        position: u64,
        /// What.
        reason: BatchError,
    },
    /// A read returned fewer bytes than requested (the file shrank, e.g. by truncation).
    #[error("short read of {path:?} at {position}: wanted {expected} bytes, got {actual}")]
    ShortRead {
        /// The file.
        path: PathBuf,
        /// Where.
        position: u64,
        /// Requested length.
        expected: usize,
        /// Returned length.
        actual: usize,
    },
    /// An offset argument is outside what the operation allows.
    #[error("offset {requested} is invalid here (allowed up to {limit})")]
    InvalidOffset {
        /// The offset passed.
        requested: Offset,
        /// The largest allowed offset.
        limit: Offset,
    },
    /// An internal invariant does not hold (a bug); the operation was refused.
    #[error("internal invariant violated: {0}")]
    Invariant(&'static str),
}

impl LogError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> LogError {
        LogError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Why a read was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// `from` is below the log start or above the log end.
    #[error("offset {requested} out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        /// The requested offset.
        requested: Offset,
        /// Current log start offset.
        log_start: Offset,
        /// Current log end offset.
        log_end: Offset,
    },
    /// A log-level failure.
    #[error(transparent)]
    Log(#[from] LogError),
}

/// The I/O failure that poisoned a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoisonCause {
    /// The failed operation ("write", "fdatasync", ...).
    pub op: &'static str,
    /// The file.
    pub path: PathBuf,
    /// The error kind.
    pub kind: io::ErrorKind,
    /// The OS error number, if any.
    pub raw_os_error: Option<i32>,
}

impl std::fmt::Display for PoisonCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?} failed: {:?}", self.op, self.path, self.kind)?;
        if let Some(errno) = self.raw_os_error {
            write!(f, " (os error {errno})")?;
        }
        Ok(())
    }
}
