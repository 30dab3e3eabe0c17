//! Log compaction (`cleanup.policy=compact`): keeps the last record of every key.
//!
//! A pass ([`PartitionLog::compact`]) works on the *cleanable* segments: sealed ones (never the
//! active segment), below the high watermark, and older than `min.compaction.lag.ms`. Segments
//! at or past the in-memory checkpoint (`cleaned_through`) are *dirty*; the pass runs when dirty
//! bytes are at least `min.cleanable.dirty.ratio` of the cleanable bytes, as Kafka's cleaner.
//!
//! 1. **Key map**: the dirty segments are read and every key of every uncompressed data batch
//!    is mapped (as a 128-bit hash) to its last offset. The map is bounded
//!    ([`CompactionConfig::key_map_entries_max`]); when it fills, the pass stops at that
//!    segment boundary and the rest waits for the next pass.
//! 2. **Rewrite**: every cleanable segment up to the end of the mapped range is read again and
//!    a record is dropped if the map holds a later offset for its key, or if it is a tombstone
//!    (null value) whose batch is older than `delete.retention.ms`. Batches keep their base
//!    offset, `lastOffsetDelta`, timestamps and producer fields (so offsets and producer
//!    sequences survive; records keep their own offset deltas); only `recordsCount`,
//!    `batchLength` and the CRC change. Batches left without records are dropped, which leaves
//!    offset gaps that reads step over (`Segment::batch_at_or_after`), except a segment's
//!    last batch, which stays as an empty batch (header only, `recordsCount` 0, as Kafka's
//!    cleaner writes them) so that every segment still ends where the next one starts.
//! 3. **Swap**: the new data goes to `<base>.log.cleaned` (O_DIRECT, fdatasync'ed). Then, in
//!    one synchronous step, the in-memory segment switches to the new file and indexes (if it
//!    is still there and sealed: retention may have removed it meanwhile) and the writer is
//!    asked to rename the file over `<base>.log` (atomic, like Kafka's `.swap`) and rewrite
//!    the index files, in order with every other file command. A crash before the rename
//!    leaves the old segment intact and recovery removes the `.cleaned` leftover.
//!
//! Compressed batches: the engine has no codecs. A pass given a [`RecordsCodec`]
//! ([`PartitionLog::compact_with_codec`]) expands each compressed data batch to its
//! uncompressed equivalent (same header, compression bits cleared), maps and filters it like
//! any other batch, and re-compresses a partially kept one with the original codec (same base
//! offset, `lastOffsetDelta`, timestamps, producer fields; records keep their offset deltas),
//! as Kafka's cleaner does. A batch the codec cannot expand is kept whole.
//!
//! Limits (stated, not hidden): without a codec compressed batches, and always transactional
//! and control batches, are kept whole and their keys are not mapped; a tombstone is only
//! removed when no such opaque batch precedes it in the pass (an older value inside one would
//! otherwise come back). Records without a key are kept. Segments are rewritten one by one,
//! never merged.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;

use crate::{
    backend::{align_down, align_up, Backend, FileHandle, OpenMode},
    batch::{
        read_varint, read_varlong, validate_stored_batch_at, BatchHeader, Compression,
        ATTR_COMPRESSION_MASK, ATTR_CONTROL, ATTR_TRANSACTIONAL,
    },
    error::LogError,
    log::PartitionLog,
    segment::{Phase, Segment, SegmentPaths},
    types::{Offset, TimestampMs},
    writer::Command,
    BATCH_HEADER_LEN,
};

/// Extension of a cleaned segment file before it is swapped in (`<base>.log.cleaned`).
pub const CLEANED_SUFFIX: &str = "cleaned";

/// Bytes read from a segment per I/O while cleaning.
const READ_CHUNK_BYTES: usize = 1 << 20;
/// Bytes buffered before a cleaned file is written out.
const WRITE_CHUNK_BYTES: usize = 1 << 20;
/// Largest batch the cleaner buffers (anything larger is damage; recovery uses the same bound).
const BATCH_BYTES_MAX: usize = 128 << 20;

/// Byte offsets inside the 61-byte batch header (FORMAT.md).
const BATCH_LENGTH_AT: usize = 8;
const ATTRIBUTES_AT: usize = 21;
const CRC_AT: usize = 17;
const CRC_RANGE_START: usize = 21;
const RECORDS_COUNT_AT: usize = 57;
/// Bytes before `batchLength`'s range starts (baseOffset + batchLength).
const LOG_OVERHEAD: usize = 12;

