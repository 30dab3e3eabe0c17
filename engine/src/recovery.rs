//! Recovery on open. Every segment is read once, sequentially, with O_DIRECT, and every batch
//! is validated (lengths, magic, record count, CRC32C, offsets contiguous from the file's base
//! offset). This rebuilds the in-memory indexes and the leader epoch cache, and detects damage
//! anywhere, not only in the tail:
//!
//! - Bytes after the last valid batch that are all zero are O_DIRECT padding or a write that
//!   never landed: the file is truncated there (reported, no data lost that was ever valid).
//! - Anything else (a torn or corrupt batch, an offset mismatch) truncates the log at the
//!   damage: the segment is cut at the last valid batch and every later segment is deleted.
//! - A segment whose base offset does not continue the previous one ends the log likewise.
//! - Index files that are missing or differ from the rebuilt indexes are rewritten.
//!
//! Nothing here panics on a bad file; every cut is logged and listed in the [`RecoveryReport`].

use std::{
    collections::{BTreeMap, VecDeque},
    path::{Path, PathBuf},
};

use crate::{
    backend::{align_down, Backend, FileHandle, OpenMode},
    batch::{validate_stored_batch_at, BatchHeader, BATCH_HEADER_LEN},
    checkpoint::read_log_start,
    clean_shutdown::{CleanShutdown, CLEAN_SHUTDOWN_FILE},
    config::LogConfig,
    epoch::EpochCache,
    error::{BatchError, LogError},
    index::{OffsetIndex, TimeIndex},
    segment::{
        parse_segment_file_name, read_whole_file, write_whole_file, Phase, Segment, SegmentPaths,
        INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX,
    },
    types::{LeaderEpoch, Offset, TimestampMs},
};

/// Bytes read per recovery I/O.
const SCAN_CHUNK_BYTES: usize = 1 << 20;
/// No valid batch is larger than this (a request is at most 100 MiB): a larger declared
/// length is damage, and recovery does not buffer it.
const BATCH_BYTES_MAX: usize = 128 << 20;

/// What recovery found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segments in the log after recovery.
    pub segments: usize,
    /// Valid batches found.
    pub batches: u64,
    /// Log start offset after recovery.
    pub log_start_offset: Offset,
    /// Log end offset after recovery.
    pub log_end_offset: Offset,
    /// Segment files cut at their last valid batch.
    pub truncations: Vec<Truncation>,
    /// Segments deleted because earlier damage ended the log.
    pub deleted_segments: Vec<DeletedSegment>,
    /// Index files rewritten because they were missing or damaged.
    pub rebuilt_indexes: Vec<PathBuf>,
    /// Index files without a log file, removed.
    pub orphans_removed: Vec<PathBuf>,
    /// The log was opened from its clean-shutdown record: no batch was read (see
    /// `clean_shutdown`). False after a crash, or if the record did not match the files.
    pub from_clean_shutdown: bool,
}

impl RecoveryReport {
    /// Bytes cut from segment files plus bytes of deleted segments.
    pub fn truncated_bytes(&self) -> u64 {
        self.truncations.iter().map(|cut| cut.bytes).sum::<u64>()
            + self
                .deleted_segments
                .iter()
                .map(|deleted| deleted.bytes)
                .sum::<u64>()
    }

    /// True if nothing was cut, deleted or rebuilt.
    pub fn is_clean(&self) -> bool {
        self.truncations.is_empty()
            && self.deleted_segments.is_empty()
            && self.rebuilt_indexes.is_empty()
            && self.orphans_removed.is_empty()
    }

    /// True if damage (not just zero padding) was found.
    pub fn found_damage(&self) -> bool {
        !self.deleted_segments.is_empty()
            || self
                .truncations
                .iter()
                .any(|cut| cut.reason != TruncationReason::ZeroPadding)
    }
}

/// One segment file cut at its last valid batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncation {
    /// The segment file.
    pub path: PathBuf,
    /// Its base offset.
    pub base_offset: Offset,
    /// Where it was cut (its new length).
    pub position: u64,
    /// Bytes removed.
    pub bytes: u64,
    /// Why.
    pub reason: TruncationReason,
}

