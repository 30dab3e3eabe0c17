//! Vaart storage engine: segmented partition logs of Kafka record batches on direct I/O.
//!
//! # Layout
//! - [`types`]: newtypes (`Offset`, `LeaderEpoch`, `TimestampMs`).
//! - [`config`]: `LogConfig` (Kafka-named settings and defaults).
//! - [`error`]: typed errors per operation family.
//! - [`batch`]: the 61-byte magic-v2 batch header (zerocopy), validation, offset assignment.
//! - [`index`]: per-segment offset index (one entry per batch) and sparse time index.
//! - [`backend`]: the narrow disk trait, `DirectBackend` (glommio DmaFile, O_DIRECT),
//!   `FaultyBackend` (fault injection), and `prime_direct_io`.
//! - [`segment`]: one segment's files and indexes; `SegmentFile` read handles.
//! - [`read_ahead`]: background reads of the next range for consumers reading a segment
//!   sequentially from disk (O_DIRECT bypasses the kernel's read-ahead).
//! - [`journal`]: the acknowledgement journal, a tmpfs ring of appended batches that are not
//!   yet written, so acknowledged data survives a killed process; read back on restart.
//! - `log`: `PartitionLog`, the public handle: append, read, flush, truncate, close.
//! - `writer`: the background task that coalesces appends into aligned writes and syncs.
//! - `retention`: retention, DeleteRecords and truncation.
//! - [`compaction`]: log compaction (`cleanup.policy=compact`): key map, segment rewrite,
//!   atomic swap of cleaned segments.
//! - `recovery`: validation and repair on open; `RecoveryReport`.
//! - `checkpoint`: the persisted log start offset. `epoch`: the leader epoch cache.
//! - [`testing`]: record batch builders and an executor helper for tests and benches.
//!
//! The on-disk format is described byte by byte in `engine/FORMAT.md`.

pub mod backend;
pub mod batch;
mod checkpoint;
mod clean_shutdown;
pub mod compaction;
pub mod config;
mod epoch;
pub mod error;
pub mod index;
pub mod journal;
mod log;
pub mod read_ahead;
mod recovery;
mod retention;
pub mod segment;
mod signal;
pub mod testing;
pub mod types;
mod writer;

pub use backend::{
    glommio_path, prime_direct_io, Backend, BackendFile, DirectBackend, FaultConfig, FaultHandle,
    FaultyBackend, FileHandle, OpenMode, ReadBuf,
};
pub use batch::{validate_batches, BatchHeader, BatchSummary, Compression, BATCH_HEADER_LEN};
pub use checkpoint::LOG_START_CHECKPOINT;
pub use clean_shutdown::CLEAN_SHUTDOWN_FILE;
pub use compaction::{CodecError, CompactionConfig, CompactionReport, RecordsCodec};
pub use config::{LogConfig, TimestampType, DEFAULT_WRITE_LINGER_US};
pub use error::{AppendError, BatchError, LogError, PoisonCause, ReadError, RecordsError};
pub use journal::{read_journal, AckJournal, JournalEntry, JournalError, JournalStats, Restored};
pub use log::{partition_dir, AppendInfo, Chunk, PartitionLog, ReadResult, RetentionReport};
pub use recovery::{DeleteReason, DeletedSegment, RecoveryReport, Truncation, TruncationReason};
pub use segment::SegmentFile;
pub use types::{LeaderEpoch, Offset, TimestampMs};
pub use writer::{WriterStats, FLUSH_LATENCY_BOUNDS_US};