/// Kafka's cleaner settings for one log.
#[derive(Debug, Clone, PartialEq)]
pub struct CompactionConfig {
    /// `delete.retention.ms`: how long tombstones stay readable (default 86400000).
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms`: records younger than this are not compacted (default 0).
    pub min_compaction_lag_ms: i64,
    /// `min.cleanable.dirty.ratio`: dirty share of the log that triggers a pass (default 0.5).
    pub min_cleanable_dirty_ratio: f64,
    /// Most keys mapped in one pass (Kafka bounds this with `log.cleaner.dedupe.buffer.size`;
    /// an entry costs about 40 bytes here).
    pub key_map_entries_max: usize,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        CompactionConfig {
            delete_retention_ms: 86_400_000,
            min_compaction_lag_ms: 0,
            min_cleanable_dirty_ratio: 0.5,
            key_map_entries_max: 1_000_000,
        }
    }
}

/// Why a [`RecordsCodec`] could not expand or compress a batch's records.
#[derive(Debug, thiserror::Error)]
#[error("{compression:?} records: {source}")]
pub struct CodecError {
    /// The codec.
    pub compression: Compression,
    /// What failed.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// The codecs compaction needs for compressed batches (the engine has none; the broker
/// implements this). Both work on the records section only (what follows the 61-byte header).
pub trait RecordsCodec {
    /// Decompresses a batch's records section (`compression` is never `None`). Must bound the
    /// output: sealed data is trusted, but a decompression bomb must not exhaust memory.
    fn decompress(&self, compression: Compression, data: &[u8]) -> Result<Vec<u8>, CodecError>;
    /// Compresses an uncompressed records section with `compression` (never `None`).
    fn compress(&self, compression: Compression, records: &[u8]) -> Result<Vec<u8>, CodecError>;
}

/// What a compaction pass did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CompactionReport {
    /// Dirty bytes / cleanable bytes when the pass started (0 when nothing was cleanable).
    pub dirty_ratio: f64,
    /// Whether the pass ran (the ratio reached the minimum and there was dirty data).
    pub ran: bool,
    /// Segments replaced by a cleaned copy.
    pub segments_rewritten: usize,
    /// Bytes of the rewritten segments before cleaning.
    pub bytes_before: u64,
    /// Bytes of the rewritten segments after cleaning.
    pub bytes_after: u64,
    /// Records removed because a later record has the same key.
    pub records_removed: u64,
    /// Tombstones removed because they were older than `delete.retention.ms`.
    pub tombstones_removed: u64,
    /// The checkpoint afterwards: everything below it has been cleaned.
    pub cleaned_through: Offset,
}

/// A sealed segment the pass may clean, as it was when the pass started.
struct Candidate {
    id: u64,
    base_offset: Offset,
    next_offset: Offset,
    len: u64,
    file: FileHandle,
    paths: SegmentPaths,
    dirty: bool,
}

/// Key hash -> last offset of that key in the mapped range.
struct KeyMap {
    entries: HashMap<u128, i64>,
}

impl KeyMap {
    fn key_hash(key: &[u8]) -> u128 {
        // Two independent 64-bit SipHashes: collisions (which would drop a live record) are
        // as unlikely as with Kafka's MD5-based map.
        let mut low = DefaultHasher::new();
        0u8.hash(&mut low);
        key.hash(&mut low);
        let mut high = DefaultHasher::new();
        1u8.hash(&mut high);
        key.hash(&mut high);
        (u128::from(high.finish()) << 64) | u128::from(low.finish())
    }

    fn insert(&mut self, key: &[u8], offset: i64) {
        let slot = self.entries.entry(Self::key_hash(key)).or_insert(offset);
        if *slot < offset {
            *slot = offset;
        }
    }

    fn latest(&self, key: &[u8]) -> Option<i64> {
        self.entries.get(&Self::key_hash(key)).copied()
    }
}

/// One record of an uncompressed batch, as the cleaner needs it.
struct RecordView<'a> {
    /// The whole record, its length prefix included (copied as is when kept).
    raw: &'a [u8],
    offset_delta: i32,
    key: Option<&'a [u8]>,
    value_is_null: bool,
}

/// Splits the records of an uncompressed batch. None if the framing is malformed.
fn parse_records(batch: &[u8], count: i32) -> Option<Vec<RecordView<'_>>> {
    let mut rest = batch.get(BATCH_HEADER_LEN..)?;
    let count = usize::try_from(count).ok()?;
    let mut records = Vec::with_capacity(count.min(rest.len()));
    for _ in 0..count {
        let (length, used) = read_varint(rest)?;
        let length = usize::try_from(length).ok()?;
        let end = used.checked_add(length)?;
        let raw = rest.get(..end)?;
        // attributes (1 byte), timestampDelta (varlong), offsetDelta (varint), key, value.
        let mut cursor = raw.get(used.checked_add(1)?..)?;
        let (_, step) = read_varlong(cursor)?;
        cursor = cursor.get(step..)?;
        let (offset_delta, step) = read_varint(cursor)?;
        cursor = cursor.get(step..)?;
        let (key_length, step) = read_varint(cursor)?;
        cursor = cursor.get(step..)?;
        let key = match usize::try_from(key_length) {
            Ok(key_length) => {
                let key = cursor.get(..key_length)?;
                cursor = cursor.get(key_length..)?;
                Some(key)
            }
            Err(_) => None,
        };
        let (value_length, _) = read_varint(cursor)?;
        records.push(RecordView {
            raw,
            offset_delta,
            key,
            value_is_null: value_length < 0,
        });
        rest = rest.get(end..)?;
    }
    Some(records)
}

/// A batch as the cleaner sees it: uncompressed (the stored bytes, or a compressed batch
/// expanded by the codec) or opaque.
enum Viewed {
    /// Transactional, control, or compressed without a codec that could expand it.
    Opaque,
    /// An uncompressed data batch.
    Plain,
    /// A compressed data batch, expanded to its uncompressed equivalent.
    Expanded(Compression, Vec<u8>),
}

/// Classifies `batch` and expands it when it is a compressed data batch and `codec` can.
fn view_batch(batch: &[u8], header: &BatchHeader, codec: Option<&dyn RecordsCodec>) -> Viewed {
    let attributes = header.attributes();
    if attributes & ATTR_TRANSACTIONAL != 0 || attributes & ATTR_CONTROL != 0 {
        return Viewed::Opaque;
    }
    let compression = match header.compression() {
        Some(Compression::None) => return Viewed::Plain,
        Some(compression) => compression,
        None => return Viewed::Opaque,
    };
    let Some(codec) = codec else {
        return Viewed::Opaque;
    };
    if header.records_count() == 0 {
        // Nothing inside: nothing to map, and it keeps as it is.
        return Viewed::Plain;
    }
    let Some(data) = batch.get(BATCH_HEADER_LEN..) else {
        return Viewed::Opaque;
    };
    match codec.decompress(compression, data) {
        Ok(records) => {
            let mut out = Vec::with_capacity(BATCH_HEADER_LEN + records.len());
            out.extend_from_slice(&batch[..BATCH_HEADER_LEN]);
            out.extend_from_slice(&records);
            let plain = attributes & !ATTR_COMPRESSION_MASK;
            out[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&plain.to_be_bytes());
            // Length and CRC are not checked on this in-memory form; set them anyway.
            if seal(&mut out).is_err() {
                return Viewed::Opaque;
            }
            Viewed::Expanded(compression, out)
        }
        Err(error) => {
            tracing::warn!(
                base_offset = header.base_offset(),
                %error,
                "compaction keeps a compressed batch whole: cannot decompress it"
            );
            Viewed::Opaque
        }
    }
}

/// Sets `batchLength` and the CRC of a batch built in memory.
fn seal(out: &mut [u8]) -> Result<(), LogError> {
    let batch_length = i32::try_from(out.len() - LOG_OVERHEAD)
        .map_err(|_| LogError::Invariant("cleaned batch length"))?;
    out[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&batch_length.to_be_bytes());
    let crc = crc32c::crc32c(&out[CRC_RANGE_START..]);
    out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

/// Re-compresses a filtered expanded batch with its original codec: the stored header
/// (attributes included) with the new count, length and CRC.
fn recompress(
    original: &[u8],
    filtered: &[u8],
    compression: Compression,
    codec: &dyn RecordsCodec,
) -> Result<Vec<u8>, LogError> {
    let records = filtered.get(BATCH_HEADER_LEN..).ok_or(LogError::Invariant(
        "filtered batch shorter than its header",
    ))?;
    let compressed = codec
        .compress(compression, records)
        .map_err(|_| LogError::Invariant("compaction could not re-compress a batch"))?;
    let mut out = Vec::with_capacity(BATCH_HEADER_LEN + compressed.len());
    out.extend_from_slice(
        original
            .get(..BATCH_HEADER_LEN)
            .ok_or(LogError::Invariant("batch shorter than its header"))?,
    );
    out[RECORDS_COUNT_AT..RECORDS_COUNT_AT + 4]
        .copy_from_slice(&filtered[RECORDS_COUNT_AT..RECORDS_COUNT_AT + 4]);
    out.extend_from_slice(&compressed);
    seal(&mut out)?;
    Ok(out)
}

/// Reads a segment file batch by batch through a bounded window.
struct BatchReader<'a> {
    file: &'a FileHandle,
    len: u64,
    position: u64,
    window_start: u64,
    window: Vec<u8>,
}

impl<'a> BatchReader<'a> {
    fn new(file: &'a FileHandle, len: u64) -> Self {
        BatchReader {
            file,
            len,
            position: 0,
            window_start: 0,
            window: Vec::new(),
        }
    }

    /// Makes `[position, end)` available in the window (fewer bytes at the end of the file).
    async fn fill(&mut self, end: u64) -> Result<(), LogError> {
        if self.position > self.window_start {
            let consumed = usize::try_from(self.position - self.window_start)
                .unwrap_or(usize::MAX)
                .min(self.window.len());
            self.window.drain(..consumed);
            self.window_start = self.position;
        }
        let end = end.min(self.len);
        while self.window_start + (self.window.len() as u64) < end {
            let read_at = self.window_start + self.window.len() as u64;
            let wanted = usize::try_from(end - read_at)
                .unwrap_or(usize::MAX)
                .max(READ_CHUNK_BYTES)
                .min(usize::try_from(self.len - read_at).unwrap_or(usize::MAX));
            let chunk = self
                .file
                .read_at(read_at, wanted)
                .await
                .map_err(|error| LogError::io("read", self.file.path(), error))?;
            if chunk.is_empty() {
                break;
            }
            self.window.extend_from_slice(&chunk);
        }
        Ok(())
    }

    /// The next batch: its position in the file and its bytes (a copy). None at the end.
    async fn next_batch(&mut self) -> Result<Option<(u64, Vec<u8>)>, LogError> {
        if self.position >= self.len {
            return Ok(None);
        }
        self.fill(self.position + BATCH_HEADER_LEN as u64).await?;
        let total = BatchHeader::parse(&self.window)
            .and_then(BatchHeader::total_len)
            .filter(|total| *total <= BATCH_BYTES_MAX)
            .ok_or(LogError::Invariant(
                "compaction found a malformed batch header in a sealed segment",
            ))?;
        self.fill(self.position + total as u64).await?;
        let batch = self
            .window
            .get(..total)
            .ok_or(LogError::Invariant("compaction found a truncated batch"))?;
        // Sealed data was validated on append or recovery; check again before rewriting it
        // (a CRC failure here is disk damage, and the cleaner must not launder it).
        validate_stored_batch_at(batch, 0)
            .map_err(|_| LogError::Invariant("compaction found an invalid batch"))?;
        let position = self.position;
        let bytes = batch.to_vec();
        self.position += total as u64;
        Ok(Some((position, bytes)))
    }
}

/// Writes a cleaned segment with aligned O_DIRECT writes.
struct CleanedWriter<B: Backend> {
    backend: B,
    file: FileHandle,
    pending: Vec<u8>,
    flushed: u64,
}

impl<B: Backend> CleanedWriter<B> {
    async fn create(backend: B, path: &std::path::Path) -> Result<Self, LogError> {
        let file = backend
            .open(path, OpenMode::CreateTruncate)
            .await
            .map_err(|error| LogError::io("create", path, error))?;
        Ok(CleanedWriter {
            backend,
            file,
            pending: Vec::new(),
            flushed: 0,
        })
    }

    fn len(&self) -> u64 {
        self.flushed + self.pending.len() as u64
    }

    async fn push(&mut self, bytes: &[u8]) -> Result<(), LogError> {
        self.pending.extend_from_slice(bytes);
        if self.pending.len() >= WRITE_CHUNK_BYTES {
            let whole = align_down(self.pending.len() as u64) as usize;
            self.write_block(whole, whole).await?;
        }
        Ok(())
    }

    /// Writes `pending[..take]` padded with zeros to `padded` bytes at `flushed`.
    async fn write_block(&mut self, take: usize, padded: usize) -> Result<(), LogError> {
        let mut buffer = self.backend.alloc_buffer(padded);
        let target = buffer.as_bytes_mut();
        target[..take].copy_from_slice(&self.pending[..take]);
        target[take..].fill(0);
        let written = self
            .file
            .write_at(buffer, self.flushed)
            .await
            .map_err(|error| LogError::io("write", self.file.path(), error))?;
        if written != padded {
            return Err(LogError::io(
                "write",
                self.file.path(),
                std::io::Error::new(std::io::ErrorKind::WriteZero, "short write"),
            ));
        }
        self.pending.drain(..take);
        self.flushed += take as u64;
        Ok(())
    }

    /// Writes the rest, truncates to the logical length and fdatasyncs.
    async fn finish(mut self) -> Result<(FileHandle, u64), LogError> {
        let len = self.len();
        if !self.pending.is_empty() {
            let take = self.pending.len();
            let padded = align_up(take as u64) as usize;
            self.write_block(take, padded).await?;
        }
        self.file
            .set_len(len)
            .await
            .map_err(|error| LogError::io("truncate", self.file.path(), error))?;
        self.file
            .fdatasync()
            .await
            .map_err(|error| LogError::io("fdatasync", self.file.path(), error))?;
        Ok((self.file, len))
    }
}

/// The decision for one batch.
enum Filtered {
    /// Every record stays: copy the batch as it is.
    Keep,
    /// No record stays.
    Drop,
    /// Some records stay: the re-encoded batch.
    Rewrite(Vec<u8>),
}

/// Counters of one rewrite.
#[derive(Default)]
struct Removed {
    superseded: u64,
    tombstones: u64,
}

/// Filters one uncompressed data batch against the key map.
fn filter_batch(
    batch: &[u8],
    header: &BatchHeader,
    map: &KeyMap,
    drop_tombstones: bool,
    removed: &mut Removed,
) -> Result<Filtered, LogError> {
    let records = parse_records(batch, header.records_count()).ok_or(LogError::Invariant(
        "compaction found malformed records in a sealed batch",
    ))?;
    let base = header.base_offset();
    let mut kept: Vec<&[u8]> = Vec::with_capacity(records.len());
    for record in &records {
        let offset = base + i64::from(record.offset_delta);
        let Some(key) = record.key else {
            kept.push(record.raw);
            continue;
        };
        if map.latest(key).is_some_and(|latest| latest > offset) {
            removed.superseded += 1;
        } else if record.value_is_null && drop_tombstones {
            removed.tombstones += 1;
        } else {
            kept.push(record.raw);
        }
    }
    if kept.len() == records.len() {
        return Ok(Filtered::Keep);
    }
    if kept.is_empty() {
        return Ok(Filtered::Drop);
    }
    let body: usize = kept.iter().map(|raw| raw.len()).sum();
    let mut out = Vec::with_capacity(BATCH_HEADER_LEN + body);
    out.extend_from_slice(&batch[..BATCH_HEADER_LEN]);
    for raw in &kept {
        out.extend_from_slice(raw);
    }
    let batch_length = i32::try_from(out.len() - LOG_OVERHEAD)
        .map_err(|_| LogError::Invariant("cleaned batch length"))?;
    let count = i32::try_from(kept.len()).map_err(|_| LogError::Invariant("record count"))?;
    out[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&batch_length.to_be_bytes());
    out[RECORDS_COUNT_AT..RECORDS_COUNT_AT + 4].copy_from_slice(&count.to_be_bytes());
    let crc = crc32c::crc32c(&out[CRC_RANGE_START..]);
    out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(Filtered::Rewrite(out))
}

/// `batch`'s header as a batch without records (same offsets, timestamps, producer fields).
fn empty_batch(batch: &[u8]) -> Result<Vec<u8>, LogError> {
    let mut out = batch
        .get(..BATCH_HEADER_LEN)
        .ok_or(LogError::Invariant("batch shorter than its header"))?
        .to_vec();
    let batch_length = i32::try_from(BATCH_HEADER_LEN - LOG_OVERHEAD)
        .map_err(|_| LogError::Invariant("header length"))?;
    out[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&batch_length.to_be_bytes());
    out[RECORDS_COUNT_AT..RECORDS_COUNT_AT + 4].copy_from_slice(&0i32.to_be_bytes());
    // No records, nothing to decompress: written uncompressed, as Kafka's cleaner does.
    let attributes = i16::from_be_bytes([out[ATTRIBUTES_AT], out[ATTRIBUTES_AT + 1]]);
    out[ATTRIBUTES_AT..ATTRIBUTES_AT + 2]
        .copy_from_slice(&(attributes & !ATTR_COMPRESSION_MASK).to_be_bytes());
    let crc = crc32c::crc32c(&out[CRC_RANGE_START..]);
    out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(out)
}

/// A cleaned segment ready to swap in.
struct Cleaned {
    file: FileHandle,
    path: PathBuf,
    built: Segment,
    removed: Removed,
}

impl<B: Backend> PartitionLog<B> {
    /// The dirty share of the cleanable part of the log (0 when nothing is cleanable).
    pub fn dirty_ratio(&self, now: TimestampMs, config: &CompactionConfig) -> f64 {
        let candidates = self.cleanable_segments(now, config);
        ratio(&candidates)
    }

    /// Runs one log compaction pass if the dirty ratio reaches
    /// `config.min_cleanable_dirty_ratio` (see the module docs). Call it from a low-priority
    /// task queue: it reads and rewrites whole segments. Compressed batches are kept whole;
    /// see [`PartitionLog::compact_with_codec`].
    pub async fn compact(
        &self,
        now: TimestampMs,
        config: &CompactionConfig,
    ) -> Result<CompactionReport, LogError> {
        self.compact_with_codec(now, config, None).await
    }

    /// [`PartitionLog::compact`], also compacting the records of compressed data batches with
    /// `codec` (see the module docs).
    pub async fn compact_with_codec(
        &self,
        now: TimestampMs,
        config: &CompactionConfig,
        codec: Option<&dyn RecordsCodec>,
    ) -> Result<CompactionReport, LogError> {
        self.wait_for_rolled_segments().await?;
        let candidates = self.cleanable_segments(now, config);
        let mut report = CompactionReport {
            dirty_ratio: ratio(&candidates),
            cleaned_through: self.shared.state.borrow().cleaned_through,
            ..CompactionReport::default()
        };
        let any_dirty = candidates.iter().any(|candidate| candidate.dirty);
        if !any_dirty || report.dirty_ratio < config.min_cleanable_dirty_ratio {
            return Ok(report);
        }
        report.ran = true;

        // 1. Key map over the dirty segments, bounded.
        let mut map = KeyMap {
            entries: HashMap::new(),
        };
        let mut mapped_end = 0usize;
        for (index, candidate) in candidates.iter().enumerate() {
            if !candidate.dirty {
                continue;
            }
            if map.entries.len() >= config.key_map_entries_max.max(1) {
                break;
            }
            let mut reader = BatchReader::new(&candidate.file, candidate.len);
            while let Some((_, batch)) = reader.next_batch().await? {
                let Some(header) = BatchHeader::parse(&batch) else {
                    continue;
                };
                let viewed = view_batch(&batch, header, codec);
                let plain: &[u8] = match &viewed {
                    Viewed::Opaque => continue,
                    Viewed::Plain => &batch,
                    Viewed::Expanded(_, expanded) => expanded,
                };
                let records = parse_records(plain, header.records_count()).ok_or(
                    LogError::Invariant("compaction found malformed records in a sealed batch"),
                )?;
                for record in records {
                    if let Some(key) = record.key {
                        map.insert(key, header.base_offset() + i64::from(record.offset_delta));
                    }
                }
                glommio::yield_if_needed().await;
            }
            mapped_end = index + 1;
        }
        let Some(last_mapped) = mapped_end.checked_sub(1).and_then(|i| candidates.get(i)) else {
            return Ok(report);
        };
        let mapped_through = last_mapped.next_offset;

        // 2 and 3. Rewrite each segment up to the end of the mapped range, then swap it in.
        let tombstone_horizon = now.0.saturating_sub(config.delete_retention_ms);
        let mut opaque_seen = false;
        for candidate in candidates.iter().take(mapped_end) {
            let Some(cleaned) = self
                .rewrite_segment(candidate, &map, tombstone_horizon, &mut opaque_seen, codec)
                .await?
            else {
                continue;
            };
            let before = candidate.len;
            let after = cleaned.built.len;
            let removed = (cleaned.removed.superseded, cleaned.removed.tombstones);
            if self.swap_in(candidate, cleaned).await? {
                report.segments_rewritten += 1;
                report.bytes_before += before;
                report.bytes_after += after;
                report.records_removed += removed.0;
                report.tombstones_removed += removed.1;
            }
        }
        {
            let mut state = self.shared.state.borrow_mut();
            state.cleaned_through = state.cleaned_through.max(mapped_through);
            report.cleaned_through = state.cleaned_through;
        }
        if report.segments_rewritten > 0 {
            let dir = self.shared.state.borrow().dir.clone();
            tracing::info!(
                dir = %dir.display(),
                segments = report.segments_rewritten,
                bytes_before = report.bytes_before,
                bytes_after = report.bytes_after,
                records_removed = report.records_removed,
                tombstones_removed = report.tombstones_removed,
                "log compaction pass"
            );
        }
        Ok(report)
    }

    /// Sealed segments below the high watermark and older than the compaction lag, in order.
    fn cleanable_segments(&self, now: TimestampMs, config: &CompactionConfig) -> Vec<Candidate> {
        let state = self.shared.state.borrow();
        let lag_limit = now.0.saturating_sub(config.min_compaction_lag_ms.max(0));
        let active = state.segments.len().saturating_sub(1);
        let mut candidates = Vec::new();
        for segment in state.segments.iter().take(active) {
            if segment.phase != Phase::Sealed
                || segment.next_offset > state.high_watermark
                || (config.min_compaction_lag_ms > 0 && segment.max_timestamp.0 > lag_limit)
            {
                break;
            }
            if segment.next_offset <= state.log_start_offset {
                continue;
            }
            let Some(file) = segment.file.clone() else {
                break;
            };
            candidates.push(Candidate {
                id: segment.id,
                base_offset: segment.base_offset,
                next_offset: segment.next_offset,
                len: segment.len,
                file,
                paths: segment.paths.clone(),
                dirty: segment.next_offset > state.cleaned_through,
            });
        }
        candidates
    }

    /// Writes the cleaned copy of one segment; None if nothing would change.
    async fn rewrite_segment(
        &self,
        candidate: &Candidate,
        map: &KeyMap,
        tombstone_horizon: i64,
        opaque_seen: &mut bool,
        codec: Option<&dyn RecordsCodec>,
    ) -> Result<Option<Cleaned>, LogError> {
        let (dir, index_interval_bytes) = {
            let state = self.shared.state.borrow();
            (state.dir.clone(), state.config.index_interval_bytes)
        };
        // First pass without writing: most segments of a well-compacted log do not change.
        let mut removed = Removed::default();
        let mut changes = false;
        let mut seen_opaque = *opaque_seen;
        let mut reader = BatchReader::new(&candidate.file, candidate.len);
        while let Some((_, batch)) = reader.next_batch().await? {
            let Some(header) = BatchHeader::parse(&batch) else {
                continue;
            };
            let viewed = view_batch(&batch, header, codec);
            let plain: &[u8] = match &viewed {
                Viewed::Opaque => {
                    seen_opaque = true;
                    continue;
                }
                Viewed::Plain => &batch,
                Viewed::Expanded(_, expanded) => expanded,
            };
            let drop_tombstones = !seen_opaque && header.max_timestamp() <= tombstone_horizon;
            let mut counted = Removed::default();
            if !matches!(
                filter_batch(plain, header, map, drop_tombstones, &mut counted)?,
                Filtered::Keep
            ) {
                changes = true;
                break;
            }
            glommio::yield_if_needed().await;
        }
        if !changes {
            *opaque_seen = seen_opaque;
            return Ok(None);
        }

        let name = candidate
            .paths
            .log
            .file_name()
            .map(|name| format!("{}.{CLEANED_SUFFIX}", name.to_string_lossy()))
            .ok_or(LogError::Invariant("segment path has no file name"))?;
        let path = dir.join(name);
        let mut writer = CleanedWriter::create(self.backend.clone(), &path).await?;
        let mut built = Segment::new(candidate.id, &dir, candidate.base_offset);
        let mut last_offsets: Vec<u32> = Vec::new();
        let mut expected = candidate.base_offset;
        let mut gapped = false;
        let mut last_dropped: Option<Vec<u8>> = None;
        let mut reader = BatchReader::new(&candidate.file, candidate.len);
        while let Some((_, batch)) = reader.next_batch().await? {
            let Some(header) = BatchHeader::parse(&batch) else {
                continue;
            };
            let drop_tombstones = !*opaque_seen && header.max_timestamp() <= tombstone_horizon;
            let output = match view_batch(&batch, header, codec) {
                Viewed::Opaque => {
                    *opaque_seen = true;
                    Filtered::Keep
                }
                Viewed::Plain => filter_batch(&batch, header, map, drop_tombstones, &mut removed)?,
                Viewed::Expanded(compression, expanded) => {
                    match filter_batch(&expanded, header, map, drop_tombstones, &mut removed)? {
                        Filtered::Rewrite(filtered) => {
                            let codec =
                                codec.ok_or(LogError::Invariant("expanded without a codec"))?;
                            Filtered::Rewrite(recompress(&batch, &filtered, compression, codec)?)
                        }
                        other => other,
                    }
                }
            };
            if matches!(output, Filtered::Drop) {
                last_dropped = Some(batch);
                continue;
            }
            last_dropped = None;
            let bytes: &[u8] = match &output {
                Filtered::Keep | Filtered::Drop => &batch,
                Filtered::Rewrite(bytes) => bytes,
            };
            let base = Offset(header.base_offset());
            let last = Offset(header.last_offset());
            gapped |= base > expected;
            expected = Offset(last.0 + 1);
            let position = writer.len();
            if !built.record_batch(
                base,
                position,
                bytes.len() as u64,
                TimestampMs(header.max_timestamp()),
                index_interval_bytes,
            ) {
                return Err(LogError::Invariant("cleaned segment index out of range"));
            }
            last_offsets.push(built.relative(last).unwrap_or(u32::MAX));
            writer.push(bytes).await?;
            glommio::yield_if_needed().await;
        }
        if let Some(batch) = last_dropped {
            // Keep the segment's end visible: the last batch stays, without records.
            let empty = empty_batch(&batch)?;
            let header =
                BatchHeader::parse(&empty).ok_or(LogError::Invariant("empty batch header"))?;
            let base = Offset(header.base_offset());
            let last = Offset(header.last_offset());
            gapped |= base > expected;
            expected = Offset(last.0 + 1);
            if !built.record_batch(
                base,
                writer.len(),
                empty.len() as u64,
                TimestampMs(header.max_timestamp()),
                index_interval_bytes,
            ) {
                return Err(LogError::Invariant("cleaned segment index out of range"));
            }
            last_offsets.push(built.relative(last).unwrap_or(u32::MAX));
            writer.push(&empty).await?;
        }
        gapped |= expected < candidate.next_offset;
        let (file, len) = writer.finish().await?;
        built.len = len;
        built.next_offset = candidate.next_offset;
        built.batch_last_offsets = gapped.then_some(last_offsets);
        Ok(Some(Cleaned {
            file,
            path,
            built,
            removed,
        }))
    }

    /// Switches the segment to its cleaned copy (if it is still there, sealed and unchanged)
    /// and has the writer rename the file into place. Returns whether it was swapped.
    async fn swap_in(&self, candidate: &Candidate, cleaned: Cleaned) -> Result<bool, LogError> {
        let Cleaned {
            file, path, built, ..
        } = cleaned;
        let seq = {
            let mut state = self.shared.state.borrow_mut();
            let usable = state.poison.is_none() && !state.closing;
            let found = state
                .segment_index_by_id(candidate.id)
                .filter(|index| {
                    state.segments[*index].phase == Phase::Sealed
                        && state.segments[*index].len == candidate.len
                })
                .filter(|_| usable);
            match found {
                None => None,
                Some(index) => {
                    let (index_bytes, time_index_bytes) = built.encoded_indexes();
                    let segment = &mut state.segments[index];
                    segment.index = built.index;
                    segment.time_index = built.time_index;
                    segment.bytes_since_time_entry = built.bytes_since_time_entry;
                    segment.max_timestamp = built.max_timestamp;
                    segment.len = built.len;
                    segment.staged = built.len;
                    segment.written = built.len;
                    segment.batch_last_offsets = built.batch_last_offsets;
                    segment.file = Some(file);
                    let paths = segment.paths.clone();
                    // Hot-tail entries of this segment point at positions in the old file.
                    while let Some(front) = state.tail.front() {
                        if front.segment_id > candidate.id {
                            break;
                        }
                        state.tail_bytes -= front.bytes.len();
                        state.tail.pop_front();
                    }
                    Some(state.push_command(Command::ReplaceSegment {
                        cleaned: path.clone(),
                        paths,
                        index: index_bytes,
                        time_index: time_index_bytes,
                    }))
                }
            }
        };
        match seq {
            Some(seq) => {
                self.wait_for_commands(seq).await?;
                Ok(true)
            }
            None => {
                // Retention, truncation or close got there first: drop the copy.
                self.backend
                    .remove(&path)
                    .await
                    .map_err(|error| LogError::io("remove", &path, error))?;
                Ok(false)
            }
        }
    }
}

fn ratio(candidates: &[Candidate]) -> f64 {
    let total: u64 = candidates.iter().map(|candidate| candidate.len).sum();
    let dirty: u64 = candidates
        .iter()
        .filter(|candidate| candidate.dirty)
        .map(|candidate| candidate.len)
        .sum();
    if total == 0 {
        0.0
    } else {
        dirty as f64 / total as f64
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::path::Path;

    use super::*;
    use crate::{
        backend::{prime_direct_io, DirectBackend},
        batch::validate_batches,
        config::LogConfig,
        testing::{run_local, BatchBuilder},
        types::LeaderEpoch,
    };

    const NOW: TimestampMs = TimestampMs(1_700_000_000_000);

    async fn open(dir: &Path) -> PartitionLog {
        prime_direct_io(dir.parent().unwrap()).await.unwrap();
        let config = LogConfig {
            segment_bytes: 600,
            ..LogConfig::default()
        };
        PartitionLog::open(DirectBackend, dir, config)
            .await
            .unwrap()
            .0
    }

    /// Every (offset, key, value is null) readable from `from`.
    async fn records_from(log: &PartitionLog, from: Offset) -> Vec<(i64, Vec<u8>, bool)> {
        let result = log.read(from, usize::MAX, log.log_end_offset()).unwrap();
        let mut bytes = Vec::new();
        for chunk in &result.chunks {
            bytes.extend_from_slice(&chunk.load().await.unwrap());
        }
        let mut out = Vec::new();
        let mut position = 0;
        while position < bytes.len() {
            let summary = validate_stored_batch_at(&bytes, position).unwrap();
            let batch = &bytes[position..position + summary.length];
            for record in parse_records(batch, summary.records_count).unwrap() {
                out.push((
                    summary.base_offset + i64::from(record.offset_delta),
                    record.key.unwrap().to_vec(),
                    record.value_is_null,
                ));
            }
            position += summary.length;
        }
        out
    }

    fn one(key: &str, value: Option<&str>, timestamp: TimestampMs) -> bytes::Bytes {
        BatchBuilder::new(timestamp)
            .record(Some(key.as_bytes()), value.map(str::as_bytes))
            .build()
    }

    /// Appends 5 keys x 8 updates (one batch each, plus a few two-record batches), rolls,
    /// and returns the offset of each key's last update.
    async fn fill(log: &PartitionLog) -> Vec<(String, i64)> {
        let mut latest = Vec::new();
        for round in 0..8 {
            for key in 0..5 {
                let name = format!("k{key}");
                let value = format!("v{round}-{key}-padding-padding");
                let info = log
                    .append(one(&name, Some(&value), NOW), LeaderEpoch(0), NOW)
                    .unwrap();
                if round == 7 {
                    latest.push((name, info.base_offset.0));
                }
            }
        }
        log.set_high_watermark(log.log_end_offset());
        log.roll().unwrap();
        log.flush().await.unwrap();
        latest
    }

    fn eager() -> CompactionConfig {
        CompactionConfig {
            min_cleanable_dirty_ratio: 0.0,
            ..CompactionConfig::default()
        }
    }

    #[test]
    fn keeps_the_last_record_per_key_with_its_offset_and_survives_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("compact-0");
        run_local(move || async move {
            let log = open(&dir).await;
            let latest = fill(&log).await;
            assert!(log.segment_count() > 3);
            let size_before = log.size_bytes();
            let report = log.compact(NOW, &eager()).await.unwrap();
            assert!(report.ran && report.segments_rewritten > 0, "{report:?}");
            assert_eq!(report.records_removed, 35);
            assert!(log.size_bytes() < size_before / 3, "{report:?}");
            let expected: Vec<(i64, Vec<u8>, bool)> = latest
                .iter()
                .map(|(key, offset)| (*offset, key.as_bytes().to_vec(), false))
                .collect();
            assert_eq!(records_from(&log, Offset(0)).await, expected);
            // An offset inside a gap reads from the next remaining batch.
            let first_kept = expected[0].0;
            assert_eq!(
                records_from(&log, Offset(first_kept - 1))
                    .await
                    .first()
                    .map(|r| r.0),
                Some(first_kept)
            );
            assert_eq!(log.log_start_offset(), Offset(0));
            // A second pass finds nothing dirty.
            let again = log.compact(NOW, &eager()).await.unwrap();
            assert!(!again.ran, "{again:?}");
            // New appends continue after the gaps.
            let end = log.log_end_offset();
            let appended = log
                .append(one("k0", Some("new"), NOW), LeaderEpoch(0), NOW)
                .unwrap();
            assert_eq!(appended.base_offset, end);
            log.close().await.unwrap();

            // Recovery accepts the gaps, rebuilds the same view and leaves no leftovers.
            let (log, report) = PartitionLog::open(
                DirectBackend,
                &dir,
                LogConfig {
                    segment_bytes: 600,
                    ..LogConfig::default()
                },
            )
            .await
            .unwrap();
            assert!(!report.found_damage(), "{report:?}");
            assert!(report.rebuilt_indexes.is_empty(), "{report:?}");
            let mut expected = expected;
            expected.push((end.0, b"k0".to_vec(), false));
            assert_eq!(records_from(&log, Offset(0)).await, expected);
            assert_eq!(
                records_from(&log, Offset(first_kept - 1))
                    .await
                    .first()
                    .map(|r| r.0),
                Some(first_kept)
            );
            for entry in std::fs::read_dir(&dir).unwrap() {
                let name = entry.unwrap().file_name().to_string_lossy().into_owned();
                assert!(!name.ends_with(CLEANED_SUFFIX), "{name}");
            }
            log.close().await.unwrap();
        });
    }

    #[test]
    fn tombstones_go_after_delete_retention_and_partial_batches_are_reencoded() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("tomb-0");
        run_local(move || async move {
            let log = open(&dir).await;
            let old = TimestampMs(NOW.0 - 10_000);
            // One batch with three keys; two of them are updated later.
            let batch = BatchBuilder::new(old)
                .record(Some(b"a"), Some(b"1"))
                .record(Some(b"b"), Some(b"1"))
                .record(Some(b"c"), Some(b"1"))
                .build();
            log.append(batch, LeaderEpoch(0), old).unwrap();
            log.append(one("a", None, old), LeaderEpoch(0), old)
                .unwrap(); // offset 3
            log.append(one("b", Some("2"), NOW), LeaderEpoch(0), NOW)
                .unwrap(); // offset 4
            log.append(one("c", None, NOW), LeaderEpoch(0), NOW)
                .unwrap(); // offset 5
            log.set_high_watermark(log.log_end_offset());
            log.roll().unwrap();
            log.append(one("z", Some("active"), NOW), LeaderEpoch(0), NOW)
                .unwrap();
            log.set_high_watermark(log.log_end_offset());
            log.flush().await.unwrap();
            let config = CompactionConfig {
                delete_retention_ms: 5_000,
                ..eager()
            };
            let report = log.compact(NOW, &config).await.unwrap();
            assert!(report.ran, "{report:?}");
            assert_eq!(report.tombstones_removed, 1, "{report:?}");
            let records = records_from(&log, Offset(0)).await;
            // a: its old tombstone is gone; b: latest value; c: young tombstone kept.
            assert_eq!(
                records,
                vec![
                    (4, b"b".to_vec(), false),
                    (5, b"c".to_vec(), true),
                    (6, b"z".to_vec(), false),
                ]
            );
            // The partially filtered first batch would keep lastOffsetDelta; here all its
            // records went. Every stored batch still validates as a stored batch.
            let result = log
                .read(Offset(0), usize::MAX, log.log_end_offset())
                .unwrap();
            for chunk in &result.chunks {
                let bytes = chunk.load().await.unwrap();
                let mut position = 0;
                while position < bytes.len() {
                    position += validate_stored_batch_at(&bytes, position).unwrap().length;
                }
            }
            log.close().await.unwrap();
        });
    }

    /// A fake codec: "compressed" records are the plain ones reversed behind a magic prefix.
    struct Reverse;

    const FAKE_MAGIC: &[u8] = b"REV!";

    impl RecordsCodec for Reverse {
        fn decompress(&self, compression: Compression, data: &[u8]) -> Result<Vec<u8>, CodecError> {
            let body = data.strip_prefix(FAKE_MAGIC).ok_or(CodecError {
                compression,
                source: "missing magic".into(),
            })?;
            Ok(body.iter().rev().copied().collect())
        }

        fn compress(&self, _: Compression, records: &[u8]) -> Result<Vec<u8>, CodecError> {
            let mut out = FAKE_MAGIC.to_vec();
            out.extend(records.iter().rev());
            Ok(out)
        }
    }

    /// `plain` as an lz4-flagged batch whose records the fake codec "compressed".
    fn fake_compressed(plain: &[u8]) -> bytes::Bytes {
        let mut out = plain[..BATCH_HEADER_LEN].to_vec();
        let attributes = i16::from_be_bytes([out[ATTRIBUTES_AT], out[ATTRIBUTES_AT + 1]]) | 3;
        out[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
        out.extend(
            Reverse
                .compress(Compression::Lz4, &plain[BATCH_HEADER_LEN..])
                .unwrap(),
        );
        seal(&mut out).unwrap();
        bytes::Bytes::from(out)
    }

    /// Every (offset, key, value is null) readable from `from`, expanding compressed batches
    /// with the fake codec; also the compression of each stored batch that has records.
    async fn expanded_records_from(
        log: &PartitionLog,
    ) -> (Vec<(i64, Vec<u8>, bool)>, Vec<Option<Compression>>) {
        let result = log
            .read(Offset(0), usize::MAX, log.log_end_offset())
            .unwrap();
        let mut bytes = Vec::new();
        for chunk in &result.chunks {
            bytes.extend_from_slice(&chunk.load().await.unwrap());
        }
        let (mut out, mut codecs) = (Vec::new(), Vec::new());
        let mut position = 0;
        while position < bytes.len() {
            let summary = validate_stored_batch_at(&bytes, position).unwrap();
            let batch = &bytes[position..position + summary.length];
            let header = BatchHeader::parse(batch).unwrap();
            let plain = match view_batch(batch, header, Some(&Reverse)) {
                Viewed::Plain => batch.to_vec(),
                Viewed::Expanded(_, expanded) => expanded,
                Viewed::Opaque => panic!("opaque batch at {position}"),
            };
            if summary.records_count > 0 {
                codecs.push(header.compression());
            }
            for record in parse_records(&plain, summary.records_count).unwrap() {
                out.push((
                    summary.base_offset + i64::from(record.offset_delta),
                    record.key.unwrap().to_vec(),
                    record.value_is_null,
                ));
            }
            position += summary.length;
        }
        (out, codecs)
    }

    #[test]
    fn compressed_batches_are_expanded_filtered_and_recompressed_with_a_codec() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("codec-0");
        run_local(move || async move {
            let log = open(&dir).await;
            let old = TimestampMs(NOW.0 - 10_000);
            // Compressed: x=1 y=1 z=1 (0..=2), then x=2 and a tombstone for y (3..=4), then
            // plain z=2 (5) and compressed x=3 (6).
            let first = BatchBuilder::new(old)
                .producer(7, 1, 0)
                .record(Some(b"x"), Some(b"1"))
                .record(Some(b"y"), Some(b"1"))
                .record(Some(b"z"), Some(b"1"))
                .build();
            log.append(fake_compressed(&first), LeaderEpoch(0), old)
                .unwrap();
            let second = BatchBuilder::new(old)
                .record(Some(b"x"), Some(b"2"))
                .record(Some(b"y"), None)
                .build();
            log.append(fake_compressed(&second), LeaderEpoch(0), old)
                .unwrap();
            log.append(one("z", Some("2"), NOW), LeaderEpoch(0), NOW)
                .unwrap();
            let third = BatchBuilder::new(NOW)
                .record(Some(b"x"), Some(b"3"))
                .build();
            log.append(fake_compressed(&third), LeaderEpoch(0), NOW)
                .unwrap();
            log.set_high_watermark(log.log_end_offset());
            log.roll().unwrap();
            log.flush().await.unwrap();

            // Without a codec nothing compressed is touched: only nothing can go.
            let untouched = log.compact(NOW, &eager()).await.unwrap();
            assert_eq!(untouched.records_removed, 0, "{untouched:?}");
            log.set_high_watermark(log.log_end_offset());

            let config = CompactionConfig {
                delete_retention_ms: 5_000,
                ..eager()
            };
            // The checkpoint says the log is clean; reopen to start over from offset 0.
            log.close().await.unwrap();
            let (log, _) = PartitionLog::open(
                DirectBackend,
                &dir,
                LogConfig {
                    segment_bytes: 600,
                    ..LogConfig::default()
                },
            )
            .await
            .unwrap();
            log.set_high_watermark(log.log_end_offset());
            let report = log
                .compact_with_codec(NOW, &config, Some(&Reverse))
                .await
                .unwrap();
            assert!(report.ran, "{report:?}");
            assert_eq!(
                (report.records_removed, report.tombstones_removed),
                (4, 1),
                "{report:?}"
            );
            let (records, codecs) = expanded_records_from(&log).await;
            assert_eq!(
                records,
                vec![(5, b"z".to_vec(), false), (6, b"x".to_vec(), false)]
            );
            assert_eq!(
                codecs,
                vec![Some(Compression::None), Some(Compression::Lz4)]
            );
            log.close().await.unwrap();
        });
    }

    #[test]
    fn a_partially_kept_compressed_batch_keeps_offsets_producer_and_codec() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("codec-partial-0");
        run_local(move || async move {
            let log = open(&dir).await;
            let batch = BatchBuilder::new(NOW)
                .producer(42, 3, 10)
                .record(Some(b"a"), Some(b"1"))
                .record(Some(b"b"), Some(b"1"))
                .record(Some(b"a"), Some(b"2"))
                .record(Some(b"c"), Some(b"1"))
                .build();
            log.append(fake_compressed(&batch), LeaderEpoch(0), NOW)
                .unwrap();
            log.append(one("c", Some("2"), NOW), LeaderEpoch(0), NOW)
                .unwrap();
            log.set_high_watermark(log.log_end_offset());
            log.roll().unwrap();
            log.flush().await.unwrap();
            let report = log
                .compact_with_codec(NOW, &eager(), Some(&Reverse))
                .await
                .unwrap();
            assert_eq!(report.records_removed, 2, "{report:?}");
            let (records, codecs) = expanded_records_from(&log).await;
            assert_eq!(
                records,
                vec![
                    (1, b"b".to_vec(), false),
                    (2, b"a".to_vec(), false),
                    (4, b"c".to_vec(), false)
                ]
            );
            assert_eq!(
                codecs,
                vec![Some(Compression::Lz4), Some(Compression::None)]
            );
            let result = log
                .read(Offset(0), usize::MAX, log.log_end_offset())
                .unwrap();
            let bytes = result.chunks[0].load().await.unwrap();
            let header = BatchHeader::parse(&bytes).unwrap();
            assert_eq!(
                (
                    header.base_offset(),
                    header.last_offset(),
                    header.records_count(),
                    header.producer_id(),
                    header.producer_epoch(),
                    header.base_sequence(),
                ),
                (0, 3, 2, 42, 3, 10)
            );
            log.close().await.unwrap();
        });
    }

    #[test]
    fn a_partially_kept_batch_keeps_its_offsets() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("partial-0");
        run_local(move || async move {
            let log = open(&dir).await;
            let batch = BatchBuilder::new(NOW)
                .record(Some(b"x"), Some(b"1"))
                .record(Some(b"y"), Some(b"1"))
                .record(Some(b"x"), Some(b"2"))
                .build();
            log.append(batch, LeaderEpoch(0), NOW).unwrap();
            log.append(one("y", Some("2"), NOW), LeaderEpoch(0), NOW)
                .unwrap();
            log.set_high_watermark(log.log_end_offset());
            log.roll().unwrap();
            log.flush().await.unwrap();
            let report = log.compact(NOW, &eager()).await.unwrap();
            assert_eq!(report.records_removed, 2, "{report:?}");
            assert_eq!(
                records_from(&log, Offset(0)).await,
                vec![(2, b"x".to_vec(), false), (3, b"y".to_vec(), false)]
            );
            let result = log
                .read(Offset(0), usize::MAX, log.log_end_offset())
                .unwrap();
            let bytes = result.chunks[0].load().await.unwrap();
            let summaries = validate_batches(&bytes);
            // The rewritten batch has one record but still spans offsets 0..=2.
            assert!(summaries.is_err(), "strict validation rejects it");
            let stored = validate_stored_batch_at(&bytes, 0).unwrap();
            assert_eq!(
                (
                    stored.base_offset,
                    stored.last_offset_delta,
                    stored.records_count
                ),
                (0, 2, 1)
            );
            log.close().await.unwrap();
        });
    }
}