/// Why a segment was cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TruncationReason {
    /// Only zero bytes followed the last valid batch.
    ZeroPadding,
    /// The next batch is invalid (torn write or corruption).
    InvalidBatch(BatchError),
    /// The next batch's base offset does not continue the previous batch.
    OffsetMismatch {
        /// The offset that should have come next.
        expected: Offset,
        /// The batch's base offset.
        found: Offset,
    },
}

/// A segment deleted during recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedSegment {
    /// The segment file.
    pub path: PathBuf,
    /// Its base offset.
    pub base_offset: Offset,
    /// Its size.
    pub bytes: u64,
    /// Why.
    pub reason: DeleteReason,
}

/// Why a segment was deleted during recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteReason {
    /// An earlier segment was damaged; the log ends there.
    AfterDamage {
        /// Base offset of the damaged segment.
        damaged_segment: Offset,
    },
    /// The segment does not start where the previous one ends.
    OffsetGap {
        /// Where the previous segment ended.
        expected: Offset,
    },
}

/// The recovered log, ready to become a `State`.
pub(crate) struct Recovered {
    pub(crate) segments: VecDeque<Segment>,
    pub(crate) log_start_offset: Offset,
    pub(crate) epochs: EpochCache,
    /// Bytes `[align_down(len), len)` of the last segment.
    pub(crate) tail_page: Vec<u8>,
    pub(crate) report: RecoveryReport,
}

/// Recovers the log in `dir` (creating the directory if needed).
pub(crate) async fn recover<B: Backend>(
    backend: &B,
    dir: &Path,
    config: &LogConfig,
) -> Result<Recovered, LogError> {
    backend
        .create_dir_all(dir)
        .await
        .map_err(|error| LogError::io("create directory", dir, error))?;
    let entries = backend
        .list_dir(dir)
        .await
        .map_err(|error| LogError::io("list directory", dir, error))?;
    // Read and removed before anything else: the files may change from here on, and a crash
    // during or after this open must find no record.
    let record = take_clean_shutdown_record(backend, dir, &entries).await?;
    let mut leftovers = false;
    let mut logs = BTreeMap::new();
    let mut others = Vec::new();
    for path in entries {
        if path
            .extension()
            .is_some_and(|extension| extension == crate::compaction::CLEANED_SUFFIX)
        {
            // A log compaction output that was never swapped in: the segment it would have
            // replaced is intact.
            backend
                .remove(&path)
                .await
                .map_err(|error| LogError::io("remove", &path, error))?;
            tracing::info!(path = %path.display(), "removed unfinished log compaction output");
            leftovers = true;
            continue;
        }
        match parse_segment_file_name(&path) {
            Some((base, LOG_SUFFIX)) => {
                logs.insert(base, path);
            }
            Some((base, INDEX_SUFFIX | TIME_INDEX_SUFFIX)) => others.push((base, path)),
            _ => {}
        }
    }
    let mut report = RecoveryReport::default();
    for (base, path) in others {
        if !logs.contains_key(&base) {
            backend
                .remove(&path)
                .await
                .map_err(|error| LogError::io("remove", &path, error))?;
            tracing::warn!(path = %path.display(), "removed index file without a segment");
            report.orphans_removed.push(path);
        }
    }

    let mut segments: VecDeque<Segment> = VecDeque::new();
    let mut epochs = EpochCache::default();
    let mut end_of_log: Option<DeleteReason> = None;
    let from_record = match record {
        Some(_) if leftovers || !report.orphans_removed.is_empty() => {
            tracing::warn!(dir = %dir.display(), "clean-shutdown record ignored: the directory held leftover files; scanning the log");
            None
        }
        Some(record) => match segments_from_record(backend, dir, &logs, record).await? {
            Ok(opened) => Some(opened),
            Err(reason) => {
                tracing::warn!(dir = %dir.display(), reason, "clean-shutdown record does not match the log; scanning it");
                None
            }
        },
        None => None,
    };
    if let Some((opened, opened_epochs)) = from_record {
        report.batches = opened
            .iter()
            .map(|segment| segment.index.len() as u64)
            .sum();
        report.from_clean_shutdown = true;
        segments = opened;
        epochs = opened_epochs;
        logs = BTreeMap::new();
    }
    for (base, path) in logs {
        let paths = SegmentPaths::new(dir, base);
        if let Some(previous) = segments.back() {
            let expected = previous.next_offset;
            // Log compaction keeps the last batch of every segment (empty if need be), so a
            // segment always ends where the next one starts.
            if end_of_log.is_none() && base != expected {
                tracing::warn!(path = %path.display(), %expected, "segment does not continue the log");
                end_of_log = Some(DeleteReason::OffsetGap { expected });
            }
        }
        if let Some(reason) = end_of_log.clone() {
            let bytes = file_size(backend, &path).await?;
            delete_segment(backend, &paths).await?;
            tracing::warn!(path = %path.display(), bytes, ?reason, "deleted segment after damage");
            report.deleted_segments.push(DeletedSegment {
                path,
                base_offset: base,
                bytes,
                reason,
            });
            continue;
        }
        let file = backend
            .open(&path, OpenMode::Existing)
            .await
            .map_err(|error| LogError::io("open", &path, error))?;
        let file_len = file
            .size()
            .await
            .map_err(|error| LogError::io("stat", &path, error))?;
        let mut segment = Segment::new(segments.len() as u64, dir, base);
        let scan = scan_segment(&file, &mut segment, file_len, config, &mut epochs).await?;
        report.batches += segment.index.len() as u64;
        if let Some(reason) = scan.stop {
            let cut_bytes = file_len - segment.len;
            file.set_len(segment.len)
                .await
                .map_err(|error| LogError::io("truncate", &path, error))?;
            file.fdatasync()
                .await
                .map_err(|error| LogError::io("fdatasync", &path, error))?;
            tracing::warn!(
                path = %path.display(),
                position = segment.len,
                bytes = cut_bytes,
                ?reason,
                "truncated segment at its last valid batch"
            );
            if reason != TruncationReason::ZeroPadding {
                end_of_log = Some(DeleteReason::AfterDamage {
                    damaged_segment: base,
                });
            }
            report.truncations.push(Truncation {
                path: path.clone(),
                base_offset: base,
                position: segment.len,
                bytes: cut_bytes,
                reason,
            });
        }
        check_indexes(backend, &segment, &mut report).await?;
        segment.seal_as_found(file);
        segments.push_back(segment);
    }

    let checkpoint = read_log_start(backend, dir).await?;
    if segments.is_empty() {
        let base = checkpoint.unwrap_or_default().max(Offset(0));
        segments.push_back(Segment::new(0, dir, base));
    }
    let Some(last) = segments.back_mut() else {
        return Err(LogError::Invariant("no segment after recovery"));
    };
    last.phase = Phase::Active;
    let log_end_offset = last.next_offset;
    let tail_page = match &last.file {
        Some(file) if !last.len.is_multiple_of(crate::backend::IO_ALIGNMENT) => {
            let start = align_down(last.len);
            let len = (last.len - start) as usize;
            let page = file
                .read_at(start, len)
                .await
                .map_err(|error| LogError::io("read", &last.paths.log, error))?;
            if page.len() != len {
                return Err(LogError::ShortRead {
                    path: last.paths.log.clone(),
                    position: start,
                    expected: len,
                    actual: page.len(),
                });
            }
            page.to_vec()
        }
        _ => Vec::new(),
    };
    let first_base = segments
        .front()
        .map(|segment| segment.base_offset)
        .unwrap_or_default();
    let log_start_offset = checkpoint
        .unwrap_or(first_base)
        .max(first_base)
        .min(log_end_offset);
    epochs.truncate_from_start(log_start_offset);
    report.segments = segments.len();
    report.log_start_offset = log_start_offset;
    report.log_end_offset = log_end_offset;
    if !report.is_clean() {
        tracing::warn!(dir = %dir.display(), ?report, "recovery changed the log");
    }
    Ok(Recovered {
        segments,
        log_start_offset,
        epochs,
        tail_page,
        report,
    })
}

/// Reads the clean-shutdown record if `entries` list one, then removes it (and syncs the
/// directory). A damaged record is removed too and counts as none.
async fn take_clean_shutdown_record<B: Backend>(
    backend: &B,
    dir: &Path,
    entries: &[PathBuf],
) -> Result<Option<CleanShutdown>, LogError> {
    let path = dir.join(CLEAN_SHUTDOWN_FILE);
    if !entries.contains(&path) {
        return Ok(None);
    }
    let bytes = read_whole_file(backend, &path).await?;
    backend
        .remove(&path)
        .await
        .map_err(|error| LogError::io("remove", &path, error))?;
    backend
        .sync_dir(dir)
        .await
        .map_err(|error| LogError::io("sync directory", dir, error))?;
    let record = bytes.and_then(|bytes| CleanShutdown::decode(&bytes));
    if record.is_none() {
        tracing::warn!(path = %path.display(), "damaged clean-shutdown record ignored; scanning the log");
    }
    Ok(record)
}

/// The segments (open, sealed) and epochs a clean-shutdown record describes, if the segment
/// files and index files are exactly what it says; otherwise why not.
async fn segments_from_record<B: Backend>(
    backend: &B,
    dir: &Path,
    logs: &BTreeMap<Offset, PathBuf>,
    record: CleanShutdown,
) -> Result<Result<(VecDeque<Segment>, EpochCache), &'static str>, LogError> {
    let Some(epochs) = EpochCache::from_entries(record.epochs) else {
        return Ok(Err("epochs out of order"));
    };
    // An empty segment the writer never created a file for has nothing on disk.
    let described: Vec<_> = record
        .segments
        .into_iter()
        .filter(|segment| segment.len > 0 || logs.contains_key(&segment.base_offset))
        .collect();
    if described.len() != logs.len()
        || !described
            .iter()
            .zip(logs.keys())
            .all(|(segment, base)| segment.base_offset == *base)
    {
        return Ok(Err("the segment files are not the ones recorded"));
    }
    let mut segments = VecDeque::with_capacity(described.len());
    for (entry, path) in described.into_iter().zip(logs.values()) {
        if segments
            .back()
            .is_some_and(|previous: &Segment| previous.next_offset != entry.base_offset)
        {
            return Ok(Err("recorded segments do not continue each other"));
        }
        let file = backend
            .open(path, OpenMode::Existing)
            .await
            .map_err(|error| LogError::io("open", path, error))?;
        let file_len = file
            .size()
            .await
            .map_err(|error| LogError::io("stat", path, error))?;
        if file_len != entry.len {
            return Ok(Err("a segment file's size is not the recorded length"));
        }
        let paths = SegmentPaths::new(dir, entry.base_offset);
        let (Some(index_bytes), Some(time_index_bytes)) = (
            read_whole_file(backend, &paths.index).await?,
            read_whole_file(backend, &paths.time_index).await?,
        ) else {
            return Ok(Err("an index file is missing"));
        };
        let index_bytes: &[u8] = &index_bytes;
        let time_index_bytes: &[u8] = &time_index_bytes;
        if crc32c::crc32c(index_bytes) != entry.index_crc
            || crc32c::crc32c(time_index_bytes) != entry.time_index_crc
        {
            return Ok(Err("an index file is not the one the close sealed"));
        }
        let relative_end = u64::try_from(entry.next_offset.0 - entry.base_offset.0).unwrap_or(0);
        let (Ok(index), Ok(time_index_file)) = (
            OffsetIndex::decode(index_bytes, entry.len),
            TimeIndex::decode(time_index_bytes, relative_end),
        ) else {
            return Ok(Err("an index file is damaged"));
        };
        let mut time_index = TimeIndex::new();
        for time_entry in time_index_file
            .entries()
            .iter()
            .take(entry.time_entries as usize)
        {
            if !time_index.push(*time_entry) {
                return Ok(Err("a time index is out of order"));
            }
        }
        let mut segment = Segment::new(segments.len() as u64, dir, entry.base_offset);
        segment.index = index;
        segment.time_index = time_index;
        segment.len = entry.len;
        segment.next_offset = entry.next_offset;
        segment.max_timestamp = entry.max_timestamp;
        segment.bytes_since_time_entry = entry.bytes_since_time_entry;
        segment.batch_last_offsets = entry.batch_last_offsets;
        let consistent = segment.index.len() == entry.index_entries as usize
            && segment.time_index.len() == entry.time_entries as usize
            && segment
                .batch_last_offsets
                .as_ref()
                .is_none_or(|last| last.len() == segment.index.len())
            && match segment.index.entries().last() {
                None => segment.len == 0 && segment.next_offset == segment.base_offset,
                Some(last) => u64::from(last.relative_offset) < relative_end,
            };
        // The time index as the record rebuilds it (entries in memory, max timestamp as the
        // final entry) must be the file, byte for byte. The offset index was decoded from its
        // file, whose CRC matched: nothing to compare.
        let time_index_expected = segment
            .time_index
            .encode_with_final(segment.final_time_entry());
        if !consistent || time_index_expected != time_index_bytes {
            return Ok(Err("the index files do not match the record"));
        }
        segment.seal_as_found(file);
        segments.push_back(segment);
    }
    Ok(Ok((segments, epochs)))
}

async fn file_size<B: Backend>(backend: &B, path: &Path) -> Result<u64, LogError> {
    let file = backend
        .open(path, OpenMode::Existing)
        .await
        .map_err(|error| LogError::io("open", path, error))?;
    file.size()
        .await
        .map_err(|error| LogError::io("stat", path, error))
}

async fn delete_segment<B: Backend>(backend: &B, paths: &SegmentPaths) -> Result<(), LogError> {
    for path in [&paths.log, &paths.index, &paths.time_index] {
        backend
            .remove(path)
            .await
            .map_err(|error| LogError::io("remove", path, error))?;
    }
    Ok(())
}

struct ScanOutcome {
    /// Why the scan stopped before the end of the file (None: clean end).
    stop: Option<TruncationReason>,
}

/// A sliding window over a file, read in large aligned chunks.
struct Window<'a> {
    file: &'a FileHandle,
    file_len: u64,
    start: u64,
    bytes: Vec<u8>,
}

impl Window<'_> {
    /// Makes `[position, position + len)` available (fewer bytes at end of file).
    async fn ensure(&mut self, position: u64, len: usize) -> Result<&[u8], LogError> {
        let wanted_end = (position + len as u64).min(self.file_len);
        if position < self.start || position > self.start + self.bytes.len() as u64 {
            self.start = position;
            self.bytes.clear();
        } else if position - self.start > SCAN_CHUNK_BYTES as u64 {
            self.bytes.drain(..(position - self.start) as usize);
            self.start = position;
        }
        while self.start + (self.bytes.len() as u64) < wanted_end {
            let read_at = self.start + self.bytes.len() as u64;
            let want = ((wanted_end - read_at) as usize).max(SCAN_CHUNK_BYTES);
            let want = want.min((self.file_len - read_at) as usize);
            let chunk = self
                .file
                .read_at(read_at, want)
                .await
                .map_err(|error| LogError::io("read", self.file.path(), error))?;
            if chunk.is_empty() {
                break;
            }
            self.bytes.extend_from_slice(&chunk);
        }
        let from = (position - self.start) as usize;
        let to = ((wanted_end - self.start) as usize).min(self.bytes.len());
        Ok(self.bytes.get(from..to).unwrap_or(&[]))
    }
}

/// Scans a segment file, filling `segment` (indexes, length, next offset, max timestamp) with
/// the valid batch prefix.
async fn scan_segment(
    file: &FileHandle,
    segment: &mut Segment,
    file_len: u64,
    config: &LogConfig,
    epochs: &mut EpochCache,
) -> Result<ScanOutcome, LogError> {
    let mut window = Window {
        file,
        file_len,
        start: 0,
        bytes: Vec::new(),
    };
    let mut position: u64 = 0;
    let mut expected = segment.base_offset;
    let mut gapped = false;
    let mut last_offsets: Vec<u32> = Vec::new();
    let stop = loop {
        if position >= file_len {
            break None;
        }
        let header_bytes = window.ensure(position, BATCH_HEADER_LEN).await?;
        let total = BatchHeader::parse(header_bytes).and_then(BatchHeader::total_len);
        let batch_len = match total {
            Some(total)
                if position + total as u64 <= file_len
                    && total <= BATCH_BYTES_MAX.max(config.max_message_bytes as usize) =>
            {
                total
            }
            // Too short for a header, or a length running past the end: validate what is
            // there to get the precise error (TooShort / BadLength / BadMagic).
            _ => header_bytes.len(),
        };
        let batch = window.ensure(position, batch_len).await?;
        let summary = match validate_stored_batch_at(batch, 0) {
            Ok(summary) => summary,
            Err(error) => break Some(TruncationReason::InvalidBatch(error)),
        };
        let base = Offset(summary.base_offset);
        // Offsets only move forward. A forward gap inside a segment is what log compaction
        // leaves when it removes whole batches; a step back is damage.
        if base < expected {
            break Some(TruncationReason::OffsetMismatch {
                expected,
                found: base,
            });
        }
        if !segment.record_batch(
            base,
            position,
            summary.length as u64,
            TimestampMs(summary.max_timestamp),
            config.index_interval_bytes,
        ) {
            break Some(TruncationReason::OffsetMismatch {
                expected,
                found: base,
            });
        }
        epochs.assign(LeaderEpoch(summary.partition_leader_epoch), base);
        gapped |= base > expected;
        expected = Offset(base.0 + i64::from(summary.last_offset_delta) + 1);
        if let Some(last) = segment.relative(Offset(expected.0 - 1)) {
            last_offsets.push(last);
        }
        position += summary.length as u64;
        segment.len = position;
        segment.next_offset = expected;
    };
    segment.len = position;
    segment.next_offset = expected;
    if gapped && last_offsets.len() == segment.index.len() {
        segment.batch_last_offsets = Some(last_offsets);
    }
    let stop = match stop {
        Some(reason) if all_zero(&mut window, position, file_len).await? => {
            let _ = reason;
            Some(TruncationReason::ZeroPadding)
        }
        other => other,
    };
    Ok(ScanOutcome { stop })
}

async fn all_zero(window: &mut Window<'_>, from: u64, to: u64) -> Result<bool, LogError> {
    let mut position = from;
    while position < to {
        let len = ((to - position) as usize).min(SCAN_CHUNK_BYTES);
        let bytes = window.ensure(position, len).await?;
        if bytes.is_empty() {
            return Ok(true);
        }
        if bytes.iter().any(|&byte| byte != 0) {
            return Ok(false);
        }
        position += bytes.len() as u64;
    }
    Ok(true)
}

/// Compares the index files with the indexes rebuilt by the scan; rewrites them if they are
/// missing or differ.
async fn check_indexes<B: Backend>(
    backend: &B,
    segment: &Segment,
    report: &mut RecoveryReport,
) -> Result<(), LogError> {
    let (index, time_index) = segment.encoded_indexes();
    let relative_end = (segment.next_offset.0 - segment.base_offset.0).max(0) as u64;
    for (path, expected, is_offset_index) in [
        (&segment.paths.index, index, true),
        (&segment.paths.time_index, time_index, false),
    ] {
        let on_disk = read_whole_file(backend, path).await?;
        let problem = match &on_disk {
            None => Some("missing".to_string()),
            Some(bytes) if **bytes == expected[..] => None,
            Some(bytes) => Some(if is_offset_index {
                match OffsetIndex::decode(bytes, segment.len) {
                    Err(error) => error.to_string(),
                    Ok(_) => "differs from the log".to_string(),
                }
            } else {
                match TimeIndex::decode(bytes, relative_end) {
                    Err(error) => error.to_string(),
                    Ok(_) => "differs from the log".to_string(),
                }
            }),
        };
        if let Some(problem) = problem {
            tracing::warn!(path = %path.display(), %problem, "rebuilding index");
            write_whole_file(backend, path, &expected).await?;
            report.rebuilt_indexes.push(path.clone());
        }
    }
    Ok(())
}
